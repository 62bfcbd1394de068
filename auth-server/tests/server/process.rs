//! Real `auth-server` processes for the tests that need more than one process or a dependency
//! that goes away: a [`Deployment`] is one service's shared state (its own PostgreSQL schema, or
//! a SQLite file, Redis key prefix, master key, spec file and working directory); a [`Server`] is
//! one replica of it, started from the built binary on a port the kernel picks, its standard
//! output and error kept as its log.
//!
//! PostgreSQL comes from `AUTH_TEST_DATABASE_URL` and Redis from `AUTH_TEST_REDIS_URL`. When one a
//! test needs is unset the test is skipped with a note, unless `CI` is set: then it fails.
//! Everything a deployment creates (schema, directory, processes) is removed when it is dropped,
//! also when the test fails; a failing test prints the logs of its servers.

// Test helpers fail the test on purpose when something is off.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use auth_core::store::SqlStore;

/// The binary under test.
pub const BINARY: &str = env!("CARGO_BIN_EXE_auth-server");

/// The booking spec of the fixtures.
pub const BOOKING_SPEC: &str = include_str!("../../../fixtures/specs/booking.toml");

/// A password that satisfies the booking spec.
pub const PASSWORD: &str = "correct horse battery staple";

/// How long a server may take to start (migrations, first key) on a busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The booking spec with each `(old, new)` text replaced; panics when `old` is not in it, so that
/// a changed fixture cannot silently turn a test into a test of something else.
#[track_caller]
pub fn booking_spec(edits: &[(&str, &str)]) -> String {
    let mut spec = BOOKING_SPEC.to_owned();
    for (old, new) in edits {
        assert!(spec.contains(old), "the booking spec no longer contains {old:?}");
        spec = spec.replacen(old, new, 1);
    }
    spec
}

/// The booking spec with argon2 at its cheapest allowed cost: these tests are about processes,
/// not password hashing.
pub fn cheap_booking_spec(edits: &[(&str, &str)]) -> String {
    let mut all = vec![("memory_kib = 19456\niterations = 2", "memory_kib = 4096\niterations = 1")];
    all.extend_from_slice(edits);
    // Every test signs up from 127.0.0.1.
    booking_spec(&all) + "\n[sign_up]\nper_source = { burst = 100000, per = \"1h\" }\n"
}

