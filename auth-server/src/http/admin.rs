//! The admin API, for confidential clients holding an admin scope of the spec (a scope with
//! `admin = true`, through `client_credentials`): `PATCH /v1/admin/users/{id}/claims` and
//! `POST /v1/admin/invitations`; and `POST /v1/invitations/accept`, by which a signed-in user
//! redeems an invitation. JSON in, problem+json errors.

use std::sync::Arc;
use std::time::Duration;

use auth_core::authority::{Admin, DEFAULT_INVITATION_TTL, MAX_INVITATION_TTL};
use auth_core::{Code, Error};
use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::account::{Account, JsonBody, JsonObject};
use super::error::Problem;
use super::extract::Bearer;
use crate::state::AppState;

/// The longest user id accepted in a path (ids are 22 characters).
const MAX_USER_ID_LEN: usize = 64;

/// The admin routes and invitation acceptance (bearer).
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(set_claims))
        .routes(routes!(create_invitation))
        .routes(routes!(accept_invitation))
}

/// A verified bearer token of a confidential client (no user) that holds an admin scope of the
/// spec; anything else is refused with 403 `auth.insufficient_scope`.
#[derive(Debug)]
pub struct AdminClient {
    /// The token, for its limit headers.
    pub bearer: Bearer,
}

impl FromRequestParts<Arc<AppState>> for AdminClient {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Problem> {
        let bearer = Bearer::from_request_parts(parts, state).await?;
        let admin = |scope: &str| state.spec.scopes.get(scope).is_some_and(|s| s.admin);
        // A user's token never acts as an administrator, whatever its scopes.
        if bearer.claims.sid.is_some() || !bearer.claims.scopes().any(admin) {
            let scopes: Vec<&str> = state.spec.scopes.iter().filter(|(_, s)| s.admin).map(|(n, _)| n.as_str()).collect();
            return Err(Problem::insufficient_scope(&scopes.join(" ")));
        }
        Ok(Self { bearer })
    }
}

impl AdminClient {
    fn admin(&self) -> Admin<'_> {
        Admin::Client(&self.bearer.claims.client_id)
    }
}

/// `PATCH /v1/admin/users/{id}/claims`: a JSON Merge Patch (RFC 7396) of the user's claims.
#[utoipa::path(
    patch,
    path = "/v1/admin/users/{id}/claims",
    tag = "admin",
    params(("id" = String, Path, description = "The user id (`sub`)")),
    request_body(content = ClaimsPatch, content_type = "application/json"),
    responses(
        (status = 200, description = "The user with its new claims (tokens carry them from the next refresh)", body = Account),
        (status = 400, response = crate::http::openapi::ProblemBadRequest),
        (status = 403, response = crate::http::openapi::ProblemForbidden),
        (status = 404, response = crate::http::openapi::ProblemNotFound),
        crate::http::openapi::JsonBodyRefusals,
        crate::http::openapi::BearerRefusals,
    ),
    security(("bearer" = [])),
)]
pub async fn set_claims(
    State(state): State<Arc<AppState>>,
    admin: AdminClient,
    Path(id): Path<String>,
    JsonBody(ClaimsPatch(changes)): JsonBody<ClaimsPatch>,
) -> Result<Response, Problem> {
    if id.len() > MAX_USER_ID_LEN {
        return Err(Problem::from(Error::NotFound("user".to_owned())));
    }
    let user = state.authority.set_user_claims(&id, &changes, admin.admin()).await?;
    Ok(admin.bearer.with_limit_headers(Json(Account::from(user)).into_response()))
}

/// The body of `PATCH /v1/admin/users/{id}/claims`: claim name to new value; `null` removes an
/// optional claim.
#[derive(Debug, Clone, PartialEq, ToSchema)]
#[schema(value_type = BTreeMap<String, Value>)]
pub struct ClaimsPatch(pub Map<String, Value>);

impl TryFrom<JsonObject> for ClaimsPatch {
    type Error = Problem;

    fn try_from(object: JsonObject) -> Result<Self, Problem> {
        Ok(Self(object.0))
    }
}

/// The body of `POST /v1/admin/invitations`.
#[derive(Debug, Clone, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvitationRequest {
    /// The claims the invitation sets: at least one, each declared, of its type.
    #[schema(value_type = BTreeMap<String, Value>)]
    pub claims: Map<String, Value>,
    /// Reserve the invitation for this username.
    #[schema(value_type = String, required = false, max_length = 128)]
    pub username: Option<String>,
    /// Seconds it can be redeemed: default 7 days, at most 30 days.
    #[schema(value_type = u64, required = false, minimum = 1, maximum = 2_592_000)]
    pub expires_in: Option<Duration>,
}

