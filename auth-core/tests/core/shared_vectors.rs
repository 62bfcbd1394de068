//! The shared test vectors in the repository's `vectors/` folder (the published RFC and
//! Wycheproof vectors are in `vectors.rs`): computed here by auth-core, committed, and replayed by
//! the generated TypeScript module's suite (`auth-gen/tests/typescript`), so both sides are held
//! to the same answers instead of to copies of them.
//!
//! Each test computes its file and compares it with the committed one; a difference fails with the
//! command that rewrites it (`AUTH_UPDATE_VECTORS=1`), to be reviewed like any other change of
//! behaviour.

use std::path::PathBuf;

use auth_core::keys::KeySet;
use auth_core::ratelimit::{Gcra, RateDecision};
use auth_core::spec::{RateLimitSpec, Seconds, Spec};
use auth_core::tokens::{AccessTokenVerifier, MAX_TOKEN_BYTES, bearer_token};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::jwk::JwkSet;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use serde_json::{Value, json};

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vectors")
}

/// Compares `value` with `vectors/<name>`, or writes it there when `AUTH_UPDATE_VECTORS=1`.
fn check_or_write(name: &str, value: &Value) {
    let path = vectors_dir().join(name);
    let text = serde_json::to_string_pretty(value).expect("vectors serialize") + "\n";
    if std::env::var("AUTH_UPDATE_VECTORS").as_deref() == Ok("1") {
        std::fs::create_dir_all(vectors_dir()).expect("create vectors/");
        std::fs::write(&path, &text).expect("write the vectors");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "vectors/{name} differs from what auth-core computes now; if the change is intended, run \
         `AUTH_UPDATE_VECTORS=1 cargo test --workspace --test core shared_vectors` and review the diff"
    );
}

fn decision(d: &RateDecision) -> Value {
    json!({
        "allowed": d.allowed,
        "limit": d.limit,
        "remaining": d.remaining,
        "reset_after_ms": d.reset_after_ms,
        "retry_after_ms": d.retry_after_ms,
        "window_secs": d.window_secs,
    })
}

/// One quota and a sequence of requests at the given instants (microseconds), each decided on the
/// TAT the previous ones left; every step records its input, the decision, the TAT to store and
/// what a peek before it would have said.
fn gcra_case(name: &str, burst: u32, per_secs: u64, start_tat_us: Option<i64>, nows_us: &[i64]) -> Value {
    let gcra = Gcra::new(RateLimitSpec { burst, per: Seconds(per_secs) });
    let mut tat = start_tat_us;
    let steps: Vec<Value> = nows_us
        .iter()
        .map(|&now_us| {
            let peek = gcra.peek(tat, now_us);
            let outcome = gcra.decide(tat, now_us);
            let step = json!({
                "stored_tat_us": tat,
                "now_us": now_us,
                "peek": decision(&peek),
                "decision": decision(&outcome.decision),
                "new_tat_us": outcome.new_tat_us,
            });
            if let Some(new_tat) = outcome.new_tat_us {
                tat = Some(new_tat);
            }
            step
        })
        .collect();
    json!({
        "name": name,
        "quota": { "burst": burst, "per_secs": per_secs },
        "emission_us": gcra.emission_interval_us(),
        "capacity_us": gcra.capacity_us(),
        "steps": steps,
    })
}

const T0: i64 = 1_700_000_000_000_000;

