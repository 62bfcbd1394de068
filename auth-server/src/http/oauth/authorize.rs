//! `GET|POST /oauth/authorize` (OAuth 2.1 section 4.1.1) and the hosted forms it shows:
//! `POST /sign-in` and `POST /consent`.
//!
//! ```text
//! browser --GET /oauth/authorize?client_id&redirect_uri&code_challenge...--> validate (auth-core)
//!   client or redirect URI unknown -> error page (never a redirect)
//!   other refusal                  -> 303 redirect_uri?error=...&state&iss
//!   live browser session           -> signed in (below)
//!   prompt=none without session    -> 303 redirect_uri?error=login_required&state&iss
//!   otherwise                      -> sign-in page (the request rides along in a hidden field)
//! browser --POST /sign-in (csrf, authorization, username, password)-->
//!   foreign origin / bad CSRF token -> 403 error page
//!   the request validated again, the one login path, a browser session cookie, then signed in
//! signed in:
//!   first-party client, or consent to every requested scope given before (no prompt=consent)
//!                                   -> 303 redirect_uri?code&state&iss
//!   prompt=none                     -> 303 redirect_uri?error=consent_required&state&iss
//!   otherwise                       -> consent page (the request and the session's id ride along)
//! browser --POST /consent (csrf, authorization, session, decision)-->
//!   foreign origin / bad CSRF token / another session than the page's -> 403 error page
//!   no live session                 -> sign-in page
//!   allow -> consent recorded, 303 redirect_uri?code&state&iss
//!   deny  -> 303 redirect_uri?error=access_denied&state&iss
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use auth_core::authority::{Authorization, AuthorizationRequest, AuthorizeRefusal, OPENID_SCOPE, PasswordLogin, RequestChannel};
use auth_core::store::BrowserSessionRecord;
use auth_core::{Code, Error};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::http::extract::{parse_form, parse_pairs};
use crate::http::ui::catalogue::Catalogue;
use crate::http::ui::{Brand, Chrome, Cookies, ErrorPage, FormTargets, form_page, page_headers, posted_form};
use crate::state::AppState;

/// The parameters of an authorization request (others are ignored, RFC 6749 3.1).
pub(super) const AUTHORIZE_PARAMETERS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "nonce",
    "prompt",
    "max_age",
    "login_hint",
    "id_token_hint",
    "ui_locales",
    "response_mode",
    "request",
    "request_uri",
];
/// The fields of the sign-in form.
const SIGN_IN_FIELDS: &[&str] = &["authorization", "csrf", "username", "password"];
/// The fields of the consent form.
const CONSENT_FIELDS: &[&str] = &["authorization", "csrf", "session", "decision"];
/// Longest authorization request (query or form) read.
const MAX_AUTHORIZATION_LEN: usize = 16 * 1024;

/// The sign-in page.
#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    t: &'static Catalogue,
    brand: Brand,
    continue_to: String,
    error: Option<String>,
    csrf: String,
    authorization: String,
    username: String,
}

/// The consent page.
#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage {
    t: &'static Catalogue,
    brand: Brand,
    heading: String,
    scopes: Vec<ScopeLine>,
    csrf: String,
    authorization: String,
    session: String,
}

/// One requested scope on the consent page.
struct ScopeLine {
    name: String,
    description: String,
}

