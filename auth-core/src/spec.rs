//! The `auth.toml` spec: the single source of truth shared by `auth-server` and `auth-gen`.
//!
//! Parsing is strict (`deny_unknown_fields`, typed durations such as `15m`), and [`Spec::parse`]
//! validates the whole file so that a spec that cannot work (tokens outliving their key, a client
//! asking for an undeclared scope, ...) is refused with an error naming the field. Parse errors carry
//! the line and column. [`Spec::hash`] is a SHA-256 over a canonical JSON form, so that a server and
//! a generated module can tell that they agree on the same spec.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::oauth::grants::{self, TokenGrant};

mod branding;
mod browser;

pub use branding::{Branding, DEFAULT_ACCENT_COLOR, DEFAULT_ACCENT_TEXT_COLOR};
pub use browser::{BrowserPolicy, MAX_REDIRECT_URI_LEN, redirect_uri_matches};

/// The only spec format version this build understands.
pub const SPEC_VERSION: u32 = 1;

/// Claims that the issuer sets itself; a spec may not declare custom claims with these names.
pub const REGISTERED_CLAIMS: &[&str] = &[
    "iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "scope", "sid", "typ", "auth_time",
    "acr", "amr", "azp", "cnf",
];

/// A spec that cannot be read, parsed or accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The file could not be read.
    #[error("cannot read spec {path}: {message}")]
    Io {
        /// The path that was read.
        path: String,
        /// The operating system's message.
        message: String,
    },
    /// Not valid TOML, an unknown field, or a value of the wrong type.
    #[error("spec parse error at line {line}, column {column}: {message}")]
    Parse {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// Parsed, but the values cannot work together.
    #[error("spec field `{field}`: {message}")]
    Invalid {
        /// Dotted path of the offending field, e.g. `keys.retire_after`.
        field: String,
        /// What is wrong and what would be accepted.
        message: String,
    },
}

impl SpecError {
    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), message: message.into() }
    }
}

/// A duration written as `15m`, `14d`, `1h30m` in the spec; whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seconds(pub u64);

impl Seconds {
    /// The duration in seconds as a signed integer (for arithmetic with Unix timestamps).
    pub fn as_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }

    /// The duration in milliseconds as a signed integer.
    pub fn as_millis(self) -> i64 {
        self.as_i64().saturating_mul(1000)
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(std::time::Duration::from_secs(self.0)))
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let duration = humantime::parse_duration(text.trim()).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {text:?} ({e}); write it like \"30s\", \"15m\", \"12h\" or \"14d\""
            ))
        })?;
        if duration.subsec_nanos() != 0 {
            return Err(serde::de::Error::custom(format!(
                "invalid duration {text:?}: durations are whole seconds"
            )));
        }
        Ok(Seconds(duration.as_secs()))
    }
}

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // The canonical form (and the hash) use plain seconds.
        serializer.serialize_u64(self.0)
    }
}

/// The JWS algorithm that access tokens are signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum SigningAlgorithm {
    /// Ed25519 (RFC 8037). Small, fast, deterministic signatures. The default.
    #[default]
    EdDSA,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys.
    RS256,
}

impl SigningAlgorithm {
    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
        }
    }

    /// Parses an `alg` value; only the three signing algorithms are accepted.
    pub fn parse(alg: &str) -> Option<Self> {
        match alg {
            "EdDSA" => Some(Self::EdDSA),
            "ES256" => Some(Self::ES256),
            "RS256" => Some(Self::RS256),
            _ => None,
        }
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[tokens]`: lifetimes of access and refresh tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenPolicy {
    /// Signing algorithm of access tokens. Default `EdDSA`.
    pub algorithm: SigningAlgorithm,
    /// Lifetime of an access token. Default `15m`.
    pub access_ttl: Seconds,
    /// A refresh token unused this long expires. Default `14d`.
    pub refresh_idle_ttl: Seconds,
    /// A refresh family (session) ends this long after login, used or not. Default `90d`.
    pub refresh_absolute_ttl: Seconds,
    /// A second use of a refresh token within this window is a benign retry and gets the same
    /// successor; after it, reuse is theft and revokes the family. Default `10s`.
    pub refresh_reuse_grace: Seconds,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`. Default `30s`.
    pub leeway: Seconds,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        Self {
            algorithm: SigningAlgorithm::EdDSA,
            access_ttl: Seconds(15 * 60),
            refresh_idle_ttl: Seconds(14 * 86_400),
            refresh_absolute_ttl: Seconds(90 * 86_400),
            refresh_reuse_grace: Seconds(10),
            leeway: Seconds(30),
        }
    }
}

