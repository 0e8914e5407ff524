//! The fallback chain: the stream first, then PostgreSQL directly, then the
//! local spool file.
//!
//! While the stream (the primary [`Sink`]) takes writes, the chain is a
//! pass-through. When a write fails (connection refused, timeouts, no pooled
//! connection in time, an `OOM` / `READONLY` / `LOADING` reply...), the
//! primary is marked down (logged once, counted in `fallback_switches`) and
//! batches go to the fallback sink (`activity-store`'s `PostgresSink`
//! writes them straight into `user_activity_logs` with the idempotent
//! writer the processor uses); if that fails too, it is marked down the
//! same way and batches are appended to the spool. A background probe
//! ([`Sink::probe`]: `PING`, `SELECT 1`) runs
//! every `probe_interval` and marks a destination up again once it answers
//! (logged once, counted). A destination that answers the probe but fails
//! the next write again (Redis out of memory or read-only still answers
//! `PING`) makes the probe wait twice as long, up to [`MAX_PROBE_DELAY`], so
//! a flapping server does not flood the log. The same probe task replays the spool, oldest
//! record first, into the stream (or, while the stream is still down, into
//! the database), then truncates it; a spool left by an earlier run of the
//! app is replayed the same way as soon as the tracker starts.
//!
//! Nothing here runs on the request path: writes run in the dispatcher's
//! task, the probe and the replay in a task of their own.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::spool::{Spool, SpoolError};
use super::{Sink, SinkError};
use crate::WireBatch;
use crate::counters::Counters;

/// Records read from the spool per replay step.
const REPLAY_RECORDS: usize = 8;

/// The longest wait between probes after repeated flapping.
pub(crate) const MAX_PROBE_DELAY: Duration = Duration::from_secs(30);

/// Where the fallback chain may go besides the primary sink.
#[derive(Debug, Clone)]
pub(crate) struct FallbackConfig {
    /// Where batches go while the primary is down, before the spool (the
    /// database, directly).
    pub(crate) fallback_sink: Option<Arc<dyn Sink>>,
    /// The spool file.
    pub(crate) spool_path: Option<PathBuf>,
    /// The spool's byte limit.
    pub(crate) spool_max_bytes: u64,
    /// How often a destination marked down is probed, and the spool
    /// checked for records to replay.
    pub(crate) probe_interval: Duration,
}

impl Default for FallbackConfig {
    fn default() -> Self {
        FallbackConfig {
            fallback_sink: None,
            spool_path: None,
            spool_max_bytes: super::spool::DEFAULT_SPOOL_MAX_BYTES,
            probe_interval: Duration::from_secs(1),
        }
    }
}

impl FallbackConfig {
    /// Whether any fallback is configured.
    pub(crate) fn is_enabled(&self) -> bool {
        self.fallback_sink.is_some() || self.spool_path.is_some()
    }
}

/// Where a batch was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// The primary sink (the stream).
    Stream,
    /// The fallback sink (the database, directly).
    Database,
    /// The spool file, to be replayed.
    Spool,
}

/// The spool, opened by the first one to need it.
#[derive(Debug)]
struct SpoolSlot {
    /// Where the file is.
    path: PathBuf,
    /// Its byte limit.
    max_bytes: u64,
    /// `None` until opened (or after opening failed; tried again later).
    spool: Option<Spool>,
}

/// The primary sink with its fallbacks. Shared (behind an `Arc`) by the
/// dispatcher's writes and the probe task.
#[derive(Debug)]
pub(crate) struct Chain {
    /// The stream, or the app's own sink.
    primary: Arc<dyn Sink>,
    /// The fallback sink, when configured.
    fallback_sink: Option<Arc<dyn Sink>>,
    /// The spool, when configured; the async mutex serializes appends and
    /// the replay.
    spool: Option<Mutex<SpoolSlot>>,
    /// Set when a write to the primary failed, cleared by the probe: while
    /// set, batches skip the primary. Only used when a fallback exists.
    primary_down: AtomicBool,
    /// The same for the fallback sink.
    fallback_down: AtomicBool,
    /// Shared with the tracker.
    counters: Arc<Counters>,
    /// How often the probe runs when nothing flaps.
    probe_interval: Duration,
    /// The current wait between probes and when a destination was last
    /// marked up (to see it fail again at once); guarded by the std mutex,
    /// held only to read or update them.
    probe_state: std::sync::Mutex<ProbeState>,
}

/// See [`Chain::probe_state`].
#[derive(Debug)]
struct ProbeState {
    /// The wait before the next probe.
    delay: Duration,
    /// When the probe last marked a destination up.
    last_up: Option<std::time::Instant>,
}

