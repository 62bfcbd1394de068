//! Running a `node --test` suite of the repository against a built `auth-server`: the pinned npm
//! packages of the root `package-lock.json`, a free port chosen before the server starts (its
//! issuer must name it), and a bounded run whose output fails the test with the server's log.
//! Used by the real-browser suite (`browser_real`) and the openid-client suite (`openid_client`).
//!
//! Where Node.js or npm is missing a suite says so and passes, except under `CI`, where that is a
//! failure.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::process::{Deployment, Server, cheap_booking_spec, in_ci};

/// The workspace root (where `package.json` and `package-lock.json` are).
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("auth-server sits in the workspace").to_path_buf()
}

/// Skips `suite` (with a note) when something it needs is missing, or fails under CI.
#[track_caller]
pub fn missing(suite: &str, what: &str) -> bool {
    assert!(!in_ci(), "CI is set but {what}: {suite} cannot run");
    eprintln!("skipped {suite}: {what}");
    true
}

/// Whether `node` runs; `false` (skip) when it does not, outside CI.
pub fn node_ready(suite: &str) -> bool {
    Command::new("node").arg("--version").output().is_ok() || !missing(suite, "node is not available")
}

/// Installs the pinned npm packages unless `node_modules` already matches the lock file and holds
/// `package` (as the TypeScript tests of auth-gen do). `false` when npm is missing outside CI.
pub fn npm_ready(suite: &str, package: &str) -> bool {
    let root = repository();
    let installed = std::fs::metadata(root.join("node_modules/.package-lock.json")).and_then(|m| m.modified()).ok();
    let locked = std::fs::metadata(root.join("package-lock.json")).and_then(|m| m.modified()).ok();
    if installed.is_some() && installed >= locked && root.join("node_modules").join(package).is_dir() {
        return true;
    }
    match Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&root).status() {
        Ok(status) => {
            assert!(status.success(), "npm ci failed ({status})");
            true
        }
        Err(e) => !missing(suite, &format!("npm is not available ({e})")),
    }
}

/// A port nobody listens on now. The server binds it right after: its issuer, which a browser's
/// `Origin` and a relying party's discovery are checked against, must name the port before the
/// server starts.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind a free port").port()
}

/// A SQLite deployment of the booking spec (cheap hashing) with `clients` added, whose issuer is
/// the origin it listens on (`http://127.0.0.1:<port>`, the port chosen first), and its server
/// started there with `extra` flags. The issuer is `server.url("")`.
pub async fn serve_at_own_issuer(clients: &str, extra: &[&str]) -> (Deployment, Server) {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let issuer_line = format!("issuer = \"{issuer}\"");
    let spec = cheap_booking_spec(&[("issuer = \"http://127.0.0.1:8080\"", issuer_line.as_str())]) + clients;
    let deployment = Deployment::sqlite(&spec);
    let server = deployment.start_on(&format!("127.0.0.1:{port}"), extra).await;
    assert_eq!(server.url(""), issuer);
    (deployment, server)
}

/// Runs the `node --test` suite `file` (relative to the repository) with `env`, for at most
/// `limit`; fails with its output and `server`'s log unless every test passed. Returns the output.
pub async fn run_suite(file: &str, env: &[(&str, &OsStr)], limit: Duration, server: &Server) -> String {
    let mut command = Command::new("node");
    command
        .args(["--test", "--test-concurrency=1", "--test-reporter=spec"])
        .arg(repository().join(file))
        .envs(env.iter().copied())
        .current_dir(repository())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let output = run_bounded(command, limit, file).await;
    let text = format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{file} failed ({}):\n{text}\n--- server log ---\n{}", output.status, server.log());
    format!("{file} passed in {:.1?}\n{text}", started.elapsed())
}

/// Runs `command` in a process group of its own, stopped with everything it started (a browser,
/// the suite's servers) when it runs past `limit`.
async fn run_bounded(mut command: Command, limit: Duration, what: &str) -> Output {
    use std::os::unix::process::CommandExt as _;
    let child = command.process_group(0).spawn().expect("run node --test");
    let group = child.id();
    let waited = tokio::task::spawn_blocking(move || child.wait_with_output());
    match tokio::time::timeout(limit, waited).await {
        Ok(output) => output.expect("join the suite's waiter").expect("wait for the suite"),
        Err(_) => {
            let _ = Command::new("kill").arg("-TERM").arg(format!("-{group}")).status();
            panic!("{what} ran longer than {limit:?}; stopped it");
        }
    }
}
