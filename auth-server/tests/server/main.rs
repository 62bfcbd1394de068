//! auth-server over real HTTP: each test starts the server on port 0 over a fresh database and
//! talks to it with an HTTP client, on SQLite and on PostgreSQL; the replica and degraded-mode
//! tests run real `auth-server` processes, and so do the schemathesis run (API fuzzing) and the
//! sign-in flow in headless Chromium (`browser_real`) and the openid-client (Node.js) relying
//! party (`openid_client`).

// Helpers shared by tests fail the test on purpose when something is off.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod support;

mod backchannel_logout;
mod bad_input;
mod bearer;
mod branding;
mod browser;
mod browser_real;
mod claims;
mod cli;
mod client_library;
mod consent;
mod connections;
mod discovery;
mod faults;
mod grants;
mod hardening;
mod limits;
mod malformed_bodies;
mod master_key;
mod node;
mod openid_client;
mod openid_library;
mod pushed_requests;
mod readme;
mod ops;
mod process;
mod races;
mod replicas;
mod revocation;
mod schemathesis;
mod secret_logs;
mod secrets;
mod signup;
