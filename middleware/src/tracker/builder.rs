//! [`ActivityTrackerBuilder`]: every setting of a tracker, checked and
//! put together by [`ActivityTrackerBuilder::build`].

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use tokio_util::sync::CancellationToken;

use super::thread::start_dispatcher;
use super::{ActivityTracker, BuildError, DEFAULT_STREAM_KEY};
use crate::ActivityType;
use crate::RedisClient;
use crate::capture::CaptureConfig;
use crate::counters::Counters;
use crate::dispatcher::fallback::FallbackConfig;
use crate::dispatcher::intake::Intake;
use crate::dispatcher::{Dispatcher, DispatcherConfig, RedisStreamSink, Sink, StreamFormat};
use crate::layer::CaptureContext;

/// Builds an [`ActivityTracker`]. Every setting has a default; see each
/// method.
#[derive(Debug)]
#[must_use]
pub struct ActivityTrackerBuilder {
    redis_url: String,
    redis_cluster: bool,
    stream_key: String,
    stream_shards: usize,
    stream_max_len: usize,
    stream_format: StreamFormat,
    channel_capacity: usize,
    pool_size: u32,
    connect_timeout: Duration,
    response_timeout: Duration,
    dispatcher: DispatcherConfig,
    capture: CaptureConfig,
    sink: Option<Arc<dyn Sink>>,
    fallback: FallbackConfig,
}

impl Default for ActivityTrackerBuilder {
    fn default() -> Self {
        ActivityTrackerBuilder {
            redis_url: "redis://127.0.0.1:6379".to_owned(),
            redis_cluster: false,
            stream_key: DEFAULT_STREAM_KEY.to_owned(),
            stream_shards: 1,
            stream_max_len: 1_000_000,
            stream_format: StreamFormat::default(),
            channel_capacity: 16_384,
            pool_size: 2,
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(5),
            dispatcher: DispatcherConfig::default(),
            capture: CaptureConfig::default(),
            sink: None,
            fallback: FallbackConfig::default(),
        }
    }
}

