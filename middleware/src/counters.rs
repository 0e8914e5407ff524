//! The tracker's counters: plain atomics bumped on the request path and by
//! the dispatcher, read as a [`CountersSnapshot`] and exported through the
//! `metrics` crate facade by the dispatcher (never from the request path).
//!
//! Exported names (all counters unless said otherwise):
//!
//! | name | what |
//! |---|---|
//! | `activity_tracker_events_captured_total` | events handed to the channel |
//! | `activity_tracker_events_sent_total` | events written to the stream |
//! | `activity_tracker_events_dropped_total{reason}` | events lost: `reason` is `channel_full`, `closed`, `buffer_full` or `shutdown` |
//! | `activity_tracker_events_skipped_total` | captured requests that turned out not to be recorded |
//! | `activity_tracker_send_errors_total` | failed batch writes |
//! | `activity_tracker_send_retries_total` | batch writes retried after an error |
//! | `activity_tracker_buffered_events` (gauge) | events held by the dispatcher, waiting to be written |

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc::error::TrySendError;

/// Shared by the layer, the manual API and the dispatcher (behind an `Arc`);
/// atomics rather than a lock because the request path bumps them.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Events handed to the channel (request path and manual API).
    pub(crate) captured: AtomicU64,
    /// Events dropped because the channel was full.
    pub(crate) dropped_full: AtomicU64,
    /// Events dropped because the dispatcher had stopped (after shutdown).
    pub(crate) dropped_closed: AtomicU64,
    /// Events dropped (oldest first) because the dispatcher's retry buffer
    /// was full while the sink kept failing.
    pub(crate) dropped_buffer_full: AtomicU64,
    /// Events still unsent when the shutdown timeout ran out.
    pub(crate) dropped_shutdown: AtomicU64,
    /// Captured requests the dispatcher did not turn into an activity
    /// (the handler asked to skip, or the status is not recorded).
    pub(crate) skipped: AtomicU64,
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

    /// Counts the outcome of a `try_send` into the tracker's channel: one
    /// more captured event, or one more drop (full or closed). Returns
    /// whether the event was queued. Never blocks, never fails.
    pub(crate) fn record_offer<T>(&self, result: Result<(), TrySendError<T>>) -> bool {
        match result {
            Ok(()) => {
                Counters::add(&self.captured, 1);
                true
            }
            Err(TrySendError::Full(_)) => {
                Counters::add(&self.dropped_full, 1);
                false
            }
            Err(TrySendError::Closed(_)) => {
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
            skipped: self.skipped.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            send_errors: self.send_errors.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
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
            ("shutdown", s.dropped_shutdown),
        ] {
            metrics::counter!("activity_tracker_events_dropped_total", "reason" => reason)
                .absolute(value);
        }
        metrics::counter!("activity_tracker_events_skipped_total").absolute(s.skipped);
        metrics::counter!("activity_tracker_send_errors_total").absolute(s.send_errors);
        metrics::counter!("activity_tracker_send_retries_total").absolute(s.retries);
        metrics::gauge!("activity_tracker_buffered_events").set(buffered as f64);
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
    /// Events dropped because the tracker had been shut down.
    pub dropped_closed: u64,
    /// Events dropped (oldest first) because the retry buffer was full
    /// while the stream could not be written.
    pub dropped_buffer_full: u64,
    /// Events still unsent when the shutdown timeout ran out.
    pub dropped_shutdown: u64,
    /// Captured requests that were not recorded after all (skipped by the
    /// handler or by configuration).
    pub skipped: u64,
    /// Events written to the stream.
    pub sent: u64,
    /// Failed attempts to write a batch to the stream.
    pub send_errors: u64,
    /// Batch writes retried after an error.
    pub retries: u64,
}

impl CountersSnapshot {
    /// Every event lost, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_full + self.dropped_closed + self.dropped_buffer_full + self.dropped_shutdown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    #[test]
    fn offers_are_counted_by_outcome() {
        let counters = Counters::default();
        let (tx, rx) = mpsc::channel::<u8>(1);
        assert!(counters.record_offer(tx.try_send(1)));
        assert!(!counters.record_offer(tx.try_send(2)));
        drop(rx);
        assert!(!counters.record_offer(tx.try_send(3)));
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
    }
}
