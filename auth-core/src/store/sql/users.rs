//! Users on SQL.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{SqlStore, conflict_or, json_object_column, to_i64};
use crate::authority::username_skeleton;
use crate::store::{UserRecord, UserStore};
use crate::{Error, Result};

macro_rules! user_columns {
    () => {
        "id, username, password_hash, claims, CAST(disabled AS INTEGER) AS disabled, created_at"
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

/// The user columns of the refresh-token view (`families.rs`), which joins the family's user.
const JOINED_USER: UserColumns = UserColumns {
    id: "u_id",
    username: "u_username",
    password_hash: "u_password_hash",
    claims: "u_claims",
    disabled: "u_disabled",
    created_at: "u_created_at",
};

/// The user joined to a refresh-token view; `None` for a client-only family.
pub(super) fn joined_user_from_row(row: &AnyRow) -> Result<Option<UserRecord>> {
    let user_id: Option<String> = row.try_get(JOINED_USER.id)?;
    user_id.map(|_| user_from_columns(row, &JOINED_USER)).transpose()
}

fn user_from_row(row: &AnyRow) -> Result<UserRecord> {
    user_from_columns(row, &USER)
}

fn user_from_columns(row: &AnyRow, columns: &UserColumns) -> Result<UserRecord> {
    let id: String = row.try_get(columns.id)?;
    let claims_text: String = row.try_get(columns.claims)?;
    let claims = json_object_column(&claims_text, || format!("users.claims of user {id}"))?;
    Ok(UserRecord {
        username: row.try_get(columns.username)?,
        password_hash: row.try_get(columns.password_hash)?,
        claims,
        disabled: row.try_get::<i64, _>(columns.disabled)? != 0,
        created_at: row.try_get(columns.created_at)?,
        id,
    })
}

#[async_trait]
impl UserStore for SqlStore {
    async fn create_user(&self, user: &UserRecord) -> Result<()> {
        let claims = serde_json::Value::Object(user.claims.clone()).to_string();
        sqlx::query(
            "INSERT INTO users (id, username, username_skeleton, password_hash, claims, disabled, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&user.id)
        .bind(&user.username)
        .bind(username_skeleton(&user.username))
        .bind(&user.password_hash)
        .bind(claims)
        .bind(user.disabled)
        .bind(user.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            let look_alike = matches!(&e, sqlx::Error::Database(db) if db.message().contains("skeleton") || db.constraint().is_some_and(|c| c.contains("skeleton")));
            conflict_or(e, || {
                if look_alike { format!("a username that looks like {:?} is taken", user.username) } else { format!("user {:?}", user.username) }
            })
        })?;
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

    async fn replace_user_claims(
        &self,
        user_id: &str,
        old: &serde_json::Map<String, serde_json::Value>,
        new: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool> {
        // The stored text is what serde_json wrote for the map (keys sorted), so the text of the
        // map as read is the text in the row unless the row changed since.
        let old = serde_json::Value::Object(old.clone()).to_string();
        let new = serde_json::Value::Object(new.clone()).to_string();
        let done = sqlx::query("UPDATE users SET claims = $3 WHERE id = $1 AND claims = $2")
            .bind(user_id)
            .bind(old)
            .bind(new)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 1 {
            return Ok(true);
        }
        match self.user_by_id(user_id).await? {
            Some(_) => Ok(false),
            None => Err(Error::NotFound(format!("user {user_id}"))),
        }
    }
}

/// Fills the skeleton of users stored before skeletons were (see the migration
/// `username_skeletons`); returns how many users got one. A user whose name looks like an older
/// user's keeps none, with a warning: both accounts stay, and no new look-alike can join them.
pub(super) async fn fill_username_skeletons(store: &SqlStore) -> Result<u64> {
    let missing = sqlx::query("SELECT id, username FROM users WHERE username_skeleton IS NULL ORDER BY created_at, id")
        .fetch_all(&store.pool)
        .await?;
    let mut filled = 0;
    for row in &missing {
        let id: String = row.try_get("id")?;
        let username: String = row.try_get("username")?;
        let updated = sqlx::query("UPDATE users SET username_skeleton = $1 WHERE id = $2 AND username_skeleton IS NULL")
            .bind(username_skeleton(&username))
            .bind(&id)
            .execute(&store.pool)
            .await;
        match updated {
            Ok(done) => filled += done.rows_affected(),
            Err(e) if super::is_unique_violation(&e) => {
                tracing::warn!(user = %id, "the username of this user looks like an older user's: both accounts stay, no new look-alike can sign up");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(filled)
}
