//! Redis connections that come back after Redis restarts, and the retry
//! backoff shared by every loop.

use std::time::Duration;

use rand::Rng;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;

use super::Settings;

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

/// Capped exponential backoff with full jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// First delay.
    base: Duration,
    /// Largest delay.
    cap: Duration,
    /// Failures in a row so far.
    attempt: u32,
}

impl Backoff {
    /// Starts at `base`, doubles per failure, never beyond `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The next delay: a random duration up to `min(cap, base * 2^n)`, and
    /// at least a quarter of it so retries never spin.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let ceiling_ms = ceiling.as_millis().max(1) as u64;
        Duration::from_millis(rand::rng().random_range(ceiling_ms / 4..=ceiling_ms))
    }

    /// Back to the first delay after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Sleeps the next delay; returns `false` at once if `token` is
    /// cancelled first.
    pub async fn sleep(&mut self, token: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            _ = token.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let first = backoff.next_delay();
        assert!(first >= Duration::from_millis(25) && first <= Duration::from_millis(100));
        for _ in 0..30 {
            assert!(backoff.next_delay() <= Duration::from_secs(2));
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }
}
