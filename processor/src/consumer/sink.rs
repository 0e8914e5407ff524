//! The sink: batches by size or age (the timer starts at the batch's first
//! entry), writes idempotently, dead-letters what can never be stored, and
//! only then acknowledges. Never acknowledges before the commit.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use activity_store::normalize::StorageRules;
use activity_tracker::{BatchLimits, RedisClient};

use super::decode::Decoded;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Backoff;
use super::entry::Payload;
use super::link::Link;
use super::{Item, Origin, Settings, legacy};
use crate::stats::ProcessorStats;

/// Dead-letter streams are capped (approximately) at this many entries, so
/// a flood of bad input cannot fill Redis.
const DEAD_LETTER_MAX_LEN: u64 = 1_000_000;

/// Receives items until every source has stopped, then flushes what is
/// left. Batches are written by `settings.writers` writers at once, each in
/// its own transaction, so that the database works on one batch while
/// another is being acknowledged or the next one assembled.
pub(crate) async fn run(
    settings: Settings,
    pool: PgPool,
    redis: RedisClient,
    stats: Arc<ProcessorStats>,
    mut rx: mpsc::Receiver<Item>,
    token: CancellationToken,
) {
    // Full batches go to whichever writer is free; one more waits in hand,
    // then the batching stops receiving (backpressure up to the readers).
    let (batches, batch_rx) = mpsc::channel::<Vec<Item>>(1);
    let batch_rx = Arc::new(tokio::sync::Mutex::new(batch_rx));
    let writers = TaskTracker::new();
    let give_up_at = Arc::new(OnceLock::new());
    for _ in 0..settings.writers.max(1) {
        let mut sink = Sink {
            link: Link::new(redis.clone(), None),
            pool: pool.clone(),
            stats: stats.clone(),
            token: token.clone(),
            give_up_at: give_up_at.clone(),
            settings: settings.clone(),
        };
        let batch_rx = batch_rx.clone();
        writers.spawn(async move {
            loop {
                let next = batch_rx.lock().await.recv().await;
                let Some(batch) = next else { return };
                sink.flush(batch).await;
            }
        });
    }
    writers.close();

    let batch_size = settings.batch_size;
    let mut limits = BatchLimits::new(batch_size, settings.flush_interval);
    let mut batch: Vec<Item> = Vec::with_capacity(batch_size);
    loop {
        let room = batch_size - batch.len();
        // Set exactly while the batch is not empty.
        let due = limits.deadline();
        tokio::select! {
            received = rx.recv_many(&mut batch, room) => {
                if received == 0 {
                    break;
                }
                if batch.len() == received {
                    // The age counts from when the first entry was read,
                    // however long it then waited for room here.
                    limits.start(batch[0].received);
                }
                if limits.is_full(batch.len()) {
                    limits.clear();
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
                    if batches.send(full).await.is_err() {
                        break;
                    }
                }
            }
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                limits.clear();
                if batches.send(std::mem::take(&mut batch)).await.is_err() {
                    break;
                }
            }
        }
    }
    if !batch.is_empty() {
        let _ = batches.send(batch).await;
    }
    drop(batches);
    writers.wait().await;
}

/// What a write did, per batch.
#[derive(Debug, Default)]
struct Stored {
    inserted: u64,
    duplicates: u64,
    /// Rows the database refused, by index in the batch, with its error.
    rejected: Vec<(usize, String)>,
}

/// Stores `activities` idempotently; a row that breaks a constraint is
/// isolated and reported instead of failing the batch.
async fn store(
    pool: &PgPool,
    activities: &[Decoded],
    rules: &StorageRules,
) -> Result<Stored, activity_store::writer::WriteError> {
    let outcome =
        activity_store::writer::write_batch_isolating_with_rules(pool, activities, rules).await?;
    // Events of erased users are skipped like duplicates: handled, not stored.
    metrics::counter!("activity_processor_events_erased_total").increment(outcome.written.erased);
    // What the store's normalization changed so that nothing is refused
    // (a redelivered event counts again).
    let normalized = [
        ("nul", outcome.written.nul_replaced),
        ("number_as_text", outcome.written.numbers_as_text),
        ("future_created_at", outcome.written.clamped),
    ];
    for (rule, events) in normalized {
        if events > 0 {
            metrics::counter!("activity_processor_events_normalized_total", "rule" => rule)
                .increment(events);
        }
    }
    Ok(Stored {
        inserted: outcome.written.inserted,
        duplicates: outcome.written.duplicates + outcome.written.erased,
        rejected: outcome
            .rejected
            .into_iter()
            .map(|row| match row.code {
                Some(code) => (row.index, format!("{} (SQLSTATE {code})", row.message)),
                None => (row.index, row.message),
            })
            .collect(),
    })
}

