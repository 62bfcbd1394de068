//! The access-token side: a real key set, the booking spec's verifier, a builder of tokens from
//! fuzzer-chosen headers and payloads, and the oracle that decides, without the verifier's code,
//! whether a token the verifier accepted really verifies.
//!
//! The key set publishes three keys (EdDSA from a fixed seed, ES256 and RS256 made at start) and
//! knows one retired key; a fifth key is published nowhere. The EdDSA keys are the same in every
//! run, so the committed seed tokens (`seeds/token_bytes/`) keep verifying.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use arbitrary::Arbitrary;
use auth_core::crypto::{PrivateKey, jwt_algorithm};
use auth_core::keys::KeySet;
use auth_core::random::OsEntropy;
use auth_core::spec::{SigningAlgorithm, Spec};
use auth_core::store::{KeyRecord, KeyState};
use auth_core::tokens::{AccessClaims, AccessTokenVerifier, MAX_TOKEN_BYTES};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use jsonwebtoken::EncodingKey;
use ring::signature::{self as ring_sig, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};

use crate::jsonish::{JsonIsh, Name, write_string};

/// The verification instant of the committed seed tokens (they expire 15 minutes later).
pub const NOW: i64 = 1_750_000_000;

/// The spec the verifier is configured from.
pub const SPEC: &str = include_str!("../../fixtures/specs/booking.toml");

/// The spec's issuer.
pub const ISSUER: &str = "http://127.0.0.1:8080";

/// The spec's audience.
pub const AUDIENCE: &str = "booking-api";

/// The spec's leeway in seconds.
pub const LEEWAY: i64 = 30;

/// Claims the verifier reads itself; every other member is a custom claim.
const READ_CLAIMS: &[&str] = &["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "scope", "sid"];

/// A public key as ring takes it, read from the published JWK: the oracle's own verifier.
enum PublicKey {
    Ed25519(Vec<u8>),
    P256(Vec<u8>),
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

impl PublicKey {
    fn from_jwk(jwk: &Value) -> Self {
        let member = |name: &str| {
            let text = jwk[name].as_str().unwrap_or_else(|| panic!("the JWK has no {name}"));
            B64.decode(text).unwrap_or_else(|e| panic!("the JWK's {name} is not base64url: {e}"))
        };
        match jwk["kty"].as_str() {
            Some("OKP") => Self::Ed25519(member("x")),
            Some("EC") => Self::P256([vec![4], member("x"), member("y")].concat()),
            Some("RSA") => Self::Rsa { n: member("n"), e: member("e") },
            other => panic!("unexpected key type {other:?}"),
        }
    }

    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Self::Ed25519(key) => UnparsedPublicKey::new(&ring_sig::ED25519, key).verify(message, signature).is_ok(),
            Self::P256(key) => {
                UnparsedPublicKey::new(&ring_sig::ECDSA_P256_SHA256_FIXED, key).verify(message, signature).is_ok()
            }
            Self::Rsa { n, e } => RsaPublicKeyComponents { n, e }
                .verify(&ring_sig::RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
        }
    }
}

/// A signing key with its kid.
pub struct Signer {
    /// The private key.
    pub key: PrivateKey,
    /// Its RFC 7638 thumbprint.
    pub kid: String,
    jwk: String,
    encoding: EncodingKey,
    public: PublicKey,
}

impl Signer {
    fn new(key: PrivateKey) -> Self {
        let jwk = key.public_jwk().unwrap_or_else(|e| panic!("public JWK: {e}"));
        let kid = jwk.common.key_id.clone().unwrap_or_else(|| panic!("the JWK has no kid"));
        let value = serde_json::to_value(&jwk).unwrap_or_else(|e| panic!("JWK as JSON: {e}"));
        let public = PublicKey::from_jwk(&value);
        Self { encoding: key.encoding_key(), key, kid, jwk: value.to_string(), public }
    }

    fn seeded(seed: u8) -> Self {
        Self::new(PrivateKey::ed25519_from_seed(&[seed; 32]).unwrap_or_else(|e| panic!("Ed25519 key: {e}")))
    }

    fn generated(alg: SigningAlgorithm) -> Self {
        Self::new(PrivateKey::generate(alg, &OsEntropy::new()).unwrap_or_else(|e| panic!("{alg} key: {e}")))
    }

    /// The algorithm pinned to the key.
    pub fn alg(&self) -> &'static str {
        self.key.algorithm().as_str()
    }

    /// The base64url signature of `input` (the bytes the signature segment covers).
    pub fn sign(&self, input: &str) -> String {
        jsonwebtoken::crypto::sign(input.as_bytes(), &self.encoding, jwt_algorithm(self.key.algorithm()))
            .unwrap_or_else(|e| panic!("signing with {}: {e}", self.alg()))
    }

    fn record(&self, state: KeyState) -> KeyRecord {
        KeyRecord {
            kid: self.kid.clone(),
            alg: self.key.algorithm(),
            state,
            created_at: NOW - 86_400,
            activates_at: NOW - 86_400,
            deactivated_at: None,
            retired_at: None,
            public_jwk: self.jwk.clone(),
            private_sealed: None,
            master_key_id: "fuzz".to_owned(),
        }
    }
}

