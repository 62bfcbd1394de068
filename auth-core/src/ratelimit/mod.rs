//! Rate limits tied to scopes: GCRA per (scope, subject or client), with the quotas of the spec.
//!
//! A quota `{ burst = B, per = P }` admits `B` requests at once and refills one every emission
//! interval `T = P / B`. The only state per key is the theoretical arrival time (TAT); a key whose
//! TAT is in the past has a full bucket and can be forgotten without changing any decision.
//!
//! Invariants:
//! - Time always comes from the caller (`now_ms`), never from the backend, so a fixed clock gives
//!   reproducible decisions, and so the in-memory and Redis backends give *identical* decisions
//!   (every field of [`RateDecision`]) for the same sequence of calls.
//! - All arithmetic lives in one pure function, [`Gcra::decide`]. The Redis script only mirrors its
//!   admit-or-refuse comparison on integers and hands the stored TAT back, from which Rust derives
//!   the decision with the same function. `remaining`, `reset_after_ms` and `retry_after_ms` therefore
//!   cannot drift between backends.
//! - A refused request consumes nothing. [`ScopeLimiter::check_all`] is all-or-nothing: when one scope
//!   refuses, none of the others is charged (one atomic step in either backend).
//!
//! Why not `governor` for the in-memory backend: its public API reports the remaining burst of a
//! positive decision but not the new TAT, so "time until the bucket is full again" (the `t` of the
//! `RateLimit` header) can only be bounded to within one emission interval, not matched to the Redis
//! backend; and its clock is an object read inside `check`, so feeding it the caller's `now_ms`
//! means serialising every key behind one lock that sets the clock first. A sharded map of TATs
//! driven by the shared pure function is smaller and exact.
//!
//! Resolution: times are integer microseconds and `T` is rounded down to a whole microsecond
//! (at least 1 µs), so a quota may admit a hair more than `burst` per `per` (e.g. 7 per 60 s gives
//! T = 8 571 428 µs), never less than documented. Microseconds keep every value below 2^53, where
//! the Redis script's Lua numbers (doubles) are exact, until the year 2255.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use crate::clock::{Clock, UnixMillis};
use crate::spec::{RateLimitSpec, Spec};
use crate::{Error, Result};

#[cfg(feature = "server")]
mod redis;
#[cfg(feature = "server")]
pub use redis::{RedisLimiter, RedisLimiterConfig};

/// The admit-or-refuse half of [`Gcra::decide`] for a batch of keys, run atomically in Redis
/// (`ratelimit/gcra.lua`, whose header states its arguments and reply). The one copy: the server's
/// `RedisLimiter` runs it and auth-gen emits it into the generated TypeScript module, so a server
/// and apps sharing one Redis update the same keys alike.
pub const REDIS_GCRA_SCRIPT: &str = include_str!("gcra.lua");

/// The outcome of one rate-limit check, with what the IETF `RateLimit`, `RateLimit-Policy` and
/// `Retry-After` header fields need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateDecision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The quota's burst: requests admitted at once from a full bucket.
    pub limit: u32,
    /// Requests that would still be admitted right now, after this one.
    pub remaining: u32,
    /// Milliseconds until the bucket is full again (rounded up).
    pub reset_after_ms: i64,
    /// When refused: milliseconds until a request would be admitted (rounded up).
    pub retry_after_ms: Option<i64>,
    /// The quota's window (`per`) in seconds.
    pub window_secs: u64,
}

impl RateDecision {
    /// The `Retry-After` value in whole seconds, rounded up; `None` when the request was admitted.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after_ms.map(ceil_secs)
    }

    /// The `t` parameter of the `RateLimit` field, in whole seconds rounded up: the time until the
    /// bucket is full again, or, when refused, the `Retry-After` delay (the draft asks that
    /// `Retry-After` not point before the end of the effective window).
    pub fn reset_secs(&self) -> u64 {
        match self.retry_after_ms {
            Some(ms) => ceil_secs(ms),
            None => ceil_secs(self.reset_after_ms),
        }
    }

    /// The `RateLimit-Policy` field value for this quota, e.g. `"bookings:write";q=30;w=60`
    /// (draft-ietf-httpapi-ratelimit-headers: a list of items whose value is a String, with the
    /// quota `q` and the window `w` in seconds).
    pub fn policy_header(&self, policy: &str) -> String {
        format!("{};q={};w={}", sf_string(policy), self.limit, self.window_secs)
    }

    /// The `RateLimit` field value, e.g. `"bookings:write";r=12;t=3`: `r` is the remaining quota and
    /// `t` is [`RateDecision::reset_secs`].
    pub fn ratelimit_header(&self, policy: &str) -> String {
        format!("{};r={};t={}", sf_string(policy), self.remaining, self.reset_secs())
    }
}

