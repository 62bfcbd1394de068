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
    /// An access token without a session (client credentials) was revoked before its expiry.
    AccessTokenRevoked,
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
    /// An operator unpublished a key at once (a compromised key); its tokens fail.
    KeyRevoked,
    /// An operator or an admin client changed a user's custom claims.
    UserClaimsChanged,
    /// An invitation was created.
    InvitationCreated,
    /// An invitation was redeemed, at sign-up or by a signed-in user.
    InvitationUsed,
    /// A user signed in on the hosted pages: a browser session began.
    BrowserSignIn,
    /// A browser session ended (sign-out, or all of a user's sessions).
    BrowserSessionEnded,
    /// An authorization code was exchanged: a new session (refresh family) began.
    CodeExchanged,
    /// An authorization code was presented again: the session it started was revoked.
    CodeReuseDetected,
    /// A user allowed a third-party client scopes on the consent page.
    ConsentGranted,
    /// A user withdrew a client's consent: its sessions of that client were revoked.
    ConsentRevoked,
    /// A relying party accepted a back-channel logout token (OpenID Connect Back-Channel Logout).
    BackchannelLogoutSent,
    /// A back-channel logout token could not be delivered, retries included.
    BackchannelLogoutFailed,
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
            Self::AccessTokenRevoked => "access_token_revoked",
            Self::FamilyRevoked => "session_revoked",
            Self::ClientCreated => "client_created",
            Self::KeyGenerated => "key_generated",
            Self::KeyActivated => "key_activated",
            Self::KeyRetiring => "key_retiring",
            Self::KeyRetired => "key_retired",
            Self::KeyRewrapped => "key_rewrapped",
            Self::KeyRevoked => "key_revoked",
            Self::UserClaimsChanged => "user_claims_changed",
            Self::InvitationCreated => "invitation_created",
            Self::InvitationUsed => "invitation_used",
            Self::BrowserSignIn => "browser_sign_in",
            Self::BrowserSessionEnded => "browser_session_ended",
            Self::CodeExchanged => "code_exchanged",
            Self::CodeReuseDetected => "code_reuse_detected",
            Self::ConsentGranted => "consent_granted",
            Self::ConsentRevoked => "consent_revoked",
            Self::BackchannelLogoutSent => "backchannel_logout_sent",
            Self::BackchannelLogoutFailed => "backchannel_logout_failed",
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

/// Refusals repeated by attackers (guesses at a locked account, one password sprayed over many
/// accounts) would each be a row: cheap to send, costly to keep. [`RepeatedRefusals`] lets the
/// first refusal of a kind for the same user, client and reason through at once, and counts the
/// ones that follow within a window; when the window has ended, one summary row stands for them
/// (`detail.repeated`, `detail.first_at`, `detail.last_at`, and the last refusal's detail).
///
/// Memory is bounded: at most `capacity` open windows; refusals beyond it are counted together
/// under their kind alone (no user, no client, `detail.reason = "others"`).
#[derive(Debug)]
pub struct RepeatedRefusals {
    window_ms: i64,
    capacity: usize,
    open: std::sync::Mutex<std::collections::HashMap<RefusalKey, Tally>>,
}

/// What makes refusals the same: kind, user, client and the reason (or the limit) in the detail.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RefusalKey {
    kind: AuditKind,
    user_id: Option<String>,
    client_id: Option<String>,
    reason: Option<String>,
}

#[derive(Debug)]
struct Tally {
    opened_at: UnixMillis,
    repeated: u64,
    first_at: UnixMillis,
    last: AuditEvent,
}

