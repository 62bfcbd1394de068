//! Generated malformed request bodies (proptest) against the live server: valid requests of each
//! credential endpoint, each broken in exactly one known way and wrapped in harmless noise
//! (parameters or members reordered, unknown parameters, empty pairs, whitespace). Every one must
//! be answered with the 4xx that its defect calls for, in the endpoint's format (RFC 6749 JSON on
//! `/oauth/*`, problem+json on `/v1/users`), must create nothing, and must leave the server
//! serving. The fixed cases are in `bad_input.rs`, `grants.rs` and `signup.rs`; the cargo-fuzz
//! targets in `fuzz/` drive the same decoders with arbitrary bytes.

use std::fmt::Write as _;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

use crate::support::{BACKEND, PASSWORD, Server, TestDb, WEB, header, read_json};

on_both_backends!(malformed_forms_get_oauth_errors, malformed_sign_ups_get_problems);

/// Cases per test and backend: enough to meet every defect several times, a few seconds each.
const CASES: u32 = 96;

/// Runs `check` on `CASES` generated values, blocking this worker thread (the server goes on
/// running on the other one).
fn run<S: Strategy>(strategy: S, check: impl AsyncFn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let config = Config { cases: CASES, failure_persistence: None, ..Config::default() };
    let handle = tokio::runtime::Handle::current();
    let outcome = tokio::task::block_in_place(|| TestRunner::new(config).run(&strategy, |value| handle.block_on(check(value))));
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}

/// The server still serves and holds only `alice`.
async fn assert_unharmed(server: &Server) {
    assert_eq!(server.get("/healthz").await.status(), StatusCode::OK);
    server.login("alice").await;
    let users = server.state.authority.list_users(100, 0).await.expect("list users");
    let names: Vec<&str> = users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["alice"], "malformed requests created users");
}

// ---------------------------------------------------------------------------------------------
// Forms on /oauth/*

/// A valid request of one OAuth endpoint: its path, parameters and whether it carries the
/// confidential client's Basic credentials.
#[derive(Debug, Clone)]
struct FormRequest {
    path: &'static str,
    params: Vec<(String, String)>,
    basic: bool,
}

fn valid_forms() -> Vec<FormRequest> {
    let params = |pairs: &[(&str, &str)]| pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
    vec![
        FormRequest {
            path: "/oauth/token",
            params: params(&[("grant_type", "password"), ("client_id", WEB), ("username", "alice"), ("password", PASSWORD)]),
            basic: false,
        },
        FormRequest {
            path: "/oauth/token",
            params: params(&[("grant_type", "client_credentials"), ("scope", "bookings:read")]),
            basic: true,
        },
        FormRequest { path: "/oauth/revoke", params: params(&[("token", "unknown-token"), ("token_type_hint", "refresh_token")]), basic: true },
        FormRequest { path: "/oauth/introspect", params: params(&[("token", "a.b.c")]), basic: true },
    ]
}

/// Percent-encoded bytes that are not UTF-8 once decoded: a lone lead byte, a lone continuation
/// byte, an overlong `/`, a surrogate, a code point past U+10FFFF, a cut-off sequence, `FF FE`.
const NOT_UTF8: &[&str] = &["%C3", "%80", "%C0%AF", "%ED%A0%80", "%F4%90%80%80", "%E2%82", "%FF%FE"];

