//! `activity-processor rebuild-rollups [--since DATE]`: recomputes the
//! rollups from the raw rows, for rows that reached the table outside the
//! writer (a backfill from a table of the original design, a restore).

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use sqlx::PgPool;

use crate::rollups;

/// What a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RebuildOutcome {
    /// Raw rows aggregated (those at or after `since`).
    pub rows: i64,
    /// How long the transaction took.
    pub took: Duration,
}

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
    // as they do), and writers wait: the same table order as theirs
    // (rollups::apply), the pending counts last.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(rollups::FOLD_LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "LOCK TABLE activity_rollup_hourly, activity_rollup_user_daily, activity_rollup_daily,
                    activity_rollup_user_last, activity_rollup_user_last_hist,
                    activity_rollup_user_action_last, activity_rollup_action_last_hist,
                    activity_rollup_pending
         IN EXCLUSIVE MODE",
    )
    .execute(&mut *tx)
    .await?;
    // Room for the aggregates of a large table to stay in memory.
    sqlx::query("SET LOCAL work_mem = '256MB'")
        .execute(&mut *tx)
        .await?;
    let (since_day, since_ts): (NaiveDate, chrono::DateTime<chrono::Utc>) = match since {
        Some(d) => {
            // Pending counts from `since` on are recomputed below from the
            // raw rows; the older ones are folded as they are.
            sqlx::query("DELETE FROM activity_rollup_pending WHERE day >= $1")
                .bind(d)
                .execute(&mut *tx)
                .await?;
            rollups::fold_all_locked(&mut tx).await?;
            (d, d.and_time(chrono::NaiveTime::MIN).and_utc())
        }
        None => {
            full_rebuild(&mut tx).await?;
            let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*)::int8 FROM user_activity_logs")
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(RebuildOutcome {
                rows,
                took: started.elapsed(),
            });
        }
    };

    sqlx::query("DELETE FROM activity_rollup_hourly WHERE bucket >= $1")
        .bind(since_ts)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO activity_rollup_hourly (bucket, action, n)
         SELECT date_trunc('hour', created_at, 'UTC'), action, COUNT(*)
         FROM user_activity_logs WHERE created_at >= $1 GROUP BY 1, 2",
    )
    .bind(since_ts)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM activity_rollup_user_daily WHERE day >= $1")
        .bind(since_day)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO activity_rollup_user_daily (day, user_id, n)
         SELECT (created_at AT TIME ZONE 'UTC')::date, user_id, COUNT(*)
         FROM user_activity_logs WHERE created_at >= $1 AND user_id IS NOT NULL GROUP BY 1, 2",
    )
    .bind(since_ts)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM activity_rollup_daily WHERE day >= $1")
        .bind(since_day)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO activity_rollup_daily (day, activities, users)
         SELECT (created_at AT TIME ZONE 'UTC')::date, COUNT(*), COUNT(DISTINCT user_id)
         FROM user_activity_logs WHERE created_at >= $1 GROUP BY 1",
    )
    .bind(since_ts)
    .execute(&mut *tx)
    .await?;

    // Last day seen: users (and user/action pairs) with rows from `since`
    // on get their last day from those rows; those whose recorded last day
    // was from `since` on but have no such rows any more get it from all
    // their rows (a key lookup each; rare). Plain statements, not one with
    // a deleting CTE: an upsert must see the deletes.
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
    .bind(since_day)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO activity_rollup_user_last AS t (user_id, last_day)
         SELECT user_id, (MAX(created_at) AT TIME ZONE 'UTC')::date FROM user_activity_logs
         WHERE created_at >= $1 AND user_id IS NOT NULL GROUP BY user_id
         ON CONFLICT (user_id) DO UPDATE SET last_day = excluded.last_day, prev_day = NULL",
    )
    .bind(since_ts)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO activity_rollup_user_last (user_id, last_day)
         SELECT u.user_id, (m.at AT TIME ZONE 'UTC')::date
         FROM rebuild_touched_users u CROSS JOIN LATERAL (
             SELECT MAX(created_at) AS at FROM user_activity_logs l WHERE l.user_id = u.user_id
         ) m
         WHERE m.at IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM activity_rollup_user_last x WHERE x.user_id = u.user_id)",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "WITH d AS (DELETE FROM activity_rollup_user_action_last WHERE last_day >= $1
                    RETURNING user_id, action)
         INSERT INTO rebuild_touched_pairs SELECT user_id, action FROM d",
    )
    .bind(since_day)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO activity_rollup_user_action_last AS t (user_id, action, last_day)
         SELECT user_id, action, (MAX(created_at) AT TIME ZONE 'UTC')::date
         FROM user_activity_logs WHERE created_at >= $1 AND user_id IS NOT NULL
         GROUP BY user_id, action
         ON CONFLICT (user_id, action) DO UPDATE SET last_day = excluded.last_day, prev_day = NULL",
    )
    .bind(since_ts)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO activity_rollup_user_action_last (user_id, action, last_day)
         SELECT p.user_id, p.action, (m.at AT TIME ZONE 'UTC')::date
         FROM rebuild_touched_pairs p CROSS JOIN LATERAL (
             SELECT MAX(created_at) AS at FROM user_activity_logs l
             WHERE l.user_id = p.user_id AND l.action = p.action
         ) m
         WHERE m.at IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM activity_rollup_user_action_last x
                           WHERE x.user_id = p.user_id AND x.action = p.action)",
    )
    .execute(&mut *tx)
    .await?;
    rebuild_histograms(&mut tx).await?;
    let (rows,): (i64,) =
        sqlx::query_as("SELECT COUNT(*)::int8 FROM user_activity_logs WHERE created_at >= $1")
            .bind(since_ts)
            .fetch_one(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(RebuildOutcome {
        rows,
        took: started.elapsed(),
    })
}

/// Everything from scratch: one pass per table over the raw rows.
async fn full_rebuild(tx: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    for statement in [
        "TRUNCATE activity_rollup_hourly, activity_rollup_user_daily, activity_rollup_daily,
                  activity_rollup_user_last, activity_rollup_user_last_hist,
                  activity_rollup_user_action_last, activity_rollup_action_last_hist,
                  activity_rollup_pending",
        "INSERT INTO activity_rollup_hourly (bucket, action, n)
         SELECT date_trunc('hour', created_at, 'UTC'), action, COUNT(*)
         FROM user_activity_logs GROUP BY 1, 2",
        "INSERT INTO activity_rollup_user_daily (day, user_id, n)
         SELECT (created_at AT TIME ZONE 'UTC')::date, user_id, COUNT(*)
         FROM user_activity_logs WHERE user_id IS NOT NULL GROUP BY 1, 2",
        "INSERT INTO activity_rollup_daily (day, activities, users)
         SELECT (created_at AT TIME ZONE 'UTC')::date, COUNT(*), COUNT(DISTINCT user_id)
         FROM user_activity_logs GROUP BY 1",
        "INSERT INTO activity_rollup_user_last (user_id, last_day)
         SELECT user_id, MAX(day) FROM activity_rollup_user_daily GROUP BY 1",
        "INSERT INTO activity_rollup_user_action_last (user_id, action, last_day)
         SELECT user_id, action, (MAX(created_at) AT TIME ZONE 'UTC')::date
         FROM user_activity_logs WHERE user_id IS NOT NULL GROUP BY 1, 2",
    ] {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    rebuild_histograms(tx).await
}

/// The histograms are small: recomputed whole from the last-seen tables.
async fn rebuild_histograms(tx: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
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
