//! auth-core: the logic of the auth service, with no HTTP in it.
//!
//! - [`spec`]: the `auth.toml` spec shared by the server and the generator.
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
//! Time is always injected through [`clock::Clock`]; nothing below reads the wall clock itself.

pub mod audit;
pub mod authority;
pub mod clock;
pub mod crypto;
pub mod error;
pub mod keys;
pub mod password;
pub mod random;
pub mod ratelimit;
pub mod refresh;
pub mod sessions;
pub mod spec;
pub mod store;
pub mod tokens;

pub use error::{Error, Result};
