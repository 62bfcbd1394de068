//! Audit events: every issuance path (login, refresh, client credentials, revoke, reuse detected,
//! key rotation, lockout) appends one, with who, what, when and why.

use serde::{Deserialize, Serialize};

use crate::clock::UnixMillis;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditKind {
    /// A user signed up.
    UserCreated,
    /// A user was disabled (and its sessions ended).
    UserDisabled,
    /// Password grant succeeded: a new session (refresh family) began.
    LoginSucceeded,
    /// Password grant failed.
    LoginFailed,
    /// An account was locked out after repeated failures.
    LoginLockedOut,
    /// A refresh token was rotated.
    RefreshRotated,
    /// A refresh token was presented again within the reuse grace and got the same successor.
    RefreshRetried,
    /// A refresh token was presented again after the grace: the family was revoked.
    RefreshReuseDetected,
    /// Client-credentials grant issued a token.
    ClientCredentialsIssued,
    /// A refresh family (login session) was revoked (logout, revocation endpoint, admin).
    #[serde(rename = "session_revoked")]
    FamilyRevoked,
    /// A client was registered.
    ClientCreated,
    /// A signing key was generated (pending or first active).
    KeyGenerated,
    /// A pending key became the active signer.
    KeyActivated,
    /// A key stopped signing and now only verifies.
    KeyRetiring,
    /// A key left the JWKS and its private half was erased.
    KeyRetired,
    /// A key's private half was sealed again under a new master key.
    KeyRewrapped,
    /// An operator or an admin client changed a user's custom claims.
    UserClaimsChanged,
    /// An invitation was created.
    InvitationCreated,
    /// An invitation was redeemed, at sign-up or by a signed-in user.
    InvitationUsed,
}

impl AuditKind {
    /// The stable name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserCreated => "user_created",
            Self::UserDisabled => "user_disabled",
            Self::LoginSucceeded => "login_succeeded",
            Self::LoginFailed => "login_failed",
            Self::LoginLockedOut => "login_locked_out",
            Self::RefreshRotated => "refresh_rotated",
            Self::RefreshRetried => "refresh_retried",
            Self::RefreshReuseDetected => "refresh_reuse_detected",
            Self::ClientCredentialsIssued => "client_credentials_issued",
            Self::FamilyRevoked => "session_revoked",
            Self::ClientCreated => "client_created",
            Self::KeyGenerated => "key_generated",
            Self::KeyActivated => "key_activated",
            Self::KeyRetiring => "key_retiring",
            Self::KeyRetired => "key_retired",
            Self::KeyRewrapped => "key_rewrapped",
            Self::UserClaimsChanged => "user_claims_changed",
            Self::InvitationCreated => "invitation_created",
            Self::InvitationUsed => "invitation_used",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
    }
}

/// One audit record. Never holds a secret: no passwords, tokens or key material.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Database id (0 before it is stored).
    pub id: i64,
    /// When, in Unix milliseconds.
    pub at: UnixMillis,
    /// What.
    pub kind: AuditKind,
    /// The user concerned, if any.
    pub user_id: Option<String>,
    /// The client concerned, if any.
    pub client_id: Option<String>,
    /// The refresh family (`sid`) concerned, if any. Stored and shown as `session_id`: in tokens,
    /// the HTTP API and the audit trail a family is the user's login session.
    #[serde(rename = "session_id")]
    pub family_id: Option<String>,
    /// Why, and other non-secret details (scope, kid, reason).
    pub detail: serde_json::Value,
}

impl AuditEvent {
    /// A new event with no subject; fill the fields that apply.
    pub fn new(at: UnixMillis, kind: AuditKind) -> Self {
        Self { id: 0, at, kind, user_id: None, client_id: None, family_id: None, detail: serde_json::Value::Null }
    }

    /// Sets the user.
    pub fn user(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// Sets the client.
    pub fn client(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// Sets the refresh family.
    pub fn family(mut self, family_id: impl Into<String>) -> Self {
        self.family_id = Some(family_id.into());
        self
    }

    /// Sets the detail object.
    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}
