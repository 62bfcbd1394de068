//! auth-gen: drop-in TypeScript and Rust modules from an `auth.toml` spec.
//!
//! The pipeline is spec -> [`ir::Module`] -> [`emit::Emitter`] (which also formats) -> files plus
//! [`manifest::Manifest`]; [`generate`] compares the result with an output directory, writes it or
//! reports drift, and classes every change of the public surface as breaking or compatible.
//! [`fixtures`] records what a version issues and accepts, and replays it with later versions.

pub mod emit;
pub mod fixtures;
pub mod generate;
pub mod ir;
pub mod manifest;

/// The commented starter spec that `auth-gen init` writes.
pub const STARTER_SPEC: &str = include_str!("starter.toml");
