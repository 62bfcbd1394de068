//! The service: configuration, shared state, the router and the background tasks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use auth_core::authority::Authority;
use auth_core::clock::{Clock, SystemClock};
use auth_core::keys::{KeyRing, MasterKey, RotationPolicy, RotationStep};
use auth_core::password::PasswordHasher;
use auth_core::random::{Entropy, OsEntropy};
use auth_core::ratelimit::{FallbackLimiter, LimiterBackend, MemoryLimiter, RedisLimiter, ScopeLimiter};
use auth_core::spec::{RateLimitSpec, Seconds, Spec};
use auth_core::store::{SqlStore, Store};
use axum::{Extension, Router};
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::PeerIpKeyExtractor;

use crate::metrics::Metrics;
use crate::{openapi, routes};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How the service is configured (from flags and `AUTH_*` variables).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The spec; a local default when `None`.
    pub spec: Option<PathBuf>,
    /// Where to listen (used for the default spec's issuer).
    pub listen: SocketAddr,
    /// Database URL; SQLite under `data_dir` when `None`.
    pub database_url: Option<String>,
    /// Directory for the SQLite database and the master key file.
    pub data_dir: PathBuf,
    /// Redis URL for cluster-wide rate limits; in-memory when `None`.
    pub redis_url: Option<String>,
    /// Prefix of the rate-limit keys in Redis; replicas of one service share it, other
    /// deployments on the same Redis use their own.
    pub redis_prefix: String,
    /// Concurrent argon2 computations (default: the number of cores).
    pub password_workers: usize,
    /// Per-IP limit on credential endpoints: requests per `per_ip_period`, with this burst.
    pub per_ip_burst: u32,
    /// Replenish period of the per-IP limit.
    pub per_ip_period: Duration,
    /// Login attempts per account: burst and refill window.
    pub login_attempts: RateLimitSpec,
    /// How often rotation runs and other replicas' key changes are picked up.
    pub key_refresh: Duration,
    /// How long a request may take before it is answered 503: bounds the wait on a database that
    /// stops answering in the middle of a query (packets dropped, not refused).
    pub request_timeout: Duration,
    /// How long a session read as live is trusted without reading it again, for introspection
    /// and bearer endpoints (revocations are seen at once, see `auth_core::sessions`); zero reads
    /// the database on every request.
    pub session_cache: Duration,
}

impl ServerConfig {
    /// Defaults for a local start.
    pub fn local(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            spec: None,
            listen,
            database_url: None,
            data_dir,
            redis_url: None,
            redis_prefix: "auth:rl:".to_owned(),
            password_workers: std::thread::available_parallelism().map_or(2, usize::from),
            per_ip_burst: 50,
            per_ip_period: Duration::from_millis(100),
            login_attempts: RateLimitSpec { burst: 5, per: Seconds(60) },
            key_refresh: Duration::from_secs(30),
            session_cache: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
        }
    }

    /// The spec this configuration serves.
    pub fn load_spec(&self) -> anyhow::Result<Spec> {
        match &self.spec {
            Some(path) => Spec::load(path).with_context(|| format!("loading the spec {}", path.display())),
            None => Ok(Spec::default_local(&format!("http://{}", self.listen))),
        }
    }

    /// The database URL, defaulting to SQLite under the data directory.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", self.data_dir.join("auth.db").display()))
    }
}

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// The issuance paths.
    pub authority: Arc<Authority>,
    /// The spec in force.
    pub spec: Arc<Spec>,
    /// Scope-tied limits.
    pub limiter: ScopeLimiter,
    /// Per-account login attempts, on the same backend as the scope limits.
    pub login_limiter: Arc<dyn LimiterBackend>,
    /// The Redis fallback wrapper, when Redis is configured.
    pub fallback: Option<Arc<FallbackLimiter>>,
    /// The configuration.
    pub config: ServerConfig,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Derived once from the spec: the JWKS `Cache-Control` value and the discovery document.
    pub published: routes::wellknown::Published,
}

impl AppState {
    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        self.authority.store()
    }

    /// The key ring.
    pub fn keys(&self) -> &KeyRing {
        self.authority.keys()
    }
}

/// Opens the database (creating the data directory, the SQLite file and the master key file as
/// needed) and applies migrations.
pub async fn open_store(config: &ServerConfig) -> anyhow::Result<Arc<dyn Store>> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let store = SqlStore::connect(&config.database_url()).await.context("opening the database")?;
    store.migrate().await.context("applying database migrations")?;
    Ok(Arc::new(store))
}

