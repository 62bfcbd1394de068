//! The library's error type. Every variant maps to a stable [`Code`] (`token.expired`,
//! `refresh.reused`, ...) that the server maps to a status and that clients may match on.

use crate::code::Code;
use crate::spec::SpecError;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an access token was rejected. The codes are part of the public contract: the generated
/// TypeScript verifier reports the same ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not three base64url segments of JSON.
    #[error("the token is not a well-formed JWS compact serialization")]
    Malformed,
    /// `alg` is `none`, symmetric, or not one this issuer signs with.
    #[error("the token's algorithm is not accepted")]
    UnsupportedAlgorithm,
    /// `alg` differs from the algorithm pinned to the key named by `kid`.
    #[error("the token's algorithm does not match its key")]
    AlgorithmMismatch,
    /// No `kid`, or a `kid` that is not in the key set.
    #[error("the token's key is unknown")]
    UnknownKey,
    /// The key named by `kid` has been retired.
    #[error("the token's key has been retired")]
    KeyRetired,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// `typ` is not `at+jwt`.
    #[error("the token is not an access token (typ)")]
    WrongType,
    /// A required claim is absent.
    #[error("the token lacks a required claim")]
    MissingClaim,
    /// A claim has the wrong JSON type or an invalid value.
    #[error("a claim of the token has the wrong type or value")]
    InvalidClaim,
    /// `exp` is in the past (beyond the leeway).
    #[error("the token has expired")]
    Expired,
    /// `nbf` or `iat` is in the future (beyond the leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iss` is not this issuer.
    #[error("the token was issued by another issuer")]
    WrongIssuer,
    /// `aud` does not name an accepted audience.
    #[error("the token is meant for another audience")]
    WrongAudience,
    /// The token exceeds the accepted size.
    #[error("the token is too large")]
    TooLarge,
}

impl TokenError {
    /// Every rejection, in the order of the [`Code`] list.
    pub const ALL: &'static [TokenError] = &[
        Self::Malformed,
        Self::TooLarge,
        Self::UnsupportedAlgorithm,
        Self::AlgorithmMismatch,
        Self::UnknownKey,
        Self::KeyRetired,
        Self::BadSignature,
        Self::WrongType,
        Self::MissingClaim,
        Self::InvalidClaim,
        Self::Expired,
        Self::NotYetValid,
        Self::WrongIssuer,
        Self::WrongAudience,
    ];

    /// The stable code of this rejection.
    pub fn code(self) -> Code {
        match self {
            Self::Malformed => Code::TokenMalformed,
            Self::UnsupportedAlgorithm => Code::TokenUnsupportedAlgorithm,
            Self::AlgorithmMismatch => Code::TokenAlgorithmMismatch,
            Self::UnknownKey => Code::TokenUnknownKey,
            Self::KeyRetired => Code::TokenKeyRetired,
            Self::BadSignature => Code::TokenBadSignature,
            Self::WrongType => Code::TokenWrongType,
            Self::MissingClaim => Code::TokenMissingClaim,
            Self::InvalidClaim => Code::TokenInvalidClaim,
            Self::Expired => Code::TokenExpired,
            Self::NotYetValid => Code::TokenNotYetValid,
            Self::WrongIssuer => Code::TokenWrongIssuer,
            Self::WrongAudience => Code::TokenWrongAudience,
            Self::TooLarge => Code::TokenTooLarge,
        }
    }
}

/// Why a refresh token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshError {
    /// Not a refresh token this service issued (or malformed).
    #[error("the refresh token is not recognised")]
    Unknown,
    /// Used again after the reuse grace: the whole family has now been revoked.
    #[error("the refresh token was already used; the session has been revoked")]
    Reused,
    /// The family was revoked (logout, reuse, disabled user).
    #[error("the session of this refresh token has been revoked")]
    Revoked,
    /// Idle or absolute lifetime exceeded.
    #[error("the refresh token has expired")]
    Expired,
    /// Presented by another client than the one it was issued to.
    #[error("the refresh token was issued to another client")]
    WrongClient,
}

impl RefreshError {
    /// The stable code of this refusal.
    pub fn code(self) -> Code {
        match self {
            Self::Unknown => Code::RefreshUnknown,
            Self::Reused => Code::RefreshReused,
            Self::Revoked => Code::RefreshRevoked,
            Self::Expired => Code::RefreshExpired,
            Self::WrongClient => Code::RefreshWrongClient,
        }
    }
}

/// Why an authorization code was refused at the token endpoint (all `invalid_grant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorizationCodeError {
    /// Unknown, expired, or issued to another client or for another redirect URI.
    #[error("the authorization code is unknown, expired, or was issued for another client or redirect URI")]
    Invalid,
    /// Exchanged before: the session the first exchange started has been revoked.
    #[error("the authorization code was already used; the session it started has been revoked")]
    Reused,
    /// The `code_verifier` does not hash to the request's `code_challenge`.
    #[error("the code_verifier does not match the code_challenge")]
    PkceFailed,
}

impl AuthorizationCodeError {
    /// The stable code of this refusal.
    pub fn code(self) -> Code {
        match self {
            Self::Invalid => Code::CodeInvalid,
            Self::Reused => Code::CodeReused,
            Self::PkceFailed => Code::CodePkceFailed,
        }
    }
}

