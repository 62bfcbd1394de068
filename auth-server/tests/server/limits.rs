//! Rate limits: the spec's scope-tied limits on bearer requests (with the IETF RateLimit headers),
//! the per-account login backoff (which parallel requests cannot bypass), the budget of failed
//! logins per source address, and the per-IP limit on credential endpoints. The first two also run on Redis when `AUTH_TEST_REDIS_URL` is set.

use auth_core::audit::AuditKind;
use reqwest::StatusCode;

use crate::support::{
    Options, PASSWORD, Server, TestDb, assert_oauth_error, assert_problem, header, metric_value,
    read_json, unique_suffix,
};

on_both_backends!(
    scope_limit_refuses_with_ratelimit_headers,
    parallel_wrong_passwords_cannot_bypass_the_backoff,
    nobody_can_lock_the_owner_out_of_a_trusted_device,
    spraying_from_one_address_is_throttled_across_accounts,
    per_ip_limit_on_credential_endpoints
);

/// The same cases with the limits kept in Redis (over SQLite).
mod redis {
    #[cfg_attr(not(auth_test_redis), ignore = "AUTH_TEST_REDIS_URL was not set when the tests were built")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scope_limit_refuses_with_ratelimit_headers() {
        let Some(url) = crate::support::redis_url("scope_limit_refuses_with_ratelimit_headers")
        else {
            return;
        };
        super::scope_limit(crate::support::sqlite(), Some(url)).await;
    }

    #[cfg_attr(not(auth_test_redis), ignore = "AUTH_TEST_REDIS_URL was not set when the tests were built")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_wrong_passwords_cannot_bypass_the_backoff() {
        let Some(url) =
            crate::support::redis_url("parallel_wrong_passwords_cannot_bypass_the_backoff")
        else {
            return;
        };
        super::login_backoff(crate::support::sqlite(), Some(url)).await;
    }

    #[cfg_attr(not(auth_test_redis), ignore = "AUTH_TEST_REDIS_URL was not set when the tests were built")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spraying_from_one_address_is_throttled_across_accounts() {
        let Some(url) = crate::support::redis_url("spraying_from_one_address_is_throttled_across_accounts") else {
            return;
        };
        super::spraying(crate::support::sqlite(), Some(url)).await;
    }
}

async fn scope_limit_refuses_with_ratelimit_headers(db: TestDb) {
    scope_limit(db, None).await;
}

async fn parallel_wrong_passwords_cannot_bypass_the_backoff(db: TestDb) {
    login_backoff(db, None).await;
}

/// `bookings:write` allows 3 requests a minute here; every bearer request of a token holding that
/// scope is charged to it, per user.
async fn scope_limit(db: TestDb, redis_url: Option<String>) {
    let options = Options {
        write_limit: (3, "1m"),
        redis_url,
        ..Options::default()
    };
    let server = Server::start_with(db, options).await;
    // Unique names: Redis outlives the test's database.
    let (alice, bob) = (
        format!("alice_{}", unique_suffix()),
        format!("bob_{}", unique_suffix()),
    );
    server.sign_up(&alice).await;
    server.sign_up(&bob).await;
    let tokens = server.login(&alice).await;

    for remaining in [2, 1, 0] {
        let response = server.get_bearer("/userinfo", &tokens.access).await;
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(
            header(headers, "ratelimit-policy"),
            "\"bookings:write\";q=3;w=60",
            "the tightest scope decides"
        );
        let ratelimit = header(headers, "ratelimit");
        assert!(
            ratelimit.starts_with(&format!("\"bookings:write\";r={remaining};t=")),
            "{ratelimit}"
        );
        assert!(
            headers.get("retry-after").is_none(),
            "allowed requests carry no Retry-After"
        );
    }
    let (status, headers, body) =
        read_json(server.get_bearer("/v1/sessions", &tokens.access).await).await;
    assert_problem(
        status,
        &headers,
        &body,
        StatusCode::TOO_MANY_REQUESTS,
        "ratelimit.exceeded",
    );
    assert_eq!(
        header(&headers, "ratelimit-policy"),
        "\"bookings:write\";q=3;w=60"
    );
    assert!(
        header(&headers, "ratelimit").starts_with("\"bookings:write\";r=0;t="),
        "{headers:?}"
    );
    // One request every 20 s refills; the exact wait depends on how long the requests took.
    let retry: u64 = header(&headers, "retry-after")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=20).contains(&retry), "Retry-After {retry}");

    // The limit belongs to the user, not to the token: a refreshed token is refused as well ...
    let (_, _, refreshed) = read_json(server.refresh(&tokens.refresh).await).await;
    let refreshed = refreshed["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        server.get_bearer("/userinfo", &refreshed).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // ... while another user has a full allowance, and so does a token of alice's without the scope.
    let bobs = server.login(&bob).await;
    assert_eq!(
        server.get_bearer("/userinfo", &bobs.access).await.status(),
        StatusCode::OK
    );
    let form = [
        ("grant_type", "password"),
        ("client_id", crate::support::WEB),
        ("username", &alice),
        ("password", PASSWORD),
        ("scope", "bookings:read"),
    ];
    let (_, _, read_only) = read_json(server.post_form("/oauth/token", &form).await).await;
    let response = server
        .get_bearer("/userinfo", read_only["access_token"].as_str().unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(response.headers(), "ratelimit-policy"),
        "\"bookings:read\";q=120;w=60"
    );

    let page = server.metrics().await;
    assert_eq!(
        metric_value(
            &page,
            "auth_rate_limit_rejections_total",
            &["limit=\"bookings:write\""]
        ),
        2.0,
        "{page}"
    );
}

