//! Published vectors run through the ring-backed provider: RFC 7515 appendix A (RS256 byte-exact,
//! ES256 verify and round trip, HS256 refused) and every Wycheproof case for the three signing
//! algorithms. RFC 8037 A.4 (Ed25519) lives with the unit tests in `src/crypto/tests.rs`.

// Helpers outside `#[test]` functions fail loudly on broken fixtures, as the tests do.
#![allow(clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use auth_core::crypto::{PrivateKey, decoding_key, install_provider};
use auth_core::keys::KeySet;
use auth_core::spec::{SigningAlgorithm, Spec};
use auth_core::tokens::AccessTokenVerifier;
use auth_core::error::TokenError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// RFC 7515 appendix A

/// The payload shared by A.1, A.2 and A.3: `{"iss":"joe",\r\n "exp":1300819380,\r\n
/// "http://example.com/is_root":true}`.
const RFC7515_PAYLOAD: &str =
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";

/// A.1: `{"typ":"JWT",\r\n "alg":"HS256"}`, the HMAC key and the MAC.
const A1_HEADER: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9";
const A1_KEY: &str = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
const A1_MAC: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// A.2: `{"alg":"RS256"}`, the RSA key (A.2.1) and the signature.
const A2_HEADER: &str = "eyJhbGciOiJSUzI1NiJ9";
const A2_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
const A2_E: &str = "AQAB";
const A2_D: &str = "Eq5xpGnNCivDflJsRQBXHx1hdR1k6Ulwe2JZD50LpXyWPEAeP88vLNO97IjlA7_GQ5sLKMgvfTeXZx9SE-7YwVol2NXOoAJe46sui395IW_GO-pWJ1O0BkTGoVEn2bKVRUCgu-GjBVaYLU6f3l9kJfFNS3E0QbVdxzubSu3Mkqzjkn439X0M_V51gfpRLI9JYanrC4D4qAdGcopV_0ZHHzQlBjudU2QvXt4ehNYTCBr6XCLQUShb1juUO1ZdiYoFaFQT5Tw8bGUl_x_jTj3ccPDVZFD9pIuhLhBOneufuBiB4cS98l2SR_RQyGWSeWjnczT0QU91p1DhOVRuOopznQ";
const A2_P: &str = "4BzEEOtIpmVdVEZNCqS7baC4crd0pqnRH_5IB3jw3bcxGn6QLvnEtfdUdiYrqBdss1l58BQ3KhooKeQTa9AB0Hw_Py5PJdTJNPY8cQn7ouZ2KKDcmnPGBY5t7yLc1QlQ5xHdwW1VhvKn-nXqhJTBgIPgtldC-KDV5z-y2XDwGUc";
const A2_Q: &str = "uQPEfgmVtjL0Uyyx88GZFF1fOunH3-7cepKmtH4pxhtCoHqpWmT8YAmZxaewHgHAjLYsp1ZSe7zFYHj7C6ul7TjeLQeZD_YwD66t62wDmpe_HlB-TnBA-njbglfIsRLtXlnDzQkv5dTltRJ11BKBBypeeF6689rjcJIDEz9RWdc";
const A2_DP: &str = "BwKfV3Akq5_MFZDFZCnW-wzl-CCo83WoZvnLQwCTeDv8uzluRSnm71I3QCLdhrqE2e9YkxvuxdBfpT_PI7Yz-FOKnu1R6HsJeDCjn12Sk3vmAktV2zb34MCdy7cpdTh_YVr7tss2u6vneTwrA86rZtu5Mbr1C1XsmvkxHQAdYo0";
const A2_DQ: &str = "h_96-mK1R_7glhsum81dZxjTnYynPbZpHziZjeeHcXYsXaaMwkOlODsWa7I9xXDoRwbKgB719rrmI2oKr6N3Do9U0ajaHF-NKJnwgjMd2w9cjz3_-kyNlxAr2v4IKhGNpmM5iIgOS1VZnOZ68m6_pbLBSp3nssTdlqvd0tIiTHU";
const A2_QI: &str = "IYd7DHOhrWvxkwPQsRM2tOgrjbcrfvtQJipd-DlcxyVuuM9sQLdgjVk2oy26F0EmpScGLq2MowX7fhd_QJQ3ydy5cY7YIBi87w93IKLEdfnbJtoOPLUW0ITrJReOgo1cq9SbsxYawBgfp_gh6A5603k2-ZQwVK0JKSHuLFkuQ3U";
const A2_SIGNATURE: &str = "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";

