//! The TypeScript target, type-checked and run: the module generated for the booking spec and the
//! suites under `auth-gen/tests/typescript/` are compiled by `tsc` (strict, from the pinned
//! `package-lock.json`, installed with `npm ci` when missing) and run by `node --test`; the suites
//! start real auth-server processes themselves.
//!
//! Where Node.js or npm is missing the test says so and passes, except under `CI`, where that is
//! a failure.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use auth_gen::emit::Target;
use auth_gen::generate::{compare, generate, write};

use crate::support::{auth_server_binary, repo, scratch_dir};

/// `npm ci` runs once per test binary, and the node suites one at a time (they start servers).
static NODE: Mutex<()> = Mutex::new(());

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Installs the pinned npm packages unless `node_modules` already matches the lock file.
/// Returns false (after saying why) when Node.js tooling is missing outside CI.
pub fn npm_ready() -> bool {
    let root = repo();
    let installed = root.join("node_modules/.package-lock.json");
    let lock = root.join("package-lock.json");
    let current = match (std::fs::metadata(&installed), std::fs::metadata(&lock)) {
        (Ok(i), Ok(l)) => i.modified().ok() >= l.modified().ok(),
        _ => false,
    };
    if current {
        return true;
    }
    let npm = Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&root).status();
    match npm {
        Ok(status) if status.success() => true,
        Ok(status) => panic!("npm ci failed ({status})"),
        Err(e) if !in_ci() => {
            eprintln!("skipped: npm is not available ({e}); the TypeScript target was not type-checked or run");
            false
        }
        Err(e) => panic!("npm is required under CI: {e}"),
    }
}

/// Runs a command to completion, failing the test with its output when it fails.
#[track_caller]
pub fn run(what: &str, command: &mut Command) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{what} failed ({}):\n{stdout}\n{stderr}", output.status);
    // The node runner's summary, visible with --nocapture.
    println!("{what}:\n{}", stdout.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n"));
}

/// Generates the module of `spec` into `<work>/gen`, copies the suites of `suites` and their
/// tsconfig beside it, and type-checks and compiles the lot into `<work>/out`.
pub fn build_typescript(work: &Path, spec: &Path, suites: &Path) {
    let generated = generate(spec, Target::Typescript).unwrap();
    let gen_dir = work.join("gen");
    let changes = compare(&gen_dir, &generated).unwrap();
    write(&gen_dir, &generated, &changes).unwrap();
    let tests_dir = work.join("tests");
    std::fs::create_dir_all(&tests_dir).unwrap();
    for entry in std::fs::read_dir(suites).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "tsconfig.json" {
            std::fs::copy(&path, work.join(&name)).unwrap();
        } else if name.ends_with(".ts") {
            std::fs::copy(&path, tests_dir.join(&name)).unwrap();
        }
    }
    let tsc = repo().join("node_modules/.bin/tsc");
    run("tsc --strict", Command::new(tsc).arg("-p").arg(work));
}

#[test]
fn generated_typescript_type_checks_and_passes_its_suites_against_a_live_server() {
    let _one_at_a_time = NODE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !npm_ready() {
        return;
    }
    let work = scratch_dir("ts-booking");
    build_typescript(&work, &repo().join("fixtures/specs/booking.toml"), &repo().join("auth-gen/tests/typescript"));
    run(
        "node --test",
        Command::new("node")
            .args(["--test", "--test-concurrency=1", "--test-reporter=spec"])
            .arg(work.join("out/tests"))
            .env("AUTH_SERVER_BIN", auth_server_binary())
            .env("AUTH_REPO", repo())
            .current_dir(&work),
    );
}

#[test]
fn every_fixture_spec_generates_typescript_that_type_checks() {
    let _one_at_a_time = NODE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !npm_ready() {
        return;
    }
    for (name, spec) in crate::support::fixture_specs() {
        let work = scratch_dir(&format!("ts-check-{name}"));
        let generated = generate(&spec, Target::Typescript).unwrap();
        let changes = compare(&work.join("gen"), &generated).unwrap();
        write(&work.join("gen"), &generated, &changes).unwrap();
        std::fs::write(
            work.join("tsconfig.json"),
            r#"{ "compilerOptions": { "strict": true, "noEmit": true, "target": "ES2022", "module": "NodeNext",
  "moduleResolution": "NodeNext", "types": ["node"], "noUnusedLocals": true, "noImplicitReturns": true,
  "exactOptionalPropertyTypes": true }, "include": ["gen/*.ts"] }"#,
        )
        .unwrap();
        let tsc = repo().join("node_modules/.bin/tsc");
        run(&format!("tsc --strict --noEmit ({name})"), Command::new(tsc).arg("-p").arg(&work));
    }
}

#[test]
fn booking_api_example_runs_end_to_end_with_its_committed_module() {
    let _one_at_a_time = NODE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let example = repo().join("examples/booking-api");
    // The example commits its generated module, as an app would; it must be what the spec
    // generates now (what `auth-gen generate --check` enforces in an app's CI).
    let generated = generate(&repo().join("fixtures/specs/booking.toml"), Target::Typescript).unwrap();
    let changes = compare(&example.join("src/auth"), &generated).unwrap();
    assert!(
        changes.is_empty(),
        "examples/booking-api/src/auth is stale; run `cargo run -p auth-gen -- generate --spec fixtures/specs/booking.toml --target typescript --out examples/booking-api/src/auth`\n{}",
        changes.summary()
    );
    if !npm_ready() {
        return;
    }
    let _ = std::fs::remove_dir_all(example.join("dist"));
    let tsc = repo().join("node_modules/.bin/tsc");
    run("tsc -p examples/booking-api", Command::new(tsc).arg("-p").arg(&example));
    run(
        "node --test examples/booking-api",
        Command::new("node")
            .args(["--test", "--test-concurrency=1", "--test-reporter=spec"])
            .arg(example.join("dist/test"))
            .env("AUTH_SERVER_BIN", auth_server_binary())
            .env("AUTH_REPO", repo())
            .current_dir(&example),
    );
}