/// `[keys]`: the signing-key rotation policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyPolicy {
    /// How long a key signs before its successor takes over. Default `30d`.
    pub rotate_every: Seconds,
    /// A new key is published in the JWKS this long before it signs. Default `2d`.
    pub publish_ahead: Seconds,
    /// An old key stays in the JWKS this long after its last signature. Default `1d`.
    pub retire_after: Seconds,
    /// `Cache-Control: max-age` of the JWKS; verifiers may cache it this long. Default `10m`.
    pub jwks_max_age: Seconds,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        Self {
            rotate_every: Seconds(30 * 86_400),
            publish_ahead: Seconds(2 * 86_400),
            retire_after: Seconds(86_400),
            jwks_max_age: Seconds(600),
        }
    }
}

/// `[passwords]`: argon2id parameters and the password policy (OWASP / ASVS defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordPolicy {
    /// argon2id memory in KiB. Default 19456 (19 MiB).
    pub memory_kib: u32,
    /// argon2id passes. Default 2.
    pub iterations: u32,
    /// argon2id lanes. Default 1.
    pub parallelism: u32,
    /// Shortest accepted password, in characters. Default 8.
    pub min_length: usize,
    /// Longest accepted password, in characters (never truncated). Default 256.
    pub max_length: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self { memory_kib: 19_456, iterations: 2, parallelism: 1, min_length: 8, max_length: 256 }
    }
}

/// A GCRA quota: `burst` requests, refilled evenly over `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Requests allowed at once (and per `per` on average).
    pub burst: u32,
    /// The window over which `burst` requests are refilled.
    pub per: Seconds,
}

/// `[sign_up]`: limits on creating accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignUpPolicy {
    /// Sign-ups admitted per source address (`POST /v1/users`). Default 20 an hour, at once or spread.
    #[serde(default = "SignUpPolicy::default_per_source")]
    pub per_source: RateLimitSpec,
}

impl SignUpPolicy {
    fn default_per_source() -> RateLimitSpec {
        RateLimitSpec { burst: 20, per: Seconds(3600) }
    }

    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for SignUpPolicy {
    fn default() -> Self {
        Self { per_source: Self::default_per_source() }
    }
}

/// `[scopes."name"]`: a scope that tokens may carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ScopeSpec {
    /// What the scope allows, shown to developers.
    #[serde(default)]
    pub description: String,
    /// The limit applied per (scope, subject or client) on endpoints that require this scope.
    #[serde(default)]
    pub rate_limit: Option<RateLimitSpec>,
    /// Whether the scope opens the admin API (`/v1/admin/...`: setting users' claims, inviting).
    /// Only confidential clients may hold it, through `client_credentials`. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
}

/// The JSON type of a custom claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimType {
    /// A JSON string.
    String,
    /// A JSON integer (i64).
    Integer,
    /// A JSON boolean.
    Boolean,
    /// An array of JSON strings.
    StringArray,
}

impl ClaimType {
    /// Whether `value` has this type.
    pub fn matches(self, value: &serde_json::Value) -> bool {
        match self {
            Self::String => value.is_string(),
            Self::Integer => value.is_i64(),
            Self::Boolean => value.is_boolean(),
            Self::StringArray => {
                value.as_array().is_some_and(|items| items.iter().all(serde_json::Value::is_string))
            }
        }
    }

