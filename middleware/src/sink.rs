//! Where batches of activities go: the [`Sink`] seam.
//!
//! Always available (no feature), so that a store can implement it with
//! nothing but the event model: `activity-store`'s `PostgresSink` is one,
//! passed to [`ActivityTrackerBuilder::fallback_sink`](crate::ActivityTrackerBuilder::fallback_sink)
//! for the Redis-down fallback.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::{Activity, WireBatch};

/// A boxed future a [`Sink`] returns, so sinks can be chained as
/// `Box<dyn Sink>`.
pub type SinkFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A destination for batches of activities.
///
/// The dispatcher hands each batch to its sink and retries the whole batch
/// (with capped exponential backoff) while the sink returns an error, so a
/// sink must accept seeing the same activities twice: downstream storage
/// de-duplicates on [`Activity::id`]. The tracker's Redis stream sink
/// writes to the stream; when the tracker has fallbacks (a fallback sink
/// such as PostgreSQL, a local spool), they are tried in turn after the
/// sink fails, and [`Sink::probe`] tells when the sink can take writes
/// again.
pub trait Sink: fmt::Debug + Send + Sync + 'static {
    /// Writes every activity of `batch`, or returns an error (after which
    /// the whole batch is tried again). Activities arrive normalized
    /// (within the wire format's limits).
    fn send<'a>(&'a self, batch: &'a [Activity]) -> SinkFuture<'a, Result<(), SinkError>>;

    /// Writes a batch as the tracker holds it: the events' wire JSON lines.
    /// The dispatcher calls this one. The default reads the lines back into
    /// activities and calls [`Sink::send`]; a sink that stores the wire
    /// format as it is (the stream sink) overrides it and never makes an
    /// [`Activity`].
    fn send_wire<'a>(&'a self, batch: &'a WireBatch) -> SinkFuture<'a, Result<(), SinkError>> {
        match batch.activities() {
            Ok(activities) => Box::pin(async move { self.send(&activities).await }),
            Err(error) => Box::pin(async move { Err(SinkError::Other(Box::new(error))) }),
        }
    }

    /// Checks whether the sink can take writes again after a failure (the
    /// stream sink sends `PING`, the PostgreSQL sink `SELECT 1`). Called on
    /// a timer while the tracker's fallbacks are in use; the default sends
    /// an empty batch.
    fn probe(&self) -> SinkFuture<'_, Result<(), SinkError>> {
        self.send(&[])
    }
}

/// Why a sink could not write a batch. Names no client library's type, so
/// any store can report through it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The destination refused the write or could not be reached (Redis,
    /// the database); the same batch may succeed later.
    #[error("{0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// No connection could be had from the pool in time (the destination
    /// is unreachable).
    #[error("no connection could be had in time")]
    PoolTimedOut,
    /// Every other destination failed too and the spool is at its byte
    /// limit: the batch stays in the dispatcher's buffer.
    #[error("the activity spool is full")]
    SpoolFull,
    /// Any other sink's failure.
    #[error("{0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl SinkError {
    /// [`SinkError::Unavailable`] with `error` as its cause.
    pub fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        SinkError::Unavailable(Box::new(error))
    }
}
