//! The server as a client library the project did not write sees it: the `oauth2` crate drives
//! the password, refresh-token and client-credentials grants and introspection against the live
//! server, and the access tokens it obtains verify with the JWKS fetched over HTTP.
//!
//! Discovery uses the RFC 8414 document with plain reqwest rather than `openidconnect`: that crate
//! expects an OpenID Provider (an authorization endpoint, `response_types_supported` with
//! `code`, and ID tokens on every token response), and this server issues no ID tokens.
//! Revocation is not driven through `oauth2` either: it refuses revocation URLs that are not
//! https, and the test server speaks plain HTTP.

use std::time::Duration;

use auth_core::clock::{Clock as _, SystemClock};
use auth_core::keys::KeySet;
use auth_core::tokens::{AccessClaims, AccessTokenVerifier};
use jsonwebtoken::jwk::JwkSet;
use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenType};
use oauth2::{
    AccessToken, AuthType, ClientId, ClientSecret, IntrospectionUrl, RequestTokenError,
    ResourceOwnerPassword, ResourceOwnerUsername, Scope, TokenIntrospectionResponse as _,
    TokenResponse as _, TokenUrl,
};
use serde_json::{Value, json};

use crate::support::{BACKEND, PASSWORD, Server, TestDb, WEB};

on_both_backends!(
    oauth2_crate_logs_in_refreshes_and_verifies,
    oauth2_crate_client_credentials_and_introspection
);

/// The RFC 8414 metadata, as a client would discover it.
async fn metadata(server: &Server) -> Value {
    let response = server.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    response.json().await.unwrap()
}

