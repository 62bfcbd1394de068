//! The signing-key ring and its staged lifecycle:
//!
//! ```text
//! pending --(activates_at)--> active --(successor activates)--> retiring --(retire_after)--> retired
//! (published, not signing)    (signs)                           (published, verifies)     (gone, erased)
//! ```
//!
//! [`plan_rotation`] is a pure function of (keys, policy, now) that says what to do; [`KeyRing`]
//! carries the plan out in one transaction through the store, where conditional updates and unique
//! indexes make it safe for several replicas to rotate at the same instant (one wins, the others
//! reload and find nothing left to do).
//!
//! Invariants (tested as properties): after every rotation exactly one key is active; a token
//! signed at any instant verifies until its `exp` (+ leeway) with any JWKS fetched within the
//! cache window, because a key is published `publish_ahead >= jwks_max_age` before it signs and
//! stays published `retire_after >= access_ttl + leeway` after its last signature.
//!
//! Private keys are sealed at rest with AES-256-GCM under a [`MasterKey`]; the key id is bound as
//! associated data, so a sealed key cannot be swapped onto another record.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::Jwk;
/// The JWKS document type (RFC 7517), re-exported so that code built on this crate (the modules
/// `auth-gen` emits) needs no direct `jsonwebtoken` dependency.
pub use jsonwebtoken::jwk::JwkSet;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::audit::{AuditEvent, AuditKind};
use crate::clock::{Clock, UnixSeconds};
use crate::crypto::{self, PrivateKey};
use crate::random::Entropy;
use crate::spec::{KeyPolicy, SigningAlgorithm, Spec};
use crate::store::{KeyChange, KeyRecord, KeyState, Store};
use crate::{Error, Result};

/// What the rotation policy needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// Algorithm of newly generated keys.
    pub algorithm: SigningAlgorithm,
    /// How long a key signs.
    pub rotate_every: i64,
    /// How long a new key is published before it signs.
    pub publish_ahead: i64,
    /// How long an old key stays published after its last signature.
    pub retire_after: i64,
}

impl RotationPolicy {
    /// The policy of a spec.
    pub fn from_spec(spec: &Spec) -> Self {
        Self::new(spec.tokens.algorithm, &spec.keys)
    }

    /// A policy from the `[keys]` section and the signing algorithm.
    pub fn new(algorithm: SigningAlgorithm, keys: &KeyPolicy) -> Self {
        Self {
            algorithm,
            rotate_every: keys.rotate_every.as_i64(),
            publish_ahead: keys.publish_ahead.as_i64(),
            retire_after: keys.retire_after.as_i64(),
        }
    }
}

/// One step of a rotation plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationStep {
    /// No key exists: generate one that signs at once (no verifier can have cached a JWKS yet).
    GenerateActive,
    /// Generate the successor, published now and signing from `activates_at`.
    GeneratePending {
        /// When it starts signing.
        activates_at: UnixSeconds,
    },
    /// The pending key's time has come: it signs from now.
    Activate {
        /// The pending key.
        kid: String,
    },
    /// The active key stops signing (its successor was activated in the same plan).
    Deactivate {
        /// The previously active key.
        kid: String,
    },
    /// The retiring key has outlived every token it signed: unpublish it, erase its private half.
    Retire {
        /// The retiring key.
        kid: String,
    },
}

/// What to do to the key ring at `now`. Pure: the same inputs always give the same plan.
pub fn plan_rotation(keys: &[KeyRecord], policy: &RotationPolicy, now: UnixSeconds) -> Vec<RotationStep> {
    let active = keys.iter().find(|k| k.state == KeyState::Active);
    let pending = keys.iter().find(|k| k.state == KeyState::Pending);
    let mut steps = Vec::new();
    match (active, pending) {
        (None, None) => steps.push(RotationStep::GenerateActive),
        // Only reachable after manual tampering: never leave the ring without a signer.
        (None, Some(p)) => steps.push(RotationStep::Activate { kid: p.kid.clone() }),
        (Some(a), Some(p)) if p.activates_at <= now => {
            steps.push(RotationStep::Deactivate { kid: a.kid.clone() });
            steps.push(RotationStep::Activate { kid: p.kid.clone() });
        }
        (Some(a), None) => {
            let due = a.activates_at.saturating_add(policy.rotate_every);
            let algorithm_changed = a.alg != policy.algorithm;
            if algorithm_changed || now >= due.saturating_sub(policy.publish_ahead) {
                let earliest = now.saturating_add(policy.publish_ahead);
                let activates_at = if algorithm_changed { earliest } else { earliest.max(due) };
                steps.push(RotationStep::GeneratePending { activates_at });
            }
        }
        (Some(_), Some(_)) => {}
    }
    for key in keys.iter().filter(|k| k.state == KeyState::Retiring) {
        let last_signature = key.deactivated_at.unwrap_or(key.activates_at);
        if now >= last_signature.saturating_add(policy.retire_after) {
            steps.push(RotationStep::Retire { kid: key.kid.clone() });
        }
    }
    steps
}

