//! Faults, with real processes on PostgreSQL: a server killed with SIGKILL in the middle of a
//! refresh burst, rotation processes killed midway, the database connection cut under load, and
//! one of two replicas lost. What must hold afterwards: every refresh a client saw succeed can be
//! used (the client retries with the last token it holds, and a rotation it never heard of is
//! answered inside the reuse grace with the same successor), no session is lost or duplicated,
//! exactly one key signs, and errors while the database is away are 503, never 500.

// Test helpers fail the test on purpose when something is off.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use auth_core::keys::KeySet;
use auth_core::store::{KeyState, SqlStore};
use auth_core::tokens::AccessTokenVerifier;
use reqwest::StatusCode;
use tokio::task::JoinSet;

use crate::process::{Backing, Deployment, Server, cheap_booking_spec, http_client};
use crate::replicas::{
    BACKEND, CuttableProxy, WEB, eventually, field, introspect, keys_now, login, now, post_form, socket_of, via,
};

const SESSIONS: usize = 6;
/// The refresh load comes from one address: lift the per-IP limit of credential endpoints.
const NO_IP_LIMIT: &[&str] = &["--per-ip-rps", "1000000"];

/// One refresh of `token` on `server`: the status and, on success, the successor.
async fn refresh(client: &reqwest::Client, server_url: &str, token: &str) -> Result<(StatusCode, Option<String>), reqwest::Error> {
    let form = [("grant_type", "refresh_token"), ("client_id", WEB), ("refresh_token", token)];
    let response = client.post(format!("{server_url}/oauth/token")).form(&form).send().await?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    Ok((status, body["refresh_token"].as_str().map(str::to_owned)))
}

/// Sessions of distinct users, logged in on `server`: the refresh token of each.
async fn sessions(deployment: &Deployment, server: &Server, client: &reqwest::Client) -> Vec<String> {
    let mut tokens = Vec::new();
    for i in 0..SESSIONS {
        let username = format!("user{i}");
        deployment.add_user(&username).await;
        tokens.push(field(&login(client, server, &username, "bookings:read").await, "refresh_token").to_owned());
    }
    tokens
}

