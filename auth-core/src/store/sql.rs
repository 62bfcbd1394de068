//! The sqlx implementation of [`super::Store`]: one implementation for SQLite and PostgreSQL,
//! through sqlx's `Any` driver.
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
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::PgListener;
use sqlx::{AnyPool, Executor, Row};

use super::{
    ClientRecord, FamilyRecord, KeyChange, KeyRecord, KeyState, RefreshTokenRecord,
    RefreshTokenView, RevocationFeed, Store, UserRecord,
};
use crate::audit::{AuditEvent, AuditKind};
use crate::clock::UnixSeconds;
use crate::spec::SigningAlgorithm;
use crate::{Error, Result};

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

/// The channel PostgreSQL announces revoked sessions on (migration 0002).
const SESSION_REVOKED_CHANNEL: &str = "auth_session_revoked";

/// A [`super::Store`] on SQLite or PostgreSQL.
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
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn conflict_or(e: sqlx::Error, what: impl FnOnce() -> String) -> Error {
    if is_unique_violation(&e) { Error::Conflict(what()) } else { Error::from(e) }
}

fn to_i64(n: u32) -> i64 {
    i64::from(n)
}

macro_rules! user_columns {
    () => {
        "id, username, password_hash, claims, CAST(disabled AS INTEGER) AS disabled, created_at"
    };
}

macro_rules! key_columns {
    () => {
        "kid, alg, state, created_at, activates_at, deactivated_at, retired_at, public_jwk, \
         private_sealed, master_key_id"
    };
}

/// The columns an audit event is written to, in the order `bind_audit` binds them.
macro_rules! audit_columns {
    () => {
        "at, kind, user_id, client_id, session_id, detail"
    };
}

macro_rules! family_columns {
    () => {
        "id, user_id, client_id, scope, created_at, absolute_expires_at, revoked_at, revoked_reason"
    };
}

/// The names a query gives the user columns: plain in the users queries, prefixed where a user
/// is joined to other tables whose columns share the names.
struct UserColumns {
    id: &'static str,
    username: &'static str,
    password_hash: &'static str,
    claims: &'static str,
    disabled: &'static str,
    created_at: &'static str,
}

const USER: UserColumns = UserColumns {
    id: "id",
    username: "username",
    password_hash: "password_hash",
    claims: "claims",
    disabled: "disabled",
    created_at: "created_at",
};

/// The user columns of [`REFRESH_TOKEN_VIEW`].
const JOINED_USER: UserColumns = UserColumns {
    id: "u_id",
    username: "u_username",
    password_hash: "u_password_hash",
    claims: "u_claims",
    disabled: "u_disabled",
    created_at: "u_created_at",
};

fn user_from_row(row: &AnyRow) -> Result<UserRecord> {
    user_from_columns(row, &USER)
}

fn user_from_columns(row: &AnyRow, columns: &UserColumns) -> Result<UserRecord> {
    let id: String = row.try_get(columns.id)?;
    let claims_text: String = row.try_get(columns.claims)?;
    let claims = match serde_json::from_str::<serde_json::Value>(&claims_text) {
        Ok(serde_json::Value::Object(map)) => map,
        Ok(_) => {
            return Err(Error::Store(format!("users.claims of user {id} is not a JSON object")));
        }
        Err(e) => {
            return Err(Error::Store(format!("users.claims of user {id} is not valid JSON: {e}")));
        }
    };
    Ok(UserRecord {
        username: row.try_get(columns.username)?,
        password_hash: row.try_get(columns.password_hash)?,
        claims,
        disabled: row.try_get::<i64, _>(columns.disabled)? != 0,
        created_at: row.try_get(columns.created_at)?,
        id,
    })
}

fn client_from_row(row: &AnyRow) -> Result<ClientRecord> {
    Ok(ClientRecord {
        id: row.try_get("id")?,
        secret_hash: row.try_get("secret_hash")?,
        created_at: row.try_get("created_at")?,
    })
}

