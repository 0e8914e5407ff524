//! The one definition of each rollup sum over raw rows.
//!
//! Every path that adds rows to the rollups runs [`add_to_rollups!`]: each
//! insert method of the writer (over the rows it inserted, duplicates
//! excluded) and `rebuild-rollups` (over the raw rows of the days it
//! rebuilds). The per-user tables are then filled from the pending counts
//! by the fold, the one definition of those (`fold_chunk` in this module's
//! parent). So a figure cannot depend on the batch size or on the path a
//! row took.

/// The UTC hour of a row's `created_at`: the key of
/// `activity_rollup_hourly`.
macro_rules! utc_hour {
    () => {
        "date_trunc('hour', created_at, 'UTC')"
    };
}

/// The UTC day of a row's `created_at`: the key of every per-day rollup.
macro_rules! utc_day {
    () => {
        "(created_at AT TIME ZONE 'UTC')::date"
    };
}

/// One statement that adds the rows `$rows` returns (a query, or an
/// `INSERT ... RETURNING`, with the columns `user_id, action, created_at`)
/// to the per-hour and per-day activity counts, and their per-(day, user,
/// action) counts to `activity_rollup_pending` for the fold; it answers
/// how many rows `$rows` returned.
///
/// Each upsert waits for the previous one (its filter reads the previous
/// one's result) and sorts its keys (`ORDER BY`, in the database's
/// collation), so every writer locks the per-hour rows, then the per-day
/// rows, in the same order: concurrent writers queue instead of
/// deadlocking, and `n = t.n + excluded.n` never loses a count. The
/// pending counts are plain inserts, which lock no row.
macro_rules! add_to_rollups {
    ($rows:expr) => {
        concat!(
            "WITH stored AS (",
            $rows,
            "), \
             hourly AS ( \
                 INSERT INTO activity_rollup_hourly AS t (bucket, action, n) \
                 SELECT ",
            utc_hour!(),
            ", action, COUNT(*) FROM stored \
                 GROUP BY 1, 2 ORDER BY 1, 2 \
                 ON CONFLICT (bucket, action) DO UPDATE SET n = t.n + excluded.n \
                 RETURNING 1), \
             daily AS ( \
                 INSERT INTO activity_rollup_daily AS t (day, activities, users) \
                 SELECT ",
            utc_day!(),
            ", COUNT(*), 0 FROM stored \
                 WHERE (SELECT COUNT(*) FROM hourly) > 0 \
                 GROUP BY 1 ORDER BY 1 \
                 ON CONFLICT (day) DO UPDATE SET activities = t.activities + excluded.activities \
                 RETURNING 1), \
             pending AS ( \
                 INSERT INTO activity_rollup_pending (day, user_id, action, n) \
                 SELECT ",
            utc_day!(),
            ", user_id, action, COUNT(*) FROM stored \
                 WHERE user_id IS NOT NULL AND (SELECT COUNT(*) FROM daily) > 0 \
                 GROUP BY 1, 2, 3) \
             SELECT COUNT(*) FROM stored"
        )
    };
}

pub(crate) use {add_to_rollups, utc_day, utc_hour};
