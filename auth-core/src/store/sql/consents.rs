//! Consents on SQL: one row per (user, client, scope), so that adding scopes is an insert that
//! cannot lose a concurrent one, and revoking is one delete.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::SqlStore;
use crate::clock::UnixSeconds;
use crate::store::{ConsentRecord, ConsentStore};
use crate::Result;

/// Most rows read when listing a user's consents.
const MAX_LISTED_ROWS: i64 = 1_000;

/// Folds rows ordered by client id into one record per client.
fn fold(user_id: &str, rows: &[AnyRow]) -> Result<Vec<ConsentRecord>> {
    let mut consents: Vec<ConsentRecord> = Vec::new();
    for row in rows {
        let client_id: String = row.try_get("client_id")?;
        let scope: String = row.try_get("scope")?;
        let granted_at: UnixSeconds = row.try_get("granted_at")?;
        match consents.last_mut() {
            Some(last) if last.client_id == client_id => {
                last.scopes.push(scope);
                last.granted_at = last.granted_at.max(granted_at);
            }
            _ => consents.push(ConsentRecord { user_id: user_id.to_owned(), client_id, scopes: vec![scope], granted_at }),
        }
    }
    Ok(consents)
}

#[async_trait]
impl ConsentStore for SqlStore {
    async fn consent(&self, user_id: &str, client_id: &str) -> Result<Option<ConsentRecord>> {
        let rows = sqlx::query(
            "SELECT client_id, scope, granted_at FROM consents WHERE user_id = $1 AND client_id = $2 ORDER BY scope",
        )
        .bind(user_id)
        .bind(client_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(fold(user_id, &rows)?.pop())
    }

    async fn grant_consent(&self, user_id: &str, client_id: &str, scopes: &[&str], at: UnixSeconds) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for scope in scopes {
            sqlx::query(
                "INSERT INTO consents (user_id, client_id, scope, granted_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (user_id, client_id, scope) DO UPDATE SET granted_at = excluded.granted_at",
            )
            .bind(user_id)
            .bind(client_id)
            .bind(*scope)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn user_consents(&self, user_id: &str) -> Result<Vec<ConsentRecord>> {
        let rows = sqlx::query(
            "SELECT client_id, scope, granted_at FROM consents WHERE user_id = $1 ORDER BY client_id, scope LIMIT $2",
        )
        .bind(user_id)
        .bind(MAX_LISTED_ROWS)
        .fetch_all(&self.pool)
        .await?;
        fold(user_id, &rows)
    }

    async fn revoke_consent(&self, user_id: &str, client_id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM consents WHERE user_id = $1 AND client_id = $2")
            .bind(user_id)
            .bind(client_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
