//! Consent for third-party clients, over real HTTP: the consent page after sign-in, allow and
//! deny, what is asked again (a wider scope, `prompt=consent`) and what is not, `prompt=none`,
//! the form's defences, and the user's listing and withdrawal through `/v1/consents`.

use auth_core::audit::AuditKind;
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use serde_json::Value;

use crate::browser::{BROWSER_CLIENTS, Browser, SPA, SPA_REDIRECT, VERIFIER, authorize_path, input_value, param, redirect_params};
use crate::support::{Options, PASSWORD, Server, TestDb, assert_oauth_error, assert_problem, read_json};

on_both_backends!(
    a_third_party_client_asks_once_for_what_it_requests,
    a_wider_scope_or_prompt_consent_asks_again_and_prompt_none_cannot,
    first_party_clients_never_ask,
    the_consent_form_refuses_foreign_posts,
    consents_are_listed_and_withdrawn_with_the_clients_sessions,
);

const PARTNER_REDIRECT: &str = "https://partner.test/cb";
const PLANNER_REDIRECT: &str = "https://planner.test/cb";

/// A public third-party client with refresh tokens and no description.
const PLANNER: &str = r#"
[clients.planner]
public = true
grants = ["authorization_code", "refresh_token"]
scopes = ["bookings:read", "bookings:write"]
redirect_uris = ["https://planner.test/cb"]
"#;

async fn server(db: TestDb) -> Server {
    let extra: &'static str = Box::leak(format!("{BROWSER_CLIENTS}{PLANNER}").into_boxed_str());
    Server::start_with(db, Options { extra_spec: extra, ..Options::default() }).await
}

/// Signs `username` in through the form of `path`, which must answer with the consent page; its
/// HTML.
pub async fn sign_in_to_consent(server: &Server, browser: &mut Browser, path: &str, username: &str) -> String {
    let page = browser.get(server, path).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    let form = [
        ("csrf", input_value(&html, "csrf")),
        ("authorization", input_value(&html, "authorization")),
        ("username", username.to_owned()),
        ("password", PASSWORD.to_owned()),
    ];
    let response = browser.post(server, "/sign-in", &borrow(&form)).await;
    assert_eq!(response.status(), StatusCode::OK, "the consent page, not a redirect: {:?}", response.headers().get(LOCATION));
    assert!(browser.has_session(), "the consent page sets the new session's cookie");
    let html = response.text().await.unwrap();
    assert!(html.contains("action=\"/consent\""), "{html}");
    html
}

/// Answers the consent page `html` with `decision`; the redirect's parameters.
pub async fn answer(server: &Server, browser: &mut Browser, html: &str, decision: &str, target: &str) -> Vec<(String, String)> {
    let response = browser.post(server, "/consent", &borrow(&consent_form(html, decision))).await;
    redirect_params(&response, target)
}

fn consent_form(html: &str, decision: &str) -> Vec<(&'static str, String)> {
    vec![
        ("csrf", input_value(html, "csrf")),
        ("authorization", input_value(html, "authorization")),
        ("session", input_value(html, "session")),
        ("decision", decision.to_owned()),
    ]
}

fn borrow<'a>(form: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    form.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Whether a page is the consent page.
async fn is_consent_page(response: reqwest::Response) -> Option<String> {
    if response.status() != StatusCode::OK {
        return None;
    }
    let html = response.text().await.unwrap();
    html.contains("action=\"/consent\"").then_some(html)
}

/// Exchanges a code of the public client `planner`.
async fn planner_exchange(server: &Server, code: &str) -> reqwest::Response {
    server
        .post_form(
            "/oauth/token",
            &[("grant_type", "authorization_code"), ("client_id", "planner"), ("code", code), ("redirect_uri", PLANNER_REDIRECT), ("code_verifier", VERIFIER)],
        )
        .await
}

