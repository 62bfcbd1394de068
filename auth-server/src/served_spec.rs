//! What a data directory remembers of the spec it was last served with, so that operator
//! commands act on the same one: `serve` writes `served-spec.json` (the spec file's absolute
//! path, or none for the built-in default, and its canonical hash); an operator command run
//! without `--spec` uses that file, and one whose spec differs from it (another file, or the file
//! changed since) is refused unless `--allow-other-spec` says it is meant. Without the record (a
//! data directory never served), commands take their spec as before.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use auth_core::spec::Spec;

use crate::config::ServerConfig;

/// The record's file name in the data directory.
pub const FILE: &str = "served-spec.json";

/// The spec a data directory was last served with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServedSpec {
    /// The spec file, absolute; `None` for the built-in default spec.
    pub path: Option<PathBuf>,
    /// The spec's canonical SHA-256 (`Spec::hash`).
    pub hash: String,
    /// Its issuer (the built-in default spec's follows `--listen`).
    pub issuer: String,
}

impl ServedSpec {
    fn describe(&self) -> String {
        match &self.path {
            Some(path) => format!("{} (issuer {}, hash {})", path.display(), self.issuer, short(&self.hash)),
            None => format!("the built-in default spec (issuer {}, hash {})", self.issuer, short(&self.hash)),
        }
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Records that `config`'s data directory is served with `spec`.
pub fn record(config: &ServerConfig, spec: &Spec) -> anyhow::Result<()> {
    let path = match &config.spec {
        Some(path) => Some(std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))?),
        None => None,
    };
    let served = ServedSpec { path, hash: spec.hash(), issuer: spec.issuer.clone() };
    std::fs::create_dir_all(&config.data_dir)?;
    let mut text = serde_json::to_string_pretty(&served)?;
    text.push('\n');
    std::fs::write(config.data_dir.join(FILE), text).with_context(|| format!("writing {}", config.data_dir.join(FILE).display()))
}

/// The record of `data_dir`, if it has one.
pub fn read(data_dir: &Path) -> anyhow::Result<Option<ServedSpec>> {
    let file = data_dir.join(FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| format!("reading {}", file.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
    }
}

/// Points an operator command's `config` at the spec its data directory was served with (when no
/// `--spec` was given), and refuses a spec other than that one unless `allow_other`. Returns a
/// note to show when the served spec was taken.
pub fn resolve(config: &mut ServerConfig, allow_other: bool) -> anyhow::Result<Option<String>> {
    let Some(served) = read(&config.data_dir)? else { return Ok(None) };
    let mut note = None;
    if config.spec.is_none()
        && let Some(path) = &served.path
    {
        config.spec = Some(path.clone());
        note = Some(format!("using {}, the spec `serve` last ran with on {}", path.display(), config.data_dir.display()));
    }
    let spec = config.load_spec()?;
    let hash = spec.hash();
    if hash != served.hash && !allow_other {
        let this = ServedSpec {
            path: config.spec.as_deref().map(std::path::absolute).transpose()?,
            hash,
            issuer: spec.issuer.clone(),
        };
        anyhow::bail!(
            "{} was last served with {}, but this command would use {}: pass the served spec with --spec, restart \
             `serve` with this one, or add --allow-other-spec if this is meant",
            config.data_dir.display(),
            served.describe(),
            this.describe()
        );
    }
    Ok(note)
}
