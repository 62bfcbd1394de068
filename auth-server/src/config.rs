//! Configuration, read once: [`ServerArgs`] (clap, each flag also an `AUTH_*` variable) is the one
//! place where defaults and variable names are written, and [`ServerConfig`] is what the service
//! runs with, made from it in [`ServerArgs::config`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use auth_core::authority::LoginQuotas;
use auth_core::spec::{RateLimitSpec, Seconds, Spec};
use clap::{Args, Parser};

/// The flags shared by `serve` and every operator command.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, env = "AUTH_LISTEN", default_value = "127.0.0.1:8080", global = true)]
    pub listen: SocketAddr,
    /// The auth.toml spec; a local default spec when absent.
    #[arg(long, env = "AUTH_SPEC", global = true)]
    pub spec: Option<PathBuf>,
    /// Let an operator command use a spec other than the one `serve` last ran with on this data
    /// directory.
    #[arg(long, global = true)]
    pub allow_other_spec: bool,
    /// Database URL (sqlite://... or postgres://...); SQLite under the data dir when absent.
    #[arg(long, env = "AUTH_DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// Directory for the SQLite database and the master key file.
    #[arg(long, env = "AUTH_DATA_DIR", default_value = "auth-data", global = true)]
    pub data_dir: PathBuf,
    /// The master key that seals signing keys (base64 or 64 hex digits); else the file below.
    #[arg(long, env = "AUTH_MASTER_KEY", global = true, hide_env_values = true)]
    pub master_key: Option<String>,
    /// A file holding the master key; `<data dir>/master.key` (created when missing) when absent.
    #[arg(long, env = "AUTH_MASTER_KEY_FILE", global = true)]
    pub master_key_file: Option<PathBuf>,
    /// Previous master keys of a master-key rotation (base64 or hex, separated by commas or
    /// spaces): signing keys sealed under them still open.
    #[arg(long, env = "AUTH_MASTER_KEY_PREVIOUS", global = true, hide_env_values = true)]
    pub master_key_previous: Option<String>,
    /// A file of previous master keys, one per line.
    #[arg(long, env = "AUTH_MASTER_KEY_PREVIOUS_FILE", global = true)]
    pub master_key_previous_file: Option<PathBuf>,
    /// Redis URL for rate limits shared by several replicas.
    #[arg(long, env = "AUTH_REDIS_URL", global = true, hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Prefix of this service's rate-limit keys in Redis (separates deployments sharing a Redis).
    #[arg(long, env = "AUTH_REDIS_PREFIX", default_value = "auth:rl:", global = true)]
    pub redis_prefix: String,
    /// Concurrent argon2 computations (default: the number of cores).
    #[arg(long, env = "AUTH_PASSWORD_WORKERS", global = true)]
    pub password_workers: Option<usize>,
    /// Seconds between key-rotation runs (and pick-up of other replicas' rotations).
    #[arg(long, env = "AUTH_KEY_REFRESH_SECS", default_value_t = 30, global = true)]
    pub key_refresh_secs: u64,
    /// Seconds a session read as live is trusted by introspection and bearer endpoints before it
    /// is read again; revocations are seen at once whatever this is (0: read every time).
    #[arg(long, env = "AUTH_SESSION_CACHE_SECS", default_value_t = 2, global = true)]
    pub session_cache_secs: u64,
    /// Seconds a request may take before it is answered 503 (bounds the wait on a database that
    /// stops answering mid-query).
    #[arg(long, env = "AUTH_REQUEST_TIMEOUT_SECS", default_value_t = 10, global = true)]
    pub request_timeout_secs: u64,
    /// Seconds a client has to send a request's headers, counted from the connection's start or
    /// from the first byte of a later request; a slower sender is disconnected.
    #[arg(long, env = "AUTH_HEADER_READ_TIMEOUT_SECS", default_value_t = 10, global = true)]
    pub header_read_timeout_secs: u64,
    /// Seconds a request's body has to arrive once its headers are in (408 after).
    #[arg(long, env = "AUTH_BODY_READ_TIMEOUT_SECS", default_value_t = 5, global = true)]
    pub body_read_timeout_secs: u64,
    /// Seconds a kept-alive connection may stay idle between requests before it is closed.
    #[arg(long, env = "AUTH_IDLE_TIMEOUT_SECS", default_value_t = 60, global = true)]
    pub idle_timeout_secs: u64,
    /// Connections served at once; one accepted beyond is closed at once (keep the process's
    /// open-file limit above this).
    #[arg(long, env = "AUTH_MAX_CONNECTIONS", default_value_t = 1000, global = true)]
    pub max_connections: usize,
    /// Login attempts allowed per account per minute (burst; refills evenly).
    #[arg(long, env = "AUTH_LOGIN_ATTEMPTS", default_value_t = 5, global = true)]
    pub login_attempts: u32,
    /// Failed logins allowed per source address (an IPv6 /64) per hour across all accounts, from
    /// devices that have not logged in before (burst; refills evenly).
    #[arg(long, env = "AUTH_LOGIN_FAILURES_PER_SOURCE", default_value_t = 30, global = true)]
    pub login_failures_per_source: u32,
    /// Requests per second allowed per client IP on credential endpoints (also the burst).
    #[arg(long, env = "AUTH_PER_IP_RPS", default_value_t = 50, global = true)]
    pub per_ip_rps: u32,
}

