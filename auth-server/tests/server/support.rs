//! Shared test helpers: a real server on port 0 over a fresh database, and a few HTTP shortcuts.
//!
//! Each test gets its own data directory (master key, spec file, SQLite file) and, on
//! PostgreSQL (when `AUTH_TEST_DATABASE_URL` is set), its own schema selected through the
//! connection's `search_path`, so tests running in parallel never see each other's rows. Both are
//! removed when the test ends, also when it fails. With `CI` set, a missing PostgreSQL or Redis URL
//! fails the test instead of skipping it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auth_core::spec::{RateLimitSpec, Seconds};
use auth_core::store::SqlStore;
use auth_core::clock::SystemClock;
use auth_core::random::OsEntropy;
use auth_server::config::ServerConfig;
use auth_server::state::{self, AppState};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde_json::{Value, json};

/// Runs each listed `async fn case(db: TestDb)` of the enclosing module on both backends, as
/// `sqlite::case` and `postgres::case`.
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(crate::support::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[cfg_attr(not(auth_test_postgres), ignore = "AUTH_TEST_DATABASE_URL was not set when the tests were built")]
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(db) = crate::support::postgres(stringify!($case)).await else {
                        return;
                    };
                    super::$case(db).await;
                }
            )*
        }
    };
}

/// The password every test user signs up with unless a test says otherwise.
pub const PASSWORD: &str = "correct horse battery staple";

/// The public client of the booking spec (password and refresh grants).
pub const WEB: &str = "booking-web";

/// The confidential client of the booking spec (client credentials).
pub const BACKEND: &str = "booking-backend";

/// A fresh database and data directory for one test.
#[derive(Debug)]
pub struct TestDb {
    /// The data directory: master key, spec file and (on SQLite) the database.
    pub data_dir: PathBuf,
    /// The PostgreSQL URL of this test's schema; `None` on SQLite.
    pub database_url: Option<String>,
    schema: Option<(String, String)>,
}

impl TestDb {
    /// `sqlite` or `postgres`, for messages.
    pub fn backend(&self) -> &'static str {
        if self.database_url.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
        let Some((base_url, schema)) = self.schema.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread with a
        // runtime of its own.
        let dropped = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(admin) = SqlStore::connect(&base_url).await {
                    let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
                    let _ = sqlx::query(&sql).execute(admin.pool()).await;
                    admin.close().await;
                }
            });
        });
        let _ = dropped.join();
    }
}

/// A name no other test of this run (or of a concurrent run) uses.
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn data_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("auth-server-test-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).expect("create the test directory");
    dir
}

/// A new data directory; the server creates its SQLite file there.
pub fn sqlite() -> TestDb {
    TestDb {
        data_dir: data_dir(),
        database_url: None,
        schema: None,
    }
}

/// A new PostgreSQL schema of its own, or `None` (the test is skipped) when
/// `AUTH_TEST_DATABASE_URL` is unset. In CI (`CI` set) a missing URL fails the test instead.
pub async fn postgres(test: &str) -> Option<TestDb> {
    let Some(base_url) = std::env::var("AUTH_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        assert!(
            !in_ci(),
            "CI is set but AUTH_TEST_DATABASE_URL is not: PostgreSQL tests cannot run"
        );
        eprintln!("skipped {test} on PostgreSQL: AUTH_TEST_DATABASE_URL is not set");
        return None;
    };
    let schema = format!("auth_server_test_{}", unique_suffix());
    let admin = SqlStore::connect(&base_url)
        .await
        .expect("connect to AUTH_TEST_DATABASE_URL");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(admin.pool())
        .await
        .expect("create the test schema");
    admin.close().await;
    let mut url = url::Url::parse(&base_url).expect("AUTH_TEST_DATABASE_URL is a URL");
    url.query_pairs_mut()
        .append_pair("options", &format!("-c search_path={schema}"));
    Some(TestDb {
        data_dir: data_dir(),
        database_url: Some(url.to_string()),
        schema: Some((base_url, schema)),
    })
}

