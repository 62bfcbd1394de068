//! `GET /.well-known/jwks.json` and the discovery documents (OpenID Connect Discovery and RFC 8414).
//! Both answer from memory, so they keep working while the database is down.

use std::sync::Arc;

use auth_core::Code;
use auth_core::oauth::grants;
use auth_core::spec::Spec;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::Problem;
use crate::state::AppState;

/// The JWKS and the discovery documents.
pub fn routes() -> OpenApiRouter<Arc<WellKnown>> {
    OpenApiRouter::new()
        .routes(routes!(jwks))
        .routes(routes!(openid_configuration))
        .routes(routes!(authorization_server))
}

/// The state of these routes: the service, and what they publish, computed once from its spec.
#[derive(Debug)]
pub struct WellKnown {
    state: Arc<AppState>,
    /// `Cache-Control` of the JWKS: `public, max-age=<keys.jwks_max_age>`.
    jwks_cache_control: HeaderValue,
    /// The discovery document (OpenID Connect Discovery and RFC 8414 alike).
    metadata: Value,
}

impl WellKnown {
    /// Derives what the well-known routes publish from the service's spec.
    pub fn new(state: Arc<AppState>) -> Self {
        let max_age = format!("public, max-age={}", state.spec.keys.jwks_max_age.0);
        Self {
            jwks_cache_control: HeaderValue::from_str(&max_age).unwrap_or(HeaderValue::from_static("no-cache")),
            metadata: metadata(&state.spec),
            state,
        }
    }
}

/// `GET /.well-known/jwks.json`, cacheable for `keys.jwks_max_age` (never longer than a new key
/// waits before signing, so cached copies always hold it).
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "discovery",
    responses(
        (status = 200, description = "The published public keys", body = crate::http::openapi::Jwks, content_type = "application/json",
            headers(("Cache-Control" = String, description = "`public, max-age=<keys.jwks_max_age>`"))),
        (status = 503, response = crate::http::openapi::ProblemUnavailable),
    ),
)]
pub async fn jwks(State(published): State<Arc<WellKnown>>) -> Response {
    match published.state.authority.jwks_json() {
        Some(jwks) => {
            let json = HeaderValue::from_static("application/json");
            let cache = published.jwks_cache_control.clone();
            (StatusCode::OK, [(header::CONTENT_TYPE, json), (header::CACHE_CONTROL, cache)], jwks).into_response()
        }
        None => Problem::new(StatusCode::SERVICE_UNAVAILABLE, Code::KeyNotLoaded, "Signing keys are not loaded").into_response(),
    }
}

fn metadata(spec: &Spec) -> Value {
    let issuer = &spec.issuer;
    // In registry order, each grant some client of the spec may use.
    let used: Vec<&'static dyn grants::TokenGrant> = grants::GRANTS
        .iter()
        .copied()
        .filter(|g| spec.clients.values().any(|c| c.allows(g.name())))
        .collect();
    let claims: Vec<&str> =
        ["sub", "preferred_username"].into_iter().chain(spec.claims.keys().map(String::as_str)).collect();
    let mut grant_names: Vec<&str> = used.iter().map(|g| g.name()).collect();
    grant_names.sort_unstable();
    let mut metadata = json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/oauth/token"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "scopes_supported": spec.scopes.keys().collect::<Vec<_>>(),
        "response_types_supported": ["token"],
        "grant_types_supported": grant_names,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "id_token_signing_alg_values_supported": [spec.tokens.algorithm.as_str()],
        "subject_types_supported": ["public"],
        "claims_supported": claims,
    });
    for grant in used {
        for (name, value) in grant.discovery(issuer) {
            metadata[name] = value;
        }
    }
    metadata
}

/// `GET /.well-known/openid-configuration`.
#[utoipa::path(
    get,
    path = "/.well-known/openid-configuration",
    tag = "discovery",
    responses((status = 200, description = "OpenID Connect discovery metadata", body = crate::http::openapi::ServerMetadata)),
)]
pub async fn openid_configuration(State(published): State<Arc<WellKnown>>) -> Response {
    Json(published.metadata.clone()).into_response()
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414).
#[utoipa::path(
    get,
    path = "/.well-known/oauth-authorization-server",
    tag = "discovery",
    responses((status = 200, description = "RFC 8414 authorization server metadata", body = crate::http::openapi::ServerMetadata)),
)]
pub async fn authorization_server(State(published): State<Arc<WellKnown>>) -> Response {
    Json(published.metadata.clone()).into_response()
}