// ---------------------------------------------------------------------------------------------
// Master key

/// The key that seals private signing keys at rest (AES-256-GCM).
pub struct MasterKey {
    key: LessSafeKey,
    id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).finish_non_exhaustive()
    }
}

const SEALED_VERSION: u8 = 1;

impl MasterKey {
    /// A master key from 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self> {
        let key = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| Error::MasterKey("cannot use the master key for AES-256-GCM".into()))?;
        let mut id_input = b"auth master key id v1".to_vec();
        id_input.extend_from_slice(bytes);
        let digest = ring::digest::digest(&ring::digest::SHA256, &id_input);
        Ok(Self { key: LessSafeKey::new(key), id: hex::encode(&digest.as_ref()[..8]) })
    }

    /// Parses the text form: 32 bytes in base64 (standard or url-safe) or 64 hex digits.
    pub fn from_text(text: &str) -> Result<Self> {
        let text = text.trim();
        let bytes = Zeroizing::new(
            hex::decode(text)
                .ok()
                .filter(|b| b.len() == 32)
                .or_else(|| STANDARD.decode(text).ok())
                .or_else(|| URL_SAFE_NO_PAD.decode(text).ok())
                .unwrap_or_default(),
        );
        let array: &[u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            Error::MasterKey("the master key must be 32 bytes, written as base64 or 64 hex digits".into())
        })?;
        Self::from_bytes(array)
    }

    /// Parses a list of master keys in text form, separated by commas, spaces or line breaks (the
    /// previous master keys of a master-key rotation). Empty text is an empty list.
    pub fn parse_list(text: &str) -> Result<Vec<Self>> {
        text.split(|c: char| c == ',' || c.is_whitespace()).filter(|t| !t.is_empty()).map(Self::from_text).collect()
    }

    /// Generates a master key; returns it with its text form (base64) to store.
    pub fn generate(entropy: &dyn Entropy) -> Result<(Self, Zeroizing<String>)> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        entropy.fill(bytes.as_mut())?;
        Ok((Self::from_bytes(&bytes)?, Zeroizing::new(STANDARD.encode(bytes.as_ref()))))
    }

    /// Reads the master key file, or creates it (mode 0600) with a new key when it does not exist.
    pub fn load_or_create_file(path: &Path, entropy: &dyn Entropy) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_text(&text)
                .map_err(|e| Error::MasterKey(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (key, text) = Self::generate(entropy)?;
                write_secret_file(path, text.as_bytes())
                    .map_err(|e| Error::MasterKey(format!("cannot create {}: {e}", path.display())))?;
                Ok(key)
            }
            Err(e) => Err(Error::MasterKey(format!("cannot read {}: {e}", path.display()))),
        }
    }

    /// A short fingerprint of the key, stored beside what it sealed.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `plaintext`, binding it to `context` (the kid).
    pub fn seal(&self, context: &str, plaintext: &[u8], entropy: &dyn Entropy) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        entropy.fill(&mut nonce)?;
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| Error::Crypto("sealing failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(SEALED_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Opens what [`MasterKey::seal`] sealed with the same `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let (version, rest) = sealed.split_first().ok_or_else(|| Error::MasterKey("empty sealed value".into()))?;
        if *version != SEALED_VERSION || rest.len() < NONCE_LEN {
            return Err(Error::MasterKey("unknown sealed value format".into()));
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Error::MasterKey("bad nonce".into()))?;
        let mut buf = Zeroizing::new(ciphertext.to_vec());
        let len = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| {
                Error::MasterKey(format!(
                    "cannot open the sealed key {context}: wrong master key (this one is {}) or corrupted data",
                    self.id
                ))
            })?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

