//! Test support: random activity, and the figures computed independently
//! from the raw rows (plain `GROUP BY`s) to compare the rollups and the
//! queries against. Behind the `testing` feature, for the tests of this
//! crate and of the crates built on it.

use activity_tracker::{Activity, ActivityType};
use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::PgPool;

/// The URL of `pool`'s database (a `#[sqlx::test]` one): `DATABASE_URL`'s
/// server with that database's name, for a processor the test starts.
pub fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set by .cargo/config.toml");
    let name = pool
        .connect_options()
        .get_database()
        .expect("sqlx::test names the database")
        .to_owned();
    let server = base
        .rsplit_once('/')
        .map_or(base.as_str(), |(server, _)| server);
    format!("{server}/{name}")
}

/// How long [`wait_for`] waits before failing the test.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// The rows in `user_activity_logs` (0 while the table cannot be read).
pub async fn count_rows(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM user_activity_logs")
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

/// Polls `check` until it holds; panics naming `what` after [`WAIT`].
pub async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// The actions [`random_activities`] draws from.
pub const ACTIONS: [&str; 6] = [
    "login",
    "case_view",
    "case_create",
    "payment_create",
    "report_export",
    "logout",
];

/// `n` activities spread over the last `days` days (a few in the next hour,
/// as clocks drift), by `users` users plus anonymous ones.
pub fn random_activities(seed: u64, n: usize, days: i64, users: usize) -> Vec<Activity> {
    let mut rng = StdRng::seed_from_u64(seed);
    let now = Utc::now();
    (0..n)
        .map(|_| {
            let back = TimeDelta::seconds(rng.random_range(-600..days * 86_400));
            let action = ActivityType::custom(ACTIONS[rng.random_range(0..ACTIONS.len())])
                .expect("catalogue names are valid");
            let mut a = Activity::at(action, now - back)
                .resource("case", format!("c-{}", rng.random_range(0..20)))
                .ip_address(std::net::IpAddr::from([10, 0, 0, rng.random_range(1..4u8)]));
            if rng.random_range(0..10) > 0 {
                a = a.user_id(format!("user-{}", rng.random_range(0..users)));
            }
            a
        })
        .collect()
}

/// First instant of a window of `days` UTC days ending today.
pub fn window_start(days: u32) -> (NaiveDate, DateTime<Utc>) {
    let day = Utc::now().date_naive() - TimeDelta::days(i64::from(days) - 1);
    (day, day.and_time(NaiveTime::MIN).and_utc())
}

/// Each rollup table as computed from the raw rows and as stored (after
/// folding the pending per-user counts), sorted; the pairs must be equal.
pub async fn rollups_vs_raw(pool: &PgPool) -> Vec<(&'static str, Vec<String>, Vec<String>)> {
    crate::rollups::fold_pending(pool)
        .await
        .expect("pending counts folded");
    let pairs: [(&str, &str, &str); 7] = [
        (
            "hourly",
            "SELECT to_char(date_trunc('hour', created_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD HH24')
                    || ' ' || action || ' ' || count(*)
             FROM user_activity_logs GROUP BY date_trunc('hour', created_at AT TIME ZONE 'UTC'), action",
            "SELECT to_char(bucket AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24') || ' ' || action || ' ' || n
             FROM activity_rollup_hourly WHERE n <> 0",
        ),
        (
            "daily",
            "SELECT (created_at AT TIME ZONE 'UTC')::date || ' ' || count(*) || ' '
                    || count(DISTINCT user_id)
             FROM user_activity_logs GROUP BY (created_at AT TIME ZONE 'UTC')::date",
            "SELECT day || ' ' || activities || ' ' || users FROM activity_rollup_daily
             WHERE activities <> 0",
        ),
        (
            "user_daily",
            "SELECT (created_at AT TIME ZONE 'UTC')::date || ' ' || user_id || ' ' || count(*)
             FROM user_activity_logs WHERE user_id IS NOT NULL
             GROUP BY (created_at AT TIME ZONE 'UTC')::date, user_id",
            "SELECT day || ' ' || user_id || ' ' || n FROM activity_rollup_user_daily",
        ),
        (
            "user_last",
            "SELECT user_id || ' ' || max((created_at AT TIME ZONE 'UTC')::date)
             FROM user_activity_logs WHERE user_id IS NOT NULL GROUP BY user_id",
            "SELECT user_id || ' ' || last_day FROM activity_rollup_user_last",
        ),
        (
            "user_last_hist",
            "SELECT d || ' ' || count(*) FROM (
                 SELECT max((created_at AT TIME ZONE 'UTC')::date) AS d
                 FROM user_activity_logs WHERE user_id IS NOT NULL GROUP BY user_id) x
             GROUP BY d",
            "SELECT last_day || ' ' || n FROM activity_rollup_user_last_hist WHERE n <> 0",
        ),
        (
            "user_action_last",
            "SELECT user_id || ' ' || action || ' ' || max((created_at AT TIME ZONE 'UTC')::date)
             FROM user_activity_logs WHERE user_id IS NOT NULL GROUP BY user_id, action",
            "SELECT user_id || ' ' || action || ' ' || last_day FROM activity_rollup_user_action_last",
        ),
        (
            "action_last_hist",
            "SELECT action || ' ' || d || ' ' || count(*) FROM (
                 SELECT action, max((created_at AT TIME ZONE 'UTC')::date) AS d
                 FROM user_activity_logs WHERE user_id IS NOT NULL GROUP BY user_id, action) x
             GROUP BY action, d",
            "SELECT action || ' ' || last_day || ' ' || n FROM activity_rollup_action_last_hist
             WHERE n <> 0",
        ),
    ];
    let mut out = Vec::new();
    for (name, raw, rollup) in pairs {
        let mut a: Vec<String> = sqlx::query_scalar(raw).fetch_all(pool).await.expect(name);
        let mut b: Vec<String> = sqlx::query_scalar(rollup)
            .fetch_all(pool)
            .await
            .expect(name);
        a.sort();
        b.sort();
        out.push((name, a, b));
    }
    out
}

/// Panics with the first table that differs.
pub async fn assert_rollups_match_raw(pool: &PgPool) {
    for (name, raw, rollup) in rollups_vs_raw(pool).await {
        assert_eq!(raw, rollup, "rollup {name} differs from the raw rows");
    }
}
