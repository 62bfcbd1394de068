//! The issuance paths end to end on a real store: sign-up, password, refresh and client-credentials
//! grants, revocation and user disabling, with an audit event for each.

use std::sync::Arc;

use auth_core::audit::AuditKind;
use auth_core::authority::{Admin, Authority, ClientCredentials, DEFAULT_INVITATION_TTL};
use auth_core::clock::FixedClock;
use auth_core::error::{RefreshError, TokenError};
use auth_core::keys::{KeyRing, MasterKey, RotationPolicy};
use auth_core::password::PasswordHasher;
use auth_core::random::OsEntropy;
use auth_core::spec::Spec;
use std::time::Duration;
use auth_core::Error;
use serde_json::json;

use crate::support::TestDb;

on_both_backends!(
    sign_up_then_password_login_issues_both_tokens,
    a_revoked_client_token_is_denied_until_it_expires_then_forgotten,
    usernames_differing_by_case_or_form_are_one_account,
    an_account_named_before_rfc_8265_still_logs_in,
    wrong_password_and_unknown_user_get_the_same_error,
    refresh_rotates_and_keeps_claims,
    client_credentials_need_the_registered_secret,
    clients_are_held_to_their_grants_and_scopes,
    disabling_a_user_ends_its_sessions,
    revocation_ends_the_session,
    sign_up_checks_claims_and_password_policy,
    invitations_set_claims_once_before_they_expire,
    an_invitation_taken_for_a_failed_sign_up_is_given_back,
    joining_by_invitation_and_admin_changes_reach_the_next_refresh,
    concurrent_claim_changes_all_apply,
    a_claim_default_fills_new_and_existing_users,
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
    fixture_with(db, spec()).await
}