/// Writes a file readable by its owner only.
pub fn write_secret_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

// ---------------------------------------------------------------------------------------------
// Verification key set

/// A public key that verifies tokens, with the algorithm pinned to it.
#[derive(Clone)]
pub struct VerifyingKey {
    /// The algorithm tokens signed by this key must name.
    pub alg: SigningAlgorithm,
    /// The key.
    pub key: DecodingKey,
}

/// The keys a verifier accepts (pending, active, retiring), plus the ids of retired keys so that
/// their tokens get a precise error.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, VerifyingKey>,
    retired: HashSet<String>,
    jwks: Vec<Jwk>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet").field("kids", &self.keys.keys().collect::<Vec<_>>()).finish()
    }
}

impl KeySet {
    /// The key set of stored records.
    pub fn from_records(records: &[KeyRecord]) -> Result<Self> {
        let mut set = Self::default();
        for record in records {
            if record.state == KeyState::Retired {
                set.retired.insert(record.kid.clone());
                continue;
            }
            let jwk: Jwk = serde_json::from_str(&record.public_jwk)
                .map_err(|e| Error::Key(format!("stored JWK of {} is invalid: {e}", record.kid)))?;
            set.insert(jwk, record.alg)?;
        }
        Ok(set)
    }

    /// The key set of a published JWKS: each key's `alg` pins it; keys without a usable `kid` and
    /// `alg`, or of other algorithms, are skipped.
    pub fn from_jwks(jwks: &JwkSet) -> Self {
        let mut set = Self::default();
        for jwk in &jwks.keys {
            let alg = jwk.common.key_algorithm.and_then(|a| SigningAlgorithm::parse(&a.to_string()));
            if let Some(alg) = alg {
                // A key that does not fit its algorithm is simply not trusted.
                let _ = set.insert(jwk.clone(), alg);
            }
        }
        set
    }

    fn insert(&mut self, jwk: Jwk, alg: SigningAlgorithm) -> Result<()> {
        let kid = jwk.common.key_id.clone().ok_or_else(|| Error::Key("a published key has no kid".into()))?;
        let key = crypto::decoding_key(&jwk, alg)?;
        self.keys.insert(kid, VerifyingKey { alg, key });
        self.jwks.push(jwk);
        Ok(())
    }

    /// The verifying key named `kid`.
    pub fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.get(kid)
    }

    /// Whether `kid` names a retired key.
    pub fn is_retired(&self, kid: &str) -> bool {
        self.retired.contains(kid)
    }

    /// The published JWKS (pending, active and retiring keys).
    pub fn jwks(&self) -> JwkSet {
        JwkSet { keys: self.jwks.clone() }
    }

    /// The kids of published keys.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }
}

// ---------------------------------------------------------------------------------------------
// Key ring

/// The key that signs now.
#[derive(Debug, Clone)]
pub struct ActiveKey {
    /// Its kid.
    pub kid: String,
    /// The private key.
    pub key: PrivateKey,
    /// The jsonwebtoken encoding key (parsed once).
    pub encoding: Arc<jsonwebtoken::EncodingKey>,
}

/// What the ring holds at one instant: the signer and the verification set.
#[derive(Debug, Clone)]
pub struct KeySnapshot {
    /// The active key.
    pub active: ActiveKey,
    /// The published keys.
    pub keys: KeySet,
    /// Every record, for listing.
    pub records: Vec<KeyRecord>,
    /// The JWKS as JSON, serialized once per snapshot: the JWKS endpoint is the hottest route and
    /// changes only when the ring does.
    pub jwks_json: bytes::Bytes,
}

/// What [`KeyRing::rewrap`] found and did, by kid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewrapReport {
    /// Sealed again under the new master key.
    pub rewrapped: Vec<String>,
    /// Already sealed under it (checked to open).
    pub unchanged: Vec<String>,
    /// Retired: no private key left to seal.
    pub retired: Vec<String>,
}

