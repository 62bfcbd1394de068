//! The auth-server side: the real axum router over a fresh SQLite store, driven in-process with
//! `tower::ServiceExt::oneshot`, and the checks every answer must pass (never a 5xx; a 4xx in the
//! endpoint's error format; a 2xx with the body the endpoint promises).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use auth_core::spec::{RateLimitSpec, Seconds};
use auth_core::clock::SystemClock;
use auth_core::random::OsEntropy;
use auth_server::config::ServerConfig;
use auth_server::state::{self, AppState};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_body_util::BodyExt as _;
use serde_json::{Map, Value, json};
use tower::ServiceExt as _;

use crate::tokens::SPEC;

/// The password of `alice`, the user signed up at start.
pub const PASSWORD: &str = "correct horse battery staple";

/// The routes whose bodies are fuzzed.
pub const ROUTES: [&str; 4] = ["/oauth/token", "/oauth/revoke", "/oauth/introspect", "/v1/users"];

/// Content types sent, the last one meaning none.
pub const CONTENT_TYPES: [&str; 8] = [
    "application/x-www-form-urlencoded",
    "application/json",
    "application/x-www-form-urlencoded; charset=UTF-8",
    "Application/JSON; charset=utf-8",
    "text/plain",
    "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded, application/json",
    "",
];

/// RFC 6749 section 5.2 error codes, plus `slow_down`, `temporarily_unavailable` and
/// `server_error` (the last two would already be caught as 5xx).
const OAUTH_ERRORS: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "slow_down",
];

/// A request as the router target sends it.
#[derive(Debug, Clone)]
pub struct FuzzRequest {
    /// One of [`ROUTES`].
    pub path: &'static str,
    /// One of [`CONTENT_TYPES`] (empty: no header).
    pub content_type: &'static str,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// The server: its router and what the requests refer to.
pub struct Harness {
    runtime: tokio::runtime::Runtime,
    router: Router,
    state: Arc<AppState>,
    /// The secret of the confidential client `booking-backend`.
    pub secret: String,
    _dir: PathBuf,
}

impl Harness {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("auth-fuzz-router-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        // argon2 at its cheapest allowed cost: the target is about decoding, not hashing.
        let spec = SPEC.replace("memory_kib = 19456", "memory_kib = 4096").replace("iterations = 2", "iterations = 1");
        assert!(spec.contains("memory_kib = 4096") && spec.contains("iterations = 1"), "the booking spec changed");
        let spec_path = dir.join("auth.toml");
        std::fs::write(&spec_path, spec).unwrap_or_else(|e| panic!("writing the spec: {e}"));
        let mut config = ServerConfig::local(SocketAddr::from(([127, 0, 0, 1], 8080)), dir.clone());
        config.spec = Some(spec_path);
        config.password_workers = 1;
        // Limits far beyond what a run sends: a 429 is the limiter working, not a finding.
        config.per_ip_burst = 1_000_000_000;
        config.per_ip_period = Duration::from_millis(1);
        config.login.attempts = RateLimitSpec { burst: 1_000_000_000, per: Seconds(1) };
        config.login.source_failures = RateLimitSpec { burst: 1_000_000_000, per: Seconds(1) };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("tokio runtime: {e}"));
        let (state, secret) = runtime.block_on(async {
            let state = state::build_state(config, Arc::new(SystemClock), Arc::new(OsEntropy::new()))
                .await
                .unwrap_or_else(|e| panic!("server state: {e:#}"));
            state.rotate_keys().await.unwrap_or_else(|e| panic!("signing keys: {e:#}"));
            let secret = state.authority.register_client("booking-backend").await;
            let secret = secret.ok().flatten().unwrap_or_else(|| panic!("booking-backend has no secret"));
            let mut claims = Map::new();
            claims.insert("tenant_id".to_owned(), json!("hotel-7"));
            if let Err(e) = state.authority.add_user("alice", PASSWORD, claims).await {
                panic!("signing alice up: {e}");
            }
            (state, secret)
        });
        let router = auth_server::http::router(state.clone());
        Self { runtime, router, state, secret, _dir: dir }
    }

    /// The `Authorization` header of choice `n` (wrapping): none, the confidential client's
    /// Basic credentials, wrong or malformed Basic credentials, a public client, a bearer token.
    pub fn authorization(&self, n: u8) -> Option<String> {
        let basic = |text: &str| format!("Basic {}", STANDARD.encode(text));
        match n % 8 {
            0 => None,
            1 => Some(basic(&format!("booking-backend:{}", self.secret))),
            2 => Some(basic("booking-backend:wrong")),
            3 => Some(basic("booking-web:")),
            4 => Some(basic("no colon")),
            5 => Some("Basic !!!".to_owned()),
            6 => Some("Bearer abc.def.ghi".to_owned()),
            _ => Some(basic(&format!("booking%2Dbackend:{}", self.secret))),
        }
    }

