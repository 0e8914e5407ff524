//! The background task that moves events from the tracker's intake into
//! the stream. The tracker runs it on a thread of its own (see
//! `tracker::thread`), apart from the app's request handling.
//!
//! Events arrive as wire JSON lines already, written by the request's
//! thread (a captured request straight from its facts, with no
//! [`Activity`](crate::Activity) made; an app's own activity by `track`)
//! into the intake (module `intake`), which cuts them into batches of at
//! most `max_batch`. The dispatcher takes whole batches from it, about one
//! a round, into its queue (module `queue`) and hands them to its [`Sink`]
//! as [`WireBatch`]es. A full batch goes at once; a partial one waits at
//! most the linger (5 ms by default, from its first event) for more, so a
//! busy app writes a few full pipelines instead of many tiny ones. A
//! failing batch is retried with capped exponential backoff ([`Backoff`],
//! with jitter) while what the intake fills keeps being taken into a
//! bounded buffer; when that buffer is over its capacity the oldest events
//! are dropped and counted (`dropped_buffer_full`), so the newest activity
//! survives a long outage and the request path never feels it.
//!
//! With fallbacks configured (module `fallback`), a batch the stream does
//! not take goes straight into PostgreSQL, else into the local spool file
//! (module `spool`); only when the spool is at its byte limit do batches stay in
//! the buffer, and drops past its capacity are then counted as
//! `dropped_spool_full`. Every drop reason is logged at most once per
//! `DROP_WARNING_PERIOD` (10 s).
//!
//! The loop's state is this module's `Dispatcher`; the writes under way
//! and those of a failed round, with their backoff, are module `writes`.
//!
//! Shutdown is a [`CancellationToken`]: layers cloned into the app keep the
//! intake's senders alive, so the dispatcher cannot wait for the last of
//! them. When cancelled it closes the intake itself, takes what is in it,
//! and flushes until the buffer is empty or the shutdown timeout runs out.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use activity_tracker::{Activity, ActivityTracker, ActivityType};
//!
//! let tracker = ActivityTracker::builder()
//!     .redis_url("redis://127.0.0.1:6379")
//!     .max_batch(512)
//!     .build()
//!     .await?;
//! tracker.track(Activity::new(ActivityType::Login).user_id("user-123"));
//! let summary = tracker.shutdown().await;
//! assert_eq!(summary.unsent, 0);
//! # Ok(()) }
//! ```

mod connections;
pub(crate) mod fallback;
pub(crate) mod intake;
mod queue;
mod redis;
pub(crate) mod spool;
mod stream_cap;
mod writes;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use self::redis::{RedisStreamSink, StreamFormat};
pub(crate) use crate::sink::{Sink, SinkError};

use self::fallback::{Chain, FallbackConfig, Route};
use self::intake::{Intake, Take};
use self::queue::Queue;
use self::writes::Writes;
use crate::counters::{Counters, DropWarnings};
use crate::{Backoff, WireBatch};

/// How the dispatcher batches, buffers and retries.
#[derive(Debug, Clone)]
pub(crate) struct DispatcherConfig {
    /// Most events per sink call (the intake cuts batches at this).
    pub(crate) max_batch: usize,
    /// Most sink calls under way at once: while Redis stores one batch,
    /// the next is serialized.
    pub(crate) max_in_flight: usize,
    /// How long a partial batch may wait for more events before it is
    /// written: under load, a few milliseconds turn many tiny pipelines into
    /// a few full ones, which costs the app and Redis far less CPU.
    pub(crate) linger: Duration,
    /// Most events held while the sink fails; the oldest go first past it.
    pub(crate) buffer_capacity: usize,
    /// First retry delay.
    pub(crate) backoff_initial: Duration,
    /// Cap on the retry delay.
    pub(crate) backoff_max: Duration,
    /// How long shutdown may spend flushing.
    pub(crate) shutdown_timeout: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            max_batch: 1024,
            max_in_flight: 2,
            linger: Duration::from_millis(5),
            buffer_capacity: 100_000,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

/// What the dispatcher did by the time it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownSummary {
    /// Events written to the stream over the tracker's whole life.
    pub sent: u64,
    /// Events written to the stream while shutting down (part of `sent`).
    pub flushed: u64,
    /// Events written straight into the database (Redis-down fallback)
    /// over the tracker's whole life.
    pub stored_direct: u64,
    /// Events appended to the spool over the tracker's whole life; those
    /// not yet replayed (`spooled - replayed` in the counters) stay in the
    /// file and are replayed by the next tracker started on it.
    pub spooled: u64,
    /// Events that were still waiting when the shutdown timeout ran out,
    /// now lost (counted as `dropped_shutdown`).
    pub unsent: u64,
    /// Whether the flush was cut short by the shutdown timeout.
    pub timed_out: bool,
}

