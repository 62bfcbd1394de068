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

/// The parameters `POST /oauth/token` reads.
pub const TOKEN_PARAMETERS: &[&str] =
    &["grant_type", "client_id", "client_secret", "username", "password", "refresh_token", "scope"];

/// The parameters `POST /oauth/revoke` and `POST /oauth/introspect` read.
pub const TOKEN_FORM_PARAMETERS: &[&str] = &["token", "token_type_hint", "client_id", "client_secret"];

/// Parses an `application/x-www-form-urlencoded` body into the `known` parameters. Refuses other
/// content types (415), names or values that are not UTF-8 once percent-decoded, and known
/// parameters that repeat (RFC 6749 section 3.2: parameters MUST NOT repeat). Other parameters are
/// ignored, repeated or not (RFC 6749 section 3.1: unrecognized parameters MUST be ignored).
pub fn parse_form(headers: &HeaderMap, body: &Bytes, known: &[&str]) -> Result<HashMap<String, String>, OAuthError> {
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
    for pair in body.split(|b| *b == b'&').filter(|pair| !pair.is_empty()) {
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        let name = percent_decode(name)
            .ok_or_else(|| OAuthError::invalid_request("request.malformed: a parameter name is not UTF-8"))?;
        let value = percent_decode(value)
            .ok_or_else(|| OAuthError::invalid_request(format!("request.malformed: parameter {name} is not UTF-8")))?;
        if !known.contains(&name.as_str()) {
            continue;
        }
        if form.contains_key(&name) {
            return Err(OAuthError::invalid_request(format!("request.duplicate_parameter: {name}")));
        }
        form.insert(name, value);
    }
    Ok(form)
}

/// Decodes one name or value of a form (`+` is a space, `%XX` a byte; a `%` not followed by two
/// hex digits stays as it is, as in the WHATWG URL standard) and requires the bytes to be UTF-8.
/// Strict where `form_urlencoded::parse` is lossy: a U+FFFD that was sent stays valid, bytes that
/// are not UTF-8 are refused instead of becoming U+FFFD.
fn percent_decode(raw: &[u8]) -> Option<String> {
    fn hex(digit: u8) -> Option<u8> {
        char::from(digit).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    if !raw.iter().any(|b| matches!(b, b'+' | b'%')) {
        // Nothing to decode (tokens, ids and secrets are usually sent this way).
        return String::from_utf8(raw.to_vec()).ok();
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        match byte {
            b'+' => out.push(b' '),
            b'%' => match (tail.first().copied().and_then(hex), tail.get(1).copied().and_then(hex)) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    rest = &tail[2..];
                }
                _ => out.push(b'%'),
            },
            other => out.push(other),
        }
    }
    String::from_utf8(out).ok()
}

/// The bearer token of `Authorization: Bearer ...`.
pub fn bearer(headers: &HeaderMap) -> Result<&str, Problem> {
    auth_core::tokens::bearer_token(headers.get(header::AUTHORIZATION).map(HeaderValue::as_bytes))
        .map_err(Problem::invalid_token)
}

/// Authenticates a bearer request: verifies the token, checks that its session is still live,
/// and applies the limits of the token's scopes to its subject. Returns the claims and the
/// limit decision (for the response headers).
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<(AccessClaims, Option<ScopeDecision>), Problem> {
    let token = bearer(headers)?;
    let claims = state.authority.verify_access_token(token).map_err(|e| Problem::invalid_token(e.code()))?;
    if let Some(sid) = &claims.sid
        && !state.authority.session_is_live(sid).await.map_err(Problem::from)?
    {
        return Err(Problem::invalid_token("token.session_revoked"));
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
    for (name, value) in decision.header_fields() {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::body::Bytes;
    use axum::http::{HeaderMap, HeaderValue, header};

    use super::{TOKEN_FORM_PARAMETERS, parse_form, percent_decode};

    fn form(body: &'static str) -> Result<Vec<(String, String)>, String> {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
        let parsed = parse_form(&headers, &Bytes::from_static(body.as_bytes()), TOKEN_FORM_PARAMETERS);
        let mut pairs: Vec<_> = parsed.map_err(|e| e.description)?.into_iter().collect();
        pairs.sort();
        Ok(pairs)
    }

    #[test]
    fn percent_decoding_is_strict_about_utf8_only() {
        assert_eq!(percent_decode(b"a+b%20c%2B").as_deref(), Some("a b c+"));
        assert_eq!(percent_decode(b"eyJ.x_y-z").as_deref(), Some("eyJ.x_y-z"), "nothing to decode");
        assert_eq!(percent_decode(b"\xff"), None, "not UTF-8, without escapes");
        assert_eq!(percent_decode(b"100%").as_deref(), Some("100%"));
        assert_eq!(percent_decode(b"%zz%4").as_deref(), Some("%zz%4"));
        // A replacement character that was sent is text like any other ...
        assert_eq!(percent_decode(b"%EF%BF%BD").as_deref(), Some("\u{fffd}"));
        // ... bytes that are not UTF-8 are not turned into one.
        assert_eq!(percent_decode(b"%FF%FE"), None);
    }

    #[test]
    fn known_parameters_must_not_repeat_and_others_are_ignored() {
        assert_eq!(form("token=a&extra=1&extra=2&=&&").unwrap(), [("token".to_owned(), "a".to_owned())]);
        assert_eq!(form("token=a&token=a").unwrap_err(), "request.duplicate_parameter: token");
        assert_eq!(form("token=a&x=%FF").unwrap_err(), "request.malformed: parameter x is not UTF-8");
    }
}
