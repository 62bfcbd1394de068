//! The Rust target: a module for axum apps built on auth-core. `spec.rs` is written from the IR
//! (values, the `Scope` enum, the typed `Claims`, one marker type per scope); `mod.rs`,
//! `verify.rs` and `extract.rs` are static text from `templates/rust/`. Every file is parsed with
//! `syn` and printed with `prettyplease`, so a generator bug that produces invalid Rust fails here,
//! at generation time, and the output has one canonical layout.

use std::fmt::Write as _;

use auth_core::spec::ClaimType;

use super::{EmitError, Emitter, GeneratedFile, doc_text, finish, rust_string, templates};
use crate::ir::{GENERATOR_VERSION, Module};

/// Emits the Rust module.
#[derive(Debug, Clone, Copy)]
pub struct Rust;

impl Emitter for Rust {
    fn emit(&self, module: &Module) -> Result<Vec<GeneratedFile>, EmitError> {
        let mut files = vec![format("spec.rs", &spec_rs(module))?];
        for (name, text) in templates::RUST {
            files.push(format(name, text)?);
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }
}

fn format(path: &str, source: &str) -> Result<GeneratedFile, EmitError> {
    let file = syn::parse_file(source).map_err(|e| EmitError {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    Ok(finish(path, &space_items(&prettyplease::unparse(&file))))
}

/// Puts a blank line between items, which `prettyplease` does not: before an item (or its doc
/// comment or attribute) that follows the end of another item, and after the module's inner docs.
fn space_items(source: &str) -> String {
    const ITEM_STARTS: &[&str] = &[
        "///", "#[", "pub ", "pub(", "fn ", "async fn ", "impl ", "impl<", "use ", "mod ", "const ", "static ",
        "struct ", "enum ", "trait ", "type ",
    ];
    let mut out = String::with_capacity(source.len() + source.len() / 16);
    let mut previous = "";
    for line in source.lines() {
        let current = line.trim_start();
        let previous_ended = previous.ends_with('}') || previous.ends_with(';');
        let both_uses = previous.starts_with("use ") && current.starts_with("use ");
        let starts_item = ITEM_STARTS.iter().any(|s| current.starts_with(s));
        let after_inner_docs = previous.starts_with("//!") && !current.starts_with("//!");
        if (previous_ended && starts_item && !both_uses) || after_inner_docs {
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
        previous = current;
    }
    out
}

/// Rust's keywords: a claim with one of these names becomes a raw identifier (or, for the four
/// that cannot be raw, gets a trailing `_`), with serde-free extraction by its JSON name.
const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "dyn", "else", "enum", "extern", "false", "fn", "for",
    "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "static", "struct",
    "trait", "true", "type", "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "gen",
    "macro", "override", "priv", "try", "typeof", "unsized", "virtual", "yield",
];

fn field_ident(name: &str) -> String {
    match name {
        "self" | "super" | "crate" | "Self" => format!("{name}_"),
        _ if KEYWORDS.contains(&name) => format!("r#{name}"),
        _ => name.to_owned(),
    }
}

fn rust_type(kind: ClaimType) -> &'static str {
    match kind {
        ClaimType::String => "String",
        ClaimType::Integer => "i64",
        ClaimType::Boolean => "bool",
        ClaimType::StringArray => "Vec<String>",
    }
}

fn claim_kind(kind: ClaimType) -> &'static str {
    match kind {
        ClaimType::String => "ClaimType::String",
        ClaimType::Integer => "ClaimType::Integer",
        ClaimType::Boolean => "ClaimType::Boolean",
        ClaimType::StringArray => "ClaimType::StringArray",
    }
}

fn extractor(kind: ClaimType) -> &'static str {
    match kind {
        ClaimType::String => "claim_string",
        ClaimType::Integer => "claim_integer",
        ClaimType::Boolean => "claim_boolean",
        ClaimType::StringArray => "claim_string_array",
    }
}

