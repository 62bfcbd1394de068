//! auth-server: the standalone auth HTTP service over `auth-core`.
//!
//! ```text
//! config      clap flags (the one source of defaults and AUTH_* variables) -> ServerConfig
//! state       AppState and how it is built (store, keys, limiters, authority); no HTTP
//! background  key rotation, limiter health, the feed of revoked sessions
//! backchannel back-channel logout delivery to relying parties (spawned, bounded, retried)
//! metrics     Prometheus metrics
//! served_spec what a data directory remembers of the spec it was served with
//! http/       router, middleware, extractors, error formats, OpenAPI, one module per area
//! ```
//!
//! Dependencies point one way: `http` uses `state`, `config` and `metrics`; `state` uses `config`
//! and `metrics`; nothing below `http` knows about HTTP.

// Handler errors (`OAuthError`, `Problem`) carry a header map and become a response at once;
// boxing them would add an allocation to every refusal and buy nothing.
#![allow(clippy::result_large_err)]

pub mod background;
pub mod backchannel;
pub mod config;
pub mod http;
pub mod metrics;
pub mod served_spec;
pub mod state;