/// A.3: `{"alg":"ES256"}`, the P-256 key (A.3.1) and the signature (R || S).
const A3_HEADER: &str = "eyJhbGciOiJFUzI1NiJ9";
const A3_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
const A3_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
const A3_D: &str = "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI";
const A3_SIGNATURE: &str = "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";

#[track_caller]
fn unb64(text: &str) -> Vec<u8> {
    B64.decode(text).unwrap_or_else(|e| panic!("bad base64url in a vector ({e}): {text}"))
}

fn signing_input(header: &str) -> String {
    format!("{header}.{RFC7515_PAYLOAD}")
}

fn rfc7515_a2_private_key() -> rsa::RsaPrivateKey {
    use rsa::BigUint;
    use rsa::traits::PrivateKeyParts as _;
    let int = |text: &str| BigUint::from_bytes_be(&unb64(text));
    let key = rsa::RsaPrivateKey::from_components(int(A2_N), int(A2_E), int(A2_D), vec![int(A2_P), int(A2_Q)])
        .expect("the A.2 components form a valid RSA key");
    // The CRT parameters are not inputs of `from_components`; check that the RFC's agree.
    assert_eq!(key.dp(), Some(&int(A2_DP)), "dp");
    assert_eq!(key.dq(), Some(&int(A2_DQ)), "dq");
    assert_eq!(key.crt_coefficient(), Some(int(A2_QI)), "qi");
    key
}

/// The A.3 private key as PKCS#8 (RFC 5915 ECPrivateKey inside RFC 5208), the form the
/// provider signs with.
fn rfc7515_a3_pkcs8() -> Vec<u8> {
    const PREFIX: [u8; 36] = [
        0x30, 0x81, 0x87, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
        0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x6d, 0x30, 0x6b, 0x02, 0x01, 0x01, 0x04, 0x20,
    ];
    let mut der = PREFIX.to_vec();
    der.extend_from_slice(&unb64(A3_D));
    der.extend_from_slice(&[0xa1, 0x44, 0x03, 0x42, 0x00, 0x04]);
    der.extend_from_slice(&unb64(A3_X));
    der.extend_from_slice(&unb64(A3_Y));
    der
}

fn a2_public_jwk() -> Jwk {
    serde_json::from_value(json!({ "kty": "RSA", "n": A2_N, "e": A2_E, "alg": "RS256", "kid": "rfc7515-a2" }))
        .expect("RSA JWK")
}

fn a3_public_jwk() -> Jwk {
    serde_json::from_value(json!({ "kty": "EC", "crv": "P-256", "x": A3_X, "y": A3_Y, "alg": "ES256", "kid": "rfc7515-a3" }))
        .expect("EC JWK")
}

#[test]
fn rfc7515_a2_rs256_published_signature_verifies() {
    install_provider();
    let input = signing_input(A2_HEADER);
    for key in [
        DecodingKey::from_rsa_components(A2_N, A2_E).expect("components"),
        decoding_key(&a2_public_jwk(), SigningAlgorithm::RS256).expect("JWK"),
    ] {
        assert!(jsonwebtoken::crypto::verify(A2_SIGNATURE, input.as_bytes(), &key, Algorithm::RS256).expect("verify"));
        let tampered = signing_input("eyJhbGciOiJSUzI1NiIsImtpZCI6IngifQ");
        assert!(!jsonwebtoken::crypto::verify(A2_SIGNATURE, tampered.as_bytes(), &key, Algorithm::RS256).expect("verify"));
    }
}

#[test]
fn rfc7515_a2_rs256_signature_is_byte_exact() {
    use rsa::pkcs1::EncodeRsaPrivateKey as _;
    use rsa::pkcs8::EncodePrivateKey as _;
    install_provider();
    let key = rfc7515_a2_private_key();
    let pkcs8 = key.to_pkcs8_der().expect("PKCS#8").as_bytes().to_vec();
    let pkcs1 = key.to_pkcs1_der().expect("PKCS#1").as_bytes().to_vec();
    let input = signing_input(A2_HEADER);
    // RSASSA-PKCS1-v1_5 is deterministic: both DER forms must give the RFC's bytes.
    for der in [&pkcs8, &pkcs1] {
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &EncodingKey::from_rsa_der(der), Algorithm::RS256)
            .expect("sign");
        assert_eq!(sig, A2_SIGNATURE);
    }
    // The crate's own key type takes the same PKCS#8 and publishes the RFC's public key.
    let private = PrivateKey::from_pkcs8(SigningAlgorithm::RS256, pkcs8).expect("RS256 key");
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &private.encoding_key(), Algorithm::RS256).expect("sign");
    assert_eq!(sig, A2_SIGNATURE);
    let jwk = serde_json::to_value(private.public_jwk().expect("public JWK")).expect("json");
    assert_eq!((jwk["n"].as_str(), jwk["e"].as_str()), (Some(A2_N), Some(A2_E)));
}