    /// Checks a value for this claim: its type, and the bounds every claim value keeps (at most
    /// [`MAX_CLAIM_STRING_CHARS`] characters per string, [`MAX_CLAIM_ITEMS`] items per array),
    /// since each value rides in every token of its user.
    pub fn check(self, value: &serde_json::Value) -> Result<(), String> {
        if !self.matches(value) {
            return Err(format!("must be of type {}", self.as_str()));
        }
        let too_long = |s: &serde_json::Value| s.as_str().is_some_and(|s| s.chars().count() > MAX_CLAIM_STRING_CHARS);
        match value {
            serde_json::Value::Array(items) if items.len() > MAX_CLAIM_ITEMS => {
                Err(format!("must have at most {MAX_CLAIM_ITEMS} items"))
            }
            serde_json::Value::Array(items) if items.iter().any(too_long) => {
                Err(format!("items must be at most {MAX_CLAIM_STRING_CHARS} characters"))
            }
            s if too_long(s) => Err(format!("must be at most {MAX_CLAIM_STRING_CHARS} characters")),
            _ => Ok(()),
        }
    }

    /// The spec's name of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Boolean => "boolean",
            Self::StringArray => "string_array",
        }
    }
}

/// The longest string a claim value may hold, in characters.
pub const MAX_CLAIM_STRING_CHARS: usize = 256;
/// The most items a `string_array` claim may hold.
pub const MAX_CLAIM_ITEMS: usize = 64;

/// `[claims.name]`: a custom claim carried by access tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimSpec {
    /// The claim's JSON type.
    #[serde(rename = "type")]
    pub kind: ClaimType,
    /// Whether every user must have it (sign-up without it is refused, unless `default` or an
    /// invitation supplies it). Default false.
    #[serde(default)]
    pub required: bool,
    /// What the claim means.
    #[serde(default)]
    pub description: String,
    /// Who sets the claim. Default `admin`: a claim that carries authority (a tenant, a role)
    /// must not be chosen by the user it describes. Left out of the serialized form when it is
    /// the default, like every field added since the first spec version, so that the hash of a
    /// spec that does not use it stays what it was.
    #[serde(default, skip_serializing_if = "ClaimSetter::is_default")]
    pub set_by: ClaimSetter,
    /// The value a new user gets when nothing else sets the claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
}

impl ClaimSpec {
    /// A claim of `kind`, set by an administrator, without a default or description.
    pub fn new(kind: ClaimType, required: bool) -> Self {
        Self { kind, required, description: String::new(), set_by: ClaimSetter::Admin, default: None }
    }
}

/// Who may set a custom claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimSetter {
    /// Operators (`auth-server users set-claim`), confidential clients holding an admin scope
    /// (the admin API), and invitations. The user cannot send it at sign-up.
    #[default]
    Admin,
    /// The user, at sign-up; administrators may change it as well.
    User,
}

impl ClaimSetter {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The spec's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::User => "user",
        }
    }
}

/// An OAuth 2.0 grant type: a handle on one grant of the registry
/// ([`crate::oauth::grants::GRANTS`]), written in the spec by its `grant_type` name.
#[derive(Clone, Copy)]
pub struct GrantType(&'static dyn TokenGrant);

impl GrantType {
    /// The grant named `name` in the registry.
    pub fn named(name: &str) -> Option<Self> {
        grants::grant(name).map(Self)
    }

    /// The `grant_type` parameter value.
    pub fn as_str(self) -> &'static str {
        self.0.name()
    }

    /// The grant itself.
    pub fn grant(self) -> &'static dyn TokenGrant {
        self.0
    }
}

