//! Where the dispatcher writes batches: the [`Sink`] seam.

use std::fmt;

use futures_util::future::BoxFuture;

use crate::Activity;

/// A destination for batches of activities.
///
/// The dispatcher hands each batch to its sink and retries the whole batch
/// (with capped exponential backoff) while the sink returns an error, so a
/// sink must accept seeing the same activities twice: downstream storage
/// de-duplicates on [`Activity::id`]. [`RedisStreamSink`](super::RedisStreamSink)
/// writes to the stream; when the tracker has fallbacks (direct PostgreSQL,
/// a local spool), they are tried in turn after the sink fails, and
/// [`Sink::probe`] tells when the sink can take writes again.
///
/// The method returns a boxed future so sinks can be chained as
/// `Box<dyn Sink>`.
pub trait Sink: fmt::Debug + Send + Sync + 'static {
    /// Writes every activity of `batch`, or returns an error (after which
    /// the whole batch is tried again). Activities arrive normalized
    /// (within the wire format's limits).
    fn send<'a>(&'a self, batch: &'a [Activity]) -> BoxFuture<'a, Result<(), SinkError>>;

    /// Checks whether the sink can take writes again after a failure (the
    /// stream sink sends `PING`). Called on a timer while the tracker's
    /// fallbacks are in use; the default sends an empty batch.
    fn probe(&self) -> BoxFuture<'_, Result<(), SinkError>> {
        self.send(&[])
    }
}

/// Why a sink could not write a batch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// Redis refused the write or the connection failed.
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    /// No connection could be had from the pool in time (Redis unreachable).
    #[error("no redis connection could be had in time")]
    PoolTimedOut,
    /// Every other destination failed too and the spool is at its byte
    /// limit: the batch stays in the dispatcher's buffer.
    #[error("the activity spool is full")]
    SpoolFull,
    /// Any other sink's failure.
    #[error("{0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}
