//! The hosted pages: server-rendered (askama templates in `auth-server/templates/`), working with
//! JavaScript off, messages from catalogues ([`catalogue`]), one stylesheet from `/ui/style.css`.
//!
//! Every page is sent with a strict Content Security Policy (no script at all, no inline style,
//! `form-action` limited to this service and the redirect targets of the client concerned,
//! `frame-ancestors 'none'`), `no-store`, and no referrer to other origins. Forms carry a CSRF
//! token: a MAC, under a key derived from the master key, of a random value in a cookie of their
//! own ([`CsrfCookie`]), so any replica can check it and a page from another site cannot forge it.

pub mod catalogue;

use std::sync::Arc;

use askama::Template;
use auth_core::Code;
use auth_core::spec::{Branding, ClientSpec};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use self::catalogue::Catalogue;
use crate::state::AppState;

/// The stylesheet of the pages.
const STYLE: &str = include_str!("style.css");

/// `GET /ui/style.css` and `GET /ui/brand.css[?client=<id>]` (not in the API document: they are
/// part of the pages).
pub fn routes() -> axum::Router<Arc<AppState>> {
    axum::Router::new().route("/ui/style.css", axum::routing::get(style)).route("/ui/brand.css", axum::routing::get(brand_style))
}

/// The spec's colours as the stylesheet's variables, with a client's over them when the query
/// names a client of the spec (anything else gets the service's). The colours were checked as
/// `#rrggbb` when the spec was read, so nothing from the request reaches the answer.
async fn brand_style(axum::extract::State(state): axum::extract::State<Arc<AppState>>, uri: axum::http::Uri) -> Response {
    let client = uri
        .query()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "client"))
        .and_then(|(_, id)| state.spec.clients.get(id.as_ref()));
    let branding = client.map_or_else(|| state.spec.branding.clone(), |c| c.branding.over(&state.spec.branding));
    let css = format!(":root {{ --accent: {}; --accent-text: {}; }}\n", branding.accent(), branding.accent_text());
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300")),
        ],
        css,
    )
        .into_response()
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        STYLE,
    )
        .into_response()
}

/// How a page is branded: the spec's `[branding]`, with the client's over it on the pages of a
/// known client.
#[derive(Debug, Clone)]
pub struct Brand {
    /// The name at the top and in the title (the issuer's host when the spec names none).
    pub product_name: String,
    /// An https logo above the name.
    pub logo_url: Option<String>,
    /// The stylesheet of the colours (`/ui/brand.css`, with `?client=` for a client's own).
    pub stylesheet: String,
}

impl Brand {
    fn of(state: &AppState, branding: &Branding, stylesheet: String) -> Self {
        let host = || url::Url::parse(&state.spec.issuer).ok().and_then(|u| u.host_str().map(str::to_owned));
        let product_name = branding.product_name.clone().or_else(host).unwrap_or_else(|| state.spec.issuer.clone());
        Self { product_name, logo_url: branding.logo_url.clone(), stylesheet }
    }
}

/// What every page shows around its content.
#[derive(Debug, Clone)]
pub struct Chrome {
    /// The messages in the chosen language.
    pub t: &'static Catalogue,
    /// The branding.
    pub brand: Brand,
}

impl Chrome {
    /// The chrome for a request: its language and the service's branding.
    pub fn new(state: &AppState, ui_locales: &[String], headers: &HeaderMap) -> Self {
        let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
        let brand = Brand::of(state, &state.spec.branding, "/ui/brand.css".to_owned());
        Self { t: catalogue::choose(ui_locales, accept), brand }
    }

    /// The same chrome with the branding of `client_id` (a client of the spec) over the service's.
    pub fn for_client(mut self, state: &AppState, client_id: &str) -> Self {
        if let Some(client) = state.spec.clients.get(client_id).filter(|c| !c.branding.is_empty()) {
            let stylesheet = format!("/ui/brand.css?{}", form_urlencoded::Serializer::new(String::new()).append_pair("client", client_id).finish());
            self.brand = Brand::of(state, &client.branding.over(&state.spec.branding), stylesheet);
        }
        self
    }
}

/// The error page.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    /// The messages.
    pub t: &'static Catalogue,
    /// The branding.
    pub brand: Brand,
    /// What went wrong, for the user.
    pub message: String,
    /// The stable code, for support.
    pub code: &'static str,
}

impl ErrorPage {
    /// The page for `code`, its message from the catalogue key `message`.
    pub fn new(chrome: &Chrome, code: Code, message: &str) -> Self {
        Self { t: chrome.t, brand: chrome.brand.clone(), message: chrome.t.get(message).to_owned(), code: code.as_str() }
    }

