//! Refresh-family rules on a real store, on SQLite and PostgreSQL.

use std::collections::HashSet;
use std::sync::Arc;

use auth_core::audit::{AuditEvent, AuditKind};
use auth_core::clock::{Clock, FixedClock};
use auth_core::error::RefreshError;
use auth_core::random::OsEntropy;
use auth_core::refresh::{RefreshFamilies, Rotation};
use auth_core::spec::{Seconds, TokenPolicy};
use auth_core::store::Store;
use auth_core::{Error, Result};

use crate::support::TestDb;

on_both_backends!(
    each_refresh_rotates_the_token,
    an_unused_token_expires_when_idle,
    a_session_ends_at_its_absolute_expiry,
    another_client_cannot_refresh,
    unknown_and_malformed_tokens_are_refused,
    a_retry_within_the_grace_gets_the_same_successor,
    reuse_after_the_grace_revokes_the_family,
    concurrent_refreshes_of_one_token_yield_one_successor,
    revocation_ends_sessions,
);

const START: i64 = 1_700_000_000;
const IDLE: i64 = 3_600;
const ABSOLUTE: i64 = 4 * 3_600;
const GRACE: i64 = 10;
const CLIENT: &str = "booking-web";
const SCOPE: &str = "bookings:read";

struct Fixture {
    clock: Arc<FixedClock>,
    families: RefreshFamilies,
    store: Arc<dyn Store>,
}

async fn fixture(db: &TestDb) -> Fixture {
    let store = db.dyn_store();
    store.create_user(&crate::support::user("u1", "alice", START)).await.unwrap();
    let clock = Arc::new(FixedClock::at_seconds(START));
    let policy = TokenPolicy {
        refresh_idle_ttl: Seconds(IDLE as u64),
        refresh_absolute_ttl: Seconds(ABSOLUTE as u64),
        refresh_reuse_grace: Seconds(GRACE as u64),
        ..TokenPolicy::default()
    };
    let families =
        RefreshFamilies::new(store.clone(), clock.clone(), Arc::new(OsEntropy::new()), policy);
    Fixture { clock, families, store }
}

impl Fixture {
    async fn login(&self) -> (String, String) {
        let (family, token) = self.families.start(Some("u1"), CLIENT, SCOPE).await.unwrap();
        (family.id, token)
    }

    async fn audit(&self) -> Vec<AuditEvent> {
        self.store.audit_tail(1_000).await.unwrap()
    }

    async fn kinds(&self) -> Vec<AuditKind> {
        let mut kinds: Vec<AuditKind> = self.audit().await.into_iter().map(|e| e.kind).collect();
        kinds.reverse();
        kinds
    }
}

#[track_caller]
fn refusal(outcome: Result<Rotation>) -> RefreshError {
    match outcome {
        Err(Error::Refresh(refusal)) => refusal,
        other => panic!("expected a refresh refusal, got {other:?}"),
    }
}

async fn each_refresh_rotates_the_token(db: &TestDb) {
    let f = fixture(db).await;
    let (family, found) = f.families.start(Some("u1"), CLIENT, SCOPE).await.unwrap();
    assert_eq!(family.absolute_expires_at, START + ABSOLUTE);
    assert_eq!((family.user_id.as_deref(), family.client_id.as_str()), (Some("u1"), CLIENT));
    assert_eq!(found.len(), 43, "256 bits in base64url");

    let mut tokens = vec![found];
    for _ in 0..3 {
        f.clock.advance_seconds(60);
        let rotation = f.families.rotate(tokens.last().unwrap(), CLIENT).await.unwrap();
        assert!(!rotation.retried);
        assert_eq!(rotation.family.id, family.id);
        tokens.push(rotation.refresh_token);
    }
    assert_eq!(tokens.iter().collect::<HashSet<_>>().len(), tokens.len(), "every successor is new");

    let audit = f.audit().await;
    assert_eq!(f.kinds().await, [AuditKind::RefreshRotated; 3]);
    assert!(audit.iter().all(|e| e.family_id.as_deref() == Some(family.id.as_str())));
    assert!(audit.iter().all(|e| e.user_id.as_deref() == Some("u1")));
    let recorded = serde_json::to_string(&audit).unwrap();
    for token in &tokens {
        assert!(!recorded.contains(token.as_str()), "a token value reached the audit log");
    }
}

