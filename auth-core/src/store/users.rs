//! Users: accounts and their password hashes.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clock::UnixSeconds;
use crate::Result;

/// A user account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Stable opaque id: the `sub` of the user's tokens.
    pub id: String,
    /// The normalized username (RFC 8265 UsernameCaseMapped): unique, and so is its UTS #39
    /// skeleton (kept beside it by the store).
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

/// Storage of user accounts.
#[async_trait]
pub trait UserStore: Send + Sync + std::fmt::Debug {
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
    /// Replaces a user's claims with `new` if they are still `old`; `false` when another change
    /// came first (the caller reads again), [`crate::Error::NotFound`] if there is no such user.
    async fn replace_user_claims(
        &self,
        user_id: &str,
        old: &serde_json::Map<String, serde_json::Value>,
        new: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool>;
}
