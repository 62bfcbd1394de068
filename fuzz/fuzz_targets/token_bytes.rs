//! `AccessTokenVerifier::verify` on any bytes (read as UTF-8, lossily) against the real key set
//! at `NOW`: it must not panic, and a token it accepts must pass the independent oracle (only the
//! committed seed tokens, signed by the fixture's fixed EdDSA key, can).
#![no_main]

use auth_fuzz::tokens::{NOW, assert_really_valid, fixture};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let token = String::from_utf8_lossy(data);
    match fixture.verifier.verify(&token, &fixture.keys, NOW) {
        Ok(claims) => assert_really_valid(fixture, &token, &claims, NOW),
        Err(e) => assert!(e.code().as_str().starts_with("token."), "{e:?}"),
    }
});
