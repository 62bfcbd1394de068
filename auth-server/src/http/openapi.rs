//! The OpenAPI 3.1 document served at `GET /openapi.json`.
//!
//! The paths come from the routes themselves: each area registers its handlers with utoipa-axum's
//! `routes!`, so a route cannot exist undocumented, and the request and response types named by
//! the annotations are the ones the handlers take and return. [`ApiDoc`] adds what is shared
//! (error bodies, reusable responses, security schemes, tags); [`document`] then patches in what
//! only the loaded spec knows: the issuer as the server, the scopes, and the custom claims in the
//! sign-up, user and userinfo schemas. The document is built once, when the router is, and served
//! from memory.

use std::collections::BTreeMap;
use std::sync::Arc;

use auth_core::authority::MAX_USERNAME_CHARS;
use auth_core::spec::{ClaimSetter, ClaimType, Spec};
use axum::extract::State;
use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::response::{Response as ResponseDoc, ResponseBuilder};
use utoipa::openapi::schema::{AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::security::{
    ClientCredentials, Flow, Http, HttpAuthScheme, OAuth2, Password, Scopes, SecurityScheme,
};
use utoipa::openapi::{Content, Header, OpenApi as OpenApiDoc, Ref, RefOr, Server};
use utoipa::{IntoResponses, Modify, OpenApi, ToResponse};

use super::error::{OAuthErrorBody, ProblemBody};

/// What a username must match: no control character (`Cc`) anywhere, and at least one character
/// that is neither a control nor whitespace (the set Rust's `char::is_whitespace` trims), written
/// out rather than `\s` because regex dialects disagree on what `\s` holds.
pub const USERNAME_PATTERN: &str = concat!(
    r"^[^\x00-\x1f\x7f-\x9f]*",
    r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]",
    r"[^\x00-\x1f\x7f-\x9f]*$",
);

// ---------------------------------------------------------------------------------------------
// Reusable responses

const RETRY_AFTER: &str = "Seconds to wait before retrying.";
const RATELIMIT_POLICY: &str = "The quota of the scope that applied (`\"scope\";q=<burst>;w=<window seconds>`).";
const RATELIMIT: &str = "What is left of it (`\"scope\";r=<remaining>;t=<seconds to full>`).";

fn string_header(description: &str) -> Header {
    let mut h = Header::new(ObjectBuilder::new().schema_type(Type::String));
    h.description = Some(description.to_owned());
    h
}

fn integer_header(description: &str) -> Header {
    let mut h = Header::new(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)));
    h.description = Some(description.to_owned());
    h
}

fn oauth_error(description: &str) -> ResponseBuilder {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", Content::new(Some(Ref::from_schema_name("OAuthErrorBody"))))
}

fn problem(description: &str) -> ResponseBuilder {
    ResponseBuilder::new()
        .description(description)
        .content("application/problem+json", Content::new(Some(Ref::from_schema_name("ProblemBody"))))
}

