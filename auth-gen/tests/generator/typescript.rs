//! The TypeScript target, type-checked and run: the module generated for the booking spec and the
//! suites under `auth-gen/tests/typescript/` are compiled by `tsc` (strict, from the pinned
//! `package-lock.json`, installed with `npm ci` when missing) and run by `node --test`; the suites
//! start real auth-server processes themselves. Every recorded golden fixture is replayed by the
//! module generated from its own spec (the suite of `auth-gen/tests/typescript-replay/`).
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
    if let Err(failure) = try_run(what, command) {
        panic!("{failure}");
    }
}

/// Runs a command to completion; the error holds its whole output when it fails.
pub fn try_run(what: &str, command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("{what}: cannot start: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!("{what} failed ({}):\n{stdout}\n{stderr}", output.status));
    }
    // The node runner's summary, visible with --nocapture.
    println!(
        "{what}:\n{}",
        stdout.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    Ok(())
}

/// Generates the module of `spec` into `<work>/gen`, copies the suites of `suites` and their
/// tsconfig beside it, and type-checks and compiles the lot into `<work>/out`.
pub fn build_typescript(work: &Path, spec: &Path, suites: &Path) {
    prepare_typescript(work, spec, suites).unwrap();
    let tsc = repo().join("node_modules/.bin/tsc");
    run("tsc --strict", Command::new(tsc).arg("-p").arg(work));
}

/// The TypeScript module of `spec`, written into `dir` as `auth-gen generate` writes it.
fn write_module(spec: &Path, dir: &Path) -> Result<(), String> {
    let generated = generate(spec, Target::Typescript).map_err(|e| format!("{}: {e}", spec.display()))?;
    let changes = compare(dir, &generated).map_err(|e| format!("{}: {e}", dir.display()))?;
    write(dir, &generated, &changes).map_err(|e| format!("{}: {e}", dir.display()))
}

/// The first half of [`build_typescript`]: the module of `spec` in `<work>/gen`, the suites in
/// `<work>/tests` and their tsconfig in `<work>`; nothing compiled yet.
pub fn prepare_typescript(work: &Path, spec: &Path, suites: &Path) -> Result<(), String> {
    write_module(spec, &work.join("gen"))?;
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
    Ok(())
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
        write_module(&spec, &work.join("gen")).unwrap();
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

/// Every golden fixture under `fixtures/recorded/` (each `<version>/<spec>/`, found, not listed)
/// replayed by the TypeScript module generated from that folder's own `spec.toml`: the suite of
/// `auth-gen/tests/typescript-replay/` checks the recorded verdicts, rate-limit decisions and claim
/// types at run time (`node --test`, the folder named by `AUTH_FIXTURE_DIR`), and each recorded
/// token's claims are written out as a TypeScript literal that must satisfy the module's
/// `UserClaims` or `ClientClaims` at compile time (`tests/claims/<step>.ts`). Every folder is
/// replayed before the test fails, and the failure names the folder, the step and the field.
#[test]
fn generated_typescript_replays_every_recorded_fixture() {
    let _one_at_a_time = NODE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !npm_ready() {
        return;
    }
    let root = repo().join("fixtures/recorded");
    let folders = auth_gen::fixtures::recorded_folders(&root).unwrap();
    assert!(!folders.is_empty(), "no recorded fixture under {}", root.display());
    let failures: Vec<String> = folders.iter().filter_map(|folder| replay_in_typescript(folder).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} recorded fixture(s) do not replay in TypeScript:\n\n{}",
        failures.len(),
        folders.len(),
        failures.join("\n\n")
    );
}

/// Generates, compiles and runs the replay of one recorded folder.
fn replay_in_typescript(folder: &Path) -> Result<(), String> {
    let label = folder.strip_prefix(repo()).unwrap_or(folder).display().to_string();
    // Checks SHA256SUMS too: an edited recording is refused, not replayed.
    let recorded = auth_gen::fixtures::read(folder).map_err(|e| format!("{label}: {e}"))?;
    let work = scratch_dir(&format!("ts-replay-{}", label.trim_start_matches("fixtures/recorded/").replace('/', "-")));
    prepare_typescript(&work, &folder.join("spec.toml"), &repo().join("auth-gen/tests/typescript-replay"))
        .map_err(|e| format!("{label}: the recorded spec does not generate a TypeScript module: {e}"))?;
    write_claim_literals(&work.join("tests/claims"), &label, &recorded.scenario);
    let tsc = repo().join("node_modules/.bin/tsc");
    try_run(
        &format!("tsc --strict ({label}: the module, the replay suite and the recorded claims)"),
        Command::new(tsc).arg("-p").arg(".").current_dir(&work),
    )
    .map_err(|failure| with_source_lines(&work, &failure))?;
    try_run(
        &format!("node --test (replay of {label})"),
        Command::new("node")
            .args(["--test", "--test-concurrency=1", "--test-reporter=spec"])
            .arg(work.join("out/tests"))
            .env("AUTH_FIXTURE_DIR", folder)
            .env("AUTH_FIXTURE", &label)
            .env("AUTH_REPO", repo())
            .current_dir(&work),
    )
}

/// One file per recorded token, `<step>.ts`, holding its claims as an object literal that must
/// satisfy the module's claim type of its grant: tsc refuses a claim the type does not name
/// (excess property), a required one that is missing, and one of another type, and its message
/// names the file (the step) and the claim.
fn write_claim_literals(dir: &Path, label: &str, scenario: &auth_gen::fixtures::Scenario) {
    std::fs::create_dir_all(dir).unwrap();
    for step in &scenario.steps {
        let Some(issued) = &step.issued else { continue };
        let claim_type = match issued.grant.as_str() {
            "password" | "refresh_token" => "UserClaims",
            "client_credentials" => "ClientClaims",
            // The run-time suite reports a grant it cannot class.
            _ => continue,
        };
        let file: String = step
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
            .collect();
        let literal = serde_json::to_string_pretty(&issued.claims).unwrap();
        std::fs::write(
            dir.join(format!("{file}.ts")),
            format!(
                "// The claims of the {grant} token of step `{step}` recorded in {label},\n\
                 // checked against the module's {claim_type} by the compiler\n\
                 // (written by auth-gen/tests/generator/typescript.rs).\n\
                 import type {{ {claim_type} }} from \"../../gen/index.js\";\n\n\
                 export const recorded = {literal} satisfies {claim_type};\n",
                grant = issued.grant,
                step = step.name,
            ),
        )
        .unwrap();
    }
}

/// tsc's `file(line,col): error ...` lines, each followed by the line of source it points at (the
/// claim of a recorded literal that does not fit, by name).
fn with_source_lines(work: &Path, output: &str) -> String {
    let mut out = String::new();
    for line in output.lines() {
        out.push_str(line);
        out.push('\n');
        let Some((file, rest)) = line.split_once('(') else { continue };
        let Some((position, _)) = rest.split_once("): error") else { continue };
        let Some(number) = position.split(',').next().and_then(|n| n.parse::<usize>().ok()) else { continue };
        if let Some(source) = std::fs::read_to_string(work.join(file))
            .ok()
            .and_then(|text| text.lines().nth(number.saturating_sub(1)).map(str::to_owned))
        {
            out.push_str(&format!("    {number} | {}\n", source.trim_end()));
        }
    }
    out
}