/// `GET /oauth/authorize` and `POST /oauth/authorize` (form-encoded, OpenID Connect Core 3.1.2.1).
pub async fn authorize(State(state): State<Arc<AppState>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let raw = if method == Method::POST {
        let content_type = headers.get(header::CONTENT_TYPE);
        match parse_form(content_type, &body, AUTHORIZE_PARAMETERS) {
            Ok(values) => Ok(values),
            Err(e) => Err(e.description()),
        }
    } else {
        let query = uri.query().unwrap_or_default();
        read_authorization(query)
    };
    let chrome = Chrome::new(&state, &[], &headers);
    let values = match raw {
        Ok(values) => values,
        Err(detail) => {
            tracing::debug!(detail, "unreadable authorization request");
            return ErrorPage::new(&chrome, Code::AuthorizeInvalidRequest, "error.invalid_request").into_response_with(StatusCode::BAD_REQUEST);
        }
    };
    let mut request = authorization_request(values);
    let mut channel = RequestChannel::Browser;
    if let Some(request_uri) = request.request_uri.as_deref() {
        // A pushed request (RFC 9126 section 4): only its own parameters count.
        match state.authority.take_pushed_authorization(request.client_id.as_deref(), request_uri).await {
            Ok(Some(pushed)) => (request, channel) = (pushed, RequestChannel::Pushed),
            Ok(None) => {
                tracing::debug!("unknown, used or expired request_uri");
                return ErrorPage::new(&chrome, Code::AuthorizeInvalidRequest, "error.invalid_request").into_response_with(StatusCode::BAD_REQUEST);
            }
            Err(e) => return ErrorPage::unavailable(&chrome, &e),
        }
    }
    let chrome = Chrome::new(&state, &requested_locales(&request), &headers);
    let authorization = match state.authority.check_authorization(&request, channel) {
        Ok(authorization) => authorization,
        Err(refusal) => return refused(&state, &chrome, refusal),
    };
    let chrome = Chrome::new(&state, &authorization.ui_locales, &headers).for_client(&state, &authorization.client_id);
    let cookies = Cookies::for_issuer(&state.spec.issuer);
    let session = match cookies.session(&headers) {
        Some(cookie) => match state.authority.browser_session(&cookie).await {
            Ok(session) => session,
            Err(e) => return ErrorPage::unavailable(&chrome, &e),
        },
        None => None,
    };
    let now = state.clock.now();
    if let Some(session) = session.filter(|s| authorization.accepts_session(s, now)) {
        return answer_signed_in(&state, &chrome, &headers, &request, &authorization, &session, None).await;
    }
    if authorization.prompt.none {
        return redirect_error(&state, &authorization, "login_required", Code::AuthorizeLoginRequired, "no browser session");
    }
    let username = authorization.login_hint.clone().unwrap_or_default();
    sign_in_page(&state, &chrome, &headers, &request, &authorization, StatusCode::OK, None, &username)
}

/// `POST /sign-in`: the sign-in form.
pub async fn sign_in(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let cookies = Cookies::for_issuer(&state.spec.issuer);
    let PageForm { fields: mut form, request, authorization, chrome } = match read_page_form(&state, &headers, &body, SIGN_IN_FIELDS) {
        Ok(read) => read,
        Err(response) => return response,
    };
    let username = form.remove("username").unwrap_or_default();
    let password = form.remove("password").unwrap_or_default();
    let again = |status: StatusCode, message: String| {
        sign_in_page(&state, &chrome, &headers, &request, &authorization, status, Some(message), &username)
    };
    if username.trim().is_empty() || password.is_empty() {
        return again(StatusCode::BAD_REQUEST, chrome.t.get("sign_in.missing").to_owned());
    }
    let login = PasswordLogin { username: &username, password: &password, source: Some(peer.ip()), ..PasswordLogin::default() };
    let signed_in = match state.authority.sign_in(&authorization.client_id, login).await {
        Ok(signed_in) => signed_in,
        Err(Error::InvalidCredentials) => return again(StatusCode::UNAUTHORIZED, chrome.t.get("sign_in.invalid_credentials").to_owned()),
        Err(Error::TooManyAttempts { retry_after_secs }) => {
            let message = chrome.t.fill("sign_in.too_many_attempts", "seconds", &retry_after_secs.to_string());
            let mut response = again(StatusCode::TOO_MANY_REQUESTS, message);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            return response;
        }
        Err(e) => {
            tracing::warn!(error = %e, "sign-in failed");
            return again(StatusCode::SERVICE_UNAVAILABLE, chrome.t.get("sign_in.unavailable").to_owned());
        }
    };
    let max_age = state.spec.browser.session_absolute_ttl.as_i64();
    let cookie = cookies.set_session(&signed_in.cookie, max_age);
    answer_signed_in(&state, &chrome, &headers, &request, &authorization, &signed_in.session, Some(cookie)).await
}

