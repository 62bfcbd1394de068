//! Login throttling that slows guessing without letting anyone lock the owner out (OWASP's
//! "device cookies").
//!
//! Every password attempt takes one unit of an allowance before the password is checked, so that
//! parallel guesses cannot slip past it; which allowance depends on the device:
//!
//! - A device that logged in to this account before presents the device token it was given then
//!   (sealed under the master key: the user's id and when it was issued). It has an allowance of
//!   its own, which guesses from elsewhere cannot spend.
//! - Every other request shares the account's allowance for unknown devices. Exhausting it (five
//!   guesses a minute by default) stops guessing from anywhere, but not the owner's next login from
//!   a trusted device.
//!
//! Requests that fail client authentication never reach an allowance. Allowance keys are the
//! SHA-256 of the normalized username (or of the device token), so their size does not depend on
//! what was sent and unknown names cost the same as known ones.

use super::{Authority, base64_url, hash_secret};
use crate::audit::{AuditEvent, AuditKind};
use crate::random::OsEntropy;
use crate::ratelimit::ScopeLimiter;
use crate::store::UserRecord;
use crate::{Error, Result};

/// What a device token is sealed for (the AEAD's associated data).
const DEVICE_CONTEXT: &str = "auth-core device token v1";
/// How long a device stays trusted after its last login (each login gives a new token).
pub const DEVICE_TOKEN_TTL_SECS: i64 = 180 * 24 * 3600;
/// Longer device tokens are not read (they are about 90 characters).
const MAX_DEVICE_TOKEN_LEN: usize = 256;

impl Authority {
    /// A new device token for `user_id`, to be presented at the user's next logins from the same
    /// device. Its nonce comes from the operating system's generator rather than the injected
    /// entropy, which recordings replay as a fixed stream: a device token is not part of what
    /// they record, and drawing from that stream would shift every value drawn after it.
    pub(super) fn device_token(&self, user_id: &str) -> Result<String> {
        let payload = format!("{user_id}\n{}", self.clock.now());
        Ok(base64_url(&self.keys.seal(DEVICE_CONTEXT, payload.as_bytes(), &OsEntropy::new())?))
    }

    /// Whether `token` is a live device token of `user`.
    fn is_trusted_device(&self, token: &str, user: &UserRecord) -> bool {
        use base64::Engine as _;
        if token.len() > MAX_DEVICE_TOKEN_LEN {
            return false;
        }
        let Ok(sealed) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token) else { return false };
        let Some(payload) = self.keys.open(DEVICE_CONTEXT, &sealed) else { return false };
        let Some((user_id, issued_at)) = std::str::from_utf8(&payload).ok().and_then(|p| p.split_once('\n')) else {
            return false;
        };
        let fresh = issued_at.parse::<i64>().is_ok_and(|at| self.clock.now() - at < DEVICE_TOKEN_TTL_SECS);
        user_id == user.id && fresh
    }

    /// Takes one login attempt from the allowance of the device (`device`, a device token of
    /// `user`) or, for unknown devices, of the account (`account`, the normalized username);
    /// refuses with [`Error::TooManyAttempts`] (and a `login_locked_out` audit event) when none is
    /// left.
    pub(super) async fn charge_login_attempt(
        &self,
        client_id: &str,
        account: &str,
        user: Option<&UserRecord>,
        device: Option<&str>,
    ) -> Result<()> {
        let Some(limits) = &self.login_limits else { return Ok(()) };
        let trusted = match (device, user) {
            (Some(token), Some(user)) => self.is_trusted_device(token, user),
            _ => false,
        };
        let key = match device {
            Some(token) if trusted => ScopeLimiter::key("login-device", &hash_secret(token)),
            _ => ScopeLimiter::key("login", &hash_secret(account)),
        };
        let now_ms = self.clock.now_ms();
        let decision = limits.backend.check(&key, limits.quota, now_ms).await?;
        if decision.allowed {
            return Ok(());
        }
        let retry_after_secs = decision.retry_after_secs().unwrap_or(1).max(1);
        let mut event = AuditEvent::new(now_ms, AuditKind::LoginLockedOut)
            .client(client_id)
            .detail(serde_json::json!({
                "retry_after_secs": retry_after_secs,
                "device": if trusted { "trusted" } else { "unknown" },
            }));
        if let Some(user) = user {
            event = event.user(&user.id);
        }
        if let Err(e) = self.audit(event).await {
            tracing::warn!(error = %e, "could not record a lockout");
        }
        Err(Error::TooManyAttempts { retry_after_secs })
    }

    /// Takes one sign-up from the allowance of `source` (the client's address; the spec's
    /// `sign_up.per_source`), on the login limits' backend; [`Error::TooManySignUps`] when none is
    /// left. Without login limits configured, every sign-up is admitted.
    pub async fn admit_sign_up(&self, source: std::net::IpAddr) -> Result<()> {
        let Some(limits) = &self.login_limits else { return Ok(()) };
        let key = ScopeLimiter::key("sign-up", &source.to_string());
        let decision = limits.backend.check(&key, self.spec.sign_up.per_source, self.clock.now_ms()).await?;
        if decision.allowed {
            return Ok(());
        }
        Err(Error::TooManySignUps { retry_after_secs: decision.retry_after_secs().unwrap_or(1).max(1) })
    }
}