/// A name no other test of this run (or of a concurrent run) uses.
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{}_{}_{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Whether `CI` is set: then a test that cannot run fails instead of skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The value of a test variable, or `None` (with a note) when it is unset; fails in CI.
#[track_caller]
pub fn test_env(name: &str, test: &str) -> Option<String> {
    let value = std::env::var(name).ok().filter(|v| !v.is_empty());
    if value.is_none() {
        assert!(!in_ci(), "CI is set but {name} is not: {test} cannot run");
        eprintln!("skipped {test}: {name} is not set");
    }
    value
}

/// What a deployment runs on.
#[derive(Debug, Clone)]
pub struct Backing {
    /// `AUTH_TEST_DATABASE_URL`.
    pub database_url: String,
    /// `AUTH_TEST_REDIS_URL`, when the test uses Redis.
    pub redis_url: Option<String>,
}

impl Backing {
    /// PostgreSQL (and Redis when `with_redis`), or `None` when the test must be skipped.
    #[track_caller]
    pub fn from_env(test: &str, with_redis: bool) -> Option<Self> {
        let database_url = test_env("AUTH_TEST_DATABASE_URL", test)?;
        let redis_url = if with_redis { Some(test_env("AUTH_TEST_REDIS_URL", test)?) } else { None };
        Some(Self { database_url, redis_url })
    }
}

/// `url` with the connection's `search_path` set to `schema` (sqlx passes the `options`
/// parameter to PostgreSQL as startup options; the URL crate does the percent-encoding).
pub fn with_search_path(url: &str, schema: &str) -> String {
    let mut url = url::Url::parse(url).unwrap_or_else(|e| panic!("{url} is not a URL: {e}"));
    url.query_pairs_mut().append_pair("options", &format!("-c search_path={schema}"));
    url.into()
}

/// One service: its schema, Redis prefix, master key, spec and directory.
#[derive(Debug)]
pub struct Deployment {
    /// The database URL of this deployment's schema.
    pub database_url: String,
    /// The Redis URL replicas are started with, if any.
    pub redis_url: Option<String>,
    /// This deployment's rate-limit key prefix in Redis.
    pub redis_prefix: String,
    /// The spec file.
    pub spec_path: PathBuf,
    /// The spec text.
    pub spec_text: String,
    dir: PathBuf,
    master_key: String,
    admin_url: String,
    schema: String,
    replicas: AtomicU64,
    env: Vec<(String, String)>,
}

impl Deployment {
    /// A new schema and directory with `spec` written to a file.
    pub async fn new(backing: &Backing, spec: &str) -> Self {
        let suffix = unique_suffix();
        let schema = format!("auth_srv_{suffix}");
        let admin = SqlStore::connect(&backing.database_url).await.expect("connect to AUTH_TEST_DATABASE_URL");
        sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(admin.pool()).await.expect("create the test schema");
        admin.close().await;
        let dir = std::env::temp_dir().join(format!("auth-server-test-{suffix}"));
        std::fs::create_dir_all(&dir).expect("create the test directory");
        let spec_path = dir.join("auth.toml");
        std::fs::write(&spec_path, spec).expect("write the spec");
        // A fixed 32-byte master key in hex, different per deployment.
        let master_key = hex_of(&suffix);
        Self {
            database_url: with_search_path(&backing.database_url, &schema),
            redis_url: backing.redis_url.clone(),
            redis_prefix: format!("auth:test:{suffix}:"),
            spec_path,
            spec_text: spec.to_owned(),
            dir,
            master_key,
            admin_url: backing.database_url.clone(),
            schema,
            replicas: AtomicU64::new(0),
            env: Vec::new(),
        }
    }

    /// A deployment on a SQLite file in its own directory (one machine: the file is shared by
    /// the operator commands and the servers it starts), with no Redis.
    pub fn sqlite(spec: &str) -> Self {
        let suffix = unique_suffix();
        let dir = std::env::temp_dir().join(format!("auth-server-test-{suffix}"));
        std::fs::create_dir_all(&dir).expect("create the test directory");
        let spec_path = dir.join("auth.toml");
        std::fs::write(&spec_path, spec).expect("write the spec");
        Self {
            database_url: format!("sqlite://{}?mode=rwc", dir.join("auth.db").display()),
            redis_url: None,
            redis_prefix: format!("auth:test:{suffix}:"),
            spec_path,
            spec_text: spec.to_owned(),
            master_key: hex_of(&suffix),
            dir,
            admin_url: String::new(),
            schema: String::new(),
            replicas: AtomicU64::new(0),
            env: Vec::new(),
        }
    }

    /// The master key every process gets in `AUTH_MASTER_KEY` (64 hex digits), unless
    /// [`Deployment::set_env`] replaces it.
    pub fn master_key(&self) -> &str {
        &self.master_key
    }

    /// Sets a variable for the processes started from now on (e.g. `RUST_LOG`, `AUTH_MASTER_KEY`);
    /// it wins over the deployment's own.
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.to_owned(), value.to_owned()));
    }

    /// The spec, parsed.
    pub fn spec(&self) -> auth_core::spec::Spec {
        auth_core::spec::Spec::parse(&self.spec_text).expect("the test spec is valid")
    }

    /// A store on this deployment's schema, for looking at what the servers wrote.
    pub async fn store(&self) -> SqlStore {
        SqlStore::connect(&self.database_url).await.expect("connect to the test schema")
    }

    /// `auth-server` with this deployment's environment and shared flags: spec, database, Redis,
    /// master key. `data_dir` separates replicas (nothing shared lives there on PostgreSQL).
    fn command(&self, database_url: &str, data_dir: &str) -> std::process::Command {
        let mut command = std::process::Command::new(BINARY);
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(|n| n.starts_with("AUTH_")) {
                command.env_remove(name);
            }
        }
        command
            .env("AUTH_MASTER_KEY", &self.master_key)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .arg("--spec")
            .arg(&self.spec_path)
            .arg("--database-url")
            .arg(database_url)
            .arg("--data-dir")
            .arg(self.dir.join(data_dir))
            .arg("--redis-prefix")
            .arg(&self.redis_prefix);
        if let Some(redis) = &self.redis_url {
            command.arg("--redis-url").arg(redis);
        }
        command.envs(self.env.iter().map(|(n, v)| (n, v)));
        command
    }

    /// Runs an operator command to completion and returns its standard output; panics (with its
    /// standard error) when it fails.
    pub async fn cli(&self, args: &[&str], stdin: Option<&str>) -> String {
        let output = self.try_cli(args, stdin).await;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "`auth-server {}` failed ({}):\n{stdout}\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// Runs an operator command to completion, whatever its outcome.
    pub async fn try_cli(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        use tokio::io::AsyncWriteExt as _;
        let mut command = tokio::process::Command::from(self.command(&self.database_url, "cli"));
        command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = command.spawn().expect("spawn auth-server");
        if let Some(mut pipe) = child.stdin.take() {
            pipe.write_all(stdin.unwrap_or("").as_bytes()).await.expect("write to auth-server's stdin");
        }
        child.wait_with_output().await.expect("run auth-server")
    }

    /// Starts an operator command without waiting for it (to kill it midway).
    pub fn spawn_cli(&self, args: &[&str]) -> Child {
        let mut command = self.command(&self.database_url, "cli");
        command.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        command.spawn().expect("spawn auth-server")
    }

    /// Registers the confidential client `id` and returns its secret.
    pub async fn add_confidential_client(&self, id: &str) -> String {
        let out = self.cli(&["clients", "add", id], None).await;
        out.lines().last().map(str::trim).filter(|s| !s.is_empty()).expect("the secret is printed").to_owned()
    }

    /// Adds a user of tenant `t1` with [`PASSWORD`].
    pub async fn add_user(&self, username: &str) {
        self.cli(&["users", "add", username, "--claim", "tenant_id=t1"], Some(&format!("{PASSWORD}\n"))).await;
    }

    /// Starts a replica on a free port with `extra` flags and waits until `/healthz` answers.
    pub async fn start(&self, extra: &[&str]) -> Server {
        self.start_with_database(&self.database_url.clone(), extra).await
    }

    /// As [`Deployment::start`], reaching the database at `database_url` (e.g. through a proxy).
    pub async fn start_with_database(&self, database_url: &str, extra: &[&str]) -> Server {
        self.start_listening(database_url, "127.0.0.1:0", extra).await
    }

    /// As [`Deployment::start`], listening on `listen`: for a spec whose issuer must be the
    /// server's own origin (a browser's `Origin` is checked against it), the port is chosen first.
    pub async fn start_on(&self, listen: &str, extra: &[&str]) -> Server {
        self.start_listening(&self.database_url.clone(), listen, extra).await
    }

    async fn start_listening(&self, database_url: &str, listen: &str, extra: &[&str]) -> Server {
        let n = self.replicas.fetch_add(1, Ordering::Relaxed);
        let name = format!("replica-{n}");
        let mut command = self.command(database_url, &name);
        command
            .arg("serve")
            .arg("--listen")
            .arg(listen)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Server::spawn(name, command).await
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if self.schema.is_empty() {
            return;
        }
        // Drop runs inside the test's runtime, which cannot be blocked on: use a thread with a
        // runtime of its own.
        let (url, schema) = (self.admin_url.clone(), self.schema.clone());
        let dropped = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            runtime.block_on(async {
                if let Ok(admin) = SqlStore::connect(&url).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(admin.pool()).await;
                    admin.close().await;
                }
            });
        });
        let _ = dropped.join();
    }
}

