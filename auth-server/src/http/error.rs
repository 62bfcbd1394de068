//! The server's error formats: RFC 6749 error JSON ([`OAuthError`]) for the OAuth endpoints and
//! RFC 9457 problem+json ([`Problem`]) for the others. Each maps an [`auth_core::Error`] to a status
//! and a stable code; 5xx bodies stay generic while the cause goes to the log. Which format a group
//! of routes speaks is chosen where the router is assembled ([`ErrorFormat`]), for the answers made
//! around its handlers (per-IP refusals, the request deadline).

use auth_core::{Code, Error};
use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tower_governor::GovernorError;

use super::connections::BodyTimedOut;
use super::ui::ErrorPage;
use utoipa::ToSchema;

/// The error format of a group of routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorFormat {
    /// RFC 6749 error JSON; answers are never cached (RFC 6749 section 5.1, RFC 7662).
    OAuth,
    /// RFC 9457 problem+json.
    Problem,
    /// An HTML error page (the hosted pages).
    Page,
}

impl ErrorFormat {
    /// Whether every answer of these routes carries `Cache-Control: no-store`.
    pub fn no_store(self) -> bool {
        matches!(self, Self::OAuth | Self::Page)
    }

    /// 400 for a request the server cannot take as sent (before any handler).
    pub fn bad_request(self, code: Code, detail: &str) -> Response {
        match self {
            Self::OAuth => OAuthError::invalid_request(code).detail(detail).into_response(),
            Self::Problem => Problem::new(StatusCode::BAD_REQUEST, code, "Bad request").detail(detail).into_response(),
            Self::Page => ErrorPage::plain(code, "error.invalid_request").into_response_with(StatusCode::BAD_REQUEST),
        }
    }

    /// 503 for a request that did not complete within `timeout`.
    pub fn timeout(self, timeout: std::time::Duration) -> Response {
        let detail = format!("the request did not complete within {} s", timeout.as_secs_f64());
        let status = StatusCode::SERVICE_UNAVAILABLE;
        match self {
            Self::OAuth => {
                OAuthError::new(status, "temporarily_unavailable", Code::RequestTimeout).detail(detail).into_response()
            }
            Self::Problem => Problem::new(status, Code::RequestTimeout, "Service unavailable").detail(detail).into_response(),
            Self::Page => ErrorPage::plain(Code::RequestTimeout, "error.unavailable").into_response_with(status),
        }
    }

    /// The answer of the per-IP limit: 429 with `Retry-After`.
    pub fn per_ip_refusal(self, error: GovernorError) -> Response {
        match error {
            GovernorError::TooManyRequests { wait_time, .. } => {
                let retry = HeaderValue::from(wait_time.max(1));
                match self {
                    Self::OAuth => OAuthError::new(StatusCode::TOO_MANY_REQUESTS, "slow_down", Code::RatelimitPerIp)
                        .with_header(header::RETRY_AFTER, retry)
                        .into_response(),
                    Self::Problem => Problem::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        Code::RatelimitPerIp,
                        "Too many requests from this address",
                    )
                    .with_header(header::RETRY_AFTER, retry)
                    .into_response(),
                    Self::Page => {
                        let mut page = ErrorPage::plain(Code::RatelimitPerIp, "error.unavailable")
                            .into_response_with(StatusCode::TOO_MANY_REQUESTS);
                        page.headers_mut().insert(header::RETRY_AFTER, retry);
                        page
                    }
                }
            }
            other => {
                tracing::warn!(error = %other, "per-IP limiter could not classify a request");
                match self {
                    Self::OAuth => OAuthError::invalid_request(Code::RequestUnidentifiedPeer).into_response(),
                    Self::Problem => Problem::new(
                        StatusCode::BAD_REQUEST,
                        Code::RequestUnidentifiedPeer,
                        "The client address is unknown",
                    )
                    .into_response(),
                    Self::Page => ErrorPage::plain(Code::RequestUnidentifiedPeer, "error.invalid_request")
                        .into_response_with(StatusCode::BAD_REQUEST),
                }
            }
        }
    }
}

/// 405 as problem+json (axum keeps adding the `Allow` header).
pub async fn method_not_allowed() -> Problem {
    Problem::new(StatusCode::METHOD_NOT_ALLOWED, Code::RouteMethodNotAllowed, "Method not allowed on this route")
}

/// 404 as problem+json.
pub async fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, Code::RouteNotFound, "No such route")
}

/// The JSON body of an RFC 6749 section 5.2 error, as sent on `/oauth/*`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OAuthErrorBody {
    /// The RFC 6749 error code.
    #[schema(value_type = String, example = "invalid_grant")]
    pub error: &'static str,
    /// A stable code of this service (`refresh.reused`, `auth.invalid_client`, ...), sometimes
    /// followed by `: ` and details.
    #[schema(example = "refresh.reused")]
    pub error_description: String,
}