/// Reads the master key: `AUTH_MASTER_KEY` (base64 or hex), else the file named by
/// `AUTH_MASTER_KEY_FILE`, else `<data_dir>/master.key`, created with mode 0600 when missing.
pub fn load_master_key(config: &ServerConfig, entropy: &dyn Entropy) -> anyhow::Result<MasterKey> {
    if let Ok(text) = std::env::var("AUTH_MASTER_KEY") {
        return MasterKey::from_text(&text).context("AUTH_MASTER_KEY");
    }
    let path = std::env::var_os("AUTH_MASTER_KEY_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| config.data_dir.join("master.key"));
    MasterKey::load_or_create_file(&path, entropy).context("loading the master key")
}

/// Reads the previous master keys of a master-key rotation: `AUTH_MASTER_KEY_PREVIOUS` (one or
/// more, base64 or hex, separated by commas or spaces) and the file named by
/// `AUTH_MASTER_KEY_PREVIOUS_FILE` (one or more, one per line). Signing keys sealed under them
/// still open; new ones are sealed under the master key. None when neither is set.
pub fn load_previous_master_keys() -> anyhow::Result<Vec<MasterKey>> {
    let mut keys = Vec::new();
    if let Ok(text) = std::env::var("AUTH_MASTER_KEY_PREVIOUS") {
        keys.extend(MasterKey::parse_list(&text).context("AUTH_MASTER_KEY_PREVIOUS")?);
    }
    if let Some(path) = std::env::var_os("AUTH_MASTER_KEY_PREVIOUS_FILE") {
        let path = PathBuf::from(path);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        keys.extend(MasterKey::parse_list(&text).with_context(|| format!("AUTH_MASTER_KEY_PREVIOUS_FILE {}", path.display()))?);
    }
    Ok(keys)
}

/// Builds the whole service: store, keys (rotated once, so there is a signing key), limiters,
/// metrics.
pub async fn build_state(config: ServerConfig) -> anyhow::Result<Arc<AppState>> {
    let spec = Arc::new(config.load_spec()?);
    let entropy: Arc<dyn Entropy> = Arc::new(OsEntropy::new());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = open_store(&config).await?;
    let master = load_master_key(&config, entropy.as_ref())?;
    let keys = Arc::new(
        KeyRing::new(store.clone(), master, RotationPolicy::from_spec(&spec), clock.clone(), entropy.clone())
            .with_previous_master_keys(load_previous_master_keys()?),
    );
    keys.rotate().await.context("loading the signing keys")?;
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
    let authority = Arc::new(
        Authority::new(spec.clone(), store, clock.clone(), entropy, keys, passwords)
            .with_session_cache(config.session_cache),
    );
    let published = routes::wellknown::Published::new(&spec);
    Ok(Arc::new(AppState {
        authority,
        spec,
        limiter,
        login_limiter: backend,
        fallback,
        config,
        metrics,
        clock,
        published,
    }))
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

/// The router. Credential endpoints sit behind a per-IP limit, shared by all of them; its
/// refusal speaks each endpoint's error format.
pub fn router(state: Arc<AppState>) -> Router {
    let per_ip = GovernorConfigBuilder::default()
        .period(state.config.per_ip_period)
        .burst_size(state.config.per_ip_burst.max(1))
        .key_extractor(PeerIpKeyExtractor)
        .finish()
        .map(Arc::new);
    let metrics = state.metrics.clone();
    let mut oauth = Router::new()
        .route("/oauth/token", post(routes::oauth::token))
        .route("/oauth/revoke", post(routes::oauth::revoke));
    // Not limited per IP: resource servers introspect for the requests they serve, from few
    // addresses, and only with a confidential client's secret (256 random bits, not guessable).
    let introspection = Router::new().route("/oauth/introspect", post(routes::oauth::introspect));
    let mut sign_up = Router::new().route("/v1/users", post(routes::users::sign_up));
    if let Some(per_ip) = per_ip {
        let limited = metrics.rate_limited.with_label_values(&["per_ip"]);
        let also_limited = limited.clone();
        oauth = oauth.layer(GovernorLayer::new(per_ip.clone()).error_handler(move |e| {
            limited.inc();
            routes::per_ip_refusal(e)
        }));
        sign_up = sign_up.layer(GovernorLayer::new(per_ip).error_handler(move |e| {
            also_limited.inc();
            routes::per_ip_problem(e)
        }));
    }
    let document = openapi::OpenApiJson::new(&state.spec);
    Router::new()
        .merge(oauth)
        .merge(introspection)
        .merge(sign_up)
        .route("/.well-known/jwks.json", get(routes::wellknown::jwks))
        .route("/.well-known/openid-configuration", get(routes::wellknown::openid_configuration))
        .route("/.well-known/oauth-authorization-server", get(routes::wellknown::authorization_server))
        .route("/userinfo", get(routes::users::userinfo))
        .route("/v1/sessions", get(routes::users::sessions))
        .route("/v1/sessions/{sid}", delete(routes::users::end_session))
        .route("/v1/logout", post(routes::users::logout))
        .route("/healthz", get(routes::ops::healthz))
        .route("/readyz", get(routes::ops::readyz))
        .route("/metrics", get(routes::ops::metrics))
        .route("/openapi.json", get(openapi::openapi_json).layer(Extension(document)))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), around_every_request))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// What is done around every request, in one layer (it runs on every request):
