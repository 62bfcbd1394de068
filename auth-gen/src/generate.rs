//! One generation run: spec -> IR -> emitter -> files + manifest, compared with what the output
//! directory holds. Writing replaces changed files, adds new ones and removes the files that the
//! previous manifest listed and the spec no longer produces (never a file the generator did not
//! write). A check run writes nothing and reports the same differences as drift.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use auth_core::spec::{Spec, SpecError};

use crate::emit::{EmitError, GeneratedFile, Target};
use crate::ir::{IrError, Module};
use crate::manifest::{ApiChange, Class, MANIFEST_FILE, Manifest, api_changes};

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The spec cannot be read, parsed or accepted (the same errors the server gives).
    #[error("{path}: {source}")]
    Spec {
        /// The spec file.
        path: String,
        /// What is wrong.
        source: SpecError,
    },
    /// The spec is valid but cannot be expressed in generated code.
    #[error("{path}: {source}")]
    Ir {
        /// The spec file.
        path: String,
        /// What is wrong.
        source: IrError,
    },
    /// A generator bug.
    #[error(transparent)]
    Emit(#[from] EmitError),
    /// Reading or writing the output directory failed.
    #[error("{path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// The operating system's message.
        message: String,
    },
}

fn io_error(path: &Path, e: &std::io::Error) -> GenerateError {
    GenerateError::Io { path: path.display().to_string(), message: e.to_string() }
}

/// The module a spec file produces for a target, and its manifest.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The files, sorted by path.
    pub files: Vec<GeneratedFile>,
    /// Their manifest.
    pub manifest: Manifest,
}

/// Reads, validates and generates, in memory.
pub fn generate(spec_path: &Path, target: Target) -> Result<Generated, GenerateError> {
    let shown = spec_path.display().to_string();
    let spec = Spec::load(spec_path).map_err(|source| GenerateError::Spec { path: shown.clone(), source })?;
    let source = spec_path.file_name().map_or_else(|| shown.clone(), |n| n.to_string_lossy().into_owned());
    let module = Module::from_spec(&spec, &source).map_err(|source| GenerateError::Ir { path: shown, source })?;
    let files = target.emitter().emit(&module)?;
    let manifest = Manifest::new(&module, target, &files);
    Ok(Generated { files, manifest })
}

/// What differs between the output directory and the generated module.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// Files that do not exist yet.
    pub added: Vec<String>,
    /// Files whose contents differ.
    pub changed: Vec<String>,
    /// Files of the previous manifest that the spec no longer produces.
    pub removed: Vec<String>,
    /// Whether the manifest itself differs.
    pub manifest_changed: bool,
    /// Changes of the public surface since the previous manifest (empty on a first run).
    pub api: Vec<ApiChange>,
    /// Whether there was a previous manifest to compare with.
    pub had_manifest: bool,
}

impl Changes {
    /// Whether the directory is exactly the generated module.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty() && !self.manifest_changed
    }

    /// Whether a change breaks code or tokens that worked with the previous module.
    pub fn has_breaking(&self) -> bool {
        self.api.iter().any(|c| c.class == Class::Breaking)
    }

    /// The summary printed after every run.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "files: {} added, {} changed, {} removed",
            self.added.len(),
            self.changed.len(),
            self.removed.len()
        );
        for (mark, list) in [("+", &self.added), ("~", &self.changed), ("-", &self.removed)] {
            for path in list {
                let _ = writeln!(s, "  {mark} {path}");
            }
        }
        if !self.had_manifest {
            let _ = writeln!(s, "api: no previous manifest to compare with");
        } else if self.api.is_empty() {
            let _ = writeln!(s, "api: unchanged");
        } else {
            let breaking = self.api.iter().filter(|c| c.class == Class::Breaking).count();
            let _ = writeln!(s, "api: {breaking} breaking, {} compatible", self.api.len() - breaking);
            for change in &self.api {
                let _ = writeln!(s, "  {}: {}", change.class, change.what);
            }
        }
        s
    }
}

/// Compares `out` with `generated`.
pub fn compare(out: &Path, generated: &Generated) -> Result<Changes, GenerateError> {
    let manifest_path = out.join(MANIFEST_FILE);
    let previous: Option<Manifest> = match std::fs::read_to_string(&manifest_path) {
        Ok(text) => serde_json::from_str(&text).ok(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error(&manifest_path, &e)),
    };
    let mut changes = Changes { had_manifest: previous.is_some(), ..Changes::default() };
    for file in &generated.files {
        let path = out.join(&file.path);
        match std::fs::read_to_string(&path) {
            Ok(text) if text == file.contents => {}
            Ok(_) => changes.changed.push(file.path.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => changes.added.push(file.path.clone()),
            // Unreadable as text (binary, permissions): it will be rewritten.
            Err(_) => changes.changed.push(file.path.clone()),
        }
    }
    if let Some(previous) = &previous {
        for path in previous.files.keys() {
            if !generated.manifest.files.contains_key(path) && out.join(path).exists() {
                changes.removed.push(path.clone());
            }
        }
        changes.api = api_changes(&previous.api, &generated.manifest.api);
    }
    changes.manifest_changed = previous.as_ref() != Some(&generated.manifest);
    Ok(changes)
}

/// Writes `generated` into `out` as `changes` says: new and changed files, the manifest, and the
/// removal of stale files. Each file is written to a temporary name and renamed into place, so an
/// interrupted run never leaves a half-written file.
pub fn write(out: &Path, generated: &Generated, changes: &Changes) -> Result<(), GenerateError> {
    std::fs::create_dir_all(out).map_err(|e| io_error(out, &e))?;
    for file in &generated.files {
        if changes.added.contains(&file.path) || changes.changed.contains(&file.path) {
            write_atomically(&out.join(&file.path), &file.contents)?;
        }
    }
    for path in &changes.removed {
        let path = out.join(path);
        std::fs::remove_file(&path).map_err(|e| io_error(&path, &e))?;
    }
    if changes.manifest_changed {
        write_atomically(&out.join(MANIFEST_FILE), &generated.manifest.to_json())?;
    }
    Ok(())
}

fn write_atomically(path: &Path, contents: &str) -> Result<(), GenerateError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_error(parent, &e))?;
    }
    let mut temp = PathBuf::from(path);
    temp.as_mut_os_string().push(".auth-gen-tmp");
    std::fs::write(&temp, contents).map_err(|e| io_error(&temp, &e))?;
    std::fs::rename(&temp, path).map_err(|e| io_error(path, &e))
}