impl fmt::Debug for GrantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for GrantType {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for GrantType {}

impl std::hash::Hash for GrantType {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for GrantType {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for GrantType {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Serialize for GrantType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for GrantType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::named(&name).ok_or_else(|| {
            let known: Vec<&str> = grants::names().collect();
            serde::de::Error::custom(format_args!("unknown grant `{name}`, expected one of {}", known.join(", ")))
        })
    }
}

/// `[clients.id]`: an OAuth client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    /// A public client (SPA, mobile app) has no secret. Default false (confidential).
    #[serde(default)]
    pub public: bool,
    /// Grants the client may use.
    pub grants: Vec<GrantType>,
    /// Scopes the client may request; each must be declared under `[scopes]`.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// What the client is.
    #[serde(default)]
    pub description: String,
    /// Where the authorization endpoint may send the browser back to (`authorization_code`),
    /// compared exactly (loopback IP literals on any port, RFC 8252 7.3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect_uris: Vec<String>,
    /// Where sign-out may send the browser back to (RP-initiated logout), compared exactly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_logout_redirect_uris: Vec<String>,
    /// A client of the same party as this service (its own web or mobile app): users are not asked
    /// to consent to it. Default false: third-party clients get a consent page.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub first_party: bool,
    /// Browser origins (`https://app.example.com`) allowed to call the token, revocation and
    /// UserInfo endpoints from script (CORS); exact origins, no wildcards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub web_origins: Vec<String>,
    /// The client must push its authorization requests (RFC 9126) to the pushed authorization
    /// request endpoint: requests sent only through the browser are refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_pushed_authorization_requests: bool,
    /// How the hosted pages look for this client, field by field over the spec's `[branding]`.
    #[serde(default, skip_serializing_if = "Branding::is_empty")]
    pub branding: Branding,
    /// Where this service POSTs a logout token when a browser session the client got tokens from
    /// ends (OpenID Connect Back-Channel Logout 1.0); https, or http on loopback. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backchannel_logout_uri: Option<String>,
    /// Whether the client needs the `sid` claim in logout tokens. They always carry it; this is
    /// the client's registration of that need. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub backchannel_logout_session_required: bool,
}

impl ClientSpec {
    /// Whether the client may use the grant named `grant_type`.
    pub fn allows(&self, grant_type: &str) -> bool {
        self.grants.iter().any(|g| g.as_str() == grant_type)
    }
}

/// A parsed and validated `auth.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Format version; must be 1.
    pub spec_version: u32,
    /// The `iss` of every token, and the base URL of the discovery documents.
    pub issuer: String,
    /// The `aud` of access tokens (the APIs that accept them).
    pub audiences: Vec<String>,
    /// Token lifetimes.
    #[serde(default)]
    pub tokens: TokenPolicy,
    /// Key rotation policy.
    #[serde(default)]
    pub keys: KeyPolicy,
    /// Password hashing and policy.
    #[serde(default)]
    pub passwords: PasswordPolicy,
    /// Declared scopes.
    #[serde(default)]
    pub scopes: BTreeMap<String, ScopeSpec>,
    /// Custom claims of access tokens.
    #[serde(default)]
    pub claims: BTreeMap<String, ClaimSpec>,
    /// OAuth clients.
    #[serde(default)]
    pub clients: BTreeMap<String, ClientSpec>,
    /// `[sign_up]`: limits on creating accounts.
    #[serde(default, skip_serializing_if = "SignUpPolicy::is_default")]
    pub sign_up: SignUpPolicy,
    /// `[browser]`: lifetimes of authorization codes and browser sessions.
    #[serde(default, skip_serializing_if = "BrowserPolicy::is_default")]
    pub browser: BrowserPolicy,
    /// `[branding]`: how the hosted pages look.
    #[serde(default, skip_serializing_if = "Branding::is_empty")]
    pub branding: Branding,
}

