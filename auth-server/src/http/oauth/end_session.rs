//! `GET|POST /oauth/end-session` (OpenID Connect RP-Initiated Logout 1.0) and `POST /sign-out`.
//!
//! A client sends the browser here to sign the user out. `post_logout_redirect_uri` must be one
//! the client registered (the client named by `client_id` or by the `id_token_hint`'s audience),
//! or the request ends on this service's own "signed out" page: never an open redirect. The user
//! is asked to confirm unless the `id_token_hint` was issued for the browser's current session (the
//! client proves it is the one the user signed in to); a sign-out ends the browser session and the
//! sessions (refresh families) that code exchanges started from it.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use auth_core::Code;
use auth_core::spec::redirect_uri_matches;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::http::extract::{parse_form, parse_pairs};
use crate::http::ui::catalogue::Catalogue;
use crate::http::ui::{Brand, Chrome, Cookies, ErrorPage, FormTargets, form_page, page, page_headers, posted_form};
use crate::state::AppState;

/// The parameters of a logout request (others are ignored).
const LOGOUT_PARAMETERS: &[&str] = &["id_token_hint", "client_id", "post_logout_redirect_uri", "state", "ui_locales", "logout_hint"];
/// Longest logout request read.
const MAX_LOGOUT_LEN: usize = 16 * 1024;

#[derive(Template)]
#[template(path = "sign_out.html")]
struct SignOutPage {
    t: &'static Catalogue,
    brand: Brand,
    csrf: String,
    logout: String,
}

#[derive(Template)]
#[template(path = "signed_out.html")]
struct SignedOutPage {
    t: &'static Catalogue,
    brand: Brand,
}

/// A validated logout request.
struct Logout {
    /// The client's registered post-logout redirect, with `state` to add.
    back_to: Option<(String, Option<String>)>,
    /// The `sid` of a valid `id_token_hint`.
    hinted_session: Option<String>,
    /// The client concerned, for the page's form targets.
    client_id: Option<String>,
    /// The request as sent, for the confirmation form.
    raw: String,
}

/// `GET|POST /oauth/end-session`.
pub async fn end_session(State(state): State<Arc<AppState>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let raw = if method == Method::POST {
        // Read as a form first (content type, UTF-8, repeated parameters), then kept as sent.
        if parse_form(headers.get(header::CONTENT_TYPE), &body, LOGOUT_PARAMETERS).is_err() {
            return ErrorPage::refusal(&Chrome::new(&state, &[], &headers), Code::RequestMalformed);
        }
        String::from_utf8_lossy(&body).into_owned()
    } else {
        uri.query().unwrap_or_default().to_owned()
    };
    let values = read_logout(&raw);
    let locales = values.as_ref().ok().map(locales).unwrap_or_default();
    let chrome = Chrome::new(&state, &locales, &headers);
    let logout = match values.and_then(|values| validate(&state, &values, raw)) {
        Ok(logout) => logout,
        Err(code) => return ErrorPage::refusal(&chrome, code),
    };
    let cookies = Cookies::for_issuer(&state.spec.issuer);
    let session = match cookies.session(&headers) {
        Some(cookie) => state.authority.browser_session(&cookie).await.ok().flatten(),
        None => None,
    };
    let Some(session) = session else {
        // Nothing to end: straight back (or to the page), clearing any stale cookie.
        return finish(&state, &chrome, &logout, cookies);
    };
    if logout.hinted_session.as_deref() == Some(session.id.as_str()) {
        if let Err(e) = state.authority.end_browser_session(&session).await {
            return ErrorPage::unavailable(&chrome, &e);
        }
        return finish(&state, &chrome, &logout, cookies);
    }
    form_page(&state, &chrome, &headers, StatusCode::OK, &targets(&state, &logout), |csrf| SignOutPage {
        t: chrome.t,
        brand: chrome.brand.clone(),
        csrf,
        logout: logout.raw.clone(),
    })
}

