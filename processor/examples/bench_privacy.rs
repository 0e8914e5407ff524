//! Erasure and export at scale: loads `--rows` activities (default
//! 10,000,000) over 90 days into a scratch database with `COPY`, among
//! them two users of `--target-rows` rows each (default 100,000) and one of
//! `--export-rows` (default 1,000,000); rebuilds the rollups. Then, with a
//! drain running (the consumer's writer: `DB_WRITERS` tasks writing
//! `BATCH_SIZE` batches through `write_batch`, and the fold timer):
//!
//! - the drain's rate alone (the baseline), then while one user is erased
//!   with `mode=delete`, again alone, then while the other is erased with
//!   `mode=pseudonymize`: each erasure's time and the drain's rate during it
//!   as a ratio of the baseline measured just before;
//! - last, with the drain stopped, the export of the large user through
//!   the admin router (NDJSON), its rows, time and the growth of this
//!   process's RSS while it streams.
//!
//! The scratch database is dropped at the end.
//!
//! ```text
//! cargo run --release -p activity-processor --example bench_privacy -- --rows 10000000
//! ```
//!
//! Run through `bench/privacy_erasure.sh [ROWS]`.

#[path = "bench_support/mod.rs"]
mod bench_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use activity_processor::admin::{AdminAuth, AdminState, router};
use activity_processor::privacy::Privacy;
use activity_processor::stats::ProcessorStats;
use activity_store::privacy::{ErasureList, ErasureMode, ErasurePolicy, PseudonymKey};
use activity_store::{rollups, schema, writer};
use activity_tracker::{Activity, ActivityType};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, TimeDelta, Utc};
use clap::Parser;
use http_body_util::BodyExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tower::ServiceExt;
use uuid::{Timestamp, Uuid};

#[derive(Debug, Parser)]
struct Args {
    /// Rows to load.
    #[arg(long, default_value_t = 10_000_000)]
    rows: usize,
    /// Rows of each of the two users erased.
    #[arg(long, default_value_t = 100_000)]
    target_rows: usize,
    /// Rows of the user exported.
    #[arg(long, default_value_t = 1_000_000)]
    export_rows: usize,
    /// Days the rows span, ending now.
    #[arg(long, default_value_t = 90)]
    days: i64,
    /// Distinct other users.
    #[arg(long, default_value_t = 50_000)]
    users: usize,
    /// Writers of the drain (the processor's `DB_WRITERS`).
    #[arg(long, default_value_t = 3)]
    writers: usize,
    /// Events per batch of the drain (the processor's `BATCH_SIZE`).
    #[arg(long, default_value_t = 2000)]
    batch: usize,
    /// Seconds of each baseline measurement of the drain.
    #[arg(long, default_value_t = 15)]
    baseline_seconds: u64,
    /// Server to make the scratch database on (any database of it).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// Redis the admin state is given (not used by the export).
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
}

const DELETED: &str = "erase-delete";
const PSEUDONYMIZED: &str = "erase-pseudonymize";
const EXPORTED: &str = "export-me";
const PRIVACY_TOKEN: &str = "bench-privacy-token";

/// Streams the rows in `created_at` order with `COPY`: the targets'
/// rows spread evenly among the others.
async fn load(conn: &mut PgConnection, args: &Args, now: DateTime<Utc>) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(17);
    let span_ms = args.days * 86_400_000;
    let start = now - TimeDelta::milliseconds(span_ms);
    let mut copy = conn
        .copy_in_raw(
            "COPY user_activity_logs (id, user_id, action, resource_type, resource_id, \
             details, ip_address, user_agent, session_id, created_at) \
             FROM STDIN WITH (FORMAT csv)",
        )
        .await?;
    let every = |n: usize| (args.rows / n.max(1)).max(1);
    let (del, pse, exp) = (
        every(args.target_rows),
        every(args.target_rows),
        every(args.export_rows),
    );
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
        let user = if i % del == 0 {
            DELETED.to_owned()
        } else if i % pse == 1 {
            PSEUDONYMIZED.to_owned()
        } else if i % exp == 2 {
            EXPORTED.to_owned()
        } else {
            format!("user-{}", rng.random_range(0..args.users))
        };
        let at = at.format("%Y-%m-%d %H:%M:%S%.3f+00");
        let (a, b) = (rng.random_range(1..255), rng.random_range(1..255));
        use std::fmt::Write as _;
        writeln!(
            buf,
            "{id},{user},case_view,case,c-{a}{b},\"{{\"\"method\"\":\"\"GET\"\",\"\"status\"\":200,\"\"email\"\":\"\"x@example.com\"\"}}\",10.1.{a}.{b},Agent/{a},s-{a}{b},{at}"
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

/// The drain: `writers` tasks writing batches of new events until stopped,
/// and the fold timer of the processor.
struct Drain {
    rows: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drain {
    fn start(pool: &PgPool, args: &Args) -> Self {
        let rows = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..args.writers {
            let (pool, rows, stop) = (pool.clone(), rows.clone(), stop.clone());
            let (batch, users) = (args.batch, args.users);
            tasks.push(tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(w as u64 + 100);
                while !stop.load(Ordering::Relaxed) {
                    let events: Vec<Activity> = (0..batch)
                        .map(|_| {
                            Activity::new(ActivityType::CaseView)
                                .user_id(format!("user-{}", rng.random_range(0..users)))
                                .ip_address([10, 2, rng.random(), rng.random()].into())
                                .detail("status", 200)
                        })
                        .collect();
                    let outcome = writer::write_batch(&pool, &events).await?;
                    rows.fetch_add(outcome.inserted, Ordering::Relaxed);
                }
                Ok(())
            }));
        }
        let (pool, stop2) = (pool.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop2.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(2)).await;
                rollups::try_fold_pending(&pool).await?;
            }
            Ok(())
        }));
        Drain { rows, stop, tasks }
    }

    fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await??;
        }
        Ok(())
    }
}

