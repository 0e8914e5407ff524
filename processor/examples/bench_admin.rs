//! The admin API at scale: loads `--rows` activities (default 10,000,000)
//! spread over 90 days and 50,000 users into a scratch database with
//! `COPY`, rebuilds the rollups (timed), then measures each endpoint's
//! p50/p99 through the admin router (auth, query, JSON) and, in the same
//! run, the same figures computed by plain `GROUP BY`s over the raw table
//! (the baseline). Then the user profile (`user/{id}/profile?days=90`) for
//! random users and for the heaviest one, against the plain `GROUP BY`s
//! that give its figures one by one. Last, what the rollups cost the
//! writer: `write_batch` against `write_batch_without_rollups`, batches
//! alternating.
//! The scratch database is dropped at the end.
//!
//! ```text
//! cargo run --release -p activity-processor --example bench_admin -- --rows 10000000
//! ```
//!
//! Run through `bench/admin_api.sh [ROWS]`.

#[path = "bench_support/mod.rs"]
mod bench_support;
use bench_support::with_database;
use std::sync::Arc;
use std::time::{Duration, Instant};

use activity_processor::admin::{AdminAuth, AdminState, router};
use activity_processor::stats::ProcessorStats;
use activity_store::schema;
use activity_store::writer::{InsertMethod, write_batch, write_batch_without_rollups};
use activity_tracker::{Activity, ActivityType};
use anyhow::Context as _;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, NaiveTime, TimeDelta, Utc};
use clap::Parser;
use http_body_util::BodyExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};
use tower::ServiceExt;
use uuid::{Timestamp, Uuid};

#[derive(Debug, Parser)]
struct Args {
    /// Rows to load.
    #[arg(long, default_value_t = 10_000_000)]
    rows: usize,
    /// Days the rows span, ending now.
    #[arg(long, default_value_t = 90)]
    days: i64,
    /// Distinct users.
    #[arg(long, default_value_t = 50_000)]
    users: usize,
    /// Requests per endpoint through the router.
    #[arg(long, default_value_t = 50)]
    iterations: usize,
    /// Runs of each plain GROUP BY baseline.
    #[arg(long, default_value_t = 5)]
    baseline_iterations: usize,
    /// Random users whose profile is read (each once, per kind of draw).
    #[arg(long, default_value_t = 200)]
    profile_users: usize,
    /// Reads of the heaviest user's profile.
    #[arg(long, default_value_t = 10)]
    profile_heavy_runs: usize,
    /// Events written to measure the writer with and without rollups.
    #[arg(long, default_value_t = 100_000)]
    writer_events: usize,
    /// Batch size of the writer measurement (the processor's `BATCH_SIZE`).
    #[arg(long, default_value_t = 1000)]
    writer_batch: usize,
    /// Keep the scratch database (to look at query plans), printing its name.
    #[arg(long)]
    keep_database: bool,
    /// Server to make the scratch database on (any database of it).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// Redis for `queue-status`.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
}

const TOKEN: &str = "bench-token";

/// User `k` of `users`, skewed: a few heavy users, a long tail.
fn user_of(rng: &mut StdRng, users: usize) -> usize {
    let r: f64 = rng.random();
    ((r * r) * users as f64) as usize % users
}

