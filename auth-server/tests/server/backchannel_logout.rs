//! OpenID Connect Back-Channel Logout 1.0 over real sockets: a small relying party listens on a
//! port of its own and records what it is sent; users sign in to it and to a client without a
//! `backchannel_logout_uri` through one browser session, then that session ends by every path.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use reqwest::header::LOCATION;
use serde_json::Value;

use crate::browser::{Browser, VERIFIER, authorize_path, param, redirect_params, sign_in};
use crate::support::{Options, Server, TestDb, metric_value};

on_both_backends!(
    rp_initiated_logout_sends_one_verifiable_logout_token,
    ending_a_browser_session_through_the_api_sends_one,
    logout_all_sends_one_per_browser_session,
    a_failed_delivery_is_tried_again,
    a_relying_party_that_never_answers_does_not_delay_sign_out,
    withdrawing_consent_and_disabling_the_user_send_theirs,
    a_delivery_failing_every_try_is_counted_and_audited,
);

const NOTIFIED: &str = "rp-notified";
const SILENT: &str = "rp-silent";
const NOTIFIED_REDIRECT: &str = "https://notified.test/cb";
const SILENT_REDIRECT: &str = "https://silent.test/cb";
const PARTNER: &str = "rp-partner";
const PARTNER_REDIRECT: &str = "https://partner.test/cb";

/// How the relying party answers logout POSTs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Ok,
    /// 500 to the first POST, 200 after.
    FailFirst,
    /// Never answers.
    Never,
    /// 500 to every POST.
    Fail,
}

/// One POST the relying party received: its content type and form.
type Post = (String, Vec<(String, String)>);

/// What the relying party received.
#[derive(Debug, Clone, Default)]
struct Received(Arc<Mutex<Vec<Post>>>);

