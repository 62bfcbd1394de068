//! `Spec::parse` on any text (bytes read as UTF-8, lossily): no panic; a parse error points at a
//! line and column inside the text, a validation error names a field; an accepted spec validates
//! again and hashes the same on a second parse.
#![no_main]
// A finding is reported by panicking.
#![allow(clippy::panic)]

use auth_core::spec::{Spec, SpecError};
use auth_core::tokens::AccessTokenVerifier;
use libfuzzer_sys::fuzz_target;

/// The top-level names a validation error's field path may start with.
const SECTIONS: &[&str] =
    &["spec_version", "issuer", "audiences", "tokens", "keys", "passwords", "scopes", "claims", "clients"];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Spec::parse(&text) {
        Ok(spec) => {
            assert!(spec.validate().is_ok(), "a parsed spec fails validation");
            let hash = spec.hash();
            assert_eq!(hash.len(), 64);
            assert_eq!(Spec::parse(&text).map(|again| again.hash()), Ok(hash));
            let _ = AccessTokenVerifier::from_spec(&spec);
        }
        Err(SpecError::Parse { line, column, message }) => {
            let lines: Vec<&str> = text.split('\n').collect();
            assert!((1..=lines.len()).contains(&line), "line {line} of {} lines: {message}", lines.len());
            let width = lines[line - 1].chars().count();
            assert!((1..=width + 1).contains(&column), "column {column} of a {width}-character line: {message}");
            assert!(!message.is_empty());
        }
        Err(SpecError::Invalid { field, message }) => {
            let section = field.split(['.', '[']).next().unwrap_or_default();
            assert!(SECTIONS.contains(&section), "field {field:?}: {message}");
            assert!(!message.is_empty(), "field {field:?} without a message");
        }
        Err(other) => panic!("unexpected error: {other:?}"),
    }
});
