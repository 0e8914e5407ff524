//! The admin HTTP API: queue status, statistics, one user's activity and
//! the analysis queries, under `/api/v1/admin/user-activities/`, behind
//! bearer authentication; plus its OpenAPI document at
//! `/api/v1/admin/openapi.json`.
//!
//! The server merges [`router`] into the one it serves on `ADMIN_LISTEN`:
//!
//! ```no_run
//! # async fn demo(ctx: activity_processor::Context) {
//! use activity_processor::admin::{self, AdminAuth, AdminState};
//!
//! let auth = AdminAuth::new(Some("a-long-random-token"), None);
//! auth.warn_if_unconfigured();
//! let app: axum::Router = admin::router(AdminState::from_context(&ctx, auth));
//! # let _ = app; }
//! ```
//!
//! Two roles: `admin` calls every endpoint but erasure and export, which
//! only `privacy` may call (`DELETE user/{user_id}`, `user/{user_id}/export`);
//! a token of both roles calls all.
//!
//! Every answer is JSON (but an export's download); every error is
//! `{"error": "<code>", "message": "<text>"}`: 401 (with `WWW-Authenticate:
//! Bearer`) without valid credentials, 403 for valid credentials without
//! the endpoint's role, 400 naming the parameter that is out of bounds.

mod alerts;
mod auth;
mod error;
mod export;
mod handlers;
mod openapi_limits;
mod privacy;
mod profile;

use std::sync::Arc;

use axum::Router;
use axum::http::Method;
use axum::routing::{MethodRouter, delete, get, post};
use sqlx::PgPool;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::privacy::Privacy;
use crate::stats::ProcessorStats;

pub use auth::{ADMIN_ROLE, AdminAuth, Caller, DEFAULT_JWT_MAX_TTL, PRIVACY_ROLE, Role, Secret};
pub use error::{ApiError, ErrorBody};
pub use handlers::{ConsumerStatus, QueueStatus, ShardStatus};

/// Prefix of every admin endpoint.
pub const PREFIX: &str = "/api/v1/admin/user-activities";
/// Where the OpenAPI document is served (no authentication).
pub const OPENAPI_PATH: &str = "/api/v1/admin/openapi.json";

/// What the admin handlers share; cheap to clone.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// Connections to `DATABASE_URL` (the read queries).
    pool: PgPool,
    /// `REDIS_URL`, for the stream figures of `queue-status` (one
    /// connection per request: no state to go stale).
    redis: activity_tracker::RedisClient,
    /// `STREAM_KEY` and `STREAM_SHARDS`; each shard's dead letters are at
    /// `<shard key>:dead`.
    shards: Arc<activity_tracker::StreamShards>,
    /// `CONSUMER_GROUP`, whose pending entries `queue-status` reports.
    consumer_group: Arc<str>,
    /// The consumer's counters (processed totals and rates).
    stats: Arc<ProcessorStats>,
    /// Who may call; read-only after start.
    auth: Arc<AdminAuth>,
    /// The erasure policy and list, the audit of reads.
    privacy: Arc<Privacy>,
}

impl AdminState {
    /// State from its parts.
    pub fn new(
        pool: PgPool,
        redis: impl Into<activity_tracker::RedisClient>,
        stream_key: impl Into<String>,
        consumer_group: impl Into<String>,
        stats: Arc<ProcessorStats>,
        auth: AdminAuth,
    ) -> Self {
        Self {
            pool,
            redis: redis.into(),
            shards: Arc::new(activity_tracker::StreamShards::new(&stream_key.into(), 1)),
            consumer_group: consumer_group.into().into(),
            stats,
            auth: Arc::new(auth),
            privacy: Arc::new(Privacy::default()),
        }
    }

    /// With the stream read as `count` shards (`STREAM_SHARDS`; default 1).
    pub fn with_stream_shards(mut self, count: usize) -> Self {
        self.shards = Arc::new(activity_tracker::StreamShards::new(
            self.shards.stream_key(),
            count,
        ));
        self
    }

    /// With these privacy settings (the default: no key, no audit of reads).
    pub fn with_privacy(mut self, privacy: Arc<Privacy>) -> Self {
        self.privacy = privacy;
        self
    }

    /// State from the running processor's context.
    pub fn from_context(ctx: &crate::Context, auth: AdminAuth) -> Self {
        Self::new(
            ctx.pool.clone(),
            ctx.redis.clone(),
            ctx.config.stream_key.clone(),
            ctx.config.consumer_group.clone(),
            ctx.stats.clone(),
            auth,
        )
        .with_stream_shards(ctx.config.stream_shards)
        .with_privacy(ctx.privacy.clone())
    }
}

