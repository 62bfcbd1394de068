//! The issuance paths end to end on a real store: sign-up, password, refresh and client-credentials
//! grants, revocation and user disabling, with an audit event for each.

use std::sync::Arc;

use auth_core::audit::AuditKind;
use auth_core::authority::{Authority, ClientCredentials};
use auth_core::clock::FixedClock;
use auth_core::error::{RefreshError, TokenError};
use auth_core::keys::{KeyRing, MasterKey, RotationPolicy};
use auth_core::password::PasswordHasher;
use auth_core::random::OsEntropy;
use auth_core::spec::Spec;
use auth_core::Error;
use serde_json::json;

use crate::support::TestDb;

on_both_backends!(
    sign_up_then_password_login_issues_both_tokens,
    usernames_differing_by_case_or_form_are_one_account,
    wrong_password_and_unknown_user_get_the_same_error,
    refresh_rotates_and_keeps_claims,
    client_credentials_need_the_registered_secret,
    clients_are_held_to_their_grants_and_scopes,
    disabling_a_user_ends_its_sessions,
    revocation_ends_the_session,
    sign_up_checks_claims_and_password_policy,
);

const START: i64 = 1_750_000_000;
const WEB: ClientCredentials<'static> = ClientCredentials { id: "booking-web", secret: None };

struct Fixture {
    authority: Authority,
    clock: Arc<FixedClock>,
}

/// The booking spec with cheap argon2 parameters (the defaults are covered by the password tests).
fn spec() -> Spec {
    let mut spec = Spec::parse(include_str!("../../../fixtures/specs/booking.toml")).unwrap();
    spec.passwords.memory_kib = 4096;
    spec.passwords.iterations = 1;
    spec.validate().unwrap();
    spec
}

async fn fixture(db: &TestDb) -> Fixture {
    let spec = Arc::new(spec());
    let clock = Arc::new(FixedClock::at_seconds(START));
    let entropy = Arc::new(OsEntropy::new());
    let keys = Arc::new(KeyRing::new(
        db.dyn_store(),
        MasterKey::from_bytes(&[1u8; 32]).unwrap(),
        RotationPolicy::from_spec(&spec),
        clock.clone(),
        entropy.clone(),
    ));
    keys.rotate().await.unwrap();
    let passwords = Arc::new(PasswordHasher::new(&spec.passwords, 2).unwrap());
    let authority = Authority::new(spec, db.dyn_store(), clock.clone(), entropy, keys, passwords);
    Fixture { authority, clock }
}

fn tenant(t: &str) -> serde_json::Map<String, serde_json::Value> {
    json!({ "tenant_id": t }).as_object().unwrap().clone()
}

async fn kinds(db: &TestDb) -> Vec<AuditKind> {
    db.dyn_store().audit_tail(100).await.unwrap().into_iter().rev().map(|e| e.kind).collect()
}

async fn sign_up_then_password_login_issues_both_tokens(db: &TestDb) {
    let f = fixture(db).await;
    let user = f.authority.sign_up("Alice", "correct horse battery", tenant("hotel-7")).await.unwrap();
    assert_eq!(user.username, "alice");
    assert!(user.password_hash.starts_with("$argon2id$"));
    let grant = f.authority.password_grant(WEB, "alice", "correct horse battery", Some("bookings:write")).await.unwrap();
    assert_eq!(grant.scope, "bookings:write");
    let claims = f.authority.verify_access_token(&grant.access.token).unwrap();
    assert_eq!(claims.sub, user.id);
    assert_eq!(claims.client_id, "booking-web");
    assert_eq!(claims.custom["tenant_id"], "hotel-7");
    assert_eq!(claims.exp, START + 900);
    assert!(claims.sid.is_some());
    let refresh = grant.refresh_token.unwrap();
    assert!(refresh.len() >= 43, "at least 256 bits");
    assert!(kinds(db).await.ends_with(&[AuditKind::UserCreated, AuditKind::LoginSucceeded]));
}