    /// The page for `code` in English, for answers made before a request is read (the per-IP
    /// limit, the request deadline).
    pub fn plain(code: Code, message: &str) -> Self {
        let t = catalogue::choose(&[], None);
        let brand = Brand { product_name: String::from("Sign in"), logo_url: None, stylesheet: "/ui/brand.css".to_owned() };
        Self { t, brand, message: t.get(message).to_owned(), code: code.as_str() }
    }

    /// The `400` page of a refused request, its message chosen by `code` (an unknown client, a
    /// redirect URI not registered, anything else).
    pub fn refusal(chrome: &Chrome, code: Code) -> Response {
        let message = match code {
            Code::AuthorizeInvalidClient => "error.invalid_client",
            Code::AuthorizeInvalidRedirectUri => "error.invalid_redirect_uri",
            _ => "error.invalid_request",
        };
        Self::new(chrome, code, message).into_response_with(StatusCode::BAD_REQUEST)
    }

    /// The `403` page of a form posted from elsewhere or without its CSRF token.
    pub fn forbidden(chrome: &Chrome) -> Response {
        Self::new(chrome, Code::RequestCsrf, "error.csrf").into_response_with(StatusCode::FORBIDDEN)
    }

    /// The `503` page of a request that could not be served (the cause goes to the log).
    pub fn unavailable(chrome: &Chrome, error: &auth_core::Error) -> Response {
        tracing::warn!(error = %error, "a page could not be served");
        Self::new(chrome, error.code(), "error.unavailable").into_response_with(StatusCode::SERVICE_UNAVAILABLE)
    }

    /// The page as a response with `status`, sent with the pages' headers.
    pub fn into_response_with(self, status: StatusCode) -> Response {
        page(status, &self, &FormTargets::default())
    }
}

/// Where the forms of a page may send the browser (the CSP's `form-action` beyond `'self'`): the
/// redirect targets of the client the page is for.
#[derive(Debug, Default, Clone)]
pub struct FormTargets(Vec<String>);

impl FormTargets {
    /// The CSP sources of a client's redirect URIs: the origin of each http(s) URI (with any port
    /// for loopback IP literals, which match on any port), the scheme of private-use ones.
    pub fn of_client(client: &ClientSpec) -> Self {
        let mut sources = Vec::new();
        for uri in client.redirect_uris.iter().chain(&client.post_logout_redirect_uris) {
            let Ok(url) = url::Url::parse(uri) else { continue };
            let source = match url.scheme() {
                "http" | "https" => {
                    let loopback_ip = matches!(url.host(), Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)));
                    let host = url.host_str().unwrap_or_default();
                    match (loopback_ip && url.scheme() == "http", url.port()) {
                        (true, _) => format!("http://{host}:*"),
                        (false, Some(port)) => format!("{}://{host}:{port}", url.scheme()),
                        (false, None) => format!("{}://{host}", url.scheme()),
                    }
                }
                scheme => format!("{scheme}:"),
            };
            if !sources.contains(&source) {
                sources.push(source);
            }
        }
        Self(sources)
    }
}

/// The Content Security Policy of a page whose forms may go to `targets`.
fn content_security_policy(targets: &FormTargets) -> String {
    let mut form_action = String::from("'self'");
    for target in &targets.0 {
        form_action.push(' ');
        form_action.push_str(target);
    }
    format!(
        "default-src 'none'; style-src 'self'; img-src 'self' https: data:; form-action {form_action}; \
         frame-ancestors 'none'; base-uri 'none'"
    )
}

/// A rendered page with the pages' headers: CSP, no framing, no caching, no referrer to other origins.
pub fn page(status: StatusCode, template: &impl Template, targets: &FormTargets) -> Response {
    let html = match template.render() {
        Ok(html) => html,
        Err(e) => {
            tracing::error!(error = %e, "a page could not be rendered");
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
        }
    };
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    page_headers(headers, targets);
    response
}

/// The security headers of every page and of the redirects that answer a form.
pub fn page_headers(headers: &mut HeaderMap, targets: &FormTargets) {
    if let Ok(csp) = HeaderValue::from_str(&content_security_policy(targets)) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // `same-origin`, not `no-referrer`: under `no-referrer` browsers send `Origin: null` with
    // the form's own POST (Fetch, "append a request Origin header"), which the same-origin
    // check must refuse. Other sites still get no referrer.
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin"));
}

// ---------------------------------------------------------------------------------------------
// Cookies

/// How cookies are named and flagged on this issuer: `__Host-` names with `Secure` over https;
/// plain names without `Secure` over http (loopback development), where browsers refuse both.
#[derive(Debug, Clone, Copy)]
pub struct Cookies {
    secure: bool,
}