async fn a_third_party_client_asks_once_for_what_it_requests(db: TestDb) {
    let server = server(db).await;
    server.sign_up("alice").await;
    let secret = server.state.authority.register_client("partner").await.unwrap().expect("a secret");
    let mut browser = Browser::default();
    let path = authorize_path("partner", PARTNER_REDIRECT, &[("scope", "openid bookings:read")]);

    // Right after signing in: the consent page, not a code.
    let page = browser.get(&server, &path).await;
    let html = page.text().await.unwrap();
    let csrf = input_value(&html, "csrf");
    let authorization = input_value(&html, "authorization");
    let form = [("csrf", csrf), ("authorization", authorization), ("username", "alice".to_owned()), ("password", PASSWORD.to_owned())];
    let response = browser.post(&server, "/sign-in", &borrow(&form)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let csp = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("form-action 'self' https://partner.test;") && !csp.contains("script-src") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["x-frame-options"], "DENY");
    let html = response.text().await.unwrap();
    assert!(html.contains("Partner app"), "the client's description names it: {html}");
    assert!(html.contains("See bookings") && html.contains("Confirm who you are"), "each scope by its description: {html}");
    assert!(html.contains("value=\"allow\"") && html.contains("value=\"deny\"") && !html.contains("<script"), "{html}");
    assert!(browser.has_session());

    // Deny: back to the client with access_denied, state and iss, and no code.
    let params = answer(&server, &mut browser, &html, "deny", PARTNER_REDIRECT).await;
    assert_eq!(param(&params, "error"), Some("access_denied"));
    assert!(param(&params, "error_description").is_some_and(|d| d.starts_with("authorize.access_denied")), "{params:?}");
    assert_eq!(param(&params, "state"), Some("st-1"));
    assert_eq!(param(&params, "iss"), Some(server.base.as_str()));
    assert!(param(&params, "code").is_none());

    // Denying recorded nothing: the signed-in browser is asked again, in the language asked for.
    let german = browser.get(&server, &authorize_path("partner", PARTNER_REDIRECT, &[("scope", "openid bookings:read"), ("ui_locales", "de")])).await;
    let html = is_consent_page(german).await.expect("asked again after a denial");
    assert!(html.contains("lang=\"de\"") && html.contains("Erlauben") && html.contains("Bestätigen, wer Sie sind"), "{html}");

    // Allow: a code, which the client exchanges.
    let params = answer(&server, &mut browser, &html, "allow", PARTNER_REDIRECT).await;
    assert_eq!(param(&params, "state"), Some("st-1"));
    assert_eq!(param(&params, "iss"), Some(server.base.as_str()));
    let code = param(&params, "code").unwrap();
    let form = [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", PARTNER_REDIRECT), ("code_verifier", VERIFIER)];
    let response = server.form_request("/oauth/token", &form).basic_auth("partner", Some(&secret)).send().await.unwrap();
    let (status, _, tokens) = read_json(response).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["scope"], "openid bookings:read");

    // The same scopes, or fewer, or silently: no page.
    for extra in [vec![("scope", "openid bookings:read")], vec![("scope", "bookings:read")], vec![("scope", "bookings:read openid"), ("prompt", "none")]] {
        let response = browser.get(&server, &authorize_path("partner", PARTNER_REDIRECT, &extra)).await;
        assert!(param(&redirect_params(&response, PARTNER_REDIRECT), "code").is_some(), "{extra:?}");
    }
    let audit = server.state.authority.audit_tail(50).await.unwrap();
    let granted: Vec<_> = audit.iter().filter(|e| e.kind == AuditKind::ConsentGranted).collect();
    assert_eq!(granted.len(), 1, "{audit:?}");
    assert_eq!(granted[0].client_id.as_deref(), Some("partner"));
    assert_eq!(granted[0].detail["scope"], "openid bookings:read");
}

