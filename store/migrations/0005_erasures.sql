-- The erasure list: the users erased (activity_store::privacy::erase_user),
-- each kept for ERASURE_HOLD_DAYS so that their events arriving late (still
-- in the stream, in an app's spool, written by an app's direct fallback, or
-- sent by a producer that did not get the news) are erased the same way on
-- arrival, by the writer or by the processor's sweep.
--
-- user_hash is the keyed hash (HMAC-SHA-256 with PSEUDONYM_KEY) of the user
-- id as stored, never the id itself: the list must not keep what it erased.
CREATE TABLE IF NOT EXISTS activity_erasures (
    user_hash  BYTEA       NOT NULL PRIMARY KEY,
    mode       TEXT        NOT NULL CHECK (mode IN ('delete', 'pseudonymize')),
    erased_at  TIMESTAMPTZ NOT NULL,
    hold_until TIMESTAMPTZ NOT NULL
);
