//! OAuth 2.0 protocol pieces that are not tied to HTTP: the grants of the token endpoint and
//! PKCE.

pub mod grants;
pub mod pkce;
