//! The processor's counters: bumped by the consumer, read by the admin API
//! (`queue-status`) and by `/readyz`, and mirrored to the `metrics` facade
//! as `activity_processor_*` for `/metrics`.
//!
//! ```
//! use activity_processor::stats::ProcessorStats;
//!
//! let stats = ProcessorStats::new();
//! stats.record_consumed(3);
//! stats.record_batch(2, 1, std::time::Duration::from_millis(4));
//! let snapshot = stats.snapshot();
//! assert_eq!((snapshot.consumed, snapshot.stored, snapshot.duplicates), (3, 2, 1));
//! assert_eq!(snapshot.db_write_success_rate, Some(1.0));
//! ```

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Seconds in the processed-per-second window.
const RATE_WINDOW_SECS: usize = 60;

/// Counters shared (behind an `Arc`) by the consumer's tasks, the HTTP
/// server and the admin API; atomics so that reading never waits on the
/// consumer.
#[derive(Debug)]
pub struct ProcessorStats {
    /// Events read from the stream or the legacy list (each delivery).
    consumed: AtomicU64,
    /// Rows newly inserted.
    stored: AtomicU64,
    /// Events already in the table (redelivery), skipped by the insert.
    duplicates: AtomicU64,
    /// Entries written to the dead-letter stream.
    dead_lettered: AtomicU64,
    /// Failed database writes (each attempt), transient or not.
    db_errors: AtomicU64,
    /// Database writes attempted (each attempt), for the success rate.
    db_writes: AtomicU64,
    /// Entries claimed from consumers that stopped (`XAUTOCLAIM`) or
    /// recovered from a legacy processing list.
    reclaimed: AtomicU64,
    /// Batches committed.
    batches: AtomicU64,
    /// When the last batch was committed, in Unix milliseconds; 0 = never.
    last_batch_at_ms: AtomicI64,
    /// Set while database writes are failing and being retried: `/readyz`
    /// reports not ready.
    db_retrying: AtomicBool,
    /// Set while the stream reader's reads come back full: the stream has a
    /// backlog.
    backlogged: AtomicBool,
    /// Events handled (stored, duplicate or dead-lettered) per second over
    /// the last minute: `(unix second, count)` per slot, indexed by the
    /// second modulo 60. The mutex guards only this ring.
    window: Mutex<[(u64, u64); RATE_WINDOW_SECS]>,
}

impl Default for ProcessorStats {
    fn default() -> Self {
        ProcessorStats {
            consumed: AtomicU64::new(0),
            stored: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            db_errors: AtomicU64::new(0),
            db_writes: AtomicU64::new(0),
            reclaimed: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            last_batch_at_ms: AtomicI64::new(0),
            db_retrying: AtomicBool::new(false),
            backlogged: AtomicBool::new(false),
            window: Mutex::new([(0, 0); RATE_WINDOW_SECS]),
        }
    }
}

/// A point-in-time copy of [`ProcessorStats`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Events read (each delivery).
    pub consumed: u64,
    /// Rows newly inserted.
    pub stored: u64,
    /// Events already stored, skipped.
    pub duplicates: u64,
    /// Entries written to the dead-letter stream.
    pub dead_lettered: u64,
    /// Failed database write attempts.
    pub db_errors: u64,
    /// Entries claimed from stopped consumers.
    pub reclaimed: u64,
    /// Batches committed.
    pub batches: u64,
    /// When the last batch was committed.
    pub last_batch_at: Option<DateTime<Utc>>,
    /// Events handled per second, averaged over the last minute.
    pub processed_per_second: f64,
    /// Share of database write attempts that succeeded; `None` before the first.
    pub db_write_success_rate: Option<f64>,
    /// Whether database writes are currently failing and being retried.
    pub db_retrying: bool,
}

impl ProcessorStats {
    /// All counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// `n` events were read (an entry of version 2 holds several).
    pub fn record_consumed(&self, n: u64) {
        self.consumed.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("activity_processor_consumed_total").increment(n);
    }

    /// `n` entries were claimed from a stopped consumer (their events are
    /// also counted as consumed).
    pub fn record_reclaimed(&self, n: u64) {
        self.reclaimed.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("activity_processor_reclaimed_total").increment(n);
    }