/// The signing keys of this issuer, loaded from the store and rotated by policy.
#[derive(Debug)]
pub struct KeyRing {
    store: Arc<dyn Store>,
    master: MasterKey,
    /// Master keys that may still have sealed some keys: they open, never seal.
    previous: Vec<MasterKey>,
    policy: RotationPolicy,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    snapshot: RwLock<Option<Arc<KeySnapshot>>>,
    /// The opened private keys of the active and pending keys, by kid. A key once opened is not
    /// opened again: its kid is the thumbprint of its public half, so the same kid is the same
    /// key, whichever master key seals it in the database by now.
    signers: RwLock<HashMap<String, ActiveKey>>,
}

impl KeyRing {
    /// A key ring over `store`. Call [`KeyRing::rotate`] (which also loads) before signing.
    pub fn new(
        store: Arc<dyn Store>,
        master: MasterKey,
        policy: RotationPolicy,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
    ) -> Self {
        crypto::install_provider();
        Self {
            store,
            master,
            previous: Vec::new(),
            policy,
            clock,
            entropy,
            snapshot: RwLock::new(None),
            signers: RwLock::new(HashMap::new()),
        }
    }

    /// Also opens keys sealed under these master keys (during a master-key rotation, until
    /// `rewrap` has sealed every key under the current one). New keys are always sealed under the
    /// current master key.
    #[must_use]
    pub fn with_previous_master_keys(mut self, previous: Vec<MasterKey>) -> Self {
        let current = self.master.id().to_owned();
        self.previous = previous.into_iter().filter(|k| k.id() != current).collect();
        self
    }

    /// The current snapshot; an error if the ring was never loaded.
    pub fn snapshot(&self) -> Result<Arc<KeySnapshot>> {
        self.snapshot
            .read()
            .map_err(|_| Error::Key("key ring lock poisoned".into()))?
            .clone()
            .ok_or_else(|| Error::Key("the key ring has not been loaded".into()))
    }

    /// The snapshot if one was loaded (for serving the JWKS while the database is down).
    pub fn cached_snapshot(&self) -> Option<Arc<KeySnapshot>> {
        self.snapshot.read().ok().and_then(|s| s.clone())
    }

    /// The master key's fingerprint.
    pub fn master_key_id(&self) -> &str {
        self.master.id()
    }

    /// Reloads the ring from the store (to pick up another replica's rotation).
    pub async fn reload(&self) -> Result<Arc<KeySnapshot>> {
        let records = self.store.list_keys().await?;
        let snapshot = Arc::new(self.build_snapshot(records)?);
        if let Ok(mut slot) = self.snapshot.write() {
            *slot = Some(snapshot.clone());
        }
        Ok(snapshot)
    }

    fn build_snapshot(&self, records: Vec<KeyRecord>) -> Result<KeySnapshot> {
        let active = records
            .iter()
            .find(|r| r.state == KeyState::Active)
            .ok_or_else(|| Error::Key("no active signing key".into()))?;
        let mut signers = self.signers.read().map_err(|_| Error::Key("key ring lock poisoned".into()))?.clone();
        let may_sign = |r: &KeyRecord| matches!(r.state, KeyState::Active | KeyState::Pending);
        signers.retain(|kid, _| records.iter().any(|r| &r.kid == kid && may_sign(r)));
        for record in records.iter().filter(|r| may_sign(r)) {
            if signers.contains_key(&record.kid) {
                continue;
            }
            match self.open_signer(record) {
                Ok(signer) => {
                    signers.insert(record.kid.clone(), signer);
                }
                // Without the active key nothing can be signed. A pending key that does not open
                // (sealed under a master key this process lacks) is reported when it activates.
                Err(e) if record.state == KeyState::Active => return Err(e),
                Err(_) => {}
            }
        }
        let active = signers
            .get(&active.kid)
            .cloned()
            .ok_or_else(|| Error::Key(format!("active key {} was not opened", active.kid)))?;
        if let Ok(mut slot) = self.signers.write() {
            *slot = signers;
        }
        let keys = KeySet::from_records(&records)?;
        let jwks_json = serde_json::to_vec(&keys.jwks()).map_err(|e| Error::Key(format!("JWKS serialization: {e}")))?.into();
        Ok(KeySnapshot { active, keys, records, jwks_json })
    }

