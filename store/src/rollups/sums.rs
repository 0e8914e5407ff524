//! The one definition of each rollup sum over raw rows: [`BatchSums::of`].
//!
//! Every path that adds rows to the rollups goes through it: each insert
//! method of the writer (over the rows it inserted, duplicates excluded)
//! and `rebuild-rollups` (over the raw rows of the days it rebuilds, read
//! back in chunks). The database only adds the sums it is given
//! ([`apply_sums_ctes!`]); it computes none. The per-user tables are then
//! filled from the pending counts by the fold, the one definition of those
//! (`fold_chunk` in this module's parent). So a figure cannot depend on the
//! batch size or on the path a row took.
//!
//! Computed here rather than in SQL because a drain's batches go in with
//! `COPY`, which returns no rows to sum in the database: summing in the
//! writer costs the database nothing, and the database is what a drain
//! waits for (docs/benchmarks.md).

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Timelike, Utc};
use foldhash::fast::RandomState;
use sqlx::PgConnection;

/// One stored row as the rollups read it: user, action, time.
pub(crate) type RowKey<'a> = (Option<&'a str>, &'a str, DateTime<Utc>);

/// The same read back from the database (`user_id, action::text,
/// created_at`): what an `INSERT ... RETURNING` or the rebuild's cursor
/// gives.
pub(crate) type OwnedRowKey = (Option<String>, String, DateTime<Utc>);

/// The keys of rows read back.
pub(crate) fn keys_of(rows: &[OwnedRowKey]) -> impl Iterator<Item = RowKey<'_>> {
    rows.iter()
        .map(|(user, action, at)| (user.as_deref(), action.as_str(), *at))
}

/// The UTC hour holding `at`: the key of `activity_rollup_hourly`.
pub(crate) fn utc_hour(at: DateTime<Utc>) -> DateTime<Utc> {
    // From the calendar fields, not `duration_trunc`, which counts
    // nanoseconds since 1970 and fails past the year 2262: a row the
    // database refuses for its date must still reach the database to be
    // refused and isolated.
    utc_day(at)
        .and_hms_opt(at.hour(), 0, 0)
        .expect("the hour of a valid time is a valid time")
        .and_utc()
}

/// The UTC day holding `at`: the key of every per-day rollup.
pub(crate) fn utc_day(at: DateTime<Utc>) -> NaiveDate {
    at.date_naive()
}

/// The sums of some rows: activities per (UTC hour, action), per UTC day,
/// and per (UTC day, user, action) for the rows with a user. Hashed with
/// foldhash, much cheaper than SipHash for these short keys.
#[derive(Debug, Default)]
pub(crate) struct BatchSums<'a> {
    hourly: HashMap<(DateTime<Utc>, &'a str), i64, RandomState>,
    daily: HashMap<NaiveDate, i64, RandomState>,
    pending: HashMap<(NaiveDate, &'a str, &'a str), i64, RandomState>,
}

impl<'a> BatchSums<'a> {
    /// The sums of `rows`.
    pub(crate) fn of(rows: impl IntoIterator<Item = RowKey<'a>>) -> Self {
        let mut sums = Self::default();
        for (user, action, created_at) in rows {
            let day = utc_day(created_at);
            *sums
                .hourly
                .entry((utc_hour(created_at), action))
                .or_default() += 1;
            *sums.daily.entry(day).or_default() += 1;
            if let Some(user) = user {
                *sums.pending.entry((day, user, action)).or_default() += 1;
            }
        }
        sums
    }

    /// As the arrays [`apply_sums_ctes!`] binds.
    pub(crate) fn into_columns(self) -> SumColumns<'a> {
        let (buckets, actions, counts) = self
            .hourly
            .into_iter()
            .map(|((bucket, action), n)| (bucket, action, n))
            .collect();
        let (days, activities) = self.daily.into_iter().unzip();
        let n = self.pending.len();
        let mut pending = PendingColumns {
            days: Vec::with_capacity(n),
            users: Vec::with_capacity(n),
            actions: Vec::with_capacity(n),
            counts: Vec::with_capacity(n),
        };
        for ((day, user, action), count) in self.pending {
            pending.days.push(day);
            pending.users.push(user);
            pending.actions.push(action);
            pending.counts.push(count);
        }
        SumColumns {
            hourly: (buckets, actions, counts),
            daily: (days, activities),
            pending,
        }
    }
}

