//! Extractors: they turn a request into typed values or a rejection in the endpoint's format,
//! so that handlers only decide.
//!
//! - [`OAuthForm`]: an `application/x-www-form-urlencoded` body read with RFC 6749's rules (known
//!   parameters must not repeat, unknown ones are ignored, size bounded by the body limit).
//! - [`ClientAuth`]: the client's credentials, HTTP Basic or form, never both.
//! - [`Bearer`]: a verified access token of a live session, with its scopes' limits applied.

use std::collections::HashMap;
use std::sync::Arc;

use auth_core::Code;
use auth_core::authority::ClientCredentials;
use auth_core::ratelimit::ScopeDecision;
use auth_core::tokens::AccessClaims;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;

use super::error::{OAuthError, Problem};
use crate::state::AppState;

// ---------------------------------------------------------------------------------------------
// Forms

/// What a form-encoded endpoint reads: the parameters it knows (others are ignored) and how their
/// values become the endpoint's type.
pub trait FormParameters: Sized {
    /// The parameters read; each may appear at most once.
    fn names() -> &'static [&'static str];
    /// The endpoint's values from the decoded parameters (only those of [`Self::names`]).
    fn from_values(values: HashMap<String, String>) -> Self;
}

/// A form-encoded OAuth request body, decoded into `T`; refusals are RFC 6749 error JSON.
#[derive(Debug)]
pub struct OAuthForm<T>(pub T);

impl<S: Send + Sync, T: FormParameters> FromRequest<S> for OAuthForm<T> {
    type Rejection = OAuthError;

    async fn from_request(request: Request, state: &S) -> Result<Self, OAuthError> {
        let content_type = request.headers().get(header::CONTENT_TYPE).cloned();
        let body = Bytes::from_request(request, state).await.map_err(OAuthError::from)?;
        let values = parse_form(content_type.as_ref(), &body, T::names())?;
        Ok(Self(T::from_values(values)))
    }
}

/// The client's form fields (`client_id`, `client_secret`) as a form sent them, for
/// [`ClientAuth::credentials`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientFields<'a> {
    /// `client_id`.
    pub client_id: Option<&'a str>,
    /// `client_secret`.
    pub client_secret: Option<&'a str>,
}

impl ClientFields<'_> {
    /// The names of the client's form fields.
    pub const NAMES: [&'static str; 2] = ["client_id", "client_secret"];
}

/// Parses an `application/x-www-form-urlencoded` body (of the given `Content-Type`) into the
/// `known` parameters. Refuses other content types (415), names or values that are not UTF-8 once percent-decoded, and known
/// parameters that repeat (RFC 6749 section 3.2: parameters MUST NOT repeat). Other parameters are
/// ignored, repeated or not (RFC 6749 section 3.1: unrecognized parameters MUST be ignored).
pub fn parse_form(
    content_type: Option<&HeaderValue>,
    body: &Bytes,
    known: &[&str],
) -> Result<HashMap<String, String>, OAuthError> {
    let content_type = content_type.and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(OAuthError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request", Code::RequestUnsupportedMediaType)
            .detail("send application/x-www-form-urlencoded"));
    }
    if std::str::from_utf8(body).is_err() {
        return Err(OAuthError::invalid_request(Code::RequestMalformed).detail("the body is not UTF-8"));
    }
    parse_pairs(body, known)
}

