//! auth-server's form decoding (`routes::parse_form`, used by `/oauth/token`, `/oauth/revoke` and
//! `/oauth/introspect`) on any body, checked against the `form_urlencoded` crate's reading.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| auth_fuzz::bodies::check_form(data));
