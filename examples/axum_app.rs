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
//! (default `redis://127.0.0.1:6379`; several nodes separated by commas
//! are a Redis Cluster), `REDIS_CLUSTER` (`true`: a cluster even at one
//! address), `STREAM_KEY` (default `user_activities_stream`),
//! `STREAM_SHARDS` (default 1; as the processor's), `TRUSTED_PROXIES`
//! (comma-separated CIDRs; default none). The session id comes from the `session_id` cookie.
//! `DATABASE_URL` (a PostgreSQL the processor has migrated) enables the
//! Redis-down fallback straight into `user_activity_logs`; `SPOOL_PATH`
//! enables the local spool file used when both are down (`SPOOL_MAX_BYTES`,
//! default 64 MiB, bounds it).
//!
//! The app itself (routes, fake authentication: `Authorization: Bearer
//! user:<id>`, password `secret`) is `activity_tracking::demo_app`, shared
//! with the quick start and the tests.

use std::net::SocketAddr;

use activity_tracking::demo_app;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        // Colours only for a terminal, not into a file the output goes to.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
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

    // The route mapping (which request is which activity) is in
    // `demo_app::tracker_builder`; here only where the events go.
    let mut builder = demo_app::tracker_builder()
        .redis_url(&redis_url)
        .redis_cluster(env_opt("REDIS_CLUSTER").is_some_and(|v| v == "true" || v == "1"))
        .stream_key(&stream_key)
        .stream_shards(match env_opt("STREAM_SHARDS") {
            Some(count) => count.parse()?,
            None => 1,
        })
        .trusted_proxies(&trusted);
    if let Some(url) = env_opt("DATABASE_URL") {
        builder = builder.fallback_sink(activity_store::PostgresSink::connect_lazy(&url)?);
    }
    if let Some(path) = env_opt("SPOOL_PATH") {
        builder = builder.spool_path(path);
    }
    if let Some(bytes) = env_opt("SPOOL_MAX_BYTES") {
        builder = builder.spool_max_bytes(bytes.parse()?);
    }
    let tracker = builder.build().await?;

    // The routes with `.layer(tracker.layer())`, the auth middleware outside it.
    let app = demo_app::app(&tracker);

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

fn env_opt(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}
