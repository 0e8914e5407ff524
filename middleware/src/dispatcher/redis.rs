//! The Redis Stream sink: one pipelined round trip per batch, one `XADD`
//! of the whole batch (v2 entries) or one per event (v1).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::connections::Connections;
use super::stream_cap::{EXACT_TRIM_BELOW, StreamCap};
use super::{Sink, SinkError};
use crate::{ARRIVED_MS_FIELD, Activity, EntryCodec, RedisClient, StreamShards, WireBatch};

/// Default for [`RedisStreamSink::response_timeout`].
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The shape of the stream entries the tracker writes (see
/// `docs/wire-format.md`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamFormat {
    /// One entry per event: `XADD <key> * data <json>`. For a rolling
    /// upgrade while processors from before version 2 still read the
    /// stream (they dead-letter version 2 entries).
    V1,
    /// One entry per batch: `XADD <key> * n <count> events <json lines>`.
    /// Redis stores a batch for about what it took to store one event.
    #[default]
    V2,
    /// One entry per batch with its lines compressed as an LZ4 frame:
    /// `XADD <key> * n <count> codec lz4 events <frame>`. Redis holds
    /// about a quarter of the bytes while events wait (what a long
    /// processor outage costs), for more CPU in the app's dispatcher
    /// (docs/benchmarks.md). Needs processors that read `codec`.
    V2Lz4,
}

/// Writes each batch to a Redis Stream with one pipelined round trip: one
/// `XADD <key> * n <count> events <lines>` for the whole batch
/// ([`StreamFormat::V2`], the default; with `codec lz4` before `events` for
/// [`StreamFormat::V2Lz4`]) or one `XADD <key> * data <json>` per event
/// ([`StreamFormat::V1`]), then one `XTRIM <key> MAXLEN` to the entries that
/// hold the cap's events (module `stream_cap`).
///
/// Trimming once per batch rather than with `MAXLEN ~` on every `XADD`
/// bounds the stream the same way and costs Redis less CPU per entry
/// (`bench/xadd_redis_cpu.sh`, see docs/benchmarks.md).
///
/// With several shards ([`RedisStreamSink::shards`]) each batch goes to
/// the next shard in turn (round-robin), and each shard is capped at its
/// share of the cap. Round-robin rather than a hash of a user: the shards
/// get equal loads whatever the users' mix (one busy user would make a
/// hot shard), and order across shards is not needed (`created_at` and
/// the v7 ids order the rows). A batch's `XADD` and `XTRIM` name one key,
/// so on a cluster the pipeline goes to one master.
///
/// A single Redis is written through a `bb8-redis` pool, a Redis Cluster
/// through the cluster client (module `connections`). Both connect
/// lazily, so a sink can be made while Redis is down; sends then fail
/// (after `connect_timeout`) until Redis is back, and the dispatcher
/// retries.
#[derive(Debug, Clone)]
pub struct RedisStreamSink {
    /// Where connections come from.
    connections: Arc<Connections>,
    /// The stream's keys, one a shard.
    shards: StreamShards,
    /// The shard the next batch goes to, counting up (modulo the shards).
    next_shard: Arc<AtomicUsize>,
    /// The cap in events.
    max_len: usize,
    /// The entry shape written.
    format: StreamFormat,
    /// Each shard's share of the cap, as entries to trim to; shared by the
    /// clones of the sink, locked only to update and read it.
    caps: Arc<[Mutex<StreamCap>]>,
    /// How long a batch write waits for Redis's replies (the `redis`
    /// crate's default of 500 ms is short for a large pipeline on a busy
    /// machine, and a write that times out is sent again).
    response_timeout: Duration,
}

impl RedisStreamSink {
    /// A sink writing to `key` on the Redis at `url` (a cluster when `url`
    /// lists several nodes separated by commas), capped at about `max_len`
    /// events, with at most `pool_size` connections to a single node,
    /// waiting at most `connect_timeout` for a connection. Fails only on a
    /// URL that cannot be parsed; Redis itself is not contacted.
    pub fn new(
        url: &str,
        key: impl Into<String>,
        max_len: usize,
        pool_size: u32,
        connect_timeout: Duration,
    ) -> Result<Self, redis::RedisError> {
        Self::with_client(
            RedisClient::open(url, false)?,
            key,
            max_len,
            pool_size,
            connect_timeout,
        )
    }

    /// Like [`RedisStreamSink::new`], for a client already made (a cluster
    /// reached through one address: `RedisClient::open(url, true)`).
    pub fn with_client(
        client: RedisClient,
        key: impl Into<String>,
        max_len: usize,
        pool_size: u32,
        connect_timeout: Duration,
    ) -> Result<Self, redis::RedisError> {
        let connections =
            Connections::new(client, pool_size, connect_timeout, DEFAULT_RESPONSE_TIMEOUT)?;
        let mut sink = RedisStreamSink {
            connections: Arc::new(connections),
            shards: StreamShards::new(&key.into(), 1),
            next_shard: Arc::new(AtomicUsize::new(0)),
            max_len,
            format: StreamFormat::default(),
            caps: Arc::new([]),
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
        };
        sink.caps = sink.shard_caps();
        Ok(sink)
    }

