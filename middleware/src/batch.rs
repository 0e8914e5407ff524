//! When a batch is due: when it is full, or when its first item has waited
//! long enough, whichever comes first; the clock starts at the first item
//! (like Vector's batcher). Shared by the tracker's intake (the linger)
//! and the processor's sink (the flush interval). It holds no items and no
//! timer, only the rule: the caller keeps the batch and sleeps until
//! [`BatchLimits::deadline`]. Generic over the clock, so a caller can use
//! Tokio's (pausable) `Instant`.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use activity_tracker::BatchLimits;
//!
//! let mut limits = BatchLimits::new(100, Duration::from_millis(5));
//! let first = Instant::now();
//! limits.start(first); // the batch's first item
//! assert_eq!(limits.deadline(), Some(first + Duration::from_millis(5)));
//! assert!(!limits.is_full(99));
//! assert!(limits.is_full(100));
//! assert_eq!(limits.wait_until(first), Some(first + Duration::from_millis(5)));
//! assert_eq!(limits.wait_until(first + Duration::from_millis(5)), None);
//! limits.clear(); // the batch was taken
//! assert_eq!(limits.deadline(), None);
//! ```

use std::ops::Add;
use std::time::Duration;

/// The size-or-age rule of one batch at a time.
#[derive(Debug, Clone)]
pub struct BatchLimits<I> {
    /// A batch holding this many items is due at once.
    max_items: usize,
    /// A partial batch is due this long after its first item.
    max_age: Duration,
    /// When the open batch's first item came (`None`: no clock running).
    first: Option<I>,
}

impl<I> BatchLimits<I>
where
    I: Copy + Ord + Add<Duration, Output = I>,
{
    /// Batches of at most `max_items` (at least 1), a partial one due
    /// `max_age` after its first item.
    pub fn new(max_items: usize, max_age: Duration) -> Self {
        BatchLimits {
            max_items: max_items.max(1),
            max_age,
            first: None,
        }
    }

    /// The most items in a batch.
    pub fn max_items(&self) -> usize {
        self.max_items
    }

    /// A batch begins: its first item came at `at`.
    pub fn start(&mut self, at: I) {
        self.first = Some(at);
    }

    /// Stops the clock: the batch was taken, or what is left is to go at
    /// once rather than wait again.
    pub fn clear(&mut self) {
        self.first = None;
    }

    /// Whether a batch of `len` items is full.
    pub fn is_full(&self, len: usize) -> bool {
        len >= self.max_items
    }

    /// When the open batch is due by age (`None`: no clock running).
    pub fn deadline(&self) -> Option<I> {
        self.first.map(|first| first + self.max_age)
    }

    /// When a partial batch is due, if at `now` it must still wait; `None`
    /// when it is due already (or no clock is running).
    pub fn wait_until(&self, now: I) -> Option<I> {
        self.deadline().filter(|due| *due > now)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn a_zero_age_is_due_at_once_and_sizes_are_at_least_one() {
        let now = Instant::now();
        let mut limits = BatchLimits::new(0, Duration::ZERO);
        assert_eq!(limits.max_items(), 1);
        assert!(limits.is_full(1));
        limits.start(now);
        assert_eq!(limits.wait_until(now), None);
        assert_eq!(limits.deadline(), Some(now));
    }
}