/// [`BatchSums`] as arrays, in the order [`apply_sums_ctes!`] binds them.
#[derive(Debug)]
pub(crate) struct SumColumns<'a> {
    hourly: (Vec<DateTime<Utc>>, Vec<&'a str>, Vec<i64>),
    daily: (Vec<NaiveDate>, Vec<i64>),
    pending: PendingColumns<'a>,
}

/// The pending per-(day, user, action) counts as arrays.
#[derive(Debug)]
struct PendingColumns<'a> {
    days: Vec<NaiveDate>,
    users: Vec<&'a str>,
    actions: Vec<&'a str>,
    counts: Vec<i64>,
}

impl<'a> SumColumns<'a> {
    /// Binds the nine arrays, in [`apply_sums_ctes!`]'s order, after the
    /// parameters `query` has already.
    pub(crate) fn bind<'q, O>(
        self,
        query: sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>
    where
        'a: 'q,
    {
        query
            .bind(self.hourly.0)
            .bind(self.hourly.1)
            .bind(self.hourly.2)
            .bind(self.daily.0)
            .bind(self.daily.1)
            .bind(self.pending.days)
            .bind(self.pending.users)
            .bind(self.pending.actions)
            .bind(self.pending.counts)
    }
}

/// The data-modifying `WITH` parts that add sums to the rollups: the
/// per-hour counts (from the arrays `$b`, `$a`, `$n`), then the per-day
/// counts (`$d`, `$dn`), then the pending per-user counts (`$pd`, `$pu`,
/// `$pa`, `$pn`), the first once `$after` is true.
///
/// Each upsert waits for the previous one (its filter reads the previous
/// one's result) and sorts its keys (`ORDER BY`, in the database's
/// collation), so every writer locks the per-hour rows, then the per-day
/// rows, in the same order: concurrent writers queue instead of
/// deadlocking, and `n = t.n + excluded.n` never loses a count. The
/// pending counts are plain inserts, which lock no row.
macro_rules! apply_sums_ctes {
    ($after:literal, $b:literal, $a:literal, $n:literal, $d:literal, $dn:literal,
     $pd:literal, $pu:literal, $pa:literal, $pn:literal) => {
        concat!(
            "hourly AS ( \
                 INSERT INTO activity_rollup_hourly AS t (bucket, action, n) \
                 SELECT b, a, n FROM UNNEST(",
            $b,
            "::timestamptz[], ",
            $a,
            "::text[], ",
            $n,
            "::int8[]) AS s(b, a, n) \
                 WHERE ",
            $after,
            " ORDER BY 1, 2 \
                 ON CONFLICT (bucket, action) DO UPDATE SET n = t.n + excluded.n \
                 RETURNING 1), \
             daily AS ( \
                 INSERT INTO activity_rollup_daily AS t (day, activities, users) \
                 SELECT d, n, 0 FROM UNNEST(",
            $d,
            "::date[], ",
            $dn,
            "::int8[]) AS s(d, n) \
                 WHERE (SELECT COUNT(*) FROM hourly) > 0 \
                 ORDER BY 1 \
                 ON CONFLICT (day) DO UPDATE SET activities = t.activities + excluded.activities \
                 RETURNING 1), \
             pending AS ( \
                 INSERT INTO activity_rollup_pending (day, user_id, action, n) \
                 SELECT d, u, a, n FROM UNNEST(",
            $pd,
            "::date[], ",
            $pu,
            "::text[], ",
            $pa,
            "::text[], ",
            $pn,
            "::int8[]) AS s(d, u, a, n) \
                 WHERE (SELECT COUNT(*) FROM daily) > 0)"
        )
    };
}

