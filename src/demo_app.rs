//! The example app: the original design's API surface (login, cases,
//! payments, withdrawals) tracked with one `.layer(...)` line. Shared by
//! `examples/axum_app.rs`, `examples/quickstart.rs` and the end-to-end
//! tests, so there is one copy of it.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::net::SocketAddr;
//! use activity_tracking::demo_app;
//!
//! let tracker = demo_app::tracker_builder()
//!     .redis_url("redis://127.0.0.1:6379")
//!     .build()
//!     .await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(
//!     listener,
//!     demo_app::app(&tracker).into_make_service_with_connect_info::<SocketAddr>(),
//! )
//! .await?;
//! # Ok(()) }
//! ```
//!
//! Authentication is fake: `Authorization: Bearer user:<id>` makes the
//! request `<id>`'s; logging in with the password `secret` gives any user
//! name such a token. A payment over 10,000 is declined and recorded as
//! `payment_failed`. The session id comes from the `session_id` cookie.

use std::sync::atomic::{AtomicU64, Ordering};

use activity_tracker::{
    ActivityEnrichment, ActivityTracker, ActivityTrackerBuilder, ActivityType, ActivityUser,
};
use axum::extract::{Path, Request};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

/// The password that logs any user name in.
pub const PASSWORD: &str = "secret";

/// A tracker builder with the app's route mapping (which request is which
/// activity) and its session cookie; the caller adds where to send events
/// (`redis_url`, `stream_key`, `database_url`, ...) and builds it.
pub fn tracker_builder() -> ActivityTrackerBuilder {
    ActivityTracker::builder()
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
        .session_cookie("session_id")
}

/// The app's routes with `tracker`'s layer, and the (fake) authentication
/// outside it, so the layer sees the user it sets.
pub fn app(tracker: &ActivityTracker) -> Router {
    routes()
        .layer(tracker.layer())
        .layer(middleware::from_fn(fake_auth))
}

/// The app's routes, without tracking.
pub fn routes() -> Router {
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
/// Shared with the plain-hyper example, which has no axum middleware.
pub fn fake_auth_user(headers: &HeaderMap) -> Option<ActivityUser> {
    headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer user:"))
        .filter(|id| !id.is_empty())
        .map(ActivityUser::from)
}

/// The demo app's auth middleware: puts [`fake_auth_user`] in the request's
/// extensions, where the activity layer finds it.
async fn fake_auth(mut request: Request, next: Next) -> Response {
    if let Some(user) = fake_auth_user(request.headers()) {
        request.extensions_mut().insert(user);
    }
    next.run(request).await
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

/// Any user name with [`PASSWORD`]. The user id is only known here, so the
/// handler hands it to the layer; a failed login stays anonymous (and is
/// recorded with status 401).
async fn login(Json(credentials): Json<Credentials>) -> Response {
    if credentials.password != PASSWORD {
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
