//! `POST /oauth/token`: the password, refresh-token and client-credentials grants, client
//! authentication, and the RFC 6749 error answers.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::json;

use crate::support::{
    BACKEND, Options, PASSWORD, Server, TestDb, Tokens, WEB, assert_oauth_error, assert_problem,
    header, metric_value, read_json, send_together,
};

on_both_backends!(
    password_grant_answers_a_token_response,
    password_grant_narrows_and_checks_scope,
    unknown_user_and_wrong_password_look_alike,
    refresh_grant_rotates,
    refresh_retry_within_grace_gets_the_same_successor,
    refresh_reuse_after_grace_revokes_the_family,
    concurrent_refreshes_of_one_token_share_one_successor,
    client_credentials_with_basic_and_with_form,
    wrong_client_secret_is_invalid_client,
    both_basic_and_form_secret_is_refused,
    duplicated_parameter_is_refused,
    unsupported_grant_type,
    malformed_token_requests,
);

async fn password_grant_answers_a_token_response(db: TestDb) {
    let server = Server::start(db).await;
    server.sign_up("alice").await;
    let (status, headers, body) = read_json(server.password_grant("alice", PASSWORD).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(header(&headers, "cache-control"), "no-store");
    assert_eq!(header(&headers, "pragma"), "no-cache");
    assert!(header(&headers, "content-type").starts_with("application/json"));
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900, "the spec's access_ttl is 15m");
    assert_eq!(
        body["scope"], "bookings:read bookings:write",
        "all of the client's scopes by default"
    );
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(access.split('.').count(), 3, "a compact JWS");
    let refresh = body["refresh_token"].as_str().unwrap();
    assert!(
        refresh.len() >= 43 && !refresh.contains('.'),
        "an opaque refresh token of >= 256 bits: {refresh}"
    );
    let claims = server
        .state
        .authority
        .verify_access_token(access)
        .expect("the access token verifies");
    assert_eq!(claims.client_id, WEB);
    assert_eq!(claims.custom.get("tenant_id"), Some(&json!("t-1")));
    assert!(claims.sid.is_some());
    let page = server.metrics().await;
    assert_eq!(
        metric_value(&page, "auth_tokens_issued_total", &["grant=\"password\""]),
        1.0,
        "{page}"
    );
}

async fn password_grant_narrows_and_checks_scope(db: TestDb) {
    let server = Server::start(db).await;
    server.sign_up("alice").await;
    let grant = |scope: &'static str| {
        let params = [
            ("grant_type", "password"),
            ("client_id", WEB),
            ("username", "alice"),
            ("password", PASSWORD),
            ("scope", scope),
        ];
        let server = &server;
        async move { read_json(server.post_form("/oauth/token", &params).await).await }
    };
    let (status, _, body) = grant("bookings:read").await;
    assert_eq!(
        (status, &body["scope"]),
        (StatusCode::OK, &json!("bookings:read")),
        "{body}"
    );
    let (status, headers, body) = grant("bookings:read admin").await;
    assert_oauth_error(
        status,
        &headers,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_scope",
    );
}

