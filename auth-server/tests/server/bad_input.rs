//! The bad-input table: hostile or broken requests, each answered with a clear 4xx in the
//! endpoint's error format (RFC 6749 JSON on `/oauth/*`, problem+json elsewhere), after which the
//! server still answers `/healthz` and still logs a user in.
//!
//! Cases other modules already cover, not repeated here:
//! - over-long bodies (413) on `/oauth/token` and `/v1/users`: `grants::malformed_token_requests`,
//!   `signup::malformed_json_is_400`;
//! - wrong content types (415): `signup::wrong_content_type_is_415`, `grants::malformed_token_requests`;
//! - malformed JSON and missing members: `signup::malformed_json_is_400`,
//!   `signup::missing_required_claim_is_refused`, `signup::undeclared_or_mistyped_claims_are_refused`;
//! - missing and repeated form parameters, a form that is not UTF-8:
//!   `grants::malformed_token_requests`, `grants::duplicated_parameter_is_refused`;
//! - usernames differing by case or compatibility form (`BOB`, fullwidth `Ｂob`):
//!   `signup::duplicate_username_is_a_conflict`;
//! - garbage and refresh tokens as bearer tokens: `bearer::missing_garbage_and_expired_tokens_are_401`.

use std::time::Duration;

use base64::Engine as _;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::{
    BACKEND, PASSWORD, Server, TestDb, WEB, assert_oauth_error, assert_problem, header, read_json,
};

on_both_backends!(
    form_and_body_limits_on_revocation_and_introspection,
    repeated_json_members_are_refused,
    json_that_is_not_utf8_is_refused,
    huge_tokens_are_refused_without_harm,
    header_bytes_that_are_not_utf8_are_refused,
    usernames_differing_by_normalization_are_one_account,
    sql_and_path_characters_in_usernames_are_just_text,
    sql_and_path_characters_in_a_token_kid_are_refused,
    nul_in_a_session_id_is_a_404,
    cr_and_lf_in_header_values,
);

/// 64 KiB: the largest accepted body, and the size of the tokens below.
const KIB_64: usize = 64 * 1024;

/// A server with `alice` signed up.
async fn start(db: TestDb) -> Server {
    let server = Server::start(db).await;
    server.sign_up("alice").await;
    server
}

/// The server still answers: `/healthz` is 200 and `alice` logs in.
async fn assert_still_serves(server: &Server) {
    let response = server.get("/healthz").await;
    assert_eq!(response.status(), StatusCode::OK, "/healthz after bad input");
    server.login("alice").await;
}

/// Asserts a 401 `invalid_token` problem whose code starts with `token.`; returns the code.
#[track_caller]
fn assert_token_refused(status: StatusCode, headers: &reqwest::header::HeaderMap, body: &Value) -> String {
    let code = body["code"].as_str().unwrap_or_default().to_owned();
    assert!(code.starts_with("token."), "{body}");
    assert_problem(status, headers, body, StatusCode::UNAUTHORIZED, &code);
    let challenge = header(headers, "www-authenticate");
    if code == "token.missing" {
        assert_eq!(challenge, "Bearer", "no token, no error code (RFC 6750 section 3.1)");
    } else {
        assert!(challenge.starts_with("Bearer error=\"invalid_token\""), "{headers:?}");
    }
    code
}

/// Revocation and introspection share the token endpoint's form rules: 415 for another content
/// type, 413 past 64 KiB, 400 for a missing or repeated `token`.
async fn form_and_body_limits_on_revocation_and_introspection(db: TestDb) {
    let server = start(db).await;
    let secret = server.register_backend().await;
    for path in ["/oauth/revoke", "/oauth/introspect"] {
        let request = server.http.post(server.url(path)).basic_auth(BACKEND, Some(&secret));
        let json_body = request.try_clone().unwrap().json(&json!({ "token": "x" }));
        let (status, headers, body) = read_json(json_body.send().await.unwrap()).await;
        assert_oauth_error(status, &headers, &body, StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request");

        let huge = format!("token={}", "x".repeat(KIB_64));
        let oversized = request.try_clone().unwrap().header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        let (status, headers, body) = read_json(oversized.body(huge).send().await.unwrap()).await;
        assert_oauth_error(status, &headers, &body, StatusCode::PAYLOAD_TOO_LARGE, "invalid_request");
        assert_eq!(body["error_description"], "request.too_large");

        for form in [&[("token_type_hint", "refresh_token")][..], &[("token", "a"), ("token", "b")]] {
            let response = server.form_request(path, form).basic_auth(BACKEND, Some(&secret)).send().await.unwrap();
            let (status, headers, body) = read_json(response).await;
            assert_oauth_error(status, &headers, &body, StatusCode::BAD_REQUEST, "invalid_request");
        }
    }
    assert_still_serves(&server).await;
}

/// `{"username": "a", "username": "b"}`: which member counts would depend on the parser.
async fn repeated_json_members_are_refused(db: TestDb) {
    let server = start(db).await;
    let body = r#"{"username": "mallory", "password": "correct horse battery staple", "tenant_id": "t-1", "username": "alice"}"#;
    let request = server.http.post(server.url("/v1/users")).header(CONTENT_TYPE, "application/json");
    let (status, headers, problem) = read_json(request.body(body).send().await.unwrap()).await;
    assert_problem(status, &headers, &problem, StatusCode::BAD_REQUEST, "request.malformed");
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("duplicate member \"username\"")), "{problem}");
    // Neither name was created.
    server.sign_up("mallory").await;
    assert_still_serves(&server).await;
}

