//! The schema of `user_activity_logs`: the embedded migrations, the monthly
//! partitions made ahead of time, and retention by dropping whole partitions.
//!
//! `serve` calls [`migrate`] and [`ensure_partitions`] at start-up and then
//! [`ensure_partitions`] and [`drop_expired_partitions`] on a timer; the
//! `migrate` subcommand calls [`migrate`] and [`ensure_partitions`].
//!
//! ```no_run
//! # async fn example(pool: sqlx::PgPool) -> Result<(), activity_store::schema::SchemaError> {
//! use activity_store::schema;
//! use chrono::Utc;
//!
//! schema::migrate(&pool).await?;
//! // This month's partition and the next two.
//! let created = schema::ensure_partitions(&pool, Utc::now(), 2).await?;
//! // Keep 90 days: drop the monthly partitions entirely older than that.
//! let dropped = schema::drop_expired_partitions(&pool, Utc::now(), 90).await?;
//! # let _ = (created, dropped);
//! # Ok(())
//! # }
//! ```
//!
//! Partitions are named `user_activity_logs_pYYYY_MM` and cover one calendar
//! month in UTC, `[first day 00:00 UTC, first day of next month 00:00 UTC)`.
//! Rows whose month has no partition yet land in `user_activity_logs_default`;
//! [`ensure_partitions`] moves them into their partition when it creates it.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use sqlx::{AssertSqlSafe, PgPool, Postgres, Transaction};

/// The parent (partitioned) table.
pub const TABLE: &str = "user_activity_logs";

/// The default partition, which holds rows of months without a partition.
pub const DEFAULT_PARTITION: &str = "user_activity_logs_default";

/// Advisory lock key held (per transaction) while partitions are created,
/// filled or dropped, so several processors starting together take turns.
/// The bytes spell "uactpart".
const PARTITION_LOCK_KEY: i64 = 0x7561_6374_7061_7274;

/// The embedded migrations of `store/migrations`, for [`migrate`] and for
/// `#[sqlx::test(migrator = "activity_store::MIGRATOR")]`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// Why a schema operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// Applying the embedded migrations failed (for example a migration
    /// already applied was changed: the checksums differ).
    #[error("applying the database migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database answered with an error or could not be reached.
    #[error("database error while maintaining partitions: {0}")]
    Database(#[from] sqlx::Error),
    /// A date computation left chrono's range (a `now` or retention far
    /// outside any real calendar).
    #[error("date out of range: {0}")]
    DateOutOfRange(String),
}

/// Applies the embedded migrations (creates `user_activity_logs`, its
/// default partition and its indexes, and whatever later migrations add).
///
/// Idempotent: migrations already applied are skipped, so running it twice,
/// or from several processors at once (sqlx serializes them with an advisory
/// lock), is harmless. It does not create the monthly partitions: call
/// [`ensure_partitions`] after it.
pub async fn migrate(pool: &PgPool) -> Result<(), SchemaError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// One month's partition: its name and its `[from, to)` range.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Month {
    year: i32,
    month: u32,
}

impl Month {
    fn containing(at: DateTime<Utc>) -> Self {
        Month {
            year: at.year(),
            month: at.month(),
        }
    }