impl Spec {
    /// Parses and validates spec text.
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        let spec: Spec = toml::from_str(text).map_err(|e| parse_error(text, &e))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Reads, parses and validates a spec file.
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::parse(&text)
    }

    /// The spec used when none is given: a local issuer with one read scope and one public client.
    pub fn default_local(issuer: &str) -> Self {
        let mut scopes = BTreeMap::new();
        scopes.insert(
            "profile".to_owned(),
            ScopeSpec { description: "Read the user's own profile".to_owned(), rate_limit: None, admin: false },
        );
        let mut clients = BTreeMap::new();
        clients.insert(
            "local-app".to_owned(),
            ClientSpec {
                public: true,
                grants: ["password", "refresh_token"].into_iter().filter_map(GrantType::named).collect(),
                scopes: vec!["profile".to_owned()],
                description: "Default public client".to_owned(),
                ..ClientSpec::default()
            },
        );
        Self {
            spec_version: SPEC_VERSION,
            issuer: issuer.to_owned(),
            audiences: vec!["api".to_owned()],
            tokens: TokenPolicy::default(),
            keys: KeyPolicy::default(),
            passwords: PasswordPolicy::default(),
            scopes,
            claims: BTreeMap::new(),
            clients,
            sign_up: SignUpPolicy::default(),
            browser: BrowserPolicy::default(),
            branding: Branding::default(),
        }
    }

    /// Checks every cross-field rule. [`Spec::parse`] calls this; call it again after editing a spec
    /// in code.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.spec_version != SPEC_VERSION {
            return Err(SpecError::invalid(
                "spec_version",
                format!("version {} is not supported; this build reads version {SPEC_VERSION}", self.spec_version),
            ));
        }
        validate_issuer(&self.issuer)?;
        self.branding.validate("branding")?;
        validate_audiences(&self.audiences)?;
        self.validate_lifetimes()?;
        self.validate_passwords()?;
        for (name, scope) in &self.scopes {
            validate_scope(name, scope)?;
        }
        for (name, claim) in &self.claims {
            validate_claim(name, claim)?;
        }
        for (id, client) in &self.clients {
            self.validate_client(id, client)?;
        }
        self.browser.validate()?;
        let per_source = self.sign_up.per_source;
        if per_source.burst == 0 || per_source.per.0 == 0 {
            return Err(SpecError::invalid("sign_up.per_source", "burst and per must be at least 1 and 1s"));
        }
        Ok(())
    }

    fn validate_lifetimes(&self) -> Result<(), SpecError> {
        let t = &self.tokens;
        let k = &self.keys;
        if t.access_ttl.0 == 0 || t.access_ttl.0 > 86_400 {
            return Err(SpecError::invalid("tokens.access_ttl", "must be between 1s and 24h"));
        }
        if t.leeway.0 > 300 {
            return Err(SpecError::invalid("tokens.leeway", "must be at most 5m"));
        }
        if t.refresh_idle_ttl.0 == 0 {
            return Err(SpecError::invalid("tokens.refresh_idle_ttl", "must be at least 1s"));
        }
        if t.refresh_idle_ttl > t.refresh_absolute_ttl {
            return Err(SpecError::invalid(
                "tokens.refresh_idle_ttl",
                format!(
                    "({}) must not exceed tokens.refresh_absolute_ttl ({})",
                    t.refresh_idle_ttl, t.refresh_absolute_ttl
                ),
            ));
        }
        if t.refresh_reuse_grace.0 > 300 || t.refresh_reuse_grace >= t.refresh_idle_ttl {
            return Err(SpecError::invalid(
                "tokens.refresh_reuse_grace",
                "must be at most 5m and shorter than tokens.refresh_idle_ttl",
            ));
        }
        let outlive = Seconds(t.access_ttl.0 + t.leeway.0);
        if k.retire_after < outlive {
            return Err(SpecError::invalid(
                "keys.retire_after",
                format!(
                    "({}) must be at least tokens.access_ttl + tokens.leeway ({outlive}), or tokens would outlive their key",
                    k.retire_after
                ),
            ));
        }
        if k.publish_ahead < k.jwks_max_age {
            return Err(SpecError::invalid(
                "keys.publish_ahead",
                format!(
                    "({}) must be at least keys.jwks_max_age ({}), or a verifier's cached JWKS would miss the new key",
                    k.publish_ahead, k.jwks_max_age
                ),
            ));
        }
        if k.rotate_every <= k.publish_ahead {
            return Err(SpecError::invalid(
                "keys.rotate_every",
                format!("({}) must be longer than keys.publish_ahead ({})", k.rotate_every, k.publish_ahead),
            ));
        }
        Ok(())
    }

    fn validate_passwords(&self) -> Result<(), SpecError> {
        let p = &self.passwords;
        if p.parallelism == 0 || p.parallelism > 16 {
            return Err(SpecError::invalid("passwords.parallelism", "must be between 1 and 16"));
        }
        if p.iterations == 0 || p.iterations > 32 {
            return Err(SpecError::invalid("passwords.iterations", "must be between 1 and 32"));
        }
        if p.memory_kib < 8 * p.parallelism || p.memory_kib < 4096 || p.memory_kib > 4 * 1024 * 1024 {
            return Err(SpecError::invalid("passwords.memory_kib", "must be between 4096 (4 MiB) and 4194304 (4 GiB)"));
        }
        if p.min_length < 8 {
            return Err(SpecError::invalid("passwords.min_length", "must be at least 8 (ASVS 2.1.1)"));
        }
        if p.max_length < 64 || p.max_length > 4096 || p.max_length < p.min_length {
            return Err(SpecError::invalid(
                "passwords.max_length",
                "must be between 64 (ASVS 2.1.2) and 4096, and not below passwords.min_length",
            ));
        }
        Ok(())
    }

    fn validate_client(&self, id: &str, client: &ClientSpec) -> Result<(), SpecError> {
        let field = |f: &str| format!("clients.{id}.{f}");
        if !is_identifier(id, &['.', '-', '_']) {
            return Err(SpecError::invalid(
                format!("clients.{id}"),
                "a client id is ASCII letters, digits, '.', '-' and '_', starting with a letter or digit",
            ));
        }
        if client.grants.is_empty() {
            return Err(SpecError::invalid(field("grants"), "must name at least one grant"));
        }
        let grants: BTreeSet<_> = client.grants.iter().copied().collect();
        if grants.len() != client.grants.len() {
            return Err(SpecError::invalid(field("grants"), "lists a grant twice"));
        }
        for grant in &client.grants {
            grant.grant().check_client(client).map_err(|why| SpecError::invalid(field("grants"), why))?;
        }
        for scope in &client.scopes {
            let Some(declared) = self.scopes.get(scope) else {
                return Err(SpecError::invalid(
                    field("scopes"),
                    format!("scope {scope:?} is not declared under [scopes]"),
                ));
            };
            // The admin API acts for no user: only a confidential client, on its own behalf.
            let own_behalf = client.grants.iter().all(|g| g.as_str() == "client_credentials");
            if declared.admin && (client.public || !own_behalf) {
                return Err(SpecError::invalid(
                    field("scopes"),
                    format!("admin scope {scope:?} is for confidential clients whose only grant is client_credentials"),
                ));
            }
        }
        client.branding.over(&self.branding).validate(&format!("clients.{id}.branding"))?;
        Self::validate_client_uris(id, client)
    }

    fn validate_client_uris(id: &str, client: &ClientSpec) -> Result<(), SpecError> {
        let field = |f: &str| format!("clients.{id}.{f}");
        for (name, uris) in [("redirect_uris", &client.redirect_uris), ("post_logout_redirect_uris", &client.post_logout_redirect_uris)] {
            let mut seen = BTreeSet::new();
            for uri in uris {
                browser::validate_redirect_uri(&field(name), uri, client.public)?;
                if !seen.insert(uri) {
                    return Err(SpecError::invalid(field(name), format!("{uri:?} is listed twice")));
                }
            }
        }
        for origin in &client.web_origins {
            browser::validate_web_origin(&field("web_origins"), origin)?;
        }
        if let Some(uri) = &client.backchannel_logout_uri {
            browser::validate_backchannel_logout_uri(&field("backchannel_logout_uri"), uri)?;
        }
        let browser_grant = client.allows("authorization_code");
        if !browser_grant {
            for (name, set) in [
                ("redirect_uris", !client.redirect_uris.is_empty()),
                ("post_logout_redirect_uris", !client.post_logout_redirect_uris.is_empty()),
                ("require_pushed_authorization_requests", client.require_pushed_authorization_requests),
                ("backchannel_logout_uri", client.backchannel_logout_uri.is_some()),
                ("backchannel_logout_session_required", client.backchannel_logout_session_required),
            ] {
                if set {
                    return Err(SpecError::invalid(field(name), "is only for clients with the authorization_code grant"));
                }
            }
        }
        Ok(())
    }

    /// The SHA-256 of the canonical JSON form of the spec, in lowercase hex. Formatting, comments
    /// and key order in the file do not change it; any value does.
    pub fn hash(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        let mut canonical = String::new();
        write_canonical_json(&value, &mut canonical);
        hex::encode(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()))
    }

    /// The algorithms the issuer signs with, each needing a chain of keys of its own: the access
    /// tokens' `tokens.algorithm` first, then RS256 when it differs and a client lists the
    /// `authorization_code` grant (OpenID Connect requires ID tokens that RS256 verifies). No
    /// algorithm appears twice.
    pub fn signing_algorithms(&self) -> Vec<SigningAlgorithm> {
        let mut algorithms = vec![self.tokens.algorithm];
        let issues_id_tokens = self
            .clients
            .values()
            .any(|client| client.grants.iter().any(|g| g.as_str() == "authorization_code"));
        if issues_id_tokens && self.tokens.algorithm != SigningAlgorithm::RS256 {
            algorithms.push(SigningAlgorithm::RS256);
        }
        algorithms
    }

    /// The rate limit of a scope, if it has one.
    pub fn scope_limit(&self, scope: &str) -> Option<RateLimitSpec> {
        self.scopes.get(scope).and_then(|s| s.rate_limit)
    }
}

