//! OpenID Connect ID tokens (Core 2, 3.1.3.6): who signed in, when and how, for the client that
//! asked. Always signed with RS256, the algorithm every OpenID relying party accepts (Core 15.1);
//! the key ring keeps an RS256 chain whenever a client of the spec uses the code flow.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::UnixSeconds;
use crate::keys::{ActiveKey, KeySet};
use crate::spec::SigningAlgorithm;
use crate::error::TokenError;
use crate::{Error, Result};

/// The algorithm of every ID token.
pub const ID_TOKEN_ALGORITHM: SigningAlgorithm = SigningAlgorithm::RS256;

/// The claims of an ID token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    /// The issuer.
    pub iss: String,
    /// The user.
    pub sub: String,
    /// The client it is for.
    pub aud: String,
    /// Expiry.
    pub exp: UnixSeconds,
    /// Issue time.
    pub iat: UnixSeconds,
    /// When the user authenticated.
    pub auth_time: UnixSeconds,
    /// The authorization request's `nonce`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// How the user authenticated (RFC 8176 values).
    pub amr: Vec<String>,
    /// The browser session (for logout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The client it was issued to (equal to `aud`).
    pub azp: String,
    /// The left half of the SHA-256 of the access token issued with it, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    /// Claims released by the scopes (`preferred_username` for `profile`).
    #[serde(flatten)]
    pub released: BTreeMap<String, Value>,
}

/// `at_hash` of an access token for an RS256 ID token: base64url of the left half of its SHA-256.
pub fn at_hash(access_token: &str) -> String {
    use base64::Engine as _;
    let digest = ring::digest::digest(&ring::digest::SHA256, access_token.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16])
}

/// Signs ID token claims with `key` (an RS256 key), `typ: JWT`.
pub fn sign_id_token(key: &ActiveKey, claims: &IdTokenClaims) -> Result<String> {
    if key.key.algorithm() != ID_TOKEN_ALGORITHM {
        return Err(Error::Key(format!("ID tokens are signed with {ID_TOKEN_ALGORITHM}, not {}", key.key.algorithm())));
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.typ = Some("JWT".to_owned());
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).map_err(|e| Error::Crypto(format!("signing failed: {e}")))
}

/// What a relying party checks of an ID token (Core 3.1.3.7).
#[derive(Debug, Clone)]
pub struct IdTokenExpectations<'a> {
    /// The issuer.
    pub issuer: &'a str,
    /// The client (the token's `aud`).
    pub client_id: &'a str,
    /// The nonce the client sent, if it sent one.
    pub nonce: Option<&'a str>,
    /// Leeway for `exp` and `iat`, in seconds.
    pub leeway: i64,
}

/// Verifies an ID token with a key set: RS256 only, the key named by `kid`, issuer, audience,
/// expiry and nonce.
pub fn verify_id_token(token: &str, keys: &KeySet, expected: &IdTokenExpectations<'_>, now: UnixSeconds) -> Result<IdTokenClaims, TokenError> {
    crate::crypto::install_provider();
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if header.alg != jsonwebtoken::Algorithm::RS256 {
        return Err(TokenError::UnsupportedAlgorithm);
    }
    let kid = header.kid.ok_or(TokenError::UnknownKey)?;
    let key = keys.get(&kid).ok_or(TokenError::UnknownKey)?;
    if key.alg != ID_TOKEN_ALGORITHM {
        return Err(TokenError::AlgorithmMismatch);
    }
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<IdTokenClaims>(token, &key.key, &validation).map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
        jsonwebtoken::errors::ErrorKind::Json(_) | jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(_) => TokenError::MissingClaim,
        _ => TokenError::Malformed,
    })?;
    let claims = data.claims;
    if claims.iss != expected.issuer {
        return Err(TokenError::WrongIssuer);
    }
    if claims.aud != expected.client_id || claims.azp != expected.client_id {
        return Err(TokenError::WrongAudience);
    }
    if claims.exp.saturating_add(expected.leeway) <= now {
        return Err(TokenError::Expired);
    }
    if claims.iat.saturating_sub(expected.leeway) > now {
        return Err(TokenError::NotYetValid);
    }
    if expected.nonce.is_some() && claims.nonce.as_deref() != expected.nonce {
        return Err(TokenError::InvalidClaim);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// OpenID Connect Core A.3's example: the access token and its `at_hash` (RS256).
    #[test]
    fn at_hash_matches_the_openid_example() {
        assert_eq!(at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"), "77QmUPtjPfzWtF2AnpK9RQ");
    }
}
