//! What the spec says about signing in through the browser: the `[browser]` lifetimes, and the
//! rules for the redirect URIs and web origins that clients register.
//!
//! Redirect URIs are compared byte for byte with what a client sends (OAuth 2.1 section 4.1.1),
//! with one exception from RFC 8252 section 7.3: a native app's loopback redirect
//! (`http://127.0.0.1/...` or `http://[::1]/...`) matches on any port, since the app listens on
//! whatever port the system gave it. Registration is strict so that matching can stay simple: no
//! fragments, no wildcards, https except for loopback addresses and (for public clients) private-use
//! URI schemes in reverse-domain form (RFC 8252 section 7.1).

use serde::{Deserialize, Serialize};

use super::{Seconds, SpecError};

/// `[browser]`: lifetimes of what the hosted sign-in pages create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrowserPolicy {
    /// How long an authorization code may wait for its exchange. Default 60s (at most 10m).
    #[serde(default = "BrowserPolicy::default_code_ttl")]
    pub code_ttl: Seconds,
    /// A browser session ends after this long without use. Default 3d.
    #[serde(default = "BrowserPolicy::default_session_idle_ttl")]
    pub session_idle_ttl: Seconds,
    /// A browser session ends this long after sign-in, used or not. Default 30d.
    #[serde(default = "BrowserPolicy::default_session_absolute_ttl")]
    pub session_absolute_ttl: Seconds,
}

impl BrowserPolicy {
    fn default_code_ttl() -> Seconds {
        Seconds(60)
    }

    fn default_session_idle_ttl() -> Seconds {
        Seconds(3 * 86_400)
    }

    fn default_session_absolute_ttl() -> Seconds {
        Seconds(30 * 86_400)
    }

    pub(super) fn is_default(&self) -> bool {
        *self == Self::default()
    }

    pub(super) fn validate(&self) -> Result<(), SpecError> {
        if self.code_ttl.0 == 0 || self.code_ttl.0 > 600 {
            return Err(SpecError::invalid("browser.code_ttl", "must be between 1s and 10m (RFC 6749 4.1.2)"));
        }
        if self.session_idle_ttl.0 == 0 {
            return Err(SpecError::invalid("browser.session_idle_ttl", "must be at least 1s"));
        }
        if self.session_idle_ttl > self.session_absolute_ttl {
            return Err(SpecError::invalid(
                "browser.session_idle_ttl",
                format!("({}) must not exceed browser.session_absolute_ttl ({})", self.session_idle_ttl, self.session_absolute_ttl),
            ));
        }
        Ok(())
    }
}

impl Default for BrowserPolicy {
    fn default() -> Self {
        Self {
            code_ttl: Self::default_code_ttl(),
            session_idle_ttl: Self::default_session_idle_ttl(),
            session_absolute_ttl: Self::default_session_absolute_ttl(),
        }
    }
}

/// Longest registered or presented redirect URI, in bytes.
pub const MAX_REDIRECT_URI_LEN: usize = 2048;

