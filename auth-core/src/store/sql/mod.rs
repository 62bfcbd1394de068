//! The sqlx implementation of the store's areas, one file per area, one implementation for
//! SQLite and PostgreSQL through sqlx's `Any` driver.
//!
//! Every query is written once, in the SQL both dialects share: `$N` placeholders (SQLite binds
//! `$N` to position N), BIGINT Unix timestamps, TEXT for JSON, and booleans read back through
//! `CAST(... AS INTEGER)` (the `Any` driver cannot decode a SQLite column declared BOOLEAN). The
//! migrations differ per dialect in column types; one query differs: PostgreSQL rotates a refresh
//! token in a single statement (a data-modifying CTE, which SQLite lacks), one round trip where a
//! transaction would take four.
//!
//! The invariants that several replicas could race on are enforced by the database, not by reads
//! before writes: partial unique indexes allow one `active` and one `pending` key, key transitions
//! are conditional updates on the expected prior state, and a refresh token is marked used by a
//! conditional update that exactly one caller can win.
//!
//! SQLite runs in WAL mode with a busy timeout, so concurrent writers wait for the lock instead of
//! failing. Write transactions begin with a write, so SQLite takes the write lock (waiting as
//! needed) before it reads anything and never has to upgrade a stale read snapshot.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::{AnyPool, Executor};

use super::Store;
use crate::{Error, Result};

/// The columns an audit event is written to, in the order `bind_audit` binds them.
macro_rules! audit_columns {
    () => {
        "at, kind, user_id, client_id, session_id, detail"
    };
}

mod audit;
mod browser;
mod clients;
mod consents;
mod families;
mod invitations;
mod keys;
mod users;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

/// How long a query waits for a pooled SQLite connection before the store reports
/// [`Error::StoreUnavailable`].
const SQLITE_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a query waits for a pooled PostgreSQL connection (or for a new one to open) before
/// the store reports [`Error::StoreUnavailable`]. When the server refuses connections, sqlx keeps
/// retrying until this deadline, so it is what a client waits for its 503 during an outage: one
/// second, as the service promises (a pool starved for that long is overloaded anyway).
const POSTGRES_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long SQLite waits for another connection's write lock before giving up.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 10_000;
/// Connections to a SQLite file. Writes are serialized by SQLite anyway; a few connections let
/// reads proceed beside a write.
const SQLITE_MAX_CONNECTIONS: u32 = 8;
/// Connections to PostgreSQL per process.
const POSTGRES_MAX_CONNECTIONS: u32 = 10;

/// The SQL dialect behind a [`SqlStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// SQLite: a file (or memory) database for a single process.
    Sqlite,
    /// PostgreSQL: shared by several replicas.
    Postgres,
}

impl Dialect {
    /// The dialect of a database URL: `sqlite:...` or `postgres://...` (`postgresql://...`).
    pub fn of_url(url: &str) -> Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(Error::invalid(
                "database_url",
                "expected a sqlite:// (or sqlite::memory:) or postgres:// URL",
            ))
        }
    }

    /// `sqlite` or `postgres`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// A [`Store`] on SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    dialect: Dialect,
    /// Where to open the connection that listens for revoked sessions (PostgreSQL only).
    listen_url: Option<DatabaseUrl>,
}

/// A database URL, which may hold a password: kept out of `Debug` output.
#[derive(Clone)]
struct DatabaseUrl(String);

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseUrl(..)")
    }
}

impl SqlStore {
    /// Connects to `url`: `sqlite://path?mode=rwc` (file, created if missing), `sqlite::memory:`
    /// (one private in-memory database, held by a single connection), or `postgres://...`.
    ///
    /// Opens one connection before returning, so a database that does not answer is reported here
    /// as [`Error::StoreUnavailable`] (after at most a few seconds). Does not migrate; call
    /// [`Store::migrate`].
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::of_url(url)?;
        let options = AnyConnectOptions::from_str(url)
            .map_err(|e| Error::invalid("database_url", e.to_string()))?;
        let pool_options = AnyPoolOptions::new();
        let pool_options = match dialect {
            Dialect::Postgres => pool_options
                .acquire_timeout(POSTGRES_ACQUIRE_TIMEOUT)
                .max_connections(POSTGRES_MAX_CONNECTIONS),
            // sqlx opens a fresh in-memory database for each connection: keep exactly one alive.
            Dialect::Sqlite if is_sqlite_memory(url) => pool_options
                .acquire_timeout(SQLITE_ACQUIRE_TIMEOUT)
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .after_connect(|conn, _| Box::pin(async move { sqlite_session(conn).await })),
            Dialect::Sqlite => pool_options
                .acquire_timeout(SQLITE_ACQUIRE_TIMEOUT)
                .max_connections(SQLITE_MAX_CONNECTIONS)
                .after_connect(|conn, _| Box::pin(async move { sqlite_session(conn).await })),
        };
        let pool = pool_options.connect_with(options).await?;
        if dialect == Dialect::Sqlite && !is_sqlite_memory(url) {
            // WAL lets readers proceed beside the writer. The mode is stored in the file, so once
            // is enough; switching needs a moment of exclusive access, which is why it is not done
            // by every new connection.
            let mode: String =
                sqlx::query_scalar("PRAGMA journal_mode = WAL").fetch_one(&pool).await?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(Error::Store(format!(
                    "SQLite refused WAL journaling (journal_mode is {mode})"
                )));
            }
        }
        let listen_url = (dialect == Dialect::Postgres).then(|| DatabaseUrl(url.to_owned()));
        Ok(Self { pool, dialect, listen_url })
    }

    /// The dialect of the database.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The connection pool, for administrative queries (and tests) outside the [`Store`] trait.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes every connection; later calls fail with [`Error::StoreUnavailable`].
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn is_sqlite_memory(url: &str) -> bool {
    url.starts_with("sqlite::memory:") || url.contains("mode=memory")
}

/// Per-connection SQLite settings (the journal mode is per file, set once in `connect`).
async fn sqlite_session(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    conn.execute(format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}").as_str()).await?;
    conn.execute("PRAGMA foreign_keys = ON").await?;
    conn.execute("PRAGMA synchronous = NORMAL").await?;
    Ok(())
}

fn migrate_error(e: MigrateError) -> Error {
    match e {
        MigrateError::Execute(e) => Error::from(e),
        other => Error::Store(format!("migration failed: {other}")),
    }
}

/// Whether `e` is a unique violation: on a conditional write, the sign that another writer won.
pub(super) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

pub(super) fn conflict_or(e: sqlx::Error, what: impl FnOnce() -> String) -> Error {
    if is_unique_violation(&e) { Error::Conflict(what()) } else { Error::from(e) }
}

/// A TEXT column holding a JSON object (users' and invitations' claims); `column` names it in the
/// error when it holds anything else.
pub(super) fn json_object_column(text: &str, column: impl FnOnce() -> String) -> Result<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::Store(format!("{} is not a JSON object", column()))),
        Err(e) => Err(Error::Store(format!("{} is not valid JSON: {e}", column()))),
    }
}

pub(super) fn to_i64(n: u32) -> i64 {
    i64::from(n)
}

#[async_trait]
impl Store for SqlStore {
    async fn migrate(&self) -> Result<()> {
        let migrator = match self.dialect {
            Dialect::Sqlite => &SQLITE_MIGRATIONS,
            Dialect::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await.map_err(migrate_error)?;
        users::fill_username_skeletons(self).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