/// Declares marker types whose [`ToResponse`] impl is the given response, so that annotations
/// can say `response = Name` and the document holds each once under `components/responses`.
macro_rules! reusable_responses {
    ($($(#[$doc:meta])* $name:ident => $build:expr;)*) => {$(
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;
        impl<'s> ToResponse<'s> for $name {
            fn response() -> (&'s str, RefOr<ResponseDoc>) {
                (stringify!($name), $build.build().into())
            }
        }
    )*};
}

reusable_responses! {
    /// 400 on `/oauth/*`.
    OAuthBadRequest => oauth_error(
        "`invalid_request`, `invalid_grant`, `unauthorized_client`, `invalid_scope` or `unsupported_grant_type`",
    );
    /// 401 on `/oauth/*`: the client failed to authenticate.
    OAuthUnauthorized => oauth_error("`invalid_client`").header("WWW-Authenticate", string_header("`Basic realm=\"auth\"`"));
    /// 408 on `/oauth/*`.
    OAuthRequestTimeout => oauth_error("The body did not arrive within the body-read timeout (`invalid_request`, `request.body_timeout`); the connection is closed");
    /// 413 on `/oauth/*`.
    OAuthPayloadTooLarge => oauth_error("The body exceeds 64 KiB (`invalid_request`, `request.too_large`)");
    /// 415 on `/oauth/*`.
    OAuthUnsupportedMediaType => oauth_error("The body is not `application/x-www-form-urlencoded`");
    /// 429 on `/oauth/*`: the per-IP limit (`slow_down`) or the per-account login limit.
    OAuthTooManyRequests => oauth_error("Too many requests from this address, or too many login attempts on this account")
        .header("Retry-After", integer_header(RETRY_AFTER));
    /// 500 on `/oauth/*`.
    OAuthServerError => oauth_error("`server_error`; the cause is logged, not shown");
    /// 503 on `/oauth/*`.
    OAuthUnavailable => oauth_error("`temporarily_unavailable`: the database or the rate-limit backend is down");
    /// 400 as a problem.
    ProblemBadRequest => problem("Invalid input");
    /// 401 on bearer endpoints.
    BearerUnauthorized => problem("The access token is missing, invalid, expired, or its session has ended")
        .header("WWW-Authenticate", string_header("`Bearer error=\"invalid_token\", error_description=\"<code>\"`; plain `Bearer` when no token was sent"));
    /// 403 as a problem.
    ProblemForbidden => problem("Not allowed: a claim the user cannot set (`input.claim_not_settable`), an invitation that cannot be used (`invitation.invalid`), or a token without an admin scope (`auth.insufficient_scope`)");
    /// 404 as a problem.
    ProblemNotFound => problem("Not found");
    /// 409 as a problem.
    ProblemConflict => problem("Already exists");
    /// 408 as a problem.
    ProblemRequestTimeout => problem("The body did not arrive within the body-read timeout (`request.body_timeout`); the connection is closed");
    /// 413 as a problem.
    ProblemPayloadTooLarge => problem("The body exceeds 64 KiB (`request.too_large`)");
    /// 415 as a problem.
    ProblemUnsupportedMediaType => problem("The body is not `application/json`");
    /// 429 on bearer endpoints: a scope's limit is exhausted.
    BearerTooManyRequests => problem("The limit of one of the token's scopes is exhausted (`ratelimit.exceeded`)")
        .header("Retry-After", integer_header(RETRY_AFTER))
        .header("RateLimit-Policy", string_header(RATELIMIT_POLICY))
        .header("RateLimit", string_header(RATELIMIT));
    /// 429 of the per-IP limit outside `/oauth/*`.
    ProblemTooManyRequests => problem("Too many requests from this address (`ratelimit.per_ip`)")
        .header("Retry-After", integer_header(RETRY_AFTER));
    /// 500 as a problem.
    ProblemServerError => problem("Internal error; the cause is logged, not shown");
    /// 503 as a problem.
    ProblemUnavailable => problem("A dependency (database, rate-limit backend, keys) is unavailable");
}

/// Declares types whose [`IntoResponses`] impl lists reusable responses by status, for the
/// refusals that several operations share: `responses((status = 200, ...), Name)`.
macro_rules! shared_refusals {
    ($($(#[$doc:meta])* $name:ident => [$(($status:literal, $response:ident)),* $(,)?];)*) => {$(
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;
        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<ResponseDoc>> {
                BTreeMap::from([$(($status.to_owned(), RefOr::Ref(Ref::from_response_name(stringify!($response))))),*])
            }
        }
    )*};
}

shared_refusals! {
    /// What every form-encoded OAuth endpoint may refuse with.
    OAuthFormRefusals => [
        ("400", OAuthBadRequest),
        ("401", OAuthUnauthorized),
        ("408", OAuthRequestTimeout),
        ("413", OAuthPayloadTooLarge),
        ("415", OAuthUnsupportedMediaType),
        ("500", OAuthServerError),
        ("503", OAuthUnavailable),
    ];
    /// What every endpoint taking a JSON body may refuse it with.
    JsonBodyRefusals => [
        ("408", ProblemRequestTimeout),
        ("413", ProblemPayloadTooLarge),
        ("415", ProblemUnsupportedMediaType),
    ];
    /// What every bearer endpoint may refuse with.
    BearerRefusals => [
        ("401", BearerUnauthorized),
        ("429", BearerTooManyRequests),
        ("500", ProblemServerError),
        ("503", ProblemUnavailable),
    ];
}

// ---------------------------------------------------------------------------------------------
// The document

/// The static document: every route, schema, response and security scheme.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "auth-server",
        description = "OAuth 2.0 token service: password, refresh and client-credentials grants, \
            revocation, introspection, JWKS and discovery, sign-up, userinfo, sessions and consents. Errors are \
            RFC 6749 JSON on `/oauth/*` and RFC 9457 problem+json elsewhere."
    ),
    components(
        schemas(OAuthErrorBody, ProblemBody),
        responses(
            OAuthBadRequest, OAuthUnauthorized, OAuthRequestTimeout, OAuthPayloadTooLarge, OAuthUnsupportedMediaType,
            OAuthTooManyRequests, OAuthServerError, OAuthUnavailable, ProblemBadRequest,
            BearerUnauthorized, ProblemForbidden, ProblemNotFound, ProblemConflict, ProblemRequestTimeout, ProblemPayloadTooLarge,
            ProblemUnsupportedMediaType, BearerTooManyRequests, ProblemTooManyRequests,
            ProblemServerError, ProblemUnavailable,
        )
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "oauth", description = "RFC 6749 token endpoint, RFC 7009 revocation, RFC 7662 introspection"),
        (name = "discovery", description = "JWKS and server metadata"),
        (name = "users", description = "Sign-up, userinfo, sessions, consents and invitations"),
        (name = "admin", description = "For confidential clients holding an admin scope: users' claims and invitations"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
    )
)]
pub struct ApiDoc;

