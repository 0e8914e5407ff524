//! The app `bench/layer_overhead.sh` loads: an axum hello world on
//! `GET /hello`, served with `into_make_service_with_connect_info`, with the
//! activity layer (`BENCH_MODE=layer`, the route mapped to an activity and
//! recorded into `STREAM_KEY` on `REDIS_URL`), without it
//! (`BENCH_MODE=bare`), or with the layer and dispatcher but a sink that
//! drops every batch instead of writing to Redis (`BENCH_MODE=capture`: the
//! cost of capturing alone). `BENCH_MODE=wrapped` is `layer` with the
//! activity layer around the whole router instead of added by
//! `Router::layer`, which puts it around each route (axum then boxes and
//! clones one more service and boxes one more future per request).
//!
//! `BENCH_LINGER_MS` sets the dispatcher's linger (default: the tracker's
//! 5 ms); `bench/layer_instructions.sh` lengthens it under callgrind, where
//! the app runs far slower than natively.
//!
//! It prints `listening on ADDR` once bound (`APP_LISTEN`, default
//! `127.0.0.1:0`), and on SIGTERM or Ctrl-C stops, flushes the tracker and
//! prints one line: `served=N captured=N sent=N dropped=N unsent=N`.
//!
//! ```text
//! BENCH_MODE=layer STREAM_KEY=bench cargo run --release -p activity-tracker --example bench_app
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use activity_tracker::{
    Activity, ActivityTracker, ActivityType, CaptureConfig, Sink, SinkError, WireBatch,
};
use axum::extract::Request;
use axum::routing::get;
use axum::{Router, ServiceExt};
use futures_util::future::BoxFuture;
use http::Method;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tower_layer::Layer as _;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mode = std::env::var("BENCH_MODE").unwrap_or_else(|_| "layer".to_owned());
    let listen = std::env::var("APP_LISTEN").unwrap_or_else(|_| "127.0.0.1:0".to_owned());

    // Counted in both modes, so both do the same work besides the layer.
    let served = Arc::new(AtomicU64::new(0));
    let counter = served.clone();
    let app = Router::new().route(
        "/hello",
        get(move || {
            counter.fetch_add(1, Ordering::Relaxed);
            async { "Hello, World!" }
        }),
    );

    let linger = match std::env::var("BENCH_LINGER_MS") {
        Ok(ms) => Some(std::time::Duration::from_millis(ms.parse()?)),
        Err(_) => None,
    };
    let builder = || -> Result<_, Box<dyn std::error::Error>> {
        let mut builder = ActivityTracker::builder();
        if let Some(linger) = linger {
            builder = builder.linger(linger);
        }
        Ok(builder
            .redis_url(
                std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned()),
            )
            .stream_key(
                std::env::var("STREAM_KEY").unwrap_or_else(|_| "bench_app_stream".to_owned()),
            )
            // Keep every entry of a run, so the script can count them.
            .stream_max_len(100_000_000)
            .capture_config(CaptureConfig::new().route(
                Method::GET,
                "/hello",
                ActivityType::custom("hello_view")?,
            )))
    };
    let tracker = match mode.as_str() {
        "bare" => None,
        "layer" | "wrapped" => Some(builder()?.build().await?),
        "capture" => Some(builder()?.sink(Discard).build().await?),
        other => {
            return Err(format!(
                "BENCH_MODE must be `bare`, `layer`, `wrapped` or `capture`, not `{other}`"
            )
            .into());
        }
    };
    let listener = TcpListener::bind(&listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let mut terminate = signal(SignalKind::terminate())?;
    let stop = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    match &tracker {
        Some(tracker) if mode == "wrapped" => {
            let app = tracker.layer().layer(app);
            axum::serve(
                listener,
                ServiceExt::<Request>::into_make_service_with_connect_info::<SocketAddr>(app),
            )
            .with_graceful_shutdown(stop)
            .await?;
        }
        _ => {
            let app = match &tracker {
                Some(tracker) => app.layer(tracker.layer()),
                None => app,
            };
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(stop)
            .await?;
        }
    }

    let served = served.load(Ordering::Relaxed);
    match tracker {
        Some(tracker) => {
            let summary = tracker.shutdown().await;
            let counters = tracker.counters();
            println!(
                "served={served} captured={} sent={} dropped={} unsent={}",
                counters.captured,
                counters.sent,
                counters.dropped(),
                summary.unsent
            );
        }
        None => println!("served={served} captured=0 sent=0 dropped=0 unsent=0"),
    }
    Ok(())
}

/// A sink that accepts every batch and writes nothing.
#[derive(Debug)]
struct Discard;

impl Sink for Discard {
    fn send<'a>(&'a self, _batch: &'a [Activity]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async { Ok(()) })
    }

    fn send_wire<'a>(&'a self, _batch: &'a WireBatch) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async { Ok(()) })
    }
}