/// Rows per second the drain writes over `seconds`.
async fn drain_rate(drain: &Drain, seconds: u64) -> f64 {
    let (start, t) = (drain.rows(), Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    (drain.rows() - start) as f64 / t.elapsed().as_secs_f64()
}

/// Erases `user` in `mode` while the drain runs, after a baseline of the
/// drain alone; prints the erasure's time and the drain's rate ratio.
async fn erase_during_drain(
    pool: &PgPool,
    args: &Args,
    user: &str,
    mode: ErasureMode,
    policy: &ErasurePolicy,
) -> anyhow::Result<()> {
    let drain = Drain::start(pool, args);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let baseline = drain_rate(&drain, args.baseline_seconds).await;
    let (start, t) = (drain.rows(), Instant::now());
    let receipt =
        activity_store::privacy::erase_user(pool, user, mode, policy, &ErasureList::new()).await?;
    let took = t.elapsed().as_secs_f64();
    let during = (drain.rows() - start) as f64 / took;
    drain.stop().await?;
    println!(
        "erase mode={}: {} rows in {} partitions, {} rollup rows corrected: {took:.1} s \
         (target <= 30 s)",
        mode.as_str(),
        receipt.rows,
        receipt.partitions.len(),
        receipt.rollup_rows_corrected
    );
    println!(
        "  drain: {baseline:.0} rows/s alone, {during:.0} rows/s during the erasure: \
         ratio {:.2} (target >= 0.5)",
        during / baseline
    );
    Ok(())
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Exports the large user through the admin router, counting lines as the
/// body arrives (nothing kept), sampling this process's RSS meanwhile.
async fn export(pool: &PgPool, args: &Args) -> anyhow::Result<()> {
    let auth = AdminAuth::new(None, None).with_privacy_tokens(Some(PRIVACY_TOKEN));
    let state = AdminState::new(
        pool.clone(),
        redis::Client::open(args.redis_url.as_str())?,
        "bench-privacy",
        "activity-processor",
        Arc::new(ProcessorStats::new()),
        auth,
    )
    .with_privacy(Arc::new(Privacy::default()));
    let app = router(state);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss_kib();
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let t = Instant::now();
    let response = app
        .oneshot(
            Request::get(format!(
                "/api/v1/admin/user-activities/user/{EXPORTED}/export?format=ndjson"
            ))
            .header("authorization", format!("Bearer {PRIVACY_TOKEN}"))
            .body(Body::empty())?,
        )
        .await?;
    anyhow::ensure!(response.status() == StatusCode::OK, "{}", response.status());
    let mut body = response.into_body();
    let (mut lines, mut bytes) = (0u64, 0u64);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            lines += data.iter().filter(|b| **b == b'\n').count() as u64;
            bytes += data.len() as u64;
        }
    }
    let took = t.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    sampler.await?;
    let growth = peak.load(Ordering::Relaxed).saturating_sub(before) as f64 / 1024.0;
    println!(
        "export of {lines} rows ({:.0} MB of NDJSON) in {took:.1} s; RSS {:.1} MB before, \
         peak growth {growth:.1} MB (target <= 20 MB)",
        bytes as f64 / 1e6,
        before as f64 / 1024.0
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let now = Utc::now();
    let name = format!("bench_privacy_{}", std::process::id());
    let mut admin = PgConnection::connect(&args.database_url).await?;
    let start = now - TimeDelta::days(args.days);
    let url = bench_support::scratch(&mut admin, &args.database_url, &name, start).await?;
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .connect(&url)
        .await?;
    schema::ensure_partitions(&pool, now, 1).await?;
    let result = async {
        let t = Instant::now();
        let mut conn = PgConnection::connect(&url).await?;
        load(&mut conn, &args, now).await?;
        println!(
            "load (COPY) of {} rows: {:.1} s",
            args.rows,
            t.elapsed().as_secs_f64()
        );
        let t = Instant::now();
        rollups::rebuild_rollups(&pool, None).await?;
        sqlx::query("VACUUM ANALYZE").execute(&pool).await?;
        println!(
            "rebuild-rollups + VACUUM ANALYZE: {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let mut policy = ErasurePolicy::new(Some(PseudonymKey::new(b"bench pseudonym key")));
        policy.hold_days = 30;
        erase_during_drain(&pool, &args, DELETED, ErasureMode::Delete, &policy).await?;
        erase_during_drain(
            &pool,
            &args,
            PSEUDONYMIZED,
            ErasureMode::Pseudonymize,
            &policy,
        )
        .await?;
        export(&pool, &args).await
    }
    .await;
    pool.close().await;
    bench_support::drop_database(&mut admin, &name).await?;
    result
}