/// With 5 attempts per account, 20 wrong passwords sent at once: at most 5 reach the password
/// check, the others are refused before it with 429 and Retry-After.
async fn login_backoff(db: TestDb, redis_url: Option<String>) {
    let options = Options {
        login_attempts: 5,
        redis_url,
        ..Options::default()
    };
    login_backoff_with(db, options, 20).await;
}

/// `attempts` wrong passwords sent at once against one account allowed `options.login_attempts`
/// per minute: at most that many reach the password check, the others are refused before it with
/// 429 and Retry-After; then even the right password is refused.
pub(crate) async fn login_backoff_with(db: TestDb, options: Options, attempts: usize) {
    let allowed = usize::try_from(options.login_attempts).unwrap();
    assert!(attempts > allowed, "the test must try more than the allowance");
    let server = Server::start_with(db, options).await;
    let username = format!("victim_{}", unique_suffix());
    let user_id = server.sign_up(&username).await;
    let other = format!("bystander_{}", unique_suffix());
    server.sign_up(&other).await;

    // Each attempt on a task of its own, all released at once, so that they race in the server.
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(attempts));
    let mut tasks = Vec::new();
    for i in 0..attempts {
        let request = server.form_request(
            "/oauth/token",
            &[
                ("grant_type", "password"),
                ("client_id", crate::support::WEB),
                // Case variants name the same account and share its allowance.
                (
                    "username",
                    &if i % 2 == 0 {
                        username.clone()
                    } else {
                        username.to_uppercase()
                    },
                ),
                ("password", &format!("wrong password {i}")),
            ],
        );
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            read_json(request.send().await.unwrap()).await
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let mut checked = 0;
    let mut refused = 0;
    for (status, headers, body) in &answers {
        match *status {
            StatusCode::BAD_REQUEST => {
                assert_eq!(body["error"], "invalid_grant", "{body}");
                checked += 1;
            }
            StatusCode::TOO_MANY_REQUESTS => {
                assert_oauth_error(
                    *status,
                    headers,
                    body,
                    StatusCode::TOO_MANY_REQUESTS,
                    "invalid_request",
                );
                assert_eq!(body["error_description"], "auth.too_many_attempts");
                let retry: u64 = header(headers, "retry-after")
                    .parse()
                    .expect("Retry-After in seconds");
                assert!((1..=60).contains(&retry), "Retry-After {retry}");
                refused += 1;
            }
            other => panic!("unexpected answer {other}: {body}"),
        }
    }
    assert_eq!(checked + refused, attempts);
    assert!(
        (1..=allowed).contains(&checked),
        "{checked} attempts reached the password check"
    );

    // The audit log agrees: the checked attempts failed, the rest were lockouts (each kind one
    // row, and a summary counting the repeats once the counts are written).
    server.state.authority.flush_refusals(true).await.unwrap();
    let audit = server.state.authority.audit_tail(200).await.unwrap();
    let counted = |kind: AuditKind| -> usize {
        audit
            .iter()
            .filter(|e| e.kind == kind && e.user_id.as_deref() == Some(user_id.as_str()))
            .map(|e| e.detail.get("repeated").and_then(serde_json::Value::as_u64).map_or(1, |n| usize::try_from(n).unwrap()))
            .sum()
    };
    assert_eq!((counted(AuditKind::LoginFailed), counted(AuditKind::LoginLockedOut)), (checked, refused));

    // While locked out, even the right password is not checked; other accounts are unaffected.
    let (status, _, body) = read_json(server.password_grant(&username, PASSWORD).await).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    server.login(&other).await;
    let page = server.metrics().await;
    assert_eq!(
        metric_value(
            &page,
            "auth_rate_limit_rejections_total",
            &["limit=\"login\""]
        ),
        f64::from(u32::try_from(refused + 1).unwrap()),
        "every refusal and the locked-out right password are counted: {page}"
    );
}