    /// Sends `request` through the router and checks the answer; every 256th call also checks
    /// that `/readyz` still answers 200.
    pub fn check(&self, request: &FuzzRequest) {
        static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        static VERBOSE: LazyLock<bool> = LazyLock::new(|| std::env::var_os("AUTH_FUZZ_VERBOSE").is_some());
        let (status, headers, body) = self.send(Method::POST, request.path, request.content_type, request.authorization.as_deref(), &request.body);
        if *VERBOSE {
            eprintln!("{} {:?} -> {status} {}", request.path, request.content_type, String::from_utf8_lossy(&body));
        }
        check_answer(request, status, &headers, &body, &self.state);
        if CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed).is_multiple_of(256) {
            let (status, _, body) = self.send(Method::GET, "/readyz", "", None, b"");
            assert_eq!(status, StatusCode::OK, "/readyz after {request:?}: {}", String::from_utf8_lossy(&body));
        }
    }

    fn send(&self, method: Method, path: &str, content_type: &str, authorization: Option<&str>, body: &[u8]) -> (StatusCode, HeaderMap, Bytes) {
        let mut builder = Request::builder().method(method).uri(path);
        if !content_type.is_empty() {
            builder = builder.header(header::CONTENT_TYPE, content_type);
        }
        if let Some(authorization) = authorization {
            builder = builder.header(header::AUTHORIZATION, authorization);
        }
        let mut request = builder.body(Body::from(body.to_vec())).unwrap_or_else(|e| panic!("request: {e}"));
        request.extensions_mut().insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 40_000))));
        self.runtime.block_on(async {
            let response = self.router.clone().oneshot(request).await.unwrap_or_else(|e| match e {});
            let (parts, body) = response.into_parts();
            let body = body.collect().await.unwrap_or_else(|e| panic!("reading the answer: {e}")).to_bytes();
            (parts.status, parts.headers, body)
        })
    }
}

/// The process's server.
pub fn harness() -> &'static Harness {
    static HARNESS: LazyLock<Harness> = LazyLock::new(Harness::new);
    &HARNESS
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Panics unless the answer is one the endpoint may give.
fn check_answer(request: &FuzzRequest, status: StatusCode, headers: &HeaderMap, body: &[u8], state: &AppState) {
    let text = String::from_utf8_lossy(body);
    let fail = |what: &str| -> String { format!("{what}: {status} {text:.500} for {request:?}") };
    assert!(!status.is_server_error(), "{}", fail("a server error"));
    let json = || serde_json::from_slice::<Value>(body).unwrap_or_else(|_| panic!("{}", fail("a body that is not JSON")));
    let oauth = request.path.starts_with("/oauth/");
    if status.is_client_error() {
        let value = json();
        if oauth {
            assert!(header_text(headers, header::CONTENT_TYPE).starts_with("application/json"), "{}", fail("an OAuth error that is not JSON"));
            assert_eq!(header_text(headers, header::CACHE_CONTROL), "no-store", "{}", fail("an OAuth error without no-store"));
            let error = value["error"].as_str().unwrap_or_default();
            assert!(OAUTH_ERRORS.contains(&error), "{}", fail("an unknown OAuth error code"));
            assert!(value["error_description"].is_string(), "{}", fail("an OAuth error without a description"));
        } else {
            assert_eq!(header_text(headers, header::CONTENT_TYPE), "application/problem+json", "{}", fail("an error that is not a problem"));
            assert_eq!(value["type"], "about:blank", "{}", fail("a problem without type"));
            assert_eq!(value["status"], status.as_u16(), "{}", fail("a problem whose status differs"));
            assert!(value["title"].is_string(), "{}", fail("a problem without title"));
            assert!(value["code"].as_str().is_some_and(|c| c.contains('.')), "{}", fail("a problem without a code"));
        }
        return;
    }
    match (request.path, status) {
        ("/oauth/token", StatusCode::OK) => {
            let value = json();
            assert_eq!(value["token_type"], "Bearer", "{}", fail("a token answer"));
            let token = value["access_token"].as_str().unwrap_or_else(|| panic!("{}", fail("a token answer without a token")));
            assert!(state.authority.verify_access_token(token).is_ok(), "{}", fail("an issued token that does not verify"));
        }
        ("/oauth/revoke", StatusCode::OK) => assert!(body.is_empty(), "{}", fail("a revocation answer with a body")),
        ("/oauth/introspect", StatusCode::OK) => {
            assert!(json()["active"].is_boolean(), "{}", fail("an introspection answer without active"));
        }
        ("/v1/users", StatusCode::CREATED) => {
            assert!(json()["id"].is_string(), "{}", fail("a sign-up answer without id"));
        }
        _ => panic!("{}", fail("an unexpected status")),
    }
}
