use crate::code::Code;
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

mod one_pass_claims {
    //! The payload is decoded in one pass ([`RawClaims`]); the former decoder (a JSON map, then
    //! `serde_json::from_value` into [`AccessClaims`]) is kept here as the oracle it must match,
    //! code for code, on any payload.

    use proptest::prelude::*;
    use serde_json::{Map, json};

    use super::*;

    fn two_pass(verifier: &AccessTokenVerifier, mut raw: Map<String, Value>, now: i64) -> Result<AccessClaims, TokenError> {
        for name in ["iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope"] {
            if !raw.contains_key(name) {
                return Err(TokenError::MissingClaim);
            }
        }
        let nbf = match raw.remove("nbf") {
            None => None,
            Some(v) => Some(v.as_i64().ok_or(TokenError::InvalidClaim)?),
        };
        let user_token = raw.contains_key("sid");
        for (name, spec) in &verifier.claims {
            match raw.get(name) {
                None if spec.required && user_token => return Err(TokenError::MissingClaim),
                Some(v) if !spec.kind.matches(v) => return Err(TokenError::InvalidClaim),
                _ => {}
            }
        }
        let claims: AccessClaims = serde_json::from_value(Value::Object(raw)).map_err(|_| TokenError::InvalidClaim)?;
        if now > claims.exp.saturating_add(verifier.leeway) {
            return Err(TokenError::Expired);
        }
        let not_before = nbf.unwrap_or(claims.iat).max(claims.iat);
        if not_before > now.saturating_add(verifier.leeway) {
            return Err(TokenError::NotYetValid);
        }
        if claims.iss != verifier.issuer {
            return Err(TokenError::WrongIssuer);
        }
        if !claims.aud.0.iter().any(|a| verifier.audiences.contains(a)) {
            return Err(TokenError::WrongAudience);
        }
        Ok(claims)
    }

    fn one_pass(verifier: &AccessTokenVerifier, payload: &[u8], now: i64) -> Result<AccessClaims, TokenError> {
        let raw: RawClaims = serde_json::from_slice(payload).map_err(|_| TokenError::Malformed)?;
        verifier.check_claims(raw, now).map(|(claims, _)| claims)
    }

    fn oracle(verifier: &AccessTokenVerifier, payload: &[u8], now: i64) -> Result<AccessClaims, TokenError> {
        let raw: Map<String, Value> = serde_json::from_slice(payload).map_err(|_| TokenError::Malformed)?;
        two_pass(verifier, raw, now)
    }

