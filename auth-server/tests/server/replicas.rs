//! Several replicas on one PostgreSQL and one Redis, and the degraded modes of one replica:
//! real `auth-server` processes (see [`crate::process`]), real databases.
//!
//! Timing: the only time bounds asserted are the ones the behaviour is about (a quick 503 when
//! the database is gone, a prompt exit after SIGTERM), and they are generous because the tests
//! share a small machine with other builds; everything else polls with a generous deadline.

// Test helpers fail the test on purpose when something is off.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use auth_core::keys::KeySet;
use auth_core::store::{KeyRecord, KeyState, KeyStore as _, SqlStore};
use auth_core::tokens::AccessTokenVerifier;
use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::process::{Backing, Deployment, PASSWORD, Server, booking_spec, cheap_booking_spec, http_client};

/// The public client of the booking spec (password and refresh grants).
pub(crate) const WEB: &str = "booking-web";
/// The confidential client of the booking spec (client credentials, introspection).
pub(crate) const BACKEND: &str = "booking-backend";
/// A spec edit: `bookings:write` allows a burst of 4 per minute (instead of 30).
const WRITES_4_PER_MINUTE: (&str, &str) =
    (r#"rate_limit = { burst = 30, per = "1m" }"#, r#"rate_limit = { burst = 4, per = "1m" }"#);

pub(crate) fn now() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()))
        .unwrap_or(i64::MAX)
}

/// POSTs a form, with HTTP Basic when `basic` is given; returns the status and the JSON body
/// (`Null` when the body is not JSON).
pub(crate) async fn post_form(
    client: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (StatusCode, Value) {
    let mut request = client.post(url).form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = response.status();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

/// A password grant of `username` on `server` for `scope`; panics unless it succeeds.
pub(crate) async fn login(client: &reqwest::Client, server: &Server, username: &str, scope: &str) -> Value {
    let form = [
        ("grant_type", "password"),
        ("client_id", WEB),
        ("username", username),
        ("password", PASSWORD),
        ("scope", scope),
    ];
    let (status, body) = post_form(client, &server.url("/oauth/token"), &form, None).await;
    assert_eq!(status, StatusCode::OK, "password grant on {}: {body}", server.name);
    body
}

pub(crate) fn field<'a>(body: &'a Value, name: &str) -> &'a str {
    body[name].as_str().unwrap_or_else(|| panic!("no {name} in {body}"))
}

/// The JWKS a server publishes, as a verifier's key set, and its kids.
async fn fetch_jwks(client: &reqwest::Client, server: &Server) -> (KeySet, BTreeSet<String>) {
    let response = client.get(server.url("/.well-known/jwks.json")).send().await.expect("GET the JWKS");
    assert_eq!(response.status(), StatusCode::OK, "JWKS of {}", server.name);
    let text = response.text().await.expect("read the JWKS");
    let keys = KeySet::from_jwks(&serde_json::from_str(&text).expect("the JWKS is a JWK set"));
    let kids = keys.kids().map(str::to_owned).collect();
    (keys, kids)
}

/// The `kid` in a JWT's header.
fn kid_of(token: &str) -> String {
    let header = token.split('.').next().unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).expect("base64url header");
    let header: Value = serde_json::from_slice(&bytes).expect("JSON header");
    header["kid"].as_str().expect("a kid").to_owned()
}

/// The `r=` (remaining) parameter of a `RateLimit` header.
fn remaining(response: &reqwest::Response) -> Option<u32> {
    let value = response.headers().get("ratelimit")?.to_str().ok()?;
    value.split(';').find_map(|p| p.trim().strip_prefix("r=")).and_then(|r| r.parse().ok())
}