/// The Redis URL for tests: skipped with a note when unset, a failure when `CI` is set.
pub fn redis_url(test: &str) -> Option<String> {
    match std::env::var("AUTH_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                !in_ci(),
                "CI is set but AUTH_TEST_REDIS_URL is not: Redis tests cannot run"
            );
            eprintln!("skipped {test} on Redis: AUTH_TEST_REDIS_URL is not set");
            None
        }
    }
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// What a test may change about the server; everything else is the booking spec with cheap
/// argon2 parameters.
#[derive(Debug, Clone)]
pub struct Options {
    /// `tokens.refresh_reuse_grace`.
    pub reuse_grace: &'static str,
    /// The `bookings:write` rate limit: burst and period.
    pub write_limit: (u32, &'static str),
    /// Per-account login attempts per minute.
    pub login_attempts: u32,
    /// Failed logins per source address per hour (every test logs in from 127.0.0.1).
    pub login_failures_per_source: u32,
    /// Per-IP burst on credential endpoints (replenished one per minute when small).
    pub per_ip_burst: u32,
    /// Redis for the rate limits; in memory when `None`.
    pub redis_url: Option<String>,
    /// The spec's sign-ups per source address per hour.
    pub sign_ups_per_hour: u32,
    /// The bounds on connections; the flags' defaults when `None`.
    pub connections: Option<auth_server::config::ConnectionLimits>,
    /// Spec text appended to the booking spec (more clients, a `[browser]` section).
    pub extra_spec: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        // Generous limits, so that only the tests about limits meet them.
        Self {
            reuse_grace: "10s",
            write_limit: (30, "1m"),
            login_attempts: 100,
            login_failures_per_source: 100_000,
            per_ip_burst: 10_000,
            redis_url: None,
            sign_ups_per_hour: 100_000,
            connections: None,
            extra_spec: "",
        }
    }
}

/// The booking spec, for this server's issuer, with `options` applied. Each replacement must
/// match, so that a change of the fixture cannot silently turn a test into a no-op.
fn spec_text(issuer: &str, options: &Options) -> String {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/specs/booking.toml");
    let mut text = std::fs::read_to_string(&fixture).expect("read fixtures/specs/booking.toml");
    let (burst, per) = options.write_limit;
    let replacements = [
        ("issuer = \"http://127.0.0.1:8080\"".to_owned(), format!("issuer = \"{issuer}\"")),
        ("refresh_reuse_grace = \"10s\"".to_owned(), format!("refresh_reuse_grace = \"{}\"", options.reuse_grace)),
        // argon2 at its cheapest allowed setting: the tests are about HTTP, not hashing cost.
        ("memory_kib = 19456".to_owned(), "memory_kib = 4096".to_owned()),
        ("iterations = 2".to_owned(), "iterations = 1".to_owned()),
        (
            "description = \"Create and cancel bookings\"\nrate_limit = { burst = 30, per = \"1m\" }".to_owned(),
            format!("description = \"Create and cancel bookings\"\nrate_limit = {{ burst = {burst}, per = \"{per}\" }}"),
        ),
    ];
    for (from, to) in replacements {
        assert!(
            text.contains(&from),
            "fixtures/specs/booking.toml no longer contains {from:?}"
        );
        text = text.replace(&from, &to);
    }
    // Every test signs up from 127.0.0.1.
    text.push_str(&format!("\n[sign_up]\nper_source = {{ burst = {}, per = \"1h\" }}\n", options.sign_ups_per_hour));
    text.push_str(options.extra_spec);
    text
}

/// A running server, stopped when dropped (before its database is removed).
#[derive(Debug)]
pub struct Server {
    /// `http://127.0.0.1:<port>`, also the spec's issuer.
    pub base: String,
    /// The server's state, for what HTTP cannot do (registering a client, reading the audit log).
    pub state: Arc<AppState>,
    /// A client that follows no redirects.
    pub http: reqwest::Client,
    task: tokio::task::JoinHandle<()>,
    db: TestDb,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Starts a server with the default options.
    pub async fn start(db: TestDb) -> Self {
        Self::start_with(db, Options::default()).await
    }

