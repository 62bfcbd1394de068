//! Hostile access tokens against `AccessTokenVerifier`, one attack per test, each pinned to its
//! stable `TokenError`. Tokens are built by hand (our own header and claims JSON, signed with the
//! real key) so that the one thing wrong is the thing under test; `forged_baseline_verifies`
//! proves the forge itself makes good tokens.

// Helpers outside `#[test]` functions fail loudly on broken fixtures, as the tests do.
#![allow(clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use auth_core::crypto::{PrivateKey, jwt_algorithm};
use auth_core::error::TokenError;
use auth_core::keys::{ActiveKey, KeySet};
use auth_core::random::OsEntropy;
use auth_core::spec::{SigningAlgorithm, Spec};
use auth_core::store::{KeyRecord, KeyState};
use auth_core::tokens::{AccessClaims, AccessTokenIssuer, AccessTokenVerifier, MAX_TOKEN_BYTES, TokenSubject};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::jwk::JwkSet;
use proptest::prelude::*;
use serde_json::{Value, json};

pub(crate) const NOW: i64 = 1_750_000_000;
pub(crate) const ISSUER: &str = "http://127.0.0.1:8080";

fn spec() -> Spec {
    Spec::parse(include_str!("../../../fixtures/specs/booking.toml")).expect("booking spec")
}

pub(crate) fn verifier() -> AccessTokenVerifier {
    AccessTokenVerifier::from_spec(&spec())
}

/// A signing key with its kid and the key set that publishes it.
pub(crate) struct Forge {
    pub(crate) key: PrivateKey,
    pub(crate) kid: String,
    pub(crate) keys: KeySet,
}

impl Forge {
    pub(crate) fn new(alg: SigningAlgorithm) -> Self {
        let key = PrivateKey::generate(alg, &OsEntropy::new()).expect("key");
        let jwk = key.public_jwk().expect("public JWK");
        let kid = jwk.common.key_id.clone().expect("kid");
        let keys = KeySet::from_jwks(&JwkSet { keys: vec![jwk] });
        Self { key, kid, keys }
    }

    pub(crate) fn alg(&self) -> &'static str {
        self.key.algorithm().as_str()
    }

    /// The header an honest issuer writes.
    fn header(&self) -> Value {
        json!({ "alg": self.alg(), "typ": "at+jwt", "kid": self.kid })
    }

    /// Signs `header_b64.payload_b64` with this key, whatever the segments hold.
    pub(crate) fn sign_segments(&self, header_b64: &str, payload_b64: &str) -> String {
        let input = format!("{header_b64}.{payload_b64}");
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &self.key.encoding_key(), jwt_algorithm(self.key.algorithm()))
            .expect("sign");
        format!("{input}.{sig}")
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        self.sign_segments(&encode(header), &encode(claims))
    }

    fn active(&self) -> ActiveKey {
        ActiveKey { kid: self.kid.clone(), encoding: Arc::new(self.key.encoding_key()), key: self.key.clone() }
    }
}

pub(crate) fn encode(json: &Value) -> String {
    B64.encode(serde_json::to_vec(json).expect("json"))
}

/// The claims an honest issuer writes for the booking spec.
fn claims() -> Value {
    json!({
        "iss": ISSUER, "sub": "user-1", "aud": "booking-api", "exp": NOW + 900, "iat": NOW,
        "jti": "jti-1", "client_id": "booking-web", "scope": "bookings:read", "sid": "session-1",
        "tenant_id": "hotel-7"
    })
}

fn with(mut value: Value, name: &str, field: Value) -> Value {
    value[name] = field;
    value
}

fn without(mut value: Value, name: &str) -> Value {
    value.as_object_mut().expect("object").remove(name);
    value
}

pub(crate) fn eddsa() -> &'static Forge {
    static KEY: LazyLock<Forge> = LazyLock::new(|| Forge::new(SigningAlgorithm::EdDSA));
    &KEY
}

