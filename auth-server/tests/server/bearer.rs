//! Bearer endpoints: `GET /userinfo`, `GET /v1/sessions`, `DELETE /v1/sessions/{sid}`,
//! `POST /v1/logout[?all=true]`, and the RFC 6750 answers to missing or bad tokens.

use auth_core::clock::{Clock as _, SystemClock};
use auth_core::tokens::{AccessTokenIssuer, TokenSubject};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Server, TestDb, assert_oauth_error, assert_problem, header, read_json};

on_both_backends!(
    userinfo_answers_the_users_claims,
    missing_garbage_and_expired_tokens_are_401,
    sessions_are_listed_and_ended_one_by_one,
    logout_ends_this_session_only,
    logout_all_ends_every_session_of_the_user,
);

/// An RFC 6750 section 3 refusal: 401, problem+json, `WWW-Authenticate: Bearer error="invalid_token"`
/// (plain `Bearer` when no token was sent).
#[track_caller]
fn assert_invalid_token(
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &Value,
    code: &str,
) {
    assert_problem(status, headers, body, StatusCode::UNAUTHORIZED, code);
    let challenge = header(headers, "www-authenticate");
    if code == "token.missing" {
        // RFC 6750 section 3.1: no token sent, no error code in the challenge.
        assert_eq!(challenge, "Bearer");
        return;
    }
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{challenge}"
    );
    assert!(challenge.contains(code), "{challenge}");
}

async fn userinfo_answers_the_users_claims(db: TestDb) {
    let server = Server::start(db).await;
    let user_id = server.sign_up("alice").await;
    let tokens = server.login("alice").await;
    let (status, headers, body) =
        read_json(server.get_bearer("/userinfo", &tokens.access).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({ "sub": user_id, "preferred_username": "alice", "tenant_id": "t-1" })
    );
    // The token's scopes are limited, so the answer says how much is left.
    assert!(
        header(&headers, "ratelimit-policy").contains(";q="),
        "{headers:?}"
    );
    assert!(header(&headers, "ratelimit").contains(";r="), "{headers:?}");
    // The scheme is case-insensitive (RFC 7235 section 2.1).
    let response = server
        .http
        .get(server.url("/userinfo"))
        .header("authorization", format!("bearer {}", tokens.access));
    assert_eq!(response.send().await.unwrap().status(), StatusCode::OK);
    // Personal data: never stored by caches, never sniffed.
    assert_eq!(header(&headers, "cache-control"), "no-store");
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    // POST answers the same (OpenID Connect Core 5.3.1).
    let response = server.http.post(server.url("/userinfo")).bearer_auth(&tokens.access).send().await.unwrap();
    let (status, _, posted) = read_json(response).await;
    assert_eq!((status, &posted), (StatusCode::OK, &body));
}

async fn missing_garbage_and_expired_tokens_are_401(db: TestDb) {
    let server = Server::start(db).await;
    server.sign_up("alice").await;
    let tokens = server.login("alice").await;

    let (status, headers, body) = read_json(server.get("/userinfo").await).await;
    assert_invalid_token(status, &headers, &body, "token.missing");
    let (status, headers, body) = read_json(server.get_bearer("/userinfo", "garbage").await).await;
    assert_invalid_token(status, &headers, &body, "token.malformed");
    let basic = server
        .http
        .get(server.url("/userinfo"))
        .basic_auth("alice", Some("pw"))
        .send()
        .await
        .unwrap();
    let (status, headers, body) = read_json(basic).await;
    assert_invalid_token(status, &headers, &body, "token.missing");

    // A token signed by this server's own key, but expired an hour ago (well beyond the leeway).
    let state = &server.state;
    let claims = state.authority.verify_access_token(&tokens.access).unwrap();
    let subject = TokenSubject {
        sub: claims.sub,
        client_id: claims.client_id,
        scope: claims.scope,
        sid: claims.sid,
        custom: claims.custom,
    };
    let active = state.authority.key_snapshot().unwrap().active.clone();
    let expired = AccessTokenIssuer::from_spec(&state.spec)
        .issue(
            &active,
            subject,
            SystemClock.now() - 3_600,
            "expired-token".into(),
        )
        .unwrap();
    for path in ["/userinfo", "/v1/sessions"] {
        let (status, headers, body) =
            read_json(server.get_bearer(path, &expired.token).await).await;
        assert_invalid_token(status, &headers, &body, "token.expired");
    }
    // A refresh token is not an access token.
    let (status, headers, body) =
        read_json(server.get_bearer("/userinfo", &tokens.refresh).await).await;
    assert_invalid_token(status, &headers, &body, "token.malformed");
}

async fn session_ids(server: &Server, access: &str) -> Vec<(String, bool)> {
    let (status, _, body) = read_json(server.get_bearer("/v1/sessions", access).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut ids: Vec<(String, bool)> = body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["sid"].as_str().unwrap().to_owned(),
                s["current"].as_bool().unwrap(),
            )
        })
        .collect();
    ids.sort();
    ids
}