// `write!` into a `String` cannot fail; the results are ignored for that reason.
fn spec_rs(m: &Module) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "//! The spec's values, its scopes and the typed claims of its access tokens.");
    let _ = writeln!(s, "//!");
    let _ = writeln!(s, "//! Source: `{}` (spec hash `{}`).\n", doc_text(&m.source), m.spec_hash);
    s.push_str("use auth_core::error::TokenError;\nuse auth_core::spec::ClaimType;\nuse auth_core::tokens::AccessClaims;\n\n");
    let consts: [(&str, &str, String); 8] = [
        ("SHA-256 of the canonical spec.", "SPEC_HASH: &str", rust_string(&m.spec_hash)),
        ("The generator version that wrote this module.", "GENERATOR_VERSION: &str", rust_string(GENERATOR_VERSION)),
        ("The `iss` of every token.", "ISSUER: &str", rust_string(&m.issuer)),
        ("The signing algorithm.", "ALGORITHM: &str", rust_string(m.algorithm.as_str())),
        ("Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.", "LEEWAY_SECS: u64", m.leeway_secs.to_string()),
        ("Lifetime of an access token, in seconds.", "ACCESS_TTL_SECS: u64", m.access_ttl_secs.to_string()),
        (
            "A refresh token reused within this many seconds gets the same successor.",
            "REFRESH_REUSE_GRACE_SECS: u64",
            m.refresh_reuse_grace_secs.to_string(),
        ),
        ("The issuer's JWKS max age, in seconds.", "JWKS_MAX_AGE_SECS: u64", m.jwks_max_age_secs.to_string()),
    ];
    for (doc, decl, value) in consts {
        let _ = writeln!(s, "/// {doc}\npub const {decl} = {value};");
    }
    let audiences: Vec<String> = m.audiences.iter().map(|a| rust_string(a)).collect();
    let _ = writeln!(s, "/// A token is accepted when its `aud` names one of these.");
    let _ = writeln!(s, "pub const AUDIENCES: &[&str] = &[{}];", audiences.join(", "));
    let claims: Vec<String> = m
        .claims
        .iter()
        .map(|c| format!("({}, {}, {})", rust_string(&c.name), claim_kind(c.kind), c.required))
        .collect();
    let _ = writeln!(s, "/// The custom claims: name, type, and whether every user token carries it.");
    let _ = writeln!(s, "pub const CUSTOM_CLAIMS: &[(&str, ClaimType, bool)] = &[{}];\n", claims.join(", "));

    scope_enum(&mut s, m);
    claims_structs(&mut s, m);
    s
}

fn scope_enum(s: &mut String, m: &Module) {
    s.push_str("/// A scope the spec declares.\n#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]\npub enum Scope {\n");
    for scope in &m.scopes {
        let doc = if scope.description.is_empty() { scope.name.clone() } else { doc_text(&scope.description) };
        let _ = writeln!(s, "    /// `{}`: {doc}", scope.name);
        let _ = writeln!(s, "    {},", scope.ident);
    }
    s.push_str("}\n\nimpl Scope {\n    /// Every declared scope.\n    pub const ALL: &[Scope] = &[");
    let all: Vec<String> = m.scopes.iter().map(|x| format!("Self::{}", x.ident)).collect();
    s.push_str(&all.join(", "));
    s.push_str("];\n\n    /// The scope as tokens carry it.\n    pub fn as_str(self) -> &'static str {\n        match self {\n");
    for scope in &m.scopes {
        let _ = writeln!(s, "            Self::{} => {},", scope.ident, rust_string(&scope.name));
    }
    if m.scopes.is_empty() {
        s.push_str("            _ => \"\",\n");
    }
    s.push_str("        }\n    }\n\n    /// The declared scope named `name`.\n    pub fn parse(name: &str) -> Option<Self> {\n        match name {\n");
    for scope in &m.scopes {
        let _ = writeln!(s, "            {} => Some(Self::{}),", rust_string(&scope.name), scope.ident);
    }
    s.push_str("            _ => None,\n        }\n    }\n\n");
    s.push_str("    /// The tied rate limit: `(burst, per seconds)`.\n    pub fn limit(self) -> Option<(u32, u64)> {\n        match self {\n");
    for scope in &m.scopes {
        let limit = scope.limit.map_or_else(|| "None".to_owned(), |q| format!("Some(({}, {}))", q.burst, q.per_secs));
        let _ = writeln!(s, "            Self::{} => {limit},", scope.ident);
    }
    if m.scopes.is_empty() {
        s.push_str("            _ => None,\n");
    }
    s.push_str("        }\n    }\n}\n\n");
    s.push_str(
        "impl std::fmt::Display for Scope {\n    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {\n        f.write_str(self.as_str())\n    }\n}\n\n",
    );
    s.push_str("/// One marker type per scope, for `Authorized<require::...>` (tuples require several).\npub mod require {\n");
    s.push_str("    use super::Scope;\n    use super::super::RequiredScopes;\n\n");
    for scope in &m.scopes {
        let _ = writeln!(s, "    /// Requires `{}`.\n    #[derive(Debug, Clone, Copy)]\n    pub struct {};\n", scope.name, scope.ident);
        let _ = writeln!(
            s,
            "    impl RequiredScopes for {} {{\n        fn scopes() -> Vec<Scope> {{\n            vec![Scope::{}]\n        }}\n    }}\n",
            scope.ident, scope.ident
        );
    }
    s.push_str("}\n\n");
}

