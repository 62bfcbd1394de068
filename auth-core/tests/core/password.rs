//! Passwords through the public API: hashing, verification, rehash, dummy verify, pool, policy.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

use std::sync::Arc;

use auth_core::Error;
use auth_core::password::{PasswordCheck, PasswordHasher};
use auth_core::spec::PasswordPolicy;

/// Small parameters: these tests are about behaviour, not about the cost.
fn small() -> PasswordPolicy {
    PasswordPolicy { memory_kib: 4096, iterations: 1, ..PasswordPolicy::default() }
}

const VALID: PasswordCheck = PasswordCheck { valid: true, needs_rehash: false };
const INVALID: PasswordCheck = PasswordCheck { valid: false, needs_rehash: false };

#[tokio::test]
async fn round_trip_and_wrong_password() {
    let hasher = PasswordHasher::new(&small(), 2).unwrap();
    let stored = hasher.hash("correct horse battery").await.unwrap();
    assert!(stored.starts_with("$argon2id$v=19$m=4096,t=1,p=1$"), "{stored}");
    assert_eq!(hasher.verify("correct horse battery", Some(&stored)).await.unwrap(), VALID);
    assert_eq!(hasher.verify("correct horse battery ", Some(&stored)).await.unwrap(), INVALID);
    assert_eq!(hasher.verify("Correct horse battery", Some(&stored)).await.unwrap(), INVALID);
    // A fresh salt every time.
    assert_ne!(hasher.hash("correct horse battery").await.unwrap(), stored);
}

#[tokio::test]
async fn default_policy_uses_owasp_parameters() {
    let hasher = PasswordHasher::new(&PasswordPolicy::default(), 1).unwrap();
    let stored = hasher.hash("a long enough passphrase").await.unwrap();
    let fields: Vec<&str> = stored.split('$').collect();
    assert_eq!(fields[..4], ["", "argon2id", "v=19", "m=19456,t=2,p=1"]);
    assert_eq!(fields[4].len(), 22, "16-byte salt in unpadded base64");
    assert_eq!(fields[5].len(), 43, "32-byte tag in unpadded base64");
    assert_eq!(hasher.verify("a long enough passphrase", Some(&stored)).await.unwrap(), VALID);
}

#[tokio::test]
async fn rising_parameters_ask_for_a_rehash() {
    let old = PasswordHasher::new(&small(), 1).unwrap();
    let stored = old.hash("correct horse battery").await.unwrap();
    let risen = PasswordHasher::new(&PasswordPolicy { memory_kib: 8192, ..small() }, 1).unwrap();
    let check = risen.verify("correct horse battery", Some(&stored)).await.unwrap();
    assert_eq!(check, PasswordCheck { valid: true, needs_rehash: true });
    // No rehash is offered on a wrong password, nor by the policy the hash was made with.
    assert_eq!(risen.verify("wrong horse battery", Some(&stored)).await.unwrap(), INVALID);
    assert_eq!(old.verify("correct horse battery", Some(&stored)).await.unwrap(), VALID);
    // More passes count too; the new hash satisfies the risen policy.
    let more_passes = PasswordHasher::new(&PasswordPolicy { iterations: 2, ..small() }, 1).unwrap();
    assert!(more_passes.verify("correct horse battery", Some(&stored)).await.unwrap().needs_rehash);
    let rehashed = risen.hash("correct horse battery").await.unwrap();
    assert_eq!(risen.verify("correct horse battery", Some(&rehashed)).await.unwrap(), VALID);
    // A stronger stored hash is not "weaker": the lower policy leaves it alone.
    assert_eq!(old.verify("correct horse battery", Some(&rehashed)).await.unwrap(), VALID);
}

#[tokio::test]
async fn unknown_user_runs_a_dummy_verification() {
    let hasher = PasswordHasher::new(&small(), 1).unwrap();
    assert_eq!(hasher.verify("correct horse battery", None).await.unwrap(), INVALID);
    assert_eq!(hasher.verify("", None).await.unwrap(), INVALID);
    // It went through the pool like a real verification.
    assert_eq!(hasher.peak_in_flight(), 1);
}

#[tokio::test]
async fn canonically_equivalent_passwords_match() {
    let hasher = PasswordHasher::new(&small(), 1).unwrap();
    let stored = hasher.hash("cr\u{e8}me br\u{fb}l\u{e9}e").await.unwrap();
    let decomposed = "cre\u{300}me bru\u{302}le\u{301}e";
    assert_eq!(hasher.verify(decomposed, Some(&stored)).await.unwrap(), VALID);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_semaphore_bounds_concurrent_hashing() {
    // Larger memory so that each job lasts long enough to overlap with the others.
    let hasher = PasswordHasher::new(&PasswordPolicy { memory_kib: 16_384, ..small() }, 2).unwrap();
    let stored = Arc::new(hasher.hash("correct horse battery").await.unwrap());
    let jobs: Vec<_> = (0..8)
        .map(|i| {
            let (hasher, stored) = (hasher.clone(), Arc::clone(&stored));
            tokio::spawn(async move {
                let password = if i % 2 == 0 { "correct horse battery" } else { "wrong" };
                hasher.verify(password, Some(&stored)).await.unwrap().valid
            })
        })
        .collect();
    let mut valid = 0;
    for job in jobs {
        valid += usize::from(job.await.unwrap());
    }
    assert_eq!(valid, 4);
    assert_eq!(hasher.peak_in_flight(), 2, "eight jobs on two permits run two at a time");
    assert_eq!((hasher.in_flight(), hasher.available_permits()), (0, 2));
}

#[track_caller]
fn assert_refused(hasher: &PasswordHasher, password: &str) {
    match hasher.check_policy(password) {
        Err(Error::Invalid { field, .. }) => assert_eq!(field, "password"),
        other => panic!("{password:?} should be refused, got {other:?}"),
    }
}

#[test]
fn policy_counts_characters_not_bytes() {
    let hasher = PasswordHasher::new(&small(), 1).unwrap();
    assert_refused(&hasher, "");
    assert_refused(&hasher, "1234567");
    hasher.check_policy("12345678").unwrap();
    hasher.check_policy(&"x".repeat(64)).unwrap();
    hasher.check_policy(&"x".repeat(256)).unwrap();
    assert_refused(&hasher, &"x".repeat(257));
    // Multi-byte characters count once: 7 of them (14 bytes) are too few, 8 are enough.
    assert_refused(&hasher, &"\u{e9}".repeat(7));
    hasher.check_policy(&"\u{e9}".repeat(8)).unwrap();
    hasher.check_policy("\u{1F511}\u{1F512}\u{1F513}\u{1F510}\u{1F5DD}\u{1F6AA}\u{1F3E0}\u{2728}").unwrap();
    assert_refused(&hasher, &"\u{1F511}".repeat(257));
    // A decomposed accent counts as the one character it is: 7 of them (14 scalar values) are too
    // few.
    assert_refused(&hasher, &"e\u{301}".repeat(7));
    // No composition rules: spaces, digits only, anything printable.
    hasher.check_policy("        ").unwrap();
    hasher.check_policy("00000000").unwrap();
    let message = hasher.check_policy("short").unwrap_err().to_string();
    assert_eq!(message, "password: must be at least 8 characters long");
}
