//! The OAuth endpoints: `POST /oauth/token` (RFC 6749, [`token`]), `POST /oauth/revoke`
//! (RFC 7009), `POST /oauth/introspect` (RFC 7662), `POST /oauth/par` (RFC 9126, [`par`]). Form-encoded in, RFC 6749 error JSON out.

pub mod authorize;
pub mod end_session;
pub mod par;
pub mod token;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use auth_core::{Code, Error};
use auth_core::authority::Introspection;
use auth_core::error::RefreshError;
use auth_core::tokens::{AccessClaims, Audience};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::error::{OAuthError, no_store};
use crate::http::extract::{ClientAuth, ClientFields, FormParameters, OAuthForm};
use crate::state::AppState;

/// The credential endpoints (token, revoke, pushed authorization requests), which the caller
/// puts behind the per-IP limit.
pub fn credential_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(token::token)).routes(routes!(revoke)).routes(routes!(par::push))
}

/// Introspection. Not limited per IP: resource servers introspect for the requests they serve,
/// from few addresses, and only with a confidential client's secret (256 random bits, not
/// guessable).
pub fn introspection_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(introspect))
}

/// The form of `POST /oauth/revoke` (RFC 7009) and `POST /oauth/introspect` (RFC 7662).
#[derive(Debug, Default, ToSchema)]
pub struct TokenForm {
    /// The token: an access token or a refresh token.
    #[schema(required = true, min_length = 1)]
    pub token: Option<String>,
    /// `access_token` or `refresh_token`; accepted and ignored (the token's form tells).
    pub token_type_hint: Option<String>,
    /// The client, when it does not use HTTP Basic (with Basic, the same id or nothing).
    #[schema(min_length = 1)]
    pub client_id: Option<String>,
    /// The client's secret, when it does not use HTTP Basic.
    pub client_secret: Option<String>,
}

impl FormParameters for TokenForm {
    fn names() -> &'static [&'static str] {
        &["token", "token_type_hint", "client_id", "client_secret"]
    }

    fn from_values(mut values: HashMap<String, String>) -> Self {
        Self {
            token: values.remove("token"),
            token_type_hint: values.remove("token_type_hint"),
            client_id: values.remove("client_id"),
            client_secret: values.remove("client_secret"),
        }
    }
}

impl TokenForm {
    fn client(&self) -> ClientFields<'_> {
        ClientFields { client_id: self.client_id.as_deref(), client_secret: self.client_secret.as_deref() }
    }

    fn token(&self) -> Result<&str, OAuthError> {
        match self.token.as_deref() {
            Some(token) if !token.is_empty() => Ok(token),
            _ => Err(Error::MissingParameter("token").into()),
        }
    }
}

/// `POST /oauth/revoke` (RFC 7009): 200 whether or not the token was known. A refresh token, or
/// an access token of a session, ends the session (every token of it); an access token without a
/// session (client credentials) is denied until it expires. Introspection and this server's
/// bearer endpoints then refuse them, on every replica; resource servers that verify signatures
/// only learn of it through introspection.
#[utoipa::path(
    post,
    path = "/oauth/revoke",
    tag = "oauth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or the token was not known (empty body)",
            headers(("Cache-Control" = String, description = "`no-store`"), ("Pragma" = String, description = "`no-cache`"))),
        crate::http::openapi::OAuthFormRefusals,
        (status = 429, response = crate::http::openapi::OAuthTooManyRequests),
    ),
    security((), ("client_basic" = [])),
)]
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    client: ClientAuth,
    OAuthForm(form): OAuthForm<TokenForm>,
) -> Result<Response, OAuthError> {
    let client = client.credentials(form.client())?;
    let token = form.token()?;
    // An access token of a session ends the session; one without (client credentials) is denied
    // until it expires. A refresh token ends its session.
    let revoked = if auth_core::tokens::looks_like_jwt(token) {
        state.authority.revoke_access_token(client, token).await
    } else {
        state.authority.revoke_refresh_token(client, token).await
    };
    match revoked {
        Ok(_) => Ok((StatusCode::OK, no_store()).into_response()),
        // RFC 7009 section 2.1: another client's token is refused.
        Err(Error::Refresh(RefreshError::WrongClient)) => {
            Err(OAuthError::new(StatusCode::BAD_REQUEST, "unauthorized_client", Code::RefreshWrongClient))
        }
        Err(e) => Err(e.into()),
    }
}

