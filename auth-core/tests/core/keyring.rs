//! The key ring on a real store: first key, staged rotation through its whole lifecycle, replicas
//! rotating at the same instant, sealing at rest, a wrong master key and rewrapping under a new one.

use std::sync::Arc;

use auth_core::audit::AuditKind;
use auth_core::clock::{Clock, FixedClock};
use auth_core::keys::{KeyRing, MasterKey, RotationPolicy, RotationStep};
use auth_core::random::OsEntropy;
use auth_core::spec::{KeyPolicy, Seconds, SigningAlgorithm};
use auth_core::store::{KeyState, Store};
use auth_core::Error;

use crate::support::TestDb;

on_both_backends!(
    first_rotation_creates_one_active_key,
    a_key_goes_through_its_whole_lifecycle,
    replicas_rotating_at_once_converge_on_one_active_key,
    private_keys_are_sealed_and_a_wrong_master_key_is_a_clear_error,
    rewrap_moves_every_key_to_a_new_master_key_without_losing_one,
    each_algorithm_in_use_has_its_chain_and_a_dropped_one_winds_down,
    replicas_rotating_two_chains_at_once_converge_on_one_active_key_each,
    rotating_at_once_and_revoking_act_on_the_chain_of_the_key,
);

const START: i64 = 1_700_000_000;
const DAY: i64 = 86_400;

fn policy() -> RotationPolicy {
    RotationPolicy::new(
        SigningAlgorithm::EdDSA,
        &KeyPolicy {
            rotate_every: Seconds(30 * DAY as u64),
            publish_ahead: Seconds(2 * DAY as u64),
            retire_after: Seconds(DAY as u64),
            jwks_max_age: Seconds(600),
        },
    )
}

fn master() -> MasterKey {
    MasterKey::from_bytes(&[42u8; 32]).unwrap()
}

fn ring(store: Arc<dyn Store>, clock: Arc<FixedClock>, master: MasterKey) -> KeyRing {
    KeyRing::new(store, master, policy(), clock, Arc::new(OsEntropy::new()))
}

async fn states(store: &Arc<dyn Store>) -> Vec<(String, KeyState)> {
    store.list_keys().await.unwrap().into_iter().map(|k| (k.kid, k.state)).collect()
}

async fn first_rotation_creates_one_active_key(db: &TestDb) {
    let store = db.dyn_store();
    let clock = Arc::new(FixedClock::at_seconds(START));
    let ring = ring(store.clone(), clock, master());
    assert!(ring.snapshot().is_err(), "nothing loaded yet");
    assert_eq!(ring.rotate().await.unwrap(), vec![RotationStep::GenerateActive { alg: SigningAlgorithm::EdDSA }]);
    let snapshot = ring.snapshot().unwrap();
    assert_eq!(snapshot.keys.jwks().keys.len(), 1);
    assert_eq!(states(&store).await, vec![(snapshot.active.kid.clone(), KeyState::Active)]);
    // Running again at the same instant changes nothing.
    assert!(ring.rotate().await.unwrap().is_empty());
    let audit = store.audit_tail(10).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].kind, AuditKind::KeyGenerated);
}

async fn a_key_goes_through_its_whole_lifecycle(db: &TestDb) {
    let store = db.dyn_store();
    let clock = Arc::new(FixedClock::at_seconds(START));
    let ring = ring(store.clone(), clock.clone(), master());
    ring.rotate().await.unwrap();
    let first = ring.snapshot().unwrap().active.kid.clone();

    clock.set_millis((START + 28 * DAY) * 1000);
    assert!(matches!(ring.rotate().await.unwrap()[..], [RotationStep::GeneratePending { alg: SigningAlgorithm::EdDSA, activates_at }] if activates_at == START + 30 * DAY));
    let snapshot = ring.snapshot().unwrap();
    assert_eq!(snapshot.active.kid, first, "a pending key does not sign");
    assert_eq!(snapshot.keys.jwks().keys.len(), 2, "but it is published");
    let second = store.list_keys().await.unwrap().into_iter().find(|k| k.state == KeyState::Pending).unwrap().kid;

    clock.set_millis((START + 30 * DAY) * 1000);
    ring.rotate().await.unwrap();
    assert_eq!(ring.snapshot().unwrap().active.kid, second);
    let keys = store.list_keys().await.unwrap();
    let old = keys.iter().find(|k| k.kid == first).unwrap();
    assert_eq!(old.state, KeyState::Retiring);
    assert_eq!(old.deactivated_at, Some(START + 30 * DAY));
    assert!(old.private_sealed.is_some());

    clock.set_millis((START + 31 * DAY) * 1000);
    assert_eq!(ring.rotate().await.unwrap(), vec![RotationStep::Retire { kid: first.clone() }]);
    let keys = store.list_keys().await.unwrap();
    let old = keys.iter().find(|k| k.kid == first).unwrap();
    assert_eq!(old.state, KeyState::Retired);
    assert!(old.private_sealed.is_none(), "a retired key's private half is erased");
    let snapshot = ring.snapshot().unwrap();
    assert_eq!(snapshot.keys.jwks().keys.len(), 1);
    assert!(snapshot.keys.is_retired(&first));

    let kinds: Vec<AuditKind> = store.audit_tail(20).await.unwrap().into_iter().rev().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [AuditKind::KeyGenerated, AuditKind::KeyGenerated, AuditKind::KeyRetiring, AuditKind::KeyActivated, AuditKind::KeyRetired]
    );
}