fn ceil_secs(ms: i64) -> u64 {
    u64::try_from(ms.max(0)).unwrap_or(0).div_ceil(1000)
}

/// A Structured Field String (RFC 9651 section 3.3.3): printable ASCII in double quotes, with `"`
/// and `\` escaped. Scope names are printable ASCII already (spec validation); anything else is
/// replaced by `?` rather than producing an invalid field.
fn sf_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
    out
}

/// The GCRA of one quota, in integer microseconds. Pure: state in, decision and state out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    burst: u32,
    window_secs: u64,
    /// T: the time one request "costs".
    emission_us: i64,
    /// burst × T: how far ahead of now the TAT may run.
    capacity_us: i64,
}

/// What [`Gcra::decide`] concluded: the decision, and the TAT to store when admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcraOutcome {
    /// The decision to report.
    pub decision: RateDecision,
    /// The new TAT to store (microseconds); `None` when refused (a refusal changes nothing).
    pub new_tat_us: Option<i64>,
}

impl Gcra {
    /// The GCRA for a quota. A zero burst or window (rejected by spec validation) is treated as 1.
    pub fn new(quota: RateLimitSpec) -> Self {
        let burst = quota.burst.max(1);
        let window_secs = quota.per.0.max(1);
        let window_us = i64::try_from(window_secs).unwrap_or(i64::MAX / 2_000_000).saturating_mul(1_000_000);
        let emission_us = (window_us / i64::from(burst)).max(1);
        Self { burst, window_secs, emission_us, capacity_us: emission_us.saturating_mul(i64::from(burst)) }
    }

    /// T, the emission interval, in microseconds.
    pub fn emission_interval_us(&self) -> i64 {
        self.emission_us
    }

    /// burst × T in microseconds: the TAT of a key never runs further ahead of now than this.
    pub fn capacity_us(&self) -> i64 {
        self.capacity_us
    }

    /// Decides one request at `now_us` given the stored TAT (`None`: never seen, or forgotten).
    pub fn decide(&self, stored_tat_us: Option<i64>, now_us: i64) -> GcraOutcome {
        let tat = stored_tat_us.map_or(now_us, |t| t.max(now_us));
        let new_tat = tat.saturating_add(self.emission_us);
        let allow_at = new_tat.saturating_sub(self.capacity_us);
        if allow_at > now_us {
            GcraOutcome {
                decision: RateDecision {
                    allowed: false,
                    limit: self.burst,
                    remaining: 0,
                    reset_after_ms: ceil_ms(tat - now_us),
                    retry_after_ms: Some(ceil_ms(allow_at - now_us)),
                    window_secs: self.window_secs,
                },
                new_tat_us: None,
            }
        } else {
            GcraOutcome {
                decision: RateDecision {
                    allowed: true,
                    limit: self.burst,
                    remaining: self.slots((now_us - allow_at) / self.emission_us),
                    reset_after_ms: ceil_ms(new_tat - now_us),
                    retry_after_ms: None,
                    window_secs: self.window_secs,
                },
                new_tat_us: Some(new_tat),
            }
        }
    }

    /// The state of a key at `now_us` without consuming anything: `allowed` says whether a request
    /// would be admitted, `remaining` how many would be.
    pub fn peek(&self, stored_tat_us: Option<i64>, now_us: i64) -> RateDecision {
        let tat = stored_tat_us.map_or(now_us, |t| t.max(now_us));
        let free_us = now_us.saturating_add(self.capacity_us) - tat;
        let available = self.slots(free_us.max(0) / self.emission_us);
        let retry = (available == 0).then(|| ceil_ms(tat + self.emission_us - self.capacity_us - now_us));
        RateDecision {
            allowed: available > 0,
            limit: self.burst,
            remaining: available,
            reset_after_ms: ceil_ms(tat - now_us),
            retry_after_ms: retry,
            window_secs: self.window_secs,
        }
    }

