//! API fuzzing as part of the test suite: `.ci/schemathesis.sh` starts the built `auth-server`
//! (on SQLite, and on PostgreSQL when `AUTH_TEST_DATABASE_URL` is set), runs a pinned schemathesis
//! against its `/openapi.json` with every check, and must find nothing.
//!
//! schemathesis lives in a Python virtualenv next to the build (`<target>/venv-schemathesis`),
//! created by the script on first use (pip, from PyPI). When it cannot be created the tests are
//! skipped with a note, unless `CI` is set: then they fail.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::postgres;

/// The script's "the virtualenv cannot be created" exit code (EX_TEMPFAIL).
const CANNOT_SET_UP: i32 = 75;

/// A bound on one run, far above what it takes (seconds), so that a hang fails instead of
/// holding CI.
const RUN_LIMIT: Duration = Duration::from_secs(600);

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `<target>/venv-schemathesis`, beside the profile directory of the binary under test.
fn venv() -> PathBuf {
    let binary = Path::new(env!("CARGO_BIN_EXE_auth-server"));
    let target = binary.parent().and_then(Path::parent).expect("the binary sits in <target>/<profile>/");
    target.join("venv-schemathesis")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Runs the script with `args`, in a process group of its own so that a run past [`RUN_LIMIT`]
/// can be stopped with everything it started (schemathesis, the server).
async fn script(args: &[&str], database_url: Option<&str>) -> Output {
    use std::os::unix::process::CommandExt as _;

    let mut command = std::process::Command::new("bash");
    command
        .arg(repository().join(".ci/schemathesis.sh"))
        .args(args)
        .env("SCHEMATHESIS_VENV", venv())
        // The server's configuration is the script's; nothing leaks in from the caller.
        .env_remove("AUTH_DATABASE_URL")
        .env_remove("AUTH_REDIS_URL")
        .env_remove("AUTH_MASTER_KEY")
        .env_remove("AUTH_MASTER_KEY_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(url) = database_url {
        command.env("AUTH_DATABASE_URL", url);
    }
    let child = command.spawn().expect("run bash .ci/schemathesis.sh");
    let group = child.id();
    let waited = tokio::task::spawn_blocking(move || child.wait_with_output());
    match tokio::time::timeout(RUN_LIMIT, waited).await {
        Ok(output) => output.expect("join the script's waiter").expect("wait for the script"),
        Err(_) => {
            let _ = std::process::Command::new("kill").arg("-TERM").arg(format!("-{group}")).status();
            panic!("schemathesis.sh {args:?} ran longer than {RUN_LIMIT:?}; stopped it");
        }
    }
}

fn text(output: &Output) -> String {
    format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Creates the virtualenv once per test process (the two runs would otherwise race on it).
/// `false`: it cannot be created here and the caller skips.
async fn set_up(test: &str) -> bool {
    static SET_UP: tokio::sync::OnceCell<Result<(), String>> = tokio::sync::OnceCell::const_new();
    let result = SET_UP
        .get_or_init(|| async {
            let output = script(&["--setup-only"], None).await;
            match output.status.code() {
                Some(0) => Ok(()),
                Some(CANNOT_SET_UP) => Err(text(&output)),
                _ => panic!("schemathesis.sh --setup-only failed ({}):\n{}", output.status, text(&output)),
            }
        })
        .await;
    match result {
        Ok(()) => true,
        Err(why) => {
            assert!(!in_ci(), "CI is set but schemathesis cannot be installed, so {test} cannot run:\n{why}");
            eprintln!("skipped {test}: the schemathesis virtualenv cannot be created here:\n{why}");
            false
        }
    }
}

/// Fuzzes a server on SQLite (`database_url` `None`) or on the given PostgreSQL database.
async fn fuzz(test: &str, database_url: Option<&str>) {
    if !set_up(test).await {
        return;
    }
    let started = Instant::now();
    let binary = env!("CARGO_BIN_EXE_auth-server");
    let backend = if database_url.is_some() { "postgres" } else { "sqlite" };
    let output = script(&["--binary", binary], database_url).await;
    let report = text(&output);
    assert!(output.status.success(), "schemathesis found problems on {backend} ({}):\n{report}", output.status);
    // The summary line, e.g. "1459 generated, 1459 passed, 8 skipped", into the test's output.
    let summary = report.lines().find(|l| l.contains(" generated,")).unwrap_or("").trim().to_owned();
    eprintln!("{test}: {summary} in {:.0?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_on_sqlite() {
    fuzz("schemathesis_finds_nothing_on_sqlite", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_on_postgres() {
    let test = "schemathesis_finds_nothing_on_postgres";
    let Some(db) = postgres(test).await else {
        return;
    };
    fuzz(test, db.database_url.as_deref()).await;
}