fn parse_error(text: &str, error: &toml::de::Error) -> SpecError {
    let offset = error.span().map(|span| span.start);
    let (line, column) = offset.map_or((1, 1), |offset| line_and_column(text, offset));
    let mut message = error.message().trim().to_owned();
    // The TOML parser says nothing when the text ends right after `=` (`key =` at the end).
    if message.is_empty() {
        let at_end = offset.is_none_or(|offset| offset >= text.trim_end().len());
        message = if at_end { "the text ends where a value was expected" } else { "invalid TOML" }.to_owned();
    }
    SpecError::Parse { line, column, message }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn validate_issuer(issuer: &str) -> Result<(), SpecError> {
    let url = url::Url::parse(issuer)
        .map_err(|e| SpecError::invalid("issuer", format!("{issuer:?} is not a URL ({e})")))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(SpecError::invalid("issuer", "must be an https:// (or http:// for local use) URL"));
    }
    if url.query().is_some() || url.fragment().is_some() || url.host().is_none() {
        return Err(SpecError::invalid("issuer", "must have a host and no query or fragment (RFC 8414)"));
    }
    if issuer.ends_with('/') {
        return Err(SpecError::invalid("issuer", "must not end with '/': tokens compare it byte for byte"));
    }
    Ok(())
}

fn validate_audiences(audiences: &[String]) -> Result<(), SpecError> {
    if audiences.is_empty() {
        return Err(SpecError::invalid("audiences", "must name at least one audience"));
    }
    let mut seen = BTreeSet::new();
    for aud in audiences {
        if aud.trim().is_empty() || aud.trim() != aud {
            return Err(SpecError::invalid("audiences", format!("{aud:?} is empty or has surrounding spaces")));
        }
        if !seen.insert(aud) {
            return Err(SpecError::invalid("audiences", format!("{aud:?} is listed twice")));
        }
    }
    Ok(())
}

