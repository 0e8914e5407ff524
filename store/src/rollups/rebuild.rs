//! `activity-processor rebuild-rollups [--since DATE]`: recomputes the
//! rollups from the raw rows, for rows that reached the table outside the
//! writer (a backfill from a table of the original design, a restore).
//!
//! It reads the raw rows back in chunks and adds them with the writer's own
//! sums ([`sums::add`]), then folds: the same definitions as every batch,
//! so a rebuilt figure is the figure the writer would have kept.

use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::sums::{self, utc_day};
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

/// Every rollup table: the per-hour counts before the per-day ones, as the
/// writer locks them, the pending counts last.
const ROLLUP_TABLES: &str = "activity_rollup_hourly, activity_rollup_user_daily, \
     activity_rollup_daily, activity_rollup_user_last, activity_rollup_user_last_hist, \
     activity_rollup_user_action_last, activity_rollup_action_last_hist, \
     activity_rollup_pending";

/// Raw rows read back per chunk: bounds the memory a rebuild holds.
const CHUNK_ROWS: usize = 50_000;

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
    let rows = add_raw_rows(tx, None).await?;
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

    let rows = add_raw_rows(tx, Some(since)).await?;
    fold_all_locked(tx).await?;
    last_days_of_the_others(tx).await?;
    Ok(rows)
}

/// Adds the raw rows (from `since` on, or all) to the rollups with the
/// writer's sums, a chunk at a time through a cursor; returns how many.
async fn add_raw_rows(
    tx: &mut PgConnection,
    since: Option<DateTime<Utc>>,
) -> Result<i64, sqlx::Error> {
    // The bound is written into the statement (a cursor's query takes no
    // parameters); it is a timestamp this function formats, not input.
    let filter = since
        .map(|at| format!(" WHERE created_at >= '{}'::timestamptz", at.to_rfc3339()))
        .unwrap_or_default();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DECLARE rebuild_rows NO SCROLL CURSOR FOR \
         SELECT user_id, action::text, created_at FROM user_activity_logs{filter}"
    )))
    .execute(&mut *tx)
    .await?;
    let mut total = 0;
    loop {
        let chunk: Vec<sums::OwnedRowKey> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "FETCH FORWARD {CHUNK_ROWS} FROM rebuild_rows"
        )))
        .fetch_all(&mut *tx)
        .await?;
        if chunk.is_empty() {
            break;
        }
        total += chunk.len() as i64;
        sums::add(tx, sums::keys_of(&chunk)).await?;
    }
    sqlx::query("CLOSE rebuild_rows").execute(&mut *tx).await?;
    Ok(total)
}

/// Users (and user/action pairs) set aside by [`rebuild_since`] that the
/// fold did not bring back (no rows from `since` on): their last day comes
/// from all their rows (a key lookup each; rare).
async fn last_days_of_the_others(tx: &mut PgConnection) -> Result<(), sqlx::Error> {
    let users: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT u.user_id, m.at FROM rebuild_touched_users u CROSS JOIN LATERAL (
             SELECT MAX(created_at) AS at FROM user_activity_logs l WHERE l.user_id = u.user_id
         ) m
         WHERE m.at IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM activity_rollup_user_last x WHERE x.user_id = u.user_id)",
    )
    .fetch_all(&mut *tx)
    .await?;
    let (ids, days): (Vec<String>, Vec<_>) =
        users.into_iter().map(|(id, at)| (id, utc_day(at))).unzip();
    sqlx::query(
        "INSERT INTO activity_rollup_user_last (user_id, last_day)
         SELECT * FROM UNNEST($1::text[], $2::date[])",
    )
    .bind(ids)
    .bind(days)
    .execute(&mut *tx)
    .await?;

    let pairs: Vec<(String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT p.user_id, p.action, m.at FROM rebuild_touched_pairs p CROSS JOIN LATERAL (
             SELECT MAX(created_at) AS at FROM user_activity_logs l
             WHERE l.user_id = p.user_id AND l.action = p.action
         ) m
         WHERE m.at IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM activity_rollup_user_action_last x
                           WHERE x.user_id = p.user_id AND x.action = p.action)",
    )
    .fetch_all(&mut *tx)
    .await?;
    let (mut ids, mut actions, mut days) = (Vec::new(), Vec::new(), Vec::new());
    for (id, action, at) in pairs {
        ids.push(id);
        actions.push(action);
        days.push(utc_day(at));
    }
    sqlx::query(
        "INSERT INTO activity_rollup_user_action_last (user_id, action, last_day)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::date[])",
    )
    .bind(ids)
    .bind(actions)
    .bind(days)
    .execute(&mut *tx)
    .await?;
    Ok(())
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