/// An RFC 7662 introspection answer: `{"active": false}` for anything not live, else the token's
/// claims (custom claims included for access tokens).
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct IntrospectionResponse {
    /// Whether the token is live.
    pub active: bool,
    /// `Bearer` for an access token; absent for a refresh token (RFC 7662 section 2.2 ties the
    /// member to RFC 6749 access token types).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub token_type: Option<&'static str>,
    /// The client the token was issued to.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub client_id: Option<String>,
    /// Granted scopes, space-separated.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub scope: Option<String>,
    /// The subject: the user id, or the client id for client-credentials tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub sub: Option<String>,
    /// The session (absent for client-credentials tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub sid: Option<String>,
    /// Expiry (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = i64)]
    pub exp: Option<i64>,
    /// Issued at (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = i64)]
    pub iat: Option<i64>,
    /// Issuer (access tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub iss: Option<String>,
    /// Audience: one string or several (access tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = audience_schema)]
    pub aud: Option<Audience>,
    /// Token id (access tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub jti: Option<String>,
    /// The spec's custom claims (access tokens).
    #[serde(flatten)]
    pub claims: BTreeMap<String, Value>,
}

fn audience_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String)))
        .build()
        .into()
}

impl From<Introspection> for IntrospectionResponse {
    fn from(introspection: Introspection) -> Self {
        match introspection {
            Introspection::Access(claims) => {
                let AccessClaims { iss, sub, aud, exp, iat, jti, client_id, scope, sid, custom } = claims;
                Self {
                    active: true,
                    token_type: Some("Bearer"),
                    client_id: Some(client_id),
                    scope: Some(scope),
                    sub: Some(sub),
                    sid,
                    exp: Some(exp),
                    iat: Some(iat),
                    iss: Some(iss),
                    aud: Some(aud),
                    jti: Some(jti),
                    claims: custom,
                }
            }
            // RFC 7662 section 2.2 ties `token_type` to RFC 6749's access token types; a refresh
            // token has none, so the member is left out.
            Introspection::Refresh { family, expires_at } => Self {
                active: true,
                token_type: None,
                client_id: Some(family.client_id),
                scope: Some(family.scope),
                sub: family.user_id,
                sid: Some(family.id),
                exp: Some(expires_at),
                iat: Some(family.created_at),
                ..Self::default()
            },
        }
    }
}

/// `POST /oauth/introspect` (RFC 7662), for confidential clients.
#[utoipa::path(
    post,
    path = "/oauth/introspect",
    tag = "oauth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The token's state and claims", body = IntrospectionResponse,
            headers(("Cache-Control" = String, description = "`no-store`"), ("Pragma" = String, description = "`no-cache`"))),
        crate::http::openapi::OAuthFormRefusals,
    ),
    security(("client_basic" = []), ()),
)]
pub async fn introspect(
    State(state): State<Arc<AppState>>,
    client: ClientAuth,
    OAuthForm(form): OAuthForm<TokenForm>,
) -> Result<Response, OAuthError> {
    let client = client.credentials(form.client())?;
    if client.secret.is_none() {
        return Err(OAuthError::invalid_client());
    }
    state.authority.authenticate_client(client).await?;
    let token = form.token()?;
    let answer = state.authority.introspect(token).await?.map(IntrospectionResponse::from).unwrap_or_default();
    Ok((StatusCode::OK, no_store(), Json(answer)).into_response())
}