async fn a_wider_scope_or_prompt_consent_asks_again_and_prompt_none_cannot(db: TestDb) {
    let server = server(db).await;
    server.sign_up("bob").await;
    let mut browser = Browser::default();
    let read = authorize_path("planner", PLANNER_REDIRECT, &[("scope", "bookings:read")]);
    let html = sign_in_to_consent(&server, &mut browser, &read, "bob").await;
    assert!(html.contains("planner"), "a client without a description is named by its id: {html}");
    assert!(!html.contains("Create and cancel bookings"), "{html}");
    assert!(param(&answer(&server, &mut browser, &html, "allow", PLANNER_REDIRECT).await, "code").is_some());
    assert!(param(&redirect_params(&browser.get(&server, &read).await, PLANNER_REDIRECT), "code").is_some());

    // More than was granted: asked again, and never silently.
    let wider = [("scope", "bookings:read bookings:write")];
    let silent = browser.get(&server, &authorize_path("planner", PLANNER_REDIRECT, &[wider[0], ("prompt", "none")])).await;
    let params = redirect_params(&silent, PLANNER_REDIRECT);
    assert_eq!(param(&params, "error"), Some("consent_required"));
    assert!(param(&params, "error_description").is_some_and(|d| d.starts_with("authorize.consent_required")), "{params:?}");
    assert_eq!((param(&params, "state"), param(&params, "iss")), (Some("st-1"), Some(server.base.as_str())));
    assert!(param(&params, "code").is_none());
    let html = is_consent_page(browser.get(&server, &authorize_path("planner", PLANNER_REDIRECT, &wider)).await).await.expect("a wider scope asks");
    assert!(html.contains("See bookings") && html.contains("Create and cancel bookings"), "{html}");
    assert!(param(&answer(&server, &mut browser, &html, "allow", PLANNER_REDIRECT).await, "code").is_some());
    assert!(param(&redirect_params(&browser.get(&server, &authorize_path("planner", PLANNER_REDIRECT, &wider)).await, PLANNER_REDIRECT), "code").is_some());

    // prompt=consent asks even so, also when it leads through the sign-in form (prompt=login).
    let again = authorize_path("planner", PLANNER_REDIRECT, &[("scope", "bookings:read"), ("prompt", "consent")]);
    let html = is_consent_page(browser.get(&server, &again).await).await.expect("prompt=consent asks");
    let params = answer(&server, &mut browser, &html, "deny", PLANNER_REDIRECT).await;
    assert_eq!(param(&params, "error"), Some("access_denied"), "denying once more withdraws nothing given before");
    assert!(param(&redirect_params(&browser.get(&server, &read).await, PLANNER_REDIRECT), "code").is_some());
    let relogin = authorize_path("planner", PLANNER_REDIRECT, &[("scope", "bookings:read"), ("prompt", "login consent")]);
    sign_in_to_consent(&server, &mut browser, &relogin, "bob").await;
}

async fn first_party_clients_never_ask(db: TestDb) {
    let server = server(db).await;
    server.sign_up("carol").await;
    let mut browser = Browser::default();
    let target = "http://127.0.0.1:43210/callback";
    let params = crate::browser::sign_in(&server, &mut browser, &authorize_path(SPA, SPA_REDIRECT, &[("scope", "openid bookings:write")]), "carol", target).await;
    assert!(param(&params, "code").is_some());
    for prompt in ["consent", "none"] {
        let response = browser.get(&server, &authorize_path(SPA, SPA_REDIRECT, &[("scope", "openid bookings:read bookings:write"), ("prompt", prompt)])).await;
        assert!(param(&redirect_params(&response, target), "code").is_some(), "prompt={prompt}");
    }
    let consents = server.state.authority.consents_of_user(&server.state.authority.user_by_username("carol").await.unwrap().unwrap().id).await.unwrap();
    assert!(consents.is_empty(), "nothing is recorded for a first-party client: {consents:?}");
}

async fn the_consent_form_refuses_foreign_posts(db: TestDb) {
    let server = server(db).await;
    server.sign_up("dave").await;
    let mut browser = Browser::default();
    let path = authorize_path("planner", PLANNER_REDIRECT, &[("scope", "bookings:read")]);
    let html = sign_in_to_consent(&server, &mut browser, &path, "dave").await;
    let form = consent_form(&html, "allow");

    // Without the CSRF token, or with a wrong one.
    let without: Vec<_> = form.iter().filter(|(k, _)| *k != "csrf").cloned().collect();
    let response = browser.post(&server, "/consent", &borrow(&without)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.text().await.unwrap().contains("request.csrf"));
    let mut wrong = form.clone();
    wrong[0].1 = "AAAA".into();
    assert_eq!(browser.post(&server, "/consent", &borrow(&wrong)).await.status(), StatusCode::FORBIDDEN);
    // From another site's page, with the user's cookies.
    for (name, value) in [("origin", "https://evil.test"), ("sec-fetch-site", "cross-site")] {
        let cross = server
            .http
            .post(server.url("/consent"))
            .header("cookie", browser.cookie_header())
            .header(name, value)
            .form(&borrow(&form))
            .send()
            .await
            .unwrap();
        assert_eq!(cross.status(), StatusCode::FORBIDDEN, "{name}: {value}");
        assert!(cross.headers().get(LOCATION).is_none());
    }
    // A page shown to another sign-in than the browser's.
    let mut other = form.clone();
    other[2].1 = "another-session".into();
    assert_eq!(browser.post(&server, "/consent", &borrow(&other)).await.status(), StatusCode::FORBIDDEN);
    // Neither allow nor deny.
    let mut odd = form.clone();
    odd[3].1 = "maybe".into();
    assert_eq!(browser.post(&server, "/consent", &borrow(&odd)).await.status(), StatusCode::BAD_REQUEST);
    // Nothing was recorded by any of them.
    let user = server.state.authority.user_by_username("dave").await.unwrap().unwrap();
    assert!(server.state.authority.consents_of_user(&user.id).await.unwrap().is_empty());

    // Without the session cookie: signed in again first (the CSRF cookie alone is kept).
    let csrf_only = browser.cookie_header().split("; ").filter(|c| c.starts_with("auth_csrf=")).collect::<Vec<_>>().join("; ");
    let signed_out = server
        .http
        .post(server.url("/consent"))
        .header("cookie", csrf_only)
        .header("origin", &server.base)
        .form(&borrow(&form))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), StatusCode::UNAUTHORIZED);
    assert!(signed_out.text().await.unwrap().contains("action=\"/sign-in\""));
    assert!(server.state.authority.consents_of_user(&user.id).await.unwrap().is_empty());

    // The page's own answer goes through.
    assert!(param(&answer(&server, &mut browser, &html, "allow", PLANNER_REDIRECT).await, "code").is_some());
}

