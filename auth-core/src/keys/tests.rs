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

const EDDSA: SigningAlgorithm = SigningAlgorithm::EdDSA;
const ES256: SigningAlgorithm = SigningAlgorithm::ES256;
const RS256: SigningAlgorithm = SigningAlgorithm::RS256;

fn policy() -> RotationPolicy {
    RotationPolicy { primary: EDDSA, extra: Vec::new(), rotate_every: 30 * DAY, publish_ahead: 2 * DAY, retire_after: DAY }
}

/// EdDSA access tokens and RS256 ID tokens.
fn two_chains() -> RotationPolicy {
    policy().with_extra([RS256])
}

fn record(kid: &str, state: KeyState, activates_at: i64, deactivated_at: Option<i64>) -> KeyRecord {
    record_of(EDDSA, kid, state, activates_at, deactivated_at)
}

fn record_of(alg: SigningAlgorithm, kid: &str, state: KeyState, activates_at: i64, deactivated_at: Option<i64>) -> KeyRecord {
    KeyRecord {
        kid: kid.into(),
        alg,
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
    assert_eq!(plan_rotation(&[], &policy(), 100), vec![RotationStep::GenerateActive { alg: EDDSA }]);
}

#[test]
fn successor_is_published_ahead_then_activated() {
    let p = policy();
    let a = record("a", KeyState::Active, 0, None);
    assert!(plan_rotation(std::slice::from_ref(&a), &p, 28 * DAY - 1).is_empty());
    assert_eq!(
        plan_rotation(std::slice::from_ref(&a), &p, 28 * DAY),
        vec![RotationStep::GeneratePending { alg: EDDSA, activates_at: 30 * DAY }]
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
    assert_eq!(plan_rotation(&[a], &policy(), 40 * DAY), vec![RotationStep::GeneratePending { alg: EDDSA, activates_at: 42 * DAY }]);
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
    // The new primary chain is published ahead; the old key signs access tokens meanwhile, then
    // steps down in the plan that activates its successor, and retires like any predecessor.
    let mut p = policy();
    p.primary = ES256;
    let a = record("a", KeyState::Active, 0, None);
    assert_eq!(plan_rotation(std::slice::from_ref(&a), &p, DAY), vec![RotationStep::GeneratePending { alg: ES256, activates_at: 3 * DAY }]);
    let b = record_of(ES256, "b", KeyState::Pending, 3 * DAY, None);
    let ring = [a.clone(), b.clone()];
    assert!(plan_rotation(&ring, &p, 3 * DAY - 1).is_empty(), "the old key signs until the new one may");
    assert_eq!(rotation::access_signer(&ring, p.primary).map(|k| k.kid.as_str()), Some("a"));
    assert_eq!(
        plan_rotation(&ring, &p, 3 * DAY),
        vec![RotationStep::Activate { kid: "b".into() }, RotationStep::Deactivate { kid: "a".into() }]
    );
    let a = record("a", KeyState::Retiring, 0, Some(3 * DAY));
    let b = record_of(ES256, "b", KeyState::Active, 3 * DAY, None);
    assert!(plan_rotation(&[a.clone(), b.clone()], &p, 4 * DAY - 1).is_empty());
    assert_eq!(plan_rotation(&[a, b], &p, 4 * DAY), vec![RotationStep::Retire { kid: "a".into() }]);
}

#[test]
fn one_chain_per_algorithm_is_created_and_rotated() {
    let p = two_chains();
    assert_eq!(
        plan_rotation(&[], &p, 0),
        vec![RotationStep::GenerateActive { alg: EDDSA }, RotationStep::GenerateActive { alg: RS256 }],
        "a new ring signs in every chain at once"
    );
    // Each chain on its own schedule: the RS256 chain started a day later.
    let a = record("a", KeyState::Active, 0, None);
    let r = record_of(RS256, "r", KeyState::Active, DAY, None);
    assert!(plan_rotation(&[a.clone(), r.clone()], &p, 28 * DAY - 1).is_empty());
    assert_eq!(
        plan_rotation(&[a.clone(), r.clone()], &p, 28 * DAY),
        vec![RotationStep::GeneratePending { alg: EDDSA, activates_at: 30 * DAY }]
    );
    let b = record("b", KeyState::Pending, 30 * DAY, None);
    assert_eq!(
        plan_rotation(&[a.clone(), r.clone(), b.clone()], &p, 29 * DAY),
        vec![RotationStep::GeneratePending { alg: RS256, activates_at: 31 * DAY }]
    );
    let s = record_of(RS256, "s", KeyState::Pending, 31 * DAY, None);
    let ring = [a, r, b, s];
    assert_eq!(
        plan_rotation(&ring, &p, 30 * DAY),
        vec![RotationStep::Deactivate { kid: "a".into() }, RotationStep::Activate { kid: "b".into() }]
    );
    assert_eq!(
        plan_rotation(&ring, &p, 31 * DAY),
        vec![
            RotationStep::Deactivate { kid: "a".into() },
            RotationStep::Activate { kid: "b".into() },
            RotationStep::Deactivate { kid: "r".into() },
            RotationStep::Activate { kid: "s".into() },
        ]
    );
}

#[test]
fn a_chain_added_to_a_running_ring_signs_at_once() {
    // Nothing of that algorithm could be signed before, and nothing else can sign in its stead
    // (an ID token must be RS256): its first key signs at once, like a new ring's.
    let a = record("a", KeyState::Active, 0, None);
    assert_eq!(plan_rotation(&[a], &two_chains(), DAY), vec![RotationStep::GenerateActive { alg: RS256 }]);
}

#[test]
fn a_chain_whose_algorithm_leaves_is_wound_down() {
    let p = policy();
    let a = record("a", KeyState::Active, 0, None);
    let r = record_of(RS256, "r", KeyState::Active, 0, None);
    let s = record_of(RS256, "s", KeyState::Pending, 30 * DAY, None);
    // The pending key never signed: withdrawn. The signer steps down, and retires like any other.
    assert_eq!(
        plan_rotation(&[a.clone(), r, s], &p, 29 * DAY),
        vec![
            RotationStep::GeneratePending { alg: EDDSA, activates_at: 31 * DAY },
            RotationStep::Deactivate { kid: "r".into() },
            RotationStep::Withdraw { kid: "s".into() },
        ]
    );
    let a = record("a", KeyState::Active, 0, None);
    let r = record_of(RS256, "r", KeyState::Retiring, 0, Some(DAY));
    assert!(plan_rotation(&[a.clone(), r.clone()], &p, 2 * DAY - 1).is_empty());
    assert_eq!(plan_rotation(&[a, r], &p, 2 * DAY), vec![RotationStep::Retire { kid: "r".into() }]);
}

#[test]
fn the_primary_moving_to_an_extra_chain_signs_with_it_at_once() {
    // EdDSA + RS256 to RS256 alone: the RS256 chain already signs and is published.
    let mut p = policy();
    p.primary = RS256;
    let a = record("a", KeyState::Active, 0, None);
    let r = record_of(RS256, "r", KeyState::Active, 0, None);
    let ring = [a, r];
    assert_eq!(plan_rotation(&ring, &p, DAY), vec![RotationStep::Deactivate { kid: "a".into() }]);
    assert_eq!(rotation::access_signer(&ring, p.primary).map(|k| k.kid.as_str()), Some("r"));
}

#[test]
fn policy_lists_the_primary_first_and_each_algorithm_once() {
    let p = policy().with_extra([RS256, EDDSA, RS256, ES256]);
    assert_eq!(p.algorithms().collect::<Vec<_>>(), [EDDSA, RS256, ES256]);
    assert!(p.uses(ES256) && !policy().uses(RS256));
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
            RotationStep::GenerateActive { alg } | RotationStep::GeneratePending { alg, .. } => {
                let key = PrivateKey::generate(*alg, entropy).unwrap();
                let jwk = key.public_jwk().unwrap();
                let (state, activates_at) = match step {
                    RotationStep::GeneratePending { activates_at, .. } => (KeyState::Pending, *activates_at),
                    _ => (KeyState::Active, now),
                };
                let mut rec = record_of(*alg, jwk.common.key_id.as_deref().unwrap(), state, activates_at, None);
                rec.created_at = now;
                rec.public_jwk = serde_json::to_string(&jwk).unwrap();
                ring.push((rec, key));
            }
            RotationStep::Activate { kid } => set_state(ring, kid, KeyState::Active, |_| {}),
            RotationStep::Deactivate { kid } => set_state(ring, kid, KeyState::Retiring, |r| r.deactivated_at = Some(now)),
            RotationStep::Retire { kid } | RotationStep::Withdraw { kid } => {
                set_state(ring, kid, KeyState::Retired, |r| r.retired_at = Some(now));
            }
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

/// The policies of a timeline: which algorithms are in use before and after the tick `change_at`.
/// ES256 stands in for a second chain here (RSA keys are slow to generate; the plan does not look
/// at the algorithm beyond grouping by it).
fn timeline_policies(base: &RotationPolicy, change: u8) -> (RotationPolicy, RotationPolicy) {
    let both = base.clone().with_extra([ES256]);
    let es256_alone = RotationPolicy { primary: ES256, ..base.clone() };
    match change {
        // Both chains throughout.
        0 => (both.clone(), both),
        // The second chain is dropped.
        1 => (both, base.clone()),
        // The second chain becomes the primary; the first is dropped.
        2 => (both, es256_alone),
        // The one chain's algorithm changes (a new primary chain, published ahead).
        _ => (base.clone(), es256_alone),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// For random valid policies, rotation timelines and changes of the algorithms in use (a chain
    /// kept, dropped, made primary; the primary algorithm changed): after every rotation each
    /// algorithm in use has exactly one active key (the primary's chain may instead be starting,
    /// its key published ahead, while the previous primary's key still signs access tokens), no
    /// chain has two pending keys, a chain that left has no pending key and no signer beyond that
    /// stand-in; and every token, signed by any chain's active key, verifies at every instant until
    /// `exp` + leeway with any JWKS fetched within the cache window before that instant.
    #[test]
    fn tokens_verify_until_exp_with_any_cached_jwks(
        access in 60u64..3_600, leeway in 0u64..120, max_age in 0u64..3_600,
        ahead_extra in 0u64..7_200, rotate_extra in 1u64..20_000, retire_extra in 0u64..3_600,
        gaps in proptest::collection::vec(1i64..9_000, 5..40),
        change in 0u8..4, change_at in 0usize..40,
        seed in any::<[u8; 32]>(),
    ) {
        let ahead = max_age + ahead_extra;
        let spec = spec_with(access, leeway, max_age, ahead, ahead + rotate_extra, access + leeway + retire_extra);
        let (before, after) = timeline_policies(&RotationPolicy::from_spec(&spec), change);
        let issuer = AccessTokenIssuer::from_spec(&spec);
        let verifier = AccessTokenVerifier::from_spec(&spec);
        let entropy = SeededEntropy::new(seed);
        let mut ring: Vec<(KeyRecord, PrivateKey)> = Vec::new();
        // (fetched_at, jwks valid until the next rotation tick)
        let mut snapshots: Vec<(i64, KeySet)> = Vec::new();
        let mut tokens: Vec<(i64, String, i64)> = Vec::new();
        let mut now = 1_700_000_000i64;
        for (tick, gap) in gaps.into_iter().enumerate() {
            let policy = if tick < change_at { &before } else { &after };
            let steps = plan_rotation(&ring.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>(), policy, now);
            if tick > 0 {
                let fresh = steps.iter().any(|s| matches!(s, RotationStep::GenerateActive { .. }));
                prop_assert!(!fresh, "no chain starts unpublished after the first tick: {:?}", steps);
            }
            apply(&mut ring, &steps, now, &entropy);
            let records: Vec<KeyRecord> = ring.iter().map(|(r, _)| r.clone()).collect();
            let count = |alg, state| records.iter().filter(|r| r.alg == alg && r.state == state).count();
            let access_signer = rotation::access_signer(&records, policy.primary);
            prop_assert!(access_signer.is_some(), "access tokens have a signer at {}", now);
            for alg in [EDDSA, ES256] {
                prop_assert!(count(alg, KeyState::Pending) <= 1, "one pending {} key at most at {}", alg, now);
                if !policy.uses(alg) {
                    prop_assert_eq!(count(alg, KeyState::Pending), 0, "{} left: no pending key at {}", alg, now);
                    let stand_in = count(policy.primary, KeyState::Active) == 0;
                    prop_assert!(count(alg, KeyState::Active) == 0 || stand_in, "{} left: stopped signing at {}", alg, now);
                } else if alg == policy.primary && count(alg, KeyState::Active) == 0 {
                    prop_assert_eq!(count(alg, KeyState::Pending), 1, "the starting {} chain is published at {}", alg, now);
                } else {
                    prop_assert_eq!(count(alg, KeyState::Active), 1, "exactly one active {} key at {}", alg, now);
                }
            }
            snapshots.push((now, KeySet::from_records(&records).unwrap()));
            // Tokens signed at the tick and in the middle of the interval, by every chain's signer.
            for (rec, key) in ring.iter().filter(|(r, _)| r.state == KeyState::Active) {
                let signer = ActiveKey { kid: rec.kid.clone(), encoding: Arc::new(key.encoding_key()), key: key.clone() };
                for iat in [now, now + gap / 2] {
                    let subject = TokenSubject {
                        sub: "u".into(), client_id: "booking-web".into(), scope: String::new(), sid: None,
                        custom: BTreeMap::from([("tenant_id".to_owned(), serde_json::json!("t"))]),
                    };
                    let t = issuer.issue(&signer, subject, iat, "j".into()).unwrap();
                    tokens.push((iat, t.token, t.claims.exp));
                }
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

    /// A ring with one chain plans exactly what it did before chains existed: the same steps, so
    /// the same keys drawn from the same entropy in the same order.
    #[test]
    fn one_chain_plans_as_before(
        gaps in proptest::collection::vec(1i64..20 * DAY, 1..30),
    ) {
        let p = policy();
        let mut ring: Vec<KeyRecord> = Vec::new();
        let mut now = 0i64;
        let mut serial = 0;
        for gap in gaps {
            let steps = plan_rotation(&ring, &p, now);
            prop_assert_eq!(&steps, &single_chain_plan(&ring, &p, now));
            for step in steps {
                serial += 1;
                let kid = format!("k{serial}");
                match step {
                    RotationStep::GenerateActive { .. } => ring.push(record(&kid, KeyState::Active, now, None)),
                    RotationStep::GeneratePending { activates_at, .. } => ring.push(record(&kid, KeyState::Pending, activates_at, None)),
                    RotationStep::Activate { kid } => ring.iter_mut().filter(|r| r.kid == kid).for_each(|r| r.state = KeyState::Active),
                    RotationStep::Deactivate { kid } => ring.iter_mut().filter(|r| r.kid == kid).for_each(|r| {
                        r.state = KeyState::Retiring;
                        r.deactivated_at = Some(now);
                    }),
                    RotationStep::Retire { kid } | RotationStep::Withdraw { kid } => {
                        ring.iter_mut().filter(|r| r.kid == kid).for_each(|r| r.state = KeyState::Retired);
                    }
                }
            }
            now += gap;
        }
    }
}

/// The plan of the ring before it had a chain per algorithm, for one algorithm in use.
fn single_chain_plan(keys: &[KeyRecord], policy: &RotationPolicy, now: i64) -> Vec<RotationStep> {
    let alg = policy.primary;
    let active = keys.iter().find(|k| k.state == KeyState::Active);
    let pending = keys.iter().find(|k| k.state == KeyState::Pending);
    let mut steps = Vec::new();
    match (active, pending) {
        (None, None) => steps.push(RotationStep::GenerateActive { alg }),
        (None, Some(p)) => steps.push(RotationStep::Activate { kid: p.kid.clone() }),
        (Some(a), Some(p)) if p.activates_at <= now => {
            steps.push(RotationStep::Deactivate { kid: a.kid.clone() });
            steps.push(RotationStep::Activate { kid: p.kid.clone() });
        }
        (Some(a), None) => {
            let due = a.activates_at.saturating_add(policy.rotate_every);
            if now >= due.saturating_sub(policy.publish_ahead) {
                steps.push(RotationStep::GeneratePending { alg, activates_at: now.saturating_add(policy.publish_ahead).max(due) });
            }
        }
        (Some(_), Some(_)) => {}
    }
    for key in keys.iter().filter(|k| k.state == KeyState::Retiring) {
        if now >= key.deactivated_at.unwrap_or(key.activates_at).saturating_add(policy.retire_after) {
            steps.push(RotationStep::Retire { kid: key.kid.clone() });
        }
    }
    steps
}
