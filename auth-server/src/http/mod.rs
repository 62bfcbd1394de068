//! The HTTP side: the router assembled from one module per area, each returning its routes with
//! their OpenAPI documentation (utoipa-axum), the middleware around every request, and serving.
//!
//! ```text
//! oauth/      POST /oauth/token (grants from auth-core's registry), /oauth/revoke, /oauth/introspect
//! account     POST /v1/users, GET /userinfo, /v1/sessions, DELETE /v1/sessions/{sid}, POST /v1/logout,
//!             GET /v1/consents, DELETE /v1/consents/{client_id}
//! admin       PATCH /v1/admin/users/{id}/claims, POST /v1/admin/invitations (admin scope); POST /v1/invitations/accept
//! wellknown   GET /.well-known/jwks.json, /.well-known/oauth-authorization-server
//! ops         GET /healthz, /readyz, /metrics, /openapi.json
//! ```
//!
//! Each group of routes is given its error format ([`ErrorFormat`]) here, where it is assembled:
//! the answers made around its handlers (per-IP refusals, the request deadline, 405) speak it.

pub mod account;
pub mod admin;
pub mod connections;
pub mod error;
pub mod extract;
pub mod oauth;
pub mod openapi;
pub mod ops;
pub mod ui;
pub mod wellknown;

use std::sync::Arc;

use auth_core::Code;
use axum::Router;
use axum::body::{Body, HttpBody as _};
use axum::http::{HeaderValue, Method, StatusCode, Version, header};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::handler::Handler as _;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse as _, Response};
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::PeerIpKeyExtractor;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use self::connections::BodyDeadline;
use self::error::ErrorFormat;
use crate::background::spawn_background;
use crate::state::AppState;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The routes of every area with their documentation, each on the state it needs.
struct Areas {
    /// Token and revoke: behind the per-IP limit.
    credentials: OpenApiRouter<Arc<AppState>>,
    introspection: OpenApiRouter<Arc<AppState>>,
    /// Sign-up: behind the per-IP limit.
    sign_up: OpenApiRouter<Arc<AppState>>,
    account: OpenApiRouter<Arc<AppState>>,
    admin: OpenApiRouter<Arc<AppState>>,
    wellknown: OpenApiRouter<Arc<wellknown::WellKnown>>,
    ops: OpenApiRouter<Arc<AppState>>,
    document: OpenApiRouter<openapi::OpenApiJson>,
}

/// The routers of the areas, each still on its own state.
struct Routers {
    credentials: Router<Arc<AppState>>,
    introspection: Router<Arc<AppState>>,
    sign_up: Router<Arc<AppState>>,
    account: Router<Arc<AppState>>,
    admin: Router<Arc<AppState>>,
    wellknown: Router<Arc<wellknown::WellKnown>>,
    ops: Router<Arc<AppState>>,
    document: Router<openapi::OpenApiJson>,
}

impl Areas {
    fn new() -> Self {
        Self {
            credentials: oauth::credential_routes(),
            introspection: oauth::introspection_routes(),
            sign_up: account::sign_up_routes(),
            account: account::routes(),
            admin: admin::routes(),
            wellknown: wellknown::routes(),
            ops: ops::routes(),
            document: openapi::routes(),
        }
    }

    /// The routers (405 in problem+json) and the document of their routes, before the spec is
    /// patched in.
    fn split(self) -> (Routers, OpenApi) {
        let mut api = openapi::ApiDoc::base();
        let routers = Routers {
            credentials: take(self.credentials, &mut api),
            introspection: take(self.introspection, &mut api),
            sign_up: take(self.sign_up, &mut api),
            account: take(self.account, &mut api),
            admin: take(self.admin, &mut api),
            wellknown: take(self.wellknown, &mut api),
            ops: take(self.ops, &mut api),
            document: take(self.document, &mut api),
        };
        (routers, api)
    }
}

/// The router of an area, its documentation merged into `api`; 405 in problem+json.
fn take<S: Clone + Send + Sync + 'static>(routes: OpenApiRouter<S>, api: &mut OpenApi) -> Router<S> {
    let (router, part) = routes.split_for_parts();
    api.merge(part);
    router.method_not_allowed_fallback(error::method_not_allowed)
}

