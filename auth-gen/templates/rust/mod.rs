//! Access-token verification for an axum app, generated from an `auth.toml` spec.
//!
//! - [`spec`]: the spec's values, the [`spec::Scope`] enum, the typed [`spec::Claims`] and one
//!   marker type per scope under [`spec::require`].
//! - [`Auth`]: verifies tokens against the issuer's JWKS (cached for its max age, refetched on an
//!   unknown `kid` with a cooldown, stale copy served while the issuer is unreachable, within a
//!   bound) and applies the scope-tied rate limits.
//! - [`Authorized`]: the extractor. `Authorized<require::BookingsWrite>` admits a request whose
//!   bearer token verifies, carries the scope and is within the scope's limit; otherwise it answers
//!   401, 403, 429 or 503 like the auth server does (RFC 9457 problem+json, `WWW-Authenticate`,
//!   `RateLimit-Policy`, `RateLimit`, `Retry-After`).
//!
//! Needs the crates `auth-core` (with `default-features = false`: the verification side only, no
//! database drivers), `axum`, `reqwest` (with its `json` feature), `serde_json` and `tokio`.

pub mod spec;
mod extract;
mod verify;

pub use extract::{AuthRejection, Authorized, RequiredScopes};
pub use verify::{Auth, AuthConfig, AuthError};
