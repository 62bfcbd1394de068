//! `POST /oauth/token` (RFC 6749), `POST /oauth/revoke` (RFC 7009), `POST /oauth/introspect`
//! (RFC 7662). Form-encoded in, RFC 6749 error JSON out.

use std::collections::HashMap;
use std::sync::Arc;

use auth_core::Error;
use auth_core::audit::{AuditEvent, AuditKind};
use auth_core::authority::{ClientCredentials, Introspection, normalize_username};
use auth_core::error::RefreshError;
use auth_core::ratelimit::ScopeLimiter;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use super::{TOKEN_FORM_PARAMETERS, TOKEN_PARAMETERS, parse_form};
use crate::app::AppState;
use crate::error::{OAuthError, no_store};

type Form = HashMap<String, String>;

fn required<'a>(form: &'a Form, name: &str) -> Result<&'a str, OAuthError> {
    match form.get(name).map(String::as_str) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(OAuthError::invalid_request(format!("request.missing_parameter: {name}"))),
    }
}

/// Decodes one `application/x-www-form-urlencoded` component (RFC 6749 section 2.3.1 encodes the
/// client id and secret this way inside HTTP Basic).
fn form_decode(component: &str) -> String {
    form_urlencoded::parse(component.as_bytes()).map(|(decoded, _)| decoded.into_owned()).next().unwrap_or_default()
}

/// The client's credentials: HTTP Basic or `client_id`/`client_secret` in the form, never both.
fn client_credentials(headers: &HeaderMap, form: &Form) -> Result<(String, Option<String>), OAuthError> {
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let value = value.to_str().map_err(|_| OAuthError::invalid_client())?;
            let (scheme, encoded) = value.split_once(' ').ok_or_else(OAuthError::invalid_client)?;
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(OAuthError::invalid_client());
            }
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(OAuthError::invalid_client)?;
            let (id, secret) = decoded.split_once(':').ok_or_else(OAuthError::invalid_client)?;
            Some((form_decode(id), form_decode(secret)))
        }
    };
    match basic {
        // Two authentication methods in one request (RFC 6749 section 2.3), or two client ids,
        // leave no single client that authenticated: client authentication failed.
        Some((id, secret)) => {
            if form.contains_key("client_secret") {
                return Err(OAuthError::invalid_client().described("request.multiple_client_authentication"));
            }
            if form.get("client_id").is_some_and(|f| *f != id) {
                return Err(OAuthError::invalid_client().described("request.client_id_mismatch"));
            }
            Ok((id, Some(secret)))
        }
        None => Ok((required(form, "client_id")?.to_owned(), form.get("client_secret").cloned())),
    }
}

/// The answer of `POST /oauth/token` (RFC 6749 section 5.1).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// The access token: an RFC 9068 JWT.
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(value_type = String, example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// The granted scopes, space-separated.
    pub scope: String,
    /// The next refresh token (password and refresh grants); the one sent is spent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub refresh_token: Option<String>,
}

/// `POST /oauth/token`.
#[utoipa::path(
    post,
    path = "/oauth/token",
    tag = "oauth",
    request_body(content = crate::openapi::TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Tokens issued", body = TokenResponse,
            headers(("Cache-Control" = String, description = "`no-store`"), ("Pragma" = String, description = "`no-cache`"))),
        (status = 400, response = crate::openapi::OAuthBadRequest),
        (status = 401, response = crate::openapi::OAuthUnauthorized),
        (status = 413, response = crate::openapi::OAuthPayloadTooLarge),
        (status = 415, response = crate::openapi::OAuthUnsupportedMediaType),
        (status = 429, response = crate::openapi::OAuthTooManyRequests),
        (status = 500, response = crate::openapi::OAuthServerError),
        (status = 503, response = crate::openapi::OAuthUnavailable),
    ),
    security((), ("client_basic" = [])),
)]
pub async fn token(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return OAuthError::from(rejection).into_response(),
    };
    match token_grant(&state, &headers, &body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn token_grant(state: &AppState, headers: &HeaderMap, body: &Bytes) -> Result<Response, OAuthError> {
    let form = parse_form(headers, body, TOKEN_PARAMETERS)?;
    let (client_id, secret) = client_credentials(headers, &form)?;
    let client = ClientCredentials { id: &client_id, secret: secret.as_deref() };
    let grant_type = required(&form, "grant_type")?;
    let scope = form.get("scope").map(String::as_str);
    let authority = &state.authority;
    let grant = match grant_type {
        "password" => {
            let username = required(&form, "username")?;
            let password = required(&form, "password")?;
            check_login_attempts(state, &client_id, username).await?;
            authority.password_grant(client, username, password, scope).await
        }
        "refresh_token" => {
            let result = authority.refresh_grant(client, required(&form, "refresh_token")?, scope).await;
            if matches!(result, Err(Error::Refresh(RefreshError::Reused))) {
                state.metrics.refresh_reuse.inc();
            }
            result
        }
        "client_credentials" => authority.client_credentials_grant(client, scope).await,
        other => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("grant.unsupported: {other}"),
            ));
        }
    }?;
    state.metrics.tokens_issued.with_label_values(&[grant_type]).inc();
    let body = TokenResponse {
        access_token: grant.access.token,
        token_type: "Bearer",
        expires_in: grant.access.expires_in,
        scope: grant.scope,
        refresh_token: grant.refresh_token,
    };
    Ok((StatusCode::OK, no_store(), Json(body)).into_response())
}

