//! The processor's HTTP server: `/healthz` (the process is up), `/readyz`
//! (database and Redis reachable, and database writes not failing),
//! `/metrics` (Prometheus text), plus any routes merged in (the admin API).
//!
//! ```no_run
//! # async fn example(ctx: activity_processor::Context) -> std::io::Result<()> {
//! use activity_processor::server;
//! use tokio_util::sync::CancellationToken;
//!
//! use activity_processor::http::{self, ConnectionTimeouts, StackSettings};
//! use std::time::Duration;
//!
//! let routes = server::router(ctx, axum::Router::new());
//! let app = http::stack(routes, &StackSettings::admin(Duration::from_secs(30), Vec::new()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! http::serve(listener, app, ConnectionTimeouts::default(), CancellationToken::new()).await
//! # }
//! ```

use std::sync::OnceLock;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::json;

use crate::Context;

/// How long `/readyz` waits for each dependency.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The `/healthz`, `/readyz` and `/metrics` routes, merged with `extra`
/// (the admin API's router).
pub fn router(ctx: Context, extra: Router) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ctx)
        .merge(extra)
}

/// Installs the Prometheus recorder behind the `metrics` facade, once per
/// process; `None` if another recorder was installed first (then
/// `/metrics` serves nothing).
pub fn install_metrics() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("activity_processor_batch_size".into()),
                    &[
                        1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("activity_processor_write_seconds".into()),
                        &[
                            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                        ],
                    )
                });
            match builder.map(PrometheusBuilder::install_recorder) {
                Ok(Ok(handle)) => Some(handle),
                Ok(Err(e)) | Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed; /metrics is empty");
                    None
                }
            }
        })
        .clone()
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(ctx): State<Context>) -> Response {
    let database = tokio::time::timeout(
        CHECK_TIMEOUT,
        sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&ctx.pool),
    )
    .await
    .map_err(|_| "timed out".to_owned())
    .and_then(|r| r.map(drop).map_err(|e| e.to_string()));
    let redis = tokio::time::timeout(CHECK_TIMEOUT, ping(&ctx.redis))
        .await
        .map_err(|_| "timed out".to_owned())
        .and_then(|r| r.map_err(|e| e.to_string()));
    let retrying = ctx.stats.db_retrying();
    let ready = database.is_ok() && redis.is_ok() && !retrying;
    let check = |r: &Result<(), String>| match r {
        Ok(()) => json!("ok"),
        Err(e) => json!(e),
    };
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "database": check(&database),
        "redis": check(&redis),
        "db_writes": if retrying { "failing, retrying" } else { "ok" },
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn ping(client: &activity_tracker::RedisClient) -> redis::RedisResult<()> {
    let mut conn = client.connect(CHECK_TIMEOUT, Some(CHECK_TIMEOUT)).await?;
    redis::cmd("PING").query_async::<()>(&mut conn).await
}

async fn metrics() -> Response {
    match install_metrics() {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics recorder not installed\n").into_response(),
    }
}
