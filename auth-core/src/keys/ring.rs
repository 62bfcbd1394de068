//! The key ring: the signing keys of this issuer, loaded from the store and rotated by policy,
//! one chain per algorithm in use.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use zeroize::Zeroizing;

use super::rotation::access_signer;
use super::{ActiveKey, KeySet, MasterKey, RotationPolicy, RotationStep, plan_rotation};
use crate::audit::{AuditEvent, AuditKind};
use crate::clock::{Clock, UnixSeconds};
use crate::crypto::{self, PrivateKey};
use crate::random::Entropy;
use crate::spec::SigningAlgorithm;
use crate::store::{KeyChange, KeyRecord, KeyState, Store};
use crate::{Error, Result};

/// What the ring holds at one instant: the signers and the verification set.
#[derive(Debug, Clone)]
pub struct KeySnapshot {
    /// The key that signs access tokens: the active key of the policy's primary algorithm (while
    /// a new primary chain waits to activate its first key, the previous primary's key).
    pub active: ActiveKey,
    /// The active key of each chain, by algorithm.
    signers: Vec<(SigningAlgorithm, ActiveKey)>,
    /// The published keys.
    pub keys: KeySet,
    /// Every record, for listing.
    pub records: Vec<KeyRecord>,
    /// The JWKS as JSON, serialized once per snapshot: the JWKS endpoint is the hottest route and
    /// changes only when the ring does.
    pub jwks_json: bytes::Bytes,
}

impl KeySnapshot {
    /// The active key of the chain of `alg` (RS256 for ID tokens); an error naming the chain when
    /// it has none (the algorithm is not in the rotation policy, or its chain is still starting).
    pub fn signer(&self, alg: SigningAlgorithm) -> Result<&ActiveKey> {
        self.signers
            .iter()
            .find_map(|(a, key)| (*a == alg).then_some(key))
            .ok_or_else(|| Error::Key(format!("no active {alg} signing key: the ring has no {alg} chain in use")))
    }

    /// The active key of every chain, with its algorithm.
    pub fn signers(&self) -> impl Iterator<Item = (SigningAlgorithm, &ActiveKey)> {
        self.signers.iter().map(|(alg, key)| (*alg, key))
    }
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

    /// Seals a small secret value under the current master key, bound to `context` (for tokens
    /// that only this service, on any replica, must be able to read and trust), with a nonce from
    /// `entropy`.
    pub fn seal(&self, context: &str, plaintext: &[u8], entropy: &dyn Entropy) -> Result<Vec<u8>> {
        self.master.seal(context, plaintext, entropy)
    }

    /// A MAC of `message` bound to `context` under the current master key (for values this
    /// service hands out and must recognise on any replica, such as CSRF tokens).
    pub fn mac(&self, context: &str, message: &[u8]) -> Vec<u8> {
        self.master.mac(context, message)
    }

    /// Whether `tag` is [`KeyRing::mac`] of `message` under the current or a previous master key.
    pub fn verify_mac(&self, context: &str, message: &[u8], tag: &[u8]) -> bool {
        std::iter::once(&self.master).chain(&self.previous).any(|key| key.verify_mac(context, message, tag))
    }

