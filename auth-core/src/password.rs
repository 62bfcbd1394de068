//! Passwords: argon2id hashes in PHC strings, verified on a bounded share of tokio's blocking pool.
//!
//! Invariants:
//! - Hashing and verification never run on the async workers: each one takes a permit of a
//!   semaphore of `max_concurrent` permits, then runs on the blocking pool while holding it. A login
//!   flood therefore queues for permits instead of occupying every thread (or `max_concurrent` ×
//!   `memory_kib` of memory at most), and token verification keeps its workers. A caller that gives
//!   up (e.g. a request timeout) leaves the queue; a job already running finishes with its permit.
//! - An unknown user costs the same as a known one: [`PasswordHasher::verify`] with no stored hash
//!   verifies against a dummy hash made at construction with the same parameters, then says
//!   "invalid".
//! - Passwords are compared as text, not as bytes: both hashing and verification first bring the
//!   input to Unicode NFC, so the same password typed on systems that compose accents differently
//!   still matches. NFC only merges canonically equivalent sequences (the same text); the
//!   compatibility forms of NFKC, which would merge distinct characters, are not applied.
//! - Nothing is truncated, and the policy counts characters (Unicode scalar values after NFC), never
//!   bytes (ASVS 2.1.1-2.1.4, NIST SP 800-63B 5.1.1.2). There are no composition rules.
//! - A malformed stored hash is an [`Error::Password`], never a panic and never "valid".
//! - argon2's working memory (`memory_kib`, 19 MiB by default) is reused: each running job takes a
//!   buffer from a pool of at most `max_concurrent`, instead of allocating and faulting in fresh
//!   pages per hash. That bounds the memory a login flood can leave behind in the allocator and
//!   saves the page-fault time of every hash. A buffer holds only argon2's internal state, which
//!   the next hash overwrites.

use std::sync::{Arc, Mutex};
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::password_hash::{self, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::Semaphore;
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

use crate::random::{Entropy, OsEntropy};
use crate::spec::PasswordPolicy;
use crate::{Error, Result};

/// Salt length in bytes (the PHC and argon2 recommendation).
const SALT_BYTES: usize = 16;
/// Tag length in bytes: argon2's default, below which a stored hash counts as weaker.
const OUTPUT_BYTES: usize = 32;

/// The outcome of [`PasswordHasher::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordCheck {
    /// The password matches the stored hash.
    pub valid: bool,
    /// The password matched, but the stored hash is weaker than the policy (older algorithm or
    /// version, lower memory, passes, lanes, tag or salt length): store a fresh
    /// [`PasswordHasher::hash`] of the password now that it is known. Always `false` when invalid.
    pub needs_rehash: bool,
}

/// argon2id hashing and verification with the spec's parameters on a bounded blocking pool.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
    permits: Arc<Semaphore>,
}

#[derive(Debug)]
struct Inner {
    argon2: Argon2<'static>,
    policy: PasswordPolicy,
    /// The hash of a random password, verified against when the user is unknown.
    dummy_hash: String,
    entropy: OsEntropy,
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
    /// Reusable argon2 working memory, one buffer per job that ran at once, at most
    /// `max_buffers`.
    scratch: Mutex<Vec<Vec<Block>>>,
    max_buffers: usize,
}

impl PasswordHasher {
    /// A hasher with the policy's argon2id parameters, running at most `max_concurrent` hashes at
    /// once (the number of cores is a good value). Computes the dummy hash, so this takes as long
    /// as one hash: call it at startup, not per request.
    pub fn new(policy: &PasswordPolicy, max_concurrent: usize) -> Result<Self> {
        if max_concurrent == 0 || max_concurrent > Semaphore::MAX_PERMITS {
            return Err(Error::invalid("max_concurrent", "must be at least 1"));
        }
        let params = Params::new(policy.memory_kib, policy.iterations, policy.parallelism, Some(OUTPUT_BYTES))
            .map_err(|e| Error::Password(format!("invalid argon2 parameters: {e}")))?;
        let mut inner = Inner {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            policy: policy.clone(),
            dummy_hash: String::new(),
            entropy: OsEntropy::new(),
            in_flight: AtomicUsize::new(0),
            peak_in_flight: AtomicUsize::new(0),
            scratch: Mutex::new(Vec::new()),
            max_buffers: max_concurrent,
        };
        let mut dummy_password = Zeroizing::new([0u8; 32]);
        inner.entropy.fill(dummy_password.as_mut())?;
        inner.dummy_hash = inner.hash_now(dummy_password.as_ref())?;
        Ok(Self { inner: Arc::new(inner), permits: Arc::new(Semaphore::new(max_concurrent)) })
    }

    /// The PHC string of a fresh argon2id hash of `password` with a new 16-byte salt from the OS
    /// CSPRNG. Does not check the policy: call [`PasswordHasher::check_policy`] first when the
    /// password is being set.
    pub async fn hash(&self, password: &str) -> Result<String> {
        let password = nfc(password);
        self.run(move |inner| inner.hash_now(password.as_bytes())).await
    }

