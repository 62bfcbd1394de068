//! The code flow as a relying-party library the project did not write sees it: the
//! `openidconnect` crate discovers the provider, builds the authorization URL (PKCE S256, state,
//! nonce), exchanges the code, validates the ID token (signature from the published JWKS, issuer,
//! audience, nonce, at_hash), reads UserInfo and refreshes. The browser in between is the test's
//! cookie-keeping client, signing in through the hosted form.

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse as _, PkceCodeChallenge,
    RedirectUrl, Scope, TokenResponse as _,
};

use crate::browser::{BROWSER_CLIENTS, Browser, SPA, SPA_REDIRECT, sign_in};
use crate::support::{Options, Server, TestDb};

on_both_backends!(openidconnect_crate_signs_in_with_the_code_flow);

async fn openidconnect_crate_signs_in_with_the_code_flow(db: TestDb) {
    let server = Server::start_with(db, Options { extra_spec: BROWSER_CLIENTS, ..Options::default() }).await;
    let user_id = server.sign_up("hana").await;
    let http = openidconnect::reqwest::Client::builder()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let issuer = IssuerUrl::new(server.base.clone()).unwrap();
    let metadata = CoreProviderMetadata::discover_async(issuer, &http).await.expect("OpenID discovery");
    let client = CoreClient::from_provider_metadata(metadata, ClientId::new(SPA.to_owned()), None)
        .set_redirect_uri(RedirectUrl::new(SPA_REDIRECT.to_owned()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("profile".to_owned()))
        .add_scope(Scope::new("bookings:read".to_owned()))
        .set_pkce_challenge(challenge)
        .url();
    assert!(url.as_str().starts_with(&format!("{}/oauth/authorize?", server.base)), "{url}");

    let mut browser = Browser::default();
    let path = &url.as_str()[server.base.len()..];
    let params = sign_in(&server, &mut browser, path, "hana", "http://127.0.0.1:43210/callback").await;
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(param("state").as_deref(), Some(state.secret().as_str()));
    assert_eq!(param("iss").as_deref(), Some(server.base.as_str()));

    let tokens = client
        .exchange_code(AuthorizationCode::new(param("code").unwrap()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("code exchange");
    let id_token = tokens.id_token().expect("an ID token");
    let verifier = client.id_token_verifier();
    let claims = id_token.claims(&verifier, &nonce).expect("a valid ID token");
    assert_eq!(claims.subject().as_str(), user_id);
    assert_eq!(claims.preferred_username().map(|u| u.as_str()), Some("hana"));
    let at_hash = AccessTokenHash::from_token(tokens.access_token(), id_token.signing_alg().unwrap(), id_token.signing_key(&verifier).unwrap())
        .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&at_hash));
    // Another nonce is refused.
    assert!(id_token.claims(&verifier, &Nonce::new("other".to_owned())).is_err());

    let userinfo: CoreUserInfoClaims = client
        .user_info(tokens.access_token().clone(), Some(claims.subject().clone()))
        .unwrap()
        .request_async(&http)
        .await
        .expect("UserInfo");
    assert_eq!(userinfo.preferred_username().map(|u| u.as_str()), Some("hana"));

    let refreshed = client
        .exchange_refresh_token(tokens.refresh_token().expect("a refresh token"))
        .unwrap()
        .request_async(&http)
        .await
        .expect("refresh");
    assert_ne!(refreshed.access_token().secret(), tokens.access_token().secret());
}
