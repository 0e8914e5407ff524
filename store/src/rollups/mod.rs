//! Rollup maintenance: aggregate tables that let the admin API answer from
//! a few thousand rows instead of scanning months of activity, exact at
//! every commit.
//!
//! The tables are created by the store's migrations `0002_rollups.sql`
//! and `0004_rollup_pending.sql`, which explain each one. The work is split
//! in two, so that the writer's transaction stays cheap:
//!
//! - in the writer's transaction or statement, with the rows it actually
//!   inserted (duplicates excluded), the sums of [`sums`] (the one
//!   definition of each sum over raw rows): adds them to the per-hour and per-day
//!   activity counts, and appends their per-(day, user, action) counts to
//!   `activity_rollup_pending`, a table without indexes;
//! - [`fold_pending`] moves the pending counts into the per-user tables
//!   (activities per user and day, distinct users per day, last day each
//!   user and each user/action pair was seen, and their histograms). The
//!   processor folds on a timer; every query that reads a per-user table
//!   folds first, so it sees every committed batch. Folding many batches at
//!   once is also cheaper than applying them one by one: a user active in
//!   twenty batches costs one upsert instead of twenty.
//!
//! So the rollups (folded tables plus the pending counts) are exact after
//! every commit, and the per-user tables alone are exact after a fold.
//! Retention calls [`forget_before`] in the transaction that drops the old
//! partitions; [`rebuild_rollups`] recomputes them from the raw rows with
//! the same sums and the same fold.
//!
//! Several writers may run at once (several processors, the layer's
//! fallback): every upsert touches its rows in key order and the tables
//! always in the same order, so concurrent batches wait for each other
//! instead of deadlocking, and `n = t.n + excluded.n` never loses a count.
//! Folds run one at a time (a transaction-level advisory lock), since a fold
//! learns from the upserts it makes which users are new to a day.
//!
//! ```no_run
//! # async fn demo(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
//! use activity_store::{rollups, writer};
//! use activity_tracker::{Activity, ActivityType};
//!
//! // The writer adds what it stores to the rollups in its transaction.
//! writer::write_batch(&pool, &[Activity::new(ActivityType::Login).user_id("user-1")]).await?;
//! // Later, or before reading the per-user tables:
//! rollups::fold_pending(&pool).await?;
//! # Ok(()) }
//! ```

mod rebuild;
pub(crate) mod sums;
mod users;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

pub use rebuild::{RebuildOutcome, rebuild_rollups};
pub(crate) use users::move_user_locked;

/// The key of the transaction-level advisory lock that folds, retention and
/// rebuilds take so that they run one at a time.
pub const FOLD_LOCK_KEY: i64 = 0x6163_7469_7669_7479; // "activity"

/// Pending rows folded per transaction: bounds the time a fold holds its
/// locks and the database's memory for it.
const FOLD_CHUNK: i64 = 100_000;

/// Folds every pending count committed before the call into the per-user
/// tables; returns how many pending rows it folded.
///
/// Waits for a fold already running elsewhere, so once it returns, the
/// per-user tables hold every batch committed before the call: call it
/// before reading them. Counts committed while it runs are left for the
/// next fold.
pub async fn fold_pending(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let folded = fold(pool, true).await?;
    Ok(folded.unwrap_or(0))
}

/// [`fold_pending`] unless another fold is running (then `None`: that fold
/// does the work). For a background timer, which has no reason to wait.
pub async fn try_fold_pending(pool: &PgPool) -> Result<Option<u64>, sqlx::Error> {
    fold(pool, false).await
}

