//! The code flow as a new user of the `openid-client` library (Node.js, v6, pinned in the root
//! `package.json`) runs it: the built `auth-server` on a free port, and the `node --test` suite
//! `auth-server/tests/openid-client/code-flow.test.mjs` doing discovery, PKCE, the authorization
//! URL, the sign-in through the hosted form (a cookie-keeping `fetch`, no browser), the code
//! exchange with the library's checks (state, RFC 9207 `iss`, the ID token's signature, nonce,
//! `at_hash`), UserInfo, refresh and RP-initiated logout; what it checks is listed at the top of
//! the suite.
//!
//! Where Node.js or npm is missing the test says so and passes, except under `CI`.

use std::time::Duration;

use crate::node::{node_ready, npm_ready, run_suite, serve_at_own_issuer};
use crate::process::PASSWORD;

/// What the skip or failure messages call this suite.
const SUITE: &str = "the openid-client tests";

/// A bound on the node suite (it takes a few seconds), so that a hang fails instead of holding CI.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// The relying party's client: public, first-party (no consent page), redirected to a loopback
/// URI, which matches on any port (RFC 8252 section 7.3), and back after signing out.
const NODE_CLIENT: &str = r#"
[clients.node-app]
public = true
first_party = true
grants = ["authorization_code", "refresh_token"]
scopes = ["bookings:read"]
redirect_uris = ["http://127.0.0.1/callback"]
post_logout_redirect_uris = ["http://127.0.0.1/signed-out"]
description = "Node app"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openid_client_signs_in_with_the_code_flow() {
    if !node_ready(SUITE) || !npm_ready(SUITE, "openid-client") {
        return;
    }

    // Each test of the suite signs the user in anew, within seconds: more than the default
    // allowance of one account (5 a minute).
    let (deployment, server) = serve_at_own_issuer(NODE_CLIENT, &["--login-attempts", "50"]).await;
    let issuer = server.url("");
    deployment.add_user("noor").await;

    let env = [
        ("AUTH_SERVER_URL", issuer.as_ref()),
        ("AUTH_CLIENT_ID", "node-app".as_ref()),
        ("AUTH_USERNAME", "noor".as_ref()),
        ("AUTH_PASSWORD", PASSWORD.as_ref()),
    ];
    let report = run_suite("auth-server/tests/openid-client/code-flow.test.mjs", &env, RUN_LIMIT, &server).await;
    eprintln!("{report}");
}
