//! The sign-in flow in a real browser: the built `auth-server` on a free port, and the `node
//! --test` suite of `auth-server/tests/browser/` driving headless Chromium (Debian's
//! `/usr/bin/chromium`, through the pinned `playwright-core`) against it. The suite runs its own
//! relying party (a loopback code-flow client) and a page of another origin; what it checks is
//! listed at the top of `sign-in.test.mjs`.
//!
//! Where Node.js, npm or Chromium is missing the test says so and passes, except under `CI`, where
//! that is a failure (`.ci/ensure-chromium.sh` installs Chromium).

use std::path::Path;
use std::time::Duration;

use crate::node::{missing, node_ready, npm_ready, repository, run_suite, serve_at_own_issuer};

/// What the skip or failure messages call this suite.
const SUITE: &str = "the browser tests";

/// Where playwright-core finds the browser.
const CHROMIUM: &str = "/usr/bin/chromium";

/// A bound on the node suite (it takes about ten seconds), so that a hang fails instead of
/// holding CI.
const RUN_LIMIT: Duration = Duration::from_secs(180);

/// The code-flow client of the suite's relying party: public, first-party (no consent page),
/// redirected to a loopback URI, which matches on any port (RFC 8252 section 7.3).
const BROWSER_CLIENT: &str = r#"
[clients.booking-spa]
public = true
first_party = true
grants = ["authorization_code", "refresh_token"]
scopes = ["bookings:read", "bookings:write"]
redirect_uris = ["http://127.0.0.1/callback"]
description = "Booking"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_works_in_headless_chromium() {
    if !node_ready(SUITE) {
        return;
    }
    if !Path::new(CHROMIUM).exists() && missing(SUITE, &format!("{CHROMIUM} is missing (bash .ci/ensure-chromium.sh installs it)")) {
        return;
    }
    if !npm_ready(SUITE, "playwright-core") {
        return;
    }

    let (deployment, server) = serve_at_own_issuer(BROWSER_CLIENT, &[]).await;
    let issuer = server.url("");
    // tenant_id is set by invitations, never by the user.
    let invitation = deployment.cli(&["invitations", "create", "--claim", "tenant_id=hotel-7"], None).await;
    let artifacts = repository().join("target/browser-artifacts");
    std::fs::create_dir_all(&artifacts).expect("create target/browser-artifacts");

    let env = [
        ("AUTH_SERVER_URL", issuer.as_ref()),
        ("AUTH_CLIENT_ID", "booking-spa".as_ref()),
        ("AUTH_INVITATION", invitation.trim().as_ref()),
        ("AUTH_CHROMIUM", CHROMIUM.as_ref()),
        ("AUTH_ARTIFACTS", artifacts.as_os_str()),
    ];
    let report = run_suite("auth-server/tests/browser/sign-in.test.mjs", &env, RUN_LIMIT, &server).await;
    eprintln!("{report}\nscreenshots in {}", artifacts.display());
}
