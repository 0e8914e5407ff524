//! [`ActivityTracker`]: the handle an app keeps. It owns the channel, the
//! counters and the dispatcher (on a thread of its own), hands out the
//! layer, and offers the manual `track_*` API of the original design.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use activity_tracker::{ActivityTracker, CaseAction};
//! use serde_json::json;
//!
//! let tracker = ActivityTracker::builder()
//!     .redis_url("redis://127.0.0.1:6379")
//!     .build()
//!     .await?;
//! let ip = "192.168.1.100".parse().ok();
//! tracker.track_login("user-123", ip, Some("Mozilla/5.0"));
//! tracker.track_case_action(
//!     "user-123",
//!     CaseAction::Create,
//!     "case-456",
//!     Some(json!({"case_amount": 50000.0})),
//!     ip,
//! );
//! let summary = tracker.shutdown().await;
//! println!("{} sent, {} unsent", summary.sent, summary.unsent);
//! # Ok(()) }
//! ```

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use serde_json::{Map, Value};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::capture::{CaptureConfig, CaptureConfigError};
use crate::counters::{Counters, CountersSnapshot};
use crate::dispatcher::fallback::FallbackConfig;
use crate::dispatcher::{Dispatcher, DispatcherConfig, RedisStreamSink, ShutdownSummary, Sink};
use crate::envelope::Envelope;
use crate::layer::{ActivityLayer, CaptureContext};
use crate::{Activity, ActivityType};

/// Default stream key (the `STREAM_KEY` contract).
pub const DEFAULT_STREAM_KEY: &str = "user_activities_stream";

/// Records user activities into a Redis Stream without ever slowing or
/// failing the caller.
///
/// Cheap to clone (one `Arc`). Made with [`ActivityTracker::builder`];
/// [`ActivityTracker::shutdown`] flushes what is buffered.
#[derive(Clone)]
pub struct ActivityTracker {
    inner: Arc<Inner>,
}

struct Inner {
    /// The bounded channel into the dispatcher; `try_send` only.
    tx: mpsc::Sender<Envelope>,
    /// Shared with the layers and the dispatcher.
    counters: Arc<Counters>,
    /// Config, channel and counters, shared by every layer handed out.
    capture: Arc<CaptureContext>,
    /// Stops the dispatcher.
    cancel: CancellationToken,
    /// Where the dispatcher's summary will arrive, until the first
    /// `shutdown()` takes it; the async mutex serializes concurrent
    /// shutdowns.
    task: Mutex<TaskState>,
    /// For `Debug`.
    stream_key: String,
}

enum TaskState {
    Running(oneshot::Receiver<ShutdownSummary>),
    Stopped(ShutdownSummary),
}

/// Runs the dispatcher on a thread of its own, with a single-threaded
/// runtime, rather than as a task of the app's runtime: its writes (a
/// pipeline to Redis, a transaction into PostgreSQL, a spool append) then
/// never hold a worker thread that a request is waiting for. Chosen by
/// measurement with Redis down: as a task, the direct writes into
/// PostgreSQL made every request slower; on its own thread, requests are
/// as fast as with Redis up (`bench/redis_down_latency.sh`, see
/// docs/benchmarks.md). Its summary comes back through the returned
/// receiver.
fn start_dispatcher(
    dispatcher: Dispatcher,
    cancel: CancellationToken,
) -> Result<oneshot::Receiver<ShutdownSummary>, BuildError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BuildError::DispatcherThread)?;
    let (done, summary) = oneshot::channel();
    std::thread::Builder::new()
        .name("activity-dispatcher".into())
        .spawn(move || {
            let _ = done.send(runtime.block_on(dispatcher.run(cancel)));
        })
        .map_err(BuildError::DispatcherThread)?;
    Ok(summary)
}

