//! Findings of an outside attack, each replayed through real HTTP (a raw socket where a client
//! library would not send the request): metric labels from invented methods, HTTP/1.1 `Host`
//! rules, headers of refused and personal answers, and a refresh asking for more scope.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use auth_core::audit::AuditKind;

use crate::support::{Options, Server, TestDb, Tokens, assert_oauth_error, header, read_json, unique_suffix};

on_both_backends!(
    invented_methods_add_no_metric_series,
    http11_requests_need_exactly_one_host,
    refused_bodies_close_the_connection_and_answers_are_not_sniffed,
    a_wider_refresh_scope_is_refused_before_the_token_is_spent,
    repeated_refusals_are_one_row_and_a_count,
    huge_usernames_are_charged_by_their_hash,
);

/// Sends raw bytes on a new connection; returns what came back until the server closed it or
/// went quiet.
async fn raw(server: &Server, request: &[u8]) -> String {
    let addr = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

async fn invented_methods_add_no_metric_series(db: TestDb) {
    let server = Server::start(db).await;
    let before = server.metrics().await;
    for i in 0..50 {
        let request = format!("MADEUP{i} /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer = raw(&server, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    }
    let after = server.metrics().await;
    assert!(!after.contains("MADEUP"), "a method as sent became a label");
    let series = |page: &str| page.lines().filter(|l| l.starts_with("http_requests_total{")).count();
    // One new series at most: route /healthz, method OTHER, status 405.
    assert!(series(&after) <= series(&before) + 2, "{} -> {}", series(&before), series(&after));
    assert!(after.contains("method=\"OTHER\""), "{after}");
}

async fn http11_requests_need_exactly_one_host(db: TestDb) {
    let server = Server::start(db).await;
    let none = raw(&server, b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(none.starts_with("HTTP/1.1 400"), "{none}");
    assert!(none.contains("request.invalid_host"), "{none}");
    let two = raw(&server, b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n").await;
    assert!(two.starts_with("HTTP/1.1 400"), "{two}");
    let oauth = raw(&server, b"POST /oauth/token HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
    assert!(oauth.starts_with("HTTP/1.1 400") && oauth.contains("\"error\":\"invalid_request\""), "{oauth}");
    let one = raw(&server, b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await;
    assert!(one.starts_with("HTTP/1.1 200"), "{one}");
    // HTTP/1.0 has no Host requirement.
    let old = raw(&server, b"GET /healthz HTTP/1.0\r\n\r\n").await;
    assert!(old.starts_with("HTTP/1.0 200") || old.starts_with("HTTP/1.1 200"), "{old}");
}

async fn refused_bodies_close_the_connection_and_answers_are_not_sniffed(db: TestDb) {
    let server = Server::start(db).await;
    let huge = format!("grant_type=password&username=a&password={}", "x".repeat(70 * 1024));
    let response = server
        .http
        .post(server.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(huge)
        .send()
        .await
        .unwrap();
    let (status, headers, _) = read_json(response).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(header(&headers, "connection"), "close");
    for path in ["/healthz", "/.well-known/jwks.json", "/openapi.json", "/no-such-route"] {
        let response = server.get(path).await;
        assert_eq!(header(response.headers(), "x-content-type-options"), "nosniff", "{path}");
    }
    // Sign-up answers concern a user: not stored.
    let response = server.post_user(&serde_json::json!({ "username": "x" })).await;
    assert_eq!(header(response.headers(), "cache-control"), "no-store");
}

async fn a_wider_refresh_scope_is_refused_before_the_token_is_spent(db: TestDb) {
    let server = Server::start(db).await;
    server.sign_up("alice").await;
    let (status, _, body) = read_json(
        server
            .post_form(
                "/oauth/token",
                &[
                    ("grant_type", "password"),
                    ("client_id", crate::support::WEB),
                    ("username", "alice"),
                    ("password", crate::support::PASSWORD),
                    ("scope", "bookings:read"),
                ],
            )
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let tokens = Tokens::from_body(&body);
    let wider = server
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", crate::support::WEB),
                ("refresh_token", &tokens.refresh),
                ("scope", "bookings:read bookings:write"),
            ],
        )
        .await;
    let (status, headers, body) = read_json(wider).await;
    assert_oauth_error(status, &headers, &body, StatusCode::BAD_REQUEST, "invalid_scope");
    // The token was not spent: its next use rotates normally, long after any reuse grace.
    let (status, _, body) = read_json(server.refresh(&tokens.refresh).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "bookings:read");
}

/// Audit amplification: refusals an attacker repeats at will (wrong passwords, attempts at a
/// locked account, sprayed names that do not exist) are written once per window and counted, so
/// a flood of them adds a handful of rows, not one each.
async fn repeated_refusals_are_one_row_and_a_count(db: TestDb) {
    let server = Server::start_with(db, Options { login_attempts: 2, ..Options::default() }).await;
    let victim = format!("victim_{}", unique_suffix());
    server.sign_up(&victim).await;
    let before = server.state.authority.audit_tail(1_000).await.unwrap().len();
    for i in 0..50 {
        let status = server.password_grant(&victim, &format!("guess {i}")).await.status();
        let expected = if i < 2 { StatusCode::BAD_REQUEST } else { StatusCode::TOO_MANY_REQUESTS };
        assert_eq!(status, expected, "attempt {i}");
    }
    for i in 0..30 {
        let status = server.password_grant(&format!("nobody_{i}_{}", unique_suffix()), "guess").await.status();
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    let rows = |audit: &[auth_core::audit::AuditEvent], kind: AuditKind| audit.iter().filter(|e| e.kind == kind).count();
    let audit = server.state.authority.audit_tail(1_000).await.unwrap();
    // One failed login of the victim, one of names that do not exist, one lockout.
    assert_eq!(audit.len() - before, 3, "{audit:#?}");
    assert_eq!(rows(&audit, AuditKind::LoginFailed), 2);
    assert_eq!(rows(&audit, AuditKind::LoginLockedOut), 1);
    // Nothing is due before the window ends; at shutdown (or once it has ended) the counts are
    // written, one row per window.
    assert_eq!(server.state.authority.flush_refusals(false).await.unwrap(), 0);
    assert_eq!(server.state.authority.flush_refusals(true).await.unwrap(), 3);
    let audit = server.state.authority.audit_tail(1_000).await.unwrap();
    let repeated = |kind: AuditKind, user: bool| {
        audit
            .iter()
            .filter(|e| e.kind == kind && e.user_id.is_some() == user)
            .find_map(|e| e.detail.get("repeated").and_then(serde_json::Value::as_u64))
    };
    assert_eq!(repeated(AuditKind::LoginFailed, true), Some(1));
    assert_eq!(repeated(AuditKind::LoginLockedOut, true), Some(47));
    assert_eq!(repeated(AuditKind::LoginFailed, false), Some(29));
}

/// Per-account allowance keys are the SHA-256 of the (normalized) name, so a 60 KB name costs a
/// key of 64 hex digits like any other: it is charged as one account (the sixth try of the same
/// name is refused), another huge name has an allowance of its own, and the answers are the
/// unknown user's, never a 413 or a 500.
async fn huge_usernames_are_charged_by_their_hash(db: TestDb) {
    let server = Server::start_with(db, Options { login_attempts: 5, ..Options::default() }).await;
    let huge = |c: char| c.to_string().repeat(60 * 1024);
    for _ in 0..5 {
        let status = server.password_grant(&huge('x'), "guess").await.status();
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    let (status, headers, body) = read_json(server.password_grant(&huge('x'), "guess").await).await;
    assert_oauth_error(status, &headers, &body, StatusCode::TOO_MANY_REQUESTS, "invalid_request");
    let (status, headers, body) = read_json(server.password_grant(&huge('y'), "guess").await).await;
    assert_oauth_error(status, &headers, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    let audit = server.state.authority.audit_tail(100).await.unwrap();
    assert!(audit.iter().all(|e| !e.detail.to_string().contains("xxxxxxxx")), "no name as sent reaches the audit log");
}