/// Errors of auth-core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The spec file cannot be read, parsed or validated.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// An access token was rejected.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A refresh token was refused.
    #[error(transparent)]
    Refresh(#[from] RefreshError),
    /// An authorization code was refused.
    #[error(transparent)]
    AuthorizationCode(#[from] AuthorizationCodeError),
    /// Unknown user, wrong password or disabled account: deliberately one answer.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// The client is unknown, or its authentication failed.
    #[error("client authentication failed")]
    InvalidClient,
    /// The client may not use this grant.
    #[error("the client may not use the grant `{0}`")]
    UnauthorizedGrant(String),
    /// Too many login attempts on one account: refused before the password is checked.
    #[error("too many login attempts; retry in {retry_after_secs} s")]
    TooManyAttempts {
        /// Seconds until an attempt is admitted again.
        retry_after_secs: u64,
    },
    /// Too many sign-ups from one source address (the spec's `sign_up.per_source`).
    #[error("too many sign-ups from this address; retry in {retry_after_secs} s")]
    TooManySignUps {
        /// Seconds until a sign-up is admitted again.
        retry_after_secs: u64,
    },
    /// A required request parameter is absent or empty.
    #[error("the parameter `{0}` is required")]
    MissingParameter(&'static str),
    /// A requested scope is undeclared or not allowed for the client.
    #[error("scope not allowed: {0}")]
    InvalidScope(String),
    /// Input that breaks a rule (password policy, username, claim type...).
    #[error("{field}: {message}")]
    Invalid {
        /// The offending field.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The user sent a claim that the spec lets only administrators and invitations set.
    #[error("{0}: is set by an administrator or an invitation, not at sign-up")]
    ClaimNotSettable(String),
    /// The invitation is unknown, expired, used, or reserved for another username.
    #[error("the invitation is unknown, expired or already used")]
    InvalidInvitation,
    /// A unique value already exists (username, client id).
    #[error("already exists: {0}")]
    Conflict(String),
    /// A record that must exist does not.
    #[error("not found: {0}")]
    NotFound(String),
    /// The database cannot be reached or answered with an I/O failure: worth a 503 and a retry.
    #[error("storage unavailable: {0}")]
    StoreUnavailable(String),
    /// The database answered with an error that is not a transient outage.
    #[error("storage error: {0}")]
    Store(String),
    /// Sealed private keys cannot be opened with the configured master key.
    #[error("master key: {0}")]
    MasterKey(String),
    /// Key material is missing, malformed or of the wrong kind.
    #[error("key error: {0}")]
    Key(String),
    /// A cryptographic operation failed.
    #[error("crypto error: {0}")]
    Crypto(String),
    /// The password hasher failed or its pool is saturated.
    #[error("password hashing: {0}")]
    Password(String),
    /// The rate-limit backend (Redis) failed.
    #[error("rate-limit backend: {0}")]
    RateLimitBackend(String),
}

impl Error {
    /// The stable code of this error, for logs, metrics and error bodies.
    pub fn code(&self) -> Code {
        match self {
            Self::Spec(_) => Code::SpecInvalid,
            Self::Token(e) => e.code(),
            Self::Refresh(e) => e.code(),
            Self::AuthorizationCode(e) => e.code(),
            Self::InvalidCredentials => Code::AuthInvalidCredentials,
            Self::InvalidClient => Code::AuthInvalidClient,
            Self::UnauthorizedGrant(_) => Code::AuthUnauthorizedGrant,
            Self::InvalidScope(_) => Code::AuthInvalidScope,
            Self::TooManyAttempts { .. } => Code::AuthTooManyAttempts,
            Self::TooManySignUps { .. } => Code::RatelimitSignUp,
            Self::MissingParameter(_) => Code::RequestMissingParameter,
            Self::Invalid { .. } => Code::InputInvalid,
            Self::ClaimNotSettable(_) => Code::InputClaimNotSettable,
            Self::InvalidInvitation => Code::InvitationInvalid,
            Self::Conflict(_) => Code::InputConflict,
            Self::NotFound(_) => Code::InputNotFound,
            Self::StoreUnavailable(_) => Code::StoreUnavailable,
            Self::Store(_) => Code::StoreError,
            Self::MasterKey(_) => Code::KeyMasterKey,
            Self::Key(_) => Code::KeyInvalid,
            Self::Crypto(_) => Code::CryptoError,
            Self::Password(_) => Code::PasswordError,
            Self::RateLimitBackend(_) => Code::RatelimitBackend,
        }
    }

    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), message: message.into() }
    }
}

#[cfg(feature = "server")]
impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_) => Self::StoreUnavailable(e.to_string()),
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict(db.to_string()),
            sqlx::Error::Database(db) => {
                // SQLite's "database is locked" and PostgreSQL's connection/shutdown classes (08, 57P)
                // are outages, not bugs.
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                if code == "5" || code == "6" || code.starts_with("08") || code.starts_with("57P") {
                    Self::StoreUnavailable(db.to_string())
                } else {
                    Self::Store(db.to_string())
                }
            }
            other => Self::Store(other.to_string()),
        }
    }
}
