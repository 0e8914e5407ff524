//! The Redis Stream sink: one pipelined round trip per batch, one `XADD`
//! of the whole batch (v2 entries) or one per event (v1).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::connections::{Connections, PackedCommands};
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
/// A single Redis is written through a few blocking connections, each
/// batch's commands packed into one buffer by the sink (the line copied
/// once), a Redis Cluster through the cluster client (module
/// `connections`). Both connect
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

    /// The batch's `XADD`(s) to shard `shard`, then the `XTRIM`, into
    /// `out`. A v2 entry's lines are shared with the batch, not copied (to
    /// a single node); v1's are copied in once.
    fn commands(&self, batch: &WireBatch, shard: usize, out: &mut Commands) {
        let key = self.shards.key(shard).as_bytes();
        let lines = batch.as_bytes();
        let (entries, events_per_entry) = match self.format {
            StreamFormat::V2 | StreamFormat::V2Lz4 => {
                let mut count = itoa::Buffer::new();
                let count = count.format(batch.len()).as_bytes();
                let codec = (self.format == StreamFormat::V2Lz4).then_some(EntryCodec::Lz4);
                let compressed = codec.map(|codec| codec.compress(lines));
                let mut arrived_ms = itoa::Buffer::new();
                let arrived_ms = batch
                    .arrived_at()
                    .map(|at| arrived_ms.format(at.timestamp_millis()).as_bytes());
                let mut args: [&[u8]; 11] = [
                    b"XADD",
                    key,
                    b"*",
                    b"n",
                    count,
                    &[],
                    &[],
                    &[],
                    &[],
                    &[],
                    &[],
                ];
                let mut argc = 5;
                // A replayed spool record's write time: the events' arrival,
                // not this entry's id (docs/wire-format.md).
                if let Some(arrived_ms) = arrived_ms {
                    args[argc] = ARRIVED_MS_FIELD.as_bytes();
                    args[argc + 1] = arrived_ms;
                    argc += 2;
                }
                if let Some(codec) = codec {
                    args[argc] = b"codec";
                    args[argc + 1] = codec.name().as_bytes();
                    argc += 2;
                }
                args[argc] = b"events";
                argc += 1;
                out.reserve(key.len() * 2 + 160);
                match compressed {
                    Some(compressed) => {
                        args[argc] = &compressed;
                        out.reserve(compressed.len());
                        out.command(&args[..=argc]);
                    }
                    // The lines go to Redis as they are in the batch.
                    None => out.command_ending_with(&args[..argc], batch.shared_bytes()),
                }
                (1, batch.len())
            }
            StreamFormat::V1 => {
                out.reserve(lines.len() + batch.len() * (key.len() + 48) + key.len() + 64);
                for line in batch.lines() {
                    out.command(&[b"XADD", key, b"*", b"data", line]);
                }
                (batch.len(), 1)
            }
        };
        let max_entries = {
            let mut cap = self.caps[shard]
                .lock()
                .expect("never poisoned: no panics held");
            cap.record(events_per_entry, entries);
            cap.max_entries()
        };
        let mut max = itoa::Buffer::new();
        let max = max.format(max_entries).as_bytes();
        let approximate: &[u8] = if max_entries < EXACT_TRIM_BELOW {
            b"="
        } else {
            b"~"
        };
        out.command(&[b"XTRIM", key, b"MAXLEN", approximate, max]);
    }

    async fn write(&self, batch: &WireBatch) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let shard = self.next_shard.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        if self.connections.is_node() {
            let mut out = Commands::Packed(PackedCommands::default());
            self.commands(batch, shard, &mut out);
            let Commands::Packed(packed) = out else {
                unreachable!("made packed just above")
            };
            return self
                .connections
                .send_packed(packed, self.response_timeout)
                .await;
        }
        let mut out = Commands::Pipeline(redis::Pipeline::with_capacity(2));
        self.commands(batch, shard, &mut out);
        let Commands::Pipeline(pipe) = out else {
            unreachable!("made a pipeline just above")
        };
        self.send_to_cluster(&pipe).await
    }

    /// Sends `pipe` through the cluster connection and takes its replies
    /// as `()` (a server error still fails).
    async fn send_to_cluster(&self, pipe: &redis::Pipeline) -> Result<(), SinkError> {
        let mut conn = self.connections.cluster().await?;
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            drop(conn);
            self.connections.after_error(&e).await;
            return Err(SinkError::unavailable(e));
        }
        Ok(())
    }
}