async fn an_unused_token_expires_when_idle(db: &TestDb) {
    let f = fixture(db).await;
    let (_, mut token) = f.login().await;
    // Each use restarts the idle window.
    for _ in 0..3 {
        f.clock.advance_seconds(IDLE - 1);
        token = f.families.rotate(&token, CLIENT).await.unwrap().refresh_token;
    }
    f.clock.advance_seconds(IDLE);
    assert_eq!(refusal(f.families.rotate(&token, CLIENT).await), RefreshError::Expired);
}

async fn a_session_ends_at_its_absolute_expiry(db: &TestDb) {
    let f = fixture(db).await;
    let (sid, mut token) = f.login().await;
    // Used often enough never to idle out, the session still ends at START + ABSOLUTE.
    let step = IDLE / 2;
    while f.clock.now() + step < START + ABSOLUTE {
        f.clock.advance_seconds(step);
        token = f.families.rotate(&token, CLIENT).await.unwrap().refresh_token;
    }
    let hash = ring::digest::digest(&ring::digest::SHA256, &decode(&token));
    let record = f.store.refresh_token(hash.as_ref()).await.unwrap().unwrap().token;
    assert_eq!(record.idle_expires_at, START + ABSOLUTE, "the idle expiry is capped");

    f.clock.set_millis((START + ABSOLUTE) * 1000);
    assert_eq!(refusal(f.families.rotate(&token, CLIENT).await), RefreshError::Expired);
    assert!(f.families.families_of_user("u1").await.unwrap().is_empty());
    assert!(
        f.store.family(&sid).await.unwrap().unwrap().revoked_at.is_none(),
        "expired, not revoked"
    );
}

async fn another_client_cannot_refresh(db: &TestDb) {
    let f = fixture(db).await;
    let (_, token) = f.login().await;
    assert_eq!(refusal(f.families.rotate(&token, "other-app").await), RefreshError::WrongClient);
    // The refusal used nothing up.
    assert!(!f.families.rotate(&token, CLIENT).await.unwrap().retried);
}

async fn unknown_and_malformed_tokens_are_refused(db: &TestDb) {
    let f = fixture(db).await;
    let (_, token) = f.login().await;
    let unknown = format!("{}A", "x".repeat(42));
    let padded = format!("{token}=");
    for presented in ["", "short", &unknown, &padded, &"a".repeat(5000), "not a token at all !!"] {
        let refused = refusal(f.families.rotate(presented, CLIENT).await);
        assert_eq!(refused, RefreshError::Unknown, "{presented:?}");
    }
}

async fn a_retry_within_the_grace_gets_the_same_successor(db: &TestDb) {
    let f = fixture(db).await;
    let (sid, token) = f.login().await;
    let first = f.families.rotate(&token, CLIENT).await.unwrap();

    f.clock.advance_seconds(GRACE);
    let retry = f.families.rotate(&token, CLIENT).await.unwrap();
    assert!(retry.retried);
    assert_eq!(retry.refresh_token, first.refresh_token);
    assert!(f.store.family(&sid).await.unwrap().unwrap().revoked_at.is_none(), "no logout");

    // The successor works as usual.
    let next = f.families.rotate(&first.refresh_token, CLIENT).await.unwrap();
    assert!(!next.retried);
    assert_eq!(
        f.kinds().await,
        [AuditKind::RefreshRotated, AuditKind::RefreshRetried, AuditKind::RefreshRotated]
    );
}