/// Streams `rows` rows in `created_at` order over the last `days` days into
/// the table with `COPY ... FROM STDIN (FORMAT csv)`.
async fn load(conn: &mut PgConnection, args: &Args, now: DateTime<Utc>) -> anyhow::Result<()> {
    let actions: Vec<ActivityType> = ActivityType::catalogue().collect();
    let mut rng = StdRng::seed_from_u64(42);
    let span_ms = args.days * 86_400_000;
    let start = now - TimeDelta::milliseconds(span_ms);
    let mut copy = conn
        .copy_in_raw(
            "COPY user_activity_logs (id, user_id, action, resource_type, resource_id, \
             ip_address, session_id, created_at) FROM STDIN WITH (FORMAT csv)",
        )
        .await?;
    let mut buf = String::with_capacity(1 << 20);
    for i in 0..args.rows {
        let offset = (i as i128 * span_ms as i128 / args.rows as i128) as i64;
        let at = start + TimeDelta::milliseconds(offset + rng.random_range(0..1000));
        let ms = at.timestamp_millis() as u64;
        let id = Uuid::new_v7(Timestamp::from_unix_time(
            ms / 1000,
            (ms % 1000) as u32 * 1_000_000,
            0,
            12,
        ));
        let action = {
            let r: f64 = rng.random();
            actions[((r * r) * actions.len() as f64) as usize % actions.len()].as_str()
        };
        let user = if rng.random_range(0..100) < 3 {
            String::new()
        } else {
            format!("user-{}", user_of(&mut rng, args.users))
        };
        let at = at.format("%Y-%m-%d %H:%M:%S%.3f+00");
        let (a, b) = (rng.random_range(1..255), rng.random_range(1..255));
        let case = rng.random_range(0..1_000_000);
        use std::fmt::Write as _;
        writeln!(
            buf,
            "{id},{user},{action},case,c-{case},10.1.{a}.{b},s-{a}{b},{at}"
        )?;
        if buf.len() > (1 << 20) - 512 {
            copy.send(buf.as_bytes()).await?;
            buf.clear();
        }
    }
    copy.send(buf.as_bytes()).await?;
    copy.finish().await?;
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `(p50, p99)` of `runs`.
fn summary(mut runs: Vec<Duration>) -> (Duration, Duration) {
    runs.sort();
    (percentile(&runs, 0.5), percentile(&runs, 0.99))
}

async fn call(app: &axum::Router, uri: &str) -> anyhow::Result<serde_json::Value> {
    let response = app
        .clone()
        .oneshot(
            Request::get(uri)
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(Body::empty())?,
        )
        .await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    anyhow::ensure!(
        status == StatusCode::OK,
        "{uri}: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    Ok(serde_json::from_slice(&bytes)?)
}

/// Runs each statement once per iteration, in order; the time of one
/// iteration is the time of all of them.
async fn baseline(
    pool: &PgPool,
    statements: &[&'static str],
    bind: &(dyn Fn(usize) -> Vec<BindValue> + Sync),
    iterations: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut runs = Vec::new();
    for it in 0..iterations {
        let t = Instant::now();
        for statement in statements {
            let mut q = sqlx::query(*statement);
            for v in bind(it) {
                q = match v {
                    BindValue::Time(t) => q.bind(t),
                    BindValue::Text(s) => q.bind(s),
                };
            }
            q.fetch_all(pool).await?;
        }
        runs.push(t.elapsed());
    }
    Ok(runs)
}

enum BindValue {
    Time(DateTime<Utc>),
    Text(String),
}

fn window_start(days: i64) -> DateTime<Utc> {
    (Utc::now().date_naive() - TimeDelta::days(days - 1))
        .and_time(NaiveTime::MIN)
        .and_utc()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let name = format!("bench_admin_{}", std::process::id());
    let mut admin = PgConnection::connect(&args.database_url).await?;
    sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}")))
        .execute(&mut admin)
        .await?;
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await?;
    let result = bench(&args, &with_database(&args.database_url, &name)?).await;
    if args.keep_database {
        println!("scratch database kept: {name}");
        return result;
    }
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    result
}

async fn bench(args: &Args, url: &str) -> anyhow::Result<()> {
    let pool = PgPoolOptions::new().max_connections(4).connect(url).await?;
    schema::migrate(&pool).await?;
    let now = Utc::now();
    schema::ensure_partitions(&pool, now - TimeDelta::days(args.days + 31), 5).await?;

    println!(
        "# admin API at {} rows over {} days, {} users (PostgreSQL {})",
        args.rows,
        args.days,
        args.users,
        sqlx::query_scalar::<_, String>("SHOW server_version")
            .fetch_one(&pool)
            .await?
    );
    let t = Instant::now();
    let mut conn = pool.acquire().await?;
    load(&mut conn, args, now).await?;
    drop(conn);
    println!("load (COPY): {:.1} s", t.elapsed().as_secs_f64());
    sqlx::query("VACUUM ANALYZE user_activity_logs")
        .execute(&pool)
        .await?;

    let outcome = activity_store::rollups::rebuild_rollups(&pool, None).await?;
    println!(
        "rebuild-rollups (all {} rows): {:.1} s",
        outcome.rows,
        outcome.took.as_secs_f64()
    );
    for table in [
        "activity_rollup_hourly",
        "activity_rollup_daily",
        "activity_rollup_user_daily",
        "activity_rollup_user_last",
        "activity_rollup_user_last_hist",
        "activity_rollup_user_action_last",
        "activity_rollup_action_last_hist",
    ] {
        sqlx::query(AssertSqlSafe(format!("VACUUM ANALYZE {table}")))
            .execute(&pool)
            .await?;
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&pool)
            .await?;
        println!("  {table}: {n} rows");
    }
    let t = Instant::now();
    let since = Utc::now().date_naive() - TimeDelta::days(1);
    activity_store::rollups::rebuild_rollups(&pool, Some(since)).await?;
    println!(
        "rebuild-rollups --since {since} (2 days): {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let stream_key = format!("bench-admin-{}", Uuid::now_v7());
    let app = router(AdminState::new(
        pool.clone(),
        redis::Client::open(args.redis_url.as_str())?,
        stream_key,
        "activity-processor",
        Arc::new(ProcessorStats::new()),
        AdminAuth::new(Some(TOKEN), None),
    ));

    // Users for the per-user endpoints: drawn like the rows are, so heavy
    // users come up as often as they act.
    let mut rng = StdRng::seed_from_u64(7);
    let users: Vec<String> = (0..args.iterations.max(args.baseline_iterations))
        .map(|_| format!("user-{}", user_of(&mut rng, args.users)))
        .collect();

    // Sanity: the endpoints' figures equal the raw table's.
    let s = call(&app, "/api/v1/admin/user-activities/statistics?days=7").await?;
    let raw_total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM user_activity_logs WHERE created_at >= $1")
            .bind(window_start(7))
            .fetch_one(&pool)
            .await?;
    anyhow::ensure!(
        s["total_activities"] == raw_total,
        "statistics differ from the raw rows"
    );
    let top = call(
        &app,
        "/api/v1/admin/user-activities/top-users?days=30&limit=10",
    )
    .await?;
    let raw_top: Vec<(String, i64)> = sqlx::query_as(
        "SELECT user_id, count(*) c FROM user_activity_logs WHERE created_at >= $1 \
         AND user_id IS NOT NULL GROUP BY user_id ORDER BY c DESC, user_id LIMIT 10",
    )
    .bind(window_start(30))
    .fetch_all(&pool)
    .await?;
    let got: Vec<(String, i64)> = top["users"]
        .as_array()
        .context("users")?
        .iter()
        .map(|u| {
            (
                u["user_id"].as_str().unwrap_or_default().to_owned(),
                u["activity_count"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    anyhow::ensure!(got == raw_top, "top users differ from the raw rows");
    println!("figures checked against the raw rows: equal");

    println!();
    println!(
        "| endpoint | rollups p50 | rollups p99 | plain GROUP BY p50 | plain GROUP BY p99 | speed-up (p50) |"
    );
    println!("|---|---|---|---|---|---|");
    type Case<'a> = (
        &'a str,
        Box<dyn Fn(usize) -> String + 'a>,
        Vec<&'static str>,
        Box<dyn Fn(usize) -> Vec<BindValue> + Sync + 'a>,
    );
    let p = "/api/v1/admin/user-activities";
    let cases: Vec<Case> = vec![
        (
            "statistics?days=7",
            Box::new(move |_| format!("{p}/statistics?days=7")),
            vec![
                "SELECT action, count(*), count(DISTINCT user_id) FROM user_activity_logs \
                 WHERE created_at >= $1 GROUP BY action",
                "SELECT count(DISTINCT user_id) FROM user_activity_logs WHERE created_at >= $1",
                "SELECT (created_at AT TIME ZONE 'UTC')::date, count(*), count(DISTINCT user_id) \
                 FROM user_activity_logs WHERE created_at >= $1 GROUP BY 1",
                "SELECT extract(hour FROM created_at AT TIME ZONE 'UTC'), count(*) \
                 FROM user_activity_logs WHERE created_at >= $1 GROUP BY 1",
            ],
            Box::new(|_| vec![BindValue::Time(window_start(7))]),
        ),
        (
            "top-users?days=30",
            Box::new(move |_| format!("{p}/top-users?days=30&limit=10")),
            vec![
                "SELECT user_id, count(*) AS c, count(DISTINCT action) FROM user_activity_logs \
                 WHERE created_at >= $1 GROUP BY user_id ORDER BY c DESC LIMIT 10",
            ],
            Box::new(|_| vec![BindValue::Time(window_start(30))]),
        ),
        (
            "actions?days=7",
            Box::new(move |_| format!("{p}/actions?days=7")),
            vec![
                "SELECT action, count(*) AS c, count(DISTINCT user_id) FROM user_activity_logs \
                 WHERE created_at >= $1 GROUP BY action ORDER BY c DESC",
            ],
            Box::new(|_| vec![BindValue::Time(window_start(7))]),
        ),
        (
            "user/{id}?days=30",
            Box::new(|i| format!("{p}/user/{}?days=30", users[i % users.len()])),
            vec![
                "SELECT action, count(*), min(created_at), max(created_at) FROM user_activity_logs \
                 WHERE created_at >= $1 AND user_id = $2 GROUP BY action",
                "SELECT host(ip_address), count(*) FROM user_activity_logs \
                 WHERE created_at >= $1 AND user_id = $2 GROUP BY 1",
                "SELECT * FROM user_activity_logs WHERE created_at >= $1 AND user_id = $2 \
                 ORDER BY created_at DESC LIMIT 50",
            ],
            Box::new(|i| {
                vec![
                    BindValue::Time(window_start(30)),
                    BindValue::Text(users[i % users.len()].clone()),
                ]
            }),
        ),
        (
            "user/{id}/path?days=1",
            Box::new(|i| format!("{p}/user/{}/path?days=1&limit=200", users[i % users.len()])),
            vec![
                "SELECT action, resource_type, created_at, \
                 LAG(action) OVER (PARTITION BY user_id ORDER BY created_at) \
                 FROM user_activity_logs WHERE created_at >= $1 AND user_id = $2 \
                 ORDER BY created_at",
            ],
            Box::new(|i| {
                vec![
                    BindValue::Time(window_start(1)),
                    BindValue::Text(users[i % users.len()].clone()),
                ]
            }),
        ),
        (
            "queue-status",
            Box::new(move |_| format!("{p}/queue-status")),
            vec![
                "SELECT count(*) FILTER (WHERE created_at >= $1), count(*), \
                 count(DISTINCT user_id) FILTER (WHERE created_at >= $1) FROM user_activity_logs",
            ],
            Box::new(|_| vec![BindValue::Time(window_start(1))]),
        ),
    ];
    for (name, uri, statements, bind) in &cases {
        // One warm-up each, so both sides run on a warm cache.
        call(&app, &uri(0)).await?;
        let mut runs = Vec::new();
        for i in 0..args.iterations {
            let u = uri(i);
            let t = Instant::now();
            call(&app, &u).await?;
            runs.push(t.elapsed());
        }
        let (p50, p99) = summary(runs);
        baseline(&pool, statements, bind.as_ref(), 1).await?;
        let (b50, b99) =
            summary(baseline(&pool, statements, bind.as_ref(), args.baseline_iterations).await?);
        println!(
            "| `{name}` | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.0}x |",
            ms(p50),
            ms(p99),
            ms(b50),
            ms(b99),
            b50.as_secs_f64() / p50.as_secs_f64()
        );
    }

    profile(args, &app, &pool, &users).await?;
    writer_cost(args, &pool).await
}

/// The plain `GROUP BY`s over the raw rows that give the profile's
/// figures one statement each, as the original design's
/// `build_user_profile` gathered them (`$1` the window's start, `$2` the
/// user); hours and weekdays in UTC.
const PROFILE_BASELINE_UTC: [&str; 5] = [
    "SELECT action, count(*), min(created_at), max(created_at) FROM user_activity_logs \
     WHERE created_at >= $1 AND user_id = $2 GROUP BY action",
    "SELECT extract(hour FROM created_at AT TIME ZONE 'UTC'), \
            extract(isodow FROM created_at AT TIME ZONE 'UTC'), count(*) \
     FROM user_activity_logs WHERE created_at >= $1 AND user_id = $2 GROUP BY 1, 2",
    PROFILE_BASELINE_IPS,
    PROFILE_BASELINE_FAILED,
    PROFILE_BASELINE_ALERTS,
];
/// [`PROFILE_BASELINE_UTC`] with hours and weekdays in New York.
const PROFILE_BASELINE_NEW_YORK: [&str; 5] = [
    PROFILE_BASELINE_UTC[0],
    "SELECT extract(hour FROM created_at AT TIME ZONE 'America/New_York'), \
            extract(isodow FROM created_at AT TIME ZONE 'America/New_York'), count(*) \
     FROM user_activity_logs WHERE created_at >= $1 AND user_id = $2 GROUP BY 1, 2",
    PROFILE_BASELINE_IPS,
    PROFILE_BASELINE_FAILED,
    PROFILE_BASELINE_ALERTS,
];
const PROFILE_BASELINE_IPS: &str = "SELECT host(ip_address), min(created_at), max(created_at), count(*) FROM user_activity_logs \
     WHERE created_at >= $1 AND user_id = $2 AND ip_address IS NOT NULL GROUP BY ip_address";
const PROFILE_BASELINE_FAILED: &str = "SELECT count(*) FROM user_activity_logs \
     WHERE created_at >= $1 AND user_id = $2 \
       AND (action = 'login_failed' OR (action = 'login' AND details->>'status' LIKE '4__'))";
const PROFILE_BASELINE_ALERTS: &str = "SELECT count(*) FROM user_activity_alerts \
     WHERE $1::timestamptz IS NOT NULL AND user_id = $2 AND status = 'open'";

/// The profile's p50/p99 through the router for users drawn at random
/// (uniformly over the user ids, and like the rows), and the heaviest
/// user's, each next to the plain `GROUP BY`s' for the same users.
async fn profile(
    args: &Args,
    app: &axum::Router,
    pool: &PgPool,
    drawn: &[String],
) -> anyhow::Result<()> {
    let start = window_start(90);
    let mut rng = StdRng::seed_from_u64(11);
    let uniform: Vec<String> = (0..args.profile_users)
        .map(|_| format!("user-{}", rng.random_range(0..args.users)))
        .collect();
    let drawn: Vec<String> = drawn
        .iter()
        .cycle()
        .take(args.profile_users)
        .cloned()
        .collect();
    let (heaviest, heavy_rows): (String, i64) = sqlx::query_as(
        "SELECT user_id, sum(n)::int8 AS c FROM activity_rollup_user_daily WHERE day >= $1 \
         GROUP BY user_id ORDER BY c DESC, user_id LIMIT 1",
    )
    .bind(start.date_naive())
    .fetch_one(pool)
    .await?;
    let p = "/api/v1/admin/user-activities";
    let heavy = call(app, &format!("{p}/user/{heaviest}/profile?days=90")).await?;
    anyhow::ensure!(
        heavy["total_activities"] == heavy_rows,
        "the heaviest user's profile differs from the rollups ({} against {heavy_rows})",
        heavy["total_activities"]
    );
    let mut sizes: Vec<i64> = Vec::new();
    for u in &uniform {
        sizes.push(
            sqlx::query_scalar(
                "SELECT count(*) FROM user_activity_logs WHERE user_id = $1 AND created_at >= $2",
            )
            .bind(u)
            .bind(start)
            .fetch_one(pool)
            .await?,
        );
    }
    sizes.sort_unstable();
    println!();
    println!(
        "user profile over 90 days: {} random users (uniform over the ids: median {} rows, \
         largest {}); drawn like the rows; the heaviest user {heaviest} ({heavy_rows} rows, {} \
         distinct IPs); figures checked against the rollups: equal",
        args.profile_users,
        sizes[sizes.len() / 2],
        sizes.last().copied().unwrap_or(0),
        heavy["ip_summary"]["distinct_ips"]
    );
    println!();
    println!(
        "| profile of | tz | profile p50 | profile p99 | plain GROUP BYs p50 | plain GROUP BYs p99 | speed-up (p50) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let heaviest = vec![heaviest; args.profile_heavy_runs];
    let cases: [(&str, &[String], &str, &[&'static str; 5]); 5] = [
        ("random users", &uniform, "", &PROFILE_BASELINE_UTC),
        (
            "random users",
            &uniform,
            "America/New_York",
            &PROFILE_BASELINE_NEW_YORK,
        ),
        (
            "users drawn like the rows",
            &drawn,
            "",
            &PROFILE_BASELINE_UTC,
        ),
        (
            "users drawn like the rows",
            &drawn,
            "America/New_York",
            &PROFILE_BASELINE_NEW_YORK,
        ),
        (
            "the heaviest user",
            &heaviest,
            "America/New_York",
            &PROFILE_BASELINE_NEW_YORK,
        ),
    ];
    for (name, users, tz, statements) in cases {
        let query = if tz.is_empty() {
            String::new()
        } else {
            format!("&tz={tz}")
        };
        let uri = |u: &str| format!("{p}/user/{u}/profile?days=90{query}");
        call(app, &uri(&users[0])).await?;
        let mut runs = Vec::new();
        for u in users {
            let t = Instant::now();
            call(app, &uri(u)).await?;
            runs.push(t.elapsed());
        }
        let (p50, p99) = summary(runs);
        let bind = |i: usize| {
            vec![
                BindValue::Time(start),
                BindValue::Text(users[i % users.len()].clone()),
            ]
        };
        baseline(pool, statements, &bind, 1).await?;
        let (b50, b99) = summary(baseline(pool, statements, &bind, users.len()).await?);
        println!(
            "| {name} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1}x |",
            if tz.is_empty() { "UTC" } else { tz },
            ms(p50),
            ms(p99),
            ms(b50),
            ms(b99),
            b50.as_secs_f64() / p50.as_secs_f64()
        );
    }
    Ok(())
}

/// The writer's throughput with the rollups (`write_batch`, as the
/// processor calls it) and without them (`write_batch_without_rollups`),
/// into the loaded table: batches alternate between the two so both see
/// the same table and machine load.
async fn writer_cost(args: &Args, pool: &PgPool) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(99);
    let now = Utc::now();
    let actions: Vec<ActivityType> = ActivityType::catalogue().collect();
    let events: Vec<Activity> = (0..args.writer_events)
        .map(|i| {
            let mut a = Activity::at(
                actions[rng.random_range(0..actions.len())].clone(),
                now + TimeDelta::milliseconds(i as i64),
            )
            .resource("case", format!("c-{}", rng.random_range(0..1_000_000)));
            if rng.random_range(0..100) >= 3 {
                a = a.user_id(format!("user-{}", user_of(&mut rng, args.users)));
            }
            a
        })
        .collect();
    let batch = args.writer_batch;
    let (mut with, mut without) = (Duration::ZERO, Duration::ZERO);
    let (mut n_with, mut n_without) = (0usize, 0usize);
    for (i, chunk) in events.chunks(batch).enumerate() {
        let t = Instant::now();
        if i % 2 == 0 {
            write_batch(pool, chunk).await?;
            with += t.elapsed();
            n_with += chunk.len();
        } else {
            write_batch_without_rollups(pool, chunk, InsertMethod::default()).await?;
            without += t.elapsed();
            n_without += chunk.len();
        }
    }
    let rate_with = n_with as f64 / with.as_secs_f64();
    let rate_without = n_without as f64 / without.as_secs_f64();
    println!();
    println!(
        "writer, {} events in batches of {batch} into the loaded table, alternating: \
         {rate_with:.0} events/s with rollups, {rate_without:.0} events/s without \
         (with rollups = {:.0}% of the throughput without)",
        args.writer_events,
        100.0 * rate_with / rate_without
    );
    Ok(())
}