async fn sessions_are_listed_and_ended_one_by_one(db: TestDb) {
    let server = Server::start(db).await;
    server.sign_up("alice").await;
    server.sign_up("bob").await;
    let laptop = server.login("alice").await;
    let phone = server.login("alice").await;
    let bobs = server.login("bob").await;
    let sid = |access: &str| {
        server
            .state
            .authority
            .verify_access_token(access)
            .unwrap()
            .sid
            .unwrap()
    };
    let (laptop_sid, phone_sid, bob_sid) =
        (sid(&laptop.access), sid(&phone.access), sid(&bobs.access));

    let (status, _, body) =
        read_json(server.get_bearer("/v1/sessions", &laptop.access).await).await;
    assert_eq!(status, StatusCode::OK);
    let sessions = body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "only alice's sessions: {body}");
    for session in sessions {
        assert_eq!(session["client_id"], "booking-web");
        assert_eq!(session["scope"], "bookings:read bookings:write");
        assert!(session["expires_at"].as_i64().unwrap() > session["created_at"].as_i64().unwrap());
    }
    let mut expected = vec![(laptop_sid.clone(), true), (phone_sid.clone(), false)];
    expected.sort();
    assert_eq!(session_ids(&server, &laptop.access).await, expected);

    // Another user's session looks exactly like a missing one.
    for other in [bob_sid.as_str(), "no-such-session"] {
        let response = server
            .http
            .delete(server.url(&format!("/v1/sessions/{other}")))
            .bearer_auth(&laptop.access);
        let (status, headers, body) = read_json(response.send().await.unwrap()).await;
        assert_problem(
            status,
            &headers,
            &body,
            StatusCode::NOT_FOUND,
            "session.not_found",
        );
    }
    let (status, _, _) = read_json(server.refresh(&bobs.refresh).await).await;
    assert_eq!(status, StatusCode::OK, "bob's session is untouched");

    // End the phone's session from the laptop.
    let response = server
        .http
        .delete(server.url(&format!("/v1/sessions/{phone_sid}")))
        .bearer_auth(&laptop.access);
    let response = response.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        session_ids(&server, &laptop.access).await,
        vec![(laptop_sid, true)]
    );
    let (status, headers, body) = read_json(server.refresh(&phone.refresh).await).await;
    assert_oauth_error(
        status,
        &headers,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    let (status, headers, body) =
        read_json(server.get_bearer("/userinfo", &phone.access).await).await;
    assert_invalid_token(status, &headers, &body, "token.session_revoked");
}

async fn logout_ends_this_session_only(db: TestDb) {
    let server = Server::start(db).await;
    server.sign_up("alice").await;
    let laptop = server.login("alice").await;
    let phone = server.login("alice").await;

    let response = server
        .http
        .post(server.url("/v1/logout"))
        .bearer_auth(&laptop.access)
        .send()
        .await
        .unwrap();
    let (status, _, body) = read_json(response).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "sessions_ended": 1 }))
    );

    let (status, headers, body) = read_json(server.refresh(&laptop.refresh).await).await;
    assert_oauth_error(
        status,
        &headers,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    );
    assert_eq!(body["error_description"], "refresh.revoked");
    let (status, headers, body) =
        read_json(server.get_bearer("/userinfo", &laptop.access).await).await;
    assert_invalid_token(status, &headers, &body, "token.session_revoked");
    // The other device is still logged in.
    assert_eq!(
        server.get_bearer("/userinfo", &phone.access).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        read_json(server.refresh(&phone.refresh).await).await.0,
        StatusCode::OK
    );

    // A query it does not know is refused rather than ignored.
    let response = server
        .http
        .post(server.url("/v1/logout?everything=yes"))
        .bearer_auth(&phone.access)
        .send()
        .await;
    let (status, headers, body) = read_json(response.unwrap()).await;
    assert_problem(
        status,
        &headers,
        &body,
        StatusCode::BAD_REQUEST,
        "request.invalid_query",
    );
}

async fn logout_all_ends_every_session_of_the_user(db: TestDb) {
    let server = Server::start(db).await;
    server.sign_up("alice").await;
    server.sign_up("bob").await;
    let sessions = [
        server.login("alice").await,
        server.login("alice").await,
        server.login("alice").await,
    ];
    let bobs = server.login("bob").await;

    let response = server
        .http
        .post(server.url("/v1/logout?all=true"))
        .bearer_auth(&sessions[0].access)
        .send()
        .await;
    let (status, _, body) = read_json(response.unwrap()).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "sessions_ended": 3 }))
    );
    for session in &sessions {
        let (status, headers, body) = read_json(server.refresh(&session.refresh).await).await;
        assert_oauth_error(
            status,
            &headers,
            &body,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        );
        assert_eq!(
            server
                .get_bearer("/userinfo", &session.access)
                .await
                .status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        server.get_bearer("/userinfo", &bobs.access).await.status(),
        StatusCode::OK,
        "other users keep theirs"
    );
    // A fresh login works again.
    let again = server.login("alice").await;
    assert_eq!(session_ids(&server, &again.access).await.len(), 1);
}
