//! The shared harness of the fuzz targets in `fuzz_targets/` (run them with `fuzz/run.sh`):
//!
//! - [`tokens`]: a real key set and the booking spec's verifier, tokens built from fuzzer
//!   choices, and the oracle that re-checks every accepted token without the verifier's code;
//! - [`jsonish`]: the JSON-ish values the token builder writes;
//! - [`bodies`]: auth-server's form and sign-up JSON decoders against independent readings;
//! - [`server`]: the real auth-server router over SQLite, driven in-process.
//!
//! An oracle fails by panicking: that is how libFuzzer learns of a finding.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

pub mod bodies;
pub mod jsonish;
pub mod server;
pub mod tokens;
