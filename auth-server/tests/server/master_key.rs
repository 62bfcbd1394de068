//! Rotation of the master key through the real binary, on SQLite and on PostgreSQL:
//! `auth-server keys rewrap` runs while a server signs and verifies under load, the server goes on
//! (also through its key reloads), every key is sealed under the new master key and no longer
//! opens with the old one, the old key alone no longer starts anything, and a restart with the
//! new key serves the same keys.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use auth_core::audit::AuditKind;
use auth_core::keys::MasterKey;
use auth_core::random::OsEntropy;
use auth_core::store::{AuditStore as _, KeyRecord, KeyState, KeyStore as _};
use reqwest::StatusCode;
use serde_json::Value;

use crate::process::{Backing, Deployment, Server, cheap_booking_spec, http_client};
use crate::replicas::{BACKEND, WEB, field, introspect, login, now, post_form};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrap_under_a_new_master_key_while_serving_on_sqlite() {
    rewrap_while_serving(Deployment::sqlite(&cheap_booking_spec(&[]))).await;
}

#[cfg_attr(not(auth_test_postgres), ignore = "AUTH_TEST_DATABASE_URL was not set when the tests were built")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrap_under_a_new_master_key_while_serving_on_postgres() {
    let test = "rewrap_under_a_new_master_key_while_serving_on_postgres";
    let Some(backing) = Backing::from_env(test, false) else { return };
    rewrap_while_serving(Deployment::new(&backing, &cheap_booking_spec(&[])).await).await;
}

/// The kids a server publishes.
async fn jwks_kids(client: &reqwest::Client, server: &Server) -> BTreeSet<String> {
    let response = client.get(server.url("/.well-known/jwks.json")).send().await.expect("GET the JWKS");
    assert_eq!(response.status(), StatusCode::OK);
    let jwks: Value = response.json().await.expect("a JWK set");
    jwks["keys"].as_array().expect("keys").iter().map(|k| k["kid"].as_str().expect("a kid").to_owned()).collect()
}

/// `(kid, state, public JWK)` of every key: what must not change.
fn identities(keys: &[KeyRecord]) -> BTreeSet<(String, KeyState, String)> {
    keys.iter().map(|k| (k.kid.clone(), k.state, k.public_jwk.clone())).collect()
}