    /// Starts a server on port 0 over `db`.
    pub async fn start_with(db: TestDb, options: Options) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let addr: SocketAddr = listener.local_addr().expect("local address");
        let base = format!("http://{addr}");
        let spec_path = db.data_dir.join("auth.toml");
        std::fs::write(&spec_path, spec_text(&base, &options)).expect("write the test spec");
        let mut config = ServerConfig::local(addr, db.data_dir.clone());
        config.spec = Some(spec_path);
        config.database_url.clone_from(&db.database_url);
        config.redis_url = options.redis_url.clone();
        // Keys of this server alone: limits keyed by the source address (127.0.0.1 for every
        // test) would otherwise be shared by tests, and by runs within the keys' lifetimes.
        config.redis_prefix = format!("auth:test:{}:", unique_suffix());
        config.password_workers = 2;
        if let Some(connections) = options.connections {
            config.connections = connections;
        }
        config.per_ip_burst = options.per_ip_burst;
        config.per_ip_period = Duration::from_secs(60);
        config.login.attempts = RateLimitSpec {
            burst: options.login_attempts,
            per: Seconds(60),
        };
        config.login.source_failures = RateLimitSpec {
            burst: options.login_failures_per_source,
            per: Seconds(3600),
        };
        let state = state::build_state(config, Arc::new(SystemClock), Arc::new(OsEntropy::new()))
            .await
            .expect("build the server state");
        state.rotate_keys().await.expect("the first signing key");
        let served = state.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = auth_server::http::serve(served, listener).await {
                eprintln!("the test server stopped: {e:#}");
            }
        });
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("build the HTTP client");
        Self {
            base,
            state,
            http,
            task,
            db,
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.db.backend()
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("GET")
    }

    /// `GET path` with a bearer token.
    pub async fn get_bearer(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET with a bearer token")
    }

    /// `POST path` of a form, with the parameters in this order (repeats allowed).
    pub async fn post_form(&self, path: &str, params: &[(&str, &str)]) -> reqwest::Response {
        self.form_request(path, params)
            .send()
            .await
            .expect("POST form")
    }

    /// A `POST path` of a form, to add headers to.
    pub fn form_request(&self, path: &str, params: &[(&str, &str)]) -> reqwest::RequestBuilder {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        self.http
            .post(self.url(path))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
    }

    /// `POST /v1/users` of a JSON body.
    pub async fn post_user(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/v1/users"))
            .json(body)
            .send()
            .await
            .expect("POST /v1/users")
    }

    /// An invitation into `tenant`, as an operator creates it (the booking spec's `tenant_id` is
    /// set by administrators, never by the user).
    pub async fn invitation(&self, tenant: &str) -> String {
        let claims = json!({ "tenant_id": tenant }).as_object().expect("an object").clone();
        self.state
            .authority
            .create_invitation(claims, None, auth_core::authority::DEFAULT_INVITATION_TTL, auth_core::authority::Admin::Operator)
            .await
            .expect("create an invitation")
            .token
    }

    /// Signs up `username` with `password`, invited into tenant `t-1`; returns the new user's id.
    pub async fn sign_up_with(&self, username: &str, password: &str) -> String {
        let invitation = self.invitation("t-1").await;
        let response = self
            .post_user(&json!({ "username": username, "password": password, "invitation": invitation }))
            .await;
        let (status, _, body) = read_json(response).await;
        assert_eq!(status, StatusCode::CREATED, "sign-up of {username}: {body}");
        body["id"].as_str().expect("the new user's id").to_owned()
    }

    /// Signs up `username` with [`PASSWORD`].
    pub async fn sign_up(&self, username: &str) -> String {
        self.sign_up_with(username, PASSWORD).await
    }

    /// The password grant for the web client.
    pub async fn password_grant(&self, username: &str, password: &str) -> reqwest::Response {
        self.post_form(
            "/oauth/token",
            &[
                ("grant_type", "password"),
                ("client_id", WEB),
                ("username", username),
                ("password", password),
            ],
        )
        .await
    }

    /// Logs `username` in with [`PASSWORD`]; returns the token response.
    pub async fn login(&self, username: &str) -> Tokens {
        let (status, _, body) = read_json(self.password_grant(username, PASSWORD).await).await;
        assert_eq!(status, StatusCode::OK, "login of {username}: {body}");
        Tokens::from_body(&body)
    }

    /// The refresh grant for the web client.
    pub async fn refresh(&self, refresh_token: &str) -> reqwest::Response {
        self.post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", WEB),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    /// Registers the confidential client; returns its secret.
    pub async fn register_backend(&self) -> String {
        let secret = self
            .state
            .authority
            .register_client(BACKEND)
            .await
            .expect("register booking-backend");
        secret.expect("a confidential client gets a secret")
    }

    /// A store of its own on the server's database, for SQL the `Store` trait does not offer
    /// (counting rows). Close it when done.
    pub async fn sql_store(&self) -> SqlStore {
        SqlStore::connect(&self.state.config.database_url())
            .await
            .expect("connect to the server's database")
    }

    /// The Prometheus page.
    pub async fn metrics(&self) -> String {
        let response = self.get("/metrics").await;
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("metrics body")
    }
}