/// One authenticated route: its path, method, role and handler. The router
/// and the OpenAPI test both read [`routes`], so a route cannot be missing
/// from the document unnoticed.
struct AdminRoute {
    path: String,
    /// What `handler` answers; read by the OpenAPI test.
    #[cfg_attr(not(test), allow(dead_code))]
    method: Method,
    role: Role,
    handler: MethodRouter<AdminState>,
}

/// Every authenticated route.
fn routes() -> Vec<AdminRoute> {
    let route = |path: &str, method, role, handler| AdminRoute {
        path: format!("{PREFIX}/{path}"),
        method,
        role,
        handler,
    };
    vec![
        route(
            "queue-status",
            Method::GET,
            Role::Admin,
            get(handlers::queue_status),
        ),
        route(
            "statistics",
            Method::GET,
            Role::Admin,
            get(handlers::statistics),
        ),
        route(
            "user/{user_id}",
            Method::GET,
            Role::Admin,
            get(handlers::user),
        ),
        route(
            "user/{user_id}",
            Method::DELETE,
            Role::Privacy,
            delete(privacy::erase_user),
        ),
        route(
            "user/{user_id}/path",
            Method::GET,
            Role::Admin,
            get(handlers::user_path),
        ),
        route(
            "user/{user_id}/profile",
            Method::GET,
            Role::Admin,
            get(profile::user_profile),
        ),
        route(
            "user/{user_id}/export",
            Method::GET,
            Role::Privacy,
            get(export::export_user),
        ),
        route(
            "top-users",
            Method::GET,
            Role::Admin,
            get(handlers::top_users),
        ),
        route("actions", Method::GET, Role::Admin, get(handlers::actions)),
        route("alerts", Method::GET, Role::Admin, get(alerts::list)),
        route("alerts/{id}", Method::GET, Role::Admin, get(alerts::get)),
        route(
            "alerts/{id}/acknowledge",
            Method::POST,
            Role::Admin,
            post(alerts::acknowledge),
        ),
    ]
}

/// The admin API: every path under [`PREFIX`] behind bearer
/// authentication of its role, and the OpenAPI document at
/// [`OPENAPI_PATH`].
pub fn router(state: AdminState) -> Router {
    // One method router per path: the methods of a path may need different roles.
    let mut by_path: Vec<(String, MethodRouter<AdminState>)> = Vec::new();
    for route in routes() {
        let handler = route
            .handler
            .route_layer(axum::middleware::from_fn_with_state(
                (state.clone(), route.role),
                auth::require,
            ));
        match by_path.iter_mut().find(|(path, _)| *path == route.path) {
            Some((_, methods)) => *methods = std::mem::take(methods).merge(handler),
            None => by_path.push((route.path, handler)),
        }
    }
    let mut admin = Router::new();
    for (path, methods) in by_path {
        admin = admin.route(&path, methods);
    }
    let admin = admin.method_not_allowed_fallback(handlers::method_not_allowed);
    Router::new()
        .route(OPENAPI_PATH, get(handlers::openapi_json))
        .merge(admin)
        .with_state(state)
}

/// The OpenAPI 3 document of the admin API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "activity-processor admin API",
        description = "Queue status, statistics and analysis of recorded user activities; erasure and export of one user's data."
    ),
    paths(
        handlers::queue_status,
        handlers::statistics,
        handlers::user,
        privacy::erase_user,
        handlers::user_path,
        profile::user_profile,
        export::export_user,
        handlers::top_users,
        handlers::actions,
        alerts::list,
        alerts::get,
        alerts::acknowledge,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerScheme, &ParameterLimits),
    security(("bearer" = [])),
    tags(
        (name = "admin", description = "Endpoints of the admin role"),
        (name = "privacy", description = "Erasure and export, endpoints of the privacy role")
    )
)]
pub struct ApiDoc;

/// The handlers' bounds in the parameters' schemas ([`openapi_limits`]).
#[derive(Debug)]
struct ParameterLimits;

impl utoipa::Modify for ParameterLimits {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi_limits::state_limits(openapi);
    }
}

#[derive(Debug)]
struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("static token or HS256 JWT with role=admin or role=privacy")
                    .build(),
            ),
        );
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod privacy_tests;

#[cfg(test)]
mod profile_tests;

#[cfg(test)]
mod hostile_tests;