    /// Checks `password` against `stored`, the user's PHC string, or against the dummy hash when
    /// the user is unknown (`None`), which is always invalid and takes the same time.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> Result<PasswordCheck> {
        let password = nfc(password);
        let stored = stored.map(str::to_owned);
        self.run(move |inner| match stored {
            Some(stored) => inner.verify_now(password.as_bytes(), &stored),
            None => {
                // Same work as a real check; the answer is fixed. An error here would be a bug in
                // our own dummy hash, and must not tell unknown users apart either.
                let _same_work = inner.verify_now(password.as_bytes(), &inner.dummy_hash);
                Ok(PasswordCheck { valid: false, needs_rehash: false })
            }
        })
        .await
    }

    /// Checks a new password against the policy: between `min_length` and `max_length`
    /// characters (Unicode scalar values after NFC), nothing else. Errors are
    /// [`Error::Invalid`] on the field `password`.
    pub fn check_policy(&self, password: &str) -> Result<()> {
        let policy = &self.inner.policy;
        let length = password.nfc().count();
        if length < policy.min_length {
            return Err(Error::invalid("password", format!("must be at least {} characters long", policy.min_length)));
        }
        if length > policy.max_length {
            return Err(Error::invalid("password", format!("must be at most {} characters long", policy.max_length)));
        }
        Ok(())
    }

    /// Hashes or verifications running right now.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    /// The most hashes or verifications that ever ran at once (never above `max_concurrent`).
    pub fn peak_in_flight(&self) -> usize {
        self.inner.peak_in_flight.load(Ordering::SeqCst)
    }

    /// Permits free right now: how many more jobs could start without waiting.
    pub fn available_permits(&self) -> usize {
        self.permits.available_permits()
    }

    async fn run<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| Error::Password("the password hasher is closed".into()))?;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _running = Running::enter(&inner);
            job(&inner)
        })
        .await
        .map_err(|e| Error::Password(format!("the hashing task failed: {e}")))?
    }
}

/// Counts a job as in flight for as long as it lives.
struct Running<'a>(&'a Inner);

impl<'a> Running<'a> {
    fn enter(inner: &'a Inner) -> Self {
        let now = inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        inner.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(inner)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn nfc(password: &str) -> Zeroizing<String> {
    Zeroizing::new(password.nfc().collect())
}

fn malformed(what: impl std::fmt::Display) -> Error {
    Error::Password(format!("the stored password hash is unusable: {what}"))
}

impl Inner {
    /// Runs `f` with `blocks` argon2 blocks of working memory from the pool.
    fn with_memory<T>(&self, blocks: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
        let mut buffer = self.scratch.lock().ok().and_then(|mut pool| pool.pop()).unwrap_or_default();
        if buffer.len() < blocks {
            buffer.resize(blocks, Block::default());
        }
        let result = f(&mut buffer[..blocks]);
        if let Ok(mut pool) = self.scratch.lock()
            && pool.len() < self.max_buffers
        {
            pool.push(buffer);
        }
        result
    }

    /// The argon2 output of `password` and raw `salt` under `argon2`, into `out`.
    fn compute(&self, argon2: &Argon2<'_>, password: &[u8], salt: &[u8], len: usize) -> Result<Output> {
        let blocks = argon2.params().block_count();
        Output::init_with(len, |out| {
            self.with_memory(blocks, |memory| argon2.hash_password_into_with_memory(password, salt, out, memory))
                .map_err(|_| password_hash::Error::Crypto)
        })
        .map_err(|e| Error::Password(format!("argon2 failed: {e}")))
    }

    fn hash_now(&self, password: &[u8]) -> Result<String> {
        let mut salt = [0u8; SALT_BYTES];
        self.entropy.fill(&mut salt)?;
        let encoded_salt = SaltString::encode_b64(&salt).map_err(|e| Error::Password(format!("salt encoding: {e}")))?;
        let output = self.compute(&self.argon2, password, &salt, OUTPUT_BYTES)?;
        let params = ParamsString::try_from(self.argon2.params()).map_err(|e| Error::Password(e.to_string()))?;
        let hash = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params,
            salt: Some(encoded_salt.as_salt()),
            hash: Some(output),
        };
        Ok(hash.to_string())
    }

    fn verify_now(&self, password: &[u8], stored: &str) -> Result<PasswordCheck> {
        let hash = PasswordHash::new(stored).map_err(malformed)?;
        let algorithm = Algorithm::try_from(hash.algorithm)
            .map_err(|_| malformed(format!("algorithm {} is not argon2", hash.algorithm)))?;
        let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
            return Err(malformed("no salt or no hash"));
        };
        // The stored string's own algorithm, version and parameters are used, so old hashes keep
        // verifying after the policy rises.
        let version = hash.version.map(Version::try_from).transpose().map_err(malformed)?.unwrap_or_default();
        let params = Params::try_from(&hash).map_err(malformed)?;
        let mut salt_buffer = [0u8; 64];
        let salt = salt.decode_b64(&mut salt_buffer).map_err(malformed)?;
        let argon2 = Argon2::new(algorithm, version, params);
        let computed = self.compute(&argon2, password, salt, expected.len())?;
        // `Output`'s equality is constant-time.
        let valid = computed == expected;
        Ok(PasswordCheck { valid, needs_rehash: valid && self.is_weaker(&hash) })
    }

