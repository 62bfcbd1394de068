//! The intermediate model of a generated module: everything the emitters need, derived once from
//! a validated [`Spec`]. Emitters read only this model, never the spec itself, so both targets
//! agree on names, types and values.
//!
//! Invariants: names are unique per kind after conversion to identifiers, and every list is in a
//! stable order (the spec's maps are sorted), so the same spec always yields the same output.

use std::collections::BTreeMap;

use auth_core::spec::{ClaimType, GrantType, SigningAlgorithm, Spec};

/// The generator version written into every module and manifest.
pub const GENERATOR_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A module to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// The spec's canonical SHA-256.
    pub spec_hash: String,
    /// Where the spec came from, as shown in file headers (a file name, never an absolute path).
    pub source: String,
    /// `iss` of every token.
    pub issuer: String,
    /// Accepted audiences.
    pub audiences: Vec<String>,
    /// The signing algorithm.
    pub algorithm: SigningAlgorithm,
    /// Tolerated clock skew, seconds.
    pub leeway_secs: u64,
    /// Access-token lifetime, seconds.
    pub access_ttl_secs: u64,
    /// The refresh reuse grace, seconds.
    pub refresh_reuse_grace_secs: u64,
    /// The JWKS max age, seconds.
    pub jwks_max_age_secs: u64,
    /// Declared scopes, sorted by name.
    pub scopes: Vec<Scope>,
    /// Custom claims, sorted by name.
    pub claims: Vec<Claim>,
    /// Clients, sorted by id.
    pub clients: Vec<Client>,
}

/// A declared scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The scope as tokens carry it (`bookings:write`).
    pub name: String,
    /// Its name as a type or variant identifier (`BookingsWrite`).
    pub ident: String,
    /// What it allows.
    pub description: String,
    /// The tied rate limit.
    pub limit: Option<Quota>,
}

/// A GCRA quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Requests at once.
    pub burst: u32,
    /// Refill window, seconds.
    pub per_secs: u64,
}

/// A custom claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The JSON member name.
    pub name: String,
    /// Its JSON type.
    pub kind: ClaimType,
    /// Whether every user token carries it.
    pub required: bool,
    /// Whether the spec gives it a default, which tokens of users who lack it carry.
    pub has_default: bool,
    /// What it means.
    pub description: String,
}

/// An OAuth client of the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The client id.
    pub id: String,
    /// Whether it has no secret.
    pub public: bool,
    /// Its grants.
    pub grants: Vec<GrantType>,
    /// Scopes it may request.
    pub scopes: Vec<String>,
}

/// The IR cannot be built from the spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec field `{field}`: {message}")]
pub struct IrError {
    /// The offending field.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl Module {
    /// Builds the model of `spec`; `source` names the spec in generated headers.
    pub fn from_spec(spec: &Spec, source: &str) -> Result<Self, IrError> {
        let mut idents: BTreeMap<String, String> = BTreeMap::new();
        let mut scopes = Vec::with_capacity(spec.scopes.len());
        for (name, scope) in &spec.scopes {
            let ident = type_ident(name);
            if let Some(other) = idents.insert(ident.clone(), name.clone()) {
                return Err(IrError {
                    field: format!("scopes.{name:?}"),
                    message: format!(
                        "scopes {other:?} and {name:?} both become the identifier `{ident}` in generated code; rename one"
                    ),
                });
            }
            scopes.push(Scope {
                name: name.clone(),
                ident,
                description: scope.description.clone(),
                limit: scope.rate_limit.map(|q| Quota { burst: q.burst, per_secs: q.per.0 }),
            });
        }
        let claims = spec
            .claims
            .iter()
            .map(|(name, claim)| Claim {
                name: name.clone(),
                kind: claim.kind,
                required: claim.required,
                has_default: claim.default.is_some(),
                description: claim.description.clone(),
            })
            .collect();
        let clients = spec
            .clients
            .iter()
            .map(|(id, client)| Client {
                id: id.clone(),
                public: client.public,
                grants: client.grants.clone(),
                scopes: client.scopes.clone(),
            })
            .collect();
        Ok(Self {
            spec_hash: spec.hash(),
            source: source.to_owned(),
            issuer: spec.issuer.clone(),
            audiences: spec.audiences.clone(),
            algorithm: spec.tokens.algorithm,
            leeway_secs: spec.tokens.leeway.0,
            access_ttl_secs: spec.tokens.access_ttl.0,
            refresh_reuse_grace_secs: spec.tokens.refresh_reuse_grace.0,
            jwks_max_age_secs: spec.keys.jwks_max_age.0,
            scopes,
            claims,
            clients,
        })
    }
}

/// `bookings:write` -> `BookingsWrite`: every run of ASCII letters and digits becomes a capitalised
/// word; a leading digit gets an `S` prefix so that the result is an identifier.
pub fn type_ident(name: &str) -> String {
    let mut out = String::new();
    for word in name.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'S');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_names_become_identifiers() {
        assert_eq!(type_ident("bookings:write"), "BookingsWrite");
        assert_eq!(type_ident("profile"), "Profile");
        assert_eq!(type_ident("read-only.v2"), "ReadOnlyV2");
        assert_eq!(type_ident("2fa"), "S2fa");
        assert_eq!(type_ident("!!"), "S");
    }

    #[test]
    fn colliding_identifiers_are_refused_with_the_field() {
        let text = r#"
spec_version = 1
issuer = "https://auth.example"
audiences = ["api"]
[scopes."a:b"]
[scopes."a.b"]
"#;
        let spec = Spec::parse(text).expect("valid spec");
        let err = Module::from_spec(&spec, "x.toml").expect_err("collision");
        assert_eq!(err.field, "scopes.\"a:b\"");
        assert!(err.message.contains("`AB`"), "{}", err.message);
    }
}