    /// How long a batch write waits for Redis's replies before it counts
    /// as failed (and is retried); default 5 s. For a cluster, set it
    /// before the first write (the cluster connection keeps the timeout
    /// it was opened with).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        if let Some(connections) = Arc::get_mut(&mut self.connections) {
            connections.set_cluster_response_timeout(timeout);
        }
        self
    }

    /// The entry shape to write; [`StreamFormat::V2`] by default.
    pub fn format(mut self, format: StreamFormat) -> Self {
        self.format = format;
        self
    }

    /// Writes to `count` shards of the stream (`STREAM_SHARDS`; default 1,
    /// the stream key itself): see [`StreamShards`].
    pub fn shards(mut self, count: usize) -> Self {
        self.shards = StreamShards::new(self.shards.stream_key(), count);
        self.caps = self.shard_caps();
        self
    }

    /// The stream key written to (the shards' name with several).
    pub fn stream_key(&self) -> &str {
        self.shards.stream_key()
    }

    /// The keys written to, one a shard.
    pub fn stream_shards(&self) -> &StreamShards {
        &self.shards
    }

    /// A cap for each shard: its share of `max_len`, rounded up.
    fn shard_caps(&self) -> Arc<[Mutex<StreamCap>]> {
        let share = self.max_len.div_ceil(self.shards.len());
        (0..self.shards.len())
            .map(|_| Mutex::new(StreamCap::new(share)))
            .collect()
    }

    /// The batch's `XADD`(s) to shard `shard`, then the `XTRIM`. The
    /// commands are made at their exact size, with the lines copied in
    /// once.
    fn pipeline(&self, batch: &WireBatch, shard: usize) -> redis::Pipeline {
        let key = self.shards.key(shard);
        let lines = batch.as_bytes();
        let (mut pipe, entries, events_per_entry) = match self.format {
            StreamFormat::V2 | StreamFormat::V2Lz4 => {
                let mut count = itoa::Buffer::new();
                let count = count.format(batch.len());
                let codec = (self.format == StreamFormat::V2Lz4).then_some(EntryCodec::Lz4);
                let compressed = codec.map(|codec| codec.compress(lines));
                let events = compressed.as_deref().unwrap_or(lines);
                let mut arrived_ms = itoa::Buffer::new();
                let arrived_ms = batch
                    .arrived_at()
                    .map(|at| arrived_ms.format(at.timestamp_millis()));
                let mut cmd = redis::Cmd::with_capacity(
                    11,
                    "XADD*neventscodeclz4".len()
                        + ARRIVED_MS_FIELD.len()
                        + arrived_ms.map_or(0, str::len)
                        + key.len()
                        + count.len()
                        + events.len(),
                );
                cmd.arg("XADD").arg(key).arg("*").arg("n").arg(count);
                // A replayed spool record's write time: the events' arrival,
                // not this entry's id (docs/wire-format.md).
                if let Some(arrived_ms) = arrived_ms {
                    cmd.arg(ARRIVED_MS_FIELD).arg(arrived_ms);
                }
                if let Some(codec) = codec {
                    cmd.arg("codec").arg(codec.name());
                }
                cmd.arg("events").arg(events);
                let mut pipe = redis::Pipeline::with_capacity(2);
                pipe.add_command(cmd);
                (pipe, 1, batch.len())
            }
            StreamFormat::V1 => {
                let mut pipe = redis::Pipeline::with_capacity(batch.len() + 1);
                let fixed = "XADD".len() + key.len() + "*".len() + "data".len();
                for line in batch.lines() {
                    let mut cmd = redis::Cmd::with_capacity(5, fixed + line.len());
                    cmd.arg("XADD").arg(key).arg("*").arg("data").arg(line);
                    // Not `ignore()`d: that costs a hash-set insert per
                    // command and a lookup per reply, and `()` takes the
                    // replies as they are (a server error still fails the
                    // batch).
                    pipe.add_command(cmd);
                }
                (pipe, batch.len(), 1)
            }
        };
        let max_entries = {
            let mut cap = self.caps[shard]
                .lock()
                .expect("never poisoned: no panics held");
            cap.record(events_per_entry, entries);
            cap.max_entries()
        };
        pipe.cmd("XTRIM")
            .arg(key)
            .arg("MAXLEN")
            .arg(if max_entries < EXACT_TRIM_BELOW {
                "="
            } else {
                "~"
            })
            .arg(max_entries);
        pipe
    }

    async fn write(&self, batch: &WireBatch) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let shard = self.next_shard.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        let pipe = self.pipeline(batch, shard);
        let mut conn = self.connections.get(self.response_timeout).await?;
        if let Err(e) = conn.send(&pipe).await {
            drop(conn);
            self.connections.after_error(&e).await;
            return Err(SinkError::unavailable(e));
        }
        Ok(())
    }
}

impl Sink for RedisStreamSink {
    fn send<'a>(&'a self, batch: &'a [Activity]) -> BoxFuture<'a, Result<(), SinkError>> {
        async move { self.write(&WireBatch::from(batch)).await }.boxed()
    }

    fn send_wire<'a>(&'a self, batch: &'a WireBatch) -> BoxFuture<'a, Result<(), SinkError>> {
        self.write(batch).boxed()
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), SinkError>> {
        async move {
            let mut conn = self.connections.get(self.response_timeout).await?;
            let mut ping = redis::Pipeline::with_capacity(1);
            ping.cmd("PING");
            if let Err(e) = conn.send(&ping).await {
                drop(conn);
                self.connections.after_error(&e).await;
                return Err(SinkError::unavailable(e));
            }
            Ok(())
        }
        .boxed()
    }
}