impl Chain {
    /// The chain over `primary` with the fallbacks of `config`.
    pub(crate) fn new(
        primary: Arc<dyn Sink>,
        config: FallbackConfig,
        counters: Arc<Counters>,
    ) -> Self {
        Chain {
            primary,
            fallback_sink: config.fallback_sink,
            spool: config.spool_path.map(|path| {
                Mutex::new(SpoolSlot {
                    path,
                    max_bytes: config.spool_max_bytes,
                    spool: None,
                })
            }),
            primary_down: AtomicBool::new(false),
            fallback_down: AtomicBool::new(false),
            counters,
            probe_interval: config.probe_interval.max(Duration::from_millis(10)),
            probe_state: std::sync::Mutex::new(ProbeState {
                delay: config.probe_interval.max(Duration::from_millis(10)),
                last_up: None,
            }),
        }
    }

    /// The primary sink.
    pub(crate) fn primary(&self) -> Arc<dyn Sink> {
        Arc::clone(&self.primary)
    }

    /// Whether there is anything besides the primary.
    pub(crate) fn has_fallback(&self) -> bool {
        self.fallback_sink.is_some() || self.spool.is_some()
    }

    /// Stores `batch` in the first destination that takes it.
    pub(crate) async fn send(&self, batch: &WireBatch) -> Result<Route, SinkError> {
        if !self.has_fallback() {
            return self.primary.send_wire(batch).await.map(|()| Route::Stream);
        }
        let mut last_error = None;
        if !self.primary_down.load(Ordering::Acquire) {
            match self.primary.send_wire(batch).await {
                Ok(()) => return Ok(Route::Stream),
                Err(error) => {
                    self.mark_primary(false, Some(&error));
                    last_error = Some(error);
                }
            }
        }
        if let Some(sink) = &self.fallback_sink {
            if !self.fallback_down.load(Ordering::Acquire) {
                match sink.send_wire(batch).await {
                    Ok(()) => return Ok(Route::Database),
                    Err(error) => {
                        self.mark_fallback_sink(false, Some(&error));
                        last_error = Some(error);
                    }
                }
            }
        }
        if let Some(slot) = &self.spool {
            let mut slot = slot.lock().await;
            let result = match self.open_spool(&mut slot).await {
                Ok(spool) => spool.append(batch).await,
                Err(error) => Err(error),
            };
            let size = slot.spool.as_ref().map_or(0, Spool::len);
            self.counters.set_spool_bytes(size);
            return match result {
                Ok(_) => Ok(Route::Spool),
                Err(SpoolError::Full { .. }) => Err(SinkError::SpoolFull),
                Err(error) => Err(SinkError::Other(Box::new(error))),
            };
        }
        Err(last_error.unwrap_or_else(|| {
            SinkError::Other("every destination is down; waiting for the probe".into())
        }))
    }