/// Folds chunk after chunk, each in its own transaction holding the fold
/// lock (waiting for it, or giving up when another fold holds it), until a
/// chunk comes short: what was committed before the call is then folded.
async fn fold(pool: &PgPool, wait: bool) -> Result<Option<u64>, sqlx::Error> {
    let mut folded = 0;
    loop {
        let mut tx = pool.begin().await?;
        let locked: bool = if wait {
            sqlx::query_scalar("SELECT pg_advisory_xact_lock($1) IS NOT NULL")
        } else {
            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        }
        .bind(FOLD_LOCK_KEY)
        .fetch_one(&mut *tx)
        .await?;
        if !locked {
            return Ok((folded > 0).then_some(folded));
        }
        let chunk = fold_chunk(&mut tx, None).await?;
        tx.commit().await?;
        folded += chunk;
        if chunk < FOLD_CHUNK as u64 {
            return Ok(Some(folded));
        }
    }
}

/// Folds every pending count, in the caller's transaction, which must hold
/// the [`FOLD_LOCK_KEY`] advisory lock and keep writers from adding pending
/// counts meanwhile (a rebuild's table locks), or this may never end.
pub async fn fold_all_locked(tx: &mut PgConnection) -> Result<u64, sqlx::Error> {
    let mut folded = 0;
    loop {
        let chunk = fold_chunk(tx, None).await?;
        folded += chunk;
        if chunk < FOLD_CHUNK as u64 {
            return Ok(folded);
        }
    }
}

