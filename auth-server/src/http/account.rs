//! The account endpoints: sign-up, userinfo, sessions and consents (`POST /v1/users`,
//! `GET /userinfo`, `GET /v1/sessions`, `DELETE /v1/sessions/{sid}`, `POST /v1/logout[?all=true]`,
//! `GET /v1/consents`, `DELETE /v1/consents/{client_id}`). JSON in, problem+json errors.
//!
//! In the HTTP API a "session" is what a user sees as one login: a refresh family in auth-core
//! (`sid` is the family's id).

use std::net::SocketAddr;
use std::sync::Arc;

use auth_core::{Code, Error};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::Problem;
use super::extract::Bearer;
use crate::state::AppState;

/// Sign-up, which the caller puts behind the per-IP limit.
pub fn sign_up_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(sign_up))
}

/// Userinfo and the caller's sessions (bearer).
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(userinfo))
        .routes(routes!(sessions))
        .routes(routes!(end_session))
        .routes(routes!(logout))
        .routes(routes!(consents))
        .routes(routes!(revoke_consent))
}

/// `POST /v1/users` `{ "username", "password", <custom claims>... }` -> 201.
#[utoipa::path(
    post,
    path = "/v1/users",
    tag = "users",
    request_body(content = SignUpRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The user was created", body = Account),
        (status = 400, response = crate::http::openapi::ProblemBadRequest),
        (status = 403, response = crate::http::openapi::ProblemForbidden),
        (status = 409, response = crate::http::openapi::ProblemConflict),
        crate::http::openapi::JsonBodyRefusals,
        (status = 429, response = crate::http::openapi::ProblemTooManyRequests),
        (status = 500, response = crate::http::openapi::ProblemServerError),
        (status = 503, response = crate::http::openapi::ProblemUnavailable),
    ),
    security(()),
)]
pub async fn sign_up(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: SignUpRequest,
) -> Result<(StatusCode, Json<Account>), Problem> {
    // The spec's per-address sign-up limit, on top of the per-IP request limit.
    if let Err(e) = state.authority.admit_sign_up(peer.ip()).await {
        if matches!(e, Error::TooManySignUps { .. }) {
            state.metrics.rate_limited.with_label_values(&["sign_up"]).inc();
        }
        return Err(e.into());
    }
    let SignUpRequest { username, password, invitation, claims } = body;
    let user = state.authority.sign_up(&username, &password, claims, invitation.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(Account::from(user))))
}

/// The body of `POST /v1/users`: credentials plus the spec's custom claims as top-level members.
// Decoded by `decode_sign_up`, not yet checked against the spec; the document adds the spec's
// claims and the username and password rules to the schema.
#[derive(Debug, Clone, PartialEq, ToSchema)]
pub struct SignUpRequest {
    /// The username: 1 to 128 characters as sent, RFC 8265 (PRECIS UsernameCaseMapped) userparts
    /// separated by spaces, stored lowercased; a name that looks like a taken one (UTS #39
    /// skeleton) is a conflict.
    pub username: String,
    /// The password, checked against the spec's password policy (its length in characters after
    /// Unicode NFC).
    #[schema(format = Password)]
    pub password: String,
    /// An invitation: it sets the claims that users cannot set themselves (a tenant, a role).
    #[schema(value_type = String, required = false, max_length = 64)]
    pub invitation: Option<String>,
    /// The spec's custom claims that users set themselves (`set_by = "user"`).
    #[serde(flatten)]
    #[schema(value_type = BTreeMap<String, Value>)]
    pub claims: Map<String, Value>,
}

/// A user account.
#[derive(Debug, Serialize, ToSchema)]
pub struct Account {
    /// Stable opaque id: the `sub` of the user's tokens.
    pub id: String,
    /// The normalized username.
    pub username: String,
    /// The user's custom claims.
    #[schema(value_type = Object)]
    pub claims: Map<String, Value>,
    /// When the account was created (Unix seconds).
    pub created_at: i64,
}

impl From<auth_core::store::UserRecord> for Account {
    fn from(user: auth_core::store::UserRecord) -> Self {
        Self { id: user.id, username: user.username, claims: user.claims, created_at: user.created_at }
    }
}

impl<S: Send + Sync> FromRequest<S> for SignUpRequest {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        let headers = request.headers().clone();
        let body = Bytes::from_request(request, state).await.map_err(Problem::from)?;
        decode_sign_up(&headers, &body)
    }
}

/// A JSON object body with distinct member names, sent as `application/json` (the account and
/// admin endpoints' bodies).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonObject(pub Map<String, Value>);

