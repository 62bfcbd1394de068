//! RFC 9068 access tokens: `typ: at+jwt`, `iss sub aud exp iat jti client_id scope` plus `sid` and
//! the spec's custom claims, numeric timestamps, compact JWS.
//!
//! The verifier is strict by default: the algorithm is pinned per key (the header's `alg` must be
//! the one the key was generated for, and only EdDSA/ES256/RS256 exist at all); `kid` must name a
//! published key; header-supplied keys (`jwk`, `jku`, `x5u`, `x5c`) are never read; `crit` is
//! refused; `exp` is required; `nbf`, `iat`, `iss`, `aud` and `typ` are checked with the spec's
//! leeway. Each rejection is a [`TokenError`] with a stable code.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::de::{self, DeserializeOwned, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::clock::UnixSeconds;
use crate::code::Code;
use crate::crypto::{self, jwt_algorithm};
use crate::error::TokenError;
use crate::keys::{ActiveKey, KeySet};
use crate::spec::{ClaimSpec, SigningAlgorithm, Spec};
use crate::{Error, Result};

/// The `typ` header of access tokens (RFC 9068 section 2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// The token of an `Authorization: Bearer <token>` header value (RFC 6750 section 2.1), read as
/// the server and the generated modules read it: no header, another scheme or an empty token is
/// `token.missing`; a value that is not visible ASCII (tab allowed) or has no space is
/// `token.malformed`. The scheme is case-insensitive; the token is trimmed.
pub fn bearer_token(authorization: Option<&[u8]>) -> Result<&str, Code> {
    let bytes = authorization.ok_or(Code::TokenMissing)?;
    if !bytes.iter().all(|b| *b == b'\t' || (0x20..0x7f).contains(b)) {
        return Err(Code::TokenMalformed);
    }
    let value = std::str::from_utf8(bytes).map_err(|_| Code::TokenMalformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(Code::TokenMalformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(Code::TokenMissing);
    }
    Ok(token.trim())
}

/// Whether `token` has the form of a JWT (an access token) rather than an opaque token (a refresh
/// token: base64url, which has no `.`). Decides only where to look; nothing is trusted before
/// verification.
pub fn looks_like_jwt(token: &str) -> bool {
    token.contains('.')
}

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The `aud` claim: one string when there is one audience (compact), else an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audience(pub Vec<String>);

impl Serialize for Audience {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => serializer.serialize_str(one),
            many => many.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(match OneOrMany::deserialize(deserializer)? {
            OneOrMany::One(one) => Audience(vec![one]),
            OneOrMany::Many(many) => Audience(many),
        })
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Subject: the user id, or the client id for client-credentials tokens.
    pub sub: String,
    /// Audience.
    pub aud: Audience,
    /// Expiry (Unix seconds).
    pub exp: UnixSeconds,
    /// Issued at (Unix seconds).
    pub iat: UnixSeconds,
    /// Unique token id.
    pub jti: String,
    /// The client the token was issued to.
    pub client_id: String,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// The session (refresh family); absent for client-credentials tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The spec's custom claims.
    #[serde(flatten)]
    pub custom: BTreeMap<String, Value>,
}

impl AccessClaims {
    /// The granted scopes.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split(' ').filter(|s| !s.is_empty())
    }

    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|s| s == scope)
    }
}

/// What an access token is about; the issuer adds `iss`, `aud`, times and `jti`.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenSubject {
    /// `sub`.
    pub sub: String,
    /// `client_id`.
    pub client_id: String,
    /// `scope` (space-separated).
    pub scope: String,
    /// `sid`.
    pub sid: Option<String>,
    /// Custom claims.
    pub custom: BTreeMap<String, Value>,
}

/// A signed access token.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuedToken {
    /// The compact JWS.
    pub token: String,
    /// Its claims.
    pub claims: AccessClaims,
    /// Seconds until it expires.
    pub expires_in: i64,
}

