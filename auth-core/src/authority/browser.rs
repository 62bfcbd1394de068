//! Signing in through the browser (OAuth 2.1 authorization code with PKCE):
//!
//! - [`Authority::check_authorization`] validates an authorization request. Until the client and
//!   its redirect URI are known good, a refusal is shown to the user ([`AuthorizeRefusal::Page`]);
//!   after, it goes back to the client ([`AuthorizeRefusal::Redirect`]), so that the endpoint can
//!   never be made to redirect anywhere the spec did not register.
//! - [`Authority::sign_in`] is the hosted form's login: the same login path as the password grant
//!   (allowances per account and per source, argon2, audited refusals), then a browser session.
//! - [`Authority::issue_code`] and [`Authority::code_grant`]: a 256-bit code, stored as its
//!   SHA-256, bound to the client, redirect URI, PKCE challenge, scope, nonce and sign-in; taken
//!   once by a conditional update. A second exchange revokes the session the first one started
//!   (RFC 6749 4.1.2), also when it races the first. A third-party client's code is honoured
//!   only while the user's consent to its scope stands (see `consent.rs`).

use super::{Authority, Grant, ClientCredentials, PasswordLogin, base64_url, hash_secret};
use crate::audit::{AuditEvent, AuditKind};
use crate::code::Code;
use crate::error::AuthorizationCodeError;
use crate::oauth::pkce;
use crate::random::{random_32, random_id};
use crate::spec::{ClientSpec, redirect_uri_matches, MAX_REDIRECT_URI_LEN};
use crate::store::{AuthorizationCodeRecord, BrowserSessionRecord, CodeTaken, PushedRequestRecord};
use crate::tokens::{ID_TOKEN_ALGORITHM, IdTokenClaims, at_hash, sign_id_token};
use crate::{Error, Result};

/// Longest `state` accepted, in bytes.
pub const MAX_STATE_LEN: usize = 1024;
/// Longest `nonce` accepted, in bytes.
pub const MAX_NONCE_LEN: usize = 256;
/// Longest `login_hint`, in bytes.
pub const MAX_LOGIN_HINT_LEN: usize = 256;
/// Longest `ui_locales`, in bytes.
pub const MAX_UI_LOCALES_LEN: usize = 128;
/// Longest `scope`, in bytes.
pub const MAX_SCOPE_LEN: usize = 1024;
/// Longest `id_token_hint`, in bytes.
pub const MAX_ID_TOKEN_HINT_LEN: usize = 8192;
/// Codes and session cookies are 43 characters; longer ones are not looked up.
const MAX_SECRET_LEN: usize = 128;
/// A browser session's last use is written at most this often (seconds).
const TOUCH_EVERY_SECS: i64 = 60;
/// What CSRF tokens are bound to (the MAC's context).
const CSRF_CONTEXT: &str = "auth-core csrf v1";
/// The `amr` of a password sign-in (RFC 8176).
const AMR_PASSWORD: &str = "pwd";
/// The OpenID Connect scope, which any client of the code flow may request.
pub const OPENID_SCOPE: &str = "openid";
/// The OpenID Connect scope that releases the user's `preferred_username`.
pub const PROFILE_SCOPE: &str = "profile";
/// The OpenID Connect scopes any client of the code flow may request, besides the spec's.
pub const OIDC_SCOPES: &[&str] = &[OPENID_SCOPE, PROFILE_SCOPE];

/// An authorization request as sent: the query (or form) of `/oauth/authorize`. Every value is
/// as received; [`Authority::check_authorization`] bounds and checks them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct AuthorizationRequest {
    /// Must be `code`.
    pub response_type: Option<String>,
    /// The client.
    pub client_id: Option<String>,
    /// One of the client's registered redirect URIs; may be left out when it registered exactly one.
    pub redirect_uri: Option<String>,
    /// Requested scopes, space-separated.
    pub scope: Option<String>,
    /// Returned unchanged with the code.
    pub state: Option<String>,
    /// PKCE challenge: BASE64URL(SHA256(code_verifier)).
    pub code_challenge: Option<String>,
    /// Must be `S256`.
    pub code_challenge_method: Option<String>,
    /// OpenID Connect: returned in the ID token.
    pub nonce: Option<String>,
    /// `none`, `login`, `consent` (space-separated).
    pub prompt: Option<String>,
    /// Longest acceptable time since the user last signed in, in seconds.
    pub max_age: Option<String>,
    /// The username to fill in.
    pub login_hint: Option<String>,
    /// An ID token this service issued to the client, naming the user it expects.
    pub id_token_hint: Option<String>,
    /// Preferred languages of the pages, space-separated BCP 47 tags.
    pub ui_locales: Option<String>,
    /// Only `query` is supported.
    pub response_mode: Option<String>,
    /// Request objects (JAR) are not supported.
    pub request: Option<String>,
    /// A pushed request's `request_uri` (RFC 9126).
    pub request_uri: Option<String>,
}

