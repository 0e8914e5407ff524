//! Capped exponential backoff with jitter, for retrying batch writes.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// The delays between retries of a failing batch write: doubling from
/// `initial` up to `max`, each one jittered to between half and all of the
/// nominal delay so many app instances do not retry in step.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    /// First nominal delay, and the one used again after a success.
    initial: Duration,
    /// Cap on the nominal delay.
    max: Duration,
    /// Nominal delay of the next retry.
    next: Duration,
    /// Seeds the jitter; random per process.
    hasher: RandomState,
    /// Retries since the last success, mixed into the jitter.
    attempt: u64,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
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
    pub(crate) fn next_delay(&mut self) -> Duration {
        let nominal = self.next;
        self.next = (self.next * 2).min(self.max);
        self.attempt += 1;
        let half = nominal / 2;
        let spread = half.as_nanos() as u64 + 1;
        let jitter = self.hasher.hash_one(self.attempt) % spread;
        half + Duration::from_nanos(jitter)
    }

    /// Back to the initial delay, after a success.
    pub(crate) fn reset(&mut self) {
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
}
