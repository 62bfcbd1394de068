//! `AccessTokenVerifier::verify` on tokens built from fuzzer choices: headers and payloads of
//! JSON-ish members (honest, missing, retyped, repeated, extra, or a whole other value), signed by
//! the right key, another published key, the retired or an unpublished key, or not signed at all,
//! encoded correctly or not. A token whose signature was made without the named published key must
//! be refused; any accepted token must pass the independent oracle.
#![no_main]

use auth_fuzz::tokens::{TokenRecipe, assert_really_valid, fixture};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|recipe: TokenRecipe| {
    let fixture = fixture();
    let built = recipe.build(fixture);
    let now = recipe.now();
    match fixture.verifier.verify(&built.token, &fixture.keys, now) {
        Ok(claims) => {
            assert!(!built.forged, "accepted a token signed without the issuer's key: {}", built.token);
            assert_really_valid(fixture, &built.token, &claims, now);
        }
        Err(e) => assert!(e.code().as_str().starts_with("token."), "{e:?}"),
    }
});
