//! Every stable code of the service, in one list.
//!
//! A code names what happened (`token.expired`, `refresh.reused`, `request.malformed`) in error
//! bodies (the problem's `code`, the start of OAuth's `error_description`), `WWW-Authenticate`
//! challenges, logs and metrics, and in the generated modules' errors. Clients match on them, so
//! they never change meaning. Every error of auth-core maps to one ([`crate::Error::code`]); the
//! server and the generated modules take theirs from here rather than writing them out; the
//! generator emits the TypeScript unions from [`Code::ALL`] and [`crate::error::TokenError::ALL`];
//! `docs/error-codes.md` lists them all and a test keeps it in step.

/// Declares [`Code`]: each entry is a variant, its text and what it means.
macro_rules! codes {
    ($( $variant:ident = $text:literal : $meaning:literal, )*) => {
        /// A stable code; see the module documentation.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Code {
            $( #[doc = $meaning] $variant, )*
        }

        impl Code {
            /// Every code, in the order of the list.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The code's text, e.g. `token.expired`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $text,)*
                }
            }

            /// What the code means, in one sentence.
            pub const fn meaning(self) -> &'static str {
                match self {
                    $(Code::$variant => $meaning,)*
                }
            }
        }
    };
}

codes! {
    TokenMissing = "token.missing": "No `Authorization: Bearer` header, another scheme, or an empty token.",
    TokenMalformed = "token.malformed": "The token is not a well-formed JWS compact serialization (or the header is not visible ASCII).",
    TokenTooLarge = "token.too_large": "The token exceeds the accepted size.",
    TokenUnsupportedAlgorithm = "token.unsupported_algorithm": "The token's `alg` is `none`, symmetric, or not one this issuer signs with.",
    TokenAlgorithmMismatch = "token.algorithm_mismatch": "The token's `alg` differs from the algorithm pinned to its key.",
    TokenUnknownKey = "token.unknown_key": "The token has no `kid`, or one that is not in the key set.",
    TokenKeyRetired = "token.key_retired": "The token's key has been retired.",
    TokenBadSignature = "token.bad_signature": "The token's signature does not verify.",
    TokenWrongType = "token.wrong_type": "The token's `typ` is not `at+jwt`.",
    TokenMissingClaim = "token.missing_claim": "A required claim is absent.",
    TokenInvalidClaim = "token.invalid_claim": "A claim has the wrong JSON type or an invalid value.",
    TokenExpired = "token.expired": "`exp` is in the past (beyond the leeway).",
    TokenNotYetValid = "token.not_yet_valid": "`nbf` or `iat` is in the future (beyond the leeway).",
    TokenWrongIssuer = "token.wrong_issuer": "`iss` is not this issuer.",
    TokenWrongAudience = "token.wrong_audience": "`aud` names no accepted audience.",
    TokenSessionRevoked = "token.session_revoked": "The token's session (its refresh family, `sid`) has been revoked.",
    TokenRevoked = "token.revoked": "The access token was revoked (`POST /oauth/revoke`).",
    TokenSubjectUnknown = "token.subject_unknown": "The token's subject no longer exists or is disabled.",
    JwksUnavailable = "jwks.unavailable": "The issuer's key set cannot be fetched and no usable copy is cached (generated modules).",
    RefreshUnknown = "refresh.unknown": "The refresh token is not one this service issued.",
    RefreshReused = "refresh.reused": "The refresh token was used again after the reuse grace; its session has been revoked.",
    RefreshRevoked = "refresh.revoked": "The refresh token's session has been revoked.",
    RefreshExpired = "refresh.expired": "The refresh token passed its idle or absolute lifetime.",
    RefreshWrongClient = "refresh.wrong_client": "The refresh token was issued to another client.",
    CodeInvalid = "code.invalid": "The authorization code is unknown, expired, or was issued for another client or redirect URI.",
    CodeReused = "code.reused": "The authorization code was exchanged before; the session it started has been revoked (RFC 6749 4.1.2).",
    CodePkceFailed = "code.pkce_failed": "The `code_verifier` does not hash (S256) to the authorization request's `code_challenge`.",
    AuthorizeInvalidClient = "authorize.invalid_client": "The authorization request names no client of the spec with the `authorization_code` grant (shown on a page, never redirected).",
    AuthorizeInvalidRedirectUri = "authorize.invalid_redirect_uri": "The `redirect_uri` is missing or not one the client registered (shown on a page, never redirected).",
    AuthorizeInvalidRequest = "authorize.invalid_request": "An authorization request parameter is missing, malformed, repeated or unsupported (PKCE S256 is required).",
    AuthorizeUnsupportedResponseType = "authorize.unsupported_response_type": "Only `response_type=code` is supported.",
    AuthorizeLoginRequired = "authorize.login_required": "`prompt=none`, but the browser has no session recent enough.",
    AuthorizeConsentRequired = "authorize.consent_required": "`prompt=none`, but the user has not consented to this client and scope.",
    AuthorizeAccessDenied = "authorize.access_denied": "The user declined the client's request.",
    RequestCsrf = "request.csrf": "A form was posted without its CSRF token, with a wrong one, or from another origin (shown on a page).",
    AuthInvalidCredentials = "auth.invalid_credentials": "Unknown user, wrong password or disabled account: one answer for all three.",
    AuthInvalidClient = "auth.invalid_client": "The client is unknown, or its authentication failed.",
    AuthUnauthorizedGrant = "auth.unauthorized_grant": "The client may not use this grant.",
    AuthInvalidScope = "auth.invalid_scope": "A requested scope is undeclared or not allowed for the client.",
    AuthTooManyAttempts = "auth.too_many_attempts": "Too many failed logins on the account; retry after `Retry-After`.",
    AuthInsufficientScope = "auth.insufficient_scope": "The access token lacks the scope the route requires.",
    GrantUnsupported = "grant.unsupported": "The `grant_type` is not one this server knows.",
    RequestMissingParameter = "request.missing_parameter": "A required parameter is absent or empty.",
    RequestDuplicateParameter = "request.duplicate_parameter": "A parameter was sent more than once.",
    RequestMalformed = "request.malformed": "The body or a parameter cannot be read (not UTF-8, not JSON, not a form).",
    RequestTooLarge = "request.too_large": "The body is over the size limit.",
    RequestUnsupportedMediaType = "request.unsupported_media_type": "The body's `Content-Type` is not the one the endpoint takes.",
    RequestInvalidQuery = "request.invalid_query": "The query string has an unknown or invalid parameter.",
    RequestMultipleClientAuthentication = "request.multiple_client_authentication": "The client authenticated in more than one way (Basic and form).",
    RequestClientIdMismatch = "request.client_id_mismatch": "The form's `client_id` differs from the Basic credentials'.",
    RequestUnidentifiedPeer = "request.unidentified_peer": "The client's address cannot be determined for the per-IP limit.",
    RequestTimeout = "request.timeout": "The request was not completed within the server's deadline.",
    RequestBodyTimeout = "request.body_timeout": "The request's body did not arrive within the body-read timeout.",
    RequestInvalidHost = "request.invalid_host": "An HTTP/1.1 request without exactly one `Host` header (RFC 9112 section 3.2).",
    RatelimitPerIp = "ratelimit.per_ip": "The per-address limit of the credential endpoints is exhausted; retry after `Retry-After`.",
    RatelimitSignUp = "ratelimit.sign_up": "The spec's sign-up limit for this address is exhausted; retry after `Retry-After`.",
    RatelimitExceeded = "ratelimit.exceeded": "The limit of one of the token's scopes is exhausted.",
    RatelimitBackend = "ratelimit.backend": "The rate-limit backend (Redis) failed.",
    RouteNotFound = "route.not_found": "No such route.",
    RouteMethodNotAllowed = "route.method_not_allowed": "The route exists but not with this method.",
    SessionNotFound = "session.not_found": "The caller has no session with this id.",
    SessionNone = "session.none": "The token belongs to no session (client credentials).",
    ConsentNotFound = "consent.not_found": "The caller has given this client no consent (or withdrew it).",
    InputInvalid = "input.invalid": "A value breaks a rule (password policy, username, claim type).",
    InputConflict = "input.conflict": "A unique value already exists (username, client id).",
    InputNotFound = "input.not_found": "A record that must exist does not.",
    InputClaimNotSettable = "input.claim_not_settable": "The claim is set by an administrator or an invitation, not by the user at sign-up.",
    InvitationInvalid = "invitation.invalid": "The invitation is unknown, expired, already used, or reserved for another username.",
    SpecInvalid = "spec.invalid": "The spec cannot be read, parsed or validated.",
    StoreUnavailable = "store.unavailable": "The database cannot be reached; worth a retry.",
    StoreError = "store.error": "The database answered with an error that is not an outage.",
    KeyMasterKey = "key.master_key": "Sealed private keys cannot be opened with the configured master key.",
    KeyInvalid = "key.invalid": "Key material is missing, malformed or of the wrong kind.",
    KeyNotLoaded = "key.not_loaded": "The signing keys are not loaded yet.",
    CryptoError = "crypto.error": "A cryptographic operation failed.",
    PasswordError = "password.error": "The password hasher failed or its pool is saturated.",
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::Code;

    #[test]
    fn codes_are_unique_and_well_formed() {
        let texts: BTreeSet<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(texts.len(), Code::ALL.len(), "a code text is used twice");
        for code in Code::ALL {
            let (area, name) = code.as_str().split_once('.').expect("area.name");
            let lower = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            assert!(lower(area) && lower(name), "{code} is not area.snake_case");
            assert!(code.meaning().ends_with('.'), "the meaning of {code} is not a sentence");
        }
    }

    /// `docs/error-codes.md` lists every code once, with its meaning as written here, and nothing
    /// else.
    #[test]
    fn the_documentation_lists_exactly_these_codes() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/error-codes.md"))
            .expect("docs/error-codes.md");
        let documented: Vec<(&str, &str)> = doc
            .lines()
            .filter_map(|line| line.strip_prefix("| `")?.strip_suffix(" |")?.split_once("` | "))
            .collect();
        let unique: BTreeSet<&str> = documented.iter().map(|(code, _)| *code).collect();
        assert_eq!(unique.len(), documented.len(), "a code is documented twice");
        let known: BTreeSet<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        let missing: Vec<_> = known.difference(&unique).collect();
        let unknown: Vec<_> = unique.difference(&known).collect();
        assert!(missing.is_empty() && unknown.is_empty(), "undocumented: {missing:?}; not codes: {unknown:?}");
        for (text, meaning) in documented {
            let code = Code::ALL.iter().find(|c| c.as_str() == text).expect("known");
            assert_eq!(meaning, code.meaning(), "the meaning of {text} in docs/error-codes.md");
        }
    }
}
