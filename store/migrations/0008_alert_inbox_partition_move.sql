-- Rows moved out of the default partition into a new monthly partition
-- (schema::ensure_partitions) are inserted again through the parent
-- table. They reached the alert inbox when they were first stored, so the
-- move must not put them there a second time: the move sets the
-- transaction-local setting `activity.partition_move`, and the trigger
-- skips its statements.
CREATE OR REPLACE FUNCTION user_activity_alert_inbox_fill() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('activity.partition_move', true) = 'on' THEN
        RETURN NULL;
    END IF;
    INSERT INTO user_activity_alert_inbox
        (event_id, created_at, user_id, action, ip_address, status)
    SELECT id, created_at, user_id, action, ip_address, details->>'status'
    FROM inserted_rows;
    RETURN NULL;
END
$$;