/// The tokens of a successful password or refresh grant.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// `access_token`.
    pub access: String,
    /// `refresh_token`.
    pub refresh: String,
}

impl Tokens {
    /// Reads a token response.
    #[track_caller]
    pub fn from_body(body: &Value) -> Self {
        Self {
            access: body["access_token"]
                .as_str()
                .expect("access_token")
                .to_owned(),
            refresh: body["refresh_token"]
                .as_str()
                .expect("refresh_token")
                .to_owned(),
        }
    }
}

/// Status, headers and JSON body of a response. A body that is not JSON fails the test, naming it.
pub async fn read_json(response: reqwest::Response) -> (StatusCode, HeaderMap, Value) {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("response body");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {text:?}"));
    (status, headers, body)
}

/// Sends `requests` all at once (each task waits at a barrier until every one is ready) and
/// returns their answers, read with [`read_json`], in the order of `requests`.
pub async fn send_together(requests: Vec<reqwest::RequestBuilder>) -> Vec<(StatusCode, HeaderMap, Value)> {
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(requests.len()));
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|request| {
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                read_json(request.send().await.expect("send")).await
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(tasks.len());
    for task in tasks {
        answers.push(task.await.expect("a request task"));
    }
    answers
}

/// A header's value as text (empty when absent).
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Asserts an RFC 6749 error response: status, `error`, no-store.
#[track_caller]
pub fn assert_oauth_error(
    status: StatusCode,
    headers: &HeaderMap,
    body: &Value,
    expected: StatusCode,
    error: &str,
) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert!(
        header(headers, "content-type").starts_with("application/json"),
        "{headers:?}"
    );
    assert_eq!(header(headers, "cache-control"), "no-store");
}

/// Asserts an RFC 9457 problem: status, content type, `status` member and `code`.
#[track_caller]
pub fn assert_problem(
    status: StatusCode,
    headers: &HeaderMap,
    body: &Value,
    expected: StatusCode,
    code: &str,
) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(
        header(headers, "content-type"),
        "application/problem+json",
        "{headers:?}"
    );
    assert_eq!(body["status"], expected.as_u16(), "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(body["title"].is_string(), "{body}");
}

/// The value of the metric line `name{labels}` whose labels include every one of `labels`
/// (`0` when there is no such line).
pub fn metric_value(page: &str, name: &str, labels: &[&str]) -> f64 {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?;
            let matches = match rest.strip_prefix('{') {
                Some(labelled) => labels.iter().all(|l| labelled.contains(l)),
                None => rest.is_empty() && labels.is_empty(),
            };
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}
