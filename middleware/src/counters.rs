//! The tracker's counters: plain atomics bumped on the request path and by
//! the dispatcher, read as a [`CountersSnapshot`] and exported through the
//! `metrics` crate facade by the dispatcher (never from the request path).
//!
//! Exported names (all counters unless said otherwise):
//!
//! | name | what |
//! |---|---|
//! | `activity_tracker_events_captured_total` | events handed to the intake |
//! | `activity_tracker_events_sent_total` | events written to the stream |
//! | `activity_tracker_events_stored_direct_total` | events written straight into `user_activity_logs` while the stream was down |
//! | `activity_tracker_events_spooled_total` | events appended to the spool file while the stream and the database were down |
//! | `activity_tracker_events_replayed_total` | spooled events later written to the stream or the database |
//! | `activity_tracker_fallback_switches_total` | times the stream or the database was marked down or up again |
//! | `activity_tracker_spool_corrupt_records_total` | torn or corrupt spool records skipped |
//! | `activity_tracker_events_dropped_total{reason}` | events lost: `reason` is `channel_full`, `closed`, `buffer_full`, `spool_full` or `shutdown` |
//! | `activity_tracker_send_errors_total` | failed batch writes |
//! | `activity_tracker_send_retries_total` | batch writes retried after an error |
//! | `activity_tracker_buffered_events` (gauge) | events held by the dispatcher, waiting to be written |
//! | `activity_tracker_spool_bytes` (gauge) | size of the spool file |

use std::sync::atomic::{AtomicU64, Ordering};

use crate::dispatcher::intake::Offer;

/// Shared by the layer, the manual API and the dispatcher (behind an `Arc`);
/// atomics rather than a lock because the request path bumps them.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Events handed to the intake (request path and manual API).
    pub(crate) captured: AtomicU64,
    /// Events dropped because the intake was full (`channel_capacity`).
    pub(crate) dropped_full: AtomicU64,
    /// Events dropped because the dispatcher had stopped (after shutdown).
    pub(crate) dropped_closed: AtomicU64,
    /// Events dropped (oldest first) because the dispatcher's retry buffer
    /// was full while the sink kept failing.
    pub(crate) dropped_buffer_full: AtomicU64,
    /// Events still unsent when the shutdown timeout ran out.
    pub(crate) dropped_shutdown: AtomicU64,
    /// Events written to the stream (acknowledged by Redis).
    pub(crate) sent: AtomicU64,
    /// Failed attempts to write a batch to the stream.
    pub(crate) send_errors: AtomicU64,
    /// Batch writes retried after an error.
    pub(crate) retries: AtomicU64,
    /// Events written straight into the database (stream down).
    pub(crate) stored_direct: AtomicU64,
    /// Events appended to the spool (stream and database down).
    pub(crate) spooled: AtomicU64,
    /// Spooled events since written to the stream or the database.
    pub(crate) replayed: AtomicU64,
    /// Destinations marked down or up again.
    pub(crate) fallback_switches: AtomicU64,
    /// Events dropped (oldest first) from the full retry buffer while the
    /// spool was at its byte limit.
    pub(crate) dropped_spool_full: AtomicU64,
    /// Torn or corrupt spool records (or lines) skipped.
    pub(crate) spool_corrupt: AtomicU64,
    /// The spool file's size now (a gauge).
    pub(crate) spool_bytes: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the spool size gauge.
    pub(crate) fn set_spool_bytes(&self, bytes: u64) {
        self.spool_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Counts the outcome of an offer to the tracker's intake: one more
    /// captured event, or one more drop (full or closed). Returns whether
    /// the event was queued. Never blocks, never fails.
    pub(crate) fn record_offer(&self, offer: Offer) -> bool {
        match offer {
            Offer::Queued => {
                Counters::add(&self.captured, 1);
                true
            }
            Offer::Full => {
                Counters::add(&self.dropped_full, 1);
                false
            }
            Offer::Closed => {
                Counters::add(&self.dropped_closed, 1);
                false
            }
        }
    }

    pub(crate) fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            captured: self.captured.load(Ordering::Relaxed),
            dropped_full: self.dropped_full.load(Ordering::Relaxed),
            dropped_closed: self.dropped_closed.load(Ordering::Relaxed),
            dropped_buffer_full: self.dropped_buffer_full.load(Ordering::Relaxed),
            dropped_shutdown: self.dropped_shutdown.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            send_errors: self.send_errors.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            stored_direct: self.stored_direct.load(Ordering::Relaxed),
            spooled: self.spooled.load(Ordering::Relaxed),
            replayed: self.replayed.load(Ordering::Relaxed),
            fallback_switches: self.fallback_switches.load(Ordering::Relaxed),
            dropped_spool_full: self.dropped_spool_full.load(Ordering::Relaxed),
            spool_corrupt: self.spool_corrupt.load(Ordering::Relaxed),
            spool_bytes: self.spool_bytes.load(Ordering::Relaxed),
        }
    }

    /// Publishes the current values through the `metrics` facade (a no-op
    /// when the app installed no recorder). Called by the dispatcher.
    pub(crate) fn export(&self, buffered: usize) {
        let s = self.snapshot();
        metrics::counter!("activity_tracker_events_captured_total").absolute(s.captured);
        metrics::counter!("activity_tracker_events_sent_total").absolute(s.sent);
        for (reason, value) in [
            ("channel_full", s.dropped_full),
            ("closed", s.dropped_closed),
            ("buffer_full", s.dropped_buffer_full),
            ("spool_full", s.dropped_spool_full),
            ("shutdown", s.dropped_shutdown),
        ] {
            metrics::counter!("activity_tracker_events_dropped_total", "reason" => reason)
                .absolute(value);
        }
        metrics::counter!("activity_tracker_send_errors_total").absolute(s.send_errors);
        metrics::counter!("activity_tracker_send_retries_total").absolute(s.retries);
        metrics::counter!("activity_tracker_events_stored_direct_total").absolute(s.stored_direct);
        metrics::counter!("activity_tracker_events_spooled_total").absolute(s.spooled);
        metrics::counter!("activity_tracker_events_replayed_total").absolute(s.replayed);
        metrics::counter!("activity_tracker_fallback_switches_total").absolute(s.fallback_switches);
        metrics::counter!("activity_tracker_spool_corrupt_records_total").absolute(s.spool_corrupt);
        metrics::gauge!("activity_tracker_buffered_events").set(buffered as f64);
        metrics::gauge!("activity_tracker_spool_bytes").set(s.spool_bytes as f64);
    }
}

