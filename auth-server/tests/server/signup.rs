//! `POST /v1/users`: sign-up, its password policy and its problem+json errors.

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::json;

use crate::support::{Options, Server, TestDb, assert_problem, header, metric_value, read_json};

on_both_backends!(
    sign_up_creates_a_user,
    duplicate_username_is_a_conflict,
    look_alike_and_invisible_usernames_are_refused,
    password_policy_bounds_without_truncation,
    missing_required_claim_is_refused,
    undeclared_or_mistyped_claims_are_refused,
    wrong_content_type_is_415,
    malformed_json_is_400,
    sign_ups_from_one_address_are_limited_by_the_spec,
);

async fn sign_up_creates_a_user(db: TestDb) {
    let server = Server::start(db).await;
    let response = server
        .post_user(&json!({ "username": "  Alice ", "password": "correct horse battery staple", "invitation": server.invitation("t-1").await }))
        .await;
    let (status, _, body) = read_json(response).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["username"], "alice",
        "usernames are trimmed and lowercased"
    );
    assert_eq!(body["claims"], json!({ "tenant_id": "t-1" }));
    assert!(
        body["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{body}"
    );
    assert!(body["created_at"].is_i64(), "{body}");
    assert!(
        body.get("password").is_none() && body.get("password_hash").is_none(),
        "no secret comes back: {body}"
    );
    // The new account can log in at once.
    server.login("alice").await;
}

async fn duplicate_username_is_a_conflict(db: TestDb) {
    let server = Server::start(db).await;
    server.sign_up("bob").await;
    // The same name in another case (and Unicode form) is the same account.
    for name in ["bob", "BOB", "\u{ff22}ob"] {
        let response = server
            .post_user(
                &json!({ "username": name, "password": "another password", "invitation": server.invitation("t-2").await }),
            )
            .await;
        let (status, headers, body) = read_json(response).await;
        assert_problem(
            status,
            &headers,
            &body,
            StatusCode::CONFLICT,
            "input.conflict",
        );
    }
}

/// Confusable usernames (the outside attack's finding): RFC 8265 refuses invisible, bidi and
/// compatibility characters; a name whose UTS #39 skeleton is an existing user's is a conflict,
/// also for users stored before skeletons were.
async fn look_alike_and_invisible_usernames_are_refused(db: TestDb) {
    let server = Server::start(db).await;
    server.sign_up("paypal").await;
    let sign_up = |name: &'static str| {
        let server = &server;
        async move {
            let body = json!({ "username": name, "password": "another password", "invitation": server.invitation("t-2").await });
            read_json(server.post_user(&body).await).await
        }
    };
    // Cyrillic а twice, Greek ο and fullwidth letters: the same name to a reader.
    for name in ["p\u{430}yp\u{430}l", "\u{ff30}\u{ff21}\u{ff39}\u{ff30}\u{ff21}\u{ff2c}", "PAYPAL"] {
        let (status, headers, body) = sign_up(name).await;
        assert_problem(status, &headers, &body, StatusCode::CONFLICT, "input.conflict");
    }
    // Zero-width, bidi override, soft hyphen, ligature: refused outright, naming the character.
    for name in ["pay\u{200b}pal", "\u{202e}lapyap", "pay\u{ad}pal", "\u{fb01}nance"] {
        let (status, headers, body) = sign_up(name).await;
        assert_problem(status, &headers, &body, StatusCode::BAD_REQUEST, "input.invalid");
        assert!(body["detail"].as_str().unwrap().contains("U+"), "{body}");
    }
    // A user stored before skeletons were gets one at the next start (migration), and then
    // shuts out look-alikes too.
    let carol = server.sign_up("carol").await;
    let store = server.sql_store().await;
    sqlx::query("UPDATE users SET username_skeleton = NULL WHERE id = $1").bind(&carol).execute(store.pool()).await.unwrap();
    let (status, _, body) = sign_up("c\u{430}rol").await;
    assert_eq!(status, StatusCode::CREATED, "without carol's skeleton the look-alike passes: {body}");
    let lookalike = body["id"].as_str().unwrap().to_owned();
    sqlx::query("DELETE FROM users WHERE id = $1").bind(&lookalike).execute(store.pool()).await.unwrap();
    auth_core::store::Store::migrate(&store).await.unwrap();
    let skeleton: Option<String> = sqlx::query_scalar("SELECT username_skeleton FROM users WHERE id = $1")
        .bind(&carol)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(skeleton.as_deref(), Some("carol"));
    let (status, headers, body) = sign_up("c\u{430}rol").await;
    assert_problem(status, &headers, &body, StatusCode::CONFLICT, "input.conflict");
}