/// The shortest time between two warnings about drops of one reason.
pub(crate) const DROP_WARNING_PERIOD: Duration = Duration::from_secs(10);

/// A deadline that never comes, for a disabled `select!` branch.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

/// How a round of the loop ended.
enum Round {
    /// Go round again.
    Again,
    /// Shutting down and everything is written: stop.
    Flushed,
    /// The shutdown deadline passed: stop, counting what is left as lost.
    TimedOut,
}

/// The background task's state. Owned by the task alone; the intake is
/// the one thing it shares with the producers.
pub(crate) struct Dispatcher {
    /// Where the layer and `track` put events; closed by the dispatcher
    /// when it shuts down.
    intake: Arc<Intake>,
    /// Where batches go (the sink and its fallbacks); shared with the
    /// writes under way and the probe task.
    chain: Arc<Chain>,
    /// Shared with the layer and the tracker.
    counters: Arc<Counters>,
    config: DispatcherConfig,
    /// Batches due to be sent, oldest first.
    queue: Queue,
    /// Batches just taken from the intake; empty between rounds.
    taken: Vec<WireBatch>,
    /// Set when a write failed on a full spool, cleared by a write to the
    /// stream or the database: says which reason drops from the buffer
    /// count under.
    spool_full: bool,
    /// Rate-limits the warnings about drops.
    drop_warnings: DropWarnings,
    /// The writes under way and the failed ones awaiting their retry.
    writes: Writes,
    /// Set when shutdown starts: flushing must end by then.
    deadline: Option<Instant>,
    /// `sent` when shutdown started, for the summary's `flushed`.
    sent_before_shutdown: u64,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("chain", &self.chain)
            .field("config", &self.config)
            .field("buffered", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    pub(crate) fn new(
        intake: Arc<Intake>,
        sink: Arc<dyn Sink>,
        counters: Arc<Counters>,
        config: DispatcherConfig,
    ) -> Self {
        let config = DispatcherConfig {
            max_batch: config.max_batch.max(1),
            max_in_flight: config.max_in_flight.max(1),
            buffer_capacity: config.buffer_capacity.max(config.max_batch.max(1)),
            ..config
        };
        Dispatcher {
            intake,
            chain: Arc::new(Chain::new(
                sink,
                FallbackConfig::default(),
                counters.clone(),
            )),
            counters,
            queue: Queue::new(),
            taken: Vec::new(),
            writes: Writes::new(Backoff::new(config.backoff_initial, config.backoff_max)),
            config,
            spool_full: false,
            drop_warnings: DropWarnings::new(DROP_WARNING_PERIOD),
            deadline: None,
            sent_before_shutdown: 0,
        }
    }

    /// Adds fallbacks behind the sink (a no-op for an empty config).
    pub(crate) fn fallback(mut self, config: FallbackConfig) -> Self {
        if config.is_enabled() {
            let primary = self.chain.primary();
            self.chain = Arc::new(Chain::new(primary, config, self.counters.clone()));
        }
        self
    }

    /// Publishes the counters and warns about new drops (rate-limited).
    fn export(&mut self, buffered: usize) {
        self.counters.export(buffered);
        self.drop_warnings.check(&self.counters.snapshot());
    }

    /// Runs until `cancel` fires (or every sender is gone), then flushes
    /// within the shutdown timeout. Each round: notice shutdown, take what
    /// is due from the intake, then either retry a failed round after its
    /// backoff, or start the writes that are due and wait for something to
    /// happen (a write done, more events, the linger, shutdown).
    pub(crate) async fn run(mut self, cancel: CancellationToken) -> ShutdownSummary {
        // Probes what is down and replays the spool; stopped with the rest.
        let maintenance = self
            .chain
            .has_fallback()
            .then(|| tokio::spawn(Arc::clone(&self.chain).maintain(cancel.clone())));
        let timed_out = loop {
            self.watch_shutdown(&cancel);
            if !self.take_input(&cancel).await {
                continue;
            }
            let round = if self.writes.round_failed() {
                self.retry_failed(&cancel).await
            } else {
                self.start_writes();
                self.wait_for_progress(&cancel).await
            };
            match round {
                Round::Again => {}
                Round::Flushed => break false,
                Round::TimedOut => break true,
            }
        };
        self.finish(timed_out, maintenance).await
    }

    /// Sets the shutdown deadline once cancelled, and closes the intake
    /// once shutting down, so that what it holds is all that is left.
    fn watch_shutdown(&mut self, cancel: &CancellationToken) {
        if cancel.is_cancelled() {
            self.start_shutdown();
        }
        if self.deadline.is_some() && !self.intake.is_closed() {
            self.sent_before_shutdown = self.counters.snapshot().sent;
            self.intake.close();
        }
    }

    /// Starts the shutdown clock, unless it runs already.
    fn start_shutdown(&mut self) {
        self.deadline
            .get_or_insert_with(|| Instant::now() + self.config.shutdown_timeout);
    }

    /// Moves what is due from the intake into the queue: all of it once
    /// closed; else the full batches, and the one filling once its linger
    /// is over. With nothing to do, waits for the first event first.
    /// Returns `false` when the round is to start over (cancelled, or
    /// every sender gone, while idle).
    async fn take_input(&mut self, cancel: &CancellationToken) -> bool {
        if !self.intake.is_closed() && self.queue.is_empty() && self.writes.is_idle() {
            while !self.intake.has_events() {
                if self.intake.senders_gone() {
                    // The tracker was dropped without `shutdown()`; flush
                    // as if it had been called.
                    self.start_shutdown();
                    return false;
                }
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return false,
                    _ = self.intake.woken() => {}
                }
            }
        }
        self.absorb();
        true
    }

