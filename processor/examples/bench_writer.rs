//! Writer throughput against `COPY`: the baseline is `psql \copy` of the
//! same rows (CSV) into an identical empty table (same migrations, indexes
//! and partitions) in a scratch database; then the batch writer
//! (`write_batch_with`, one writer, as one processor runs it) into another
//! fresh scratch database, for each insert method and batch size asked.
//! Prints rows/s of each and the ratio against `COPY` measured in the same
//! run. Scratch databases and the CSV file are removed at the end.
//!
//! ```text
//! cargo run --release -p activity-processor --example bench_writer -- \
//!     --events 1000000 --batch-sizes 500,1000,5000 --methods unnest,copy
//! ```
//!
//! Run through `bench/writer_vs_copy.sh`.

#[path = "bench_support/mod.rs"]
mod bench_support;
use bench_support::{count, drop_database, scratch, write_csv};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use activity_store::rollups;
use activity_store::writer::{InsertMethod, write_batch_with, write_batch_without_rollups};
use activity_tracker::{Activity, ActivityType};
use anyhow::{Context, bail};
use chrono::{DateTime, Duration, Utc};
use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};
use uuid::{Timestamp, Uuid};

#[derive(Debug, Parser)]
struct Args {
    /// Events to write in each run.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Batch sizes to try, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    batch_sizes: Vec<usize>,
    /// Insert methods to try, comma-separated: `unnest` (INSERT ... SELECT
    /// FROM UNNEST ... ON CONFLICT DO NOTHING), `temp` (COPY into a temporary
    /// table, then INSERT ... SELECT ... ON CONFLICT DO NOTHING), `copy` (COPY
    /// into the table, UNNEST for a batch with a redelivered event),
    /// `statement` (the UNNEST insert and the rollups as one statement, no
    /// transaction), `auto` (the default: `statement` up to
    /// ONE_STATEMENT_MAX_ROWS events, `copy` above); each with `-raw`
    /// appended to skip the rollups and see what they cost.
    #[arg(long, value_delimiter = ',', default_value = "copy")]
    methods: Vec<String>,
    /// Server to make the scratch databases on (any database of it).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
}

const USER_AGENTS: [&str; 4] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "okhttp/4.12.0",
];

/// Realistic events: 5,000 users, the catalogue's actions, the details the
/// layer adds, spread over the last two hours in time order, v7 ids from
/// their own timestamps (as made at capture).
fn events(n: usize, now: DateTime<Utc>) -> Vec<Activity> {
    let mut rng = StdRng::seed_from_u64(7);
    let actions: Vec<ActivityType> = ActivityType::catalogue().collect();
    let span_us = 2 * 3600 * 1_000_000_i64;
    let start = now - Duration::microseconds(span_us);
    (0..n)
        .map(|i| {
            let at = start + Duration::microseconds(span_us * i as i64 / n.max(1) as i64);
            let user = rng.random_range(0..5000);
            let action = actions[rng.random_range(0..actions.len())].clone();
            let mut event = Activity::at(action, at)
                .user_id(format!("user-{user}"))
                .resource("case", format!("case-{}", rng.random_range(0..200_000)))
                .ip_address(IpAddr::V4(Ipv4Addr::new(
                    10,
                    rng.random_range(0..255),
                    rng.random_range(0..255),
                    rng.random_range(1..255),
                )))
                .user_agent(USER_AGENTS[user % USER_AGENTS.len()])
                .session_id(format!("sess-{user}-{}", user * 31 % 97))
                .detail("method", "POST")
                .detail("route", "/api/cases/{id}")
                .detail("status", 200)
                .detail("latency_ms", rng.random_range(1..400));
            let nanos = at.timestamp_subsec_nanos();
            event.id = Uuid::new_v7(Timestamp::from_unix(
                uuid::NoContext,
                at.timestamp() as u64,
                nanos,
            ));
            event
        })
        .collect()
}