async fn reuse_after_the_grace_revokes_the_family(db: &TestDb) {
    let f = fixture(db).await;
    let (sid, token) = f.login().await;
    let (other_sid, other_token) = f.login().await;
    let successor = f.families.rotate(&token, CLIENT).await.unwrap().refresh_token;

    f.clock.advance_seconds(GRACE + 1);
    assert_eq!(refusal(f.families.rotate(&token, CLIENT).await), RefreshError::Reused);
    let family = f.store.family(&sid).await.unwrap().unwrap();
    assert_eq!(family.revoked_reason.as_deref(), Some("reuse_detected"));
    assert_eq!(family.revoked_at, Some(START + GRACE + 1));

    // Thief and victim alike are logged out of that session, and only of that one.
    assert_eq!(refusal(f.families.rotate(&successor, CLIENT).await), RefreshError::Revoked);
    assert_eq!(refusal(f.families.rotate(&token, CLIENT).await), RefreshError::Revoked);
    assert!(f.families.rotate(&other_token, CLIENT).await.is_ok());
    let sessions = f.families.families_of_user("u1").await.unwrap();
    assert_eq!(sessions.into_iter().map(|s| s.id).collect::<Vec<_>>(), [other_sid]);

    let audit = f.audit().await;
    let detected: Vec<&AuditEvent> =
        audit.iter().filter(|e| e.kind == AuditKind::RefreshReuseDetected).collect();
    assert_eq!(detected.len(), 1);
    assert_eq!(detected[0].family_id.as_deref(), Some(sid.as_str()));
    assert_eq!(detected[0].user_id.as_deref(), Some("u1"));
    assert_eq!(detected[0].client_id.as_deref(), Some(CLIENT));
    assert_eq!(detected[0].at, (START + GRACE + 1) * 1000);
    assert_eq!(detected[0].detail["reason"], "reuse_detected");
}

async fn concurrent_refreshes_of_one_token_yield_one_successor(db: &TestDb) {
    let f = fixture(db).await;
    let (sid, token) = f.login().await;
    let families = Arc::new(f.families.clone());
    let start = Arc::new(tokio::sync::Barrier::new(32));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (families, token, start) = (families.clone(), token.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                families.rotate(&token, CLIENT).await
            })
        })
        .collect();
    let mut successors = HashSet::new();
    let mut retried = 0;
    for task in tasks {
        let rotation = task.await.unwrap().unwrap_or_else(|e| panic!("on {}: {e:?}", db.backend()));
        successors.insert(rotation.refresh_token);
        retried += usize::from(rotation.retried);
    }
    assert_eq!(successors.len(), 1, "on {}: {successors:?}", db.backend());
    assert_eq!(retried, 31, "exactly one call rotated");
    assert!(f.store.family(&sid).await.unwrap().unwrap().revoked_at.is_none());

    let successor = successors.into_iter().next().unwrap();
    assert!(!f.families.rotate(&successor, CLIENT).await.unwrap().retried);
}

async fn revocation_ends_sessions(db: &TestDb) {
    let f = fixture(db).await;
    let (sid, token) = f.login().await;
    let (_, second) = f.login().await;
    let (_, third) = f.login().await;
    assert_eq!(f.families.families_of_user("u1").await.unwrap().len(), 3);

    // RFC 7009: the token's session ends; revoking again or an unknown token is not an error.
    assert_eq!(f.families.family_of(&token).await.unwrap().map(|s| s.id), Some(sid.clone()));
    assert!(f.families.revoke_token(&token).await.unwrap());
    assert!(!f.families.revoke_token(&token).await.unwrap());
    assert!(!f.families.revoke_token("garbage").await.unwrap());
    assert_eq!(refusal(f.families.rotate(&token, CLIENT).await), RefreshError::Revoked);

    assert_eq!(f.families.revoke_user("u1", "logout_everywhere").await.unwrap(), 2);
    assert_eq!(refusal(f.families.rotate(&second, CLIENT).await), RefreshError::Revoked);
    assert_eq!(refusal(f.families.rotate(&third, CLIENT).await), RefreshError::Revoked);
    assert!(f.families.families_of_user("u1").await.unwrap().is_empty());
    assert!(!f.families.revoke_family(&sid, "logout").await.unwrap());

    let audit = f.audit().await;
    let revoked: Vec<&AuditEvent> =
        audit.iter().filter(|e| e.kind == AuditKind::FamilyRevoked).collect();
    assert_eq!(revoked.len(), 2);
    assert_eq!(revoked[1].family_id.as_deref(), Some(sid.as_str()));
    assert_eq!(revoked[1].detail["reason"], "token_revoked");
    assert_eq!(revoked[0].user_id.as_deref(), Some("u1"));
    assert_eq!(revoked[0].detail["sessions"], 2);
}

fn decode(token: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).unwrap()
}