/// The flags that only `serve` reads (limits, timeouts, Redis, key reloads): accepted by every
/// command like the others, but listed only in the help of `serve` (and of the bare command).
pub const SERVE_ONLY_FLAGS: &[&str] = &[
    "redis_url",
    "redis_prefix",
    "key_refresh_secs",
    "session_cache_secs",
    "request_timeout_secs",
    "header_read_timeout_secs",
    "body_read_timeout_secs",
    "idle_timeout_secs",
    "max_connections",
    "login_attempts",
    "login_failures_per_source",
    "per_ip_rps",
];

/// Parses [`ServerArgs`] alone (for [`ServerConfig::local`]).
#[derive(Parser, Debug)]
struct DefaultsOnly {
    #[command(flatten)]
    args: ServerArgs,
}

impl ServerArgs {
    /// The runtime configuration these flags describe.
    pub fn config(&self) -> ServerConfig {
        let per_ip_rps = self.per_ip_rps.max(1);
        ServerConfig {
            spec: self.spec.clone(),
            listen: self.listen,
            database_url: self.database_url.clone(),
            data_dir: self.data_dir.clone(),
            master_key: MasterKeySource {
                key: self.master_key.clone(),
                file: self.master_key_file.clone(),
                previous: self.master_key_previous.clone(),
                previous_file: self.master_key_previous_file.clone(),
            },
            redis_url: self.redis_url.clone(),
            redis_prefix: self.redis_prefix.clone(),
            password_workers: self
                .password_workers
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from))
                .max(1),
            per_ip_burst: per_ip_rps,
            per_ip_period: Duration::from_micros(1_000_000 / u64::from(per_ip_rps)),
            login: LoginQuotas {
                attempts: RateLimitSpec { burst: self.login_attempts.max(1), per: Seconds(60) },
                source_failures: RateLimitSpec { burst: self.login_failures_per_source.max(1), per: Seconds(3600) },
            },
            key_refresh: Duration::from_secs(self.key_refresh_secs.max(1)),
            request_timeout: Duration::from_secs(self.request_timeout_secs.max(1)),
            session_cache: Duration::from_secs(self.session_cache_secs),
            connections: ConnectionLimits {
                header_read: Duration::from_secs(self.header_read_timeout_secs.max(1)),
                body_read: Duration::from_secs(self.body_read_timeout_secs.max(1)),
                idle: Duration::from_secs(self.idle_timeout_secs.max(1)),
                max_connections: self.max_connections.max(1),
            },
        }
    }
}

/// Where the master key and the previous master keys come from.
#[derive(Debug, Clone, Default)]
pub struct MasterKeySource {
    /// The key itself (base64 or hex).
    pub key: Option<String>,
    /// A file holding it; `<data_dir>/master.key` when neither is set.
    pub file: Option<PathBuf>,
    /// Previous master keys (base64 or hex, separated by commas or spaces).
    pub previous: Option<String>,
    /// A file of previous master keys, one per line.
    pub previous_file: Option<PathBuf>,
}