async fn replicas_rotating_at_once_converge_on_one_active_key(db: &TestDb) {
    let store = db.dyn_store();
    let clock = Arc::new(FixedClock::at_seconds(START));
    let replicas: Vec<Arc<KeyRing>> = (0..4).map(|_| Arc::new(ring(store.clone(), clock.clone(), master()))).collect();
    // Every instant of the lifecycle, each replica rotating concurrently.
    for at in [START, START + 28 * DAY, START + 30 * DAY, START + 31 * DAY] {
        clock.set_millis(at * 1000);
        let tasks: Vec<_> = replicas.iter().map(|r| { let r = r.clone(); tokio::spawn(async move { r.rotate().await }) }).collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let keys = store.list_keys().await.unwrap();
        assert_eq!(keys.iter().filter(|k| k.state == KeyState::Active).count(), 1, "at {at}: {keys:?}");
        assert!(keys.iter().filter(|k| k.state == KeyState::Pending).count() <= 1);
        for replica in &replicas {
            replica.reload().await.unwrap();
        }
        let active = &replicas[0].snapshot().unwrap().active.kid;
        assert!(replicas.iter().all(|r| &r.snapshot().unwrap().active.kid == active));
    }
    assert_eq!(store.list_keys().await.unwrap().len(), 2, "one key per generation, not one per replica");
}

async fn private_keys_are_sealed_and_a_wrong_master_key_is_a_clear_error(db: &TestDb) {
    let store = db.dyn_store();
    let clock = Arc::new(FixedClock::at_seconds(START));
    let ring = ring(store.clone(), clock.clone(), master());
    ring.rotate().await.unwrap();
    let snapshot = ring.snapshot().unwrap();
    let record = store.list_keys().await.unwrap().remove(0);
    let sealed = record.private_sealed.unwrap();
    let pkcs8 = snapshot.active.key.pkcs8();
    assert!(!sealed.windows(pkcs8.len()).any(|w| w == pkcs8), "the private key is not stored in clear");
    assert_eq!(record.master_key_id, master().id());

    let other = MasterKey::from_bytes(&[7u8; 32]).unwrap();
    let wrong = KeyRing::new(store, other, policy(), clock as Arc<dyn Clock>, Arc::new(OsEntropy::new()));
    let err = wrong.rotate().await.unwrap_err();
    assert!(matches!(err, Error::MasterKey(_)), "{err:?}");
    assert!(err.to_string().contains(master().id()), "the error names the expected master key: {err}");
}

