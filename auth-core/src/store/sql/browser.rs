//! Authorization codes and browser sessions on SQL.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{SqlStore, conflict_or};
use crate::clock::UnixSeconds;
use crate::store::{AuthorizationCodeRecord, BrowserSessionRecord, BrowserSessionStore, CodeStore, CodeTaken, PushedRequestRecord};
use crate::{Error, Result};

const CODE_COLUMNS: &str = "hash, client_id, user_id, redirect_uri, code_challenge, scope, nonce, browser_session_id, \
                            auth_time, amr, created_at, expires_at";
const SESSION_COLUMNS: &str = "hash, id, user_id, auth_time, amr, created_at, last_seen_at, expires_at";

fn amr_column(text: &str, what: impl FnOnce() -> String) -> Result<Vec<String>> {
    serde_json::from_str(text).map_err(|e| Error::Store(format!("{} is not a JSON array of strings: {e}", what())))
}

fn amr_text(amr: &[String]) -> String {
    serde_json::Value::from(amr.to_vec()).to_string()
}

fn code_from_row(row: &AnyRow) -> Result<AuthorizationCodeRecord> {
    let hash: String = row.try_get("hash")?;
    let amr: String = row.try_get("amr")?;
    Ok(AuthorizationCodeRecord {
        amr: amr_column(&amr, || format!("authorization_codes.amr of {hash}"))?,
        client_id: row.try_get("client_id")?,
        user_id: row.try_get("user_id")?,
        redirect_uri: row.try_get("redirect_uri")?,
        code_challenge: row.try_get("code_challenge")?,
        scope: row.try_get("scope")?,
        nonce: row.try_get("nonce")?,
        browser_session_id: row.try_get("browser_session_id")?,
        auth_time: row.try_get("auth_time")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        hash,
    })
}