/// Signs access tokens for one issuer.
#[derive(Debug, Clone)]
pub struct AccessTokenIssuer {
    issuer: String,
    audiences: Vec<String>,
    ttl: i64,
}

impl AccessTokenIssuer {
    /// An issuer configured from the spec.
    pub fn from_spec(spec: &Spec) -> Self {
        crypto::install_provider();
        Self { issuer: spec.issuer.clone(), audiences: spec.audiences.clone(), ttl: spec.tokens.access_ttl.as_i64() }
    }

    /// Issues a token for `subject` at `now`, signed by `key`, with token id `jti`.
    pub fn issue(&self, key: &ActiveKey, subject: TokenSubject, now: UnixSeconds, jti: String) -> Result<IssuedToken> {
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: subject.sub,
            aud: Audience(self.audiences.clone()),
            exp: now.saturating_add(self.ttl),
            iat: now,
            jti,
            client_id: subject.client_id,
            scope: subject.scope,
            sid: subject.sid,
            custom: subject.custom,
        };
        let token = sign(key, &claims)?;
        Ok(IssuedToken { token, claims, expires_in: self.ttl })
    }
}

/// Signs any claims as an `at+jwt` with the active key (used by issuance and by tests that need
/// deliberately odd claims).
pub fn sign<T: Serialize>(key: &ActiveKey, claims: &T) -> Result<String> {
    let mut header = jsonwebtoken::Header::new(jwt_algorithm(key.key.algorithm()));
    header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).map_err(|e| Error::Crypto(format!("signing failed: {e}")))
}

/// The header fields the verifier reads. Everything else (`jwk`, `jku`, `x5u`, `x5c`, ...) is
/// ignored on purpose: keys come from the issuer's key set only.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

/// Verifies access tokens of one issuer.
#[derive(Debug, Clone)]
pub struct AccessTokenVerifier {
    issuer: String,
    audiences: Vec<String>,
    leeway: i64,
    claims: BTreeMap<String, ClaimSpec>,
}

impl AccessTokenVerifier {
    /// A verifier configured from the spec (issuer, audiences, leeway, custom claim types).
    pub fn from_spec(spec: &Spec) -> Self {
        crypto::install_provider();
        Self {
            issuer: spec.issuer.clone(),
            audiences: spec.audiences.clone(),
            leeway: spec.tokens.leeway.as_i64(),
            claims: spec.claims.clone(),
        }
    }

    /// A verifier from its parts: the issuer, accepted audiences, leeway in seconds and the custom
    /// claim types (what [`AccessTokenVerifier::from_spec`] reads from a spec; generated modules
    /// carry these values as constants).
    pub fn new(issuer: &str, audiences: &[&str], leeway_secs: u64, claims: BTreeMap<String, ClaimSpec>) -> Self {
        crypto::install_provider();
        Self {
            issuer: issuer.to_owned(),
            audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
            leeway: i64::try_from(leeway_secs).unwrap_or(i64::MAX),
            claims,
        }
    }

    /// Verifies `token` against `keys` at `now`.
    pub fn verify(&self, token: &str, keys: &KeySet, now: UnixSeconds) -> Result<AccessClaims, TokenError> {
        self.verify_with_key(token, keys, now).map(|verified| verified.claims)
    }