/// `POST /consent`: the consent form's answer.
pub async fn consent(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let cookies = Cookies::for_issuer(&state.spec.issuer);
    let PageForm { fields: form, request, authorization, chrome } = match read_page_form(&state, &headers, &body, CONSENT_FIELDS) {
        Ok(read) => read,
        Err(response) => return response,
    };
    let session = match cookies.session(&headers) {
        Some(cookie) => match state.authority.browser_session(&cookie).await {
            Ok(session) => session,
            Err(e) => return ErrorPage::unavailable(&chrome, &e),
        },
        None => None,
    };
    let Some(session) = session else {
        // Signed out (or the session expired) while the page was open: sign in again, and the
        // consent page follows.
        let message = chrome.t.get("consent.signed_out").to_owned();
        return sign_in_page(&state, &chrome, &headers, &request, &authorization, StatusCode::UNAUTHORIZED, Some(message), "");
    };
    // The page was shown to another sign-in than the browser's now: its answer is not this user's.
    if form.get("session") != Some(&session.id) {
        return ErrorPage::new(&chrome, Code::RequestCsrf, "error.csrf").into_response_with(StatusCode::FORBIDDEN);
    }
    match form.get("decision").map(String::as_str) {
        Some("allow") => {
            if let Err(e) = state.authority.grant_consent(&authorization, &session).await {
                return ErrorPage::unavailable(&chrome, &e);
            }
            match state.authority.issue_code(&authorization, &session).await {
                Ok(code) => send_code(&state, &authorization, &code, None),
                Err(e) => ErrorPage::unavailable(&chrome, &e),
            }
        }
        Some("deny") => {
            tracing::debug!(client = authorization.client_id, "consent declined");
            redirect_error(&state, &authorization, "access_denied", Code::AuthorizeAccessDenied, "the user declined the request")
        }
        _ => ErrorPage::new(&chrome, Code::RequestMalformed, "error.invalid_request").into_response_with(StatusCode::BAD_REQUEST),
    }
}

/// A form of the hosted pages, as [`read_page_form`] reads it.
struct PageForm {
    fields: HashMap<String, String>,
    request: AuthorizationRequest,
    authorization: Authorization,
    /// The chrome in the request's language.
    chrome: Chrome,
}

/// Reads a form of the hosted pages: posted from this service's own page (same origin, a CSRF
/// token bound to the browser's CSRF cookie), its fields, and the authorization request it
/// carries, validated again. A refusal is the response to send.
fn read_page_form(state: &AppState, headers: &HeaderMap, body: &Bytes, fields: &[&str]) -> Result<PageForm, Response> {
    let chrome = Chrome::new(state, &[], headers);
    let form = posted_form(state, &chrome, headers, body, fields)?;
    let request = match form.get("authorization").map(|text| read_authorization(text)) {
        Some(Ok(values)) => authorization_request(values),
        _ => return Err(ErrorPage::refusal(&chrome, Code::AuthorizeInvalidRequest)),
    };
    let authorization = state.authority.check_authorization(&request, RequestChannel::HostedForm).map_err(|refusal| refused(state, &chrome, refusal))?;
    let chrome = Chrome::new(state, &authorization.ui_locales, headers).for_client(state, &authorization.client_id);
    Ok(PageForm { fields: form, request, authorization, chrome })
}

