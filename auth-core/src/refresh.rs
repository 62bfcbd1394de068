//! Refresh-token families: one family per login session (`sid`), one token per rotation.
//!
//! Rules (see `docs/refresh-families.md`):
//! - A token is 256 random bits in base64url; the store keeps only its SHA-256.
//! - Every use rotates: the presented token is marked used and a successor is issued. The store
//!   makes this a conditional update that exactly one caller wins, so concurrent refreshes of one
//!   token produce exactly one successor.
//! - A used token presented again within `refresh_reuse_grace` of its use is a benign retry (a
//!   lost response, two tabs racing): it gets the same successor again. The successor is kept
//!   sealed under a key derived from the used token, so only a holder of that token can open it.
//! - Presented after the grace, it is treated as stolen: the whole family is revoked and an audit
//!   event written.
//! - A token expires when unused for `refresh_idle_ttl`, and every token of a family expires
//!   `refresh_absolute_ttl` after login.
//!
//! Audit events carry ids and reasons, never token values.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::digest;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::audit::{AuditEvent, AuditKind};
use crate::clock::{Clock, UnixMillis, UnixSeconds};
use crate::error::RefreshError;
use crate::random::{Entropy, random_id};
use crate::liveness::FamilyLiveness;
use crate::spec::TokenPolicy;
use crate::store::{RefreshFamily, RefreshTokenRecord, RefreshTokenView, Store, UserRecord};
use crate::{Error, Result};

/// Random bytes in a refresh token (256 bits).
const TOKEN_BYTES: usize = 32;
/// Length of a token in base64url without padding.
const TOKEN_CHARS: usize = 43;
/// Domain separation of the key that seals a successor, so that it can never equal a key derived
/// from the same token for another purpose.
const SEAL_LABEL: &[u8] = b"auth-core refresh successor seal v1";

/// Revocation reason when a used token comes back after the grace.
pub const REASON_REUSE_DETECTED: &str = "reuse_detected";
/// Revocation reason for RFC 7009 token revocation.
pub const REASON_TOKEN_REVOKED: &str = "token_revoked";

/// The secret value of a refresh token. Wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
struct RefreshSecret([u8; TOKEN_BYTES]);

impl std::fmt::Debug for RefreshSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshSecret(..)")
    }
}

impl RefreshSecret {
    fn generate(entropy: &dyn Entropy) -> Result<Self> {
        let mut bytes = [0u8; TOKEN_BYTES];
        entropy.fill(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// The secret of a presented token, or `None` if it cannot be one of ours.
    fn parse(token: &str) -> Option<Self> {
        if token.len() != TOKEN_CHARS {
            return None;
        }
        let mut bytes = [0u8; TOKEN_BYTES];
        // The decoder rejects non-canonical trailing bits, so each secret has one spelling.
        match URL_SAFE_NO_PAD.decode_slice(token, &mut bytes) {
            Ok(TOKEN_BYTES) => Some(Self(bytes)),
            _ => None,
        }
    }

    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// What the store keeps: SHA-256 of the secret.
    fn hash(&self) -> Vec<u8> {
        digest::digest(&digest::SHA256, &self.0).as_ref().to_vec()
    }

    /// The AES-256-GCM key that seals this token's successor.
    fn sealing_key(&self) -> Result<LessSafeKey> {
        let mut context = digest::Context::new(&digest::SHA256);
        context.update(SEAL_LABEL);
        context.update(&self.0);
        let key = UnboundKey::new(&AES_256_GCM, context.finish().as_ref())
            .map_err(|_| Error::Crypto("cannot build the successor sealing key".into()))?;
        Ok(LessSafeKey::new(key))
    }

    /// Seals `successor` under this token: `nonce || ciphertext || tag`. The parent's hash is the
    /// associated data, which ties the sealed value to the row it is stored in.
    fn seal_successor(&self, successor: &RefreshSecret, entropy: &dyn Entropy) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        entropy.fill(&mut nonce)?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + TOKEN_BYTES + AES_256_GCM.tag_len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&successor.0);
        let tag = self
            .sealing_key()?
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.hash()),
                &mut sealed[NONCE_LEN..],
            )
            .map_err(|_| Error::Crypto("cannot seal the successor refresh token".into()))?;
        sealed.extend_from_slice(tag.as_ref());
        Ok(sealed)
    }

    /// Opens a successor sealed under this token; `None` if it was sealed under another token or
    /// altered.
    fn open_successor(&self, sealed: &[u8]) -> Option<RefreshSecret> {
        let (nonce, ciphertext) = sealed.split_at_checked(NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buffer = ciphertext.to_vec();
        let key = self.sealing_key().ok()?;
        let opened = key.open_in_place(nonce, Aad::from(self.hash()), &mut buffer).ok();
        let successor = opened.and_then(|plain| <[u8; TOKEN_BYTES]>::try_from(&*plain).ok());
        buffer.zeroize();
        successor.map(RefreshSecret)
    }
}