impl fmt::Debug for ActivityTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActivityTracker")
            .field("stream_key", &self.inner.stream_key)
            .field("counters", &self.inner.counters.snapshot())
            .field("stopped", &self.inner.cancel.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// Why [`ActivityTrackerBuilder::build`] failed. Redis being unreachable is
/// not an error: the app starts and the dispatcher retries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The Redis URL could not be parsed.
    #[error("invalid redis url {url:?}: {source}")]
    InvalidRedisUrl {
        /// The URL given.
        url: String,
        /// What was wrong with it.
        #[source]
        source: redis::RedisError,
    },
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    InvalidSetting(&'static str),
    /// The dispatcher's thread or its runtime could not be started (the
    /// system is out of threads or file descriptors).
    #[error("the activity dispatcher thread could not be started: {0}")]
    DispatcherThread(#[source] std::io::Error),
    /// A capture setting is wrong (a route pattern, a proxy CIDR, a
    /// session header name).
    #[error("invalid capture setting: {0}")]
    Capture(#[from] CaptureConfigError),
}

/// Builds an [`ActivityTracker`]. Every setting has a default; see each
/// method.
#[derive(Debug)]
#[must_use]
pub struct ActivityTrackerBuilder {
    redis_url: String,
    stream_key: String,
    stream_max_len: usize,
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
            stream_key: DEFAULT_STREAM_KEY.to_owned(),
            stream_max_len: 1_000_000,
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
    /// Redis to write to (default `redis://127.0.0.1:6379`).
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.redis_url = url.into();
        self
    }

    /// Stream key (default `user_activities_stream`).
    pub fn stream_key(mut self, key: impl Into<String>) -> Self {
        self.stream_key = key.into();
        self
    }

    /// Approximate cap on the stream's length, `XTRIM ... MAXLEN ~ <cap>`
    /// after each batch (default 1,000,000): what the processor has not
    /// read by then is trimmed, so size it for the longest processor
    /// outage to survive.
    pub fn stream_max_len(mut self, max_len: usize) -> Self {
        self.stream_max_len = max_len;
        self
    }

    /// Capacity of the channel between the request path and the dispatcher
    /// (default 16,384). When full, new events are dropped and counted.
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
    /// `buffer_capacity` events, in practice the channel's content plus
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
        self.capture.validate()?;
        let fallback = self.fallback;
        let sink: Arc<dyn Sink> = match self.sink {
            Some(sink) => sink,
            None => Arc::new(
                RedisStreamSink::new(
                    &self.redis_url,
                    self.stream_key.clone(),
                    self.stream_max_len,
                    self.pool_size,
                    self.connect_timeout,
                )
                .map_err(|source| BuildError::InvalidRedisUrl {
                    url: self.redis_url.clone(),
                    source,
                })?
                .response_timeout(self.response_timeout),
            ),
        };
        let mut dispatcher_config = self.dispatcher;
        dispatcher_config.max_in_flight = self.pool_size as usize;
        let (tx, rx) = mpsc::channel(self.channel_capacity);
        let counters = Arc::new(Counters::default());
        let client = self.capture.client_resolver();
        let capture = Arc::new(CaptureContext::new(
            Arc::new(self.capture),
            tx.clone(),
            counters.clone(),
        )?);
        let cancel = CancellationToken::new();
        let dispatcher = Dispatcher::new(rx, sink, client, counters.clone(), dispatcher_config)
            .fallback(fallback);
        let task = start_dispatcher(dispatcher, cancel.clone())?;
        Ok(ActivityTracker {
            inner: Arc::new(Inner {
                tx,
                counters,
                capture,
                cancel,
                task: Mutex::new(TaskState::Running(task)),
                stream_key: self.stream_key,
            }),
        })
    }
}

impl ActivityTracker {
    /// A builder with every default.
    pub fn builder() -> ActivityTrackerBuilder {
        ActivityTrackerBuilder::default()
    }

    /// Queues one activity. Never blocks and never fails the caller: when
    /// the channel is full or the tracker is shut down, the activity is
    /// dropped and counted. Returns whether it was queued.
    pub fn track(&self, activity: Activity) -> bool {
        let counters = &self.inner.counters;
        counters.record_offer(
            self.inner
                .tx
                .try_send(Envelope::Activity(Box::new(activity))),
        )
    }

    /// The layer that records the requests mapped by the builder's routes.
    /// Cheap; every layer shares the tracker's channel and counters.
    ///
    /// Put it around an axum `Router` (`.layer(tracker.layer())`) or any
    /// tower service of `http::Request` / `http::Response`.
    pub fn layer(&self) -> ActivityLayer {
        ActivityLayer::new(self.inner.capture.clone())
    }

    /// A copy of the counters now.
    pub fn counters(&self) -> CountersSnapshot {
        self.inner.counters.snapshot()
    }

    /// Stops the dispatcher: takes what is queued, flushes it, bounded by
    /// the shutdown timeout, and reports what could not be sent. Events
    /// offered afterwards are dropped and counted (`dropped_closed`).
    /// Calling it again returns the same summary.
    pub async fn shutdown(&self) -> ShutdownSummary {
        let mut state = self.inner.task.lock().await;
        if let TaskState::Running(task) = &mut *state {
            self.inner.cancel.cancel();
            let summary = match task.await {
                Ok(summary) => summary,
                Err(_) => {
                    tracing::error!(
                        "the activity dispatcher thread stopped without a summary (it panicked)"
                    );
                    let s = self.inner.counters.snapshot();
                    ShutdownSummary {
                        sent: s.sent,
                        flushed: 0,
                        stored_direct: s.stored_direct,
                        spooled: s.spooled,
                        unsent: s.captured.saturating_sub(s.delivered()),
                        timed_out: false,
                    }
                }
            };
            *state = TaskState::Stopped(summary);
        }
        match &*state {
            TaskState::Stopped(summary) => *summary,
            TaskState::Running(_) => unreachable!("set to Stopped above"),
        }
    }

    /// Records a login (`login`), e.g. from a handler that checked the
    /// credentials itself.
    pub fn track_login(
        &self,
        user_id: impl Into<String>,
        ip: Option<IpAddr>,
        user_agent: Option<&str>,
    ) -> bool {
        let mut activity = with_ip(Activity::new(ActivityType::Login).user_id(user_id), ip);
        if let Some(ua) = user_agent {
            activity = activity.user_agent(ua);
        }
        self.track(activity)
    }

    /// Records a logout (`logout`).
    pub fn track_logout(&self, user_id: impl Into<String>, ip: Option<IpAddr>) -> bool {
        self.track(with_ip(
            Activity::new(ActivityType::Logout).user_id(user_id),
            ip,
        ))
    }

    /// Records an action on a case (`case_create`, `case_view`, ...), with
    /// `resource_type = "case"`.
    pub fn track_case_action(
        &self,
        user_id: impl Into<String>,
        action: CaseAction,
        case_id: impl Into<String>,
        details: Option<Value>,
        ip: Option<IpAddr>,
    ) -> bool {
        self.track_resource(
            user_id,
            action.activity_type(),
            "case",
            case_id,
            details,
            ip,
        )
    }

    /// Records a payment step (`payment_create`, `payment_success`,
    /// `payment_failed`), with `resource_type = "payment"`.
    pub fn track_payment(
        &self,
        user_id: impl Into<String>,
        action: PaymentAction,
        payment_id: impl Into<String>,
        details: Option<Value>,
        ip: Option<IpAddr>,
    ) -> bool {
        self.track_resource(
            user_id,
            action.activity_type(),
            "payment",
            payment_id,
            details,
            ip,
        )
    }

    /// Records an action on a document (`document_generate`, ...), with
    /// `resource_type = "document"`.
    pub fn track_document_action(
        &self,
        user_id: impl Into<String>,
        action: DocumentAction,
        document_id: impl Into<String>,
        details: Option<Value>,
        ip: Option<IpAddr>,
    ) -> bool {
        self.track_resource(
            user_id,
            action.activity_type(),
            "document",
            document_id,
            details,
            ip,
        )
    }

    /// Records a withdrawal step (`withdrawal_request`, ...), with
    /// `resource_type = "withdrawal"`.
    pub fn track_withdrawal(
        &self,
        user_id: impl Into<String>,
        action: WithdrawalAction,
        withdrawal_id: impl Into<String>,
        details: Option<Value>,
        ip: Option<IpAddr>,
    ) -> bool {
        self.track_resource(
            user_id,
            action.activity_type(),
            "withdrawal",
            withdrawal_id,
            details,
            ip,
        )
    }

    /// Records a configuration change (`config_update`), with
    /// `resource_type = "config"` and the setting's key as resource id.
    pub fn track_config_update(
        &self,
        user_id: impl Into<String>,
        config_key: impl Into<String>,
        details: Option<Value>,
        ip: Option<IpAddr>,
    ) -> bool {
        self.track_resource(
            user_id,
            ActivityType::ConfigUpdate,
            "config",
            config_key,
            details,
            ip,
        )
    }

    /// Records a profile change (`profile_update`).
    pub fn track_profile_update(
        &self,
        user_id: impl Into<String>,
        details: Option<Value>,
        ip: Option<IpAddr>,
    ) -> bool {
        let activity = Activity::new(ActivityType::ProfileUpdate).user_id(user_id);
        self.track(with_details(with_ip(activity, ip), details))
    }

    /// Records a password change (`password_change`).
    pub fn track_password_change(&self, user_id: impl Into<String>, ip: Option<IpAddr>) -> bool {
        self.track(with_ip(
            Activity::new(ActivityType::PasswordChange).user_id(user_id),
            ip,
        ))
    }

    fn track_resource(
        &self,
        user_id: impl Into<String>,
        action: ActivityType,
        kind: &str,
        id: impl Into<String>,
        details: Option<Value>,
        ip: Option<IpAddr>,
    ) -> bool {
        let activity = Activity::new(action).user_id(user_id).resource(kind, id);
        self.track(with_details(with_ip(activity, ip), details))
    }
}

fn with_ip(activity: Activity, ip: Option<IpAddr>) -> Activity {
    match ip {
        Some(ip) => activity.ip_address(ip),
        None => activity,
    }
}

/// A JSON object becomes `details`; `null` means none; any other value is
/// kept under `"value"`.
fn with_details(mut activity: Activity, details: Option<Value>) -> Activity {
    activity.details = match details {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map),
        Some(other) => {
            let mut map = Map::new();
            map.insert("value".to_owned(), other);
            Some(map)
        }
    };
    activity
}