/// Everything a token target needs, made once per process.
pub struct Fixture {
    /// The booking spec's verifier.
    pub verifier: AccessTokenVerifier,
    /// The published keys (EdDSA active, ES256 pending, RS256 retiring) and one retired kid.
    pub keys: KeySet,
    /// The published keys' signers, in the order of [`KeyChoice`].
    pub published: [Signer; 3],
    /// The retired key (its kid is known to the key set, its tokens refused).
    pub retired: Signer,
    /// A key nobody publishes.
    pub stranger: Signer,
}

impl Fixture {
    fn new() -> Self {
        let spec = Spec::parse(SPEC).unwrap_or_else(|e| panic!("booking spec: {e}"));
        // First: installs the crypto provider that signing below relies on.
        let verifier = AccessTokenVerifier::from_spec(&spec);
        let published = [
            Signer::seeded(1),
            Signer::generated(SigningAlgorithm::ES256),
            Signer::generated(SigningAlgorithm::RS256),
        ];
        let retired = Signer::seeded(2);
        let stranger = Signer::seeded(3);
        let records = [
            published[0].record(KeyState::Active),
            published[1].record(KeyState::Pending),
            published[2].record(KeyState::Retiring),
            retired.record(KeyState::Retired),
        ];
        let keys = KeySet::from_records(&records).unwrap_or_else(|e| panic!("key set: {e}"));
        let fixture = Self { verifier, keys, published, retired, stranger };
        // The harness itself: an honest token of each published key verifies.
        for key in [KeyChoice::EdDSA, KeyChoice::ES256, KeyChoice::RS256] {
            let token = TokenRecipe::honest(key).build(&fixture).token;
            let claims = fixture.verifier.verify(&token, &fixture.keys, NOW);
            let claims = claims.unwrap_or_else(|e| panic!("the honest {key:?} token is refused: {e:?}"));
            assert_really_valid(&fixture, &token, &claims, NOW);
        }
        fixture
    }

    /// The published key named `kid`.
    pub fn published_key(&self, kid: &str) -> Option<&Signer> {
        self.published.iter().find(|s| s.kid == kid)
    }

    /// The words `JsonIsh::Word` draws from: values the verifier compares against, near misses,
    /// and the key ids.
    pub fn words(&self) -> Vec<&str> {
        let mut words = vec![
            ISSUER,
            "http://127.0.0.1:8080/",
            "HTTP://127.0.0.1:8080",
            AUDIENCE,
            "Booking-Api",
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "JWT",
            "EdDSA",
            "ES256",
            "RS256",
            "none",
            "HS256",
            "eddsa",
            "user-1",
            "booking-web",
            "bookings:read bookings:write",
            "session-1",
            "hotel-7",
            "",
            "\0",
        ];
        words.extend(self.published.iter().map(|s| s.kid.as_str()));
        words.extend([self.retired.kid.as_str(), self.stranger.kid.as_str()]);
        words
    }
}