#[derive(Debug)]
struct Sink {
    settings: Settings,
    pool: PgPool,
    /// Writes dead letters and acknowledgements.
    link: Link,
    stats: Arc<ProcessorStats>,
    token: CancellationToken,
    /// When every writer stops retrying, set by the first failing step
    /// after cancellation: the grace is spent once for all the batches
    /// held, not once per batch and step. Shared by the writers.
    give_up_at: Arc<OnceLock<Instant>>,
}

/// The delays between attempts of a failing step.
#[derive(Debug)]
struct Retry {
    backoff: Backoff,
}

impl Retry {
    fn new() -> Self {
        Retry {
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
        }
    }

    /// Waits before the next attempt; `false` when shutting down and the
    /// grace period (`grace` from the first step that failed after
    /// cancellation, `give_up_at`) is over.
    async fn wait(
        &mut self,
        token: &CancellationToken,
        grace: Duration,
        give_up_at: &OnceLock<Instant>,
    ) -> bool {
        let delay = self.backoff.next_delay();
        if !token.is_cancelled() {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = tokio::time::sleep(delay) => return true,
            }
        }
        let give_up_at = *give_up_at.get_or_init(|| Instant::now() + grace);
        let now = Instant::now();
        if now >= give_up_at {
            return false;
        }
        tokio::time::sleep(delay.min(give_up_at - now)).await;
        true
    }
}

impl Sink {
    async fn flush(&mut self, batch: Vec<Item>) {
        let mut good = Vec::with_capacity(batch.len());
        let mut activities = Vec::with_capacity(batch.len());
        let mut dead: Vec<(Item, String)> = Vec::new();
        for mut item in batch {
            match std::mem::replace(
                &mut item.decoded,
                Err(super::decode::DecodeError::MissingData),
            ) {
                Ok(activity) => {
                    activities.push(activity);
                    good.push(item);
                }
                Err(reason) => {
                    let reason = reason.to_string();
                    dead.push((item, reason));
                }
            }
        }

        if !activities.is_empty() {
            let Some(stored) = self.write(&activities).await else {
                return;
            };
            let mut rejected = stored.rejected;
            rejected.sort_unstable_by_key(|(index, _)| std::cmp::Reverse(*index));
            for (index, error) in rejected {
                if index < good.len() {
                    let item = good.swap_remove(index);
                    dead.push((item, format!("rejected by the database: {error}")));
                }
            }
        }

        if !dead.is_empty() && !self.dead_letter(&dead).await {
            return;
        }
        let all: Vec<&Item> = good
            .iter()
            .chain(dead.iter().map(|(item, _)| item))
            .collect();
        self.acknowledge(&all).await;
    }

    /// Writes with retries; `None` when shutting down with the database
    /// still failing (nothing is acknowledged: the entries stay pending).
    async fn write(&mut self, activities: &[Decoded]) -> Option<Stored> {
        let mut retry = Retry::new();
        loop {
            let started = std::time::Instant::now();
            match store(&self.pool, activities, &self.settings.rules).await {
                Ok(stored) => {
                    if self.stats.db_retrying() {
                        tracing::info!("database writes work again");
                    }
                    self.stats.set_db_retrying(false);
                    self.stats
                        .record_batch(stored.inserted, stored.duplicates, started.elapsed());
                    return Some(stored);
                }
                Err(e) => {
                    self.stats.record_db_error();
                    self.stats.set_db_retrying(true);
                    if e.is_transient() {
                        tracing::warn!(error = %e, events = activities.len(), "writing a batch failed; retrying, nothing acknowledged");
                    } else {
                        // A setup problem (missing table, permission): no
                        // batch can succeed until it is fixed, and dropping
                        // the events would lose them; keep retrying.
                        tracing::error!(error = %e, events = activities.len(), "writing a batch failed and cannot succeed until the database is fixed; retrying, nothing acknowledged");
                    }
                    if !retry
                        .wait(&self.token, self.settings.shutdown_grace, &self.give_up_at)
                        .await
                    {
                        tracing::error!(
                            events = activities.len(),
                            "shutting down with the database failing; the batch stays pending and is claimed later"
                        );
                        return None;
                    }
                }
            }
        }
    }

