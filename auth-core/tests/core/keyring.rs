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
    assert_eq!(ring.rotate().await.unwrap(), vec![RotationStep::GenerateActive]);
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
    assert!(matches!(ring.rotate().await.unwrap()[..], [RotationStep::GeneratePending { activates_at }] if activates_at == START + 30 * DAY));
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