pub(crate) fn es256() -> &'static Forge {
    static KEY: LazyLock<Forge> = LazyLock::new(|| Forge::new(SigningAlgorithm::ES256));
    &KEY
}

#[track_caller]
fn rejects(token: &str, keys: &KeySet, expected: TokenError) {
    assert_eq!(verifier().verify(token, keys, NOW + 10).map(|c| c.jti), Err(expected), "token: {token:.200}");
}

#[test]
fn forged_baseline_verifies() {
    for forge in [eddsa(), es256()] {
        let token = forge.sign(&forge.header(), &claims());
        let verified = verifier().verify(&token, &forge.keys, NOW + 10).expect("an honest forged token verifies");
        assert_eq!(verified.custom.get("tenant_id"), Some(&json!("hotel-7")));
    }
}

// ---------------------------------------------------------------------------------------------
// Algorithm and key confusion

#[test]
fn alg_none_with_empty_signature() {
    let forge = eddsa();
    let token = format!("{}.{}.", encode(&with(forge.header(), "alg", json!("none"))), encode(&claims()));
    rejects(&token, &forge.keys, TokenError::UnsupportedAlgorithm);
}

#[test]
fn hs256_keyed_with_the_public_key_bytes() {
    let forge = eddsa();
    let jwk = forge.key.public_jwk().expect("jwk");
    let raw_public = B64.decode(serde_json::to_value(&jwk).expect("json")["x"].as_str().expect("x")).expect("x");
    let jwk_text = serde_json::to_vec(&jwk).expect("json");
    let header = encode(&with(forge.header(), "alg", json!("HS256")));
    let payload = encode(&claims());
    // The classic confusion: the verifier's public key, known to all, used as the HMAC secret.
    for secret in [raw_public.as_slice(), jwk_text.as_slice()] {
        let input = format!("{header}.{payload}");
        let mac = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret), input.as_bytes());
        let token = format!("{input}.{}", B64.encode(mac.as_ref()));
        rejects(&token, &forge.keys, TokenError::UnsupportedAlgorithm);
    }
}

#[test]
fn embedded_jwk_of_the_attacker_is_not_trusted() {
    let victim = eddsa();
    let attacker = Forge::new(SigningAlgorithm::EdDSA);
    let attacker_jwk = serde_json::to_value(attacker.key.public_jwk().expect("jwk")).expect("json");
    // Naming the victim's kid: the attacker's signature does not verify under the victim's key.
    let header = with(victim.header(), "jwk", attacker_jwk.clone());
    rejects(&attacker.sign(&header, &claims()), &victim.keys, TokenError::BadSignature);
    // Naming its own kid: the key set does not know it, whatever the header carries.
    let header = with(attacker.header(), "jwk", attacker_jwk);
    rejects(&attacker.sign(&header, &claims()), &victim.keys, TokenError::UnknownKey);
}

/// A header pointing at keys elsewhere: never fetched, never trusted.
#[track_caller]
fn remote_key_header_is_ignored(name: &str, value: &Value) {
    let victim = eddsa();
    let attacker = Forge::new(SigningAlgorithm::EdDSA);
    let header = with(victim.header(), name, value.clone());
    rejects(&attacker.sign(&header, &claims()), &victim.keys, TokenError::BadSignature);
    let header = with(attacker.header(), name, value.clone());
    rejects(&attacker.sign(&header, &claims()), &victim.keys, TokenError::UnknownKey);
    // Ignored, not an error in itself: the issuer's own signature still decides.
    let honest = victim.sign(&with(victim.header(), name, value.clone()), &claims());
    assert!(verifier().verify(&honest, &victim.keys, NOW + 10).is_ok());
}

#[test]
fn jku_header_is_ignored() {
    remote_key_header_is_ignored("jku", &json!("https://attacker.example/jwks.json"));
}