/// The user of `session` is signed in for `authorization`: a code, unless the client must ask
/// for consent first (the consent page, or `consent_required` when no page may be shown).
/// `cookie` is a new session's, set with whatever answers.
async fn answer_signed_in(
    state: &AppState,
    chrome: &Chrome,
    headers: &HeaderMap,
    request: &AuthorizationRequest,
    authorization: &Authorization,
    session: &BrowserSessionRecord,
    cookie: Option<HeaderValue>,
) -> Response {
    match state.authority.needs_consent(authorization, &session.user_id).await {
        Ok(false) => match state.authority.issue_code(authorization, session).await {
            Ok(code) => send_code(state, authorization, &code, cookie),
            Err(e) => ErrorPage::unavailable(chrome, &e),
        },
        Ok(true) if authorization.prompt.none => {
            redirect_error(state, authorization, "consent_required", Code::AuthorizeConsentRequired, "the user has not consented to this client and scope")
        }
        Ok(true) => {
            let mut response = consent_page(state, chrome, headers, request, authorization, session);
            if let Some(cookie) = cookie {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            response
        }
        Err(e) => ErrorPage::unavailable(chrome, &e),
    }
}

/// The known parameters of a query string or of the sign-in form's copy of it.
fn read_authorization(text: &str) -> Result<HashMap<String, String>, String> {
    if text.len() > MAX_AUTHORIZATION_LEN {
        return Err("the authorization request is too long".to_owned());
    }
    parse_pairs(text.as_bytes(), AUTHORIZE_PARAMETERS).map_err(|e| e.description())
}

/// The languages a request asks for, also when it is refused (at most a few, each short).
fn requested_locales(request: &AuthorizationRequest) -> Vec<String> {
    let text = request.ui_locales.as_deref().unwrap_or_default();
    text.split(' ').filter(|t| !t.is_empty() && t.len() <= 16).take(4).map(str::to_owned).collect()
}

pub(super) fn authorization_request(mut values: HashMap<String, String>) -> AuthorizationRequest {
    let mut take = |name: &str| values.remove(name);
    AuthorizationRequest {
        response_type: take("response_type"),
        client_id: take("client_id"),
        redirect_uri: take("redirect_uri"),
        scope: take("scope"),
        state: take("state"),
        code_challenge: take("code_challenge"),
        code_challenge_method: take("code_challenge_method"),
        nonce: take("nonce"),
        prompt: take("prompt"),
        max_age: take("max_age"),
        login_hint: take("login_hint"),
        id_token_hint: take("id_token_hint"),
        ui_locales: take("ui_locales"),
        response_mode: take("response_mode"),
        request: take("request"),
        request_uri: take("request_uri"),
    }
}

/// The request as the sign-in and consent forms carry it (form-encoded; `prompt=login` and
/// `max_age` are dropped, since the sign-in they asked for is the one the form does; of the
/// prompt, `consent` is kept, so that the consent page still follows the sign-in).
fn encode_authorization(request: &AuthorizationRequest) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    let prompt = request.prompt.as_deref().is_some_and(|p| p.split(' ').any(|v| v == "consent")).then(|| "consent".to_owned());
    let fields = [
        ("response_type", &request.response_type),
        ("client_id", &request.client_id),
        ("redirect_uri", &request.redirect_uri),
        ("scope", &request.scope),
        ("state", &request.state),
        ("code_challenge", &request.code_challenge),
        ("code_challenge_method", &request.code_challenge_method),
        ("nonce", &request.nonce),
        ("prompt", &prompt),
        ("login_hint", &request.login_hint),
        ("ui_locales", &request.ui_locales),
        ("response_mode", &request.response_mode),
    ];
    for (name, value) in fields {
        if let Some(value) = value {
            out.append_pair(name, value);
        }
    }
    out.finish()
}

#[allow(clippy::too_many_arguments)]
fn sign_in_page(
    state: &AppState,
    chrome: &Chrome,
    headers: &HeaderMap,
    request: &AuthorizationRequest,
    authorization: &Authorization,
    status: StatusCode,
    error: Option<String>,
    username: &str,
) -> Response {
    let targets = state.spec.clients.get(&authorization.client_id).map(FormTargets::of_client).unwrap_or_default();
    form_page(state, chrome, headers, status, &targets, |csrf| SignInPage {
        t: chrome.t,
        brand: chrome.brand.clone(),
        continue_to: chrome.t.fill("sign_in.continue_to", "client", &client_name(state, authorization)),
        error,
        csrf,
        authorization: encode_authorization(request),
        username: username.chars().take(128).collect(),
    })
}