    /// [`AccessTokenVerifier::verify`], also answering which key signed the token and from when
    /// it is valid: what a cache of verified tokens must check again on each use.
    fn verify_with_key(&self, token: &str, keys: &KeySet, now: UnixSeconds) -> Result<Verified, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: RawHeader = decode_json(header_b64)?;
        if header.crit.is_some() {
            return Err(TokenError::Malformed);
        }
        let alg = SigningAlgorithm::parse(&header.alg).ok_or(TokenError::UnsupportedAlgorithm)?;
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let key = match keys.get(&kid) {
            Some(key) => key,
            None if keys.is_retired(&kid) => return Err(TokenError::KeyRetired),
            None => return Err(TokenError::UnknownKey),
        };
        if key.alg != alg {
            return Err(TokenError::AlgorithmMismatch);
        }
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        match jsonwebtoken::crypto::verify(signature_b64, signing_input.as_bytes(), &key.key, jwt_algorithm(alg)) {
            Ok(true) => {}
            Ok(false) => return Err(TokenError::BadSignature),
            Err(_) => return Err(TokenError::Malformed),
        }
        if !header.typ.as_deref().is_some_and(is_access_token_typ) {
            return Err(TokenError::WrongType);
        }
        let claims: RawClaims = decode_json(payload_b64)?;
        let (claims, not_before) = self.check_claims(claims, now)?;
        Ok(Verified { claims, not_before, kid, alg })
    }

    /// The time checks, on claims otherwise valid: `exp`, then `nbf` (or `iat`), with the leeway.
    fn check_times(&self, exp: UnixSeconds, not_before: UnixSeconds, now: UnixSeconds) -> Result<(), TokenError> {
        if now > exp.saturating_add(self.leeway) {
            return Err(TokenError::Expired);
        }
        if not_before > now.saturating_add(self.leeway) {
            return Err(TokenError::NotYetValid);
        }
        Ok(())
    }

    /// The claims, checked; with the instant they are valid from (`nbf`, never before `iat`).
    fn check_claims(&self, raw: RawClaims, now: UnixSeconds) -> Result<(AccessClaims, UnixSeconds), TokenError> {
        // Precedence of the codes: an absent standard claim, then a bad `nbf`, then the spec's
        // custom claims, then the types of the standard claims.
        let (Some(iss), Some(sub), Some(aud), Some(exp), Some(iat), Some(jti), Some(client_id), Some(scope)) =
            (raw.iss, raw.sub, raw.aud, raw.exp, raw.iat, raw.jti, raw.client_id, raw.scope)
        else {
            return Err(TokenError::MissingClaim);
        };
        let nbf = raw.nbf.map(Typed::valid).transpose()?;
        // Custom claims describe users: tokens of a user session (those with a `sid`) must carry
        // the required ones; client-credentials tokens carry none.
        let user_token = raw.sid.is_some();
        for (name, spec) in &self.claims {
            match raw.custom.get(name) {
                None if spec.required && user_token => return Err(TokenError::MissingClaim),
                Some(v) if !spec.kind.matches(v) => return Err(TokenError::InvalidClaim),
                _ => {}
            }
        }
        let claims = AccessClaims {
            iss: iss.valid()?,
            sub: sub.valid()?,
            aud: aud.valid()?,
            exp: exp.valid()?,
            iat: iat.valid()?,
            jti: jti.valid()?,
            client_id: client_id.valid()?,
            scope: scope.valid()?,
            sid: raw.sid.map(Typed::valid).transpose()?.flatten(),
            custom: raw.custom,
        };
        let not_before = nbf.unwrap_or(claims.iat).max(claims.iat);
        self.check_times(claims.exp, not_before, now)?;
        if claims.iss != self.issuer {
            return Err(TokenError::WrongIssuer);
        }
        if !claims.aud.0.iter().any(|a| self.audiences.contains(a)) {
            return Err(TokenError::WrongAudience);
        }
        Ok((claims, not_before))
    }
}

/// A token that verified: its claims, when it becomes valid, and the key that signed it.
#[derive(Debug, Clone)]
struct Verified {
    claims: AccessClaims,
    not_before: UnixSeconds,
    kid: String,
    alg: SigningAlgorithm,
}

fn is_access_token_typ(typ: &str) -> bool {
    // RFC 9068 section 4: "at+jwt"; media types compare case-insensitively and may carry the
    // "application/" prefix (RFC 7515 section 4.1.9).
    typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || typ.eq_ignore_ascii_case("application/at+jwt")
}

