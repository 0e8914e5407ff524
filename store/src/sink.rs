//! The writer as an [`activity_tracker::Sink`]: what the tracker's
//! Redis-down fallback writes through.

use std::time::Duration;

use activity_tracker::{Activity, Sink, SinkError, SinkFuture, WireBatch};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::normalize::StorageRules;
use crate::writer::StoredEvent;

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
///
/// A batch's arrival ([`WireBatch::arrived_at`]: a replayed spool record's
/// write time) is each event's arrival, never later than the write
/// ([`StoredEvent::arrived_at`]): a date too far ahead is clamped to the
/// same time however late, and however often, the record is replayed. A
/// fresh batch's arrival is the write.
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

    fn send_wire<'a>(&'a self, batch: &'a WireBatch) -> SinkFuture<'a, Result<(), SinkError>> {
        let activities = match batch.activities() {
            Ok(activities) => activities,
            Err(error) => return Box::pin(async move { Err(SinkError::Other(Box::new(error))) }),
        };
        let Some(arrived) = batch.arrived_at() else {
            return Box::pin(async move { self.send(&activities).await });
        };
        let arrived_at = arrived.min(Utc::now());
        let events: Vec<Arrived> = activities
            .into_iter()
            .map(|activity| Arrived {
                activity,
                arrived_at,
            })
            .collect();
        Box::pin(async move {
            crate::writer::write_batch_with_rules(&self.pool, &events, &self.rules)
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

/// An event of a batch that brings its arrival.
struct Arrived {
    activity: Activity,
    arrived_at: DateTime<Utc>,
}

impl StoredEvent for Arrived {
    fn activity(&self) -> &Activity {
        &self.activity
    }

    fn arrived_at(&self) -> Option<DateTime<Utc>> {
        Some(self.arrived_at)
    }
}

#[cfg(test)]
mod tests {
    use activity_tracker::ActivityType;
    use chrono::{Duration, SubsecRound, TimeZone};

    use super::*;

    async fn created_at(pool: &PgPool, id: uuid::Uuid) -> Vec<DateTime<Utc>> {
        sqlx::query_scalar("SELECT created_at FROM user_activity_logs WHERE id = $1")
            .bind(id)
            .fetch_all(pool)
            .await
            .unwrap()
    }

    fn far_ahead(days: i64) -> Activity {
        Activity::at(ActivityType::Login, Utc::now() + Duration::days(days)).user_id("u")
    }

    #[sqlx::test]
    async fn a_batchs_arrival_is_what_a_date_too_far_ahead_is_clamped_to(pool: PgPool) {
        let sink = PostgresSink::new(pool.clone());
        // Replayed twice, later each time: one row, clamped to the arrival.
        let event = far_ahead(5);
        let arrived = Utc.with_ymd_and_hms(2026, 5, 6, 7, 8, 9).unwrap();
        let mut batch = WireBatch::from(std::slice::from_ref(&event));
        batch.set_arrived_at(Some(arrived));
        sink.send_wire(&batch).await.unwrap();
        sink.send_wire(&batch).await.unwrap();
        assert_eq!(created_at(&pool, event.id).await, [arrived]);

        // An arrival ahead of the write counts as the write.
        let event = far_ahead(5);
        let mut batch = WireBatch::from(std::slice::from_ref(&event));
        batch.set_arrived_at(Some(Utc::now() + Duration::days(3)));
        // The table keeps microseconds.
        let before = Utc::now().trunc_subsecs(6);
        sink.send_wire(&batch).await.unwrap();
        let after = Utc::now();
        let stored = created_at(&pool, event.id).await;
        assert!(stored.len() == 1 && stored[0] >= before && stored[0] <= after);

        // A fresh batch arrives when it is written.
        let event = far_ahead(2);
        let before = Utc::now().trunc_subsecs(6);
        sink.send_wire(&WireBatch::from(std::slice::from_ref(&event)))
            .await
            .unwrap();
        let stored = created_at(&pool, event.id).await;
        assert!(stored.len() == 1 && stored[0] >= before && stored[0] <= Utc::now());
    }
}