/// The `prompt` values of a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prompt {
    /// No page may be shown: without a session (or consent), the request fails.
    pub none: bool,
    /// Sign in again even with a session.
    pub login: bool,
    /// Ask for consent even when it was given before.
    pub consent: bool,
}

/// Where an authorization request reached [`Authority::check_authorization`] from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestChannel {
    /// The browser's query or form at the authorization endpoint.
    Browser,
    /// Pushed by the authenticated client (RFC 9126), or the pushed request that a
    /// `request_uri` named.
    Pushed,
    /// The hosted sign-in and consent forms, which carry a request this service validated before
    /// and wrote into its own page; a post is taken only from that page (same origin, a CSRF
    /// token bound to the browser), so it is as trusted as the request it came from.
    HostedForm,
}

/// A stored pushed authorization request: what the client gets back (RFC 9126 section 2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedAuthorization {
    /// `urn:ietf:params:oauth:request_uri:` and 256 random bits; usable once.
    pub request_uri: String,
    /// Seconds until it stops working.
    pub expires_in: i64,
}

/// The prefix of the `request_uri` of pushed requests (RFC 9126 section 2.2).
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";
/// How long a pushed request's `request_uri` works (RFC 9126 section 2.2 suggests a short time,
/// seconds to a minute): the browser brings it right after the client pushed it.
pub const PUSHED_REQUEST_TTL_SECS: i64 = 60;

/// A validated authorization request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The client.
    pub client_id: String,
    /// Where to send the browser back (as the request gave it, or the only registered one).
    pub redirect_uri: String,
    /// The scope to grant, space-separated.
    pub scope: String,
    /// To return unchanged.
    pub state: Option<String>,
    /// The PKCE S256 challenge.
    pub code_challenge: String,
    /// The OpenID Connect nonce.
    pub nonce: Option<String>,
    /// The prompt values.
    pub prompt: Prompt,
    /// Longest acceptable time since sign-in, in seconds.
    pub max_age: Option<i64>,
    /// The username to fill in.
    pub login_hint: Option<String>,
    /// Preferred languages, in order.
    pub ui_locales: Vec<String>,
    /// Whether the client is first-party (no consent page).
    pub first_party: bool,
}

impl Authorization {
    /// Whether `session` is recent enough for this request (`prompt=login` never is; `max_age`).
    pub fn accepts_session(&self, session: &BrowserSessionRecord, now: i64) -> bool {
        !self.prompt.login && self.max_age.is_none_or(|max| now.saturating_sub(session.auth_time) <= max)
    }
}

/// Why an authorization request was refused, and where to say so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeRefusal {
    /// The client or redirect URI is not known good: shown to the user, never redirected.
    Page {
        /// The stable code.
        code: Code,
        /// What was wrong.
        detail: String,
    },
    /// Sent back to the client's redirect URI with `error`, `error_description`, `state`, `iss`.
    Redirect {
        /// The validated redirect URI.
        redirect_uri: String,
        /// The request's `state`.
        state: Option<String>,
        /// The OAuth `error` value.
        error: &'static str,
        /// The stable code (the start of `error_description`).
        code: Code,
        /// What was wrong.
        detail: String,
    },
}

/// A successful sign-in on the hosted form.
#[derive(Debug, Clone)]
pub struct BrowserSignIn {
    /// The new browser session.
    pub session: BrowserSessionRecord,
    /// The value of its cookie (only its hash is stored).
    pub cookie: String,
}

