//! Who sets custom claims, through real HTTP: a user cannot choose the booking spec's `tenant_id`
//! at sign-up; invitations (from the admin API) carry it, once; confidential clients holding the
//! admin scope change users' claims; nobody else can.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{BACKEND, Server, TestDb, Tokens, assert_problem, read_json, send_together};

on_both_backends!(
    a_user_cannot_choose_a_tenant_at_sign_up,
    an_admin_client_invites_and_the_invitation_works_once,
    an_admin_client_changes_claims_that_reach_the_next_refresh,
    only_admin_client_tokens_reach_the_admin_api,
    a_signed_in_user_joins_a_tenant_by_invitation,
    one_invitation_sent_by_many_at_once_makes_one_account,
);

/// A client-credentials token of booking-backend for `scope`.
async fn backend_token(server: &Server, secret: &str, scope: &str) -> String {
    let response = server
        .form_request("/oauth/token", &[("grant_type", "client_credentials"), ("scope", scope)])
        .basic_auth(BACKEND, Some(secret))
        .send()
        .await
        .unwrap();
    let (status, _, body) = read_json(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], scope);
    body["access_token"].as_str().unwrap().to_owned()
}

async fn admin_token(server: &Server) -> String {
    let secret = server.register_backend().await;
    backend_token(server, &secret, "users:admin").await
}

async fn post_json(server: &Server, path: &str, token: &str, body: &Value) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let response = server.http.post(server.url(path)).bearer_auth(token).json(body).send().await.unwrap();
    read_json(response).await
}

async fn patch_claims(server: &Server, token: &str, user_id: &str, body: &Value) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let response = server
        .http
        .patch(server.url(&format!("/v1/admin/users/{user_id}/claims")))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    read_json(response).await
}

async fn tenant_of(server: &Server, access: &str) -> Value {
    server.state.authority.verify_access_token(access).unwrap().custom["tenant_id"].clone()
}

async fn a_user_cannot_choose_a_tenant_at_sign_up(db: TestDb) {
    let server = Server::start(db).await;
    let (status, headers, body) = read_json(
        server.post_user(&json!({ "username": "mallory", "password": "correct horse battery staple", "tenant_id": "victim-hotel-group" })).await,
    )
    .await;
    assert_problem(status, &headers, &body, StatusCode::FORBIDDEN, "input.claim_not_settable");
    assert_eq!(body["detail"], "tenant_id: is set by an administrator or an invitation");
    // Not with an invitation either: the invitation's tenant is the only one.
    let invitation = server.invitation("t-1").await;
    let (status, headers, body) = read_json(
        server
            .post_user(&json!({ "username": "mallory", "password": "correct horse battery staple", "tenant_id": "victim", "invitation": invitation }))
            .await,
    )
    .await;
    assert_problem(status, &headers, &body, StatusCode::FORBIDDEN, "input.claim_not_settable");
    // Without anything, the required claim is missing, and says where it comes from.
    let (status, headers, body) =
        read_json(server.post_user(&json!({ "username": "mallory", "password": "correct horse battery staple" })).await).await;
    assert_problem(status, &headers, &body, StatusCode::BAD_REQUEST, "input.invalid");
    assert_eq!(body["detail"], "tenant_id: is required and comes with an invitation");
    assert!(server.state.authority.user_by_username("mallory").await.unwrap().is_none(), "no account");
    // The invitation was not spent by the refused attempt.
    let (status, _, body) = read_json(
        server.post_user(&json!({ "username": "mallory", "password": "correct horse battery staple", "invitation": invitation })).await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["claims"], json!({ "tenant_id": "t-1" }));
}