/// How the service runs.
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
    /// Where the master key comes from.
    pub master_key: MasterKeySource,
    /// Redis URL for cluster-wide rate limits; in-memory when `None`.
    pub redis_url: Option<String>,
    /// Prefix of the rate-limit keys in Redis; replicas of one service share it, other
    /// deployments on the same Redis use their own.
    pub redis_prefix: String,
    /// Concurrent argon2 computations.
    pub password_workers: usize,
    /// Per-IP limit on credential endpoints: requests per `per_ip_period`, with this burst.
    pub per_ip_burst: u32,
    /// Replenish period of the per-IP limit.
    pub per_ip_period: Duration,
    /// Login attempts per account or trusted device, and failed logins per source address.
    pub login: LoginQuotas,
    /// How often rotation runs and other replicas' key changes are picked up.
    pub key_refresh: Duration,
    /// How long a request may take before it is answered 503: bounds the wait on a database that
    /// stops answering in the middle of a query (packets dropped, not refused).
    pub request_timeout: Duration,
    /// How long a session read as live is trusted without reading it again, for introspection
    /// and bearer endpoints (revocations are seen at once, see `auth_core::sessions`); zero reads
    /// the database on every request.
    pub session_cache: Duration,
    /// How long a connection may take over each part of a request, and how many are served.
    pub connections: ConnectionLimits,
}

/// What a connection may hold: the bounds against clients that send slowly or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time to send a request's headers, from the connection's start (first request) or from the
    /// first byte of the request (later ones).
    pub header_read: Duration,
    /// Time for a request's body to arrive once its headers are in.
    pub body_read: Duration,
    /// Time a connection may wait for its next request.
    pub idle: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl ServerConfig {
    /// The defaults of the command line (without reading the environment) for a local start on
    /// `listen` with data under `data_dir`.
    pub fn local(listen: SocketAddr, data_dir: PathBuf) -> Self {
        // The flags' defaults always parse; the variables are not read here.
        let mut args = DefaultsOnly::command_defaults();
        args.listen = listen;
        args.data_dir = data_dir;
        args.config()
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

impl DefaultsOnly {
    /// [`ServerArgs`] with every flag at its declared default and no variable read.
    fn command_defaults() -> ServerArgs {
        let command = <Self as clap::CommandFactory>::command();
        // Defaults without the environment: each argument's `env` is dropped before parsing.
        let command = command.mut_args(|arg| arg.env(None::<&str>));
        let matches = command.get_matches_from(["auth-server"]);
        match <Self as clap::FromArgMatches>::from_arg_matches(&matches) {
            Ok(parsed) => parsed.args,
            // Unreachable: every flag is optional or has a default.
            Err(e) => e.exit(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn local_defaults_are_the_flags_defaults() {
        let config = ServerConfig::local("127.0.0.1:9".parse().unwrap(), "d".into());
        assert_eq!(config.listen.port(), 9);
        assert_eq!(config.data_dir, PathBuf::from("d"));
        assert_eq!(config.redis_prefix, "auth:rl:");
        assert_eq!(config.per_ip_burst, 50);
        assert_eq!(config.per_ip_period, Duration::from_millis(20));
        assert_eq!(config.login.attempts, RateLimitSpec { burst: 5, per: Seconds(60) });
        assert_eq!(config.login.source_failures, RateLimitSpec { burst: 30, per: Seconds(3600) });
        assert_eq!(config.key_refresh, Duration::from_secs(30));
        assert_eq!(config.session_cache, Duration::from_secs(2));
        assert_eq!(config.request_timeout, Duration::from_secs(10));
        assert_eq!(
            config.connections,
            ConnectionLimits {
                header_read: Duration::from_secs(10),
                body_read: Duration::from_secs(5),
                idle: Duration::from_secs(60),
                max_connections: 1000,
            }
        );
        assert!(config.master_key.key.is_none() && config.spec.is_none());
    }
}