/// The process's fixture.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: LazyLock<Fixture> = LazyLock::new(Fixture::new);
    &FIXTURE
}

/// Panics unless `token`, which the verifier accepted at `now` with `claims`, really is a token
/// of `fixture`'s issuer, judged without the verifier's code: three canonical base64url segments,
/// a header object naming a published key and its algorithm, `typ` `at+jwt` and no `crit`, a
/// signature that ring verifies under that key, and a claims object whose registered claims have
/// the right types and values at `now` and match `claims`.
pub fn assert_really_valid(fixture: &Fixture, token: &str, claims: &AccessClaims, now: i64) {
    macro_rules! fail {
        ($($what:tt)*) => {
            panic!("accepted a token {}: {token:.600}", format_args!($($what)*))
        };
    }
    if token.len() > MAX_TOKEN_BYTES {
        fail!("over the size limit");
    }
    let segments: Vec<&str> = token.split('.').collect();
    let [header_b64, payload_b64, signature_b64] = segments.as_slice() else { fail!("without three segments") };
    let decode = |segment: &str, what: &str| -> Vec<u8> {
        let bytes = B64.decode(segment).unwrap_or_else(|_| fail!("whose {what} is not base64url"));
        if B64.encode(&bytes) != segment {
            fail!("whose {what} is not canonical base64url");
        }
        bytes
    };
    let object = |bytes: &[u8], what: &str| -> Map<String, Value> {
        match serde_json::from_slice(bytes) {
            Ok(Value::Object(members)) => members,
            Ok(_) => fail!("whose {what} is JSON but not an object"),
            Err(_) => fail!("whose {what} is not JSON"),
        }
    };
    let header_bytes = decode(header_b64, "header");
    let header = match serde_json::from_slice::<HeaderMembers>(&header_bytes) {
        Ok(HeaderMembers(members)) => members,
        Err(_) => {
            object(&header_bytes, "header");
            fail!("whose header has no members the oracle can read")
        }
    };
    if header.get("crit").is_some_and(|c| !c.is_null()) {
        fail!("with a crit header");
    }
    let kid = header.get("kid").and_then(Value::as_str).unwrap_or_else(|| fail!("without a string kid"));
    let signer = fixture.published_key(kid).unwrap_or_else(|| fail!("whose kid is not published"));
    if header.get("alg").and_then(Value::as_str) != Some(signer.alg()) {
        fail!("whose alg is not the key's");
    }
    let typ = header.get("typ").and_then(Value::as_str).unwrap_or_default();
    if !typ.eq_ignore_ascii_case("at+jwt") && !typ.eq_ignore_ascii_case("application/at+jwt") {
        fail!("whose typ is not at+jwt");
    }
    let signature = B64.decode(signature_b64).unwrap_or_else(|_| fail!("whose signature is not base64url"));
    if B64.encode(&signature) != *signature_b64 {
        fail!("whose signature is not canonical base64url");
    }
    if !signer.public.verifies(format!("{header_b64}.{payload_b64}").as_bytes(), &signature) {
        fail!("whose signature ring does not verify");
    }

    let payload = object(&decode(payload_b64, "payload"), "payload");
    let string = |name: &str| payload.get(name).and_then(Value::as_str).unwrap_or_else(|| fail!("without a string {name}"));
    let int = |name: &str| payload.get(name).map(|v| v.as_i64().unwrap_or_else(|| fail!("whose {name} is not an i64")));
    if string("iss") != ISSUER {
        fail!("of another issuer");
    }
    let aud: Vec<&str> = match payload.get("aud") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(items)) => {
            items.iter().map(|i| i.as_str().unwrap_or_else(|| fail!("with a non-string audience"))).collect()
        }
        _ => fail!("without an aud string or array"),
    };
    if !aud.contains(&AUDIENCE) {
        fail!("for another audience");
    }
    let exp = int("exp").unwrap_or_else(|| fail!("without exp"));
    let iat = int("iat").unwrap_or_else(|| fail!("without iat"));
    let nbf = int("nbf");
    if now > exp.saturating_add(LEEWAY) {
        fail!("that has expired");
    }
    if nbf.unwrap_or(iat).max(iat) > now.saturating_add(LEEWAY) {
        fail!("that is not valid yet");
    }
    let sid = match payload.get("sid") {
        None | Some(Value::Null) => None,
        Some(Value::String(sid)) => Some(sid.clone()),
        Some(_) => fail!("with a sid that is neither a string nor null"),
    };
    match payload.get("tenant_id") {
        None if payload.contains_key("sid") => fail!("of a user without the required tenant_id"),
        None | Some(Value::String(_)) => {}
        Some(_) => fail!("with a tenant_id that is not a string"),
    }
    let custom: BTreeMap<String, Value> = payload
        .iter()
        .filter(|(name, _)| !READ_CLAIMS.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let expected = (
        string("iss"),
        string("sub"),
        aud,
        exp,
        iat,
        string("jti"),
        string("client_id"),
        string("scope"),
        sid.as_deref(),
        &custom,
    );
    let returned = (
        claims.iss.as_str(),
        claims.sub.as_str(),
        claims.aud.0.iter().map(String::as_str).collect::<Vec<_>>(),
        claims.exp,
        claims.iat,
        claims.jti.as_str(),
        claims.client_id.as_str(),
        claims.scope.as_str(),
        claims.sid.as_deref(),
        &claims.custom,
    );
    assert_eq!(returned, expected, "the claims returned for an accepted token differ from its payload: {token:.600}");
}

