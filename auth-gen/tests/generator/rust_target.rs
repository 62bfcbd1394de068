//! The Rust target, compiled: the generated modules of `fixtures/specs/` are committed under
//! `auth-gen/tests/generated/<spec>/` and built into this test binary. One test keeps those copies
//! equal to what the generator writes now; the others drive the booking module inside an axum app
//! with real tokens from a real auth-server.

use std::time::Duration;

use auth_gen::emit::Target;
use auth_gen::generate::{compare, generate};
use axum::Json;
use axum::Router;
use axum::extract::FromRef;
use axum::http::HeaderMap;
use axum::routing::get;
use serde_json::{Value, json};

use crate::support::{AuthServer, fixture_specs, repo};

#[allow(dead_code, unused_imports, unreachable_pub)]
#[path = "../generated/booking/mod.rs"]
mod booking;

#[allow(dead_code, unused_imports, unreachable_pub)]
#[path = "../generated/clinic/mod.rs"]
mod clinic;

use booking::spec::{Scope, require};
use booking::{Auth, AuthConfig, Authorized};

#[test]
fn committed_copies_are_what_the_generator_writes() {
    for (name, spec) in fixture_specs() {
        let dir = repo().join("auth-gen/tests/generated").join(&name);
        let generated = generate(&spec, Target::Rust).unwrap();
        let changes = compare(&dir, &generated).unwrap();
        assert!(
            changes.is_empty(),
            "auth-gen/tests/generated/{name} is stale; run `cargo run -p auth-gen -- generate --spec {} --target rust --out {}`\n{}",
            spec.strip_prefix(repo()).unwrap().display(),
            dir.strip_prefix(repo()).unwrap().display(),
            changes.summary()
        );
    }
}

#[test]
fn typed_claims_of_the_clinic_module() {
    use auth_core::error::TokenError;
    use auth_core::tokens::{AccessClaims, Audience};

    let claims = |sid: Option<&str>, custom: Value| AccessClaims {
        iss: clinic::spec::ISSUER.to_owned(),
        sub: "u1".to_owned(),
        aud: Audience(vec!["records-api".to_owned()]),
        exp: 2_000_000_000,
        iat: 1_999_999_000,
        jti: "j".to_owned(),
        client_id: "patient-app".to_owned(),
        scope: "appointments:book records.read undeclared".to_owned(),
        sid: sid.map(str::to_owned),
        custom: serde_json::from_value(custom).unwrap(),
    };
    let typed = clinic::spec::Claims::from_access(claims(
        Some("s1"),
        json!({"clinic_id": 7, "roles": ["patient"], "type": "patient"}),
    ))
    .unwrap();
    assert_eq!(typed.scopes, vec![clinic::spec::Scope::AppointmentsBook, clinic::spec::Scope::RecordsRead]);
    let user = typed.user.unwrap();
    assert_eq!((user.sid.as_str(), user.clinic_id), ("s1", 7));
    assert_eq!(user.roles, vec!["patient".to_owned()]);
    assert_eq!(user.r#type.as_deref(), Some("patient"));
    assert_eq!(user.verified, None);
    assert_eq!(clinic::spec::Scope::RecordsRead.limit(), None);
    assert_eq!(clinic::spec::Scope::AppointmentsBook.limit(), Some((10, 3600)));
    assert_eq!(clinic::spec::ALGORITHM, "ES256");

    let missing = clinic::spec::Claims::from_access(claims(Some("s1"), json!({"roles": []})));
    assert_eq!(missing.unwrap_err(), TokenError::MissingClaim);
    let wrong = clinic::spec::Claims::from_access(claims(Some("s1"), json!({"clinic_id": "7", "roles": []})));
    assert_eq!(wrong.unwrap_err(), TokenError::InvalidClaim);
    // A client's token has no user claims, whatever the spec requires of users.
    let client = clinic::spec::Claims::from_access(claims(None, json!({}))).unwrap();
    assert!(client.user.is_none());
}

#[derive(Clone)]
struct AppState {
    auth: Auth,
}

impl FromRef<AppState> for Auth {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

/// A small booking API protected by the generated extractor.
fn booking_app(auth: Auth) -> Router {
    async fn list(access: Authorized<require::BookingsRead>) -> (HeaderMap, Json<Value>) {
        let tenant = access.claims.user.as_ref().map(|u| u.tenant_id.clone());
        (access.limit_headers(), Json(json!({ "sub": access.claims.sub, "tenant_id": tenant, "bookings": [] })))
    }
    async fn create(access: Authorized<(require::BookingsRead, require::BookingsWrite)>) -> Json<Value> {
        Json(json!({ "created_by": access.claims.sub }))
    }
    Router::new().route("/bookings", get(list).post(create)).with_state(AppState { auth })
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn config(server: &AuthServer) -> AuthConfig {
    AuthConfig { jwks_url: server.url("/.well-known/jwks.json"), ..AuthConfig::default() }
}

async fn problem(response: reqwest::Response) -> (u16, String, Value) {
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    (status, challenge, response.json().await.unwrap())
}

#[tokio::test]
async fn the_extractor_admits_real_tokens_and_refuses_like_the_server() {
    let spec = std::fs::read_to_string(repo().join("fixtures/specs/booking.toml")).unwrap();
    let server = AuthServer::start("rust-target-booking", &spec).await;
    let tokens = server
        .sign_up_and_log_in("alice", json!({ "tenant_id": "hotel-7" }), "booking-web", "bookings:read")
        .await;
    let token = tokens["access_token"].as_str().unwrap();
    let app = serve(booking_app(Auth::new(config(&server)))).await;
    let http = reqwest::Client::new();
    let get = |bearer: Option<String>| {
        let request = http.get(format!("{app}/bookings"));
        match bearer {
            Some(b) => request.header("authorization", b),
            None => request,
        }
        .send()
    };

    // A valid token: typed claims, and the limit headers of the scope.
    let ok = get(Some(format!("Bearer {token}"))).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["ratelimit-policy"], "\"bookings:read\";q=120;w=60");
    assert_eq!(ok.headers()["ratelimit"], "\"bookings:read\";r=119;t=1");
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["tenant_id"], "hotel-7");

    // No token, a bad scheme, a tampered token.
    let (status, challenge, body) = problem(get(None).await.unwrap()).await;
    assert_eq!((status, body["code"].as_str().unwrap()), (401, "token.missing"));
    assert_eq!(challenge, "Bearer error=\"invalid_token\", error_description=\"token.missing\"");
    let (status, _, body) = problem(get(Some(format!("Basic {token}"))).await.unwrap()).await;
    assert_eq!((status, body["code"].as_str().unwrap()), (401, "token.missing"));
    // One character of the signature changed (the first: the last one also carries padding bits,
    // and changing only those makes non-canonical base64url, which is `token.malformed`).
    let signature_at = token.rfind('.').unwrap() + 1;
    let first = &token[signature_at..=signature_at];
    let tampered = format!("{}{}{}", &token[..signature_at], if first == "A" { "B" } else { "A" }, &token[signature_at + 1..]);
    let (status, challenge, body) = problem(get(Some(format!("Bearer {tampered}"))).await.unwrap()).await;
    assert_eq!((status, body["code"].as_str().unwrap()), (401, "token.bad_signature"));
    assert!(challenge.contains("token.bad_signature"));
    let (status, _, body) = problem(get(Some("Bearer not.a.token".to_owned())).await.unwrap()).await;
    assert_eq!((status, body["code"].as_str().unwrap()), (401, "token.malformed"));

    // The token lacks bookings:write.
    let created = http.post(format!("{app}/bookings")).bearer_auth(token).send().await.unwrap();
    let (status, challenge, body) = problem(created).await;
    assert_eq!((status, body["code"].as_str().unwrap()), (403, "auth.insufficient_scope"));
    assert_eq!(challenge, "Bearer error=\"insufficient_scope\", scope=\"bookings:read bookings:write\"");

    // The read limit: 120 per minute, one used above.
    for i in 1..120 {
        let response = get(Some(format!("Bearer {token}"))).await.unwrap();
        assert_eq!(response.status(), 200, "request {i}");
    }
    let refused = get(Some(format!("Bearer {token}"))).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["ratelimit-policy"], "\"bookings:read\";q=120;w=60");
    let retry: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=1).contains(&retry), "one request refills every 0.5 s: {retry}");
    assert_eq!(refused.headers()["ratelimit"], format!("\"bookings:read\";r=0;t={retry}").as_str());
    let (_, _, body) = problem(refused).await;
    assert_eq!(body["code"], "ratelimit.exceeded");
}