/// Checks one registered redirect URI (of `clients.<id>.<field>`); `public` clients may also use
/// private-use schemes.
pub(super) fn validate_redirect_uri(field: &str, uri: &str, public: bool) -> Result<(), SpecError> {
    let refuse = |why: &str| Err(SpecError::invalid(field, format!("{uri:?} {why}")));
    if uri.len() > MAX_REDIRECT_URI_LEN {
        return refuse("is longer than 2048 bytes");
    }
    if uri.contains('*') {
        return refuse("has a wildcard; redirect URIs are matched exactly");
    }
    let Ok(url) = url::Url::parse(uri) else { return refuse("is not an absolute URI") };
    if url.fragment().is_some() || uri.contains('#') {
        return refuse("has a fragment (RFC 6749 3.1.2)");
    }
    if url.as_str() != uri && url.as_str() != format!("{uri}/") {
        return refuse(&format!("is not in normal form (write it as {:?})", url.as_str()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return refuse("carries credentials");
    }
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if is_loopback_host(&url) => Ok(()),
        "http" => refuse("must use https (http only for loopback: 127.0.0.1, [::1], localhost)"),
        scheme if is_private_use_scheme(scheme) => {
            if public {
                Ok(())
            } else {
                refuse("uses a private-use scheme, which only public (native) clients may register")
            }
        }
        _ => refuse("must be https, loopback http, or a private-use scheme like com.example.app:/callback"),
    }
}

/// Checks a client's `backchannel_logout_uri` (of `clients.<id>.<field>`): where this service
/// POSTs logout tokens, so an absolute https URI (http only on loopback), without a fragment
/// (Back-Channel Logout 1.0 section 2.2), credentials or wildcard, at most 2048 bytes.
pub(super) fn validate_backchannel_logout_uri(field: &str, uri: &str) -> Result<(), SpecError> {
    if !(uri.starts_with("https://") || uri.starts_with("http://")) {
        return Err(SpecError::invalid(field, format!("{uri:?} must be https (http only for loopback: 127.0.0.1, [::1], localhost)")));
    }
    validate_redirect_uri(field, uri, false)
}

/// Checks one web origin (CORS) of `clients.<id>.web_origins`: scheme, host and port only.
pub(super) fn validate_web_origin(field: &str, origin: &str) -> Result<(), SpecError> {
    let refuse = |why: &str| Err(SpecError::invalid(field, format!("{origin:?} {why}")));
    if origin.contains('*') {
        return refuse("has a wildcard; origins are matched exactly");
    }
    let Ok(url) = url::Url::parse(origin) else { return refuse("is not an origin like https://app.example.com") };
    let serialized = url.origin().ascii_serialization();
    if serialized != origin {
        return refuse(&format!("is not an origin (scheme, host and port only; write it as {serialized:?})"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(&url) => Ok(()),
        _ => refuse("must be https (http only for loopback)"),
    }
}

fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// A private-use URI scheme as RFC 8252 7.1 asks for: a reverse domain name (it has a dot).
fn is_private_use_scheme(scheme: &str) -> bool {
    scheme.contains('.') && !scheme.starts_with('.') && !scheme.ends_with('.')
}

/// Whether `presented` (from a request) is the redirect URI `registered`: the same string, or,
/// for a loopback IP literal with http, the same but for the port (RFC 8252 7.3).
pub fn redirect_uri_matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    if presented.len() > MAX_REDIRECT_URI_LEN {
        return false;
    }
    let (Ok(reg), Ok(pre)) = (url::Url::parse(registered), url::Url::parse(presented)) else { return false };
    let loopback_ip = |u: &url::Url| match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    };
    if reg.scheme() != "http" || !loopback_ip(&reg) || pre.fragment().is_some() || presented.contains('#') {
        return false;
    }
    // Compare everything but the port, on the presented string as sent: normalizing it could make
    // two different strings equal.
    let mut without_port = pre.clone();
    if without_port.set_port(reg.port()).is_err() {
        return false;
    }
    let presented_normal = pre.as_str() == presented || format!("{presented}/") == pre.as_str();
    presented_normal && reg.host() == pre.host() && without_port.as_str() == reg.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_redirects_are_strict() {
        let ok = |uri: &str, public: bool| validate_redirect_uri("f", uri, public).is_ok();
        assert!(ok("https://app.example.com/callback", false));
        assert!(ok("http://127.0.0.1/callback", true));
        assert!(ok("http://[::1]:8080/cb", true));
        assert!(ok("http://localhost:3000/cb", false));
        assert!(ok("com.example.app:/oauth", true));
        assert!(!ok("com.example.app:/oauth", false), "private-use schemes are for native (public) clients");
        assert!(!ok("http://app.example.com/cb", true), "http beyond loopback");
        assert!(!ok("https://app.example.com/cb#x", true), "fragment");
        assert!(!ok("https://*.example.com/cb", true), "wildcard");
        assert!(!ok("javascript:alert(1)", true));
        assert!(!ok("data:text/html,x", true));
        assert!(!ok("myapp:/cb", true), "a private-use scheme must be a reverse domain name");
        assert!(!ok("https://user:pw@app.example.com/cb", false));
        assert!(!ok("/relative", false));
        assert!(!ok("HTTPS://APP.example.com/cb", false), "not in normal form");
    }

    #[test]
    fn backchannel_logout_uris_are_https_or_loopback_http() {
        let ok = |uri: &str| validate_backchannel_logout_uri("clients.c.backchannel_logout_uri", uri).is_ok();
        assert!(ok("https://app.example.com/backchannel-logout"));
        assert!(ok("https://app.example.com/logout?from=op"), "a query is allowed (section 2.2)");
        assert!(ok("http://127.0.0.1:8081/logout"));
        assert!(ok("http://[::1]/logout"));
        assert!(ok("http://localhost:3000/logout"));
        assert!(!ok("http://app.example.com/logout"), "http beyond loopback");
        assert!(!ok("https://app.example.com/logout#x"), "fragment");
        assert!(!ok("com.example.app:/logout"), "private-use schemes cannot receive a POST");
        assert!(!ok("/logout"), "relative");
        assert!(!ok("https://*.example.com/logout"), "wildcard");
        assert!(!ok("https://user:pw@app.example.com/logout"), "credentials");
        assert!(!ok(&format!("https://app.example.com/{}", "a".repeat(MAX_REDIRECT_URI_LEN))), "too long");
        let Err(SpecError::Invalid { field, .. }) = validate_backchannel_logout_uri("clients.c.backchannel_logout_uri", "ftp://x.example/") else {
            panic!("ftp accepted")
        };
        assert_eq!(field, "clients.c.backchannel_logout_uri");
    }

    #[test]
    fn web_origins_are_origins() {
        assert!(validate_web_origin("f", "https://app.example.com").is_ok());
        assert!(validate_web_origin("f", "http://localhost:5173").is_ok());
        assert!(validate_web_origin("f", "https://app.example.com/").is_err());
        assert!(validate_web_origin("f", "https://*.example.com").is_err());
        assert!(validate_web_origin("f", "http://app.example.com").is_err());
        assert!(validate_web_origin("f", "null").is_err());
    }

    #[test]
    fn redirects_match_exactly_but_loopback_ports() {
        let registered = "https://app.example.com/callback";
        assert!(redirect_uri_matches(registered, registered));
        for other in [
            "https://app.example.com/callback/",
            "https://app.example.com/callback?x=1",
            "https://app.example.com/Callback",
            "https://app.example.com:443/callback",
            "https://app.example.com.evil.test/callback",
            "https://app.example.com:8443/callback",
        ] {
            assert!(!redirect_uri_matches(registered, other), "{other}");
        }
        let native = "http://127.0.0.1/callback";
        assert!(redirect_uri_matches(native, "http://127.0.0.1:49152/callback"));
        assert!(redirect_uri_matches("http://[::1]:80/cb", "http://[::1]:1234/cb"));
        assert!(!redirect_uri_matches(native, "http://127.0.0.1:49152/other"));
        assert!(!redirect_uri_matches(native, "http://127.0.0.2:49152/callback"));
        assert!(!redirect_uri_matches(native, "http://127.0.0.1:49152/callback#x"));
        assert!(!redirect_uri_matches(native, "http://127.0.0.1:49152/./callback"), "not as sent");
        // localhost is a name, not an address: exact match only (RFC 8252 8.3).
        assert!(!redirect_uri_matches("http://localhost/cb", "http://localhost:3000/cb"));
    }
}