/// `POST /sign-out`: the confirmation form.
pub async fn sign_out(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let chrome = Chrome::new(&state, &[], &headers);
    let cookies = Cookies::for_issuer(&state.spec.issuer);
    let form = match posted_form(&state, &chrome, &headers, &body, &["csrf", "logout"]) {
        Ok(form) => form,
        Err(response) => return response,
    };
    let raw = form.get("logout").cloned().unwrap_or_default();
    let logout = match read_logout(&raw).and_then(|values| validate(&state, &values, raw.clone())) {
        Ok(logout) => logout,
        Err(code) => return ErrorPage::refusal(&chrome, code),
    };
    if let Some(cookie) = cookies.session(&headers) {
        match state.authority.browser_session(&cookie).await {
            Ok(Some(session)) => {
                if let Err(e) = state.authority.end_browser_session(&session).await {
                    return ErrorPage::unavailable(&chrome, &e);
                }
            }
            Ok(None) => {}
            Err(e) => return ErrorPage::unavailable(&chrome, &e),
        }
    }
    finish(&state, &chrome, &logout, cookies)
}

fn read_logout(text: &str) -> Result<HashMap<String, String>, Code> {
    if text.len() > MAX_LOGOUT_LEN {
        return Err(Code::RequestMalformed);
    }
    parse_pairs(text.as_bytes(), LOGOUT_PARAMETERS).map_err(|e| e.code)
}

fn locales(values: &HashMap<String, String>) -> Vec<String> {
    let text = values.get("ui_locales").map(String::as_str).unwrap_or_default();
    text.split(' ').filter(|t| !t.is_empty() && t.len() <= 16).take(4).map(str::to_owned).collect()
}

fn validate(state: &AppState, values: &HashMap<String, String>, raw: String) -> Result<Logout, Code> {
    let client_id = values.get("client_id").filter(|c| !c.is_empty() && c.len() <= 128);
    let hint = match values.get("id_token_hint").filter(|h| !h.is_empty()) {
        Some(token) => Some(state.authority.id_token_hint(token, client_id.map(String::as_str)).ok_or(Code::AuthorizeInvalidRequest)?),
        None => None,
    };
    let client_id = client_id.cloned().or_else(|| hint.as_ref().map(|h| h.aud.clone()));
    let back_to = match values.get("post_logout_redirect_uri").filter(|u| !u.is_empty()) {
        None => None,
        Some(uri) => {
            let client = client_id.as_ref().and_then(|id| state.spec.clients.get(id)).ok_or(Code::AuthorizeInvalidClient)?;
            if !client.post_logout_redirect_uris.iter().any(|r| redirect_uri_matches(r, uri)) {
                return Err(Code::AuthorizeInvalidRedirectUri);
            }
            let client_state = values.get("state").filter(|s| s.len() <= auth_core::authority::MAX_STATE_LEN).cloned();
            Some((uri.clone(), client_state))
        }
    };
    Ok(Logout { back_to, hinted_session: hint.and_then(|h| h.sid), client_id, raw })
}

fn targets(state: &AppState, logout: &Logout) -> FormTargets {
    logout.client_id.as_ref().and_then(|id| state.spec.clients.get(id)).map(FormTargets::of_client).unwrap_or_default()
}

/// After sign-out: back to the client's registered URI with `state`, or the signed-out page;
/// the session cookie cleared either way.
fn finish(state: &AppState, chrome: &Chrome, logout: &Logout, cookies: Cookies) -> Response {
    let mut response = match &logout.back_to {
        Some((uri, client_state)) => match url::Url::parse(uri) {
            Ok(mut url) => {
                if let Some(client_state) = client_state {
                    url.query_pairs_mut().append_pair("state", client_state);
                }
                match HeaderValue::from_str(url.as_str()) {
                    Ok(location) => {
                        let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
                        page_headers(response.headers_mut(), &targets(state, logout));
                        response
                    }
                    Err(_) => ErrorPage::refusal(chrome, Code::AuthorizeInvalidRedirectUri),
                }
            }
            Err(_) => ErrorPage::refusal(chrome, Code::AuthorizeInvalidRedirectUri),
        },
        None => page(StatusCode::OK, &SignedOutPage { t: chrome.t, brand: chrome.brand.clone() }, &FormTargets::default()),
    };
    response.headers_mut().append(header::SET_COOKIE, cookies.clear_session());
    response
}

