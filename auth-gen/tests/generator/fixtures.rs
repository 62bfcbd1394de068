//! Golden fixtures: the committed recordings replay cleanly, recording is deterministic, and the
//! alarm rings: a fixture with a claim renamed, a lifetime changed or a key removed from its JWKS
//! makes replay fail with a message that names it. Recorded folders are append-only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::{auth_gen, repo, scratch_dir, text};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

/// A copy of the committed booking fixture, edited by `edit` as if an older version had recorded
/// it that way (its checksums rewritten to match).
fn edited_copy(name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let source = repo().join("fixtures/recorded").join(env!("CARGO_PKG_VERSION")).join("booking");
    let dir = scratch_dir(name).join("booking");
    copy_dir(&source, &dir);
    let path = dir.join("scenario.json");
    let mut scenario: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut scenario);
    std::fs::write(&path, auth_gen::fixtures::to_json(&scenario)).unwrap();
    let files: BTreeMap<&str, String> =
        auth_gen::fixtures::FILES.iter().map(|f| (*f, std::fs::read_to_string(dir.join(f)).unwrap())).collect();
    std::fs::write(dir.join("SHA256SUMS"), auth_gen::fixtures::checksums(&files)).unwrap();
    dir
}

fn step<'a>(scenario: &'a mut Value, name: &str) -> &'a mut Value {
    scenario["steps"].as_array_mut().unwrap().iter_mut().find(|s| s["name"] == name).unwrap()
}

/// Replays `dir`; returns the exit code, the text report and the JSON report.
fn replay(dir: &Path) -> (Option<i32>, String, Value) {
    let output = auth_gen(&repo(), &["fixtures", "replay", dir.to_str().unwrap()]);
    let (stdout, stderr) = text(&output);
    let json = auth_gen(&repo(), &["fixtures", "replay", dir.to_str().unwrap(), "--json"]);
    assert_eq!(json.status.code(), output.status.code());
    let report: Value = serde_json::from_slice(&json.stdout).unwrap_or(Value::Null);
    (output.status.code(), format!("{stdout}{stderr}"), report)
}

#[test]
fn committed_fixtures_replay_without_breaking_differences() {
    let output = auth_gen(&repo(), &["fixtures", "replay", "fixtures/recorded"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("booking: replays identically"), "{stdout}");
    assert!(!stdout.contains("breaking:"), "{stdout}");
}

#[test]
fn recording_twice_gives_identical_bytes() {
    let spec = repo().join("fixtures/specs/booking.toml");
    let mut recorded = Vec::new();
    for run in ["a", "b"] {
        let dir = scratch_dir(&format!("fixtures-determinism-{run}"));
        let output = auth_gen(&dir, &["fixtures", "record", "--spec", spec.to_str().unwrap(), "--out", "recorded"]);
        assert!(output.status.success(), "{:?}", text(&output));
        let folder = dir.join("recorded").join(env!("CARGO_PKG_VERSION")).join("booking");
        let files: Vec<(String, Vec<u8>)> = ["manifest.json", "scenario.json", "spec.toml", "SHA256SUMS"]
            .iter()
            .map(|f| ((*f).to_owned(), std::fs::read(folder.join(f)).unwrap()))
            .collect();
        recorded.push(files);
    }
    assert_eq!(recorded[0], recorded[1]);
    let scenario: Value = serde_json::from_slice(&recorded[0][1].1).unwrap();
    let names: Vec<&str> = scenario["steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "first-key", "sign-up", "login", "refresh", "benign-retry", "theft", "after-theft", "expiry",
            "client-credentials", "rotation-publish", "login-before-switch", "rotation-activate", "login-new-key",
            "rotation-retire", "rate-limits"
        ]
    );
}

