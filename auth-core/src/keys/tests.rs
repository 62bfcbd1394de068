// The key ring and the rotation plan are the issuance side.
#![cfg(feature = "server")]

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::spec::{SigningAlgorithm, Spec};
use crate::store::{KeyRecord, KeyState};
use crate::random::{OsEntropy, SeededEntropy};
use crate::tokens::{AccessTokenIssuer, AccessTokenVerifier, TokenSubject};

const DAY: i64 = 86_400;

fn policy() -> RotationPolicy {
    RotationPolicy { algorithm: SigningAlgorithm::EdDSA, rotate_every: 30 * DAY, publish_ahead: 2 * DAY, retire_after: DAY }
}

fn record(kid: &str, state: KeyState, activates_at: i64, deactivated_at: Option<i64>) -> KeyRecord {
    KeyRecord {
        kid: kid.into(),
        alg: SigningAlgorithm::EdDSA,
        state,
        created_at: 0,
        activates_at,
        deactivated_at,
        retired_at: None,
        public_jwk: String::new(),
        private_sealed: None,
        master_key_id: String::new(),
    }
}

#[test]
fn empty_ring_gets_an_active_key_at_once() {
    assert_eq!(plan_rotation(&[], &policy(), 100), vec![RotationStep::GenerateActive]);
}

#[test]
fn successor_is_published_ahead_then_activated() {
    let p = policy();
    let a = record("a", KeyState::Active, 0, None);
    assert!(plan_rotation(std::slice::from_ref(&a), &p, 28 * DAY - 1).is_empty());
    assert_eq!(
        plan_rotation(std::slice::from_ref(&a), &p, 28 * DAY),
        vec![RotationStep::GeneratePending { activates_at: 30 * DAY }]
    );
    let b = record("b", KeyState::Pending, 30 * DAY, None);
    assert!(plan_rotation(&[a.clone(), b.clone()], &p, 30 * DAY - 1).is_empty());
    assert_eq!(
        plan_rotation(&[a, b], &p, 30 * DAY),
        vec![RotationStep::Deactivate { kid: "a".into() }, RotationStep::Activate { kid: "b".into() }]
    );
}

#[test]
fn late_rotation_still_publishes_ahead() {
    // The ring was not rotated for 40 days: the successor still waits publish_ahead before signing.
    let a = record("a", KeyState::Active, 0, None);
    assert_eq!(plan_rotation(&[a], &policy(), 40 * DAY), vec![RotationStep::GeneratePending { activates_at: 42 * DAY }]);
}

#[test]
fn retiring_key_is_retired_after_retire_after() {
    let p = policy();
    let a = record("a", KeyState::Active, 30 * DAY, None);
    let old = record("old", KeyState::Retiring, 0, Some(30 * DAY));
    assert!(plan_rotation(&[a.clone(), old.clone()], &p, 31 * DAY - 1).is_empty());
    assert_eq!(plan_rotation(&[a, old], &p, 31 * DAY), vec![RotationStep::Retire { kid: "old".into() }]);
}

#[test]
fn algorithm_change_rotates_early() {
    let mut p = policy();
    p.algorithm = SigningAlgorithm::ES256;
    let a = record("a", KeyState::Active, 0, None);
    assert_eq!(plan_rotation(&[a], &p, DAY), vec![RotationStep::GeneratePending { activates_at: 3 * DAY }]);
}

#[test]
fn master_key_seals_and_refuses_the_wrong_key_or_context() {
    let (master, text) = MasterKey::generate(&OsEntropy::new()).unwrap();
    let sealed = master.seal("kid-1", b"private bytes", &OsEntropy::new()).unwrap();
    assert_eq!(master.open("kid-1", &sealed).unwrap().as_slice(), b"private bytes");
    assert!(matches!(master.open("kid-2", &sealed), Err(Error::MasterKey(_))));
    let (other, _) = MasterKey::generate(&OsEntropy::new()).unwrap();
    let err = other.open("kid-1", &sealed).unwrap_err();
    assert!(err.to_string().contains("wrong master key"), "{err}");
    assert_eq!(MasterKey::from_text(&text).unwrap().id(), master.id());
    assert!(MasterKey::from_text("too short").is_err());
    assert!(master.open("kid-1", &[]).is_err());
    assert!(master.open("kid-1", &[1, 2, 3]).is_err());
}

