//! Refresh families and their tokens on SQL.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;
use sqlx::postgres::PgListener;

use super::audit::{bind_audit, insert_audit};
use super::users::joined_user_from_row;
use super::{Dialect, SqlStore, conflict_or};
use crate::audit::AuditEvent;
use crate::clock::UnixSeconds;
use crate::store::{RefreshFamily, FamilyStore, RefreshTokenRecord, RefreshTokenView, RevocationFeed};
use crate::{Error, Result};

/// The channel PostgreSQL announces revoked sessions on (migration 0002).
const SESSION_REVOKED_CHANNEL: &str = "auth_session_revoked";

macro_rules! family_columns {
    () => {
        "id, user_id, client_id, scope, created_at, absolute_expires_at, revoked_at, revoked_reason"
    };
}

fn family_from_row(row: &AnyRow) -> Result<RefreshFamily> {
    Ok(RefreshFamily {
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

#[async_trait]
impl FamilyStore for SqlStore {
    async fn create_family(&self, family: &RefreshFamily, first: &RefreshTokenRecord) -> Result<()> {
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
        let user = joined_user_from_row(&row)?;
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

    async fn family(&self, id: &str) -> Result<Option<RefreshFamily>> {
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
    ) -> Result<Vec<RefreshFamily>> {
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

    async fn revoke_access_token(&self, jti: &str, client_id: &str, expires_at: UnixSeconds, at: UnixSeconds) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO revoked_access_tokens (jti, client_id, expires_at, revoked_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(client_id)
        .bind(expires_at)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn access_token_revoked(&self, jti: &str) -> Result<bool> {
        let found = sqlx::query("SELECT 1 FROM revoked_access_tokens WHERE jti = $1")
            .bind(jti)
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    async fn purge_revoked_access_tokens(&self, now: UnixSeconds) -> Result<u64> {
        let done = sqlx::query("DELETE FROM revoked_access_tokens WHERE expires_at < $1").bind(now).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    async fn revocation_feed(&self) -> Result<Option<Box<dyn RevocationFeed>>> {
        let Some(url) = &self.listen_url else { return Ok(None) };
        let mut listener = PgListener::connect(&url.0).await?;
        listener.listen(SESSION_REVOKED_CHANNEL).await?;
        Ok(Some(Box::new(PgRevocations(listener))))
    }
}
