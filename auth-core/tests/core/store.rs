//! The contract of every store area, run against SQLite and PostgreSQL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_core::Error;
use auth_core::audit::{AuditEvent, AuditKind};
use auth_core::spec::SigningAlgorithm;
use auth_core::store::{
    AuthorizationCodeRecord, BrowserSessionRecord, BrowserSessionStore, CodeStore, CodeTaken, PushedRequestRecord,
    AuditStore, ClientRecord, ClientStore, ConsentStore, Dialect, RefreshFamily, FamilyStore, KeyChange, KeyRecord,
    KeyState, KeyStore, RefreshTokenRecord, RefreshTokenView, SqlStore, Store, UserRecord, UserStore,
};

use crate::support::{TestDb, user};

on_both_backends!(
    users_are_created_found_listed_and_disabled,
    a_taken_username_is_a_conflict,
    a_corrupt_row_is_a_store_error,
    clients_are_created_and_listed,
    key_changes_apply_together_or_not_at_all,
    two_active_keys_are_impossible,
    a_withdrawn_pending_key_is_retired_without_having_signed,
    retiring_a_key_erases_its_private_half,
    families_and_tokens_round_trip,
    a_token_rotates_once,
    concurrent_rotations_have_one_winner,
    families_are_revoked_singly_and_per_user,
    audit_events_are_appended_and_tailed,
    migrating_twice_is_harmless,
    a_code_is_taken_once_and_a_replay_is_marked,
    browser_sessions_live_idle_and_end,
    pushed_requests_are_taken_once_before_they_expire,
    consents_add_up_and_are_withdrawn_per_client,
);