#[test]
fn rfc7515_a3_es256_published_signature_verifies() {
    install_provider();
    let input = signing_input(A3_HEADER);
    for key in [
        DecodingKey::from_ec_components(A3_X, A3_Y).expect("components"),
        decoding_key(&a3_public_jwk(), SigningAlgorithm::ES256).expect("JWK"),
    ] {
        assert!(jsonwebtoken::crypto::verify(A3_SIGNATURE, input.as_bytes(), &key, Algorithm::ES256).expect("verify"));
        assert!(!jsonwebtoken::crypto::verify(A3_SIGNATURE, b"eyJhbGciOiJFUzI1NiJ9.e30", &key, Algorithm::ES256)
            .expect("verify"));
    }
}

#[test]
fn rfc7515_a3_es256_signs_and_verifies_round_trip() {
    install_provider();
    let private = PrivateKey::from_pkcs8(SigningAlgorithm::ES256, rfc7515_a3_pkcs8()).expect("ES256 key");
    let jwk = serde_json::to_value(private.public_jwk().expect("public JWK")).expect("json");
    assert_eq!((jwk["x"].as_str(), jwk["y"].as_str()), (Some(A3_X), Some(A3_Y)), "the DER carries the RFC key");
    let public = DecodingKey::from_ec_components(A3_X, A3_Y).expect("components");
    let input = signing_input(A3_HEADER);
    // ECDSA is randomized: no byte-exact answer, but every signature verifies and two differ.
    let first = jsonwebtoken::crypto::sign(input.as_bytes(), &private.encoding_key(), Algorithm::ES256).expect("sign");
    let second = jsonwebtoken::crypto::sign(input.as_bytes(), &private.encoding_key(), Algorithm::ES256).expect("sign");
    assert_ne!(first, second);
    for sig in [&first, &second] {
        assert_eq!(unb64(sig).len(), 64, "JWS ECDSA signatures are R || S, 32 bytes each");
        assert!(jsonwebtoken::crypto::verify(sig, input.as_bytes(), &public, Algorithm::ES256).expect("verify"));
    }
}

#[test]
fn rfc7515_a1_hs256_is_refused_although_the_mac_is_genuine() {
    install_provider();
    let input = signing_input(A1_HEADER);
    // The vector is right: ring itself accepts the MAC...
    let mac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &unb64(A1_KEY));
    assert!(ring::hmac::verify(&mac_key, input.as_bytes(), &unb64(A1_MAC)).is_ok());
    // ...and the provider refuses HMAC all the same, to verify and to sign.
    let secret = DecodingKey::from_secret(&unb64(A1_KEY));
    assert!(jsonwebtoken::crypto::verify(A1_MAC, input.as_bytes(), &secret, Algorithm::HS256).is_err());
    assert!(
        jsonwebtoken::crypto::sign(input.as_bytes(), &EncodingKey::from_secret(&unb64(A1_KEY)), Algorithm::HS256)
            .is_err()
    );
    // So does the access-token verifier, before it looks for a key.
    let spec = Spec::parse(include_str!("../../../fixtures/specs/booking.toml")).expect("spec");
    let token = format!("{input}.{A1_MAC}");
    let keys = KeySet::from_jwks(&JwkSet { keys: vec![a3_public_jwk()] });
    assert_eq!(
        AccessTokenVerifier::from_spec(&spec).verify(&token, &keys, 1_300_819_000),
        Err(TokenError::UnsupportedAlgorithm)
    );
}

// ---------------------------------------------------------------------------------------------
// Wycheproof

fn wycheproof(file: &str) -> Value {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "vectors", "wycheproof", file].iter().collect();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[track_caller]
fn hex_field(value: &Value, name: &str) -> Vec<u8> {
    let text = value[name].as_str().unwrap_or_else(|| panic!("missing hex field {name}"));
    hex::decode(text).unwrap_or_else(|e| panic!("bad hex in {name}: {e}"))
}

/// What a Wycheproof file did to the verifier.
#[derive(Debug, Default)]
struct Tally {
    valid: usize,
    invalid: usize,
    acceptable_accepted: usize,
    acceptable_rejected: usize,
    /// `tcId`s whose outcome contradicts their `result`.
    wrong: Vec<String>,
}

