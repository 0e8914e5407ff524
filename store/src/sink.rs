//! The writer as an [`activity_tracker::Sink`]: what the tracker's
//! Redis-down fallback writes through.

use std::time::Duration;

use activity_tracker::{Activity, Sink, SinkError, SinkFuture};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::normalize::StorageRules;

/// Stores batches straight into `user_activity_logs` with
/// [`write_batch`](crate::writer::write_batch), the processor's own
/// idempotent writer, so rows and rollups are the same as through the
/// stream. Give it to the tracker's builder:
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use activity_store::PostgresSink;
/// use activity_tracker::ActivityTracker;
///
/// let tracker = ActivityTracker::builder()
///     .redis_url("redis://127.0.0.1:6379")
///     .fallback_sink(PostgresSink::connect_lazy("postgres://postgres@127.0.0.1:5432/postgres")?)
///     .build()
///     .await?;
/// # let _ = tracker;
/// # Ok(()) }
/// ```
///
/// The table must exist (the processor's `migrate`, or
/// [`schema::migrate`](crate::schema::migrate)).
#[derive(Debug, Clone)]
pub struct PostgresSink {
    /// Shared with the app when it passed its own pool.
    pool: PgPool,
    /// What the processor's writer would apply too (IP truncation); no
    /// erasure list: the app has no key, the processor's sweep erases what
    /// this stores of an erased user.
    rules: StorageRules,
}

impl PostgresSink {
    /// Connections [`connect_lazy`](Self::connect_lazy) opens at most: the
    /// fallback writes one batch at a time, and its probe needs one more.
    pub const MAX_CONNECTIONS: u32 = 2;

    /// How long [`connect_lazy`](Self::connect_lazy)'s pool waits for a
    /// connection before the batch goes on to the next fallback.
    pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);

    /// A sink over a pool the app already has.
    pub fn new(pool: PgPool) -> Self {
        PostgresSink {
            pool,
            rules: StorageRules::NONE,
        }
    }

    /// Applies `rules` to what it stores (set the same IP truncation as the
    /// processor's `IP_TRUNCATION`, when the layer does not truncate at
    /// capture already).
    pub fn with_rules(mut self, rules: StorageRules) -> Self {
        self.rules = rules;
        self
    }

    /// A sink with a pool of its own, of at most
    /// [`MAX_CONNECTIONS`](Self::MAX_CONNECTIONS) connections opened when
    /// first needed: the database is not contacted here, so an app starts
    /// while it is down. Fails only on a URL that cannot be parsed.
    pub fn connect_lazy(url: &str) -> Result<Self, sqlx::Error> {
        let pool = PgPoolOptions::new()
            .max_connections(Self::MAX_CONNECTIONS)
            .acquire_timeout(Self::ACQUIRE_TIMEOUT)
            .connect_lazy(url)?;
        Ok(PostgresSink::new(pool))
    }

    /// The pool it writes through.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl Sink for PostgresSink {
    fn send<'a>(&'a self, batch: &'a [Activity]) -> SinkFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            crate::writer::write_batch_with_rules(&self.pool, batch, &self.rules)
                .await
                .map(drop)
                .map_err(SinkError::unavailable)
        })
    }

    fn probe(&self) -> SinkFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            sqlx::query("SELECT 1")
                .execute(&self.pool)
                .await
                .map(drop)
                .map_err(SinkError::unavailable)
        })
    }
}