    fn slots(&self, n: i64) -> u32 {
        u32::try_from(n.clamp(0, i64::from(self.burst))).unwrap_or(self.burst)
    }
}

fn ceil_ms(us: i64) -> i64 {
    us.max(0).div_euclid(1000) + i64::from(us.max(0).rem_euclid(1000) != 0)
}

fn now_us(now_ms: UnixMillis) -> i64 {
    now_ms.max(0).saturating_mul(1000)
}

/// Decides a batch all-or-nothing from the stored TATs (one per check, in order). Returns the
/// decisions and, when every check is admitted, the TATs to store. When any is refused, nothing is
/// stored and the admitted ones report [`Gcra::peek`] (their state, unconsumed).
fn decide_batch(
    checks: &[(&str, RateLimitSpec)],
    stored: &[Option<i64>],
    now_us: i64,
) -> (Vec<RateDecision>, Option<Vec<i64>>) {
    let outcomes: Vec<(Gcra, GcraOutcome)> = checks
        .iter()
        .zip(stored)
        .map(|((_, quota), tat)| {
            let gcra = Gcra::new(*quota);
            (gcra, gcra.decide(*tat, now_us))
        })
        .collect();
    let new_tats: Option<Vec<i64>> = outcomes.iter().map(|(_, o)| o.new_tat_us).collect();
    let decisions = match new_tats {
        Some(_) => outcomes.iter().map(|(_, o)| o.decision).collect(),
        None => outcomes
            .iter()
            .zip(stored)
            .map(|((gcra, o), tat)| if o.decision.allowed { gcra.peek(*tat, now_us) } else { o.decision })
            .collect(),
    };
    (decisions, new_tats)
}

fn ensure_distinct(checks: &[(&str, RateLimitSpec)]) -> Result<()> {
    let keys: BTreeSet<&str> = checks.iter().map(|(k, _)| *k).collect();
    if keys.len() != checks.len() {
        return Err(Error::invalid("keys", "a rate-limit batch names the same key twice"));
    }
    Ok(())
}

/// Where rate-limit state lives. Implementations take the time from the caller.
#[async_trait]
pub trait LimiterBackend: Send + Sync + fmt::Debug {
    /// Decides one request against `quota` under `key` at `now_ms`, consuming from the bucket when
    /// admitted.
    async fn check(&self, key: &str, quota: RateLimitSpec, now_ms: UnixMillis) -> Result<RateDecision>;

    /// The state of `key` under `quota` at `now_ms`, consuming nothing: whether a request would be
    /// admitted now. For budgets charged only after the fact (failed logins), read before.
    async fn peek(&self, key: &str, quota: RateLimitSpec, now_ms: UnixMillis) -> Result<RateDecision>;

    /// Decides one request against several distinct keys, all-or-nothing: when every key admits it,
    /// each is charged; when any refuses, none is. Decisions come back in the order of `checks`;
    /// keys that would have admitted the request report their unconsumed state.
    ///
    /// The default runs [`LimiterBackend::check`] in turn and so charges the keys before a refusal;
    /// both backends of this module override it with one atomic step.
    async fn check_many(&self, checks: &[(&str, RateLimitSpec)], now_ms: UnixMillis) -> Result<Vec<RateDecision>> {
        ensure_distinct(checks)?;
        let mut decisions = Vec::with_capacity(checks.len());
        for (key, quota) in checks {
            decisions.push(self.check(key, *quota, now_ms).await?);
        }
        Ok(decisions)
    }
}

const SHARDS: usize = 16;
/// A shard drops the keys whose bucket is full again after this many checks, or after as many
/// checks as it kept keys at its last sweep if that is more: a sweep then costs O(1) amortised per
/// check, and a shard never holds more than twice its active keys plus this.
const SWEEP_EVERY: usize = 256;

#[derive(Debug, Default)]
struct Shard {
    tats: HashMap<String, i64>,
    ops: usize,
    kept_at_last_sweep: usize,
}

