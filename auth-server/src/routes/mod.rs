//! HTTP handlers, grouped by area, and the request plumbing they share: strict form parsing,
//! bearer authentication and the scope-tied limit.

pub mod oauth;
pub mod ops;
pub mod users;
pub mod wellknown;

use std::collections::HashMap;

use auth_core::ratelimit::ScopeDecision;
use auth_core::tokens::AccessClaims;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower_governor::GovernorError;

use crate::app::AppState;
use crate::error::{OAuthError, Problem};

/// Parses an `application/x-www-form-urlencoded` body. Refuses other content types (415),
/// non-UTF-8 and repeated parameters (RFC 6749 section 3.2: parameters MUST NOT repeat).
pub fn parse_form(headers: &HeaderMap, body: &Bytes) -> Result<HashMap<String, String>, OAuthError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(OAuthError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            "request.unsupported_media_type: send application/x-www-form-urlencoded",
        ));
    }
    if std::str::from_utf8(body).is_err() {
        return Err(OAuthError::invalid_request("request.malformed: the body is not UTF-8"));
    }
    let mut form = HashMap::new();
    for (name, value) in form_urlencoded::parse(body) {
        if value.chars().any(|c| c == '\u{fffd}') {
            return Err(OAuthError::invalid_request(format!("request.malformed: parameter {name} is not UTF-8")));
        }
        if form.insert(name.clone().into_owned(), value.into_owned()).is_some() {
            return Err(OAuthError::invalid_request(format!("request.duplicate_parameter: {name}")));
        }
    }
    Ok(form)
}

/// The bearer token of `Authorization: Bearer ...`.
pub fn bearer(headers: &HeaderMap) -> Result<&str, Problem> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| Problem::invalid_token("token.missing"))?
        .to_str()
        .map_err(|_| Problem::invalid_token("token.malformed"))?;
    let (scheme, token) = value.split_once(' ').ok_or_else(|| Problem::invalid_token("token.malformed"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(Problem::invalid_token("token.missing"));
    }
    Ok(token.trim())
}

/// Authenticates a bearer request: verifies the token, checks that its session is still live,
/// and applies the limits of the token's scopes to its subject. Returns the claims and the
/// limit decision (for the response headers).
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<(AccessClaims, Option<ScopeDecision>), Problem> {
    let token = bearer(headers)?;
    let claims = state.authority.verify_access_token(token).map_err(|e| Problem::invalid_token(e.code()))?;
    if let Some(sid) = &claims.sid {
        let family = state.store().family(sid).await.map_err(Problem::from)?;
        if family.is_none_or(|f| f.revoked_at.is_some()) {
            return Err(Problem::invalid_token("token.session_revoked"));
        }
    }
    let scopes: Vec<&str> = claims.scopes().collect();
    let decision = state.limiter.check_all(&scopes, &claims.sub).await.map_err(Problem::from)?;
    if let Some(decision) = &decision
        && !decision.decision.allowed
    {
        state.metrics.rate_limited.with_label_values(&[decision.scope.as_str()]).inc();
        let mut problem = Problem::new(StatusCode::TOO_MANY_REQUESTS, "ratelimit.exceeded", "Too many requests")
            .detail(format!("the limit of scope {} is exhausted", decision.scope));
        problem.headers.extend(limit_headers(decision));
        return Err(problem);
    }
    Ok((claims, decision))
}

/// `RateLimit-Policy`, `RateLimit` and (when refused) `Retry-After` for a decision.
pub fn limit_headers(decision: &ScopeDecision) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let mut put = |name: HeaderName, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    put(HeaderName::from_static("ratelimit-policy"), decision.policy_header());
    put(HeaderName::from_static("ratelimit"), decision.ratelimit_header());
    if let Some(retry) = decision.decision.retry_after_secs() {
        put(header::RETRY_AFTER, retry.to_string());
    }
    headers
}

/// Adds the limit headers of an allowed request to a response.
pub fn with_limit_headers(mut response: Response, decision: Option<&ScopeDecision>) -> Response {
    if let Some(decision) = decision {
        response.headers_mut().extend(limit_headers(decision));
    }
    response
}

/// The answer of the per-IP limit on credential endpoints: an OAuth error with `Retry-After`.
pub fn per_ip_refusal(error: GovernorError) -> Response {
    match error {
        GovernorError::TooManyRequests { wait_time, .. } => {
            let retry = HeaderValue::from_str(&wait_time.max(1).to_string()).unwrap_or(HeaderValue::from_static("1"));
            OAuthError::new(StatusCode::TOO_MANY_REQUESTS, "slow_down", "ratelimit.per_ip")
                .with_header(header::RETRY_AFTER, retry)
                .into_response()
        }
        other => {
            tracing::warn!(error = %other, "per-IP limiter could not classify a request");
            OAuthError::invalid_request("request.unidentified_peer").into_response()
        }
    }
}

/// The answer of the per-IP limit on sign-up: a problem with `Retry-After`.
pub fn per_ip_problem(error: GovernorError) -> Response {
    match error {
        GovernorError::TooManyRequests { wait_time, .. } => {
            let retry = HeaderValue::from_str(&wait_time.max(1).to_string()).unwrap_or(HeaderValue::from_static("1"));
            Problem::new(StatusCode::TOO_MANY_REQUESTS, "ratelimit.per_ip", "Too many requests from this address")
                .with_header(header::RETRY_AFTER, retry)
                .into_response()
        }
        other => {
            tracing::warn!(error = %other, "per-IP limiter could not classify a request");
            Problem::new(StatusCode::BAD_REQUEST, "request.unidentified_peer", "The client address is unknown")
                .into_response()
        }
    }
}

/// 405 as problem+json (axum keeps adding the `Allow` header).
pub async fn method_not_allowed() -> Problem {
    Problem::new(StatusCode::METHOD_NOT_ALLOWED, "route.method_not_allowed", "Method not allowed on this route")
}

/// 404 as problem+json.
pub async fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "route.not_found", "No such route")
}