fn key_from_row(row: &AnyRow) -> Result<KeyRecord> {
    let kid: String = row.try_get("kid")?;
    let alg_text: String = row.try_get("alg")?;
    let alg = SigningAlgorithm::parse(&alg_text).ok_or_else(|| {
        Error::Store(format!(
            "signing_keys.alg of key {kid} is {alg_text:?}, not a known algorithm"
        ))
    })?;
    let state_text: String = row.try_get("state")?;
    let state = KeyState::parse(&state_text).ok_or_else(|| {
        Error::Store(format!("signing_keys.state of key {kid} is {state_text:?}, not a key state"))
    })?;
    Ok(KeyRecord {
        alg,
        state,
        created_at: row.try_get("created_at")?,
        activates_at: row.try_get("activates_at")?,
        deactivated_at: row.try_get("deactivated_at")?,
        retired_at: row.try_get("retired_at")?,
        public_jwk: row.try_get("public_jwk")?,
        private_sealed: row.try_get("private_sealed")?,
        master_key_id: row.try_get("master_key_id")?,
        kid,
    })
}

fn family_from_row(row: &AnyRow) -> Result<FamilyRecord> {
    Ok(FamilyRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        client_id: row.try_get("client_id")?,
        scope: row.try_get("scope")?,
        created_at: row.try_get("created_at")?,
        absolute_expires_at: row.try_get("absolute_expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        revoked_reason: row.try_get("revoked_reason")?,
    })
}

fn audit_from_row(row: &AnyRow) -> Result<AuditEvent> {
    let id: i64 = row.try_get("id")?;
    let kind_text: String = row.try_get("kind")?;
    let kind = AuditKind::parse(&kind_text).ok_or_else(|| {
        Error::Store(format!("audit_events.kind of event {id} is {kind_text:?}, not an event kind"))
    })?;
    let detail_text: String = row.try_get("detail")?;
    let detail = serde_json::from_str(&detail_text).map_err(|e| {
        Error::Store(format!("audit_events.detail of event {id} is not valid JSON: {e}"))
    })?;
    Ok(AuditEvent {
        id,
        at: row.try_get("at")?,
        kind,
        user_id: row.try_get("user_id")?,
        client_id: row.try_get("client_id")?,
        session_id: row.try_get("session_id")?,
        detail,
    })
}

const INSERT_KEY: &str = concat!(
    "INSERT INTO signing_keys (",
    key_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
);
const ACTIVATE_KEY: &str = "UPDATE signing_keys SET state = 'active', activates_at = $2 \
                            WHERE kid = $1 AND state = 'pending'";
const DEACTIVATE_KEY: &str = "UPDATE signing_keys SET state = 'retiring', deactivated_at = $2 \
                              WHERE kid = $1 AND state = 'active'";
const RETIRE_KEY: &str = "UPDATE signing_keys \
                          SET state = 'retired', retired_at = $2, private_sealed = NULL \
                          WHERE kid = $1 AND state = 'retiring'";
const REWRAP_KEY: &str = "UPDATE signing_keys SET private_sealed = $3, master_key_id = $4 \
                          WHERE kid = $1 AND master_key_id = $2 AND private_sealed IS NOT NULL";

/// A refresh token with its family and the family's user (if any), by the token's hash.
const REFRESH_TOKEN_VIEW: &str = concat!(
    "SELECT t.hash AS token_hash, t.family_id AS token_family_id, ",
    "t.created_at AS token_created_at, t.idle_expires_at AS token_idle_expires_at, ",
    "t.used_at AS token_used_at, t.successor_hash AS token_successor_hash, ",
    "t.successor_sealed AS token_successor_sealed, ",
    "f.id, f.user_id, f.client_id, f.scope, f.created_at, f.absolute_expires_at, ",
    "f.revoked_at, f.revoked_reason, ",
    "u.id AS u_id, u.username AS u_username, u.password_hash AS u_password_hash, ",
    "u.claims AS u_claims, CAST(u.disabled AS INTEGER) AS u_disabled, u.created_at AS u_created_at ",
    "FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id ",
    "LEFT JOIN users u ON u.id = f.user_id WHERE t.hash = $1"
);

/// Marks a refresh token used, if it is unused and its family unrevoked. The database locks the
/// row, so of concurrent rotations of one parent only the first matches; the others find it used.
macro_rules! mark_refresh_used {
    () => {
        "UPDATE refresh_tokens SET used_at = $2, successor_hash = $3, successor_sealed = $4 \
         WHERE hash = $1 AND used_at IS NULL AND EXISTS (SELECT 1 FROM refresh_families f \
         WHERE f.id = refresh_tokens.family_id AND f.revoked_at IS NULL)"
    };
}
const MARK_REFRESH_USED: &str = mark_refresh_used!();

