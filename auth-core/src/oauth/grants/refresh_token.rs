//! `grant_type=refresh_token`: refresh-token rotation (RFC 6749 section 6).

use super::{Parameter, TokenGrant};
use crate::spec::ClientSpec;

/// The refresh-token grant.
#[derive(Debug, Clone, Copy)]
pub struct RefreshTokenGrant;

const PARAMETERS: &[Parameter] = &[
    Parameter { name: "refresh_token", required: true, secret: false, description: "The refresh token." },
    Parameter {
        name: "scope",
        required: false,
        secret: false,
        description: "A subset of the session's scopes, space-separated; all of them when absent.",
    },
];

#[async_trait::async_trait]
impl TokenGrant for RefreshTokenGrant {
    fn name(&self) -> &'static str {
        "refresh_token"
    }

    fn summary(&self) -> &'static str {
        "Refresh (RFC 6749 section 6): rotates the refresh token and issues a new access token."
    }

    fn parameters(&self) -> &'static [Parameter] {
        PARAMETERS
    }

    fn check_client(&self, client: &ClientSpec) -> Result<(), String> {
        if client.grants.iter().any(|g| g.grant().issues_refresh_tokens()) {
            Ok(())
        } else {
            let issuers: Vec<&str> =
                super::GRANTS.iter().filter(|g| g.issues_refresh_tokens()).map(|g| g.name()).collect();
            Err(format!("refresh_token needs a grant that issues refresh tokens ({})", issuers.join(", ")))
        }
    }

    #[cfg(feature = "server")]
    async fn issue(
        &self,
        authority: &crate::authority::Authority,
        client: crate::authority::ClientCredentials<'_>,
        parameters: super::GrantParameters<'_>,
    ) -> crate::Result<crate::authority::Grant> {
        let refresh_token = parameters.required("refresh_token")?;
        authority.refresh_grant(client, refresh_token, parameters.optional("scope")).await
    }
}
