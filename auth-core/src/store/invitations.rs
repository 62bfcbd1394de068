//! Invitations: single-use, expiring grants of custom claims (a tenant, a role) to whoever redeems
//! them, at sign-up or on an existing account.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::clock::UnixSeconds;
use crate::Result;

/// A stored invitation. The token itself is never stored: only its SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvitationRecord {
    /// SHA-256 of the invitation token, lowercase hex.
    pub hash: String,
    /// The claims the invitation sets (checked against the spec when it was created).
    pub claims: Map<String, Value>,
    /// The normalized username it is reserved for, if any.
    pub username: Option<String>,
    /// Who created it: `operator` or `client:<id>`.
    pub created_by: String,
    /// When it was created.
    pub created_at: UnixSeconds,
    /// When it stops being redeemable.
    pub expires_at: UnixSeconds,
    /// When it was redeemed, if it was.
    pub used_at: Option<UnixSeconds>,
}

/// Storage of invitations.
#[async_trait]
pub trait InvitationStore: Send + Sync + std::fmt::Debug {
    /// Inserts an invitation.
    async fn create_invitation(&self, invitation: &InvitationRecord) -> Result<()>;
    /// Marks the invitation of `hash` used at `now` and returns it, if it exists, is unused, has
    /// not expired and is for anyone or for `username`; exactly one of several concurrent callers
    /// gets it.
    async fn take_invitation(&self, hash: &str, username: &str, now: UnixSeconds) -> Result<Option<InvitationRecord>>;
    /// Makes a taken invitation redeemable again (the account it was taken for could not be
    /// created or changed).
    async fn release_invitation(&self, hash: &str) -> Result<()>;
}