pub(crate) async fn introspect(client: &reqwest::Client, server: &Server, secret: &str, token: &str) -> Value {
    let (status, body) =
        post_form(client, &server.url("/oauth/introspect"), &[("token", token)], Some((BACKEND, secret))).await;
    assert_eq!(status, StatusCode::OK, "introspection on {}: {body}", server.name);
    body
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `limit`.
pub(crate) async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Two replicas, one service

/// A token issued by A verifies with B's JWKS, refreshes on B; its session revoked on A is
/// inactive for B. B trusts a session it read as live for ten minutes, so only PostgreSQL's
/// announcement of the revocation can make B see it.
#[cfg_attr(not(all(auth_test_postgres, auth_test_redis)), ignore = "AUTH_TEST_DATABASE_URL or AUTH_TEST_REDIS_URL was not set when the tests were built")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_issue_verify_refresh_and_revoke_as_one_service() {
    let Some(backing) = Backing::from_env("two_replicas_issue_verify_refresh_and_revoke_as_one_service", true) else {
        return;
    };
    let deployment = Deployment::new(&backing, &cheap_booking_spec(&[])).await;
    let secret = deployment.add_confidential_client(BACKEND).await;
    deployment.add_user("alice").await;
    let a = deployment.start(&["--key-refresh-secs", "1"]).await;
    let b = deployment.start(&["--key-refresh-secs", "1", "--session-cache-secs", "600"]).await;
    let client = http_client();
    let verifier = AccessTokenVerifier::from_spec(&deployment.spec());
    eventually("B follows revoked sessions", Duration::from_secs(10), || async {
        let text = client.get(b.url("/metrics")).send().await.ok()?.text().await.ok()?;
        text.lines().any(|l| l == "auth_session_cache_in_use 1").then_some(())
    })
    .await;

    let issued = login(&client, &a, "alice", "bookings:read bookings:write").await;
    let access = field(&issued, "access_token");
    let (keys_b, _) = fetch_jwks(&client, &b).await;
    let claims = verifier.verify(access, &keys_b, now()).expect("A's token verifies with B's JWKS");
    assert_eq!(claims.custom.get("tenant_id"), Some(&Value::from("t1")), "custom claims: {claims:?}");
    assert_eq!(introspect(&client, &b, &secret, access).await["active"], true);
    let text = client.get(b.url("/metrics")).send().await.expect("B's metrics").text().await.expect("text");
    assert!(text.lines().any(|l| l == "auth_session_cache_entries 1"), "B remembers the live session:\n{text}");

    let form =
        [("grant_type", "refresh_token"), ("client_id", WEB), ("refresh_token", field(&issued, "refresh_token"))];
    let (status, refreshed) = post_form(&client, &b.url("/oauth/token"), &form, None).await;
    assert_eq!(status, StatusCode::OK, "B refreshes what A issued: {refreshed}");
    let (keys_a, _) = fetch_jwks(&client, &a).await;
    let refreshed_claims =
        verifier.verify(field(&refreshed, "access_token"), &keys_a, now()).expect("B's token verifies with A's JWKS");
    assert_eq!(refreshed_claims.sid, claims.sid, "the refresh continues the same session");

    let current_refresh = field(&refreshed, "refresh_token");
    let (status, body) =
        post_form(&client, &a.url("/oauth/revoke"), &[("token", current_refresh), ("client_id", WEB)], None).await;
    assert_eq!(status, StatusCode::OK, "A revokes the session B refreshed: {body}");

    // The announcement travels from A's commit to B's listening connection while this client
    // goes from A's answer to B: B sees the revocation at once or within moments, never after
    // the ten minutes it would otherwise trust the session.
    let inactive = serde_json::json!({ "active": false });
    eventually("B sees the revocation", Duration::from_secs(10), || async {
        (introspect(&client, &b, &secret, access).await == inactive).then_some(())
    })
    .await;
    for token in [access, field(&refreshed, "access_token"), current_refresh] {
        assert_eq!(introspect(&client, &b, &secret, token).await, inactive, "B sees the revocation");
    }
    let response = client
        .get(b.url("/userinfo"))
        .bearer_auth(field(&refreshed, "access_token"))
        .send()
        .await
        .expect("GET /userinfo");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "B refuses a token of a revoked session");
    let form = [("grant_type", "refresh_token"), ("client_id", WEB), ("refresh_token", current_refresh)];
    let (status, body) = post_form(&client, &b.url("/oauth/token"), &form, None).await;
    assert_eq!((status, &body["error"]), (StatusCode::BAD_REQUEST, &Value::from("invalid_grant")), "{body}");
}