/// The members of a JWS header that a verifier reads (`alg`, `kid`, `typ`, `crit`), as JSON
/// values; the others are skipped unread, as the verifier skips them. Skipping matters: RFC 8259
/// sets no limit on numbers, and a number beyond `f64` (`1E999999`) is refused by `serde_json`'s
/// `Value` but valid JSON to its skipping parser (found by `token_structured`: a header member
/// nobody reads held one).
struct HeaderMembers(Map<String, Value>);

impl<'de> serde::Deserialize<'de> for HeaderMembers {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = HeaderMembers;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut access: A) -> Result<HeaderMembers, A::Error> {
                let mut members = Map::new();
                while let Some(name) = access.next_key::<String>()? {
                    if ["alg", "kid", "typ", "crit"].contains(&name.as_str()) {
                        members.insert(name, access.next_value()?);
                    } else {
                        access.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(HeaderMembers(members))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens from recipes

/// One of the published keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum KeyChoice {
    /// The EdDSA key (active).
    EdDSA,
    /// The ES256 key (pending).
    ES256,
    /// The RS256 key (retiring).
    RS256,
}

impl KeyChoice {
    fn signer(self, fixture: &Fixture) -> &Signer {
        &fixture.published[self as usize]
    }
}

/// A header member or claim: as the issuer writes it, absent, another value, or written twice
/// (the honest value first).
#[derive(Debug, Clone, PartialEq, Arbitrary)]
pub enum Member {
    /// The issuer's value.
    Honest,
    /// Left out.
    Missing,
    /// Another value.
    Value(JsonIsh),
    /// The issuer's value, then this one under the same name.
    Twice(JsonIsh),
}

/// The `kid` header.
#[derive(Debug, Clone, PartialEq, Arbitrary)]
pub enum KidChoice {
    /// The kid of the signing key.
    Honest,
    /// The retired key's kid.
    Retired,
    /// The unpublished key's kid.
    Stranger,
    /// Another published key's kid.
    Published(KeyChoice),
    /// Any member.
    Member(Member),
}

/// The header.
#[derive(Debug, Clone, PartialEq, Arbitrary)]
pub struct HeaderRecipe {
    /// `alg`.
    pub alg: Member,
    /// `kid`.
    pub kid: KidChoice,
    /// `typ`.
    pub typ: Member,
    /// Members after these.
    pub extra: Vec<(Name, JsonIsh)>,
    /// A whole other header instead.
    pub whole: Option<JsonIsh>,
    /// The members' values as a JSON array, in order (serde's derived structs read such arrays).
    pub positional: bool,
}

/// The payload: the honest claims in order `iss sub aud exp nbf iat jti client_id scope sid
/// tenant_id`, then extra members.
#[derive(Debug, Clone, PartialEq, Arbitrary)]
pub struct PayloadRecipe {
    /// One entry per claim, in the order above.
    pub claims: [Member; 11],
    /// Members after these.
    pub extra: Vec<(Name, JsonIsh)>,
    /// A whole other payload instead.
    pub whole: Option<JsonIsh>,
}

/// Names and honest values of [`PayloadRecipe::claims`].
const HONEST_CLAIMS: [(&str, HonestValue); 11] = [
    ("iss", HonestValue::Str(ISSUER)),
    ("sub", HonestValue::Str("user-1")),
    ("aud", HonestValue::Str(AUDIENCE)),
    ("exp", HonestValue::Time(900)),
    ("nbf", HonestValue::Time(0)),
    ("iat", HonestValue::Time(0)),
    ("jti", HonestValue::Str("jti-1")),
    ("client_id", HonestValue::Str("booking-web")),
    ("scope", HonestValue::Str("bookings:read bookings:write")),
    ("sid", HonestValue::Str("session-1")),
    ("tenant_id", HonestValue::Str("hotel-7")),
];

#[derive(Debug, Clone, Copy)]
enum HonestValue {
    Str(&'static str),
    Time(i64),
}

/// The signature segment.
#[derive(Debug, Clone, PartialEq, Arbitrary)]
pub enum SignatureRecipe {
    /// By the chosen published key.
    Honest,
    /// By another published key.
    Published(KeyChoice),
    /// By the retired key.
    Retired,
    /// By the key nobody publishes.
    Stranger,
    /// The honest signature with one bit flipped.
    FlipBit(u16),
    /// base64url of these bytes.
    Bytes(Vec<u8>),
    /// This text, as it is.
    Text(String),
}

/// How the segments are encoded and joined.
#[derive(Debug, Clone, PartialEq, Arbitrary)]
pub enum EncodingRecipe {
    /// Compact serialization.
    Plain,
    /// `=` padding on the header, payload or signature segment (signed as sent).
    Padded(u8),
    /// The standard alphabet (`+`, `/`) instead of base64url (signed as sent).
    StandardAlphabet,
    /// A character inserted into the header, payload or signature segment (signed as sent).
    Insert(u8, u16, char),
    /// A fourth segment.
    ExtraSegment(String),
    /// The token cut after this many bytes.
    Truncate(u16),
}

/// A token built from fuzzer choices.
#[derive(Debug, Clone, PartialEq, Arbitrary)]
pub struct TokenRecipe {
    /// The key the honest choices refer to.
    pub key: KeyChoice,
    /// The header.
    pub header: HeaderRecipe,
    /// The payload.
    pub payload: PayloadRecipe,
    /// The signature.
    pub signature: SignatureRecipe,
    /// The encoding.
    pub encoding: EncodingRecipe,
    /// Verification instant, relative to [`NOW`].
    pub now_offset: i16,
}

/// A built token.
#[derive(Debug, Clone)]
pub struct Built {
    /// The compact token.
    pub token: String,
    /// Whether the signature was made without the private key of a published key: accepting
    /// such a token would mean a forgery.
    pub forged: bool,
}

impl TokenRecipe {
    /// Every choice honest: a token that verifies at [`NOW`].
    pub fn honest(key: KeyChoice) -> Self {
        Self {
            key,
            header: HeaderRecipe {
                alg: Member::Honest,
                kid: KidChoice::Honest,
                typ: Member::Honest,
                extra: vec![],
                whole: None,
                positional: false,
            },
            payload: PayloadRecipe { claims: std::array::from_fn(|_| Member::Honest), extra: vec![], whole: None },
            signature: SignatureRecipe::Honest,
            encoding: EncodingRecipe::Plain,
            now_offset: 0,
        }
    }

    /// The verification instant.
    pub fn now(&self) -> i64 {
        NOW + i64::from(self.now_offset)
    }

    /// Writes, encodes and signs the token.
    pub fn build(&self, fixture: &Fixture) -> Built {
        let signer = self.key.signer(fixture);
        let words = fixture.words();
        let header = self.header_text(signer, fixture, &words);
        let payload = self.payload_text(&words);
        let mut segments = [B64.encode(header), B64.encode(payload)];
        match &self.encoding {
            EncodingRecipe::Padded(which) if *which % 3 < 2 => segments[usize::from(*which % 3)].push_str("=="),
            EncodingRecipe::StandardAlphabet => {
                for segment in &mut segments {
                    *segment = B64.decode(&*segment).map(|b| STANDARD.encode(b)).unwrap_or_default();
                }
            }
            EncodingRecipe::Insert(which, at, c) if *which % 3 < 2 => insert(&mut segments[usize::from(*which % 3)], *at, *c),
            _ => {}
        }
        let input = format!("{}.{}", segments[0], segments[1]);
        let (mut signature, forged) = match &self.signature {
            SignatureRecipe::Honest => (signer.sign(&input), false),
            SignatureRecipe::Published(other) => (other.signer(fixture).sign(&input), false),
            SignatureRecipe::Retired => (fixture.retired.sign(&input), true),
            SignatureRecipe::Stranger => (fixture.stranger.sign(&input), true),
            SignatureRecipe::FlipBit(bit) => {
                let mut bytes = B64.decode(signer.sign(&input)).unwrap_or_default();
                let len = bytes.len() * 8;
                if len > 0 {
                    let bit = usize::from(*bit) % len;
                    bytes[bit / 8] ^= 1 << (bit % 8);
                }
                (B64.encode(bytes), true)
            }
            SignatureRecipe::Bytes(bytes) => (B64.encode(bytes), true),
            SignatureRecipe::Text(text) => (text.clone(), true),
        };
        match &self.encoding {
            EncodingRecipe::Padded(which) if *which % 3 == 2 => signature.push('='),
            EncodingRecipe::Insert(which, at, c) if *which % 3 == 2 => insert(&mut signature, *at, *c),
            _ => {}
        }
        let mut token = format!("{input}.{signature}");
        match &self.encoding {
            EncodingRecipe::ExtraSegment(extra) => {
                token.push('.');
                token.push_str(extra);
            }
            EncodingRecipe::Truncate(len) => {
                let mut len = usize::from(*len).min(token.len());
                while !token.is_char_boundary(len) {
                    len -= 1;
                }
                token.truncate(len);
            }
            _ => {}
        }
        Built { token, forged }
    }

    fn header_text(&self, signer: &Signer, fixture: &Fixture, words: &[&str]) -> String {
        let now = self.now();
        let mut out = String::new();
        if let Some(whole) = &self.header.whole {
            whole.write(now, words, &mut out);
            return out;
        }
        let mut members = Members::new(now, words, &mut out, self.header.positional);
        members.member("alg", &self.header.alg, |out| write_string(signer.alg(), out));
        match &self.header.kid {
            KidChoice::Honest => members.member("kid", &Member::Honest, |out| write_string(&signer.kid, out)),
            KidChoice::Retired => members.member("kid", &Member::Honest, |out| write_string(&fixture.retired.kid, out)),
            KidChoice::Stranger => members.member("kid", &Member::Honest, |out| write_string(&fixture.stranger.kid, out)),
            KidChoice::Published(other) => {
                let kid = &other.signer(fixture).kid;
                members.member("kid", &Member::Honest, |out| write_string(kid, out));
            }
            KidChoice::Member(member) => members.member("kid", member, |out| write_string(&signer.kid, out)),
        }
        members.member("typ", &self.header.typ, |out| write_string("at+jwt", out));
        members.extra(&self.header.extra);
        members.close();
        out
    }

    fn payload_text(&self, words: &[&str]) -> String {
        let now = self.now();
        let mut out = String::new();
        if let Some(whole) = &self.payload.whole {
            whole.write(now, words, &mut out);
            return out;
        }
        let mut members = Members::new(now, words, &mut out, false);
        for ((name, honest), member) in HONEST_CLAIMS.iter().zip(&self.payload.claims) {
            members.member(name, member, |out| match honest {
                HonestValue::Str(s) => write_string(s, out),
                HonestValue::Time(offset) => out.push_str(&(NOW + offset).to_string()),
            });
        }
        members.extra(&self.payload.extra);
        members.close();
        out
    }
}

/// Inserts `c` at the char boundary at or before `at` (wrapping on the length).
fn insert(segment: &mut String, at: u16, c: char) {
    let mut at = usize::from(at) % (segment.len() + 1);
    while !segment.is_char_boundary(at) {
        at -= 1;
    }
    segment.insert(at, c);
}

/// Writes the members of one JSON object, or (positional) their values as an array.
struct Members<'a> {
    now: i64,
    words: &'a [&'a str],
    out: &'a mut String,
    first: bool,
    positional: bool,
}

impl<'a> Members<'a> {
    fn new(now: i64, words: &'a [&'a str], out: &'a mut String, positional: bool) -> Self {
        out.push(if positional { '[' } else { '{' });
        Self { now, words, out, first: true, positional }
    }

