//! [`ActivityTracker`]: the handle an app keeps. It owns the intake, the
//! counters and the dispatcher (on a thread of its own), hands out the
//! layer, and offers the manual `track_*` API of the original design.
//!
//! One file per job: this one the handle, `builder` its settings and
//! `build()`, `error` why a build fails, `thread` the dispatcher's own
//! thread, `helpers` the `track_*` calls and their action enums.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use activity_tracker::{ActivityTracker, CaseAction};
//! use serde_json::json;
//!
//! let tracker = ActivityTracker::builder()
//!     .redis_url("redis://127.0.0.1:6379")
//!     .build()
//!     .await?;
//! let ip = "192.168.1.100".parse().ok();
//! tracker.track_login("user-123", ip, Some("Mozilla/5.0"));
//! tracker.track_case_action(
//!     "user-123",
//!     CaseAction::Create,
//!     "case-456",
//!     Some(json!({"case_amount": 50000.0})),
//!     ip,
//! );
//! let summary = tracker.shutdown().await;
//! println!("{} sent, {} unsent", summary.sent, summary.unsent);
//! # Ok(()) }
//! ```

mod builder;
mod error;
mod helpers;
mod thread;

use std::fmt;
use std::sync::Arc;

use tokio::sync::{Mutex, oneshot};
use tokio_util::sync::CancellationToken;

pub use self::builder::ActivityTrackerBuilder;
pub use self::error::BuildError;
pub use self::helpers::{CaseAction, DocumentAction, PaymentAction, WithdrawalAction};

use crate::Activity;
use crate::counters::{Counters, CountersSnapshot};
use crate::dispatcher::ShutdownSummary;
use crate::dispatcher::intake::IntakeSender;
use crate::layer::{ActivityLayer, CaptureContext};

/// Default stream key (the `STREAM_KEY` contract).
pub const DEFAULT_STREAM_KEY: &str = "user_activities_stream";

/// Records user activities into a Redis Stream without ever slowing or
/// failing the caller.
///
/// Cheap to clone (one `Arc`). Made with [`ActivityTracker::builder`];
/// [`ActivityTracker::shutdown`] flushes what is buffered.
#[derive(Clone)]
pub struct ActivityTracker {
    inner: Arc<Inner>,
}

struct Inner {
    /// The bounded intake of the dispatcher; never waits.
    sender: IntakeSender,
    /// Shared with the layers and the dispatcher.
    counters: Arc<Counters>,
    /// Config, intake and counters, shared by every layer handed out.
    capture: Arc<CaptureContext>,
    /// Stops the dispatcher.
    cancel: CancellationToken,
    /// Where the dispatcher's summary will arrive, until the first
    /// `shutdown()` takes it; the async mutex serializes concurrent
    /// shutdowns.
    task: Mutex<TaskState>,
    /// For `Debug`.
    stream_key: String,
}

enum TaskState {
    Running(oneshot::Receiver<ShutdownSummary>),
    Stopped(ShutdownSummary),
}

impl fmt::Debug for ActivityTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActivityTracker")
            .field("stream_key", &self.inner.stream_key)
            .field("counters", &self.inner.counters.snapshot())
            .field("stopped", &self.inner.cancel.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl ActivityTracker {
    /// Puts a started tracker together (from the builder).
    fn new(
        sender: IntakeSender,
        counters: Arc<Counters>,
        capture: Arc<CaptureContext>,
        cancel: CancellationToken,
        task: oneshot::Receiver<ShutdownSummary>,
        stream_key: String,
    ) -> Self {
        ActivityTracker {
            inner: Arc::new(Inner {
                sender,
                counters,
                capture,
                cancel,
                task: Mutex::new(TaskState::Running(task)),
                stream_key,
            }),
        }
    }

    /// A builder with every default.
    pub fn builder() -> ActivityTrackerBuilder {
        ActivityTrackerBuilder::default()
    }

    /// Queues one activity. Never blocks and never fails the caller: when
    /// the intake is full or the tracker is shut down, the activity is
    /// dropped and counted. Returns whether it was queued.
    ///
    /// The activity is brought within the wire format's limits and written
    /// as its JSON line here, on the caller's thread (about a microsecond),
    /// straight into the batch being filled: callers on many threads share
    /// that work, and the dispatcher only sends whole batches.
    pub fn track(&self, mut activity: Activity) -> bool {
        activity.normalize();
        let offer = self
            .inner
            .sender
            .offer_with(|out| activity.write_wire_json(out));
        // Freed here, by the thread that allocated its strings.
        drop(activity);
        self.inner.counters.record_offer(offer)
    }

    /// The layer that records the requests mapped by the builder's routes.
    /// Cheap; every layer shares the tracker's intake and counters.
    ///
    /// Put it around an axum `Router` (`.layer(tracker.layer())`) or any
    /// tower service of `http::Request` / `http::Response`.
    pub fn layer(&self) -> ActivityLayer {
        ActivityLayer::new(self.inner.capture.clone())
    }

    /// A copy of the counters now.
    pub fn counters(&self) -> CountersSnapshot {
        self.inner.counters.snapshot()
    }

    /// Stops the dispatcher: takes what is queued, flushes it, bounded by
    /// the shutdown timeout, and reports what could not be sent. Events
    /// offered afterwards are dropped and counted (`dropped_closed`).
    /// Calling it again returns the same summary.
    pub async fn shutdown(&self) -> ShutdownSummary {
        let mut state = self.inner.task.lock().await;
        if let TaskState::Running(task) = &mut *state {
            self.inner.cancel.cancel();
            let summary = match task.await {
                Ok(summary) => summary,
                Err(_) => {
                    tracing::error!(
                        "the activity dispatcher thread stopped without a summary (it panicked)"
                    );
                    let s = self.inner.counters.snapshot();
                    ShutdownSummary {
                        sent: s.sent,
                        flushed: 0,
                        stored_direct: s.stored_direct,
                        spooled: s.spooled,
                        unsent: s.captured.saturating_sub(s.delivered()),
                        timed_out: false,
                    }
                }
            };
            *state = TaskState::Stopped(summary);
        }
        match &*state {
            TaskState::Stopped(summary) => *summary,
            TaskState::Running(_) => unreachable!("set to Stopped above"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn bad_url_fails_the_build_but_unreachable_redis_does_not() {
        let err = ActivityTracker::builder()
            .redis_url("not a url")
            .build()
            .await
            .unwrap_err();
        assert!(matches!(err, BuildError::InvalidRedisUrl { .. }), "{err}");
        let tracker = ActivityTracker::builder()
            .redis_url("redis://127.0.0.1:1")
            .shutdown_timeout(Duration::from_millis(100))
            .build()
            .await
            .unwrap();
        assert!(tracker.track_logout("u1", None));
        let summary = tracker.shutdown().await;
        assert_eq!((summary.sent, summary.unsent), (0, 1));
        assert!(!tracker.track_logout("u1", None));
        assert_eq!(tracker.counters().dropped_closed, 1);
        assert_eq!(tracker.shutdown().await, summary);
    }
}