/// Per-account backoff: every password attempt on an account takes one unit of its allowance
/// *before* the password is checked, atomically in the limiter, so parallel requests cannot
/// slip past it. Unknown usernames are limited exactly like known ones.
async fn check_login_attempts(state: &AppState, client_id: &str, username: &str) -> Result<(), OAuthError> {
    let account = normalize_username(username).unwrap_or_else(|_| username.to_owned());
    let key = ScopeLimiter::key("login", &account);
    let decision = state
        .login_limiter
        .check(&key, state.config.login_attempts, state.clock.now_ms())
        .await
        .map_err(OAuthError::from)?;
    if decision.allowed {
        return Ok(());
    }
    state.metrics.rate_limited.with_label_values(&["login"]).inc();
    let event = AuditEvent::new(state.clock.now_ms(), AuditKind::LoginLockedOut)
        .client(client_id)
        .detail(json!({ "retry_after_secs": decision.retry_after_secs() }));
    if let Err(e) = state.store().append_audit(&event).await {
        tracing::warn!(error = %e, "could not record a lockout");
    }
    let retry = decision.retry_after_secs().unwrap_or(1).max(1);
    Err(OAuthError::new(StatusCode::TOO_MANY_REQUESTS, "invalid_request", "auth.too_many_attempts")
        .with_header(header::RETRY_AFTER, HeaderValue::from(retry)))
}

/// `POST /oauth/revoke` (RFC 7009): 200 whether or not the token was known. Access tokens are
/// self-contained and expire on their own; revoking their session (through the refresh token or
/// `/v1/logout`) makes introspection and this server's bearer endpoints refuse them.
#[utoipa::path(
    post,
    path = "/oauth/revoke",
    tag = "oauth",
    request_body(content = crate::openapi::TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or the token was not known (empty body)",
            headers(("Cache-Control" = String, description = "`no-store`"), ("Pragma" = String, description = "`no-cache`"))),
        (status = 400, response = crate::openapi::OAuthBadRequest),
        (status = 401, response = crate::openapi::OAuthUnauthorized),
        (status = 413, response = crate::openapi::OAuthPayloadTooLarge),
        (status = 415, response = crate::openapi::OAuthUnsupportedMediaType),
        (status = 429, response = crate::openapi::OAuthTooManyRequests),
        (status = 500, response = crate::openapi::OAuthServerError),
        (status = 503, response = crate::openapi::OAuthUnavailable),
    ),
    security((), ("client_basic" = [])),
)]
pub async fn revoke(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let result = async {
        let body = body?;
        let form = parse_form(&headers, &body, TOKEN_FORM_PARAMETERS)?;
        let (client_id, secret) = client_credentials(&headers, &form)?;
        let client = ClientCredentials { id: &client_id, secret: secret.as_deref() };
        let token = required(&form, "token")?;
        if token.contains('.') {
            state.authority.authenticate_client(client).await?;
            return Ok::<_, OAuthError>(());
        }
        match state.authority.revoke_refresh_token(client, token).await {
            Ok(_) => Ok(()),
            // RFC 7009 section 2.1: another client's token is refused.
            Err(Error::Refresh(RefreshError::WrongClient)) => {
                Err(OAuthError::new(StatusCode::BAD_REQUEST, "unauthorized_client", "refresh.wrong_client"))
            }
            Err(e) => Err(e.into()),
        }
    }
    .await;
    match result {
        Ok(()) => (StatusCode::OK, no_store()).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The introspection answer for an active access token: its claims, `active` and `token_type`.
#[derive(Serialize)]
struct ActiveAccessToken<'a> {
    active: bool,
    token_type: &'static str,
    #[serde(flatten)]
    claims: &'a auth_core::tokens::AccessClaims,
}

/// `POST /oauth/introspect` (RFC 7662), for confidential clients.
#[utoipa::path(
    post,
    path = "/oauth/introspect",
    tag = "oauth",
    request_body(content = crate::openapi::TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The token's state and claims", body = crate::openapi::IntrospectionResponse,
            headers(("Cache-Control" = String, description = "`no-store`"), ("Pragma" = String, description = "`no-cache`"))),
        (status = 400, response = crate::openapi::OAuthBadRequest),
        (status = 401, response = crate::openapi::OAuthUnauthorized),
        (status = 413, response = crate::openapi::OAuthPayloadTooLarge),
        (status = 415, response = crate::openapi::OAuthUnsupportedMediaType),
        (status = 500, response = crate::openapi::OAuthServerError),
        (status = 503, response = crate::openapi::OAuthUnavailable),
    ),
    security(("client_basic" = []), ()),
)]
pub async fn introspect(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let result = async {
        let body = body?;
        let form = parse_form(&headers, &body, TOKEN_FORM_PARAMETERS)?;
        let (client_id, secret) = client_credentials(&headers, &form)?;
        if secret.is_none() {
            return Err(OAuthError::invalid_client());
        }
        let client = ClientCredentials { id: &client_id, secret: secret.as_deref() };
        state.authority.authenticate_client(client).await?;
        let token = required(&form, "token")?;
        let answer = match state.authority.introspect(token).await? {
            None => json!({ "active": false }),
            Some(Introspection::Access(claims)) => {
                // Serialized straight from the claims: the answer most often given, kept cheap.
                let body = ActiveAccessToken { active: true, token_type: "Bearer", claims: &claims };
                return Ok((StatusCode::OK, no_store(), Json(body)).into_response());
            }
            Some(Introspection::Refresh { family, expires_at }) => json!({
                "active": true,
                "token_type": "refresh_token",
                "client_id": family.client_id,
                "scope": family.scope,
                "sub": family.user_id,
                "sid": family.id,
                "exp": expires_at,
                "iat": family.created_at,
            }),
        };
        Ok((StatusCode::OK, no_store(), Json(answer)).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
