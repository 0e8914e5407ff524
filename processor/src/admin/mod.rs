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
//! Every answer is JSON; every error is `{"error": "<code>", "message":
//! "<text>"}`: 401 (with `WWW-Authenticate: Bearer`) without valid
//! credentials, 403 for a valid JWT without the admin role, 400 naming the
//! parameter that is out of bounds.

mod auth;
mod error;
mod handlers;

use std::sync::Arc;

use axum::Router;
use axum::routing::{MethodRouter, get};
use sqlx::PgPool;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::stats::ProcessorStats;

pub use auth::{ADMIN_ROLE, AdminAuth, Secret};
pub use error::{ApiError, ErrorBody};
pub use handlers::{ConsumerStatus, QueueStatus};

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
    /// multiplexed connection per request: no state to go stale).
    redis: redis::Client,
    /// `STREAM_KEY`; the dead letters are at `<stream_key>:dead`.
    stream_key: Arc<str>,
    /// `CONSUMER_GROUP`, whose pending entries `queue-status` reports.
    consumer_group: Arc<str>,
    /// The consumer's counters (processed totals and rates).
    stats: Arc<ProcessorStats>,
    /// Who may call; read-only after start.
    auth: Arc<AdminAuth>,
}

impl AdminState {
    /// State from its parts.
    pub fn new(
        pool: PgPool,
        redis: redis::Client,
        stream_key: impl Into<String>,
        consumer_group: impl Into<String>,
        stats: Arc<ProcessorStats>,
        auth: AdminAuth,
    ) -> Self {
        Self {
            pool,
            redis,
            stream_key: stream_key.into().into(),
            consumer_group: consumer_group.into().into(),
            stats,
            auth: Arc::new(auth),
        }
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
    }
}

/// The authenticated admin routes: (path, handler). The router and the
/// OpenAPI test both read this list, so a route cannot be missing from the
/// document unnoticed.
fn admin_routes() -> Vec<(String, MethodRouter<AdminState>)> {
    [
        ("queue-status", get(handlers::queue_status)),
        ("statistics", get(handlers::statistics)),
        ("user/{user_id}", get(handlers::user)),
        ("user/{user_id}/path", get(handlers::user_path)),
        ("top-users", get(handlers::top_users)),
        ("actions", get(handlers::actions)),
    ]
    .into_iter()
    .map(|(path, route)| (format!("{PREFIX}/{path}"), route))
    .collect()
}

/// The admin API: every path under [`PREFIX`] behind bearer
/// authentication, and the OpenAPI document at [`OPENAPI_PATH`].
pub fn router(state: AdminState) -> Router {
    let mut admin = Router::new();
    for (path, route) in admin_routes() {
        admin = admin.route(&path, route);
    }
    let admin = admin
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin,
        ))
        .method_not_allowed_fallback(handlers::method_not_allowed);
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
        description = "Queue status, statistics and analysis of recorded user activities."
    ),
    paths(
        handlers::queue_status,
        handlers::statistics,
        handlers::user,
        handlers::user_path,
        handlers::top_users,
        handlers::actions,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerScheme),
    security(("bearer" = [])),
    tags((name = "admin", description = "Authenticated admin endpoints"))
)]
pub struct ApiDoc;

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
                    .bearer_format("static token or HS256 JWT with role=admin")
                    .build(),
            ),
        );
    }
}

#[cfg(test)]
mod tests;