/// A batch's commands as they are made: packed in RESP for a single
/// node, a pipeline for a cluster (whose client routes each command).
enum Commands {
    /// The commands in RESP, for a single node.
    Packed(PackedCommands),
    /// The commands for the cluster client.
    Pipeline(redis::Pipeline),
}

impl Commands {
    /// Room for about `additional` more bytes of commands.
    fn reserve(&mut self, additional: usize) {
        if let Commands::Packed(packed) = self {
            packed.out().reserve(additional);
        }
    }

    /// One command of `args`.
    fn command(&mut self, args: &[&[u8]]) {
        match self {
            Commands::Packed(packed) => {
                let out = packed.out();
                write_array_len(out, args.len());
                for arg in args {
                    write_bulk_len(out, arg.len());
                    out.extend_from_slice(arg);
                    out.extend_from_slice(b"\r\n");
                }
                packed.count += 1;
            }
            Commands::Pipeline(pipe) => {
                pipe.add_command(cluster_command(args, None));
            }
        }
    }

    /// One command of `args` and then `last`, which a single node is sent
    /// as it is (shared, not copied into the commands). At most one
    /// command of a batch ends so.
    fn command_ending_with(&mut self, args: &[&[u8]], last: Arc<Vec<u8>>) {
        match self {
            Commands::Packed(packed) => {
                debug_assert!(packed.shared.is_none(), "one shared argument a batch");
                let out = packed.out();
                write_array_len(out, args.len() + 1);
                for arg in args {
                    write_bulk_len(out, arg.len());
                    out.extend_from_slice(arg);
                    out.extend_from_slice(b"\r\n");
                }
                write_bulk_len(out, last.len());
                packed.shared = Some(last);
                packed.out().extend_from_slice(b"\r\n");
                packed.count += 1;
            }
            Commands::Pipeline(pipe) => {
                pipe.add_command(cluster_command(args, Some(&last)));
            }
        }
    }
}

/// `*<n>\r\n`: a command of `n` arguments.
fn write_array_len(out: &mut Vec<u8>, n: usize) {
    out.push(b'*');
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `$<len>\r\n`: the header of an argument of `len` bytes.
fn write_bulk_len(out: &mut Vec<u8>, len: usize) {
    out.push(b'$');
    out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `args` (and `last`) as a command for the cluster client.
fn cluster_command(args: &[&[u8]], last: Option<&[u8]>) -> redis::Cmd {
    let bytes = args.iter().map(|arg| arg.len()).sum::<usize>() + last.map_or(0, <[u8]>::len);
    let mut cmd = redis::Cmd::with_capacity(args.len() + 1, bytes);
    for arg in args.iter().copied().chain(last) {
        cmd.arg(arg);
    }
    // Not `ignore()`d: that costs a hash-set insert per command and a
    // lookup per reply, and `()` takes the replies as they are (a server
    // error still fails the batch).
    cmd
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
            if self.connections.is_node() {
                let ping = PackedCommands::one(b"*1\r\n$4\r\nPING\r\n".to_vec());
                return self
                    .connections
                    .send_packed(ping, self.response_timeout)
                    .await;
            }
            let mut ping = redis::Pipeline::with_capacity(1);
            ping.cmd("PING");
            self.send_to_cluster(&ping).await
        }
        .boxed()
    }
}