/// The payload as the verifier reads it, in one pass: each standard claim typed (or marked as
/// the wrong type, so that presence is judged before type, as the codes require), every other
/// member kept as JSON for the custom claims. Duplicate members: the last one counts.
#[derive(Default)]
struct RawClaims {
    iss: Option<Typed<String>>,
    sub: Option<Typed<String>>,
    aud: Option<Typed<Audience>>,
    exp: Option<Typed<UnixSeconds>>,
    nbf: Option<Typed<UnixSeconds>>,
    iat: Option<Typed<UnixSeconds>>,
    jti: Option<Typed<String>>,
    client_id: Option<Typed<String>>,
    scope: Option<Typed<String>>,
    sid: Option<Typed<Option<String>>>,
    custom: BTreeMap<String, Value>,
}

impl<'de> Deserialize<'de> for RawClaims {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct ClaimsVisitor;
        impl<'de> Visitor<'de> for ClaimsVisitor {
            type Value = RawClaims;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object of claims")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<RawClaims, A::Error> {
                let mut raw = RawClaims::default();
                while let Some(key) = map.next_key::<ClaimName>()? {
                    match key {
                        ClaimName::Iss => raw.iss = Some(map.next_value()?),
                        ClaimName::Sub => raw.sub = Some(map.next_value()?),
                        ClaimName::Aud => raw.aud = Some(map.next_value()?),
                        ClaimName::Exp => raw.exp = Some(map.next_value()?),
                        ClaimName::Nbf => raw.nbf = Some(map.next_value()?),
                        ClaimName::Iat => raw.iat = Some(map.next_value()?),
                        ClaimName::Jti => raw.jti = Some(map.next_value()?),
                        ClaimName::ClientId => raw.client_id = Some(map.next_value()?),
                        ClaimName::Scope => raw.scope = Some(map.next_value()?),
                        ClaimName::Sid => raw.sid = Some(map.next_value()?),
                        ClaimName::Other(name) => {
                            raw.custom.insert(name, map.next_value()?);
                        }
                    }
                }
                Ok(raw)
            }
        }
        deserializer.deserialize_map(ClaimsVisitor)
    }
}

/// A member name of the payload; the standard ones without an allocation.
enum ClaimName {
    Iss,
    Sub,
    Aud,
    Exp,
    Nbf,
    Iat,
    Jti,
    ClientId,
    Scope,
    Sid,
    Other(String),
}

