//! The grants of the token endpoint, one module each, behind one registry.
//!
//! A grant declares everything the rest of the system needs to know about it: its `grant_type`
//! name, the token-endpoint parameters it reads, the rules a client of the spec must meet to list
//! it, what it adds to the discovery document, and (with the `server` feature) the issuance it
//! performs through the [`Authority`](crate::authority::Authority). The spec's `grants = [...]`,
//! the token endpoint, the discovery document and the OpenAPI document all read [`GRANTS`], so a
//! new grant is one module here plus one line in [`GRANTS`].

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

use crate::spec::ClientSpec;

mod authorization_code;
mod client_credentials;
mod password;
mod refresh_token;

pub use authorization_code::AuthorizationCodeGrant;
pub use client_credentials::ClientCredentialsGrant;
pub use password::PasswordGrant;
pub use refresh_token::RefreshTokenGrant;

/// Every grant the token endpoint knows, in the order documents list them.
pub static GRANTS: &[&dyn TokenGrant] =
    &[&AuthorizationCodeGrant, &PasswordGrant, &RefreshTokenGrant, &ClientCredentialsGrant];

/// The grant named `name`, if there is one.
pub fn grant(name: &str) -> Option<&'static dyn TokenGrant> {
    GRANTS.iter().copied().find(|g| g.name() == name)
}

/// The names of every grant, for error messages.
pub fn names() -> impl Iterator<Item = &'static str> {
    GRANTS.iter().map(|g| g.name())
}

/// A token-endpoint parameter that a grant reads (besides `grant_type` and client
/// authentication, which every grant shares).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parameter {
    /// The form parameter's name.
    pub name: &'static str,
    /// Whether the grant refuses a request without it (`request.missing_parameter`).
    pub required: bool,
    /// A secret (a password): documented as such, never logged.
    pub secret: bool,
    /// What it is, for the API documentation.
    pub description: &'static str,
}

/// The parameter `scope` as grants that start a session or a token read it.
pub const SCOPE: Parameter = Parameter {
    name: "scope",
    required: false,
    secret: false,
    description: "Requested scopes, space-separated; the client's scopes when absent.",
};

/// The parameter values of one token request, restricted to the parameters the registry knows,
/// and where the request came from.
#[derive(Debug, Clone, Copy)]
pub struct GrantParameters<'a> {
    values: &'a HashMap<String, String>,
    source: Option<std::net::IpAddr>,
}

impl<'a> GrantParameters<'a> {
    /// Wraps decoded form values (of a request whose source is unknown).
    pub fn new(values: &'a HashMap<String, String>) -> Self {
        Self { values, source: None }
    }

    /// The same values, sent from `source` (the client's address).
    #[must_use]
    pub fn from_source(self, source: std::net::IpAddr) -> Self {
        Self { source: Some(source), ..self }
    }

    /// The client's address, when known.
    pub fn source(&self) -> Option<std::net::IpAddr> {
        self.source
    }

    /// A parameter that must be present and not empty.
    pub fn required(&self, name: &'static str) -> crate::Result<&'a str> {
        match self.values.get(name).map(String::as_str) {
            Some(value) if !value.is_empty() => Ok(value),
            _ => Err(crate::Error::MissingParameter(name)),
        }
    }

    /// A parameter that may be absent.
    pub fn optional(&self, name: &str) -> Option<&'a str> {
        self.values.get(name).map(String::as_str)
    }
}

/// One grant of the token endpoint. Implementations are unit structs listed in [`GRANTS`].
#[async_trait::async_trait]
pub trait TokenGrant: Send + Sync + fmt::Debug {
    /// The `grant_type` value.
    fn name(&self) -> &'static str;

    /// One line on what the grant does, for the API documentation.
    fn summary(&self) -> &'static str;

    /// The parameters it reads besides `grant_type` and client authentication.
    fn parameters(&self) -> &'static [Parameter];

    /// Whether a client of the spec may list this grant; the reason when it may not. `client` is
    /// the whole client, so a rule may depend on its other grants.
    fn check_client(&self, client: &ClientSpec) -> Result<(), String> {
        let _ = client;
        Ok(())
    }

    /// Whether a successful grant starts a session with a refresh token.
    fn issues_refresh_tokens(&self) -> bool {
        false
    }

    /// Members this grant adds to the discovery document when a client of the spec uses it
    /// (beyond its name in `grant_types_supported`).
    fn discovery(&self, issuer: &str) -> Vec<(&'static str, Value)> {
        let _ = issuer;
        Vec::new()
    }

    /// Issues tokens for an authenticated request. `client` is as sent; the grant authenticates
    /// it through the authority, which also checks that the client may use this grant.
    #[cfg(feature = "server")]
    async fn issue(
        &self,
        authority: &crate::authority::Authority,
        client: crate::authority::ClientCredentials<'_>,
        parameters: GrantParameters<'_>,
    ) -> crate::Result<crate::authority::Grant>;
}

/// The parameters of every grant, each once, in registry order.
pub fn all_parameters() -> Vec<&'static Parameter> {
    let mut all: Vec<&'static Parameter> = Vec::new();
    for parameter in GRANTS.iter().flat_map(|g| g.parameters()) {
        if !all.iter().any(|p| p.name == parameter.name) {
            all.push(parameter);
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_found() {
        let mut names: Vec<&str> = names().collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), GRANTS.len());
        for name in names {
            assert_eq!(grant(name).map(|g| g.name()), Some(name));
        }
        assert!(grant("implicit").is_none());
    }

    #[test]
    fn a_parameter_shared_by_grants_is_listed_once() {
        let all = all_parameters();
        assert_eq!(all.iter().filter(|p| p.name == "scope").count(), 1);
        for expected in ["username", "password", "refresh_token", "scope"] {
            assert!(all.iter().any(|p| p.name == expected), "{expected} missing");
        }
    }
}
