//! Rollup maintenance: aggregate tables kept exact in the same transaction
//! as each batch insert, so the admin API answers from a few thousand rows
//! instead of scanning months of activity.
//!
//! The tables are created by the processor's migration `0002_rollups.sql`,
//! which explains each one. The writer calls [`apply`] with the rows it
//! actually inserted (duplicates excluded) inside its transaction; retention
//! calls [`forget_before`] in the transaction that drops the old partitions.
//!
//! Several writers may run at once (several processors, the layer's
//! fallback): every upsert touches its rows in key order and the tables
//! always in the same order, so concurrent batches wait for each other
//! instead of deadlocking, and `n = t.n + excluded.n` never loses a count.
//!
//! ```no_run
//! # async fn demo(pool: sqlx::PgPool) -> Result<(), sqlx::Error> {
//! use activity_tracker::postgres::rollups::{self, InsertedRow};
//!
//! let mut tx = pool.begin().await?;
//! // ... insert the raw rows, keep the ones that were new ...
//! let inserted = vec![InsertedRow {
//!     user_id: Some("user-1".into()),
//!     action: "login".into(),
//!     created_at: chrono::Utc::now(),
//! }];
//! rollups::apply(&mut tx, &inserted).await?;
//! tx.commit().await?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, NaiveDate, TimeDelta, Utc};
use sqlx::PgConnection;

/// One row the writer actually inserted (duplicates excluded), as the
/// rollups need it.
#[derive(Debug, Clone)]
pub struct InsertedRow {
    /// The app's user id, if any.
    pub user_id: Option<String>,
    /// The action name.
    pub action: String,
    /// When it happened.
    pub created_at: DateTime<Utc>,
}

/// The UTC hour holding `at`.
fn hour_of(at: DateTime<Utc>) -> DateTime<Utc> {
    // Truncating a UTC instant to a whole hour cannot overflow.
    at.duration_trunc(TimeDelta::hours(1))
        .expect("truncating to an hour cannot overflow")
}

/// Sums of one batch, keyed like the rollup tables.
#[derive(Debug, Default)]
struct Deltas {
    hourly: BTreeMap<(DateTime<Utc>, String), i64>,
    daily: BTreeMap<NaiveDate, i64>,
    user_daily: BTreeMap<(NaiveDate, String), i64>,
    user_last: BTreeMap<String, NaiveDate>,
    user_action_last: BTreeMap<(String, String), NaiveDate>,
}

impl Deltas {
    fn of(rows: &[InsertedRow]) -> Self {
        let mut d = Self::default();
        for row in rows {
            let day = row.created_at.date_naive();
            *d.hourly
                .entry((hour_of(row.created_at), row.action.clone()))
                .or_default() += 1;
            *d.daily.entry(day).or_default() += 1;
            if let Some(user) = &row.user_id {
                *d.user_daily.entry((day, user.clone())).or_default() += 1;
                let last = d.user_last.entry(user.clone()).or_insert(day);
                *last = (*last).max(day);
                let last = d
                    .user_action_last
                    .entry((user.clone(), row.action.clone()))
                    .or_insert(day);
                *last = (*last).max(day);
            }
        }
        d
    }
}

