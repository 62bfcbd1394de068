//! The signing-key ring and its staged lifecycle:
//!
//! ```text
//! pending --(activates_at)--> active --(successor activates)--> retiring --(retire_after)--> retired
//! (published, not signing)    (signs)                           (published, verifies)     (gone, erased)
//! ```
//!
//! The ring keeps one such chain per algorithm in use ([`RotationPolicy::algorithms`]: the access
//! tokens' algorithm first, then RS256 for OpenID Connect ID tokens when the spec needs them), each
//! rotated on the same policy and all published in one JWKS. [`KeySnapshot::active`] signs access
//! tokens; [`KeySnapshot::signer`] gives any chain's signer.
//!
//! [`plan_rotation`] is a pure function of (keys, policy, now) that says what to do; [`KeyRing`]
//! carries the plan out in one transaction through the store, where conditional updates and unique
//! indexes on (algorithm, state) make it safe for several replicas to rotate at the same instant
//! (one wins, the others reload and find nothing left to do).
//!
//! Invariants (tested as properties): after every rotation each algorithm in use has exactly one
//! active key (except the primary chain right after the spec's algorithm changed: its first key
//! is published ahead while the previous algorithm's key signs access tokens); a chain whose
//! algorithm left the policy signs nothing more and its keys retire; a token signed by any chain
//! at any instant verifies until its `exp` (+ leeway) with any JWKS fetched within the cache
//! window, because a key is published `publish_ahead >= jwks_max_age` before it signs and stays
//! published `retire_after >= access_ttl + leeway` after its last signature. The exception is the
//! first key of a chain, which signs at once: nothing of its algorithm was signed before it.
//!
//! Private keys are sealed at rest with AES-256-GCM under a [`MasterKey`]; the key id is bound as
//! associated data, so a sealed key cannot be swapped onto another record.
//!
//! Without the `server` feature only the verification side is here: [`KeySet`] (from a JWKS) and
//! [`ActiveKey`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::Jwk;
/// A JSON Web Key Set, as published and as fetched by resource servers.
pub use jsonwebtoken::jwk::JwkSet;

use crate::crypto::{self, PrivateKey};
use crate::spec::SigningAlgorithm;
use crate::{Error, Result};

#[cfg(feature = "server")]
mod master;
#[cfg(feature = "server")]
mod ring;
#[cfg(feature = "server")]
mod rotation;

#[cfg(feature = "server")]
pub use master::{MasterKey, write_secret_file};
#[cfg(feature = "server")]
pub use ring::{KeyRing, KeySnapshot, RewrapReport};
#[cfg(feature = "server")]
pub use rotation::{RotationPolicy, RotationStep, plan_rotation};

/// A public key that verifies tokens, with the algorithm pinned to it.
#[derive(Clone)]
pub struct VerifyingKey {
    /// The algorithm tokens signed by this key must name.
    pub alg: SigningAlgorithm,
    /// The key.
    pub key: DecodingKey,
}

/// The keys a verifier accepts (pending, active, retiring), plus the ids of retired keys so that
/// their tokens get a precise error.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, VerifyingKey>,
    retired: HashSet<String>,
    jwks: Vec<Jwk>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet").field("kids", &self.keys.keys().collect::<Vec<_>>()).finish()
    }
}

impl KeySet {
    /// The key set of stored records.
    #[cfg(feature = "server")]
    pub fn from_records(records: &[crate::store::KeyRecord]) -> Result<Self> {
        let mut set = Self::default();
        for record in records {
            if record.state == crate::store::KeyState::Retired {
                set.retired.insert(record.kid.clone());
                continue;
            }
            let jwk: Jwk = serde_json::from_str(&record.public_jwk)
                .map_err(|e| Error::Key(format!("stored JWK of {} is invalid: {e}", record.kid)))?;
            set.insert(jwk, record.alg)?;
        }
        Ok(set)
    }

    /// The key set of a published JWKS: each key's `alg` pins it; keys without a usable `kid` and
    /// `alg`, or of other algorithms, are skipped.
    pub fn from_jwks(jwks: &JwkSet) -> Self {
        let mut set = Self::default();
        for jwk in &jwks.keys {
            let alg = jwk.common.key_algorithm.and_then(|a| SigningAlgorithm::parse(&a.to_string()));
            if let Some(alg) = alg {
                // A key that does not fit its algorithm is simply not trusted.
                let _ = set.insert(jwk.clone(), alg);
            }
        }
        set
    }

    fn insert(&mut self, jwk: Jwk, alg: SigningAlgorithm) -> Result<()> {
        let kid = jwk.common.key_id.clone().ok_or_else(|| Error::Key("a published key has no kid".into()))?;
        let key = crypto::decoding_key(&jwk, alg)?;
        self.keys.insert(kid, VerifyingKey { alg, key });
        self.jwks.push(jwk);
        Ok(())
    }

    /// The verifying key named `kid`.
    pub fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.get(kid)
    }

    /// Whether `kid` names a retired key.
    pub fn is_retired(&self, kid: &str) -> bool {
        self.retired.contains(kid)
    }

    /// The published JWKS (pending, active and retiring keys).
    pub fn jwks(&self) -> JwkSet {
        JwkSet { keys: self.jwks.clone() }
    }

    /// The kids of published keys.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }
}

/// The key that signs now.
#[derive(Debug, Clone)]
pub struct ActiveKey {
    /// Its kid.
    pub kid: String,
    /// The private key.
    pub key: PrivateKey,
    /// The jsonwebtoken encoding key (parsed once).
    pub encoding: Arc<jsonwebtoken::EncodingKey>,
}

#[cfg(test)]
mod tests;