/// Parses `name=value&...` pairs (a form body or a query string) into the `known` parameters,
/// with the rules of [`parse_form`].
pub fn parse_pairs(body: &[u8], known: &[&str]) -> Result<HashMap<String, String>, OAuthError> {
    let mut form = HashMap::new();
    for pair in body.split(|b| *b == b'&').filter(|pair| !pair.is_empty()) {
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        let name = percent_decode(name)
            .ok_or_else(|| OAuthError::invalid_request(Code::RequestMalformed).detail("a parameter name is not UTF-8"))?;
        let value = percent_decode(value)
            .ok_or_else(|| OAuthError::invalid_request(Code::RequestMalformed).detail(format!("parameter {name} is not UTF-8")))?;
        if !known.contains(&name.as_str()) {
            continue;
        }
        if form.contains_key(&name) {
            return Err(OAuthError::invalid_request(Code::RequestDuplicateParameter).detail(name));
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


// ---------------------------------------------------------------------------------------------
// Client authentication

/// The client's HTTP Basic credentials, as sent (RFC 6749 section 2.3.1). Never refuses by
/// itself: [`ClientAuth::credentials`] judges them together with the form, once the form has been
/// read, so that a malformed body is reported before bad credentials.
#[derive(Debug, Clone)]
pub struct ClientAuth {
    basic: Basic,
}

#[derive(Debug, Clone)]
enum Basic {
    Absent,
    Malformed,
    Present { id: String, secret: String },
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAuth {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let basic = match parts.headers.get(header::AUTHORIZATION) {
            None => Basic::Absent,
            Some(value) => parse_basic(value).unwrap_or(Basic::Malformed),
        };
        Ok(Self { basic })
    }
}

fn parse_basic(value: &HeaderValue) -> Option<Basic> {
    let value = value.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some(Basic::Present { id: form_decode(id), secret: form_decode(secret) })
}

/// Decodes one `application/x-www-form-urlencoded` component (RFC 6749 section 2.3.1 encodes the
/// client id and secret this way inside HTTP Basic).
fn form_decode(component: &str) -> String {
    form_urlencoded::parse(component.as_bytes()).map(|(decoded, _)| decoded.into_owned()).next().unwrap_or_default()
}

impl ClientAuth {
    /// The client's credentials: HTTP Basic or `client_id`/`client_secret` in the form, never both.
    pub fn credentials<'a>(&'a self, form: ClientFields<'a>) -> Result<ClientCredentials<'a>, OAuthError> {
        match &self.basic {
            Basic::Malformed => Err(OAuthError::invalid_client()),
            // Two authentication methods in one request (RFC 6749 section 2.3), or two client ids,
            // leave no single client that authenticated: client authentication failed.
            Basic::Present { id, secret } => {
                if form.client_secret.is_some() {
                    return Err(OAuthError::invalid_client().coded(Code::RequestMultipleClientAuthentication));
                }
                if form.client_id.is_some_and(|f| f != id) {
                    return Err(OAuthError::invalid_client().coded(Code::RequestClientIdMismatch));
                }
                Ok(ClientCredentials { id, secret: Some(secret) })
            }
            Basic::Absent => match form.client_id {
                Some(id) if !id.is_empty() => Ok(ClientCredentials { id, secret: form.client_secret }),
                _ => Err(OAuthError::invalid_request(Code::RequestMissingParameter).detail("client_id")),
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bearer tokens

/// An authenticated bearer request: the token verified, its session live, and the limits of its
/// scopes applied to its subject. Refusals are problems with `WWW-Authenticate` (401) or the
/// `RateLimit` fields (429).
#[derive(Debug)]
pub struct Bearer {
    /// The token's claims.
    pub claims: AccessClaims,
    /// The limit decision that applied, for the response headers.
    pub decision: Option<ScopeDecision>,
}

impl FromRequestParts<Arc<AppState>> for Bearer {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Problem> {
        let token = auth_core::tokens::bearer_token(parts.headers.get(header::AUTHORIZATION).map(HeaderValue::as_bytes))
            .map_err(Problem::invalid_token)?;
        let claims = state.authority.verify_access_token(token).map_err(|e| Problem::invalid_token(e.code()))?;
        if !state.authority.access_token_is_live(&claims).await.map_err(Problem::from)? {
            let code = if claims.sid.is_some() { Code::TokenSessionRevoked } else { Code::TokenRevoked };
            return Err(Problem::invalid_token(code));
        }
        let scopes: Vec<&str> = claims.scopes().collect();
        let decision = state.limiter.check_all(&scopes, &claims.sub).await.map_err(Problem::from)?;
        if let Some(decision) = &decision
            && !decision.decision.allowed
        {
            state.metrics.rate_limited.with_label_values(&[decision.scope.as_str()]).inc();
            let mut problem = Problem::new(StatusCode::TOO_MANY_REQUESTS, Code::RatelimitExceeded, "Too many requests")
                .detail(format!("the limit of scope {} is exhausted", decision.scope));
            problem.headers.extend(limit_headers(decision));
            return Err(problem);
        }
        Ok(Self { claims, decision })
    }
}

impl Bearer {
    /// Adds the `RateLimit` fields of the decision that applied to a response.
    pub fn with_limit_headers(&self, mut response: Response) -> Response {
        if let Some(decision) = &self.decision {
            response.headers_mut().extend(limit_headers(decision));
        }
        response
    }
}

/// `RateLimit-Policy`, `RateLimit` and (when refused) `Retry-After` for a decision.
fn limit_headers(decision: &ScopeDecision) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in decision.header_fields() {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::body::Bytes;
    use axum::http::HeaderValue;

    use super::{parse_form, percent_decode};

    const TOKEN_FORM_PARAMETERS: &[&str] = &["token", "token_type_hint", "client_id", "client_secret"];

    fn form(body: &'static str) -> Result<Vec<(String, String)>, String> {
        let content_type = HeaderValue::from_static("application/x-www-form-urlencoded");
        let parsed = parse_form(Some(&content_type), &Bytes::from_static(body.as_bytes()), TOKEN_FORM_PARAMETERS);
        let mut pairs: Vec<_> = parsed.map_err(|e| e.description())?.into_iter().collect();
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
