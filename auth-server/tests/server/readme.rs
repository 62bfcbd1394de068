//! The README's walkthrough of the sign-in through the browser, run as written: the example spec
//! it names, the user added by the CLI, the authorization URL and the code verifier read from the
//! README itself, the hosted sign-in form, and the code exchange. A change that breaks the README's
//! steps fails here.

use reqwest::StatusCode;
use reqwest::header::{LOCATION, SET_COOKIE};
use serde_json::Value;

use crate::browser::input_value;
use crate::node::repository;
use crate::process::Deployment;

/// The README's value that follows `prefix` on some line, up to the next blank, quote or the end.
fn readme_value(readme: &str, prefix: &str) -> String {
    let start = readme.find(prefix).unwrap_or_else(|| panic!("the README no longer holds {prefix:?}")) + prefix.len();
    readme[start..].split(|c: char| c.is_whitespace() || c == '\'' || c == '"').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_walkthrough_of_the_readme_works() {
    let root = repository();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let spec = std::fs::read_to_string(root.join("examples/browser-sign-in/auth.toml")).unwrap();
    assert!(readme.contains("examples/browser-sign-in/auth.toml"), "the README names the example spec");

    // The README's server listens on 127.0.0.1:8080; here on a free port, the issuer with it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let issuer = format!("http://127.0.0.1:{port}");
    let spec = spec.replace("issuer = \"http://127.0.0.1:8080\"", &format!("issuer = \"{issuer}\""));
    assert!(spec.contains(&issuer), "the example spec's issuer moved");
    let deployment = Deployment::sqlite(&spec);
    let server = deployment.start_on(&format!("127.0.0.1:{port}"), &[]).await;
    // The walkthrough's own section of the README: its password, URL and verifier.
    let readme = &readme[readme.find("### Sign in through the browser").expect("the README's browser walkthrough")..];
    let echoed = &readme[readme.find("echo '").expect("the walkthrough adds a user") + "echo '".len()..];
    let password = &echoed[..echoed.find('\'').unwrap()];
    deployment.cli(&["users", "add", "alice"], Some(&format!("{password}\n"))).await;

    let url = readme_value(readme, "http://127.0.0.1:8080/oauth/authorize?");
    let url = format!("{issuer}/oauth/authorize?{url}");
    // A browser, but one that stops at the redirect back to the app (nothing listens there).
    let http = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = http.get(&url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK, "the sign-in page");
    let cookies: Vec<String> = page
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect();
    let html = page.text().await.unwrap();
    let form = [
        ("csrf", input_value(&html, "csrf")),
        ("authorization", input_value(&html, "authorization")),
        ("username", "alice".to_owned()),
        ("password", password.to_owned()),
    ];
    let signed_in = http
        .post(format!("{issuer}/sign-in"))
        .header("cookie", cookies.join("; "))
        .header("origin", &issuer)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER, "{}", signed_in.text().await.unwrap());
    let location = url::Url::parse(signed_in.headers()[LOCATION].to_str().unwrap()).unwrap();
    assert_eq!(format!("{}://{}{}", location.scheme(), location.authority(), location.path()), "http://127.0.0.1:9000/callback");
    let params: std::collections::HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(params.get("state").map(String::as_str), Some("xyz"));
    assert_eq!(params.get("iss"), Some(&issuer));

    let verifier = readme_value(readme, "code_verifier=");
    let exchange = [
        ("grant_type", "authorization_code"),
        ("client_id", "demo-app"),
        ("redirect_uri", "http://127.0.0.1:9000/callback"),
        ("code", params["code"].as_str()),
        ("code_verifier", verifier.as_str()),
    ];
    let answer = http.post(format!("{issuer}/oauth/token")).form(&exchange).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let tokens: Value = answer.json().await.unwrap();
    for token in ["access_token", "refresh_token", "id_token"] {
        assert!(tokens[token].as_str().is_some_and(|t| !t.is_empty()), "{token} in {tokens}");
    }
    assert_eq!(tokens["scope"], "openid profile bookings:read");
    drop(server);
}