/// A JSON body decoded into `T` member by member ([`JsonObject`]), so that each refusal names
/// its member (`400 input.invalid`, `<member>: <why>`).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: TryFrom<JsonObject, Error = Problem>> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        let object = JsonObject::from_request(request, state).await?;
        T::try_from(object).map(Self)
    }
}

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        let headers = request.headers().clone();
        let body = Bytes::from_request(request, state).await.map_err(Problem::from)?;
        json_object(&headers, &body).map(Self)
    }
}

impl JsonObject {
    /// Removes and returns the string member `name`; `None` if absent.
    pub fn take_string(&mut self, name: &str) -> Result<Option<String>, Problem> {
        match self.0.remove(name) {
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(Problem::from(Error::invalid(name, "must be a string"))),
            None => Ok(None),
        }
    }

    /// Removes and returns the string member `name`, which must be present.
    pub fn require_string(&mut self, name: &str) -> Result<String, Problem> {
        self.take_string(name)?.ok_or_else(|| Problem::from(Error::invalid(name, "is required")))
    }

    /// Refuses members that nobody took.
    pub fn finish(self) -> Result<(), Problem> {
        match self.0.keys().next() {
            Some(name) => Err(Problem::from(Error::invalid(name.clone(), "is not a member of this body"))),
            None => Ok(()),
        }
    }
}

/// Reads a JSON object body: the content type must be `application/json` (else 415
/// `request.unsupported_media_type`), the body one JSON object with distinct member names (else
/// 400 `request.malformed`).
pub fn json_object(headers: &HeaderMap, body: &[u8]) -> Result<Map<String, Value>, Problem> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, Code::RequestUnsupportedMediaType, "Send application/json"));
    }
    let UniqueMembers(members) = serde_json::from_slice(body).map_err(|e| {
        Problem::new(StatusCode::BAD_REQUEST, Code::RequestMalformed, "The body is not a JSON object").detail(e.to_string())
    })?;
    Ok(members)
}

/// Decodes the body of `POST /v1/users` as [`sign_up`] reads it: a JSON object ([`json_object`]),
/// `username` and `password` strings, `invitation` a string if present (else 400
/// `input.invalid`); the other members are the claims. Public so that the decoding can be fuzzed
/// on its own (`fuzz/`).
pub fn decode_sign_up(headers: &HeaderMap, body: &[u8]) -> Result<SignUpRequest, Problem> {
    let mut object = JsonObject(json_object(headers, body)?);
    let username = object.require_string("username")?;
    let password = object.require_string("password")?;
    let invitation = object.take_string("invitation")?;
    Ok(SignUpRequest { username, password, invitation, claims: object.0 })
}

/// A JSON object whose members all have distinct names. `serde_json` keeps the last of repeated
/// members silently; which one counts would then depend on the parser, so a repeated member is
/// refused like any other malformed body.
struct UniqueMembers(Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueMembers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = UniqueMembers;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<UniqueMembers, A::Error> {
                let mut members = Map::new();
                while let Some(name) = access.next_key::<String>()? {
                    if members.contains_key(&name) {
                        return Err(serde::de::Error::custom(format_args!("duplicate member {name:?}")));
                    }
                    let value: Value = access.next_value()?;
                    members.insert(name, value);
                }
                Ok(UniqueMembers(members))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

/// `GET` or `POST /userinfo` (OpenID Connect Core 5.3.1 asks for both): the user's claims
/// (bearer).
#[utoipa::path(
    method(get, post),
    path = "/userinfo",
    tag = "users",
    responses(
        (status = 200, description = "The subject and, for user sessions, the username and custom claims",
            body = UserInfo, headers(
            ("RateLimit-Policy" = String, description = "The quota of a rate-limited scope of the token, when it has one"),
            ("RateLimit" = String, description = "What is left of that quota"),
        )),
        crate::http::openapi::BearerRefusals,
    ),
    security(("bearer" = [])),
)]
pub async fn userinfo(State(state): State<Arc<AppState>>, bearer: Bearer) -> Result<Response, Problem> {
    let claims = &bearer.claims;
    let mut info = UserInfo { sub: claims.sub.clone(), preferred_username: None, claims: Map::new() };
    if claims.sid.is_some() {
        let user = state.authority.user(&claims.sub).await?;
        let user = user.filter(|u| !u.disabled).ok_or_else(|| Problem::invalid_token(Code::TokenSubjectUnknown))?;
        info.preferred_username = Some(user.username);
        info.claims = user.claims;
    }
    Ok(bearer.with_limit_headers(Json(info).into_response()))
}

/// `GET /userinfo`: the subject, and for user sessions the username and custom claims.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserInfo {
    /// The user id (or the client id, for client-credentials tokens).
    pub sub: String,
    /// The username (user sessions only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub preferred_username: Option<String>,
    /// The spec's custom claims.
    #[serde(flatten)]
    #[schema(value_type = BTreeMap<String, Value>)]
    pub claims: Map<String, Value>,
}

