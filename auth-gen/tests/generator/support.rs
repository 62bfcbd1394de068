//! Shared test helpers: paths of the repository and its binaries, running `auth-gen`, and a real
//! `auth-server` process on port 0 with a throwaway data directory.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The `auth-gen` binary under test.
pub const AUTH_GEN: &str = env!("CARGO_BIN_EXE_auth-gen");

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_path_buf()
}

/// Every spec under `fixtures/specs/`, by name without extension.
pub fn fixture_specs() -> Vec<(String, PathBuf)> {
    let mut specs: Vec<(String, PathBuf)> = std::fs::read_dir(repo().join("fixtures/specs"))
        .expect("read fixtures/specs")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| (p.file_stem().expect("a file name").to_string_lossy().into_owned(), p))
        .collect();
    specs.sort();
    specs
}

/// A fresh directory under the target directory, removed first if a previous run left it.
#[track_caller]
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = repo().join("target/auth-gen-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// Runs `auth-gen` with `args` in `cwd`.
#[track_caller]
pub fn auth_gen(cwd: &Path, args: &[&str]) -> Output {
    Command::new(AUTH_GEN).args(args).current_dir(cwd).output().expect("run auth-gen")
}

/// Standard output and error of a run, for assertions and messages.
pub fn text(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// The `auth-server` binary of this build. `cargo test --workspace` builds it next to this test's
/// directory; when it is missing (this crate tested alone) it is built once.
pub fn auth_server_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let dir = std::env::current_exe().expect("the test binary's path");
            let profile_dir = dir.parent().and_then(Path::parent).expect("target/<profile>/deps/..");
            let binary = profile_dir.join("auth-server");
            if !binary.exists() {
                let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
                let status = Command::new(cargo)
                    .args(["build", "-p", "auth-server", "--bin", "auth-server"])
                    .current_dir(repo())
                    .status()
                    .expect("run cargo build -p auth-server");
                assert!(status.success(), "cargo build -p auth-server failed");
            }
            assert!(binary.exists(), "{} is missing after the build", binary.display());
            binary
        })
        .clone()
}

/// A running `auth-server serve`, killed on drop.
pub struct AuthServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its data directory (SQLite, master key).
    pub data_dir: PathBuf,
    /// The spec file it serves.
    pub spec_path: PathBuf,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl AuthServer {
    /// Starts a server for `spec_text` in a fresh directory named `name`.
    pub async fn start(name: &str, spec_text: &str) -> Self {
        let dir = scratch_dir(name);
        let spec_path = dir.join("auth.toml");
        std::fs::write(&spec_path, spec_text).expect("write the spec");
        let data_dir = dir.join("data");
        let mut command = Self::command(&spec_path, &data_dir);
        command
            .args(["--listen", "127.0.0.1:0", "--key-refresh-secs", "1", "--per-ip-rps", "1000", "--login-attempts", "1000"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn auth-server");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut log) = sink.lock() {
                    log.push(line);
                }
            }
        });
        let started = Instant::now();
        let addr = loop {
            let found = log.lock().ok().and_then(|lines| lines.iter().find_map(|l| listen_addr(l)));
            if let Some(addr) = found {
                break addr;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("auth-server exited at startup ({status}):\n{}", log.lock().map(|l| l.join("\n")).unwrap_or_default());
            }
            assert!(started.elapsed() < Duration::from_secs(60), "auth-server did not log its address");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Self { addr, data_dir, spec_path, child, log }
    }

    /// `auth-server` with the spec and data directory, and no `AUTH_*` variables of the caller.
    fn command(spec_path: &Path, data_dir: &Path) -> Command {
        let mut command = Command::new(auth_server_binary());
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(|n| n.starts_with("AUTH_")) {
                command.env_remove(name);
            }
        }
        command.env("RUST_LOG", "info").env("NO_COLOR", "1").arg("--spec").arg(spec_path).arg("--data-dir").arg(data_dir);
        command
    }

    /// `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Runs an operator command on the same data directory; returns its standard output.
    #[track_caller]
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Self::command(&self.spec_path, &self.data_dir).args(args).output().expect("run auth-server");
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "auth-server {args:?} failed:\n{stdout}\n{stderr}");
        stdout
    }

    /// Signs up `username` with `claims` and logs in with the password grant of `client_id`;
    /// returns the token response.
    pub async fn sign_up_and_log_in(
        &self,
        username: &str,
        claims: serde_json::Value,
        client_id: &str,
        scope: &str,
    ) -> serde_json::Value {
        let http = reqwest::Client::new();
        let mut body = serde_json::json!({ "username": username, "password": "correct horse battery" });
        // The claims come with an invitation from an operator: users cannot set the claims the
        // spec leaves to administrators.
        if let Some(claims) = claims.as_object().filter(|c| !c.is_empty()) {
            let pairs: Vec<String> = claims.iter().map(|(name, value)| format!("{name}={value}")).collect();
            let mut args = vec!["invitations", "create"];
            for pair in &pairs {
                args.extend(["--claim", pair.as_str()]);
            }
            body["invitation"] = serde_json::Value::String(self.cli(&args).trim().to_owned());
        }
        let signed_up = http.post(self.url("/v1/users")).json(&body).send().await.expect("sign up");
        assert_eq!(signed_up.status(), 201, "{}", signed_up.text().await.unwrap_or_default());
        let form = [
            ("grant_type", "password"),
            ("client_id", client_id),
            ("username", username),
            ("password", "correct horse battery"),
            ("scope", scope),
        ];
        let answer = http.post(self.url("/oauth/token")).form(&form).send().await.expect("log in");
        assert_eq!(answer.status(), 200);
        answer.json().await.expect("a token response")
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- auth-server log ---\n{}\n--- end ---", self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address of the `auth-server listening ... listen=ADDR` log line.
fn listen_addr(line: &str) -> Option<SocketAddr> {
    if !line.contains("auth-server listening") {
        return None;
    }
    let rest = &line[line.find("listen=")? + "listen=".len()..];
    rest.split_whitespace().next()?.parse().ok()
}