#[test]
fn master_key_file_is_created_private_and_read_back() {
    let dir = std::env::temp_dir().join(format!("auth-core-mk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("master.key");
    let _ = std::fs::remove_file(&path);
    let created = MasterKey::load_or_create_file(&path, &OsEntropy::new()).unwrap();
    let loaded = MasterKey::load_or_create_file(&path, &OsEntropy::new()).unwrap();
    assert_eq!(created.id(), loaded.id());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An in-memory model of the store's conditional apply, for the timeline property.
fn apply(ring: &mut Vec<(KeyRecord, PrivateKey)>, steps: &[RotationStep], now: i64, entropy: &SeededEntropy) {
    for step in steps {
        match step {
            RotationStep::GenerateActive | RotationStep::GeneratePending { .. } => {
                let key = PrivateKey::generate(SigningAlgorithm::EdDSA, entropy).unwrap();
                let jwk = key.public_jwk().unwrap();
                let (state, activates_at) = match step {
                    RotationStep::GeneratePending { activates_at } => (KeyState::Pending, *activates_at),
                    _ => (KeyState::Active, now),
                };
                let mut rec = record(jwk.common.key_id.as_deref().unwrap(), state, activates_at, None);
                rec.created_at = now;
                rec.public_jwk = serde_json::to_string(&jwk).unwrap();
                ring.push((rec, key));
            }
            RotationStep::Activate { kid } => set_state(ring, kid, KeyState::Active, |_| {}),
            RotationStep::Deactivate { kid } => set_state(ring, kid, KeyState::Retiring, |r| r.deactivated_at = Some(now)),
            RotationStep::Retire { kid } => set_state(ring, kid, KeyState::Retired, |r| r.retired_at = Some(now)),
        }
    }
}

fn set_state(ring: &mut [(KeyRecord, PrivateKey)], kid: &str, state: KeyState, edit: impl Fn(&mut KeyRecord)) {
    let (rec, _) = ring.iter_mut().find(|(r, _)| r.kid == kid).unwrap();
    rec.state = state;
    edit(rec);
}

fn spec_with(access: u64, leeway: u64, max_age: u64, ahead: u64, rotate: u64, retire: u64) -> Spec {
    use crate::spec::Seconds;
    let mut spec = Spec::parse(include_str!("../../../fixtures/specs/booking.toml")).unwrap();
    spec.tokens.access_ttl = Seconds(access);
    spec.tokens.leeway = Seconds(leeway);
    spec.keys.jwks_max_age = Seconds(max_age);
    spec.keys.publish_ahead = Seconds(ahead);
    spec.keys.rotate_every = Seconds(rotate);
    spec.keys.retire_after = Seconds(retire);
    spec.validate().unwrap();
    spec
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// For random valid policies and rotation timelines: after every rotation exactly one key is
    /// active, and every token verifies at every instant until `exp` + leeway with any JWKS
    /// fetched within the cache window before that instant.
    #[test]
    fn tokens_verify_until_exp_with_any_cached_jwks(
        access in 60u64..3_600, leeway in 0u64..120, max_age in 0u64..3_600,
        ahead_extra in 0u64..7_200, rotate_extra in 1u64..20_000, retire_extra in 0u64..3_600,
        gaps in proptest::collection::vec(1i64..9_000, 5..40),
        seed in any::<[u8; 32]>(),
    ) {
        let ahead = max_age + ahead_extra;
        let spec = spec_with(access, leeway, max_age, ahead, ahead + rotate_extra, access + leeway + retire_extra);
        let policy = RotationPolicy::from_spec(&spec);
        let issuer = AccessTokenIssuer::from_spec(&spec);
        let verifier = AccessTokenVerifier::from_spec(&spec);
        let entropy = SeededEntropy::new(seed);
        let mut ring: Vec<(KeyRecord, PrivateKey)> = Vec::new();
        // (fetched_at, jwks valid until the next rotation tick)
        let mut snapshots: Vec<(i64, KeySet)> = Vec::new();
        let mut tokens: Vec<(i64, String, i64)> = Vec::new();
        let mut now = 1_700_000_000i64;
        for gap in gaps {
            let steps = plan_rotation(&ring.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>(), &policy, now);
            apply(&mut ring, &steps, now, &entropy);
            let active: Vec<_> = ring.iter().filter(|(r, _)| r.state == KeyState::Active).collect();
            prop_assert_eq!(active.len(), 1, "exactly one active key at {}", now);
            let records: Vec<KeyRecord> = ring.iter().map(|(r, _)| r.clone()).collect();
            snapshots.push((now, KeySet::from_records(&records).unwrap()));
            let (rec, key) = active[0];
            let signer = ActiveKey { kid: rec.kid.clone(), encoding: Arc::new(key.encoding_key()), key: key.clone() };
            // Tokens signed at the tick and in the middle of the interval, by the active key.
            for iat in [now, now + gap / 2] {
                let subject = TokenSubject {
                    sub: "u".into(), client_id: "booking-web".into(), scope: String::new(), sid: None,
                    custom: BTreeMap::from([("tenant_id".to_owned(), serde_json::json!("t"))]),
                };
                let t = issuer.issue(&signer, subject, iat, "j".into()).unwrap();
                tokens.push((iat, t.token, t.claims.exp));
            }
            now += gap;
        }
        let leeway = leeway as i64;
        for (i, (fetched_at, jwks)) in snapshots.iter().enumerate() {
            let valid_until = snapshots.get(i + 1).map_or(i64::MAX, |(next, _)| *next);
            for (iat, token, exp) in &tokens {
                // Instants t in [iat, exp + leeway] at which a JWKS fetched at f in
                // [fetched_at, valid_until) is still fresh: f <= t <= f + max_age.
                let first = (*iat).max(*fetched_at);
                let last = (exp + leeway).min(valid_until.saturating_add(max_age as i64));
                if first > last {
                    continue;
                }
                for t in [first, last] {
                    prop_assert!(
                        verifier.verify(token, jwks, t).is_ok(),
                        "token iat={} exp={} failed at {} with JWKS fetched at {}: {:?}",
                        iat, exp, t, fetched_at, verifier.verify(token, jwks, t)
                    );
                }
            }
        }
    }
}
