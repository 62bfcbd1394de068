//! Secrets stay out of caches: every answer of `/oauth/token`, `/oauth/introspect` and
//! `/oauth/revoke`, success or error, carries `Cache-Control: no-store` and `Pragma: no-cache`
//! (RFC 6749 section 5.1; RFC 7662 section 2.2 answers carry token state and claims).
//!
//! That secrets stay out of the logs is tested against a real process: `secret_logs.rs`.

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, RequestBuilder, StatusCode};

use crate::support::{BACKEND, Options, PASSWORD, Server, TestDb, WEB, header};

on_both_backends!(every_token_revocation_and_introspection_answer_is_no_store);

/// Sends `request` and checks the caching headers of its answer, whatever its status; returns
/// the status for the caller's own check.
async fn assert_no_store(what: &str, request: RequestBuilder) -> StatusCode {
    let response = request.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(header(&headers, "cache-control"), "no-store", "{what} ({status}): {headers:?} {body}");
    assert_eq!(header(&headers, "pragma"), "no-cache", "{what} ({status}): {headers:?} {body}");
    status
}

/// A form request to `path` with a raw body.
fn raw(server: &Server, path: &str, body: &'static [u8]) -> RequestBuilder {
    server
        .http
        .post(server.url(path))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
}

async fn every_token_revocation_and_introspection_answer_is_no_store(db: TestDb) {
    // One password attempt per account and minute, so that a lockout is one request away.
    let options = Options { login_attempts: 1, ..Options::default() };
    let server = Server::start_with(db, options).await;
    let secret = server.register_backend().await;
    for name in ["alice", "bob", "carol", "mallory"] {
        server.sign_up(name).await;
    }
    let tokens = server.login("alice").await;
    let token = "/oauth/token";
    let form = |params: &[(&str, &str)]| server.form_request(token, params);
    let huge = "x".repeat(70 * 1024);

    let cases: Vec<(&str, RequestBuilder, StatusCode)> = vec![
        ("password grant", form(&[("grant_type", "password"), ("client_id", WEB), ("username", "bob"), ("password", PASSWORD)]), StatusCode::OK),
        ("refresh grant", form(&[("grant_type", "refresh_token"), ("client_id", WEB), ("refresh_token", &tokens.refresh)]), StatusCode::OK),
        (
            "client credentials",
            form(&[("grant_type", "client_credentials")]).basic_auth(BACKEND, Some(&secret)),
            StatusCode::OK,
        ),
        ("wrong password", form(&[("grant_type", "password"), ("client_id", WEB), ("username", "mallory"), ("password", "not the password")]), StatusCode::BAD_REQUEST),
        ("locked out", form(&[("grant_type", "password"), ("client_id", WEB), ("username", "mallory"), ("password", PASSWORD)]), StatusCode::TOO_MANY_REQUESTS),
        ("unknown refresh token", form(&[("grant_type", "refresh_token"), ("client_id", WEB), ("refresh_token", "bm8")]), StatusCode::BAD_REQUEST),
        (
            "wrong client secret",
            form(&[("grant_type", "client_credentials")]).basic_auth(BACKEND, Some("wrong")),
            StatusCode::UNAUTHORIZED,
        ),
        ("grant not allowed to the client", form(&[("grant_type", "client_credentials"), ("client_id", WEB)]), StatusCode::BAD_REQUEST),
        ("scope not allowed", form(&[("grant_type", "password"), ("client_id", WEB), ("username", "carol"), ("password", PASSWORD), ("scope", "admin")]), StatusCode::BAD_REQUEST),
        ("unsupported grant type", form(&[("grant_type", "implicit"), ("client_id", WEB)]), StatusCode::BAD_REQUEST),
        ("missing grant type", form(&[("client_id", WEB)]), StatusCode::BAD_REQUEST),
        ("repeated parameter", form(&[("grant_type", "password"), ("grant_type", "password")]), StatusCode::BAD_REQUEST),
        ("form not UTF-8", raw(&server, token, b"grant_type=password&username=%FF"), StatusCode::BAD_REQUEST),
        ("JSON body", server.http.post(server.url(token)).json(&serde_json::json!({"grant_type": "password"})), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("body over 64 KiB", form(&[("grant_type", "password"), ("password", &huge)]), StatusCode::PAYLOAD_TOO_LARGE),
        ("GET", server.http.request(Method::GET, server.url(token)), StatusCode::METHOD_NOT_ALLOWED),
        // Introspection: active and inactive tokens, and its refusals.
        (
            "introspect an access token",
            server.form_request("/oauth/introspect", &[("token", &tokens.access)]).basic_auth(BACKEND, Some(&secret)),
            StatusCode::OK,
        ),
        (
            "introspect an unknown token",
            server.form_request("/oauth/introspect", &[("token", "unknown")]).basic_auth(BACKEND, Some(&secret)),
            StatusCode::OK,
        ),
        ("introspect without a client", server.form_request("/oauth/introspect", &[("token", &tokens.access)]), StatusCode::BAD_REQUEST),
        (
            "introspect as a public client",
            server.form_request("/oauth/introspect", &[("token", &tokens.access), ("client_id", WEB)]),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "introspect without a token",
            server.form_request("/oauth/introspect", &[]).basic_auth(BACKEND, Some(&secret)),
            StatusCode::BAD_REQUEST,
        ),
        ("introspect a JSON body", server.http.post(server.url("/oauth/introspect")).json(&serde_json::json!({})), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ("GET introspect", server.http.get(server.url("/oauth/introspect")), StatusCode::METHOD_NOT_ALLOWED),
        // Revocation.
        ("revoke", server.form_request("/oauth/revoke", &[("token", "unknown"), ("client_id", WEB)]), StatusCode::OK),
        ("revoke without a token", server.form_request("/oauth/revoke", &[("client_id", WEB)]), StatusCode::BAD_REQUEST),
        ("GET revoke", server.http.get(server.url("/oauth/revoke")), StatusCode::METHOD_NOT_ALLOWED),
    ];
    for (what, request, expected) in cases {
        assert_eq!(assert_no_store(what, request).await, expected, "{what}");
    }

    // The per-IP refusal is answered before any handler runs (a server of its own).
    let limited = Server::start_with(crate::support::sqlite(), Options { per_ip_burst: 1, ..Options::default() }).await;
    let request = || limited.form_request(token, &[("grant_type", "password")]);
    assert_eq!(assert_no_store("first request", request()).await, StatusCode::BAD_REQUEST);
    assert_eq!(assert_no_store("per-IP limit", request()).await, StatusCode::TOO_MANY_REQUESTS);
}