/// The whole rotation in one PostgreSQL statement (SQLite has no data-modifying CTEs, and runs
/// the same three writes in a transaction): [`MARK_REFRESH_USED`], then the successor and the
/// audit event only for the row it marked. Answers 1 if this call won, 0 if not.
/// The successor is new: unused, so its own successor columns stay NULL.
const ROTATE_REFRESH_POSTGRES: &str = concat!(
    "WITH parent AS (",
    mark_refresh_used!(),
    " RETURNING family_id), ",
    "successor AS (INSERT INTO refresh_tokens (hash, family_id, created_at, idle_expires_at) ",
    "SELECT $3, family_id, $5, $6 FROM parent), ",
    "event AS (INSERT INTO audit_events (",
    audit_columns!(),
    ") SELECT $7, $8, $9, $10, $11, $12 FROM parent) ",
    "SELECT COUNT(*) FROM parent"
);

/// Applies one key change inside `tx`; `false` if the key was not in the state it expects.
async fn apply_key_change(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    change: &KeyChange,
) -> Result<bool, sqlx::Error> {
    let query = match change {
        KeyChange::Insert(key) => sqlx::query(INSERT_KEY)
            .bind(&key.kid)
            .bind(key.alg.as_str())
            .bind(key.state.as_str())
            .bind(key.created_at)
            .bind(key.activates_at)
            .bind(key.deactivated_at)
            .bind(key.retired_at)
            .bind(&key.public_jwk)
            .bind(key.private_sealed.as_deref())
            .bind(&key.master_key_id),
        KeyChange::Activate { kid, at } => sqlx::query(ACTIVATE_KEY).bind(kid).bind(*at),
        KeyChange::Deactivate { kid, at } => sqlx::query(DEACTIVATE_KEY).bind(kid).bind(*at),
        KeyChange::Retire { kid, at } => sqlx::query(RETIRE_KEY).bind(kid).bind(*at),
        KeyChange::Rewrap { kid, from_master_key_id, sealed, master_key_id } => sqlx::query(REWRAP_KEY)
            .bind(kid)
            .bind(from_master_key_id)
            .bind(sealed.as_slice())
            .bind(master_key_id),
    };
    Ok(query.execute(&mut **tx).await?.rows_affected() == 1)
}

#[async_trait]
impl Store for SqlStore {
    async fn migrate(&self) -> Result<()> {
        let migrator = match self.dialect {
            Dialect::Sqlite => &SQLITE_MIGRATIONS,
            Dialect::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await.map_err(migrate_error)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_user(&self, user: &UserRecord) -> Result<()> {
        let claims = serde_json::Value::Object(user.claims.clone()).to_string();
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, claims, disabled, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&user.id)
        .bind(&user.username)
        .bind(&user.password_hash)
        .bind(claims)
        .bind(user.disabled)
        .bind(user.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_or(e, || format!("user {:?}", user.username)))?;
        Ok(())
    }

    async fn user_by_username(&self, username: &str) -> Result<Option<UserRecord>> {
        sqlx::query(concat!("SELECT ", user_columns!(), " FROM users WHERE username = $1"))
            .bind(username)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<UserRecord>> {
        sqlx::query(concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(user_from_row)
            .transpose()
    }

    async fn list_users(&self, limit: u32, offset: u32) -> Result<Vec<UserRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY created_at, id LIMIT $1 OFFSET $2"
        ))
        .bind(to_i64(limit))
        .bind(to_i64(offset))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(user_from_row)
        .collect()
    }

