use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

use super::*;
use crate::random::OsEntropy;

/// RFC 8037 appendix A.1: the Ed25519 private key `d`.
const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

fn rfc8037_key() -> PrivateKey {
    let seed: [u8; 32] = B64.decode(RFC8037_D).unwrap().try_into().unwrap();
    PrivateKey::ed25519_from_seed(&seed).unwrap()
}

#[test]
fn rfc8037_a3_thumbprint_is_the_kid() {
    let jwk = rfc8037_key().public_jwk().unwrap();
    assert_eq!(jwk.common.key_id.as_deref(), Some("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"));
    let json = serde_json::to_value(&jwk).unwrap();
    assert_eq!(json["x"], RFC8037_X);
    assert_eq!(json["crv"], "Ed25519");
    assert_eq!(json["kty"], "OKP");
    assert!(json.get("d").is_none(), "a public JWK never carries the private key");
}

#[test]
fn rfc8037_a4_signature_is_byte_exact() {
    install_provider();
    let signing_input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
    let expected = "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
    let key = rfc8037_key();
    let sig = jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key.encoding_key(), Algorithm::EdDSA).unwrap();
    assert_eq!(sig, expected);
    let public = decoding_key(&key.public_jwk().unwrap(), SigningAlgorithm::EdDSA).unwrap();
    assert!(jsonwebtoken::crypto::verify(expected, signing_input.as_bytes(), &public, Algorithm::EdDSA).unwrap());
    assert!(!jsonwebtoken::crypto::verify(expected, b"eyJhbGciOiJFZERTQSJ9.tampered", &public, Algorithm::EdDSA).unwrap());
}

#[test]
fn rfc7638_rsa_thumbprint() {
    // RFC 7638 section 3.1.
    let jwk: Jwk = serde_json::from_value(serde_json::json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    })).unwrap();
    assert_eq!(jwk.thumbprint(ThumbprintHash::SHA256).unwrap(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
}

#[test]
fn every_algorithm_signs_and_verifies_through_the_provider() {
    install_provider();
    for alg in [SigningAlgorithm::EdDSA, SigningAlgorithm::ES256, SigningAlgorithm::RS256] {
        let key = PrivateKey::generate(alg, &OsEntropy::new()).unwrap();
        let jwk = key.public_jwk().unwrap();
        let public = decoding_key(&jwk, alg).unwrap();
        let jwt_alg = jwt_algorithm(alg);
        let sig = jsonwebtoken::crypto::sign(b"hello", &key.encoding_key(), jwt_alg).unwrap();
        assert!(jsonwebtoken::crypto::verify(&sig, b"hello", &public, jwt_alg).unwrap(), "{alg}");
        assert!(!jsonwebtoken::crypto::verify(&sig, b"hellO", &public, jwt_alg).unwrap(), "{alg}");
        // The JWK does not fit another algorithm's pin.
        for other in [SigningAlgorithm::EdDSA, SigningAlgorithm::ES256, SigningAlgorithm::RS256] {
            if other != alg {
                assert!(decoding_key(&jwk, other).is_err(), "{alg} key accepted as {other}");
            }
        }
    }
}

#[test]
fn hmac_is_refused_by_the_provider() {
    install_provider();
    let key = rfc8037_key();
    let public = decoding_key(&key.public_jwk().unwrap(), SigningAlgorithm::EdDSA).unwrap();
    // HS256 "signed" with the public key bytes must never verify.
    assert!(jsonwebtoken::crypto::verify("AAAA", b"x.y", &public, Algorithm::HS256).is_err());
    assert!(jsonwebtoken::crypto::sign(b"x.y", &EncodingKey::from_secret(b"secret"), Algorithm::HS256).is_err());
}

#[test]
fn ed25519_from_seed_is_deterministic() {
    let seeded = crate::random::SeededEntropy::new([9; 32]);
    let a = PrivateKey::generate(SigningAlgorithm::EdDSA, &seeded).unwrap();
    let seeded = crate::random::SeededEntropy::new([9; 32]);
    let b = PrivateKey::generate(SigningAlgorithm::EdDSA, &seeded).unwrap();
    assert_eq!(a.pkcs8(), b.pkcs8());
}

#[test]
fn garbage_private_key_is_an_error_not_a_panic() {
    assert!(PrivateKey::from_pkcs8(SigningAlgorithm::EdDSA, vec![1, 2, 3]).is_err());
    assert!(PrivateKey::from_pkcs8(SigningAlgorithm::RS256, vec![0x30, 0x00]).is_err());
    assert!(format!("{:?}", rfc8037_key()).contains("redacted"));
}

#[test]
fn rsa_public_key_der_parses() {
    assert_eq!(parse_rsa_public_key(&[0x30, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x03]), Some((vec![5], vec![3])));
    assert_eq!(parse_rsa_public_key(&[0x30, 0x06, 0x02, 0x01]), None);
    assert_eq!(parse_rsa_public_key(&[]), None);
}