    /// Opens the spool if it is not open yet, counting a corrupt tail.
    async fn open_spool<'a>(&self, slot: &'a mut SpoolSlot) -> Result<&'a mut Spool, SpoolError> {
        if slot.spool.is_none() {
            let (spool, opened) = Spool::open(&slot.path, slot.max_bytes).await?;
            if opened.corrupt_records > 0 {
                tracing::warn!(
                    path = %slot.path.display(),
                    bytes = opened.corrupt_bytes,
                    "the activity spool ends in a torn or corrupt record; skipped it"
                );
                Counters::add(&self.counters.spool_corrupt, opened.corrupt_records);
            }
            if opened.records > 0 {
                tracing::info!(
                    path = %slot.path.display(),
                    records = opened.records,
                    "the activity spool holds batches from before; replaying them"
                );
            }
            self.counters.set_spool_bytes(spool.len());
            slot.spool = Some(spool);
        }
        Ok(slot.spool.as_mut().expect("opened above"))
    }

    /// Records a switch for the probe's pacing: a failure soon after a
    /// destination came back doubles the wait between probes; one after a
    /// steady spell resets it.
    fn pace(&self, up: bool) {
        let mut state = self
            .probe_state
            .lock()
            .expect("never poisoned: no panics held");
        let now = std::time::Instant::now();
        if up {
            state.last_up = Some(now);
        } else if state
            .last_up
            .is_some_and(|at| now.duration_since(at) < state.delay * 2)
        {
            state.delay = (state.delay * 2).min(MAX_PROBE_DELAY.max(self.probe_interval));
        } else {
            state.delay = self.probe_interval;
        }
    }

    fn probe_delay(&self) -> Duration {
        self.probe_state
            .lock()
            .expect("never poisoned: no panics held")
            .delay
    }

    /// Marks the primary up or down; logs and counts a change.
    fn mark_primary(&self, up: bool, error: Option<&SinkError>) {
        if self.primary_down.swap(!up, Ordering::AcqRel) == up {
            self.pace(up);
            Counters::add(&self.counters.fallback_switches, 1);
            if up {
                tracing::info!("activity stream answers again; writing to it");
            } else {
                let error = error.map(ToString::to_string).unwrap_or_default();
                tracing::warn!(%error, "writing to the activity stream failed; falling back");
            }
        }
    }

    /// Marks the fallback sink up or down; logs and counts a change.
    fn mark_fallback_sink(&self, up: bool, error: Option<&SinkError>) {
        if self.fallback_down.swap(!up, Ordering::AcqRel) == up {
            self.pace(up);
            Counters::add(&self.counters.fallback_switches, 1);
            if up {
                tracing::info!("the activity fallback sink answers again");
            } else {
                let error = error.map(ToString::to_string).unwrap_or_default();
                tracing::warn!(%error, "writing activities to the fallback sink failed");
            }
        }
    }

    /// The probe task: at once, then every `probe_interval` (longer while
    /// a destination flaps), probes what is marked down and replays the
    /// spool into what is up. Runs until `cancel` fires.
    pub(crate) async fn maintain(self: Arc<Self>, cancel: CancellationToken) {
        let mut first = true;
        loop {
            let delay = if first {
                Duration::ZERO
            } else {
                self.probe_delay()
            };
            first = false;
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            self.probe().await;
            if self.spool.is_some() {
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    _ = self.replay() => {}
                }
            }
        }
    }

    /// Probes each destination marked down.
    async fn probe(&self) {
        if self.primary_down.load(Ordering::Acquire) && self.primary.probe().await.is_ok() {
            self.mark_primary(true, None);
        }
        if let Some(sink) = &self.fallback_sink {
            if self.fallback_down.load(Ordering::Acquire) && sink.probe().await.is_ok() {
                self.mark_fallback_sink(true, None);
            }
        }
    }

    /// Replays the spool, oldest first, into the stream (or the database
    /// while the stream is down); truncates it when all is replayed. Stops
    /// at the first failed write (the record is replayed again later).
    async fn replay(&self) {
        let Some(slot) = &self.spool else { return };
        let mut slot = slot.lock().await;
        let path = slot.path.clone();
        let spool = match self.open_spool(&mut slot).await {
            Ok(spool) => spool,
            Err(error) => {
                tracing::warn!(%error, "the activity spool cannot be opened; will try again");
                return;
            }
        };
        let mut replayed = 0u64;
        while spool.has_pending() {
            let (records, bad) = match spool.read_pending(REPLAY_RECORDS).await {
                Ok(read) => read,
                Err(error) => {
                    tracing::warn!(%error, "reading the activity spool failed; will try again");
                    return;
                }
            };
            if bad > 0 {
                Counters::add(&self.counters.spool_corrupt, bad);
            }
            for (end, batch) in records {
                match self.replay_batch(&batch).await {
                    Some(route) => {
                        spool.mark_replayed(end);
                        replayed += batch.len() as u64;
                        Counters::add(&self.counters.replayed, batch.len() as u64);
                        tracing::debug!(?route, events = batch.len(), "replayed a spooled batch");
                    }
                    None => return,
                }
            }
        }
        match spool.truncate_if_replayed().await {
            Ok(true) => {
                tracing::info!(path = %path.display(), events = replayed, "activity spool replayed and emptied");
            }
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "emptying the activity spool failed"),
        }
        self.counters.set_spool_bytes(spool.len());
    }

    /// Writes one spooled batch to the stream or the database, whichever is
    /// up; `None` if neither took it.
    async fn replay_batch(&self, batch: &WireBatch) -> Option<Route> {
        if !self.primary_down.load(Ordering::Acquire) {
            match self.primary.send_wire(batch).await {
                Ok(()) => return Some(Route::Stream),
                Err(error) => self.mark_primary(false, Some(&error)),
            }
        }
        if let Some(sink) = &self.fallback_sink {
            if !self.fallback_down.load(Ordering::Acquire) {
                match sink.send_wire(batch).await {
                    Ok(()) => return Some(Route::Database),
                    Err(error) => self.mark_fallback_sink(false, Some(&error)),
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Activity, ActivityType};
    use futures_util::FutureExt;
    use futures_util::future::BoxFuture;
    use std::sync::atomic::AtomicUsize;

    /// A primary that fails while `down` is set.
    #[derive(Debug, Default)]
    struct Switchable {
        down: AtomicBool,
        stored: AtomicUsize,
    }

    impl Sink for Switchable {
        fn send<'a>(&'a self, batch: &'a [Activity]) -> BoxFuture<'a, Result<(), SinkError>> {
            async move {
                if self.down.load(Ordering::SeqCst) {
                    return Err(SinkError::Other("down".into()));
                }
                self.stored.fetch_add(batch.len(), Ordering::SeqCst);
                Ok(())
            }
            .boxed()
        }
    }

    fn batch(n: usize) -> WireBatch {
        let activities: Vec<Activity> = (0..n)
            .map(|_| Activity::new(ActivityType::Logout))
            .collect();
        WireBatch::from(&activities[..])
    }

    #[tokio::test]
    async fn spools_while_the_primary_is_down_and_replays_when_it_is_back() {
        let dir = std::env::temp_dir().join(format!("chain-test-{}", uuid::Uuid::now_v7()));
        let primary = Arc::new(Switchable::default());
        let counters = Arc::new(Counters::default());
        let chain = Chain::new(
            primary.clone(),
            FallbackConfig {
                spool_path: Some(dir.join("spool")),
                ..FallbackConfig::default()
            },
            counters.clone(),
        );
        assert_eq!(chain.send(&batch(3)).await.unwrap(), Route::Stream);
        primary.down.store(true, Ordering::SeqCst);
        assert_eq!(chain.send(&batch(4)).await.unwrap(), Route::Spool);
        assert_eq!(chain.send(&batch(5)).await.unwrap(), Route::Spool);
        // Nothing replayed while the primary is down.
        chain.probe().await;
        chain.replay().await;
        assert_eq!(counters.snapshot().replayed, 0);
        assert!(counters.snapshot().spool_bytes > 0);
        primary.down.store(false, Ordering::SeqCst);
        chain.probe().await;
        chain.replay().await;
        let s = counters.snapshot();
        assert_eq!((s.replayed, s.fallback_switches, s.spool_bytes), (9, 2, 0));
        assert_eq!(primary.stored.load(Ordering::SeqCst), 12);
        assert_eq!(std::fs::metadata(dir.join("spool")).unwrap().len(), 0);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_destination_failing_right_after_its_probe_is_probed_less_often() {
        let primary = Arc::new(Switchable::default());
        let chain = Chain::new(
            primary,
            FallbackConfig {
                spool_path: Some(std::env::temp_dir().join("unused.spool")),
                probe_interval: Duration::from_secs(1),
                ..FallbackConfig::default()
            },
            Arc::new(Counters::default()),
        );
        chain.mark_primary(false, None);
        assert_eq!(chain.probe_delay(), Duration::from_secs(1));
        for expected in [2, 4, 8, 16, 30, 30] {
            chain.mark_primary(true, None);
            chain.mark_primary(false, None);
            assert_eq!(chain.probe_delay(), Duration::from_secs(expected));
        }
        chain.probe_state.lock().unwrap().last_up =
            Some(std::time::Instant::now() - Duration::from_secs(120));
        chain.mark_primary(false, None);
        chain.mark_primary(false, None);
        assert_eq!(
            chain.probe_delay(),
            Duration::from_secs(30),
            "no change, no pacing"
        );
        chain.mark_primary(true, None);
        chain.probe_state.lock().unwrap().last_up =
            Some(std::time::Instant::now() - Duration::from_secs(120));
        chain.mark_primary(false, None);
        assert_eq!(
            chain.probe_delay(),
            Duration::from_secs(1),
            "steady spell resets"
        );
        assert_eq!(chain.counters.snapshot().fallback_switches, 15);
    }

    #[tokio::test]
    async fn a_full_spool_is_an_error_the_dispatcher_retries() {
        let dir = std::env::temp_dir().join(format!("chain-test-{}", uuid::Uuid::now_v7()));
        let primary = Arc::new(Switchable::default());
        primary.down.store(true, Ordering::SeqCst);
        let chain = Chain::new(
            primary,
            FallbackConfig {
                spool_path: Some(dir.join("spool")),
                spool_max_bytes: 100,
                ..FallbackConfig::default()
            },
            Arc::new(Counters::default()),
        );
        assert!(matches!(
            chain.send(&batch(2)).await,
            Err(SinkError::SpoolFull)
        ));
        let _ = std::fs::remove_dir_all(dir);
    }
}