/// Moves up to [`FOLD_CHUNK`] pending rows (of `only_user`, when given)
/// into the per-user tables, in the caller's transaction (which holds the
/// fold lock); returns how many.
///
/// One statement, all of it in the database: the pending rows it deletes
/// are summed per key and upserted into each per-user table. The upserts
/// of the (day, user) counts report which rows they created (users new to
/// that day, added to the day's distinct users); the upserts of the last
/// days seen report each move (from the day replaced), which moves one
/// count in the histograms. Keys already at their last day (most of a
/// fold) are skipped before the upsert, so those rows are not even locked.
/// Only folds (one at a time), retention and rebuilds (under the same
/// lock) write the per-user tables, so their upserts need no key order
/// against deadlocks; their keys are sorted by bytes (the "C" collation,
/// far cheaper to sort by) so that the index lookups walk the indexes in
/// order. The per-day row, which writers lock too, is taken in key order.
async fn fold_chunk(tx: &mut PgConnection, only_user: Option<&str>) -> Result<u64, sqlx::Error> {
    // Room for the chunk's sorts and aggregates in memory, not on disk.
    sqlx::query("SET LOCAL work_mem = '32MB'")
        .execute(&mut *tx)
        .await?;
    let folded: i64 = sqlx::query_scalar(
        "WITH moved AS (
             DELETE FROM activity_rollup_pending
             WHERE ctid = ANY(ARRAY(SELECT ctid FROM activity_rollup_pending
                                    WHERE $2::text IS NULL OR user_id = $2 LIMIT $1))
             RETURNING day, user_id, action, n
         ),
         user_daily AS (
             INSERT INTO activity_rollup_user_daily AS t (day, user_id, n)
             SELECT day, user_id, SUM(n) FROM moved GROUP BY 1, 2
             ORDER BY user_id COLLATE \"C\", day
             ON CONFLICT (day, user_id) DO UPDATE SET n = t.n + excluded.n
             RETURNING day, (xmax = 0) AS created
         ),
         daily AS (
             INSERT INTO activity_rollup_daily AS t (day, activities, users)
             SELECT day, 0, COUNT(*) FROM user_daily WHERE created GROUP BY 1 ORDER BY 1
             ON CONFLICT (day) DO UPDATE SET users = t.users + excluded.users
         ),
         user_last AS (
             INSERT INTO activity_rollup_user_last AS t (user_id, last_day)
             SELECT u.user_id, u.last_day
             FROM (SELECT user_id, MAX(day) AS last_day FROM moved GROUP BY 1
                   ORDER BY user_id COLLATE \"C\") u
             LEFT JOIN activity_rollup_user_last o ON o.user_id = u.user_id
             WHERE o.last_day IS NULL OR o.last_day < u.last_day
             ON CONFLICT (user_id) DO UPDATE
             SET prev_day = t.last_day, last_day = excluded.last_day
             WHERE excluded.last_day > t.last_day
             RETURNING (CASE WHEN xmax = 0 THEN NULL ELSE prev_day END) AS prev_day, last_day
         ),
         user_last_hist AS (
             INSERT INTO activity_rollup_user_last_hist AS t (last_day, n)
             SELECT day, SUM(delta) FROM (
                 SELECT last_day AS day, 1 AS delta FROM user_last
                 UNION ALL
                 SELECT prev_day, -1 FROM user_last WHERE prev_day IS NOT NULL
             ) moves
             GROUP BY 1 HAVING SUM(delta) <> 0
             ON CONFLICT (last_day) DO UPDATE SET n = t.n + excluded.n
         ),
         pair_last AS (
             INSERT INTO activity_rollup_user_action_last AS t (user_id, action, last_day)
             SELECT u.user_id, u.action, u.last_day
             FROM (SELECT user_id, action, MAX(day) AS last_day FROM moved GROUP BY 1, 2
                   ORDER BY user_id COLLATE \"C\", action COLLATE \"C\") u
             LEFT JOIN activity_rollup_user_action_last o
                    ON o.user_id = u.user_id AND o.action = u.action
             WHERE o.last_day IS NULL OR o.last_day < u.last_day
             ON CONFLICT (user_id, action) DO UPDATE
             SET prev_day = t.last_day, last_day = excluded.last_day
             WHERE excluded.last_day > t.last_day
             RETURNING action, (CASE WHEN xmax = 0 THEN NULL ELSE prev_day END) AS prev_day,
                       last_day
         ),
         action_last_hist AS (
             INSERT INTO activity_rollup_action_last_hist AS t (action, last_day, n)
             SELECT action, day, SUM(delta) FROM (
                 SELECT action, last_day AS day, 1 AS delta FROM pair_last
                 UNION ALL
                 SELECT action, prev_day, -1 FROM pair_last WHERE prev_day IS NOT NULL
             ) moves
             GROUP BY 1, 2 HAVING SUM(delta) <> 0
             ON CONFLICT (action, last_day) DO UPDATE SET n = t.n + excluded.n
         )
         SELECT COUNT(*) FROM moved",
    )
    .bind(FOLD_CHUNK)
    .bind(only_user)
    .fetch_one(&mut *tx)
    .await?;
    Ok(folded as u64)
}

/// Removes rollup buckets older than `cutoff`, in the transaction that drops
/// the raw partitions holding them (retention).
///
/// `cutoff` is meant to be a partition bound (midnight UTC): hours before
/// it and whole days before its date are forgotten, with every user (and
/// user/action pair) last seen before that date.
pub async fn forget_before(
    tx: &mut PgConnection,
    cutoff: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let day = cutoff.date_naive();
    // After any fold in progress, so that it cannot add back what this
    // removes.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(FOLD_LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM activity_rollup_pending WHERE day < $1")
        .bind(day)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM activity_rollup_hourly WHERE bucket < $1")
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM activity_rollup_user_daily WHERE day < $1")
        .bind(day)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM activity_rollup_daily WHERE day < $1")
        .bind(day)
        .execute(&mut *tx)
        .await?;
    // Locked in key order, like the writer does, so a writer moving one of
    // these users forward cannot deadlock with retention.
    sqlx::query(
        "DELETE FROM activity_rollup_user_last WHERE user_id IN (
             SELECT user_id FROM activity_rollup_user_last
             WHERE last_day < $1 ORDER BY user_id FOR UPDATE)
         AND last_day < $1",
    )
    .bind(day)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM activity_rollup_user_last_hist WHERE last_day < $1")
        .bind(day)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "DELETE FROM activity_rollup_user_action_last WHERE (user_id, action) IN (
             SELECT user_id, action FROM activity_rollup_user_action_last
             WHERE last_day < $1 ORDER BY user_id, action FOR UPDATE)
         AND last_day < $1",
    )
    .bind(day)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM activity_rollup_action_last_hist WHERE last_day < $1")
        .bind(day)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