    /// Values of every JSON type, and of the right type for each claim most of the time.
    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(json!(null)),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (NOW - 100..NOW + 2000).prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            prop::sample::select(vec!["http://127.0.0.1:8080", "booking-api", "hotel-7", "other", ""])
                .prop_map(Value::from),
        ];
        leaf.prop_recursive(2, 8, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(prop::sample::select(vec!["booking-api", "x"]), 0..3)
                    .prop_map(|v| json!(v)),
                prop::collection::btree_map("[a-z]{1,3}", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn payload() -> impl Strategy<Value = Map<String, Value>> {
        let names = vec!["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "scope", "sid", "tenant_id", "extra"];
        prop::collection::vec((prop::sample::select(names), any::<bool>(), value()), 0..14).prop_map(|members| {
            let mut base = json!({
                "iss": "http://127.0.0.1:8080", "sub": "u", "aud": "booking-api", "exp": NOW + 900, "iat": NOW,
                "jti": "j", "client_id": "c", "scope": "s", "tenant_id": "t"
            });
            let map = base.as_object_mut().map(std::mem::take).unwrap_or_default();
            members.into_iter().fold(map, |mut map, (name, drop, value)| {
                if drop {
                    map.remove(name);
                } else {
                    map.insert(name.to_owned(), value);
                }
                map
            })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn one_pass_decoding_matches_the_two_pass_oracle(payload in payload(), dt in -100i64..1000) {
            let verifier = AccessTokenVerifier::from_spec(&booking());
            let bytes = serde_json::to_vec(&payload).unwrap();
            prop_assert_eq!(one_pass(&verifier, &bytes, NOW + dt), oracle(&verifier, &bytes, NOW + dt));
        }
    }

    #[test]
    fn edge_payloads_match_the_oracle() {
        let verifier = AccessTokenVerifier::from_spec(&booking());
        let good = r#""iss":"http://127.0.0.1:8080","sub":"u","aud":"booking-api","iat":1750000000,"jti":"j","client_id":"c","scope":"s","tenant_id":"t""#;
        for payload in [
            format!(r#"{{{good},"exp":1750000900}}"#),
            // Duplicates: the last member counts, either way round.
            format!(r#"{{{good},"exp":"soon","exp":1750000900}}"#),
            format!(r#"{{{good},"exp":1750000900,"exp":"soon"}}"#),
            // Escaped names are the same names.
            format!(r#"{{{good},"\u0065xp":1750000900}}"#),
            format!(r#"{{{good},"exp":1750000900.0}}"#),
            format!(r#"{{{good},"exp":9223372036854775808}}"#),
            format!(r#"{{{good},"exp":-9223372036854775808}}"#),
            format!(r#"{{{good},"exp":1e3}}"#),
            format!(r#"{{{good},"exp":1750000900,"aud":[]}}"#),
            format!(r#"{{{good},"exp":1750000900,"aud":["x",["booking-api"]]}}"#),
            format!(r#"{{{good},"exp":1750000900,"sid":null}}"#),
            format!(r#"{{{good},"exp":1750000900,"sid":{{"a":[1,{{}}]}}}}"#),
            format!(r#"{{{good},"exp":1750000900}} trailing"#),
            format!(r#"[{{{good},"exp":1750000900}}]"#),
            "null".to_owned(),
            "\"claims\"".to_owned(),
            "{".to_owned(),
            String::new(),
        ] {
            assert_eq!(one_pass(&verifier, payload.as_bytes(), NOW), oracle(&verifier, payload.as_bytes(), NOW), "{payload}");
        }
        assert!(one_pass(&verifier, format!(r#"{{{good},"exp":1750000900}}"#).as_bytes(), NOW).is_ok());
    }
}

#[test]
fn bearer_token_reads_the_authorization_header_as_the_server_does() {
    use super::bearer_token;
    assert_eq!(bearer_token(Some(b"Bearer abc.def.ghi")), Ok("abc.def.ghi"));
    assert_eq!(bearer_token(Some(b"bEaReR  abc ")), Ok("abc"));
    assert_eq!(bearer_token(None), Err(Code::TokenMissing));
    assert_eq!(bearer_token(Some(b"Basic abc")), Err(Code::TokenMissing));
    assert_eq!(bearer_token(Some(b"Bearer  ")), Err(Code::TokenMissing));
    assert_eq!(bearer_token(Some(b"Bearer")), Err(Code::TokenMalformed));
    assert_eq!(bearer_token(Some("Bearer ab\u{e9}".as_bytes())), Err(Code::TokenMalformed));
    assert_eq!(bearer_token(Some(b"Bearer a\x7fb")), Err(Code::TokenMalformed));
}

#[test]
fn cached_verification_answers_as_a_full_one_at_every_instant() {
    let spec = booking();
    let (key, set) = active(SigningAlgorithm::EdDSA);
    let (_, other_set) = active(SigningAlgorithm::EdDSA);
    let issued = AccessTokenIssuer::from_spec(&spec).issue(&key, subject(), NOW, "jti-1".into()).unwrap();
    let full = AccessTokenVerifier::from_spec(&spec);
    let cached = VerifiedTokens::new(AccessTokenVerifier::from_spec(&spec), 16);
    let leeway = spec.tokens.leeway.as_i64();
    let ttl = issued.expires_in;
    // Before the token was valid (nothing cached yet: a failure is not kept), then inside its
    // window (cached from the first success on), then around its expiry.
    let instants = [NOW - leeway - 1, NOW - leeway, NOW, NOW + 1, NOW + ttl + leeway, NOW + ttl + leeway + 1, NOW];
    for (i, now) in instants.into_iter().enumerate() {
        assert_eq!(cached.verify(&issued.token, &set, now), full.verify(&issued.token, &set, now), "at {now}");
        assert_eq!(cached.len(), usize::from(i > 0), "after the check at {now}");
    }
    assert_eq!(full.verify(&issued.token, &set, NOW - leeway - 1), Err(TokenError::NotYetValid));
    assert_eq!(full.verify(&issued.token, &set, NOW + ttl + leeway + 1), Err(TokenError::Expired));

    // A key set without the signing key: the cached token is refused as a full check refuses it.
    assert_eq!(cached.verify(&issued.token, &other_set, NOW), Err(TokenError::UnknownKey));
    assert_eq!(cached.verify(&issued.token, &set, NOW), Ok(issued.claims.clone()));

    // Refusals are not cached, and another token never answers for this one.
    let mut tampered = issued.token.clone();
    tampered.insert(tampered.rfind('.').unwrap() - 1, 'A');
    assert_eq!(cached.verify(&tampered, &set, NOW), full.verify(&tampered, &set, NOW));
    assert!(cached.verify(&tampered, &set, NOW).is_err());
    assert_eq!(cached.len(), 1);
}

#[test]
fn the_verified_token_cache_stays_bounded() {
    let spec = booking();
    let (key, set) = active(SigningAlgorithm::EdDSA);
    let issuer = AccessTokenIssuer::from_spec(&spec);
    let cached = VerifiedTokens::new(AccessTokenVerifier::from_spec(&spec), 8);
    for i in 0..64 {
        let issued = issuer.issue(&key, subject(), NOW, format!("jti-{i}")).unwrap();
        assert_eq!(cached.verify(&issued.token, &set, NOW), Ok(issued.claims));
    }
    assert!(cached.len() <= 8, "{} tokens kept", cached.len());
}
