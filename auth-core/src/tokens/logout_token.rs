//! OpenID Connect Back-Channel Logout 1.0 logout tokens (section 2.4): the JWT a relying party
//! receives when a browser session it got tokens from ends. Signed like ID tokens (RS256, the
//! key ring's RS256 chain) but typed `logout+jwt`, so that it can never pass for an ID token or an
//! access token; it names the user (`sub`) and the browser session (`sid`, the ID tokens' `sid`),
//! carries the back-channel logout event, and never a `nonce` (section 2.4 forbids one).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::clock::UnixSeconds;
use crate::keys::ActiveKey;
use crate::tokens::ID_TOKEN_ALGORITHM;
use crate::{Error, Result};

/// The `typ` header of logout tokens (section 2.4 recommends explicit typing).
pub const LOGOUT_TOKEN_TYPE: &str = "logout+jwt";
/// The member of `events` that makes a JWT a logout token.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// How long a logout token is valid, in seconds: it is sent at once, and retried for seconds only.
pub const LOGOUT_TOKEN_TTL_SECS: i64 = 120;

/// The claims of a logout token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogoutTokenClaims {
    /// The issuer.
    pub iss: String,
    /// The client it is for.
    pub aud: String,
    /// Issue time.
    pub iat: UnixSeconds,
    /// Expiry ([`LOGOUT_TOKEN_TTL_SECS`] after `iat`).
    pub exp: UnixSeconds,
    /// A unique id, so that a relying party can refuse a replay.
    pub jti: String,
    /// The user.
    pub sub: String,
    /// The browser session that ended (the ID tokens' `sid`).
    pub sid: String,
    /// `{"http://schemas.openid.net/event/backchannel-logout": {}}`.
    pub events: BTreeMap<String, Map<String, Value>>,
}

impl LogoutTokenClaims {
    /// The claims telling `client_id` that browser session `sid` of user `sub` ended at `now`.
    pub fn new(issuer: &str, client_id: &str, sub: &str, sid: &str, jti: String, now: UnixSeconds) -> Self {
        Self {
            iss: issuer.to_owned(),
            aud: client_id.to_owned(),
            iat: now,
            exp: now.saturating_add(LOGOUT_TOKEN_TTL_SECS),
            jti,
            sub: sub.to_owned(),
            sid: sid.to_owned(),
            events: BTreeMap::from([(BACKCHANNEL_LOGOUT_EVENT.to_owned(), Map::new())]),
        }
    }
}

/// Signs logout token claims with `key` (an RS256 key), `typ: logout+jwt`.
pub fn sign_logout_token(key: &ActiveKey, claims: &LogoutTokenClaims) -> Result<String> {
    if key.key.algorithm() != ID_TOKEN_ALGORITHM {
        return Err(Error::Key(format!("logout tokens are signed with {ID_TOKEN_ALGORITHM}, not {}", key.key.algorithm())));
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.typ = Some(LOGOUT_TOKEN_TYPE.to_owned());
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).map_err(|e| Error::Crypto(format!("signing failed: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use jsonwebtoken::jwk::JwkSet;

    use super::*;
    use crate::crypto::PrivateKey;
    use crate::random::OsEntropy;
    use crate::spec::SigningAlgorithm;

    const NOW: i64 = 1_750_000_000;

    fn key(alg: SigningAlgorithm) -> (ActiveKey, jsonwebtoken::DecodingKey) {
        let key = PrivateKey::generate(alg, &OsEntropy::new()).unwrap();
        let jwk = key.public_jwk().unwrap();
        let kid = jwk.common.key_id.clone().unwrap();
        let decoding = jsonwebtoken::DecodingKey::from_jwk(&JwkSet { keys: vec![jwk] }.keys[0]).unwrap();
        (ActiveKey { kid, encoding: Arc::new(key.encoding_key()), key }, decoding)
    }

    #[test]
    fn a_logout_token_verifies_with_every_claim_of_section_2_4() {
        crate::crypto::install_provider();
        let (key, decoding) = key(SigningAlgorithm::RS256);
        let claims = LogoutTokenClaims::new("https://id.example.com", "booking-web", "user-1", "session-1", "jti-1".into(), NOW);
        let token = sign_logout_token(&key, &claims).unwrap();

        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
        assert_eq!(header.typ.as_deref(), Some(LOGOUT_TOKEN_TYPE));
        assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));

        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_issuer(&["https://id.example.com"]);
        validation.set_audience(&["booking-web"]);
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<Value>(&token, &decoding, &validation).unwrap();
        let c = data.claims;
        assert_eq!(c["iss"], "https://id.example.com");
        assert_eq!(c["aud"], "booking-web");
        assert_eq!(c["sub"], "user-1");
        assert_eq!(c["sid"], "session-1");
        assert_eq!(c["jti"], "jti-1");
        assert_eq!(c["iat"], NOW);
        assert_eq!(c["exp"], NOW + LOGOUT_TOKEN_TTL_SECS);
        assert_eq!(c["events"], serde_json::json!({ BACKCHANNEL_LOGOUT_EVENT: {} }));
        assert!(c.get("nonce").is_none(), "section 2.4: a logout token never carries a nonce");
        let mut names: Vec<&String> = c.as_object().unwrap().keys().collect();
        names.sort();
        assert_eq!(names, ["aud", "events", "exp", "iat", "iss", "jti", "sid", "sub"]);
    }

    #[test]
    fn a_logout_token_is_not_signed_with_another_algorithm() {
        let (key, _) = key(SigningAlgorithm::EdDSA);
        let claims = LogoutTokenClaims::new("https://id.example.com", "c", "u", "s", "j".into(), NOW);
        assert!(sign_logout_token(&key, &claims).is_err());
    }
}