    /// Every write of the round is done and some failed: puts the failed
    /// batches back in front, in order, and waits the backoff before they
    /// are written again.
    async fn retry_failed(&mut self, cancel: &CancellationToken) -> Round {
        let (failed, delay) = self.writes.take_failed();
        for batch in failed.into_iter().rev() {
            self.queue.push_front(batch);
        }
        self.trim();
        if !self.wait_for_retry(delay, cancel).await {
            return Round::TimedOut;
        }
        Counters::add(&self.counters.retries, 1);
        Round::Again
    }

    /// Starts writes of the queued batches (all of them due), up to
    /// `max_in_flight`. None while a failed round waits for its other
    /// writes.
    fn start_writes(&mut self) {
        if self.writes.has_failed() {
            return;
        }
        while self.writes.in_flight() < self.config.max_in_flight {
            let Some(batch) = self.queue.pop_batch() else {
                break;
            };
            self.writes.start(&self.chain, batch);
        }
    }

    /// Waits for the next thing that moves the loop on: a write done, a
    /// wake-up from the intake (its first event, a batch filled), the end
    /// of the linger of the batch it is filling, shutdown or its deadline.
    /// Returns at once when there is nothing to wait for: `Flushed` when
    /// shutting down with everything written.
    async fn wait_for_progress(&mut self, cancel: &CancellationToken) -> Round {
        let open_due = self.intake.open_due();
        if self.writes.in_flight() == 0 && open_due.is_none() {
            if self.queue.is_empty() && self.deadline.is_some() && !self.intake.has_events() {
                return Round::Flushed;
            }
            return Round::Again;
        }
        let until = self.deadline.unwrap_or_else(far_future);
        // Woken for more only while the buffer holds less than a batch:
        // else the next round's top-up takes them.
        let reading = self.deadline.is_none() && self.queue.len() < self.config.max_batch;
        tokio::select! {
            biased;
            Some((batch, result)) = self.writes.next_written() => self.on_written(batch, result),
            _ = cancel.cancelled(), if self.deadline.is_none() => self.start_shutdown(),
            _ = tokio::time::sleep_until(until), if self.deadline.is_some() => {
                return Round::TimedOut;
            }
            _ = tokio::time::sleep_until(open_due.unwrap_or_else(far_future)), if open_due.is_some() => {}
            _ = self.intake.woken(), if reading => {
                if self.intake.senders_gone() {
                    self.start_shutdown();
                }
            }
        }
        Round::Again
    }