/// Adds the rows just inserted to the rollups, inside the writer's transaction.
///
/// `inserted` must hold only rows that this transaction newly stored (not
/// the duplicates skipped by `ON CONFLICT DO NOTHING`), or the rollups count
/// them twice.
pub async fn apply(tx: &mut PgConnection, inserted: &[InsertedRow]) -> Result<(), sqlx::Error> {
    if inserted.is_empty() {
        return Ok(());
    }
    let d = Deltas::of(inserted);

    // The statements below always run in this table order, each touching
    // its rows sorted by key (ORDER BY in SQL, so every writer uses the
    // database's collation): concurrent writers queue, never deadlock.
    let (buckets, actions, counts): (Vec<_>, Vec<_>, Vec<_>) =
        d.hourly.into_iter().map(|((b, a), n)| (b, a, n)).collect();
    sqlx::query(
        "INSERT INTO activity_rollup_hourly AS t (bucket, action, n)
         SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::int8[]) ORDER BY 1, 2
         ON CONFLICT (bucket, action) DO UPDATE SET n = t.n + excluded.n",
    )
    .bind(buckets)
    .bind(actions)
    .bind(counts)
    .execute(&mut *tx)
    .await?;

    // (day, user) rows; the ones created now are users new to that day.
    let mut new_users: BTreeMap<NaiveDate, i64> = BTreeMap::new();
    if !d.user_daily.is_empty() {
        let (days, users, counts): (Vec<_>, Vec<_>, Vec<_>) = d
            .user_daily
            .into_iter()
            .map(|((day, u), n)| (day, u, n))
            .collect();
        let created: Vec<(NaiveDate, bool)> = sqlx::query_as(
            "INSERT INTO activity_rollup_user_daily AS t (day, user_id, n)
             SELECT * FROM UNNEST($1::date[], $2::text[], $3::int8[]) ORDER BY 1, 2
             ON CONFLICT (day, user_id) DO UPDATE SET n = t.n + excluded.n
             RETURNING day, (xmax = 0) AS created",
        )
        .bind(days)
        .bind(users)
        .bind(counts)
        .fetch_all(&mut *tx)
        .await?;
        for (day, is_new) in created {
            if is_new {
                *new_users.entry(day).or_default() += 1;
            }
        }
    }

    let (days, activities, users): (Vec<_>, Vec<_>, Vec<_>) = d
        .daily
        .into_iter()
        .map(|(day, n)| (day, n, new_users.get(&day).copied().unwrap_or(0)))
        .collect();
    sqlx::query(
        "INSERT INTO activity_rollup_daily AS t (day, activities, users)
         SELECT * FROM UNNEST($1::date[], $2::int8[], $3::int8[]) ORDER BY 1
         ON CONFLICT (day) DO UPDATE
         SET activities = t.activities + excluded.activities, users = t.users + excluded.users",
    )
    .bind(days)
    .bind(activities)
    .bind(users)
    .execute(&mut *tx)
    .await?;

    if d.user_last.is_empty() {
        return Ok(());
    }

    // Last day seen per user; each move of a user's last day moves one
    // count in the histogram. Users already seen on that day (most of a
    // batch) are skipped before the upsert, so their rows are not even
    // locked: a last day only moves forward, so a skip seen in this
    // statement's snapshot stays right; a move racing with another writer
    // is settled by the upsert's row lock and its WHERE.
    let (users, days): (Vec<_>, Vec<_>) = d.user_last.into_iter().unzip();
    let moved: Vec<(Option<NaiveDate>, NaiveDate)> = sqlx::query_as(
        "INSERT INTO activity_rollup_user_last AS t (user_id, last_day)
         SELECT u.user_id, u.last_day FROM UNNEST($1::text[], $2::date[]) AS u(user_id, last_day)
         LEFT JOIN activity_rollup_user_last o ON o.user_id = u.user_id
         WHERE o.last_day IS NULL OR o.last_day < u.last_day
         ORDER BY 1
         ON CONFLICT (user_id) DO UPDATE SET prev_day = t.last_day, last_day = excluded.last_day
         WHERE excluded.last_day > t.last_day
         RETURNING (CASE WHEN xmax = 0 THEN NULL ELSE prev_day END), last_day",
    )
    .bind(users)
    .bind(days)
    .fetch_all(&mut *tx)
    .await?;
    let mut hist: BTreeMap<NaiveDate, i64> = BTreeMap::new();
    for (prev, last) in moved {
        *hist.entry(last).or_default() += 1;
        if let Some(prev) = prev {
            *hist.entry(prev).or_default() -= 1;
        }
    }
    hist.retain(|_, n| *n != 0);
    if !hist.is_empty() {
        let (days, deltas): (Vec<_>, Vec<_>) = hist.into_iter().unzip();
        sqlx::query(
            "INSERT INTO activity_rollup_user_last_hist AS t (last_day, n)
             SELECT * FROM UNNEST($1::date[], $2::int8[]) ORDER BY 1
             ON CONFLICT (last_day) DO UPDATE SET n = t.n + excluded.n",
        )
        .bind(days)
        .bind(deltas)
        .execute(&mut *tx)
        .await?;
    }

    // The same for each (user, action) pair.
    let (users, actions, days): (Vec<_>, Vec<_>, Vec<_>) = d
        .user_action_last
        .into_iter()
        .map(|((u, a), day)| (u, a, day))
        .collect();
    let moved: Vec<(String, Option<NaiveDate>, NaiveDate)> = sqlx::query_as(
        "INSERT INTO activity_rollup_user_action_last AS t (user_id, action, last_day)
         SELECT u.user_id, u.action, u.last_day
         FROM UNNEST($1::text[], $2::text[], $3::date[]) AS u(user_id, action, last_day)
         LEFT JOIN activity_rollup_user_action_last o
                ON o.user_id = u.user_id AND o.action = u.action
         WHERE o.last_day IS NULL OR o.last_day < u.last_day
         ORDER BY 1, 2
         ON CONFLICT (user_id, action) DO UPDATE
         SET prev_day = t.last_day, last_day = excluded.last_day
         WHERE excluded.last_day > t.last_day
         RETURNING action::text, (CASE WHEN xmax = 0 THEN NULL ELSE prev_day END), last_day",
    )
    .bind(users)
    .bind(actions)
    .bind(days)
    .fetch_all(&mut *tx)
    .await?;
    let mut hist: BTreeMap<(String, NaiveDate), i64> = BTreeMap::new();
    for (action, prev, last) in moved {
        if let Some(prev) = prev {
            *hist.entry((action.clone(), prev)).or_default() -= 1;
        }
        *hist.entry((action, last)).or_default() += 1;
    }
    hist.retain(|_, n| *n != 0);
    if !hist.is_empty() {
        let (actions, days, deltas): (Vec<_>, Vec<_>, Vec<_>) =
            hist.into_iter().map(|((a, day), n)| (a, day, n)).collect();
        sqlx::query(
            "INSERT INTO activity_rollup_action_last_hist AS t (action, last_day, n)
             SELECT * FROM UNNEST($1::text[], $2::date[], $3::int8[]) ORDER BY 1, 2
             ON CONFLICT (action, last_day) DO UPDATE SET n = t.n + excluded.n",
        )
        .bind(actions)
        .bind(days)
        .bind(deltas)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_sum_per_key_and_keep_the_latest_day() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let row = |u: Option<&str>, a: &str, t: &str| InsertedRow {
            user_id: u.map(str::to_owned),
            action: a.into(),
            created_at: at(t),
        };
        let d = Deltas::of(&[
            row(Some("u1"), "login", "2026-01-02T10:15:00Z"),
            row(Some("u1"), "login", "2026-01-02T10:45:00Z"),
            row(Some("u1"), "login", "2026-01-01T09:00:00Z"),
            row(None, "login", "2026-01-02T10:01:00Z"),
        ]);
        assert_eq!(d.hourly[&(at("2026-01-02T10:00:00Z"), "login".into())], 3);
        assert_eq!(d.daily[&"2026-01-02".parse().unwrap()], 3);
        assert_eq!(d.user_daily.len(), 2);
        assert_eq!(
            d.user_last["u1"],
            "2026-01-02".parse::<NaiveDate>().unwrap()
        );
        assert_eq!(d.user_action_last.len(), 1);
    }
}
