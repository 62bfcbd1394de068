//! Consent for third-party clients: whether an authorization needs the user's consent, recording
//! it, and withdrawing it.
//!
//! The rule ([`needs_consent`]): a first-party client never asks; a third-party one asks when the
//! request says `prompt=consent`, or when any scope it requests (`openid` included) was not
//! granted before. Consent adds up: allowing `bookings:write` later keeps `bookings:read`.
//! Withdrawing a consent also ends the user's sessions (refresh families) of that client, so that
//! what the client holds stops working with it.

use super::{Authority, Authorization};
use crate::audit::{AuditEvent, AuditKind};
use crate::store::{BrowserSessionRecord, ConsentRecord};
use crate::Result;

/// Longest client id looked up when a consent is withdrawn (the spec's ids are shorter).
const MAX_CLIENT_ID_LEN: usize = 128;
/// Revocation reason of the sessions ended with their client's consent.
pub const REASON_CONSENT_REVOKED: &str = "consent_revoked";

/// Whether `authorization` needs the user's consent, given what the user granted its client
/// before (`granted`).
pub fn needs_consent(authorization: &Authorization, granted: Option<&ConsentRecord>) -> bool {
    if authorization.first_party {
        return false;
    }
    authorization.prompt.consent || !granted.is_some_and(|g| g.covers(&authorization.scope))
}

impl Authority {
    /// Whether `authorization` needs the consent of `user_id` (see [`needs_consent`]); a
    /// first-party client is answered without reading the store.
    pub async fn needs_consent(&self, authorization: &Authorization, user_id: &str) -> Result<bool> {
        if authorization.first_party {
            return Ok(false);
        }
        let granted = self.store.consent(user_id, &authorization.client_id).await?;
        Ok(needs_consent(authorization, granted.as_ref()))
    }

    /// Records that the user of `session` allowed the scopes of `authorization` (added to what
    /// was granted before), audited.
    pub async fn grant_consent(&self, authorization: &Authorization, session: &BrowserSessionRecord) -> Result<()> {
        // The scope was validated against the spec: only the client's own scopes and openid.
        let scopes: Vec<&str> = authorization.scope.split(' ').filter(|s| !s.is_empty()).collect();
        self.store.grant_consent(&session.user_id, &authorization.client_id, &scopes, self.clock.now()).await?;
        self.audit(
            AuditEvent::new(self.clock.now_ms(), AuditKind::ConsentGranted)
                .user(&session.user_id)
                .client(&authorization.client_id)
                .detail(serde_json::json!({ "scope": authorization.scope, "browser_session": session.id })),
        )
        .await
    }

    /// The user's consents, by client id.
    pub async fn consents_of_user(&self, user_id: &str) -> Result<Vec<ConsentRecord>> {
        self.store.user_consents(user_id).await
    }

    /// Withdraws what `user_id` granted `client_id` and ends the user's sessions of that client,
    /// audited; `false` when there was no consent (nothing changes). A value that cannot be a
    /// client id is not looked up.
    pub async fn revoke_consent(&self, user_id: &str, client_id: &str) -> Result<bool> {
        if client_id.is_empty() || client_id.len() > MAX_CLIENT_ID_LEN || client_id.chars().any(char::is_control) {
            return Ok(false);
        }
        if !self.store.revoke_consent(user_id, client_id).await? {
            return Ok(false);
        }
        let mut ended = 0u64;
        // The client's sessions end; those a browser session started are its sign-ins there,
        // which it is told of by back-channel logout when it registered for that.
        let notify = self.spec.clients.get(client_id).is_some_and(|c| c.backchannel_logout_uri.is_some());
        let mut browser_sessions = std::collections::BTreeSet::new();
        for family in self.refresh.families_of_user(user_id).await? {
            if family.client_id == client_id && self.refresh.revoke_family(&family.id, REASON_CONSENT_REVOKED).await? {
                ended += 1;
                if notify && let Some(id) = self.store.browser_session_of_family(&family.id).await? {
                    browser_sessions.insert(id);
                }
            }
        }
        let clients = std::collections::BTreeSet::from([client_id.to_owned()]);
        for id in &browser_sessions {
            self.send_backchannel_logouts(user_id, id, &clients).await;
        }
        self.audit(
            AuditEvent::new(self.clock.now_ms(), AuditKind::ConsentRevoked)
                .user(user_id)
                .client(client_id)
                .detail(serde_json::json!({ "sessions_ended": ended })),
        )
        .await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::Prompt;

    fn authorization(scope: &str, first_party: bool, prompt: Prompt) -> Authorization {
        Authorization {
            client_id: "partner".into(),
            redirect_uri: "https://partner.test/cb".into(),
            scope: scope.into(),
            state: None,
            code_challenge: String::new(),
            nonce: None,
            prompt,
            max_age: None,
            login_hint: None,
            ui_locales: Vec::new(),
            first_party,
        }
    }

    fn granted(scopes: &[&str]) -> ConsentRecord {
        ConsentRecord {
            user_id: "u1".into(),
            client_id: "partner".into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            granted_at: 0,
        }
    }

    #[test]
    fn third_party_clients_ask_for_what_was_not_granted() {
        let plain = Prompt::default();
        let asks = |scope: &str, before: Option<&ConsentRecord>| needs_consent(&authorization(scope, false, plain), before);
        assert!(asks("bookings:read", None), "nothing granted yet");
        assert!(!asks("bookings:read", Some(&granted(&["bookings:read"]))));
        assert!(!asks("openid bookings:read", Some(&granted(&["bookings:read", "openid"]))), "order does not matter");
        assert!(asks("openid bookings:read", Some(&granted(&["bookings:read"]))), "openid is a scope like the others");
        assert!(asks("bookings:read bookings:write", Some(&granted(&["bookings:read"]))), "a wider scope asks again");
        assert!(!asks("bookings:read", Some(&granted(&["bookings:read", "bookings:write"]))), "a narrower one does not");
        assert!(asks("bookings:read", Some(&granted(&[]))), "an empty record grants nothing");
    }

    #[test]
    fn prompt_consent_always_asks_and_first_party_never_does() {
        let again = Prompt { consent: true, ..Prompt::default() };
        let all = granted(&["bookings:read", "openid"]);
        assert!(needs_consent(&authorization("bookings:read", false, again), Some(&all)));
        assert!(!needs_consent(&authorization("bookings:read", true, Prompt::default()), None));
        assert!(!needs_consent(&authorization("bookings:read", true, again), None), "first-party clients have no consent page");
    }
}
