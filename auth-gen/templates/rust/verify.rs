//! [`Auth`]: token verification against the issuer's JWKS, and the scope limiter.
//!
//! The key set is fetched from the issuer and kept for the JWKS max age. A token naming an unknown
//! `kid` triggers one refetch, at most once per cooldown, so a flood of made-up kids cannot hammer
//! the issuer. Fetches are single-flight. When the issuer cannot be reached the last key set keeps
//! serving for a bounded time (tokens it verified stay verifiable until they expire), after which
//! verification answers [`AuthError::JwksUnavailable`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use auth_core::Code;
use auth_core::clock::{Clock, SystemClock};
use auth_core::error::TokenError;
use auth_core::keys::{JwkSet, KeySet};
use auth_core::ratelimit::{LimiterBackend, MemoryLimiter, ScopeLimiter};
use auth_core::spec::{ClaimSpec, RateLimitSpec, Seconds};
use auth_core::tokens::AccessTokenVerifier;

use super::spec::{self, Claims};

/// Where the key set comes from and how long it is trusted.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The JWKS URL; the issuer's `/.well-known/jwks.json` by default.
    pub jwks_url: String,
    /// How long a fetched key set is used before it is fetched again.
    pub max_age: Duration,
    /// The shortest time between two refetches caused by unknown `kid`s.
    pub refetch_cooldown: Duration,
    /// How long past its max age a key set keeps serving while the issuer is unreachable.
    pub stale_bound: Duration,
    /// How long one JWKS request may take.
    pub fetch_timeout: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwks_url: format!("{}/.well-known/jwks.json", spec::ISSUER),
            max_age: Duration::from_secs(spec::JWKS_MAX_AGE_SECS),
            refetch_cooldown: Duration::from_secs(10),
            stale_bound: Duration::from_secs(spec::ACCESS_TTL_SECS + spec::LEEWAY_SECS),
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// The token was rejected; the code is auth-core's (`token.expired`, ...).
    Token(TokenError),
    /// No usable key set: the issuer is unreachable and the cached one is too old.
    JwksUnavailable,
}

impl AuthError {
    /// The stable code: auth-core's token codes, or `jwks.unavailable`.
    pub fn code(self) -> Code {
        match self {
            Self::Token(e) => e.code(),
            Self::JwksUnavailable => Code::JwksUnavailable,
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Token(e) => write!(f, "{e}"),
            Self::JwksUnavailable => f.write_str("the issuer's key set is unavailable"),
        }
    }
}

impl std::error::Error for AuthError {}

/// The key set and when it was fetched.
struct CachedKeys {
    keys: Arc<KeySet>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
}

struct Inner {
    config: AuthConfig,
    verifier: AccessTokenVerifier,
    limiter: ScopeLimiter,
    clock: Arc<dyn Clock>,
    http: reqwest::Client,
    keys: RwLock<CachedKeys>,
    /// Held while fetching: concurrent misses wait for one fetch instead of starting their own.
    fetching: tokio::sync::Mutex<()>,
}

impl Inner {
    // A panic while the lock was held cannot leave `CachedKeys` half-written (each write is one
    // assignment), so a poisoned lock is still safe to use.
    fn cache(&self) -> RwLockReadGuard<'_, CachedKeys> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn cache_mut(&self) -> RwLockWriteGuard<'_, CachedKeys> {
        self.keys.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Verifies access tokens and applies scope limits. Cheap to clone; put it in the app state.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth").field("jwks_url", &self.inner.config.jwks_url).finish_non_exhaustive()
    }
}

impl Auth {
    /// Verification with in-memory limits and the system clock.
    pub fn new(config: AuthConfig) -> Self {
        Self::with_parts(config, Arc::new(MemoryLimiter::new()), Arc::new(SystemClock))
    }