impl Shard {
    fn tick(&mut self, now_us: i64) {
        self.ops += 1;
        if self.ops >= SWEEP_EVERY.max(self.kept_at_last_sweep) {
            self.sweep(now_us);
            self.ops = 0;
            self.kept_at_last_sweep = self.tats.len();
        }
    }

    fn sweep(&mut self, now_us: i64) -> usize {
        let before = self.tats.len();
        // A TAT at or before now is a full bucket: forgetting it changes no decision.
        self.tats.retain(|_, tat| *tat > now_us);
        before - self.tats.len()
    }
}

/// In-process GCRA state: one replica, or the fallback when Redis is unreachable. Memory stays
/// bounded by the keys active within one window: full buckets are swept periodically, and
/// [`MemoryLimiter::sweep`] does it on demand.
#[derive(Debug)]
pub struct MemoryLimiter {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
}

impl Default for MemoryLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryLimiter {
    /// An empty limiter.
    pub fn new() -> Self {
        Self { shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(), hasher: RandomState::new() }
    }

    fn shard_of(&self, key: &str) -> usize {
        // The modulo keeps the value below SHARDS, so the cast cannot truncate.
        (self.hasher.hash_one(key) % SHARDS as u64) as usize
    }

    fn lock(&self, index: usize) -> MutexGuard<'_, Shard> {
        // The state is plain numbers; a panic elsewhere cannot leave it half-written.
        self.shards[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops every key whose bucket is full at `now_ms`; returns how many were dropped.
    pub fn sweep(&self, now_ms: UnixMillis) -> usize {
        (0..self.shards.len()).map(|i| self.lock(i).sweep(now_us(now_ms))).sum()
    }

    /// The number of keys held.
    pub fn len(&self) -> usize {
        (0..self.shards.len()).map(|i| self.lock(i).tats.len()).sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The synchronous core of [`LimiterBackend::check_many`].
    pub fn check_many_now(&self, checks: &[(&str, RateLimitSpec)], now_ms: UnixMillis) -> Result<Vec<RateDecision>> {
        ensure_distinct(checks)?;
        let now = now_us(now_ms);
        // Lock every shard involved in ascending order (no deadlock), so the batch is one step.
        let indices: BTreeSet<usize> = checks.iter().map(|(k, _)| self.shard_of(k)).collect();
        let mut guards: BTreeMap<usize, MutexGuard<'_, Shard>> = indices.iter().map(|&i| (i, self.lock(i))).collect();
        let stored: Vec<Option<i64>> =
            checks.iter().map(|(k, _)| guards.get(&self.shard_of(k)).and_then(|s| s.tats.get(*k).copied())).collect();
        let (decisions, new_tats) = decide_batch(checks, &stored, now);
        if let Some(new_tats) = new_tats {
            for ((key, _), tat) in checks.iter().zip(new_tats) {
                if let Some(shard) = guards.get_mut(&self.shard_of(key)) {
                    shard.tats.insert((*key).to_owned(), tat);
                }
            }
        }
        for shard in guards.values_mut() {
            shard.tick(now);
        }
        Ok(decisions)
    }

    /// The synchronous core of [`LimiterBackend::peek`].
    pub fn peek_now(&self, key: &str, quota: RateLimitSpec, now_ms: UnixMillis) -> RateDecision {
        let shard = self.lock(self.shard_of(key));
        Gcra::new(quota).peek(shard.tats.get(key).copied(), now_us(now_ms))
    }

    /// The synchronous core of [`LimiterBackend::check`].
    pub fn check_now(&self, key: &str, quota: RateLimitSpec, now_ms: UnixMillis) -> RateDecision {
        let now = now_us(now_ms);
        let mut shard = self.lock(self.shard_of(key));
        let outcome = Gcra::new(quota).decide(shard.tats.get(key).copied(), now);
        if let Some(tat) = outcome.new_tat_us {
            shard.tats.insert(key.to_owned(), tat);
        }
        shard.tick(now);
        outcome.decision
    }
}

#[async_trait]
impl LimiterBackend for MemoryLimiter {
    async fn check(&self, key: &str, quota: RateLimitSpec, now_ms: UnixMillis) -> Result<RateDecision> {
        Ok(self.check_now(key, quota, now_ms))
    }

    async fn peek(&self, key: &str, quota: RateLimitSpec, now_ms: UnixMillis) -> Result<RateDecision> {
        Ok(self.peek_now(key, quota, now_ms))
    }

    async fn check_many(&self, checks: &[(&str, RateLimitSpec)], now_ms: UnixMillis) -> Result<Vec<RateDecision>> {
        self.check_many_now(checks, now_ms)
    }
}

/// A primary backend (Redis) with the in-memory limiter as fallback when the primary fails.
///
/// During an outage each replica limits on its own, so a client may get up to one quota per
/// replica: degraded, never open. The first failure of an outage is logged with `tracing::warn!`,
/// the recovery with `tracing::info!`; [`FallbackLimiter::fallbacks`] counts the decisions taken from
/// memory and [`FallbackLimiter::is_degraded`] tells whether the outage is ongoing (for metrics).
/// After a failure the primary is left alone for `retry_interval_ms` (caller time), so a dead Redis
/// does not add its timeout to every request.
#[derive(Debug)]
pub struct FallbackLimiter {
    primary: Arc<dyn LimiterBackend>,
    fallback: MemoryLimiter,
    fallbacks: AtomicU64,
    degraded: AtomicBool,
    next_primary_attempt_ms: AtomicI64,
    retry_interval_ms: i64,
}

impl FallbackLimiter {
    /// Falls back to memory when `primary` fails, retrying the primary at most once a second.
    pub fn new(primary: Arc<dyn LimiterBackend>) -> Self {
        Self::with_retry_interval(primary, 1000)
    }

    /// As [`FallbackLimiter::new`], retrying the primary at most every `retry_interval_ms`
    /// (0: on every check).
    pub fn with_retry_interval(primary: Arc<dyn LimiterBackend>, retry_interval_ms: i64) -> Self {
        Self {
            primary,
            fallback: MemoryLimiter::new(),
            fallbacks: AtomicU64::new(0),
            degraded: AtomicBool::new(false),
            next_primary_attempt_ms: AtomicI64::new(i64::MIN),
            retry_interval_ms: retry_interval_ms.max(0),
        }
    }

    /// How many decisions were taken from memory because the primary failed.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// Whether the primary is currently considered down.
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// The in-memory limiter used during outages.
    pub fn fallback(&self) -> &MemoryLimiter {
        &self.fallback
    }

    async fn decide<T, P, F>(&self, now_ms: UnixMillis, primary: P, fallback: F) -> Result<T>
    where
        P: Future<Output = Result<T>> + Send,
        F: FnOnce(&MemoryLimiter) -> Result<T>,
    {
        let skip = self.is_degraded() && now_ms < self.next_primary_attempt_ms.load(Ordering::Relaxed);
        if !skip {
            match primary.await {
                Ok(decision) => {
                    if self.degraded.swap(false, Ordering::Relaxed) {
                        tracing::info!("rate-limit backend is back; shared limits restored");
                    }
                    return Ok(decision);
                }
                // Input errors are the caller's, not an outage.
                Err(e @ Error::Invalid { .. }) => return Err(e),
                Err(e) => {
                    self.next_primary_attempt_ms
                        .store(now_ms.saturating_add(self.retry_interval_ms), Ordering::Relaxed);
                    if !self.degraded.swap(true, Ordering::Relaxed) {
                        tracing::warn!(error = %e, code = e.code().as_str(), "rate-limit backend unavailable; limiting from local memory");
                    }
                }
            }
        }
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        fallback(&self.fallback)
    }
}

#[async_trait]
impl LimiterBackend for FallbackLimiter {
    async fn check(&self, key: &str, quota: RateLimitSpec, now_ms: UnixMillis) -> Result<RateDecision> {
        self.decide(now_ms, self.primary.check(key, quota, now_ms), |m| Ok(m.check_now(key, quota, now_ms))).await
    }

    async fn peek(&self, key: &str, quota: RateLimitSpec, now_ms: UnixMillis) -> Result<RateDecision> {
        self.decide(now_ms, self.primary.peek(key, quota, now_ms), |m| Ok(m.peek_now(key, quota, now_ms))).await
    }

    async fn check_many(&self, checks: &[(&str, RateLimitSpec)], now_ms: UnixMillis) -> Result<Vec<RateDecision>> {
        self.decide(now_ms, self.primary.check_many(checks, now_ms), |m| m.check_many_now(checks, now_ms)).await
    }
}

/// The decision of [`ScopeLimiter::check_all`] and the scope it came from (the policy name of the
/// `RateLimit` header fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeDecision {
    /// The scope whose quota decided.
    pub scope: String,
    /// Its decision.
    pub decision: RateDecision,
}

impl ScopeDecision {
    /// The `RateLimit-Policy` field value for this scope.
    pub fn policy_header(&self) -> String {
        self.decision.policy_header(&self.scope)
    }