    /// Counts a finished write by where it went, or keeps its batch for the
    /// retry round.
    fn on_written(&mut self, batch: WireBatch, result: Result<Route, SinkError>) {
        match result {
            Ok(route) => {
                let counter = match route {
                    Route::Stream => &self.counters.sent,
                    Route::Database => &self.counters.stored_direct,
                    Route::Spool => &self.counters.spooled,
                };
                Counters::add(counter, batch.len() as u64);
                self.intake.recycle(batch);
                // A small batch squeezed into a nearly full spool
                // does not make room for the buffer's backlog.
                if route != Route::Spool {
                    self.spool_full = false;
                }
                self.writes.succeeded();
            }
            Err(error) => {
                self.spool_full = matches!(error, SinkError::SpoolFull);
                Counters::add(&self.counters.send_errors, 1);
                tracing::warn!(%error, events = batch.len(), "writing a batch of activities failed; will retry");
                self.writes.push_failed(batch);
            }
        }
        self.export(self.queue.len() + self.writes.in_flight_events());
    }

    /// After the loop: whatever is left could not be sent in time, and is
    /// counted as lost. (A write cut short may still have reached Redis;
    /// downstream de-duplicates on the id if it is ever sent again.)
    async fn finish(
        mut self,
        timed_out: bool,
        maintenance: Option<tokio::task::JoinHandle<()>>,
    ) -> ShutdownSummary {
        let abandoned = self.writes.abandon();
        self.intake.close();
        self.absorb();
        let unsent = (self.queue.len() + abandoned) as u64;
        self.queue.drop_oldest(usize::MAX);
        Counters::add(&self.counters.dropped_shutdown, unsent);
        if let Some(task) = maintenance {
            // Cancelled already; a replay cut short is done again next time.
            task.abort();
            let _ = task.await;
        }
        self.export(0);
        let totals = self.counters.snapshot();
        let sent = totals.sent;
        if unsent > 0 {
            tracing::warn!(unsent, "activity tracker stopped with unsent events");
        }
        ShutdownSummary {
            sent,
            flushed: sent - self.sent_before_shutdown.min(sent),
            stored_direct: totals.stored_direct,
            spooled: totals.spooled,
            unsent,
            timed_out,
        }
    }

    /// Waits `delay` before a retry while still taking what the intake
    /// fills into the buffer. Returns `false` if the shutdown deadline
    /// passed meanwhile.
    async fn wait_for_retry(&mut self, delay: Duration, cancel: &CancellationToken) -> bool {
        let wake = Instant::now() + delay;
        loop {
            let until = match self.deadline {
                Some(at) => wake.min(at),
                None => wake,
            };
            let reading = !self.intake.is_closed() && self.deadline.is_none();
            tokio::select! {
                biased;
                _ = cancel.cancelled(), if self.deadline.is_none() => self.start_shutdown(),
                _ = tokio::time::sleep_until(until) => break,
                _ = self.intake.woken(), if reading => {
                    if self.intake.senders_gone() {
                        self.start_shutdown();
                    }
                    // Held while the sink fails: the buffer drops the
                    // oldest past its capacity.
                    self.absorb_up_to(true);
                }
            }
        }
        match self.deadline {
            Some(at) => Instant::now() < at,
            None => true,
        }
    }

    /// Moves what is due from the intake into the queue, about a batch's
    /// worth (everything once it is closed, or with `everything`), dropping
    /// the oldest past the buffer's capacity. The rest stays in the intake,
    /// where a full intake drops the newest: a batch a round keeps up with a sink
    /// that keeps up, and only a failing one fills the buffer.
    fn absorb_up_to(&mut self, everything: bool) {
        let all = self.intake.is_closed() || self.deadline.is_some();
        let take = Take {
            budget: if all || everything {
                usize::MAX
            } else {
                self.config.max_batch
            },
            all,
        };
        self.intake.take(&mut self.taken, take, Instant::now());
        for batch in self.taken.drain(..) {
            self.queue.push_back(batch);
        }
        self.trim();
    }

    /// [`Dispatcher::absorb_up_to`] a batch's worth.
    fn absorb(&mut self) {
        self.absorb_up_to(false);
    }

