//! Redis connections that come back after Redis restarts, and the
//! cancellable retry sleep every loop uses (the backoff itself is
//! `activity_tracker::Backoff`, shared with the tracker's dispatcher).

use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;

use super::{Backoff, Settings};

/// Opens a connection; `response_timeout` overrides redis' 500 ms default
/// (blocking reads need longer than their `BLOCK`).
pub(crate) async fn connect(
    client: &redis::Client,
    response_timeout: Option<Duration>,
) -> redis::RedisResult<MultiplexedConnection> {
    let mut config =
        AsyncConnectionConfig::new().set_connection_timeout(Some(Duration::from_secs(2)));
    if let Some(timeout) = response_timeout {
        config = config.set_response_timeout(Some(timeout));
    }
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// A connection opened on first use and again after a failure (a
/// multiplexed connection never recovers once its socket is gone).
#[derive(Debug)]
pub(crate) struct Link {
    client: redis::Client,
    response_timeout: Option<Duration>,
    conn: Option<MultiplexedConnection>,
}

impl Link {
    pub(crate) fn new(client: redis::Client, response_timeout: Option<Duration>) -> Self {
        Link {
            client,
            response_timeout,
            conn: None,
        }
    }

    /// The connection, opened if needed.
    pub(crate) async fn get(&mut self) -> redis::RedisResult<&mut MultiplexedConnection> {
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
            && (e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
                || e.is_unrecoverable_error())
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

/// `XGROUP DELCONSUMER` when this consumer has nothing pending.
pub(crate) async fn forget_consumer_if_idle(conn: &mut MultiplexedConnection, settings: &Settings) {
    let pending: redis::RedisResult<redis::Value> = redis::cmd("XPENDING")
        .arg(&settings.stream_key)
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
            .arg(&settings.stream_key)
            .arg(&settings.group)
            .arg(&settings.consumer)
            .query_async(conn)
            .await;
    }
}
