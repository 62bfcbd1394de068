//! Signing in through the browser, driven over real HTTP the way a browser and a client app do it:
//! the authorization request, the hosted sign-in form (its cookies and CSRF token), the redirect
//! back with a code, the code exchange with PKCE, and every refusal on the way.

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::Value;

use crate::support::{Options, PASSWORD, Server, TestDb};

on_both_backends!(
    code_flow_signs_in_exchanges_once_and_keeps_the_session,
    openid_scope_gives_an_id_token_and_discovery,
    a_reused_code_revokes_the_session_it_started,
    refusals_before_the_redirect_uri_is_known_never_redirect,
    refusals_after_go_back_to_the_client_with_state_and_iss,
    the_exchange_checks_pkce_client_and_redirect_uri,
    the_form_refuses_foreign_posts_and_wrong_passwords,
    a_confidential_client_exchanges_with_its_secret,
    codes_expire,
    sign_out_ends_the_browser_session_and_the_sessions_it_started,
    sign_out_without_a_hint_asks_first,
    browser_sessions_are_listed_and_ended_with_the_users_other_sessions,
    web_origins_may_call_the_token_endpoint_from_script,
);

/// The clients of the code flow, added to the booking spec.
pub const BROWSER_CLIENTS: &str = r#"
[browser]
code_ttl = "3s"

[clients.booking-spa]
public = true
first_party = true
grants = ["authorization_code", "refresh_token"]
scopes = ["bookings:read", "bookings:write"]
redirect_uris = ["http://127.0.0.1/callback", "https://app.booking.test/callback"]
post_logout_redirect_uris = ["https://app.booking.test/signed-out"]
web_origins = ["https://app.booking.test"]
description = "Booking"

[clients.partner]
public = false
grants = ["authorization_code"]
scopes = ["bookings:read"]
redirect_uris = ["https://partner.test/cb"]
description = "Partner app"
"#;

/// The public client of the code flow.
pub const SPA: &str = "booking-spa";
/// Its native-style loopback redirect (any port).
pub const SPA_REDIRECT: &str = "http://127.0.0.1:43210/callback";
/// RFC 7636 Appendix B's verifier and challenge.
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

async fn server(db: TestDb) -> Server {
    Server::start_with(db, Options { extra_spec: BROWSER_CLIENTS, ..Options::default() }).await
}

/// A browser: the cookies it was given, sent back on every request.
#[derive(Debug, Default)]
pub struct Browser {
    cookies: Vec<(String, String)>,
}

