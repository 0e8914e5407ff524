//! Capped exponential backoff with jitter: the delays between retries of
//! a failing write, for the tracker's dispatcher and the processor's loops
//! alike. Always available (no runtime behind it): the caller sleeps.
//!
//! ```
//! use std::time::Duration;
//! use activity_tracker::Backoff;
//!
//! let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
//! let first = backoff.next_delay();
//! assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
//! let second = backoff.next_delay();
//! assert!(second >= Duration::from_millis(100) && second <= Duration::from_millis(200));
//! backoff.reset(); // after a success
//! assert!(backoff.next_delay() <= Duration::from_millis(100));
//! ```

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// The delays between retries of a failing write: doubling from `initial`
/// up to `max`, each one jittered to between half and all of the nominal
/// delay, so many instances do not retry in step and none spins.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// First nominal delay, and the one used again after a success.
    initial: Duration,
    /// Cap on the nominal delay.
    max: Duration,
    /// Nominal delay of the next retry.
    next: Duration,
    /// Seeds the jitter; random per process, so no random-number crate is
    /// needed.
    hasher: RandomState,
    /// Retries since the last success, mixed into the jitter.
    attempt: u64,
}

impl Backoff {
    /// Starts at `initial` (at least 1 ms), doubles per failure, never
    /// beyond `max` (at least `initial`).
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: max.max(initial),
            next: initial,
            hasher: RandomState::new(),
            attempt: 0,
        }
    }

    /// The delay to wait before the next retry; grows the following one.
    pub fn next_delay(&mut self) -> Duration {
        let nominal = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        self.attempt += 1;
        let half = nominal / 2;
        let spread = half.as_nanos() as u64 + 1;
        let jitter = self.hasher.hash_one(self.attempt) % spread;
        half + Duration::from_nanos(jitter)
    }

    /// Back to the initial delay, after a success.
    pub fn reset(&mut self) {
        self.next = self.initial;
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_bounded_jitter() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let nominal = [100, 200, 400, 800, 1600, 2000, 2000, 2000];
        for ms in nominal {
            let nominal = Duration::from_millis(ms);
            let delay = backoff.next_delay();
            assert!(
                delay >= nominal / 2 && delay <= nominal,
                "{delay:?} vs {nominal:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let first = backoff.next_delay();
        assert!(first >= Duration::from_millis(25) && first <= Duration::from_millis(100));
        for _ in 0..30 {
            assert!(backoff.next_delay() <= Duration::from_secs(2));
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }
}