fn session_from_row(row: &AnyRow) -> Result<BrowserSessionRecord> {
    let id: String = row.try_get("id")?;
    let amr: String = row.try_get("amr")?;
    Ok(BrowserSessionRecord {
        amr: amr_column(&amr, || format!("browser_sessions.amr of {id}"))?,
        hash: row.try_get("hash")?,
        user_id: row.try_get("user_id")?,
        auth_time: row.try_get("auth_time")?,
        created_at: row.try_get("created_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        expires_at: row.try_get("expires_at")?,
        id,
    })
}

#[async_trait]
impl CodeStore for SqlStore {
    async fn insert_code(&self, code: &AuthorizationCodeRecord) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO authorization_codes ({CODE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(&code.hash)
        .bind(&code.client_id)
        .bind(&code.user_id)
        .bind(&code.redirect_uri)
        .bind(&code.code_challenge)
        .bind(&code.scope)
        .bind(code.nonce.as_deref())
        .bind(code.browser_session_id.as_deref())
        .bind(code.auth_time)
        .bind(amr_text(&code.amr))
        .bind(code.created_at)
        .bind(code.expires_at)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_or(e, || "authorization code".to_owned()))?;
        Ok(())
    }

    async fn take_code(&self, hash: &str, now: UnixSeconds) -> Result<CodeTaken> {
        // One conditional update: of several concurrent exchanges, one changes the row.
        let fresh = sqlx::query(&format!(
            "UPDATE authorization_codes SET used_at = $2 \
             WHERE hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING {CODE_COLUMNS}"
        ))
        .bind(hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = fresh {
            return Ok(CodeTaken::Fresh(code_from_row(&row)?));
        }
        let reused = sqlx::query(
            "UPDATE authorization_codes SET reused_at = $2 WHERE hash = $1 AND used_at IS NOT NULL \
             RETURNING client_id, family_id",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        match reused {
            Some(row) => Ok(CodeTaken::Reused { client_id: row.try_get("client_id")?, family_id: row.try_get("family_id")? }),
            None => Ok(CodeTaken::Invalid),
        }
    }

    async fn record_code_family(&self, hash: &str, family_id: &str) -> Result<bool> {
        let row = sqlx::query(
            "UPDATE authorization_codes SET family_id = $2 WHERE hash = $1 \
             RETURNING CAST(CASE WHEN reused_at IS NULL THEN 0 ELSE 1 END AS INTEGER) AS reused",
        )
        .bind(hash)
        .bind(family_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(row) => row.try_get::<i32, _>("reused")? != 0,
            None => true,
        })
    }

    async fn purge_codes(&self, before: UnixSeconds) -> Result<u64> {
        let done = sqlx::query("DELETE FROM authorization_codes WHERE expires_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn insert_pushed_request(&self, request: &PushedRequestRecord) -> Result<()> {
        sqlx::query("INSERT INTO pushed_authorization_requests (hash, client_id, request, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(&request.hash)
            .bind(&request.client_id)
            .bind(&request.request)
            .bind(request.expires_at)
            .execute(&self.pool)
            .await
            .map_err(|e| conflict_or(e, || "pushed authorization request".to_owned()))?;
        Ok(())
    }

    async fn take_pushed_request(&self, hash: &str, now: UnixSeconds) -> Result<Option<PushedRequestRecord>> {
        let row = sqlx::query("DELETE FROM pushed_authorization_requests WHERE hash = $1 RETURNING hash, client_id, request, expires_at")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let record = PushedRequestRecord {
            hash: row.try_get("hash")?,
            client_id: row.try_get("client_id")?,
            request: row.try_get("request")?,
            expires_at: row.try_get("expires_at")?,
        };
        Ok((record.expires_at > now).then_some(record))
    }

    async fn purge_pushed_requests(&self, before: UnixSeconds) -> Result<u64> {
        let done = sqlx::query("DELETE FROM pushed_authorization_requests WHERE expires_at < $1").bind(before).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl BrowserSessionStore for SqlStore {
    async fn insert_browser_session(&self, session: &BrowserSessionRecord) -> Result<()> {
        sqlx::query(&format!("INSERT INTO browser_sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"))
            .bind(&session.hash)
            .bind(&session.id)
            .bind(&session.user_id)
            .bind(session.auth_time)
            .bind(amr_text(&session.amr))
            .bind(session.created_at)
            .bind(session.last_seen_at)
            .bind(session.expires_at)
            .execute(&self.pool)
            .await
            .map_err(|e| conflict_or(e, || "browser session".to_owned()))?;
        Ok(())
    }

    async fn browser_session(&self, hash: &str, now: UnixSeconds, idle_since: UnixSeconds) -> Result<Option<BrowserSessionRecord>> {
        sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM browser_sessions \
             WHERE hash = $1 AND ended_at IS NULL AND expires_at > $2 AND last_seen_at >= $3"
        ))
        .bind(hash)
        .bind(now)
        .bind(idle_since)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(session_from_row)
        .transpose()
    }

    async fn touch_browser_session(&self, id: &str, now: UnixSeconds) -> Result<()> {
        sqlx::query("UPDATE browser_sessions SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $2")
            .bind(id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn end_browser_session(&self, id: &str, now: UnixSeconds) -> Result<bool> {
        let done = sqlx::query("UPDATE browser_sessions SET ended_at = $2 WHERE id = $1 AND ended_at IS NULL")
            .bind(id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn end_user_browser_sessions(&self, user_id: &str, now: UnixSeconds) -> Result<u64> {
        let done = sqlx::query("UPDATE browser_sessions SET ended_at = $2 WHERE user_id = $1 AND ended_at IS NULL")
            .bind(user_id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn user_browser_sessions(&self, user_id: &str, now: UnixSeconds, idle_since: UnixSeconds) -> Result<Vec<BrowserSessionRecord>> {
        sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM browser_sessions \
             WHERE user_id = $1 AND ended_at IS NULL AND expires_at > $2 AND last_seen_at >= $3 \
             ORDER BY created_at DESC, id LIMIT 100"
        ))
        .bind(user_id)
        .bind(now)
        .bind(idle_since)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(session_from_row)
        .collect()
    }

    async fn purge_browser_sessions(&self, before: UnixSeconds) -> Result<u64> {
        sqlx::query(
            "DELETE FROM browser_session_families WHERE browser_session_id IN \
             (SELECT id FROM browser_sessions WHERE expires_at < $1 OR ended_at < $1)",
        )
        .bind(before)
        .execute(&self.pool)
        .await?;
        let done = sqlx::query("DELETE FROM browser_sessions WHERE expires_at < $1 OR ended_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn link_browser_session_family(&self, id: &str, family_id: &str) -> Result<()> {
        sqlx::query("INSERT INTO browser_session_families (browser_session_id, family_id) VALUES ($1, $2)")
            .bind(id)
            .bind(family_id)
            .execute(&self.pool)
            .await
            .map_err(|e| conflict_or(e, || "browser session family".to_owned()))?;
        Ok(())
    }

    async fn browser_session_families(&self, id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT family_id FROM browser_session_families WHERE browser_session_id = $1 ORDER BY family_id LIMIT 1000")
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| Ok(row.try_get("family_id")?)).collect()
    }

    async fn browser_session_of_family(&self, family_id: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT browser_session_id FROM browser_session_families WHERE family_id = $1 LIMIT 1")
            .bind(family_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.try_get("browser_session_id")).transpose()?)
    }
}