async fn usernames_differing_by_case_or_form_are_one_account(db: &TestDb) {
    let f = fixture(db).await;
    f.authority.sign_up("Ren\u{e9}e", "long enough password", tenant("t")).await.unwrap();
    let again = f.authority.sign_up("RENE\u{301}E", "another long password", tenant("t")).await;
    assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");
    assert!(f.authority.password_grant(WEB, "rene\u{301}e", "long enough password", None).await.is_ok());
}

async fn wrong_password_and_unknown_user_get_the_same_error(db: &TestDb) {
    let f = fixture(db).await;
    f.authority.sign_up("bob", "the right password", tenant("t")).await.unwrap();
    let wrong = f.authority.password_grant(WEB, "bob", "the wrong password", None).await.unwrap_err();
    let unknown = f.authority.password_grant(WEB, "nobody", "the wrong password", None).await.unwrap_err();
    assert_eq!(wrong.to_string(), unknown.to_string());
    assert_eq!(wrong.code().as_str(), "auth.invalid_credentials");
    assert_eq!(unknown.code().as_str(), "auth.invalid_credentials");
    assert_eq!(kinds(db).await.iter().filter(|k| **k == AuditKind::LoginFailed).count(), 2);
}

async fn refresh_rotates_and_keeps_claims(db: &TestDb) {
    let f = fixture(db).await;
    f.authority.sign_up("carol", "carol's password", tenant("clinic-2")).await.unwrap();
    let first = f.authority.password_grant(WEB, "carol", "carol's password", None).await.unwrap();
    f.clock.advance_seconds(600);
    let second = f.authority.refresh_grant(WEB, first.refresh_token.as_deref().unwrap(), None).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    let claims = f.authority.verify_access_token(&second.access.token).unwrap();
    assert_eq!(claims.custom["tenant_id"], "clinic-2");
    assert_eq!(claims.scope, "bookings:read bookings:write");
    assert_eq!(claims.iat, START + 600);
    let first_claims = f.authority.verify_access_token(&first.access.token).unwrap();
    assert_eq!(claims.sid, first_claims.sid, "same session");
    // A narrower scope may be asked for; a wider one may not.
    let narrow = f.authority.refresh_grant(WEB, second.refresh_token.as_deref().unwrap(), Some("bookings:read")).await.unwrap();
    assert_eq!(narrow.scope, "bookings:read");
    assert!(kinds(db).await.contains(&AuditKind::RefreshRotated));
}

async fn client_credentials_need_the_registered_secret(db: &TestDb) {
    let f = fixture(db).await;
    let backend = |secret| ClientCredentials { id: "booking-backend", secret };
    assert!(matches!(f.authority.client_credentials_grant(backend(Some("guess")), None).await, Err(Error::InvalidClient)));
    let secret = f.authority.register_client("booking-backend").await.unwrap().unwrap();
    assert!(matches!(f.authority.client_credentials_grant(backend(None), None).await, Err(Error::InvalidClient)));
    assert!(matches!(f.authority.client_credentials_grant(backend(Some("wrong")), None).await, Err(Error::InvalidClient)));
    let grant = f.authority.client_credentials_grant(backend(Some(&secret)), None).await.unwrap();
    assert!(grant.refresh_token.is_none());
    let claims = f.authority.verify_access_token(&grant.access.token).unwrap();
    assert_eq!(claims.sub, "booking-backend");
    assert_eq!(claims.scope, "bookings:read");
    assert!(claims.sid.is_none());
    let stored = db.dyn_store().client("booking-backend").await.unwrap().unwrap();
    assert_ne!(stored.secret_hash.as_deref(), Some(secret.as_str()), "the secret is stored hashed");
    assert!(kinds(db).await.ends_with(&[AuditKind::ClientCreated, AuditKind::ClientCredentialsIssued]));
}

async fn clients_are_held_to_their_grants_and_scopes(db: &TestDb) {
    let f = fixture(db).await;
    f.authority.sign_up("dave", "dave's password", tenant("t")).await.unwrap();
    let unknown = ClientCredentials { id: "nope", secret: None };
    assert!(matches!(f.authority.password_grant(unknown, "dave", "dave's password", None).await, Err(Error::InvalidClient)));
    assert!(matches!(f.authority.client_credentials_grant(WEB, None).await, Err(Error::UnauthorizedGrant(_))));
    let err = f.authority.password_grant(WEB, "dave", "dave's password", Some("admin")).await.unwrap_err();
    assert_eq!(err.code().as_str(), "auth.invalid_scope");
    // A public client sending a secret is refused rather than silently accepted.
    let with_secret = ClientCredentials { id: "booking-web", secret: Some("x") };
    assert!(matches!(f.authority.password_grant(with_secret, "dave", "dave's password", None).await, Err(Error::InvalidClient)));
}