/// Until stopped: a client-credentials token is issued, and it and `access` (issued before) are
/// active at introspection, every 20 ms. Returns how many rounds passed and what failed.
async fn issue_and_verify(
    client: reqwest::Client,
    base: String,
    secret: String,
    access: String,
    stop: Arc<AtomicBool>,
) -> (usize, Vec<String>) {
    let (mut rounds, mut failures) = (0, Vec::new());
    while !stop.load(Ordering::Relaxed) {
        let form = [("grant_type", "client_credentials")];
        let (status, body) = post_form(&client, &format!("{base}/oauth/token"), &form, Some((BACKEND, &secret))).await;
        if status == StatusCode::OK {
            for token in [field(&body, "access_token"), access.as_str()] {
                let form = [("token", token)];
                let url = format!("{base}/oauth/introspect");
                let (status, body) = post_form(&client, &url, &form, Some((BACKEND, &secret))).await;
                if status != StatusCode::OK || body["active"] != Value::Bool(true) {
                    failures.push(format!("introspection: {status} {body}"));
                }
            }
        } else {
            failures.push(format!("client credentials: {status} {body}"));
        }
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (rounds, failures)
}

async fn rewrap_while_serving(mut deployment: Deployment) {
    let secret = deployment.add_confidential_client(BACKEND).await;
    deployment.add_user("alice").await;
    let old_text = deployment.master_key().to_owned();
    let old = MasterKey::from_text(&old_text).expect("the deployment's master key");
    let store = deployment.store().await;
    // The first key (operator commands other than `keys rotate` leave the keys as they are).
    deployment.cli(&["keys", "rotate"], None).await;

    // Two keys with a private half: the active key, aged so that the policy wants its successor
    // now, and that pending successor.
    let spec = deployment.spec();
    sqlx::query("UPDATE signing_keys SET activates_at = $1 WHERE state = 'active'")
        .bind(now() - spec.keys.rotate_every.as_i64() + spec.keys.publish_ahead.as_i64() / 2)
        .execute(store.pool())
        .await
        .expect("age the active key");
    deployment.cli(&["keys", "rotate"], None).await;
    let before = store.list_keys().await.expect("list keys");
    let states: BTreeSet<KeyState> = before.iter().map(|k| k.state).collect();
    assert_eq!(states, [KeyState::Pending, KeyState::Active].into(), "{before:#?}");
    assert!(before.iter().all(|k| k.master_key_id == old.id()));

    // A server on the old key, reloading its keys every second.
    let server = deployment.start(&["--key-refresh-secs", "1", "--per-ip-rps", "10000"]).await;
    let client = http_client();
    let first = login(&client, &server, "alice", "bookings:read").await;
    let published = jwks_kids(&client, &server).await;
    assert_eq!(published.len(), 2);

    // Rewrap under a new key (read from standard input) while the server issues and verifies.
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(issue_and_verify(
        client.clone(),
        server.url(""),
        secret.clone(),
        field(&first, "access_token").to_owned(),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (new, new_text) = MasterKey::generate(&OsEntropy::new()).expect("a new master key");
    let out = deployment.cli(&["keys", "rewrap"], Some(&format!("{}\n", new_text.as_str()))).await;
    assert!(out.contains(&format!("rewrapped 2 key(s) under master key {}", new.id())), "{out}");
    assert_eq!(out.matches(&format!("\tsealed {}", new.id())).count(), 2, "{out}");
    // The server reloads its keys three times or so on the rewrapped table.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    stop.store(true, Ordering::Relaxed);
    let (rounds, failures) = load.await.expect("the load task did not panic");
    assert!(failures.is_empty(), "{} of {rounds} rounds failed: {failures:#?}", failures.len());
    assert!(rounds >= 20, "only {rounds} rounds");
    assert!(!server.log().contains("key rotation failed"), "{}", server.log());

    // The running server still issues, verifies and refreshes.
    let second = login(&client, &server, "alice", "bookings:read").await;
    for token in [field(&first, "access_token"), field(&second, "access_token")] {
        let response = client.get(server.url("/userinfo")).bearer_auth(token).send().await.expect("GET /userinfo");
        assert_eq!(response.status(), StatusCode::OK);
    }
    let form = [("grant_type", "refresh_token"), ("client_id", WEB), ("refresh_token", field(&first, "refresh_token"))];
    let (status, third) = post_form(&client, &server.url("/oauth/token"), &form, None).await;
    assert_eq!(status, StatusCode::OK, "{third}");

    // No key lost: the same keys, each sealed under the new master key only.
    let after = store.list_keys().await.expect("list keys");
    assert_eq!(identities(&after), identities(&before), "the same keys in the same states");
    for key in &after {
        let sealed = key.private_sealed.as_deref().expect("a private half");
        assert_eq!(key.master_key_id, new.id(), "{}", key.kid);
        let before = before.iter().find(|k| k.kid == key.kid).and_then(|k| k.private_sealed.as_deref()).unwrap();
        assert_eq!(new.open(&key.kid, sealed).unwrap(), old.open(&key.kid, before).unwrap(), "the same private key");
        assert!(old.open(&key.kid, sealed).is_err(), "the old master key opens {}", key.kid);
    }
    let audit = store.audit_tail(5000).await.expect("audit");
    assert_eq!(audit.iter().filter(|e| e.kind == AuditKind::KeyRewrapped).count(), 2, "{audit:#?}");

    // The old key alone starts nothing, and says why.
    for args in [&["check"][..], &["serve", "--listen", "127.0.0.1:0"][..]] {
        let refused = tokio::time::timeout(Duration::from_secs(60), deployment.try_cli(args, None))
            .await
            .expect("a process on the old master key exits");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{args:?} on the old key: {stderr}");
        assert!(stderr.contains(new.id()) && stderr.contains(old.id()), "{args:?}: {stderr}");
    }

    // A restart on the new key serves the same keys: tokens from before verify, the session goes on.
    let mut server = server;
    server.terminate();
    assert!(server.wait_exit(Duration::from_secs(30)).await.success());
    deployment.set_env("AUTH_MASTER_KEY", &new_text);
    let restarted = deployment.start(&[]).await;
    assert_eq!(jwks_kids(&client, &restarted).await, published);
    for token in [field(&first, "access_token"), field(&second, "access_token")] {
        let response = client.get(restarted.url("/userinfo")).bearer_auth(token).send().await.expect("GET /userinfo");
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(introspect(&client, &restarted, &secret, field(&third, "refresh_token")).await["active"], true);
    let form = [("grant_type", "refresh_token"), ("client_id", WEB), ("refresh_token", field(&third, "refresh_token"))];
    let (status, body) = post_form(&client, &restarted.url("/oauth/token"), &form, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    login(&client, &restarted, "alice", "bookings:read").await;

    // Rewrapping again changes nothing; the old key as a previous key is accepted beside the new.
    let out = deployment.cli(&["keys", "rewrap"], Some(new_text.as_str())).await;
    assert!(out.contains("rewrapped 0 key(s)") && out.contains("(2 already under it, 0 retired)"), "{out}");
    deployment.set_env("AUTH_MASTER_KEY_PREVIOUS", &old_text);
    deployment.cli(&["check"], None).await;
    store.close().await;
}
