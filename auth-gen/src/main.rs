//! `auth-gen`: writes a starter spec, checks a spec, and generates TypeScript or Rust modules
//! from it (`generate --check` reports drift without writing, for CI).

// A command-line tool: printing its results is its job.
#![allow(clippy::print_stdout)]

/// `println!` through [`emit`].
macro_rules! out {
    ($($arg:tt)*) => {
        emit(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// Writes to standard output. When the reader has gone (`auth-gen ... | head`), the rest of the
/// output is dropped and the command goes on to its own exit code (a `--check` that finds drift
/// still fails); any other write error is reported once on standard error.
fn emit(text: &str) {
    use std::io::Write as _;
    use std::sync::atomic::{AtomicBool, Ordering};
    static CLOSED: AtomicBool = AtomicBool::new(false);
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("auth-gen: writing to standard output: {e}");
        }
    }
}

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use auth_gen::emit::Target;
use auth_gen::fixtures;
use auth_gen::generate::{self, GenerateError};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "auth-gen", version, about = "Generate auth modules from an auth.toml spec")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a commented starter spec.
    Init {
        /// Where to write it.
        #[arg(long, default_value = "auth.toml")]
        out: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Validate a spec and print its SHA-256 hash.
    Check {
        /// The spec file.
        #[arg(long)]
        spec: PathBuf,
    },
    /// Record golden fixtures of a spec, or replay every recorded version.
    #[command(subcommand)]
    Fixtures(FixturesCommand),
    /// Generate a module from a spec into a directory, and print what changed.
    Generate {
        /// The spec file.
        #[arg(long)]
        spec: PathBuf,
        /// The language of the module.
        #[arg(long, value_enum)]
        target: Target,
        /// The directory of the module (created when missing).
        #[arg(long)]
        out: PathBuf,
        /// Write nothing; exit 1 when the directory differs from what the spec generates.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Subcommand, Debug)]
enum FixturesCommand {
    /// Record what this version issues and accepts for a spec, under a frozen clock and key seed,
    /// into <out>/<version>/<spec name>/ (append-only: an existing folder is refused).
    Record {
        /// The spec file, e.g. fixtures/specs/booking.toml.
        #[arg(long)]
        spec: PathBuf,
        /// The root of recorded fixtures.
        #[arg(long, default_value = "fixtures/recorded")]
        out: PathBuf,
    },
    /// Replay every recorded version with this code; exit 1 on any breaking difference.
    Replay {
        /// The root of recorded fixtures, or one recorded folder.
        #[arg(default_value = "fixtures/recorded")]
        root: PathBuf,
        /// Print the report as JSON (for CI).
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Init { out, force } => init(&out, force),
        Command::Check { spec } => match auth_core::spec::Spec::load(&spec) {
            Ok(parsed) => {
                out!("{}: ok, spec hash {}", spec.display(), parsed.hash());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", spec.display());
                ExitCode::FAILURE
            }
        },
        Command::Fixtures(command) => fixtures(command),
        Command::Generate { spec, target, out, check } => match run_generate(&spec, target, &out, check) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("auth-gen: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn init(out: &Path, force: bool) -> ExitCode {
    if out.exists() && !force {
        eprintln!("auth-gen: {} exists; pass --force to replace it", out.display());
        return ExitCode::FAILURE;
    }
    match std::fs::write(out, auth_gen::STARTER_SPEC) {
        Ok(()) => {
            out!("wrote {}; check it with `auth-gen check --spec {}`", out.display(), out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("auth-gen: {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}

/// Exit codes: 0 written (or up to date), 1 drift under `--check`, 2 an error (bad spec, I/O).
fn run_generate(spec: &Path, target: Target, out: &Path, check: bool) -> Result<ExitCode, GenerateError> {
    let generated = generate::generate(spec, target)?;
    let changes = generate::compare(out, &generated)?;
    let verb = if check { "checking" } else { "generating" };
    out!(
        "auth-gen {verb} {target} module for {} (spec hash {}) in {}",
        spec.display(),
        generated.manifest.spec_hash,
        out.display()
    );
    emit(&changes.summary());
    if check {
        if changes.is_empty() {
            out!("up to date");
            return Ok(ExitCode::SUCCESS);
        }
        out!("drift: {} differs from what the spec generates; run without --check to update it", out.display());
        return Ok(ExitCode::FAILURE);
    }
    generate::write(out, &generated, &changes)?;
    Ok(ExitCode::SUCCESS)
}

/// Exit codes: 0 recorded / replayed without a breaking difference, 1 a breaking difference,
/// 2 an error (unreadable spec or folder, existing recording).
fn fixtures(command: FixturesCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("auth-gen: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match command {
        FixturesCommand::Record { spec, out } => match runtime.block_on(fixtures::record::record(&spec, &out)) {
            Ok(dir) => {
                out!("recorded {}", dir.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("auth-gen: {e}");
                ExitCode::from(2)
            }
        },
        FixturesCommand::Replay { root, json } => {
            let folders = if root.join("manifest.json").exists() {
                Ok(vec![root.clone()])
            } else {
                fixtures::recorded_folders(&root)
            };
            let folders = match folders {
                Ok(folders) if !folders.is_empty() => folders,
                Ok(_) => {
                    eprintln!("auth-gen: no recorded fixtures under {}", root.display());
                    return ExitCode::from(2);
                }
                Err(e) => {
                    eprintln!("auth-gen: {e}");
                    return ExitCode::from(2);
                }
            };
            let reports: Vec<_> =
                folders.iter().map(|dir| runtime.block_on(fixtures::replay::replay_folder(dir))).collect();
            if json {
                out!("{}", serde_json::to_string_pretty(&reports).unwrap_or_default());
            } else {
                emit(&fixtures::replay::render(&reports));
            }
            if reports.iter().any(fixtures::replay::FolderReport::is_breaking) {
                eprintln!("auth-gen: replay found breaking differences");
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}
