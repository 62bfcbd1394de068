//! [`Authorized`]: the axum extractor that admits a request only when its bearer token verifies,
//! carries every required scope and is within the limits tied to those scopes.
//!
//! Refusals answer as the auth server does: 401 with `WWW-Authenticate: Bearer
//! error="invalid_token"`, 403 with `error="insufficient_scope"`, 429 with the IETF `RateLimit`
//! fields and `Retry-After`, 503 when no key set can be had; bodies are RFC 9457 problem+json with
//! the auth-core codes.

use std::marker::PhantomData;

use auth_core::Code;
use auth_core::ratelimit::ScopeDecision;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use super::spec::{Claims, Scope};
use super::verify::{Auth, AuthError};

/// The scopes a route requires: a marker type of `spec::require`, or a tuple of them.
pub trait RequiredScopes {
    /// The scopes, each of which the token must carry.
    fn scopes() -> Vec<Scope>;
}

impl<A: RequiredScopes, B: RequiredScopes> RequiredScopes for (A, B) {
    fn scopes() -> Vec<Scope> {
        let mut scopes = A::scopes();
        scopes.extend(B::scopes());
        scopes
    }
}

impl<A: RequiredScopes, B: RequiredScopes, C: RequiredScopes> RequiredScopes for (A, B, C) {
    fn scopes() -> Vec<Scope> {
        let mut scopes = <(A, B)>::scopes();
        scopes.extend(C::scopes());
        scopes
    }
}

/// A request whose token verified and may use the scopes `S`.
#[derive(Debug)]
pub struct Authorized<S> {
    /// The verified claims.
    pub claims: Claims,
    /// The decisive rate-limit decision of the required scopes, if any is limited.
    pub rate_limit: Option<ScopeDecision>,
    scopes: PhantomData<fn() -> S>,
}

impl<S> Authorized<S> {
    /// The `RateLimit-Policy` and `RateLimit` fields to add to the response.
    pub fn limit_headers(&self) -> HeaderMap {
        self.rate_limit.as_ref().map(limit_headers).unwrap_or_default()
    }
}

impl<S, State> FromRequestParts<State> for Authorized<S>
where
    S: RequiredScopes,
    Auth: FromRef<State>,
    State: Send + Sync,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, Self::Rejection> {
        let auth = Auth::from_ref(state);
        let token = bearer(&parts.headers)?;
        let claims = auth.verify(token).await.map_err(AuthRejection::from)?;
        let required = S::scopes();
        if required.iter().any(|scope| !claims.has_scope(*scope)) {
            return Err(AuthRejection::InsufficientScope(required));
        }
        let names: Vec<&str> = required.iter().map(|s| s.as_str()).collect();
        let decision = auth.limiter().check_all(&names, &claims.sub).await.map_err(|_| AuthRejection::LimiterUnavailable)?;
        if let Some(decision) = &decision
            && !decision.decision.allowed
        {
            return Err(AuthRejection::RateLimited(decision.clone()));
        }
        Ok(Self { claims, rate_limit: decision, scopes: PhantomData })
    }
}

/// The bearer token of `Authorization: Bearer ...`, with the server's codes when absent or bad.
fn bearer(headers: &HeaderMap) -> Result<&str, AuthRejection> {
    auth_core::tokens::bearer_token(headers.get(header::AUTHORIZATION).map(HeaderValue::as_bytes))
        .map_err(AuthRejection::InvalidToken)
}

/// Why [`Authorized`] refused a request.
#[derive(Debug, Clone)]
pub enum AuthRejection {
    /// 401: no token, or a token that does not verify (the code says why).
    InvalidToken(Code),
    /// 403: the token lacks one of these required scopes.
    InsufficientScope(Vec<Scope>),
    /// 429: the limit of a required scope is exhausted.
    RateLimited(ScopeDecision),
    /// 503: the issuer's key set cannot be had.
    JwksUnavailable,
    /// 503: the limiter's backend failed.
    LimiterUnavailable,
}

impl AuthRejection {
    /// The stable code of the refusal.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidToken(code) => *code,
            Self::InsufficientScope(_) => Code::AuthInsufficientScope,
            Self::RateLimited(_) => Code::RatelimitExceeded,
            Self::JwksUnavailable => Code::JwksUnavailable,
            Self::LimiterUnavailable => Code::RatelimitBackend,
        }
    }
}

impl From<AuthError> for AuthRejection {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Token(t) => Self::InvalidToken(t.code()),
            AuthError::JwksUnavailable => Self::JwksUnavailable,
        }
    }
}

fn limit_headers(decision: &ScopeDecision) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in decision.header_fields() {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    headers
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let code = self.code();
        let (status, title, detail, mut headers) = match &self {
            Self::InvalidToken(code) => {
                let challenge = format!("Bearer error=\"invalid_token\", error_description=\"{code}\"");
                let mut headers = HeaderMap::new();
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
                (StatusCode::UNAUTHORIZED, "The access token is missing or invalid", None, headers)
            }
            Self::InsufficientScope(scopes) => {
                // RFC 6750 section 3: `scope` lists every scope the resource requires.
                let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
                let challenge = format!("Bearer error=\"insufficient_scope\", scope=\"{}\"", names.join(" "));
                let mut headers = HeaderMap::new();
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
                (StatusCode::FORBIDDEN, "The access token lacks a required scope", None, headers)
            }
            Self::RateLimited(decision) => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests",
                Some(format!("the limit of scope {} is exhausted", decision.scope)),
                limit_headers(decision),
            ),
            Self::JwksUnavailable | Self::LimiterUnavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "Temporarily unavailable", None, HeaderMap::new())
            }
        };
        let mut body = serde_json::json!({
            "type": "about:blank",
            "title": title,
            "status": status.as_u16(),
            "code": code.as_str(),
        });
        if let Some(detail) = detail {
            body["detail"] = serde_json::Value::String(detail);
        }
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        (status, headers, body.to_string()).into_response()
    }
}
