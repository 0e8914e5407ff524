//! The dispatcher's writes: those under way (several at once, completed in
//! the order they were started) and those of the round that failed,
//! waiting to be retried after a backoff.

use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesOrdered;

use super::SinkError;
use super::fallback::{Chain, Route};
use crate::{Backoff, WireBatch};

/// A finished write: the batch, and where it was stored.
pub(super) type Written = (WireBatch, Result<Route, SinkError>);

/// Owned by the dispatcher's loop alone.
pub(super) struct Writes {
    /// Writes under way, completed in the order they were started.
    in_flight: FuturesOrdered<BoxFuture<'static, Written>>,
    /// Events in the writes under way.
    in_flight_events: usize,
    /// Batches whose write failed, in order, waiting for the writes still
    /// under way before they go back to the front of the buffer.
    failed: Vec<WireBatch>,
    /// Delays between retry rounds; reset by a success outside a failed
    /// round.
    backoff: Backoff,
}

impl Writes {
    pub(super) fn new(backoff: Backoff) -> Self {
        Writes {
            in_flight: FuturesOrdered::new(),
            in_flight_events: 0,
            failed: Vec::new(),
            backoff,
        }
    }

    /// Writes under way.
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Nothing under way and nothing to retry.
    pub(super) fn is_idle(&self) -> bool {
        self.in_flight.is_empty() && self.failed.is_empty()
    }

    /// Whether some write of the round failed (no new write starts then).
    pub(super) fn has_failed(&self) -> bool {
        !self.failed.is_empty()
    }

    /// Every write of the round is done and some failed: time to retry.
    pub(super) fn round_failed(&self) -> bool {
        !self.failed.is_empty() && self.in_flight.is_empty()
    }

    /// Starts writing `batch` through `chain`.
    pub(super) fn start(&mut self, chain: &Arc<Chain>, batch: WireBatch) {
        self.in_flight_events += batch.len();
        let chain = Arc::clone(chain);
        self.in_flight.push_back(Box::pin(async move {
            let result = chain.send(&batch).await;
            (batch, result)
        }));
    }

    /// The next write to finish, in start order; `None` at once when none
    /// is under way (which disables its `select!` branch).
    pub(super) async fn next_written(&mut self) -> Option<Written> {
        let written = self.in_flight.next().await?;
        self.in_flight_events -= written.0.len();
        Some(written)
    }

    /// Keeps a batch whose write failed for the retry round.
    pub(super) fn push_failed(&mut self, batch: WireBatch) {
        self.failed.push(batch);
    }

    /// A write succeeded: back to the first retry delay, unless a write of
    /// this round failed already.
    pub(super) fn succeeded(&mut self) {
        if self.failed.is_empty() {
            self.backoff.reset();
        }
    }

    /// Takes the failed batches, oldest first, and the delay to wait before
    /// writing them again.
    pub(super) fn take_failed(&mut self) -> (Vec<WireBatch>, std::time::Duration) {
        let batches = std::mem::take(&mut self.failed);
        (batches, self.backoff.next_delay())
    }

    /// Stops the writes under way (a write cut short may still have reached
    /// its destination) and counts every event not known to be written.
    pub(super) fn abandon(&mut self) -> usize {
        self.in_flight = FuturesOrdered::new();
        let events = self.in_flight_events + self.failed.iter().map(WireBatch::len).sum::<usize>();
        self.in_flight_events = 0;
        self.failed.clear();
        events
    }

    /// Events in the writes under way.
    pub(super) fn in_flight_events(&self) -> usize {
        self.in_flight_events
    }
}