/// 64 hex digits derived from `seed` (a test master key; not a secret).
fn hex_of(seed: &str) -> String {
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    let mut out = String::with_capacity(64);
    for i in 0..32u64 {
        for b in seed.bytes().chain(i.to_le_bytes()) {
            state = (state ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        out.push_str(&format!("{:02x}", state & 0xff));
    }
    out
}

/// One running `auth-server serve`. Killed when dropped if it still runs.
#[derive(Debug)]
pub struct Server {
    /// `replica-N`, for messages.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    async fn spawn(name: String, mut command: std::process::Command) -> Self {
        let mut child = command.spawn().expect("spawn auth-server serve");
        let log = Arc::new(Mutex::new(Vec::new()));
        // Standard error and (when piped) standard output, line by line into one log.
        let stderr = child.stderr.take().expect("stderr is piped");
        let outputs: Vec<Box<dyn std::io::Read + Send>> = match child.stdout.take() {
            Some(stdout) => vec![Box::new(stderr), Box::new(stdout)],
            None => vec![Box::new(stderr)],
        };
        for output in outputs {
            let sink = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(output).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(mut log) = sink.lock() {
                        log.push(strip_ansi(&line));
                    }
                }
            });
        }
        let started = Instant::now();
        let addr = loop {
            let found = log.lock().ok().and_then(|lines| lines.iter().find_map(|l| listen_addr(l)));
            if let Some(addr) = found {
                break addr;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{name} exited at startup ({status}):\n{}",
                    log.lock().map(|l| l.join("\n")).unwrap_or_default()
                );
            }
            assert!(started.elapsed() < START_TIMEOUT, "{name} did not log its address in {START_TIMEOUT:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let server = Self { name, addr, child, log };
        let client = http_client();
        loop {
            let answered = client.get(server.url("/healthz")).send().await.is_ok_and(|r| r.status().is_success());
            if answered {
                break;
            }
            assert!(started.elapsed() < START_TIMEOUT, "{} never answered /healthz:\n{}", server.name, server.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server
    }

    /// `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.child.id());
    }

    /// Sends SIGKILL and reaps the process: it dies at once, mid-request, as in a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit, for at most `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the child") {
                return status;
            }
            assert!(started.elapsed() < limit, "{} did not exit within {limit:?}:\n{}", self.name, self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- log of {} ({}) ---\n{}\n--- end of {} ---", self.name, self.addr, self.log(), self.name);
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The address of the `auth-server listening listen=...` log line.
fn listen_addr(line: &str) -> Option<SocketAddr> {
    if !line.contains("auth-server listening") {
        return None;
    }
    let rest = &line[line.find("listen=")? + "listen=".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// The line without ANSI escape sequences (in case the log is colored anyway).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// An HTTP client for the tests: no proxy from the environment, a bound on every request.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().expect("build the HTTP client")
}