    /// The `RateLimit` field value for this scope.
    pub fn ratelimit_header(&self) -> String {
        self.decision.ratelimit_header(&self.scope)
    }

    /// The response header fields of this decision, lowercase names first: `ratelimit-policy`,
    /// `ratelimit`, and `retry-after` (whole seconds) when the request was refused.
    pub fn header_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![("ratelimit-policy", self.policy_header()), ("ratelimit", self.ratelimit_header())];
        if let Some(retry) = self.decision.retry_after_secs() {
            fields.push(("retry-after", retry.to_string()));
        }
        fields
    }
}

/// Applies the spec's per-scope quotas to a subject (the token's `sub`, or its `client_id` for
/// client-credentials tokens), on any backend, with the time from an injected clock.
#[derive(Debug, Clone)]
pub struct ScopeLimiter {
    quotas: BTreeMap<String, RateLimitSpec>,
    backend: Arc<dyn LimiterBackend>,
    clock: Arc<dyn Clock>,
}

impl ScopeLimiter {
    /// A limiter with the quotas of `spec`'s scopes.
    pub fn new(spec: &Spec, backend: Arc<dyn LimiterBackend>, clock: Arc<dyn Clock>) -> Self {
        let quotas =
            spec.scopes.iter().filter_map(|(name, scope)| scope.rate_limit.map(|q| (name.clone(), q))).collect();
        Self::with_quotas(quotas, backend, clock)
    }