    /// Whether a stored hash is below the policy in any respect (a stronger one is left alone).
    fn is_weaker(&self, hash: &PasswordHash<'_>) -> bool {
        let policy = &self.policy;
        let Ok(params) = Params::try_from(hash) else { return true };
        let salt_bytes = hash.salt.map_or(0, |s| s.len() * 3 / 4);
        hash.algorithm != Algorithm::Argon2id.ident()
            || hash.version != Some(Version::V0x13.into())
            || params.m_cost() < policy.memory_kib
            || params.t_cost() < policy.iterations
            || params.p_cost() < policy.parallelism
            || params.output_len().unwrap_or(0) < OUTPUT_BYTES
            || salt_bytes < SALT_BYTES
    }
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};

    use super::*;

    fn small() -> PasswordPolicy {
        PasswordPolicy { memory_kib: 4096, iterations: 1, ..PasswordPolicy::default() }
    }

    fn foreign_hash(algorithm: Algorithm, version: Version, m: u32, salt_len: usize, out_len: usize) -> String {
        let params = Params::new(m, 1, 1, Some(out_len)).unwrap();
        let salt = SaltString::encode_b64(&vec![7u8; salt_len]).unwrap();
        Argon2::new(algorithm, version, params).hash_password(b"correct horse", &salt).unwrap().to_string()
    }

    #[tokio::test]
    async fn weaker_algorithm_version_or_lengths_need_rehash() {
        let hasher = PasswordHasher::new(&small(), 1).unwrap();
        let check = |stored: String| {
            let hasher = hasher.clone();
            async move { hasher.verify("correct horse", Some(&stored)).await.unwrap() }
        };
        let same = PasswordCheck { valid: true, needs_rehash: false };
        let rehash = PasswordCheck { valid: true, needs_rehash: true };
        assert_eq!(check(foreign_hash(Algorithm::Argon2id, Version::V0x13, 4096, 16, 32)).await, same);
        assert_eq!(check(foreign_hash(Algorithm::Argon2id, Version::V0x13, 8192, 16, 32)).await, same);
        assert_eq!(check(foreign_hash(Algorithm::Argon2i, Version::V0x13, 4096, 16, 32)).await, rehash);
        assert_eq!(check(foreign_hash(Algorithm::Argon2id, Version::V0x10, 4096, 16, 32)).await, rehash);
        assert_eq!(check(foreign_hash(Algorithm::Argon2id, Version::V0x13, 4096, 8, 32)).await, rehash);
        assert_eq!(check(foreign_hash(Algorithm::Argon2id, Version::V0x13, 4096, 16, 16)).await, rehash);
    }

    #[tokio::test]
    async fn unusable_stored_hashes_are_errors() {
        let hasher = PasswordHasher::new(&small(), 1).unwrap();
        for stored in [
            "",
            "plaintext",
            "$argon2id$v=19$m=4096,t=1,p=1$",
            "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=4096,t=1,p=1,x=2$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
        ] {
            let err = hasher.verify("whatever", Some(stored)).await.unwrap_err();
            assert!(matches!(err, Error::Password(_)), "{stored:?}: {err:?}");
        }
    }

    #[tokio::test]
    async fn hashes_match_the_reference_implementation_and_memory_is_pooled() {
        let hasher = PasswordHasher::new(&small(), 2).unwrap();
        let ours = hasher.hash("correct horse").await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        Argon2::default().verify_password(b"correct horse", &parsed).unwrap();
        assert!(Argon2::default().verify_password(b"correct horsE", &parsed).is_err());
        let jobs: Vec<_> = (0..8)
            .map(|_| {
                let (hasher, stored) = (hasher.clone(), ours.clone());
                tokio::spawn(async move { hasher.verify("correct horse", Some(&stored)).await.unwrap() })
            })
            .collect();
        for job in jobs {
            assert!(job.await.unwrap().valid);
        }
        let pooled = hasher.inner.scratch.lock().unwrap().len();
        assert!((1..=2).contains(&pooled), "{pooled} buffers for 2 permits");
    }

    #[test]
    fn zero_permits_is_refused() {
        assert!(matches!(PasswordHasher::new(&small(), 0), Err(Error::Invalid { .. })));
        let bad = PasswordPolicy { parallelism: 0, ..small() };
        assert!(matches!(PasswordHasher::new(&bad, 1), Err(Error::Password(_))));
    }
}
