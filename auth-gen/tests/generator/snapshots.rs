//! Snapshots of the generated output for every spec under `fixtures/specs/`, in both targets: the
//! spec-specific files and the manifest once per spec, the static runtime files once per target
//! (after checking that every spec gets the same text); and the determinism they rely on.

use auth_gen::emit::Target;
use auth_gen::generate::generate;

use crate::support::fixture_specs;

#[test]
fn every_generated_file_matches_its_snapshot() {
    for target in [Target::Typescript, Target::Rust] {
        let static_files = target.static_files();
        let mut first_static: Vec<(String, String)> = Vec::new();
        for (name, path) in fixture_specs() {
            let generated = generate(&path, target).unwrap();
            let mut statics = Vec::new();
            for file in &generated.files {
                if static_files.contains(&file.path.as_str()) {
                    statics.push((file.path.clone(), file.contents.clone()));
                } else {
                    insta::assert_snapshot!(format!("{name}__{target}__{}", file.path), file.contents);
                }
            }
            insta::assert_snapshot!(format!("{name}__{target}__manifest"), generated.manifest.to_json());
            if first_static.is_empty() {
                first_static = statics;
            } else {
                assert_eq!(first_static, statics, "{target}: static files differ between specs");
            }
        }
        for (file, contents) in first_static {
            insta::assert_snapshot!(format!("{target}__{file}"), contents);
        }
    }
}

#[test]
fn generation_is_deterministic() {
    for (_, path) in fixture_specs() {
        for target in [Target::Typescript, Target::Rust] {
            let a = generate(&path, target).unwrap();
            let b = generate(&path, target).unwrap();
            assert_eq!(a.files, b.files);
            assert_eq!(a.manifest, b.manifest);
        }
    }
}