impl RepeatedRefusals {
    /// Windows of `window_ms` (from each key's first refusal), at most `capacity` open at once.
    pub fn new(window_ms: i64, capacity: usize) -> Self {
        Self { window_ms: window_ms.max(1), capacity: capacity.max(1), open: std::sync::Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<RefusalKey, Tally>> {
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes a refusal; returns the rows to write now: the refusal itself when it opens a window,
    /// and the summary of the key's previous window when that has ended.
    pub fn note(&self, event: AuditEvent) -> Vec<AuditEvent> {
        let reason = ["reason", "limit"].iter().find_map(|field| event.detail.get(*field)?.as_str().map(str::to_owned));
        let mut key = RefusalKey { kind: event.kind, user_id: event.user_id.clone(), client_id: event.client_id.clone(), reason };
        let mut open = self.lock();
        let mut rows = Vec::new();
        if let Some(tally) = open.get(&key) {
            if event.at - tally.opened_at >= self.window_ms {
                rows.extend(open.remove(&key).and_then(|tally| tally.summary(&key)));
            }
        } else if open.len() >= self.capacity {
            key = RefusalKey { kind: event.kind, user_id: None, client_id: None, reason: Some("others".to_owned()) };
        }
        match open.get_mut(&key) {
            Some(tally) => {
                if tally.repeated == 0 {
                    tally.first_at = event.at;
                }
                tally.repeated += 1;
                tally.last = event;
            }
            None => {
                open.insert(key, Tally { opened_at: event.at, repeated: 0, first_at: event.at, last: event.clone() });
                rows.push(event);
            }
        }
        rows
    }

    /// The summaries of the windows ended by `now` (all of them when `all`), which are closed.
    pub fn due(&self, now: UnixMillis, all: bool) -> Vec<AuditEvent> {
        let mut open = self.lock();
        let ended: Vec<RefusalKey> =
            open.iter().filter(|(_, t)| all || now - t.opened_at >= self.window_ms).map(|(k, _)| k.clone()).collect();
        ended.into_iter().filter_map(|key| open.remove(&key).and_then(|tally| tally.summary(&key))).collect()
    }

    /// Windows open now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no window is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Tally {
    /// One row for the refusals of `key` after the first; none if there were none.
    fn summary(self, key: &RefusalKey) -> Option<AuditEvent> {
        if self.repeated == 0 {
            return None;
        }
        let mut row = self.last;
        row.id = 0;
        row.user_id.clone_from(&key.user_id);
        row.client_id.clone_from(&key.client_id);
        let mut detail = match row.detail {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        if row.user_id.is_none() && key.reason.as_deref() == Some("others") {
            detail.insert("reason".to_owned(), "others".into());
        }
        detail.insert("repeated".to_owned(), self.repeated.into());
        detail.insert("first_at".to_owned(), self.first_at.into());
        detail.insert("last_at".to_owned(), row.at.into());
        row.detail = serde_json::Value::Object(detail);
        Some(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(at: UnixMillis, user: &str, limit: &str) -> AuditEvent {
        AuditEvent::new(at, AuditKind::LoginLockedOut)
            .user(user)
            .client("web")
            .detail(serde_json::json!({ "limit": limit, "retry_after_secs": 12 }))
    }

    #[test]
    fn the_first_refusal_is_written_and_the_rest_summarised() {
        let log = RepeatedRefusals::new(60_000, 100);
        assert_eq!(log.note(refusal(1_000, "u1", "account")).len(), 1);
        for at in 2_000..2_100 {
            assert!(log.note(refusal(at, "u1", "account")).is_empty());
        }
        // Another user, or another limit, is another window.
        assert_eq!(log.note(refusal(3_000, "u2", "account")).len(), 1);
        assert_eq!(log.note(refusal(3_000, "u1", "source")).len(), 1);
        assert!(log.due(60_999, false).is_empty(), "no window has ended");
        let due = log.due(61_000, false);
        assert_eq!(due.len(), 1, "u1's window ended; the others had nothing to summarise or are still open");
        assert_eq!(due[0].user_id.as_deref(), Some("u1"));
        assert_eq!(due[0].detail["repeated"], 100);
        assert_eq!(due[0].detail["first_at"], 2_000);
        assert_eq!(due[0].detail["last_at"], 2_099);
        assert_eq!(due[0].detail["limit"], "account");
        assert_eq!(log.len(), 2);
        // A refusal after the window opens a new one and is written.
        assert_eq!(log.note(refusal(70_000, "u1", "account")).len(), 1);
    }

    #[test]
    fn a_refusal_after_the_window_brings_the_summary_with_it() {
        let log = RepeatedRefusals::new(1_000, 100);
        log.note(refusal(0, "u1", "account"));
        log.note(refusal(10, "u1", "account"));
        let rows = log.note(refusal(5_000, "u1", "account"));
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].detail["repeated"], 1);
        assert!(rows[1].detail.get("repeated").is_none());
    }

    #[test]
    fn beyond_capacity_refusals_are_counted_together() {
        let log = RepeatedRefusals::new(60_000, 3);
        let mut written = 0;
        for i in 0..1_000 {
            written += log.note(refusal(i, &format!("u{i}"), "account")).len();
        }
        // Three windows of their own, and one for the others.
        assert_eq!(written, 4);
        assert_eq!(log.len(), 4);
        let summaries = log.due(0, true);
        assert_eq!(summaries.len(), 1);
        assert_eq!(summaries[0].detail["repeated"], 996);
        assert!(summaries[0].user_id.is_none() && summaries[0].client_id.is_none());
        assert_eq!(summaries[0].detail["reason"], "others");
        assert!(log.is_empty());
    }
}
