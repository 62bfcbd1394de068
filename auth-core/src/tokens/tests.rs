use std::sync::Arc;

use jsonwebtoken::jwk::JwkSet;

use super::*;
use crate::crypto::PrivateKey;
use crate::random::OsEntropy;

const NOW: i64 = 1_750_000_000;

fn booking() -> Spec {
    Spec::parse(include_str!("../../../fixtures/specs/booking.toml")).unwrap()
}

fn active(alg: SigningAlgorithm) -> (ActiveKey, KeySet) {
    let key = PrivateKey::generate(alg, &OsEntropy::new()).unwrap();
    let jwk = key.public_jwk().unwrap();
    let kid = jwk.common.key_id.clone().unwrap();
    let set = KeySet::from_jwks(&JwkSet { keys: vec![jwk] });
    (ActiveKey { kid, encoding: Arc::new(key.encoding_key()), key }, set)
}

fn subject() -> TokenSubject {
    let mut custom = BTreeMap::new();
    custom.insert("tenant_id".to_owned(), Value::String("hotel-7".into()));
    TokenSubject {
        sub: "user-1".into(),
        client_id: "booking-web".into(),
        scope: "bookings:read bookings:write".into(),
        sid: Some("session-1".into()),
        custom,
    }
}

#[test]
fn issued_tokens_verify_for_every_algorithm() {
    let spec = booking();
    for alg in [SigningAlgorithm::EdDSA, SigningAlgorithm::ES256, SigningAlgorithm::RS256] {
        let (key, set) = active(alg);
        let issued = AccessTokenIssuer::from_spec(&spec).issue(&key, subject(), NOW, "jti-1".into()).unwrap();
        assert_eq!(issued.expires_in, 900);
        let claims = AccessTokenVerifier::from_spec(&spec).verify(&issued.token, &set, NOW + 10).unwrap();
        assert_eq!(claims, issued.claims);
        assert!(claims.has_scope("bookings:write"));
        assert!(!claims.has_scope("bookings"));
    }
}

#[test]
fn token_layout_follows_rfc9068() {
    let spec = booking();
    let (key, _) = active(SigningAlgorithm::EdDSA);
    let issued = AccessTokenIssuer::from_spec(&spec).issue(&key, subject(), NOW, "jti-1".into()).unwrap();
    let mut parts = issued.token.split('.');
    let header: Value = serde_json::from_slice(&B64.decode(parts.next().unwrap()).unwrap()).unwrap();
    assert_eq!(header, serde_json::json!({ "typ": "at+jwt", "alg": "EdDSA", "kid": key.kid }));
    let claims: Value = serde_json::from_slice(&B64.decode(parts.next().unwrap()).unwrap()).unwrap();
    assert_eq!(
        claims,
        serde_json::json!({
            "iss": "http://127.0.0.1:8080", "sub": "user-1", "aud": "booking-api",
            "exp": NOW + 900, "iat": NOW, "jti": "jti-1", "client_id": "booking-web",
            "scope": "bookings:read bookings:write", "sid": "session-1", "tenant_id": "hotel-7"
        })
    );
}

#[test]
fn expiry_and_leeway_are_exact() {
    let spec = booking();
    let (key, set) = active(SigningAlgorithm::EdDSA);
    let token = AccessTokenIssuer::from_spec(&spec).issue(&key, subject(), NOW, "j".into()).unwrap().token;
    let verifier = AccessTokenVerifier::from_spec(&spec);
    assert!(verifier.verify(&token, &set, NOW + 900 + 30).is_ok());
    assert_eq!(verifier.verify(&token, &set, NOW + 900 + 31), Err(TokenError::Expired));
    assert!(verifier.verify(&token, &set, NOW - 30).is_ok());
    assert_eq!(verifier.verify(&token, &set, NOW - 31), Err(TokenError::NotYetValid));
}

#[test]
fn a_key_of_another_issuer_is_unknown() {
    let spec = booking();
    let (key, _) = active(SigningAlgorithm::EdDSA);
    let (_, other_set) = active(SigningAlgorithm::EdDSA);
    let token = AccessTokenIssuer::from_spec(&spec).issue(&key, subject(), NOW, "j".into()).unwrap().token;
    assert_eq!(AccessTokenVerifier::from_spec(&spec).verify(&token, &other_set, NOW), Err(TokenError::UnknownKey));
}