/// The browser-session cookie's name (after the prefix).
const SESSION_COOKIE: &str = "auth_session";
/// The CSRF cookie's name (after the prefix).
const CSRF_COOKIE: &str = "auth_csrf";
/// Longest cookie value read.
const MAX_COOKIE_VALUE: usize = 128;

impl Cookies {
    /// The cookie rules of `issuer`.
    pub fn for_issuer(issuer: &str) -> Self {
        Self { secure: issuer.starts_with("https://") }
    }

    fn name(self, base: &str) -> String {
        if self.secure { format!("__Host-{base}") } else { base.to_owned() }
    }

    /// The value of cookie `base` in the request, if it is there once and well-formed.
    fn read(self, headers: &HeaderMap, base: &str) -> Option<String> {
        let name = self.name(base);
        let mut found = None;
        for header in headers.get_all(header::COOKIE) {
            let Ok(text) = header.to_str() else { continue };
            for pair in text.split(';') {
                let Some((key, value)) = pair.trim().split_once('=') else { continue };
                if key == name {
                    if found.is_some() {
                        // Two cookies of one name (one planted for a parent path or domain): trust neither.
                        return None;
                    }
                    found = Some(value.to_owned());
                }
            }
        }
        found.filter(|v| !v.is_empty() && v.len() <= MAX_COOKIE_VALUE && v.bytes().all(is_token_byte))
    }

    fn set(self, base: &str, value: &str, same_site: &str, max_age: Option<i64>) -> HeaderValue {
        let mut cookie = format!("{}={value}; Path=/; HttpOnly; SameSite={same_site}", self.name(base));
        if self.secure {
            cookie.push_str("; Secure");
        }
        if let Some(age) = max_age {
            cookie.push_str(&format!("; Max-Age={age}"));
        }
        HeaderValue::from_str(&cookie).unwrap_or(HeaderValue::from_static("invalid=; Max-Age=0"))
    }

    /// The browser-session cookie's value in a request.
    pub fn session(self, headers: &HeaderMap) -> Option<String> {
        self.read(headers, SESSION_COOKIE)
    }

    /// `Set-Cookie` for a new browser session (SameSite=Lax: it must come along when a client
    /// sends the browser to the authorization endpoint).
    pub fn set_session(self, value: &str, max_age: i64) -> HeaderValue {
        self.set(SESSION_COOKIE, value, "Lax", Some(max_age))
    }

    /// `Set-Cookie` that removes the browser-session cookie.
    pub fn clear_session(self) -> HeaderValue {
        self.set(SESSION_COOKIE, "", "Lax", Some(0))
    }

    /// The CSRF cookie's value in a request.
    pub fn csrf(self, headers: &HeaderMap) -> Option<String> {
        self.read(headers, CSRF_COOKIE)
    }