/// Refreshes every session in a loop until `stop`, each with the last successor it received.
/// Returns each session's last token and the statuses seen (a transport error counts as 0).
fn refresh_burst(
    client: &reqwest::Client,
    server_url: &str,
    tokens: Vec<String>,
    stop: &Arc<AtomicBool>,
) -> JoinSet<(usize, String, BTreeMap<u16, usize>)> {
    let mut tasks = JoinSet::new();
    for (i, mut token) in tokens.into_iter().enumerate() {
        let (client, url, stop) = (client.clone(), server_url.to_owned(), stop.clone());
        tasks.spawn(async move {
            let mut statuses = BTreeMap::new();
            while !stop.load(Ordering::Relaxed) {
                let status = match refresh(&client, &url, &token).await {
                    Ok((status, successor)) => {
                        if let Some(successor) = successor {
                            token = successor;
                        }
                        status.as_u16()
                    }
                    Err(_) => 0,
                };
                *statuses.entry(status).or_insert(0) += 1;
                if status == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            (i, token, statuses)
        });
    }
    tasks
}

/// What the database must look like: one family per session, none revoked, each with exactly one
/// unused refresh token; one active key, at most one pending.
async fn assert_consistent(store: &SqlStore) {
    let families: Vec<(String, Option<i64>)> = sqlx::query_as("SELECT id, revoked_at FROM refresh_families")
        .fetch_all(store.pool())
        .await
        .expect("read the families");
    assert_eq!(families.len(), SESSIONS, "one family per session, none lost or duplicated: {families:?}");
    assert!(families.iter().all(|(_, revoked)| revoked.is_none()), "no session was revoked: {families:?}");
    let live: Vec<(String, i64)> = sqlx::query_as(
        "SELECT family_id, COUNT(*) FROM refresh_tokens WHERE used_at IS NULL GROUP BY family_id ORDER BY family_id",
    )
    .fetch_all(store.pool())
    .await
    .expect("count the live refresh tokens");
    assert_eq!(live.len(), SESSIONS, "every family has its live token: {live:?}");
    assert!(live.iter().all(|(_, n)| *n == 1), "exactly one live refresh token per family: {live:?}");
    keys_now(store).await;
}

/// Each session's last token refreshes: either a new rotation, or (when the rotation it asked for
/// was committed but its answer lost) the same successor inside the reuse grace.
async fn assert_every_session_refreshes(client: &reqwest::Client, server: &Server, last: &[(usize, String)]) {
    for (i, token) in last {
        let (status, successor) = refresh(client, &server.url(""), token).await.expect("refresh after the fault");
        assert_eq!(status, StatusCode::OK, "session {i}: the last refresh token the client held still works");
        let (status, _) = refresh(client, &server.url(""), &successor.expect("a successor")).await.expect("refresh");
        assert_eq!(status, StatusCode::OK, "session {i}: and the chain goes on");
    }
}

/// SIGKILL in the middle of a refresh burst, then a restart on the same database.
#[cfg_attr(not(auth_test_postgres), ignore = "AUTH_TEST_DATABASE_URL was not set when the tests were built")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_refresh_burst_loses_no_session() {
    let Some(backing) = Backing::from_env("sigkill_during_a_refresh_burst_loses_no_session", false) else { return };
    let deployment = Deployment::new(&backing, &cheap_booking_spec(&[])).await;
    let client = http_client();
    let mut server = deployment.start(NO_IP_LIMIT).await;
    let tokens = sessions(&deployment, &server, &client).await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut burst = refresh_burst(&client, &server.url(""), tokens, &stop);
    // Let refreshes flow, then kill the process mid-flight.
    let store = deployment.store().await;
    eventually("refreshes are flowing", Duration::from_secs(30), || async {
        let used: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM refresh_tokens WHERE used_at IS NOT NULL")
            .fetch_one(store.pool())
            .await
            .ok()?;
        (used.0 >= 60).then_some(())
    })
    .await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let mut last = Vec::new();
    let mut refreshed = 0;
    while let Some(result) = burst.join_next().await {
        let (i, token, statuses) = result.expect("a burst task");
        refreshed += statuses.get(&200).copied().unwrap_or(0);
        assert!(
            statuses.keys().all(|s| *s == 200 || *s == 0),
            "session {i}: only successes before the kill and transport errors after it: {statuses:?}"
        );
        last.push((i, token));
    }
    eprintln!("{refreshed} refreshes succeeded before SIGKILL");

    let restarted = deployment.start(NO_IP_LIMIT).await;
    assert_consistent(&store).await;
    assert_every_session_refreshes(&client, &restarted, &last).await;
    assert_consistent(&store).await;
    store.close().await;
}