/// Keys as the database holds them; panics if a sample breaks the one-active/one-pending rule.
pub(crate) async fn keys_now(store: &SqlStore) -> Vec<KeyRecord> {
    let keys = store.list_keys().await.expect("list the signing keys");
    let count = |state| keys.iter().filter(|k| k.state == state).count();
    assert_eq!(count(KeyState::Active), 1, "exactly one active key: {keys:#?}");
    assert!(count(KeyState::Pending) <= 1, "at most one pending key: {keys:#?}");
    keys
}

/// Samples the key table until stopped, checking the invariant on every sample.
fn watch_keys(store: SqlStore, stop: Arc<AtomicBool>) -> JoinHandle<usize> {
    tokio::spawn(async move {
        let mut samples = 0;
        while !stop.load(Ordering::Relaxed) {
            keys_now(&store).await;
            samples += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        samples
    })
}

/// Runs `auth-server keys rotate` from three processes at once, while the table is watched.
async fn rotate_from_three_processes(deployment: &Deployment, store: &SqlStore) {
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_keys(store.clone(), stop.clone());
    let rotate = || deployment.cli(&["keys", "rotate"], None);
    tokio::join!(rotate(), rotate(), rotate());
    stop.store(true, Ordering::Relaxed);
    let samples = watcher.await.expect("the key watcher did not panic");
    assert!(samples > 0, "the key table was sampled during the race");
}

/// Rotation run by several processes at the same instant (three CLI runs plus the two replicas'
/// own background rotation every second) converges on one active key, and both replicas pick it
/// up: they sign with it and publish the same JWKS.
///
/// The key table is arranged so that each race is due at once: first the active key is made
/// old enough to need a successor, then that successor is made due.
#[cfg_attr(not(auth_test_postgres), ignore = "AUTH_TEST_DATABASE_URL was not set when the tests were built")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rotation_converges_on_one_active_key() {
    let Some(backing) = Backing::from_env("concurrent_rotation_converges_on_one_active_key", false) else { return };
    let deployment = Deployment::new(&backing, &cheap_booking_spec(&[])).await;
    let secret = deployment.add_confidential_client(BACKEND).await;
    let a = deployment.start(&["--key-refresh-secs", "1"]).await;
    let b = deployment.start(&["--key-refresh-secs", "1"]).await;
    let store = deployment.store().await;
    let client = http_client();
    let first = keys_now(&store).await;
    assert_eq!(first.len(), 1, "two replicas starting on an empty database made one key: {first:#?}");
    let first_kid = first[0].kid.clone();

    // Race 1: the active key is 29 days into its 30: every rotator wants to add a successor.
    let spec = deployment.spec();
    let rotate_every = spec.keys.rotate_every.as_i64();
    let publish_ahead = spec.keys.publish_ahead.as_i64();
    sqlx::query("UPDATE signing_keys SET activates_at = $1 WHERE state = 'active'")
        .bind(now() - rotate_every + publish_ahead / 2)
        .execute(store.pool())
        .await
        .expect("age the active key");
    rotate_from_three_processes(&deployment, &store).await;
    let keys = keys_now(&store).await;
    let pending: Vec<_> = keys.iter().filter(|k| k.state == KeyState::Pending).collect();
    assert_eq!(pending.len(), 1, "one successor, however many rotated: {keys:#?}");
    let successor = pending[0].kid.clone();
    assert_eq!(keys.len(), 2, "no stray keys: {keys:#?}");

    // Race 2: the successor's time has come: every rotator wants to swap the signer.
    sqlx::query("UPDATE signing_keys SET activates_at = $1 WHERE state = 'pending'")
        .bind(now() - 1)
        .execute(store.pool())
        .await
        .expect("make the successor due");
    rotate_from_three_processes(&deployment, &store).await;
    let keys = keys_now(&store).await;
    let state_of = |kid: &str| keys.iter().find(|k| k.kid == kid).map(|k| k.state);
    assert_eq!(state_of(&successor), Some(KeyState::Active), "the successor signs: {keys:#?}");
    assert_eq!(state_of(&first_kid), Some(KeyState::Retiring), "the old key verifies only: {keys:#?}");
    assert_eq!(keys.len(), 2, "no stray keys: {keys:#?}");
    let published: BTreeSet<String> = [first_kid.clone(), successor.clone()].into();

    // Within a few reload intervals both replicas sign with the new key and publish the same set.
    let verifier = AccessTokenVerifier::from_spec(&spec);
    let mut tokens = Vec::new();
    for server in [&a, &b] {
        let token = eventually(&format!("{} signs with the new key", server.name), Duration::from_secs(20), || async {
            let form = [("grant_type", "client_credentials"), ("scope", "bookings:read")];
            let (status, body) = post_form(&client, &server.url("/oauth/token"), &form, Some((BACKEND, &secret))).await;
            assert_eq!(status, StatusCode::OK, "client credentials on {}: {body}", server.name);
            let token = field(&body, "access_token").to_owned();
            (kid_of(&token) == successor).then_some(token)
        })
        .await;
        tokens.push(token);
    }
    for server in [&a, &b] {
        let (keys, kids) = fetch_jwks(&client, server).await;
        assert_eq!(kids, published, "{} publishes the retiring and the active key", server.name);
        for token in &tokens {
            verifier.verify(token, &keys, now()).expect("a token of either replica verifies with either JWKS");
        }
    }
    store.close().await;
}