async fn fixture_with(db: &TestDb, spec: Spec) -> Fixture {
    let spec = Arc::new(spec);
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
    let user = f.authority.add_user("Alice", "correct horse battery", tenant("hotel-7")).await.unwrap();
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

/// A user stored before usernames followed RFC 8265, under a name the profile refuses (a symbol,
/// a ligature), still logs in and is found by operators; nobody can sign up with such a name.
async fn an_account_named_before_rfc_8265_still_logs_in(db: &TestDb) {
    let f = fixture(db).await;
    let made = f.authority.add_user("someone", "the right password", tenant("t")).await.unwrap();
    let hash = made.password_hash.clone();
    let mut legacy = crate::support::user("legacy-1", "\u{2605}star fi", START);
    legacy.password_hash = hash;
    auth_core::store::UserStore::create_user(db.store.as_ref(), &legacy).await.unwrap();
    assert!(f.authority.password_grant(WEB, "\u{2605}Star \u{fb01}", "the right password", None).await.is_ok());
    assert_eq!(f.authority.user_by_username("\u{2605}STAR fi").await.unwrap().unwrap().id, "legacy-1");
    let refused = f.authority.add_user("\u{2605}other", "a long password", tenant("t")).await;
    assert!(matches!(refused, Err(Error::Invalid { .. })), "{refused:?}");
}

async fn usernames_differing_by_case_or_form_are_one_account(db: &TestDb) {
    let f = fixture(db).await;
    f.authority.add_user("Ren\u{e9}e", "long enough password", tenant("t")).await.unwrap();
    let again = f.authority.add_user("RENE\u{301}E", "another long password", tenant("t")).await;
    assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");
    assert!(f.authority.password_grant(WEB, "rene\u{301}e", "long enough password", None).await.is_ok());
}

async fn wrong_password_and_unknown_user_get_the_same_error(db: &TestDb) {
    let f = fixture(db).await;
    f.authority.add_user("bob", "the right password", tenant("t")).await.unwrap();
    let wrong = f.authority.password_grant(WEB, "bob", "the wrong password", None).await.unwrap_err();
    let unknown = f.authority.password_grant(WEB, "nobody", "the wrong password", None).await.unwrap_err();
    assert_eq!(wrong.to_string(), unknown.to_string());
    assert_eq!(wrong.code().as_str(), "auth.invalid_credentials");
    assert_eq!(unknown.code().as_str(), "auth.invalid_credentials");
    assert_eq!(kinds(db).await.iter().filter(|k| **k == AuditKind::LoginFailed).count(), 2);
}

async fn refresh_rotates_and_keeps_claims(db: &TestDb) {
    let f = fixture(db).await;
    f.authority.add_user("carol", "carol's password", tenant("clinic-2")).await.unwrap();
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

async fn a_revoked_client_token_is_denied_until_it_expires_then_forgotten(db: &TestDb) {
    let f = fixture(db).await;
    let secret = f.authority.register_client("booking-backend").await.unwrap().unwrap();
    let backend = ClientCredentials { id: "booking-backend", secret: Some(&secret) };
    let grant = f.authority.client_credentials_grant(backend, None).await.unwrap();
    let token = grant.access.token;
    assert!(f.authority.introspect(&token).await.unwrap().is_some());
    assert!(f.authority.revoke_access_token(backend, &token).await.unwrap());
    assert!(!f.authority.revoke_access_token(backend, &token).await.unwrap(), "already revoked");
    assert!(f.authority.introspect(&token).await.unwrap().is_none());
    // Kept while the token could still verify, purged once it has expired.
    assert_eq!(f.authority.purge_revoked_access_tokens().await.unwrap(), 0);
    f.clock.advance_seconds(3600);
    assert_eq!(f.authority.purge_revoked_access_tokens().await.unwrap(), 1);
    assert!(f.authority.introspect(&token).await.unwrap().is_none(), "expired now");
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
    f.authority.add_user("dave", "dave's password", tenant("t")).await.unwrap();
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
    let user = f.authority.add_user("erin", "erin's password", tenant("t")).await.unwrap();
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
    f.authority.add_user("frank", "frank's password", tenant("t")).await.unwrap();
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
    let none = serde_json::Map::new;
    let short = f.authority.sign_up("gina", "short", none(), None).await.unwrap_err();
    assert!(matches!(&short, Error::Invalid { field, .. } if field == "password"), "{short:?}");
    // tenant_id is required and set by administrators: a user can neither omit it nor choose it.
    let missing = f.authority.sign_up("gina", "long enough password", none(), None).await.unwrap_err();
    assert!(matches!(&missing, Error::Invalid { field, .. } if field == "tenant_id"), "{missing:?}");
    let chosen = f.authority.sign_up("gina", "long enough password", tenant("victim"), None).await.unwrap_err();
    assert!(matches!(&chosen, Error::ClaimNotSettable(name) if name == "tenant_id"), "{chosen:?}");
    assert_eq!(chosen.code(), auth_core::Code::InputClaimNotSettable);
    assert!(f.authority.user_by_username("gina").await.unwrap().is_none(), "no account was created");
    // An operator may set it, with the spec's types and names.
    let typed = f.authority.add_user("gina", "long enough password", json!({"tenant_id": 7}).as_object().unwrap().clone()).await.unwrap_err();
    assert!(matches!(&typed, Error::Invalid { field, .. } if field == "tenant_id"), "{typed:?}");
    let extra = f.authority.add_user("gina", "long enough password", json!({"tenant_id": "t", "role": "admin"}).as_object().unwrap().clone()).await.unwrap_err();
    assert!(matches!(&extra, Error::Invalid { field, .. } if field == "role"), "{extra:?}");
    let huge = f.authority.add_user("gina", "long enough password", tenant(&"t".repeat(257))).await.unwrap_err();
    assert!(matches!(&huge, Error::Invalid { field, .. } if field == "tenant_id"), "{huge:?}");
    // 64 characters are allowed and not truncated.
    let long = "p".repeat(64);
    f.authority.add_user("gina", &long, tenant("t")).await.unwrap();
    assert!(f.authority.password_grant(WEB, "gina", &"p".repeat(63), None).await.is_err());
    assert!(f.authority.password_grant(WEB, "gina", &long, None).await.is_ok());
}

async fn invitations_set_claims_once_before_they_expire(db: &TestDb) {
    let f = fixture(db).await;
    let none = serde_json::Map::new;
    let invitation = f.authority.create_invitation(tenant("hotel-7"), None, DEFAULT_INVITATION_TTL, Admin::Client("booking-backend")).await.unwrap();
    assert!(invitation.token.starts_with("inv_") && invitation.token.len() == 47, "{}", invitation.token);
    assert_eq!(invitation.expires_at, START + 7 * 24 * 3600);
    let user = f.authority.sign_up("ivy", "ivy's long password", none(), Some(&invitation.token)).await.unwrap();
    assert_eq!(user.claims, tenant("hotel-7"));
    let grant = f.authority.password_grant(WEB, "ivy", "ivy's long password", None).await.unwrap();
    assert_eq!(f.authority.verify_access_token(&grant.access.token).unwrap().custom["tenant_id"], "hotel-7");
    // Single use.
    let again = f.authority.sign_up("jack", "jack's long password", none(), Some(&invitation.token)).await.unwrap_err();
    assert!(matches!(again, Error::InvalidInvitation), "{again:?}");
    // An invitation does not let the user add authority of their own choosing.
    let other = f.authority.create_invitation(tenant("hotel-7"), None, DEFAULT_INVITATION_TTL, Admin::Operator).await.unwrap();
    let chosen = f.authority.sign_up("jack", "jack's long password", tenant("victim"), Some(&other.token)).await.unwrap_err();
    assert!(matches!(chosen, Error::ClaimNotSettable(_)), "{chosen:?}");
    // Reserved for a username (normalized as usernames are).
    let reserved = f.authority.create_invitation(tenant("t-9"), Some("Kim"), Duration::from_secs(60), Admin::Operator).await.unwrap();
    let wrong = f.authority.sign_up("jack", "jack's long password", none(), Some(&reserved.token)).await.unwrap_err();
    assert!(matches!(wrong, Error::InvalidInvitation), "{wrong:?}");
    f.authority.sign_up("KIM", "kim's long password", none(), Some(&reserved.token)).await.unwrap();
    // Expired, unknown, forged and oversized tokens are all the same refusal.
    let late = f.authority.create_invitation(tenant("t"), None, Duration::from_secs(60), Admin::Operator).await.unwrap();
    f.clock.advance_seconds(60);
    for token in [late.token.as_str(), "inv_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "nope", &"x".repeat(100_000)] {
        let refused = f.authority.sign_up("lee", "lee's long password", none(), Some(token)).await.unwrap_err();
        assert!(matches!(refused, Error::InvalidInvitation), "{refused:?}");
    }
    // Bounds on what an invitation carries.
    let empty = f.authority.create_invitation(none(), None, DEFAULT_INVITATION_TTL, Admin::Operator).await.unwrap_err();
    assert!(matches!(&empty, Error::Invalid { field, .. } if field == "claims"), "{empty:?}");
    let forever = f.authority.create_invitation(tenant("t"), None, Duration::from_secs(31 * 24 * 3600), Admin::Operator).await.unwrap_err();
    assert!(matches!(&forever, Error::Invalid { field, .. } if field == "expires_in"), "{forever:?}");
    let events = kinds(db).await;
    assert_eq!(events.iter().filter(|k| **k == AuditKind::InvitationCreated).count(), 4);
    assert_eq!(events.iter().filter(|k| **k == AuditKind::InvitationUsed).count(), 2);
}

async fn an_invitation_taken_for_a_failed_sign_up_is_given_back(db: &TestDb) {
    let f = fixture(db).await;
    let none = serde_json::Map::new;
    f.authority.add_user("taken", "a long password", tenant("t")).await.unwrap();
    let invitation = f.authority.create_invitation(tenant("hotel-7"), None, DEFAULT_INVITATION_TTL, Admin::Operator).await.unwrap();
    let conflict = f.authority.sign_up("Taken", "another long password", none(), Some(&invitation.token)).await.unwrap_err();
    assert!(matches!(conflict, Error::Conflict(_)), "{conflict:?}");
    let user = f.authority.sign_up("fresh", "another long password", none(), Some(&invitation.token)).await.unwrap();
    assert_eq!(user.claims, tenant("hotel-7"));
}

async fn joining_by_invitation_and_admin_changes_reach_the_next_refresh(db: &TestDb) {
    let f = fixture(db).await;
    let user = f.authority.add_user("mia", "mia's long password", tenant("old-hotel")).await.unwrap();
    let grant = f.authority.password_grant(WEB, "mia", "mia's long password", None).await.unwrap();
    let invitation = f.authority.create_invitation(tenant("new-hotel"), None, DEFAULT_INVITATION_TTL, Admin::Operator).await.unwrap();
    let joined = f.authority.accept_invitation(&user.id, &invitation.token).await.unwrap();
    assert_eq!(joined.claims, tenant("new-hotel"));
    assert!(matches!(f.authority.accept_invitation(&user.id, &invitation.token).await, Err(Error::InvalidInvitation)));
    let refreshed = f.authority.refresh_grant(WEB, grant.refresh_token.as_deref().unwrap(), None).await.unwrap();
    assert_eq!(f.authority.verify_access_token(&refreshed.access.token).unwrap().custom["tenant_id"], "new-hotel");

    // A merge patch: set one claim; a required claim cannot be removed; undeclared ones are refused.
    let changed = f.authority.set_user_claims(&user.id, &tenant("third"), Admin::Client("booking-backend")).await.unwrap();
    assert_eq!(changed.claims, tenant("third"));
    let removed = f.authority.set_user_claims(&user.id, json!({"tenant_id": null}).as_object().unwrap(), Admin::Operator).await.unwrap_err();
    assert!(matches!(&removed, Error::Invalid { field, .. } if field == "tenant_id"), "{removed:?}");
    let undeclared = f.authority.set_user_claims(&user.id, json!({"role": "admin"}).as_object().unwrap(), Admin::Operator).await.unwrap_err();
    assert!(matches!(&undeclared, Error::Invalid { field, .. } if field == "role"), "{undeclared:?}");
    let nobody = f.authority.set_user_claims("no-such-user", &tenant("t"), Admin::Operator).await.unwrap_err();
    assert!(matches!(nobody, Error::NotFound(_)), "{nobody:?}");
    let refreshed = f.authority.refresh_grant(WEB, refreshed.refresh_token.as_deref().unwrap(), None).await.unwrap();
    assert_eq!(f.authority.verify_access_token(&refreshed.access.token).unwrap().custom["tenant_id"], "third");
    let events = db.dyn_store().audit_tail(100).await.unwrap();
    let changes: Vec<_> = events.iter().filter(|e| e.kind == AuditKind::UserClaimsChanged).map(|e| e.detail.clone()).collect();
    assert_eq!(changes, [json!({ "claims": ["tenant_id"], "by": "client:booking-backend" })]);
}

async fn concurrent_claim_changes_all_apply(db: &TestDb) {
    // A spec with two optional claims set by administrators, changed at once from many tasks:
    // each change re-reads and retries, so none is lost.
    let mut spec = spec();
    for name in ["a", "b", "c", "d"] {
        spec.claims.insert(name.to_owned(), auth_core::spec::ClaimSpec::new(auth_core::spec::ClaimType::String, false));
    }
    let f = fixture_with(db, spec).await;
    let user = f.authority.add_user("nia", "nia's long password", tenant("t")).await.unwrap();
    let authority = Arc::new(f.authority);
    let tasks: Vec<_> = ["a", "b", "c", "d"]
        .into_iter()
        .map(|name| {
            let authority = authority.clone();
            let id = user.id.clone();
            tokio::spawn(async move {
                let change = json!({ name: name }).as_object().unwrap().clone();
                authority.set_user_claims(&id, &change, Admin::Operator).await.unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let claims = authority.user(&user.id).await.unwrap().unwrap().claims;
    assert_eq!(serde_json::Value::Object(claims), json!({ "tenant_id": "t", "a": "a", "b": "b", "c": "c", "d": "d" }));
}

async fn a_claim_default_fills_new_and_existing_users(db: &TestDb) {
    let f = fixture(db).await;
    let old = f.authority.add_user("oli", "oli's long password", tenant("t")).await.unwrap();
    // The spec gains a required claim with a default after oli signed up.
    let mut with_default = spec();
    let mut tier = auth_core::spec::ClaimSpec::new(auth_core::spec::ClaimType::String, true);
    tier.default = Some(json!("standard"));
    with_default.claims.insert("tier".to_owned(), tier);
    let mut bare = with_default.clone();
    bare.claims.get_mut("tier").unwrap().default = None;
    with_default.validate().unwrap();
    let f = fixture_with(db, with_default).await;
    assert_eq!(f.authority.users_lacking_required_claims().await.unwrap(), 0, "the default fills it");
    let grant = f.authority.password_grant(WEB, "oli", "oli's long password", None).await.unwrap();
    assert_eq!(f.authority.verify_access_token(&grant.access.token).unwrap().custom["tier"], "standard");
    let new = f.authority.add_user("pam", "pam's long password", tenant("t")).await.unwrap();
    assert_eq!(new.claims["tier"], "standard");
    assert!(!old.claims.contains_key("tier"));
    // Without a default, operators are told how many users lack it.
    let f = fixture_with(db, bare).await;
    assert_eq!(f.authority.users_lacking_required_claims().await.unwrap(), 1);
    // A default of the wrong type is a spec error.
    let mut wrong = spec();
    let mut claim = auth_core::spec::ClaimSpec::new(auth_core::spec::ClaimType::Integer, false);
    claim.default = Some(json!("seven"));
    wrong.claims.insert("floor".to_owned(), claim);
    assert!(wrong.validate().is_err());
}