///
/// - **A deadline.** A request not completed within `request_timeout` is answered 503 in the
///   endpoint's format. Requests that wait on the database are bounded anyway when it refuses
///   connections (the pool's acquire timeout); this bounds those caught by a database that stops
///   answering mid-query, whose connection would otherwise hang until the operating system gives
///   up on it. The abandoned work is dropped: an open transaction is rolled back by the database
///   when its connection goes.
/// - **No caching of `/oauth/`.** Token responses and their errors (RFC 6749 section 5.1) and token
///   state from introspection (RFC 7662) must not be stored: the handlers set `Cache-Control:
///   no-store` and `Pragma: no-cache` on their own answers; this sets them on the ones made around
///   a handler as well (per-IP refusals, 405, 404, the deadline's 503).
/// - **Metrics** of every request by its matched route, method and status, with its latency.
async fn around_every_request(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    // Shared handles, not copies.
    let route = request.extensions().get::<axum::extract::MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", axum::extract::MatchedPath::as_str);
    let method = request.method().clone();
    let oauth = request.uri().path().starts_with("/oauth/");
    let started = std::time::Instant::now();
    let timeout = state.config.request_timeout;
    let mut response = match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(route, timeout_secs = timeout.as_secs_f64(), "request not completed in time; answered 503");
            let detail = format!("the request did not complete within {} s", timeout.as_secs_f64());
            let status = axum::http::StatusCode::SERVICE_UNAVAILABLE;
            if oauth {
                crate::error::OAuthError::new(status, "temporarily_unavailable", format!("request.timeout: {detail}"))
                    .into_response()
            } else {
                crate::error::Problem::new(status, "request.timeout", "Service unavailable").detail(detail).into_response()
            }
        }
    };
    if oauth {
        let headers = response.headers_mut();
        for (name, value) in crate::error::no_store() {
            headers.insert(name, value);
        }
    }
    state.metrics.record(route, method.as_str(), response.status().as_str(), started.elapsed());
    response
}

/// Rotates keys (and picks up other replicas' rotations) every `key_refresh`; mirrors the
/// rate-limit backend's health into metrics; follows the sessions other processes revoke.
/// Errors are logged and retried, never fatal: the ring keeps its last good snapshot.
pub fn spawn_background(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    // Owned by the task below, so aborting that task ends this one too.
    let follow = AbortOnDrop(tokio::spawn(state.authority.session_liveness().clone().follow()));
    tokio::spawn(async move {
        let _follow = follow;
        let mut tick = tokio::time::interval(state.config.key_refresh);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match state.keys().rotate().await {
                Ok(steps) => {
                    for step in steps {
                        let name = match step {
                            RotationStep::GenerateActive | RotationStep::GeneratePending { .. } => "generate",
                            RotationStep::Activate { .. } => "activate",
                            RotationStep::Deactivate { .. } => "deactivate",
                            RotationStep::Retire { .. } => "retire",
                        };
                        state.metrics.key_rotations.with_label_values(&[name]).inc();
                    }
                }
                Err(e) => tracing::warn!(error = %e, code = e.code(), "key rotation failed; keeping the current keys"),
            }
            if let Some(fallback) = &state.fallback {
                state.metrics.limiter_degraded.set(i64::from(fallback.is_degraded()));
                state.metrics.limiter_fallbacks.set(i64::try_from(fallback.fallbacks()).unwrap_or(i64::MAX));
            }
        }
    })
}

/// Aborts a task when dropped (with the task that holds it).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves until SIGTERM or Ctrl-C, then drains in-flight requests.
pub async fn serve(state: Arc<AppState>, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let background = spawn_background(state.clone());
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
    background.abort();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: draining in-flight requests");
}