/// The processor's default ROLLUP_FOLD_INTERVAL_MS.
const FOLD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let methods: Vec<(String, InsertMethod)> = args
        .methods
        .iter()
        .map(|name| match name.trim_end_matches("-raw") {
            "unnest" => Ok((name.clone(), InsertMethod::Unnest)),
            "temp" => Ok((name.clone(), InsertMethod::CopyTempTable)),
            "copy" => Ok((name.clone(), InsertMethod::CopyOptimistic)),
            "statement" => Ok((name.clone(), InsertMethod::OneStatement)),
            "auto" => Ok((name.clone(), InsertMethod::Auto)),
            other => bail!("unknown method {other:?}: use unnest, temp, copy, statement or auto"),
        })
        .collect::<anyhow::Result<_>>()?;
    if args.batch_sizes.contains(&0) {
        bail!("a batch size must be at least 1");
    }

    let now = Utc::now();
    let events = events(args.events, now);
    let first = events.first().map_or(now, |event| event.created_at);
    let tag = format!("{}_{}", std::process::id(), now.timestamp());
    let csv = std::env::temp_dir().join(format!("bench_writer_{tag}.csv"));
    write_csv(&csv, &events)?;

    let mut admin = PgConnection::connect(&args.database_url).await?;
    let mut databases = Vec::new();
    let result = async {
        println!(
            "events: {}; each writer run is paired with a psql \\copy (CSV) run of the same \
             rows just before it, each into a fresh identical table",
            events.len()
        );
        println!(
            "{:<10} {:>6} {:>12} {:>12} {:>9}",
            "method", "batch", "copy rows/s", "rows/s", "vs COPY"
        );
        let (mut writer_total, mut copy_total) = (0.0, 0.0);
        for (method_name, method) in &methods {
            for &batch_size in &args.batch_sizes {
                // Baseline: psql \copy of the same rows into an identical table.
                let name = format!("bench_writer_{tag}_copy");
                databases.push(name.clone());
                let url = scratch(&mut admin, &args.database_url, &name, first).await?;
                let started = Instant::now();
                let status = std::process::Command::new("psql")
                    .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", &url, "-c"])
                    .arg(format!(
                        "\\copy user_activity_logs (id, user_id, action, resource_type, \
                         resource_id, details, ip_address, user_agent, session_id, created_at) \
                         FROM '{}' WITH (FORMAT csv)",
                        csv.display()
                    ))
                    .status()
                    .context("running psql")?;
                let copy_secs = started.elapsed().as_secs_f64();
                if !status.success() {
                    bail!("psql \\copy failed: {status}");
                }
                let stored = count(&url).await?;
                if stored != events.len() as i64 {
                    bail!("COPY stored {stored} rows of {}", events.len());
                }
                drop_database(&mut admin, &name).await?;

                let name = format!(
                    "bench_writer_{tag}_{}_{batch_size}",
                    method_name.replace('-', "_")
                );
                databases.push(name.clone());
                let url = scratch(&mut admin, &args.database_url, &name, first).await?;
                let pool = PgPoolOptions::new()
                    .max_connections(2)
                    .connect(&url)
                    .await?;
                let started = Instant::now();
                let mut inserted = 0;
                // The writer leaves per-user counts pending, which a
                // processor folds on a timer (ROLLUP_FOLD_INTERVAL_MS):
                // folded here as often as by default, in the writer's time,
                // and once more at the end.
                let mut folded_at = Instant::now();
                for chunk in events.chunks(batch_size) {
                    if !method_name.ends_with("-raw") && folded_at.elapsed() >= FOLD_INTERVAL {
                        rollups::fold_pending(&pool).await?;
                        folded_at = Instant::now();
                    }
                    inserted += if method_name.ends_with("-raw") {
                        write_batch_without_rollups(&pool, chunk, *method).await?
                    } else {
                        write_batch_with(&pool, chunk, *method).await?
                    }
                    .inserted;
                }
                if !method_name.ends_with("-raw") {
                    rollups::fold_pending(&pool).await?;
                }
                let secs = started.elapsed().as_secs_f64();
                pool.close().await;
                if inserted != events.len() as u64 || count(&url).await? != events.len() as i64 {
                    bail!("the writer stored {inserted} rows of {}", events.len());
                }
                drop_database(&mut admin, &name).await?;

                let copy_rate = events.len() as f64 / copy_secs;
                let rate = events.len() as f64 / secs;
                writer_total += secs;
                copy_total += copy_secs;
                println!(
                    "{method_name:<10} {batch_size:>6} {copy_rate:>12.0} {rate:>12.0} {:>8.1}%",
                    100.0 * rate / copy_rate
                );
            }
        }
        if methods.len() * args.batch_sizes.len() > 1 {
            println!(
                "all runs: writer {:.1}% of COPY",
                100.0 * copy_total / writer_total
            );
        }
        Ok(())
    }
    .await;

    for name in &databases {
        let _ = drop_database(&mut admin, name).await;
    }
    let _ = std::fs::remove_file(&csv);
    result
}
