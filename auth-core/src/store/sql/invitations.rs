//! Invitations on SQL.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{SqlStore, conflict_or, json_object_column};
use crate::clock::UnixSeconds;
use crate::store::{InvitationRecord, InvitationStore};
use crate::Result;

fn invitation_from_row(row: &AnyRow) -> Result<InvitationRecord> {
    let hash: String = row.try_get("hash")?;
    let claims_text: String = row.try_get("claims")?;
    let claims = json_object_column(&claims_text, || format!("invitations.claims of {hash}"))?;
    Ok(InvitationRecord {
        claims,
        username: row.try_get("username")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        used_at: row.try_get("used_at")?,
        hash,
    })
}

#[async_trait]
impl InvitationStore for SqlStore {
    async fn create_invitation(&self, invitation: &InvitationRecord) -> Result<()> {
        let claims = serde_json::Value::Object(invitation.claims.clone()).to_string();
        sqlx::query(
            "INSERT INTO invitations (hash, claims, username, created_by, created_at, expires_at, used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&invitation.hash)
        .bind(claims)
        .bind(invitation.username.as_deref())
        .bind(&invitation.created_by)
        .bind(invitation.created_at)
        .bind(invitation.expires_at)
        .bind(invitation.used_at)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_or(e, || "invitation".to_owned()))?;
        Ok(())
    }

    async fn take_invitation(&self, hash: &str, username: &str, now: UnixSeconds) -> Result<Option<InvitationRecord>> {
        // One conditional update: of several concurrent redemptions, one changes the row.
        sqlx::query(
            "UPDATE invitations SET used_at = $2 \
             WHERE hash = $1 AND used_at IS NULL AND expires_at > $2 AND (username IS NULL OR username = $3) \
             RETURNING hash, claims, username, created_by, created_at, expires_at, used_at",
        )
        .bind(hash)
        .bind(now)
        .bind(username)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(invitation_from_row)
        .transpose()
    }

    async fn release_invitation(&self, hash: &str) -> Result<()> {
        sqlx::query("UPDATE invitations SET used_at = NULL WHERE hash = $1")
            .bind(hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