#[test]
fn x5u_header_is_ignored() {
    remote_key_header_is_ignored("x5u", &json!("https://attacker.example/cert.pem"));
}

#[test]
fn x5c_header_is_ignored() {
    // Any DER will do: the verifier never parses it.
    let der = B64.encode(b"0\x82\x01\x0a not a certificate");
    remote_key_header_is_ignored("x5c", &json!([der]));
}

#[test]
fn alg_mismatch_with_the_pinned_key() {
    let forge = eddsa();
    let token = forge.sign(&with(forge.header(), "alg", json!("ES256")), &claims());
    rejects(&token, &forge.keys, TokenError::AlgorithmMismatch);
}

#[test]
fn ecdsa_signature_with_r_and_s_zero() {
    let forge = es256();
    let token = format!("{}.{}.{}", encode(&forge.header()), encode(&claims()), B64.encode([0u8; 64]));
    rejects(&token, &forge.keys, TokenError::BadSignature);
}

#[test]
fn token_of_a_retired_key() {
    let forge = eddsa();
    let record = KeyRecord {
        kid: forge.kid.clone(),
        alg: SigningAlgorithm::EdDSA,
        state: KeyState::Retired,
        created_at: NOW - 90 * 86_400,
        activates_at: NOW - 88 * 86_400,
        deactivated_at: Some(NOW - 58 * 86_400),
        retired_at: Some(NOW - 57 * 86_400),
        public_jwk: serde_json::to_string(&forge.key.public_jwk().expect("jwk")).expect("json"),
        private_sealed: None,
        master_key_id: "test".into(),
    };
    let keys = KeySet::from_records(&[record]).expect("key set");
    rejects(&forge.sign(&forge.header(), &claims()), &keys, TokenError::KeyRetired);
}

#[test]
fn crit_header_is_refused() {
    let forge = eddsa();
    let header = with(with(forge.header(), "crit", json!(["exp"])), "exp", json!(NOW + 900));
    rejects(&forge.sign(&header, &claims()), &forge.keys, TokenError::Malformed);
}

// ---------------------------------------------------------------------------------------------
// Header type

#[test]
fn typ_jwt_is_not_an_access_token() {
    let forge = eddsa();
    rejects(&forge.sign(&with(forge.header(), "typ", json!("JWT")), &claims()), &forge.keys, TokenError::WrongType);
}

#[test]
fn missing_typ_is_not_an_access_token() {
    let forge = eddsa();
    rejects(&forge.sign(&without(forge.header(), "typ"), &claims()), &forge.keys, TokenError::WrongType);
}

// ---------------------------------------------------------------------------------------------
// Claims

#[test]
fn missing_exp() {
    let forge = eddsa();
    rejects(&forge.sign(&forge.header(), &without(claims(), "exp")), &forge.keys, TokenError::MissingClaim);
}

#[test]
fn wrong_audience() {
    let forge = eddsa();
    let token = forge.sign(&forge.header(), &with(claims(), "aud", json!(["billing-api", "other"])));
    rejects(&token, &forge.keys, TokenError::WrongAudience);
}

#[test]
fn wrong_issuer() {
    let forge = eddsa();
    let token = forge.sign(&forge.header(), &with(claims(), "iss", json!("https://attacker.example")));
    rejects(&token, &forge.keys, TokenError::WrongIssuer);
}

#[test]
fn nbf_in_the_future() {
    let forge = eddsa();
    // One second beyond the 30 s leeway at the verification instant (NOW + 10).
    let token = forge.sign(&forge.header(), &with(claims(), "nbf", json!(NOW + 10 + 31)));
    rejects(&token, &forge.keys, TokenError::NotYetValid);
}

#[test]
fn exp_as_string() {
    let forge = eddsa();
    let token = forge.sign(&forge.header(), &with(claims(), "exp", json!((NOW + 900).to_string())));
    rejects(&token, &forge.keys, TokenError::InvalidClaim);
}