#[test]
fn gcra_vectors() {
    let ms = |n: i64| T0 + n * 1_000;
    let cases = vec![
        gcra_case("burst then refusal", 3, 60, None, &[ms(0), ms(0), ms(0), ms(1), ms(19_999), ms(20_000), ms(20_001)]),
        gcra_case("known sequence of 30 per minute", 30, 60, None, &[ms(0), ms(500), ms(4_000), ms(4_000), ms(60_000)]),
        gcra_case("T rounded down to a whole microsecond", 7, 60, None, &[ms(0), ms(1), ms(8_571), ms(8_572)]),
        gcra_case("zero quota treated as one per second", 0, 0, None, &[ms(0), ms(0), ms(999), ms(1_000)]),
        gcra_case("one per window", 1, 10, None, &[ms(0), ms(9_999), ms(10_000), ms(10_000)]),
        gcra_case("admitted exactly at the boundary", 2, 2, None, &[ms(0), ms(0), ms(0), ms(1_000), ms(1_000), ms(2_000)]),
        gcra_case("stored TAT far in the past is a full bucket", 5, 60, Some(ms(-3_600_000)), &[ms(0), ms(0)]),
        gcra_case("stored TAT at the capacity refuses", 4, 40, Some(ms(40_000)), &[ms(0), ms(9_999), ms(10_000)]),
        gcra_case("microsecond instants", 3, 1, None, &[T0, T0 + 1, T0 + 2, T0 + 333_333, T0 + 333_334]),
        gcra_case("large burst and window", 1_000_000, 86_400, None, &[ms(0), ms(0), ms(86)]),
    ];
    check_or_write("gcra.json", &json!({
        "description": "auth-core's Gcra::decide and Gcra::peek (auth-core/src/ratelimit/mod.rs): each step is decided on the TAT the previous admitted step stored",
        "cases": cases,
    }));
}

#[test]
fn bearer_vectors() {
    // Header values are written one character per byte (Latin-1), as Node hands them to JavaScript.
    let inputs: &[Option<&str>] = &[
        Some("Bearer abc.def.ghi"),
        Some("bearer abc"),
        Some("BEARER abc"),
        Some("bEaReR  abc "),
        Some("Bearer \tabc\t"),
        None,
        Some(""),
        Some("Basic abc"),
        Some("Bearer"),
        Some("Bearer "),
        Some("Bearer  "),
        Some("Bearerabc"),
        Some("Bearer ab\u{e9}"),
        Some("Bearer a\u{7f}b"),
        Some("Bearer a\u{0}b"),
        Some("Bearer a\nb"),
        Some("Bearer a b"),
        Some("DPoP abc"),
        Some(" Bearer abc"),
    ];
    let cases: Vec<Value> = inputs
        .iter()
        .map(|input| {
            let bytes: Option<Vec<u8>> =
                input.map(|s| s.chars().map(|c| u8::try_from(u32::from(c)).expect("one byte per character")).collect());
            match bearer_token(bytes.as_deref()) {
                Ok(token) => json!({ "authorization": input, "token": token }),
                Err(code) => json!({ "authorization": input, "code": code.as_str() }),
            }
        })
        .collect();
    check_or_write("bearer.json", &json!({
        "description": "auth-core's tokens::bearer_token: an Authorization header value (null: absent; one character per byte) and the token read from it or the code of the refusal",
        "cases": cases,
    }));
}

/// The instant the verifier vectors are checked at (Unix seconds).
const VERIFY_AT: i64 = 1_750_000_100;

/// A token of `header` and `claims`, signed by `key` (Ed25519 signs deterministically, so the
/// vectors are the same on every run).
fn signed(key: &Ed25519KeyPair, header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
    let signature = B64.encode(key.sign(input.as_bytes()).as_ref());
    format!("{input}.{signature}")
}