/// The client as the pages name it: its description, else its id.
fn client_name(state: &AppState, authorization: &Authorization) -> String {
    match state.spec.clients.get(&authorization.client_id) {
        Some(client) if !client.description.is_empty() => client.description.clone(),
        _ => authorization.client_id.clone(),
    }
}

/// The consent page: the client, each requested scope with its description, allow and deny.
fn consent_page(
    state: &AppState,
    chrome: &Chrome,
    headers: &HeaderMap,
    request: &AuthorizationRequest,
    authorization: &Authorization,
    session: &BrowserSessionRecord,
) -> Response {
    let scopes = authorization
        .scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(|name| {
            let description = match state.spec.scopes.get(name) {
                _ if name == OPENID_SCOPE => chrome.t.get("consent.scope_openid").to_owned(),
                Some(scope) if !scope.description.is_empty() => scope.description.clone(),
                _ => name.to_owned(),
            };
            ScopeLine { name: name.to_owned(), description }
        })
        .collect();
    let targets = state.spec.clients.get(&authorization.client_id).map(FormTargets::of_client).unwrap_or_default();
    form_page(state, chrome, headers, StatusCode::OK, &targets, |csrf| ConsentPage {
        t: chrome.t,
        brand: chrome.brand.clone(),
        heading: chrome.t.fill("consent.heading", "client", &client_name(state, authorization)),
        scopes,
        csrf,
        authorization: encode_authorization(request),
        session: session.id.clone(),
    })
}

/// A refusal: the error page, or the error sent back to the client.
fn refused(state: &AppState, chrome: &Chrome, refusal: AuthorizeRefusal) -> Response {
    match refusal {
        AuthorizeRefusal::Page { code, detail } => {
            tracing::debug!(code = code.as_str(), detail, "authorization request refused on a page");
            ErrorPage::refusal(chrome, code)
        }
        AuthorizeRefusal::Redirect { redirect_uri, state: client_state, error, code, detail } => {
            redirect_refusal(state, &redirect_uri, client_state.as_deref(), error, code, &detail)
        }
    }
}

/// An error sent back to the client's (validated) redirect URI, with `state` and `iss`.
fn redirect_refusal(state: &AppState, redirect_uri: &str, client_state: Option<&str>, error: &str, code: Code, detail: &str) -> Response {
    let description = format!("{}: {detail}", code.as_str());
    let mut params = vec![("error", error), ("error_description", description.as_str())];
    if let Some(client_state) = client_state {
        params.push(("state", client_state));
    }
    params.push(("iss", &state.spec.issuer));
    redirect(redirect_uri, &params, None)
}

fn redirect_error(state: &AppState, authorization: &Authorization, error: &'static str, code: Code, detail: &str) -> Response {
    redirect_refusal(state, &authorization.redirect_uri, authorization.state.as_deref(), error, code, detail)
}

/// The code, back to the client (RFC 9207 `iss` with it).
fn send_code(state: &AppState, authorization: &Authorization, code: &str, cookie: Option<HeaderValue>) -> Response {
    let mut params = vec![("code", code)];
    if let Some(client_state) = &authorization.state {
        params.push(("state", client_state));
    }
    params.push(("iss", &state.spec.issuer));
    redirect(&authorization.redirect_uri, &params, cookie)
}

/// 303 to a validated redirect URI with `params` added to its query.
fn redirect(redirect_uri: &str, params: &[(&str, &str)], cookie: Option<HeaderValue>) -> Response {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "invalid redirect").into_response();
    };
    url.query_pairs_mut().extend_pairs(params);
    let Ok(location) = HeaderValue::from_str(url.as_str()) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "invalid redirect").into_response();
    };
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
    page_headers(response.headers_mut(), &FormTargets::default());
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

