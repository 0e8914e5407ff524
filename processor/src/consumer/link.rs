//! Redis connections that come back after Redis restarts, and the
//! cancellable retry sleep every loop uses (the backoff itself is
//! `activity_tracker::Backoff`, shared with the tracker's dispatcher).

use std::time::Duration;

use activity_tracker::{RedisClient, RedisConnection, is_connection_failure};
use tokio_util::sync::CancellationToken;

use super::{Backoff, Settings};

/// Opens a connection (to a node, or to a cluster); `response_timeout`
/// overrides redis' 500 ms default (blocking reads need longer than their
/// `BLOCK`).
pub(crate) async fn connect(
    client: &RedisClient,
    response_timeout: Option<Duration>,
) -> redis::RedisResult<RedisConnection> {
    client
        .connect(Duration::from_secs(2), response_timeout)
        .await
}

/// A connection opened on first use and again after a failure (a
/// multiplexed connection never recovers once its socket is gone; a
/// cluster connection opened afresh reads the slot map afresh, which finds
/// a failed master's promoted replica).
#[derive(Debug)]
pub(crate) struct Link {
    client: RedisClient,
    response_timeout: Option<Duration>,
    conn: Option<RedisConnection>,
}

impl Link {
    pub(crate) fn new(client: RedisClient, response_timeout: Option<Duration>) -> Self {
        Link {
            client,
            response_timeout,
            conn: None,
        }
    }

    /// The connection, opened if needed.
    pub(crate) async fn get(&mut self) -> redis::RedisResult<&mut RedisConnection> {
        if self.conn.is_none() {
            self.conn = Some(connect(&self.client, self.response_timeout).await?);
        }
        Ok(self.conn.as_mut().expect("set just above"))
    }

    /// Runs `cmd`; on a connection-level failure the connection is dropped
    /// so the next call opens a new one.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &mut self,
        cmd: &redis::Cmd,
    ) -> redis::RedisResult<T> {
        let result = cmd.query_async(self.get().await?).await;
        self.check(result)
    }

    /// Runs `pipe` like [`Link::query`].
    pub(crate) async fn pipe<T: redis::FromRedisValue>(
        &mut self,
        pipe: &redis::Pipeline,
    ) -> redis::RedisResult<T> {
        let result = pipe.query_async(self.get().await?).await;
        self.check(result)
    }

    fn check<T>(&mut self, result: redis::RedisResult<T>) -> redis::RedisResult<T> {
        if let Err(e) = &result
            && is_connection_failure(e)
        {
            self.conn = None;
        }
        result
    }
}

/// Sleeps the backoff's next delay; returns `false` at once if `token` is
/// cancelled first.
pub(crate) async fn retry_sleep(backoff: &mut Backoff, token: &CancellationToken) -> bool {
    let delay = backoff.next_delay();
    tokio::select! {
        _ = token.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

/// `XGROUP DELCONSUMER` when this consumer has nothing pending on the
/// settings' shard.
pub(crate) async fn forget_consumer_if_idle(conn: &mut RedisConnection, settings: &Settings) {
    let pending: redis::RedisResult<redis::Value> = redis::cmd("XPENDING")
        .arg(settings.stream_key())
        .arg(&settings.group)
        .arg("-")
        .arg("+")
        .arg(1)
        .arg(&settings.consumer)
        .query_async(conn)
        .await;
    if let Ok(redis::Value::Array(entries)) = pending
        && entries.is_empty()
    {
        let _: redis::RedisResult<i64> = redis::cmd("XGROUP")
            .arg("DELCONSUMER")
            .arg(settings.stream_key())
            .arg(&settings.group)
            .arg(&settings.consumer)
            .query_async(conn)
            .await;
    }
}