fn key(kid: &str, state: KeyState, created_at: i64) -> KeyRecord {
    KeyRecord {
        kid: kid.into(),
        alg: SigningAlgorithm::EdDSA,
        state,
        created_at,
        activates_at: created_at,
        deactivated_at: None,
        retired_at: None,
        public_jwk: format!(r#"{{"kty":"OKP","crv":"Ed25519","kid":"{kid}","x":"AA"}}"#),
        private_sealed: Some(vec![1, 2, 3, kid.len() as u8]),
        master_key_id: "mk-1".into(),
    }
}

fn family(id: &str, user_id: &str, created_at: i64) -> RefreshFamily {
    RefreshFamily {
        id: id.into(),
        user_id: Some(user_id.into()),
        client_id: "booking-web".into(),
        scope: "bookings:read bookings:write".into(),
        created_at,
        absolute_expires_at: created_at + 1000,
        revoked_at: None,
        revoked_reason: None,
    }
}

fn token(hash_byte: u8, family_id: &str, created_at: i64) -> RefreshTokenRecord {
    RefreshTokenRecord {
        hash: vec![hash_byte; 32],
        family_id: family_id.into(),
        created_at,
        idle_expires_at: created_at + 100,
        used_at: None,
        successor_hash: None,
        successor_sealed: None,
    }
}

/// The audit event a rotation of a token of session `sid` writes, marked with `n`.
fn rotated(sid: &str, n: u8) -> AuditEvent {
    AuditEvent::new(1_000 + i64::from(n), AuditKind::RefreshRotated)
        .family(sid)
        .detail(serde_json::json!({ "n": n }))
}

/// The `n` marks of the rotation events in the audit log, oldest first.
async fn rotation_marks(store: &SqlStore) -> Vec<u64> {
    let mut events = store.audit_tail(1_000).await.unwrap();
    events.reverse();
    events
        .iter()
        .filter(|e| e.kind == AuditKind::RefreshRotated)
        .map(|e| e.detail["n"].as_u64().unwrap())
        .collect()
}

async fn insert_key(store: &SqlStore, key: KeyRecord) -> bool {
    store.apply_key_changes(&[KeyChange::Insert(key)]).await.unwrap()
}

fn states(keys: &[KeyRecord]) -> Vec<(String, KeyState)> {
    keys.iter().map(|k| (k.kid.clone(), k.state)).collect()
}

async fn users_are_created_found_listed_and_disabled(db: &TestDb) {
    let store = &db.store;
    store.create_user(&user("u2", "bob", 20)).await.unwrap();
    store.create_user(&user("u1", "alice", 10)).await.unwrap();
    store.create_user(&user("u3", "carol", 30)).await.unwrap();

    let alice = store.user_by_username("alice").await.unwrap().expect("alice exists");
    assert_eq!(alice, user("u1", "alice", 10));
    assert_eq!(store.user_by_id("u2").await.unwrap().map(|u| u.username), Some("bob".into()));
    assert_eq!(store.user_by_username("nobody").await.unwrap(), None);
    assert_eq!(store.user_by_id("u9").await.unwrap(), None);

    let all: Vec<String> =
        store.list_users(10, 0).await.unwrap().into_iter().map(|u| u.id).collect();
    assert_eq!(all, ["u1", "u2", "u3"], "ordered by creation");
    let page: Vec<String> =
        store.list_users(1, 1).await.unwrap().into_iter().map(|u| u.id).collect();
    assert_eq!(page, ["u2"]);
    assert!(store.list_users(10, 3).await.unwrap().is_empty());

    store.set_user_disabled("u1", true).await.unwrap();
    assert!(store.user_by_id("u1").await.unwrap().unwrap().disabled);
    store.set_user_disabled("u1", false).await.unwrap();
    assert!(!store.user_by_id("u1").await.unwrap().unwrap().disabled);
    assert!(matches!(store.set_user_disabled("u9", true).await, Err(Error::NotFound(_))));

    store.set_password_hash("u2", "$argon2id$new").await.unwrap();
    assert_eq!(store.user_by_id("u2").await.unwrap().unwrap().password_hash, "$argon2id$new");
    assert!(matches!(store.set_password_hash("u9", "x").await, Err(Error::NotFound(_))));
}

async fn a_taken_username_is_a_conflict(db: &TestDb) {
    let store = &db.store;
    store.create_user(&user("u1", "alice", 10)).await.unwrap();
    let same_name = store.create_user(&user("u2", "alice", 11)).await;
    assert!(matches!(same_name, Err(Error::Conflict(_))), "{same_name:?}");
    let same_id = store.create_user(&user("u1", "alicia", 12)).await;
    assert!(matches!(same_id, Err(Error::Conflict(_))), "{same_id:?}");
    assert_eq!(store.list_users(10, 0).await.unwrap().len(), 1);
}

async fn a_corrupt_row_is_a_store_error(db: &TestDb) {
    let store = &db.store;
    store.create_user(&user("u1", "alice", 10)).await.unwrap();
    sqlx::query("UPDATE users SET claims = 'not json' WHERE id = 'u1'")
        .execute(store.pool())
        .await
        .unwrap();
    let read = store.user_by_id("u1").await;
    assert!(matches!(&read, Err(Error::Store(m)) if m.contains("claims")), "{read:?}");

    assert!(insert_key(store, key("k1", KeyState::Active, 1)).await);
    sqlx::query("UPDATE signing_keys SET alg = 'HS256' WHERE kid = 'k1'")
        .execute(store.pool())
        .await
        .unwrap();
    let keys = store.list_keys().await;
    assert!(matches!(&keys, Err(Error::Store(m)) if m.contains("HS256")), "{keys:?}");

    sqlx::query("INSERT INTO audit_events (at, kind, detail) VALUES (1, 'coffee_brewed', 'null')")
        .execute(store.pool())
        .await
        .unwrap();
    let tail = store.audit_tail(5).await;
    assert!(matches!(&tail, Err(Error::Store(m)) if m.contains("coffee_brewed")), "{tail:?}");
}

async fn clients_are_created_and_listed(db: &TestDb) {
    let store = &db.store;
    let web = ClientRecord { id: "web".into(), secret_hash: None, created_at: 5 };
    let backend = ClientRecord {
        id: "backend".into(),
        secret_hash: Some("$argon2id$secret".into()),
        created_at: 6,
    };
    store.create_client(&web).await.unwrap();
    store.create_client(&backend).await.unwrap();
    let again = store.create_client(&web).await;
    assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");
    assert_eq!(store.client("web").await.unwrap(), Some(web.clone()));
    assert_eq!(store.client("nope").await.unwrap(), None);
    assert_eq!(store.list_clients().await.unwrap(), vec![backend, web]);
}

async fn key_changes_apply_together_or_not_at_all(db: &TestDb) {
    let store = &db.store;
    assert!(store.apply_key_changes(&[]).await.unwrap());
    assert!(insert_key(store, key("a", KeyState::Active, 1)).await);
    assert!(insert_key(store, key("b", KeyState::Pending, 2)).await);
    let before = store.list_keys().await.unwrap();

    // A second pending key: another replica already published one.
    let second_pending = [KeyChange::Insert(key("c", KeyState::Pending, 3))];
    assert!(!store.apply_key_changes(&second_pending).await.unwrap());
    assert_eq!(store.list_keys().await.unwrap(), before);

    // A batch whose last step does not apply leaves its first steps undone.
    let half_valid = [
        KeyChange::Deactivate { kid: "a".into(), at: 50 },
        KeyChange::Activate { kid: "missing".into(), at: 50 },
    ];
    assert!(!store.apply_key_changes(&half_valid).await.unwrap());
    assert_eq!(store.list_keys().await.unwrap(), before);

    // The rotation itself: the old signer steps down and the pending key takes over, together.
    let rotation = [
        KeyChange::Deactivate { kid: "a".into(), at: 100 },
        KeyChange::Activate { kid: "b".into(), at: 100 },
        KeyChange::Insert(key("c", KeyState::Pending, 100)),
    ];
    assert!(store.apply_key_changes(&rotation).await.unwrap());
    let after = store.list_keys().await.unwrap();
    assert_eq!(
        states(&after),
        [
            ("a".into(), KeyState::Retiring),
            ("b".into(), KeyState::Active),
            ("c".into(), KeyState::Pending)
        ]
    );
    assert_eq!(after[0].deactivated_at, Some(100));
    assert_eq!(after[1].activates_at, 100);
    assert_eq!(after[2], key("c", KeyState::Pending, 100));

    // The same rotation from a slower replica finds nothing in the expected state.
    assert!(!store.apply_key_changes(&rotation[..2]).await.unwrap());
    assert_eq!(store.list_keys().await.unwrap(), after);
}

async fn two_active_keys_are_impossible(db: &TestDb) {
    let store = &db.store;
    assert!(insert_key(store, key("a", KeyState::Active, 1)).await);
    assert!(insert_key(store, key("b", KeyState::Pending, 2)).await);
    let before = store.list_keys().await.unwrap();

    // Activating without deactivating, inserting a second active key, or activating before the
    // old signer stepped down: each is refused by the database and changes nothing.
    let refused: [&[KeyChange]; 3] = [
        &[KeyChange::Activate { kid: "b".into(), at: 10 }],
        &[KeyChange::Insert(key("c", KeyState::Active, 10))],
        &[
            KeyChange::Activate { kid: "b".into(), at: 10 },
            KeyChange::Deactivate { kid: "a".into(), at: 10 },
        ],
    ];
    for changes in refused {
        assert!(!store.apply_key_changes(changes).await.unwrap(), "{changes:?}");
        assert_eq!(store.list_keys().await.unwrap(), before, "{changes:?}");
    }

    // Even a raw write cannot get past the partial unique index.
    let raw = sqlx::query("UPDATE signing_keys SET state = 'active' WHERE kid = 'b'")
        .execute(store.pool())
        .await;
    assert!(raw.is_err(), "the database accepted a second active key on {}", db.backend());

    // The limit is per algorithm: another algorithm's chain has its own signer and successor,
    // and the same limits.
    let of = |kid: &str, state, alg| KeyRecord { alg, ..key(kid, state, 20) };
    assert!(insert_key(store, of("rs-a", KeyState::Active, SigningAlgorithm::RS256)).await);
    assert!(insert_key(store, of("rs-b", KeyState::Pending, SigningAlgorithm::RS256)).await);
    let before = store.list_keys().await.unwrap();
    assert!(!insert_key(store, of("rs-c", KeyState::Active, SigningAlgorithm::RS256)).await);
    assert!(!insert_key(store, of("rs-c", KeyState::Pending, SigningAlgorithm::RS256)).await);
    assert!(!store.apply_key_changes(&[KeyChange::Activate { kid: "rs-b".into(), at: 30 }]).await.unwrap());
    assert_eq!(store.list_keys().await.unwrap(), before);
    // One chain rotating leaves the other alone.
    let rotation = [KeyChange::Deactivate { kid: "rs-a".into(), at: 30 }, KeyChange::Activate { kid: "rs-b".into(), at: 30 }];
    assert!(store.apply_key_changes(&rotation).await.unwrap());
    let active: Vec<_> = store.list_keys().await.unwrap().into_iter().filter(|k| k.state == KeyState::Active).map(|k| k.kid).collect();
    assert_eq!(active, ["a", "rs-b"]);
}

async fn a_withdrawn_pending_key_is_retired_without_having_signed(db: &TestDb) {
    let store = &db.store;
    assert!(insert_key(store, key("a", KeyState::Active, 1)).await);
    assert!(insert_key(store, key("b", KeyState::Pending, 2)).await);
    // Only a pending key is withdrawn.
    assert!(!store.apply_key_changes(&[KeyChange::Withdraw { kid: "a".into(), at: 9 }]).await.unwrap());
    assert!(store.apply_key_changes(&[KeyChange::Withdraw { kid: "b".into(), at: 9 }]).await.unwrap());
    let keys = store.list_keys().await.unwrap();
    assert_eq!((keys[1].state, keys[1].retired_at, keys[1].deactivated_at), (KeyState::Retired, Some(9), None));
    assert_eq!(keys[1].private_sealed, None);
    assert_eq!(keys[0].state, KeyState::Active);
}

async fn retiring_a_key_erases_its_private_half(db: &TestDb) {
    let store = &db.store;
    let mut old = key("old", KeyState::Retiring, 1);
    old.deactivated_at = Some(5);
    assert!(insert_key(store, old).await);
    // Only a retiring key retires.
    assert!(insert_key(store, key("new", KeyState::Active, 2)).await);
    assert!(
        !store.apply_key_changes(&[KeyChange::Retire { kid: "new".into(), at: 9 }]).await.unwrap()
    );

    assert!(
        store.apply_key_changes(&[KeyChange::Retire { kid: "old".into(), at: 9 }]).await.unwrap()
    );
    let keys = store.list_keys().await.unwrap();
    assert_eq!(keys[0].state, KeyState::Retired);
    assert_eq!(keys[0].retired_at, Some(9));
    assert_eq!(keys[0].private_sealed, None);
    assert!(!keys[0].public_jwk.is_empty(), "the public half stays for the record");
    assert!(keys[1].private_sealed.is_some());

    // A retired key with a private half cannot even be written.
    let mut leaky = key("leaky", KeyState::Retired, 3);
    leaky.retired_at = Some(4);
    assert!(store.apply_key_changes(&[KeyChange::Insert(leaky)]).await.is_err());
}

async fn families_and_tokens_round_trip(db: &TestDb) {
    let store = &db.store;
    store.create_user(&user("u1", "alice", 1)).await.unwrap();
    let fam = family("s1", "u1", 10);
    let first = token(1, "s1", 10);
    store.create_family(&fam, &first).await.unwrap();
    assert_eq!(store.family("s1").await.unwrap(), Some(fam.clone()));
    assert_eq!(store.family("s9").await.unwrap(), None);
    let alice = user("u1", "alice", 1);
    let view = RefreshTokenView { token: first.clone(), family: fam.clone(), user: Some(alice.clone()) };
    assert_eq!(store.refresh_token(&[1; 32]).await.unwrap(), Some(view), "read with its user");
    assert_eq!(store.refresh_token(&[2; 32]).await.unwrap(), None);

    // A family without a user (client-only session).
    let mut anonymous = family("s2", "u1", 11);
    anonymous.user_id = None;
    store.create_family(&anonymous, &token(3, "s2", 11)).await.unwrap();
    assert_eq!(store.family("s2").await.unwrap(), Some(anonymous.clone()));
    let view = RefreshTokenView { token: token(3, "s2", 11), family: anonymous, user: None };
    assert_eq!(store.refresh_token(&[3; 32]).await.unwrap(), Some(view));

    // The user as stored now, not as when the session began.
    store.set_user_disabled("u1", true).await.unwrap();
    let view = store.refresh_token(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(view.user, Some(UserRecord { disabled: true, ..alice }));

    let again = store.create_family(&fam, &token(4, "s1", 12)).await;
    assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");
    assert_eq!(store.refresh_token(&[4; 32]).await.unwrap(), None, "nothing of it was stored");

    let active = store.active_families_of_user("u1", 500).await.unwrap();
    assert_eq!(active, vec![fam.clone()]);
    assert!(store.active_families_of_user("u1", fam.absolute_expires_at).await.unwrap().is_empty());
}

async fn a_token_rotates_once(db: &TestDb) {
    let store = &db.store;
    store.create_user(&user("u1", "alice", 1)).await.unwrap();
    store.create_family(&family("s1", "u1", 10), &token(1, "s1", 10)).await.unwrap();

    assert!(store.rotate_refresh(&[1; 32], 20, b"sealed-2", &token(2, "s1", 20), &rotated("s1", 2)).await.unwrap());
    assert!(!store.rotate_refresh(&[1; 32], 21, b"sealed-3", &token(3, "s1", 21), &rotated("s1", 3)).await.unwrap());
    assert!(!store.rotate_refresh(&[9; 32], 21, b"sealed-9", &token(9, "s1", 21), &rotated("s1", 9)).await.unwrap());

    let parent = store.refresh_token(&[1; 32]).await.unwrap().unwrap().token;
    assert_eq!(parent.used_at, Some(20));
    assert_eq!(parent.successor_hash, Some(vec![2; 32]));
    assert_eq!(parent.successor_sealed, Some(b"sealed-2".to_vec()));
    assert_eq!(store.refresh_token(&[2; 32]).await.unwrap().unwrap().token, token(2, "s1", 20));
    assert_eq!(store.refresh_token(&[3; 32]).await.unwrap(), None, "the loser stored nothing");
    assert_eq!(rotation_marks(store).await, vec![2], "only the winner's event");
    let event = &store.audit_tail(1).await.unwrap()[0];
    assert_eq!((event.at, event.family_id.as_deref()), (1_002, Some("s1")));

    // A revoked family's tokens do not rotate.
    assert!(store.revoke_family("s1", 30, "logout").await.unwrap());
    assert!(!store.rotate_refresh(&[2; 32], 31, b"sealed-4", &token(4, "s1", 31), &rotated("s1", 4)).await.unwrap());
    assert_eq!(store.refresh_token(&[2; 32]).await.unwrap().unwrap().token.used_at, None);
    assert_eq!(rotation_marks(store).await, vec![2]);
}

async fn concurrent_rotations_have_one_winner(db: &TestDb) {
    db.store.create_user(&user("u1", "alice", 1)).await.unwrap();
    db.store.create_family(&family("s1", "u1", 10), &token(0, "s1", 10)).await.unwrap();
    let start = Arc::new(tokio::sync::Barrier::new(32));
    let tasks: Vec<_> = (1..=32u8)
        .map(|i| {
            let (store, start) = (db.store.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let won = store.rotate_refresh(&[0; 32], 20, &[i], &token(i, "s1", 20), &rotated("s1", i)).await;
                (i, won)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (i, won) = task.await.unwrap();
        if won.unwrap_or_else(|e| panic!("rotation {i} on {}: {e:?}", db.backend())) {
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "on {}: {winners:?}", db.backend());
    let parent = db.store.refresh_token(&[0; 32]).await.unwrap().unwrap().token;
    assert_eq!(parent.successor_hash, Some(vec![winners[0]; 32]));
    assert_eq!(rotation_marks(&db.store).await, vec![u64::from(winners[0])], "one event, the winner's");
    assert_eq!(parent.successor_sealed, Some(vec![winners[0]]));
    for i in 1..=32u8 {
        let stored = db.store.refresh_token(&[i; 32]).await.unwrap().is_some();
        assert_eq!(stored, i == winners[0], "successor {i}");
    }
}

async fn families_are_revoked_singly_and_per_user(db: &TestDb) {
    let store = &db.store;
    store.create_user(&user("u1", "alice", 1)).await.unwrap();
    store.create_user(&user("u2", "bob", 2)).await.unwrap();
    for (i, (sid, uid)) in
        [("s1", "u1"), ("s2", "u1"), ("s3", "u1"), ("s4", "u2")].into_iter().enumerate()
    {
        let at = 10 + i as i64;
        store.create_family(&family(sid, uid, at), &token(i as u8, sid, at)).await.unwrap();
    }

    assert!(store.revoke_family("s1", 50, "logout").await.unwrap());
    assert!(!store.revoke_family("s1", 51, "logout").await.unwrap(), "already revoked");
    assert!(!store.revoke_family("nope", 51, "logout").await.unwrap());
    let s1 = store.family("s1").await.unwrap().unwrap();
    assert_eq!((s1.revoked_at, s1.revoked_reason.as_deref()), (Some(50), Some("logout")));

    assert_eq!(store.revoke_user_families("u1", 60, "user_disabled").await.unwrap(), 2);
    assert_eq!(store.revoke_user_families("u1", 61, "user_disabled").await.unwrap(), 0);
    let s2 = store.family("s2").await.unwrap().unwrap();
    assert_eq!((s2.revoked_at, s2.revoked_reason.as_deref()), (Some(60), Some("user_disabled")));
    let s1 = store.family("s1").await.unwrap().unwrap();
    assert_eq!(s1.revoked_reason.as_deref(), Some("logout"), "an earlier revocation is kept");
    assert!(store.active_families_of_user("u1", 100).await.unwrap().is_empty());
    assert_eq!(store.active_families_of_user("u2", 100).await.unwrap().len(), 1);
}

async fn consents_add_up_and_are_withdrawn_per_client(db: &TestDb) {
    let store = &db.store;
    assert!(store.consent("u1", "partner").await.unwrap().is_none());
    store.grant_consent("u1", "partner", &["openid", "bookings:read"], 10).await.unwrap();
    store.grant_consent("u1", "partner", &["bookings:read", "bookings:write"], 20).await.unwrap();
    let consent = store.consent("u1", "partner").await.unwrap().unwrap();
    assert_eq!(consent.scopes, ["bookings:read", "bookings:write", "openid"], "the union, sorted, each once");
    assert_eq!(consent.granted_at, 20);
    assert!(consent.covers("openid bookings:write") && !consent.covers("openid users:admin"));

    // Grants racing for one pair both count.
    let grants: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let scope = format!("s{i}");
                store.grant_consent("u2", "planner", &[scope.as_str(), "common"], 30 + i).await
            })
        })
        .collect();
    for grant in grants {
        grant.await.unwrap().unwrap();
    }
    assert_eq!(store.consent("u2", "planner").await.unwrap().unwrap().scopes.len(), 9);
    store.grant_consent("u1", "planner", &["bookings:read"], 40).await.unwrap();

    let listed = store.user_consents("u1").await.unwrap();
    let clients: Vec<_> = listed.iter().map(|c| (c.client_id.as_str(), c.scopes.len())).collect();
    assert_eq!(clients, [("partner", 3), ("planner", 1)]);
    assert!(store.revoke_consent("u1", "partner").await.unwrap());
    assert!(!store.revoke_consent("u1", "partner").await.unwrap(), "nothing left to withdraw");
    assert!(store.consent("u1", "partner").await.unwrap().is_none());
    assert_eq!(store.user_consents("u1").await.unwrap().len(), 1, "the other client's consent stays");
    assert_eq!(store.user_consents("u2").await.unwrap().len(), 1, "and so does another user's");
}

async fn audit_events_are_appended_and_tailed(db: &TestDb) {
    let store = &db.store;
    let events = [
        AuditEvent::new(1_000, AuditKind::UserCreated).user("u1"),
        AuditEvent::new(2_000, AuditKind::LoginSucceeded)
            .user("u1")
            .client("web")
            .family("s1")
            .detail(serde_json::json!({ "scope": "bookings:read" })),
        AuditEvent::new(3_000, AuditKind::KeyActivated).detail(serde_json::json!({ "kid": "k1" })),
    ];
    for event in &events {
        store.append_audit(event).await.unwrap();
    }
    let tail = store.audit_tail(2).await.unwrap();
    assert_eq!(tail.len(), 2);
    assert!(tail[0].id > tail[1].id, "newest first");
    for (stored, expected) in tail.iter().zip([&events[2], &events[1]]) {
        assert_eq!(AuditEvent { id: 0, ..stored.clone() }, *expected);
    }
    assert_eq!(store.audit_tail(10).await.unwrap().len(), 3);
    assert!(store.audit_tail(0).await.unwrap().is_empty());
}

async fn migrating_twice_is_harmless(db: &TestDb) {
    db.store.create_user(&user("u1", "alice", 1)).await.unwrap();
    db.store.migrate().await.unwrap();
    db.store.ping().await.unwrap();
    assert!(db.store.user_by_id("u1").await.unwrap().is_some());
}

#[tokio::test]
async fn an_in_memory_sqlite_database_keeps_its_rows() {
    let store = SqlStore::connect("sqlite::memory:").await.unwrap();
    assert_eq!(store.dialect(), Dialect::Sqlite);
    store.migrate().await.unwrap();
    store.create_user(&user("u1", "alice", 1)).await.unwrap();
    // Every query must reach the same in-memory database.
    for _ in 0..5 {
        assert!(store.user_by_username("alice").await.unwrap().is_some());
    }
}

#[tokio::test]
async fn an_unknown_url_scheme_is_refused() {
    let refused = SqlStore::connect("mysql://localhost/auth").await;
    assert!(matches!(refused, Err(Error::Invalid { .. })), "{refused:?}");
}

#[tokio::test]
async fn a_postgres_that_does_not_answer_is_unavailable_quickly() {
    let started = Instant::now();
    let outcome = SqlStore::connect("postgres://auth@127.0.0.1:1/auth").await;
    assert!(matches!(outcome, Err(Error::StoreUnavailable(_))), "{outcome:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_closed_store_is_unavailable() {
    let db = crate::support::sqlite().await;
    db.store.close().await;
    let outcome = db.store.user_by_id("u1").await;
    assert!(matches!(outcome, Err(Error::StoreUnavailable(_))), "{outcome:?}");
}

fn code(hash: &str, expires_at: i64) -> AuthorizationCodeRecord {
    AuthorizationCodeRecord {
        hash: hash.into(),
        client_id: "booking-spa".into(),
        user_id: "u1".into(),
        redirect_uri: "https://app.example.com/cb".into(),
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        scope: "openid bookings:read".into(),
        nonce: Some("n".into()),
        browser_session_id: Some("b1".into()),
        auth_time: 5,
        amr: vec!["pwd".into()],
        created_at: 10,
        expires_at,
    }
}

async fn a_code_is_taken_once_and_a_replay_is_marked(db: &TestDb) {
    db.store.insert_code(&code("c1", 70)).await.unwrap();
    // Concurrent exchanges: one gets the code, the others see a replay.
    let start = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (store, start) = (db.store.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                store.take_code("c1", 20).await.unwrap()
            })
        })
        .collect();
    let mut fresh = 0;
    for task in tasks {
        match task.await.unwrap() {
            CodeTaken::Fresh(record) => {
                assert_eq!(record, code("c1", 70));
                fresh += 1;
            }
            CodeTaken::Reused { client_id, family_id } => {
                assert_eq!(client_id, "booking-spa");
                assert_eq!(family_id, None, "no session recorded yet");
            }
            CodeTaken::Invalid => panic!("a stored code is never invalid before it expires"),
        }
    }
    assert_eq!(fresh, 1, "on {}", db.backend());
    // The winner records its session and learns that the code was replayed meanwhile.
    assert!(db.store.record_code_family("c1", "s1").await.unwrap());
    assert_eq!(
        db.store.take_code("c1", 21).await.unwrap(),
        CodeTaken::Reused { client_id: "booking-spa".into(), family_id: Some("s1".into()) }
    );
    // A code exchanged once, without a replay, reports none.
    db.store.insert_code(&code("c2", 70)).await.unwrap();
    assert!(matches!(db.store.take_code("c2", 20).await.unwrap(), CodeTaken::Fresh(_)));
    assert!(!db.store.record_code_family("c2", "s2").await.unwrap());
    // Expired or unknown: invalid; purged once past the cut-off.
    db.store.insert_code(&code("c3", 30)).await.unwrap();
    assert_eq!(db.store.take_code("c3", 30).await.unwrap(), CodeTaken::Invalid);
    assert_eq!(db.store.take_code("nope", 20).await.unwrap(), CodeTaken::Invalid);
    assert_eq!(db.store.purge_codes(31).await.unwrap(), 1);
    assert_eq!(db.store.purge_codes(71).await.unwrap(), 2);
}

