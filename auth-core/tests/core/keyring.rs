//! The key ring on a real store: first key, staged rotation through its whole lifecycle, replicas
//! rotating at the same instant, sealing at rest and a wrong master key.

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