/// Verifies `token` the way a resource server would: with the JWKS named by the metadata.
async fn verify_with_published_keys(
    server: &Server,
    metadata: &Value,
    token: &str,
) -> AccessClaims {
    let jwks: JwkSet = server
        .http
        .get(metadata["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let verifier = AccessTokenVerifier::from_spec(&server.state.spec);
    verifier
        .verify(token, &KeySet::from_jwks(&jwks), SystemClock.now())
        .expect("verifies against the published JWKS")
}

fn scopes(names: &[&str]) -> Vec<Scope> {
    names.iter().map(|s| Scope::new((*s).to_owned())).collect()
}

async fn oauth2_crate_logs_in_refreshes_and_verifies(db: TestDb) {
    let server = Server::start(db).await;
    let user_id = server.sign_up("alice").await;
    let metadata = metadata(&server).await;
    let token_url = TokenUrl::new(metadata["token_endpoint"].as_str().unwrap().to_owned()).unwrap();
    // A public client: no secret, so the crate sends client_id in the form.
    let web = BasicClient::new(ClientId::new(WEB.to_owned())).set_token_uri(token_url);
    let http = &server.http;

    let username = ResourceOwnerUsername::new("alice".to_owned());
    let login = web
        .exchange_password(&username, &ResourceOwnerPassword::new(PASSWORD.to_owned()))
        .add_scopes(scopes(&["bookings:read", "bookings:write"]))
        .request_async(http)
        .await
        .expect("password grant through the oauth2 crate");
    assert_eq!(*login.token_type(), BasicTokenType::Bearer);
    assert_eq!(login.expires_in(), Some(Duration::from_secs(900)));
    assert_eq!(
        login.scopes(),
        Some(&scopes(&["bookings:read", "bookings:write"]))
    );
    let claims =
        verify_with_published_keys(&server, &metadata, login.access_token().secret()).await;
    assert_eq!(
        (claims.sub.as_str(), claims.client_id.as_str()),
        (user_id.as_str(), WEB)
    );
    assert_eq!(claims.custom.get("tenant_id"), Some(&json!("t-1")));

    // Refresh, narrowing the scope.
    let first_refresh = login.refresh_token().expect("a refresh token").clone();
    let refreshed = web
        .exchange_refresh_token(&first_refresh)
        .add_scope(Scope::new("bookings:read".to_owned()))
        .request_async(http)
        .await
        .expect("refresh grant through the oauth2 crate");
    let second_refresh = refreshed.refresh_token().expect("a rotated refresh token");
    assert_ne!(second_refresh.secret(), first_refresh.secret());
    assert_eq!(refreshed.scopes(), Some(&scopes(&["bookings:read"])));
    let refreshed_claims =
        verify_with_published_keys(&server, &metadata, refreshed.access_token().secret()).await;
    assert_eq!(refreshed_claims.sid, claims.sid, "the same session");
    let response = server
        .get_bearer("/userinfo", refreshed.access_token().secret())
        .await;
    assert_eq!(response.status(), reqwest::StatusCode::OK);

    // Errors arrive as RFC 6749 error responses the crate understands.
    let wrong = web
        .exchange_password(
            &username,
            &ResourceOwnerPassword::new("not the password".to_owned()),
        )
        .request_async(http)
        .await;
    match wrong {
        Err(RequestTokenError::ServerResponse(e)) => {
            assert_eq!(*e.error(), BasicErrorResponseType::InvalidGrant);
            assert_eq!(
                e.error_description().map(String::as_str),
                Some("auth.invalid_credentials")
            );
        }
        other => panic!("expected invalid_grant, got {other:?}"),
    }
    let wider = web
        .exchange_refresh_token(second_refresh)
        .add_scope(Scope::new("admin".to_owned()))
        .request_async(http)
        .await;
    assert!(
        matches!(&wider, Err(RequestTokenError::ServerResponse(e)) if *e.error() == BasicErrorResponseType::InvalidScope),
        "{wider:?}"
    );
}

async fn oauth2_crate_client_credentials_and_introspection(db: TestDb) {
    let server = Server::start(db).await;
    let secret = server.register_backend().await;
    server.sign_up("alice").await;
    let user_tokens = server.login("alice").await;
    let metadata = metadata(&server).await;
    let token_url = TokenUrl::new(metadata["token_endpoint"].as_str().unwrap().to_owned()).unwrap();
    let introspection_url = IntrospectionUrl::new(
        metadata["introspection_endpoint"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
    .unwrap();
    let http = &server.http;

    // HTTP Basic (the crate's default) and the form (client_secret_post).
    for auth_type in [AuthType::BasicAuth, AuthType::RequestBody] {
        let backend = BasicClient::new(ClientId::new(BACKEND.to_owned()))
            .set_client_secret(ClientSecret::new(secret.clone()))
            .set_auth_type(auth_type.clone())
            .set_token_uri(token_url.clone())
            .set_introspection_url(introspection_url.clone());
        let grant = backend
            .exchange_client_credentials()
            .add_scope(Scope::new("bookings:read".to_owned()))
            .request_async(http)
            .await
            .unwrap_or_else(|e| panic!("client credentials with {auth_type:?}: {e:?}"));
        assert!(grant.refresh_token().is_none());
        let claims =
            verify_with_published_keys(&server, &metadata, grant.access_token().secret()).await;
        assert_eq!((claims.sub.as_str(), claims.sid), (BACKEND, None));

        let answer = backend
            .introspect(&AccessToken::new(user_tokens.access.clone()))
            .request_async(http)
            .await
            .expect("introspection through the oauth2 crate");
        assert!(answer.active());
        assert_eq!(answer.client_id().map(|c| c.as_str()), Some(WEB));
        assert_eq!(
            answer.scopes(),
            Some(&scopes(&["bookings:read", "bookings:write"]))
        );
        assert!(
            answer
                .exp()
                .is_some_and(|exp| exp.timestamp() > SystemClock.now())
        );
    }

    // A wrong secret: invalid_client.
    let impostor = BasicClient::new(ClientId::new(BACKEND.to_owned()))
        .set_client_secret(ClientSecret::new("wrong".to_owned()))
        .set_token_uri(token_url);
    let refused = impostor
        .exchange_client_credentials()
        .request_async(http)
        .await;
    assert!(
        matches!(&refused, Err(RequestTokenError::ServerResponse(e)) if *e.error() == BasicErrorResponseType::InvalidClient),
        "{refused:?}"
    );
}