    async fn set_password_hash(&self, user_id: &str, password_hash: &str) -> Result<()> {
        let done = sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(user_id)
            .bind(password_hash)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound(format!("user {user_id}")));
        }
        Ok(())
    }

    async fn set_user_disabled(&self, user_id: &str, disabled: bool) -> Result<()> {
        let done = sqlx::query("UPDATE users SET disabled = $2 WHERE id = $1")
            .bind(user_id)
            .bind(disabled)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound(format!("user {user_id}")));
        }
        Ok(())
    }

    async fn create_client(&self, client: &ClientRecord) -> Result<()> {
        sqlx::query("INSERT INTO clients (id, secret_hash, created_at) VALUES ($1, $2, $3)")
            .bind(&client.id)
            .bind(client.secret_hash.as_deref())
            .bind(client.created_at)
            .execute(&self.pool)
            .await
            .map_err(|e| conflict_or(e, || format!("client {:?}", client.id)))?;
        Ok(())
    }

    async fn client(&self, id: &str) -> Result<Option<ClientRecord>> {
        sqlx::query("SELECT id, secret_hash, created_at FROM clients WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(client_from_row)
            .transpose()
    }

    async fn list_clients(&self) -> Result<Vec<ClientRecord>> {
        sqlx::query("SELECT id, secret_hash, created_at FROM clients ORDER BY id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(client_from_row)
            .collect()
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            key_columns!(),
            " FROM signing_keys ORDER BY created_at, kid"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(key_from_row)
        .collect()
    }

    async fn apply_key_changes(&self, changes: &[KeyChange]) -> Result<bool> {
        // Both databases check a unique index after every statement (a partial unique index cannot
        // be deferred to commit), which is why the order of the changes matters.
        let mut tx = self.pool.begin().await?;
        for change in changes {
            match apply_key_change(&mut tx, change).await {
                Ok(true) => {}
                Ok(false) => {
                    tx.rollback().await?;
                    return Ok(false);
                }
                // Another replica inserted or activated a key first.
                Err(e) if is_unique_violation(&e) => {
                    tx.rollback().await?;
                    return Ok(false);
                }
                Err(e) => return Err(e.into()),
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn create_family(&self, family: &FamilyRecord, first: &RefreshTokenRecord) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(concat!(
            "INSERT INTO refresh_families (",
            family_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&family.id)
        .bind(family.user_id.as_deref())
        .bind(&family.client_id)
        .bind(&family.scope)
        .bind(family.created_at)
        .bind(family.absolute_expires_at)
        .bind(family.revoked_at)
        .bind(family.revoked_reason.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_or(e, || format!("refresh family {}", family.id)))?;
        insert_refresh_token(&mut tx, first).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn refresh_token(&self, hash: &[u8]) -> Result<Option<RefreshTokenView>> {
        let row = sqlx::query(REFRESH_TOKEN_VIEW).bind(hash).fetch_optional(&self.pool).await?;
        let Some(row) = row else { return Ok(None) };
        let token = RefreshTokenRecord {
            hash: row.try_get("token_hash")?,
            family_id: row.try_get("token_family_id")?,
            created_at: row.try_get("token_created_at")?,
            idle_expires_at: row.try_get("token_idle_expires_at")?,
            used_at: row.try_get("token_used_at")?,
            successor_hash: row.try_get("token_successor_hash")?,
            successor_sealed: row.try_get("token_successor_sealed")?,
        };
        let user_id: Option<String> = row.try_get(JOINED_USER.id)?;
        let user = match user_id {
            Some(_) => Some(user_from_columns(&row, &JOINED_USER)?),
            None => None,
        };
        Ok(Some(RefreshTokenView { token, family: family_from_row(&row)?, user }))
    }

    async fn rotate_refresh(
        &self,
        parent_hash: &[u8],
        used_at: UnixSeconds,
        successor_sealed: &[u8],
        successor: &RefreshTokenRecord,
        event: &AuditEvent,
    ) -> Result<bool> {
        if self.dialect == Dialect::Postgres {
            // One statement, hence one round trip and one implicit transaction: the conditional
            // update, the successor and the audit event either all happen or none does.
            let query = sqlx::query(ROTATE_REFRESH_POSTGRES)
                .bind(parent_hash)
                .bind(used_at)
                .bind(successor.hash.as_slice())
                .bind(successor_sealed)
                .bind(successor.created_at)
                .bind(successor.idle_expires_at);
            let row = bind_audit(query, event)
                .fetch_one(&self.pool)
                .await
                .map_err(|e| conflict_or(e, || "refresh token hash".to_owned()))?;
            let rotated: i64 = row.try_get(0)?;
            return Ok(rotated == 1);
        }
        let mut tx = self.pool.begin().await?;
        // The first statement writes: SQLite takes its write lock here (waiting on busy_timeout),
        // so a concurrent rotation of the same parent then finds it used. The family condition
        // keeps a revocation that races with a refresh from being followed by a fresh token of
        // the revoked session.
        let marked = sqlx::query(MARK_REFRESH_USED)
            .bind(parent_hash)
            .bind(used_at)
            .bind(successor.hash.as_slice())
            .bind(successor_sealed)
            .execute(&mut *tx)
            .await?;
        if marked.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_refresh_token(&mut tx, successor).await?;
        insert_audit(&mut *tx, event).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn family(&self, id: &str) -> Result<Option<FamilyRecord>> {
        sqlx::query(concat!("SELECT ", family_columns!(), " FROM refresh_families WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(family_from_row)
            .transpose()
    }

    async fn active_families_of_user(
        &self,
        user_id: &str,
        now: UnixSeconds,
    ) -> Result<Vec<FamilyRecord>> {
        sqlx::query(concat!(
            "SELECT ",
            family_columns!(),
            " FROM refresh_families WHERE user_id = $1 AND revoked_at IS NULL",
            " AND absolute_expires_at > $2 ORDER BY created_at, id"
        ))
        .bind(user_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(family_from_row)
        .collect()
    }

    async fn revoke_family(&self, family_id: &str, at: UnixSeconds, reason: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE refresh_families SET revoked_at = $2, revoked_reason = $3 \
             WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(family_id)
        .bind(at)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_user_families(
        &self,
        user_id: &str,
        at: UnixSeconds,
        reason: &str,
    ) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE refresh_families SET revoked_at = $2, revoked_reason = $3 \
             WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(user_id)
        .bind(at)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn revocation_feed(&self) -> Result<Option<Box<dyn RevocationFeed>>> {
        let Some(url) = &self.listen_url else { return Ok(None) };
        let mut listener = PgListener::connect(&url.0).await?;
        listener.listen(SESSION_REVOKED_CHANNEL).await?;
        Ok(Some(Box::new(PgRevocations(listener))))
    }

    async fn append_audit(&self, event: &AuditEvent) -> Result<()> {
        insert_audit(&self.pool, event).await
    }

    async fn audit_tail(&self, limit: u32) -> Result<Vec<AuditEvent>> {
        sqlx::query(
            "SELECT id, at, kind, user_id, client_id, session_id, detail FROM audit_events \
             ORDER BY id DESC LIMIT $1",
        )
        .bind(to_i64(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(audit_from_row)
        .collect()
    }
}

/// Revoked sessions announced by PostgreSQL, on a connection of their own.
struct PgRevocations(PgListener);

#[async_trait]
impl RevocationFeed for PgRevocations {
    async fn next(&mut self) -> Result<String> {
        match self.0.try_recv().await? {
            Some(notification) => Ok(notification.payload().to_owned()),
            None => Err(Error::StoreUnavailable("the connection announcing revoked sessions was lost".into())),
        }
    }
}

async fn insert_audit<'e>(executor: impl Executor<'e, Database = sqlx::Any>, event: &AuditEvent) -> Result<()> {
    let query = sqlx::query(concat!("INSERT INTO audit_events (", audit_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6)"));
    bind_audit(query, event).execute(executor).await?;
    Ok(())
}

/// Binds an audit event's fields, in the order of `audit_columns!`, after the query's other
/// parameters.
fn bind_audit<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    event: &'q AuditEvent,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    query
        .bind(event.at)
        .bind(event.kind.as_str())
        .bind(event.user_id.as_deref())
        .bind(event.client_id.as_deref())
        .bind(event.session_id.as_deref())
        .bind(event.detail.to_string())
}

async fn insert_refresh_token(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    token: &RefreshTokenRecord,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (hash, family_id, created_at, idle_expires_at, used_at, \
         successor_hash, successor_sealed) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(token.hash.as_slice())
    .bind(&token.family_id)
    .bind(token.created_at)
    .bind(token.idle_expires_at)
    .bind(token.used_at)
    .bind(token.successor_hash.as_deref())
    .bind(token.successor_sealed.as_deref())
    .execute(&mut **tx)
    .await
    .map_err(|e| conflict_or(e, || "refresh token hash".to_owned()))?;
    Ok(())
}
