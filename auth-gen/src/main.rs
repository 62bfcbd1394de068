//! `auth-gen`: reads an `auth.toml` spec. This build validates a spec and prints its canonical hash;
//! the code emitters build on the same parsed spec.

// A command-line tool: printing its results is its job.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "auth-gen", version, about = "Generate auth modules from an auth.toml spec")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a spec and print its SHA-256 hash.
    Check {
        /// The spec file.
        #[arg(long)]
        spec: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { spec } => match auth_core::spec::Spec::load(&spec) {
            Ok(parsed) => {
                println!("{}: ok, spec hash {}", spec.display(), parsed.hash());
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", spec.display());
                std::process::ExitCode::FAILURE
            }
        },
    }
}
