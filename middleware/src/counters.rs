//! The tracker's counters: plain atomics bumped on the request path and by
//! the dispatcher, read as a [`CountersSnapshot`].

use std::sync::atomic::{AtomicU64, Ordering};

/// Shared by the layer, the manual API and the dispatcher (behind an `Arc`);
/// atomics rather than a lock because the request path bumps them.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Events handed to the channel (request path and manual API).
    pub(crate) captured: AtomicU64,
    /// Events dropped because the channel was full.
    pub(crate) dropped_full: AtomicU64,
    /// Events written to the stream (acknowledged by Redis).
    pub(crate) sent: AtomicU64,
    /// Failed attempts to write a batch to the stream.
    pub(crate) send_errors: AtomicU64,
    /// Batch writes retried after an error.
    pub(crate) retries: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            captured: self.captured.load(Ordering::Relaxed),
            dropped_full: self.dropped_full.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            send_errors: self.send_errors.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }
}

/// A point-in-time copy of the tracker's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CountersSnapshot {
    /// Events handed to the dispatcher's channel.
    pub captured: u64,
    /// Events dropped because the channel was full.
    pub dropped_full: u64,
    /// Events written to the stream.
    pub sent: u64,
    /// Failed attempts to write a batch to the stream.
    pub send_errors: u64,
    /// Batch writes retried after an error.
    pub retries: u64,
}
