//! Integration tests of auth-core, one binary for the whole crate.

mod password;
mod ratelimit;