    /// `XADD <shard>:dead * <fields> reason <why>` for each, into the
    /// dead-letter stream of the shard it came from (a legacy element's
    /// into shard 0's); `false` when it could not be done before shutdown.
    /// The fields: `data` `entry` (a version 1 entry's), `data` (a legacy
    /// element), `data` `entry` `index` (a line of a version 2 entry),
    /// `events` `n` `entry` and `codec` if it had one (a version 2 entry
    /// that could not be read as lines, `events` as it was read). One
    /// pipeline a shard: on a cluster each shard is on its own slot.
    async fn dead_letter(&mut self, dead: &[(Item, String)]) -> bool {
        let shard_of = |item: &Item| match &item.origin {
            Origin::Stream { entry, .. } => entry.shard,
            Origin::Legacy => 0,
        };
        let mut shards: Vec<usize> = dead.iter().map(|(item, _)| shard_of(item)).collect();
        shards.sort_unstable();
        shards.dedup();
        for shard in shards {
            let dead_key = self.settings.shards.dead_key(shard);
            let mut pipe = redis::pipe();
            let mut count = 0u64;
            for (item, reason) in dead.iter().filter(|(item, _)| shard_of(item) == shard) {
                count += 1;
                let cmd = pipe
                    .cmd("XADD")
                    .arg(&dead_key)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(DEAD_LETTER_MAX_LEN)
                    .arg("*");
                match &item.payload {
                    Payload::Data(data) => {
                        cmd.arg("data").arg(&data[..]);
                    }
                    Payload::Entry { events, n, codec } => {
                        cmd.arg("events").arg(&events[..]).arg("n").arg(&n[..]);
                        if let Some(codec) = codec {
                            cmd.arg("codec").arg(&codec[..]);
                        }
                    }
                }
                // The entry id of every stream event: `redrive-dead`
                // derives the id of an event that had none from it, as the
                // reader did.
                if let Origin::Stream { entry, line } = &item.origin {
                    cmd.arg("entry").arg(&entry.id);
                    if let Some(index) = line {
                        cmd.arg("index").arg(*index);
                    }
                }
                cmd.arg("reason").arg(reason).ignore();
            }
            let mut retry = Retry::new();
            loop {
                match self.link.pipe::<()>(&pipe).await {
                    Ok(()) => {
                        for (item, reason) in dead {
                            if shard_of(item) == shard {
                                tracing::warn!(%reason, stream = %dead_key, "entry dead-lettered");
                            }
                        }
                        self.stats.record_dead_lettered(count);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "writing dead letters failed; retrying");
                        if !retry
                            .wait(&self.token, self.settings.shutdown_grace, &self.give_up_at)
                            .await
                        {
                            return false;
                        }
                    }
                }
            }
        }
        true
    }

    /// `XACK` + `XDEL` (atomically: an entry is never left pending without
    /// its data) for the stream entries whose last event this batch held,
    /// one transaction a shard (a cluster refuses one across slots), then
    /// `LREM` from the processing list for legacy ones.
    async fn acknowledge(&mut self, items: &[&Item]) {
        let mut done: Vec<(usize, &str)> = items
            .iter()
            .filter_map(|item| match &item.origin {
                Origin::Stream { entry, .. } => entry
                    .event_done()
                    .then_some((entry.shard, entry.id.as_str())),
                Origin::Legacy => None,
            })
            .collect();
        done.sort_unstable();
        for shard_ids in done.chunk_by(|a, b| a.0 == b.0) {
            let key = self.settings.shards.key(shard_ids[0].0);
            let ids: Vec<&str> = shard_ids.iter().map(|(_, id)| *id).collect();
            let mut pipe = redis::pipe();
            pipe.atomic();
            pipe.cmd("XACK")
                .arg(key)
                .arg(&self.settings.group)
                .arg(&ids)
                .ignore();
            pipe.cmd("XDEL").arg(key).arg(&ids).ignore();
            self.send_acknowledgement(&pipe).await;
        }
        if let Some(key) = &self.settings.legacy_list_key {
            let processing = legacy::processing_key(key, &self.settings.consumer);
            let mut pipe = redis::pipe();
            for item in items.iter().filter(|i| matches!(i.origin, Origin::Legacy)) {
                if let Payload::Data(data) = &item.payload {
                    pipe.cmd("LREM")
                        .arg(&processing)
                        .arg(1)
                        .arg(&data[..])
                        .ignore();
                }
            }
            if !pipe.is_empty() {
                self.send_acknowledgement(&pipe).await;
            }
        }
    }

    /// Sends an acknowledgement, retrying until it succeeds or the
    /// shutdown grace runs out (stored already: a redelivery is a harmless
    /// duplicate).
    async fn send_acknowledgement(&mut self, pipe: &redis::Pipeline) {
        let mut retry = Retry::new();
        loop {
            match self.link.pipe::<()>(pipe).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "acknowledging a stored batch failed; retrying");
                    if !retry
                        .wait(&self.token, self.settings.shutdown_grace, &self.give_up_at)
                        .await
                    {
                        return;
                    }
                }
            }
        }
    }
}
