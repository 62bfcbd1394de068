//! `GET /.well-known/jwks.json` and the discovery documents (OpenID Connect Discovery and RFC 8414).
//! Both answer from memory, so they keep working while the database is down.

use std::collections::BTreeMap;
use std::sync::Arc;

use auth_core::Code;
use auth_core::oauth::grants;
use auth_core::spec::Spec;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::Problem;
use crate::state::AppState;

/// The JWKS and the discovery documents.
pub fn routes() -> OpenApiRouter<Arc<WellKnown>> {
    OpenApiRouter::new()
        .routes(routes!(jwks))
        .routes(routes!(authorization_server))
        .routes(routes!(openid_configuration))
}

/// The state of these routes: the service, and what they publish, computed once from its spec.
#[derive(Debug)]
pub struct WellKnown {
    state: Arc<AppState>,
    /// `Cache-Control` of the JWKS: `public, max-age=<keys.jwks_max_age>`.
    jwks_cache_control: HeaderValue,
    /// The discovery document (OpenID Connect Discovery and RFC 8414 alike).
    metadata: ServerMetadata,
}

impl WellKnown {
    /// Derives what the well-known routes publish from the service's spec.
    pub fn new(state: Arc<AppState>) -> Self {
        let max_age = format!("public, max-age={}", state.spec.keys.jwks_max_age.0);
        Self {
            jwks_cache_control: HeaderValue::from_str(&max_age).unwrap_or(HeaderValue::from_static("no-cache")),
            metadata: ServerMetadata::new(&state.spec),
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
        (status = 200, description = "The published public keys", body = Jwks, content_type = "application/json",
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

/// A JSON Web Key Set (RFC 7517 section 5).
// The schema of what `jwks` serves: auth-core serializes the key set once per key load and the
// handler sends those bytes; a test reads them back into this type, which refuses members it
// does not declare.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Jwks {
    /// The published keys: pending, active and retiring.
    pub keys: Vec<Jwk>,
}

/// A public JSON Web Key (RFC 7517): the members of its key type (`OKP`: `crv`, `x`; `EC`:
/// `crv`, `x`, `y`; `RSA`: `n`, `e`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Jwk {
    /// Key type: `OKP`, `EC` or `RSA`.
    pub kty: String,
    /// Key id: the RFC 7638 thumbprint.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub kid: Option<String>,
    /// The algorithm the key signs with.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub alg: Option<String>,
    /// Intended use (`sig`).
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub key_use: Option<String>,
    /// Curve (`Ed25519`, `P-256`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub crv: Option<String>,
    /// Public key (OKP) or x coordinate (EC), base64url.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub x: Option<String>,
    /// y coordinate (EC), base64url.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub y: Option<String>,
    /// Modulus (RSA), base64url.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub n: Option<String>,
    /// Exponent (RSA), base64url.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub e: Option<String>,
}

/// Authorization server metadata (RFC 8414). Only what works is advertised: there is no
/// authorization endpoint yet, so no response type, and no ID tokens, so neither ID-token
/// algorithms nor subject types; nor an OpenID Connect discovery document, which would claim an
/// OpenID Provider.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerMetadata {
    /// The issuer.
    pub issuer: String,
    /// `POST /oauth/token`.
    pub token_endpoint: String,
    /// `POST /oauth/revoke`.
    pub revocation_endpoint: String,
    /// `POST /oauth/introspect`.
    pub introspection_endpoint: String,
    /// `GET /userinfo`.
    pub userinfo_endpoint: String,
    /// `GET /.well-known/jwks.json`.
    pub jwks_uri: String,
    /// The spec's scopes.
    pub scopes_supported: Vec<String>,
    /// `code` when a client of the spec uses the authorization endpoint; else empty (RFC 8414 requires the member).
    pub response_types_supported: Vec<String>,
    /// The grant types some client of the spec may use.
    pub grant_types_supported: Vec<&'static str>,
    /// Client authentication at the token endpoint.
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    /// Client authentication at the revocation endpoint.
    pub revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    /// Client authentication at the introspection endpoint.
    pub introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    /// `sub`, `preferred_username` and the spec's custom claims.
    pub claims_supported: Vec<String>,
    /// Members that the grants in use add (each grant's `discovery`).
    #[serde(flatten)]
    #[schema(value_type = BTreeMap<String, Value>)]
    pub grant_members: BTreeMap<&'static str, Value>,
}

impl ServerMetadata {
    /// The metadata of a spec: its endpoints, scopes and claims, and the grants some client of it
    /// may use, in registry order.
    pub fn new(spec: &Spec) -> Self {
        let issuer = &spec.issuer;
        let used: Vec<&'static dyn grants::TokenGrant> = grants::GRANTS
            .iter()
            .copied()
            .filter(|g| spec.clients.values().any(|c| c.allows(g.name())))
            .collect();
        let mut grant_types_supported: Vec<&'static str> = used.iter().map(|g| g.name()).collect();
        grant_types_supported.sort_unstable();
        let client_auth = || vec!["client_secret_basic", "client_secret_post", "none"];
        let mut grant_members: BTreeMap<&'static str, Value> = used.iter().flat_map(|g| g.discovery(issuer)).collect();
        // A grant that uses the authorization endpoint says which response types it answers.
        // An OpenID Provider: some grant issues ID tokens (the code flow).
        let openid = grant_members.contains_key("id_token_signing_alg_values_supported");
        let openid_scopes: &[&str] = if openid { auth_core::authority::OIDC_SCOPES } else { &[] };
        let response_types_supported = match grant_members.remove("response_types_supported") {
            Some(Value::Array(types)) => types.into_iter().filter_map(|t| t.as_str().map(str::to_owned)).collect(),
            _ => Vec::new(),
        };
        Self {
            issuer: issuer.clone(),
            token_endpoint: format!("{issuer}/oauth/token"),
            revocation_endpoint: format!("{issuer}/oauth/revoke"),
            introspection_endpoint: format!("{issuer}/oauth/introspect"),
            userinfo_endpoint: format!("{issuer}/userinfo"),
            jwks_uri: format!("{issuer}/.well-known/jwks.json"),
            scopes_supported: openid_scopes.iter().map(|s| (*s).to_owned()).chain(spec.scopes.keys().cloned()).collect(),
            response_types_supported,
            grant_types_supported,
            token_endpoint_auth_methods_supported: client_auth(),
            revocation_endpoint_auth_methods_supported: client_auth(),
            introspection_endpoint_auth_methods_supported: vec!["client_secret_basic", "client_secret_post"],
            claims_supported: ["sub", "preferred_username"]
                .into_iter()
                .chain(if openid { ID_TOKEN_CLAIMS } else { &[] }.iter().copied())
                .map(str::to_owned)
                .chain(spec.claims.keys().cloned())
                .collect(),
            grant_members,
        }
    }
}

/// The claims of ID tokens, listed in `claims_supported` when there are ID tokens.
const ID_TOKEN_CLAIMS: &[&str] = &["iss", "aud", "exp", "iat", "auth_time", "nonce", "amr", "sid", "azp", "at_hash"];

impl ServerMetadata {
    /// Whether this server is an OpenID Provider (some client uses the code flow, which issues
    /// ID tokens).
    pub fn is_openid_provider(&self) -> bool {
        self.grant_members.contains_key("id_token_signing_alg_values_supported")
    }
}

/// `GET /.well-known/openid-configuration` (OpenID Connect Discovery 1.0 section 4): the same
/// metadata, served when some client uses the code flow; 404 otherwise (there is then no OpenID
/// Provider to describe).
#[utoipa::path(
    get,
    path = "/.well-known/openid-configuration",
    tag = "discovery",
    responses(
        (status = 200, description = "OpenID Provider metadata", body = ServerMetadata),
        (status = 404, description = "No client of the spec uses the code flow: no OpenID Provider", body = crate::http::error::ProblemBody, content_type = "application/problem+json"),
    ),
)]
pub async fn openid_configuration(State(published): State<Arc<WellKnown>>) -> Response {
    if published.metadata.is_openid_provider() {
        Json(&published.metadata).into_response()
    } else {
        Problem::new(StatusCode::NOT_FOUND, Code::RouteNotFound, "No OpenID Provider: no client of the spec uses the code flow")
            .into_response()
    }
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414).
#[utoipa::path(
    get,
    path = "/.well-known/oauth-authorization-server",
    tag = "discovery",
    responses((status = 200, description = "RFC 8414 authorization server metadata", body = ServerMetadata)),
)]
pub async fn authorization_server(State(published): State<Arc<WellKnown>>) -> Response {
    Json(&published.metadata).into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use auth_core::crypto::PrivateKey;
    use auth_core::keys::JwkSet;
    use auth_core::random::OsEntropy;
    use auth_core::spec::SigningAlgorithm;

    use super::Jwks;

    #[test]
    fn the_documented_jwks_holds_every_published_key_type() {
        for alg in [SigningAlgorithm::EdDSA, SigningAlgorithm::ES256, SigningAlgorithm::RS256] {
            let jwk = PrivateKey::generate(alg, &OsEntropy::default()).unwrap().public_jwk().unwrap();
            // What auth-core publishes: the key set serialized as is.
            let published = serde_json::to_vec(&JwkSet { keys: vec![jwk] }).unwrap();
            let documented: Jwks = serde_json::from_slice(&published)
                .unwrap_or_else(|e| panic!("{alg:?}: the published JWKS has a member the schema lacks: {e}"));
            let key = &documented.keys[0];
            assert_eq!(key.alg.as_deref(), Some(alg.as_str()));
            assert_eq!(key.key_use.as_deref(), Some("sig"));
            assert!(key.kid.is_some());
        }
    }
}
