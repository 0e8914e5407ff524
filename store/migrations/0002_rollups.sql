-- Rollups for the admin API: aggregates of user_activity_logs kept exact by
-- the writer in the same transaction as each batch insert
-- (activity_tracker::postgres::rollups::apply), trimmed by retention in the
-- transaction that drops partitions (rollups::forget_before), and rebuilt
-- from the raw rows by `activity-processor rebuild-rollups [--since DATE]`.
--
-- Every window the admin API offers ends "now" (the last N UTC days), so
-- distinct-user figures over a window come from "last day seen" tables:
-- a user was active in the last N days exactly when their last day seen is
-- within them. The *_hist tables count users (or user/action pairs) by last
-- day seen, so a distinct count over any window is a sum over at most a few
-- hundred rows instead of a scan of the window's activity.
--
-- Days and hours are UTC. Rows without a user_id count in the activity
-- figures but not in any user figure.

-- Activities per (UTC hour, action): totals, breakdowns, hour-of-day curve,
-- per-action usage.
CREATE TABLE IF NOT EXISTS activity_rollup_hourly (
    bucket TIMESTAMPTZ  NOT NULL,
    action VARCHAR(100) NOT NULL,
    n      BIGINT       NOT NULL,
    PRIMARY KEY (bucket, action)
);

-- Per UTC day: activities and distinct users (a user counts once a day: the
-- writer adds one when it creates the (day, user) row below).
CREATE TABLE IF NOT EXISTS activity_rollup_daily (
    day        DATE   NOT NULL PRIMARY KEY,
    activities BIGINT NOT NULL,
    users      BIGINT NOT NULL
);

-- Activities per (UTC day, user): the most active users over a window.
CREATE TABLE IF NOT EXISTS activity_rollup_user_daily (
    day     DATE   NOT NULL,
    user_id TEXT   NOT NULL,
    n       BIGINT NOT NULL,
    PRIMARY KEY (day, user_id)
);

-- Last UTC day each user was seen; prev_day is the value it replaced, so
-- the writer learns it atomically from the upsert's RETURNING.
CREATE TABLE IF NOT EXISTS activity_rollup_user_last (
    user_id  TEXT NOT NULL PRIMARY KEY,
    last_day DATE NOT NULL,
    prev_day DATE
);

-- Number of users whose last day seen is last_day.
CREATE TABLE IF NOT EXISTS activity_rollup_user_last_hist (
    last_day DATE   NOT NULL PRIMARY KEY,
    n        BIGINT NOT NULL
);

-- Last UTC day each user used each action (distinct actions of a user,
-- distinct users of an action, over a window).
CREATE TABLE IF NOT EXISTS activity_rollup_user_action_last (
    user_id  TEXT         NOT NULL,
    action   VARCHAR(100) NOT NULL,
    last_day DATE         NOT NULL,
    prev_day DATE,
    PRIMARY KEY (user_id, action)
);

-- Number of users whose last use of action is last_day.
CREATE TABLE IF NOT EXISTS activity_rollup_action_last_hist (
    action   VARCHAR(100) NOT NULL,
    last_day DATE         NOT NULL,
    n        BIGINT       NOT NULL,
    PRIMARY KEY (action, last_day)
);
