//! `POST /oauth/token` (RFC 6749 section 3.2): looks the grant up in auth-core's registry
//! ([`auth_core::oauth::grants`]) and lets it issue. Nothing here names a grant.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use auth_core::{Code, Error};
use auth_core::error::RefreshError;
use auth_core::oauth::grants::{self, GrantParameters};
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, KnownFormat, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::http::error::{OAuthError, no_store};
use crate::http::extract::{ClientAuth, ClientFields, FormParameters, OAuthForm};
use crate::state::AppState;

/// The form of `POST /oauth/token`: `grant_type`, the client's fields, and the parameters of
/// every grant of the registry (a grant reads its own).
#[derive(Debug)]
pub struct TokenRequest {
    /// `grant_type`.
    pub grant_type: Option<String>,
    /// `client_id`.
    pub client_id: Option<String>,
    /// `client_secret`.
    pub client_secret: Option<String>,
    /// The grants' parameters that were sent.
    pub parameters: HashMap<String, String>,
}

/// `grant_type`, the client's fields and every grant's parameters.
static TOKEN_PARAMETERS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut names = vec!["grant_type"];
    names.extend(ClientFields::NAMES);
    names.extend(grants::all_parameters().iter().map(|p| p.name));
    names
});

impl FormParameters for TokenRequest {
    fn names() -> &'static [&'static str] {
        &TOKEN_PARAMETERS
    }

    fn from_values(mut values: HashMap<String, String>) -> Self {
        Self {
            grant_type: values.remove("grant_type"),
            client_id: values.remove("client_id"),
            client_secret: values.remove("client_secret"),
            parameters: values,
        }
    }
}

impl TokenRequest {
    fn client(&self) -> ClientFields<'_> {
        ClientFields { client_id: self.client_id.as_deref(), client_secret: self.client_secret.as_deref() }
    }
}

/// One shape per grant of the registry, built from what each grant declares. Clients authenticate
/// with HTTP Basic or with `client_id` (and `client_secret`) in the form, never both; a public
/// client sends only `client_id`.
impl PartialSchema for TokenRequest {
    fn schema() -> RefOr<Schema> {
        let mut one_of = OneOfBuilder::new();
        for grant in grants::GRANTS {
            let mut shape = ObjectBuilder::new()
                .description(Some(grant.summary()))
                .property(
                    "grant_type",
                    ObjectBuilder::new().schema_type(Type::String).enum_values(Some([grant.name()])),
                )
                .required("grant_type");
            for parameter in grant.parameters() {
                let mut property =
                    ObjectBuilder::new().schema_type(Type::String).description(Some(parameter.description));
                if parameter.required {
                    property = property.min_length(Some(1));
                }
                if parameter.secret {
                    property = property.format(Some(SchemaFormat::KnownFormat(KnownFormat::Password)));
                }
                shape = shape.property(parameter.name, property);
                if parameter.required {
                    shape = shape.required(parameter.name);
                }
            }
            shape = shape
                .property(
                    "client_id",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1))
                        .description(Some("The client, when it does not use HTTP Basic (with Basic, the same id or nothing).")),
                )
                .property(
                    "client_secret",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .description(Some("The client's secret, when it does not use HTTP Basic.")),
                );
            one_of = one_of.item(shape);
        }
        RefOr::T(Schema::OneOf(one_of.build()))
    }
}

impl ToSchema for TokenRequest {}

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
    /// The next refresh token (grants that start or continue a session); the one sent is spent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub refresh_token: Option<String>,
    /// Password logins: a token that identifies this device to the account. Send it as
    /// `device_token` with the next password login from this device: the device then keeps a
    /// login allowance of its own, which failed attempts from elsewhere cannot spend.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub device_token: Option<String>,
    /// Code exchanges with the `openid` scope: the OpenID Connect ID token (RS256).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub id_token: Option<String>,
}

/// `POST /oauth/token`.
#[utoipa::path(
    post,
    path = "/oauth/token",
    tag = "oauth",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Tokens issued", body = TokenResponse,
            headers(("Cache-Control" = String, description = "`no-store`"), ("Pragma" = String, description = "`no-cache`"))),
        crate::http::openapi::OAuthFormRefusals,
        (status = 429, response = crate::http::openapi::OAuthTooManyRequests),
    ),
    security((), ("client_basic" = [])),
)]
pub async fn token(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    client: ClientAuth,
    OAuthForm(form): OAuthForm<TokenRequest>,
) -> Result<impl IntoResponse, OAuthError> {
    let client = client.credentials(form.client())?;
    let grant_type = match form.grant_type.as_deref() {
        Some(name) if !name.is_empty() => name,
        _ => return Err(OAuthError::from(Error::MissingParameter("grant_type"))),
    };
    let Some(grant) = grants::grant(grant_type) else {
        return Err(OAuthError::new(StatusCode::BAD_REQUEST, "unsupported_grant_type", Code::GrantUnsupported).detail(grant_type));
    };
    let issued = match grant.issue(&state.authority, client, GrantParameters::new(&form.parameters).from_source(peer.ip())).await {
        Ok(issued) => issued,
        Err(e) => {
            match &e {
                Error::Refresh(RefreshError::Reused) => state.metrics.refresh_reuse.inc(),
                Error::TooManyAttempts { .. } => state.metrics.rate_limited.with_label_values(&["login"]).inc(),
                _ => {}
            }
            return Err(e.into());
        }
    };
    // The registry's name, not the text sent: a bounded label.
    state.metrics.tokens_issued.with_label_values(&[grant.name()]).inc();
    let body = TokenResponse {
        access_token: issued.access.token,
        token_type: "Bearer",
        expires_in: issued.access.expires_in,
        scope: issued.scope,
        refresh_token: issued.refresh_token,
        device_token: issued.device_token,
        id_token: issued.id_token,
    };
    Ok((StatusCode::OK, no_store(), Json(body)))
}