async fn disabling_a_user_ends_its_sessions(db: &TestDb) {
    let f = fixture(db).await;
    let user = f.authority.sign_up("erin", "erin's password", tenant("t")).await.unwrap();
    let a = f.authority.password_grant(WEB, "erin", "erin's password", None).await.unwrap();
    let b = f.authority.password_grant(WEB, "erin", "erin's password", None).await.unwrap();
    assert_eq!(f.authority.disable_user(&user.id).await.unwrap(), 2);
    for grant in [a, b] {
        let err = f.authority.refresh_grant(WEB, grant.refresh_token.as_deref().unwrap(), None).await.unwrap_err();
        assert!(matches!(err, Error::Refresh(RefreshError::Revoked)), "{err:?}");
    }
    assert!(matches!(
        f.authority.password_grant(WEB, "erin", "erin's password", None).await,
        Err(Error::InvalidCredentials)
    ));
    assert!(kinds(db).await.contains(&AuditKind::UserDisabled));
}

async fn revocation_ends_the_session(db: &TestDb) {
    let f = fixture(db).await;
    f.authority.sign_up("frank", "frank's password", tenant("t")).await.unwrap();
    let grant = f.authority.password_grant(WEB, "frank", "frank's password", None).await.unwrap();
    let token = grant.refresh_token.unwrap();
    // Another client cannot revoke it (RFC 7009 section 2.1).
    let secret = f.authority.register_client("booking-backend").await.unwrap().unwrap();
    let backend = ClientCredentials { id: "booking-backend", secret: Some(&secret) };
    let err = f.authority.revoke_refresh_token(backend, &token).await.unwrap_err();
    assert!(matches!(err, Error::Refresh(RefreshError::WrongClient)), "{err:?}");
    assert!(f.authority.revoke_refresh_token(WEB, &token).await.unwrap());
    assert!(!f.authority.revoke_refresh_token(WEB, "not-a-token").await.unwrap());
    let err = f.authority.refresh_grant(WEB, &token, None).await.unwrap_err();
    assert!(matches!(err, Error::Refresh(RefreshError::Revoked)), "{err:?}");
    assert!(kinds(db).await.contains(&AuditKind::FamilyRevoked));
    assert_eq!(f.authority.verify_access_token("a.b"), Err(TokenError::Malformed));
}

async fn sign_up_checks_claims_and_password_policy(db: &TestDb) {
    let f = fixture(db).await;
    let short = f.authority.sign_up("gina", "short", tenant("t")).await.unwrap_err();
    assert!(matches!(&short, Error::Invalid { field, .. } if field == "password"), "{short:?}");
    let missing = f.authority.sign_up("gina", "long enough password", serde_json::Map::new()).await.unwrap_err();
    assert!(matches!(&missing, Error::Invalid { field, .. } if field == "tenant_id"), "{missing:?}");
    let typed = f.authority.sign_up("gina", "long enough password", json!({"tenant_id": 7}).as_object().unwrap().clone()).await.unwrap_err();
    assert!(matches!(&typed, Error::Invalid { field, .. } if field == "tenant_id"), "{typed:?}");
    let extra = f.authority.sign_up("gina", "long enough password", json!({"tenant_id": "t", "role": "admin"}).as_object().unwrap().clone()).await.unwrap_err();
    assert!(matches!(&extra, Error::Invalid { field, .. } if field == "role"), "{extra:?}");
    // 64 characters are allowed and not truncated.
    let long = "p".repeat(64);
    f.authority.sign_up("gina", &long, tenant("t")).await.unwrap();
    assert!(f.authority.password_grant(WEB, "gina", &"p".repeat(63), None).await.is_err());
    assert!(f.authority.password_grant(WEB, "gina", &long, None).await.is_ok());
}