impl ApiDoc {
    /// The shared part of the document, to which the areas' routes add their paths.
    pub fn base() -> OpenApiDoc {
        Self::openapi()
    }
}

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut basic = Http::new(HttpAuthScheme::Basic);
        basic.description = Some(
            "Confidential clients: client id and secret, each form-urlencoded (RFC 6749 section 2.3.1)".to_owned(),
        );
        components.add_security_scheme("client_basic", SecurityScheme::Http(basic));
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.bearer_format = Some("JWT".to_owned());
        bearer.description = Some("An access token from `POST /oauth/token` (RFC 9068 JWT)".to_owned());
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
    }
}

/// The document for a spec: the routes' document plus the issuer as the server, the spec's scopes
/// (as an OAuth 2.0 security scheme) and its custom claims in the user schemas.
pub fn document(spec: &Spec, mut doc: OpenApiDoc) -> OpenApiDoc {
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.servers = Some(vec![Server::new(spec.issuer.clone())]);

    let token_url = format!("{}/oauth/token", spec.issuer.trim_end_matches('/'));
    let scopes = || {
        Scopes::from_iter(spec.scopes.iter().map(|(name, scope)| (name.clone(), scope.description.clone())))
    };
    let flows = [
        Flow::Password(Password::new(token_url.clone(), scopes())),
        Flow::ClientCredentials(ClientCredentials::new(token_url, scopes())),
    ];
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "oauth2",
        SecurityScheme::OAuth2(OAuth2::with_description(
            flows,
            "How to obtain the bearer token, and the scopes of this deployment",
        )),
    );

    for (schema, sign_up) in [("SignUpRequest", true), ("UserInfo", false), ("IntrospectionResponse", false)] {
        if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(schema) {
            for (name, claim) in &spec.claims {
                // Sign-up takes only the claims users set themselves.
                if sign_up && claim.set_by != ClaimSetter::User {
                    continue;
                }
                object.properties.insert(name.clone(), RefOr::T(claim_schema(claim.kind, &claim.description)));
                if sign_up && claim.required && claim.default.is_none() {
                    object.required.push(name.clone());
                }
            }
            // Sign-up refuses members that are not declared claims; when a required claim comes
            // only from administrators, a sign-up without an invitation cannot succeed.
            if sign_up {
                object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
                let needs_invitation =
                    spec.claims.values().any(|c| c.required && c.set_by == ClaimSetter::Admin && c.default.is_none());
                if needs_invitation {
                    object.required.push("invitation".to_owned());
                }
            }
        }
    }
    // What sign-up checks, where a schema can say it: the username rules and the spec's password
    // length bounds.
    if let Some(RefOr::T(Schema::Object(sign_up))) = components.schemas.get_mut("SignUpRequest") {
        if let Some(RefOr::T(Schema::Object(username))) = sign_up.properties.get_mut("username") {
            username.min_length = Some(1);
            username.max_length = Some(MAX_USERNAME_CHARS);
            username.pattern = Some(USERNAME_PATTERN.to_owned());
        }
        if let Some(RefOr::T(Schema::Object(password))) = sign_up.properties.get_mut("password") {
            password.min_length = Some(spec.passwords.min_length);
            password.max_length = Some(spec.passwords.max_length);
        }
    }
    if let Some(RefOr::T(Schema::Object(user))) = components.schemas.get_mut("Account")
        && let Some(RefOr::T(Schema::Object(claims))) = user.properties.get_mut("claims")
    {
        for (name, claim) in &spec.claims {
            claims.properties.insert(name.clone(), RefOr::T(claim_schema(claim.kind, &claim.description)));
        }
    }
    doc
}

