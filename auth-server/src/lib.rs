//! auth-server: the standalone auth HTTP service over `auth-core`.
//!
//! - [`app`]: configuration, shared state, router, background tasks, graceful shutdown.
//! - [`routes`]: the handlers (OAuth, users and sessions, well-known documents, operations).
//! - [`error`]: RFC 6749 and RFC 9457 error bodies.
//! - [`metrics`]: Prometheus metrics.
//! - [`openapi`]: the OpenAPI 3.1 document served at `/openapi.json`.

// Handler errors (`OAuthError`, `Problem`) carry a header map and become a response at once;
// boxing them would add an allocation to every refusal and buy nothing.
#![allow(clippy::result_large_err)]

pub mod app;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod routes;