#[test]
fn verifier_vectors() {
    let spec = Spec::parse(include_str!("../../../fixtures/specs/booking.toml")).expect("booking spec");
    let key = Ed25519KeyPair::from_seed_unchecked(&[7; 32]).expect("a fixed Ed25519 seed");
    let kid = "vectors-ed25519";
    let jwks = json!({ "keys": [{
        "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": kid,
        "x": B64.encode(key.public_key().as_ref()),
    }]});
    let header = json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": kid });
    let claims = json!({
        "iss": spec.issuer, "sub": "user-1", "aud": "booking-api", "client_id": "booking-web",
        "scope": "bookings:read", "jti": "j-1", "iat": VERIFY_AT - 100, "exp": VERIFY_AT + 800,
        "sid": "s-1", "tenant_id": "hotel-7",
    });
    let with = |base: &Value, name: &str, value: Value| {
        let mut changed = base.clone();
        changed[name] = value;
        changed
    };
    let without = |base: &Value, name: &str| {
        let mut changed = base.clone();
        changed.as_object_mut().expect("an object").remove(name);
        changed
    };
    let good = signed(&key, &header, &claims);
    let mut bad_signature = good.clone();
    bad_signature.replace_range(good.len() - 4.., "AAAA");
    let leeway = i64::try_from(spec.tokens.leeway.0).expect("a small leeway");
    let cases: Vec<(&str, String)> = vec![
        ("a good token", good.clone()),
        ("a good token within the leeway after exp", signed(&key, &header, &with(&claims, "exp", json!(VERIFY_AT - leeway)))),
        ("not three segments", "abc.def".to_owned()),
        ("a header that is not JSON", format!("{}.{}", B64.encode("not json"), good.split_once('.').expect("dots").1)),
        ("larger than the limit", format!("{}{}", "a".repeat(MAX_TOKEN_BYTES), ".b.c")),
        ("alg none", signed(&key, &with(&header, "alg", json!("none")), &claims)),
        ("alg HS256", signed(&key, &with(&header, "alg", json!("HS256")), &claims)),
        ("alg ES256 on an EdDSA key", signed(&key, &with(&header, "alg", json!("ES256")), &claims)),
        ("an unknown kid", signed(&key, &with(&header, "kid", json!("no-such-key")), &claims)),
        ("no kid", signed(&key, &without(&header, "kid"), &claims)),
        ("a signature that does not verify", bad_signature),
        ("typ JWT", signed(&key, &with(&header, "typ", json!("JWT")), &claims)),
        ("no exp", signed(&key, &header, &without(&claims, "exp"))),
        ("no tenant_id (required by the spec)", signed(&key, &header, &without(&claims, "tenant_id"))),
        ("exp as a string", signed(&key, &header, &with(&claims, "exp", json!("soon")))),
        ("tenant_id as a number", signed(&key, &header, &with(&claims, "tenant_id", json!(7)))),
        ("expired beyond the leeway", signed(&key, &header, &with(&claims, "exp", json!(VERIFY_AT - leeway - 1)))),
        ("nbf beyond the leeway", signed(&key, &header, &with(&claims, "nbf", json!(VERIFY_AT + leeway + 1)))),
        ("iat beyond the leeway", signed(&key, &header, &with(&claims, "iat", json!(VERIFY_AT + leeway + 1)))),
        ("another issuer", signed(&key, &header, &with(&claims, "iss", json!("https://evil.example")))),
        ("another audience", signed(&key, &header, &with(&claims, "aud", json!("other-api")))),
        ("an audience list naming this one", signed(&key, &header, &with(&claims, "aud", json!(["other-api", "booking-api"])))),
    ];
    let verifier = AccessTokenVerifier::from_spec(&spec);
    let keys = KeySet::from_jwks(&serde_json::from_value::<JwkSet>(jwks.clone()).expect("a JWKS"));
    let cases: Vec<Value> = cases
        .into_iter()
        .map(|(name, token)| {
            let verdict = match verifier.verify(&token, &keys, VERIFY_AT) {
                Ok(_) => "ok",
                Err(e) => e.code().as_str(),
            };
            json!({ "name": name, "token": token, "verdict": verdict })
        })
        .collect();
    let verdicts: std::collections::BTreeSet<&str> = cases.iter().filter_map(|c| c["verdict"].as_str()).collect();
    for code in auth_core::error::TokenError::ALL.iter().map(|e| e.code().as_str()) {
        // A retired key is known only to the issuer's own key ring, never to a JWKS.
        assert!(verdicts.contains(code) || code == "token.key_retired", "no vector gives {code}");
    }
    check_or_write("verifier.json", &json!({
        "description": "auth-core's AccessTokenVerifier for fixtures/specs/booking.toml: each token checked against the JWKS at `now` (Unix seconds), and the verdict, `ok` or the code of the rejection",
        "now": VERIFY_AT,
        "jwks": jwks,
        "cases": cases,
    }));
}