async fn unknown_user_and_wrong_password_look_alike(db: TestDb) {
    let server = Server::start(db).await;
    server.sign_up("alice").await;
    let (status_wrong, headers, wrong) =
        read_json(server.password_grant("alice", "not the password").await).await;
    assert_oauth_error(
        status_wrong,
        &headers,
        &wrong,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    let (status_unknown, _, unknown) =
        read_json(server.password_grant("nobody", "not the password").await).await;
    assert_eq!(status_unknown, status_wrong);
    assert_eq!(unknown, wrong, "the answer must not tell who exists");
    assert_eq!(
        wrong,
        json!({ "error": "invalid_grant", "error_description": "auth.invalid_credentials" })
    );
}

async fn refresh_grant_rotates(db: TestDb) {
    let server = Server::start(db).await;
    server.sign_up("alice").await;
    let first = server.login("alice").await;
    let (status, headers, body) = read_json(server.refresh(&first.refresh).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(header(&headers, "cache-control"), "no-store");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "bookings:read bookings:write");
    let second = Tokens::from_body(&body);
    assert_ne!(
        second.refresh, first.refresh,
        "each use rotates the refresh token"
    );
    assert_ne!(second.access, first.access);
    let before = server
        .state
        .authority
        .verify_access_token(&first.access)
        .unwrap();
    let after = server
        .state
        .authority
        .verify_access_token(&second.access)
        .unwrap();
    assert_eq!(after.sid, before.sid, "the same session");
    assert_eq!(after.sub, before.sub);
    // The successor works in turn, and may narrow the scope (RFC 6749 section 6) but not widen it.
    let params = [
        ("grant_type", "refresh_token"),
        ("client_id", WEB),
        ("refresh_token", &second.refresh),
        ("scope", "bookings:read"),
    ];
    let (status, _, body) = read_json(server.post_form("/oauth/token", &params).await).await;
    assert_eq!(
        (status, &body["scope"]),
        (StatusCode::OK, &json!("bookings:read")),
        "{body}"
    );
    let third = Tokens::from_body(&body);
    let params = [
        ("grant_type", "refresh_token"),
        ("client_id", WEB),
        ("refresh_token", &third.refresh),
        ("scope", "admin"),
    ];
    let (status, headers, body) = read_json(server.post_form("/oauth/token", &params).await).await;
    assert_oauth_error(
        status,
        &headers,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_scope",
    );
    let page = server.metrics().await;
    assert_eq!(
        metric_value(
            &page,
            "auth_tokens_issued_total",
            &["grant=\"refresh_token\""]
        ),
        2.0,
        "{page}"
    );
    // A token this server never issued.
    let (status, headers, body) = read_json(server.refresh("bm90IGEgdG9rZW4").await).await;
    assert_oauth_error(
        status,
        &headers,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
}

async fn refresh_retry_within_grace_gets_the_same_successor(db: TestDb) {
    let server = Server::start(db).await;
    server.sign_up("alice").await;
    let first = server.login("alice").await;
    let (_, _, body) = read_json(server.refresh(&first.refresh).await).await;
    let successor = Tokens::from_body(&body);
    // A client that lost the answer retries with the same token (grace is 10s).
    let (status, _, body) = read_json(server.refresh(&first.refresh).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        Tokens::from_body(&body).refresh,
        successor.refresh,
        "answered idempotently"
    );
    // ... and the session lives on.
    let (status, _, body) = read_json(server.refresh(&successor.refresh).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let page = server.metrics().await;
    assert_eq!(
        metric_value(&page, "auth_refresh_reuse_detected_total", &[]),
        0.0,
        "{page}"
    );
}

async fn refresh_reuse_after_grace_revokes_the_family(db: TestDb) {
    let options = Options {
        reuse_grace: "1s",
        ..Options::default()
    };
    let server = Server::start_with(db, options).await;
    server.sign_up("alice").await;
    let first = server.login("alice").await;
    let (status, _, body) = read_json(server.refresh(&first.refresh).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = Tokens::from_body(&body);
    // Whole seconds: more than the 1s grace has passed after 2.1s whatever the rounding.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let (status, headers, body) = read_json(server.refresh(&first.refresh).await).await;
    assert_oauth_error(
        status,
        &headers,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    assert_eq!(body["error_description"], "refresh.reused");
    // The whole family is revoked: the legitimate successor no longer works either, nor do the
    // session's access tokens on this server.
    let (status, headers, body) = read_json(server.refresh(&second.refresh).await).await;
    assert_oauth_error(
        status,
        &headers,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    assert_eq!(body["error_description"], "refresh.revoked");
    let response = server.get_bearer("/userinfo", &second.access).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let page = server.metrics().await;
    assert_eq!(
        metric_value(&page, "auth_refresh_reuse_detected_total", &[]),
        1.0,
        "{page}"
    );
    let audit = server.state.authority.audit_tail(50).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.kind == auth_core::audit::AuditKind::RefreshReuseDetected),
        "an audit event records the theft: {audit:?}"
    );
}

async fn concurrent_refreshes_of_one_token_share_one_successor(db: TestDb) {
    const RACERS: usize = 8;
    let server = Server::start(db).await;
    server.sign_up("alice").await;
    let first = server.login("alice").await;
    // A client whose tabs all refresh at once: every request is released together.
    let form = [("grant_type", "refresh_token"), ("client_id", WEB), ("refresh_token", first.refresh.as_str())];
    let requests = (0..RACERS).map(|_| server.form_request("/oauth/token", &form)).collect();
    let mut successors = Vec::new();
    for (status, _, body) in send_together(requests).await {
        assert_eq!(
            status,
            StatusCode::OK,
            "a race inside the grace is benign: {body}"
        );
        successors.push(Tokens::from_body(&body).refresh);
    }
    successors.dedup();
    assert_eq!(
        successors.len(),
        1,
        "exactly one successor exists: {successors:?}"
    );
    let (status, _, body) = read_json(server.refresh(&successors[0]).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let page = server.metrics().await;
    assert_eq!(
        metric_value(&page, "auth_refresh_reuse_detected_total", &[]),
        0.0
    );
}

async fn client_credentials_with_basic_and_with_form(db: TestDb) {
    let server = Server::start(db).await;
    let secret = server.register_backend().await;
    let form = [("grant_type", "client_credentials")];
    let response = server
        .form_request("/oauth/token", &form)
        .basic_auth(BACKEND, Some(&secret))
        .send()
        .await
        .unwrap();
    let (status, headers, body) = read_json(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(header(&headers, "cache-control"), "no-store");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "bookings:read");
    assert!(
        body.get("refresh_token").is_none(),
        "no session for a client: {body}"
    );
    let claims = server
        .state
        .authority
        .verify_access_token(body["access_token"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        (claims.sub.as_str(), claims.client_id.as_str(), claims.sid),
        (BACKEND, BACKEND, None)
    );

    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", BACKEND),
        ("client_secret", &secret),
    ];
    let (status, _, body) = read_json(server.post_form("/oauth/token", &form).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "bookings:read");
    let page = server.metrics().await;
    assert_eq!(
        metric_value(
            &page,
            "auth_tokens_issued_total",
            &["grant=\"client_credentials\""]
        ),
        2.0,
        "{page}"
    );

    // A scope the client may not have; a grant the public client may not use.
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", BACKEND),
        ("client_secret", &secret),
        ("scope", "bookings:write"),
    ];
    let (status, headers, body) = read_json(server.post_form("/oauth/token", &form).await).await;
    assert_oauth_error(
        status,
        &headers,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_scope",
    );
    let form = [("grant_type", "client_credentials"), ("client_id", WEB)];
    let (status, headers, body) = read_json(server.post_form("/oauth/token", &form).await).await;
    assert_oauth_error(
        status,
        &headers,
        &body,
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
    );
}

async fn wrong_client_secret_is_invalid_client(db: TestDb) {
    let server = Server::start(db).await;
    let secret = server.register_backend().await;
    let form = [("grant_type", "client_credentials")];
    let attempts = [
        server
            .form_request("/oauth/token", &form)
            .basic_auth(BACKEND, Some("wrong")),
        server
            .form_request("/oauth/token", &form)
            .basic_auth("no-such-client", Some(&secret)),
        server.form_request(
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", BACKEND),
                ("client_secret", "wrong"),
            ],
        ),
        // A confidential client without its secret; a public client with one.
        server.form_request(
            "/oauth/token",
            &[("grant_type", "client_credentials"), ("client_id", BACKEND)],
        ),
        server.form_request(
            "/oauth/token",
            &[
                ("grant_type", "password"),
                ("client_id", WEB),
                ("client_secret", "x"),
                ("username", "a"),
                ("password", "b"),
            ],
        ),
    ];
    for attempt in attempts {
        let (status, headers, body) = read_json(attempt.send().await.unwrap()).await;
        assert_oauth_error(
            status,
            &headers,
            &body,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        );
        assert!(
            header(&headers, "www-authenticate").starts_with("Basic"),
            "{headers:?}"
        );
    }
}

async fn both_basic_and_form_secret_is_refused(db: TestDb) {
    let server = Server::start(db).await;
    let secret = server.register_backend().await;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", BACKEND),
        ("client_secret", &secret),
    ];
    let response = server
        .form_request("/oauth/token", &form)
        .basic_auth(BACKEND, Some(&secret))
        .send()
        .await
        .unwrap();
    let (status, headers, body) = read_json(response).await;
    assert_oauth_error(
        status,
        &headers,
        &body,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    assert_eq!(
        body["error_description"],
        "request.multiple_client_authentication"
    );
    assert_eq!(header(&headers, "www-authenticate"), "Basic realm=\"auth\"");
    // A form client_id naming another client than Basic does.
    let form = [("grant_type", "client_credentials"), ("client_id", WEB)];
    let response = server
        .form_request("/oauth/token", &form)
        .basic_auth(BACKEND, Some(&secret))
        .send()
        .await
        .unwrap();
    let (status, headers, body) = read_json(response).await;
    assert_oauth_error(
        status,
        &headers,
        &body,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    assert_eq!(body["error_description"], "request.client_id_mismatch");
}

async fn duplicated_parameter_is_refused(db: TestDb) {
    let server = Server::start(db).await;
    server.sign_up("alice").await;
    let form = [
        ("grant_type", "password"),
        ("client_id", WEB),
        ("username", "alice"),
        ("password", PASSWORD),
        ("password", "another"),
    ];
    let (status, headers, body) = read_json(server.post_form("/oauth/token", &form).await).await;
    assert_oauth_error(
        status,
        &headers,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    assert_eq!(
        body["error_description"],
        "request.duplicate_parameter: password"
    );
}

async fn unsupported_grant_type(db: TestDb) {
    let server = Server::start(db).await;
    for grant in [
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:ietf:params:oauth:grant-type:device_code",
        "PASSWORD",
    ] {
        let form = [("grant_type", grant), ("client_id", WEB), ("code", "x")];
        let (status, headers, body) =
            read_json(server.post_form("/oauth/token", &form).await).await;
        assert_oauth_error(
            status,
            &headers,
            &body,
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        );
    }
}

async fn malformed_token_requests(db: TestDb) {
    let server = Server::start(db).await;
    // Missing parameters.
    for form in [
        vec![("client_id", WEB)],
        vec![
            ("grant_type", "password"),
            ("client_id", WEB),
            ("username", "alice"),
        ],
        vec![("grant_type", "refresh_token"), ("client_id", WEB)],
        vec![
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
        ],
    ] {
        let (status, headers, body) =
            read_json(server.post_form("/oauth/token", &form).await).await;
        assert_oauth_error(
            status,
            &headers,
            &body,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        );
    }
    // JSON is not what RFC 6749 speaks.
    let response = server
        .http
        .post(server.url("/oauth/token"))
        .header(CONTENT_TYPE, "application/json")
        .body(json!({ "grant_type": "password" }).to_string())
        .send()
        .await
        .unwrap();
    let (status, headers, body) = read_json(response).await;
    assert_oauth_error(
        status,
        &headers,
        &body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "invalid_request",
    );
    // Not UTF-8.
    let response = server
        .http
        .post(server.url("/oauth/token"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("grant_type=password&username=%FF%FE")
        .send()
        .await
        .unwrap();
    let (status, headers, body) = read_json(response).await;
    assert_oauth_error(
        status,
        &headers,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    // Only POST.
    let (status, headers, body) = read_json(server.get("/oauth/token").await).await;
    assert_problem(
        status,
        &headers,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "route.method_not_allowed",
    );
    assert!(header(&headers, "allow").contains("POST"), "{headers:?}");
    // A body beyond the 64 KiB limit is refused before it is parsed.
    let huge = "x".repeat(65 * 1024);
    let form = [
        ("grant_type", "password"),
        ("client_id", WEB),
        ("username", "alice"),
        ("password", huge.as_str()),
    ];
    let (status, headers, body) = read_json(server.post_form("/oauth/token", &form).await).await;
    assert_oauth_error(
        status,
        &headers,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request",
    );
}
