//! Branding of the hosted pages from the spec: the service's `[branding]` and a client's own over
//! it, on the pages and in `/ui/brand.css`, with nothing from the request written into either.

use reqwest::StatusCode;

use crate::browser::{BROWSER_CLIENTS, Browser, SPA, SPA_REDIRECT, authorize_path};
use crate::support::{Options, Server, sqlite};

const BRANDING: &str = r##"
[branding]
product_name = "Stays"
accent_color = "#0b5d1e"

[clients.booking-spa.branding]
product_name = "Stays Front Desk"
logo_url = "https://cdn.stays.example/desk.svg"
accent_color = "#5a1e8c"
accent_text_color = "#fffff0"
"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_colours_follow_the_spec_and_the_client() {
    let extra: &'static str = Box::leak(format!("{BROWSER_CLIENTS}{BRANDING}").into_boxed_str());
    let server = Server::start_with(sqlite(), Options { extra_spec: extra, ..Options::default() }).await;
    let mut browser = Browser::default();

    // The client's own branding on its sign-in page.
    let page = browser.get(&server, &authorize_path(SPA, SPA_REDIRECT, &[])).await;
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    let html = page.text().await.unwrap();
    assert!(html.contains("<title>") && html.contains("· Stays Front Desk</title>"), "{html}");
    assert!(html.contains(r#"<img class="logo" src="https://cdn.stays.example/desk.svg" alt="">"#), "{html}");
    assert!(html.contains(r#"<link rel="stylesheet" href="/ui/brand.css?client=booking-spa">"#), "{html}");
    assert!(csp.contains("img-src 'self' https:") && csp.contains("style-src 'self'"), "{csp}");

    // A client without its own gets the service's.
    let html = browser.get(&server, &authorize_path("partner", "https://partner.test/cb", &[])).await.text().await.unwrap();
    assert!(html.contains("· Stays</title>") && !html.contains("class=\"logo\""), "{html}");
    assert!(html.contains(r#"<link rel="stylesheet" href="/ui/brand.css">"#), "{html}");

    let css = |query: &'static str| {
        let http = server.http.clone();
        let url = server.url(&format!("/ui/brand.css{query}"));
        async move {
            let response = http.get(url).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()["content-type"], "text/css; charset=utf-8");
            response.text().await.unwrap()
        }
    };
    assert_eq!(css("").await, ":root { --accent: #0b5d1e; --accent-text: #ffffff; }\n");
    assert_eq!(css("?client=booking-spa").await, ":root { --accent: #5a1e8c; --accent-text: #fffff0; }\n");
    // An unknown client, or anything else, gets the service's colours; nothing is echoed.
    for query in ["?client=%3C%2Fstyle%3E", "?client=partner", "?x=1"] {
        assert_eq!(css(query).await, ":root { --accent: #0b5d1e; --accent-text: #ffffff; }\n", "{query}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_branding_the_pages_name_the_issuer_host() {
    let server = Server::start_with(sqlite(), Options { extra_spec: BROWSER_CLIENTS, ..Options::default() }).await;
    let html = Browser::default().get(&server, &authorize_path(SPA, SPA_REDIRECT, &[])).await.text().await.unwrap();
    assert!(html.contains("· 127.0.0.1</title>"), "{html}");
    let css = server.http.get(server.url("/ui/brand.css")).send().await.unwrap().text().await.unwrap();
    assert_eq!(css, ":root { --accent: #1f5fbf; --accent-text: #ffffff; }\n");
}
