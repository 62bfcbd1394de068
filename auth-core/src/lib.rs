//! auth-core: the logic of the auth service, with no HTTP in it.
//!
//! - [`spec`]: the `auth.toml` spec shared by the server and the generator.
//! - [`code`]: every stable error code, in one list.
//! - [`crypto`]: the `ring`-backed [`jsonwebtoken`] crypto provider and key material.
//! - [`keys`]: the signing-key ring and its staged lifecycle.
//! - [`tokens`]: RFC 9068 access tokens: issuance and verification.
//! - [`refresh`]: refresh-token families with rotation and reuse detection.
//! - [`password`]: argon2id password hashing on a bounded blocking pool.
//! - [`ratelimit`]: GCRA limits tied to token scopes, in memory or in Redis.
//! - [`store`]: the storage trait and its sqlx implementation (SQLite, PostgreSQL).
//! - [`random`]: the OS CSPRNG, or a seeded stream for deterministic fixtures.
//! - [`authority`]: the issuance paths (password, refresh, client credentials, revoke).
//!
//! Features: `server` (on by default) is the issuance side: [`authority`], [`refresh`],
//! [`liveness`], [`password`], [`store`], [`audit`], the key ring and the Redis limiter, with the
//! dependencies only it needs (sqlx, redis, argon2, rsa, tokio). With `default-features = false`
//! what is left is the verification side a resource server needs: [`spec`], [`tokens`],
//! [`keys::KeySet`] from a JWKS, and [`ratelimit`] in memory.
//!
//! Time is always injected through [`clock::Clock`]; nothing below reads the wall clock itself.

#[cfg(feature = "server")]
pub mod audit;
#[cfg(feature = "server")]
pub mod authority;
pub mod clock;
pub mod code;
pub mod crypto;
pub mod error;
pub mod keys;
pub mod oauth;
#[cfg(feature = "server")]
pub mod password;
pub mod random;
pub mod ratelimit;
#[cfg(feature = "server")]
pub mod refresh;
#[cfg(feature = "server")]
pub mod liveness;
pub mod spec;
#[cfg(feature = "server")]
pub mod store;
pub mod tokens;

pub use code::Code;
pub use error::{Error, Result};