/// Rate-limited warnings about dropped events: at most one log line per
/// reason per `period`, saying how many were dropped since the last one.
/// Owned by the dispatcher, which checks after each export.
#[derive(Debug)]
pub(crate) struct DropWarnings {
    /// The shortest time between two warnings of one reason.
    period: std::time::Duration,
    /// Per reason: the count last warned about, and when.
    last: [(u64, Option<std::time::Instant>); 5],
}

impl DropWarnings {
    pub(crate) fn new(period: std::time::Duration) -> Self {
        DropWarnings {
            period,
            last: [(0, None); 5],
        }
    }

    /// Warns once for each reason whose drop count grew, unless that
    /// reason was warned about less than `period` ago. Returns how many
    /// lines it logged.
    pub(crate) fn check(&mut self, s: &CountersSnapshot) -> usize {
        let now = std::time::Instant::now();
        let mut logged = 0;
        let counts = [
            ("channel_full", s.dropped_full),
            ("closed", s.dropped_closed),
            ("buffer_full", s.dropped_buffer_full),
            ("spool_full", s.dropped_spool_full),
            ("shutdown", s.dropped_shutdown),
        ];
        for ((reason, count), (seen, at)) in counts.into_iter().zip(self.last.iter_mut()) {
            if count <= *seen || at.is_some_and(|at| now.duration_since(at) < self.period) {
                continue;
            }
            tracing::warn!(
                reason,
                dropped = count - *seen,
                total = count,
                "activity events dropped"
            );
            *seen = count;
            *at = Some(now);
            logged += 1;
        }
        logged
    }
}

/// A point-in-time copy of the tracker's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CountersSnapshot {
    /// Events handed to the dispatcher's intake.
    pub captured: u64,
    /// Events dropped because the intake was full (`channel_capacity`).
    pub dropped_full: u64,
    /// Events dropped because the tracker had been shut down.
    pub dropped_closed: u64,
    /// Events dropped (oldest first) because the retry buffer was full
    /// while the stream could not be written.
    pub dropped_buffer_full: u64,
    /// Events still unsent when the shutdown timeout ran out.
    pub dropped_shutdown: u64,
    /// Events written to the stream.
    pub sent: u64,
    /// Failed attempts to write a batch to the stream.
    pub send_errors: u64,
    /// Batch writes retried after an error.
    pub retries: u64,
    /// Events written straight into `user_activity_logs` while the stream
    /// was down.
    pub stored_direct: u64,
    /// Events appended to the spool file while the stream and the database
    /// were down (replayed later).
    pub spooled: u64,
    /// Spooled events since written to the stream or the database
    /// (including those of a spool left by an earlier run).
    pub replayed: u64,
    /// Times the stream or the database was marked down or up again.
    pub fallback_switches: u64,
    /// Events dropped (oldest first) from the full retry buffer while the
    /// spool was at its byte limit.
    pub dropped_spool_full: u64,
    /// Torn or corrupt spool records skipped (a record is one batch).
    pub spool_corrupt: u64,
    /// The spool file's size in bytes now.
    pub spool_bytes: u64,
}

