//! No secret reaches the logs: a real `auth-server` process with `RUST_LOG=debug` goes through a
//! full scenario (operator commands, sign-up, logins, a failed login, refresh, client
//! credentials, introspection, revocation, logout, a reuse detection, key rotations, a master-key
//! rewrap, bad tokens) while everything it and the operator commands write to standard output and
//! error is kept; then every secret value the test saw is searched for in it, in each form it
//! travelled in (form-encoded, HTTP Basic) and for keys in every text encoding. On SQLite, and on
//! PostgreSQL with Redis when the test variables are set.

use std::time::Duration;

use auth_core::keys::MasterKey;
use auth_core::random::OsEntropy;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::process::{Backing, Deployment, PASSWORD, Server, cheap_booking_spec, http_client};
use crate::replicas::{BACKEND, WEB, eventually, field, post_form};

/// Keys that rotate every few seconds (the server rotates on its own during the scenario) and a
/// one-second reuse grace (so that a reuse can be detected without a long wait).
fn spec() -> String {
    cheap_booking_spec(&[
        ("refresh_reuse_grace = \"10s\"", "refresh_reuse_grace = \"1s\""),
        ("rotate_every = \"30d\"", "rotate_every = \"4s\""),
        ("publish_ahead = \"2d\"", "publish_ahead = \"2s\""),
        ("jwks_max_age = \"10m\"", "jwks_max_age = \"1s\""),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_debug_logs_on_sqlite() {
    scenario(Deployment::sqlite(&spec())).await;
}

#[cfg_attr(not(all(auth_test_postgres, auth_test_redis)), ignore = "AUTH_TEST_DATABASE_URL or AUTH_TEST_REDIS_URL was not set when the tests were built")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_debug_logs_on_postgres() {
    let Some(backing) = Backing::from_env("no_secret_reaches_the_debug_logs_on_postgres", true) else { return };
    scenario(Deployment::new(&backing, &spec()).await).await;
}

/// Every secret seen, and every line written.
#[derive(Default)]
struct Seen {
    secrets: Vec<(String, String)>,
    logs: Vec<(String, String)>,
}

impl Seen {
    /// A secret, under a name for the failure message, with the forms it travels in: as is and
    /// form-encoded.
    fn secret(&mut self, what: &str, value: &str) {
        assert!(value.len() >= 16, "{what} is too short to search for: {value:?}");
        self.secrets.push((what.to_owned(), value.to_owned()));
        let encoded: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
        if encoded != value {
            self.secrets.push((format!("{what} (form-encoded)"), encoded));
        }
    }

    /// An access token, and its signature alone.
    fn access(&mut self, what: &str, token: &str) {
        self.secret(what, token);
        let signature = token.rsplit('.').next().unwrap_or_default();
        self.secret(&format!("{what} signature"), signature);
    }

    /// The tokens of a token response.
    fn tokens(&mut self, what: &str, body: &Value) {
        self.access(&format!("{what} access token"), field(body, "access_token"));
        if let Some(refresh) = body["refresh_token"].as_str() {
            self.secret(&format!("{what} refresh token"), refresh);
        }
    }

    /// Key material, in every encoding a log could show it in.
    fn bytes(&mut self, what: &str, bytes: &[u8]) {
        self.secret(&format!("{what} (hex)"), &bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
        self.secret(&format!("{what} (base64)"), STANDARD.encode(bytes).trim_end_matches('='));
        self.secret(&format!("{what} (base64url)"), &URL_SAFE_NO_PAD.encode(bytes));
    }

    /// What an operator command wrote; `stdout` is left out for the command whose job is to print
    /// a secret once.
    fn command(&mut self, what: &str, output: &std::process::Output, with_stdout: bool) {
        assert!(output.status.success(), "{what}: {}", String::from_utf8_lossy(&output.stderr));
        self.logs.push((format!("{what} stderr"), String::from_utf8_lossy(&output.stderr).into_owned()));
        if with_stdout {
            self.logs.push((format!("{what} stdout"), String::from_utf8_lossy(&output.stdout).into_owned()));
        }
    }
}

async fn scenario(mut deployment: Deployment) {
    deployment.set_env("RUST_LOG", "debug");
    let mut seen = Seen::default();
    let (old_master, old_master_text) = (MasterKey::from_text(deployment.master_key()).unwrap(), deployment.master_key().to_owned());
    seen.secret("master key", &old_master_text);

    // Operator commands: a confidential client (its secret printed once, on stdout) and a user
    // whose password comes on stdin.
    let added = deployment.try_cli(&["clients", "add", BACKEND], None).await;
    seen.command("clients add", &added, false);
    let secret = String::from_utf8_lossy(&added.stdout).lines().last().unwrap().trim().to_owned();
    seen.secret("client secret", &secret);
    seen.secret("client secret (HTTP Basic)", &STANDARD.encode(format!("{BACKEND}:{secret}")));
    let added = deployment.try_cli(&["users", "add", "alice", "--claim", "tenant_id=t1"], Some(&format!("{PASSWORD}\n"))).await;
    seen.command("users add", &added, true);
    seen.secret("alice's password", PASSWORD);
    // An invitation (its token printed once, on stdout) for bob's sign-up.
    let invited = deployment.try_cli(&["invitations", "create", "--claim", "tenant_id=t1"], None).await;
    seen.command("invitations create", &invited, false);
    let invitation = String::from_utf8_lossy(&invited.stdout).trim().to_owned();
    seen.secret("invitation", &invitation);

    let server = deployment
        .start(&["--key-refresh-secs", "1", "--per-ip-rps", "10000", "--login-attempts", "100"])
        .await;
    let client = http_client();
    let token_url = server.url("/oauth/token");

    // Sign-up, logins (one failed, one of an unknown user), refresh.
    let bob_password = "bob's passphrase, not for logs";
    seen.secret("bob's password", bob_password);
    let response = client
        .post(server.url("/v1/users"))
        .json(&json!({ "username": "bob", "password": bob_password, "invitation": invitation }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let login = |username: &'static str, password: &'static str| {
        let client = client.clone();
        let url = token_url.clone();
        async move {
            let form = [("grant_type", "password"), ("client_id", WEB), ("username", username), ("password", password)];
            post_form(&client, &url, &form, None).await
        }
    };
    let (status, alice) = login("alice", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{alice}");
    seen.tokens("alice's login", &alice);
    let (status, bob) = login("bob", bob_password).await;
    assert_eq!(status, StatusCode::OK, "{bob}");
    seen.tokens("bob's login", &bob);
    let wrong = "alice's wrong guess 2024";
    seen.secret("a wrong password", wrong);
    let (status, _) = login("alice", wrong).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let unknown = "password of nobody at all";
    seen.secret("an unknown user's password", unknown);
    let (status, _) = login("nobody", unknown).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let refresh = |token: String| {
        let client = client.clone();
        let url = token_url.clone();
        async move {
            let form = [("grant_type", "refresh_token"), ("client_id", WEB), ("refresh_token", token.as_str())];
            post_form(&client, &url, &form, None).await
        }
    };
    let (status, refreshed) = refresh(field(&alice, "refresh_token").to_owned()).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    seen.tokens("alice's refresh", &refreshed);

    // Client credentials, with Basic and with the secret in the form; introspection of each kind
    // of token; userinfo.
    let (status, basic) = post_form(&client, &token_url, &[("grant_type", "client_credentials")], Some((BACKEND, &secret))).await;
    assert_eq!(status, StatusCode::OK, "{basic}");
    seen.tokens("client credentials (Basic)", &basic);
    let form = [("grant_type", "client_credentials"), ("client_id", BACKEND), ("client_secret", secret.as_str())];
    let (status, in_form) = post_form(&client, &token_url, &form, None).await;
    assert_eq!(status, StatusCode::OK, "{in_form}");
    seen.tokens("client credentials (form)", &in_form);
    let introspect_url = server.url("/oauth/introspect");
    for token in [field(&refreshed, "access_token"), field(&refreshed, "refresh_token"), field(&basic, "access_token")] {
        let (status, body) = post_form(&client, &introspect_url, &[("token", token)], Some((BACKEND, &secret))).await;
        assert_eq!((status, &body["active"]), (StatusCode::OK, &json!(true)), "{body}");
    }
    let form = [("token", field(&in_form, "access_token")), ("client_id", BACKEND), ("client_secret", secret.as_str())];
    let (status, _) = post_form(&client, &introspect_url, &form, None).await;
    assert_eq!(status, StatusCode::OK);
    let response = client.get(server.url("/userinfo")).bearer_auth(field(&refreshed, "access_token")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // Revocation, logout.
    let form = [("token", field(&bob, "refresh_token")), ("client_id", WEB)];
    let (status, _) = post_form(&client, &server.url("/oauth/revoke"), &form, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, again) = login("alice", PASSWORD).await;
    assert_eq!(status, StatusCode::OK);
    seen.tokens("alice's second login", &again);
    let response = client.post(server.url("/v1/logout")).bearer_auth(field(&again, "access_token")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // Bad tokens: garbage, a real token with its signature altered, a used refresh token after
    // the grace (reuse detected: the session is revoked).
    let access = field(&refreshed, "access_token");
    let (head, signature) = access.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{head}.{flipped}{}", &signature[1..]);
    seen.secret("a tampered token", &tampered);
    for token in ["garbage", "not.a.token", tampered.as_str()] {
        let response = client.get(server.url("/userinfo")).bearer_auth(token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{token}");
        let (status, body) = post_form(&client, &introspect_url, &[("token", token)], Some((BACKEND, &secret))).await;
        assert_eq!((status, body), (StatusCode::OK, json!({ "active": false })));
    }
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (status, body) = refresh(field(&alice, "refresh_token").to_owned()).await;
    assert_eq!((status, &body["error_description"]), (StatusCode::BAD_REQUEST, &json!("refresh.reused")), "{body}");

    // Key rotation: by the server itself (keys rotate every 4 s here) and from the command line;
    // a token of the new active key.
    let first_kid = kid_of(field(&basic, "access_token"));
    let rotated = eventually("the server rotates its key", Duration::from_secs(30), || async {
        let (_, body) = post_form(&client, &token_url, &[("grant_type", "client_credentials")], Some((BACKEND, &secret))).await;
        (kid_of(field(&body, "access_token")) != first_kid).then_some(body)
    })
    .await;
    seen.tokens("client credentials after rotation", &rotated);
    let output = deployment.try_cli(&["keys", "rotate"], None).await;
    seen.command("keys rotate", &output, true);

    // A master-key rewrap while the server runs; the server still signs.
    let (new_master, new_master_text) = MasterKey::generate(&OsEntropy::new()).unwrap();
    seen.secret("new master key", &new_master_text);
    let output = deployment.try_cli(&["keys", "rewrap"], Some(&new_master_text)).await;
    seen.command("keys rewrap", &output, true);
    let (status, after) = post_form(&client, &token_url, &[("grant_type", "client_credentials")], Some((BACKEND, &secret))).await;
    assert_eq!(status, StatusCode::OK, "{after}");
    seen.tokens("client credentials after the rewrap", &after);

    // Both master keys in every encoding, and every private key the database holds, opened.
    let master_bytes = |text: &str| {
        let text = text.trim();
        let hex: Option<Vec<u8>> = (text.len() == 64)
            .then(|| (0..32).map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()).collect())
            .flatten();
        hex.or_else(|| STANDARD.decode(text).ok()).unwrap()
    };
    seen.bytes("master key", &master_bytes(&old_master_text));
    seen.bytes("new master key", &master_bytes(&new_master_text));
    let store = deployment.store().await;
    let keys = auth_core::store::KeyStore::list_keys(&store).await.unwrap();
    let mut private = 0;
    for key in &keys {
        let Some(sealed) = key.private_sealed.as_deref() else { continue };
        let master = if key.master_key_id == new_master.id() { &new_master } else { &old_master };
        let pkcs8 = master.open(&key.kid, sealed).expect("every private key opens");
        seen.bytes(&format!("private key {} (PKCS#8)", key.kid), &pkcs8);
        // An Ed25519 PKCS#8 ends with the 32-byte seed: the JWK `d`.
        seen.bytes(&format!("private key {} (seed)", key.kid), &pkcs8[pkcs8.len() - 32..]);
        private += 1;
    }
    assert!(private >= 2, "the key rotated: {keys:#?}");
    store.close().await;

    // Everything the server wrote, while it still runs.
    let log = server.log();
    assert!(log.lines().any(|l| l.contains(" DEBUG ")), "the server logged at debug level:\n{log}");
    seen.logs.push((format!("{} log", server.name), log));
    drop::<Server>(server);

    let mut leaks = Vec::new();
    for (what, value) in &seen.secrets {
        for (source, text) in &seen.logs {
            for line in text.lines().filter(|l| l.contains(value.as_str())) {
                leaks.push(format!("{what} in {source}: {line}"));
            }
        }
    }
    assert!(leaks.is_empty(), "{} secret(s) in the logs:\n{}", leaks.len(), leaks.join("\n"));
    let lines: usize = seen.logs.iter().map(|(_, t)| t.lines().count()).sum();
    eprintln!("searched {lines} log lines for {} secret forms", seen.secrets.len());
}

/// The `kid` in a JWT's header.
fn kid_of(token: &str) -> String {
    let header = token.split('.').next().unwrap_or_default();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}