impl Received {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Waits (bounded) until `n` POSTs arrived; their logout tokens.
    async fn wait_for(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.len() < n {
            assert!(Instant::now() < deadline, "{} logout POSTs after 20 s, expected {n}", self.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(content_type, form)| {
                assert_eq!(content_type, "application/x-www-form-urlencoded");
                assert_eq!(form.len(), 1, "only logout_token: {form:?}");
                assert_eq!(form[0].0, "logout_token");
                form[0].1.clone()
            })
            .collect()
    }
}

/// Starts the relying party on 127.0.0.1:0; its logout URI and what it receives.
async fn relying_party(answer: Answer) -> (String, Received) {
    let received = Received::default();
    let app = axum::Router::new()
        .route(
            "/logout",
            axum::routing::post(|State((answer, received)): State<(Answer, Received)>, headers: HeaderMap, body: axum::body::Bytes| async move {
                let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let form = form_urlencoded::parse(&body).into_owned().collect();
                let first = {
                    let mut all = received.0.lock().unwrap();
                    all.push((content_type, form));
                    all.len() == 1
                };
                match answer {
                    Answer::Never => std::future::pending::<StatusCode>().await,
                    Answer::FailFirst if first => StatusCode::INTERNAL_SERVER_ERROR,
                    Answer::Fail => StatusCode::INTERNAL_SERVER_ERROR,
                    _ => StatusCode::OK,
                }
            }),
        )
        .with_state((answer, received.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}/logout", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (uri, received)
}

/// A server whose spec has the two relying parties, one registered at `logout_uri`.
async fn server(db: TestDb, logout_uri: &str) -> Server {
    let clients = format!(
        r#"
[clients.{NOTIFIED}]
public = true
first_party = true
grants = ["authorization_code", "refresh_token"]
scopes = ["bookings:read"]
redirect_uris = ["{NOTIFIED_REDIRECT}"]
post_logout_redirect_uris = ["https://notified.test/bye"]
backchannel_logout_uri = "{logout_uri}"
backchannel_logout_session_required = true

[clients.{SILENT}]
public = true
first_party = true
grants = ["authorization_code", "refresh_token"]
scopes = ["bookings:read"]
redirect_uris = ["{SILENT_REDIRECT}"]

[clients.{PARTNER}]
public = true
grants = ["authorization_code"]
scopes = ["bookings:read"]
redirect_uris = ["{PARTNER_REDIRECT}"]
backchannel_logout_uri = "{logout_uri}"
description = "Partner"
"#
    );
    // The spec text lives as long as the test process; each test leaks one small string.
    let extra_spec: &'static str = Box::leak(clients.into_boxed_str());
    Server::start_with(db, Options { extra_spec, ..Options::default() }).await
}

async fn exchange(server: &Server, client: &str, redirect_uri: &str, code: &str) -> Value {
    let response = server
        .post_form(
            "/oauth/token",
            &[("grant_type", "authorization_code"), ("client_id", client), ("code", code), ("redirect_uri", redirect_uri), ("code_verifier", VERIFIER)],
        )
        .await;
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    response.json().await.unwrap()
}

/// Signs `username` in on `browser` to both clients (the second by single sign-on); the token
/// answers of the notified client and of the silent one.
async fn sign_in_to_both(server: &Server, browser: &mut Browser, username: &str) -> (Value, Value) {
    let path = authorize_path(NOTIFIED, NOTIFIED_REDIRECT, &[("scope", "openid bookings:read")]);
    let params = sign_in(server, browser, &path, username, NOTIFIED_REDIRECT).await;
    let notified = exchange(server, NOTIFIED, NOTIFIED_REDIRECT, param(&params, "code").unwrap()).await;
    let path = authorize_path(SILENT, SILENT_REDIRECT, &[("scope", "openid bookings:read")]);
    let again = browser.get(server, &path).await;
    let silent = exchange(server, SILENT, SILENT_REDIRECT, param(&redirect_params(&again, SILENT_REDIRECT), "code").unwrap()).await;
    (notified, silent)
}

fn id_token_claims(tokens: &Value) -> Value {
    jsonwebtoken::dangerous::insecure_decode::<Value>(tokens["id_token"].as_str().unwrap()).unwrap().claims
}

/// Verifies a logout token against the server's JWKS as a relying party does (section 2.6) and
/// returns its claims.
async fn verify_logout_token(server: &Server, token: &str) -> Value {
    verify_logout_token_for(server, token, NOTIFIED).await
}

async fn verify_logout_token_for(server: &Server, token: &str, client: &str) -> Value {
    auth_core::crypto::install_provider();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
    let jwks: jsonwebtoken::jwk::JwkSet = server.get("/.well-known/jwks.json").await.json().await.unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).expect("the logout token's key is in the JWKS");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&[&server.base]);
    validation.set_audience(&[client]);
    validation.set_required_spec_claims(&["iss", "aud", "exp", "iat", "sub"]);
    let claims = jsonwebtoken::decode::<Value>(token, &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(), &validation).unwrap().claims;
    assert_eq!(claims["events"], serde_json::json!({ "http://schemas.openid.net/event/backchannel-logout": {} }));
    assert!(claims.get("nonce").is_none(), "a logout token never has a nonce");
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
    let (iat, exp) = (claims["iat"].as_i64().unwrap(), claims["exp"].as_i64().unwrap());
    assert!(exp > iat && exp - iat <= 300, "short-lived: iat {iat}, exp {exp}");
    claims
}

async fn rp_initiated_logout_sends_one_verifiable_logout_token(db: TestDb) {
    let (uri, received) = relying_party(Answer::Ok).await;
    let server = server(db, &uri).await;
    let discovery: Value = server.get("/.well-known/openid-configuration").await.json().await.unwrap();
    assert_eq!(discovery["backchannel_logout_supported"], true);
    assert_eq!(discovery["backchannel_logout_session_supported"], true);
    let user_id = server.sign_up("nora").await;
    let mut browser = Browser::default();
    let (notified, silent) = sign_in_to_both(&server, &mut browser, "nora").await;
    let id_claims = id_token_claims(&notified);
    assert_eq!(id_claims["sid"], id_token_claims(&silent)["sid"], "one browser session");

    let logout = format!("/oauth/end-session?id_token_hint={}", notified["id_token"].as_str().unwrap());
    let response = browser.get(&server, &logout).await;
    assert!(response.status().is_success() || response.status() == reqwest::StatusCode::SEE_OTHER, "{}", response.status());
    assert!(!browser.has_session());

    let tokens = received.wait_for(1).await;
    let claims = verify_logout_token(&server, &tokens[0]).await;
    assert_eq!(claims["aud"], NOTIFIED);
    assert_eq!(claims["sid"], id_claims["sid"]);
    assert_eq!(claims["sub"], id_claims["sub"]);
    assert_eq!(claims["sub"], user_id.as_str());
    // Only the registered client is sent one: nothing more arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(received.len(), 1);
    let metrics = server.metrics().await;
    assert_eq!(metric_value(&metrics, "auth_backchannel_logouts_total", &["outcome=\"delivered\""]), 1.0);
    // Ending the session again sends nothing: it is no longer live.
    let again = browser.get(&server, &logout).await;
    assert!(again.status().is_success() || again.status() == reqwest::StatusCode::SEE_OTHER);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(received.len(), 1);
    audited(&server, "backchannel_logout_sent", 1).await;
}