/// The OpenAPI document of every route, for a spec (what `/openapi.json` serves).
pub fn api_document(spec: &auth_core::spec::Spec) -> OpenApi {
    openapi::document(spec, Areas::new().split().1)
}

/// The router: each area on its state, in its error format, credential endpoints behind one
/// per-IP limit shared by all of them.
pub fn router(state: Arc<AppState>) -> Router {
    let per_ip = GovernorConfigBuilder::default()
        .period(state.config.per_ip_period)
        .burst_size(state.config.per_ip_burst.max(1))
        .key_extractor(PeerIpKeyExtractor)
        .finish()
        .map(Arc::new);
    let limited = |router: Router<Arc<AppState>>, format: ErrorFormat| match &per_ip {
        Some(per_ip) => {
            let refused = state.metrics.rate_limited.with_label_values(&["per_ip"]);
            router.layer(GovernorLayer::new(per_ip.clone()).error_handler(move |e| {
                refused.inc();
                format.per_ip_refusal(e)
            }))
        }
        None => router,
    };
    let around = |format| from_fn_with_state(Around { state: state.clone(), format, personal: false }, around_every_request);
    // Answers about a user (claims, sessions) are never stored by caches.
    let personal = |format| from_fn_with_state(Around { state: state.clone(), format, personal: true }, around_every_request);

    let (routers, api) = Areas::new().split();
    // The browser's side: the authorization endpoint and the pages (not in the API document yet).
    let pages = ui::routes()
        .route("/oauth/authorize", axum::routing::get(oauth::authorize::authorize).post(oauth::authorize::authorize))
        .route("/oauth/end-session", axum::routing::get(oauth::end_session::end_session).post(oauth::end_session::end_session))
        .route("/sign-out", axum::routing::post(oauth::end_session::sign_out));
    // The hosted forms: behind the per-IP limit of the credential endpoints.
    let sign_in = Router::new()
        .route("/sign-in", axum::routing::post(oauth::authorize::sign_in))
        .route("/consent", axum::routing::post(oauth::authorize::consent));
    let wellknown = routers.wellknown.with_state(Arc::new(wellknown::WellKnown::new(state.clone())));
    let document = routers.document.with_state(openapi::OpenApiJson::new(&openapi::document(&state.spec, api)));

    // Browser apps of the spec's web origins may call the token and revocation endpoints and the
    // user's own endpoints (UserInfo, sessions) from script; nothing else is opened to them.
    let cors = cors_layer(&state.spec);
    let with_cors = |router: Router<Arc<AppState>>| match &cors {
        Some(cors) => router.layer(cors.clone()),
        None => router,
    };
    Router::new()
        .merge(with_cors(limited(routers.credentials, ErrorFormat::OAuth).layer(around(ErrorFormat::OAuth))))
        .merge(routers.introspection.layer(around(ErrorFormat::OAuth)))
        .merge(limited(routers.sign_up, ErrorFormat::Problem).layer(personal(ErrorFormat::Problem)))
        .merge(with_cors(routers.account.layer(personal(ErrorFormat::Problem))))
        .merge(routers.admin.layer(personal(ErrorFormat::Problem)))
        .merge(wellknown.layer(around(ErrorFormat::Problem)))
        .merge(routers.ops.layer(around(ErrorFormat::Problem)))
        .merge(document.layer(around(ErrorFormat::Problem)))
        .merge(pages.layer(around(ErrorFormat::Page)))
        .merge(limited(sign_in, ErrorFormat::Page).layer(around(ErrorFormat::Page)))
        .fallback(error::not_found.layer(around(ErrorFormat::Problem)))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// CORS for the web origins the spec's clients list (exact origins; preflights answered);
/// `None` when no client lists one.
fn cors_layer(spec: &auth_core::spec::Spec) -> Option<tower_http::cors::CorsLayer> {
    let origins: Vec<HeaderValue> = spec
        .clients
        .values()
        .flat_map(|c| &c.web_origins)
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    Some(
        tower_http::cors::CorsLayer::new()
            .allow_origin(tower_http::cors::AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([header::RETRY_AFTER, header::WWW_AUTHENTICATE])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// What the middleware around a group of routes needs.
#[derive(Clone)]
struct Around {
    state: Arc<AppState>,
    format: ErrorFormat,
    /// Whether the answers concern a user (`Cache-Control: no-store` on every one).
    personal: bool,
}

/// The method as a metric label: one of the standard methods, else `OTHER` (a client may send any
/// token as a method; each would be a new series).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}

/// What is done around every request, in one layer (it runs on every request):
///
/// - **A deadline.** A request not completed within `request_timeout` is answered 503 in the
///   group's format. Requests that wait on the database are bounded anyway when it refuses
///   connections (the pool's acquire timeout); this bounds those caught by a database that stops
///   answering mid-query, whose connection would otherwise hang until the operating system gives
///   up on it. The abandoned work is dropped: an open transaction is rolled back by the database
///   when its connection goes.
/// - **No caching of OAuth answers.** Token responses and their errors (RFC 6749 section 5.1) and
///   token state from introspection (RFC 7662) must not be stored: the handlers set
///   `Cache-Control: no-store` and `Pragma: no-cache` on their own answers; this sets them on the
///   ones made around a handler as well (per-IP refusals, 405, the deadline's 503).
/// - **Metrics** of every request by its matched route, method and status, with its latency;
///   every label comes from a bounded set (matched routes, standard methods, status codes).
/// - **HTTP/1.1 framing.** A request without exactly one `Host` header is refused with 400 (RFC
///   9112 section 3.2); a 413 closes the connection and says so (`Connection: close`), since the
///   rest of the body was not read.
/// - **A body deadline.** A body must arrive within `body_read` of the request's head; a slower
///   one is answered 408 in the group's format, and the connection closed.
/// - **`X-Content-Type-Options: nosniff`** on every answer, and `Cache-Control: no-store` on the
///   answers about a user (sign-up, userinfo, sessions, the admin API).
async fn around_every_request(State(around): State<Around>, request: Request, next: Next) -> Response {
    let Around { state, format, personal } = around;
    // Shared handles, not copies.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = method_label(request.method());
    let http1 = request.version() <= Version::HTTP_11;
    let started = std::time::Instant::now();
    let timeout = state.config.request_timeout;
    let hosts = request.headers().get_all(header::HOST).iter().count();
    let request = if request.body().is_end_stream() {
        request
    } else {
        let within = state.config.connections.body_read;
        request.map(|body| Body::new(BodyDeadline::new(body, within)))
    };
    let mut response = if request.version() == Version::HTTP_11 && hosts != 1 {
        format.bad_request(Code::RequestInvalidHost, "an HTTP/1.1 request has exactly one Host header")
    } else {
        match tokio::time::timeout(timeout, next.run(request)).await {
            Ok(response) => response,
            Err(_) => {
                tracing::warn!(route, timeout_secs = timeout.as_secs_f64(), "request not completed in time; answered 503");
                format.timeout(timeout).into_response()
            }
        }
    };
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if format.no_store() || personal {
        for (name, value) in error::no_store() {
            headers.insert(name, value);
        }
    }
    if http1 && matches!(response.status(), StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT) {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    state.metrics.record(route, method, response.status().as_str(), started.elapsed());
    response
}

/// Serves until SIGTERM or Ctrl-C, then drains in-flight requests (see [`connections`] for the
/// bounds on each connection).
pub async fn serve(state: Arc<AppState>, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let background = spawn_background(state.clone());
    let limits = state.config.connections;
    let metrics = state.metrics.clone();
    connections::serve(listener, router(state.clone()), limits, metrics, shutdown_signal()).await;
    background.abort();
    // Refusals still being counted are written before the process ends.
    if let Err(e) = state.authority.flush_refusals(true).await {
        tracing::warn!(error = %e, "could not write the summaries of repeated refusals");
    }
    // Back-channel logouts of the last sign-outs get one try's time to go out.
    if !state.logouts.wait_idle(crate::backchannel::TIMEOUT).await {
        tracing::warn!("shutting down with back-channel logouts still undelivered");
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: draining in-flight requests");
}