    /// Opens what [`KeyRing::seal`] sealed with `context`, under the current or a previous master
    /// key; `None` if none opens it (forged, corrupted, or sealed under a retired master key).
    pub fn open(&self, context: &str, sealed: &[u8]) -> Option<zeroize::Zeroizing<Vec<u8>>> {
        std::iter::once(&self.master).chain(&self.previous).find_map(|key| key.open(context, sealed).ok())
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
        let active = access_signer(&records, self.policy.primary)
            .ok_or_else(|| Error::Key(format!("no active signing key (the {} chain has none)", self.policy.primary)))?;
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
                // Without an active key its chain signs nothing. A pending key that does not open
                // (sealed under a master key this process lacks) is reported when it activates.
                Err(e) if record.state == KeyState::Active => return Err(e),
                Err(_) => {}
            }
        }
        let opened = |kid: &str| {
            signers.get(kid).cloned().ok_or_else(|| Error::Key(format!("active key {kid} was not opened")))
        };
        let active = opened(&active.kid)?;
        let by_algorithm = records
            .iter()
            .filter(|r| r.state == KeyState::Active)
            .map(|r| Ok((r.alg, opened(&r.kid)?)))
            .collect::<Result<Vec<_>>>()?;
        if let Ok(mut slot) = self.signers.write() {
            *slot = signers;
        }
        let keys = KeySet::from_records(&records)?;
        let jwks_json = serde_json::to_vec(&keys.jwks()).map_err(|e| Error::Key(format!("JWKS serialization: {e}")))?.into();
        Ok(KeySnapshot { active, signers: by_algorithm, keys, records, jwks_json })
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
            if self.apply_and_audit(&changes, &events).await? {
                for step in &steps {
                    if let RotationStep::Retire { kid } | RotationStep::Withdraw { kid } = step
                        && let Some(record) = records.iter().find(|r| &r.kid == kid)
                        && let Ok(pkcs8) = self.open_record(record)
                    {
                        crypto::forget_signing_key(&pkcs8);
                    }
                }
                tracing::info!(steps = ?steps, "signing keys rotated");
                return Ok(steps);
            }
        }
        Err(Error::Key("key rotation kept losing races with other replicas".into()))
    }

    /// Emergency rotation: in the chain of `only`, or in every chain in use, a new key signs from
    /// now and the active one stops signing (it stays published until `retire_after`, so its
    /// tokens keep verifying); an active key of an algorithm that left the policy stops signing
    /// too when every chain rotates. A verifier whose cached key set lacks a new key refuses its
    /// tokens until it fetches the key set again. Returns each new key's algorithm and kid, the
    /// primary's first.
    pub async fn rotate_now(&self, only: Option<SigningAlgorithm>) -> Result<Vec<(SigningAlgorithm, String)>> {
        if let Some(alg) = only
            && !self.policy.uses(alg)
        {
            let in_use: Vec<&str> = self.policy.algorithms().map(SigningAlgorithm::as_str).collect();
            return Err(Error::Key(format!("no {alg} chain to rotate: the algorithms in use are {}", in_use.join(", "))));
        }
        let algorithms: Vec<SigningAlgorithm> = self.policy.algorithms().filter(|a| only.is_none_or(|o| o == *a)).collect();
        for _ in 0..5 {
            let records = self.store.list_keys().await?;
            let now = self.clock.now();
            let at_ms = now.saturating_mul(1000);
            let mut changes = Vec::new();
            let mut events = Vec::new();
            let mut new_keys = Vec::new();
            let stops = |r: &&KeyRecord| {
                r.state == KeyState::Active && (algorithms.contains(&r.alg) || (only.is_none() && !self.policy.uses(r.alg)))
            };
            for active in records.iter().filter(stops) {
                changes.push(KeyChange::Deactivate { kid: active.kid.clone(), at: now });
                events.push(key_event(at_ms, AuditKind::KeyRetiring, &active.kid, "replaced at once (keys rotate --now)"));
            }
            for &alg in &algorithms {
                let new = self.generate(alg, KeyState::Active, now, now)?;
                events.push(key_event(at_ms, AuditKind::KeyGenerated, &new.kid, "active at once (keys rotate --now)"));
                new_keys.push((alg, new.kid.clone()));
                changes.push(KeyChange::Insert(new));
            }
            if self.apply_and_audit(&changes, &events).await? {
                tracing::warn!(keys = ?new_keys, "emergency rotation: new signing keys are active at once");
                return Ok(new_keys);
            }
        }
        Err(Error::Key("rotating at once kept losing races with other replicas".into()))
    }

    /// Revokes `kid`: unpublished at once and its private half erased, so every token it signed
    /// fails verification on every replica once it reloads its keys. When it was the signing key
    /// of its chain, a new key of the same algorithm signs from now, in the same transaction (of
    /// the primary algorithm instead if its algorithm left the policy while it still signed access
    /// tokens; none if its chain was being wound down). Returns the new key's kid, if one was made.
    pub async fn revoke(&self, kid: &str) -> Result<Option<String>> {
        for _ in 0..5 {
            let records = self.store.list_keys().await?;
            let Some(record) = records.iter().find(|r| r.kid == kid) else {
                return Err(Error::Key(format!("no key {kid}")));
            };
            if record.state == KeyState::Retired {
                return Err(Error::Key(format!("key {kid} is already retired (unpublished)")));
            }
            let now = self.clock.now();
            let at_ms = now.saturating_mul(1000);
            let mut changes = vec![KeyChange::Revoke { kid: kid.to_owned(), at: now }];
            let mut events = vec![AuditEvent::new(at_ms, AuditKind::KeyRevoked).detail(serde_json::json!({
                "kid": kid,
                "alg": record.alg.as_str(),
                "state": record.state.as_str(),
                "reason": "revoked by an operator (keys revoke)",
            }))];
            let successor_alg = if record.state != KeyState::Active {
                None
            } else if self.policy.uses(record.alg) {
                Some(record.alg)
            } else if access_signer(&records, self.policy.primary).is_some_and(|k| k.kid == kid) {
                Some(self.policy.primary)
            } else {
                None
            };
            let successor = match successor_alg {
                Some(alg) => {
                    let new = self.generate(alg, KeyState::Active, now, now)?;
                    events.push(key_event(at_ms, AuditKind::KeyGenerated, &new.kid, "replaces a revoked key, active at once"));
                    let successor = new.kid.clone();
                    changes.push(KeyChange::Insert(new));
                    Some(successor)
                }
                None => None,
            };
            if self.apply_and_audit(&changes, &events).await? {
                if let Ok(pkcs8) = self.open_record(record) {
                    crypto::forget_signing_key(&pkcs8);
                }
                tracing::warn!(kid, successor = ?successor, "signing key revoked: unpublished at once");
                return Ok(successor);
            }
        }
        Err(Error::Key("revoking kept losing races with other replicas".into()))
    }

    /// Applies `changes` in one transaction, then audits and reloads; `false` if another process
    /// changed the ring first (nothing applied).
    async fn apply_and_audit(&self, changes: &[KeyChange], events: &[AuditEvent]) -> Result<bool> {
        if !self.store.apply_key_changes(changes).await? {
            return Ok(false);
        }
        for event in events {
            self.store.append_audit(event).await?;
        }
        self.reload().await?;
        Ok(true)
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
                RotationStep::GenerateActive { alg } => {
                    let record = self.generate(*alg, KeyState::Active, now, now)?;
                    let event = key_event(at_ms, AuditKind::KeyGenerated, &record.kid, "first key, active at once");
                    (KeyChange::Insert(record), event)
                }
                RotationStep::GeneratePending { alg, activates_at } => {
                    let record = self.generate(*alg, KeyState::Pending, now, *activates_at)?;
                    let event = key_event(at_ms, AuditKind::KeyGenerated, &record.kid, "pending successor");
                    (KeyChange::Insert(record), event)
                }
                RotationStep::Activate { kid } => (
                    KeyChange::Activate { kid: kid.clone(), at: now },
                    key_event(at_ms, AuditKind::KeyActivated, kid, "activation time reached"),
                ),
                RotationStep::Deactivate { kid } => {
                    let leaving = records.iter().any(|r| &r.kid == kid && !self.policy.uses(r.alg));
                    let why = if leaving { "its algorithm left the rotation policy" } else { "successor activated" };
                    (KeyChange::Deactivate { kid: kid.clone(), at: now }, key_event(at_ms, AuditKind::KeyRetiring, kid, why))
                }
                RotationStep::Withdraw { kid } => (
                    KeyChange::Withdraw { kid: kid.clone(), at: now },
                    key_event(at_ms, AuditKind::KeyRetired, kid, "its algorithm left the rotation policy before it signed"),
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

    fn generate(
        &self,
        alg: SigningAlgorithm,
        state: KeyState,
        now: UnixSeconds,
        activates_at: UnixSeconds,
    ) -> Result<KeyRecord> {
        let key = PrivateKey::generate(alg, self.entropy.as_ref())?;
        let jwk = key.public_jwk()?;
        let kid = jwk.common.key_id.clone().ok_or_else(|| Error::Key("generated key has no kid".into()))?;
        let public_jwk = serde_json::to_string(&jwk).map_err(|e| Error::Key(e.to_string()))?;
        Ok(KeyRecord {
            private_sealed: Some(self.master.seal(&kid, key.pkcs8(), self.entropy.as_ref())?),
            kid,
            alg,
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
