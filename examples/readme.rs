//! The code of README.md's "Adding the layer to an axum app", as it is
//! there (`tests/readme.rs` checks that both are the same and runs this).
//!
//! ```sh
//! cargo run --release --example readme
//! ```

use std::net::SocketAddr;

use activity_tracker::{ActivityEnrichment, ActivityTracker, ActivityType, ActivityUser};
use axum::Router;
use axum::extract::{Path, Request};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or(default.to_owned());
    let tracker = ActivityTracker::builder()
        .redis_url(env("REDIS_URL", "redis://127.0.0.1:6379"))
        // route mapping: which request is which activity
        .route(Method::POST, "/api/v1/auth/login", ActivityType::Login)
        .route(Method::POST, "/api/v1/cases", ActivityType::CaseCreate)
        .route(Method::GET, "/api/v1/cases/{id}", ActivityType::CaseView)
        .resource("case", "id") // resource_type "case", resource_id from {id}
        .trusted_proxies(["10.0.0.0/8"]) // believe X-Forwarded-For only from these
        .session_cookie("session_id")
        // Redis down: batches go straight into user_activity_logs (activity-store)
        .fallback_sink(activity_store::PostgresSink::connect_lazy(&env(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        ))?)
        .build()
        .await?; // fails on a bad URL or route; an unreachable Redis is retried later

    let app = Router::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/cases", post(|| async { "created" }))
        .route(
            "/api/v1/cases/{id}",
            get(|Path(id): Path<String>| async { id }),
        )
        .layer(tracker.layer()) // the one line
        .layer(middleware::from_fn(auth)); // your auth, outside: inserts ActivityUser

    let listener = tokio::net::TcpListener::bind(env("APP_LISTEN", "127.0.0.1:3000")).await?;
    // With connect info, for the client IP (without it, no activity has one).
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    tracker.shutdown().await; // flushes what is buffered, bounded by a timeout
    Ok(())
}

/// Your authentication; here `Authorization: Bearer user:<id>`.
async fn auth(mut request: Request, next: Next) -> Response {
    let user = request
        .headers()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer user:"))
        .map(ActivityUser::from);
    if let Some(user) = user {
        request.extensions_mut().insert(user);
    }
    next.run(request).await
}

/// A login learns who the user is: the response tells the layer.
async fn login() -> (ActivityEnrichment, &'static str) {
    (ActivityEnrichment::new().user_id("alice"), "welcome")
}
