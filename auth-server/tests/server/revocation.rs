//! `POST /oauth/revoke` (RFC 7009) and `POST /oauth/introspect` (RFC 7662).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{BACKEND, Server, TestDb, WEB, assert_oauth_error, header, read_json};

on_both_backends!(
    revoke_ends_the_session_and_ignores_unknown_tokens,
    revoke_checks_the_client,
    a_revoked_client_token_is_refused_until_it_expires,
    introspection_requires_a_confidential_client,
    introspection_of_access_tokens,
    introspection_of_refresh_tokens,
);

async fn revoke(server: &Server, token: &str) -> reqwest::Response {
    server
        .post_form("/oauth/revoke", &[("token", token), ("client_id", WEB)])
        .await
}

async fn revoke_ends_the_session_and_ignores_unknown_tokens(db: TestDb) {
    let server = Server::start(db).await;
    server.sign_up("alice").await;
    let tokens = server.login("alice").await;

    // RFC 7009 section 2.2: unknown and already revoked tokens get 200 as well.
    for token in ["not-a-token", "bm90IGEgdG9rZW4gZWl0aGVy"] {
        let response = revoke(&server, token).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = revoke(&server, &tokens.refresh).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(response.headers(), "cache-control"), "no-store");
    assert_eq!(
        revoke(&server, &tokens.refresh).await.status(),
        StatusCode::OK,
        "idempotent"
    );

    let (status, headers, body) = read_json(server.refresh(&tokens.refresh).await).await;
    assert_oauth_error(
        status,
        &headers,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    // The session is over for this server's bearer endpoints too.
    let response = server.get_bearer("/userinfo", &tokens.access).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // An access token of a session ends the session: its refresh token and its other tokens.
    let other = server.login("alice").await;
    assert_eq!(server.get_bearer("/userinfo", &other.access).await.status(), StatusCode::OK);
    assert_eq!(revoke(&server, &other.access).await.status(), StatusCode::OK);
    let (status, headers, body) = read_json(server.get_bearer("/userinfo", &other.access).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(header(&headers, "www-authenticate").contains("token.session_revoked"), "{body}");
    let (status, headers, body) = read_json(server.refresh(&other.refresh).await).await;
    assert_oauth_error(status, &headers, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    // Alice's third session is untouched.
    let third = server.login("alice").await;
    assert_eq!(server.get_bearer("/userinfo", &third.access).await.status(), StatusCode::OK);
    // A missing token parameter is the client's error.
    let (status, headers, body) = read_json(
        server
            .post_form("/oauth/revoke", &[("client_id", WEB)])
            .await,
    )
    .await;
    assert_oauth_error(
        status,
        &headers,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
}

async fn revoke_checks_the_client(db: TestDb) {
    let server = Server::start(db).await;
    let secret = server.register_backend().await;
    server.sign_up("alice").await;
    let tokens = server.login("alice").await;
    // Another client cannot revoke the web client's token (RFC 7009 section 2.1) ...
    let response = server
        .form_request("/oauth/revoke", &[("token", &tokens.refresh)])
        .basic_auth(BACKEND, Some(&secret));
    let (status, headers, body) = read_json(response.send().await.unwrap()).await;
    assert_oauth_error(
        status,
        &headers,
        &body,
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
    );
    let (status, _, body) = read_json(server.refresh(&tokens.refresh).await).await;
    assert_eq!(status, StatusCode::OK, "the session survived: {body}");
    // ... and a client that fails authentication is told so.
    let response = server
        .form_request("/oauth/revoke", &[("token", "x")])
        .basic_auth(BACKEND, Some("wrong"));
    let (status, headers, body) = read_json(response.send().await.unwrap()).await;
    assert_oauth_error(
        status,
        &headers,
        &body,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    assert!(header(&headers, "www-authenticate").starts_with("Basic"));
}

/// RFC 7009 for a token without a session (client credentials): denied from the revocation on,
/// by introspection and the bearer endpoints; other tokens of the client are not; another client
/// cannot revoke it; the revocation is audited and purged once the token has expired.
async fn a_revoked_client_token_is_refused_until_it_expires(db: TestDb) {
    let server = Server::start(db).await;
    let secret = server.register_backend().await;
    let issue = || async {
        let request = server
            .form_request("/oauth/token", &[("grant_type", "client_credentials"), ("scope", "bookings:read")])
            .basic_auth(BACKEND, Some(&secret));
        let (status, _, body) = read_json(request.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    };
    let (token, kept) = (issue().await, issue().await);
    assert_eq!(introspect(&server, &secret, &token).await.1["active"], true);
    // The web client cannot revoke the backend's token.
    let (status, headers, body) = read_json(revoke(&server, &token).await).await;
    assert_oauth_error(status, &headers, &body, StatusCode::BAD_REQUEST, "unauthorized_client");
    assert_eq!(introspect(&server, &secret, &token).await.1["active"], true);
    // The backend can.
    let request = server.form_request("/oauth/revoke", &[("token", &token)]).basic_auth(BACKEND, Some(&secret));
    assert_eq!(request.send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(introspect(&server, &secret, &token).await.1, json!({ "active": false }));
    assert_eq!(introspect(&server, &secret, &kept).await.1["active"], true, "other tokens stand");
    // Revoking it again is still 200.
    let request = server.form_request("/oauth/revoke", &[("token", &token)]).basic_auth(BACKEND, Some(&secret));
    assert_eq!(request.send().await.unwrap().status(), StatusCode::OK);
    let audit = server.state.authority.audit_tail(50).await.unwrap();
    assert_eq!(audit.iter().filter(|e| e.kind == auth_core::audit::AuditKind::AccessTokenRevoked).count(), 1);
    // Nothing has expired yet: nothing is purged, the revocation holds.
    assert_eq!(server.state.authority.purge_revoked_access_tokens().await.unwrap(), 0);
    assert_eq!(introspect(&server, &secret, &token).await.1["active"], false);
}

async fn introspect(server: &Server, secret: &str, token: &str) -> (StatusCode, Value) {
    let response = server
        .form_request("/oauth/introspect", &[("token", token)])
        .basic_auth(BACKEND, Some(secret));
    let (status, headers, body) = read_json(response.send().await.unwrap()).await;
    if status == StatusCode::OK {
        assert_eq!(header(&headers, "cache-control"), "no-store");
    }
    (status, body)
}

async fn introspection_requires_a_confidential_client(db: TestDb) {
    let server = Server::start(db).await;
    let secret = server.register_backend().await;
    server.sign_up("alice").await;
    let tokens = server.login("alice").await;
    let attempts = [
        // A public client.
        server.form_request(
            "/oauth/introspect",
            &[("token", &tokens.access), ("client_id", WEB)],
        ),
        // No client at all.
        server.form_request("/oauth/introspect", &[("token", &tokens.access)]),
        // A wrong secret.
        server
            .form_request("/oauth/introspect", &[("token", &tokens.access)])
            .basic_auth(BACKEND, Some("wrong")),
    ];
    let expected = [
        StatusCode::UNAUTHORIZED,
        StatusCode::BAD_REQUEST,
        StatusCode::UNAUTHORIZED,
    ];
    for (attempt, expected) in attempts.into_iter().zip(expected) {
        let (status, headers, body) = read_json(attempt.send().await.unwrap()).await;
        let error = if expected == StatusCode::BAD_REQUEST {
            "invalid_request"
        } else {
            "invalid_client"
        };
        assert_oauth_error(status, &headers, &body, expected, error);
        assert!(
            body.get("active").is_none(),
            "nothing about the token leaks: {body}"
        );
    }
    // The secret in the form works as well as in Basic.
    let form = [
        ("token", tokens.access.as_str()),
        ("client_id", BACKEND),
        ("client_secret", &secret),
    ];
    let (status, _, body) = read_json(server.post_form("/oauth/introspect", &form).await).await;
    assert_eq!(
        (status, &body["active"]),
        (StatusCode::OK, &json!(true)),
        "{body}"
    );
}

async fn introspection_of_access_tokens(db: TestDb) {
    let server = Server::start(db).await;
    let secret = server.register_backend().await;
    let user_id = server.sign_up("alice").await;
    let tokens = server.login("alice").await;

    let (status, body) = introspect(&server, &secret, &tokens.access).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["active"], true);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["sub"], user_id.as_str());
    assert_eq!(body["client_id"], WEB);
    assert_eq!(body["scope"], "bookings:read bookings:write");
    assert_eq!(body["iss"], server.base.as_str());
    // One audience is a string (RFC 7519 section 4.1.3 allows either form).
    assert_eq!(body["aud"], "booking-api");
    assert_eq!(body["tenant_id"], "t-1");
    assert!(body["exp"].as_i64().unwrap() > body["iat"].as_i64().unwrap());
    assert!(body["sid"].is_string() && body["jti"].is_string(), "{body}");

    // Garbage and tokens of another issuer are simply inactive.
    for token in ["garbage", "a.b.c", ""] {
        let (status, body) = introspect(&server, &secret, token).await;
        if token.is_empty() {
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "a missing token is invalid_request: {body}"
            );
        } else {
            assert_eq!((status, body), (StatusCode::OK, json!({ "active": false })));
        }
    }

    // After logout the session's access tokens are inactive.
    let response = server
        .http
        .post(server.url("/v1/logout"))
        .bearer_auth(&tokens.access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (status, body) = introspect(&server, &secret, &tokens.access).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "active": false })));

    // A client-credentials token has no session and stays active.
    let form = [("grant_type", "client_credentials")];
    let response = server
        .form_request("/oauth/token", &form)
        .basic_auth(BACKEND, Some(&secret))
        .send()
        .await
        .unwrap();
    let (_, _, grant) = read_json(response).await;
    let (status, body) =
        introspect(&server, &secret, grant["access_token"].as_str().unwrap()).await;
    assert_eq!(
        (status, &body["active"], &body["sub"]),
        (StatusCode::OK, &json!(true), &json!(BACKEND)),
        "{body}"
    );
}

async fn introspection_of_refresh_tokens(db: TestDb) {
    let server = Server::start(db).await;
    let secret = server.register_backend().await;
    let user_id = server.sign_up("alice").await;
    let tokens = server.login("alice").await;
    let sid = server
        .state
        .authority
        .verify_access_token(&tokens.access)
        .unwrap()
        .sid
        .unwrap();

    let (status, body) = introspect(&server, &secret, &tokens.refresh).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["active"], true);
    assert!(body.get("token_type").is_none(), "a refresh token has no RFC 6749 token type: {body}");
    assert_eq!(body["client_id"], WEB);
    assert_eq!(body["sub"], user_id.as_str());
    assert_eq!(body["sid"], sid.as_str());
    assert_eq!(body["scope"], "bookings:read bookings:write");
    assert!(body["exp"].as_i64().unwrap() > body["iat"].as_i64().unwrap());

    // Rotated: the old one is inactive, its successor active.
    let (_, _, rotated) = read_json(server.refresh(&tokens.refresh).await).await;
    let successor = rotated["refresh_token"].as_str().unwrap();
    let (_, body) = introspect(&server, &secret, &tokens.refresh).await;
    assert_eq!(body, json!({ "active": false }));
    let (_, body) = introspect(&server, &secret, successor).await;
    assert_eq!(body["active"], true);

    // Revoked: inactive.
    let response = server
        .post_form("/oauth/revoke", &[("token", successor), ("client_id", WEB)])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let (_, body) = introspect(&server, &secret, successor).await;
    assert_eq!(body, json!({ "active": false }));
}