// ---------------------------------------------------------------------------------------------
// Rate limits shared through Redis

/// With `bookings:write` at 4 per minute, requests alternating between A and B with one token:
/// the 5th overall is refused, because both replicas count in the same Redis bucket.
#[cfg_attr(not(all(auth_test_postgres, auth_test_redis)), ignore = "AUTH_TEST_DATABASE_URL or AUTH_TEST_REDIS_URL was not set when the tests were built")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_limit_is_shared_by_replicas_through_redis() {
    let Some(backing) = Backing::from_env("scope_limit_is_shared_by_replicas_through_redis", true) else { return };
    let spec = cheap_booking_spec(&[WRITES_4_PER_MINUTE]);
    let deployment = Deployment::new(&backing, &spec).await;
    deployment.add_user("alice").await;
    let a = deployment.start(&[]).await;
    let b = deployment.start(&[]).await;
    let client = http_client();
    let issued = login(&client, &a, "alice", "bookings:write").await;
    let token = field(&issued, "access_token");

    let mut statuses = Vec::new();
    for (i, server) in [&a, &b, &a, &b, &a, &b].into_iter().enumerate() {
        let response = client.get(server.url("/userinfo")).bearer_auth(token).send().await.expect("GET /userinfo");
        let status = response.status();
        if i < 4 {
            assert_eq!(status, StatusCode::OK, "request {} (on {}) is within the burst", i + 1, server.name);
            assert_eq!(remaining(&response), Some(3 - u32::try_from(i).unwrap_or(0)), "one shared count");
        } else {
            assert_eq!(
                status,
                StatusCode::TOO_MANY_REQUESTS,
                "request {} (on {}) is over the burst",
                i + 1,
                server.name
            );
            assert!(response.headers().contains_key("retry-after"), "a refusal says when to retry");
        }
        statuses.push(status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429]);
}

// ---------------------------------------------------------------------------------------------
// Degraded modes

/// A TCP proxy in front of PostgreSQL that the test can cut (existing connections closed, new
/// ones refused: the listening port is closed) and restore (the same port listens again).
pub(crate) struct CuttableProxy {
    pub(crate) addr: SocketAddr,
    upstream: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl CuttableProxy {
    pub(crate) async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        Self { addr, upstream, task: Some(Self::serve(listener, upstream)) }
    }

    /// Accepts and relays; dropping the task drops the listener and every relayed connection.
    fn serve(listener: TcpListener, upstream: SocketAddr) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut relays = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((mut inbound, _)) = accepted else { continue };
                        relays.spawn(async move {
                            if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            }
                        });
                    }
                    Some(_) = relays.join_next(), if !relays.is_empty() => {}
                }
            }
        })
    }

    pub(crate) async fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    pub(crate) async fn restore(&mut self) {
        let listener = eventually("the proxy port listens again", Duration::from_secs(10), || async {
            TcpListener::bind(self.addr).await.ok()
        })
        .await;
        self.task = Some(Self::serve(listener, self.upstream));
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The host and port of a database URL, resolved.
pub(crate) fn socket_of(url: &str) -> SocketAddr {
    let url = url::Url::parse(url).expect("a database URL");
    let host = url.host_str().expect("a host");
    let port = url.port().unwrap_or(5432);
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port)).ok().and_then(|mut a| a.next()).expect("a resolvable host")
}