/// The one thing wrong with a form.
#[derive(Debug, Clone)]
enum FormDefect {
    /// Another content type, or none.
    ContentType(&'static str),
    /// A required parameter left out (index among the required ones, wrapping).
    Drop(usize),
    /// A required parameter sent empty.
    Empty(usize),
    /// A parameter of the endpoint sent twice (the second value as given).
    Repeat(usize, String),
    /// Percent-encoded bytes that are not UTF-8 in the name or value of a parameter (possibly an
    /// unknown one).
    NotUtf8 { param: usize, in_name: bool, bytes: &'static str },
    /// A raw byte above 0x7F that is not UTF-8.
    RawByte(usize, u8),
    /// An unknown `grant_type` (token endpoint).
    GrantType(String),
    /// An unknown `client_id` (password grant).
    UnknownClient(String),
    /// A wrong password (password grant).
    WrongPassword(String),
}

/// What a defect must be answered with: status, `error`, and the start of `error_description`.
fn expected_oauth(request: &FormRequest, defect: &FormDefect) -> (StatusCode, &'static str, String) {
    let invalid = |description: String| (StatusCode::BAD_REQUEST, "invalid_request", description);
    match defect {
        FormDefect::ContentType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request", "request.unsupported_media_type".into()),
        FormDefect::Drop(i) | FormDefect::Empty(i) => {
            invalid(format!("request.missing_parameter: {}", required(request)[i % required(request).len()]))
        }
        FormDefect::Repeat(i, _) => invalid(format!("request.duplicate_parameter: {}", request.params[i % request.params.len()].0)),
        FormDefect::NotUtf8 { .. } | FormDefect::RawByte(..) => invalid("request.malformed".into()),
        FormDefect::GrantType(_) => (StatusCode::BAD_REQUEST, "unsupported_grant_type", "grant.unsupported".into()),
        FormDefect::UnknownClient(_) => (StatusCode::UNAUTHORIZED, "invalid_client", "auth.invalid_client".into()),
        FormDefect::WrongPassword(_) => (StatusCode::BAD_REQUEST, "invalid_grant", "auth.invalid_credentials".into()),
    }
}

/// The parameters whose absence the endpoint reports (client authentication by Basic aside).
fn required(request: &FormRequest) -> Vec<&str> {
    let names: &[&str] = match (request.path, request.basic) {
        ("/oauth/token", false) => &["grant_type", "client_id", "username", "password"],
        ("/oauth/token", true) => &["grant_type"],
        _ => &["token"],
    };
    names.to_vec()
}

fn form_defect(request: &FormRequest) -> BoxedStrategy<FormDefect> {
    let content_types = vec!["application/json", "text/plain", "multipart/form-data; boundary=x", "", "application/x-www-form-urlencodedx"];
    let mut defects = vec![
        prop::sample::select(content_types).prop_map(FormDefect::ContentType).boxed(),
        any::<usize>().prop_map(FormDefect::Drop).boxed(),
        any::<usize>().prop_map(FormDefect::Empty).boxed(),
        (any::<usize>(), "[a-z0-9 ]{0,8}").prop_map(|(i, v)| FormDefect::Repeat(i, v)).boxed(),
        (any::<usize>(), any::<bool>(), prop::sample::select(NOT_UTF8))
            .prop_map(|(param, in_name, bytes)| FormDefect::NotUtf8 { param, in_name, bytes })
            .boxed(),
        (any::<usize>(), prop_oneof![0x80u8..=0xBF, 0xF8u8..=0xFF]).prop_map(|(at, b)| FormDefect::RawByte(at, b)).boxed(),
    ];
    if request.path == "/oauth/token" {
        defects.push("[a-z_:]{1,20}".prop_filter("a grant type that exists", |g| !["password", "refresh_token", "client_credentials"].contains(&g.as_str())).prop_map(FormDefect::GrantType).boxed());
    }
    if request.path == "/oauth/token" && !request.basic {
        defects.push("[a-z-]{1,20}".prop_filter("a client that exists", |c| c != WEB && c != BACKEND).prop_map(FormDefect::UnknownClient).boxed());
        defects.push("[ -~]{8,40}".prop_filter("the password", |p| p != PASSWORD).prop_map(FormDefect::WrongPassword).boxed());
    }
    prop::strategy::Union::new(defects).boxed()
}

/// Harmless noise: the parameters reordered, unknown ones added, empty pairs.
#[derive(Debug, Clone)]
struct FormNoise {
    order: Vec<prop::sample::Index>,
    unknown: Vec<(String, String)>,
    empty_pairs: bool,
}

fn form_noise() -> impl Strategy<Value = FormNoise> {
    (
        prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        prop::collection::vec(("x_[a-z]{1,6}|state|nonce", "[a-zA-Z0-9%+.]{0,10}"), 0..3),
        any::<bool>(),
    )
        .prop_map(|(order, unknown, empty_pairs)| FormNoise { order, unknown, empty_pairs })
}

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The body, content type and whether Basic credentials go along.
fn broken_form(request: &FormRequest, defect: &FormDefect, noise: &FormNoise) -> (Vec<u8>, &'static str) {
    let mut params = request.params.clone();
    let set = |params: &mut Vec<(String, String)>, name: &str, value: &str| {
        if let Some(param) = params.iter_mut().find(|(n, _)| n == name) {
            param.1 = value.to_owned();
        }
    };
    let mut content_type = "application/x-www-form-urlencoded";
    // Encoded pairs; the raw defects are applied to the encoded text.
    let mut raw_suffix: Option<(usize, String, bool)> = None;
    match defect {
        FormDefect::ContentType(other) => content_type = other,
        FormDefect::Drop(i) => {
            let names = required(request);
            let name = names[i % names.len()];
            params.retain(|(n, _)| n != name);
        }
        FormDefect::Empty(i) => {
            let names = required(request);
            set(&mut params, names[i % names.len()], "");
        }
        FormDefect::Repeat(i, value) => {
            let name = params[i % params.len()].0.clone();
            params.push((name, value.clone()));
        }
        FormDefect::NotUtf8 { param, in_name, bytes } => raw_suffix = Some((*param, (*bytes).to_owned(), *in_name)),
        FormDefect::RawByte(..) => {}
        FormDefect::GrantType(grant) => set(&mut params, "grant_type", grant),
        FormDefect::UnknownClient(client) => set(&mut params, "client_id", client),
        FormDefect::WrongPassword(password) => set(&mut params, "password", password),
    }
    params.extend(noise.unknown.iter().map(|(n, v)| (n.clone(), v.clone())));
    for index in &noise.order {
        // A defect may have left no parameter to reorder (`Index` needs a non-empty collection).
        if params.is_empty() {
            break;
        }
        let at = index.index(params.len());
        let param = params.remove(at);
        params.push(param);
    }
    let mut pairs: Vec<String> = params.iter().map(|(n, v)| format!("{}={}", encode(n), encode(v))).collect();
    if let Some((param, bytes, in_name)) = raw_suffix {
        // Percent-escapes survive as they are: they are added after encoding.
        let at = param % (pairs.len() + 1);
        if at == pairs.len() {
            pairs.push(if in_name { format!("x{bytes}=1") } else { format!("x={bytes}") });
        } else if in_name {
            pairs[at] = format!("{bytes}{}", pairs[at]);
        } else {
            pairs[at].push_str(&bytes);
        }
    }
    let separator = if noise.empty_pairs { "&&" } else { "&" };
    let mut body = pairs.join(separator).into_bytes();
    if let FormDefect::RawByte(at, byte) = defect {
        let at = at % (body.len() + 1);
        body.insert(at, *byte);
    }
    (body, content_type)
}

async fn malformed_forms_get_oauth_errors(db: TestDb) {
    let server = Server::start(db).await;
    server.sign_up("alice").await;
    let secret = server.register_backend().await;
    let cases = prop::sample::select(valid_forms()).prop_flat_map(|request| (Just(request.clone()), form_defect(&request), form_noise()));
    run(cases, async |(request, defect, noise)| {
        let (body, content_type) = broken_form(&request, &defect, &noise);
        let mut builder = server.http.post(server.url(request.path)).body(body.clone());
        if !content_type.is_empty() {
            builder = builder.header(CONTENT_TYPE, content_type);
        }
        if request.basic {
            builder = builder.basic_auth(BACKEND, Some(&secret));
        }
        let response = builder.send().await.expect("POST");
        let (status, headers, answer) = read_json(response).await;
        let (expected_status, error, description) = expected_oauth(&request, &defect);
        let shown = String::from_utf8_lossy(&body);
        prop_assert_eq!(status, expected_status, "{} {:?}: {} for {:?}", request.path, defect, answer, shown);
        prop_assert_eq!(answer["error"].as_str(), Some(error), "{}: {} for {:?}", request.path, answer, shown);
        let text = answer["error_description"].as_str().unwrap_or_default();
        prop_assert!(text.starts_with(&description), "{}: {} for {:?}", request.path, answer, shown);
        prop_assert!(header(&headers, "content-type").starts_with("application/json"));
        prop_assert_eq!(header(&headers, "cache-control"), "no-store");
        Ok(())
    });
    assert_unharmed(&server).await;
}

// ---------------------------------------------------------------------------------------------
// JSON on /v1/users

/// The one thing wrong with a sign-up body.
#[derive(Debug, Clone)]
enum JsonDefect {
    /// Another content type, or none.
    ContentType(&'static str),
    /// The text cut before its end.
    Truncate(usize),
    /// A byte that is never valid in JSON text (a control character or a byte that is not UTF-8)
    /// inserted anywhere.
    InvalidByte(usize, u8),
    /// Text after the object.
    Trailing(&'static str),
    /// Not an object at all.
    NotAnObject(Value),
    /// A member written twice.
    Repeat(usize),
    /// `username`, `password` or `invitation` of another JSON type.
    WrongType(usize, Value),
    /// `username`, `password` or `invitation` left out (without the invitation, the required
    /// `tenant_id` is missing).
    Missing(usize),
    /// A member the spec does not declare.
    Undeclared(String),
    /// A username the rules refuse (empty, blank, control characters, too long).
    BadUsername(String),
    /// A password outside the spec's length bounds.
    BadPassword(String),
    /// The name of the existing user, in another spelling.
    Existing(&'static str),
}

const MEMBERS: [&str; 3] = ["username", "password", "invitation"];

/// Status and problem code of a defect.
fn expected_problem(defect: &JsonDefect) -> (StatusCode, &'static str) {
    match defect {
        JsonDefect::ContentType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "request.unsupported_media_type"),
        JsonDefect::Truncate(_) | JsonDefect::InvalidByte(..) | JsonDefect::Trailing(_) | JsonDefect::NotAnObject(_) | JsonDefect::Repeat(_) => {
            (StatusCode::BAD_REQUEST, "request.malformed")
        }
        JsonDefect::WrongType(..) | JsonDefect::Missing(_) | JsonDefect::Undeclared(_) | JsonDefect::BadUsername(_) | JsonDefect::BadPassword(_) => {
            (StatusCode::BAD_REQUEST, "input.invalid")
        }
        JsonDefect::Existing(_) => (StatusCode::CONFLICT, "input.conflict"),
    }
}

fn json_defect() -> impl Strategy<Value = JsonDefect> {
    let not_json_bytes = prop_oneof![0x00u8..=0x08, Just(0x0B), Just(0x0C), 0x0Eu8..=0x1F, 0x80u8..=0xBF, 0xF8u8..=0xFF];
    let other_types = prop::sample::select(vec![json!(null), json!(7), json!(true), json!(["alice"]), json!({ "name": "x" }), json!(1.5)]);
    prop_oneof![
        prop::sample::select(vec!["application/x-www-form-urlencoded", "text/json", "", "application/jsonx", "multipart/form-data"])
            .prop_map(JsonDefect::ContentType),
        any::<usize>().prop_map(JsonDefect::Truncate),
        (any::<usize>(), not_json_bytes).prop_map(|(at, b)| JsonDefect::InvalidByte(at, b)),
        prop::sample::select(vec!["x", "{}", ",", "]", "\"", "null"]).prop_map(JsonDefect::Trailing),
        prop::sample::select(vec![json!([]), json!("alice"), json!(null), json!(42), json!([{ "username": "x" }])]).prop_map(JsonDefect::NotAnObject),
        (0..MEMBERS.len()).prop_map(JsonDefect::Repeat),
        ((0..MEMBERS.len()), other_types).prop_map(|(i, v)| JsonDefect::WrongType(i, v)),
        (0..MEMBERS.len()).prop_map(JsonDefect::Missing),
        "(role|admin|is_admin|tenant|__proto__|[a-z]{1,8}_x)".prop_map(JsonDefect::Undeclared),
        prop::sample::select(vec![String::new(), "   ".to_owned(), "a\u{0}b".to_owned(), "x\u{7}".to_owned(), "\n".to_owned(), "y".repeat(129)])
            .prop_map(JsonDefect::BadUsername),
        prop::sample::select(vec![String::new(), "short".to_owned(), "seven77".to_owned(), "p".repeat(257)]).prop_map(JsonDefect::BadPassword),
        prop::sample::select(vec!["alice", "ALICE", " Alice ", "\u{ff41}lice"]).prop_map(JsonDefect::Existing),
    ]
}

/// Harmless noise: members reordered, whitespace between tokens, a fresh valid username.
#[derive(Debug, Clone)]
struct JsonNoise {
    username: String,
    order: Vec<prop::sample::Index>,
    space: &'static str,
}

fn json_noise() -> impl Strategy<Value = JsonNoise> {
    ("gen-[a-z0-9]{3,12}", prop::collection::vec(any::<prop::sample::Index>(), 0..3), prop::sample::select(vec!["", " ", "\n", "\t ", "\r\n"]))
        .prop_map(|(username, order, space)| JsonNoise { username, order, space })
}

/// The body and content type. `invitation` is a valid invitation: every case is refused before it
/// is spent, or (a taken username) gives it back.
fn broken_sign_up(defect: &JsonDefect, noise: &JsonNoise, invitation: &str) -> (Vec<u8>, &'static str) {
    let mut members: Vec<(String, Value)> =
        vec![("username".into(), json!(noise.username)), ("password".into(), json!(PASSWORD)), ("invitation".into(), json!(invitation))];
    let mut content_type = "application/json";
    match defect {
        JsonDefect::ContentType(other) => content_type = other,
        JsonDefect::Repeat(i) => members.push(members[*i].clone()),
        JsonDefect::WrongType(i, value) => members[*i].1 = value.clone(),
        JsonDefect::Missing(i) => {
            members.remove(*i);
        }
        JsonDefect::Undeclared(name) => members.push((name.clone(), json!("x"))),
        JsonDefect::BadUsername(name) => members[0].1 = json!(name),
        JsonDefect::BadPassword(password) => members[1].1 = json!(password),
        JsonDefect::Existing(name) => members[0].1 = json!(name),
        _ => {}
    }
    for index in &noise.order {
        if members.is_empty() {
            break;
        }
        let at = index.index(members.len());
        let member = members.remove(at);
        members.push(member);
    }
    let space = noise.space;
    let mut text = format!("{{{space}");
    for (i, (name, value)) in members.iter().enumerate() {
        if i > 0 {
            let _ = write!(text, ",{space}");
        }
        let _ = write!(text, "{}{space}:{space}{value}", json!(name));
    }
    let _ = write!(text, "{space}}}");
    let mut body = match defect {
        JsonDefect::NotAnObject(value) => value.to_string().into_bytes(),
        JsonDefect::Trailing(extra) => format!("{text} {extra}").into_bytes(),
        _ => text.into_bytes(),
    };
    match defect {
        JsonDefect::Truncate(at) => body.truncate(at % body.len()),
        JsonDefect::InvalidByte(at, byte) => body.insert(at % (body.len() + 1), *byte),
        _ => {}
    }
    (body, content_type)
}

async fn malformed_sign_ups_get_problems(db: TestDb) {
    let server = Server::start(db).await;
    server.sign_up("alice").await;
    let invitation = server.invitation("t-1").await;
    run((json_defect(), json_noise()), async |(defect, noise)| {
        let (body, content_type) = broken_sign_up(&defect, &noise, &invitation);
        let mut builder = server.http.post(server.url("/v1/users")).body(body.clone());
        if !content_type.is_empty() {
            builder = builder.header(CONTENT_TYPE, content_type);
        }
        let response = builder.send().await.expect("POST /v1/users");
        let (status, headers, problem) = read_json(response).await;
        let (expected_status, code) = expected_problem(&defect);
        let shown = String::from_utf8_lossy(&body);
        prop_assert_eq!(status, expected_status, "{:?}: {} for {:?}", defect, problem, shown);
        prop_assert_eq!(problem["code"].as_str(), Some(code), "{:?}: {} for {:?}", defect, problem, shown);
        prop_assert_eq!(header(&headers, "content-type"), "application/problem+json");
        prop_assert_eq!(problem["status"].as_u64(), Some(u64::from(status.as_u16())));
        prop_assert_eq!(problem["type"].as_str(), Some("about:blank"));
        prop_assert!(problem["title"].is_string());
        Ok(())
    });
    assert_unharmed(&server).await;
}