async fn password_policy_bounds_without_truncation(db: TestDb) {
    let server = Server::start(db).await;
    // 7 characters: under the spec's minimum of 8.
    let response = server
        .post_user(&json!({ "username": "short", "password": "1234567", "tenant_id": "t-1" }))
        .await;
    let (status, headers, body) = read_json(response).await;
    assert_problem(
        status,
        &headers,
        &body,
        StatusCode::BAD_REQUEST,
        "input.invalid",
    );
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("password")),
        "{body}"
    );

    // 64 characters (ASVS 2.1.2) are accepted, and every one of them counts.
    let long: String = ('a'..='z').cycle().take(64).collect();
    server.sign_up_with("long", &long).await;
    let (status, _, body) = read_json(server.password_grant("long", &long).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = read_json(server.password_grant("long", &long[..63]).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "a prefix is not the password"
    );

    // Beyond bcrypt's 72 bytes too: a password differing only in its last character is another one.
    let longer: String = ('a'..='z').cycle().take(100).collect();
    server.sign_up_with("longer", &longer).await;
    let mut other = longer.clone();
    other.replace_range(99.., "!");
    let (status, _, _) = read_json(server.password_grant("longer", &other).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = read_json(server.password_grant("longer", &longer).await).await;
    assert_eq!(status, StatusCode::OK);
}

async fn missing_required_claim_is_refused(db: TestDb) {
    let server = Server::start(db).await;
    let response = server
        .post_user(&json!({ "username": "carol", "password": "correct horse battery staple" }))
        .await;
    let (status, headers, body) = read_json(response).await;
    assert_problem(
        status,
        &headers,
        &body,
        StatusCode::BAD_REQUEST,
        "input.invalid",
    );
    assert_eq!(body["detail"], "tenant_id: is required and comes with an invitation");
    // Nothing was created: the name is still free.
    server.sign_up("carol").await;
}

async fn undeclared_or_mistyped_claims_are_refused(db: TestDb) {
    let server = Server::start(db).await;
    let cases = [
        json!({ "username": "dave", "password": "correct horse battery staple", "tenant_id": 7 }),
        json!({ "username": "dave", "password": "correct horse battery staple", "tenant_id": "t", "role": "admin" }),
        json!({ "username": 12, "password": "correct horse battery staple", "tenant_id": "t" }),
        json!({ "password": "correct horse battery staple", "tenant_id": "t" }),
    ];
    for case in cases {
        let (status, headers, body) = read_json(server.post_user(&case).await).await;
        assert_problem(
            status,
            &headers,
            &body,
            StatusCode::BAD_REQUEST,
            "input.invalid",
        );
    }
}

async fn wrong_content_type_is_415(db: TestDb) {
    let server = Server::start(db).await;
    let body = json!({ "username": "erin", "password": "correct horse battery staple", "invitation": server.invitation("t-1").await }).to_string();
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut request = server.http.post(server.url("/v1/users")).body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        let (status, headers, problem) = read_json(request.send().await.unwrap()).await;
        assert_problem(
            status,
            &headers,
            &problem,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "request.unsupported_media_type",
        );
    }
    // A charset parameter is fine.
    let request = server
        .http
        .post(server.url("/v1/users"))
        .header(CONTENT_TYPE, "application/json; charset=utf-8");
    let response = request.body(body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

async fn malformed_json_is_400(db: TestDb) {
    let server = Server::start(db).await;
    for body in [
        "{\"username\": \"frank\",",
        "[1, 2]",
        "\"text\"",
        "",
        "{\"username\": \"a\"} trailing",
    ] {
        let request = server
            .http
            .post(server.url("/v1/users"))
            .header(CONTENT_TYPE, "application/json");
        let (status, headers, problem) = read_json(request.body(body).send().await.unwrap()).await;
        assert_problem(
            status,
            &headers,
            &problem,
            StatusCode::BAD_REQUEST,
            "request.malformed",
        );
    }
    let huge =
        json!({ "username": "frank", "password": "x".repeat(65 * 1024), "tenant_id": "t-1" });
    let (status, headers, problem) = read_json(server.post_user(&huge).await).await;
    assert_problem(
        status,
        &headers,
        &problem,
        StatusCode::PAYLOAD_TOO_LARGE,
        "request.too_large",
    );
}

/// The spec's `sign_up.per_source` (3 an hour here): the fourth sign-up from one address waits,
/// whatever the per-IP request limit allows; accounts made before are unaffected.
async fn sign_ups_from_one_address_are_limited_by_the_spec(db: TestDb) {
    sign_up_limit(db, None).await;
}

/// With Redis unreachable the sign-up limit is decided from memory: still applied, never open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_up_limit_holds_with_redis_down() {
    sign_up_limit(crate::support::sqlite(), Some("redis://127.0.0.1:1".to_owned())).await;
}

async fn sign_up_limit(db: TestDb, redis_url: Option<String>) {
    let server = Server::start_with(db, Options { sign_ups_per_hour: 3, redis_url, ..Options::default() }).await;
    for name in ["one", "two", "three"] {
        server.sign_up(name).await;
    }
    let invitation = server.invitation("t-1").await;
    let (status, headers, body) = read_json(
        server.post_user(&json!({ "username": "four", "password": "correct horse battery staple", "invitation": invitation })).await,
    )
    .await;
    assert_problem(status, &headers, &body, StatusCode::TOO_MANY_REQUESTS, "ratelimit.sign_up");
    let retry: u64 = header(&headers, "retry-after").parse().expect("Retry-After in seconds");
    assert!((1..=1200).contains(&retry), "one sign-up comes back every 20 minutes: {retry}");
    assert!(server.state.authority.user_by_username("four").await.unwrap().is_none());
    server.login("one").await;
    if let Some(fallback) = &server.state.fallback {
        assert!(fallback.fallbacks() > 0 && fallback.is_degraded(), "the decisions came from memory");
    }
    let page = server.metrics().await;
    assert_eq!(metric_value(&page, "auth_rate_limit_rejections_total", &["limit=\"sign_up\""]), 1.0, "{page}");
}
