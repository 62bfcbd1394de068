//! `auth-gen.manifest.json`: what a generation run wrote (generator version, spec hash, a hash per
//! file) and the module's public surface (exported names, scopes, claim schema, token contract),
//! and the comparison of two manifests that classes each change as breaking or compatible.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::emit::{GeneratedFile, Target};
use crate::ir::{GENERATOR_VERSION, Module};

/// The manifest's file name in the output directory.
pub const MANIFEST_FILE: &str = "auth-gen.manifest.json";

/// The manifest of one generated module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The generator version.
    pub generator_version: String,
    /// The target language.
    pub target: Target,
    /// The spec's canonical SHA-256.
    pub spec_hash: String,
    /// SHA-256 of each generated file, by relative path.
    pub files: BTreeMap<String, String>,
    /// The public surface, compared between runs.
    pub api: Api,
}

/// What code that uses the module depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Api {
    /// Exported names, as `file:name`.
    pub exports: BTreeSet<String>,
    /// Declared scopes.
    pub scopes: BTreeSet<String>,
    /// Custom claims: name -> (type, required).
    pub claims: BTreeMap<String, ClaimShape>,
    /// Client ids.
    pub clients: BTreeSet<String>,
    /// `iss` of tokens.
    pub issuer: String,
    /// Accepted audiences.
    pub audiences: BTreeSet<String>,
    /// The signing algorithm.
    pub algorithm: String,
}

/// The schema of one custom claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimShape {
    /// The JSON type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether user tokens must carry it.
    pub required: bool,
    /// Whether the spec gives it a default (left out when it does not, so that manifests written
    /// before this member compare equal).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
}

impl Manifest {
    /// The manifest of `files`, generated from `module` for `target`.
    pub fn new(module: &Module, target: Target, files: &[GeneratedFile]) -> Self {
        let exports = files.iter().flat_map(|f| exported_names(target, f)).collect();
        Self {
            generator_version: GENERATOR_VERSION.to_owned(),
            target,
            spec_hash: module.spec_hash.clone(),
            files: files.iter().map(|f| (f.path.clone(), sha256(&f.contents))).collect(),
            api: Api {
                exports,
                scopes: module.scopes.iter().map(|s| s.name.clone()).collect(),
                claims: module
                    .claims
                    .iter()
                    .map(|c| (c.name.clone(), ClaimShape { kind: c.kind.as_str().to_owned(), required: c.required, default: c.has_default }))
                    .collect(),
                clients: module.clients.iter().map(|c| c.id.clone()).collect(),
                issuer: module.issuer.clone(),
                audiences: module.audiences.iter().cloned().collect(),
                algorithm: module.algorithm.as_str().to_owned(),
            },
        }
    }

    /// The manifest as written to disk: pretty JSON with a final newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// Lowercase hex SHA-256 of a text.
pub fn sha256(text: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()))
}

/// The names a file exports: top-level `export` declarations in TypeScript; in Rust, `pub` items
/// at the top level and one level in, the inner ones qualified by their `impl` or `mod`
/// (`Scope::as_str`).
fn exported_names(target: Target, file: &GeneratedFile) -> Vec<String> {
    let mut names = Vec::new();
    let mut context = String::new();
    for line in file.contents.lines() {
        if target == Target::Rust && !line.starts_with(' ') && !line.is_empty() {
            context = rust_context(line);
        }
        let declared = match target {
            Target::Typescript => line.strip_prefix("export ").and_then(|rest| {
                let rest = rest.strip_prefix("declare ").unwrap_or(rest);
                let rest = rest.strip_prefix("async ").unwrap_or(rest);
                let rest = rest.strip_prefix("abstract ").unwrap_or(rest);
                ["const ", "let ", "function ", "class ", "interface ", "type ", "enum "]
                    .iter()
                    .find_map(|kw| rest.strip_prefix(kw))
            }),
            // Items at the top level or one level in (prettyplease indents by four spaces).
            Target::Rust => {
                let trimmed = line.strip_prefix("    ").unwrap_or(line);
                trimmed.strip_prefix("pub ").and_then(|rest| {
                    let rest = rest.strip_prefix("async ").unwrap_or(rest);
                    ["fn ", "struct ", "enum ", "const ", "trait ", "type ", "mod ", "static "]
                        .iter()
                        .find_map(|kw| rest.strip_prefix(kw))
                })
            }
        };
        if let Some(rest) = declared {
            let name: String =
                rest.trim_start_matches('*').chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '$').collect();
            if !name.is_empty() {
                let qualifier = if line.starts_with(' ') && !context.is_empty() { format!("{context}::") } else { String::new() };
                names.push(format!("{}:{qualifier}{name}", file.path));
            }
        }
    }
    names
}

