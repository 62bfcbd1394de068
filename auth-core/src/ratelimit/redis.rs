//! The Redis backend of the limiter: GCRA state shared by every replica.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{Gcra, LimiterBackend, RateDecision, decide_batch, ensure_distinct, now_us};
use crate::clock::UnixMillis;
use crate::spec::RateLimitSpec;
use crate::{Error, Result};

/// GCRA state in Redis, shared by every replica. The script runs atomically (EVALSHA, loaded on
/// first use); the time is the caller's, not Redis `TIME`, so every replica and a fixed test clock
/// decide alike. Keys are `{prefix}{key}` and expire when their bucket is full again.
///
/// The connection is opened on first use and re-established by the connection manager after a
/// failure; until then every check fails fast with [`Error::RateLimitBackend`].
pub struct RedisLimiter {
    client: redis::Client,
    config: RedisLimiterConfig,
    connection: tokio::sync::OnceCell<ConnectionManager>,
    script: redis::Script,
}

/// Connection settings of a [`RedisLimiter`].
#[derive(Debug, Clone)]
pub struct RedisLimiterConfig {
    /// Prepended to every key, e.g. `auth:rl:`. Default `auth:rl:`.
    pub key_prefix: String,
    /// Limit on opening a connection. Default 500 ms.
    pub connect_timeout: Duration,
    /// Limit on one script call. Default 250 ms: a limiter that waits longer than the request it
    /// guards is worse than the in-memory fallback.
    pub response_timeout: Duration,
}

impl Default for RedisLimiterConfig {
    fn default() -> Self {
        Self {
            key_prefix: "auth:rl:".into(),
            connect_timeout: Duration::from_millis(500),
            response_timeout: Duration::from_millis(250),
        }
    }
}

impl fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password; show only the address.
        f.debug_struct("RedisLimiter")
            .field("addr", &self.client.get_connection_info().addr.to_string())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn backend_error(e: &redis::RedisError) -> Error {
    Error::RateLimitBackend(e.to_string())
}

impl RedisLimiter {
    /// A limiter on the Redis at `url` (`redis://[:password@]host:port[/db]`) with default
    /// timeouts. No connection is made yet.
    pub fn new(url: &str, key_prefix: impl Into<String>) -> Result<Self> {
        Self::with_config(url, RedisLimiterConfig { key_prefix: key_prefix.into(), ..RedisLimiterConfig::default() })
    }

    /// A limiter with explicit settings. No connection is made yet.
    pub fn with_config(url: &str, config: RedisLimiterConfig) -> Result<Self> {
        let client = redis::Client::open(url).map_err(|e| backend_error(&e))?;
        Ok(Self { client, config, connection: tokio::sync::OnceCell::new(), script: redis::Script::new(super::REDIS_GCRA_SCRIPT) })
    }

    /// Opens the connection now (e.g. at startup, to report a bad URL early).
    pub async fn connect(&self) -> Result<()> {
        self.connection().await.map(|_| ())
    }

    async fn connection(&self) -> Result<ConnectionManager> {
        let manager = self
            .connection
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(self.config.connect_timeout)
                    .set_response_timeout(self.config.response_timeout)
                    // No retry loop inside a request: the next check tries again, and the
                    // fallback answers meanwhile.
                    .set_number_of_retries(0);
                ConnectionManager::new_with_config(self.client.clone(), config).await
            })
            .await
            .map_err(|e| backend_error(&e))?;
        Ok(manager.clone())
    }

    async fn run(&self, checks: &[(&str, RateLimitSpec)], now_ms: UnixMillis) -> Result<Vec<RateDecision>> {
        ensure_distinct(checks)?;
        let now = now_us(now_ms);
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(now);
        for (key, quota) in checks {
            let gcra = Gcra::new(*quota);
            invocation.key(format!("{}{key}", self.config.key_prefix));
            invocation.arg(gcra.emission_interval_us()).arg(gcra.capacity_us());
        }
        let mut connection = self.connection().await?;
        let reply: Vec<i64> = invocation.invoke_async(&mut connection).await.map_err(|e| backend_error(&e))?;
        let (admitted, pairs) = reply
            .split_first()
            .filter(|(_, rest)| rest.len() == 2 * checks.len())
            .ok_or_else(|| Error::RateLimitBackend("unexpected reply from the rate-limit script".into()))?;
        let stored: Vec<Option<i64>> = pairs.chunks_exact(2).map(|p| (p[0] == 1).then_some(p[1])).collect();
        let (decisions, new_tats) = decide_batch(checks, &stored, now);
        if new_tats.is_some() != (*admitted == 1) {
            // The script and the pure function disagree: a bug, not an outage; never guess.
            return Err(Error::RateLimitBackend("the rate-limit script and GCRA disagree".into()));
        }
        Ok(decisions)
    }
}

#[async_trait]
impl LimiterBackend for RedisLimiter {
    async fn check(&self, key: &str, quota: RateLimitSpec, now_ms: UnixMillis) -> Result<RateDecision> {
        let mut decisions = self.run(&[(key, quota)], now_ms).await?;
        decisions.pop().ok_or_else(|| Error::RateLimitBackend("empty reply from the rate-limit script".into()))
    }

    async fn check_many(&self, checks: &[(&str, RateLimitSpec)], now_ms: UnixMillis) -> Result<Vec<RateDecision>> {
        self.run(checks, now_ms).await
    }

    async fn peek(&self, key: &str, quota: RateLimitSpec, now_ms: UnixMillis) -> Result<RateDecision> {
        let mut connection = self.connection().await?;
        let stored: Option<String> = redis::cmd("GET")
            .arg(format!("{}{key}", self.config.key_prefix))
            .query_async(&mut connection)
            .await
            .map_err(|e| backend_error(&e))?;
        let stored = match stored {
            None => None,
            Some(text) => Some(text.parse::<i64>().map_err(|_| Error::RateLimitBackend(format!("{key} holds no TAT")))?),
        };
        Ok(Gcra::new(quota).peek(stored, now_us(now_ms)))
    }
}