/// `auth-server keys rotate` killed with SIGKILL at random points of a rotation that is due, over
/// and over: the key table always holds exactly one active key, and a server started afterwards
/// signs tokens that verify with its JWKS.
#[cfg_attr(not(auth_test_postgres), ignore = "AUTH_TEST_DATABASE_URL was not set when the tests were built")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_key_rotation_leaves_one_signing_key() {
    let Some(backing) = Backing::from_env("sigkill_during_key_rotation_leaves_one_signing_key", false) else { return };
    let deployment = Deployment::new(&backing, &cheap_booking_spec(&[])).await;
    deployment.cli(&["keys", "rotate"], None).await;
    let store = deployment.store().await;
    let spec = deployment.spec();
    let (rotate_every, publish_ahead) = (spec.keys.rotate_every.as_i64(), spec.keys.publish_ahead.as_i64());
    for round in 0..16u64 {
        // Make the next step due: a successor when there is none, else the switch to it.
        let keys = keys_now(&store).await;
        if keys.iter().any(|k| k.state == KeyState::Pending) {
            sqlx::query("UPDATE signing_keys SET activates_at = $1 WHERE state = 'pending'")
                .bind(now() - 1)
                .execute(store.pool())
                .await
                .expect("make the successor due");
        } else {
            sqlx::query("UPDATE signing_keys SET activates_at = $1 WHERE state = 'active'")
                .bind(now() - rotate_every + publish_ahead / 2)
                .execute(store.pool())
                .await
                .expect("age the active key");
        }
        let mut child = deployment.spawn_cli(&["keys", "rotate"]);
        // From right after the start to well into the rotation, over the rounds.
        tokio::time::sleep(Duration::from_millis(5 + round * 9)).await;
        let _ = child.kill();
        let _ = child.wait();
        keys_now(&store).await;
    }
    deployment.cli(&["keys", "rotate"], None).await;
    let keys = keys_now(&store).await;
    assert!(keys.iter().all(|k| k.state == KeyState::Retired || k.private_sealed.is_some()), "no live key lost its private half");

    let server = deployment.start(&[]).await;
    let client = http_client();
    let secret = deployment.add_confidential_client(BACKEND).await;
    let (status, body) = post_form(
        &client,
        &server.url("/oauth/token"),
        &[("grant_type", "client_credentials"), ("scope", "bookings:read")],
        Some((BACKEND, &secret)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let jwks = client.get(server.url("/.well-known/jwks.json")).send().await.unwrap().text().await.unwrap();
    let keys = KeySet::from_jwks(&serde_json::from_str(&jwks).unwrap());
    AccessTokenVerifier::from_spec(&spec).verify(field(&body, "access_token"), &keys, now()).expect("the token verifies");
    store.close().await;
}

/// The database connection cut for two seconds under a refresh load (what a PostgreSQL restart
/// looks like to the server: connections dropped mid-transaction, new ones refused): every
/// failure is a 503, the service resumes by itself, and no session is lost or half-rotated.
#[cfg_attr(not(auth_test_postgres), ignore = "AUTH_TEST_DATABASE_URL was not set when the tests were built")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_cut_under_load_answers_503_and_loses_nothing() {
    let Some(backing) = Backing::from_env("database_cut_under_load_answers_503_and_loses_nothing", false) else { return };
    let deployment = Deployment::new(&backing, &cheap_booking_spec(&[])).await;
    let mut proxy = CuttableProxy::start(socket_of(&deployment.database_url)).await;
    let server = deployment.start_with_database(&via(&deployment.database_url, proxy.addr), NO_IP_LIMIT).await;
    let client = http_client();
    let tokens = sessions(&deployment, &server, &client).await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut burst = refresh_burst(&client, &server.url(""), tokens, &stop);
    tokio::time::sleep(Duration::from_millis(700)).await;
    proxy.cut().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);

    let mut last = Vec::new();
    let mut all: BTreeMap<u16, usize> = BTreeMap::new();
    while let Some(result) = burst.join_next().await {
        let (i, token, statuses) = result.expect("a burst task");
        for (status, n) in statuses {
            *all.entry(status).or_insert(0) += n;
        }
        last.push((i, token));
    }
    eprintln!("statuses during the cut: {all:?}");
    assert!(all.keys().all(|s| *s == 200 || *s == 503), "only 200 and 503, never a 500 or a refusal: {all:?}");
    assert!(all.get(&503).copied().unwrap_or(0) > 0, "the cut was felt: {all:?}");
    assert!(all.get(&200).copied().unwrap_or(0) > SESSIONS, "refreshes succeeded around the cut: {all:?}");

    let store = deployment.store().await;
    assert_consistent(&store).await;
    assert_every_session_refreshes(&client, &server, &last).await;
    store.close().await;
}

/// Two replicas, one killed with SIGKILL: the other verifies, refreshes, introspects and issues
/// what the dead one issued, without a restart of anything.
#[cfg_attr(not(auth_test_postgres), ignore = "AUTH_TEST_DATABASE_URL was not set when the tests were built")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_killed_the_other_carries_on() {
    let Some(backing) = Backing::from_env("one_replica_killed_the_other_carries_on", false) else { return };
    let deployment = Deployment::new(&backing, &cheap_booking_spec(&[])).await;
    deployment.add_user("alice").await;
    let secret = deployment.add_confidential_client(BACKEND).await;
    let mut a = deployment.start(&[]).await;
    let b = deployment.start(&[]).await;
    let client = http_client();
    let issued = login(&client, &a, "alice", "bookings:read").await;
    a.kill();

    let access = field(&issued, "access_token");
    let answer = introspect(&client, &b, &secret, access).await;
    assert_eq!(answer["active"], true, "B introspects A's token: {answer}");
    let userinfo = client.get(b.url("/userinfo")).bearer_auth(access).send().await.expect("GET /userinfo");
    assert_eq!(userinfo.status(), StatusCode::OK, "B accepts A's token");
    let (status, successor) = refresh(&client, &b.url(""), field(&issued, "refresh_token")).await.expect("refresh on B");
    assert_eq!(status, StatusCode::OK, "B refreshes A's session");
    assert!(successor.is_some());
    login(&client, &b, "alice", "bookings:read").await;
}
