//! The sign-in flow in a real browser: the built `auth-server` on a free port, and the `node
//! --test` suite of `auth-server/tests/browser/` driving headless Chromium (Debian's
//! `/usr/bin/chromium`, through the pinned `playwright-core`) against it. The suite runs its own
//! relying party (a loopback code-flow client) and a page of another origin; what it checks is
//! listed at the top of `sign-in.test.mjs`.
//!
//! Where Node.js, npm or Chromium is missing the test says so and passes, except under `CI`, where
//! that is a failure (`.ci/ensure-chromium.sh` installs Chromium).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::process::{Deployment, cheap_booking_spec, in_ci};

/// Where playwright-core finds the browser.
const CHROMIUM: &str = "/usr/bin/chromium";

/// A bound on the node suite (it takes about ten seconds), so that a hang fails instead of
/// holding CI.
const RUN_LIMIT: Duration = Duration::from_secs(180);

/// The code-flow client of the suite's relying party: public, first-party (no consent page),
/// redirected to a loopback URI, which matches on any port (RFC 8252 section 7.3).
const BROWSER_CLIENT: &str = r#"
[clients.booking-spa]
public = true
first_party = true
grants = ["authorization_code", "refresh_token"]
scopes = ["bookings:read", "bookings:write"]
redirect_uris = ["http://127.0.0.1/callback"]
description = "Booking"
"#;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("auth-server sits in the workspace").to_path_buf()
}

/// Skips (with a note) when something the suite needs is missing, or fails under CI.
#[track_caller]
fn missing(what: &str) -> bool {
    assert!(!in_ci(), "CI is set but {what}: the browser tests cannot run");
    eprintln!("skipped the browser tests: {what}");
    true
}

/// Installs the pinned npm packages unless `node_modules` already matches the lock file (as the
/// TypeScript tests of auth-gen do). `false` when the tools are missing outside CI.
fn npm_ready() -> bool {
    let root = repository();
    let installed = std::fs::metadata(root.join("node_modules/.package-lock.json")).and_then(|m| m.modified()).ok();
    let locked = std::fs::metadata(root.join("package-lock.json")).and_then(|m| m.modified()).ok();
    if installed.is_some() && installed >= locked && root.join("node_modules/playwright-core").is_dir() {
        return true;
    }
    match Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&root).status() {
        Ok(status) => {
            assert!(status.success(), "npm ci failed ({status})");
            true
        }
        Err(e) => !missing(&format!("npm is not available ({e})")),
    }
}

/// A port nobody listens on now. The server binds it right after: its issuer, which a browser's
/// `Origin` is checked against, must name the port before the server starts.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind a free port").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_works_in_headless_chromium() {
    if Command::new("node").arg("--version").output().is_err() && missing("node is not available") {
        return;
    }
    if !Path::new(CHROMIUM).exists() && missing(&format!("{CHROMIUM} is missing (bash .ci/ensure-chromium.sh installs it)")) {
        return;
    }
    if !npm_ready() {
        return;
    }

    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let issuer_line = format!("issuer = \"{issuer}\"");
    let spec = cheap_booking_spec(&[("issuer = \"http://127.0.0.1:8080\"", issuer_line.as_str())]) + BROWSER_CLIENT;
    let deployment = Deployment::sqlite(&spec);
    let server = deployment.start_on(&format!("127.0.0.1:{port}"), &[]).await;
    assert_eq!(server.url(""), issuer);
    // tenant_id is set by invitations, never by the user.
    let invitation = deployment.cli(&["invitations", "create", "--claim", "tenant_id=hotel-7"], None).await;
    let artifacts = repository().join("target/browser-artifacts");
    std::fs::create_dir_all(&artifacts).expect("create target/browser-artifacts");

    let suite = repository().join("auth-server/tests/browser");
    let mut command = Command::new("node");
    command
        .args(["--test", "--test-concurrency=1", "--test-reporter=spec"])
        .arg(suite.join("sign-in.test.mjs"))
        .env("AUTH_SERVER_URL", &issuer)
        .env("AUTH_CLIENT_ID", "booking-spa")
        .env("AUTH_INVITATION", invitation.trim())
        .env("AUTH_CHROMIUM", CHROMIUM)
        .env("AUTH_ARTIFACTS", &artifacts)
        .current_dir(repository())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let output = run_bounded(command).await;
    let text = format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "the browser suite failed ({}):\n{text}\n--- server log ---\n{}", output.status, server.log());
    eprintln!("browser suite passed in {:.1?}; screenshots in {}\n{text}", started.elapsed(), artifacts.display());
}

/// Runs `command` in a process group of its own, stopped with everything it started (Chromium,
/// the suite's servers) when it runs past [`RUN_LIMIT`].
async fn run_bounded(mut command: Command) -> Output {
    use std::os::unix::process::CommandExt as _;
    let child = command.process_group(0).spawn().expect("run node --test");
    let group = child.id();
    let waited = tokio::task::spawn_blocking(move || child.wait_with_output());
    match tokio::time::timeout(RUN_LIMIT, waited).await {
        Ok(output) => output.expect("join the suite's waiter").expect("wait for the suite"),
        Err(_) => {
            let _ = Command::new("kill").arg("-TERM").arg(format!("-{group}")).status();
            panic!("the browser suite ran longer than {RUN_LIMIT:?}; stopped it");
        }
    }
}
