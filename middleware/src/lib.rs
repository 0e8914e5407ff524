//! Record who did what, from where, and when, from any axum or hyper app,
//! without slowing a request.
//!
//! The crate has three parts:
//! - the event model and its wire format ([`Activity`], [`ActivityType`]),
//!   always available;
//! - with the `tracker` feature (default): the tower layer that captures
//!   mapped requests, the background dispatcher that pipelines them into a
//!   Redis Stream, and the manual `track_*` API;
//! - with the `postgres` feature: the idempotent batch writer into
//!   `user_activity_logs`, shared by the processor and the layer's fallback.
//!
//! ```
//! use activity_tracker::{Activity, ActivityType};
//!
//! let activity = Activity::new(ActivityType::Login).user_id("user-123");
//! assert!(activity.to_wire_json().contains(r#""action":"login""#));
//! ```

mod activity;

pub use activity::{
    Activity, ActivityType, CustomAction, InvalidAction, WIRE_VERSION, WireError, limits,
    truncate_chars,
};

#[cfg(feature = "tracker")]
mod capture;
#[cfg(feature = "tracker")]
mod counters;
#[cfg(feature = "tracker")]
mod dispatcher;
#[cfg(feature = "tracker")]
mod envelope;
#[cfg(feature = "tracker")]
pub mod layer;
#[cfg(feature = "tracker")]
mod tracker;

#[cfg(feature = "tracker")]
pub use capture::{
    ActivityEnrichment, ActivityUser, CaptureConfig, CaptureConfigError, PeerAddr,
};
#[cfg(feature = "tracker")]
pub use counters::CountersSnapshot;
#[cfg(feature = "tracker")]
pub use layer::{ActivityLayer, ActivityService};
#[cfg(feature = "tracker")]
pub use dispatcher::{RedisStreamSink, ShutdownSummary, Sink, SinkError};
#[cfg(feature = "tracker")]
pub use tracker::{
    ActivityTracker, ActivityTrackerBuilder, BuildError, CaseAction, DEFAULT_STREAM_KEY,
    DocumentAction, PaymentAction, WithdrawalAction,
};

#[cfg(feature = "postgres")]
pub mod postgres;