/// `url` pointing at `addr` instead of its own host and port.
pub(crate) fn via(url: &str, addr: SocketAddr) -> String {
    let mut url = url::Url::parse(url).expect("a database URL");
    url.set_host(Some(&addr.ip().to_string())).expect("set the host");
    url.set_port(Some(addr.port())).expect("set the port");
    url.into()
}

/// Database gone: issuance answers 503 `temporarily_unavailable` quickly (the design asks for
/// about a second; the assertion allows 3 s because this machine is shared and noisy), while
/// JWKS, discovery and liveness keep answering from memory and readiness says not ready. When the
/// database is back, issuance recovers by itself.
#[cfg_attr(not(auth_test_postgres), ignore = "AUTH_TEST_DATABASE_URL was not set when the tests were built")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_fails_issuance_fast_and_keeps_serving_keys() {
    let Some(backing) = Backing::from_env("database_outage_fails_issuance_fast_and_keeps_serving_keys", false) else {
        return;
    };
    let deployment = Deployment::new(&backing, &cheap_booking_spec(&[])).await;
    deployment.add_user("alice").await;
    let mut proxy = CuttableProxy::start(socket_of(&deployment.database_url)).await;
    let server =
        deployment.start_with_database(&via(&deployment.database_url, proxy.addr), &["--key-refresh-secs", "1"]).await;
    let client = http_client();
    let issued = login(&client, &server, "alice", "bookings:read").await;
    let refresh = field(&issued, "refresh_token").to_owned();

    proxy.cut().await;
    let password = [
        ("grant_type", "password"),
        ("client_id", WEB),
        ("username", "alice"),
        ("password", PASSWORD),
        ("scope", "bookings:read"),
    ];
    let refresh_form = [("grant_type", "refresh_token"), ("client_id", WEB), ("refresh_token", refresh.as_str())];
    for (grant, form) in [("password", &password[..]), ("refresh_token", &refresh_form[..])] {
        let started = Instant::now();
        let (status, body) = post_form(&client, &server.url("/oauth/token"), form, None).await;
        let took = started.elapsed();
        eprintln!("{grant} grant with the database cut: {status} in {took:?}");
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{grant} grant without a database: {body}");
        assert_eq!(body["error"], "temporarily_unavailable", "{body}");
        assert!(took < Duration::from_secs(3), "{grant} grant took {took:?} to fail");
    }
    for path in ["/.well-known/jwks.json", "/.well-known/oauth-authorization-server", "/healthz"] {
        let response = client.get(server.url(path)).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "{path} answers from memory without a database");
    }
    let (keys, kids) = fetch_jwks(&client, &server).await;
    assert!(!kids.is_empty(), "the JWKS still holds the keys");
    AccessTokenVerifier::from_spec(&deployment.spec())
        .verify(field(&issued, "access_token"), &keys, now())
        .expect("tokens keep verifying with the JWKS served during the outage");
    let readiness = client.get(server.url("/readyz")).send().await.expect("GET /readyz");
    assert_eq!(readiness.status(), StatusCode::SERVICE_UNAVAILABLE, "not ready without a database");

    proxy.restore().await;
    eventually("issuance recovers after the database returns", Duration::from_secs(30), || async {
        let (status, _) = post_form(&client, &server.url("/oauth/token"), &password, None).await;
        (status == StatusCode::OK).then_some(())
    })
    .await;
    let readiness = client.get(server.url("/readyz")).send().await.expect("GET /readyz");
    assert_eq!(readiness.status(), StatusCode::OK, "ready again");
}