async fn browser_sessions_live_idle_and_end(db: &TestDb) {
    let session = |hash: &str, id: &str| BrowserSessionRecord {
        hash: hash.into(),
        id: id.into(),
        user_id: "u1".into(),
        auth_time: 100,
        amr: vec!["pwd".into()],
        created_at: 100,
        last_seen_at: 100,
        expires_at: 1000,
    };
    db.store.insert_browser_session(&session("h1", "b1")).await.unwrap();
    db.store.insert_browser_session(&session("h2", "b2")).await.unwrap();
    assert_eq!(db.store.browser_session("h1", 200, 50).await.unwrap(), Some(session("h1", "b1")));
    assert_eq!(db.store.browser_session("h1", 200, 150).await.unwrap(), None, "idle since 100");
    db.store.touch_browser_session("b1", 300).await.unwrap();
    assert!(db.store.browser_session("h1", 300, 250).await.unwrap().is_some(), "used at 300");
    assert_eq!(db.store.browser_session("h1", 1000, 0).await.unwrap(), None, "absolute end");
    assert_eq!(db.store.user_browser_sessions("u1", 400, 0).await.unwrap().len(), 2);
    db.store.link_browser_session_family("b2", "f1").await.unwrap();
    db.store.link_browser_session_family("b2", "f2").await.unwrap();
    assert_eq!(db.store.browser_session_families("b2").await.unwrap(), ["f1", "f2"]);
    assert_eq!(db.store.browser_session_of_family("f2").await.unwrap().as_deref(), Some("b2"));
    assert_eq!(db.store.browser_session_of_family("f3").await.unwrap(), None);
    assert!(db.store.end_browser_session("b1", 400).await.unwrap());
    assert!(!db.store.end_browser_session("b1", 401).await.unwrap(), "ended once");
    assert_eq!(db.store.browser_session("h1", 402, 0).await.unwrap(), None);
    assert_eq!(db.store.end_user_browser_sessions("u1", 403).await.unwrap(), 1);
    assert!(db.store.user_browser_sessions("u1", 404, 0).await.unwrap().is_empty());
    assert_eq!(db.store.purge_browser_sessions(500).await.unwrap(), 2);
}

