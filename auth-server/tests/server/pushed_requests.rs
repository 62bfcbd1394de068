//! Pushed authorization requests (RFC 9126) over real HTTP: the client pushes the request with its
//! credentials, the browser brings the `request_uri` once, and a client whose spec requires
//! pushing cannot be sent through the browser with the parameters in the query.

use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::Value;

use crate::browser::{BROWSER_CLIENTS, Browser, SPA, SPA_REDIRECT, VERIFIER, authorize_path, input_value, param, redirect_params, sign_in};
use crate::support::{Options, Server, TestDb};

on_both_backends!(
    a_pushed_request_signs_in_once_through_the_browser,
    pushed_requests_are_validated_like_the_browsers,
);

const KIOSK_REDIRECT: &str = "https://kiosk.test/cb";

/// A confidential first-party client that must push its requests.
const KIOSK: &str = r#"
[clients.kiosk]
public = false
first_party = true
require_pushed_authorization_requests = true
grants = ["authorization_code"]
scopes = ["bookings:read"]
redirect_uris = ["https://kiosk.test/cb"]
description = "Front desk"
"#;

/// RFC 7636 Appendix B's challenge (of [`VERIFIER`]).
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

async fn server(db: TestDb) -> Server {
    let extra: &'static str = Box::leak(format!("{BROWSER_CLIENTS}{KIOSK}").into_boxed_str());
    Server::start_with(db, Options { extra_spec: extra, ..Options::default() }).await
}

/// The parameters of a good request of the kiosk, with `extra` added.
fn kiosk_request<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("response_type", "code"),
        ("redirect_uri", KIOSK_REDIRECT),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("scope", "openid bookings:read"),
        ("state", "st-pushed"),
        ("nonce", "n-pushed"),
    ];
    form.extend_from_slice(extra);
    form
}

async fn push(server: &Server, secret: &str, form: &[(&str, &str)]) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let response = server.form_request("/oauth/par", form).basic_auth("kiosk", Some(secret)).send().await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.json().await.unwrap())
}

fn authorize_uri_path(client: &str, request_uri: &str, extra: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new()).append_pair("client_id", client).append_pair("request_uri", request_uri).finish();
    format!("/oauth/authorize?{query}{extra}")
}

async fn a_pushed_request_signs_in_once_through_the_browser(db: TestDb) {
    let server = server(db).await;
    server.sign_up("pia").await;
    let secret = server.state.authority.register_client("kiosk").await.unwrap().expect("a secret");
    let discovery: Value = server.http.get(server.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(discovery["pushed_authorization_request_endpoint"], format!("{}/oauth/par", server.base));
    assert_eq!(discovery["require_pushed_authorization_requests"], false, "only of the clients whose spec says so");

    // The kiosk's request sent through the browser is refused: it must be pushed.
    let mut browser = Browser::default();
    let front = browser.get(&server, &authorize_path("kiosk", KIOSK_REDIRECT, &[])).await;
    let params = redirect_params(&front, KIOSK_REDIRECT);
    assert_eq!(param(&params, "error"), Some("invalid_request"));
    assert!(param(&params, "error_description").unwrap().contains("must push"), "{params:?}");

    // Pushing needs the client's credentials.
    let anonymous = server.post_form("/oauth/par", &[kiosk_request(&[]).as_slice(), &[("client_id", "kiosk")]].concat()).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let (status, _, body) = push(&server, "not-the-secret", &kiosk_request(&[])).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));

    let (status, headers, body) = push(&server, &secret, &kiosk_request(&[])).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["expires_in"], 60);
    let request_uri = body["request_uri"].as_str().unwrap().to_owned();
    assert!(request_uri.starts_with("urn:ietf:params:oauth:request_uri:") && request_uri.len() >= 34 + 43, "{request_uri}");

    // The browser brings only the client and the request_uri; parameters beside them are not
    // taken (RFC 9126 section 4): the pushed state and redirect URI are.
    let path = authorize_uri_path("kiosk", &request_uri, "&state=forged&redirect_uri=https%3A%2F%2Fevil.test%2F");
    let page = browser.get(&server, &path).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("Front desk"), "{html}");
    assert!(input_value(&html, "authorization").contains("state=st-pushed"));
    // The page's own form carries the pushed request on: signing in completes it.
    let csrf = input_value(&html, "csrf");
    let authorization = input_value(&html, "authorization");
    let answer = browser
        .post(&server, "/sign-in", &[("csrf", &csrf), ("authorization", &authorization), ("username", "pia"), ("password", crate::support::PASSWORD)])
        .await;
    let params = redirect_params(&answer, KIOSK_REDIRECT);
    assert_eq!(param(&params, "state"), Some("st-pushed"));
    assert_eq!(param(&params, "iss"), Some(server.base.as_str()));
    let code = param(&params, "code").unwrap();
    let form = [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", KIOSK_REDIRECT), ("code_verifier", VERIFIER)];
    let tokens: Value = server.form_request("/oauth/token", &form).basic_auth("kiosk", Some(&secret)).send().await.unwrap().json().await.unwrap();
    let id_token = tokens["id_token"].as_str().unwrap_or_else(|| panic!("an ID token: {tokens}"));
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(id_token).unwrap().claims;
    assert_eq!(claims["nonce"], "n-pushed");
    assert_eq!(claims["aud"], "kiosk");

    // A request_uri works once.
    let again = browser.get(&server, &authorize_uri_path("kiosk", &request_uri, "")).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert!(again.headers().get(LOCATION).is_none(), "an unknown request_uri is refused on a page");

    // Another client cannot use the kiosk's request_uri.
    let (_, _, body) = push(&server, &secret, &kiosk_request(&[])).await;
    let stolen = browser.get(&server, &authorize_uri_path(SPA, body["request_uri"].as_str().unwrap(), "")).await;
    assert_eq!(stolen.status(), StatusCode::BAD_REQUEST);
    // Nor is a made-up one looked up to any effect.
    let made_up = browser.get(&server, &authorize_uri_path("kiosk", "urn:ietf:params:oauth:request_uri:nope", "")).await;
    assert_eq!(made_up.status(), StatusCode::BAD_REQUEST);

    // A public client may push too (it authenticates with its id only), and its request_uri signs
    // in through the browser session the user already has.
    let mut spa_request = kiosk_request(&[("client_id", SPA)]);
    spa_request.retain(|(name, _)| *name != "redirect_uri");
    spa_request.push(("redirect_uri", SPA_REDIRECT));
    let pushed: Value = server.post_form("/oauth/par", &spa_request).await.json().await.unwrap();
    let signed_in = browser.get(&server, &authorize_uri_path(SPA, pushed["request_uri"].as_str().unwrap(), "")).await;
    assert!(param(&redirect_params(&signed_in, "http://127.0.0.1:43210/callback"), "code").is_some());
}