    fn name(&mut self, name: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        if !self.positional {
            write_string(name, self.out);
            self.out.push(':');
        }
    }

    fn member(&mut self, name: &str, member: &Member, honest: impl Fn(&mut String)) {
        match member {
            Member::Honest => {
                self.name(name);
                honest(self.out);
            }
            Member::Missing => {}
            Member::Value(value) => {
                self.name(name);
                value.write(self.now, self.words, self.out);
            }
            Member::Twice(value) => {
                self.name(name);
                honest(self.out);
                self.name(name);
                value.write(self.now, self.words, self.out);
            }
        }
    }

    fn extra(&mut self, extra: &[(Name, JsonIsh)]) {
        for (name, value) in extra {
            self.name(name.as_str());
            value.write(self.now, self.words, self.out);
        }
    }

    fn close(self) {
        self.out.push(if self.positional { ']' } else { '}' });
    }
}

/// Seed tokens for `token_bytes`, with file names: honest EdDSA tokens (user and client), and
/// refused ones that reach each early check (retired key, unknown key, `alg: none`, `HS256`,
/// wrong `typ`, expired). The EdDSA keys are fixed, so these stay valid at [`NOW`] in every run.
pub fn seed_tokens(fixture: &Fixture) -> Vec<(&'static str, String)> {
    let honest = || TokenRecipe::honest(KeyChoice::EdDSA);
    let mut client = honest();
    client.payload.claims[9] = Member::Missing;
    client.payload.claims[10] = Member::Missing;
    let mut audiences = honest();
    audiences.payload.claims[2] = Member::Value(JsonIsh::Array(vec![JsonIsh::Str("other".into()), JsonIsh::Str(AUDIENCE.into())]));
    let mut retired = honest();
    retired.header.kid = KidChoice::Retired;
    retired.signature = SignatureRecipe::Retired;
    let mut stranger = honest();
    stranger.header.kid = KidChoice::Stranger;
    stranger.signature = SignatureRecipe::Stranger;
    let mut none = honest();
    none.header.alg = Member::Value(JsonIsh::Str("none".into()));
    none.signature = SignatureRecipe::Text(String::new());
    let mut hs256 = honest();
    hs256.header.alg = Member::Value(JsonIsh::Str("HS256".into()));
    let mut jwt = honest();
    jwt.header.typ = Member::Value(JsonIsh::Str("JWT".into()));
    let mut expired = honest();
    expired.payload.claims[3] = Member::Value(JsonIsh::Time(-3_600));
    [
        ("eddsa-user", honest()),
        ("eddsa-client", client),
        ("eddsa-audiences", audiences),
        ("retired-key", retired),
        ("unknown-key", stranger),
        ("alg-none", none),
        ("alg-hs256", hs256),
        ("typ-jwt", jwt),
        ("expired", expired),
    ]
    .into_iter()
    .map(|(name, recipe)| (name, recipe.build(fixture).token))
    .collect()
}