async fn an_admin_client_invites_and_the_invitation_works_once(db: TestDb) {
    let server = Server::start(db).await;
    let admin = admin_token(&server).await;
    let (status, _, body) =
        post_json(&server, "/v1/admin/invitations", &admin, &json!({ "claims": { "tenant_id": "hotel-7" }, "expires_in": 3600 })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let invitation = body["invitation"].as_str().unwrap().to_owned();
    assert!(body["expires_at"].is_i64());

    let (status, _, body) = read_json(
        server.post_user(&json!({ "username": "ivy", "password": "correct horse battery staple", "invitation": invitation })).await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["claims"], json!({ "tenant_id": "hotel-7" }));
    let tokens = server.login("ivy").await;
    assert_eq!(tenant_of(&server, &tokens.access).await, "hotel-7");

    // Used once.
    let (status, headers, body) = read_json(
        server.post_user(&json!({ "username": "jack", "password": "correct horse battery staple", "invitation": invitation })).await,
    )
    .await;
    assert_problem(status, &headers, &body, StatusCode::FORBIDDEN, "invitation.invalid");
    // Bad invitation requests are refused with the field named.
    for (request, field) in [
        (json!({ "claims": {} }), "claims"),
        (json!({ "claims": { "tenant_id": 7 } }), "tenant_id"),
        (json!({ "claims": { "role": "admin" } }), "role"),
        (json!({ "claims": { "tenant_id": "t" }, "expires_in": 31 * 24 * 3600 }), "expires_in"),
        (json!({ "claims": { "tenant_id": "t" }, "extra": 1 }), "extra"),
        (json!({ "tenant_id": "t" }), "claims"),
    ] {
        let (status, headers, body) = post_json(&server, "/v1/admin/invitations", &admin, &request).await;
        assert_problem(status, &headers, &body, StatusCode::BAD_REQUEST, "input.invalid");
        assert!(body["detail"].as_str().unwrap().starts_with(field), "{request}: {body}");
    }
    // An invitation field of the wrong type at sign-up.
    let (status, headers, body) =
        read_json(server.post_user(&json!({ "username": "kim", "password": "correct horse battery staple", "invitation": 7 })).await).await;
    assert_problem(status, &headers, &body, StatusCode::BAD_REQUEST, "input.invalid");
}

async fn an_admin_client_changes_claims_that_reach_the_next_refresh(db: TestDb) {
    let server = Server::start(db).await;
    let admin = admin_token(&server).await;
    let id = server.sign_up("alice").await;
    let tokens = server.login("alice").await;
    assert_eq!(tenant_of(&server, &tokens.access).await, "t-1");

    let (status, _, body) = patch_claims(&server, &admin, &id, &json!({ "tenant_id": "t-2" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["claims"], json!({ "tenant_id": "t-2" }));
    let (status, _, body) = read_json(server.refresh(&tokens.refresh).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(tenant_of(&server, &Tokens::from_body(&body).access).await, "t-2");

    let (status, headers, body) = patch_claims(&server, &admin, &id, &json!({ "tenant_id": null })).await;
    assert_problem(status, &headers, &body, StatusCode::BAD_REQUEST, "input.invalid");
    let (status, headers, body) = patch_claims(&server, &admin, "no-such-user", &json!({ "tenant_id": "t" })).await;
    assert_problem(status, &headers, &body, StatusCode::NOT_FOUND, "input.not_found");
    let (status, headers, body) = patch_claims(&server, &admin, &"x".repeat(10_000), &json!({ "tenant_id": "t" })).await;
    assert_problem(status, &headers, &body, StatusCode::NOT_FOUND, "input.not_found");
    let audit = server.state.authority.audit_tail(50).await.unwrap();
    let change = audit.iter().find(|e| e.kind == auth_core::audit::AuditKind::UserClaimsChanged).expect("audited");
    assert_eq!(change.detail, json!({ "claims": ["tenant_id"], "by": "client:booking-backend" }));
}

async fn only_admin_client_tokens_reach_the_admin_api(db: TestDb) {
    let server = Server::start(db).await;
    let secret = server.register_backend().await;
    let id = server.sign_up("alice").await;
    // The admin scope is granted only when asked for by name.
    let response = server
        .form_request("/oauth/token", &[("grant_type", "client_credentials")])
        .basic_auth(BACKEND, Some(&secret))
        .send()
        .await
        .unwrap();
    let (_, _, body) = read_json(response).await;
    assert_eq!(body["scope"], "bookings:read");
    let reader = body["access_token"].as_str().unwrap().to_owned();
    let user = server.login("alice").await.access;
    for token in [reader.as_str(), user.as_str()] {
        let (status, headers, body) = patch_claims(&server, token, &id, &json!({ "tenant_id": "victim" })).await;
        assert_problem(status, &headers, &body, StatusCode::FORBIDDEN, "auth.insufficient_scope");
        let (status, headers, body) =
            post_json(&server, "/v1/admin/invitations", token, &json!({ "claims": { "tenant_id": "victim" } })).await;
        assert_problem(status, &headers, &body, StatusCode::FORBIDDEN, "auth.insufficient_scope");
    }
    let response = server.http.post(server.url("/v1/admin/invitations")).json(&json!({})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // The web client cannot even ask for it.
    let (status, _, body) = read_json(
        server
            .post_form(
                "/oauth/token",
                &[("grant_type", "password"), ("client_id", "booking-web"), ("username", "alice"), ("password", crate::support::PASSWORD), ("scope", "users:admin")],
            )
            .await,
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_scope")), "{body}");
    assert_eq!(server.state.authority.user(&id).await.unwrap().unwrap().claims, json!({ "tenant_id": "t-1" }).as_object().unwrap().clone());
}

async fn a_signed_in_user_joins_a_tenant_by_invitation(db: TestDb) {
    let server = Server::start(db).await;
    server.sign_up("alice").await;
    let tokens = server.login("alice").await;
    let invitation = server.invitation("hotel-9").await;
    let (status, _, body) = post_json(&server, "/v1/invitations/accept", &tokens.access, &json!({ "invitation": invitation })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["claims"], json!({ "tenant_id": "hotel-9" }));
    let (status, _, body) = read_json(server.refresh(&tokens.refresh).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let refreshed = Tokens::from_body(&body);
    assert_eq!(tenant_of(&server, &refreshed.access).await, "hotel-9");
    let (status, headers, body) = post_json(&server, "/v1/invitations/accept", &refreshed.access, &json!({ "invitation": invitation })).await;
    assert_problem(status, &headers, &body, StatusCode::FORBIDDEN, "invitation.invalid");
    let (status, headers, body) = post_json(&server, "/v1/invitations/accept", &refreshed.access, &json!({})).await;
    assert_problem(status, &headers, &body, StatusCode::BAD_REQUEST, "input.invalid");
}

/// An invitation is single use under concurrency too: eight sign-ups sent at once with it make
/// exactly one account; the others are refused (`invitation.invalid`) and make nothing.
async fn one_invitation_sent_by_many_at_once_makes_one_account(db: TestDb) {
    let server = Server::start(db).await;
    let invitation = server.invitation("t-race").await;
    let requests = (0..8)
        .map(|i| {
            let body = json!({ "username": format!("racer{i}"), "password": "correct horse battery staple", "invitation": invitation });
            server.http.post(server.url("/v1/users")).json(&body)
        })
        .collect();
    let answers = send_together(requests).await;
    let created: Vec<&Value> = answers.iter().filter(|(status, _, _)| *status == StatusCode::CREATED).map(|(_, _, body)| body).collect();
    assert_eq!(created.len(), 1, "{answers:?}");
    for (status, headers, body) in answers.iter().filter(|(status, _, _)| *status != StatusCode::CREATED) {
        assert_problem(*status, headers, body, StatusCode::FORBIDDEN, "invitation.invalid");
    }
    let mut accounts = 0;
    for i in 0..8 {
        if let Some(user) = server.state.authority.user_by_username(&format!("racer{i}")).await.unwrap() {
            assert_eq!(user.claims["tenant_id"], "t-race");
            accounts += 1;
        }
    }
    assert_eq!(accounts, 1);
}
