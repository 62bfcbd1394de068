//! `GET /.well-known/jwks.json` and the discovery documents (OpenID Connect Discovery and RFC 8414).
//! Both answer from memory, so they keep working while the database is down.

use std::sync::Arc;

use auth_core::spec::Spec;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::error::Problem;

/// `GET /.well-known/jwks.json`, cacheable for `keys.jwks_max_age` (never longer than a new key
/// waits before signing, so cached copies always hold it).
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "discovery",
    responses(
        (status = 200, description = "The published public keys", body = crate::openapi::Jwks, content_type = "application/json",
            headers(("Cache-Control" = String, description = "`public, max-age=<keys.jwks_max_age>`"))),
        (status = 503, response = crate::openapi::ProblemUnavailable),
    ),
)]
pub async fn jwks(State(state): State<Arc<AppState>>) -> Response {
    match state.keys().cached_snapshot() {
        Some(snapshot) => {
            let json = HeaderValue::from_static("application/json");
            let cache = state.published.jwks_cache_control.clone();
            (StatusCode::OK, [(header::CONTENT_TYPE, json), (header::CACHE_CONTROL, cache)], snapshot.jwks_json.clone())
                .into_response()
        }
        None => Problem::new(StatusCode::SERVICE_UNAVAILABLE, "key.not_loaded", "Signing keys are not loaded").into_response(),
    }
}

fn metadata(spec: &Spec) -> Value {
    let issuer = &spec.issuer;
    let mut grants: Vec<&str> = spec
        .clients
        .values()
        .flat_map(|c| c.grants.iter().map(|g| g.as_str()))
        .collect();
    grants.sort_unstable();
    grants.dedup();
    let claims: Vec<&str> =
        ["sub", "preferred_username"].into_iter().chain(spec.claims.keys().map(String::as_str)).collect();
    json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/oauth/token"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "scopes_supported": spec.scopes.keys().collect::<Vec<_>>(),
        "response_types_supported": ["token"],
        "grant_types_supported": grants,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "id_token_signing_alg_values_supported": [spec.tokens.algorithm.as_str()],
        "subject_types_supported": ["public"],
        "claims_supported": claims,
    })
}

/// `GET /.well-known/openid-configuration`.
#[utoipa::path(
    get,
    path = "/.well-known/openid-configuration",
    tag = "discovery",
    responses((status = 200, description = "OpenID Connect discovery metadata", body = crate::openapi::ServerMetadata)),
)]
pub async fn openid_configuration(State(state): State<Arc<AppState>>) -> Response {
    Json(state.published.metadata.clone()).into_response()
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414).
#[utoipa::path(
    get,
    path = "/.well-known/oauth-authorization-server",
    tag = "discovery",
    responses((status = 200, description = "RFC 8414 authorization server metadata", body = crate::openapi::ServerMetadata)),
)]
pub async fn authorization_server(State(state): State<Arc<AppState>>) -> Response {
    Json(state.published.metadata.clone()).into_response()
}

/// What the well-known routes publish that depends only on the spec, computed once.
#[derive(Debug, Clone)]
pub struct Published {
    /// `Cache-Control` of the JWKS: `public, max-age=<keys.jwks_max_age>`.
    pub jwks_cache_control: HeaderValue,
    /// The discovery document (OpenID Connect Discovery and RFC 8414 alike).
    pub metadata: Value,
}

impl Published {
    /// Derives what the well-known routes publish from the spec.
    pub fn new(spec: &Spec) -> Self {
        let max_age = format!("public, max-age={}", spec.keys.jwks_max_age.0);
        Self {
            jwks_cache_control: HeaderValue::from_str(&max_age).unwrap_or(HeaderValue::from_static("no-cache")),
            metadata: metadata(spec),
        }
    }
}
