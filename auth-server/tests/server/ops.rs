//! `GET /healthz`, `GET /readyz`, `GET /metrics`, and what an unknown route answers.

use reqwest::StatusCode;

use crate::support::{Server, TestDb, assert_problem, header, metric_value, read_json};

on_both_backends!(
    health_and_readiness,
    metrics_count_requests_tokens_and_latency,
    unknown_route_and_wrong_method_are_problems
);

async fn health_and_readiness(db: TestDb) {
    let server = Server::start(db).await;
    let health = server.get("/healthz").await;
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.text().await.unwrap(), "ok");
    let ready = server.get("/readyz").await;
    assert_eq!(
        ready.status(),
        StatusCode::OK,
        "the database answers on {}",
        server.backend()
    );
    assert_eq!(ready.text().await.unwrap(), "ready");
}

async fn metrics_count_requests_tokens_and_latency(db: TestDb) {
    let server = Server::start(db).await;
    server.sign_up("alice").await;
    server.login("alice").await;
    let wrong = server.password_grant("alice", "not the password").await;
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    let _ = server.get("/no/such/route/42").await;

    let response = server.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(header(response.headers(), "content-type").starts_with("text/plain; version=0.0.4"));
    let page = response.text().await.unwrap();
    let token_route = ["route=\"/oauth/token\"", "method=\"POST\""];
    assert_eq!(
        metric_value(
            &page,
            "http_requests_total",
            &[&token_route[..], &["status=\"200\""]].concat()
        ),
        1.0,
        "{page}"
    );
    assert_eq!(
        metric_value(
            &page,
            "http_requests_total",
            &[&token_route[..], &["status=\"400\""]].concat()
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &page,
            "http_requests_total",
            &["route=\"/v1/users\"", "status=\"201\""]
        ),
        1.0
    );
    assert_eq!(
        metric_value(&page, "auth_tokens_issued_total", &["grant=\"password\""]),
        1.0
    );
    // The latency histogram of the token route: every bucket line, a count and a sum.
    assert!(
        page.contains("# TYPE http_request_duration_seconds histogram"),
        "{page}"
    );
    let buckets = page.lines().filter(|l| {
        l.starts_with("http_request_duration_seconds_bucket{")
            && l.contains("route=\"/oauth/token\"")
    });
    assert!(buckets.count() >= 10, "{page}");
    assert_eq!(
        metric_value(&page, "http_request_duration_seconds_count", &token_route),
        2.0,
        "{page}"
    );
    // Unknown paths share one label value instead of creating new series.
    assert!(
        !page.contains("/no/such/route/42"),
        "raw paths must not become labels"
    );
    assert_eq!(
        metric_value(
            &page,
            "http_requests_total",
            &["route=\"unmatched\"", "status=\"404\""]
        ),
        1.0,
        "{page}"
    );
}

async fn unknown_route_and_wrong_method_are_problems(db: TestDb) {
    let server = Server::start(db).await;
    for path in ["/nope", "/oauth", "/v1/users/alice", "/.well-known/other"] {
        let (status, headers, body) = read_json(server.get(path).await).await;
        assert_problem(
            status,
            &headers,
            &body,
            StatusCode::NOT_FOUND,
            "route.not_found",
        );
        assert_eq!(body["type"], "about:blank");
    }
    let response = server
        .http
        .delete(server.url("/userinfo"))
        .send()
        .await
        .unwrap();
    let (status, headers, body) = read_json(response).await;
    assert_problem(
        status,
        &headers,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "route.method_not_allowed",
    );
    // GET and POST (OpenID Connect Core 5.3.1), and HEAD with GET.
    assert_eq!(header(&headers, "allow"), "GET,HEAD,POST");
}