async fn pushed_requests_are_validated_like_the_browsers(db: TestDb) {
    let server = server(db).await;
    server.sign_up("quinn").await;
    let secret = server.state.authority.register_client("kiosk").await.unwrap().expect("a secret");
    // The request, the error, the start of its description.
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (kiosk_request(&[("redirect_uri", "https://evil.test/cb")]), "invalid_request", "authorize.invalid_redirect_uri"),
        (kiosk_request(&[("code_challenge_method", "plain")]), "invalid_request", "authorize.invalid_request"),
        (kiosk_request(&[("scope", "bookings:write")]), "invalid_scope", "auth.invalid_scope"),
        (kiosk_request(&[("response_type", "token")]), "unsupported_response_type", "authorize.unsupported_response_type"),
        (kiosk_request(&[("request_uri", "urn:ietf:params:oauth:request_uri:x")]), "invalid_request", "authorize.invalid_request"),
        (kiosk_request(&[("request", "eyJhbGciOiJub25lIn0.e30.")]), "request_not_supported", "authorize.invalid_request"),
    ];
    for (mut form, error, code) in cases {
        // A parameter given twice is the last one here; the server refuses repeats on its own.
        let mut seen = std::collections::HashSet::new();
        form.reverse();
        form.retain(|(name, _)| seen.insert(*name));
        let (status, _, body) = push(&server, &secret, &form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form:?}: {body}");
        assert_eq!(body["error"], error, "{form:?}: {body}");
        assert!(body["error_description"].as_str().unwrap().starts_with(code), "{form:?}: {body}");
    }
    // A repeated parameter is refused.
    let (status, _, body) = push(&server, &secret, &kiosk_request(&[("scope", "openid")])).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{body}");
    // The client_id in the form must be the client that authenticated.
    let (status, _, _) = push(&server, &secret, &kiosk_request(&[("client_id", SPA)])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A client without the code flow cannot push.
    let web = server.post_form("/oauth/par", &[kiosk_request(&[]).as_slice(), &[("client_id", "booking-web")]].concat()).await;
    let status = web.status();
    let body: Value = web.json().await.unwrap();
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("unauthorized_client")), "{body}");

    // Refused pushes stored nothing: the sign-in still works through a good one.
    let (status, _, body) = push(&server, &secret, &kiosk_request(&[])).await;
    assert_eq!(status, StatusCode::CREATED);
    let mut browser = Browser::default();
    let params = sign_in(&server, &mut browser, &authorize_uri_path("kiosk", body["request_uri"].as_str().unwrap(), ""), "quinn", KIOSK_REDIRECT).await;
    assert!(param(&params, "code").is_some());
}