/// A database that stops answering in the middle of a query (here: a table held under an exclusive
/// lock by another connection, so the server's queries wait) is bounded by the request deadline:
/// with `--request-timeout-secs 2` the requests that wait are answered 503 in the endpoint's format
/// after it, what needs no database keeps answering, and once the database answers again the
/// session goes on.
#[cfg_attr(not(auth_test_postgres), ignore = "AUTH_TEST_DATABASE_URL was not set when the tests were built")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_that_does_not_return_is_bounded_by_the_request_deadline() {
    let Some(backing) = Backing::from_env("a_query_that_does_not_return_is_bounded_by_the_request_deadline", false)
    else {
        return;
    };
    let deployment = Deployment::new(&backing, &cheap_booking_spec(&[])).await;
    deployment.add_user("alice").await;
    let args = ["--key-refresh-secs", "1", "--request-timeout-secs", "2", "--session-cache-secs", "0"];
    let server = deployment.start(&args).await;
    let client = http_client();
    let issued = login(&client, &server, "alice", "bookings:read").await;
    let refresh = field(&issued, "refresh_token").to_owned();

    let other = SqlStore::connect(&deployment.database_url).await.expect("a connection of the test's own");
    let mut blocking = other.pool().begin().await.expect("begin");
    sqlx::query("LOCK TABLE refresh_families IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocking)
        .await
        .expect("lock the sessions table");

    let refresh_form = [("grant_type", "refresh_token"), ("client_id", WEB), ("refresh_token", refresh.as_str())];
    let started = Instant::now();
    let (status, body) = post_form(&client, &server.url("/oauth/token"), &refresh_form, None).await;
    let took = started.elapsed();
    eprintln!("refresh grant while its query waits: {status} in {took:?}");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    assert!(took >= Duration::from_secs(2), "answered after {took:?}, before the deadline");
    assert!(took < Duration::from_secs(10), "answered after {took:?}");

    let response = client
        .get(server.url("/userinfo"))
        .bearer_auth(field(&issued, "access_token"))
        .send()
        .await
        .expect("GET /userinfo");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let problem: Value = response.json().await.expect("problem+json");
    assert_eq!(problem["code"], "request.timeout", "{problem}");
    for path in ["/.well-known/jwks.json", "/healthz", "/readyz"] {
        let response = client.get(server.url(path)).send().await.expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "{path} does not wait on the locked table");
    }

    blocking.rollback().await.expect("release the lock");
    // The abandoned refresh may have completed once the lock went: a retry inside the reuse grace
    // gets its successor, as a client whose answer was lost would.
    let (status, body) = post_form(&client, &server.url("/oauth/token"), &refresh_form, None).await;
    assert_eq!(status, StatusCode::OK, "the session goes on: {body}");
    other.close().await;
}

/// Redis unreachable (nothing listens on its port): limits are decided locally, the metrics say
/// so and the log warns.
#[cfg_attr(not(auth_test_postgres), ignore = "AUTH_TEST_DATABASE_URL was not set when the tests were built")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_falls_back_to_local_limits_and_says_so() {
    let Some(backing) = Backing::from_env("redis_outage_falls_back_to_local_limits_and_says_so", false) else {
        return;
    };
    let backing = Backing { redis_url: Some("redis://127.0.0.1:1".to_owned()), ..backing };
    let spec = cheap_booking_spec(&[WRITES_4_PER_MINUTE]);
    let deployment = Deployment::new(&backing, &spec).await;
    deployment.add_user("alice").await;
    let server = deployment.start(&["--key-refresh-secs", "1"]).await;
    let client = http_client();
    let issued = login(&client, &server, "alice", "bookings:write").await;
    let token = field(&issued, "access_token");

    for i in 0..5 {
        let response = client.get(server.url("/userinfo")).bearer_auth(token).send().await.expect("GET /userinfo");
        let expected = if i < 4 { StatusCode::OK } else { StatusCode::TOO_MANY_REQUESTS };
        assert_eq!(response.status(), expected, "request {} is decided by the local limiter", i + 1);
        assert!(response.headers().contains_key("ratelimit"), "a decision was taken");
    }
    // The gauges are mirrored by the background task once per key refresh (1 s here): the tick that
    // first reports the fallback may have run between the login and the five requests, so wait for
    // the tick that has counted them all.
    let fallbacks = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("auth_ratelimit_backend_fallbacks_total "))
            .and_then(|v| v.parse::<u64>().ok())
    };
    eventually("the metrics report the fallback of the login and the five requests", Duration::from_secs(15), || async {
        let text = client.get(server.url("/metrics")).send().await.ok()?.text().await.ok()?;
        let degraded = text.lines().any(|l| l == "auth_ratelimit_backend_degraded 1");
        (degraded && fallbacks(&text).is_some_and(|n| n >= 6)).then_some(())
    })
    .await;
    let log = server.log();
    assert!(
        log.lines().any(|l| l.contains("WARN") && l.contains("rate-limit backend unavailable")),
        "the log warns about the fallback:\n{log}"
    );
}