async fn consents_are_listed_and_withdrawn_with_the_clients_sessions(db: TestDb) {
    let server = server(db).await;
    server.sign_up("erin").await;
    let mut browser = Browser::default();
    let path = authorize_path("planner", PLANNER_REDIRECT, &[("scope", "bookings:read")]);
    let html = sign_in_to_consent(&server, &mut browser, &path, "erin").await;
    let code = param(&answer(&server, &mut browser, &html, "allow", PLANNER_REDIRECT).await, "code").unwrap().to_owned();
    let (status, _, planner) = read_json(planner_exchange(&server, &code).await).await;
    assert_eq!(status, StatusCode::OK, "{planner}");
    let planner_refresh = planner["refresh_token"].as_str().unwrap().to_owned();
    // A code issued while the consent stands, exchanged after it is withdrawn.
    let pending = param(&redirect_params(&browser.get(&server, &path).await, PLANNER_REDIRECT), "code").unwrap().to_owned();

    // The user's own app (first-party, password grant) manages the consents.
    let web = server.login("erin").await;
    let (status, headers, body) = read_json(server.get_bearer("/v1/consents", &web.access).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    let consents = body["consents"].as_array().unwrap();
    assert_eq!(consents.len(), 1, "{body}");
    assert_eq!(consents[0]["client_id"], "planner");
    assert_eq!(consents[0]["scopes"], serde_json::json!(["bookings:read"]));
    assert!(consents[0]["granted_at"].as_i64().unwrap() > 1_600_000_000, "{body}");

    let delete = |client: String| {
        let request = server.http.delete(server.url(&format!("/v1/consents/{client}"))).bearer_auth(&web.access);
        async move { request.send().await.unwrap() }
    };
    let response = delete("planner".into()).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (_, _, body) = read_json(server.get_bearer("/v1/consents", &web.access).await).await;
    assert_eq!(body["consents"], serde_json::json!([]));

    // Gone with it: the client's session and its pending code; the user's other sessions stay.
    let refreshed = server.post_form("/oauth/token", &[("grant_type", "refresh_token"), ("client_id", "planner"), ("refresh_token", &planner_refresh)]).await;
    let (status, headers, body) = read_json(refreshed).await;
    assert_oauth_error(status, &headers, &body, StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(body["error_description"].as_str().unwrap().starts_with("refresh.revoked"), "{body}");
    let (status, _, body) = read_json(planner_exchange(&server, &pending).await).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
    assert_eq!(server.get_bearer("/userinfo", &web.access).await.status(), StatusCode::OK);
    let audit = server.state.authority.audit_tail(50).await.unwrap();
    let revoked = audit.iter().find(|e| e.kind == AuditKind::ConsentRevoked).expect("consent_revoked audited");
    assert_eq!((revoked.client_id.as_deref(), &revoked.detail["sessions_ended"]), (Some("planner"), &Value::from(1)));

    // The next authorization asks again.
    assert!(is_consent_page(browser.get(&server, &path).await).await.is_some());

    // Nothing to withdraw, or nothing that can be a client: 404.
    for client in ["planner".to_owned(), "partner".to_owned(), "x".repeat(300), "%00".to_owned()] {
        let (status, headers, body) = read_json(delete(client.clone()).await).await;
        assert_problem(status, &headers, &body, StatusCode::NOT_FOUND, "consent.not_found");
    }
    // Without a token: 401.
    let anonymous = server.http.get(server.url("/v1/consents")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}
