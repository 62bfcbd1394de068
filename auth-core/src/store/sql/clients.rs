//! Clients on SQL.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{SqlStore, conflict_or};
use crate::store::{ClientRecord, ClientStore};
use crate::Result;

fn client_from_row(row: &AnyRow) -> Result<ClientRecord> {
    Ok(ClientRecord {
        id: row.try_get("id")?,
        secret_hash: row.try_get("secret_hash")?,
        created_at: row.try_get("created_at")?,
    })
}

#[async_trait]
impl ClientStore for SqlStore {
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
}
