//! auth-core benchmarks (criterion). Run with `cargo bench -p auth-core`; results and how to read
//! them are in `docs/benchmarks.md`.
//!
//! Tokens: for each signing algorithm, issuing an access token is measured against a bare ring
//! signature of the same signing input with an already-parsed key pair, and verifying one against
//! a bare ring verification of the same bytes. The difference is what the JWT layer costs (JSON,
//! base64, key lookup, claim checks); the target is at most 10% over the raw operation.

#![allow(clippy::panic, reason = "a benchmark whose fixtures cannot be built has nothing to measure")]
#![allow(missing_docs, reason = "criterion_group! generates an undocumented public function")]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use auth_core::clock::SystemClock;
use auth_core::crypto::PrivateKey;
use auth_core::keys::{ActiveKey, KeySet};
use auth_core::random::OsEntropy;
use auth_core::ratelimit::{MemoryLimiter, ScopeLimiter};
use auth_core::refresh::RefreshFamilies;
use auth_core::spec::{RateLimitSpec, Seconds, SigningAlgorithm, Spec};
use auth_core::store::{SqlStore, Store};
use auth_core::tokens::{AccessTokenIssuer, AccessTokenVerifier, TokenSubject};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use jsonwebtoken::jwk::JwkSet;
use ring::rand::SystemRandom;
use ring::signature::{self as ring_sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey};

const NOW: i64 = 1_750_000_000;

fn spec() -> Spec {
    // The booking spec: one audience, a required string custom claim, 30 s leeway.
    match Spec::parse(include_str!("../../fixtures/specs/booking.toml")) {
        Ok(spec) => spec,
        Err(e) => panic!("booking spec: {e}"),
    }
}

fn subject() -> TokenSubject {
    let mut custom = BTreeMap::new();
    custom.insert("tenant_id".to_owned(), serde_json::Value::String("hotel-7".into()));
    TokenSubject {
        sub: "user-3f9c2a".into(),
        client_id: "booking-web".into(),
        scope: "bookings:read bookings:write".into(),
        sid: Some("session-8d1e4b".into()),
        custom,
    }
}

/// A parsed ring key pair, signing the way the provider does.
enum RawSigner {
    Ed(Ed25519KeyPair),
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

impl RawSigner {
    fn parse(key: &PrivateKey, rng: &SystemRandom) -> Self {
        let der = key.pkcs8();
        let parsed = match key.algorithm() {
            SigningAlgorithm::EdDSA => Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map(Self::Ed).ok(),
            SigningAlgorithm::ES256 => {
                EcdsaKeyPair::from_pkcs8(&ring_sig::ECDSA_P256_SHA256_FIXED_SIGNING, der, rng).map(Self::Ec).ok()
            }
            SigningAlgorithm::RS256 => RsaKeyPair::from_pkcs8(der).map(Self::Rsa).ok(),
        };
        parsed.unwrap_or_else(|| panic!("{} key does not parse", key.algorithm()))
    }

    fn sign(&self, msg: &[u8], rng: &SystemRandom) -> Vec<u8> {
        match self {
            Self::Ed(k) => k.sign(msg).as_ref().to_vec(),
            Self::Ec(k) => k.sign(rng, msg).map(|s| s.as_ref().to_vec()).unwrap_or_default(),
            Self::Rsa(k) => {
                let mut sig = vec![0u8; k.public().modulus_len()];
                let _ = k.sign(&ring_sig::RSA_PKCS1_SHA256, rng, msg, &mut sig);
                sig
            }
        }
    }

