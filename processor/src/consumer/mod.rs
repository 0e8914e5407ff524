//! The consumer: reads the activity stream (and, when enabled, the legacy
//! LIST), batches by size or age, stores each batch idempotently, then
//! acknowledges it. At-least-once in, exactly-once stored.
//!
//! Sources (a stream reader and a claimer of entries left by stopped
//! consumers for each shard of the stream, the legacy list reader) decode
//! entries and send them on a
//! bounded channel to one sink, which batches, writes, dead-letters and
//! acknowledges. Shutdown is closing the input: on cancellation the sources
//! stop reading and drop their senders, and the sink flushes the batch in
//! hand, commits and acknowledges it, then returns.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use activity_processor::{config::Config, consumer, stats::ProcessorStats};
//! use tokio_util::sync::CancellationToken;
//!
//! let config = Config::from_env();
//! let pool = sqlx::PgPool::connect(&config.database_url).await?;
//! let redis = config.redis_client()?;
//! let token = CancellationToken::new();
//! let rules = activity_store::normalize::StorageRules::default();
//! consumer::run(&config, pool, redis, Arc::new(ProcessorStats::new()), rules, token).await?;
//! # Ok(())
//! # }
//! ```

pub mod decode;
pub(crate) mod entry;
mod legacy;
mod link;
mod sink;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use activity_store::normalize::StorageRules;
use activity_tracker::{RedisClient, StreamShards};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::stats::ProcessorStats;

pub use activity_tracker::Backoff;

/// Why the consumer could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerError {
    /// Redis refused or could not be reached while setting up the group.
    #[error("cannot set up consumer group {group:?} on stream {stream:?} at REDIS_URL: {source}")]
    Group {
        /// The stream key.
        stream: String,
        /// The group.
        group: String,
        /// What Redis said.
        #[source]
        source: redis::RedisError,
    },
}

/// Where an event came from, which says how to acknowledge it.
#[derive(Debug, Clone)]
pub(crate) enum Origin {
    /// An event of a stream entry (`line`: its index in a version 2
    /// entry): the entry is acknowledged (`XACK` + `XDEL`) once the last of
    /// its events is stored or dead-lettered.
    Stream {
        entry: Arc<entry::PendingEntry>,
        line: Option<usize>,
    },
    /// A legacy list element (the raw JSON): `LREM` from the processing list.
    Legacy,
}

/// One event on its way from a source to the sink.
#[derive(Debug)]
pub(crate) struct Item {
    /// How to acknowledge it.
    pub(crate) origin: Origin,
    /// What was read, kept for the dead-letter stream (and for `LREM`).
    pub(crate) payload: entry::Payload,
    /// When it was read: a batch is flushed `FLUSH_INTERVAL_MS` after its
    /// oldest entry was read, however long it waited for the sink.
    pub(crate) received: tokio::time::Instant,
    /// The activity, or why it can never be stored.
    pub(crate) decoded: Result<decode::Decoded, decode::DecodeError>,
}

/// The consumer's settings, taken from [`Config`].
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Every shard of the stream.
    pub(crate) shards: StreamShards,
    /// The shard a source reads ([`Settings::for_shard`]); 0 elsewhere.
    pub(crate) shard: usize,
    pub(crate) group: String,
    pub(crate) consumer: String,
    pub(crate) batch_size: usize,
    /// Batches written at once, each in its own transaction.
    pub(crate) writers: usize,
    pub(crate) flush_interval: Duration,
    pub(crate) claim_idle: Duration,
    pub(crate) legacy_list_key: Option<String>,
    /// How long a blocking read waits: bounds how long shutdown waits for
    /// a read in flight (a read is never cancelled half-way: Redis would
    /// still deliver its entries into this consumer's pending list).
    pub(crate) block: Duration,
    /// How long the sink keeps retrying a write after cancellation before
    /// giving up (the entries stay pending and are claimed later).
    pub(crate) shutdown_grace: Duration,
    /// What the writer applies besides the wire format's limits.
    pub(crate) rules: StorageRules,
}