/// What kind of session it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    /// Tokens issued to a client (a refresh family): `client_id` and `scope` say which.
    Token,
    /// A sign-in on the hosted pages (single sign-on across clients); ending it ends the token
    /// sessions that clients started from it.
    Browser,
}

/// One live session of a user.
#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    /// The session id: the `sid` claim of access tokens (token sessions) or of ID tokens
    /// (browser sessions).
    pub sid: String,
    /// Its kind.
    pub kind: SessionKind,
    /// The client it was issued to (token sessions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Its scopes, space-separated (token sessions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// When it began (Unix seconds).
    pub created_at: i64,
    /// When it was last used (browser sessions; Unix seconds, to the minute).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen_at: Option<i64>,
    /// When it ends at the latest: the absolute end of a token session; for a browser session the
    /// earlier of its absolute end and the idle timeout from its last use (Unix seconds).
    pub expires_at: i64,
    /// Whether the calling token belongs to it (for a browser session: was issued from it).
    pub current: bool,
}

/// The answer of `GET /v1/sessions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    /// The caller's live sessions.
    pub sessions: Vec<Session>,
}

/// The answer of `POST /v1/logout`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogoutResult {
    /// How many sessions were ended.
    pub sessions_ended: u64,
}

/// `GET /v1/sessions`: the caller's live sessions.
#[utoipa::path(
    get,
    path = "/v1/sessions",
    tag = "users",
    responses(
        (status = 200, description = "The caller's live sessions", body = SessionList, headers(
            ("RateLimit-Policy" = String, description = "The quota of a rate-limited scope of the token, when it has one"),
            ("RateLimit" = String, description = "What is left of that quota"),
        )),
        crate::http::openapi::BearerRefusals,
    ),
    security(("bearer" = [])),
)]
pub async fn sessions(State(state): State<Arc<AppState>>, bearer: Bearer) -> Result<Response, Problem> {
    let claims = &bearer.claims;
    let families = state.authority.families_of_user(&claims.sub).await?;
    let browser_sessions = state.authority.user_browser_sessions(&claims.sub).await?;
    let current_browser_session = match claims.sid.as_deref() {
        Some(sid) if !browser_sessions.is_empty() => state.authority.browser_session_of_family(sid).await?,
        _ => None,
    };
    let mut sessions: Vec<Session> = browser_sessions
        .iter()
        .map(|b| Session {
            current: current_browser_session.as_deref() == Some(b.id.as_str()),
            sid: b.id.clone(),
            kind: SessionKind::Browser,
            client_id: None,
            scope: None,
            created_at: b.created_at,
            last_seen_at: Some(b.last_seen_at),
            expires_at: state.authority.browser_session_ends_at(b),
        })
        .collect();
    sessions.extend(families.into_iter().map(|f| Session {
        current: claims.sid.as_deref() == Some(f.id.as_str()),
        sid: f.id,
        kind: SessionKind::Token,
        client_id: Some(f.client_id),
        scope: Some(f.scope),
        created_at: f.created_at,
        last_seen_at: None,
        expires_at: f.absolute_expires_at,
    }));
    sessions.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    Ok(bearer.with_limit_headers(Json(SessionList { sessions }).into_response()))
}

/// `DELETE /v1/sessions/{sid}`: ends one of the caller's sessions.
#[utoipa::path(
    delete,
    path = "/v1/sessions/{sid}",
    tag = "users",
    params(("sid" = String, Path, description = "The session id (base64url)", pattern = r"^[A-Za-z0-9_-]{1,64}$")),
    responses(
        (status = 204, description = "The session was ended", headers(
            ("RateLimit-Policy" = String, description = "The quota of a rate-limited scope of the token, when it has one"),
            ("RateLimit" = String, description = "What is left of that quota"),
        )),
        (status = 404, response = crate::http::openapi::ProblemNotFound),
        crate::http::openapi::BearerRefusals,
    ),
    security(("bearer" = [])),
)]
pub async fn end_session(
    State(state): State<Arc<AppState>>,
    Path(sid): Path<String>,
    bearer: Bearer,
) -> Result<Response, Problem> {
    // Another user's session is reported exactly like a missing one.
    let user = &bearer.claims.sub;
    if state.authority.revoke_family(user, &sid).await? || state.authority.end_user_browser_session(user, &sid).await? {
        Ok(bearer.with_limit_headers(StatusCode::NO_CONTENT.into_response()))
    } else {
        Err(Problem::new(StatusCode::NOT_FOUND, Code::SessionNotFound, "No such session"))
    }
}

/// The query of `POST /v1/logout`.
#[derive(Debug)]
pub struct LogoutQuery {
    /// End every session of the user, not only this one.
    pub all: bool,
}