/// SIGTERM while password grants are being computed: the requests already received complete
/// with 200, then the process exits with status 0.
#[cfg_attr(not(auth_test_postgres), ignore = "AUTH_TEST_DATABASE_URL was not set when the tests were built")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits_cleanly() {
    let Some(backing) = Backing::from_env("sigterm_drains_in_flight_requests_and_exits_cleanly", false) else {
        return;
    };
    // Costly hashing so that the grants are still running when the signal arrives.
    let spec = booking_spec(&[("memory_kib = 19456\niterations = 2", "memory_kib = 65536\niterations = 4")]);
    let deployment = Deployment::new(&backing, &spec).await;
    deployment.add_user("alice").await;
    // A generous request deadline: the test is about draining, and the hashing is slow on purpose.
    let mut server = deployment.start(&["--login-attempts", "100", "--request-timeout-secs", "120"]).await;
    let client = http_client();
    let url = server.url("/oauth/token");

    let grants: Vec<_> = (0..6)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let form = [
                    ("grant_type", "password"),
                    ("client_id", WEB),
                    ("username", "alice"),
                    ("password", PASSWORD),
                    ("scope", "bookings:read"),
                ];
                let (status, body) = post_form(&client, &url, &form, None).await;
                (status, body, Instant::now())
            })
        })
        .collect();
    // Let the requests reach the server before the signal; the hashing takes far longer.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    server.terminate();

    let mut finished_after_signal = 0;
    for grant in grants {
        let (status, body, finished) = grant.await.expect("the request task did not panic");
        assert_eq!(status, StatusCode::OK, "an in-flight grant completes: {body}");
        assert!(body["access_token"].is_string(), "{body}");
        if finished > signalled {
            finished_after_signal += 1;
        }
    }
    assert!(finished_after_signal > 0, "some grants were still in flight when SIGTERM arrived");
    let status = server.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "clean exit after draining: {status}\n{}", server.log());
    assert!(server.log().contains("draining in-flight requests"), "{}", server.log());
    assert!(client.get(server.url("/healthz")).send().await.is_err(), "nothing listens after the exit");
}

// ---------------------------------------------------------------------------------------------
// Emergency key operations

