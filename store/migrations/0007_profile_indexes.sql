-- The user profile (store/src/queries/profile.rs) reads every row of one
-- user's window through (user_id, created_at), and needs each row's action
-- and client address. With those two in the index (INCLUDE), the read is an
-- index-only scan instead of one heap page per row, which is what a heavy
-- user's profile costs otherwise (docs/benchmarks.md, "User profile"). The
-- index replaces 0001's plain (user_id, created_at) index, which it serves
-- in the same way for every other query of one user's history, so a write
-- still updates one index for it.
--
-- Building it on a large table holds writes to the table for the time of
-- the build (the consumer waits; the stream keeps what arrives meanwhile).
CREATE INDEX IF NOT EXISTS user_activity_logs_user_id_created_at_covering_idx
    ON user_activity_logs (user_id, created_at) INCLUDE (action, ip_address);
DROP INDEX IF EXISTS user_activity_logs_user_id_created_at_idx;

-- A user's failed logins, for the profile's risk score: a partial index
-- whose predicate is the definition of a failed login (an app's
-- `login_failed`, or a `login` answered with a 4xx status), so counting
-- them reads only them. The profile's statement repeats the predicate word
-- for word, which is how PostgreSQL knows it may use the index.
CREATE INDEX IF NOT EXISTS user_activity_logs_failed_login_idx
    ON user_activity_logs (user_id, created_at)
    WHERE action = 'login_failed'
       OR (action = 'login' AND btrim(details->>'status') ~ '^4[0-9][0-9]$');