async fn json_that_is_not_utf8_is_refused(db: TestDb) {
    let server = start(db).await;
    let mut body = br#"{"username": "bob"#.to_vec();
    body.extend_from_slice(&[0xff, 0xfe]);
    body.extend_from_slice(br#"", "password": "correct horse battery staple", "tenant_id": "t-1"}"#);
    let request = server.http.post(server.url("/v1/users")).header(CONTENT_TYPE, "application/json");
    let (status, headers, problem) = read_json(request.body(body).send().await.unwrap()).await;
    assert_problem(status, &headers, &problem, StatusCode::BAD_REQUEST, "request.malformed");
    assert_still_serves(&server).await;
}

/// A 64 KiB bearer token is refused as a token (401), not as a request; a 64 KiB token in a form
/// does not fit the 64 KiB body limit (413); a token just under it is simply unknown.
async fn huge_tokens_are_refused_without_harm(db: TestDb) {
    let server = start(db).await;
    let segment = "A".repeat(KIB_64 / 3);
    let jwt_shaped = format!("{segment}.{segment}.{segment}");
    for token in ["x".repeat(KIB_64), jwt_shaped] {
        for path in ["/userinfo", "/v1/sessions"] {
            let (status, headers, body) = read_json(server.get_bearer(path, &token).await).await;
            assert_token_refused(status, &headers, &body);
        }
    }

    let huge = "r".repeat(KIB_64);
    let form = [("grant_type", "refresh_token"), ("client_id", WEB), ("refresh_token", huge.as_str())];
    let (status, headers, body) = read_json(server.post_form("/oauth/token", &form).await).await;
    assert_oauth_error(status, &headers, &body, StatusCode::PAYLOAD_TOO_LARGE, "invalid_request");

    let almost = "r".repeat(KIB_64 - 100);
    let form = [("grant_type", "refresh_token"), ("client_id", WEB), ("refresh_token", almost.as_str())];
    let (status, headers, body) = read_json(server.post_form("/oauth/token", &form).await).await;
    assert_oauth_error(status, &headers, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    let secret = server.register_backend().await;
    let response = server
        .form_request("/oauth/introspect", &[("token", almost.as_str())])
        .basic_auth(BACKEND, Some(&secret))
        .send()
        .await
        .unwrap();
    let (status, _, body) = read_json(response).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({ "active": false })));
    assert_still_serves(&server).await;
}

/// Bytes above 0x7f in `Authorization` (legal on the wire as obs-text, never a valid credential):
/// a malformed bearer token on bearer endpoints, failed client authentication on `/oauth/*`.
async fn header_bytes_that_are_not_utf8_are_refused(db: TestDb) {
    let server = start(db).await;
    let value = HeaderValue::from_bytes(b"Bearer \xff\xfe\xfd").unwrap();
    let response = server.http.get(server.url("/userinfo")).header(AUTHORIZATION, value).send().await.unwrap();
    let (status, headers, body) = read_json(response).await;
    assert_eq!(assert_token_refused(status, &headers, &body), "token.malformed");

    let value = HeaderValue::from_bytes(b"Basic \xff\xfe\xfd").unwrap();
    let response = server
        .form_request("/oauth/token", &[("grant_type", "client_credentials")])
        .header(AUTHORIZATION, value)
        .send()
        .await
        .unwrap();
    let (status, headers, body) = read_json(response).await;
    assert_oauth_error(status, &headers, &body, StatusCode::UNAUTHORIZED, "invalid_client");
    // Basic credentials that decode to bytes that are not UTF-8.
    let encoded = base64::engine::general_purpose::STANDARD.encode(b"booking-backend:\xff\xfe");
    let response = server
        .form_request("/oauth/token", &[("grant_type", "client_credentials")])
        .header(AUTHORIZATION, format!("Basic {encoded}"))
        .send()
        .await
        .unwrap();
    let (status, headers, body) = read_json(response).await;
    assert_oauth_error(status, &headers, &body, StatusCode::UNAUTHORIZED, "invalid_client");
    assert_still_serves(&server).await;
}