/// Waits (bounded) for `n` audit events of `kind`.
async fn audited(server: &Server, kind: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = server.state.authority.audit_tail(1000).await.unwrap();
        let found = events.iter().filter(|e| e.kind.as_str() == kind).count();
        if found >= n {
            assert_eq!(found, n, "{kind}");
            return;
        }
        assert!(Instant::now() < deadline, "{found} {kind} events after 20 s, expected {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn ending_a_browser_session_through_the_api_sends_one(db: TestDb) {
    let (uri, received) = relying_party(Answer::Ok).await;
    let server = server(db, &uri).await;
    server.sign_up("omar").await;
    let mut browser = Browser::default();
    let (notified, silent) = sign_in_to_both(&server, &mut browser, "omar").await;
    let sid = id_token_claims(&notified)["sid"].as_str().unwrap().to_owned();
    let access = silent["access_token"].as_str().unwrap();
    let response = server.http.delete(server.url(&format!("/v1/sessions/{sid}"))).bearer_auth(access).send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::NO_CONTENT);
    let tokens = received.wait_for(1).await;
    let claims = verify_logout_token(&server, &tokens[0]).await;
    assert_eq!(claims["sid"], sid.as_str());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(received.len(), 1);
}

async fn logout_all_sends_one_per_browser_session(db: TestDb) {
    let (uri, received) = relying_party(Answer::Ok).await;
    let server = server(db, &uri).await;
    server.sign_up("pia").await;
    let (mut laptop, mut phone) = (Browser::default(), Browser::default());
    let (on_laptop, _) = sign_in_to_both(&server, &mut laptop, "pia").await;
    let (on_phone, _) = sign_in_to_both(&server, &mut phone, "pia").await;
    let access = on_laptop["access_token"].as_str().unwrap();
    let response = server.http.post(server.url("/v1/logout?all=true")).bearer_auth(access).send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let tokens = received.wait_for(2).await;
    let mut sids = Vec::new();
    for token in &tokens {
        sids.push(verify_logout_token(&server, token).await["sid"].as_str().unwrap().to_owned());
    }
    sids.sort();
    let mut expected = vec![
        id_token_claims(&on_laptop)["sid"].as_str().unwrap().to_owned(),
        id_token_claims(&on_phone)["sid"].as_str().unwrap().to_owned(),
    ];
    expected.sort();
    assert_eq!(sids, expected);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(received.len(), 2);
}

async fn a_failed_delivery_is_tried_again(db: TestDb) {
    let (uri, received) = relying_party(Answer::FailFirst).await;
    let server = server(db, &uri).await;
    server.sign_up("quinn").await;
    let mut browser = Browser::default();
    let (notified, _) = sign_in_to_both(&server, &mut browser, "quinn").await;
    let logout = format!("/oauth/end-session?id_token_hint={}", notified["id_token"].as_str().unwrap());
    browser.get(&server, &logout).await;
    let tokens = received.wait_for(2).await;
    assert_eq!(tokens[0], tokens[1], "the same token, sent again");
    audited(&server, "backchannel_logout_sent", 1).await;
    let metrics = server.metrics().await;
    assert_eq!(metric_value(&metrics, "auth_backchannel_logouts_total", &["outcome=\"retried\""]), 1.0);
    assert_eq!(metric_value(&metrics, "auth_backchannel_logouts_total", &["outcome=\"delivered\""]), 1.0);
    assert_eq!(metric_value(&metrics, "auth_backchannel_logouts_total", &["outcome=\"failed\""]), 0.0);
}

