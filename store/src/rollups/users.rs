//! One user's per-user rollups taken out (the user's rows were deleted) or
//! moved to another user id (their rows were pseudonymized): the erasure's
//! last step, under the fold's lock.

use chrono::NaiveDate;
use sqlx::{PgConnection, PgPool};

use super::{FOLD_CHUNK, FOLD_LOCK_KEY, fold_chunk};

/// What a user's per-user rollups held: their activities per UTC day, and
/// the last UTC day of each of their actions.
#[derive(Debug, Default)]
struct Forgotten {
    days: Vec<(NaiveDate, i64)>,
    actions: Vec<(String, NaiveDate)>,
}

/// Corrects the per-user rollups once `user`'s rows are gone (`to` is
/// `None`) or now belong to `to` (pseudonymized), in one transaction under
/// [`FOLD_LOCK_KEY`]; returns how many rollup rows it corrected.
///
/// The user's pending counts are folded first, so their per-user rows hold
/// every row of theirs; those rows are then removed, each table's derived
/// figure corrected (the day's distinct users, the histograms of last days
/// seen). For a move, what they held is added to `to` as pending counts
/// that the fold then merges like any others (the one definition of the
/// per-user tables): a day `to` already had counts one distinct user, not
/// two.
pub(crate) async fn move_user_locked(
    pool: &PgPool,
    user: &str,
    to: Option<&str>,
) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(FOLD_LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    fold_user(&mut tx, user).await?;
    let forgotten = forget(&mut tx, user).await?;
    let mut corrected = (forgotten.days.len() + forgotten.actions.len()) as u64;
    if let Some(to) = to {
        add_pending(&mut tx, to, &forgotten).await?;
        corrected += fold_user(&mut tx, to).await?;
    }
    tx.commit().await?;
    Ok(corrected)
}

/// Folds every pending count of `user`; returns how many.
async fn fold_user(tx: &mut PgConnection, user: &str) -> Result<u64, sqlx::Error> {
    let mut folded = 0;
    loop {
        let chunk = fold_chunk(tx, Some(user)).await?;
        folded += chunk;
        if chunk < FOLD_CHUNK as u64 {
            return Ok(folded);
        }
    }
}

/// Removes `user`'s per-user rows (their pending counts folded), with what
/// each counted in the per-day distinct users and the histograms.
async fn forget(tx: &mut PgConnection, user: &str) -> Result<Forgotten, sqlx::Error> {
    // The per-day rows, which writers lock too, in key order like theirs.
    let days: Vec<(NaiveDate, i64)> = sqlx::query_as(
        "WITH gone AS (
             DELETE FROM activity_rollup_user_daily WHERE user_id = $1 RETURNING day, n
         ),
         daily AS (
             INSERT INTO activity_rollup_daily AS t (day, activities, users)
             SELECT day, 0, -1 FROM gone ORDER BY 1
             ON CONFLICT (day) DO UPDATE SET users = t.users + excluded.users
         )
         SELECT day, n FROM gone",
    )
    .bind(user)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query(
        "WITH gone AS (
             DELETE FROM activity_rollup_user_last WHERE user_id = $1 RETURNING last_day
         )
         INSERT INTO activity_rollup_user_last_hist AS t (last_day, n)
         SELECT last_day, -1 FROM gone
         ON CONFLICT (last_day) DO UPDATE SET n = t.n + excluded.n",
    )
    .bind(user)
    .execute(&mut *tx)
    .await?;
    let actions: Vec<(String, NaiveDate)> = sqlx::query_as(
        "WITH gone AS (
             DELETE FROM activity_rollup_user_action_last WHERE user_id = $1
             RETURNING action::text, last_day
         ),
         hist AS (
             INSERT INTO activity_rollup_action_last_hist AS t (action, last_day, n)
             SELECT action, last_day, -1 FROM gone ORDER BY 1, 2
             ON CONFLICT (action, last_day) DO UPDATE SET n = t.n + excluded.n
         )
         SELECT action, last_day FROM gone",
    )
    .bind(user)
    .fetch_all(&mut *tx)
    .await?;
    Ok(Forgotten { days, actions })
}

/// Adds what `forgotten` held to `to` as pending counts that the fold turns
/// back into the same per-user rows: each day's count under the action
/// seen last (whose last day is the user's last day, so no later than any
/// of theirs), and a zero count on each action's last day (a day the user
/// has a count on), which sets that action's last day.
async fn add_pending(
    tx: &mut PgConnection,
    to: &str,
    forgotten: &Forgotten,
) -> Result<(), sqlx::Error> {
    let Some((latest, _)) = forgotten.actions.iter().max_by_key(|(_, day)| *day) else {
        return Ok(());
    };
    let rows = forgotten
        .days
        .iter()
        .map(|(day, n)| (*day, latest.as_str(), *n))
        .chain(
            forgotten
                .actions
                .iter()
                .map(|(action, day)| (*day, action.as_str(), 0)),
        );
    let (mut days, mut actions, mut counts) = (Vec::new(), Vec::new(), Vec::new());
    for (day, action, n) in rows {
        days.push(day);
        actions.push(action);
        counts.push(n);
    }
    sqlx::query(
        "INSERT INTO activity_rollup_pending (day, user_id, action, n)
         SELECT d, $1, a, n FROM UNNEST($2::date[], $3::text[], $4::int8[]) AS s(d, a, n)",
    )
    .bind(to)
    .bind(days)
    .bind(actions)
    .bind(counts)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