impl<'de> Deserialize<'de> for ClaimName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct NameVisitor;
        impl Visitor<'_> for NameVisitor {
            type Value = ClaimName;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a claim name")
            }

            fn visit_str<E: de::Error>(self, name: &str) -> std::result::Result<ClaimName, E> {
                Ok(match name {
                    "iss" => ClaimName::Iss,
                    "sub" => ClaimName::Sub,
                    "aud" => ClaimName::Aud,
                    "exp" => ClaimName::Exp,
                    "nbf" => ClaimName::Nbf,
                    "iat" => ClaimName::Iat,
                    "jti" => ClaimName::Jti,
                    "client_id" => ClaimName::ClientId,
                    "scope" => ClaimName::Scope,
                    "sid" => ClaimName::Sid,
                    other => ClaimName::Other(other.to_owned()),
                })
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

/// A claim value of the expected JSON type, or `WrongType` (the value is read and dropped, so
/// that the rest of the payload is still read and a missing claim can still be told apart).
enum Typed<T> {
    Valid(T),
    WrongType,
}

impl<T> Typed<T> {
    fn valid(self) -> Result<T, TokenError> {
        match self {
            Self::Valid(value) => Ok(value),
            Self::WrongType => Err(TokenError::InvalidClaim),
        }
    }
}

/// How a claim type is made from JSON values; `None` means the wrong type. The rules are those of
/// serde's own impls (integers must fit an i64, no floats, no coercion between types).
trait ClaimValue: Sized {
    fn from_str(_: &str) -> Option<Self> {
        None
    }
    fn from_i64(_: i64) -> Option<Self> {
        None
    }
    fn from_u64(_: u64) -> Option<Self> {
        None
    }
    fn from_null() -> Option<Self> {
        None
    }
    fn from_strings(_: Vec<String>) -> Option<Self> {
        None
    }
}

impl ClaimValue for String {
    fn from_str(s: &str) -> Option<Self> {
        Some(s.to_owned())
    }
}

impl ClaimValue for i64 {
    fn from_i64(v: i64) -> Option<Self> {
        Some(v)
    }
    fn from_u64(v: u64) -> Option<Self> {
        i64::try_from(v).ok()
    }
}

impl ClaimValue for Option<String> {
    fn from_str(s: &str) -> Option<Self> {
        Some(Some(s.to_owned()))
    }
    fn from_null() -> Option<Self> {
        Some(None)
    }
}

impl ClaimValue for Audience {
    fn from_str(s: &str) -> Option<Self> {
        Some(Audience(vec![s.to_owned()]))
    }
    fn from_strings(items: Vec<String>) -> Option<Self> {
        Some(Audience(items))
    }
}

impl<'de, T: ClaimValue> Deserialize<'de> for Typed<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct TypedVisitor<T>(PhantomData<T>);
        impl<'de, T: ClaimValue> Visitor<'de> for TypedVisitor<T> {
            type Value = Typed<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Typed<T>, E> {
                Ok(T::from_str(v).into())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Typed<T>, E> {
                Ok(T::from_i64(v).into())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Typed<T>, E> {
                Ok(T::from_u64(v).into())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> std::result::Result<Typed<T>, E> {
                Ok(Typed::WrongType)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> std::result::Result<Typed<T>, E> {
                Ok(Typed::WrongType)
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<Typed<T>, E> {
                Ok(T::from_null().into())
            }
            fn visit_none<E: de::Error>(self) -> std::result::Result<Typed<T>, E> {
                Ok(T::from_null().into())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Typed<T>, A::Error> {
                // Read the whole array even after a bad element: the payload must still parse.
                let mut strings = Some(Vec::with_capacity(seq.size_hint().unwrap_or(1).min(16)));
                while let Some(item) = seq.next_element::<Typed<String>>()? {
                    match (item, strings.as_mut()) {
                        (Typed::Valid(s), Some(all)) => all.push(s),
                        _ => strings = None,
                    }
                }
                Ok(strings.and_then(T::from_strings).into())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Typed<T>, A::Error> {
                while map.next_entry::<de::IgnoredAny, de::IgnoredAny>()?.is_some() {}
                Ok(Typed::WrongType)
            }
        }
        deserializer.deserialize_any(TypedVisitor(PhantomData))
    }
}

impl<T> From<Option<T>> for Typed<T> {
    fn from(value: Option<T>) -> Self {
        value.map_or(Self::WrongType, Self::Valid)
    }
}

/// Decodes one base64url segment that must hold a JSON object: the header (RFC 7515 section 4)
/// and the claims (RFC 7519 section 7.2). serde's derived structs also read an array of their
/// fields in order, so anything but an object is refused before serde sees it.
fn decode_json<T: DeserializeOwned>(segment: &str) -> Result<T, TokenError> {
    let bytes = B64.decode(segment).map_err(|_| TokenError::Malformed)?;
    if bytes.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r')) != Some(&b'{') {
        return Err(TokenError::Malformed);
    }
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

mod cache;
mod id_token;
mod logout_token;
pub use id_token::{ID_TOKEN_ALGORITHM, IdTokenClaims, IdTokenExpectations, at_hash, sign_id_token, verify_id_token};
pub use logout_token::{BACKCHANNEL_LOGOUT_EVENT, LOGOUT_TOKEN_TTL_SECS, LOGOUT_TOKEN_TYPE, LogoutTokenClaims, sign_logout_token};
pub use cache::{DEFAULT_CAPACITY as VERIFIED_TOKENS_CAPACITY, VerifiedTokens};

#[cfg(test)]
mod tests;