impl Tally {
    fn record(&mut self, case: &Value, verified: bool) {
        let id = case["tcId"].as_u64().unwrap_or_default();
        let comment = case["comment"].as_str().unwrap_or_default();
        match (case["result"].as_str(), verified) {
            (Some("valid"), true) => self.valid += 1,
            (Some("invalid"), false) => self.invalid += 1,
            (Some("acceptable"), true) => self.acceptable_accepted += 1,
            (Some("acceptable"), false) => self.acceptable_rejected += 1,
            (result, _) => self.wrong.push(format!("tcId {id} ({comment}): expected {result:?}, verified = {verified}")),
        }
    }

    #[track_caller]
    fn check(self, file: &str, expected_total: u64) {
        eprintln!(
            "wycheproof {file}: {} valid verified, {} invalid rejected, acceptable: {} accepted / {} rejected",
            self.valid, self.invalid, self.acceptable_accepted, self.acceptable_rejected
        );
        assert!(self.wrong.is_empty(), "{file}: {} cases disagree:\n{}", self.wrong.len(), self.wrong.join("\n"));
        let total = self.valid + self.invalid + self.acceptable_accepted + self.acceptable_rejected;
        assert_eq!(total as u64, expected_total, "{file}: every case ran");
    }
}

/// Runs every case of a Wycheproof signature file through `jsonwebtoken::crypto::verify` (and so
/// through the installed ring provider), with the group's key made by `key_of`.
fn run_wycheproof(file: &str, alg: Algorithm, key_of: impl Fn(&Value) -> DecodingKey) {
    install_provider();
    let data = wycheproof(file);
    let mut tally = Tally::default();
    let groups = data["testGroups"].as_array().expect("testGroups");
    for group in groups {
        let key = key_of(group);
        for case in group["tests"].as_array().expect("tests") {
            let msg = hex_field(case, "msg");
            let sig = B64.encode(hex_field(case, "sig"));
            // An Err (signature that is not even well-formed for the algorithm) is a rejection.
            let verified = jsonwebtoken::crypto::verify(&sig, &msg, &key, alg).unwrap_or(false);
            tally.record(case, verified);
        }
    }
    tally.check(file, data["numberOfTests"].as_u64().expect("numberOfTests"));
}

#[test]
fn wycheproof_ecdsa_p256_sha256_p1363() {
    run_wycheproof("ecdsa_secp256r1_sha256_p1363_test.json", Algorithm::ES256, |group| {
        let point = hex_field(&group["publicKey"], "uncompressed");
        assert_eq!((point.len(), point[0]), (65, 4), "uncompressed P-256 point");
        DecodingKey::from_ec_components(&B64.encode(&point[1..33]), &B64.encode(&point[33..])).expect("EC key")
    });
}

#[test]
fn wycheproof_ed25519() {
    run_wycheproof("ed25519_test.json", Algorithm::EdDSA, |group| {
        DecodingKey::from_ed_components(&B64.encode(hex_field(&group["publicKey"], "pk"))).expect("Ed25519 key")
    });
}

#[test]
fn wycheproof_rsa_pkcs1_2048_sha256() {
    run_wycheproof("rsa_signature_2048_sha256_test.json", Algorithm::RS256, |group| {
        let n = hex_field(&group["publicKey"], "modulus");
        let e = hex_field(&group["publicKey"], "publicExponent");
        // ASN.1 integers carry a sign byte; the JWK form (and ring) take the unsigned magnitude.
        let strip = |v: &[u8]| v.iter().skip_while(|b| **b == 0).copied().collect::<Vec<u8>>();
        DecodingKey::from_rsa_raw_components(&strip(&n), &strip(&e))
    });
}

// ---------------------------------------------------------------------------------------------
// Wycheproof JSON Web Signature cases
//
// `json_web_signature_test.json` is not in the wycheproof crate (it excludes `json_web_*`); these
// are cases of its "es256" group (tcId 18, 19, 25, 31, 32), copied by hand from upstream
// `testvectors_v1/json_web_signature_test.json`. Their payload is "foo" and their header has no
// `typ`, so an access-token verifier that accepts the signature stops at `typ`: `WrongType` is
// the verifier's way of saying "signature good".

const JWS_ES256_X: &str = "04N0xi21hshyvBp7I167sbE_bXqyqkAPfefdklMO7wY";
const JWS_ES256_Y: &str = "UI8exy-C06a7DUnjIdENkxeFtHM4-l_41LqEw9nVgmw";

