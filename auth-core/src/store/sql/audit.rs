//! The audit trail on SQL.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{Executor, Row};

use super::{SqlStore, to_i64};
use crate::audit::{AuditEvent, AuditKind};
use crate::store::AuditStore;
use crate::{Error, Result};

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
        family_id: row.try_get("session_id")?,
        detail,
    })
}

pub(super) async fn insert_audit<'e>(executor: impl Executor<'e, Database = sqlx::Any>, event: &AuditEvent) -> Result<()> {
    let query = sqlx::query(concat!("INSERT INTO audit_events (", audit_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6)"));
    bind_audit(query, event).execute(executor).await?;
    Ok(())
}

/// Binds an audit event's fields, in the order of `audit_columns!`, after the query's other
/// parameters.
pub(super) fn bind_audit<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    event: &'q AuditEvent,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    query
        .bind(event.at)
        .bind(event.kind.as_str())
        .bind(event.user_id.as_deref())
        .bind(event.client_id.as_deref())
        .bind(event.family_id.as_deref())
        .bind(event.detail.to_string())
}

#[async_trait]
impl AuditStore for SqlStore {
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
