//! auth-server over real HTTP.

mod process;
mod replicas;