    /// A limiter with explicit quotas per scope.
    pub fn with_quotas(
        quotas: BTreeMap<String, RateLimitSpec>,
        backend: Arc<dyn LimiterBackend>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { quotas, backend, clock }
    }

    /// The quota of a scope, if it has one.
    pub fn quota(&self, scope: &str) -> Option<RateLimitSpec> {
        self.quotas.get(scope).copied()
    }

    /// The backend key of (scope, subject): `"{scope} {subject}"`. A scope never holds a space
    /// (RFC 6749 section 3.3), so no two pairs share a key.
    pub fn key(scope: &str, subject: &str) -> String {
        format!("{scope} {subject}")
    }

    /// Charges one request of `subject` to `scope`; `None` when the scope has no limit.
    pub async fn check(&self, scope: &str, subject: &str) -> Result<Option<RateDecision>> {
        let Some(quota) = self.quota(scope) else { return Ok(None) };
        let decision = self.backend.check(&Self::key(scope, subject), quota, self.clock.now_ms()).await?;
        Ok(Some(decision))
    }

    /// Charges one request of `subject` to every limited scope in `scopes` (duplicates count once),
    /// all-or-nothing: if one refuses, none is charged. Returns the most restrictive decision: a
    /// refusal with the longest wait, else the admission with the fewest remaining (then the longest
    /// reset); `None` when no scope has a limit.
    pub async fn check_all(&self, scopes: &[&str], subject: &str) -> Result<Option<ScopeDecision>> {
        let limited: BTreeMap<&str, RateLimitSpec> =
            scopes.iter().filter_map(|s| self.quota(s).map(|q| (*s, q))).collect();
        if limited.is_empty() {
            return Ok(None);
        }
        let keys: Vec<(String, RateLimitSpec)> =
            limited.iter().map(|(scope, quota)| (Self::key(scope, subject), *quota)).collect();
        let checks: Vec<(&str, RateLimitSpec)> = keys.iter().map(|(k, q)| (k.as_str(), *q)).collect();
        let decisions = self.backend.check_many(&checks, self.clock.now_ms()).await?;
        let decisive = limited.keys().zip(decisions).min_by_key(|(_, d)| restrictiveness(d));
        Ok(decisive.map(|(scope, decision)| ScopeDecision { scope: (*scope).to_owned(), decision }))
    }
}