/// `Renée` precomposed, decomposed (`e` + U+0301) and in capitals is one account: the second
/// sign-up is a conflict, and every spelling logs into the first.
async fn usernames_differing_by_normalization_are_one_account(db: TestDb) {
    let server = start(db).await;
    let id = server.sign_up("Ren\u{e9}e").await;
    for other in ["Rene\u{301}e", "RENE\u{301}E", "ren\u{e9}e"] {
        let response = server
            .post_user(&json!({ "username": other, "password": "another password", "invitation": server.invitation("t-2").await }))
            .await;
        let (status, headers, body) = read_json(response).await;
        assert_problem(status, &headers, &body, StatusCode::CONFLICT, "input.conflict");
        let tokens = server.login(other).await;
        let (_, _, info) = read_json(server.get_bearer("/userinfo", &tokens.access).await).await;
        assert_eq!(info["sub"], id.as_str(), "{other} logs into the same account");
        assert_eq!(info["preferred_username"], "ren\u{e9}e");
    }
    assert_still_serves(&server).await;
}

/// Usernames with SQL and path syntax are stored and matched as text: they sign up, log in, and
/// nothing else happens to the database or the file system.
async fn sql_and_path_characters_in_usernames_are_just_text(db: TestDb) {
    let server = start(db).await;
    let names = [
        "'; DROP TABLE users; --",
        "alice' OR '1'='1",
        "\"; DELETE FROM refresh_tokens; --",
        "../../etc/passwd",
        "..\\..\\windows\\win.ini",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    ];
    for name in names {
        let response = server
            .post_user(&json!({ "username": name, "password": PASSWORD, "invitation": server.invitation("t-1").await }))
            .await;
        let (status, _, body) = read_json(response).await;
        assert_eq!(status, StatusCode::CREATED, "{name}: {body}");
        assert_eq!(body["username"], name.to_lowercase());
        let tokens = server.login(name).await;
        let (status, _, info) = read_json(server.get_bearer("/userinfo", &tokens.access).await).await;
        assert_eq!((status, info["preferred_username"].as_str()), (StatusCode::OK, Some(name.to_lowercase().as_str())));
    }
    // The injection-looking password grant of an unknown account is a wrong password, no more.
    let (status, headers, body) = read_json(server.password_grant("' OR 1=1 --", "' OR 1=1 --").await).await;
    assert_oauth_error(status, &headers, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    assert_eq!(server.state.authority.list_users(100, 0).await.unwrap().len(), names.len() + 1);
    assert_still_serves(&server).await;
}

/// A real token whose header's `kid` is SQL or a path: the key is unknown (no lookup beyond the
/// in-memory key set, nothing read from disk), on bearer endpoints and in introspection.
async fn sql_and_path_characters_in_a_token_kid_are_refused(db: TestDb) {
    let server = start(db).await;
    let secret = server.register_backend().await;
    let tokens = server.login("alice").await;
    let mut parts = tokens.access.splitn(2, '.');
    let (header_b64, rest) = (parts.next().unwrap(), parts.next().unwrap());
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut jwt_header: Value = serde_json::from_slice(&b64.decode(header_b64).unwrap()).unwrap();
    for kid in ["'; DROP TABLE signing_keys; --", "../../../../etc/passwd", "/dev/zero", "\u{0}"] {
        jwt_header["kid"] = json!(kid);
        let forged = format!("{}.{rest}", b64.encode(jwt_header.to_string()));
        let (status, headers, body) = read_json(server.get_bearer("/userinfo", &forged).await).await;
        assert_eq!(assert_token_refused(status, &headers, &body), "token.unknown_key", "kid {kid:?}");
        let response = server
            .form_request("/oauth/introspect", &[("token", forged.as_str())])
            .basic_auth(BACKEND, Some(&secret))
            .send()
            .await
            .unwrap();
        let (status, _, body) = read_json(response).await;
        assert_eq!((status, &body), (StatusCode::OK, &json!({ "active": false })), "kid {kid:?}");
    }
    // The untouched token still works, and the keys are all there.
    let response = server.get_bearer("/userinfo", &tokens.access).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!server.state.authority.list_keys().await.unwrap().is_empty());
    assert_still_serves(&server).await;
}