/// Rewrapping under a new master key: every key with a private half (active, pending, retiring)
/// is sealed under it and nothing else changes; a ring already running with the old key keeps
/// signing through reloads and even activates the pending key it had opened; a new ring with the
/// new key loads, one with only the old key fails naming both, and one with the old key as a
/// previous key opens a key the old key sealed afterwards.
async fn rewrap_moves_every_key_to_a_new_master_key_without_losing_one(db: &TestDb) {
    let store = db.dyn_store();
    let clock = Arc::new(FixedClock::at_seconds(START));
    let old = ring(store.clone(), clock.clone(), master());
    old.rotate().await.unwrap();
    clock.set_millis((START + 28 * DAY) * 1000);
    old.rotate().await.unwrap();
    let before = store.list_keys().await.unwrap();
    assert_eq!(before.len(), 2, "an active and a pending key");

    let new = MasterKey::from_bytes(&[9u8; 32]).unwrap();
    let report = old.rewrap(&new).await.unwrap();
    assert_eq!(report.rewrapped.len(), 2, "{report:?}");
    let after = store.list_keys().await.unwrap();
    for (b, a) in before.iter().zip(&after) {
        assert_eq!((&a.kid, a.state, &a.public_jwk), (&b.kid, b.state, &b.public_jwk), "only the sealing changes");
        assert_eq!(a.master_key_id, new.id());
        assert_ne!(a.private_sealed, b.private_sealed);
        let opened = new.open(&a.kid, a.private_sealed.as_deref().unwrap()).unwrap();
        assert_eq!(opened, master().open(&b.kid, b.private_sealed.as_deref().unwrap()).unwrap());
        assert!(master().open(&a.kid, a.private_sealed.as_deref().unwrap()).is_err(), "the old key opens nothing");
    }
    let audit = store.audit_tail(2).await.unwrap();
    assert!(audit.iter().all(|e| e.kind == AuditKind::KeyRewrapped), "{audit:?}");
    // Again: nothing to do.
    let again = old.rewrap(&new).await.unwrap();
    assert_eq!((again.rewrapped.len(), again.unchanged.len()), (0, 2), "{again:?}");

    // The running ring reloads and then activates the pending key from memory.
    old.reload().await.unwrap();
    clock.set_millis((START + 30 * DAY) * 1000);
    old.rotate().await.unwrap();
    let pending = before.iter().find(|k| k.state == KeyState::Pending).unwrap();
    assert_eq!(old.snapshot().unwrap().active.kid, pending.kid);

    // A restart: the new key works, the old one alone fails and says which keys are involved.
    let restarted = ring(store.clone(), clock.clone(), MasterKey::from_bytes(&[9u8; 32]).unwrap());
    restarted.rotate().await.unwrap();
    assert_eq!(restarted.snapshot().unwrap().active.kid, pending.kid);
    let err = ring(store.clone(), clock.clone(), master()).rotate().await.unwrap_err();
    assert!(matches!(err, Error::MasterKey(_)), "{err:?}");
    assert!(err.to_string().contains(new.id()) && err.to_string().contains(master().id()), "{err}");

    // The old ring (still on the old key) generates the next key, sealed under the old key: a
    // ring on the new key with the old one as previous opens it, and rewrap moves it over.
    clock.set_millis((START + 58 * DAY) * 1000);
    old.rotate().await.unwrap();
    let third = store.list_keys().await.unwrap().into_iter().find(|k| k.state == KeyState::Pending).unwrap();
    assert_eq!(third.master_key_id, master().id());
    clock.set_millis((START + 60 * DAY) * 1000);
    let switching = ring(store.clone(), clock.clone(), MasterKey::from_bytes(&[9u8; 32]).unwrap())
        .with_previous_master_keys(MasterKey::parse_list(&format!(" {},", hex::encode([42u8; 32]))).unwrap());
    switching.rotate().await.unwrap();
    assert_eq!(switching.snapshot().unwrap().active.kid, third.kid);
    let report = switching.rewrap(&new).await.unwrap();
    assert_eq!(report.rewrapped, vec![third.kid.clone()], "{report:?}");
    let keys = store.list_keys().await.unwrap();
    assert!(keys.iter().filter(|k| k.private_sealed.is_some()).all(|k| k.master_key_id == new.id()), "{keys:?}");
}

const EDDSA: SigningAlgorithm = SigningAlgorithm::EdDSA;
const RS256: SigningAlgorithm = SigningAlgorithm::RS256;

/// EdDSA access tokens, RS256 ID tokens.
fn two_chains() -> RotationPolicy {
    policy().with_extra([RS256])
}

fn ring_with(store: Arc<dyn Store>, clock: Arc<FixedClock>, policy: RotationPolicy) -> KeyRing {
    KeyRing::new(store, master(), policy, clock, Arc::new(OsEntropy::new()))
}

/// (alg, state) of every key, in the store's order.
async fn chains(store: &Arc<dyn Store>) -> Vec<(SigningAlgorithm, KeyState)> {
    store.list_keys().await.unwrap().into_iter().map(|k| (k.alg, k.state)).collect()
}