/// The JSON body of an RFC 9457 problem (`application/problem+json`), as sent outside `/oauth/*`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProblemBody {
    /// Always `about:blank`: the `code` member says what happened.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "about:blank")]
    pub kind: &'static str,
    /// A short human-readable summary.
    #[schema(example = "The access token is missing or invalid")]
    pub title: String,
    /// The HTTP status, repeated.
    #[schema(example = 401)]
    pub status: u16,
    /// A stable code of this service (`token.expired`, `input.conflict`, ...).
    #[schema(value_type = String, example = "token.expired")]
    pub code: &'static str,
    /// What happened in this case.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub detail: Option<String>,
}

/// An RFC 6749 section 5.2 error.
#[derive(Debug)]
pub struct OAuthError {
    /// HTTP status.
    pub status: StatusCode,
    /// The `error` code (`invalid_request`, `invalid_grant`, ...).
    pub error: &'static str,
    /// The stable code of this service (`refresh.reused`, ...) that starts `error_description`.
    pub code: Code,
    /// What happened in this case, after the code in `error_description` (`code: detail`).
    pub detail: Option<String>,
    /// Extra headers (`WWW-Authenticate`, `Retry-After`).
    pub headers: HeaderMap,
}

impl OAuthError {
    /// An error with a status, an RFC 6749 code and the service's code.
    pub fn new(status: StatusCode, error: &'static str, code: Code) -> Self {
        Self { status, error, code, detail: None, headers: HeaderMap::new() }
    }

    /// `invalid_request` (400).
    pub fn invalid_request(code: Code) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", code)
    }

    /// `invalid_client` (401) with a Basic challenge (RFC 6749 section 5.2).
    pub fn invalid_client() -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "invalid_client", Code::AuthInvalidClient);
        e.headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"auth\""));
        e
    }

    /// Replaces the code.
    pub fn coded(mut self, code: Code) -> Self {
        self.code = code;
        self
    }

    /// Adds what happened in this case.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The `error_description`: the code, then `: ` and the detail if there is one.
    pub fn description(&self) -> String {
        match &self.detail {
            Some(detail) => format!("{}: {detail}", self.code),
            None => self.code.as_str().to_owned(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }
}

impl From<Error> for OAuthError {
    fn from(e: Error) -> Self {
        let code = e.code();
        match e {
            Error::InvalidCredentials | Error::Refresh(_) | Error::AuthorizationCode(_) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_grant", code)
            }
            Error::InvalidClient => Self::invalid_client(),
            Error::UnauthorizedGrant(_) => Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", code),
            Error::InvalidScope(scope) => Self::new(StatusCode::BAD_REQUEST, "invalid_scope", code).detail(scope),
            Error::MissingParameter(name) => Self::invalid_request(code).detail(name),
            Error::TooManyAttempts { retry_after_secs } | Error::TooManySignUps { retry_after_secs } => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "invalid_request", code)
                    .with_header(header::RETRY_AFTER, HeaderValue::from(retry_after_secs))
            }
            Error::Invalid { field, message } => Self::invalid_request(code).detail(format!("{field}: {message}")),
            other => {
                let (status, error) = server_side(&other);
                Self::new(status, error, code)
            }
        }
    }
}

/// A body that could not be read: too large (413), too slow (408) or broken off (400).
impl From<BytesRejection> for OAuthError {
    fn from(rejection: BytesRejection) -> Self {
        let (status, code, _) = body_refusal(&rejection);
        Self::new(status, "invalid_request", code)
    }
}

/// The status, code and title of a body that could not be read.
fn body_refusal(rejection: &BytesRejection) -> (StatusCode, Code, &'static str) {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(error) = cause {
        if error.is::<BodyTimedOut>() {
            return (StatusCode::REQUEST_TIMEOUT, Code::RequestBodyTimeout, "The request body did not arrive in time");
        }
        cause = error.source();
    }
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        (StatusCode::PAYLOAD_TOO_LARGE, Code::RequestTooLarge, "The request body is too large")
    } else {
        (rejection.status(), Code::RequestMalformed, "The request body could not be read")
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = OAuthErrorBody { error: self.error, error_description: self.description() };
        let mut response = (self.status, no_store(), Json(body)).into_response();
        response.headers_mut().extend(self.headers);
        response
    }
}