fn claim_schema(kind: ClaimType, description: &str) -> Schema {
    let description = (!description.is_empty()).then(|| description.to_owned());
    let scalar = |ty: Type| ObjectBuilder::new().schema_type(ty).description(description.clone());
    match kind {
        ClaimType::String => scalar(Type::String).build().into(),
        ClaimType::Integer => scalar(Type::Integer).format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64))).build().into(),
        ClaimType::Boolean => scalar(Type::Boolean).build().into(),
        ClaimType::StringArray => ArrayBuilder::new()
            .items(ObjectBuilder::new().schema_type(Type::String))
            .description(description.clone())
            .build()
            .into(),
    }
}

/// The serialized document, built once.
#[derive(Debug, Clone)]
pub struct OpenApiJson(pub Arc<Bytes>);

impl OpenApiJson {
    /// Serializes a document.
    pub fn new(document: &OpenApiDoc) -> Self {
        // The document is plain data: serializing it cannot fail.
        let json = serde_json::to_vec(document).unwrap_or_default();
        Self(Arc::new(Bytes::from(json)))
    }
}

/// `GET /openapi.json`, on the serialized document as its state.
pub fn routes() -> utoipa_axum::router::OpenApiRouter<OpenApiJson> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(openapi_json))
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)),
)]
pub async fn openapi_json(State(document): State<OpenApiJson>) -> Response {
    let content_type = HeaderValue::from_static("application/json");
    ([(header::CONTENT_TYPE, content_type)], Bytes::clone(&document.0)).into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::BTreeSet;

    use auth_core::spec::{ClaimSetter, ClaimSpec, ClaimType, Spec};
    use serde_json::Value;

    /// Two claims set by administrators (`tenant_id` required) and two set by users (`nickname`
    /// required, `newsletter` optional).
    fn spec() -> Spec {
        let mut spec = Spec::default_local("http://127.0.0.1:8080");
        let claim = |kind, required, set_by| ClaimSpec {
            description: "A custom claim".to_owned(),
            set_by,
            ..ClaimSpec::new(kind, required)
        };
        spec.claims.insert("tenant_id".to_owned(), claim(ClaimType::String, true, ClaimSetter::Admin));
        spec.claims.insert("roles".to_owned(), claim(ClaimType::StringArray, false, ClaimSetter::Admin));
        spec.claims.insert("nickname".to_owned(), claim(ClaimType::String, true, ClaimSetter::User));
        spec.claims.insert("newsletter".to_owned(), claim(ClaimType::Boolean, false, ClaimSetter::User));
        spec
    }

    fn json() -> Value {
        serde_json::to_value(crate::http::api_document(&spec())).unwrap()
    }

    #[test]
    fn every_area_contributes_its_paths() {
        let doc = json();
        let paths = doc["paths"].as_object().unwrap();
        let documented: BTreeSet<String> = paths
            .iter()
            .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |m| format!("{m} {path}")))
            .collect();
        for expected in [
            "post /oauth/token",
            "post /oauth/par",
            "post /oauth/revoke",
            "post /oauth/introspect",
            "post /v1/users",
            "get /userinfo",
            "post /userinfo",
            "get /v1/sessions",
            "delete /v1/sessions/{sid}",
            "get /v1/consents",
            "delete /v1/consents/{client_id}",
            "post /v1/logout",
            "patch /v1/admin/users/{id}/claims",
            "post /v1/admin/invitations",
            "post /v1/invitations/accept",
            "get /.well-known/jwks.json",
            "get /.well-known/oauth-authorization-server",
            "get /.well-known/openid-configuration",
            "get /healthz",
            "get /readyz",
            "get /metrics",
            "get /openapi.json",
        ] {
            assert!(documented.contains(expected), "{expected} is not documented: {documented:?}");
        }
        assert_eq!(documented.len(), 22, "{documented:?}");
    }

    #[test]
    fn the_token_form_has_one_shape_per_grant_of_the_registry() {
        let doc = json();
        let body = &doc["paths"]["/oauth/token"]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"];
        let schema = match body.get("$ref").and_then(Value::as_str) {
            Some(target) => doc.pointer(target.trim_start_matches('#')).unwrap().clone(),
            None => body.clone(),
        };
        let shapes = schema["oneOf"].as_array().unwrap();
        let names: Vec<&str> = shapes.iter().map(|s| s["properties"]["grant_type"]["enum"][0].as_str().unwrap()).collect();
        let registry: Vec<&str> = auth_core::oauth::grants::names().collect();
        assert_eq!(names, registry);
        let shape = |grant: &str| &shapes[names.iter().position(|n| *n == grant).unwrap()];
        let required = |grant: &str| -> Vec<&str> {
            shape(grant)["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect()
        };
        assert_eq!(shape("password")["properties"]["password"]["format"], "password");
        assert_eq!(required("password"), ["grant_type", "username", "password"]);
        assert_eq!(shape("authorization_code")["properties"]["code_verifier"]["format"], "password");
        assert_eq!(required("authorization_code"), ["grant_type", "code", "code_verifier"]);
    }

    #[test]
    fn every_operation_answers_success_and_client_errors() {
        let doc = json();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let statuses: Vec<&String> = operation["responses"].as_object().unwrap().keys().collect();
                assert!(statuses.iter().any(|s| s.starts_with('2')), "{method} {path}: no 2xx");
                // Anything that takes input or credentials can be refused with a 4xx.
                let takes_input = operation.get("requestBody").is_some()
                    || operation.get("parameters").is_some()
                    || operation.get("security").is_some();
                if takes_input {
                    assert!(statuses.iter().any(|s| s.starts_with('4')), "{method} {path}: no 4xx");
                }
                assert!(operation["tags"].as_array().is_some_and(|t| !t.is_empty()), "{method} {path}: no tag");
            }
        }
    }

    #[test]
    fn references_resolve() {
        let doc = json();
        fn walk(value: &Value, doc: &Value) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(target)) = map.get("$ref") {
                        let pointer = target.strip_prefix('#').expect("local reference");
                        assert!(doc.pointer(pointer).is_some(), "dangling {target}");
                    }
                    map.values().for_each(|v| walk(v, doc));
                }
                Value::Array(items) => items.iter().for_each(|v| walk(v, doc)),
                _ => {}
            }
        }
        walk(&doc, &doc);
    }

    #[test]
    fn the_spec_is_patched_in() {
        let doc = json();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["servers"][0]["url"], "http://127.0.0.1:8080");
        // Sign-up takes the claims users set, and only those.
        let sign_up = &doc["components"]["schemas"]["SignUpRequest"];
        assert_eq!(sign_up["properties"]["nickname"]["type"], "string");
        assert_eq!(sign_up["properties"]["newsletter"]["type"], "boolean");
        assert!(sign_up["properties"].get("tenant_id").is_none() && sign_up["properties"].get("roles").is_none());
        assert_eq!(sign_up["additionalProperties"], false);
        let required: Vec<&str> = sign_up["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(required, ["username", "password", "nickname", "invitation"], "tenant_id comes only with an invitation");
        for schema in ["UserInfo", "IntrospectionResponse"] {
            assert_eq!(doc["components"]["schemas"][schema]["properties"]["tenant_id"]["type"], "string");
            assert_eq!(doc["components"]["schemas"][schema]["properties"]["roles"]["type"], "array");
        }
        assert_eq!(doc["components"]["schemas"]["Account"]["properties"]["claims"]["properties"]["nickname"]["type"], "string");
        let flows = &doc["components"]["securitySchemes"]["oauth2"]["flows"];
        assert_eq!(flows["password"]["tokenUrl"], "http://127.0.0.1:8080/oauth/token");
        for scope in spec().scopes.keys() {
            assert!(flows["clientCredentials"]["scopes"].get(scope).is_some(), "scope {scope} missing");
        }
    }

    #[test]
    fn error_formats_follow_the_endpoint() {
        let doc = json();
        let responses = &doc["components"]["responses"];
        for (name, response) in responses.as_object().unwrap() {
            let content = response["content"].as_object().unwrap();
            let expected = if name.starts_with("OAuth") { "application/json" } else { "application/problem+json" };
            assert!(content.contains_key(expected), "{name} is not {expected}");
        }
        let too_many = &responses["BearerTooManyRequests"]["headers"];
        for header in ["Retry-After", "RateLimit-Policy", "RateLimit"] {
            assert!(too_many.get(header).is_some(), "429 lacks {header}");
        }
        assert!(responses["BearerUnauthorized"]["headers"].get("WWW-Authenticate").is_some());
        assert!(responses["OAuthUnauthorized"]["headers"].get("WWW-Authenticate").is_some());
    }
}