#[test]
fn the_scenario_covers_what_booking_apps_rely_on() {
    let dir = repo().join("fixtures/recorded").join(env!("CARGO_PKG_VERSION")).join("booking");
    let scenario: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("scenario.json")).unwrap()).unwrap();
    let steps = scenario["steps"].as_array().unwrap();
    let by_name = |name: &str| steps.iter().find(|s| s["name"] == name).unwrap();
    let login = &by_name("login")["issued"];
    assert_eq!(login["header"]["typ"], "at+jwt");
    assert_eq!(login["header"]["alg"], "EdDSA");
    assert_eq!(login["claims"]["tenant_id"], "fixture-tenant_id");
    assert_eq!(login["claims"]["exp"].as_i64().unwrap() - login["claims"]["iat"].as_i64().unwrap(), 900);
    assert_eq!(by_name("refresh")["refresh"], "rotated");
    assert_eq!(by_name("benign-retry")["refresh"], "same_successor");
    assert_eq!(by_name("theft")["refresh"], "refresh.reused");
    assert_eq!(by_name("after-theft")["refresh"], "refresh.revoked");
    let expiry: Vec<&str> = by_name("expiry")["verdicts"].as_array().unwrap().iter().map(|v| v["result"].as_str().unwrap()).collect();
    assert_eq!(expiry, ["ok", "token.expired"]);
    let states = |name: &str| -> Vec<String> {
        by_name(name)["rotation"]["keys"].as_array().unwrap().iter().map(|k| k["state"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(states("first-key"), ["active"]);
    let mut published = states("rotation-publish");
    published.sort();
    assert_eq!(published, ["active", "pending"]);
    let mut switched = states("rotation-activate");
    switched.sort();
    assert_eq!(switched, ["active", "retiring"]);
    let mut retired = states("rotation-retire");
    retired.sort();
    assert_eq!(retired, ["active", "retired"]);
    assert_ne!(by_name("login-before-switch")["issued"]["header"]["kid"], by_name("login-new-key")["issued"]["header"]["kid"]);
    let limits = by_name("rate-limits")["rate_limits"].as_array().unwrap();
    let refused: Vec<&Value> = limits.iter().filter(|d| d["allowed"] == false).collect();
    assert_eq!(refused.len(), 2, "one refusal per limited scope");
    assert!(refused.iter().any(|d| d["scope"] == "bookings:write" && d["retry_after_ms"] == 2000));
}

#[test]
fn a_renamed_claim_fails_replay_and_is_named() {
    let dir = edited_copy("fixtures-renamed-claim", |scenario| {
        let claims = step(scenario, "login")["issued"]["claims"].as_object_mut().unwrap();
        let value = claims.remove("tenant_id").unwrap();
        claims.insert("tenant".to_owned(), value);
    });
    let (code, report, json) = replay(&dir);
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("breaking: [login] claim `tenant` removed (or renamed)"), "{report}");
    assert!(report.contains("compatible: [login] claim `tenant_id` added"), "{report}");
    let differences = json[0]["differences"].as_array().unwrap();
    assert!(differences.iter().any(|d| d["severity"] == "breaking" && d["step"] == "login"
        && d["what"].as_str().unwrap().contains("`tenant`")), "{json}");
}

#[test]
fn a_changed_lifetime_fails_replay_and_is_named() {
    let dir = edited_copy("fixtures-lifetime", |scenario| {
        let claims = &mut step(scenario, "login")["issued"]["claims"];
        claims["exp"] = Value::from(claims["exp"].as_i64().unwrap() + 600);
    });
    let (code, report, _) = replay(&dir);
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("breaking: [login] token lifetime (exp - iat) changed from 1500s to 900s"), "{report}");
}

#[test]
fn a_key_removed_from_a_recorded_jwks_fails_replay_and_is_named() {
    let dir = edited_copy("fixtures-key-removed", |scenario| {
        scenario["jwks"][0]["keys"].as_array_mut().unwrap().clear();
    });
    let (code, report, _) = replay(&dir);
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("the recorded token of `login` is no longer accepted at 1767225600 (token.unknown_key)"), "{report}");
    assert!(report.contains("breaking: [jwks 0] the JWKS publishes 1 keys"), "{report}");
}

#[test]
fn a_fixture_edited_in_place_is_refused() {
    let source = repo().join("fixtures/recorded").join(env!("CARGO_PKG_VERSION")).join("booking");
    let dir = scratch_dir("fixtures-edited").join("booking");
    copy_dir(&source, &dir);
    let path = dir.join("scenario.json");
    let edited = std::fs::read_to_string(&path).unwrap().replacen("fixture-tenant_id", "another-tenant", 1);
    std::fs::write(&path, edited).unwrap();
    let (code, report, _) = replay(&dir);
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("does not match its checksum: recorded fixtures are append-only"), "{report}");
}

#[test]
fn recording_again_into_a_recorded_version_is_refused() {
    let dir = scratch_dir("fixtures-append-only");
    let spec = repo().join("fixtures/specs/booking.toml");
    let args = ["fixtures", "record", "--spec", spec.to_str().unwrap(), "--out", "recorded"];
    assert!(auth_gen(&dir, &args).status.success());
    let again = auth_gen(&dir, &args);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again).1.contains("already recorded: recorded fixtures are append-only"), "{:?}", text(&again));
}

/// Committed recordings never change: no commit modified or deleted a recorded file, and the
/// working tree holds them as committed. (Their SHA256SUMS catch an edit where git is absent.)
#[test]
fn committed_recordings_are_append_only() {
    let root = repo();
    let git = |args: &[&str]| Command::new("git").args(args).current_dir(&root).output();
    let inside = git(&["rev-parse", "--is-inside-work-tree"]);
    if !inside.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: not a git checkout; SHA256SUMS still guard the recorded files");
        return;
    }
    let changed = git(&["log", "--format=%h %s", "--diff-filter=MDR", "--", "fixtures/recorded"]).unwrap();
    let changed = String::from_utf8_lossy(&changed.stdout);
    assert!(changed.trim().is_empty(), "commits changed or removed recorded fixtures:\n{changed}");
    let dirty = git(&["diff", "--name-only", "HEAD", "--", "fixtures/recorded"]).unwrap();
    let dirty = String::from_utf8_lossy(&dirty.stdout);
    assert!(dirty.trim().is_empty(), "recorded fixtures edited in the working tree:\n{dirty}");
}