impl TryFrom<JsonObject> for InvitationRequest {
    type Error = Problem;

    fn try_from(mut body: JsonObject) -> Result<Self, Problem> {
        let claims = match body.0.remove("claims") {
            Some(Value::Object(claims)) => claims,
            Some(_) => return Err(Error::invalid("claims", "must be an object").into()),
            None => return Err(Error::invalid("claims", "is required").into()),
        };
        let username = body.take_string("username")?;
        let expires_in = match body.0.remove("expires_in") {
            None => None,
            Some(value) => Some(
                value
                    .as_u64()
                    .filter(|&secs| (1..=MAX_INVITATION_TTL.as_secs()).contains(&secs))
                    .map(Duration::from_secs)
                    .ok_or_else(|| Error::invalid("expires_in", format!("must be 1 to {} seconds", MAX_INVITATION_TTL.as_secs())))?,
            ),
        };
        body.finish()?;
        Ok(Self { claims, username, expires_in })
    }
}

/// The body of `POST /v1/invitations/accept`.
#[derive(Debug, Clone, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitation {
    /// The invitation token.
    #[schema(max_length = 64)]
    pub invitation: String,
}

impl TryFrom<JsonObject> for AcceptInvitation {
    type Error = Problem;

    fn try_from(mut body: JsonObject) -> Result<Self, Problem> {
        let invitation = body.require_string("invitation")?;
        body.finish()?;
        Ok(Self { invitation })
    }
}

/// The answer of `POST /v1/admin/invitations`.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationCreated {
    /// The invitation token (shown once): pass it to the invitee, who sends it as `invitation`
    /// at sign-up or to `POST /v1/invitations/accept`.
    pub invitation: String,
    /// When it stops being redeemable (Unix seconds).
    pub expires_at: i64,
}

/// `POST /v1/admin/invitations` `{ "claims": {...}, "username"?: "...", "expires_in"?: seconds }`.
#[utoipa::path(
    post,
    path = "/v1/admin/invitations",
    tag = "admin",
    request_body(content = InvitationRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The invitation", body = InvitationCreated),
        (status = 400, response = crate::http::openapi::ProblemBadRequest),
        (status = 403, response = crate::http::openapi::ProblemForbidden),
        crate::http::openapi::JsonBodyRefusals,
        crate::http::openapi::BearerRefusals,
    ),
    security(("bearer" = [])),
)]
pub async fn create_invitation(
    State(state): State<Arc<AppState>>,
    admin: AdminClient,
    JsonBody(request): JsonBody<InvitationRequest>,
) -> Result<Response, Problem> {
    let InvitationRequest { claims, username, expires_in } = request;
    let ttl = expires_in.unwrap_or(DEFAULT_INVITATION_TTL);
    let invitation = state.authority.create_invitation(claims, username.as_deref(), ttl, admin.admin()).await?;
    let created = InvitationCreated { invitation: invitation.token, expires_at: invitation.expires_at };
    Ok(admin.bearer.with_limit_headers((StatusCode::CREATED, Json(created)).into_response()))
}

/// `POST /v1/invitations/accept` `{ "invitation": "..." }`: the signed-in user joins what the
/// invitation grants (its claims replace the account's, in tokens from the next refresh on).
#[utoipa::path(
    post,
    path = "/v1/invitations/accept",
    tag = "users",
    request_body(content = AcceptInvitation, content_type = "application/json"),
    responses(
        (status = 200, description = "The account with its new claims", body = Account),
        (status = 400, response = crate::http::openapi::ProblemBadRequest),
        (status = 403, response = crate::http::openapi::ProblemForbidden),
        crate::http::openapi::JsonBodyRefusals,
        crate::http::openapi::BearerRefusals,
    ),
    security(("bearer" = [])),
)]
pub async fn accept_invitation(
    State(state): State<Arc<AppState>>,
    bearer: Bearer,
    JsonBody(AcceptInvitation { invitation }): JsonBody<AcceptInvitation>,
) -> Result<Response, Problem> {
    if bearer.claims.sid.is_none() {
        return Err(Problem::new(StatusCode::BAD_REQUEST, Code::SessionNone, "The token belongs to no user"));
    }
    let user = state.authority.accept_invitation(&bearer.claims.sub, &invitation).await.map_err(|e| match e {
        Error::InvalidCredentials => Problem::invalid_token(Code::TokenSubjectUnknown),
        other => Problem::from(other),
    })?;
    Ok(bearer.with_limit_headers(Json(Account::from(user)).into_response()))
}