/// (tcId, comment, JWS, Wycheproof result, what `AccessTokenVerifier` says).
const JWS_ES256_CASES: &[(u32, &str, &str, bool, TokenError)] = &[
    (
        18,
        "acceptsValid",
        "eyJhbGciOiJFUzI1NiIsImtpZCI6ImtpZC1lYy1zaWduIn0.Zm9v.5cA0OHyMP7ezamUd5c9kV-FrGxdx4hbGXOdplQkutrqWrte5P-pAvsE3Ve6xSyU3YDQwUHjVVOtvcrEbbnZ8yA",
        true,
        TokenError::WrongType,
    ),
    (
        19,
        "rejectsModifiedSignature",
        "eyJhbGciOiJFUzI1NiIsImtpZCI6ImtpZC1lYy1zaWduIn0.Zm9v.XcA0OHyMP7ezamUd5c9kV-FrGxdx4hbGXOdplQkutrqWrte5P-pAvsE3Ve6xSyU3YDQwUHjVVOtvcrEbbnZ8yA",
        false,
        TokenError::BadSignature,
    ),
    (
        25,
        "rejectsModifiedHeader",
        "eyJhbGciOiJFUzI1NiIsImtpZCI6IlhpZC1lYy1zaWduIn0.Zm9v.5cA0OHyMP7ezamUd5c9kV-FrGxdx4hbGXOdplQkutrqWrte5P-pAvsE3Ve6xSyU3YDQwUHjVVOtvcrEbbnZ8yA",
        false,
        TokenError::UnknownKey,
    ),
    (
        31,
        "rejectsSymmetryConfusionAttacks_aesKeyFromEcVerificationKeyBytes",
        "eyJhbGciOiJIUzI1NiIsImtpZCI6ImtpZC1lYy1zaWduIn0.Zm9v.TgWtz2FIRukBQ_mA5sgHa0Ybtgn7bl-YBPAi7Z0XdHU",
        false,
        TokenError::UnsupportedAlgorithm,
    ),
    (
        32,
        "rejectsAttackerProvidedEmbeddedJwk",
        "eyJhbGciOiJFUzI1NiIsImtpZCI6ImtpZC1lYy1zaWduIiwiandrIjp7Imt0eSI6IkVDIiwia2lkIjoia2lkLWVjLXNpZ24iLCJ1c2UiOiJzaWciLCJhbGciOiJFUzI1NiIsIngiOiJNZG5UWkRJaERKYmZBU2RGcWFtY3BPMkNoOUdOS0sybTBNUWxoNDAyU3BvIiwieSI6Ijdhdko0bHFfV3l4LW5MUERCUTJZcHl0dUh5TWlvMDdCVXl2bDNqYUMtMVkiLCJjcnYiOiJQLTI1NiJ9fQ.Zm9v.4jmsollQD8ZxvySzXYnIEYA4fwaZi2ZbC0aI1J4LYmW2Bn31NhKdjms2N6o51Dff5-InWXQF9m45VtTexl6yjg",
        false,
        TokenError::BadSignature,
    ),
];

#[test]
fn wycheproof_jws_es256_cases() {
    install_provider();
    let jwk: Jwk = serde_json::from_value(
        json!({ "kty": "EC", "crv": "P-256", "x": JWS_ES256_X, "y": JWS_ES256_Y, "alg": "ES256", "kid": "kid-ec-sign" }),
    )
    .expect("EC JWK");
    let public = DecodingKey::from_ec_components(JWS_ES256_X, JWS_ES256_Y).expect("components");
    let keys = KeySet::from_jwks(&JwkSet { keys: vec![jwk] });
    let spec = Spec::parse(include_str!("../../../fixtures/specs/booking.toml")).expect("spec");
    let verifier = AccessTokenVerifier::from_spec(&spec);
    for (id, comment, jws, valid, code) in JWS_ES256_CASES {
        let (input, sig) = jws.rsplit_once('.').expect("compact JWS");
        let verified = jsonwebtoken::crypto::verify(sig, input.as_bytes(), &public, Algorithm::ES256).unwrap_or(false);
        assert_eq!(verified, *valid, "tcId {id} ({comment}): signature under the published key");
        assert_eq!(verifier.verify(jws, &keys, 0).map(|c| c.jti), Err(*code), "tcId {id} ({comment})");
    }
    // The embedded-jwk case is a real attack: its signature is good under the key it carries.
    let (input, sig) = JWS_ES256_CASES[4].2.rsplit_once('.').expect("compact JWS");
    let header: Value = serde_json::from_slice(&unb64(input.split('.').next().expect("header"))).expect("header");
    let embedded = DecodingKey::from_jwk(&serde_json::from_value(header["jwk"].clone()).expect("jwk")).expect("key");
    assert!(jsonwebtoken::crypto::verify(sig, input.as_bytes(), &embedded, Algorithm::ES256).expect("verify"));
}
