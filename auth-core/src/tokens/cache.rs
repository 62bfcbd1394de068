//! A bounded cache of verified access tokens, for a service that sees the same token many times
//! (introspection, bearer endpoints): a token verified once is not verified again while it stays
//! in the cache, yet every answer is the one a full verification would give now.
//!
//! What a verification establishes about a token either never changes (signature, header, claim
//! types, issuer, audience: fixed for a given verifier) or is checked again on every use: the
//! time window (`exp`, `nbf`/`iat`, with the leeway) and whether the key that signed it is still
//! one the key set accepts, with the same algorithm. When the key is gone (retired, or a key set
//! that no longer has it), the token is verified in full again, so it gets the precise error.
//! Failed verifications are not cached.

use std::sync::Arc;

use super::{AccessClaims, AccessTokenVerifier, MAX_TOKEN_BYTES, Verified};
use crate::clock::UnixSeconds;
use crate::error::TokenError;
use crate::keys::KeySet;

/// How many tokens [`VerifiedTokens::new`] keeps by default: about 10 MB of tokens and claims.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// An [`AccessTokenVerifier`] with a bounded cache of the tokens it verified.
#[derive(Debug)]
pub struct VerifiedTokens {
    verifier: AccessTokenVerifier,
    cache: quick_cache::sync::Cache<Box<str>, Arc<Verified>>,
}

impl VerifiedTokens {
    /// A cache of at most `capacity` tokens in front of `verifier`.
    pub fn new(verifier: AccessTokenVerifier, capacity: usize) -> Self {
        Self { verifier, cache: quick_cache::sync::Cache::new(capacity.max(1)) }
    }

    /// The verifier behind the cache.
    pub fn verifier(&self) -> &AccessTokenVerifier {
        &self.verifier
    }

    /// What [`AccessTokenVerifier::verify`] answers for `token` against `keys` at `now`.
    pub fn verify(&self, token: &str, keys: &KeySet, now: UnixSeconds) -> Result<AccessClaims, TokenError> {
        if token.len() <= MAX_TOKEN_BYTES
            && let Some(hit) = self.cache.get(token)
            && keys.get(&hit.kid).is_some_and(|key| key.alg == hit.alg)
        {
            self.verifier.check_times(hit.claims.exp, hit.not_before, now)?;
            return Ok(hit.claims.clone());
        }
        let verified = self.verifier.verify_with_key(token, keys, now)?;
        let claims = verified.claims.clone();
        self.cache.insert(token.into(), Arc::new(verified));
        Ok(claims)
    }

    /// How many tokens the cache holds.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }
}
