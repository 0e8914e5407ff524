-- Per-user counts of committed batches not yet folded into the per-user
-- rollups (activity_rollup_user_daily, the users column of
-- activity_rollup_daily, the last-day-seen tables and their histograms).
--
-- The writer appends one row per (UTC day, user, action) of each batch in
-- the batch's own transaction (activity_tracker::postgres::rollups::apply):
-- a plain insert into a table without indexes, far cheaper than upserting
-- the per-user tables batch by batch. rollups::fold_pending moves them into
-- those tables, many batches at once, one fold at a time (an advisory
-- lock): the processor folds on a timer (ROLLUP_FOLD_INTERVAL_MS), and every
-- query that reads a per-user table folds first. Folded tables plus this
-- one are exact after every commit.
CREATE TABLE IF NOT EXISTS activity_rollup_pending (
    day     DATE         NOT NULL,
    user_id TEXT         NOT NULL,
    action  VARCHAR(100) NOT NULL,
    n       BIGINT       NOT NULL
);
