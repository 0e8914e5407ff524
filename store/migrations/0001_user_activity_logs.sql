-- The activity log: one row per recorded user action (contract in
-- architecture.md). Range-partitioned by month on created_at so retention is
-- a DROP of a whole partition; the processor creates the monthly partitions
-- ahead of time (schema::ensure_partitions), and the default partition
-- catches strays until their month's partition exists.
--
-- IF NOT EXISTS everywhere: the migration also runs cleanly on a database
-- where the table was created by hand from this file.

CREATE TABLE IF NOT EXISTS user_activity_logs (
    id            UUID         NOT NULL,
    user_id       TEXT         NULL,
    action        VARCHAR(100) NOT NULL,
    resource_type VARCHAR(50),
    resource_id   VARCHAR(255),
    details       JSONB,
    ip_address    INET,
    user_agent    VARCHAR(500),
    session_id    VARCHAR(255),
    created_at    TIMESTAMPTZ  NOT NULL,
    -- The partition key must be part of every unique index of a partitioned
    -- table; the id (UUID v7) alone is the idempotency key in practice.
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);

CREATE TABLE IF NOT EXISTS user_activity_logs_default
    PARTITION OF user_activity_logs DEFAULT;

-- The admin queries: one user's history, one action's history.
CREATE INDEX IF NOT EXISTS user_activity_logs_user_id_created_at_idx
    ON user_activity_logs (user_id, created_at);
CREATE INDEX IF NOT EXISTS user_activity_logs_action_created_at_idx
    ON user_activity_logs (action, created_at);

-- Time-range scans (statistics over the last N days). Rows arrive in
-- created_at order, so a BRIN index is nearly as selective as a btree for
-- ranges at a fraction of the write cost and size: see docs/benchmarks.md,
-- "Processor: index choice" (bench/index_choice.sh).
CREATE INDEX IF NOT EXISTS user_activity_logs_created_at_brin_idx
    ON user_activity_logs USING BRIN (created_at);