/// Orders decisions from most to least restrictive (smallest key first).
fn restrictiveness(d: &RateDecision) -> (bool, std::cmp::Reverse<i64>, u32, std::cmp::Reverse<i64>) {
    (d.allowed, std::cmp::Reverse(d.retry_after_ms.unwrap_or(0)), d.remaining, std::cmp::Reverse(d.reset_after_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::spec::Seconds;

    fn quota(burst: u32, per: u64) -> RateLimitSpec {
        RateLimitSpec { burst, per: Seconds(per) }
    }

    const T0: i64 = 1_700_000_000_000;

    #[test]
    fn burst_then_refusal_with_retry_after() {
        let limiter = MemoryLimiter::new();
        let q = quota(3, 60); // one every 20 s
        for expected in [2, 1, 0] {
            let d = limiter.check_now("k", q, T0);
            assert!(d.allowed);
            assert_eq!(d.remaining, expected);
        }
        let refused = limiter.check_now("k", q, T0 + 1);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.retry_after_ms, Some(19_999));
        assert_eq!(refused.reset_after_ms, 59_999);
        assert_eq!(refused.retry_after_secs(), Some(20));
        assert!(limiter.check_now("k", q, T0 + 20_000).allowed);
    }

    #[test]
    fn exact_values_for_a_known_sequence() {
        let g = Gcra::new(quota(30, 60)); // T = 2 s
        let mut tat = None;
        let mut step = |now: i64| {
            let o = g.decide(tat, now * 1000);
            if let Some(t) = o.new_tat_us {
                tat = Some(t);
            }
            o.decision
        };
        let d = step(T0);
        assert_eq!((d.remaining, d.reset_after_ms), (29, 2_000));
        let d = step(T0 + 500);
        assert_eq!((d.remaining, d.reset_after_ms), (28, 3_500));
        let d = step(T0 + 4_000);
        // TAT was T0+4000: full again, so this is like a first request.
        assert_eq!((d.remaining, d.reset_after_ms), (29, 2_000));
        assert_eq!(d.ratelimit_header("bookings:write"), "\"bookings:write\";r=29;t=2");
        assert_eq!(d.policy_header("bookings:write"), "\"bookings:write\";q=30;w=60");
    }

    #[test]
    fn peek_consumes_nothing() {
        let g = Gcra::new(quota(2, 10));
        let first = g.decide(None, 0);
        let tat = first.new_tat_us;
        let p = g.peek(tat, 0);
        assert_eq!((p.allowed, p.remaining, p.reset_after_ms, p.retry_after_ms), (true, 1, 5_000, None));
        let second = g.decide(tat, 0);
        let p = g.peek(second.new_tat_us, 0);
        assert_eq!((p.allowed, p.remaining, p.retry_after_ms), (false, 0, Some(5_000)));
        assert_eq!(p.retry_after_ms, g.decide(second.new_tat_us, 0).decision.retry_after_ms);
    }

    #[test]
    fn headers_escape_and_round_up() {
        let d = RateDecision {
            allowed: false,
            limit: 5,
            remaining: 0,
            reset_after_ms: 9_001,
            retry_after_ms: Some(1_001),
            window_secs: 10,
        };
        assert_eq!(d.retry_after_secs(), Some(2));
        assert_eq!(d.ratelimit_header("a\"b\\c"), "\"a\\\"b\\\\c\";r=0;t=2");
        assert_eq!(d.policy_header("é"), "\"?\";q=5;w=10");
    }

    #[test]
    fn full_buckets_are_swept() {
        let limiter = MemoryLimiter::new();
        for i in 0..100 {
            limiter.check_now(&format!("k{i}"), quota(10, 10), T0);
        }
        assert_eq!(limiter.len(), 100);
        assert_eq!(limiter.sweep(T0 + 999), 0);
        assert_eq!(limiter.sweep(T0 + 1_000), 100);
        assert!(limiter.is_empty());
        // Periodic sweeping bounds memory without any explicit call: one key is active at a time,
        // so no shard holds more than SWEEP_EVERY keys.
        let total = SHARDS * SWEEP_EVERY * 4;
        for i in 0..total {
            limiter.check_now(&format!("u{i}"), quota(1, 1), T0 + i64::try_from(i).unwrap() * 2_000);
        }
        assert!(limiter.len() <= SHARDS * SWEEP_EVERY, "held {} of {total} keys", limiter.len());
    }

    #[test]
    fn batch_refusal_charges_nothing() {
        let limiter = MemoryLimiter::new();
        let (wide, narrow) = (quota(10, 10), quota(1, 10));
        let first = limiter.check_many_now(&[("a", wide), ("b", narrow)], T0).unwrap();
        assert!(first.iter().all(|d| d.allowed));
        assert_eq!(first[0].remaining, 9);
        let second = limiter.check_many_now(&[("a", wide), ("b", narrow)], T0).unwrap();
        assert!(!second[1].allowed);
        // "a" reports its unconsumed state: still 9.
        assert_eq!((second[0].allowed, second[0].remaining), (true, 9));
        assert_eq!(limiter.check_now("a", wide, T0).remaining, 8);
        assert!(limiter.check_many_now(&[("a", wide), ("a", wide)], T0).is_err());
    }

    #[tokio::test]
    async fn scope_limiter_uses_spec_quotas_and_most_restrictive() {
        let mut quotas = BTreeMap::new();
        quotas.insert("read".to_owned(), quota(5, 10));
        quotas.insert("write".to_owned(), quota(2, 10));
        let clock = Arc::new(FixedClock::at_millis(T0));
        let limiter = ScopeLimiter::with_quotas(quotas, Arc::new(MemoryLimiter::new()), clock.clone());
        assert_eq!(limiter.check("none", "alice").await.unwrap(), None);
        assert_eq!(limiter.check_all(&["none"], "alice").await.unwrap(), None);
        let d = limiter.check_all(&["read", "write", "none"], "alice").await.unwrap().unwrap();
        assert_eq!((d.scope.as_str(), d.decision.remaining), ("write", 1));
        let d = limiter.check_all(&["read", "write"], "alice").await.unwrap().unwrap();
        assert_eq!((d.scope.as_str(), d.decision.remaining), ("write", 0));
        let d = limiter.check_all(&["read", "write", "write"], "alice").await.unwrap().unwrap();
        assert!(!d.decision.allowed);
        assert_eq!(d.scope, "write");
        assert_eq!(d.ratelimit_header(), "\"write\";r=0;t=5");
        // The refusal did not charge "read": 5 - 2 = 3 left before this request.
        assert_eq!(limiter.check("read", "alice").await.unwrap().unwrap().remaining, 2);
        // Another subject has its own buckets.
        assert!(limiter.check("write", "bob").await.unwrap().unwrap().allowed);
        clock.advance_seconds(5);
        assert!(limiter.check("write", "alice").await.unwrap().unwrap().allowed);
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_more_than_burst_plus_refill(
                burst in 1u32..20,
                per in 1u64..120,
                steps in prop::collection::vec((0i64..5_000, 0usize..6), 1..120),
            ) {
                let g = Gcra::new(quota(burst, per));
                let t = g.emission_interval_us();
                let mut tat = None;
                let mut now = T0 * 1000;
                let mut admitted: Vec<i64> = Vec::new();
                for (advance_ms, requests) in steps {
                    now += advance_ms * 1000;
                    let mut at_this_instant = 0u32;
                    for _ in 0..requests + 1 {
                        let o = g.decide(tat, now);
                        prop_assert_eq!(o.decision.allowed, o.new_tat_us.is_some());
                        if let Some(new_tat) = o.new_tat_us {
                            tat = Some(new_tat);
                            admitted.push(now);
                            at_this_instant += 1;
                        }
                        prop_assert!(o.decision.remaining < burst || !o.decision.allowed);
                    }
                    prop_assert!(at_this_instant <= burst);
                }
                // In any window [a, b]: at most burst + (b - a) / T admitted.
                for (i, a) in admitted.iter().enumerate() {
                    for (j, b) in admitted.iter().enumerate().skip(i) {
                        let count = i64::try_from(j - i + 1).unwrap();
                        prop_assert!(count <= i64::from(burst) + (b - a) / t,
                            "{} admitted in {} µs (burst {}, T {})", count, b - a, burst, t);
                    }
                }
            }
        }
    }
}