async fn pushed_requests_are_taken_once_before_they_expire(db: &TestDb) {
    let pushed = |hash: &str, expires_at: i64| PushedRequestRecord {
        hash: hash.into(),
        client_id: "kiosk".into(),
        request: r#"{"response_type":"code"}"#.into(),
        expires_at,
    };
    db.store.insert_pushed_request(&pushed("p1", 160)).await.unwrap();
    db.store.insert_pushed_request(&pushed("p2", 160)).await.unwrap();
    db.store.insert_pushed_request(&pushed("p3", 100)).await.unwrap();
    assert!(matches!(db.store.insert_pushed_request(&pushed("p1", 170)).await, Err(Error::Conflict(_))));
    assert_eq!(db.store.take_pushed_request("p1", 120).await.unwrap(), Some(pushed("p1", 160)));
    assert_eq!(db.store.take_pushed_request("p1", 121).await.unwrap(), None, "taken once");
    assert_eq!(db.store.take_pushed_request("p2", 160).await.unwrap(), None, "expired");
    assert_eq!(db.store.take_pushed_request("p2", 150).await.unwrap(), None, "an expired take still deletes it");
    assert_eq!(db.store.take_pushed_request("nope", 100).await.unwrap(), None);
    assert_eq!(db.store.purge_pushed_requests(101).await.unwrap(), 1);
}