/// The item that a top-level Rust line opens, for qualifying what is inside: `impl<S> Authorized<S>
/// {` -> `Authorized`, `pub mod require {` -> `require`; empty for anything else.
fn rust_context(line: &str) -> String {
    let head = line.trim_end_matches('{').trim();
    let name = if let Some(rest) = head.strip_prefix("pub mod ") {
        rest
    } else if head.starts_with("impl") && !head.contains(" for ") {
        // `impl<A: X> Type<A>`: the last word, without its generics.
        head.rsplit(' ').next().unwrap_or_default()
    } else {
        return String::new();
    };
    name.split('<').next().unwrap_or_default().to_owned()
}

/// How a change affects code and tokens that worked with the previous module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Code or tokens that worked before may stop working.
    Breaking,
    /// Existing code and tokens keep working.
    Compatible,
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Breaking => "breaking",
            Self::Compatible => "compatible",
        })
    }
}

/// One change of the public surface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiChange {
    /// Its class.
    pub class: Class,
    /// What changed, in words.
    pub what: String,
}

/// What a claim that became required does to the users who signed up before: with a default,
/// their tokens carry it; without, every verifier refuses their tokens until it is set.
fn existing_users(claim: &ClaimShape) -> &'static str {
    if claim.default {
        "existing users who lack it get its default in their next tokens; tokens issued before lack it and are refused"
    } else {
        "existing users who lack it are locked out (every verifier refuses their tokens) until `auth-server users set-claim` \
         or the admin API sets it; give the claim a `default` to avoid that (`auth-server check` counts them)"
    }
}

/// The changes from `old` to `new`, breaking ones first.
pub fn api_changes(old: &Api, new: &Api) -> Vec<ApiChange> {
    let mut changes = Vec::new();
    let mut push = |class, what: String| changes.push(ApiChange { class, what });
    for removed in old.exports.difference(&new.exports) {
        push(Class::Breaking, format!("export `{removed}` removed"));
    }
    for added in new.exports.difference(&old.exports) {
        push(Class::Compatible, format!("export `{added}` added"));
    }
    for removed in old.scopes.difference(&new.scopes) {
        push(Class::Breaking, format!("scope `{removed}` removed"));
    }
    for added in new.scopes.difference(&old.scopes) {
        push(Class::Compatible, format!("scope `{added}` added"));
    }
    for (name, before) in &old.claims {
        match new.claims.get(name) {
            None => push(Class::Breaking, format!("claim `{name}` removed")),
            Some(after) if after.kind != before.kind => push(
                Class::Breaking,
                format!("claim `{name}` re-typed from {} to {}", before.kind, after.kind),
            ),
            Some(after) if after.required != before.required => {
                let what = if after.required {
                    format!("claim `{name}` became required: {}", existing_users(after))
                } else {
                    format!("claim `{name}` became optional (its type now admits absence)")
                };
                push(Class::Breaking, what);
            }
            Some(_) => {}
        }
    }
    for (name, shape) in &new.claims {
        if !old.claims.contains_key(name) {
            if shape.required {
                push(Class::Breaking, format!("required claim `{name}` added: {}", existing_users(shape)));
            } else {
                push(Class::Compatible, format!("optional claim `{name}` added"));
            }
        }
    }
    for removed in old.clients.difference(&new.clients) {
        push(Class::Breaking, format!("client `{removed}` removed"));
    }
    for added in new.clients.difference(&old.clients) {
        push(Class::Compatible, format!("client `{added}` added"));
    }
    if old.issuer != new.issuer {
        push(Class::Breaking, format!("issuer changed from {:?} to {:?}", old.issuer, new.issuer));
    }
    for removed in old.audiences.difference(&new.audiences) {
        push(Class::Breaking, format!("audience `{removed}` no longer accepted"));
    }
    for added in new.audiences.difference(&old.audiences) {
        push(Class::Compatible, format!("audience `{added}` accepted"));
    }
    if old.algorithm != new.algorithm {
        push(Class::Breaking, format!("algorithm changed from {} to {}", old.algorithm, new.algorithm));
    }
    changes.sort_by_key(|c| c.class);
    changes
}