/// The lockout slows guessing but cannot be turned against the owner: requests that fail client
/// authentication charge nothing, and a device that logged in before keeps its own allowance
/// (its device token) while guesses from elsewhere exhaust the one of unknown devices.
async fn nobody_can_lock_the_owner_out_of_a_trusted_device(db: TestDb) {
    let server = Server::start_with(db, Options { login_attempts: 5, ..Options::default() }).await;
    let victim = format!("victim_{}", unique_suffix());
    let victim_id = server.sign_up(&victim).await;
    let bystander = format!("bystander_{}", unique_suffix());
    server.sign_up(&bystander).await;
    // The owner's device logged in before: it holds a device token.
    let (status, _, body) = login(&server, &victim, PASSWORD, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let device = body["device_token"].as_str().expect("a device token").to_owned();
    let (_, _, body) = login(&server, &bystander, PASSWORD, None).await;
    let bystander_device = body["device_token"].as_str().unwrap().to_owned();

    // Requests that fail client authentication charge no account.
    for _ in 0..10 {
        let request = server.form_request(
            "/oauth/token",
            &[("grant_type", "password"), ("client_id", "no-such-client"), ("username", &victim), ("password", "guess")],
        );
        let (status, headers, body) = read_json(request.send().await.unwrap()).await;
        assert_oauth_error(status, &headers, &body, StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let (status, _, body) = login(&server, &victim, PASSWORD, None).await;
    assert_eq!(status, StatusCode::OK, "client failures spent nothing: {body}");

    // Guesses from unknown devices exhaust the account's shared allowance ...
    let mut refused = false;
    for i in 0..10 {
        let (status, _, body) = login(&server, &victim, &format!("guess {i}"), None).await;
        match status {
            StatusCode::BAD_REQUEST => assert_eq!(body["error"], "invalid_grant"),
            StatusCode::TOO_MANY_REQUESTS => {
                refused = true;
                break;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(refused, "guessing is throttled");
    // ... so the right password from an unknown device waits too, as does a device token that is
    // another user's, forged, or oversized ...
    let forged = "A".repeat(90);
    let huge = "A".repeat(300);
    for token in [None, Some(bystander_device.as_str()), Some(forged.as_str()), Some(huge.as_str())] {
        let (status, _, body) = login(&server, &victim, PASSWORD, token).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{token:?}: {body}");
    }
    // ... but the owner's device logs in, and gets a new device token.
    let (status, _, body) = login(&server, &victim, PASSWORD, Some(&device)).await;
    assert_eq!(status, StatusCode::OK, "the trusted device is not locked out: {body}");
    let renewed = body["device_token"].as_str().unwrap();
    assert_ne!(renewed, device);
    let (status, _, body) = login(&server, &victim, PASSWORD, Some(renewed)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Other accounts never shared the allowance.
    let (status, _, _) = login(&server, &bystander, PASSWORD, None).await;
    assert_eq!(status, StatusCode::OK);

    // Lockouts name the account and the kind of device; no event stores the unknown client id.
    let audit = server.state.authority.audit_tail(200).await.unwrap();
    let lockouts: Vec<_> = audit.iter().filter(|e| e.kind == AuditKind::LoginLockedOut).collect();
    assert!(!lockouts.is_empty());
    for event in &lockouts {
        assert_eq!(event.user_id.as_deref(), Some(victim_id.as_str()));
        assert_eq!(event.detail["limit"], "account");
    }
    assert!(audit.iter().all(|e| e.client_id.as_deref() != Some("no-such-client")), "unauthenticated client ids are not stored");
}

/// A password grant of the web client, with a device token when given.
async fn login(
    server: &Server,
    username: &str,
    password: &str,
    device: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, serde_json::Value) {
    password_login(server, &server.http, username, password, device).await
}

/// A password grant of the web client sent by `http` (whose source address the test may choose),
/// with a device token when given.
async fn password_login(
    server: &Server,
    http: &reqwest::Client,
    username: &str,
    password: &str,
    device: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, serde_json::Value) {
    let mut form = vec![("grant_type", "password"), ("client_id", crate::support::WEB), ("username", username), ("password", password)];
    if let Some(device) = device {
        form.push(("device_token", device));
    }
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(&form).finish();
    let request = http
        .post(server.url("/oauth/token"))
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body);
    read_json(request.send().await.unwrap()).await
}

/// Password spraying (one password on many accounts, under every account's allowance) meets the
/// address's budget of failures; correct logins spend none of it, a trusted device is not
/// refused, and another address has a budget of its own.
async fn spraying_from_one_address_is_throttled_across_accounts(db: TestDb) {
    spraying(db, None).await;
}

async fn spraying(db: TestDb, redis_url: Option<String>) {
    let server = Server::start_with(db, Options { login_failures_per_source: 5, redis_url, ..Options::default() }).await;
    let suffix = unique_suffix();
    let owner = format!("owner_{suffix}");
    server.sign_up(&owner).await;
    let mut device = String::new();
    for _ in 0..8 {
        let (status, _, body) = login(&server, &owner, PASSWORD, None).await;
        assert_eq!(status, StatusCode::OK, "correct logins spend nothing: {body}");
        device = body["device_token"].as_str().unwrap().to_owned();
    }
    for i in 0..5 {
        let (status, headers, body) = login(&server, &format!("target_{i}_{suffix}"), "Summer2026!", None).await;
        assert_oauth_error(status, &headers, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let (status, headers, body) = login(&server, &format!("target_5_{suffix}"), "Summer2026!", None).await;
    assert_oauth_error(status, &headers, &body, StatusCode::TOO_MANY_REQUESTS, "invalid_request");
    assert_eq!(body["error_description"], "auth.too_many_attempts");
    let retry: u64 = header(&headers, "retry-after").parse().unwrap();
    assert!((1..=720).contains(&retry), "one failure comes back every 720 s: {retry}");
    // An unknown device on this address waits as well, even with the right password ...
    let (status, _, body) = login(&server, &owner, PASSWORD, None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    // ... but not the owner's trusted device.
    let (status, _, body) = login(&server, &owner, PASSWORD, Some(&device)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Another address has its own budget.
    let elsewhere = reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 2])).build().unwrap();
    let (status, headers, body) = password_login(&server, &elsewhere, &format!("target_6_{suffix}"), "Summer2026!", None).await;
    assert_oauth_error(status, &headers, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    let audit = server.state.authority.audit_tail(100).await.unwrap();
    assert!(
        audit.iter().any(|e| e.kind == AuditKind::LoginLockedOut && e.detail["limit"] == "source"),
        "the refusal is audited"
    );
}

async fn per_ip_limit_on_credential_endpoints(db: TestDb) {
    let options = Options {
        per_ip_burst: 3,
        ..Options::default()
    };
    let server = Server::start_with(db, options).await;
    // Three credential requests of any kind pass the per-IP limit (and fail for their own reasons).
    assert_eq!(
        server
            .post_form("/oauth/token", &[("grant_type", "password")])
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        server.post_form("/oauth/revoke", &[]).await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        server.post_form("/oauth/token", &[]).await.status(),
        StatusCode::BAD_REQUEST
    );
    // Introspection is not limited per IP: resource servers call it for the requests they serve,
    // and it takes a confidential client's secret, which cannot be guessed.
    for _ in 0..10 {
        assert_eq!(
            server.post_form("/oauth/introspect", &[]).await.status(),
            StatusCode::BAD_REQUEST
        );
    }
    // The fourth is refused before its handler runs, in the route's own error format: RFC 6749
    // JSON on /oauth/*, problem+json on /v1/users.
    for path in ["/oauth/token", "/v1/users"] {
        let (status, headers, body) =
            read_json(server.post_form(path, &[("grant_type", "password")]).await).await;
        if path == "/v1/users" {
            assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(header(&headers, "content-type"), "application/problem+json");
            assert_eq!(body["code"], "ratelimit.per_ip");
        } else {
            assert_oauth_error(
                status,
                &headers,
                &body,
                StatusCode::TOO_MANY_REQUESTS,
                "slow_down",
            );
            assert_eq!(body["error_description"], "ratelimit.per_ip");
        }
        let retry: u64 = header(&headers, "retry-after")
            .parse()
            .expect("Retry-After in seconds");
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
    }
    assert_eq!(
        server.post_form("/oauth/introspect", &[]).await.status(),
        StatusCode::BAD_REQUEST,
        "introspection still answers once the credential endpoints refuse"
    );
    // Endpoints that take no credentials are not limited per IP.
    for path in [
        "/healthz",
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",
    ] {
        assert_eq!(server.get(path).await.status(), StatusCode::OK, "{path}");
    }
    let page = server.metrics().await;
    assert_eq!(
        metric_value(
            &page,
            "auth_rate_limit_rejections_total",
            &["limit=\"per_ip\""]
        ),
        2.0,
        "{page}"
    );
}
