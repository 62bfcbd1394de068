//! The operator commands of the real `auth-server` binary against a real PostgreSQL schema:
//! migrate, check, users add|list|disable, clients add|list, keys list|rotate, audit tail; the
//! spec a data directory was served with; each command's help.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use reqwest::StatusCode;
use serde_json::Value;

use crate::process::{Backing, Deployment, PASSWORD, cheap_booking_spec, http_client};

#[cfg_attr(not(auth_test_postgres), ignore = "AUTH_TEST_DATABASE_URL was not set when the tests were built")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_manage_users_clients_keys_and_audit() {
    let Some(backing) = Backing::from_env("operator_commands_manage_users_clients_keys_and_audit", false) else {
        return;
    };
    let deployment = Deployment::new(&backing, &cheap_booking_spec(&[])).await;

    assert!(deployment.cli(&["migrate"], None).await.contains("migrations applied"));
    // Commands that only read change nothing: on a fresh database, check and keys list leave the
    // ring empty; keys rotate creates the first key.
    let check = deployment.cli(&["check"], None).await;
    assert!(check.contains("spec ok") && check.contains("database ok; no signing key yet"), "{check}");
    assert!(!deployment.cli(&["keys", "list"], None).await.contains("active"));
    assert!(!deployment.cli(&["audit", "tail"], None).await.contains("key_"), "no key event was written");
    deployment.cli(&["keys", "rotate"], None).await;
    let check = deployment.cli(&["check"], None).await;
    assert!(check.contains("spec ok") && check.contains("database ok; active key"), "{check}");

    // users add reads the password from stdin; a weak one is refused with a clear message.
    let weak = deployment.try_cli(&["users", "add", "bob", "--claim", "tenant_id=t1"], Some("short\n")).await;
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("password"), "{weak:?}");
    let created = deployment.cli(&["users", "add", "Alice", "--claim", "tenant_id=t1"], Some(&format!("{PASSWORD}\n"))).await;
    assert!(created.contains("created user alice"), "{created}");
    let duplicate = deployment.try_cli(&["users", "add", "ALICE", "--claim", "tenant_id=t1"], Some(&format!("{PASSWORD}\n"))).await;
    assert!(!duplicate.status.success(), "one account per normalized name");
    let listed = deployment.cli(&["users", "list"], None).await;
    assert!(listed.contains("alice\tactive") && listed.contains("\"tenant_id\":\"t1\""), "{listed}");

    // Claims that carry authority are set by operators: set-claim, and invitations.
    let changed = deployment.cli(&["users", "set-claim", "ALICE", "tenant_id=t2"], None).await;
    assert!(changed.contains("alice\t{\"tenant_id\":\"t2\"}"), "{changed}");
    let required = deployment.try_cli(&["users", "set-claim", "alice", "--unset", "tenant_id"], None).await;
    assert!(!required.status.success() && String::from_utf8_lossy(&required.stderr).contains("tenant_id"), "{required:?}");
    let invitation = deployment.cli(&["invitations", "create", "--claim", "tenant_id=t3", "--expires-in", "1h"], None).await;
    assert!(invitation.trim().starts_with("inv_") && invitation.trim().len() == 47, "{invitation}");
    let too_long = deployment.try_cli(&["invitations", "create", "--claim", "tenant_id=t3", "--expires-in", "60d"], None).await;
    assert!(!too_long.status.success(), "{too_long:?}");
    let audit = deployment.cli(&["audit", "tail"], None).await;
    assert!(audit.contains("user_claims_changed") && audit.contains("invitation_created"), "{audit}");

    // clients add prints a confidential client's secret once; list shows no secret.
    let secret = deployment.add_confidential_client("booking-backend").await;
    assert!(secret.len() >= 43, "{secret}");
    let clients = deployment.cli(&["clients", "list"], None).await;
    assert!(clients.contains("booking-backend\tconfidential") && !clients.contains(&secret), "{clients}");
    let unknown = deployment.try_cli(&["clients", "add", "not-in-the-spec"], None).await;
    assert!(!unknown.status.success());
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert!(said.contains("\"not-in-the-spec\" is not a client of the spec; its clients: booking-backend, booking-web"), "{said}");

    // Disabling a user ends its sessions: the live refresh token stops working.
    let server = deployment.start(&[]).await;
    // The booking spec's web client may use the password grant: the server says what RFC 9700
    // thinks of it, once per such client, and not of the others.
    let log = server.log();
    assert!(log.contains("client booking-web may use the password grant") && log.contains("RFC 9700"), "{log}");
    assert!(!log.contains("client booking-backend may use the password grant"), "{log}");
    let client = http_client();
    let login: Value = client
        .post(server.url("/oauth/token"))
        .form(&[("grant_type", "password"), ("client_id", "booking-web"), ("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh = login["refresh_token"].as_str().expect("a refresh token").to_owned();
    let disabled = deployment.cli(&["users", "disable", "alice"], None).await;
    assert!(disabled.contains("ended 1 session(s)"), "{disabled}");
    let refused = client
        .post(server.url("/oauth/token"))
        .form(&[("grant_type", "refresh_token"), ("client_id", "booking-web"), ("refresh_token", refresh.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert!(deployment.cli(&["users", "list"], None).await.contains("alice\tdisabled"));

    // keys list / rotate: one active key, and rotating now (nothing due) changes nothing.
    let keys = deployment.cli(&["keys", "list"], None).await;
    assert_eq!(keys.lines().filter(|l| l.contains("\tactive\t")).count(), 1, "{keys}");
    let rotated = deployment.cli(&["keys", "rotate"], None).await;
    assert!(rotated.starts_with("applied: []"), "{rotated}");
    // One chain per algorithm in use: this spec signs with EdDSA alone, so there is no RS256
    // chain to rotate at once, and --alg only goes with --now.
    let refused = deployment.try_cli(&["keys", "rotate", "--now", "--alg", "RS256"], None).await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no RS256 chain to rotate"), "{refused:?}");
    assert!(!deployment.try_cli(&["keys", "rotate", "--alg", "EdDSA"], None).await.status.success());
    let keys_before = deployment.cli(&["keys", "list"], None).await;
    assert_eq!(keys, keys_before, "a refused rotation changes nothing");

    // audit tail: JSON lines, newest first, with what happened and no secrets.
    let audit = deployment.cli(&["audit", "tail", "-n", "50"], None).await;
    let kinds: Vec<String> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("one JSON event per line")["kind"].as_str().unwrap().to_owned())
        .collect();
    for kind in ["key_generated", "user_created", "client_created", "login_succeeded", "user_disabled", "session_revoked"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} missing from {kinds:?}");
    }
    assert!(!audit.contains(PASSWORD) && !audit.contains(&secret) && !audit.contains(&refresh));
}

/// A key reload interval that is not shorter than the spec's rotation margins is named at start:
/// the booking spec leaves `retire_after - access_ttl - leeway` = 1d - 15m - 30s = 85,470 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_refresh_beyond_the_spec_margins_is_warned_about() {
    let deployment = Deployment::sqlite(&cheap_booking_spec(&[]));
    let quiet = deployment.start(&["--key-refresh-secs", "85469"]).await;
    assert!(!quiet.log().contains("is not shorter than the spec's margin"), "{}", quiet.log());
    drop(quiet);
    let server = deployment.start(&["--key-refresh-secs", "85470"]).await;
    let log = server.log();
    assert!(
        log.contains("is not shorter than the spec's margin keys.retire_after - tokens.access_ttl - tokens.leeway"),
        "{log}"
    );
    assert!(!log.contains("keys.publish_ahead - keys.jwks_max_age"), "that margin is 2d - 10m: {log}");
    let response = http_client().get(server.url("/healthz")).send().await.expect("GET /healthz");
    assert_eq!(response.status(), StatusCode::OK, "a warning, not a refusal");
}

/// A claim made required after users signed up: `check` and the start log count the users that
/// lack it (their tokens would be refused everywhere); a `default` fills it and silences both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_lacking_a_newly_required_claim_are_counted() {
    let spec = cheap_booking_spec(&[]);
    let deployment = Deployment::sqlite(&spec);
    deployment.cli(&["users", "add", "alice", "--claim", "tenant_id=t1"], Some(&format!("{PASSWORD}\n"))).await;
    let check = deployment.cli(&["check"], None).await;
    assert!(!check.contains("lack a claim"), "{check}");

    std::fs::write(&deployment.spec_path, format!("{spec}\n[claims.tier]\ntype = \"string\"\nrequired = true\n")).unwrap();
    let check = deployment.cli(&["check"], None).await;
    assert!(check.contains("warning: 1 user(s) lack a claim the spec requires"), "{check}");
    let server = deployment.start(&[]).await;
    let started = std::time::Instant::now();
    while !server.log().contains("1 user(s) lack a claim the spec requires") {
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{}", server.log());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(server);

    std::fs::write(&deployment.spec_path, format!("{spec}\n[claims.tier]\ntype = \"string\"\nrequired = true\ndefault = \"standard\"\n")).unwrap();
    let check = deployment.cli(&["check"], None).await;
    assert!(!check.contains("lack a claim"), "the default fills it: {check}");
}

/// The data directory remembers the spec `serve` ran with: operator commands run without
/// `--spec` use it (here the booking spec, whose `tenant_id` claim the built-in default spec
/// lacks), and one given another spec is refused unless `--allow-other-spec` says it is meant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_use_the_spec_the_data_directory_was_served_with() {
    let dir = std::env::temp_dir().join(format!("auth-served-spec-{}", crate::process::unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("auth.toml"), cheap_booking_spec(&[])).unwrap();
    let other = cheap_booking_spec(&[("issuer = \"http://127.0.0.1:8080\"", "issuer = \"http://127.0.0.1:9090\"")]);
    std::fs::write(dir.join("other.toml"), other).unwrap();
    let command = |args: &[&str]| {
        let mut command = std::process::Command::new(crate::process::BINARY);
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(|n| n.starts_with("AUTH_")) {
                command.env_remove(name);
            }
        }
        command.current_dir(&dir).env("NO_COLOR", "1").args(["--data-dir", "data"]).args(args);
        command
    };
    let run = |args: &[&str], stdin: &str| {
        use std::io::Write as _;
        let mut child = command(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
    };

    // Before any serve, a command without --spec takes the built-in default spec, which has no
    // tenant_id claim.
    let (ok, _, stderr) = run(&["users", "add", "early", "--claim", "tenant_id=t1"], "a long password\n");
    assert!(!ok, "the default spec declares no tenant_id: {stderr}");

    let mut server = command(&["serve", "--spec", "auth.toml", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let record = dir.join("data").join(auth_server::served_spec::FILE);
    let started = std::time::Instant::now();
    while !record.exists() {
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "serve recorded no spec");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = server.kill();
    let _ = server.wait();
    let served: Value = serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    assert!(served["path"].as_str().unwrap().ends_with("auth.toml"), "{served}");

    let (ok, stdout, stderr) = run(&["users", "add", "bob", "--claim", "tenant_id=t1"], "a long password\n");
    assert!(ok, "{stderr}");
    assert!(stdout.contains("created user bob"), "{stdout}");
    assert!(stderr.contains("the spec `serve` last ran with"), "{stderr}");
    let (ok, _, stderr) = run(&["users", "add", "carol", "--spec", "other.toml", "--claim", "tenant_id=t1"], "a long password\n");
    assert!(!ok, "another spec is refused");
    assert!(stderr.contains("was last served with") && stderr.contains("--allow-other-spec"), "{stderr}");
    let (ok, _, stderr) =
        run(&["users", "add", "carol", "--spec", "other.toml", "--allow-other-spec", "--claim", "tenant_id=t1"], "a long password\n");
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = run(&["check"], "");
    assert!(ok, "{stderr}");
    assert!(stdout.contains(served["hash"].as_str().unwrap()), "check names the served spec's hash: {stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Each command's `--help` lists its own flags and the shared ones; the flags only `serve` reads
/// (limits, timeouts, Redis) appear in `serve --help` and the bare command's alone, though every
/// command still accepts them.
#[test]
fn each_command_lists_only_the_flags_it_reads() {
    let help = |args: &[&str]| {
        let output = std::process::Command::new(crate::process::BINARY).args(args).arg("--help").output().unwrap();
        assert!(output.status.success());
        String::from_utf8(output.stdout).unwrap()
    };
    let serve_only = ["--per-ip-rps", "--max-connections", "--redis-url", "--login-attempts", "--header-read-timeout-secs"];
    for args in [&["users", "add"][..], &["keys", "rotate"], &["clients"], &["check"], &["audit", "tail"]] {
        let text = help(args);
        assert!(text.contains("--data-dir") && text.contains("--spec"), "{args:?}: {text}");
        for flag in serve_only {
            assert!(!text.contains(flag), "{args:?} lists {flag}: {text}");
        }
    }
    assert!(help(&["users", "add"]).contains("--claim"));
    for args in [&["serve"][..], &[]] {
        let text = help(args);
        for flag in serve_only {
            assert!(text.contains(flag), "{args:?} lacks {flag}: {text}");
        }
    }
    // Accepted all the same, before or after the command's name.
    let dir = std::env::temp_dir().join(format!("auth-help-{}", crate::process::unique_suffix()));
    for args in [&["--per-ip-rps", "5", "users", "list"][..], &["users", "list", "--per-ip-rps", "5"]] {
        let output = std::process::Command::new(crate::process::BINARY)
            .args(["--data-dir", dir.to_str().unwrap()])
            .args(args)
            .env_remove("AUTH_DATABASE_URL")
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