    fn verify_with(&self) -> (&'static dyn ring_sig::VerificationAlgorithm, Vec<u8>) {
        match self {
            Self::Ed(k) => (&ring_sig::ED25519, k.public_key().as_ref().to_vec()),
            Self::Ec(k) => (&ring_sig::ECDSA_P256_SHA256_FIXED, k.public_key().as_ref().to_vec()),
            Self::Rsa(k) => (&ring_sig::RSA_PKCS1_2048_8192_SHA256, k.public_key().as_ref().to_vec()),
        }
    }
}

fn tokens(c: &mut Criterion) {
    let spec = spec();
    let issuer = AccessTokenIssuer::from_spec(&spec);
    let verifier = AccessTokenVerifier::from_spec(&spec);
    let rng = SystemRandom::new();
    for alg in [SigningAlgorithm::EdDSA, SigningAlgorithm::ES256, SigningAlgorithm::RS256] {
        let key = match PrivateKey::generate(alg, &OsEntropy::new()) {
            Ok(key) => key,
            Err(e) => panic!("{alg} key: {e}"),
        };
        let jwk = match key.public_jwk() {
            Ok(jwk) => jwk,
            Err(e) => panic!("{alg} JWK: {e}"),
        };
        let kid = jwk.common.key_id.clone().unwrap_or_default();
        let keys = KeySet::from_jwks(&JwkSet { keys: vec![jwk] });
        let active = ActiveKey { kid, encoding: Arc::new(key.encoding_key()), key: key.clone() };
        let token = match issuer.issue(&active, subject(), NOW, "jti-5b0c7e91".into()) {
            Ok(issued) => issued.token,
            Err(e) => panic!("{alg} issue: {e}"),
        };
        assert!(verifier.verify(&token, &keys, NOW + 10).is_ok(), "{alg} token verifies");
        let (input, _) = token.rsplit_once('.').unwrap_or_default();
        let raw = RawSigner::parse(&key, &rng);
        let signature = raw.sign(input.as_bytes(), &rng);
        let (verification_alg, public_key) = raw.verify_with();
        let public_key = UnparsedPublicKey::new(verification_alg, public_key);
        assert!(public_key.verify(input.as_bytes(), &signature).is_ok(), "{alg} raw signature verifies");

        let mut group = c.benchmark_group(alg.as_str());
        group.bench_function("issue", |b| {
            b.iter_batched(
                subject,
                |subject| issuer.issue(&active, subject, black_box(NOW), "jti-5b0c7e91".into()),
                BatchSize::SmallInput,
            );
        });
        group.bench_function("ring_sign", |b| b.iter(|| raw.sign(black_box(input.as_bytes()), &rng)));
        group.bench_function("verify", |b| b.iter(|| verifier.verify(black_box(&token), &keys, NOW + 10)));
        group.bench_function("ring_verify", |b| {
            b.iter(|| public_key.verify(black_box(input.as_bytes()), black_box(&signature)));
        });
        group.finish();
    }
}

/// One in-memory limiter check with 10,000 live keys (subjects) cycling: the per-request cost of a
/// scope limit on a busy resource server. The clock moves 1 ms every 20 checks, so each key is
/// seen once per emission interval (500 ms for 120/min) and stays just below full: live state,
/// never evicted, never exhausted.
fn limiter(c: &mut Criterion) {
    const KEYS: usize = 10_000;
    let limiter = MemoryLimiter::new();
    let quota = RateLimitSpec { burst: 120, per: Seconds(60) };
    let keys: Vec<String> = (0..KEYS).map(|i| ScopeLimiter::key("bookings:read", &format!("user-{i}"))).collect();
    let mut i = 0usize;
    let mut now = NOW * 1000;
    // Fill all keys first, so every measured check finds live state.
    for key in &keys {
        limiter.check_now(key, quota, now);
    }
    c.bench_function("limiter/check_10k_keys", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            if i.is_multiple_of(20) {
                now += 1;
            }
            black_box(limiter.check_now(&keys[i], quota, now))
        });
    });
    assert!(limiter.len() >= KEYS / 2, "the keys stay live during the run");
}

/// One refresh-token rotation on SQLite (a file database in WAL mode): lookup, conditional
/// update, successor insert, audit event.
fn refresh_rotation(c: &mut Criterion) {
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => panic!("tokio runtime: {e}"),
    };
    let dir = std::env::temp_dir().join(format!("auth-core-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let url = format!("sqlite://{}?mode=rwc", dir.join("bench.db").display());
    let (families, first) = runtime.block_on(async {
        let store = match SqlStore::connect(&url).await {
            Ok(store) => store,
            Err(e) => panic!("open {url}: {e}"),
        };
        if let Err(e) = store.migrate().await {
            panic!("migrate: {e}");
        }
        let store: Arc<dyn Store> = Arc::new(store);
        let families = RefreshFamilies::new(store, Arc::new(SystemClock), Arc::new(OsEntropy::new()), spec().tokens);
        match families.start(None, "booking-web", "bookings:read").await {
            Ok((_, token)) => (families, token),
            Err(e) => panic!("start a family: {e}"),
        }
    });
    let mut token = first;
    c.bench_function("refresh/rotate_sqlite", |b| {
        b.iter(|| {
            let rotation = runtime.block_on(families.rotate(&token, "booking-web"));
            match rotation {
                Ok(r) => token = r.refresh_token,
                Err(e) => panic!("rotate: {e}"),
            }
        });
    });
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, tokens, limiter, refresh_rotation);
criterion_main!(benches);
