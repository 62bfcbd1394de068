//! The request-body decoders of auth-server, each checked against an independent reading of the
//! same bytes: `http::extract::parse_form` (the OAuth endpoints' form) against the `form_urlencoded`
//! crate, `http::account::decode_sign_up` (the sign-up JSON) against `serde_json`.

use std::collections::HashMap;
use std::fmt;

use auth_server::http::account::{SignUpRequest, decode_sign_up};
use auth_server::http::extract::{FormParameters, parse_form};
use auth_server::http::oauth::TokenForm;
use auth_server::http::oauth::token::TokenRequest;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::server::CONTENT_TYPES;

fn headers(content_type: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(content_type)
        && !content_type.is_empty()
    {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers
}

fn media_type_is(content_type: &str, expected: &str) -> bool {
    content_type.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case(expected)
}

/// Input: one selector byte (content type in the low bits, the parameter set in the top bit),
/// then the body. Checks `parse_form`: an accepted form holds exactly the endpoint's parameters
/// that `form_urlencoded` reads from the same bytes, none of them repeated; a refused one is a
/// 415 (content type) or a 400 `invalid_request` with a `request.*` description.
pub fn check_form(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else { return };
    let content_type = CONTENT_TYPES[usize::from(selector) % CONTENT_TYPES.len()];
    let known = if selector & 0x80 == 0 { TokenRequest::names() } else { TokenForm::names() };
    let form_type = media_type_is(content_type, "application/x-www-form-urlencoded");
    match parse_form(headers(content_type).get(header::CONTENT_TYPE), &Bytes::copy_from_slice(body), known) {
        Ok(form) => {
            assert!(form_type, "a form accepted as {content_type:?}");
            let mut expected = HashMap::new();
            for (name, value) in form_urlencoded::parse(body) {
                if known.contains(&name.as_ref()) {
                    let repeated = expected.insert(name.clone().into_owned(), value.into_owned()).is_some();
                    assert!(!repeated, "parameter {name} repeats but the form was accepted: {body:?}");
                }
            }
            assert_eq!(form, expected, "the strict and the lenient decoder disagree on {body:?}");
        }
        Err(e) => {
            assert_eq!(e.error, "invalid_request", "{e:?}");
            assert!(e.code.as_str().starts_with("request."), "{e:?}");
            if form_type {
                assert_eq!(e.status, StatusCode::BAD_REQUEST, "{e:?}");
            } else {
                assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{e:?}");
            }
        }
    }
}

/// The member names of one JSON object, in order, repeats kept.
struct MemberNames(Vec<String>);

impl<'de> serde::Deserialize<'de> for MemberNames {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Names;
        impl<'de> Visitor<'de> for Names {
            type Value = MemberNames;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<MemberNames, A::Error> {
                let mut names = Vec::new();
                while let Some((name, _)) = access.next_entry::<String, Value>()? {
                    names.push(name);
                }
                Ok(MemberNames(names))
            }
        }
        deserializer.deserialize_map(Names)
    }
}

/// Input: one selector byte (content type), then the body. Checks `decode_sign_up` against
/// `serde_json`: accepted means a JSON object with distinct member names whose `username` and
/// `password` are strings and whose other members are the claims returned; `request.malformed`
/// means `serde_json` finds no object or a repeated name; `input.invalid` means `username` or
/// `password` is missing or not a string; another content type is a 415.
pub fn check_sign_up(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else { return };
    let content_type = CONTENT_TYPES[usize::from(selector) % CONTENT_TYPES.len()];
    let decoded = decode_sign_up(&headers(content_type), body);
    if !media_type_is(content_type, "application/json") {
        let code = decoded.as_ref().err().map(|p| (p.status, p.code.as_str()));
        assert_eq!(code, Some((StatusCode::UNSUPPORTED_MEDIA_TYPE, "request.unsupported_media_type")), "{content_type:?}");
        return;
    }
    let names = serde_json::from_slice::<MemberNames>(body).ok().map(|MemberNames(names)| names);
    let unique = names.as_ref().is_some_and(|names| {
        let mut sorted = names.clone();
        sorted.sort();
        sorted.windows(2).all(|w| w[0] != w[1])
    });
    let object = serde_json::from_slice::<Value>(body).ok().and_then(|v| v.as_object().cloned());
    match decoded {
        Ok(SignUpRequest { username, password, invitation, claims }) => {
            assert!(unique, "accepted a body that is no object with distinct names: {body:?}");
            let object = object.unwrap_or_else(|| panic!("accepted a body serde_json does not read: {body:?}"));
            assert_eq!(object.get("username"), Some(&Value::String(username)), "{body:?}");
            assert_eq!(object.get("password"), Some(&Value::String(password)), "{body:?}");
            assert_eq!(object.get("invitation"), invitation.map(Value::String).as_ref(), "{body:?}");
            let members = claims.len() + 2 + usize::from(object.contains_key("invitation"));
            assert_eq!(object.len(), members, "{body:?}");
            for (name, value) in &claims {
                assert_eq!(object.get(name), Some(value), "claim {name} of {body:?}");
            }
        }
        Err(problem) => {
            assert_eq!(problem.status, StatusCode::BAD_REQUEST, "{problem:?}");
            match problem.code.as_str() {
                "request.malformed" => assert!(!unique, "refused as malformed but serde_json reads an object: {body:?}"),
                "input.invalid" => {
                    assert!(unique, "refused as invalid input but it is no object with distinct names: {body:?}");
                    let object = object.unwrap_or_default();
                    let strings = ["username", "password"].iter().all(|name| object.get(*name).is_some_and(Value::is_string));
                    let invitation = object.get("invitation").is_none_or(Value::is_string);
                    assert!(!(strings && invitation), "refused although username, password (and invitation) are strings: {body:?}");
                }
                other => panic!("unexpected code {other}: {problem:?}"),
            }
        }
    }
}