impl CountersSnapshot {
    /// Every event lost, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_full
            + self.dropped_closed
            + self.dropped_buffer_full
            + self.dropped_spool_full
            + self.dropped_shutdown
    }

    /// Events stored somewhere durable: the stream, the database, or the
    /// spool (awaiting replay).
    pub fn delivered(&self) -> u64 {
        self.sent + self.stored_direct + self.spooled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_are_counted_by_outcome() {
        let counters = Counters::default();
        assert!(counters.record_offer(Offer::Queued));
        assert!(!counters.record_offer(Offer::Full));
        assert!(!counters.record_offer(Offer::Closed));
        let s = counters.snapshot();
        assert_eq!((s.captured, s.dropped_full, s.dropped_closed), (1, 1, 1));
        assert_eq!(s.dropped(), 2);
    }

    /// Keeps the last value written to each metric, by name and labels.
    #[derive(Default)]
    struct LastValues(std::sync::Mutex<std::collections::BTreeMap<String, f64>>);

    struct Handle(std::sync::Arc<LastValues>, String);

    impl metrics::CounterFn for Handle {
        fn increment(&self, value: u64) {
            *self.0.0.lock().unwrap().entry(self.1.clone()).or_default() += value as f64;
        }
        fn absolute(&self, value: u64) {
            self.0
                .0
                .lock()
                .unwrap()
                .insert(self.1.clone(), value as f64);
        }
    }

    impl metrics::GaugeFn for Handle {
        fn increment(&self, value: f64) {
            *self.0.0.lock().unwrap().entry(self.1.clone()).or_default() += value;
        }
        fn decrement(&self, value: f64) {
            self.increment(-value);
        }
        fn set(&self, value: f64) {
            self.0.0.lock().unwrap().insert(self.1.clone(), value);
        }
    }

    struct TestRecorder(std::sync::Arc<LastValues>);

    impl TestRecorder {
        fn handle(&self, key: &metrics::Key) -> std::sync::Arc<Handle> {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            std::sync::Arc::new(Handle(self.0.clone(), name))
        }
    }

    impl metrics::Recorder for TestRecorder {
        fn describe_counter(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn describe_gauge(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn describe_histogram(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn register_counter(
            &self,
            key: &metrics::Key,
            _: &metrics::Metadata<'_>,
        ) -> metrics::Counter {
            metrics::Counter::from_arc(self.handle(key))
        }
        fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
            metrics::Gauge::from_arc(self.handle(key))
        }
        fn register_histogram(
            &self,
            _: &metrics::Key,
            _: &metrics::Metadata<'_>,
        ) -> metrics::Histogram {
            metrics::Histogram::noop()
        }
    }

    #[test]
    fn export_publishes_every_counter_through_the_metrics_facade() {
        let counters = Counters::default();
        Counters::add(&counters.captured, 7);
        Counters::add(&counters.sent, 5);
        Counters::add(&counters.dropped_full, 2);
        Counters::add(&counters.send_errors, 1);
        let values = std::sync::Arc::new(LastValues::default());
        let recorder = TestRecorder(values.clone());
        metrics::with_local_recorder(&recorder, || counters.export(3));
        let values = values.0.lock().unwrap();
        assert_eq!(values["activity_tracker_events_captured_total{}"], 7.0);
        assert_eq!(values["activity_tracker_events_sent_total{}"], 5.0);
        assert_eq!(
            values["activity_tracker_events_dropped_total{reason=channel_full}"],
            2.0
        );
        assert_eq!(
            values["activity_tracker_events_dropped_total{reason=buffer_full}"],
            0.0
        );
        assert_eq!(values["activity_tracker_send_errors_total{}"], 1.0);
        assert_eq!(values["activity_tracker_send_retries_total{}"], 0.0);
        assert_eq!(values["activity_tracker_buffered_events{}"], 3.0);
        assert_eq!(
            values["activity_tracker_events_dropped_total{reason=spool_full}"],
            0.0
        );
        assert_eq!(values["activity_tracker_events_stored_direct_total{}"], 0.0);
        assert_eq!(values["activity_tracker_spool_bytes{}"], 0.0);
    }

    #[test]
    fn drop_warnings_are_rate_limited_per_reason() {
        let counters = Counters::default();
        let mut warnings = DropWarnings::new(std::time::Duration::from_secs(3600));
        assert_eq!(warnings.check(&counters.snapshot()), 0);
        Counters::add(&counters.dropped_full, 2);
        Counters::add(&counters.dropped_spool_full, 1);
        assert_eq!(warnings.check(&counters.snapshot()), 2);
        Counters::add(&counters.dropped_full, 5);
        assert_eq!(warnings.check(&counters.snapshot()), 0);
        Counters::add(&counters.dropped_buffer_full, 1);
        assert_eq!(warnings.check(&counters.snapshot()), 1);
        let mut eager = DropWarnings::new(std::time::Duration::ZERO);
        assert_eq!(eager.check(&counters.snapshot()), 3);
        assert_eq!(eager.check(&counters.snapshot()), 0);
    }
}
