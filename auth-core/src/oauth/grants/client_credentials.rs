//! `grant_type=client_credentials`: a confidential client acting for itself (RFC 6749 section 4.4).

use super::{Parameter, SCOPE, TokenGrant};
use crate::spec::ClientSpec;

/// The client-credentials grant.
#[derive(Debug, Clone, Copy)]
pub struct ClientCredentialsGrant;

#[async_trait::async_trait]
impl TokenGrant for ClientCredentialsGrant {
    fn name(&self) -> &'static str {
        "client_credentials"
    }

    fn summary(&self) -> &'static str {
        "Client credentials (RFC 6749 section 4.4), for confidential clients: a token for the client itself."
    }

    fn parameters(&self) -> &'static [Parameter] {
        &[SCOPE]
    }

    fn check_client(&self, client: &ClientSpec) -> Result<(), String> {
        if client.public {
            Err("a public client has no secret and cannot use client_credentials".to_owned())
        } else {
            Ok(())
        }
    }

    #[cfg(feature = "server")]
    async fn issue(
        &self,
        authority: &crate::authority::Authority,
        client: crate::authority::ClientCredentials<'_>,
        parameters: super::GrantParameters<'_>,
    ) -> crate::Result<crate::authority::Grant> {
        authority.client_credentials_grant(client, parameters.optional("scope")).await
    }
}
