//! The stream write behind a 200: one v2 entry (`XADD <key> * n <count>
//! events <lines>`) per request, refused while the stream's backlog in
//! events is above `INGEST_MAX_BACKLOG`. No trim: what the ingest
//! accepted is never cut from the stream; the backlog bound is what keeps
//! it from growing without end. With several shards each request goes
//! to the next shard in turn, as the tracker's batches do, and the backlog
//! is every shard's together.
//!
//! A single node is sent the `XADD` over the ingest's own connections
//! (`node`), the entry's lines never copied; a cluster through the
//! `redis` crate's cluster connection.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use activity_tracker::{RedisClient, RedisConnection, StreamShards, WireBatch};

use super::node::NodeWriter;
use crate::queue_length::{QueueLength, shard_lengths};

/// How old the backlog reading may be before a request reads it again:
/// reading it costs two round trips, so not every request does.
const BACKLOG_READING_AGE: Duration = Duration::from_millis(100);
/// How long a request waits for Redis to take a connection or answer.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the events could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// Redis did not answer or refused the write.
    #[error("the stream cannot be written: {0}")]
    Redis(#[from] redis::RedisError),
    /// The stream holds more events than `INGEST_MAX_BACKLOG`.
    #[error("the stream holds about {backlog} events waiting, over INGEST_MAX_BACKLOG ({max})")]
    Backlog {
        /// The estimate.
        backlog: u64,
        /// The bound.
        max: u64,
    },
}

/// Writes requests' events to the stream.
#[derive(Debug)]
pub(crate) struct StreamWriter {
    client: RedisClient,
    shards: StreamShards,
    /// The shard the next request goes to, counting up.
    next_shard: AtomicUsize,
    max_backlog: u64,
    /// The `XADD`s' way to a single node; `None` for a cluster (or a
    /// node reached by TLS), written through `conn`.
    node: Option<NodeWriter>,
    /// The connection requests share (multiplexed), for the backlog's
    /// reading and a cluster's writes; `None` after a failure, so the
    /// next request connects again.
    conn: tokio::sync::Mutex<Option<RedisConnection>>,
    /// The last backlog reading and when it was taken; locked only to
    /// read or replace it.
    backlog: Mutex<Option<(Instant, u64)>>,
    /// Held by the one request reading the backlog again.
    reading: tokio::sync::Mutex<()>,
}

impl StreamWriter {
    pub(crate) fn new(client: RedisClient, shards: StreamShards, max_backlog: u64) -> Self {
        StreamWriter {
            node: NodeWriter::for_client(&client, REDIS_TIMEOUT),
            client,
            shards,
            next_shard: AtomicUsize::new(0),
            max_backlog,
            conn: tokio::sync::Mutex::new(None),
            backlog: Mutex::new(None),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    async fn connection(&self) -> Result<RedisConnection, redis::RedisError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let conn = self
            .client
            .connect(REDIS_TIMEOUT, Some(REDIS_TIMEOUT))
            .await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    async fn forget_connection(&self) {
        *self.conn.lock().await = None;
    }

    /// Refuses while the backlog is over the bound (Redis unreachable is
    /// an error too: nothing could be written anyway). One request at a
    /// time reads a stale backlog again; the others meanwhile go by the
    /// last reading.
    pub(crate) async fn check_backlog(&self) -> Result<(), WriteError> {
        let last = *self.backlog.lock().unwrap_or_else(|e| e.into_inner());
        let backlog = match last {
            Some((at, events)) if at.elapsed() < BACKLOG_READING_AGE => events,
            Some((_, events)) => match self.reading.try_lock() {
                Ok(_reading) => self.read_backlog().await?,
                Err(_) => events,
            },
            None => {
                let _reading = self.reading.lock().await;
                self.read_backlog().await?
            }
        };
        if backlog > self.max_backlog {
            return Err(WriteError::Backlog {
                backlog,
                max: self.max_backlog,
            });
        }
        Ok(())
    }

    /// Reads the backlog and keeps the reading.
    async fn read_backlog(&self) -> Result<u64, WriteError> {
        let mut conn = self.connection().await?;
        let events = match shard_lengths(&mut conn, &self.shards).await {
            Ok(lengths) => QueueLength::sum(&lengths).events,
            Err(e) => {
                self.forget_connection().await;
                return Err(e.into());
            }
        };
        *self.backlog.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), events));
        Ok(events)
    }

    /// Writes `batch` as one v2 entry; `Ok` once Redis has it.
    pub(crate) async fn write(&self, batch: &WireBatch) -> Result<(), WriteError> {
        if batch.is_empty() {
            return Ok(());
        }
        let shard = self.next_shard.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        let key = self.shards.key(shard);
        if let Some(node) = &self.node {
            return Ok(node.xadd(key, batch.len(), batch.as_bytes()).await?);
        }
        let mut conn = self.connection().await?;
        let mut count = itoa::Buffer::new();
        let count = count.format(batch.len());
        let events = batch.as_bytes();
        let mut cmd = redis::Cmd::with_capacity(
            7,
            "XADD*nevents".len() + key.len() + count.len() + events.len(),
        );
        cmd.arg("XADD")
            .arg(key)
            .arg("*")
            .arg("n")
            .arg(count)
            .arg("events")
            .arg(events);
        if let Err(e) = cmd.query_async::<()>(&mut conn).await {
            self.forget_connection().await;
            return Err(e.into());
        }
        Ok(())
    }
}