    /// Verification with another limiter backend (e.g. auth-core's Redis limiter, shared by
    /// several replicas of the app) and clock.
    pub fn with_parts(config: AuthConfig, backend: Arc<dyn LimiterBackend>, clock: Arc<dyn Clock>) -> Self {
        let claims: BTreeMap<String, ClaimSpec> = spec::CUSTOM_CLAIMS
            .iter()
            .map(|(name, kind, required)| {
                ((*name).to_owned(), ClaimSpec::new(*kind, *required))
            })
            .collect();
        let verifier = AccessTokenVerifier::new(spec::ISSUER, spec::AUDIENCES, spec::LEEWAY_SECS, claims);
        let quotas = spec::Scope::ALL
            .iter()
            .filter_map(|scope| {
                scope.limit().map(|(burst, per)| (scope.as_str().to_owned(), RateLimitSpec { burst, per: Seconds(per) }))
            })
            .collect();
        let limiter = ScopeLimiter::with_quotas(quotas, backend, clock.clone());
        let http = reqwest::Client::builder().timeout(config.fetch_timeout).build().unwrap_or_default();
        let keys = CachedKeys { keys: Arc::new(KeySet::default()), fetched_at: None, last_attempt: None };
        Self {
            inner: Arc::new(Inner {
                config,
                verifier,
                limiter,
                clock,
                http,
                keys: RwLock::new(keys),
                fetching: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Installs a key set directly, as if just fetched (static keys, or keys pushed from elsewhere).
    pub fn set_jwks(&self, jwks: &JwkSet) {
        let now = Instant::now();
        let mut cached = self.inner.cache_mut();
        *cached = CachedKeys { keys: Arc::new(KeySet::from_jwks(jwks)), fetched_at: Some(now), last_attempt: Some(now) };
    }

    /// The scope limiter (quotas from the spec).
    pub fn limiter(&self) -> &ScopeLimiter {
        &self.inner.limiter
    }

    /// Verifies a bearer token: signature, algorithm, `typ`, `iss`, `aud`, `exp`, `nbf` and the
    /// custom claim types, with the spec's leeway.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let keys = self.current_keys().await?;
        let now = self.inner.clock.now();
        let verified = match self.inner.verifier.verify(token, &keys, now) {
            Err(TokenError::UnknownKey) if self.may_refetch() => {
                let keys = self.refetch().await.unwrap_or(keys);
                self.inner.verifier.verify(token, &keys, now)
            }
            other => other,
        };
        let claims = verified.map_err(AuthError::Token)?;
        Claims::from_access(claims).map_err(AuthError::Token)
    }

    /// The key set to verify with: the cached one while fresh, else a new fetch, else the stale
    /// one within its bound.
    async fn current_keys(&self) -> Result<Arc<KeySet>, AuthError> {
        let (keys, fetched_at) = {
            let cached = self.inner.cache();
            (cached.keys.clone(), cached.fetched_at)
        };
        let age = fetched_at.map(|t| t.elapsed());
        if age.is_some_and(|age| age < self.inner.config.max_age) {
            return Ok(keys);
        }
        if let Some(fresh) = self.refetch().await {
            return Ok(fresh);
        }
        match age {
            Some(age) if age < self.inner.config.max_age + self.inner.config.stale_bound => Ok(keys),
            _ => Err(AuthError::JwksUnavailable),
        }
    }

    fn may_refetch(&self) -> bool {
        let cached = self.inner.cache();
        cached.last_attempt.is_none_or(|t| t.elapsed() >= self.inner.config.refetch_cooldown)
    }

    /// Fetches the JWKS once for all concurrent callers; `None` when it cannot be had.
    async fn refetch(&self) -> Option<Arc<KeySet>> {
        let started = Instant::now();
        let _flight = self.inner.fetching.lock().await;
        {
            // Another caller fetched while this one waited: use its result.
            let cached = self.inner.cache();
            if cached.last_attempt.is_some_and(|t| t >= started) {
                return cached.fetched_at.is_some_and(|t| t >= started).then(|| cached.keys.clone());
            }
        }
        let fetched = self.fetch().await;
        let now = Instant::now();
        let mut cached = self.inner.cache_mut();
        cached.last_attempt = Some(now);
        let jwks = fetched.ok()?;
        cached.keys = Arc::new(KeySet::from_jwks(&jwks));
        cached.fetched_at = Some(now);
        Some(cached.keys.clone())
    }

    async fn fetch(&self) -> Result<JwkSet, reqwest::Error> {
        let response = self.inner.http.get(&self.inner.config.jwks_url).send().await?.error_for_status()?;
        response.json::<JwkSet>().await
    }
}