macro_rules! action_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $activity:ident,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            /// The catalogue action it records.
            pub fn activity_type(self) -> ActivityType {
                match self {
                    $($name::$variant => ActivityType::$activity,)*
                }
            }
        }

        impl From<$name> for ActivityType {
            fn from(action: $name) -> ActivityType {
                action.activity_type()
            }
        }
    };
}

action_enum! {
    /// What was done to a case, for [`ActivityTracker::track_case_action`].
    CaseAction {
        /// `case_create`
        Create => CaseCreate,
        /// `case_view`
        View => CaseView,
        /// `case_update`
        Update => CaseUpdate,
        /// `case_delete`
        Delete => CaseDelete,
        /// `case_assign`
        Assign => CaseAssign,
        /// `case_grab`
        Grab => CaseGrab,
        /// `case_complete`
        Complete => CaseComplete,
    }
}

action_enum! {
    /// A payment's step, for [`ActivityTracker::track_payment`].
    PaymentAction {
        /// `payment_create`
        Create => PaymentCreate,
        /// `payment_success`
        Success => PaymentSuccess,
        /// `payment_failed`
        Failed => PaymentFailed,
    }
}

action_enum! {
    /// What was done to a document, for [`ActivityTracker::track_document_action`].
    DocumentAction {
        /// `document_generate`
        Generate => DocumentGenerate,
        /// `document_review`
        Review => DocumentReview,
        /// `document_approve`
        Approve => DocumentApprove,
        /// `document_reject`
        Reject => DocumentReject,
        /// `document_send`
        Send => DocumentSend,
    }
}