/// The outcome of a successful refresh.
#[derive(Debug, Clone, PartialEq)]
pub struct Rotation {
    /// The family the token belongs to.
    pub family: RefreshFamily,
    /// The family's user as stored when the token was read (`None` for client-only families).
    pub user: Option<UserRecord>,
    /// The successor refresh token, to hand to the client.
    pub refresh_token: String,
    /// `true` when the presented token had already been rotated within the reuse grace and this
    /// is the same successor again.
    pub retried: bool,
}

/// The refresh-token rules on top of a [`Store`]: issue, rotate, detect reuse, revoke; and
/// whether a family is live, through a [`FamilyLiveness`] that learns of every revocation made
/// here.
#[derive(Debug, Clone)]
pub struct RefreshFamilies {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    policy: TokenPolicy,
    liveness: Arc<FamilyLiveness>,
}

impl RefreshFamilies {
    /// Refresh families stored in `store`, with lifetimes from `policy`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
        policy: TokenPolicy,
    ) -> Self {
        let liveness = Arc::new(FamilyLiveness::uncached(store.clone(), clock.clone()));
        Self { store, clock, entropy, policy, liveness }
    }

    /// Checks family liveness through `liveness` (which must read the same store).
    pub fn with_liveness(mut self, liveness: Arc<FamilyLiveness>) -> Self {
        self.liveness = liveness;
        self
    }

    /// The family liveness checks.
    pub fn liveness(&self) -> &Arc<FamilyLiveness> {
        &self.liveness
    }

    /// Whether family `sid` exists and is not revoked.
    pub async fn is_live(&self, sid: &str) -> Result<bool> {
        self.liveness.is_live(sid).await
    }

    /// Whether the access token `jti` (one without a family) has not been revoked.
    pub async fn token_is_live(&self, jti: &str) -> Result<bool> {
        self.liveness.token_is_live(jti).await
    }

    /// Denies the access token `jti` of `client_id` (one without a family) until `expires_at`,
    /// forgets what was read of it, and audits it; `false` if it was revoked already.
    pub async fn revoke_access_token(&self, jti: &str, client_id: &str, expires_at: UnixSeconds) -> Result<bool> {
        let now_ms = self.clock.now_ms();
        let revoked = self.store.revoke_access_token(jti, client_id, expires_at, now_ms.div_euclid(1000)).await?;
        self.liveness.forget_token(jti);
        if revoked {
            let event = AuditEvent::new(now_ms, AuditKind::AccessTokenRevoked)
                .client(client_id)
                .detail(serde_json::json!({ "jti": jti, "expires_at": expires_at }));
            self.store.append_audit(&event).await?;
        }
        Ok(revoked)
    }

    /// Starts a refresh family and its first refresh token.
    pub async fn start(
        &self,
        user_id: Option<&str>,
        client_id: &str,
        scope: &str,
    ) -> Result<(RefreshFamily, String)> {
        let now = self.clock.now();
        let family = RefreshFamily {
            id: random_id(self.entropy.as_ref())?,
            user_id: user_id.map(str::to_owned),
            client_id: client_id.to_owned(),
            scope: scope.to_owned(),
            created_at: now,
            absolute_expires_at: now.saturating_add(self.policy.refresh_absolute_ttl.as_i64()),
            revoked_at: None,
            revoked_reason: None,
        };
        let secret = RefreshSecret::generate(self.entropy.as_ref())?;
        let first = self.token_record(&secret, &family, now);
        self.store.create_family(&family, &first).await?;
        Ok((family, secret.encode()))
    }

    /// Exchanges `token`, presented by `client_id`, for its successor.
    ///
    /// Refusals are [`Error::Refresh`]: `Unknown` (malformed or never issued), `WrongClient`,
    /// `Revoked`, `Expired`, and `Reused` (used again after the grace: the family is now revoked).
    pub async fn rotate(&self, token: &str, client_id: &str) -> Result<Rotation> {
        self.rotate_if(token, client_id, |_| Ok(())).await
    }

    /// [`RefreshFamilies::rotate`], but `admit` sees the family of a usable, unused token first and
    /// may refuse: a refused request (a wider scope than the session's) then spends nothing, and
    /// the token stays the client's next one.
    pub async fn rotate_if(
        &self,
        token: &str,
        client_id: &str,
        admit: impl FnOnce(&RefreshFamily) -> Result<()> + Send,
    ) -> Result<Rotation> {
        let presented = RefreshSecret::parse(token).ok_or(RefreshError::Unknown)?;
        let hash = presented.hash();
        let now_ms = self.clock.now_ms();
        let now = now_ms.div_euclid(1000);
        let RefreshTokenView { token: record, family, user } =
            self.store.refresh_token(&hash).await?.ok_or(RefreshError::Unknown)?;
        check_usable(&record, &family, client_id, now)?;

        let record = if record.used_at.is_some() {
            record
        } else {
            admit(&family)?;
            let successor = RefreshSecret::generate(self.entropy.as_ref())?;
            let sealed = presented.seal_successor(&successor, self.entropy.as_ref())?;
            let next = self.token_record(&successor, &family, now);
            let event = family_event(now_ms, AuditKind::RefreshRotated, &family, serde_json::Value::Null);
            if self.store.rotate_refresh(&hash, now, &sealed, &next, &event).await? {
                let refresh_token = successor.encode();
                return Ok(Rotation { family, user, refresh_token, retried: false });
            }
            // Another rotation of this token won the race, or the family was revoked meanwhile:
            // answer from what the database now holds.
            let view = self.store.refresh_token(&hash).await?.ok_or(RefreshError::Unknown)?;
            if view.family.revoked_at.is_some() {
                return Err(RefreshError::Revoked.into());
            }
            view.token
        };
        self.answer_reuse(&presented, record, family, user, now_ms).await
    }

    /// A used token came back: the same successor within the grace, revocation after it.
    async fn answer_reuse(
        &self,
        presented: &RefreshSecret,
        record: RefreshTokenRecord,
        family: RefreshFamily,
        user: Option<UserRecord>,
        now_ms: UnixMillis,
    ) -> Result<Rotation> {
        let now = now_ms.div_euclid(1000);
        let Some(used_at) = record.used_at else {
            return Err(Error::Store(format!(
                "a refresh token of family {} lost its rotation but is not marked used",
                family.id
            )));
        };
        if now.saturating_sub(used_at) <= self.policy.refresh_reuse_grace.as_i64() {
            let successor = record
                .successor_sealed
                .as_deref()
                .and_then(|sealed| presented.open_successor(sealed))
                .filter(|successor| Some(successor.hash()) == record.successor_hash)
                .ok_or_else(|| {
                    Error::Store(format!(
                        "the successor of a used refresh token of family {} cannot be opened",
                        family.id
                    ))
                })?;
            let detail = serde_json::json!({ "used_at": used_at });
            self.audit(now_ms, AuditKind::RefreshRetried, &family, detail).await?;
            return Ok(Rotation { family, user, refresh_token: successor.encode(), retried: true });
        }
        self.store.revoke_family(&family.id, now, REASON_REUSE_DETECTED).await?;
        self.liveness.forget(&family.id);
        let detail = serde_json::json!({ "used_at": used_at, "reason": REASON_REUSE_DETECTED });
        self.audit(now_ms, AuditKind::RefreshReuseDetected, &family, detail).await?;
        Err(RefreshError::Reused.into())
    }

    /// RFC 7009 revocation: ends the family of `token`. `false` for a token that is unknown or
    /// whose family had already ended (the endpoint answers 200 either way).
    ///
    /// RFC 7009 also requires that the token belongs to the requesting client; the endpoint checks
    /// that first with [`RefreshFamilies::family_of`].
    pub async fn revoke_token(&self, token: &str) -> Result<bool> {
        match self.family_of(token).await? {
            Some(family) => self.revoke_family(&family.id, REASON_TOKEN_REVOKED).await,
            None => Ok(false),
        }
    }

    /// The family of `token`, if it is a token this service issued.
    pub async fn family_of(&self, token: &str) -> Result<Option<RefreshFamily>> {
        let Some(secret) = RefreshSecret::parse(token) else { return Ok(None) };
        Ok(self.store.refresh_token(&secret.hash()).await?.map(|view| view.family))
    }

    /// The token's record and family if `token` is live: issued here, not yet rotated, its
    /// family unrevoked and unexpired at `now` (RFC 7662 `active`).
    pub async fn inspect(&self, token: &str) -> Result<Option<(RefreshTokenRecord, RefreshFamily)>> {
        let Some(secret) = RefreshSecret::parse(token) else { return Ok(None) };
        let Some(RefreshTokenView { token: record, family, .. }) = self.store.refresh_token(&secret.hash()).await?
        else {
            return Ok(None);
        };
        let now = self.clock.now();
        let live = record.used_at.is_none()
            && family.revoked_at.is_none()
            && now < record.idle_expires_at
            && now < family.absolute_expires_at;
        Ok(live.then_some((record, family)))
    }

    /// Ends family `sid` for `reason`; `false` if it was already revoked or does not exist.
    pub async fn revoke_family(&self, sid: &str, reason: &str) -> Result<bool> {
        let now_ms = self.clock.now_ms();
        let revoked = self.store.revoke_family(sid, now_ms.div_euclid(1000), reason).await?;
        self.liveness.forget(sid);
        if !revoked {
            return Ok(false);
        }
        let detail = serde_json::json!({ "reason": reason });
        match self.store.family(sid).await? {
            Some(family) => self.audit(now_ms, AuditKind::FamilyRevoked, &family, detail).await?,
            None => {
                let event = AuditEvent::new(now_ms, AuditKind::FamilyRevoked).family(sid);
                self.store.append_audit(&event.detail(detail)).await?;
            }
        }
        Ok(true)
    }

    /// Ends every family of a user ("log out everywhere", disabled account); returns how many.
    pub async fn revoke_user(&self, user_id: &str, reason: &str) -> Result<u64> {
        let now_ms = self.clock.now_ms();
        let count =
            self.store.revoke_user_families(user_id, now_ms.div_euclid(1000), reason).await?;
        self.liveness.forget_user(user_id);
        let event = AuditEvent::new(now_ms, AuditKind::FamilyRevoked)
            .user(user_id)
            .detail(serde_json::json!({ "reason": reason, "sessions": count }));
        self.store.append_audit(&event).await?;
        Ok(count)
    }

    /// The user's families that are neither revoked nor past their absolute expiry.
    pub async fn families_of_user(&self, user_id: &str) -> Result<Vec<RefreshFamily>> {
        self.store.active_families_of_user(user_id, self.clock.now()).await
    }

    fn token_record(
        &self,
        secret: &RefreshSecret,
        family: &RefreshFamily,
        now: UnixSeconds,
    ) -> RefreshTokenRecord {
        let idle = now.saturating_add(self.policy.refresh_idle_ttl.as_i64());
        RefreshTokenRecord {
            hash: secret.hash(),
            family_id: family.id.clone(),
            created_at: now,
            idle_expires_at: idle.min(family.absolute_expires_at),
            used_at: None,
            successor_hash: None,
            successor_sealed: None,
        }
    }

    async fn audit(
        &self,
        at: UnixMillis,
        kind: AuditKind,
        family: &RefreshFamily,
        detail: serde_json::Value,
    ) -> Result<()> {
        self.store.append_audit(&family_event(at, kind, family, detail)).await
    }
}

