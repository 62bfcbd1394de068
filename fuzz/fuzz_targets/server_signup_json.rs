//! auth-server's sign-up body decoding (`routes::users::decode_sign_up`, used by `POST /v1/users`)
//! on any body, checked against `serde_json`'s reading.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| auth_fuzz::bodies::check_sign_up(data));