/// `keys revoke` of the signing key: it leaves every replica's JWKS and its tokens stop
/// introspecting as active on every replica, while a new key signs; `keys rotate --now` makes a
/// new signer at once and keeps the old key published for its tokens. On PostgreSQL with two
/// replicas, and on SQLite with two processes over one file.
async fn emergency_key_operations(deployment: Deployment) {
    let secret = deployment.add_confidential_client(BACKEND).await;
    let a = deployment.start(&["--key-refresh-secs", "1"]).await;
    let b = deployment.start(&["--key-refresh-secs", "1"]).await;
    let client = http_client();
    let issue = |server: &Server| {
        let (client, url, secret) = (client.clone(), server.url("/oauth/token"), secret.clone());
        async move {
            let form = [("grant_type", "client_credentials"), ("scope", "bookings:read")];
            let (status, body) = post_form(&client, &url, &form, Some((BACKEND, &secret))).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            field(&body, "access_token").to_owned()
        }
    };
    let compromised_token = issue(&a).await;
    let compromised = kid_of(&compromised_token);
    assert_eq!(introspect(&client, &b, &secret, &compromised_token).await["active"], true);

    let said = deployment.cli(&["keys", "revoke", &compromised], None).await;
    assert!(said.contains(&format!("revoked {compromised}; key ")), "{said}");
    for server in [&a, &b] {
        eventually("the revoked key leaves the JWKS", Duration::from_secs(10), || async {
            let (_, kids) = fetch_jwks(&client, server).await;
            (!kids.contains(&compromised) && !kids.is_empty()).then_some(())
        })
        .await;
        assert_eq!(introspect(&client, server, &secret, &compromised_token).await["active"], false, "{}", server.name);
        let fresh = issue(server).await;
        assert_ne!(kid_of(&fresh), compromised);
        assert_eq!(introspect(&client, server, &secret, &fresh).await["active"], true);
    }
    let store = deployment.store().await;
    let records = store.list_keys().await.unwrap();
    let revoked = records.iter().find(|k| k.kid == compromised).unwrap();
    assert_eq!(revoked.state, KeyState::Retired);
    assert!(revoked.private_sealed.is_none(), "the private half is erased");
    let refused = deployment.try_cli(&["keys", "revoke", &compromised], None).await;
    assert!(!refused.status.success(), "a retired key cannot be revoked again");

    // Emergency rotation: a new signer at once, the old one still verifies its tokens.
    let before = issue(&a).await;
    let old = kid_of(&before);
    let said = deployment.cli(&["keys", "rotate", "--now"], None).await;
    let new = said.split_whitespace().nth(1).unwrap().to_owned();
    assert_ne!(new, old);
    for server in [&a, &b] {
        let token = eventually("the new key signs", Duration::from_secs(10), || async {
            let token = issue(server).await;
            (kid_of(&token) == new).then_some(token)
        })
        .await;
        assert_eq!(introspect(&client, server, &secret, &token).await["active"], true);
        assert_eq!(introspect(&client, server, &secret, &before).await["active"], true, "the old key still verifies");
        let (_, kids) = fetch_jwks(&client, server).await;
        assert!(kids.contains(&old) && kids.contains(&new), "{kids:?}");
    }
    let records = store.list_keys().await.unwrap();
    assert_eq!(records.iter().filter(|k| k.state == KeyState::Active).count(), 1);
    assert_eq!(records.iter().find(|k| k.kid == old).unwrap().state, KeyState::Retiring);
    let audit = deployment.cli(&["audit", "tail"], None).await;
    assert!(audit.contains("\"key_revoked\"") && audit.contains(&compromised), "{audit}");
    assert!(audit.contains("keys rotate --now"), "{audit}");
}

#[cfg_attr(not(auth_test_postgres), ignore = "AUTH_TEST_DATABASE_URL was not set when the tests were built")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_key_operations_on_postgres() {
    let Some(backing) = Backing::from_env("emergency_key_operations_on_postgres", false) else { return };
    emergency_key_operations(Deployment::new(&backing, &cheap_booking_spec(&[])).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_key_operations_on_sqlite() {
    emergency_key_operations(Deployment::sqlite(&cheap_booking_spec(&[]))).await;
}

/// A client-credentials token revoked on A is refused by B at once, although B trusts what it
/// read as live for ten minutes: the revocation is announced on the feed of revoked sessions.
#[cfg_attr(not(auth_test_postgres), ignore = "AUTH_TEST_DATABASE_URL was not set when the tests were built")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_token_revoked_on_one_replica_is_refused_by_the_other() {
    let Some(backing) = Backing::from_env("a_client_token_revoked_on_one_replica_is_refused_by_the_other", false) else {
        return;
    };
    let deployment = Deployment::new(&backing, &cheap_booking_spec(&[])).await;
    let secret = deployment.add_confidential_client(BACKEND).await;
    let a = deployment.start(&["--key-refresh-secs", "1"]).await;
    let b = deployment.start(&["--key-refresh-secs", "1", "--session-cache-secs", "600"]).await;
    let client = http_client();
    let form = [("grant_type", "client_credentials"), ("scope", "bookings:read")];
    let (status, body) = post_form(&client, &a.url("/oauth/token"), &form, Some((BACKEND, &secret))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = field(&body, "access_token").to_owned();
    eventually("B knows A's key", Duration::from_secs(10), || async {
        (introspect(&client, &b, &secret, &token).await["active"] == true).then_some(())
    })
    .await;
    let (status, body) = post_form(&client, &a.url("/oauth/revoke"), &[("token", &token)], Some((BACKEND, &secret))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    eventually("B refuses the revoked token", Duration::from_secs(5), || async {
        (introspect(&client, &b, &secret, &token).await["active"] == false).then_some(())
    })
    .await;
}
