-- Alert rules (activity_store::alerts): the inbox of rows to evaluate, the
-- evaluated events that rule windows count, the alerts raised, and their
-- webhook deliveries.

-- Every row inserted into user_activity_logs, whoever inserted it (the
-- processor, the layer's direct-to-PostgreSQL fallback, a script), gets a
-- row here in the same transaction, from a statement-level trigger over the
-- rows the statement actually inserted (an ON CONFLICT duplicate is not
-- among them, so a redelivery is evaluated zero times). The evaluator
-- deletes the rows it evaluates in the transaction that records their
-- alerts: a crash in between rolls both back, and the rows wait for the
-- next evaluation. No key and no index: each is work on every insert of
-- every writer, and the evaluator needs neither (it takes rows in heap
-- order, which is about arrival order, and sorts them by event time).
CREATE TABLE IF NOT EXISTS user_activity_alert_inbox (
    event_id    UUID         NOT NULL,
    created_at  TIMESTAMPTZ  NOT NULL,
    user_id     TEXT,
    action      VARCHAR(100) NOT NULL,
    ip_address  INET,
    -- details->>'status', the HTTP status of a captured request (text: an
    -- app may put anything there; the rules parse it).
    status      TEXT,
    received_at TIMESTAMPTZ  NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION user_activity_alert_inbox_fill() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO user_activity_alert_inbox
        (event_id, created_at, user_id, action, ip_address, status)
    SELECT id, created_at, user_id, action, ip_address, details->>'status'
    FROM inserted_rows;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS user_activity_alert_inbox_fill ON user_activity_logs;
CREATE TRIGGER user_activity_alert_inbox_fill
    AFTER INSERT ON user_activity_logs
    REFERENCING NEW TABLE AS inserted_rows
    FOR EACH STATEMENT EXECUTE FUNCTION user_activity_alert_inbox_fill();

-- The evaluated events that match a windowed rule (rate, the failures of
-- failed_then_success), by rule and group, so that a window counts each
-- event once whichever processor evaluated it. Kept for the longest window
-- plus ALERT_MAX_LATENESS, then pruned.
CREATE TABLE IF NOT EXISTS user_activity_alert_window (
    rule        TEXT        NOT NULL,
    group_value TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    event_id    UUID        NOT NULL
);
CREATE INDEX IF NOT EXISTS user_activity_alert_window_group_idx
    ON user_activity_alert_window (rule, group_value, created_at);
CREATE INDEX IF NOT EXISTS user_activity_alert_window_created_at_idx
    ON user_activity_alert_window USING BRIN (created_at);

-- One row per episode of a rule for a group (a user or an IP): raised when
-- the rule's condition first holds, and its count and last event move while
-- matching events keep coming within the rule's cooldown. The unique key
-- makes a second alert for the same episode impossible even if two
-- evaluators ever raced.
CREATE TABLE IF NOT EXISTS user_activity_alerts (
    id                   UUID        NOT NULL PRIMARY KEY,
    rule                 TEXT        NOT NULL,
    group_kind           TEXT        NOT NULL CHECK (group_kind IN ('user', 'ip')),
    group_value          TEXT        NOT NULL,
    user_id              TEXT,
    ip_address           INET,
    first_event_id       UUID        NOT NULL,
    first_event_at       TIMESTAMPTZ NOT NULL,
    last_event_id        UUID        NOT NULL,
    last_event_at        TIMESTAMPTZ NOT NULL,
    count                BIGINT      NOT NULL,
    status               TEXT        NOT NULL DEFAULT 'open'
                         CHECK (status IN ('open', 'acknowledged')),
    acknowledged_at      TIMESTAMPTZ,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (rule, group_kind, group_value, first_event_at)
);
CREATE INDEX IF NOT EXISTS user_activity_alerts_group_idx
    ON user_activity_alerts (rule, group_kind, group_value, last_event_at DESC);
CREATE INDEX IF NOT EXISTS user_activity_alerts_created_at_idx
    ON user_activity_alerts (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS user_activity_alerts_user_idx
    ON user_activity_alerts (user_id, created_at DESC);

-- One webhook delivery per alert and URL, made in the transaction that
-- raises the alert, so that a restart neither loses nor re-invents one.
-- webhook_id is the same on every attempt (receivers deduplicate on it).
CREATE TABLE IF NOT EXISTS user_activity_alert_deliveries (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id        UUID        NOT NULL REFERENCES user_activity_alerts (id) ON DELETE CASCADE,
    url             TEXT        NOT NULL,
    webhook_id      TEXT        NOT NULL,
    status          TEXT        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed', 'disabled')),
    attempts        INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Set while a processor is sending it; another may take it over once
    -- the lease has passed (the sender died).
    leased_until    TIMESTAMPTZ,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at     TIMESTAMPTZ,
    UNIQUE (alert_id, url)
);
CREATE INDEX IF NOT EXISTS user_activity_alert_deliveries_due_idx
    ON user_activity_alert_deliveries (next_attempt_at) WHERE status = 'pending';

-- Webhook URLs that answered 410 Gone: no more deliveries go there.
CREATE TABLE IF NOT EXISTS user_activity_webhook_disabled (
    url         TEXT        NOT NULL PRIMARY KEY,
    disabled_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    reason      TEXT        NOT NULL
);
