//! The Redis Stream sink: one pipelined round trip of `XADD` per batch.

use std::time::Duration;

use bb8_redis::RedisConnectionManager;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::{Sink, SinkError};
use crate::Activity;

/// Default for [`RedisStreamSink::response_timeout`].
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Writes each batch to a Redis Stream with one pipelined round trip:
/// `XADD <key> * data <json>` per activity, then one
/// `XTRIM <key> MAXLEN ~ <cap>`, through a `bb8-redis` connection pool.
///
/// Trimming once per batch rather than with `MAXLEN ~` on every `XADD`
/// bounds the stream the same way (to within a batch) and costs Redis
/// less CPU per event: the event's cost that runs on the app's own cores
/// when Redis shares them. Chosen by measurement (`bench/xadd_redis_cpu.sh`,
/// see docs/benchmarks.md).
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
    /// The approximate `MAXLEN ~` cap of the stream, formatted once.
    max_len: String,
    /// How long a batch write waits for Redis's replies (the `redis`
    /// crate's default of 500 ms is short for a large pipeline on a busy
    /// machine, and a write that times out is sent again).
    response_timeout: Duration,
}

impl RedisStreamSink {
    /// A sink writing to `key` on the Redis at `url`, capped at about
    /// `max_len` entries, with at most `pool_size` connections, waiting at
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
            max_len: max_len.to_string(),
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
        })
    }

    /// How long a batch write waits for Redis's replies before it counts
    /// as failed (and is retried); default 5 s.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// The stream key written to.
    pub fn stream_key(&self) -> &str {
        &self.key
    }

    /// One `XADD` per activity, then the `XTRIM`. Each event's JSON is
    /// written into one buffer reused across the batch, then copied into a
    /// command made at its exact size: one allocation for its bytes and one
    /// for its argument list, instead of a `String` per event and a command
    /// that grows argument by argument.
    fn pipeline(&self, batch: &[Activity]) -> redis::Pipeline {
        let mut pipe = redis::Pipeline::with_capacity(batch.len() + 1);
        let mut json = Vec::with_capacity(1024);
        let fixed = "XADD".len() + self.key.len() + "*".len() + "data".len();
        for activity in batch {
            json.clear();
            activity.write_wire_json(&mut json);
            let mut cmd = redis::Cmd::with_capacity(5, fixed + json.len());
            cmd.arg("XADD")
                .arg(self.key.as_str())
                .arg("*")
                .arg("data")
                .arg(json.as_slice());
            // Not `ignore()`d: that costs a hash-set insert per command and
            // a lookup per reply, and `()` takes the replies as they are (a
            // server error still fails the batch).
            pipe.add_command(cmd);
        }
        pipe.cmd("XTRIM")
            .arg(self.key.as_str())
            .arg("MAXLEN")
            .arg("~")
            .arg(self.max_len.as_str());
        pipe
    }

    async fn write(&self, batch: &[Activity]) -> Result<(), SinkError> {
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