fn validate_scope(name: &str, scope: &ScopeSpec) -> Result<(), SpecError> {
    // RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
    let valid = !name.is_empty()
        && name.bytes().all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
    if !valid {
        return Err(SpecError::invalid(
            format!("scopes.{name:?}"),
            "a scope is printable ASCII without spaces, '\"' or '\\' (RFC 6749 section 3.3)",
        ));
    }
    if let Some(limit) = scope.rate_limit {
        if limit.burst == 0 {
            return Err(SpecError::invalid(format!("scopes.{name:?}.rate_limit.burst"), "must be at least 1"));
        }
        if limit.per.0 == 0 {
            return Err(SpecError::invalid(format!("scopes.{name:?}.rate_limit.per"), "must be at least 1s"));
        }
    }
    Ok(())
}

fn validate_claim(name: &str, claim: &ClaimSpec) -> Result<(), SpecError> {
    validate_claim_name(name)?;
    if let Some(default) = &claim.default {
        claim.kind.check(default).map_err(|why| SpecError::invalid(format!("claims.{name}.default"), why))?;
    }
    Ok(())
}

fn validate_claim_name(name: &str) -> Result<(), SpecError> {
    if REGISTERED_CLAIMS.contains(&name) {
        return Err(SpecError::invalid(
            format!("claims.{name}"),
            "is a registered claim that the issuer sets itself; choose another name",
        ));
    }
    let starts_with_letter = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if !starts_with_letter || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(SpecError::invalid(
            format!("claims.{name}"),
            "a claim name is ASCII letters, digits and '_', starting with a letter",
        ));
    }
    Ok(())
}

fn is_identifier(s: &str, extra: &[char]) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
        && s.len() <= 128
}

/// Writes JSON with object keys sorted and no whitespace: the canonical form behind [`Spec::hash`].
fn write_canonical_json(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical_json(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical_json(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests;