#[test]
fn aud_as_number() {
    let forge = eddsa();
    rejects(&forge.sign(&forge.header(), &with(claims(), "aud", json!(42))), &forge.keys, TokenError::InvalidClaim);
}

#[test]
fn sub_as_object() {
    let forge = eddsa();
    let token = forge.sign(&forge.header(), &with(claims(), "sub", json!({ "id": "user-1" })));
    rejects(&token, &forge.keys, TokenError::InvalidClaim);
}

#[test]
fn custom_claim_of_the_wrong_type() {
    let forge = eddsa();
    let token = forge.sign(&forge.header(), &with(claims(), "tenant_id", json!(7)));
    rejects(&token, &forge.keys, TokenError::InvalidClaim);
}

#[test]
fn missing_required_custom_claim() {
    let forge = eddsa();
    rejects(&forge.sign(&forge.header(), &without(claims(), "tenant_id")), &forge.keys, TokenError::MissingClaim);
}

#[test]
fn client_tokens_need_no_user_claims() {
    // No `sid`: a client-credentials token, which describes no user.
    let forge = eddsa();
    let token = forge.sign(&forge.header(), &without(without(claims(), "tenant_id"), "sid"));
    assert!(verifier().verify(&token, &forge.keys, NOW + 10).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Shape and encoding

fn honest_segments() -> [String; 3] {
    let forge = eddsa();
    let token = forge.sign(&forge.header(), &claims());
    let mut parts = token.split('.').map(str::to_owned);
    [(); 3].map(|()| parts.next().expect("three segments"))
}

#[test]
fn two_segments() {
    let [header, payload, _] = honest_segments();
    rejects(&format!("{header}.{payload}"), &eddsa().keys, TokenError::Malformed);
}

#[test]
fn four_segments() {
    let [header, payload, sig] = honest_segments();
    rejects(&format!("{header}.{payload}.{sig}.{sig}"), &eddsa().keys, TokenError::Malformed);
    rejects(&format!("{header}.{payload}.{sig}."), &eddsa().keys, TokenError::Malformed);
}

#[test]
fn bad_base64_in_the_header() {
    let forge = eddsa();
    let payload = encode(&claims());
    for header in [format!("{}*", encode(&forge.header())), format!("{}==", encode(&forge.header()))] {
        rejects(&forge.sign_segments(&header, &payload), &forge.keys, TokenError::Malformed);
    }
}

#[test]
fn bad_base64_in_the_payload() {
    let forge = eddsa();
    // Correctly signed: only the payload's encoding is wrong (a standard-alphabet '+', padding).
    let header = encode(&forge.header());
    for payload in [format!("{}+", encode(&claims())), format!("{}=", encode(&claims()))] {
        rejects(&forge.sign_segments(&header, &payload), &forge.keys, TokenError::Malformed);
    }
}

#[test]
fn bad_base64_in_the_signature() {
    let [header, payload, sig] = honest_segments();
    for bad in [format!("{sig}="), format!("{}/", &sig[1..]), format!("{}!", &sig[1..])] {
        rejects(&format!("{header}.{payload}.{bad}"), &eddsa().keys, TokenError::Malformed);
    }
}

#[test]
fn header_that_is_not_json() {
    let forge = eddsa();
    let token = forge.sign_segments(&B64.encode(b"alg=EdDSA; typ=at+jwt"), &encode(&claims()));
    rejects(&token, &forge.keys, TokenError::Malformed);
}

/// The header's members as a JSON array, in the order the verifier reads them: not a JWS header
/// (RFC 7515 section 4: a JSON object), although serde's derived structs read such arrays. Signed
/// by the real key, so only the shape is wrong.
#[test]
fn header_that_is_an_array() {
    let forge = eddsa();
    for header in [json!([forge.alg(), forge.kid, "at+jwt"]), json!([forge.alg(), forge.kid, "at+jwt", null])] {
        rejects(&forge.sign(&header, &claims()), &forge.keys, TokenError::Malformed);
    }
    let header = format!(" \n[\"{}\",\"{}\",\"at+jwt\"]", forge.alg(), forge.kid);
    rejects(&forge.sign_segments(&B64.encode(header), &encode(&claims())), &forge.keys, TokenError::Malformed);
}

#[test]
fn header_and_payload_that_are_not_utf8() {
    let forge = eddsa();
    let garbage = B64.encode([0xff, 0xfe, 0x7b, 0x22, 0xc3, 0x28]);
    rejects(&forge.sign_segments(&garbage, &encode(&claims())), &forge.keys, TokenError::Malformed);
    rejects(&forge.sign_segments(&encode(&forge.header()), &garbage), &forge.keys, TokenError::Malformed);
}

#[test]
fn garbage_strings() {
    for garbage in ["", ".", "..", "...", "a.b.c", "\0\0\0", "é.ü.ß", "eyJ.eyJ.eyJ", "🔑.🔑.🔑", " . . "] {
        rejects(garbage, &eddsa().keys, TokenError::Malformed);
    }
}

#[test]
fn token_of_64_kib_is_too_large() {
    let forge = eddsa();
    let padding = "x".repeat(64 * 1024);
    let token = forge.sign(&forge.header(), &with(claims(), "padding", json!(padding)));
    assert!(token.len() > MAX_TOKEN_BYTES);
    rejects(&token, &forge.keys, TokenError::TooLarge);
}

// ---------------------------------------------------------------------------------------------
// Random mutations

/// A token from the real issuer, for mutating.
fn issued() -> &'static str {
    static TOKEN: LazyLock<String> = LazyLock::new(|| {
        let mut custom = BTreeMap::new();
        custom.insert("tenant_id".to_owned(), json!("hotel-7"));
        let subject = TokenSubject {
            sub: "user-1".into(),
            client_id: "booking-web".into(),
            scope: "bookings:read bookings:write".into(),
            sid: Some("session-1".into()),
            custom,
        };
        AccessTokenIssuer::from_spec(&spec()).issue(&eddsa().active(), subject, NOW, "jti-1".into()).expect("issue").token
    });
    &TOKEN
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Flip one of the low seven bits of one byte (the token stays ASCII).
    FlipBit { at: usize, bit: u8 },
    /// Keep only the first `len` bytes.
    Truncate { len: usize },
    /// Reorder the three segments (never the identity).
    Swap { order: [usize; 3] },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let len = issued().len();
    prop_oneof![
        (0..len, 0u8..7).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        (0..len).prop_map(|len| Mutation::Truncate { len }),
        prop::sample::select(vec![[0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0], [0, 0, 2], [0, 1, 1]])
            .prop_map(|order| Mutation::Swap { order }),
    ]
}

fn mutate(token: &str, mutation: &Mutation) -> String {
    match mutation {
        Mutation::FlipBit { at, bit } => {
            let mut bytes = token.as_bytes().to_vec();
            bytes[*at] ^= 1 << bit;
            String::from_utf8(bytes).expect("still ASCII")
        }
        Mutation::Truncate { len } => token[..*len].to_owned(),
        Mutation::Swap { order } => {
            let parts: Vec<&str> = token.split('.').collect();
            order.iter().map(|i| parts[*i]).collect::<Vec<_>>().join(".")
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn mutated_tokens_never_verify(mutation in mutation()) {
        let token = issued();
        let keys = &eddsa().keys;
        prop_assert!(verifier().verify(token, keys, NOW + 10).is_ok(), "the unmutated token verifies");
        let mutated = mutate(token, &mutation);
        prop_assume!(mutated != token);
        let outcome: Result<AccessClaims, TokenError> = verifier().verify(&mutated, keys, NOW + 10);
        prop_assert!(outcome.is_err(), "{mutation:?} verified: {mutated}");
    }
}
