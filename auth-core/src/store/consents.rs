//! Consent: what a user allowed a third-party client, scope by scope, so that the consent page is
//! shown once for a set of scopes and again only when a client asks for more (or the request says
//! `prompt=consent`). A grant adds to what was granted before; revoking removes the whole consent
//! of a (user, client) pair.
//!
//! Only scopes of a validated authorization request are recorded (the spec's scopes the client
//! may ask for, and `openid`), so what one pair can hold is bounded by the spec.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clock::UnixSeconds;
use crate::Result;

/// What a user granted one client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRecord {
    /// The user who consented.
    pub user_id: String,
    /// The client consented to.
    pub client_id: String,
    /// The scopes granted, sorted, each once.
    pub scopes: Vec<String>,
    /// When the latest of them was granted.
    pub granted_at: UnixSeconds,
}

impl ConsentRecord {
    /// Whether every scope of `scope` (space-separated) was granted.
    pub fn covers(&self, scope: &str) -> bool {
        scope.split(' ').filter(|s| !s.is_empty()).all(|s| self.scopes.iter().any(|g| g == s))
    }
}

/// Storage of consents.
#[async_trait]
pub trait ConsentStore: Send + Sync + std::fmt::Debug {
    /// What `user_id` granted `client_id`, if anything.
    async fn consent(&self, user_id: &str, client_id: &str) -> Result<Option<ConsentRecord>>;
    /// Adds `scopes` to what `user_id` granted `client_id` (each scope's time becomes `at`), in one
    /// transaction; concurrent grants of one pair both count.
    async fn grant_consent(&self, user_id: &str, client_id: &str, scopes: &[&str], at: UnixSeconds) -> Result<()>;
    /// The user's consents, by client id (at most a thousand scopes in all).
    async fn user_consents(&self, user_id: &str) -> Result<Vec<ConsentRecord>>;
    /// Forgets what `user_id` granted `client_id`; `true` if there was anything.
    async fn revoke_consent(&self, user_id: &str, client_id: &str) -> Result<bool>;
}