    fn next(&self) -> Self {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    fn start(&self) -> Result<DateTime<Utc>, SchemaError> {
        NaiveDate::from_ymd_opt(self.year, self.month, 1)
            .and_then(|date| date.and_hms_opt(0, 0, 0))
            .map(|naive| Utc.from_utc_datetime(&naive))
            .ok_or_else(|| SchemaError::DateOutOfRange(format!("{}-{:02}", self.year, self.month)))
    }

    fn end(&self) -> Result<DateTime<Utc>, SchemaError> {
        self.next().start()
    }

    fn partition_name(&self) -> String {
        format!("{TABLE}_p{:04}_{:02}", self.year, self.month)
    }

    /// Reads a partition name made by [`Month::partition_name`].
    fn from_partition_name(name: &str) -> Option<Self> {
        let rest = name.strip_prefix(TABLE)?.strip_prefix("_p")?;
        let (year, month) = rest.split_once('_')?;
        if year.len() != 4 || month.len() != 2 {
            return None;
        }
        let year = year.parse().ok()?;
        let month = month.parse().ok()?;
        (1..=12).contains(&month).then_some(Month { year, month })
    }
}

/// Creates the monthly partitions for the month of `now` and the
/// `months_ahead` following months, those that do not exist yet; returns
/// the names of the partitions it created (empty when all existed).
///
/// Rows already sitting in the default partition for a month being created
/// (written while its partition was missing) are moved into the new
/// partition in the same transaction: PostgreSQL would otherwise refuse to
/// create it. The whole operation holds a transaction-scoped advisory lock,
/// so several processors starting together do not race. Call it after
/// [`migrate`], at start-up and then periodically (daily is plenty, with
/// `months_ahead` ≥ 1, so next month's partition always exists before it
/// starts).
pub async fn ensure_partitions(
    pool: &PgPool,
    now: DateTime<Utc>,
    months_ahead: u32,
) -> Result<Vec<String>, SchemaError> {
    let mut tx = pool.begin().await?;
    lock_partitions(&mut tx).await?;

    let mut created = Vec::new();
    let mut month = Month::containing(now);
    for _ in 0..=months_ahead {
        let name = month.partition_name();
        if !table_exists(&mut tx, &name).await? {
            create_partition(&mut tx, &month).await?;
            created.push(name);
        }
        month = month.next();
    }
    tx.commit().await?;
    for name in &created {
        tracing::info!(partition = %name, "created partition");
    }
    Ok(created)
}

/// Drops the monthly partitions whose whole range is older than
/// `now - retention_days` days; returns the names of the partitions dropped
/// (empty when none expired). `retention_days == 0` means keep forever: it
/// drops nothing.
///
/// A partition is dropped only when its last instant is before the cutoff,
/// so no row younger than the retention is ever removed; rows are never
/// deleted one by one, and the default partition is never dropped: its
/// rows of expired months (strays of months that had no partition) are
/// deleted instead, by one statement on its index. In the
/// same transaction, the rollups forget their buckets before the start of
/// the oldest month that remains (`rollups::forget_before`), so rollups and
/// raw rows cover the same period.
pub async fn drop_expired_partitions(
    pool: &PgPool,
    now: DateTime<Utc>,
    retention_days: u32,
) -> Result<Vec<String>, SchemaError> {
    if retention_days == 0 {
        return Ok(Vec::new());
    }
    let cutoff = now
        .checked_sub_signed(Duration::days(i64::from(retention_days)))
        .ok_or_else(|| SchemaError::DateOutOfRange(format!("{now} - {retention_days} days")))?;

    let mut tx = pool.begin().await?;
    lock_partitions(&mut tx).await?;

    let partitions = partitions(&mut *tx).await?;

    let mut expired: Vec<(String, DateTime<Utc>)> = Vec::new();
    for name in partitions {
        // Only our monthly partitions, by name: never the default one, nor a
        // partition someone attached by hand with other bounds.
        if let Some(month) = Month::from_partition_name(&name) {
            let end = month.end()?;
            if end <= cutoff {
                expired.push((name, end));
            }
        }
    }
    expired.sort();

    for (name, _) in &expired {
        sqlx::query(AssertSqlSafe(format!(
            "DROP TABLE IF EXISTS {}",
            quote_ident(name)
        )))
        .execute(&mut *tx)
        .await?;
    }
    // Strays of the default partition (rows of months that had no
    // partition) expire like a partition would: a whole month before the
    // cutoff's month. Rows dated ahead of every partition are left (the
    // writer no longer stores an event more than a day ahead of its
    // arrival; older ones are counted in the log).
    let boundary = Month::containing(cutoff).start()?;
    let strays = sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM {} WHERE created_at < $1",
        quote_ident(DEFAULT_PARTITION)
    )))
    .bind(boundary)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if !expired.is_empty() || strays > 0 {
        // Every partition before the boundary is dropped and every stray
        // before it deleted: the rollups forget the same period.
        crate::rollups::forget_before(&mut tx, boundary).await?;
    }
    // Alerts (and their deliveries, by cascade) go with their events.
    let alerts = crate::alerts::forget_before(&mut tx, cutoff).await?;
    tx.commit().await?;
    if alerts > 0 {
        tracing::info!(alerts, retention_days, "deleted expired alerts");
    }
    if strays > 0 {
        tracing::info!(
            rows = strays,
            retention_days,
            "deleted expired rows of the default partition"
        );
    }

    let dropped: Vec<String> = expired.into_iter().map(|(name, _)| name).collect();
    for name in &dropped {
        tracing::info!(partition = %name, retention_days, "dropped expired partition");
    }
    Ok(dropped)
}

