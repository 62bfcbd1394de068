//! Rate limits through the public API: both backends, their agreement, and the fallback.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use auth_core::clock::{Clock, FixedClock};
use auth_core::ratelimit::{FallbackLimiter, LimiterBackend, MemoryLimiter, RateDecision, RedisLimiter, ScopeLimiter};
use auth_core::spec::{RateLimitSpec, Seconds, Spec};
use auth_core::{Error, Result};

const T0: i64 = 1_700_000_000_000;

fn quota(burst: u32, per: u64) -> RateLimitSpec {
    RateLimitSpec { burst, per: Seconds(per) }
}

/// The Redis URL for tests: skipped with a note when unset, a failure when `CI` is set.
#[track_caller]
fn redis_url() -> Option<String> {
    match std::env::var("AUTH_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!("AUTH_TEST_REDIS_URL must be set in CI"),
        _ => {
            eprintln!("note: AUTH_TEST_REDIS_URL is not set; skipping a Redis test");
            None
        }
    }
}

/// A key prefix no other test run shares.
fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("auth-test:{test}:{}:{nanos}:", std::process::id())
}

/// splitmix64: a fixed pseudo-random sequence, the same on every run.
struct Sequence(u64);

impl Sequence {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

async fn burst_then_refusal(backend: &dyn LimiterBackend) {
    let q = quota(5, 10); // one every 2 s
    for expected in (0..5).rev() {
        let d = backend.check("alice", q, T0).await.unwrap();
        assert!(d.allowed);
        assert_eq!(d.remaining, expected);
    }
    let refused = backend.check("alice", q, T0 + 300).await.unwrap();
    assert_eq!(
        refused,
        RateDecision {
            allowed: false,
            limit: 5,
            remaining: 0,
            reset_after_ms: 9_700,
            retry_after_ms: Some(1_700),
            window_secs: 10,
        }
    );
    assert_eq!(refused.retry_after_secs(), Some(2));
    assert_eq!(refused.ratelimit_header("bookings:write"), "\"bookings:write\";r=0;t=2");
    // Refusals consume nothing: the wait does not grow.
    assert_eq!(backend.check("alice", q, T0 + 300).await.unwrap().retry_after_ms, Some(1_700));
    // A peek reads the same state and consumes nothing either.
    assert_eq!(backend.peek("alice", q, T0 + 300).await.unwrap(), refused);
    let fresh = backend.peek("carol", q, T0).await.unwrap();
    assert_eq!((fresh.allowed, fresh.remaining), (true, 5));
    assert_eq!(backend.peek("carol", q, T0).await.unwrap(), fresh);
    assert_eq!(backend.check("carol", q, T0).await.unwrap().remaining, 4);
    // Refill: one request back after 2 s, the whole burst after 10 s.
    let d = backend.check("alice", q, T0 + 2_000).await.unwrap();
    assert_eq!((d.allowed, d.remaining, d.reset_after_ms), (true, 0, 10_000));
    assert!(!backend.check("alice", q, T0 + 2_000).await.unwrap().allowed);
    let d = backend.check("alice", q, T0 + 12_000).await.unwrap();
    assert_eq!((d.allowed, d.remaining, d.reset_after_ms), (true, 4, 2_000));
    // Other keys are untouched.
    assert_eq!(backend.check("bob", q, T0).await.unwrap().remaining, 4);
}

#[tokio::test]
async fn memory_burst_refusal_and_refill() {
    burst_then_refusal(&MemoryLimiter::new()).await;
}

#[cfg_attr(not(auth_test_redis), ignore = "AUTH_TEST_REDIS_URL was not set when the tests were built")]
#[tokio::test]
async fn redis_burst_refusal_and_refill() {
    let Some(url) = redis_url() else { return };
    let redis = RedisLimiter::new(&url, unique_prefix("burst")).unwrap();
    burst_then_refusal(&redis).await;
}

#[tokio::test]
async fn scope_limiter_with_a_fixed_clock_refills() {
    let spec = Spec::parse(
        r#"
spec_version = 1
issuer = "http://127.0.0.1:8080"
audiences = ["booking-api"]

[scopes."bookings:read"]
rate_limit = { burst = 120, per = "1m" }

[scopes."bookings:write"]
rate_limit = { burst = 30, per = "1m" }

[scopes."profile"]
"#,
    )
    .unwrap();
    let clock = Arc::new(FixedClock::at_millis(T0));
    let limiter = ScopeLimiter::new(&spec, Arc::new(MemoryLimiter::new()), clock.clone());
    assert_eq!(limiter.check("profile", "alice").await.unwrap(), None);
    for _ in 0..30 {
        assert!(limiter.check("bookings:write", "alice").await.unwrap().unwrap().allowed);
    }
    let refused = limiter.check_all(&["bookings:read", "bookings:write"], "alice").await.unwrap().unwrap();
    assert_eq!(refused.scope, "bookings:write");
    assert_eq!(refused.decision.retry_after_ms, Some(2_000));
    assert_eq!(refused.policy_header(), "\"bookings:write\";q=30;w=60");
    // The refused batch did not charge bookings:read.
    assert_eq!(limiter.check("bookings:read", "alice").await.unwrap().unwrap().remaining, 119);
    clock.advance_millis(1_999);
    assert!(!limiter.check("bookings:write", "alice").await.unwrap().unwrap().allowed);
    clock.advance_millis(1);
    let d = limiter.check_all(&["bookings:read", "bookings:write"], "alice").await.unwrap().unwrap();
    assert_eq!((d.scope.as_str(), d.decision.allowed, d.decision.remaining), ("bookings:write", true, 0));
    assert_eq!(d.ratelimit_header(), "\"bookings:write\";r=0;t=60");
}

/// Runs the same pseudo-random sequence (keys, quotas, time steps, single and batched checks,
/// peeks) on two backends and returns every decision.
async fn run_sequence(backend: &dyn LimiterBackend, seed: u64, steps: usize) -> Vec<RateDecision> {
    let quotas = [quota(1, 1), quota(3, 10), quota(7, 60), quota(30, 60), quota(10, 1), quota(4, 3600)];
    let keys = ["a", "b", "c", "d", "e"];
    let mut rng = Sequence(seed);
    let mut now = T0;
    let mut decisions = Vec::new();
    for _ in 0..steps {
        // Mostly small steps (bursts inside one millisecond), sometimes long pauses.
        now += match rng.below(10) {
            0..=3 => 0,
            4..=7 => i64::try_from(rng.below(1_500)).unwrap(),
            8 => i64::try_from(rng.below(20_000)).unwrap(),
            _ => i64::try_from(rng.below(120_000)).unwrap(),
        };
        // A key always has the same quota, as a (scope, subject) key does.
        let pick = |i: u64| (keys[i as usize], quotas[i as usize % quotas.len()]);
        let kind = rng.below(8);
        if kind == 0 {
            let (key, q) = pick(rng.below(keys.len() as u64));
            decisions.push(backend.peek(key, q, now).await.unwrap());
        } else if kind <= 2 {
            let first = rng.below(keys.len() as u64);
            let second = (first + 1 + rng.below(keys.len() as u64 - 1)) % keys.len() as u64;
            let batch = [pick(first), pick(second)];
            decisions.extend(backend.check_many(&batch, now).await.unwrap());
        } else {
            let (key, q) = pick(rng.below(keys.len() as u64));
            decisions.push(backend.check(key, q, now).await.unwrap());
        }
    }
    decisions
}

#[cfg_attr(not(auth_test_redis), ignore = "AUTH_TEST_REDIS_URL was not set when the tests were built")]
#[tokio::test]
async fn memory_and_redis_decide_identically() {
    let Some(url) = redis_url() else { return };
    for seed in [1, 2, 3] {
        let memory = run_sequence(&MemoryLimiter::new(), seed, 1_500).await;
        let redis = RedisLimiter::new(&url, unique_prefix(&format!("same-{seed}"))).unwrap();
        let shared = run_sequence(&redis, seed, 1_500).await;
        assert_eq!(memory.len(), shared.len());
        let refused = memory.iter().filter(|d| !d.allowed).count();
        assert!(refused > 100 && refused < memory.len() - 100, "a sequence should mix outcomes ({refused} refused)");
        for (i, (m, r)) in memory.iter().zip(&shared).enumerate() {
            assert_eq!(m, r, "seed {seed}, decision {i} differs");
        }
    }
}

#[cfg_attr(not(auth_test_redis), ignore = "AUTH_TEST_REDIS_URL was not set when the tests were built")]
#[tokio::test]
async fn redis_batch_is_all_or_nothing() {
    let Some(url) = redis_url() else { return };
    let redis = RedisLimiter::new(&url, unique_prefix("batch")).unwrap();
    let (wide, narrow) = (quota(10, 10), quota(1, 10));
    assert!(redis.check_many(&[("a", wide), ("b", narrow)], T0).await.unwrap().iter().all(|d| d.allowed));
    let second = redis.check_many(&[("a", wide), ("b", narrow)], T0).await.unwrap();
    assert!(!second[1].allowed);
    assert_eq!(redis.check("a", wide, T0).await.unwrap().remaining, 8);
    assert!(matches!(redis.check_many(&[("a", wide), ("a", wide)], T0).await, Err(Error::Invalid { .. })));
}

#[tokio::test]
async fn redis_down_falls_back_to_memory_and_counts() {
    let down = RedisLimiter::new("redis://127.0.0.1:1", "auth-test:down:").unwrap();
    let err = down.check("k", quota(1, 1), T0).await.unwrap_err();
    assert!(matches!(err, Error::RateLimitBackend(_)), "{err:?}");
    assert_eq!(err.code().as_str(), "ratelimit.backend");

    let limiter = FallbackLimiter::new(Arc::new(down));
    assert!(!limiter.is_degraded());
    let q = quota(2, 10);
    assert!(limiter.check("k", q, T0).await.unwrap().allowed);
    assert!(limiter.is_degraded());
    assert!(limiter.check("k", q, T0).await.unwrap().allowed);
    let refused = limiter.check("k", q, T0).await.unwrap();
    assert_eq!((refused.allowed, refused.retry_after_ms), (false, Some(5_000)));
    assert_eq!(limiter.fallbacks(), 3);
    let batch = limiter.check_many(&[("k", q), ("j", q)], T0 + 1_500).await.unwrap();
    assert!(!batch[0].allowed);
    assert_eq!(limiter.fallbacks(), 4);
    // Through the ScopeLimiter too.
    let scopes = ScopeLimiter::with_quotas(
        BTreeMap::from([("bookings:write".to_owned(), q)]),
        Arc::new(limiter),
        Arc::new(FixedClock::at_millis(T0)),
    );
    assert!(scopes.check("bookings:write", "alice").await.unwrap().unwrap().allowed);
}

/// A backend that fails while `down` is set.
#[derive(Debug, Default)]
struct Flaky {
    down: AtomicBool,
    inner: MemoryLimiter,
}

#[async_trait]
impl LimiterBackend for Flaky {
    async fn check(&self, key: &str, quota: RateLimitSpec, now_ms: i64) -> Result<RateDecision> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::RateLimitBackend("connection refused".into()));
        }
        self.inner.check(key, quota, now_ms).await
    }

    async fn peek(&self, key: &str, quota: RateLimitSpec, now_ms: i64) -> Result<RateDecision> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::RateLimitBackend("connection refused".into()));
        }
        self.inner.peek(key, quota, now_ms).await
    }
}

