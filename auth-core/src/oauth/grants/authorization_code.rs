//! `grant_type=authorization_code`: the browser sign-in's code exchanged for tokens (RFC 6749
//! section 4.1.3), with PKCE (RFC 7636) required of every client as OAuth 2.1 does.

use serde_json::{Value, json};

use super::{Parameter, TokenGrant};
use crate::spec::ClientSpec;

/// The authorization-code grant.
#[derive(Debug, Clone, Copy)]
pub struct AuthorizationCodeGrant;

const PARAMETERS: &[Parameter] = &[
    Parameter { name: "code", required: true, secret: true, description: "The code the authorization endpoint returned." },
    Parameter {
        name: "redirect_uri",
        required: false,
        secret: false,
        description: "The `redirect_uri` of the authorization request; required when the client registered several.",
    },
    Parameter {
        name: "code_verifier",
        required: true,
        secret: true,
        description: "The PKCE verifier whose S256 hash was the request's `code_challenge`.",
    },
];

#[async_trait::async_trait]
impl TokenGrant for AuthorizationCodeGrant {
    fn name(&self) -> &'static str {
        "authorization_code"
    }

    fn summary(&self) -> &'static str {
        "Authorization code with PKCE (RFC 6749 section 4.1, RFC 7636): the code of a browser sign-in, once, for a new session."
    }

    fn parameters(&self) -> &'static [Parameter] {
        PARAMETERS
    }

    fn check_client(&self, client: &ClientSpec) -> Result<(), String> {
        if client.redirect_uris.is_empty() {
            Err("authorization_code needs at least one entry in redirect_uris".to_owned())
        } else {
            Ok(())
        }
    }

    fn issues_refresh_tokens(&self) -> bool {
        true
    }

    fn discovery(&self, issuer: &str) -> Vec<(&'static str, Value)> {
        vec![
            ("authorization_endpoint", json!(format!("{issuer}/oauth/authorize"))),
            ("end_session_endpoint", json!(format!("{issuer}/oauth/end-session"))),
            // RFC 9126 section 5: pushing is required of the clients whose spec says so, not of all.
            ("pushed_authorization_request_endpoint", json!(format!("{issuer}/oauth/par"))),
            ("require_pushed_authorization_requests", json!(false)),
            // Back-Channel Logout 1.0 section 2.1: logout tokens, always with `sid`.
            ("backchannel_logout_supported", json!(true)),
            ("backchannel_logout_session_supported", json!(true)),
            ("response_types_supported", json!(["code"])),
            ("response_modes_supported", json!(["query"])),
            ("code_challenge_methods_supported", json!(["S256"])),
            ("authorization_response_iss_parameter_supported", json!(true)),
            // OpenID Connect Discovery 3: what the ID tokens of this grant are.
            ("subject_types_supported", json!(["public"])),
            ("id_token_signing_alg_values_supported", json!(["RS256"])),
            ("claims_parameter_supported", json!(false)),
            ("request_parameter_supported", json!(false)),
            ("request_uri_parameter_supported", json!(false)),
        ]
    }

    #[cfg(feature = "server")]
    async fn issue(
        &self,
        authority: &crate::authority::Authority,
        client: crate::authority::ClientCredentials<'_>,
        parameters: super::GrantParameters<'_>,
    ) -> crate::Result<crate::authority::Grant> {
        let code = parameters.required("code")?;
        let verifier = parameters.required("code_verifier")?;
        let redirect_uri = parameters.optional("redirect_uri").filter(|uri| !uri.is_empty());
        authority.code_grant(client, code, redirect_uri, verifier).await
    }
}
