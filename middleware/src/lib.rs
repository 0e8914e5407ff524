//! Record who did what, from where, and when, from any axum or hyper app,
//! without slowing a request.
//!
//! ```no_run
//! # #[cfg(feature = "tracker")]
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use activity_tracker::{ActivityTracker, ActivityType};
//! use axum::{Router, http::Method, routing::post};
//!
//! let tracker = ActivityTracker::builder()
//!     .redis_url(std::env::var("REDIS_URL")?) // a few connections inside
//!     .route(Method::POST, "/api/v1/auth/login", ActivityType::Login)
//!     .route(Method::POST, "/api/v1/cases", ActivityType::CaseCreate)
//!     .route(Method::GET, "/api/v1/cases/{id}", ActivityType::CaseView)
//!     .resource("case", "id")
//!     .trusted_proxies(["10.0.0.0/8"])
//!     .session_cookie("session_id")
//!     .build()
//!     .await?;
//! let app: Router = Router::new()
//!     .route("/api/v1/cases", post(|| async { "created" }))
//!     .layer(tracker.layer());
//! // ... serve `app`; on shutdown:
//! let summary = tracker.shutdown().await; // flushes what is buffered, bounded by a timeout
//! assert_eq!(summary.unsent, 0);
//! # Ok(()) }
//! ```
//!
//! The client IP comes from the connection: serve an axum app with
//! `app.into_make_service_with_connect_info::<SocketAddr>()` (plain hyper:
//! [`ActivityLayer::peer_addr`] per connection, or a [`PeerAddr`] request
//! extension). Served with `axum::serve(listener, app)` alone, the app
//! records every activity with `"ip_address": null`, and the layer logs a
//! warning saying so the first time.
//!
//! Requests reach the handler untouched; when the response comes, the
//! layer writes the event's line into a bounded intake of batches (one
//! short lock, never waiting; dropped and counted when full), and a
//! background task, on a thread of its own, writes each batch as one entry
//! of the Redis Stream `user_activities_stream` (a version 2 entry; see
//! `docs/wire-format.md` and [`StreamFormat`]), retrying with backoff while
//! Redis is down. The `activity-processor` sidecar stores
//! them in PostgreSQL. Optionally, while Redis is down, batches go to a
//! fallback [`Sink`] (`activity-store`'s `PostgresSink` writes them straight
//! into PostgreSQL) and, when that is down too, into a local spool file
//! replayed on recovery ([`ActivityTrackerBuilder::fallback_sink`],
//! [`ActivityTrackerBuilder::spool_path`]).
//!
//! The crate has two parts:
//! - the event model, its wire format and the [`Sink`] seam ([`Activity`],
//!   [`ActivityType`], [`Sink`]), and the pacing rules shared with the
//!   processor ([`Backoff`], [`BatchLimits`]), always available, with no
//!   web framework, Redis or database client behind them;
//! - with the `tracker` feature (default): the tower layer that captures
//!   mapped requests, the background dispatcher that writes them into a
//!   Redis Stream, and the manual `track_*` API.
//!
//! ```
//! use activity_tracker::{Activity, ActivityType};
//!
//! let activity = Activity::new(ActivityType::Login).user_id("user-123");
//! assert!(activity.to_wire_json().contains(r#""action":"login""#));
//! ```

mod activity;
mod backoff;
mod batch;
mod entry_codec;
mod ip_truncation;
mod sink;
mod stream_shards;
mod wire_batch;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use activity::{
    Activity, ActivityType, CustomAction, InvalidAction, WIRE_VERSION, WireError, limits,
    truncate_chars,
};
pub use backoff::Backoff;
pub use batch::BatchLimits;
pub use entry_codec::{CodecError, EntryCodec, MAX_DECOMPRESSED_BYTES};
pub use ip_truncation::{IpTruncation, IpTruncationError};
pub use sink::{Sink, SinkError, SinkFuture};
pub use stream_shards::{
    CLUSTER_SLOTS, MAX_STREAM_SHARDS, StreamShards, dead_letter_key, key_slot,
};
pub use wire_batch::{ARRIVED_MS_FIELD, WireBatch, WireLine};

#[cfg(feature = "tracker")]
mod capture;
#[cfg(feature = "tracker")]
mod counters;
#[cfg(feature = "tracker")]
mod dispatcher;
#[cfg(feature = "tracker")]
#[cfg(feature = "tracker")]
pub mod layer;
#[cfg(feature = "tracker")]
mod redis_client;
#[cfg(feature = "tracker")]
mod tracker;

#[cfg(feature = "tracker")]
pub use capture::{
    ActivityEnrichment, ActivityUser, CaptureConfig, CaptureConfigError, ClientIpResolver, PeerAddr,
};
#[cfg(feature = "tracker")]
pub use counters::CountersSnapshot;
#[cfg(feature = "tracker")]
pub use dispatcher::{RedisStreamSink, ShutdownSummary, StreamFormat};
#[cfg(feature = "tracker")]
pub use layer::{ActivityLayer, ActivityService};
#[cfg(feature = "tracker")]
pub use redis_client::{RedisClient, RedisConnection, is_connection_failure};
#[cfg(feature = "tracker")]
pub use tracker::{
    ActivityTracker, ActivityTrackerBuilder, BuildError, CaseAction, DEFAULT_STREAM_KEY,
    DocumentAction, PaymentAction, WithdrawalAction,
};
