//! Refresh families: the rotated refresh tokens of one login, and their revocation.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::UserRecord;
use crate::audit::AuditEvent;
use crate::clock::UnixSeconds;
use crate::Result;

/// A refresh family: the rotated refresh tokens of one login, under one id (the `sid` claim; the
/// HTTP API lists families as the user's sessions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshFamily {
    /// The family id (`sid` claim).
    pub id: String,
    /// The user (None for client-only families).
    pub user_id: Option<String>,
    /// The client the family was issued to.
    pub client_id: String,
    /// The granted scope (space-separated).
    pub scope: String,
    /// When the family began (the login).
    pub created_at: UnixSeconds,
    /// The family ends at this instant whatever happens.
    pub absolute_expires_at: UnixSeconds,
    /// Set when revoked.
    pub revoked_at: Option<UnixSeconds>,
    /// Why it was revoked (`logout`, `reuse_detected`, `user_disabled`, ...).
    pub revoked_reason: Option<String>,
}

/// One refresh token of a family. The token itself is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshTokenRecord {
    /// SHA-256 of the token value.
    pub hash: Vec<u8>,
    /// The family it belongs to.
    pub family_id: String,
    /// When it was issued.
    pub created_at: UnixSeconds,
    /// Unused past this instant, it expires.
    pub idle_expires_at: UnixSeconds,
    /// When it was exchanged for its successor.
    pub used_at: Option<UnixSeconds>,
    /// The successor's hash.
    pub successor_hash: Option<Vec<u8>>,
    /// The successor's value, sealed with a key derived from this token's value, so that only a
    /// holder of this token can get the same successor again within the reuse grace.
    pub successor_sealed: Option<Vec<u8>>,
}

/// A refresh token read with its family and the family's user, in one query.
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshTokenView {
    /// The token.
    pub token: RefreshTokenRecord,
    /// Its family.
    pub family: RefreshFamily,
    /// The family's user; `None` for client-only families.
    pub user: Option<UserRecord>,
}

/// Revoked families, as the database announces them.
#[async_trait]
pub trait RevocationFeed: Send {
    /// The id of the next family revoked. An error means the feed is lost: revocations made from
    /// then on are not announced on it, and some made just before may not have been.
    async fn next(&mut self) -> Result<String>;
}

/// Storage of refresh families and their tokens.
#[async_trait]
pub trait FamilyStore: Send + Sync + std::fmt::Debug {
    /// Stores a new family with its first refresh token.
    async fn create_family(&self, family: &RefreshFamily, first: &RefreshTokenRecord) -> Result<()>;
    /// A refresh token, its family and the family's user, by the token's hash.
    async fn refresh_token(&self, hash: &[u8]) -> Result<Option<RefreshTokenView>>;
    /// Marks `parent_hash` used at `used_at` with `successor` as its successor, stores the
    /// successor and appends `event`, atomically and only if the parent was unused and its family
    /// is not revoked. `true` if this call won; when it did not, nothing is written.
    async fn rotate_refresh(
        &self,
        parent_hash: &[u8],
        used_at: UnixSeconds,
        successor_sealed: &[u8],
        successor: &RefreshTokenRecord,
        event: &AuditEvent,
    ) -> Result<bool>;
    /// A family by id.
    async fn family(&self, id: &str) -> Result<Option<RefreshFamily>>;
    /// The user's families that are neither revoked nor past their absolute expiry at `now`.
    async fn active_families_of_user(&self, user_id: &str, now: UnixSeconds) -> Result<Vec<RefreshFamily>>;
    /// Revokes a family; `true` if it was not revoked before.
    async fn revoke_family(&self, family_id: &str, at: UnixSeconds, reason: &str) -> Result<bool>;
    /// Revokes every unrevoked family of a user; returns how many.
    async fn revoke_user_families(&self, user_id: &str, at: UnixSeconds, reason: &str) -> Result<u64>;

    /// Denies the access token `jti` (one without a session: client credentials) until
    /// `expires_at`, its expiry; `false` if it was revoked already (nothing changes).
    async fn revoke_access_token(&self, jti: &str, client_id: &str, expires_at: UnixSeconds, at: UnixSeconds) -> Result<bool>;
    /// Whether the access token `jti` was revoked.
    async fn access_token_revoked(&self, jti: &str) -> Result<bool>;
    /// Forgets the revocations of tokens expired before `now` (they fail on their own); returns
    /// how many.
    async fn purge_revoked_access_tokens(&self, now: UnixSeconds) -> Result<u64>;

    /// A feed of the families revoked by any process using this database, for caches of family
    /// liveness; `None` when the store has none (then only what this process revokes is known at
    /// once). Each call opens a new feed.
    async fn revocation_feed(&self) -> Result<Option<Box<dyn RevocationFeed>>> {
        Ok(None)
    }
}
