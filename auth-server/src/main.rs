//! `auth-server`: the standalone auth service. With no arguments it serves on 127.0.0.1:8080 from
//! `./auth-data/` (SQLite database, sealed keys, a generated master key file), creating what is
//! missing. This build publishes the signing keys (JWKS) and health endpoints; the OAuth endpoints
//! are built on the same `auth-core` pieces.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use auth_core::clock::{Clock, SystemClock};
use auth_core::keys::{KeyRing, MasterKey, RotationPolicy};
use auth_core::random::{Entropy, OsEntropy};
use auth_core::spec::Spec;
use auth_core::store::{SqlStore, Store};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "auth-server", version, about = "The auth HTTP service")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve HTTP (the default).
    Serve(ServeArgs),
}

#[derive(clap::Args, Debug, Clone)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "AUTH_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The auth.toml spec; a local default spec when absent.
    #[arg(long, env = "AUTH_SPEC")]
    spec: Option<PathBuf>,
    /// Database URL (sqlite:// or postgres://); SQLite under the data dir when absent.
    #[arg(long, env = "AUTH_DATABASE_URL")]
    database_url: Option<String>,
    /// Directory for the SQLite database and the master key file.
    #[arg(long, env = "AUTH_DATA_DIR", default_value = "auth-data")]
    data_dir: PathBuf,
}

struct AppState {
    keys: Arc<KeyRing>,
    store: Arc<dyn Store>,
    jwks_max_age: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        None => cli.serve,
    };
    serve(args).await
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let spec = match &args.spec {
        Some(path) => Spec::load(path).with_context(|| format!("loading {}", path.display()))?,
        None => Spec::default_local(&format!("http://{}", args.listen)),
    };
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let entropy: Arc<dyn Entropy> = Arc::new(OsEntropy::new());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let master = load_master_key(&args.data_dir, entropy.as_ref())?;
    let url = match &args.database_url {
        Some(url) => url.clone(),
        None => format!("sqlite://{}?mode=rwc", args.data_dir.join("auth.db").display()),
    };
    let store: Arc<dyn Store> = Arc::new(SqlStore::connect(&url).await.context("opening the database")?);
    store.migrate().await.context("applying migrations")?;
    let keys = Arc::new(KeyRing::new(
        store.clone(),
        master,
        RotationPolicy::from_spec(&spec),
        clock,
        entropy,
    ));
    keys.rotate().await.context("loading the signing keys")?;
    spawn_rotation(keys.clone());

    let state = Arc::new(AppState { keys, store, jwks_max_age: spec.keys.jwks_max_age.0 });
    let app = Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        issuer = %spec.issuer,
        spec_hash = %spec.hash(),
        "auth-server listening; signing keys at /.well-known/jwks.json"
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

fn load_master_key(data_dir: &Path, entropy: &dyn Entropy) -> anyhow::Result<MasterKey> {
    if let Ok(text) = std::env::var("AUTH_MASTER_KEY") {
        return Ok(MasterKey::from_text(&text)?);
    }
    let path = std::env::var_os("AUTH_MASTER_KEY_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| data_dir.join("master.key"));
    Ok(MasterKey::load_or_create_file(&path, entropy)?)
}

fn spawn_rotation(keys: Arc<KeyRing>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tick.tick().await;
            if let Err(e) = keys.rotate().await {
                tracing::warn!(error = %e, code = e.code(), "key rotation failed; keeping the current keys");
            }
        }
    });
}

async fn jwks(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    match state.keys.cached_snapshot() {
        Some(snapshot) => (
            StatusCode::OK,
            [(header::CACHE_CONTROL, format!("public, max-age={}", state.jwks_max_age))],
            Json(snapshot.keys.jwks()),
        )
            .into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "signing keys not loaded").into_response(),
    }
}

async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unreachable"),
    }
}
