//! The real auth-server router (SQLite in a temporary directory, `alice` signed up, the
//! confidential client registered) driven in-process: a POST of any body to `/oauth/token`,
//! `/oauth/revoke`, `/oauth/introspect` or `/v1/users`, with one of eight content types and
//! `Authorization` headers. Never a 5xx; every 4xx in the endpoint's error format (RFC 6749 JSON
//! on `/oauth/*`, problem+json elsewhere); `/readyz` keeps answering.
//!
//! Input: a selector byte (route in bits 0-1, content type in bits 2-4), an authorization byte,
//! then the body.
#![no_main]

use auth_fuzz::server::{CONTENT_TYPES, FuzzRequest, ROUTES, harness};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [selector, authorization, body @ ..] = data else { return };
    let harness = harness();
    let request = FuzzRequest {
        path: ROUTES[usize::from(selector & 0b11)],
        content_type: CONTENT_TYPES[usize::from(selector >> 2 & 0b111)],
        authorization: harness.authorization(*authorization),
        body: body.to_vec(),
    };
    harness.check(&request);
});