/// `POST /v1/logout` ends this session; `?all=true` ends every session of the user.
#[utoipa::path(
    post,
    path = "/v1/logout",
    tag = "users",
    params(("all" = Option<bool>, Query, description = "End every session of the user, not only this one (`true`/`false`, also `1`/`0`)")),
    responses(
        (status = 200, description = "The sessions were ended", body = LogoutResult, headers(
            ("RateLimit-Policy" = String, description = "The quota of a rate-limited scope of the token, when it has one"),
            ("RateLimit" = String, description = "What is left of that quota"),
        )),
        (status = 400, response = crate::http::openapi::ProblemBadRequest),
        crate::http::openapi::BearerRefusals,
    ),
    security(("bearer" = [])),
)]
pub async fn logout(
    State(state): State<Arc<AppState>>,
    query: LogoutQuery,
    bearer: Bearer,
) -> Result<Response, Problem> {
    let claims = &bearer.claims;
    let ended = if query.all {
        state.authority.revoke_user_families(&claims.sub).await?
    } else {
        let sid = claims
            .sid
            .as_deref()
            .ok_or_else(|| Problem::new(StatusCode::BAD_REQUEST, Code::SessionNone, "This token has no session to end"))?;
        u64::from(state.authority.revoke_token_family(sid).await?)
    };
    Ok(bearer.with_limit_headers(Json(LogoutResult { sessions_ended: ended }).into_response()))
}

/// The query is read strictly: unknown parameters and malformed values are a 400 problem.
impl<S: Send + Sync> FromRequestParts<S> for LogoutQuery {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        let mut parsed = Self { all: false };
        for (name, value) in form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()) {
            match (name.as_ref(), value.as_ref()) {
                ("all", "true" | "1") => parsed.all = true,
                ("all", "false" | "0") => parsed.all = false,
                _ => {
                    return Err(Problem::new(StatusCode::BAD_REQUEST, Code::RequestInvalidQuery, "Invalid query")
                        .detail(format!("unexpected parameter {name}={value}")));
                }
            }
        }
        Ok(parsed)
    }
}

/// What the caller allowed one client on the consent page.
#[derive(Debug, Serialize, ToSchema)]
pub struct Consent {
    /// The client.
    pub client_id: String,
    /// The scopes allowed, sorted.
    pub scopes: Vec<String>,
    /// When the latest of them was allowed (Unix seconds).
    pub granted_at: i64,
}

/// The answer of `GET /v1/consents`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentList {
    /// The caller's consents, by client id.
    pub consents: Vec<Consent>,
}

/// `GET /v1/consents`: what the caller allowed third-party clients.
#[utoipa::path(
    get,
    path = "/v1/consents",
    tag = "users",
    responses(
        (status = 200, description = "The caller's consents", body = ConsentList, headers(
            ("RateLimit-Policy" = String, description = "The quota of a rate-limited scope of the token, when it has one"),
            ("RateLimit" = String, description = "What is left of that quota"),
        )),
        crate::http::openapi::BearerRefusals,
    ),
    security(("bearer" = [])),
)]
pub async fn consents(State(state): State<Arc<AppState>>, bearer: Bearer) -> Result<Response, Problem> {
    let consents = state.authority.consents_of_user(&bearer.claims.sub).await?;
    let consents = consents
        .into_iter()
        .map(|c| Consent { client_id: c.client_id, scopes: c.scopes, granted_at: c.granted_at })
        .collect();
    Ok(bearer.with_limit_headers(Json(ConsentList { consents }).into_response()))
}

/// `DELETE /v1/consents/{client_id}`: withdraws the caller's consent to a client and ends the
/// caller's sessions of that client.
#[utoipa::path(
    delete,
    path = "/v1/consents/{client_id}",
    tag = "users",
    params(("client_id" = String, Path, description = "The client", min_length = 1, max_length = 128)),
    responses(
        (status = 204, description = "The consent was withdrawn and the client's sessions ended", headers(
            ("RateLimit-Policy" = String, description = "The quota of a rate-limited scope of the token, when it has one"),
            ("RateLimit" = String, description = "What is left of that quota"),
        )),
        (status = 404, response = crate::http::openapi::ProblemNotFound),
        crate::http::openapi::BearerRefusals,
    ),
    security(("bearer" = [])),
)]
pub async fn revoke_consent(
    State(state): State<Arc<AppState>>,
    Path(client_id): Path<String>,
    bearer: Bearer,
) -> Result<Response, Problem> {
    // auth-core does not look up a value that cannot be a client id (over 128 bytes, control
    // characters): it is reported like a client without consent.
    if state.authority.revoke_consent(&bearer.claims.sub, &client_id).await? {
        Ok(bearer.with_limit_headers(StatusCode::NO_CONTENT.into_response()))
    } else {
        Err(Problem::new(StatusCode::NOT_FOUND, Code::ConsentNotFound, "No consent to this client"))
    }
}