pub(crate) use apply_sums_ctes;

/// [`apply_sums_ctes!`] alone, its arrays `$1` to `$9`.
const APPLY_SUMS: &str = concat!(
    "WITH ",
    apply_sums_ctes!("true", "$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9"),
    " SELECT 1"
);

/// Adds the sums of `rows` to the rollups, in the caller's transaction.
///
/// `rows` must be rows that this transaction newly stored (not the
/// duplicates skipped by `ON CONFLICT DO NOTHING`), or the rollups count
/// them twice.
pub(crate) async fn add<'a>(
    tx: &mut PgConnection,
    rows: impl IntoIterator<Item = RowKey<'a>>,
) -> Result<(), sqlx::Error> {
    let sums = BatchSums::of(rows);
    if sums.daily.is_empty() {
        return Ok(());
    }
    let _: i32 = sums
        .into_columns()
        .bind(sqlx::query_scalar(APPLY_SUMS))
        .fetch_one(&mut *tx)
        .await?;
    Ok(())
}

/// Takes the per-hour and per-day counts of `rows` out of the rollups, in
/// the caller's transaction, which has just deleted them (an erasure);
/// returns how many rollup rows it corrected. `rows` carry no user: the
/// per-user counts are corrected by the fold's owner
/// ([`move_user_locked`](super::move_user_locked)).
pub(crate) async fn subtract<'a>(
    tx: &mut PgConnection,
    rows: impl IntoIterator<Item = RowKey<'a>>,
) -> Result<u64, sqlx::Error> {
    let mut sums = BatchSums::of(rows);
    if sums.daily.is_empty() {
        return Ok(0);
    }
    debug_assert!(sums.pending.is_empty(), "rows to subtract carry no user");
    let corrected = (sums.hourly.len() + sums.daily.len()) as u64;
    sums.hourly.values_mut().for_each(|n| *n = -*n);
    sums.daily.values_mut().for_each(|n| *n = -*n);
    let _: i32 = sums
        .into_columns()
        .bind(sqlx::query_scalar(APPLY_SUMS))
        .fetch_one(&mut *tx)
        .await?;
    Ok(corrected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn batch_sums_count_per_hour_day_and_user_action() {
        let row = |u: Option<&'static str>, a: &'static str, t: &str| (u, a, at(t));
        let rows = [
            row(Some("u1"), "login", "2026-01-02T10:15:00Z"),
            row(Some("u1"), "login", "2026-01-02T10:45:00Z"),
            row(Some("u1"), "login", "2026-01-01T09:00:00Z"),
            row(None, "login", "2026-01-02T10:01:00Z"),
        ];
        let sums = BatchSums::of(rows);
        assert_eq!(sums.hourly[&(at("2026-01-02T10:00:00Z"), "login")], 3);
        assert_eq!(sums.daily[&day("2026-01-02")], 3);
        assert_eq!(sums.pending[&(day("2026-01-02"), "u1", "login")], 2);
        assert_eq!(sums.pending[&(day("2026-01-01"), "u1", "login")], 1);
        assert_eq!(
            sums.pending.len(),
            2,
            "anonymous rows have no per-user count"
        );
    }

    #[test]
    fn hours_and_days_are_utc() {
        let late = at("2026-03-01T23:59:59.999999Z");
        assert_eq!(utc_hour(late), at("2026-03-01T23:00:00Z"));
        assert_eq!(utc_day(late), day("2026-03-01"));
        let offset: DateTime<Utc> = "2026-03-02T00:30:00+02:00".parse().unwrap();
        assert_eq!(utc_day(offset), day("2026-03-01"));
        assert_eq!(utc_hour(offset), at("2026-03-01T22:00:00Z"));
        let far = at("9999-12-31T23:59:59Z");
        assert_eq!(utc_hour(far), at("9999-12-31T23:00:00Z"));
    }
}