impl Browser {
    /// The `Cookie` header the browser sends.
    pub fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn remember(&mut self, headers: &HeaderMap) {
        for value in headers.get_all(SET_COOKIE) {
            let text = value.to_str().unwrap();
            let (pair, _) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(k, _)| k != name);
            if !value.is_empty() && !text.contains("Max-Age=0") {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    /// GETs `path` with the browser's cookies (no redirects followed).
    pub async fn get(&mut self, server: &Server, path: &str) -> reqwest::Response {
        let response = server.http.get(server.url(path)).header("cookie", self.cookie_header()).send().await.unwrap();
        self.remember(response.headers());
        response
    }

    /// POSTs a form to `path` as the service's own page would (same origin).
    pub async fn post(&mut self, server: &Server, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let response = server
            .http
            .post(server.url(path))
            .header("cookie", self.cookie_header())
            .header("origin", &server.base)
            .form(form)
            .send()
            .await
            .unwrap();
        self.remember(response.headers());
        response
    }

    /// Whether the browser holds a session cookie.
    pub fn has_session(&self) -> bool {
        self.cookies.iter().any(|(k, _)| k.ends_with("auth_session"))
    }
}

/// The `/oauth/authorize` path of a request of `client` with `extra` parameters.
pub fn authorize_path(client: &str, redirect_uri: &str, extra: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("response_type", "code")
        .append_pair("client_id", client)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("code_challenge", CHALLENGE)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "st-1");
    for (name, value) in extra {
        query.append_pair(name, value);
    }
    format!("/oauth/authorize?{}", query.finish())
}

/// The value of the hidden (or other) input `name` in a page.
pub fn input_value(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no input {name} in {html}")) + marker.len();
    let end = start + html[start..].find('"').unwrap();
    html[start..end].replace("&amp;", "&").replace("&#38;", "&").replace("&quot;", "\"").replace("&#34;", "\"")
}

/// The query parameters of a redirect's `Location`, after checking where it goes.
pub fn redirect_params(response: &reqwest::Response, expected_target: &str) -> Vec<(String, String)> {
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = url::Url::parse(response.headers()[LOCATION].to_str().unwrap()).unwrap();
    let target = format!("{}://{}{}", location.scheme(), location.host_str().unwrap(), location.port().map(|p| format!(":{p}")).unwrap_or_default());
    assert_eq!(format!("{target}{}", location.path()), expected_target, "redirected elsewhere: {location}");
    location.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// The value of query parameter `name`.
pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Signs `username` in through the form for `path`; returns the redirect's parameters.
pub async fn sign_in(server: &Server, browser: &mut Browser, path: &str, username: &str, target: &str) -> Vec<(String, String)> {
    let page = browser.get(server, path).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    let csrf = input_value(&html, "csrf");
    let authorization = input_value(&html, "authorization");
    let response = browser
        .post(server, "/sign-in", &[("csrf", &csrf), ("authorization", &authorization), ("username", username), ("password", PASSWORD)])
        .await;
    redirect_params(&response, target)
}

async fn exchange(server: &Server, code: &str, redirect_uri: &str, verifier: &str) -> reqwest::Response {
    server
        .post_form(
            "/oauth/token",
            &[("grant_type", "authorization_code"), ("client_id", SPA), ("code", code), ("redirect_uri", redirect_uri), ("code_verifier", verifier)],
        )
        .await
}

async fn error_of(response: reqwest::Response) -> (StatusCode, String, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    (status, body["error"].as_str().unwrap().to_owned(), body["error_description"].as_str().unwrap().to_owned())
}

async fn code_flow_signs_in_exchanges_once_and_keeps_the_session(db: TestDb) {
    let server = server(db).await;
    server.sign_up("alice").await;
    let mut browser = Browser::default();
    let path = authorize_path(SPA, SPA_REDIRECT, &[("scope", "openid bookings:read")]);

    let page = browser.get(&server, &path).await;
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("form-action 'self' http://127.0.0.1:* https://app.booking.test;"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline") && !csp.contains("script-src"), "{csp}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert_eq!(page.headers()["cache-control"], "no-store");
    let set_cookie = page.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(set_cookie.starts_with("auth_csrf=") && set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let html = page.text().await.unwrap();
    assert!(html.contains("<label for=\"username\">") && html.contains("<label for=\"password\">"), "{html}");
    assert!(!html.contains("<script"), "no script on the page");

    let params = sign_in(&server, &mut browser, &path, "alice", "http://127.0.0.1:43210/callback").await;
    assert_eq!(param(&params, "state"), Some("st-1"));
    assert_eq!(param(&params, "iss"), Some(server.base.as_str()), "RFC 9207 iss");
    let code = param(&params, "code").unwrap().to_owned();
    assert!(code.len() >= 43, "at least 256 bits: {code}");
    assert!(browser.has_session());

    let response = exchange(&server, &code, SPA_REDIRECT, crate::browser::VERIFIER).await;
    assert_eq!(response.status(), StatusCode::OK);
    let tokens: Value = response.json().await.unwrap();
    assert_eq!(tokens["scope"], "openid bookings:read");
    assert_eq!(tokens["token_type"], "Bearer");
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let me = server.get_bearer("/userinfo", access).await;
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(me.json::<Value>().await.unwrap()["preferred_username"], "alice");

    // The browser session signs the user in again without the form (single sign-on).
    let again = browser.get(&server, &path).await;
    let params = redirect_params(&again, "http://127.0.0.1:43210/callback");
    assert!(param(&params, "code").is_some_and(|c| c != code));
    // prompt=login asks again; prompt=none needs no page.
    let login = browser.get(&server, &authorize_path(SPA, SPA_REDIRECT, &[("prompt", "login")])).await;
    assert_eq!(login.status(), StatusCode::OK);
    let silent = browser.get(&server, &authorize_path(SPA, SPA_REDIRECT, &[("prompt", "none")])).await;
    assert!(param(&redirect_params(&silent, "http://127.0.0.1:43210/callback"), "code").is_some());
    // max_age=0 asks for a fresh sign-in.
    let fresh = browser.get(&server, &authorize_path(SPA, SPA_REDIRECT, &[("max_age", "0")])).await;
    assert!(fresh.status() == StatusCode::OK || fresh.status() == StatusCode::SEE_OTHER);

    // The refresh token of the code's session rotates like any other.
    let refreshed = server.post_form("/oauth/token", &[("grant_type", "refresh_token"), ("client_id", SPA), ("refresh_token", &refresh)]).await;
    assert_eq!(refreshed.status(), StatusCode::OK);
}

async fn openid_scope_gives_an_id_token_and_discovery(db: TestDb) {
    let server = server(db).await;
    let user_id = server.sign_up("gina").await;
    let (status, body) = {
        let response = server.get("/.well-known/openid-configuration").await;
        (response.status(), response.json::<Value>().await.unwrap())
    };
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["issuer"], server.base.as_str());
    assert_eq!(body["authorization_endpoint"], format!("{}/oauth/authorize", server.base));
    assert_eq!(body["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(body["subject_types_supported"], serde_json::json!(["public"]));
    assert_eq!(body["id_token_signing_alg_values_supported"], serde_json::json!(["RS256"]));
    assert_eq!(body["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    assert!(body["scopes_supported"].as_array().unwrap().iter().any(|s| s == "openid"));
    // The JWKS holds the RS256 key that signs ID tokens beside the access tokens' EdDSA key.
    let jwks: jsonwebtoken::jwk::JwkSet = server.get("/.well-known/jwks.json").await.json().await.unwrap();
    let algs: Vec<String> = jwks.keys.iter().filter_map(|k| k.common.key_algorithm.map(|a| format!("{a:?}"))).collect();
    assert!(algs.contains(&"RS256".to_owned()) && algs.contains(&"EdDSA".to_owned()), "{algs:?}");

    let mut browser = Browser::default();
    let path = authorize_path(SPA, SPA_REDIRECT, &[("scope", "openid profile bookings:read"), ("nonce", "n-0S6_WzA2Mj")]);
    let params = sign_in(&server, &mut browser, &path, "gina", "http://127.0.0.1:43210/callback").await;
    let tokens: Value = exchange(&server, param(&params, "code").unwrap(), SPA_REDIRECT, VERIFIER).await.json().await.unwrap();
    assert_eq!(tokens["scope"], "openid profile bookings:read");
    let id_token = tokens["id_token"].as_str().expect("an ID token");
    let expected = auth_core::tokens::IdTokenExpectations { issuer: &server.base, client_id: SPA, nonce: Some("n-0S6_WzA2Mj"), leeway: 5 };
    let now = auth_core::clock::Clock::now(&auth_core::clock::SystemClock);
    let claims = auth_core::tokens::verify_id_token(id_token, &auth_core::keys::KeySet::from_jwks(&jwks), &expected, now).unwrap();
    assert_eq!(claims.sub, user_id);
    assert_eq!(claims.azp, SPA);
    assert_eq!(claims.amr, ["pwd"]);
    assert!(claims.sid.is_some() && (now - claims.auth_time).abs() < 60);
    assert_eq!(claims.at_hash.as_deref(), Some(auth_core::tokens::at_hash(tokens["access_token"].as_str().unwrap()).as_str()));
    assert_eq!(claims.released["preferred_username"], "gina");
    let wrong_nonce = auth_core::tokens::IdTokenExpectations { nonce: Some("other"), ..expected.clone() };
    assert!(auth_core::tokens::verify_id_token(id_token, &auth_core::keys::KeySet::from_jwks(&jwks), &wrong_nonce, now).is_err());
    // Without the openid scope there is no ID token.
    let path = authorize_path(SPA, SPA_REDIRECT, &[("scope", "bookings:read")]);
    let again = browser.get(&server, &path).await;
    let tokens: Value = exchange(&server, param(&redirect_params(&again, "http://127.0.0.1:43210/callback"), "code").unwrap(), SPA_REDIRECT, VERIFIER)
        .await
        .json()
        .await
        .unwrap();
    assert!(tokens.get("id_token").is_none(), "{tokens}");
}

async fn a_reused_code_revokes_the_session_it_started(db: TestDb) {
    let server = server(db).await;
    server.sign_up("bob").await;
    let mut browser = Browser::default();
    let path = authorize_path(SPA, SPA_REDIRECT, &[]);
    let params = sign_in(&server, &mut browser, &path, "bob", "http://127.0.0.1:43210/callback").await;
    let code = param(&params, "code").unwrap();
    let first: Value = exchange(&server, code, SPA_REDIRECT, VERIFIER).await.json().await.unwrap();
    let access = first["access_token"].as_str().unwrap();
    let refresh = first["refresh_token"].as_str().unwrap();

    let (status, error, description) = error_of(exchange(&server, code, SPA_REDIRECT, VERIFIER).await).await;
    assert_eq!((status, error.as_str()), (StatusCode::BAD_REQUEST, "invalid_grant"));
    assert!(description.starts_with("code.reused"), "{description}");
    // What the first exchange gave is revoked (RFC 6749 4.1.2).
    let me = server.get_bearer("/userinfo", access).await;
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
    let (_, error, description) =
        error_of(server.post_form("/oauth/token", &[("grant_type", "refresh_token"), ("client_id", SPA), ("refresh_token", refresh)]).await).await;
    assert_eq!(error, "invalid_grant");
    assert!(description.starts_with("refresh.revoked"), "{description}");
    let audit = server.state.authority.audit_tail(50).await.unwrap();
    assert!(audit.iter().any(|e| e.kind == auth_core::audit::AuditKind::CodeReuseDetected), "{audit:?}");
}

async fn refusals_before_the_redirect_uri_is_known_never_redirect(db: TestDb) {
    let server = server(db).await;
    let mut browser = Browser::default();
    for (path, code) in [
        (authorize_path("nobody", SPA_REDIRECT, &[]), "authorize.invalid_client"),
        // The password-grant client has no redirect URIs at all.
        (authorize_path("booking-web", SPA_REDIRECT, &[]), "authorize.invalid_client"),
        (authorize_path(SPA, "https://evil.test/callback", &[]), "authorize.invalid_redirect_uri"),
        (authorize_path(SPA, "https://app.booking.test/callback/../evil", &[]), "authorize.invalid_redirect_uri"),
        (authorize_path(SPA, "https://app.booking.test/callback?next=https://evil.test", &[]), "authorize.invalid_redirect_uri"),
        (authorize_path(SPA, "https://app.booking.test.evil.test/callback", &[]), "authorize.invalid_redirect_uri"),
        (authorize_path(SPA, "https://app.booking.test/callback#x", &[]), "authorize.invalid_redirect_uri"),
        (authorize_path(SPA, "http://127.0.0.1:43210/callback/../x", &[]), "authorize.invalid_redirect_uri"),
        (authorize_path(SPA, "//evil.test/callback", &[]), "authorize.invalid_redirect_uri"),
        // Several registered: the request must name one.
        ("/oauth/authorize?response_type=code&client_id=booking-spa".to_owned(), "authorize.invalid_redirect_uri"),
        (format!("{}&client_id=booking-spa", authorize_path(SPA, SPA_REDIRECT, &[])), "authorize.invalid_request"),
    ] {
        let response = browser.get(&server, &path).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        assert!(response.headers().get(LOCATION).is_none(), "{path} redirected");
        let html = response.text().await.unwrap();
        assert!(html.contains(code), "{path}: {html}");
    }
    // A page in the language asked for.
    let german = browser.get(&server, &authorize_path("nobody", SPA_REDIRECT, &[("ui_locales", "de")])).await;
    assert!(german.text().await.unwrap().contains("lang=\"de\""));
}

async fn refusals_after_go_back_to_the_client_with_state_and_iss(db: TestDb) {
    let server = server(db).await;
    let mut browser = Browser::default();
    let base = |params: &str| format!("/oauth/authorize?client_id={SPA}&redirect_uri={}&state=s2{params}", urlencode(SPA_REDIRECT));
    for (path, error, code) in [
        (base("&response_type=token"), "unsupported_response_type", "authorize.unsupported_response_type"),
        (base("&response_type=code"), "invalid_request", "authorize.invalid_request"),
        (base(&format!("&response_type=code&code_challenge={CHALLENGE}&code_challenge_method=plain")), "invalid_request", "authorize.invalid_request"),
        (base(&format!("&response_type=code&code_challenge={CHALLENGE}")), "invalid_request", "authorize.invalid_request"),
        (base(&format!("&response_type=code&code_challenge={CHALLENGE}&code_challenge_method=S256&scope=users:admin")), "invalid_scope", "auth.invalid_scope"),
        (base(&format!("&response_type=code&code_challenge={CHALLENGE}&code_challenge_method=S256&prompt=none")), "login_required", "authorize.login_required"),
        (base(&format!("&response_type=code&code_challenge={CHALLENGE}&code_challenge_method=S256&prompt=none%20login")), "invalid_request", "authorize.invalid_request"),
        (base(&format!("&response_type=code&code_challenge={CHALLENGE}&code_challenge_method=S256&request=eyJ")), "request_not_supported", "authorize.invalid_request"),
    ] {
        let response = browser.get(&server, &path).await;
        let params = redirect_params(&response, "http://127.0.0.1:43210/callback");
        assert_eq!(param(&params, "error"), Some(error), "{path}");
        assert!(param(&params, "error_description").is_some_and(|d| d.starts_with(code)), "{path}: {params:?}");
        assert_eq!(param(&params, "state"), Some("s2"), "{path}");
        assert_eq!(param(&params, "iss"), Some(server.base.as_str()));
        assert!(param(&params, "code").is_none());
    }
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

async fn the_exchange_checks_pkce_client_and_redirect_uri(db: TestDb) {
    let server = server(db).await;
    server.sign_up("carol").await;
    let mut browser = Browser::default();
    let path = authorize_path(SPA, SPA_REDIRECT, &[]);
    let target = "http://127.0.0.1:43210/callback";
    let mut fresh_code = async || {
        let page = browser.get(&server, &path).await;
        if page.status() == StatusCode::SEE_OTHER {
            return param(&redirect_params(&page, target), "code").unwrap().to_owned();
        }
        drop(page);
        param(&sign_in(&server, &mut browser, &path, "carol", target).await, "code").unwrap().to_owned()
    };
    let code = fresh_code().await;
    let (_, error, description) = error_of(exchange(&server, &code, SPA_REDIRECT, &"x".repeat(43)).await).await;
    assert_eq!(error, "invalid_grant");
    assert!(description.starts_with("code.pkce_failed"), "{description}");
    // The code was burned by the failed exchange.
    let (_, _, description) = error_of(exchange(&server, &code, SPA_REDIRECT, VERIFIER).await).await;
    assert!(description.starts_with("code.reused"), "{description}");

    let code = fresh_code().await;
    let (_, error, _) = error_of(
        server.post_form("/oauth/token", &[("grant_type", "authorization_code"), ("client_id", SPA), ("code", &code), ("redirect_uri", SPA_REDIRECT)]).await,
    )
    .await;
    assert_eq!(error, "invalid_request", "code_verifier missing");

    let code = fresh_code().await;
    let (_, _, description) = error_of(exchange(&server, &code, "http://127.0.0.1:43211/callback", VERIFIER).await).await;
    assert!(description.starts_with("code.invalid"), "another redirect URI: {description}");

    let code = fresh_code().await;
    let secret = server.state.authority.register_client("partner").await.unwrap().expect("a secret");
    let (_, _, description) = error_of(
        server
            .form_request(
                "/oauth/token",
                &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", "https://partner.test/cb"), ("code_verifier", VERIFIER)],
            )
            .basic_auth("partner", Some(&secret))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(description.starts_with("code.invalid"), "a code of another client: {description}");

    let (_, _, description) = error_of(exchange(&server, "not-a-code", SPA_REDIRECT, VERIFIER).await).await;
    assert!(description.starts_with("code.invalid"), "{description}");
    let (_, _, description) = error_of(exchange(&server, &"c".repeat(10_000), SPA_REDIRECT, VERIFIER).await).await;
    assert!(description.starts_with("code.invalid"), "{description}");
}

async fn the_form_refuses_foreign_posts_and_wrong_passwords(db: TestDb) {
    let server = server(db).await;
    server.sign_up("dave").await;
    let mut browser = Browser::default();
    let path = authorize_path(SPA, SPA_REDIRECT, &[("login_hint", "dave")]);
    let html = browser.get(&server, &path).await.text().await.unwrap();
    assert_eq!(input_value(&html, "username"), "dave", "login_hint fills the username");
    let csrf = input_value(&html, "csrf");
    let authorization = input_value(&html, "authorization");
    let form = |password: &'static str| {
        vec![("csrf", csrf.clone()), ("authorization", authorization.clone()), ("username", "dave".to_owned()), ("password", password.to_owned())]
    };

    // Without the CSRF token, with a wrong one, or without the cookie it is bound to.
    let mut without = form(PASSWORD);
    without.retain(|(k, _)| *k != "csrf");
    let response = browser.post(&server, "/sign-in", &borrow(&without)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.text().await.unwrap().contains("request.csrf"));
    let mut wrong = form(PASSWORD);
    wrong[0].1 = "AAAA".into();
    assert_eq!(browser.post(&server, "/sign-in", &borrow(&wrong)).await.status(), StatusCode::FORBIDDEN);
    let cookieless = server.http.post(server.url("/sign-in")).form(&borrow(&form(PASSWORD))).send().await.unwrap();
    assert_eq!(cookieless.status(), StatusCode::FORBIDDEN);

    // A page of another site posting the form (with the victim's cookies).
    let cross = server
        .http
        .post(server.url("/sign-in"))
        .header("cookie", browser.cookie_header())
        .header("origin", "https://evil.test")
        .form(&borrow(&form(PASSWORD)))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    assert!(!browser.has_session());

    // A wrong password shows the form again, the error tied to the fields.
    let response = browser.post(&server, "/sign-in", &borrow(&form("wrong password"))).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let html = response.text().await.unwrap();
    assert!(html.contains("role=\"alert\"") && html.contains("aria-describedby=\"form-error\"") && html.contains("aria-invalid=\"true\""), "{html}");
    assert_eq!(input_value(&html, "username"), "dave");
    assert!(!browser.has_session());
    // The right one signs in.
    let response = browser.post(&server, "/sign-in", &borrow(&form(PASSWORD))).await;
    assert!(param(&redirect_params(&response, "http://127.0.0.1:43210/callback"), "code").is_some());
    assert!(browser.has_session());
}

fn borrow<'a>(form: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    form.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

async fn a_confidential_client_exchanges_with_its_secret(db: TestDb) {
    let server = server(db).await;
    server.sign_up("erin").await;
    let secret = server.state.authority.register_client("partner").await.unwrap().expect("a secret");
    let mut browser = Browser::default();
    let path = authorize_path("partner", "https://partner.test/cb", &[("scope", "bookings:read")]);
    // A third-party client's page names it.
    let html = browser.get(&server, &path).await.text().await.unwrap();
    assert!(html.contains("Partner app"), "{html}");
    let consent = crate::consent::sign_in_to_consent(&server, &mut browser, &path, "erin").await;
    let params = crate::consent::answer(&server, &mut browser, &consent, "allow", "https://partner.test/cb").await;
    let code = param(&params, "code").unwrap();
    let form = [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", "https://partner.test/cb"), ("code_verifier", VERIFIER)];
    let unauthenticated = server.post_form("/oauth/token", &[form.as_slice(), &[("client_id", "partner")]].concat()).await;
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    let response = server.form_request("/oauth/token", &form).basic_auth("partner", Some(&secret)).send().await.unwrap();
    let status = response.status();
    let tokens: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["scope"], "bookings:read");
    assert!(tokens.get("refresh_token").is_none(), "partner has no refresh_token grant: {tokens}");
}

async fn codes_expire(db: TestDb) {
    let server = server(db).await;
    server.sign_up("frank").await;
    let mut browser = Browser::default();
    let params = sign_in(&server, &mut browser, &authorize_path(SPA, SPA_REDIRECT, &[]), "frank", "http://127.0.0.1:43210/callback").await;
    let code = param(&params, "code").unwrap();
    // The test spec's code_ttl is 3 s.
    tokio::time::sleep(std::time::Duration::from_millis(3_100)).await;
    let (_, error, description) = error_of(exchange(&server, code, SPA_REDIRECT, VERIFIER).await).await;
    assert_eq!(error, "invalid_grant");
    assert!(description.starts_with("code.invalid"), "{description}");
}

async fn sign_out_ends_the_browser_session_and_the_sessions_it_started(db: TestDb) {
    let server = server(db).await;
    server.sign_up("ida").await;
    let mut browser = Browser::default();
    let path = authorize_path(SPA, SPA_REDIRECT, &[("scope", "openid bookings:read")]);
    let params = sign_in(&server, &mut browser, &path, "ida", "http://127.0.0.1:43210/callback").await;
    let tokens: Value = exchange(&server, param(&params, "code").unwrap(), SPA_REDIRECT, VERIFIER).await.json().await.unwrap();
    let id_token = tokens["id_token"].as_str().unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();

    // A post-logout redirect the client did not register is refused on a page.
    let foreign = format!("/oauth/end-session?id_token_hint={id_token}&post_logout_redirect_uri={}", urlencode("https://evil.test/"));
    let response = browser.get(&server, &foreign).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get(LOCATION).is_none());
    assert!(browser.has_session());
    // A forged hint is refused too.
    let forged = format!("/oauth/end-session?id_token_hint={}x", &id_token[..id_token.len() - 1]);
    assert_eq!(browser.get(&server, &forged).await.status(), StatusCode::BAD_REQUEST);

    // The hint of the current session signs out at once and goes back with state.
    let logout = format!(
        "/oauth/end-session?id_token_hint={id_token}&post_logout_redirect_uri={}&state=bye",
        urlencode("https://app.booking.test/signed-out")
    );
    let response = browser.get(&server, &logout).await;
    let params = redirect_params(&response, "https://app.booking.test/signed-out");
    assert_eq!(param(&params, "state"), Some("bye"));
    assert!(!browser.has_session(), "the cookie is cleared");
    assert_eq!(server.get_bearer("/userinfo", access).await.status(), StatusCode::UNAUTHORIZED);
    let (_, _, description) =
        error_of(server.post_form("/oauth/token", &[("grant_type", "refresh_token"), ("client_id", SPA), ("refresh_token", refresh)]).await).await;
    assert!(description.starts_with("refresh.revoked"), "{description}");
    assert_eq!(browser.get(&server, &path).await.status(), StatusCode::OK, "the sign-in page again");
}

/// Signs `username` in on `browser` and exchanges the code: the token answer.
async fn signed_in_tokens(server: &Server, browser: &mut Browser, username: &str) -> Value {
    let path = authorize_path(SPA, SPA_REDIRECT, &[("scope", "openid bookings:read")]);
    let params = sign_in(server, browser, &path, username, "http://127.0.0.1:43210/callback").await;
    exchange(server, param(&params, "code").unwrap(), SPA_REDIRECT, VERIFIER).await.json().await.unwrap()
}

/// The `(kind, current)` of each session `GET /v1/sessions` lists, by sid.
async fn listed_sessions(server: &Server, access: &str) -> std::collections::BTreeMap<String, Value> {
    let response = server.get_bearer("/v1/sessions", access).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["sessions"].as_array().unwrap().iter().map(|s| (s["sid"].as_str().unwrap().to_owned(), s.clone())).collect()
}

async fn browser_sessions_are_listed_and_ended_with_the_users_other_sessions(db: TestDb) {
    let server = server(db).await;
    server.sign_up("kim").await;
    server.sign_up("lee").await;
    let (mut laptop, mut phone, mut other) = (Browser::default(), Browser::default(), Browser::default());
    let on_laptop = signed_in_tokens(&server, &mut laptop, "kim").await;
    let on_phone = signed_in_tokens(&server, &mut phone, "kim").await;
    let lees = signed_in_tokens(&server, &mut other, "lee").await;
    let access = on_laptop["access_token"].as_str().unwrap();
    let sid_of = |tokens: &Value| {
        let id_token = tokens["id_token"].as_str().unwrap();
        let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(id_token).unwrap().claims;
        claims["sid"].as_str().unwrap().to_owned()
    };
    let (laptop_sid, phone_sid, lee_sid) = (sid_of(&on_laptop), sid_of(&on_phone), sid_of(&lees));

    // Two browser sessions and the two token sessions started from them; only kim's.
    let listed = listed_sessions(&server, access).await;
    assert_eq!(listed.len(), 4, "{listed:?}");
    let laptop_session = &listed[&laptop_sid];
    assert_eq!(laptop_session["kind"], "browser");
    assert_eq!(laptop_session["current"], true, "the calling token was issued from it");
    assert!(laptop_session.get("client_id").is_none() && laptop_session["last_seen_at"].is_i64());
    assert!(laptop_session["expires_at"].as_i64().unwrap() > laptop_session["created_at"].as_i64().unwrap());
    assert_eq!(listed[&phone_sid]["current"], false);
    let token_sessions: Vec<&Value> = listed.values().filter(|s| s["kind"] == "token").collect();
    assert_eq!(token_sessions.len(), 2);
    assert!(token_sessions.iter().all(|s| s["client_id"] == SPA && s["scope"] == "openid bookings:read"));
    assert_eq!(token_sessions.iter().filter(|s| s["current"] == true).count(), 1);

    // Another user's browser session is reported like a missing one.
    let response = server.http.delete(server.url(&format!("/v1/sessions/{lee_sid}"))).bearer_auth(access).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(other.has_session());
    assert_eq!(other.get(&server, &authorize_path(SPA, SPA_REDIRECT, &[])).await.status(), StatusCode::SEE_OTHER, "lee is still signed in");

    // Ending the phone's browser session signs the phone out and ends the tokens issued from it.
    let response = server.http.delete(server.url(&format!("/v1/sessions/{phone_sid}"))).bearer_auth(access).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(phone.get(&server, &authorize_path(SPA, SPA_REDIRECT, &[])).await.status(), StatusCode::OK, "the sign-in page again");
    let phone_refresh = on_phone["refresh_token"].as_str().unwrap();
    let (_, _, description) =
        error_of(server.post_form("/oauth/token", &[("grant_type", "refresh_token"), ("client_id", SPA), ("refresh_token", phone_refresh)]).await).await;
    assert!(description.starts_with("refresh.revoked"), "{description}");
    assert_eq!(listed_sessions(&server, access).await.len(), 2, "the laptop's two remain");

    // Logging out everywhere ends the browser sessions too.
    let response = server.http.post(server.url("/v1/logout?all=true")).bearer_auth(access).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["sessions_ended"], 2);
    assert_eq!(laptop.get(&server, &authorize_path(SPA, SPA_REDIRECT, &[])).await.status(), StatusCode::OK, "signed out on the laptop");
    assert_eq!(other.get(&server, &authorize_path(SPA, SPA_REDIRECT, &[])).await.status(), StatusCode::SEE_OTHER, "lee is not");
}

async fn sign_out_without_a_hint_asks_first(db: TestDb) {
    let server = server(db).await;
    server.sign_up("jo").await;
    let mut browser = Browser::default();
    let path = authorize_path(SPA, SPA_REDIRECT, &[]);
    sign_in(&server, &mut browser, &path, "jo", "http://127.0.0.1:43210/callback").await;
    let page = browser.get(&server, "/oauth/end-session").await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    let csrf = input_value(&html, "csrf");
    let logout = input_value(&html, "logout");
    let cross = server
        .http
        .post(server.url("/sign-out"))
        .header("cookie", browser.cookie_header())
        .header("origin", "https://evil.test")
        .form(&[("csrf", csrf.as_str()), ("logout", logout.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN, "a page of another site cannot sign the user out");
    assert_eq!(browser.post(&server, "/sign-out", &[("logout", logout.as_str())]).await.status(), StatusCode::FORBIDDEN);
    let done = browser.post(&server, "/sign-out", &[("csrf", csrf.as_str()), ("logout", logout.as_str())]).await;
    assert_eq!(done.status(), StatusCode::OK);
    assert!(done.text().await.unwrap().contains("role=\"status\""));
    assert!(!browser.has_session());
    assert_eq!(browser.get(&server, &path).await.status(), StatusCode::OK, "the sign-in page again");
}

async fn web_origins_may_call_the_token_endpoint_from_script(db: TestDb) {
    let server = server(db).await;
    let preflight = |origin: &'static str, path: &'static str| {
        server
            .http
            .request(reqwest::Method::OPTIONS, server.url(path))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    for path in ["/oauth/token", "/oauth/revoke", "/userinfo"] {
        let allowed = preflight("https://app.booking.test", path).await.unwrap();
        assert!(allowed.status().is_success(), "{path}: {}", allowed.status());
        assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.booking.test", "{path}");
        let other = preflight("https://evil.test", path).await.unwrap();
        assert!(other.headers().get("access-control-allow-origin").is_none(), "{path}");
    }
    // Not opened to browsers: introspection (confidential clients) and the admin API.
    for path in ["/oauth/introspect", "/v1/admin/invitations"] {
        let response = preflight("https://app.booking.test", path).await.unwrap();
        assert!(response.headers().get("access-control-allow-origin").is_none(), "{path}");
    }
    let response = server
        .http
        .post(server.url("/oauth/token"))
        .header("origin", "https://app.booking.test")
        .form(&[("grant_type", "refresh_token"), ("client_id", SPA), ("refresh_token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["access-control-allow-origin"], "https://app.booking.test");
}
