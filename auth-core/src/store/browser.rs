//! What signing in through the browser stores: authorization codes (single use, bound to what
//! the authorization request asked for) and browser sessions (the sign-in a browser keeps across
//! clients). Neither secret is stored: only the SHA-256 of the code and of the session cookie.

use async_trait::async_trait;

use crate::clock::UnixSeconds;
use crate::Result;

/// A stored authorization code: what its exchange must match and what the tokens it gives carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationCodeRecord {
    /// SHA-256 of the code, lowercase hex.
    pub hash: String,
    /// The client it was issued to.
    pub client_id: String,
    /// The user who signed in.
    pub user_id: String,
    /// The redirect URI of the authorization request, which the exchange must repeat.
    pub redirect_uri: String,
    /// The PKCE `code_challenge` (S256).
    pub code_challenge: String,
    /// The granted scope, space-separated.
    pub scope: String,
    /// The OpenID Connect `nonce` of the request, returned in the ID token.
    pub nonce: Option<String>,
    /// The browser session it came from (its public id).
    pub browser_session_id: Option<String>,
    /// When the user last authenticated (the ID token's `auth_time`).
    pub auth_time: UnixSeconds,
    /// How the user authenticated (the `amr` values, e.g. `pwd`).
    pub amr: Vec<String>,
    /// When it was issued.
    pub created_at: UnixSeconds,
    /// When it stops being exchangeable.
    pub expires_at: UnixSeconds,
}

/// What taking a code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeTaken {
    /// The code was unused and unexpired; it is now used.
    Fresh(AuthorizationCodeRecord),
    /// The code was exchanged before: the session it started (if one was recorded yet) is to be
    /// revoked. Marked reused, so that an exchange still in progress revokes its own session.
    Reused {
        /// The client it was issued to.
        client_id: String,
        /// The refresh family started from its first exchange, once recorded.
        family_id: Option<String>,
    },
    /// No such code, or it expired unused.
    Invalid,
}

/// Storage of authorization codes.
#[async_trait]
pub trait CodeStore: Send + Sync + std::fmt::Debug {
    /// Inserts a new code.
    async fn insert_code(&self, code: &AuthorizationCodeRecord) -> Result<()>;
    /// Marks the code of `hash` used at `now`; exactly one of several concurrent callers gets it
    /// [`CodeTaken::Fresh`]; every later one gets [`CodeTaken::Reused`].
    async fn take_code(&self, hash: &str, now: UnixSeconds) -> Result<CodeTaken>;
    /// Records the refresh family started from the code's exchange; `true` if the code was
    /// reused meanwhile (the caller then revokes the family).
    async fn record_code_family(&self, hash: &str, family_id: &str) -> Result<bool>;
    /// Deletes codes that expired before `before`; the number deleted.
    async fn purge_codes(&self, before: UnixSeconds) -> Result<u64>;
    /// Stores a pushed authorization request (RFC 9126).
    async fn insert_pushed_request(&self, request: &PushedRequestRecord) -> Result<()>;
    /// Takes the pushed request of `hash` (it is deleted: a `request_uri` is used once), if it has
    /// not expired at `now`.
    async fn take_pushed_request(&self, hash: &str, now: UnixSeconds) -> Result<Option<PushedRequestRecord>>;
    /// Deletes pushed requests that expired before `before`; the number deleted.
    async fn purge_pushed_requests(&self, before: UnixSeconds) -> Result<u64>;
}

/// A pushed authorization request (RFC 9126), kept until its `request_uri` is used or expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedRequestRecord {
    /// SHA-256 of the `request_uri`, lowercase hex.
    pub hash: String,
    /// The client that pushed it.
    pub client_id: String,
    /// The request's parameters, as JSON.
    pub request: String,
    /// When its `request_uri` stops working.
    pub expires_at: UnixSeconds,
}

/// A stored browser session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserSessionRecord {
    /// SHA-256 of the session cookie's value, lowercase hex.
    pub hash: String,
    /// Its public id: the `sid` of ID tokens and logout tokens.
    pub id: String,
    /// The signed-in user.
    pub user_id: String,
    /// When the user authenticated.
    pub auth_time: UnixSeconds,
    /// How (the `amr` values).
    pub amr: Vec<String>,
    /// When it was created.
    pub created_at: UnixSeconds,
    /// When it was last used.
    pub last_seen_at: UnixSeconds,
    /// When it ends, used or not.
    pub expires_at: UnixSeconds,
}

/// Storage of browser sessions.
#[async_trait]
pub trait BrowserSessionStore: Send + Sync + std::fmt::Debug {
    /// Inserts a new session.
    async fn insert_browser_session(&self, session: &BrowserSessionRecord) -> Result<()>;
    /// The live session of cookie hash `hash`: not ended, not expired at `now`, used since
    /// `idle_since`.
    async fn browser_session(&self, hash: &str, now: UnixSeconds, idle_since: UnixSeconds) -> Result<Option<BrowserSessionRecord>>;
    /// Notes that the session was used at `now`.
    async fn touch_browser_session(&self, id: &str, now: UnixSeconds) -> Result<()>;
    /// Ends the session of public id `id`; `true` if it was live.
    async fn end_browser_session(&self, id: &str, now: UnixSeconds) -> Result<bool>;
    /// Ends every live session of `user_id`; how many.
    async fn end_user_browser_sessions(&self, user_id: &str, now: UnixSeconds) -> Result<u64>;
    /// The live sessions of `user_id`, newest first.
    async fn user_browser_sessions(&self, user_id: &str, now: UnixSeconds, idle_since: UnixSeconds) -> Result<Vec<BrowserSessionRecord>>;
    /// Deletes sessions ended or expired before `before` (and their links to families); the
    /// number deleted.
    async fn purge_browser_sessions(&self, before: UnixSeconds) -> Result<u64>;
    /// Notes that a code exchange from browser session `id` started refresh family `family_id`.
    async fn link_browser_session_family(&self, id: &str, family_id: &str) -> Result<()>;
    /// The refresh families started from browser session `id` (at most 1000).
    async fn browser_session_families(&self, id: &str) -> Result<Vec<String>>;
    /// The browser session that refresh family `family_id` was started from, if any.
    async fn browser_session_of_family(&self, family_id: &str) -> Result<Option<String>>;
}
