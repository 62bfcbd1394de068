//! auth-core integration tests: one binary, one module per area.

// Helpers shared by tests fail the test on purpose when something is off.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod support;

mod authority;
mod hostile;
mod keyring;
mod malformed;
mod password;
mod ratelimit;
mod refresh;
mod shared_vectors;
mod liveness;
mod store;
mod vectors;
