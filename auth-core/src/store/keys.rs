//! Signing keys and their lifecycle.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clock::UnixSeconds;
use crate::spec::SigningAlgorithm;
use crate::Result;

/// Where a signing key is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Published in the JWKS, not signing yet.
    Pending,
    /// The one key that signs.
    Active,
    /// Published, verifying only, until tokens it signed have expired.
    Retiring,
    /// Gone from the JWKS; private key erased.
    Retired,
}

impl KeyState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Retiring => "retiring",
            Self::Retired => "retired",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "active" => Some(Self::Active),
            "retiring" => Some(Self::Retiring),
            "retired" => Some(Self::Retired),
            _ => None,
        }
    }
}

/// A signing key as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// RFC 7638 thumbprint of the public key.
    pub kid: String,
    /// The algorithm pinned to this key.
    pub alg: SigningAlgorithm,
    /// Lifecycle state.
    pub state: KeyState,
    /// When the key was generated.
    pub created_at: UnixSeconds,
    /// When the key starts (or started) signing.
    pub activates_at: UnixSeconds,
    /// When the key stopped signing (set on the move to `retiring`).
    pub deactivated_at: Option<UnixSeconds>,
    /// When the key left the JWKS (set on the move to `retired`).
    pub retired_at: Option<UnixSeconds>,
    /// The public JWK (JSON text), as published.
    pub public_jwk: String,
    /// The private key, sealed with the master key; `None` once retired.
    pub private_sealed: Option<Vec<u8>>,
    /// Fingerprint of the master key that sealed `private_sealed`.
    pub master_key_id: String,
}

/// One step of a key rotation, applied with the others in a single transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyChange {
    /// Store a newly generated key (state `pending`, or `active` for the very first key).
    Insert(KeyRecord),
    /// `pending` -> `active` at `at`.
    Activate {
        /// The key.
        kid: String,
        /// When.
        at: UnixSeconds,
    },
    /// `active` -> `retiring` at `at` (its last signature).
    Deactivate {
        /// The key.
        kid: String,
        /// When.
        at: UnixSeconds,
    },
    /// `retiring` -> `retired` at `at`; the private key is erased.
    Retire {
        /// The key.
        kid: String,
        /// When.
        at: UnixSeconds,
    },
    /// `pending` -> `retired` at `at`, never having signed (its algorithm left the rotation
    /// policy); the private key is erased.
    Withdraw {
        /// The key.
        kid: String,
        /// When.
        at: UnixSeconds,
    },
    /// `pending`, `active` or `retiring` -> `retired` at `at`, at once (an operator's
    /// revocation); the private key is erased.
    Revoke {
        /// The key.
        kid: String,
        /// When.
        at: UnixSeconds,
    },
    /// The private key, sealed again under another master key (rotation of the master key).
    /// Applies only while the key still has a private key sealed under `from_master_key_id`.
    Rewrap {
        /// The key.
        kid: String,
        /// Fingerprint of the master key it is sealed under now.
        from_master_key_id: String,
        /// The private key sealed under the new master key.
        sealed: Vec<u8>,
        /// Fingerprint of the new master key.
        master_key_id: String,
    },
}

/// Storage of signing keys.
#[async_trait]
pub trait KeyStore: Send + Sync + std::fmt::Debug {
    /// Every signing key, retired ones included, oldest first.
    async fn list_keys(&self) -> Result<Vec<KeyRecord>>;
    /// Applies the changes in one transaction, in the order given. Each transition only applies
    /// from the state it expects; if any does not (another replica got there first), nothing is
    /// applied and the result is `false`. The one-active/one-pending rule holds after every
    /// step, so a batch deactivates the old signer before it activates the next one.
    async fn apply_key_changes(&self, changes: &[KeyChange]) -> Result<bool>;
}
