//! Races through real HTTP, on SQLite and PostgreSQL: many requests released at the same instant
//! against one refresh token, one username, one user's sessions and one account's password, and
//! what the database holds afterwards.

use std::sync::Arc;
use std::time::Duration;

use auth_core::audit::AuditKind;
use auth_core::store::FamilyStore as _;
use auth_server::config::ServerConfig;
use reqwest::StatusCode;
use serde_json::json;
use tokio::sync::Barrier;

use crate::support::{
    Options, Server, TestDb, Tokens, WEB, assert_problem, header, metric_value, read_json, send_together,
};

on_both_backends!(
    hundred_concurrent_refreshes_of_one_token_share_one_successor,
    concurrent_sign_ups_of_one_name_create_one_account,
    logout_everywhere_racing_refreshes_leaves_no_token_alive,
    fifty_parallel_wrong_passwords_cannot_bypass_the_default_lockout,
);

/// `SELECT COUNT(*)` of `sql` with `$1` bound to `arg`, on the server's own database.
async fn count(server: &Server, sql: &str, arg: &str) -> i64 {
    let store = server.sql_store().await;
    let n: i64 = sqlx::query_scalar(sql)
        .bind(arg)
        .fetch_one(store.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    store.close().await;
    n
}

/// 100 refreshes of one token released together (a client whose every tab refreshes at once,
/// well inside the 10 s reuse grace): one rotation wins, the 99 others are answered with the
/// winner's successor, and the database holds one family with exactly two tokens.
async fn hundred_concurrent_refreshes_of_one_token_share_one_successor(db: TestDb) {
    const RACERS: usize = 100;
    let server = Server::start(db).await;
    let secret = server.register_backend().await;
    let user_id = server.sign_up("alice").await;
    let first = server.login("alice").await;
    let form = [("grant_type", "refresh_token"), ("client_id", WEB), ("refresh_token", first.refresh.as_str())];
    let requests = (0..RACERS).map(|_| server.form_request("/oauth/token", &form)).collect();
    let mut successors = Vec::new();
    let mut sids = Vec::new();
    for (status, headers, body) in send_together(requests).await {
        assert_eq!(
            status,
            StatusCode::OK,
            "a race inside the grace is benign ({}): {body}",
            server.backend()
        );
        assert_eq!(header(&headers, "cache-control"), "no-store");
        let tokens = Tokens::from_body(&body);
        let claims = server
            .state
            .authority
            .verify_access_token(&tokens.access)
            .expect("every answer carries a valid access token");
        sids.push(claims.sid.expect("a session token"));
        successors.push(tokens.refresh);
    }
    successors.sort();
    successors.dedup();
    assert_eq!(successors.len(), 1, "exactly one successor: {successors:?}");
    sids.dedup();
    assert_eq!(sids.len(), 1, "one session: {sids:?}");
    let sid = &sids[0];

    // The database: the user has one family, not revoked, holding the spent token and its one
    // successor, which is the token every answer carried.
    let families = "SELECT COUNT(*) FROM refresh_families WHERE user_id = $1";
    assert_eq!(count(&server, families, &user_id).await, 1, "no family lost or duplicated");
    let family = server.sql_store().await.family(sid).await.unwrap().expect("the family");
    assert_eq!(family.revoked_at, None, "the family is intact: {family:?}");
    let tokens = "SELECT COUNT(*) FROM refresh_tokens WHERE family_id = $1";
    assert_eq!(count(&server, tokens, sid).await, 2, "one token spent, one successor");
    let unused = "SELECT COUNT(*) FROM refresh_tokens WHERE family_id = $1 AND used_at IS NULL";
    assert_eq!(count(&server, unused, sid).await, 1, "one live token");
    let form = [("token", successors[0].as_str())];
    let response = server
        .form_request("/oauth/introspect", &form)
        .basic_auth(crate::support::BACKEND, Some(&secret))
        .send()
        .await
        .unwrap();
    let (_, _, body) = read_json(response).await;
    assert_eq!(
        (&body["active"], &body["sid"]),
        (&json!(true), &json!(sid)),
        "the live token is the successor every answer carried: {body}"
    );

    // The audit log: one rotation, 99 retries, no reuse.
    let audit = server.state.authority.audit_tail(500).await.unwrap();
    let of = |kind: AuditKind| audit.iter().filter(|e| e.kind == kind).count();
    assert_eq!(
        (of(AuditKind::RefreshRotated), of(AuditKind::RefreshRetried), of(AuditKind::RefreshReuseDetected)),
        (1, RACERS - 1, 0)
    );
    let page = server.metrics().await;
    assert_eq!(metric_value(&page, "auth_refresh_reuse_detected_total", &[]), 0.0);

    // And the session goes on.
    let (status, _, body) = read_json(server.refresh(&successors[0]).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// 20 sign-ups of one name at once, spelled in every way that normalizes to `zoë` (case,
/// decomposed diaeresis, fullwidth letters, surrounding spaces), each with its own password:
/// one 201, nineteen 409, one account, and it has the winner's password.
async fn concurrent_sign_ups_of_one_name_create_one_account(db: TestDb) {
    const SPELLINGS: [&str; 5] = ["zo\u{eb}", "ZO\u{cb}", "zoe\u{308}", "\u{ff3a}\u{ff4f}\u{eb}", " Zo\u{eb} "];
    const RACERS: usize = 20;
    let server = Server::start(db).await;
    // An invitation each: the race is on the name alone.
    let mut invitations = Vec::new();
    for _ in 0..RACERS {
        invitations.push(server.invitation("t-1").await);
    }
    let requests = (0..RACERS)
        .map(|i| {
            let body = json!({
                "username": SPELLINGS[i % SPELLINGS.len()],
                "password": format!("password number {i:02}"),
                "invitation": invitations[i],
            });
            server.http.post(server.url("/v1/users")).json(&body)
        })
        .collect();
    let mut winners = Vec::new();
    for (i, (status, headers, body)) in send_together(requests).await.into_iter().enumerate() {
        if status == StatusCode::CREATED {
            assert_eq!(body["username"], "zo\u{eb}", "{body}");
            winners.push((i, body));
        } else {
            assert_problem(status, &headers, &body, StatusCode::CONFLICT, "input.conflict");
        }
    }
    assert_eq!(winners.len(), 1, "exactly one sign-up wins ({}): {winners:?}", server.backend());
    let (winner, body) = &winners[0];
    let id = body["id"].as_str().unwrap();

    assert_eq!(count(&server, "SELECT COUNT(*) FROM users WHERE username = $1", "zo\u{eb}").await, 1);
    assert_eq!(count(&server, "SELECT COUNT(*) FROM users WHERE id <> $1", id).await, 0, "no other account");
    let created = server.state.authority.audit_tail(100).await.unwrap();
    assert_eq!(created.iter().filter(|e| e.kind == AuditKind::UserCreated).count(), 1);

    // Every spelling logs into that one account with the winner's password, and no loser's
    // password opens it.
    for spelling in SPELLINGS {
        let (status, _, body) =
            read_json(server.password_grant(spelling, &format!("password number {winner:02}")).await).await;
        assert_eq!(status, StatusCode::OK, "{spelling:?}: {body}");
    }
    let loser = (winner + 1) % RACERS;
    let (status, _, body) =
        read_json(server.password_grant("zo\u{eb}", &format!("password number {loser:02}")).await).await;
    assert_eq!((status, &body["error"]), (StatusCode::BAD_REQUEST, &json!("invalid_grant")));
}

/// Everything a session handed out: access tokens and refresh tokens.
#[derive(Debug, Default)]
struct Issued {
    access: Vec<String>,
    refresh: Vec<String>,
}

/// A client refreshing its session as fast as it can, two requests at a time with the same token
/// (a retry racing its original), until the session is refused. Returns every token it received.
async fn refresh_until_refused(server: Arc<Server>, first: Tokens, started: Arc<Barrier>) -> Issued {
    let mut issued = Issued { access: vec![first.access], refresh: vec![first.refresh.clone()] };
    let mut current = first.refresh;
    let mut waited = false;
    loop {
        let (a, b) = tokio::join!(server.refresh(&current), server.refresh(&current));
        let mut next = None;
        for response in [a, b] {
            let (status, _, body) = read_json(response).await;
            match status {
                StatusCode::OK => {
                    let tokens = Tokens::from_body(&body);
                    issued.access.push(tokens.access);
                    issued.refresh.push(tokens.refresh.clone());
                    next = Some(tokens.refresh);
                }
                StatusCode::BAD_REQUEST => assert_eq!(body["error"], "invalid_grant", "{body}"),
                other => panic!("unexpected {other}: {body}"),
            }
        }
        if !waited {
            // Tell the test that this session is under way; logout races the next refreshes.
            started.wait().await;
            waited = true;
        }
        match next {
            Some(refresh) => current = refresh,
            None => return issued,
        }
    }
}

/// Five sessions of one user refreshing in a loop; `POST /v1/logout?all=true` lands among them.
/// Once it has answered, no token any session ever received still works: every refresh token is
/// `invalid_grant`, every access token `401 token.session_revoked` at `/userinfo` and inactive at
/// introspection, including tokens issued while the logout was running. Another user's session
/// is untouched.
async fn logout_everywhere_racing_refreshes_leaves_no_token_alive(db: TestDb) {
    const SESSIONS: usize = 5;
    let server = Arc::new(Server::start(db).await);
    let secret = server.register_backend().await;
    let user_id = server.sign_up("alice").await;
    server.sign_up("bob").await;
    let bobs = server.login("bob").await;
    let mut logins = Vec::new();
    for _ in 0..SESSIONS {
        logins.push(server.login("alice").await);
    }
    let logout_token = logins[0].access.clone();
    let started = Arc::new(Barrier::new(SESSIONS + 1));
    let mut loops = Vec::new();
    for login in logins {
        loops.push(tokio::spawn(refresh_until_refused(server.clone(), login, started.clone())));
    }
    // Every session has refreshed at least once and keeps going: log out everywhere now.
    started.wait().await;
    let response = server
        .http
        .post(server.url("/v1/logout?all=true"))
        .bearer_auth(&logout_token)
        .send()
        .await
        .unwrap();
    let (status, _, body) = read_json(response).await;
    assert_eq!((status, &body["sessions_ended"]), (StatusCode::OK, &json!(SESSIONS)), "{body}");

    let mut issued = Issued::default();
    for task in loops {
        let session = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("every refresh loop is refused soon after the logout")
            .unwrap();
        issued.access.extend(session.access);
        issued.refresh.extend(session.refresh);
    }
    assert!(issued.refresh.len() > 2 * SESSIONS, "the sessions were refreshing: {}", issued.refresh.len());

    for refresh in &issued.refresh {
        let (status, _, body) = read_json(server.refresh(refresh).await).await;
        assert_eq!((status, &body["error"]), (StatusCode::BAD_REQUEST, &json!("invalid_grant")), "{body}");
    }
    for access in &issued.access {
        let (status, headers, body) = read_json(server.get_bearer("/userinfo", access).await).await;
        assert_problem(status, &headers, &body, StatusCode::UNAUTHORIZED, "token.session_revoked");
    }
    for token in issued.access.iter().chain(&issued.refresh) {
        let response = server
            .form_request("/oauth/introspect", &[("token", token)])
            .basic_auth(crate::support::BACKEND, Some(&secret))
            .send()
            .await
            .unwrap();
        let (_, _, body) = read_json(response).await;
        assert_eq!(body, json!({ "active": false }));
    }
    let live = "SELECT COUNT(*) FROM refresh_families WHERE user_id = $1 AND revoked_at IS NULL";
    assert_eq!(count(&server, live, &user_id).await, 0, "no session of alice survives");
    assert_eq!(server.get_bearer("/userinfo", &bobs.access).await.status(), StatusCode::OK);
    let (status, _, _) = read_json(server.refresh(&bobs.refresh).await).await;
    assert_eq!(status, StatusCode::OK, "bob's session goes on");
}

/// 50 wrong passwords at once against one account with the server's default per-account
/// allowance: no more than that many reach the password check, the rest are refused before it,
/// and the right password is refused while the account is locked.
async fn fifty_parallel_wrong_passwords_cannot_bypass_the_default_lockout(db: TestDb) {
    let default = ServerConfig::local("127.0.0.1:0".parse().unwrap(), ".".into()).login.attempts.burst;
    let options = Options { login_attempts: default, ..Options::default() };
    crate::limits::login_backoff_with(db, options, 50).await;
}
