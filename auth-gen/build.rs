//! Embeds the static template files of each target (`templates/<target>/`) in the binary, so that
//! adding a template file needs no code change and the generator stays one self-contained binary.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut out = String::new();
    for (constant, dir, ext) in [("TYPESCRIPT", "typescript", "ts"), ("RUST", "rust", "rs")] {
        let dir = root.join(dir);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == ext));
        files.sort();
        let _ = writeln!(out, "/// The static `{ext}` files of the target, by file name.");
        let _ = writeln!(out, "pub const {constant}: &[(&str, &str)] = &[");
        for path in files {
            println!("cargo:rerun-if-changed={}", path.display());
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            let _ = writeln!(out, "    ({name:?}, include_str!({:?})),", path.display().to_string());
        }
        let _ = writeln!(out, "];");
    }
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap_or_default()).join("templates.rs");
    if let Err(e) = std::fs::write(&dest, out) {
        println!("cargo:warning=cannot write {}: {e}", dest.display());
        std::process::exit(1);
    }
}
