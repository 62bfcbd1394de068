//! Login throttling that slows guessing without letting anyone lock the owner out (OWASP's
//! "device cookies"), and a budget of failures per source address against password spraying.
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
//! Spraying (one password tried on many accounts, a few guesses each) stays under every account's
//! allowance; a source address (an IPv6 /64, since one host holds a whole /64) therefore also has a
//! budget of failed logins across all accounts. It is read before the attempt and charged only when
//! the password was wrong, so that the many users behind one address (a hotel's network) who log
//! in correctly spend nothing; a trusted device neither reads nor spends it. Concurrent attempts
//! read it before any of them fails, so a source may overshoot it by the number of password checks
//! running at once.
//!
//! Requests that fail client authentication never reach an allowance. Allowance keys are the
//! SHA-256 of the normalized username (or of the device token), so their size does not depend on
//! what was sent and unknown names cost the same as known ones.

use std::net::IpAddr;

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

    /// Takes one login attempt from the allowance of the device (a device token of `user` in
    /// `login`) or, for unknown devices, of the account (`account`, the normalized username), after
    /// reading that the source has failures left; refuses with [`Error::TooManyAttempts`] (and a
    /// `login_locked_out` audit event) when either is spent. The [`Attempt`] tells
    /// [`Authority::charge_login_failure`] what a wrong password costs.
    pub(super) async fn charge_login_attempt(
        &self,
        client_id: &str,
        account: &str,
        user: Option<&UserRecord>,
        login: &PasswordLogin<'_>,
    ) -> Result<Attempt> {
        let Some(limits) = &self.login_limits else { return Ok(Attempt { source_key: None }) };
        let trusted = match (login.device_token, user) {
            (Some(token), Some(user)) => self.is_trusted_device(token, user),
            _ => false,
        };
        let now_ms = self.clock.now_ms();
        let source_key = match login.source {
            Some(source) if !trusted => Some(ScopeLimiter::key("login-failures", &source_key(source))),
            _ => None,
        };
        if let Some(key) = &source_key {
            let budget = limits.backend.peek(key, limits.quotas.source_failures, now_ms).await?;
            if !budget.allowed {
                return Err(self.refuse_login(client_id, user, budget.retry_after_secs(), "source").await);
            }
        }
        let (key, limit) = match login.device_token {
            Some(token) if trusted => (ScopeLimiter::key("login-device", &hash_secret(token)), "device"),
            _ => (ScopeLimiter::key("login", &hash_secret(account)), "account"),
        };
        let decision = limits.backend.check(&key, limits.quotas.attempts, now_ms).await?;
        if !decision.allowed {
            return Err(self.refuse_login(client_id, user, decision.retry_after_secs(), limit).await);
        }
        Ok(Attempt { source_key })
    }

    /// Charges a wrong password to its source's budget of failures (when it has one). A limiter
    /// that fails here is logged, not answered: the answer is the wrong password's either way.
    pub(super) async fn charge_login_failure(&self, attempt: &Attempt) {
        let (Some(limits), Some(key)) = (&self.login_limits, &attempt.source_key) else { return };
        if let Err(e) = limits.backend.check(key, limits.quotas.source_failures, self.clock.now_ms()).await {
            tracing::warn!(error = %e, "could not charge a failed login to its source");
        }
    }

    /// The refusal of a login whose `limit` (`account`, `device` or `source`) is spent, audited.
    async fn refuse_login(&self, client_id: &str, user: Option<&UserRecord>, retry: Option<u64>, limit: &str) -> Error {
        let retry_after_secs = retry.unwrap_or(1).max(1);
        let mut event = AuditEvent::new(self.clock.now_ms(), AuditKind::LoginLockedOut)
            .client(client_id)
            .detail(serde_json::json!({ "retry_after_secs": retry_after_secs, "limit": limit }));
        if let Some(user) = user {
            event = event.user(&user.id);
        }
        if let Err(e) = self.audit_refusal(event).await {
            tracing::warn!(error = %e, "could not record a lockout");
        }
        Error::TooManyAttempts { retry_after_secs }
    }

    /// Takes one sign-up from the allowance of `source` (the client's address; the spec's
    /// `sign_up.per_source`), on the login limits' backend; [`Error::TooManySignUps`] when none is
    /// left. Without login limits configured, every sign-up is admitted.
    pub async fn admit_sign_up(&self, source: std::net::IpAddr) -> Result<()> {
        let Some(limits) = &self.login_limits else { return Ok(()) };
        let key = ScopeLimiter::key("sign-up", &source_key(source));
        let decision = limits.backend.check(&key, self.spec.sign_up.per_source, self.clock.now_ms()).await?;
        if decision.allowed {
            return Ok(());
        }
        Err(Error::TooManySignUps { retry_after_secs: decision.retry_after_secs().unwrap_or(1).max(1) })
    }
}

/// One password login as the client sent it.
#[derive(Debug, Clone, Copy, Default)]
pub struct PasswordLogin<'a> {
    /// The username as sent.
    pub username: &'a str,
    /// The password.
    pub password: &'a str,
    /// The requested scope.
    pub scope: Option<&'a str>,
    /// The device token of this device's previous login.
    pub device_token: Option<&'a str>,
    /// The client's address, for the budget of failures per source; none when unknown.
    pub source: Option<IpAddr>,
}

/// What a charged login attempt leaves for after the password check.
#[derive(Debug)]
pub(super) struct Attempt {
    /// The source's budget of failures, when a wrong password spends it.
    source_key: Option<String>,
}

/// The limiter key of a source address: an IPv4 address (IPv4-mapped IPv6 included) as it is, an
/// IPv6 address by its /64, which one host (or one customer of an ISP) usually holds whole.
pub fn source_key(source: IpAddr) -> String {
    match source {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::source_key;

    #[test]
    fn sources_are_addresses_and_ipv6_prefixes() {
        let key = |text: &str| source_key(text.parse().unwrap_or_else(|_| panic!("{text}")));
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:ffff:ffff:ffff:ffff"), key("2001:db8:1:2::1"));
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
    }
}
