//! `INGEST_RATE_LIMIT`: events per second per source, as a token bucket
//! holding one second of events. A request is let in while the bucket
//! holds an event and takes all its events (the bucket may go below zero), so
//! a batch larger than a second's events is never refused for ever; the
//! requests after it wait until the debt is paid.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The buckets of every source.
#[derive(Debug)]
pub(crate) struct RateLimit {
    per_second: f64,
    /// One bucket per source name; locked for one arithmetic step.
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimit {
    /// `per_second` events per second for each source.
    pub(crate) fn new(per_second: u32) -> Self {
        RateLimit {
            per_second: f64::from(per_second.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `events` from `source`'s bucket at `now`; `Err` with how long
    /// to wait when it is empty.
    pub(crate) fn take(&self, source: &str, events: usize, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(source.to_owned()).or_insert(Bucket {
            tokens: self.per_second,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.per_second);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            let wait = (1.0 - bucket.tokens) / self.per_second;
            return Err(Duration::from_secs_f64(wait));
        }
        bucket.tokens -= events as f64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_of_events_then_a_wait() {
        let limit = RateLimit::new(100);
        let start = Instant::now();
        assert!(limit.take("web", 60, start).is_ok());
        assert!(limit.take("web", 60, start).is_ok());
        let wait = limit.take("web", 1, start).unwrap_err();
        assert!(
            wait > Duration::from_millis(200) && wait <= Duration::from_millis(210),
            "{wait:?}"
        );
        // Another source has its own bucket.
        assert!(limit.take("app", 100, start).is_ok());
        assert!(
            limit
                .take("web", 1, start + Duration::from_millis(250))
                .is_ok()
        );
        // A batch larger than a second's events gets in, once.
        let limit = RateLimit::new(10);
        assert!(limit.take("web", 100, start).is_ok());
        assert!(
            limit
                .take("web", 1, start + Duration::from_secs(5))
                .is_err()
        );
        assert!(
            limit
                .take("web", 1, start + Duration::from_secs(10))
                .is_ok()
        );
    }
}