async fn a_relying_party_that_never_answers_does_not_delay_sign_out(db: TestDb) {
    let (uri, received) = relying_party(Answer::Never).await;
    let server = server(db, &uri).await;
    server.sign_up("rita").await;
    let mut browser = Browser::default();
    let (notified, _) = sign_in_to_both(&server, &mut browser, "rita").await;
    let logout = format!(
        "/oauth/end-session?id_token_hint={}&post_logout_redirect_uri=https://notified.test/bye",
        notified["id_token"].as_str().unwrap()
    );
    let started = Instant::now();
    let response = browser.get(&server, &logout).await;
    let took = started.elapsed();
    assert_eq!(response.status(), reqwest::StatusCode::SEE_OTHER);
    assert!(response.headers()[LOCATION].to_str().unwrap().starts_with("https://notified.test/bye"));
    received.wait_for(1).await;
    // The delivery waits up to its 5 s timeout; the sign-out did not wait for it.
    assert!(took < auth_server::backchannel::TIMEOUT / 2, "sign-out took {took:?}");
}

async fn withdrawing_consent_and_disabling_the_user_send_theirs(db: TestDb) {
    let (uri, received) = relying_party(Answer::Ok).await;
    let server = server(db, &uri).await;
    let user_id = server.sign_up("sam").await;
    let mut browser = Browser::default();
    let (notified, _) = sign_in_to_both(&server, &mut browser, "sam").await;
    let sid = id_token_claims(&notified)["sid"].as_str().unwrap().to_owned();
    // The third-party client, by consent in the same browser session.
    let path = authorize_path(PARTNER, PARTNER_REDIRECT, &[("scope", "openid bookings:read")]);
    let page = browser.get(&server, &path).await;
    assert_eq!(page.status(), reqwest::StatusCode::OK, "the consent page");
    let html = page.text().await.unwrap();
    let params = crate::consent::answer(&server, &mut browser, &html, "allow", PARTNER_REDIRECT).await;
    exchange(&server, PARTNER, PARTNER_REDIRECT, param(&params, "code").unwrap()).await;

    // Withdrawing the partner's consent ends its session: it alone is told.
    let access = notified["access_token"].as_str().unwrap();
    let response = server.http.delete(server.url(&format!("/v1/consents/{PARTNER}"))).bearer_auth(access).send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::NO_CONTENT);
    let tokens = received.wait_for(1).await;
    let claims = verify_logout_token_for(&server, &tokens[0], PARTNER).await;
    assert_eq!(claims["sid"], sid.as_str());

    // Disabling the user ends the browser session: the notified client is told.
    server.state.authority.disable_user(&user_id).await.unwrap();
    let tokens = received.wait_for(2).await;
    let claims = verify_logout_token(&server, &tokens[1]).await;
    assert_eq!((claims["sid"].as_str(), claims["sub"].as_str()), (Some(sid.as_str()), Some(user_id.as_str())));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(received.len(), 2, "the partner's session had already ended");
}

async fn a_delivery_failing_every_try_is_counted_and_audited(db: TestDb) {
    let (uri, received) = relying_party(Answer::Fail).await;
    let server = server(db, &uri).await;
    server.sign_up("tom").await;
    let mut browser = Browser::default();
    let (notified, _) = sign_in_to_both(&server, &mut browser, "tom").await;
    let logout = format!("/oauth/end-session?id_token_hint={}", notified["id_token"].as_str().unwrap());
    browser.get(&server, &logout).await;
    let attempts = auth_server::backchannel::ATTEMPTS as usize;
    received.wait_for(attempts).await;
    audited(&server, "backchannel_logout_failed", 1).await;
    let event = server.state.authority.audit_tail(1000).await.unwrap().into_iter().find(|e| e.kind.as_str() == "backchannel_logout_failed").unwrap();
    assert_eq!(event.client_id.as_deref(), Some(NOTIFIED));
    let detail = serde_json::to_string(&event.detail).unwrap();
    assert!(detail.contains("answered 500") && !detail.contains(&received.wait_for(1).await[0]), "{detail}");
    let metrics = server.metrics().await;
    assert_eq!(metric_value(&metrics, "auth_backchannel_logouts_total", &["outcome=\"failed\""]), 1.0);
    assert_eq!(metric_value(&metrics, "auth_backchannel_logouts_total", &["outcome=\"retried\""]), (attempts - 1) as f64);
    assert_eq!(received.len(), attempts, "no try beyond the last");
}
