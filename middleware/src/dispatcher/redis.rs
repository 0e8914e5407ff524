//! The Redis Stream sink: one pipelined round trip per batch, one `XADD`
//! of the whole batch (v2 entries) or one per event (v1).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bb8_redis::RedisConnectionManager;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::stream_cap::{EXACT_TRIM_BELOW, StreamCap};
use super::{Sink, SinkError};
use crate::{Activity, EntryCodec, WireBatch};

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

/// Writes each batch to a Redis Stream with one pipelined round trip
/// through a `bb8-redis` connection pool: one `XADD <key> * n <count>
/// events <lines>` for the whole batch ([`StreamFormat::V2`], the default;
/// with `codec lz4` before `events` for [`StreamFormat::V2Lz4`])
/// or one `XADD <key> * data <json>` per event ([`StreamFormat::V1`]),
/// then one `XTRIM <key> MAXLEN` to the entries that hold the cap's events
/// (module `stream_cap`).
///
/// Trimming once per batch rather than with `MAXLEN ~` on every `XADD`
/// bounds the stream the same way and costs Redis less CPU per entry
/// (`bench/xadd_redis_cpu.sh`, see docs/benchmarks.md).
///
/// The pool connects lazily, so a sink can be made while Redis is down;
/// sends then fail (after `connect_timeout`) until Redis is back, and the
/// dispatcher retries.
#[derive(Debug, Clone)]
pub struct RedisStreamSink {
    /// Multiplexed connections, checked with `PING` when taken out so a
    /// connection broken by a Redis restart is replaced.
    pool: bb8::Pool<RedisConnectionManager>,
    /// The stream written to.
    key: String,
    /// The entry shape written.
    format: StreamFormat,
    /// The cap in events, as entries to trim to; shared by the clones of
    /// the sink, locked only to update and read it.
    cap: Arc<Mutex<StreamCap>>,
    /// How long a batch write waits for Redis's replies (the `redis`
    /// crate's default of 500 ms is short for a large pipeline on a busy
    /// machine, and a write that times out is sent again).
    response_timeout: Duration,
}

impl RedisStreamSink {
    /// A sink writing to `key` on the Redis at `url`, capped at about
    /// `max_len` events, with at most `pool_size` connections, waiting at
    /// most `connect_timeout` for a connection. Fails only on a URL that
    /// cannot be parsed; Redis itself is not contacted.
    pub fn new(
        url: &str,
        key: impl Into<String>,
        max_len: usize,
        pool_size: u32,
        connect_timeout: Duration,
    ) -> Result<Self, redis::RedisError> {
        let manager = RedisConnectionManager::new(url)?;
        let pool = bb8::Pool::builder()
            .max_size(pool_size.max(1))
            .connection_timeout(connect_timeout)
            .build_unchecked(manager);
        Ok(RedisStreamSink {
            pool,
            key: key.into(),
            format: StreamFormat::default(),
            cap: Arc::new(Mutex::new(StreamCap::new(max_len))),
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
        })
    }

    /// How long a batch write waits for Redis's replies before it counts
    /// as failed (and is retried); default 5 s.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// The entry shape to write; [`StreamFormat::V2`] by default.
    pub fn format(mut self, format: StreamFormat) -> Self {
        self.format = format;
        self
    }

    /// The stream key written to.
    pub fn stream_key(&self) -> &str {
        &self.key
    }

    /// The batch's `XADD`(s), then the `XTRIM`. The commands are made at
    /// their exact size, with the lines copied in once.
    fn pipeline(&self, batch: &WireBatch) -> redis::Pipeline {
        let lines = batch.as_bytes();
        let (mut pipe, entries, events_per_entry) = match self.format {
            StreamFormat::V2 | StreamFormat::V2Lz4 => {
                let mut count = itoa::Buffer::new();
                let count = count.format(batch.len());
                let codec = (self.format == StreamFormat::V2Lz4).then_some(EntryCodec::Lz4);
                let compressed = codec.map(|codec| codec.compress(lines));
                let events = compressed.as_deref().unwrap_or(lines);
                let mut cmd = redis::Cmd::with_capacity(
                    9,
                    "XADD*neventscodeclz4".len() + self.key.len() + count.len() + events.len(),
                );
                cmd.arg("XADD")
                    .arg(self.key.as_str())
                    .arg("*")
                    .arg("n")
                    .arg(count);
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
                let fixed = "XADD".len() + self.key.len() + "*".len() + "data".len();
                for line in batch.lines() {
                    let mut cmd = redis::Cmd::with_capacity(5, fixed + line.len());
                    cmd.arg("XADD")
                        .arg(self.key.as_str())
                        .arg("*")
                        .arg("data")
                        .arg(line);
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
            let mut cap = self.cap.lock().expect("never poisoned: no panics held");
            cap.record(events_per_entry, entries);
            cap.max_entries()
        };
        pipe.cmd("XTRIM")
            .arg(self.key.as_str())
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
        let pipe = self.pipeline(batch);
        let mut conn = self.pool.get().await.map_err(|e| match e {
            bb8::RunError::User(e) => SinkError::unavailable(e),
            bb8::RunError::TimedOut => SinkError::PoolTimedOut,
        })?;
        conn.set_response_timeout(self.response_timeout);
        pipe.query_async::<()>(&mut *conn)
            .await
            .map_err(SinkError::unavailable)?;
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
            let mut conn = self.pool.get().await.map_err(|e| match e {
                bb8::RunError::User(e) => SinkError::unavailable(e),
                bb8::RunError::TimedOut => SinkError::PoolTimedOut,
            })?;
            redis::cmd("PING")
                .query_async::<()>(&mut *conn)
                .await
                .map_err(SinkError::unavailable)?;
            Ok(())
        }
        .boxed()
    }
}