/// An audit event about a family: its client, id and user.
fn family_event(at: UnixMillis, kind: AuditKind, family: &RefreshFamily, detail: serde_json::Value) -> AuditEvent {
    let mut event = AuditEvent::new(at, kind).client(family.client_id.as_str()).family(family.id.as_str());
    if let Some(user) = &family.user_id {
        event = event.user(user.as_str());
    }
    event.detail(detail)
}

/// The checks that come before rotation, in the order the refusals are reported.
fn check_usable(
    record: &RefreshTokenRecord,
    family: &RefreshFamily,
    client_id: &str,
    now: UnixSeconds,
) -> Result<(), RefreshError> {
    if family.client_id != client_id {
        return Err(RefreshError::WrongClient);
    }
    if family.revoked_at.is_some() {
        return Err(RefreshError::Revoked);
    }
    if now >= record.idle_expires_at || now >= family.absolute_expires_at {
        return Err(RefreshError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededEntropy;

    fn secret(entropy: &dyn Entropy) -> RefreshSecret {
        RefreshSecret::generate(entropy).unwrap()
    }

    #[test]
    fn tokens_are_256_bits_in_base64url_and_parse_back() {
        let entropy = SeededEntropy::new([1; 32]);
        let token = secret(&entropy);
        let text = token.encode();
        assert_eq!(text.len(), TOKEN_CHARS);
        assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(RefreshSecret::parse(&text), Some(token.clone()));
        assert_eq!(token.hash().len(), 32);
        assert_ne!(token.hash(), token.0.to_vec());
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        let text = secret(&SeededEntropy::new([2; 32])).encode();
        assert_eq!(RefreshSecret::parse(""), None);
        assert_eq!(RefreshSecret::parse(&text[1..]), None);
        assert_eq!(RefreshSecret::parse(&format!("{text}=")), None);
        assert_eq!(RefreshSecret::parse(&format!("{}+", &text[1..])), None);
        // 43 characters carry 258 bits; the last 2 must be zero, which 'B' (0b000001) is not.
        let non_canonical = format!("{}B", &text[..42]);
        assert_eq!(RefreshSecret::parse(&non_canonical), None);
    }

    #[test]
    fn a_sealed_successor_opens_with_its_parent_only() {
        let entropy = SeededEntropy::new([3; 32]);
        let parent = secret(&entropy);
        let successor = secret(&entropy);
        let other = secret(&entropy);
        let sealed = parent.seal_successor(&successor, &entropy).unwrap();
        assert_eq!(sealed.len(), NONCE_LEN + TOKEN_BYTES + AES_256_GCM.tag_len());
        assert_eq!(parent.open_successor(&sealed), Some(successor.clone()));
        assert_eq!(other.open_successor(&sealed), None);
        assert_eq!(successor.open_successor(&sealed), None);
    }

    #[test]
    fn altered_or_truncated_seals_do_not_open() {
        let entropy = SeededEntropy::new([4; 32]);
        let parent = secret(&entropy);
        let sealed = parent.seal_successor(&secret(&entropy), &entropy).unwrap();
        for i in 0..sealed.len() {
            let mut altered = sealed.clone();
            altered[i] ^= 1;
            assert_eq!(parent.open_successor(&altered), None, "byte {i} altered");
        }
        assert_eq!(parent.open_successor(&sealed[..sealed.len() - 1]), None);
        assert_eq!(parent.open_successor(&sealed[..5]), None);
        assert_eq!(parent.open_successor(&[]), None);
    }

    #[test]
    fn seals_of_one_successor_differ_by_nonce() {
        let entropy = SeededEntropy::new([5; 32]);
        let parent = secret(&entropy);
        let successor = secret(&entropy);
        let a = parent.seal_successor(&successor, &entropy).unwrap();
        let b = parent.seal_successor(&successor, &entropy).unwrap();
        assert_ne!(a, b);
        assert_eq!(parent.open_successor(&a), parent.open_successor(&b));
    }
}
