//! What the service is made of, with no HTTP in it: the shared [`AppState`] and how it is built
//! from a [`ServerConfig`], a clock and a source of randomness.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use auth_core::authority::Authority;
use auth_core::clock::Clock;
use auth_core::keys::{KeyRing, MasterKey, RotationPolicy};
use auth_core::password::PasswordHasher;
use auth_core::random::Entropy;
use auth_core::ratelimit::{FallbackLimiter, LimiterBackend, MemoryLimiter, RedisLimiter, ScopeLimiter};
use auth_core::spec::Spec;
use auth_core::store::{SqlStore, Store};

use crate::backchannel::LogoutSender;
use crate::config::{MasterKeySource, ServerConfig};
use crate::metrics::Metrics;

/// What every handler and background task shares.
#[derive(Debug)]
pub struct AppState {
    /// The issuance paths: the only way to the store, the keys and the sessions.
    pub authority: Arc<Authority>,
    /// The spec in force.
    pub spec: Arc<Spec>,
    /// Scope-tied limits.
    pub limiter: ScopeLimiter,
    /// The Redis fallback wrapper, when Redis is configured.
    pub fallback: Option<Arc<FallbackLimiter>>,
    /// The configuration.
    pub config: ServerConfig,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Back-channel logout deliveries (the authority hands them over when browser sessions end).
    pub logouts: LogoutSender,
}

/// Opens the database (creating the data directory and the SQLite file as needed) and applies
/// migrations.
pub async fn open_store(config: &ServerConfig) -> anyhow::Result<Arc<dyn Store>> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let store = SqlStore::connect(&config.database_url()).await.context("opening the database")?;
    store.migrate().await.context("applying database migrations")?;
    Ok(Arc::new(store))
}

/// The master key: `--master-key` (`AUTH_MASTER_KEY`, base64 or hex), else the file of
/// `--master-key-file`, else `<data_dir>/master.key`, created with mode 0600 when missing.
pub fn load_master_key(config: &ServerConfig, entropy: &dyn Entropy) -> anyhow::Result<MasterKey> {
    let source = &config.master_key;
    if let Some(text) = &source.key {
        return MasterKey::from_text(text).context("AUTH_MASTER_KEY");
    }
    let path = source.file.clone().unwrap_or_else(|| config.data_dir.join("master.key"));
    MasterKey::load_or_create_file(&path, entropy).context("loading the master key")
}

/// The previous master keys of a master-key rotation: `--master-key-previous` (one or more,
/// separated by commas or spaces) and the file of `--master-key-previous-file` (one per line).
/// Signing keys sealed under them still open; new ones are sealed under the master key.
pub fn load_previous_master_keys(source: &MasterKeySource) -> anyhow::Result<Vec<MasterKey>> {
    let mut keys = Vec::new();
    if let Some(text) = &source.previous {
        keys.extend(MasterKey::parse_list(text).context("AUTH_MASTER_KEY_PREVIOUS")?);
    }
    if let Some(path) = &source.previous_file {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        keys.extend(
            MasterKey::parse_list(&text)
                .with_context(|| format!("AUTH_MASTER_KEY_PREVIOUS_FILE {}", path.display()))?,
        );
    }
    Ok(keys)
}

/// Builds the whole service: store, keys, limiters, metrics, on `clock` and `entropy` (the system
/// ones in production; frozen or seeded ones in tests). The keys are loaded but not rotated: the
/// caller decides ([`AppState::rotate_keys`] before serving, never for commands that only read).
pub async fn build_state(
    config: ServerConfig,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
) -> anyhow::Result<Arc<AppState>> {
    let spec = Arc::new(config.load_spec()?);
    let store = open_store(&config).await?;
    let master = load_master_key(&config, entropy.as_ref())?;
    let keys = Arc::new(
        KeyRing::new(store.clone(), master, RotationPolicy::from_spec(&spec), clock.clone(), entropy.clone())
            .with_previous_master_keys(load_previous_master_keys(&config.master_key)?),
    );
    warn_on_key_refresh_margin(&spec, config.key_refresh);
    let passwords = Arc::new(PasswordHasher::new(&spec.passwords, config.password_workers.max(1))?);
    let metrics = Arc::new(Metrics::new()?);
    let (backend, fallback): (Arc<dyn LimiterBackend>, Option<Arc<FallbackLimiter>>) = match &config.redis_url {
        Some(url) => {
            let redis: Arc<dyn LimiterBackend> = Arc::new(RedisLimiter::new(url, config.redis_prefix.clone())?);
            let fallback = Arc::new(FallbackLimiter::new(redis));
            (fallback.clone(), Some(fallback))
        }
        None => (Arc::new(MemoryLimiter::new()), None),
    };
    let limiter = ScopeLimiter::new(&spec, backend.clone(), clock.clone());
    let logouts = LogoutSender::new(metrics.clone(), store.clone(), clock.clone())?;
    let authority = Arc::new(
        Authority::new(spec.clone(), store, clock.clone(), entropy, keys, passwords)
            .with_liveness_cache(config.session_cache)
            .with_login_limits(backend, config.login)
            .with_logout_delivery(Arc::new(logouts.clone())),
    );
    Ok(Arc::new(AppState { authority, spec, limiter, fallback, config, metrics, clock, logouts }))
}

impl AppState {
    /// Applies the rotation policy (so that there is a signing key) and loads the keys.
    pub async fn rotate_keys(&self) -> anyhow::Result<()> {
        self.authority.rotate_keys().await.context("loading the signing keys")?;
        Ok(())
    }
}

/// Warns when keys are reloaded less often than the spec's rotation margins allow: until it
/// reloads, a replica may publish a JWKS without the next key (`publish_ahead - jwks_max_age`) or
/// keep signing with a key whose tokens then outlive it (`retire_after - access_ttl - leeway`).
fn warn_on_key_refresh_margin(spec: &Spec, key_refresh: Duration) {
    let keys = &spec.keys;
    let tokens = &spec.tokens;
    let margins = [
        ("keys.publish_ahead - keys.jwks_max_age", keys.publish_ahead.0.saturating_sub(keys.jwks_max_age.0)),
        (
            "keys.retire_after - tokens.access_ttl - tokens.leeway",
            keys.retire_after.0.saturating_sub(tokens.access_ttl.0).saturating_sub(tokens.leeway.0),
        ),
    ];
    for (name, margin) in margins {
        if key_refresh.as_secs() >= margin {
            tracing::warn!(
                key_refresh_secs = key_refresh.as_secs(),
                margin_secs = margin,
                "--key-refresh-secs is not shorter than the spec's margin {name}: a replica may serve stale keys until it reloads"
            );
        }
    }
}
