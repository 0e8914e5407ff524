//! `activity-processor rebuild-rollups [--since DATE]`: recomputes the
//! rollups from the raw rows, for rows that reached the table outside the
//! writer (a backfill from a table of the original design, a restore).
//!
//! It runs the writer's own rollup statement ([`add_to_rollups!`]) over the
//! raw rows, then the fold: the same definitions as every batch, so a
//! rebuilt figure is the figure the writer would have kept.

use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::sums::{add_to_rollups, utc_day, utc_hour};
use super::{FOLD_LOCK_KEY, fold_all_locked};

/// What a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RebuildOutcome {
    /// Raw rows aggregated (those at or after `since`).
    pub rows: i64,
    /// How long the transaction took.
    pub took: Duration,
}

/// Every rollup table, in the order the writer locks them, the pending
/// counts last.
const ROLLUP_TABLES: &str = "activity_rollup_hourly, activity_rollup_user_daily, \
     activity_rollup_daily, activity_rollup_user_last, activity_rollup_user_last_hist, \
     activity_rollup_user_action_last, activity_rollup_action_last_hist, \
     activity_rollup_pending";

/// Every raw row, added to the rollups.
const ADD_ALL_ROWS: &str =
    add_to_rollups!("SELECT user_id, action::text AS action, created_at FROM user_activity_logs");

/// The raw rows from `$1` on, added to the rollups.
const ADD_ROWS_SINCE: &str = add_to_rollups!(
    "SELECT user_id, action::text AS action, created_at FROM user_activity_logs \
     WHERE created_at >= $1"
);

/// Recomputes every rollup bucket from `since` (a UTC day; `None` = all
/// time) from the raw table, in one transaction.
///
/// The rollup tables are locked for the duration (writers' batches wait,
/// then add their rows on top), so the result is exact even while
/// processors run. Buckets before `since` are trusted as they are; the
/// last-day-seen tables are recomputed for every user touched from `since`
/// on, from all of that user's rows.
pub async fn rebuild_rollups(
    pool: &PgPool,
    since: Option<NaiveDate>,
) -> Result<RebuildOutcome, sqlx::Error> {
    let started = Instant::now();
    let mut tx = pool.begin().await?;
    // No fold runs meanwhile (the lock folds take, before any table lock,
    // as they do), and writers wait.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(FOLD_LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "LOCK TABLE {ROLLUP_TABLES} IN EXCLUSIVE MODE"
    )))
    .execute(&mut *tx)
    .await?;
    // Room for the aggregates of a large table to stay in memory.
    sqlx::query("SET LOCAL work_mem = '256MB'")
        .execute(&mut *tx)
        .await?;
    let rows = match since {
        None => rebuild_all(&mut tx).await?,
        Some(day) => rebuild_since(&mut tx, day).await?,
    };
    rebuild_histograms(&mut tx).await?;
    tx.commit().await?;
    Ok(RebuildOutcome {
        rows,
        took: started.elapsed(),
    })
}

/// Everything from scratch; returns the rows aggregated.
async fn rebuild_all(tx: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!("TRUNCATE {ROLLUP_TABLES}")))
        .execute(&mut *tx)
        .await?;
    let rows: i64 = sqlx::query_scalar(ADD_ALL_ROWS).fetch_one(&mut *tx).await?;
    fold_all_locked(tx).await?;
    Ok(rows)
}

/// The buckets from `day` on; returns the rows aggregated.
async fn rebuild_since(tx: &mut PgConnection, day: NaiveDate) -> Result<i64, sqlx::Error> {
    let since: DateTime<Utc> = day.and_time(NaiveTime::MIN).and_utc();
    // Pending counts from `day` on are recomputed below from the raw rows;
    // the older ones are folded as they are.
    sqlx::query("DELETE FROM activity_rollup_pending WHERE day >= $1")
        .bind(day)
        .execute(&mut *tx)
        .await?;
    fold_all_locked(tx).await?;
    sqlx::query("DELETE FROM activity_rollup_hourly WHERE bucket >= $1")
        .bind(since)
        .execute(&mut *tx)
        .await?;
    for table in ["activity_rollup_user_daily", "activity_rollup_daily"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE day >= $1"
        )))
        .bind(day)
        .execute(&mut *tx)
        .await?;
    }
    // Users (and user/action pairs) last seen from `day` on are forgotten
    // and kept aside: the fold below brings back those with rows from `day`
    // on; the others get their last day from all their rows.
    for statement in [
        "CREATE TEMPORARY TABLE rebuild_touched_users (user_id TEXT) ON COMMIT DROP",
        "CREATE TEMPORARY TABLE rebuild_touched_pairs (user_id TEXT, action TEXT) ON COMMIT DROP",
    ] {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    sqlx::query(
        "WITH d AS (DELETE FROM activity_rollup_user_last WHERE last_day >= $1 RETURNING user_id)
         INSERT INTO rebuild_touched_users SELECT user_id FROM d",
    )
    .bind(day)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "WITH d AS (DELETE FROM activity_rollup_user_action_last WHERE last_day >= $1
                    RETURNING user_id, action)
         INSERT INTO rebuild_touched_pairs SELECT user_id, action FROM d",
    )
    .bind(day)
    .execute(&mut *tx)
    .await?;

    let rows: i64 = sqlx::query_scalar(ADD_ROWS_SINCE)
        .bind(since)
        .fetch_one(&mut *tx)
        .await?;
    fold_all_locked(tx).await?;

    // Plain statements, not one with a deleting CTE: they must see the
    // fold's upserts.
    sqlx::query(concat!(
        "INSERT INTO activity_rollup_user_last (user_id, last_day)
         SELECT u.user_id, ",
        utc_day!(),
        " FROM rebuild_touched_users u CROSS JOIN LATERAL (
             SELECT MAX(created_at) AS created_at FROM user_activity_logs l
             WHERE l.user_id = u.user_id
         ) m
         WHERE m.created_at IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM activity_rollup_user_last x WHERE x.user_id = u.user_id)"
    ))
    .execute(&mut *tx)
    .await?;
    sqlx::query(concat!(
        "INSERT INTO activity_rollup_user_action_last (user_id, action, last_day)
         SELECT p.user_id, p.action, ",
        utc_day!(),
        " FROM rebuild_touched_pairs p CROSS JOIN LATERAL (
             SELECT MAX(created_at) AS created_at FROM user_activity_logs l
             WHERE l.user_id = p.user_id AND l.action = p.action
         ) m
         WHERE m.created_at IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM activity_rollup_user_action_last x
                           WHERE x.user_id = p.user_id AND x.action = p.action)"
    ))
    .execute(&mut *tx)
    .await?;
    Ok(rows)
}

/// The histograms count the last-seen tables' rows by day: recomputed
/// whole from them (they are small), since the last-seen rows set aside
/// above moved outside the fold.
async fn rebuild_histograms(tx: &mut PgConnection) -> Result<(), sqlx::Error> {
    for statement in [
        "DELETE FROM activity_rollup_user_last_hist",
        "INSERT INTO activity_rollup_user_last_hist (last_day, n)
         SELECT last_day, COUNT(*) FROM activity_rollup_user_last GROUP BY 1",
        "DELETE FROM activity_rollup_action_last_hist",
        "INSERT INTO activity_rollup_action_last_hist (action, last_day, n)
         SELECT action, last_day, COUNT(*) FROM activity_rollup_user_action_last GROUP BY 1, 2",
    ] {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    Ok(())
}