/// The names of every partition of the table, the default one included,
/// in name order (the monthly ones oldest first).
pub(crate) async fn partitions<'e>(
    executor: impl sqlx::PgExecutor<'e>,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i \
         JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'user_activity_logs'::regclass ORDER BY 1",
    )
    .fetch_all(executor)
    .await
}

/// Serializes partition maintenance across processors until the
/// transaction ends.
async fn lock_partitions(tx: &mut Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PARTITION_LOCK_KEY)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn table_exists(tx: &mut Transaction<'_, Postgres>, name: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT to_regclass(quote_ident($1)) IS NOT NULL")
        .bind(name)
        .fetch_one(&mut **tx)
        .await
}

/// Creates `month`'s partition, first taking out of the default partition
/// the rows that belong to it (PostgreSQL refuses to create a partition
/// whose range the default partition holds rows of), then putting them back
/// through the parent, which routes them into the new partition.
async fn create_partition(
    tx: &mut Transaction<'_, Postgres>,
    month: &Month,
) -> Result<(), SchemaError> {
    let (start, end) = (month.start()?, month.end()?);
    let moving: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM user_activity_logs_default \
         WHERE created_at >= $1 AND created_at < $2",
    )
    .bind(start)
    .bind(end)
    .fetch_one(&mut **tx)
    .await?;

    if moving > 0 {
        sqlx::query(
            "CREATE TEMPORARY TABLE user_activity_logs_moving ON COMMIT DROP AS \
             WITH moved AS ( \
                 DELETE FROM user_activity_logs_default \
                 WHERE created_at >= $1 AND created_at < $2 RETURNING * \
             ) SELECT * FROM moved",
        )
        .bind(start)
        .bind(end)
        .execute(&mut **tx)
        .await?;
    }

    // Bounds are literals in DDL (no parameters there); they are made here
    // from integers, never from outside input.
    let create = format!(
        "CREATE TABLE {name} PARTITION OF {TABLE} FOR VALUES FROM ('{from}') TO ('{to}')",
        name = quote_ident(&month.partition_name()),
        from = start.format("%Y-%m-%d %H:%M:%S+00"),
        to = end.format("%Y-%m-%d %H:%M:%S+00"),
    );
    sqlx::query(AssertSqlSafe(create))
        .execute(&mut **tx)
        .await?;

    if moving > 0 {
        // The rows reached the alert inbox when first stored: the trigger
        // skips this re-insert (migration 0008), and only this one.
        sqlx::query("SELECT set_config('activity.partition_move', 'on', true)")
            .execute(&mut **tx)
            .await?;
        sqlx::query("INSERT INTO user_activity_logs SELECT * FROM user_activity_logs_moving")
            .execute(&mut **tx)
            .await?;
        sqlx::query("SELECT set_config('activity.partition_move', 'off', true)")
            .execute(&mut **tx)
            .await?;
        sqlx::query("DROP TABLE user_activity_logs_moving")
            .execute(&mut **tx)
            .await?;
        tracing::info!(
            partition = %month.partition_name(),
            rows = moving,
            "moved rows from the default partition into their new partition"
        );
    }
    Ok(())
}

/// Double-quotes an identifier (names here are made by this module, but
/// quoting keeps that from mattering).
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_names_and_ranges() {
        let at = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).unwrap();
        let month = Month::containing(at);
        assert_eq!(month.partition_name(), "user_activity_logs_p2026_12");
        assert_eq!(
            month.start().unwrap(),
            Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            month.end().unwrap(),
            Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(month.next().partition_name(), "user_activity_logs_p2027_01");
        assert_eq!(
            Month::from_partition_name("user_activity_logs_p2027_01"),
            Some(month.next())
        );
        assert_eq!(
            Month::from_partition_name("user_activity_logs_default"),
            None
        );
        assert_eq!(
            Month::from_partition_name("user_activity_logs_p2027_13"),
            None
        );
        assert_eq!(
            Month::from_partition_name("user_activity_logs_p2027_1"),
            None
        );
    }
}