impl Settings {
    pub(crate) fn from_config(config: &Config) -> Self {
        Settings {
            shards: config.stream_shards(),
            shard: 0,
            group: config.consumer_group.clone(),
            consumer: config.consumer_name(),
            batch_size: config.batch_size,
            writers: config.db_writers,
            flush_interval: config.flush_interval(),
            claim_idle: config.claim_idle(),
            legacy_list_key: config.legacy_list_key.clone(),
            block: config
                .flush_interval()
                .clamp(Duration::from_millis(10), Duration::from_secs(1)),
            shutdown_grace: Duration::from_secs(10),
            rules: StorageRules::default(),
        }
    }

    /// These settings for the sources of shard `shard`.
    pub(crate) fn for_shard(&self, shard: usize) -> Self {
        Settings {
            shard,
            ..self.clone()
        }
    }

    /// The key of this settings' shard.
    pub(crate) fn stream_key(&self) -> &str {
        self.shards.key(self.shard)
    }
}

/// Creates the consumer group (and the stream) if missing:
/// `XGROUP CREATE <key> <group> 0 MKSTREAM`, `BUSYGROUP` ignored.
pub async fn ensure_group(
    redis: &mut impl redis::aio::ConnectionLike,
    stream_key: &str,
    group: &str,
) -> Result<(), ConsumerError> {
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream_key)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(redis)
        .await;
    match created {
        Err(e) if e.code() != Some("BUSYGROUP") => Err(ConsumerError::Group {
            stream: stream_key.to_owned(),
            group: group.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Runs the consumer until `token` is cancelled, then commits and
/// acknowledges the batch in hand and returns.
pub async fn run(
    config: &Config,
    pool: PgPool,
    redis: RedisClient,
    stats: Arc<ProcessorStats>,
    rules: StorageRules,
    token: CancellationToken,
) -> Result<(), ConsumerError> {
    let settings = Settings {
        rules,
        ..Settings::from_config(config)
    };
    let mut setup = link::connect(&redis, None)
        .await
        .map_err(|source| ConsumerError::Group {
            stream: settings.shards.stream_key().to_owned(),
            group: settings.group.clone(),
            source,
        })?;
    for key in settings.shards.keys() {
        ensure_group(&mut setup, key, &settings.group).await?;
    }
    drop(setup);
    tracing::info!(
        stream = %settings.shards.stream_key(),
        shards = settings.shards.len(),
        cluster = redis.is_cluster(),
        group = %settings.group,
        consumer = %settings.consumer,
        batch_size = settings.batch_size,
        writers = settings.writers,
        flush_interval_ms = settings.flush_interval.as_millis() as u64,
        legacy_list = settings.legacy_list_key.as_deref().unwrap_or("-"),
        "consumer started"
    );

    // Room for the readers to stay a batch ahead (the sink holds the
    // batches being written besides: memory is bounded by both).
    let (tx, rx) = mpsc::channel::<Item>(settings.batch_size.max(16));
    let tracker = TaskTracker::new();
    // One reader and one claimer a shard, each on a connection of its own
    // (a blocking read holds up what is queued behind it), all sending on
    // one channel: each waits its turn for room, so the shards are read
    // alike however full each is.
    for shard in 0..settings.shards.len() {
        tracker.spawn(stream::read_loop(
            settings.for_shard(shard),
            redis.clone(),
            stats.clone(),
            tx.clone(),
            token.clone(),
        ));
        tracker.spawn(stream::claim_loop(
            settings.for_shard(shard),
            redis.clone(),
            stats.clone(),
            tx.clone(),
            token.clone(),
        ));
    }
    if settings.legacy_list_key.is_some() {
        tracker.spawn(legacy::read_loop(
            settings.clone(),
            redis.clone(),
            stats.clone(),
            tx.clone(),
            token.clone(),
        ));
    }
    drop(tx);
    tracker.spawn(sink::run(
        settings.clone(),
        pool,
        redis.clone(),
        stats,
        rx,
        token,
    ));
    tracker.close();
    tracker.wait().await;

    // A consumer with nothing pending leaves the group, so that names made
    // of host and pid do not pile up across restarts.
    if let Ok(mut conn) = link::connect(&redis, None).await {
        for shard in 0..settings.shards.len() {
            link::forget_consumer_if_idle(&mut conn, &settings.for_shard(shard)).await;
        }
    }
    tracing::info!(consumer = %settings.consumer, "consumer stopped");
    Ok(())
}
