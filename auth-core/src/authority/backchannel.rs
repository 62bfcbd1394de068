//! OpenID Connect Back-Channel Logout 1.0: when a browser session ends, each client that
//! registered a `backchannel_logout_uri` and got tokens from that session (a code exchange from
//! it started a refresh family of the client) is sent a logout token naming the user and the
//! session. The tokens are made here; sending them is the HTTP layer's job, handed over through
//! [`LogoutDelivery`] so that no relying party, slow or dead, ever holds up a sign-out. Without a
//! delivery (commands that only read, or tests), nothing is made.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::Authority;
use crate::random::random_id;
use crate::tokens::{ID_TOKEN_ALGORITHM, LogoutTokenClaims, sign_logout_token};
use crate::Result;

/// A logout token on its way to a relying party.
#[derive(Clone, PartialEq, Eq)]
pub struct BackchannelLogout {
    /// The client it is for.
    pub client_id: String,
    /// Its `backchannel_logout_uri`.
    pub uri: String,
    /// The signed logout token.
    pub token: String,
    /// The user signed out.
    pub user_id: String,
    /// The browser session that ended.
    pub browser_session: String,
}

/// The token is a credential of sorts: debug output leaves it out.
impl std::fmt::Debug for BackchannelLogout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackchannelLogout")
            .field("client_id", &self.client_id)
            .field("uri", &self.uri)
            .field("browser_session", &self.browser_session)
            .finish_non_exhaustive()
    }
}

/// Sends logout tokens to relying parties. Must return at once: delivery happens elsewhere.
pub trait LogoutDelivery: Send + Sync + std::fmt::Debug {
    /// Queues `logout` for delivery.
    fn deliver(&self, logout: BackchannelLogout);
}

impl Authority {
    /// Sends logout tokens through `delivery` whenever a browser session ends.
    pub fn with_logout_delivery(mut self, delivery: Arc<dyn LogoutDelivery>) -> Self {
        self.logout_delivery = Some(delivery);
        self
    }

    /// Whether some client of the spec registered a `backchannel_logout_uri` and a delivery is
    /// set: only then is anything looked up when a session ends.
    pub(super) fn sends_backchannel_logouts(&self) -> bool {
        self.logout_delivery.is_some() && self.spec.clients.values().any(|c| c.backchannel_logout_uri.is_some())
    }

    /// The clients that got tokens from browser session `id` (a code exchange from it started a
    /// refresh family of theirs) and registered a `backchannel_logout_uri`, but for those whose
    /// consent was withdrawn since (they were told then).
    pub(super) async fn backchannel_logout_clients(&self, id: &str) -> Result<BTreeSet<String>> {
        let mut clients = BTreeSet::new();
        if !self.sends_backchannel_logouts() {
            return Ok(clients);
        }
        for family in self.store.browser_session_families(id).await? {
            // A session ended by withdrawn consent was reported to its client then.
            if let Some(family) = self.store.family(&family).await?
                && family.revoked_reason.as_deref() != Some(super::REASON_CONSENT_REVOKED)
                && self.spec.clients.get(&family.client_id).is_some_and(|c| c.backchannel_logout_uri.is_some())
            {
                clients.insert(family.client_id);
            }
        }
        Ok(clients)
    }

    /// Sends each of `clients` a logout token for browser session `id` of `user_id`. A failure
    /// to sign is logged, never the sign-out's failure: the session has ended all the same.
    pub(super) async fn send_backchannel_logouts(&self, user_id: &str, id: &str, clients: &BTreeSet<String>) {
        let Some(delivery) = &self.logout_delivery else { return };
        for client_id in clients {
            let Some(uri) = self.spec.clients.get(client_id).and_then(|c| c.backchannel_logout_uri.clone()) else { continue };
            match self.logout_token(client_id, user_id, id) {
                Ok(token) => delivery.deliver(BackchannelLogout {
                    client_id: client_id.clone(),
                    uri,
                    token,
                    user_id: user_id.to_owned(),
                    browser_session: id.to_owned(),
                }),
                Err(e) => tracing::error!(client_id = %client_id, error = %e, "could not sign a back-channel logout token"),
            }
        }
    }

    /// A logout token for `client_id` (Back-Channel Logout 1.0 section 2.4), signed by the RS256
    /// chain like ID tokens.
    fn logout_token(&self, client_id: &str, user_id: &str, id: &str) -> Result<String> {
        let snapshot = self.keys.snapshot()?;
        let key = snapshot.signer(ID_TOKEN_ALGORITHM)?;
        let jti = random_id(self.entropy.as_ref())?;
        let claims = LogoutTokenClaims::new(&self.spec.issuer, client_id, user_id, id, jti, self.clock.now());
        sign_logout_token(key, &claims)
    }
}