#[tokio::test]
async fn fallback_recovers_after_the_retry_interval() {
    let primary = Arc::new(Flaky::default());
    let limiter = FallbackLimiter::with_retry_interval(primary.clone(), 1_000);
    let q = quota(100, 1_000);
    limiter.check("k", q, T0).await.unwrap();
    assert_eq!((limiter.fallbacks(), limiter.is_degraded()), (0, false));
    primary.down.store(true, Ordering::SeqCst);
    limiter.check("k", q, T0).await.unwrap();
    assert_eq!((limiter.fallbacks(), limiter.is_degraded()), (1, true));
    // Back up, but not retried before the interval has passed.
    primary.down.store(false, Ordering::SeqCst);
    limiter.check("k", q, T0 + 999).await.unwrap();
    assert_eq!((limiter.fallbacks(), limiter.is_degraded()), (2, true));
    let d = limiter.check("k", q, T0 + 1_000).await.unwrap();
    assert_eq!((limiter.fallbacks(), limiter.is_degraded()), (2, false));
    // The primary kept its own state: two charges there (the two successful checks).
    assert_eq!(d.remaining, 98);
}

#[cfg_attr(not(auth_test_redis), ignore = "AUTH_TEST_REDIS_URL was not set when the tests were built")]
#[tokio::test]
async fn fallback_over_a_live_redis_never_falls_back() {
    let Some(url) = redis_url() else { return };
    let limiter = FallbackLimiter::new(Arc::new(RedisLimiter::new(&url, unique_prefix("live")).unwrap()));
    for _ in 0..3 {
        limiter.check("k", quota(2, 10), T0).await.unwrap();
    }
    assert_eq!((limiter.fallbacks(), limiter.is_degraded()), (0, false));
    assert!(limiter.fallback().is_empty());
}

#[test]
fn clock_is_the_only_time_source() {
    // A fixed clock far from the wall clock still gives the documented values.
    let clock = FixedClock::at_millis(0);
    assert_eq!(clock.now_ms(), 0);
    let d = MemoryLimiter::new().check_now("k", quota(1, 1), clock.now_ms());
    assert_eq!((d.allowed, d.remaining, d.reset_after_ms), (true, 0, 1_000));
}