/// PostgreSQL refuses NUL in text; a session id carrying one must be a 404 like any other
/// unknown session, not a storage error. (Found by schemathesis' sibling probe on PostgreSQL.)
async fn nul_in_a_session_id_is_a_404(db: TestDb) {
    let server = start(db).await;
    let tokens = server.login("alice").await;
    for sid in ["a%00b", "%00", "..%2F..%2Fetc%2Fpasswd", "'%3B%20DROP%20TABLE%20refresh_families%3B--"] {
        let response = server
            .http
            .delete(server.url(&format!("/v1/sessions/{sid}")))
            .bearer_auth(&tokens.access)
            .send()
            .await
            .unwrap();
        let (status, headers, body) = read_json(response).await;
        assert_problem(status, &headers, &body, StatusCode::NOT_FOUND, "session.not_found");
    }
    // The session itself is untouched.
    let response = server.get_bearer("/v1/sessions", &tokens.access).await;
    let (status, _, body) = read_json(response).await;
    assert_eq!((status, body["sessions"].as_array().map(Vec::len)), (StatusCode::OK, Some(1)), "{body}");
    assert_still_serves(&server).await;
}

/// Sends `request` over a new TCP connection and returns what comes back until the server closes
/// it (or 10 seconds pass). reqwest refuses to send CR or LF inside a header value; a raw socket
/// does.
async fn raw_exchange(server: &Server, request: &[u8]) -> String {
    let address = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    stream.write_all(request).await.expect("send the raw request");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server kept the connection open: {:?}", String::from_utf8_lossy(&answer));
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status line, headers and body of a raw HTTP/1.1 answer.
fn parse_raw(answer: &str) -> (u16, String, String) {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// A bare CR inside a header value is refused by the HTTP parser itself, before any route: a bare
/// `400` and a closed connection (no body format applies; nothing of the request was read as a
/// header). A bare LF ends the header line, so "injected" text is one more header, seen as
/// such: the bearer token is just what precedes it. Nothing of either is echoed into the answer.
async fn cr_and_lf_in_header_values(db: TestDb) {
    let server = start(db).await;
    let tokens = server.login("alice").await;
    let host = server.base.trim_start_matches("http://");

    for value in ["Bearer abc\rSet-Cookie: pwned=1", "Bearer abc\r X-Injected: 1", "Bearer \r"] {
        let request = format!("GET /userinfo HTTP/1.1\r\nHost: {host}\r\nAuthorization: {value}\r\nConnection: close\r\n\r\n");
        let (status, head, _) = parse_raw(&raw_exchange(&server, request.as_bytes()).await);
        assert_eq!(status, 400, "{value:?}: {head}");
        assert!(!head.contains("pwned") && !head.contains("x-injected"), "{head}");
    }

    // LF: the token ends at the LF; the rest is a header of its own, which changes nothing.
    let request = format!(
        "GET /userinfo HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\nX-Injected: 1\r\nConnection: close\r\n\r\n",
        tokens.access
    );
    let (status, head, body) = parse_raw(&raw_exchange(&server, request.as_bytes()).await);
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(!head.contains("x-injected"), "{head}");
    // And a broken token followed by LF-smuggled text is refused like any malformed token.
    let request = format!(
        "GET /userinfo HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer abc\nSet-Cookie: pwned=1\r\nConnection: close\r\n\r\n"
    );
    let (status, head, body) = parse_raw(&raw_exchange(&server, request.as_bytes()).await);
    assert_eq!(status, 401, "{head}\n{body}");
    assert!(head.contains("content-type: application/problem+json"), "{head}");
    assert!(!head.contains("pwned"), "{head}");

    // CR/LF in a form value is data, percent-encoded on the wire: an unknown user, nothing more.
    let (status, headers, body) = read_json(server.password_grant("alice\r\nSet-Cookie: pwned=1", PASSWORD).await).await;
    assert_oauth_error(status, &headers, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(headers.get("set-cookie").is_none());
    assert_still_serves(&server).await;
}
