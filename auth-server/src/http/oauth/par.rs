//! `POST /oauth/par`: pushed authorization requests (RFC 9126). The client sends the parameters
//! of an authorization request over the back channel, authenticated as at the token endpoint; they
//! are validated as at the authorization endpoint and kept for a minute under a `request_uri`,
//! which the browser then brings to `/oauth/authorize` with the `client_id`, once. The request's
//! parameters never pass through the browser, so they can be neither read nor changed there.

use std::collections::HashMap;
use std::sync::Arc;

use auth_core::authority::{AuthorizationRequest, AuthorizeRefusal};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::authorize::{AUTHORIZE_PARAMETERS, authorization_request};
use crate::http::error::{OAuthError, no_store};
use crate::http::extract::{ClientAuth, ClientFields, FormParameters, OAuthForm};
use crate::state::AppState;

/// The form of `POST /oauth/par`: the parameters of an authorization request and the client's
/// credentials.
#[derive(Debug)]
pub struct PushedRequestForm {
    request: AuthorizationRequest,
    client_secret: Option<String>,
}

static PUSHED_PARAMETERS: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    let mut names = AUTHORIZE_PARAMETERS.to_vec();
    names.push("client_secret");
    names
});

impl FormParameters for PushedRequestForm {
    fn names() -> &'static [&'static str] {
        &PUSHED_PARAMETERS
    }

    fn from_values(mut values: HashMap<String, String>) -> Self {
        let client_secret = values.remove("client_secret");
        Self { request: authorization_request(values), client_secret }
    }
}

/// The parameters of `POST /oauth/par` (documentation of the form; see the authorization
/// endpoint for each).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct PushedRequestSchema {
    /// `code`.
    #[schema(required = true)]
    response_type: Option<String>,
    /// The client (also from HTTP Basic); must be the client that authenticates.
    client_id: Option<String>,
    /// The client's secret, when it does not use HTTP Basic.
    client_secret: Option<String>,
    /// One of the client's registered redirect URIs.
    redirect_uri: Option<String>,
    /// Requested scopes, space-separated.
    scope: Option<String>,
    /// Returned with the code.
    state: Option<String>,
    /// PKCE S256 challenge.
    #[schema(required = true)]
    code_challenge: Option<String>,
    /// `S256`.
    #[schema(required = true)]
    code_challenge_method: Option<String>,
    /// Into the ID token.
    nonce: Option<String>,
    /// `none`, `login`, `consent`.
    prompt: Option<String>,
    /// Longest acceptable time since sign-in, in seconds.
    max_age: Option<String>,
    /// The username to fill in.
    login_hint: Option<String>,
    /// Preferred languages of the pages.
    ui_locales: Option<String>,
}

/// The answer of `POST /oauth/par` (RFC 9126 section 2.2).
#[derive(Debug, Serialize, ToSchema)]
pub struct PushedRequestResponse {
    /// To send to `/oauth/authorize` with the `client_id`, once.
    pub request_uri: String,
    /// Seconds until it stops working.
    pub expires_in: i64,
}

/// `POST /oauth/par` (RFC 9126): `201` with the `request_uri`; the authorization endpoint's
/// refusals as RFC 6749 error JSON.
#[utoipa::path(
    post,
    path = "/oauth/par",
    tag = "oauth",
    request_body(content = PushedRequestSchema, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 201, description = "Stored; the browser brings the request_uri to /oauth/authorize", body = PushedRequestResponse,
            headers(("Cache-Control" = String, description = "`no-store`"), ("Pragma" = String, description = "`no-cache`"))),
        crate::http::openapi::OAuthFormRefusals,
        (status = 429, response = crate::http::openapi::OAuthTooManyRequests),
    ),
    security((), ("client_basic" = [])),
)]
pub async fn push(
    State(state): State<Arc<AppState>>,
    client: ClientAuth,
    OAuthForm(form): OAuthForm<PushedRequestForm>,
) -> Result<Response, OAuthError> {
    let fields = ClientFields { client_id: form.request.client_id.as_deref(), client_secret: form.client_secret.as_deref() };
    let client = client.credentials(fields)?;
    match state.authority.push_authorization(client, form.request.clone()).await? {
        Ok(pushed) => {
            let body = PushedRequestResponse { request_uri: pushed.request_uri, expires_in: pushed.expires_in };
            Ok((StatusCode::CREATED, no_store(), Json(body)).into_response())
        }
        Err(AuthorizeRefusal::Page { code, detail }) => Err(OAuthError::invalid_request(code).detail(detail)),
        Err(AuthorizeRefusal::Redirect { error, code, detail, .. }) => Err(OAuthError::new(StatusCode::BAD_REQUEST, error, code).detail(detail)),
    }
}