impl ActivityTrackerBuilder {
    /// Redis to write to (default `redis://127.0.0.1:6379`). A list of
    /// nodes separated by commas (`redis://a:7000,redis://b:7001`) is a
    /// Redis Cluster, written through the `redis` crate's cluster client.
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.redis_url = url.into();
        self
    }

    /// Whether the Redis at [`redis_url`](Self::redis_url) is a Redis
    /// Cluster even when it is one address (`REDIS_CLUSTER`; default
    /// false: one address is one node).
    pub fn redis_cluster(mut self, cluster: bool) -> Self {
        self.redis_cluster = cluster;
        self
    }

    /// How many shards the stream has (`STREAM_SHARDS`; default 1: the
    /// stream key itself). With more, each batch goes to the next shard
    /// in turn, `<stream key>:{<tag>}`, each on a cluster slot of its own
    /// (see [`StreamShards`](crate::StreamShards)); the processors must
    /// be given the same count. At most
    /// [`MAX_STREAM_SHARDS`](crate::MAX_STREAM_SHARDS).
    pub fn stream_shards(mut self, shards: usize) -> Self {
        self.stream_shards = shards;
        self
    }

    /// Stream key (default `user_activities_stream`).
    pub fn stream_key(mut self, key: impl Into<String>) -> Self {
        self.stream_key = key.into();
        self
    }

    /// Cap on the stream's length in events (default 1,000,000), applied
    /// with one `XTRIM` after each batch: what the processor has not read
    /// by then is trimmed, so size it for the longest processor outage to
    /// survive. With several events per entry the trim keeps the newest
    /// entries that hold this many events (see `docs/operations.md`).
    pub fn stream_max_len(mut self, max_len: usize) -> Self {
        self.stream_max_len = max_len;
        self
    }

    /// The shape of the entries written (default [`StreamFormat::V2`]: one
    /// entry per batch). [`StreamFormat::V1`] writes one entry per event,
    /// for a rolling upgrade while processors that read only version 1
    /// still run (see `docs/operations.md`).
    pub fn stream_format(mut self, format: StreamFormat) -> Self {
        self.stream_format = format;
        self
    }

    /// Capacity, in events, of the intake between the request path and the
    /// dispatcher (default 16,384). When full, new events are dropped and
    /// counted (`dropped_full`).
    pub fn channel_capacity(mut self, capacity: usize) -> Self {
        self.channel_capacity = capacity;
        self
    }

    /// Most events per pipelined write (default 1024).
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.dispatcher.max_batch = max_batch;
        self
    }

    /// How long a partial batch may wait for more events before it is
    /// written (default 5 ms; `Duration::ZERO` writes whatever is there at
    /// once). Under load this turns many small pipelines into a few full
    /// ones, which saves the app and Redis CPU; a full batch never waits.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.dispatcher.linger = linger;
        self
    }

    /// Most events held while Redis cannot be written (default 100,000);
    /// past it the oldest are dropped and counted.
    pub fn buffer_capacity(mut self, capacity: usize) -> Self {
        self.dispatcher.buffer_capacity = capacity;
        self
    }

    /// Redis connections in the pool, which is also the most batch writes
    /// under way at once (default 2: while Redis stores one batch, the next
    /// is serialized). With more than one, batches may land in the stream
    /// slightly out of capture order; `created_at` keeps the true order.
    pub fn pool_size(mut self, size: u32) -> Self {
        self.pool_size = size;
        self
    }

    /// How long a write waits for a Redis connection before it counts as
    /// failed and is retried (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a write waits for Redis's replies before it counts as
    /// failed and is retried (default 5 s). A write that timed out may
    /// still have been stored, so its retry can duplicate entries; the
    /// processor stores each id once.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// First and largest delay between retries of a failing write
    /// (default 50 ms doubling up to 5 s, jittered).
    pub fn retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.dispatcher.backoff_initial = initial;
        self.dispatcher.backoff_max = max;
        self
    }

    /// Most time [`ActivityTracker::shutdown`] spends flushing (default 5 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.dispatcher.shutdown_timeout = timeout;
        self
    }

    /// Writes to `sink` instead of the Redis stream (the Redis settings
    /// are then unused).
    pub fn sink(mut self, sink: impl Sink) -> Self {
        self.sink = Some(Arc::new(sink));
        self
    }

    /// Enables the Redis-down fallback: while the stream cannot be
    /// written, batches go to `sink` instead. With `activity-store`'s
    /// `PostgresSink` they go straight into `user_activity_logs` through
    /// the processor's own idempotent writer, so rollups stay the same:
    ///
    /// ```ignore
    /// let builder = ActivityTracker::builder()
    ///     .fallback_sink(activity_store::PostgresSink::connect_lazy(&database_url)?);
    /// ```
    ///
    /// Redis is probed (`PING`) every
    /// [`fallback_probe_interval`](Self::fallback_probe_interval) and used
    /// again as soon as it answers; the fallback sink, once it failed, is
    /// probed the same way ([`Sink::probe`]). Each switch is logged once and
    /// counted (`fallback_switches`).
    pub fn fallback_sink(mut self, sink: impl Sink) -> Self {
        self.fallback.fallback_sink = Some(Arc::new(sink));
        self
    }

    /// Enables the local spool: while neither the stream nor the database
    /// (if set) takes a batch, it is appended to this file as one record
    /// (length, CRC32, the batch's wire JSON lines) and `fdatasync`ed. It is
    /// replayed oldest first into the stream (or the database) once one of
    /// them answers, then truncated; a spool left by an earlier run (a
    /// crash, a kill) is replayed when the tracker starts. A torn or
    /// corrupt tail record is skipped and counted (`spool_corrupt`).
    /// Replaying a record twice (a crash during replay) is harmless: ids are
    /// idempotency keys downstream. Default: no spool.
    ///
    /// What a kill of the app (`SIGKILL`, a crash) can lose is what is in
    /// memory, never what is spooled: at most `channel_capacity` +
    /// `buffer_capacity` events, in practice the intake's content plus
    /// the `pool_size` batches being written (the buffer drains into the
    /// spool as fast as it fills).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use activity_tracker::ActivityTracker;
    ///
    /// let builder = ActivityTracker::builder()
    ///     .redis_url("redis://127.0.0.1:6379")
    ///     .spool_path("/var/lib/myapp/activities.spool")
    ///     .spool_max_bytes(16 * 1024 * 1024);
    /// let tracker = builder.build().await?;
    /// println!("{} events spooled", tracker.counters().spooled);
    /// # Ok(()) }
    /// ```
    pub fn spool_path(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.fallback.spool_path = Some(path.into());
        self
    }

    /// Byte limit of the spool file (default 64 MiB). When the next batch
    /// does not fit, batches wait in the dispatcher's buffer; past its
    /// capacity the oldest are dropped and counted (`dropped_spool_full`).
    pub fn spool_max_bytes(mut self, bytes: u64) -> Self {
        self.fallback.spool_max_bytes = bytes;
        self
    }

    /// How often a destination marked down (Redis, the database) is probed
    /// and the spool checked for records to replay (default 1 s).
    pub fn fallback_probe_interval(mut self, interval: Duration) -> Self {
        self.fallback.probe_interval = interval;
        self
    }

    /// Replaces every capture setting (routes, proxies, session) at once.
    pub fn capture_config(mut self, config: CaptureConfig) -> Self {
        self.capture = config;
        self
    }

    /// Records `action` for requests with this method whose route matches
    /// `pattern` (axum syntax: `/api/v1/cases/{id}`); see
    /// [`CaptureConfig::route`].
    pub fn route(mut self, method: Method, pattern: &str, action: ActivityType) -> Self {
        self.capture = self.capture.route(method, pattern, action);
        self
    }

    /// Names the resource of the route added last: `resource_type` is
    /// `kind`, `resource_id` the path parameter `param`; see
    /// [`CaptureConfig::resource`].
    pub fn resource(mut self, kind: &str, param: &str) -> Self {
        self.capture = self.capture.resource(kind, param);
        self
    }

    /// Peers (CIDRs or addresses) whose `Forwarded` / `X-Forwarded-For` /
    /// `X-Real-IP` headers are believed (default: none); see
    /// [`CaptureConfig::trusted_proxies`].
    pub fn trusted_proxies<I>(mut self, proxies: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.capture = self.capture.trusted_proxies(proxies);
        self
    }

    /// Stores only the network of each client address (the /24 and /48
    /// with `ip_truncation(24, 48)`); see [`CaptureConfig::ip_truncation`].
    pub fn ip_truncation(mut self, v4_prefix: u8, v6_prefix: u8) -> Self {
        self.capture = self.capture.ip_truncation(v4_prefix, v6_prefix);
        self
    }

    /// Reads the session id from this cookie.
    pub fn session_cookie(mut self, name: &str) -> Self {
        self.capture = self.capture.session_cookie(name);
        self
    }

    /// Reads the session id from this header (when there is no session
    /// cookie).
    pub fn session_header(mut self, name: &str) -> Self {
        self.capture = self.capture.session_header(name);
        self
    }

    /// Whether 4xx/5xx responses are recorded (default: yes).
    pub fn record_errors(mut self, record: bool) -> Self {
        self.capture = self.capture.record_errors(record);
        self
    }

    /// Starts the dispatcher. Must be called inside a Tokio runtime.
    ///
    /// Fails on an unparsable Redis URL or a zero size; does not contact
    /// Redis, so an app starts even while Redis is down.
    pub async fn build(self) -> Result<ActivityTracker, BuildError> {
        if self.channel_capacity == 0 {
            return Err(BuildError::InvalidSetting(
                "channel_capacity must be at least 1",
            ));
        }
        if self.dispatcher.max_batch == 0 {
            return Err(BuildError::InvalidSetting("max_batch must be at least 1"));
        }
        if self.pool_size == 0 {
            return Err(BuildError::InvalidSetting("pool_size must be at least 1"));
        }
        if self.stream_key.is_empty() {
            return Err(BuildError::InvalidSetting("stream_key must not be empty"));
        }
        if !(1..=crate::MAX_STREAM_SHARDS).contains(&self.stream_shards) {
            return Err(BuildError::InvalidSetting(
                "stream_shards must be from 1 to MAX_STREAM_SHARDS (1024)",
            ));
        }
        self.capture.validate()?;
        let fallback = self.fallback;
        let sink: Arc<dyn Sink> = match self.sink {
            Some(sink) => sink,
            None => {
                let invalid_url = |source| BuildError::InvalidRedisUrl {
                    url: self.redis_url.clone(),
                    source,
                };
                let client =
                    RedisClient::open(&self.redis_url, self.redis_cluster).map_err(invalid_url)?;
                Arc::new(
                    RedisStreamSink::with_client(
                        client,
                        self.stream_key.clone(),
                        self.stream_max_len,
                        self.pool_size,
                        self.connect_timeout,
                    )
                    .map_err(invalid_url)?
                    .response_timeout(self.response_timeout)
                    .format(self.stream_format)
                    .shards(self.stream_shards),
                )
            }
        };
        let mut dispatcher_config = self.dispatcher;
        dispatcher_config.max_in_flight = self.pool_size as usize;
        let (sender, intake) = Intake::new(
            self.channel_capacity,
            dispatcher_config.max_batch,
            dispatcher_config.linger,
        );
        let counters = Arc::new(Counters::default());
        let capture = Arc::new(CaptureContext::new(
            Arc::new(self.capture),
            sender.clone(),
            counters.clone(),
        )?);
        let cancel = CancellationToken::new();
        let dispatcher =
            Dispatcher::new(intake, sink, counters.clone(), dispatcher_config).fallback(fallback);
        let task = start_dispatcher(dispatcher, cancel.clone())?;
        Ok(ActivityTracker::new(
            sender,
            counters,
            capture,
            cancel,
            task,
            self.stream_key,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn capture_mistakes_fail_the_build() {
        let err = ActivityTracker::builder()
            .route(Method::GET, "/cases/{id", ActivityType::CaseView)
            .build()
            .await
            .unwrap_err();
        assert!(matches!(err, BuildError::Capture(_)), "{err}");
        let err = ActivityTracker::builder()
            .trusted_proxies(["10.0.0.0/33"])
            .build()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("10.0.0.0/33"), "{err}");
    }
}
