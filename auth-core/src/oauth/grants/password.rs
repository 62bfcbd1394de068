//! `grant_type=password`: resource owner password credentials (RFC 6749 section 4.3).

use super::{Parameter, SCOPE, TokenGrant};

/// The password grant.
#[derive(Debug, Clone, Copy)]
pub struct PasswordGrant;

const PARAMETERS: &[Parameter] = &[
    Parameter {
        name: "username",
        required: true,
        secret: false,
        description: "The username (compared after the same normalization as at sign-up).",
    },
    Parameter { name: "password", required: true, secret: true, description: "The password." },
    SCOPE,
    Parameter {
        name: "device_token",
        required: false,
        secret: true,
        description: "The `device_token` of this device's previous login: a device that logged in before keeps a login \
                      allowance of its own, which failed attempts from elsewhere cannot spend.",
    },
];

#[async_trait::async_trait]
impl TokenGrant for PasswordGrant {
    fn name(&self) -> &'static str {
        "password"
    }

    fn summary(&self) -> &'static str {
        "Resource owner password credentials (RFC 6749 section 4.3): a new session for the user."
    }

    fn parameters(&self) -> &'static [Parameter] {
        PARAMETERS
    }

    fn issues_refresh_tokens(&self) -> bool {
        true
    }

    #[cfg(feature = "server")]
    async fn issue(
        &self,
        authority: &crate::authority::Authority,
        client: crate::authority::ClientCredentials<'_>,
        parameters: super::GrantParameters<'_>,
    ) -> crate::Result<crate::authority::Grant> {
        let login = crate::authority::PasswordLogin {
            username: parameters.required("username")?,
            password: parameters.required("password")?,
            scope: parameters.optional("scope"),
            device_token: parameters.optional("device_token"),
            source: parameters.source(),
        };
        authority.password_login(client, login).await
    }
}