/// Maps errors that are not the client's fault: a database outage is a 503 worth retrying,
/// anything else a 500 whose cause is logged but not shown.
fn server_side(e: &Error) -> (StatusCode, &'static str) {
    match e {
        Error::StoreUnavailable(_) | Error::RateLimitBackend(_) => {
            tracing::warn!(error = %e, code = e.code().as_str(), "dependency unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
        }
        _ => {
            tracing::error!(error = %e, code = e.code().as_str(), "internal error");
            (StatusCode::INTERNAL_SERVER_ERROR, "server_error")
        }
    }
}

/// `Cache-Control: no-store` and `Pragma: no-cache`, required on token responses (RFC 6749 5.1).
pub fn no_store() -> [(HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}

/// An RFC 9457 problem.
#[derive(Debug)]
pub struct Problem {
    /// HTTP status.
    pub status: StatusCode,
    /// A stable code of this service (`input.conflict`, `token.expired`, ...).
    pub code: Code,
    /// A short human-readable summary.
    pub title: String,
    /// What happened in this case.
    pub detail: Option<String>,
    /// Extra headers (`WWW-Authenticate`, rate-limit headers).
    pub headers: HeaderMap,
}

impl Problem {
    /// A problem with a status, a code and a title.
    pub fn new(status: StatusCode, code: Code, title: impl Into<String>) -> Self {
        Self { status, code, title: title.into(), detail: None, headers: HeaderMap::new() }
    }

    /// Adds a detail.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// 401 for a missing or rejected bearer token (RFC 6750 section 3).
    pub fn invalid_token(code: Code) -> Self {
        // RFC 6750 section 3.1: a request that carried no token gets a challenge without an error
        // code; the problem body still says `token.missing`.
        if code == Code::TokenMissing {
            return Self::new(StatusCode::UNAUTHORIZED, code, "The access token is missing or invalid")
                .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        let challenge = format!("Bearer error=\"invalid_token\", error_description=\"{code}\"");
        let value = HeaderValue::from_str(&challenge).unwrap_or(HeaderValue::from_static("Bearer error=\"invalid_token\""));
        Self::new(StatusCode::UNAUTHORIZED, code, "The access token is missing or invalid")
            .with_header(header::WWW_AUTHENTICATE, value)
    }

    /// 403 for a token lacking the scope the route requires (RFC 6750 section 3.1).
    pub fn insufficient_scope(scope: &str) -> Self {
        let challenge = format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\"");
        let value = HeaderValue::from_str(&challenge).unwrap_or(HeaderValue::from_static("Bearer error=\"insufficient_scope\""));
        Self::new(StatusCode::FORBIDDEN, Code::AuthInsufficientScope, "The access token lacks a required scope")
            .with_header(header::WWW_AUTHENTICATE, value)
    }
}

impl From<Error> for Problem {
    fn from(e: Error) -> Self {
        let code = e.code();
        match e {
            Error::Token(t) => Self::invalid_token(t.code()),
            Error::Invalid { field, message } => {
                Self::new(StatusCode::BAD_REQUEST, code, "Invalid input").detail(format!("{field}: {message}"))
            }
            Error::TooManySignUps { retry_after_secs } => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, code, "Too many sign-ups from this address")
                    .with_header(header::RETRY_AFTER, HeaderValue::from(retry_after_secs))
            }
            Error::ClaimNotSettable(name) => Self::new(StatusCode::FORBIDDEN, code, "A claim the user cannot set")
                .detail(format!("{name}: is set by an administrator or an invitation")),
            Error::InvalidInvitation => Self::new(StatusCode::FORBIDDEN, code, "The invitation cannot be used"),
            Error::Conflict(_) => Self::new(StatusCode::CONFLICT, code, "Already exists"),
            Error::NotFound(what) => Self::new(StatusCode::NOT_FOUND, code, "Not found").detail(what),
            Error::InvalidCredentials => Self::new(StatusCode::UNAUTHORIZED, code, "Invalid credentials"),
            other => {
                let (status, _) = server_side(&other);
                let title = if status == StatusCode::SERVICE_UNAVAILABLE {
                    "Temporarily unavailable"
                } else {
                    "Internal server error"
                };
                Self::new(status, code, title)
            }
        }
    }
}

/// A body that could not be read: too large (413), too slow (408) or broken off (400).
impl From<BytesRejection> for Problem {
    fn from(rejection: BytesRejection) -> Self {
        let (status, code, title) = body_refusal(&rejection);
        Self::new(status, code, title)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = ProblemBody {
            kind: "about:blank",
            title: self.title,
            status: self.status.as_u16(),
            code: self.code.as_str(),
            detail: self.detail,
        };
        // Serializing plain strings and numbers cannot fail.
        let body = serde_json::to_string(&body).unwrap_or_default();
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"))],
            body,
        )
            .into_response();
        response.headers_mut().extend(self.headers);
        response
    }
}
