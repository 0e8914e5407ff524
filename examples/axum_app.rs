//! An axum app with the original design's API surface, tracked with one
//! `.layer(...)` line.
//!
//! ```sh
//! cargo run --example axum_app
//! # another shell:
//! curl -s -X POST localhost:3000/api/v1/auth/login -H 'content-type: application/json' \
//!      -d '{"username":"alice","password":"secret"}'
//! curl -s -X POST localhost:3000/api/v1/cases -H 'authorization: Bearer user:alice' \
//!      -H 'content-type: application/json' -d '{"amount":50000}'
//! redis-cli XRANGE user_activities_stream - +
//! ```
//!
//! Environment: `APP_LISTEN` (default `127.0.0.1:3000`), `REDIS_URL`
//! (default `redis://127.0.0.1:6379`), `STREAM_KEY` (default
//! `user_activities_stream`), `TRUSTED_PROXIES` (comma-separated CIDRs;
//! default none). The session id comes from the `session_id` cookie.
//!
//! Authentication is fake: `Authorization: Bearer user:<id>` makes the
//! request `<id>`'s; logging in with the password `secret` gives any user
//! name such a token.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use activity_tracker::{ActivityEnrichment, ActivityTracker, ActivityType, ActivityUser};
use axum::extract::{Path, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let listen = env_or("APP_LISTEN", "127.0.0.1:3000");
    let redis_url = env_or("REDIS_URL", "redis://127.0.0.1:6379");
    let stream_key = env_or("STREAM_KEY", "user_activities_stream");
    let trusted: Vec<String> = std::env::var("TRUSTED_PROXIES")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|cidr| !cidr.is_empty())
        .map(str::to_owned)
        .collect();

    let tracker = ActivityTracker::builder()
        .redis_url(&redis_url)
        .stream_key(&stream_key)
        .route(Method::POST, "/api/v1/auth/login", ActivityType::Login)
        .route(Method::POST, "/api/v1/auth/logout", ActivityType::Logout)
        .route(Method::POST, "/api/v1/cases", ActivityType::CaseCreate)
        .route(Method::GET, "/api/v1/cases/{id}", ActivityType::CaseView)
        .resource("case", "id")
        .route(Method::PUT, "/api/v1/cases/{id}", ActivityType::CaseUpdate)
        .resource("case", "id")
        .route(
            Method::POST,
            "/api/v1/payments",
            ActivityType::PaymentCreate,
        )
        .route(
            Method::POST,
            "/api/v1/withdrawals",
            ActivityType::WithdrawalRequest,
        )
        .trusted_proxies(&trusted)
        .session_cookie("session_id")
        .build()
        .await?;

    let app = routes()
        .layer(tracker.layer())
        // Outside the activity layer, so the layer sees the user it sets.
        .layer(middleware::from_fn(fake_auth));

    let listener = tokio::net::TcpListener::bind(&listen).await?;
    tracing::info!(
        "listening on http://{}, recording into {stream_key} at {redis_url}",
        listener.local_addr()?
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;

    let summary = tracker.shutdown().await;
    tracing::info!(
        sent = summary.sent,
        unsent = summary.unsent,
        "activity tracker stopped"
    );
    Ok(())
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The app's routes, without tracking.
fn routes() -> Router {
    Router::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/cases", post(create_case))
        .route("/api/v1/cases/{id}", get(view_case).put(update_case))
        .route("/api/v1/payments", post(create_payment))
        .route("/api/v1/withdrawals", post(request_withdrawal))
        .route("/healthz", get(|| async { "ok" }))
}

/// Fake authentication: `Authorization: Bearer user:<id>` is user `<id>`.
async fn fake_auth(mut request: Request, next: Next) -> Response {
    let user = request
        .headers()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer user:"))
        .filter(|id| !id.is_empty())
        .map(ActivityUser::from);
    if let Some(user) = user {
        request.extensions_mut().insert(user);
    }
    next.run(request).await
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

/// Any user name with the password `secret`. The user id is only known
/// here, so the handler hands it to the layer; a failed login stays
/// anonymous (and is recorded with status 401).
async fn login(Json(credentials): Json<Credentials>) -> Response {
    if credentials.password != "secret" {
        let body = Json(json!({"error": "invalid credentials"}));
        return (StatusCode::UNAUTHORIZED, body).into_response();
    }
    let user_id = credentials.username;
    let enrichment = ActivityEnrichment::new().user_id(&user_id);
    let body = Json(json!({"token": format!("user:{user_id}"), "user_id": user_id}));
    (enrichment, body).into_response()
}

async fn logout() -> Json<Value> {
    Json(json!({"ok": true}))
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id(prefix: &str) -> String {
    format!("{prefix}-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

/// The new case's id is only known here: the handler names the resource.
async fn create_case(Json(body): Json<Value>) -> (StatusCode, ActivityEnrichment, Json<Value>) {
    let id = next_id("case");
    let enrichment = ActivityEnrichment::new()
        .resource("case", &id)
        .details(json!({"case_amount": body.get("amount")}));
    (
        StatusCode::CREATED,
        enrichment,
        Json(json!({"id": id, "status": "open"})),
    )
}

async fn view_case(Path(id): Path<String>) -> Json<Value> {
    Json(json!({"id": id, "status": "open"}))
}

async fn update_case(Path(id): Path<String>, Json(body): Json<Value>) -> Json<Value> {
    Json(json!({"id": id, "updated": body}))
}

/// Mapped to `payment_create`; a declined payment is recorded as
/// `payment_failed`.
async fn create_payment(Json(body): Json<Value>) -> (ActivityEnrichment, Json<Value>) {
    let id = next_id("pay");
    let amount = body.get("amount").and_then(Value::as_f64).unwrap_or(0.0);
    let mut enrichment = ActivityEnrichment::new()
        .resource("payment", &id)
        .detail("amount", amount);
    let status = if amount > 10_000.0 {
        enrichment = enrichment.action(ActivityType::PaymentFailed);
        "declined"
    } else {
        "accepted"
    };
    (enrichment, Json(json!({"id": id, "status": status})))
}

async fn request_withdrawal(Json(body): Json<Value>) -> (ActivityEnrichment, Json<Value>) {
    let id = next_id("wd");
    let enrichment = ActivityEnrichment::new()
        .resource("withdrawal", &id)
        .details(json!({"amount": body.get("amount")}));
    (enrichment, Json(json!({"id": id, "status": "requested"})))
}