#[tokio::test]
async fn client_tokens_scopes_and_an_unreachable_issuer() {
    let spec = std::fs::read_to_string(repo().join("fixtures/specs/booking.toml")).unwrap();
    let server = AuthServer::start("rust-target-client", &spec).await;
    // The secret is printed once, on the last line.
    let secret_line = server.cli(&["clients", "add", "booking-backend"]);
    let secret = secret_line.lines().last().unwrap().trim().to_owned();
    let http = reqwest::Client::new();
    let answer = http
        .post(server.url("/oauth/token"))
        .basic_auth("booking-backend", Some(&secret))
        .form(&[("grant_type", "client_credentials"), ("scope", "bookings:read")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{secret_line}");
    let token: Value = answer.json().await.unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();

    let auth = Auth::new(config(&server));
    let claims = auth.verify(&token).await.unwrap();
    assert_eq!(claims.sub, "booking-backend");
    assert!(claims.user.is_none(), "a client's token has no session and no user claims");
    assert!(claims.has_scope(Scope::BookingsRead) && !claims.has_scope(Scope::BookingsWrite));

    // The issuer goes away: the cached key set keeps verifying.
    drop(server);
    assert_eq!(auth.verify(&token).await.unwrap().sub, "booking-backend");

    // A verifier that never had a key set, facing an issuer that does not answer: 503.
    let closed = AuthConfig {
        jwks_url: "http://127.0.0.1:9/.well-known/jwks.json".to_owned(),
        fetch_timeout: Duration::from_secs(2),
        ..AuthConfig::default()
    };
    let app = serve(booking_app(Auth::new(closed))).await;
    let response = http.get(format!("{app}/bookings")).bearer_auth(&token).send().await.unwrap();
    let (status, _, body) = problem(response).await;
    assert_eq!((status, body["code"].as_str().unwrap()), (503, "jwks.unavailable"));
}
