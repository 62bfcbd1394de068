//! auth-gen's integration tests, in one binary: the CLI, the snapshots of every generated file,
//! the Rust target compiled here and driven with real tokens from a real auth-server, and the
//! TypeScript target type-checked by `tsc` and run by `node --test` against a live server.

// Tests: unwrap and expect are assertions here, and the node runners' summaries are printed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

mod cli;
mod fixtures;
mod rust_target;
mod snapshots;
mod support;
mod typescript;