fn bounded<'a>(name: &str, value: &'a Option<String>, max: usize) -> std::result::Result<Option<&'a str>, String> {
    match value.as_deref() {
        Some(v) if v.len() > max => Err(format!("{name} is longer than {max} bytes")),
        Some(v) if v.chars().any(char::is_control) => Err(format!("{name} has control characters")),
        Some("") | None => Ok(None),
        Some(v) => Ok(Some(v)),
    }
}

impl Authority {
    /// Validates an authorization request against the spec (see [`AuthorizeRefusal`] for where a
    /// refusal goes).
    pub fn check_authorization(&self, request: &AuthorizationRequest, channel: RequestChannel) -> Result<Authorization, AuthorizeRefusal> {
        let page = |code: Code, detail: String| AuthorizeRefusal::Page { code, detail };
        let client_id = bounded("client_id", &request.client_id, 128)
            .map_err(|d| page(Code::AuthorizeInvalidClient, d))?
            .ok_or_else(|| page(Code::AuthorizeInvalidClient, "client_id is required".into()))?;
        let client = self
            .spec
            .clients
            .get(client_id)
            .filter(|c| c.allows("authorization_code"))
            .ok_or_else(|| page(Code::AuthorizeInvalidClient, "unknown client, or one without the authorization_code grant".into()))?;
        let redirect_uri = Self::redirect_uri(client, request).map_err(|d| page(Code::AuthorizeInvalidRedirectUri, d))?;
        // From here on the redirect URI is the client's own: refusals go back to it.
        let state = bounded("state", &request.state, MAX_STATE_LEN).ok().flatten().map(str::to_owned);
        let back = |error: &'static str, code: Code, detail: String| AuthorizeRefusal::Redirect {
            redirect_uri: redirect_uri.clone(),
            state: state.clone(),
            error,
            code,
            detail,
        };
        let invalid = |detail: String| back("invalid_request", Code::AuthorizeInvalidRequest, detail);
        if request.state.as_ref().is_some_and(|s| s.len() > MAX_STATE_LEN) {
            return Err(invalid(format!("state is longer than {MAX_STATE_LEN} bytes")));
        }
        if request.request.is_some() {
            return Err(back("request_not_supported", Code::AuthorizeInvalidRequest, "request objects are not supported".into()));
        }
        if request.request_uri.is_some() {
            // The authorization endpoint resolves a request_uri before it validates; a pushed
            // request may not hold one (RFC 9126 section 2.1).
            return Err(invalid("a pushed authorization request cannot hold a request_uri".into()));
        }
        if channel == RequestChannel::Browser && client.require_pushed_authorization_requests {
            return Err(invalid("this client must push its authorization requests (RFC 9126) and send their request_uri".into()));
        }
        match request.response_type.as_deref() {
            Some("code") => {}
            None | Some("") => return Err(invalid("response_type is required (code)".into())),
            Some(_) => {
                return Err(back(
                    "unsupported_response_type",
                    Code::AuthorizeUnsupportedResponseType,
                    "only response_type=code is supported".into(),
                ));
            }
        }
        if !matches!(request.response_mode.as_deref(), None | Some("query")) {
            return Err(invalid("only response_mode=query is supported".into()));
        }
        let code_challenge = match (request.code_challenge.as_deref(), request.code_challenge_method.as_deref()) {
            (None | Some(""), _) => return Err(invalid("PKCE is required: send code_challenge with code_challenge_method=S256".into())),
            (Some(_), Some(method)) if method != pkce::S256 => {
                return Err(invalid(format!("code_challenge_method {method:?} is not supported; use S256")));
            }
            (Some(_), None) => return Err(invalid("code_challenge_method=S256 is required (plain is not accepted)".into())),
            (Some(challenge), Some(_)) if !pkce::is_s256_challenge(challenge) => {
                return Err(invalid("code_challenge is not an S256 challenge (43 base64url characters)".into()));
            }
            (Some(challenge), Some(_)) => challenge.to_owned(),
        };
        let scope_text = bounded("scope", &request.scope, MAX_SCOPE_LEN).map_err(invalid)?;
        let scope = Self::authorization_scope(&self.spec, client, scope_text)
            .map_err(|e| back("invalid_scope", Code::AuthInvalidScope, e.to_string()))?;
        let nonce = bounded("nonce", &request.nonce, MAX_NONCE_LEN).map_err(invalid)?.map(str::to_owned);
        let prompt = Self::prompt(request.prompt.as_deref()).map_err(invalid)?;
        let max_age = match bounded("max_age", &request.max_age, 12).map_err(invalid)? {
            None => None,
            Some(text) => Some(text.parse::<u32>().map_err(|_| invalid("max_age is not a number of seconds".into()))?.into()),
        };
        let login_hint = bounded("login_hint", &request.login_hint, MAX_LOGIN_HINT_LEN).map_err(invalid)?.map(str::to_owned);
        bounded("id_token_hint", &request.id_token_hint, MAX_ID_TOKEN_HINT_LEN).map_err(invalid)?;
        let ui_locales = bounded("ui_locales", &request.ui_locales, MAX_UI_LOCALES_LEN)
            .map_err(invalid)?
            .map(|text| text.split(' ').filter(|t| !t.is_empty()).take(8).map(str::to_owned).collect())
            .unwrap_or_default();
        Ok(Authorization {
            client_id: client_id.to_owned(),
            redirect_uri,
            scope,
            state,
            code_challenge,
            nonce,
            prompt,
            max_age,
            login_hint,
            ui_locales,
            first_party: client.first_party,
        })
    }

    /// A client pushes an authorization request (RFC 9126): it authenticates as at the token
    /// endpoint, the request is validated as at the authorization endpoint, and it is stored
    /// under a new `request_uri`. `Err` for a client that did not authenticate
    /// ([`Error::InvalidClient`]) or an outage; `Ok(Err(_))` for a request refused.
    pub async fn push_authorization(
        &self,
        client: ClientCredentials<'_>,
        mut request: AuthorizationRequest,
    ) -> Result<Result<PushedAuthorization, AuthorizeRefusal>> {
        let spec = self.authenticate_client(client).await?;
        Self::check_grant(spec, "authorization_code")?;
        if request.client_id.as_deref().is_some_and(|id| id != client.id) {
            let detail = "client_id is not the client that authenticated".to_owned();
            return Ok(Err(AuthorizeRefusal::Page { code: Code::AuthorizeInvalidRequest, detail }));
        }
        request.client_id = Some(client.id.to_owned());
        if let Err(refusal) = self.check_authorization(&request, RequestChannel::Pushed) {
            return Ok(Err(refusal));
        }
        let request_uri = format!("{REQUEST_URI_PREFIX}{}", base64_url(&random_32(self.entropy.as_ref())?));
        let record = PushedRequestRecord {
            hash: hash_secret(&request_uri),
            client_id: client.id.to_owned(),
            request: serde_json::to_string(&request).map_err(|e| Error::Store(format!("encode a pushed request: {e}")))?,
            expires_at: self.clock.now().saturating_add(PUSHED_REQUEST_TTL_SECS),
        };
        self.store.insert_pushed_request(&record).await?;
        Ok(Ok(PushedAuthorization { request_uri, expires_in: PUSHED_REQUEST_TTL_SECS }))
    }

    /// The pushed request that `request_uri` names, for `client_id` (both from the browser's
    /// authorization request). Taken once: a second use, another client's `request_uri`, or
    /// one expired or unknown is `None`.
    pub async fn take_pushed_authorization(&self, client_id: Option<&str>, request_uri: &str) -> Result<Option<AuthorizationRequest>> {
        if !request_uri.starts_with(REQUEST_URI_PREFIX) || request_uri.len() > REQUEST_URI_PREFIX.len() + 64 {
            return Ok(None);
        }
        let Some(record) = self.store.take_pushed_request(&hash_secret(request_uri), self.clock.now()).await? else { return Ok(None) };
        if client_id != Some(record.client_id.as_str()) {
            return Ok(None);
        }
        let request = serde_json::from_str(&record.request)
            .map_err(|e| Error::Store(format!("pushed request of {} is not a request: {e}", record.client_id)))?;
        Ok(Some(request))
    }

    /// Deletes pushed requests a day past their expiry (the background tick).
    pub async fn purge_pushed_requests(&self) -> Result<u64> {
        self.store.purge_pushed_requests(self.clock.now().saturating_sub(86_400)).await
    }

    /// The redirect URI of a request: one that matches a registered one, or, when the request
    /// names none, the only registered one (OAuth 2.1 section 2.3.2).
    fn redirect_uri(client: &ClientSpec, request: &AuthorizationRequest) -> std::result::Result<String, String> {
        match request.redirect_uri.as_deref() {
            None | Some("") => match client.redirect_uris.as_slice() {
                [only] => Ok(only.clone()),
                _ => Err("redirect_uri is required: the client registered several".into()),
            },
            Some(uri) if uri.len() > MAX_REDIRECT_URI_LEN => Err("redirect_uri is too long".into()),
            Some(uri) if client.redirect_uris.iter().any(|r| redirect_uri_matches(r, uri)) => Ok(uri.to_owned()),
            Some(_) => Err("redirect_uri is not one the client registered".into()),
        }
    }

    /// The scope of a browser sign-in: the OpenID Connect scopes (`openid`, `profile`) for any
    /// client of the code flow, the others as for every grant; OpenID scopes first.
    fn authorization_scope(spec: &crate::spec::Spec, client: &ClientSpec, requested: Option<&str>) -> Result<String> {
        let words: Vec<&str> = requested.unwrap_or_default().split(' ').filter(|s| !s.is_empty()).collect();
        let mut granted: Vec<&str> = OIDC_SCOPES.iter().copied().filter(|s| words.contains(s)).collect();
        let rest: Vec<&str> = words.iter().copied().filter(|s| !OIDC_SCOPES.contains(s)).collect();
        let rest = if rest.is_empty() && !granted.is_empty() {
            String::new()
        } else {
            Self::resolve_scope(spec, client, Some(&rest.join(" ")))?
        };
        granted.extend(rest.split(' ').filter(|s| !s.is_empty()));
        Ok(granted.join(" "))
    }

    fn prompt(text: Option<&str>) -> std::result::Result<Prompt, String> {
        let mut prompt = Prompt::default();
        for value in text.unwrap_or_default().split(' ').filter(|v| !v.is_empty()) {
            match value {
                "none" => prompt.none = true,
                "login" | "select_account" => prompt.login = true,
                "consent" => prompt.consent = true,
                _ => return Err(format!("prompt value {:?} is not supported", value.chars().take(32).collect::<String>())),
            }
        }
        if prompt.none && (prompt.login || prompt.consent) {
            return Err("prompt=none cannot be combined with other values".into());
        }
        Ok(prompt)
    }

    /// The hosted sign-in form's login for `client_id`: the one login path, then a new browser
    /// session.
    pub async fn sign_in(&self, client_id: &str, login: PasswordLogin<'_>) -> Result<BrowserSignIn> {
        if !self.spec.clients.get(client_id).is_some_and(|c| c.allows("authorization_code")) {
            return Err(Error::InvalidClient);
        }
        let user = self.authenticate_user(client_id, &login).await?;
        let now = self.clock.now();
        let cookie = base64_url(&random_32(self.entropy.as_ref())?);
        let policy = self.spec.browser;
        let session = BrowserSessionRecord {
            hash: hash_secret(&cookie),
            id: random_id(self.entropy.as_ref())?,
            user_id: user.id.clone(),
            auth_time: now,
            amr: vec![AMR_PASSWORD.to_owned()],
            created_at: now,
            last_seen_at: now,
            expires_at: now.saturating_add(policy.session_absolute_ttl.as_i64()),
        };
        self.store.insert_browser_session(&session).await?;
        self.audit(
            AuditEvent::new(self.clock.now_ms(), AuditKind::BrowserSignIn)
                .user(&user.id)
                .client(client_id)
                .detail(serde_json::json!({ "browser_session": session.id, "amr": session.amr })),
        )
        .await?;
        Ok(BrowserSignIn { session, cookie })
    }

    /// The live browser session of a cookie value, if any (its last use is noted).
    pub async fn browser_session(&self, cookie: &str) -> Result<Option<BrowserSessionRecord>> {
        if cookie.is_empty() || cookie.len() > MAX_SECRET_LEN {
            return Ok(None);
        }
        let now = self.clock.now();
        let idle_since = now.saturating_sub(self.spec.browser.session_idle_ttl.as_i64());
        let Some(session) = self.store.browser_session(&hash_secret(cookie), now, idle_since).await? else { return Ok(None) };
        let user = self.store.user_by_id(&session.user_id).await?;
        if user.is_none_or(|u| u.disabled) {
            return Ok(None);
        }
        if now - session.last_seen_at >= TOUCH_EVERY_SECS {
            self.store.touch_browser_session(&session.id, now).await?;
        }
        Ok(Some(session))
    }

    /// Ends a browser session (sign-out) and the sessions (refresh families) that code exchanges
    /// started from it, with their access tokens; `true` if it was live.
    pub async fn end_browser_session(&self, session: &BrowserSessionRecord) -> Result<bool> {
        self.end_browser_session_for(&session.user_id, &session.id, "signed out").await
    }

    async fn end_browser_session_for(&self, user_id: &str, id: &str, reason: &str) -> Result<bool> {
        let logout_clients = self.backchannel_logout_clients(id).await?;
        let ended = self.store.end_browser_session(id, self.clock.now()).await?;
        let mut families = 0;
        for family in self.store.browser_session_families(id).await? {
            if self.refresh.revoke_family(&family, reason).await? {
                families += 1;
            }
        }
        if ended {
            self.audit(
                AuditEvent::new(self.clock.now_ms(), AuditKind::BrowserSessionEnded)
                    .user(user_id)
                    .detail(serde_json::json!({ "browser_session": id, "reason": reason, "sessions_ended": families })),
            )
            .await?;
            self.send_backchannel_logouts(user_id, id, &logout_clients).await;
        }
        Ok(ended)
    }

    /// The user's live browser sessions (signed in on the hosted pages), newest first; at most
    /// the 100 newest.
    pub async fn user_browser_sessions(&self, user_id: &str) -> Result<Vec<BrowserSessionRecord>> {
        let now = self.clock.now();
        let idle_since = now.saturating_sub(self.spec.browser.session_idle_ttl.as_i64());
        self.store.user_browser_sessions(user_id, now, idle_since).await
    }

    /// When a live browser session of the spec's lifetimes ends if it stays unused: the earlier
    /// of its absolute end and the idle timeout from its last use.
    pub fn browser_session_ends_at(&self, session: &BrowserSessionRecord) -> crate::clock::UnixSeconds {
        session.expires_at.min(session.last_seen_at.saturating_add(self.spec.browser.session_idle_ttl.as_i64()))
    }

    /// The browser session that refresh family `family_id` was started from by a code exchange.
    pub async fn browser_session_of_family(&self, family_id: &str) -> Result<Option<String>> {
        if !crate::authority::could_be_id(family_id) {
            return Ok(None);
        }
        self.store.browser_session_of_family(family_id).await
    }

    /// Ends the user's browser session `id` and the sessions started from it (`logout` through
    /// the account API); `false` when the user has no such live session (another user's is
    /// reported exactly like a missing one).
    pub async fn end_user_browser_session(&self, user_id: &str, id: &str) -> Result<bool> {
        if !crate::authority::could_be_id(id) {
            return Ok(false);
        }
        if !self.user_browser_sessions(user_id).await?.iter().any(|s| s.id == id) {
            return Ok(false);
        }
        self.end_browser_session_for(user_id, id, "logout").await
    }

    /// Ends every browser session of the user (their refresh families are ended with the user's
    /// others); how many were live.
    pub async fn end_user_browser_sessions(&self, user_id: &str, reason: &str) -> Result<u64> {
        // The sessions about to end, and the clients to tell, are read first: once ended, a
        // session is no longer among the user's live ones.
        let mut logouts = Vec::new();
        if self.sends_backchannel_logouts() {
            for session in self.user_browser_sessions(user_id).await? {
                let clients = self.backchannel_logout_clients(&session.id).await?;
                if !clients.is_empty() {
                    logouts.push((session.id, clients));
                }
            }
        }
        let ended = self.store.end_user_browser_sessions(user_id, self.clock.now()).await?;
        for (id, clients) in &logouts {
            self.send_backchannel_logouts(user_id, id, clients).await;
        }
        if ended > 0 {
            self.audit(
                AuditEvent::new(self.clock.now_ms(), AuditKind::BrowserSessionEnded)
                    .user(user_id)
                    .detail(serde_json::json!({ "reason": reason, "browser_sessions_ended": ended })),
            )
            .await?;
        }
        Ok(ended)
    }

    /// The claims of an ID token this service issued (`id_token_hint`): signature, issuer and
    /// audience checked, expiry not (a hint may be old). `None` if it is not one.
    pub fn id_token_hint(&self, token: &str, client_id: Option<&str>) -> Option<crate::tokens::IdTokenClaims> {
        if token.len() > MAX_ID_TOKEN_HINT_LEN {
            return None;
        }
        let snapshot = self.keys.cached_snapshot()?;
        // The audience is read from the token, then checked against the client named, if any.
        let unverified_aud = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(token).ok()?.claims["aud"].as_str()?.to_owned();
        let audience = client_id.unwrap_or(&unverified_aud);
        let expected = crate::tokens::IdTokenExpectations { issuer: &self.spec.issuer, client_id: audience, nonce: None, leeway: i64::MAX / 4 };
        crate::tokens::verify_id_token(token, &snapshot.keys, &expected, self.clock.now()).ok()
    }

    /// A CSRF token for a form, bound to `binding` (the browser's CSRF cookie).
    pub fn csrf_token(&self, binding: &str) -> String {
        base64_url(&self.keys.mac(CSRF_CONTEXT, binding.as_bytes()))
    }

    /// Whether `token` is the CSRF token of `binding`.
    pub fn check_csrf(&self, binding: &str, token: &str) -> bool {
        use base64::Engine as _;
        if binding.is_empty() || token.len() > 64 {
            return false;
        }
        let Ok(tag) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token) else { return false };
        self.keys.verify_mac(CSRF_CONTEXT, binding.as_bytes(), &tag)
    }

    /// Issues an authorization code for a validated request and the session that signed in.
    pub async fn issue_code(&self, authorization: &Authorization, session: &BrowserSessionRecord) -> Result<String> {
        let code = base64_url(&random_32(self.entropy.as_ref())?);
        let now = self.clock.now();
        let record = AuthorizationCodeRecord {
            hash: hash_secret(&code),
            client_id: authorization.client_id.clone(),
            user_id: session.user_id.clone(),
            redirect_uri: authorization.redirect_uri.clone(),
            code_challenge: authorization.code_challenge.clone(),
            scope: authorization.scope.clone(),
            nonce: authorization.nonce.clone(),
            browser_session_id: Some(session.id.clone()),
            auth_time: session.auth_time,
            amr: session.amr.clone(),
            created_at: now,
            expires_at: now.saturating_add(self.spec.browser.code_ttl.as_i64()),
        };
        self.store.insert_code(&record).await?;
        Ok(code)
    }

    /// The `authorization_code` grant: exchanges a code for tokens (a new session), once.
    pub async fn code_grant(
        &self,
        client: ClientCredentials<'_>,
        code: &str,
        redirect_uri: Option<&str>,
        code_verifier: &str,
    ) -> Result<Grant> {
        let client_spec = self.authenticate_client(client).await?;
        Self::check_grant(client_spec, "authorization_code")?;
        let invalid = Error::AuthorizationCode(AuthorizationCodeError::Invalid);
        if code.len() > MAX_SECRET_LEN {
            return Err(invalid);
        }
        let hash = hash_secret(code);
        let record = match self.store.take_code(&hash, self.clock.now()).await? {
            CodeTaken::Fresh(record) => record,
            CodeTaken::Invalid => return Err(invalid),
            CodeTaken::Reused { client_id, family_id } => {
                self.code_reused(&client_id, family_id.as_deref()).await?;
                return Err(Error::AuthorizationCode(AuthorizationCodeError::Reused));
            }
        };
        // A code of another client, or exchanged for another redirect URI, is burned all the same.
        if record.client_id != client.id || redirect_uri.is_some_and(|uri| uri != record.redirect_uri) {
            return Err(invalid);
        }
        if redirect_uri.is_none() && client_spec.redirect_uris.len() != 1 {
            return Err(Error::MissingParameter("redirect_uri"));
        }
        if !pkce::verify_s256(code_verifier, &record.code_challenge) {
            return Err(Error::AuthorizationCode(AuthorizationCodeError::PkceFailed));
        }
        let user = match self.store.user_by_id(&record.user_id).await? {
            Some(user) if !user.disabled => user,
            _ => return Err(invalid),
        };
        let (family, refresh_token) = self.refresh.start(Some(&user.id), client.id, &record.scope).await?;
        if self.store.record_code_family(&hash, &family.id).await? {
            // Presented again while this exchange ran: the session it started is revoked too.
            self.refresh.revoke_family(&family.id, "authorization code reused").await?;
            return Err(Error::AuthorizationCode(AuthorizationCodeError::Reused));
        }
        // Checked once the session exists: a consent withdrawn before this read is seen here, and
        // one withdrawn after it finds this session among those it ends.
        if !client_spec.first_party && !self.store.consent(&user.id, client.id).await?.is_some_and(|c| c.covers(&record.scope)) {
            self.refresh.revoke_family(&family.id, super::REASON_CONSENT_REVOKED).await?;
            return Err(invalid);
        }
        if let Some(browser_session) = &record.browser_session_id {
            self.store.link_browser_session_family(browser_session, &family.id).await?;
        }
        let access = self.issue(&user.id, client.id, &record.scope, Some(family.id.clone()), &user.claims)?;
        self.audit(
            AuditEvent::new(self.clock.now_ms(), AuditKind::CodeExchanged)
                .user(&user.id)
                .client(client.id)
                .family(&family.id)
                .detail(serde_json::json!({
                    "scope": record.scope,
                    "jti": access.claims.jti,
                    "browser_session": record.browser_session_id,
                })),
        )
        .await?;
        let id_token = if record.scope.split(' ').any(|s| s == OPENID_SCOPE) {
            Some(self.id_token(&record, &user, &access.token)?)
        } else {
            None
        };
        let refresh_token = client_spec.allows("refresh_token").then_some(refresh_token);
        Ok(Grant { access, refresh_token, scope: record.scope, device_token: None, id_token })
    }

    /// The ID token of a code exchange (OpenID Connect Core 3.1.3.3), signed by the RS256 chain.
    fn id_token(&self, record: &AuthorizationCodeRecord, user: &crate::store::UserRecord, access_token: &str) -> Result<String> {
        let snapshot = self.keys.snapshot()?;
        let key = snapshot.signer(ID_TOKEN_ALGORITHM)?;
        let now = self.clock.now();
        let mut released = std::collections::BTreeMap::new();
        if record.scope.split(' ').any(|s| s == PROFILE_SCOPE) {
            released.insert("preferred_username".to_owned(), serde_json::Value::from(user.username.clone()));
        }
        let claims = IdTokenClaims {
            iss: self.spec.issuer.clone(),
            sub: user.id.clone(),
            aud: record.client_id.clone(),
            exp: now.saturating_add(self.spec.tokens.access_ttl.as_i64()),
            iat: now,
            auth_time: record.auth_time,
            nonce: record.nonce.clone(),
            amr: record.amr.clone(),
            sid: record.browser_session_id.clone(),
            azp: record.client_id.clone(),
            at_hash: Some(at_hash(access_token)),
            released,
        };
        sign_id_token(key, &claims)
    }

    /// A code presented again: the session its first exchange started is revoked.
    async fn code_reused(&self, client_id: &str, family_id: Option<&str>) -> Result<()> {
        if let Some(family_id) = family_id {
            self.refresh.revoke_family(family_id, "authorization code reused").await?;
        }
        let mut event = AuditEvent::new(self.clock.now_ms(), AuditKind::CodeReuseDetected).client(client_id);
        if let Some(family_id) = family_id {
            event = event.family(family_id);
        }
        self.audit_refusal(event.detail(serde_json::json!({ "reason": "authorization code presented again" }))).await
    }

    /// Forgets authorization codes that expired more than a day ago (background upkeep); a code
    /// is kept that long after its expiry so that a late replay still revokes its session.
    pub async fn purge_codes(&self) -> Result<u64> {
        self.store.purge_codes(self.clock.now().saturating_sub(86_400)).await
    }

    /// Forgets browser sessions that ended or expired more than a day ago (background upkeep).
    pub async fn purge_browser_sessions(&self) -> Result<u64> {
        self.store.purge_browser_sessions(self.clock.now().saturating_sub(86_400)).await
    }
}
