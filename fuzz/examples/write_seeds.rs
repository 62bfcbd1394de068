//! Writes the seed corpora of the fuzz targets into `fuzz/seeds/<target>/` (committed; run again
//! after changing the fixture keys, the input formats or the booking spec):
//!
//! ```sh
//! cd fuzz && cargo run --example write_seeds
//! ```
//!
//! `spec_parse` also reads `fixtures/specs/` directly (see `run.sh`).

// A seed that cannot be written stops the program with the reason.
#![allow(clippy::panic, clippy::expect_used, clippy::print_stdout)]

use std::path::Path;

use auth_fuzz::server::{CONTENT_TYPES, PASSWORD, ROUTES};
use auth_fuzz::tokens::{fixture, seed_tokens};

/// Index of a content type in [`CONTENT_TYPES`].
fn content_type(name: &str) -> u8 {
    let index = CONTENT_TYPES.iter().position(|c| *c == name).unwrap_or_else(|| panic!("no content type {name}"));
    u8::try_from(index).expect("eight content types")
}

fn route(path: &str) -> u8 {
    let index = ROUTES.iter().position(|r| *r == path).unwrap_or_else(|| panic!("no route {path}"));
    u8::try_from(index).expect("four routes")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

fn prefixed(prefix: &[u8], body: &str) -> Vec<u8> {
    [prefix, body.as_bytes()].concat()
}

/// Forms of the OAuth endpoints, valid and not.
fn forms() -> Vec<(&'static str, &'static str, String)> {
    let password = PASSWORD.replace(' ', "+");
    vec![
        ("token", "password", format!("grant_type=password&client_id=booking-web&username=alice&password={password}")),
        ("token", "password-scope", format!("grant_type=password&client_id=booking-web&username=alice&password={password}&scope=bookings%3Aread")),
        ("token", "refresh", "grant_type=refresh_token&client_id=booking-web&refresh_token=abc".to_owned()),
        ("token", "client-credentials", "grant_type=client_credentials&scope=bookings:read".to_owned()),
        ("token", "duplicate", "grant_type=password&grant_type=password&client_id=booking-web".to_owned()),
        ("token", "percent", "grant_type=pass%77ord&client_id=booking%2Dweb&username=%41lice&password=%zz%4".to_owned()),
        ("token", "not-utf8", "grant_type=password&username=%FF%FE&password=%C3".to_owned()),
        ("revoke", "revoke", "token=abc&token_type_hint=refresh_token".to_owned()),
        ("introspect", "introspect", "token=a.b.c&client_id=booking-backend".to_owned()),
        ("introspect", "unknown-repeated", "x=1&x=2&&=&token".to_owned()),
    ]
}

/// Sign-up bodies, valid and not.
fn sign_ups() -> Vec<(&'static str, String)> {
    vec![
        ("valid", format!(r#"{{"username":"bob","password":"{PASSWORD}","tenant_id":"t-1"}}"#)),
        ("duplicate", format!(r#"{{"username":"bob","password":"{PASSWORD}","username":"alice"}}"#)),
        ("wrong-types", r#"{"username":7,"password":["x"],"tenant_id":null}"#.to_owned()),
        ("array", r#"[{"username":"bob"}]"#.to_owned()),
        ("escapes", r#"{"username":"\u00e9\ud83d\ude00","password":"\u0000\n\t12345678","tenant_id":"\ud800"}"#.to_owned()),
        ("nested", r#"{"username":"carol","password":"correct horse battery","tenant_id":{"a":[1,2.5,-0,1e400]}}"#.to_owned()),
    ]
}

/// Specs for `spec_parse` beside the fixtures: the smallest valid one and a few refused ones.
const SPECS: &[(&str, &str)] = &[
    ("minimal.toml", "spec_version = 1\nissuer = \"https://auth.example\"\naudiences = [\"api\"]\n"),
    (
        "unknown-field.toml",
        "spec_version = 1\nissuer = \"https://auth.example\"\naudiences = [\"api\"]\n\n[tokens]\nlee_way = \"30s\"\n",
    ),
    (
        "bad-duration.toml",
        "spec_version = 1\nissuer = \"https://auth.example\"\naudiences = [\"api\"]\n[tokens]\naccess_ttl = \"15 minutes\"\n",
    ),
    (
        "retire-too-soon.toml",
        "spec_version = 1\nissuer = \"https://auth.example\"\naudiences = [\"api\"]\n[keys]\nretire_after = \"10m\"\n",
    ),
    (
        "undeclared-scope.toml",
        "spec_version = 1\nissuer = \"http://127.0.0.1:8080\"\naudiences = [\"api\"]\n[scopes.\"a:read\"]\nrate_limit = { burst = 1, per = \"1s\" }\n[claims.tenant]\ntype = \"string_array\"\nrequired = true\n[clients.web]\npublic = true\ngrants = [\"password\", \"refresh_token\"]\nscopes = [\"a:write\"]\n",
    ),
];

fn main() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");

    let fixture = fixture();
    for (name, token) in seed_tokens(fixture) {
        write(&seeds.join("token_bytes"), name, token.as_bytes());
    }
    // An empty input makes every choice its first one: the honest EdDSA token.
    write(&seeds.join("token_structured"), "honest", b"");

    for (name, text) in SPECS {
        write(&seeds.join("spec_parse"), name, text.as_bytes());
    }

    let form = content_type("application/x-www-form-urlencoded");
    for (endpoint, name, body) in forms() {
        let set = if endpoint == "token" { 0 } else { 0x80 };
        write(&seeds.join("server_form"), &format!("{endpoint}-{name}"), &prefixed(&[form | set], &body));
        // Selector: route in bits 0-1, content type in bits 2-4; then Basic credentials of the
        // confidential client for revocation and introspection.
        let selector = route(&format!("/oauth/{endpoint}")) | form << 2;
        let authorization = if endpoint == "token" { 0 } else { 1 };
        write(&seeds.join("server_router"), &format!("{endpoint}-{name}"), &prefixed(&[selector, authorization], &body));
    }
    let json = content_type("application/json");
    for (name, body) in sign_ups() {
        write(&seeds.join("server_signup_json"), name, &prefixed(&[json], &body));
        let selector = route("/v1/users") | json << 2;
        write(&seeds.join("server_router"), &format!("users-{name}"), &prefixed(&[selector, 0], &body));
    }
    println!("seeds written to {}", seeds.display());
}