action_enum! {
    /// A withdrawal's step, for [`ActivityTracker::track_withdrawal`].
    WithdrawalAction {
        /// `withdrawal_request`
        Request => WithdrawalRequest,
        /// `withdrawal_approve`
        Approve => WithdrawalApprove,
        /// `withdrawal_reject`
        Reject => WithdrawalReject,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_url_fails_the_build_but_unreachable_redis_does_not() {
        let err = ActivityTracker::builder()
            .redis_url("not a url")
            .build()
            .await
            .unwrap_err();
        assert!(matches!(err, BuildError::InvalidRedisUrl { .. }), "{err}");
        let tracker = ActivityTracker::builder()
            .redis_url("redis://127.0.0.1:1")
            .shutdown_timeout(Duration::from_millis(100))
            .build()
            .await
            .unwrap();
        assert!(tracker.track_logout("u1", None));
        let summary = tracker.shutdown().await;
        assert_eq!((summary.sent, summary.unsent), (0, 1));
        assert!(!tracker.track_logout("u1", None));
        assert_eq!(tracker.counters().dropped_closed, 1);
        assert_eq!(tracker.shutdown().await, summary);
    }

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

    #[test]
    fn helper_enums_map_to_the_catalogue() {
        assert_eq!(CaseAction::Grab.activity_type().as_str(), "case_grab");
        assert_eq!(
            PaymentAction::Failed.activity_type().as_str(),
            "payment_failed"
        );
        assert_eq!(
            DocumentAction::Approve.activity_type().as_str(),
            "document_approve"
        );
        assert_eq!(
            WithdrawalAction::Request.activity_type().as_str(),
            "withdrawal_request"
        );
    }

    #[test]
    fn details_that_are_not_objects_are_wrapped() {
        let a = with_details(Activity::new(ActivityType::Login), Some(Value::from(3)));
        assert_eq!(a.details.unwrap()["value"], 3);
        let a = with_details(Activity::new(ActivityType::Login), Some(Value::Null));
        assert!(a.details.is_none());
    }
}
