//! Storage: one async trait, [`Store`], and its sqlx implementation for SQLite (the embedded
//! default) and PostgreSQL (several replicas). Migrations live in `migrations/{sqlite,postgres}`;
//! both dialects hold the same schema.
//!
//! Invariants the implementations enforce in the database itself, so that several replicas cannot
//! break them: at most one `active` and at most one `pending` signing key; a refresh token has at
//! most one successor (rotation is a conditional update that only one caller can win).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::audit::AuditEvent;
use crate::clock::UnixSeconds;
use crate::spec::SigningAlgorithm;
use crate::Result;

mod sql;

pub use sql::{Dialect, SqlStore};

/// A user account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Stable opaque id: the `sub` of the user's tokens.
    pub id: String,
    /// The normalized username (NFKC, lowercase): unique.
    pub username: String,
    /// PHC string of the argon2id hash.
    pub password_hash: String,
    /// The spec's custom claims for this user (a JSON object).
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// A disabled user cannot log in or refresh.
    pub disabled: bool,
    /// When the account was created.
    pub created_at: UnixSeconds,
}

/// A registered OAuth client's secret (the client's grants and scopes come from the spec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    /// The client id, as in the spec.
    pub id: String,
    /// PHC string of the secret's hash; `None` for public clients.
    pub secret_hash: Option<String>,
    /// When the client was registered.
    pub created_at: UnixSeconds,
}

/// Where a signing key is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Published in the JWKS, not signing yet.
    Pending,
    /// The one key that signs.
    Active,
    /// Published, verifying only, until tokens it signed have expired.
    Retiring,
    /// Gone from the JWKS; private key erased.
    Retired,
}

impl KeyState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Retiring => "retiring",
            Self::Retired => "retired",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "active" => Some(Self::Active),
            "retiring" => Some(Self::Retiring),
            "retired" => Some(Self::Retired),
            _ => None,
        }
    }
}

/// A signing key as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// RFC 7638 thumbprint of the public key.
    pub kid: String,
    /// The algorithm pinned to this key.
    pub alg: SigningAlgorithm,
    /// Lifecycle state.
    pub state: KeyState,
    /// When the key was generated.
    pub created_at: UnixSeconds,
    /// When the key starts (or started) signing.
    pub activates_at: UnixSeconds,
    /// When the key stopped signing (set on the move to `retiring`).
    pub deactivated_at: Option<UnixSeconds>,
    /// When the key left the JWKS (set on the move to `retired`).
    pub retired_at: Option<UnixSeconds>,
    /// The public JWK (JSON text), as published.
    pub public_jwk: String,
    /// The private key, sealed with the master key; `None` once retired.
    pub private_sealed: Option<Vec<u8>>,
    /// Fingerprint of the master key that sealed `private_sealed`.
    pub master_key_id: String,
}

/// One step of a key rotation, applied with the others in a single transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyChange {
    /// Store a newly generated key (state `pending`, or `active` for the very first key).
    Insert(KeyRecord),
    /// `pending` -> `active` at `at`.
    Activate {
        /// The key.
        kid: String,
        /// When.
        at: UnixSeconds,
    },
    /// `active` -> `retiring` at `at` (its last signature).
    Deactivate {
        /// The key.
        kid: String,
        /// When.
        at: UnixSeconds,
    },
    /// `retiring` -> `retired` at `at`; the private key is erased.
    Retire {
        /// The key.
        kid: String,
        /// When.
        at: UnixSeconds,
    },
    /// The private key, sealed again under another master key (rotation of the master key).
    /// Applies only while the key still has a private key sealed under `from_master_key_id`.
    Rewrap {
        /// The key.
        kid: String,
        /// Fingerprint of the master key it is sealed under now.
        from_master_key_id: String,
        /// The private key sealed under the new master key.
        sealed: Vec<u8>,
        /// Fingerprint of the new master key.
        master_key_id: String,
    },
}