    /// The configured master key with fingerprint `id`: the current one or a previous one.
    fn master_with_id(&self, id: &str) -> Option<&MasterKey> {
        std::iter::once(&self.master).chain(&self.previous).find(|k| k.id() == id)
    }

    /// Opens a record's private key with the master key that sealed it.
    fn open_record(&self, record: &KeyRecord) -> Result<Zeroizing<Vec<u8>>> {
        let sealed = record
            .private_sealed
            .as_deref()
            .ok_or_else(|| Error::Key(format!("key {} has no private key", record.kid)))?;
        let master = self.master_with_id(&record.master_key_id).ok_or_else(|| {
            let previous: Vec<&str> = self.previous.iter().map(MasterKey::id).collect();
            let previous =
                if previous.is_empty() { String::new() } else { format!(" (previous: {})", previous.join(", ")) };
            Error::MasterKey(format!(
                "signing keys were sealed with master key {}, but the configured master key is {}{previous}",
                record.master_key_id,
                self.master.id()
            ))
        })?;
        master.open(&record.kid, sealed)
    }

    fn open_signer(&self, record: &KeyRecord) -> Result<ActiveKey> {
        let pkcs8 = self.open_record(record)?;
        let key = PrivateKey::from_pkcs8(record.alg, pkcs8.to_vec())?;
        Ok(ActiveKey { kid: record.kid.clone(), encoding: Arc::new(key.encoding_key()), key })
    }

    /// Seals every private key again under `new` (rotation of the master key), in one
    /// transaction per pass, each change conditional on the key still being sealed as it was read,
    /// so that a rotation or a retirement running at the same time is never undone. Keys already
    /// sealed under `new` are checked to open with it and left alone; a run can be repeated, and
    /// passes repeat until nothing is left under another master key (a replica still running
    /// with the old key may have generated one meanwhile).
    ///
    /// Every key must open with the current or a previous master key of this ring. Processes
    /// that hold a key in memory keep signing with it; a process started later needs `new`.
    pub async fn rewrap(&self, new: &MasterKey) -> Result<RewrapReport> {
        let mut report = RewrapReport::default();
        for _ in 0..5 {
            let records = self.store.list_keys().await?;
            let mut pass = RewrapReport::default();
            let mut changes = Vec::new();
            let mut events = Vec::new();
            let at_ms = self.clock.now_ms();
            for record in &records {
                let Some(sealed) = record.private_sealed.as_deref() else {
                    pass.retired.push(record.kid.clone());
                    continue;
                };
                if record.master_key_id == new.id() {
                    new.open(&record.kid, sealed)?;
                    pass.unchanged.push(record.kid.clone());
                    continue;
                }
                let pkcs8 = self.open_record(record)?;
                let resealed = new.seal(&record.kid, &pkcs8, self.entropy.as_ref())?;
                if new.open(&record.kid, &resealed)?.as_slice() != pkcs8.as_slice() {
                    return Err(Error::MasterKey(format!("the key {} did not open after sealing", record.kid)));
                }
                let detail = serde_json::json!({ "kid": record.kid, "from": record.master_key_id, "to": new.id() });
                events.push(AuditEvent::new(at_ms, AuditKind::KeyRewrapped).detail(detail));
                changes.push(KeyChange::Rewrap {
                    kid: record.kid.clone(),
                    from_master_key_id: record.master_key_id.clone(),
                    sealed: resealed,
                    master_key_id: new.id().to_owned(),
                });
                pass.rewrapped.push(record.kid.clone());
            }
            if changes.is_empty() {
                report.unchanged = pass.unchanged.into_iter().filter(|k| !report.rewrapped.contains(k)).collect();
                report.retired = pass.retired;
                return Ok(report);
            }
            if self.store.apply_key_changes(&changes).await? {
                for event in &events {
                    self.store.append_audit(event).await?;
                }
                tracing::info!(keys = ?pass.rewrapped, master_key = new.id(), "signing keys rewrapped");
                report.rewrapped.extend(pass.rewrapped);
            }
        }
        Err(Error::Key("rewrapping kept losing races with key rotation".into()))
    }