fn claims_structs(s: &mut String, m: &Module) {
    s.push_str(
        "/// The claims of a verified access token.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: the user id, or the client id of a client-credentials token.
    pub sub: String,
    /// Audiences.
    pub aud: Vec<String>,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Token id.
    pub jti: String,
    /// The client the token was issued to.
    pub client_id: String,
    /// The granted scopes that the spec declares.
    pub scopes: Vec<Scope>,
    /// The session and the user's claims; `None` for a client-credentials token.
    pub user: Option<UserClaims>,
}

/// The claims of a user session's token.
#[derive(Debug, Clone, PartialEq)]
pub struct UserClaims {
    /// The session (refresh family).
    pub sid: String,
",
    );
    for claim in &m.claims {
        let doc = if claim.description.is_empty() { format!("The `{}` claim.", claim.name) } else { doc_text(&claim.description) };
        let ty = rust_type(claim.kind);
        let ty = if claim.required { ty.to_owned() } else { format!("Option<{ty}>") };
        let _ = writeln!(s, "    /// {doc}\n    pub {}: {ty},", field_ident(&claim.name));
    }
    s.push_str(
        "}

impl Claims {
    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// Types the claims that auth-core verified (which already checked the custom claim types).
    pub fn from_access(claims: AccessClaims) -> Result<Self, TokenError> {
        let scopes = claims.scopes().filter_map(Scope::parse).collect();
        let user = match claims.sid {
            Some(sid) => Some(UserClaims {
                sid,
",
    );
    for claim in &m.claims {
        let required = if claim.required { ".ok_or(TokenError::MissingClaim)?" } else { "" };
        let _ = writeln!(
            s,
            "                {}: {}(&claims.custom, {})?{required},",
            field_ident(&claim.name),
            extractor(claim.kind),
            rust_string(&claim.name)
        );
    }
    s.push_str(
        "            }),
            None => None,
        };
        Ok(Self {
            iss: claims.iss,
            sub: claims.sub,
            aud: claims.aud.0,
            exp: claims.exp,
            iat: claims.iat,
            jti: claims.jti,
            client_id: claims.client_id,
            scopes,
            user,
        })
    }
}
",
    );
    for kind in [ClaimType::String, ClaimType::Integer, ClaimType::Boolean, ClaimType::StringArray] {
        if !m.claims.iter().any(|c| c.kind == kind) {
            continue;
        }
        let (ty, convert) = match kind {
            ClaimType::String => ("String", "v.as_str().map(str::to_owned)"),
            ClaimType::Integer => ("i64", "v.as_i64()"),
            ClaimType::Boolean => ("bool", "v.as_bool()"),
            ClaimType::StringArray => (
                "Vec<String>",
                "v.as_array().and_then(|items| items.iter().map(|i| i.as_str().map(str::to_owned)).collect())",
            ),
        };
        let _ = writeln!(
            s,
            "\nfn {}(custom: &std::collections::BTreeMap<String, serde_json::Value>, name: &str) -> Result<Option<{ty}>, TokenError> {{
    match custom.get(name) {{
        None => Ok(None),
        Some(v) => {convert}.map(Some).ok_or(TokenError::InvalidClaim),
    }}
}}",
            extractor(kind)
        );
    }
}