/// A refresh family: one login session (`sid`), across all its rotated refresh tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyRecord {
    /// The session id (`sid` claim).
    pub id: String,
    /// The user (None for client-only sessions).
    pub user_id: Option<String>,
    /// The client the session was issued to.
    pub client_id: String,
    /// The granted scope (space-separated).
    pub scope: String,
    /// When the session began.
    pub created_at: UnixSeconds,
    /// The session ends at this instant whatever happens.
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

/// A refresh token read with its session and the session's user, in one query.
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshTokenView {
    /// The token.
    pub token: RefreshTokenRecord,
    /// Its family (session).
    pub family: FamilyRecord,
    /// The family's user; `None` for client-only sessions.
    pub user: Option<UserRecord>,
}

/// Revoked sessions, as the database announces them.
#[async_trait]
pub trait RevocationFeed: Send {
    /// The id of the next session revoked. An error means the feed is lost: revocations made from
    /// then on are not announced on it, and some made just before may not have been.
    async fn next(&mut self) -> Result<String>;
}

/// Storage of users, clients, keys, refresh families and audit events.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Applies pending migrations.
    async fn migrate(&self) -> Result<()>;
    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;

    /// Inserts a user; [`crate::Error::Conflict`] if the username exists.
    async fn create_user(&self, user: &UserRecord) -> Result<()>;
    /// A user by normalized username.
    async fn user_by_username(&self, username: &str) -> Result<Option<UserRecord>>;
    /// A user by id.
    async fn user_by_id(&self, id: &str) -> Result<Option<UserRecord>>;
    /// Users ordered by creation, a page at a time.
    async fn list_users(&self, limit: u32, offset: u32) -> Result<Vec<UserRecord>>;
    /// Replaces a user's password hash (rehash on parameter rise).
    async fn set_password_hash(&self, user_id: &str, password_hash: &str) -> Result<()>;
    /// Disables or enables a user; `NotFound` if there is no such user.
    async fn set_user_disabled(&self, user_id: &str, disabled: bool) -> Result<()>;

    /// Inserts a client; [`crate::Error::Conflict`] if it exists.
    async fn create_client(&self, client: &ClientRecord) -> Result<()>;
    /// A client by id.
    async fn client(&self, id: &str) -> Result<Option<ClientRecord>>;
    /// All registered clients.
    async fn list_clients(&self) -> Result<Vec<ClientRecord>>;

    /// Every signing key, retired ones included, oldest first.
    async fn list_keys(&self) -> Result<Vec<KeyRecord>>;
    /// Applies the changes in one transaction, in the order given. Each transition only applies
    /// from the state it expects; if any does not (another replica got there first), nothing is
    /// applied and the result is `false`. The one-active/one-pending rule holds after every
    /// step, so a batch deactivates the old signer before it activates the next one.
    async fn apply_key_changes(&self, changes: &[KeyChange]) -> Result<bool>;

    /// Stores a new family with its first refresh token.
    async fn create_family(&self, family: &FamilyRecord, first: &RefreshTokenRecord) -> Result<()>;
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
    async fn family(&self, id: &str) -> Result<Option<FamilyRecord>>;
    /// The user's families that are neither revoked nor past their absolute expiry at `now`.
    async fn active_families_of_user(&self, user_id: &str, now: UnixSeconds) -> Result<Vec<FamilyRecord>>;
    /// Revokes a family; `true` if it was not revoked before.
    async fn revoke_family(&self, family_id: &str, at: UnixSeconds, reason: &str) -> Result<bool>;
    /// Revokes every unrevoked family of a user; returns how many.
    async fn revoke_user_families(&self, user_id: &str, at: UnixSeconds, reason: &str) -> Result<u64>;

    /// A feed of the sessions revoked by any process using this database, for caches of session
    /// liveness; `None` when the store has none (then only what this process revokes is known at
    /// once). Each call opens a new feed.
    async fn revocation_feed(&self) -> Result<Option<Box<dyn RevocationFeed>>> {
        Ok(None)
    }

    /// Appends an audit event.
    async fn append_audit(&self, event: &AuditEvent) -> Result<()>;
    /// The latest `limit` audit events, newest first.
    async fn audit_tail(&self, limit: u32) -> Result<Vec<AuditEvent>>;
}