    /// Runs the rotation policy now: plans, applies in one transaction, audits, reloads. Safe to
    /// call from several replicas at once. Returns the steps this call applied.
    pub async fn rotate(&self) -> Result<Vec<RotationStep>> {
        // A lost race means another replica changed the ring; plan again from what it wrote.
        for _ in 0..5 {
            let records = self.store.list_keys().await?;
            let now = self.clock.now();
            let steps = plan_rotation(&records, &self.policy, now);
            if steps.is_empty() {
                let snapshot = Arc::new(self.build_snapshot(records)?);
                if let Ok(mut slot) = self.snapshot.write() {
                    *slot = Some(snapshot);
                }
                return Ok(steps);
            }
            let (changes, events) = self.materialize(&steps, &records, now)?;
            if self.store.apply_key_changes(&changes).await? {
                for event in &events {
                    self.store.append_audit(event).await?;
                }
                for step in &steps {
                    if let RotationStep::Retire { kid } = step
                        && let Some(record) = records.iter().find(|r| &r.kid == kid)
                        && let Ok(pkcs8) = self.open_record(record)
                    {
                        crypto::forget_signing_key(&pkcs8);
                    }
                }
                self.reload().await?;
                tracing::info!(steps = ?steps, "signing keys rotated");
                return Ok(steps);
            }
        }
        Err(Error::Key("key rotation kept losing races with other replicas".into()))
    }

    fn materialize(
        &self,
        steps: &[RotationStep],
        records: &[KeyRecord],
        now: UnixSeconds,
    ) -> Result<(Vec<KeyChange>, Vec<AuditEvent>)> {
        let mut changes = Vec::with_capacity(steps.len());
        let mut events = Vec::with_capacity(steps.len());
        let at_ms = now.saturating_mul(1000);
        for step in steps {
            let (change, event) = match step {
                RotationStep::GenerateActive => {
                    let record = self.generate(KeyState::Active, now, now)?;
                    let event = key_event(at_ms, AuditKind::KeyGenerated, &record.kid, "first key, active at once");
                    (KeyChange::Insert(record), event)
                }
                RotationStep::GeneratePending { activates_at } => {
                    let record = self.generate(KeyState::Pending, now, *activates_at)?;
                    let event = key_event(at_ms, AuditKind::KeyGenerated, &record.kid, "pending successor");
                    (KeyChange::Insert(record), event)
                }
                RotationStep::Activate { kid } => (
                    KeyChange::Activate { kid: kid.clone(), at: now },
                    key_event(at_ms, AuditKind::KeyActivated, kid, "activation time reached"),
                ),
                RotationStep::Deactivate { kid } => (
                    KeyChange::Deactivate { kid: kid.clone(), at: now },
                    key_event(at_ms, AuditKind::KeyRetiring, kid, "successor activated"),
                ),
                RotationStep::Retire { kid } => {
                    if !records.iter().any(|r| &r.kid == kid) {
                        return Err(Error::Key(format!("cannot retire unknown key {kid}")));
                    }
                    (
                        KeyChange::Retire { kid: kid.clone(), at: now },
                        key_event(at_ms, AuditKind::KeyRetired, kid, "retire_after elapsed"),
                    )
                }
            };
            changes.push(change);
            events.push(event);
        }
        Ok((changes, events))
    }

    fn generate(&self, state: KeyState, now: UnixSeconds, activates_at: UnixSeconds) -> Result<KeyRecord> {
        let key = PrivateKey::generate(self.policy.algorithm, self.entropy.as_ref())?;
        let jwk = key.public_jwk()?;
        let kid = jwk.common.key_id.clone().ok_or_else(|| Error::Key("generated key has no kid".into()))?;
        let public_jwk = serde_json::to_string(&jwk).map_err(|e| Error::Key(e.to_string()))?;
        Ok(KeyRecord {
            private_sealed: Some(self.master.seal(&kid, key.pkcs8(), self.entropy.as_ref())?),
            kid,
            alg: self.policy.algorithm,
            state,
            created_at: now,
            activates_at,
            deactivated_at: None,
            retired_at: None,
            public_jwk,
            master_key_id: self.master.id().to_owned(),
        })
    }
}

fn key_event(at_ms: i64, kind: AuditKind, kid: &str, why: &str) -> AuditEvent {
    AuditEvent::new(at_ms, kind).detail(serde_json::json!({ "kid": kid, "reason": why }))
}

#[cfg(test)]
mod tests;