    /// `n` entries went to the dead-letter stream.
    pub fn record_dead_lettered(&self, n: u64) {
        self.dead_lettered.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("activity_processor_dead_lettered_total").increment(n);
        self.record_processed(n);
    }

    /// A database write attempt failed.
    pub fn record_db_error(&self) {
        self.db_writes.fetch_add(1, Ordering::Relaxed);
        self.db_errors.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("activity_processor_db_errors_total").increment(1);
    }

    /// A batch was committed: `stored` new rows, `duplicates` skipped, in `took`.
    pub fn record_batch(&self, stored: u64, duplicates: u64, took: Duration) {
        self.db_writes.fetch_add(1, Ordering::Relaxed);
        self.stored.fetch_add(stored, Ordering::Relaxed);
        self.duplicates.fetch_add(duplicates, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.last_batch_at_ms
            .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
        metrics::counter!("activity_processor_stored_total").increment(stored);
        metrics::counter!("activity_processor_duplicates_total").increment(duplicates);
        metrics::counter!("activity_processor_batches_total").increment(1);
        metrics::histogram!("activity_processor_batch_size").record((stored + duplicates) as f64);
        metrics::histogram!("activity_processor_write_seconds").record(took.as_secs_f64());
        self.record_processed(stored + duplicates);
    }

    /// Marks database writes as failing (retrying) or working again.
    pub fn set_db_retrying(&self, retrying: bool) {
        self.db_retrying.store(retrying, Ordering::Relaxed);
        metrics::gauge!("activity_processor_db_retrying").set(if retrying { 1.0 } else { 0.0 });
    }

    /// Whether database writes are failing and being retried.
    pub fn db_retrying(&self) -> bool {
        self.db_retrying.load(Ordering::Relaxed)
    }

    /// Records whether the stream reader's last read came back full
    /// (`BATCH_SIZE` entries): more were waiting.
    pub fn set_backlogged(&self, backlogged: bool) {
        self.backlogged.store(backlogged, Ordering::Relaxed);
    }

    /// Whether the stream has a backlog (the last read came back full).
    pub fn backlogged(&self) -> bool {
        self.backlogged.load(Ordering::Relaxed)
    }

    fn record_processed(&self, n: u64) {
        let now = unix_secs();
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut window[(now % RATE_WINDOW_SECS as u64) as usize];
        if slot.0 != now {
            *slot = (now, 0);
        }
        slot.1 += n;
    }

    fn processed_per_second(&self) -> f64 {
        let now = unix_secs();
        let window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let total: u64 = window
            .iter()
            .filter(|(second, _)| now.saturating_sub(*second) < RATE_WINDOW_SECS as u64)
            .map(|(_, count)| count)
            .sum();
        total as f64 / RATE_WINDOW_SECS as f64
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let writes = self.db_writes.load(Ordering::Relaxed);
        let errors = self.db_errors.load(Ordering::Relaxed);
        let last = self.last_batch_at_ms.load(Ordering::Relaxed);
        StatsSnapshot {
            consumed: self.consumed.load(Ordering::Relaxed),
            stored: self.stored.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            db_errors: errors,
            reclaimed: self.reclaimed.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            last_batch_at: (last != 0)
                .then(|| DateTime::from_timestamp_millis(last))
                .flatten(),
            processed_per_second: self.processed_per_second(),
            db_write_success_rate: (writes > 0)
                .then(|| writes.saturating_sub(errors) as f64 / writes as f64),
            db_retrying: self.db_retrying(),
        }
    }
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_success_rate_add_up() {
        let stats = ProcessorStats::new();
        assert_eq!(stats.snapshot().db_write_success_rate, None);
        stats.record_batch(50, 10, Duration::from_millis(1));
        stats.record_dead_lettered(2);
        stats.record_db_error();
        let s = stats.snapshot();
        assert_eq!(s.db_write_success_rate, Some(0.5));
        assert!((s.processed_per_second - 62.0 / 60.0).abs() < 1e-9);
        assert!(s.last_batch_at.is_some());
        stats.set_db_retrying(true);
        assert!(stats.snapshot().db_retrying);
    }
}
