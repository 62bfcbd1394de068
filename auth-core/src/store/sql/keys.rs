//! Signing keys on SQL.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{SqlStore, is_unique_violation};
use crate::spec::SigningAlgorithm;
use crate::store::{KeyChange, KeyRecord, KeyState, KeyStore};
use crate::{Error, Result};

macro_rules! key_columns {
    () => {
        "kid, alg, state, created_at, activates_at, deactivated_at, retired_at, public_jwk, \
         private_sealed, master_key_id"
    };
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
const WITHDRAW_KEY: &str = "UPDATE signing_keys \
                            SET state = 'retired', retired_at = $2, private_sealed = NULL \
                            WHERE kid = $1 AND state = 'pending'";
const REVOKE_KEY: &str = "UPDATE signing_keys \
                          SET state = 'retired', retired_at = $2, deactivated_at = COALESCE(deactivated_at, $2), \
                          private_sealed = NULL \
                          WHERE kid = $1 AND state IN ('pending', 'active', 'retiring')";
const REWRAP_KEY: &str = "UPDATE signing_keys SET private_sealed = $3, master_key_id = $4 \
                          WHERE kid = $1 AND master_key_id = $2 AND private_sealed IS NOT NULL";

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
        KeyChange::Withdraw { kid, at } => sqlx::query(WITHDRAW_KEY).bind(kid).bind(*at),
        KeyChange::Revoke { kid, at } => sqlx::query(REVOKE_KEY).bind(kid).bind(*at),
        KeyChange::Rewrap { kid, from_master_key_id, sealed, master_key_id } => sqlx::query(REWRAP_KEY)
            .bind(kid)
            .bind(from_master_key_id)
            .bind(sealed.as_slice())
            .bind(master_key_id),
    };
    Ok(query.execute(&mut **tx).await?.rows_affected() == 1)
}

#[async_trait]
impl KeyStore for SqlStore {
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
}
