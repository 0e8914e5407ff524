-- The most active users over a window without summing every (day, user)
-- row of the window: each day's users are read in descending count order
-- (the (day, n) index) until no user left unread can beat the ones found
-- (the threshold algorithm; analytics::get_top_users), and the candidates'
-- exact totals come from the (user_id, day) key (n included: index-only).
ALTER TABLE activity_rollup_user_daily DROP CONSTRAINT IF EXISTS activity_rollup_user_daily_pkey;
ALTER TABLE activity_rollup_user_daily ADD PRIMARY KEY (user_id, day) INCLUDE (n);
CREATE INDEX IF NOT EXISTS activity_rollup_user_daily_day_n_idx
    ON activity_rollup_user_daily (day, n DESC) INCLUDE (user_id);