    /// Drops the oldest events past the buffer's capacity.
    fn trim(&mut self) {
        let over = self.queue.len().saturating_sub(self.config.buffer_capacity);
        if over > 0 {
            self.queue.drop_oldest(over);
            let reason = if self.spool_full {
                &self.counters.dropped_spool_full
            } else {
                &self.counters.dropped_buffer_full
            };
            Counters::add(reason, over as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures_util::FutureExt;
    use futures_util::future::BoxFuture;

    use super::intake::IntakeSender;
    use super::*;
    use crate::{Activity, ActivityType};

    /// Records batches; fails the first `fail_first` calls.
    #[derive(Debug, Default)]
    struct FakeSink {
        fail_first: usize,
        calls: AtomicUsize,
        /// When each call happened, in the paused clock.
        call_times: Mutex<Vec<Instant>>,
        received: Mutex<Vec<Activity>>,
        /// Makes every send hang, to test the shutdown deadline.
        hang: bool,
    }

    impl Sink for Arc<FakeSink> {
        fn send<'a>(&'a self, batch: &'a [Activity]) -> BoxFuture<'a, Result<(), SinkError>> {
            async move {
                let call = self.calls.fetch_add(1, Ordering::SeqCst);
                self.call_times.lock().unwrap().push(Instant::now());
                if self.hang {
                    std::future::pending::<()>().await;
                }
                if call < self.fail_first {
                    return Err(SinkError::Other("down".into()));
                }
                self.received.lock().unwrap().extend_from_slice(batch);
                Ok(())
            }
            .boxed()
        }
    }

    fn start(
        sink: Arc<FakeSink>,
        capacity: usize,
        config: DispatcherConfig,
    ) -> (
        IntakeSender,
        Arc<Counters>,
        CancellationToken,
        tokio::task::JoinHandle<ShutdownSummary>,
    ) {
        let (tx, intake) = Intake::new(capacity, config.max_batch, config.linger);
        let counters = Arc::new(Counters::default());
        let cancel = CancellationToken::new();
        let dispatcher = Dispatcher::new(intake, Arc::new(sink), counters.clone(), config);
        let task = tokio::spawn(dispatcher.run(cancel.clone()));
        (tx, counters, cancel, task)
    }

    fn offer(tx: &IntakeSender, counters: &Counters, n: usize) {
        for i in 0..n {
            let activity = Activity::new(ActivityType::Login).user_id(format!("u{i}"));
            counters.record_offer(tx.offer_with(|out| activity.write_wire_json(out)));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_with_growing_backoff_then_delivers_in_order() {
        let sink = Arc::new(FakeSink {
            fail_first: 3,
            ..FakeSink::default()
        });
        let config = DispatcherConfig {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(250),
            ..DispatcherConfig::default()
        };
        let (tx, counters, cancel, task) = start(sink.clone(), 100, config);
        offer(&tx, &counters, 10);
        let started = Instant::now();
        while counters.snapshot().sent < 10 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let times = sink.call_times.lock().unwrap().clone();
        assert_eq!(times.len(), 4);
        // Nominal delays 100, 200, 250 (capped), each jittered to [half, all].
        let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        for (gap, nominal) in gaps.iter().zip([100u64, 200, 250]) {
            let nominal = Duration::from_millis(nominal);
            assert!(
                *gap >= nominal / 2 && *gap <= nominal,
                "{gap:?} vs {nominal:?}"
            );
        }
        assert!(Instant::now() - started < Duration::from_millis(600));
        let users: Vec<_> = sink
            .received
            .lock()
            .unwrap()
            .iter()
            .map(|a| a.user_id.clone().unwrap())
            .collect();
        assert_eq!(users, (0..10).map(|i| format!("u{i}")).collect::<Vec<_>>());
        let s = counters.snapshot();
        assert_eq!((s.send_errors, s.retries, s.dropped()), (3, 3, 0));
        cancel.cancel();
        let summary = task.await.unwrap();
        assert_eq!((summary.sent, summary.unsent), (10, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn buffer_drops_oldest_while_the_sink_fails() {
        let sink = Arc::new(FakeSink {
            fail_first: usize::MAX,
            ..FakeSink::default()
        });
        let config = DispatcherConfig {
            max_batch: 4,
            buffer_capacity: 8,
            shutdown_timeout: Duration::from_millis(500),
            ..DispatcherConfig::default()
        };
        let (tx, counters, cancel, task) = start(sink.clone(), 4, config);
        for _ in 0..5 {
            offer(&tx, &counters, 4);
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        let s = counters.snapshot();
        assert_eq!(s.captured, 20);
        assert_eq!(s.dropped_buffer_full, 12);
        cancel.cancel();
        let summary = task.await.unwrap();
        assert!(summary.timed_out);
        assert_eq!(summary.unsent, 8);
        let s = counters.snapshot();
        assert_eq!(s.dropped_shutdown, 8);
        assert_eq!(s.captured, s.sent + s.dropped() - s.dropped_full);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_takes_what_is_queued_and_refuses_later_events() {
        let sink = Arc::new(FakeSink::default());
        let (tx, counters, cancel, task) = start(sink.clone(), 1000, DispatcherConfig::default());
        offer(&tx, &counters, 500);
        cancel.cancel();
        let summary = task.await.unwrap();
        assert_eq!(
            (summary.sent, summary.unsent, summary.timed_out),
            (500, 0, false)
        );
        assert_eq!(sink.received.lock().unwrap().len(), 500);
        offer(&tx, &counters, 1);
        assert_eq!(counters.snapshot().dropped_closed, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_is_bounded_by_its_timeout_when_the_sink_hangs() {
        let sink = Arc::new(FakeSink {
            hang: true,
            ..FakeSink::default()
        });
        let config = DispatcherConfig {
            shutdown_timeout: Duration::from_secs(2),
            ..DispatcherConfig::default()
        };
        let (tx, counters, cancel, task) = start(sink, 100, config);
        offer(&tx, &counters, 3);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let started = Instant::now();
        cancel.cancel();
        let summary = task.await.unwrap();
        assert_eq!(Instant::now() - started, Duration::from_secs(2));
        assert_eq!(
            (summary.sent, summary.unsent, summary.timed_out),
            (0, 3, true)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_write_is_retried_while_the_others_land() {
        let sink = Arc::new(FakeSink {
            fail_first: 1,
            ..FakeSink::default()
        });
        let config = DispatcherConfig {
            max_batch: 10,
            max_in_flight: 2,
            ..DispatcherConfig::default()
        };
        let (tx, counters, cancel, task) = start(sink.clone(), 100, config);
        offer(&tx, &counters, 30);
        cancel.cancel();
        let summary = task.await.unwrap();
        assert_eq!((summary.sent, summary.unsent), (30, 0));
        let mut users: Vec<_> = sink
            .received
            .lock()
            .unwrap()
            .iter()
            .map(|a| a.user_id.clone().unwrap())
            .collect();
        users.sort();
        let mut expected: Vec<_> = (0..30).map(|i| format!("u{i}")).collect();
        expected.sort();
        assert_eq!(users, expected);
        let s = counters.snapshot();
        assert_eq!((s.send_errors, s.retries), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn batches_are_at_most_max_batch() {
        let sink = Arc::new(FakeSink::default());
        let config = DispatcherConfig {
            max_batch: 7,
            ..DispatcherConfig::default()
        };
        let (tx, counters, cancel, task) = start(sink.clone(), 100, config);
        offer(&tx, &counters, 50);
        cancel.cancel();
        let summary = task.await.unwrap();
        assert_eq!(summary.sent, 50);
        assert_eq!(sink.calls.load(Ordering::SeqCst), 8);
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_batch_waits_its_linger_and_a_full_one_does_not() {
        let sink = Arc::new(FakeSink::default());
        let config = DispatcherConfig {
            max_batch: 10,
            linger: Duration::from_millis(5),
            ..DispatcherConfig::default()
        };
        let (tx, counters, cancel, task) = start(sink.clone(), 100, config);
        let started = Instant::now();
        offer(&tx, &counters, 3);
        tokio::time::sleep(Duration::from_millis(2)).await;
        offer(&tx, &counters, 2);
        while counters.snapshot().sent < 5 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // One write of all five, made when the first event's linger ran out.
        let times = sink.call_times.lock().unwrap().clone();
        assert_eq!(times.len(), 1);
        assert_eq!(times[0] - started, Duration::from_millis(5));

        let full = Instant::now();
        offer(&tx, &counters, 10);
        while counters.snapshot().sent < 15 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let times = sink.call_times.lock().unwrap().clone();
        assert_eq!(times.len(), 2);
        assert!(
            times[1] - full < Duration::from_millis(1),
            "a full batch went at once"
        );
        cancel.cancel();
        assert_eq!(task.await.unwrap().sent, 15);
    }
}