async fn kid_of(store: &Arc<dyn Store>, alg: SigningAlgorithm, state: KeyState) -> String {
    let keys = store.list_keys().await.unwrap();
    keys.into_iter().find(|k| k.alg == alg && k.state == state).map(|k| k.kid).unwrap()
}

/// A policy with EdDSA and RS256: both chains start at once, rotate on the same policy and stay
/// published together; the snapshot signs access tokens with EdDSA and hands out the RS256 signer.
/// Dropping RS256 stops its signer, keeps its key published until `retire_after`, then retires it.
async fn each_algorithm_in_use_has_its_chain_and_a_dropped_one_winds_down(db: &TestDb) {
    let store = db.dyn_store();
    let clock = Arc::new(FixedClock::at_seconds(START));
    let ring = ring_with(store.clone(), clock.clone(), two_chains());
    assert_eq!(
        ring.rotate().await.unwrap(),
        vec![RotationStep::GenerateActive { alg: EDDSA }, RotationStep::GenerateActive { alg: RS256 }]
    );
    let snapshot = ring.snapshot().unwrap();
    assert_eq!(snapshot.active.key.algorithm(), EDDSA, "access tokens stay on the primary algorithm");
    assert_eq!(snapshot.signer(EDDSA).unwrap().kid, snapshot.active.kid);
    let rs = snapshot.signer(RS256).unwrap();
    assert_eq!(rs.key.algorithm(), RS256);
    assert!(snapshot.signer(SigningAlgorithm::ES256).unwrap_err().to_string().contains("ES256"));
    assert_eq!(snapshot.keys.jwks().keys.len(), 2, "one JWKS for both chains");
    let (first_ed, first_rs) = (snapshot.active.kid.clone(), rs.kid.clone());

    clock.set_millis((START + 28 * DAY) * 1000);
    let steps = ring.rotate().await.unwrap();
    let due = START + 30 * DAY;
    assert_eq!(
        steps,
        vec![
            RotationStep::GeneratePending { alg: EDDSA, activates_at: due },
            RotationStep::GeneratePending { alg: RS256, activates_at: due }
        ]
    );
    assert_eq!(ring.snapshot().unwrap().keys.jwks().keys.len(), 4);
    clock.set_millis(due * 1000);
    ring.rotate().await.unwrap();
    let snapshot = ring.snapshot().unwrap();
    assert_ne!(snapshot.active.kid, first_ed);
    assert_ne!(snapshot.signer(RS256).unwrap().kid, first_rs);
    let mut states = chains(&store).await;
    states.sort_by_key(|(alg, state)| (*state, alg.as_str()));
    assert_eq!(states, [(EDDSA, KeyState::Active), (RS256, KeyState::Active), (EDDSA, KeyState::Retiring), (RS256, KeyState::Retiring)]);

    // RS256 leaves the policy (no client signs users in through a browser any more).
    let second_rs = snapshot.signer(RS256).unwrap().kid.clone();
    clock.set_millis((due + DAY / 2) * 1000);
    let one = ring_with(store.clone(), clock.clone(), policy());
    assert_eq!(one.rotate().await.unwrap(), vec![RotationStep::Deactivate { kid: second_rs.clone() }]);
    let snapshot = one.snapshot().unwrap();
    assert!(snapshot.signer(RS256).is_err(), "the dropped chain signs nothing");
    assert!(snapshot.keys.get(&second_rs).is_some(), "but its last key stays published for its tokens");
    clock.set_millis((due + DAY) * 1000);
    let mut retired = one.rotate().await.unwrap();
    let mut first = vec![RotationStep::Retire { kid: first_ed }, RotationStep::Retire { kid: first_rs }];
    retired.sort_by_key(|s| format!("{s:?}"));
    first.sort_by_key(|s| format!("{s:?}"));
    assert_eq!(retired, first, "both chains' first keys, in the store's order");
    clock.set_millis((due + DAY + DAY / 2) * 1000);
    assert_eq!(one.rotate().await.unwrap(), vec![RotationStep::Retire { kid: second_rs.clone() }]);
    assert!(one.snapshot().unwrap().keys.is_retired(&second_rs));
    let rs_left: Vec<KeyState> = chains(&store).await.into_iter().filter(|(a, _)| *a == RS256).map(|(_, s)| s).collect();
    assert_eq!(rs_left, [KeyState::Retired, KeyState::Retired]);
}