    /// `Set-Cookie` for a CSRF binding (SameSite=Strict: only this service's own forms send it).
    pub fn set_csrf(self, value: &str) -> HeaderValue {
        self.set(CSRF_COOKIE, value, "Strict", None)
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// A CSRF binding for a page: the browser's CSRF cookie, or a new one to set with the page.
#[derive(Debug, Clone)]
pub struct CsrfCookie {
    /// The cookie's value.
    pub value: String,
    /// Whether the page must set it.
    pub is_new: bool,
}

impl CsrfCookie {
    /// The request's CSRF cookie, or a new random one.
    pub fn for_request(cookies: Cookies, headers: &HeaderMap) -> auth_core::Result<Self> {
        use base64::Engine as _;
        Ok(match cookies.csrf(headers) {
            Some(value) => Self { value, is_new: false },
            None => {
                let bytes = auth_core::random::random_32(&auth_core::random::OsEntropy::new())?;
                Self { value: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes), is_new: true }
            }
        })
    }
}

/// A page with a form: `template` gets the form's CSRF token, bound to the browser's CSRF cookie
/// (set with the page when the browser has none yet).
pub fn form_page<T: Template>(
    state: &AppState,
    chrome: &Chrome,
    headers: &HeaderMap,
    status: StatusCode,
    targets: &FormTargets,
    template: impl FnOnce(String) -> T,
) -> Response {
    let cookies = Cookies::for_issuer(&state.spec.issuer);
    let csrf = match CsrfCookie::for_request(cookies, headers) {
        Ok(csrf) => csrf,
        Err(e) => return ErrorPage::unavailable(chrome, &e),
    };
    let mut response = page(status, &template(state.authority.csrf_token(&csrf.value)), targets);
    if csrf.is_new {
        response.headers_mut().append(header::SET_COOKIE, cookies.set_csrf(&csrf.value));
    }
    response
}

/// The fields of a form posted from this service's own pages: same origin, a known content type,
/// and the CSRF token bound to the browser's CSRF cookie; the error page otherwise.
pub fn posted_form(
    state: &AppState,
    chrome: &Chrome,
    headers: &HeaderMap,
    body: &axum::body::Bytes,
    fields: &[&str],
) -> Result<std::collections::HashMap<String, String>, Response> {
    if !same_origin_post(headers, &state.spec.issuer) {
        return Err(ErrorPage::forbidden(chrome));
    }
    let form = super::extract::parse_form(headers.get(header::CONTENT_TYPE), body, fields)
        .map_err(|_| ErrorPage::refusal(chrome, Code::RequestMalformed))?;
    let csrf_ok = match (Cookies::for_issuer(&state.spec.issuer).csrf(headers), form.get("csrf")) {
        (Some(binding), Some(token)) => state.authority.check_csrf(&binding, token),
        _ => false,
    };
    if csrf_ok { Ok(form) } else { Err(ErrorPage::forbidden(chrome)) }
}

/// Whether a form POST comes from this service's own pages: no foreign `Origin` (or `null`), and
/// no `Sec-Fetch-Site` other than same-origin or none (a user's own navigation).
pub fn same_origin_post(headers: &HeaderMap, issuer: &str) -> bool {
    let own_origin = url::Url::parse(issuer).map(|u| u.origin().ascii_serialization()).unwrap_or_default();
    let origin_ok = match headers.get(header::ORIGIN).map(HeaderValue::to_str) {
        None => true,
        Some(Ok(origin)) => origin == own_origin,
        Some(Err(_)) => false,
    };
    let fetch_site_ok = match headers.get("sec-fetch-site").map(HeaderValue::to_str) {
        None => true,
        Some(Ok(site)) => matches!(site, "same-origin" | "none"),
        Some(Err(_)) => false,
    };
    origin_ok && fetch_site_ok
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn form_targets_cover_each_kind_of_redirect() {
        let client = ClientSpec {
            redirect_uris: vec![
                "https://app.example.com/cb".into(),
                "https://app.example.com/other".into(),
                "http://127.0.0.1/cb".into(),
                "com.example.app:/oauth".into(),
                "http://localhost:3000/cb".into(),
            ],
            ..ClientSpec::default()
        };
        let csp = content_security_policy(&FormTargets::of_client(&client));
        assert!(csp.contains("form-action 'self' https://app.example.com http://127.0.0.1:* com.example.app: http://localhost:3000;"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe-inline"));
    }

    #[test]
    fn cookies_are_read_once_and_bounded() {
        let cookies = Cookies::for_issuer("https://auth.example.com");
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; __Host-auth_session=abc_DEF-1"));
        assert_eq!(cookies.session(&headers).as_deref(), Some("abc_DEF-1"));
        headers.insert(header::COOKIE, HeaderValue::from_static("__Host-auth_session=x; __Host-auth_session=y"));
        assert_eq!(cookies.session(&headers), None, "two cookies of one name");
        headers.insert(header::COOKIE, HeaderValue::from_static("auth_session=x"));
        assert_eq!(cookies.session(&headers), None, "without the prefix over https");
        headers.insert(header::COOKIE, HeaderValue::from_static("__Host-auth_session=a%20b"));
        assert_eq!(cookies.session(&headers), None);
        let set = cookies.set_session("v", 60).to_str().unwrap().to_owned();
        assert_eq!(set, "__Host-auth_session=v; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=60");
        let plain = Cookies::for_issuer("http://127.0.0.1:8080").set_csrf("v").to_str().unwrap().to_owned();
        assert_eq!(plain, "auth_csrf=v; Path=/; HttpOnly; SameSite=Strict");
    }

    #[test]
    fn cross_origin_posts_are_refused() {
        let issuer = "https://auth.example.com";
        let with = |name: &'static str, value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(name, HeaderValue::from_static(value));
            headers
        };
        assert!(same_origin_post(&HeaderMap::new(), issuer));
        assert!(same_origin_post(&with("origin", "https://auth.example.com"), issuer));
        assert!(!same_origin_post(&with("origin", "https://evil.example"), issuer));
        assert!(!same_origin_post(&with("origin", "null"), issuer));
        assert!(!same_origin_post(&with("sec-fetch-site", "cross-site"), issuer));
        assert!(!same_origin_post(&with("sec-fetch-site", "same-site"), issuer));
    }
}