async fn replicas_rotating_two_chains_at_once_converge_on_one_active_key_each(db: &TestDb) {
    let store = db.dyn_store();
    let clock = Arc::new(FixedClock::at_seconds(START));
    let replicas: Vec<Arc<KeyRing>> =
        (0..3).map(|_| Arc::new(ring_with(store.clone(), clock.clone(), two_chains()))).collect();
    for at in [START, START + 28 * DAY, START + 30 * DAY, START + 31 * DAY] {
        clock.set_millis(at * 1000);
        let tasks: Vec<_> = replicas.iter().map(|r| { let r = r.clone(); tokio::spawn(async move { r.rotate().await }) }).collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let keys = store.list_keys().await.unwrap();
        for alg in [EDDSA, RS256] {
            let count = |state| keys.iter().filter(|k| k.alg == alg && k.state == state).count();
            assert_eq!(count(KeyState::Active), 1, "{alg} at {at}: {keys:?}");
            assert!(count(KeyState::Pending) <= 1, "{alg} at {at}: {keys:?}");
        }
        for replica in &replicas {
            replica.reload().await.unwrap();
        }
        let signer = |r: &KeyRing| r.snapshot().unwrap().signer(RS256).unwrap().kid.clone();
        assert!(replicas.iter().all(|r| signer(r) == signer(&replicas[0])));
    }
    assert_eq!(store.list_keys().await.unwrap().len(), 4, "one key per chain and generation, not one per replica");
}

/// `rotate_now` rotates one chain or all of them; `revoke` replaces a signer in its own chain, and
/// a key of a chain being wound down is not replaced.
async fn rotating_at_once_and_revoking_act_on_the_chain_of_the_key(db: &TestDb) {
    let store = db.dyn_store();
    let clock = Arc::new(FixedClock::at_seconds(START));
    let ring = ring_with(store.clone(), clock.clone(), two_chains());
    ring.rotate().await.unwrap();
    let (ed, rs) = (kid_of(&store, EDDSA, KeyState::Active).await, kid_of(&store, RS256, KeyState::Active).await);

    let only = ring.rotate_now(Some(RS256)).await.unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].0, RS256);
    assert_eq!(kid_of(&store, EDDSA, KeyState::Active).await, ed, "the other chain is left alone");
    assert_eq!(kid_of(&store, RS256, KeyState::Active).await, only[0].1);
    assert_eq!(kid_of(&store, RS256, KeyState::Retiring).await, rs);
    let err = ring.rotate_now(Some(SigningAlgorithm::ES256)).await.unwrap_err();
    assert!(err.to_string().contains("no ES256 chain"), "{err}");

    let all = ring.rotate_now(None).await.unwrap();
    assert_eq!(all.iter().map(|(alg, _)| *alg).collect::<Vec<_>>(), [EDDSA, RS256], "the primary first");
    let snapshot = ring.snapshot().unwrap();
    assert_eq!(snapshot.active.kid, all[0].1);
    assert_eq!(snapshot.signer(RS256).unwrap().kid, all[1].1);

    // Revoking the RS256 signer: a new RS256 key signs; the EdDSA chain is untouched.
    let successor = ring.revoke(&all[1].1).await.unwrap().expect("a successor");
    let snapshot = ring.snapshot().unwrap();
    assert_eq!(snapshot.signer(RS256).unwrap().kid, successor);
    assert_eq!(snapshot.active.kid, all[0].1);
    let keys = store.list_keys().await.unwrap();
    assert_eq!(keys.iter().find(|k| k.kid == successor).unwrap().alg, RS256);

    // RS256 dropped: revoking its last signer makes no successor.
    let one = ring_with(store.clone(), clock.clone(), policy());
    one.reload().await.unwrap();
    assert_eq!(one.revoke(&successor).await.unwrap(), None);
    assert!(one.snapshot().unwrap().signer(RS256).is_err());
    assert_eq!(one.rotate().await.unwrap(), vec![], "nothing left to wind down but retiring keys not yet due");
    let keys = store.list_keys().await.unwrap();
    for alg in [EDDSA, RS256] {
        let active = keys.iter().filter(|k| k.alg == alg && k.state == KeyState::Active).count();
        assert_eq!(active, usize::from(alg == EDDSA), "{keys:?}");
    }
}
