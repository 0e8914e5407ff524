//! The processor end to end, as a separate process (the release binary):
//!
//! 1. throughput: `--events` events preloaded into two streams (pipelined
//!    `XADD`s: one entry per event, and v2 entries of `--entry-events`),
//!    each drained by `activity-processor serve` into an empty table;
//!    events/s against `psql \copy` of the same rows (CSV) into an identical
//!    empty table, measured in the same run, and v2 against v1; the
//!    processor's peak RSS (`VmHWM` of `/proc/<pid>/status`) while draining;
//! 2. latency: a steady `--rate` events/s for `--seconds` seconds; for each
//!    event the time from just before its `XADD` to its row being visible
//!    (a poller reads new rows every 10 ms), p50/p99/max against the bound
//!    `FLUSH_INTERVAL_MS` + 100 ms.
//!
//! A private `redis-server` on a free port holds the streams; the scratch
//! databases are made on `DATABASE_URL`'s server and dropped at the end.
//!
//! ```text
//! cargo build --release -p activity-processor --bin activity-processor --example bench_processor
//! target/release/examples/bench_processor --events 1000000
//! ```
//!
//! Run through `bench/processor_throughput.sh`.

#[path = "bench_support/mod.rs"]
mod bench_support;
use bench_support::processes::{Reaped, event, free_port, start_redis, stop, stream_backlog};
use bench_support::{count, scratch, write_csv};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use activity_store::rollups;
use activity_tracker::{Activity, WireBatch};
use anyhow::{Context, bail};
use chrono::{DateTime, Duration, Utc};
use clap::Parser;
use rand::SeedableRng;
use rand::rngs::StdRng;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use uuid::Uuid;

#[derive(Debug, Parser)]
struct Args {
    /// Events preloaded for the throughput run.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Events per entry of the v2 stream drained after the v1 one.
    #[arg(long, default_value_t = 1000)]
    entry_events: usize,
    /// Events per second in the latency run.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Length of the latency run, in seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// `BATCH_SIZE` given to the processor (unset: its default).
    #[arg(long)]
    batch_size: Option<usize>,
    /// `FLUSH_INTERVAL_MS` given to the processor (unset: its default).
    #[arg(long)]
    flush_interval_ms: Option<u64>,
    /// The processor binary.
    #[arg(long, default_value = "target/release/activity-processor")]
    processor_bin: PathBuf,
    /// Server to make the scratch databases on (any database of it).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
}

/// How often the latency run looks for new rows: often enough to add
/// little to the figures, seldom enough not to load the database it measures.
const POLL_MS: u64 = 10;

fn start_processor(
    args: &Args,
    redis_url: &str,
    database_url: &str,
    stream: &str,
) -> anyhow::Result<(Reaped, u16)> {
    let port = free_port()?;
    let mut command = Command::new(&args.processor_bin);
    command
        .arg("serve")
        .env("REDIS_URL", redis_url)
        .env("DATABASE_URL", database_url)
        .env("STREAM_KEY", stream)
        .env("CONSUMER_NAME", "bench")
        .env("ADMIN_LISTEN", format!("127.0.0.1:{port}"))
        .env("LOG_LEVEL", "warn")
        .env_remove("LEGACY_LIST_KEY");
    if let Some(size) = args.batch_size {
        command.env("BATCH_SIZE", size.to_string());
    }
    if let Some(ms) = args.flush_interval_ms {
        command.env("FLUSH_INTERVAL_MS", ms.to_string());
    }
    let child = command
        .spawn()
        .with_context(|| format!("running {}", args.processor_bin.display()))?;
    Ok((Reaped(child), port))
}

/// Mean database write time (ms) and batches, from the processor's
/// `/metrics` (`activity_processor_write_seconds` histogram).
async fn write_time(port: u16) -> anyhow::Result<(f64, f64)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    let value = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let sum = value("activity_processor_write_seconds_sum");
    let count = value("activity_processor_write_seconds_count");
    Ok((
        if count > 0.0 {
            1000.0 * sum / count
        } else {
            0.0
        },
        count,
    ))
}

/// `VmHWM` (peak resident set) of `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The command name and the CPU times (utime, stime, cutime, cstime, in
/// seconds) of `/proc/<pid>/stat` at `path`.
fn stat_times(path: &std::path::Path) -> Option<(String, [f64; 4])> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name is in parentheses; the fields after it, from the
    // last ')', start with field 3 (the state): utime is field 14.
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let mut times = stat[close + 2..].split_whitespace().skip(11);
    let mut next = || Some(times.next()?.parse::<f64>().ok()? / 100.0);
    // Clock ticks are 100 per second on Linux.
    let times = [next()?, next()?, next()?, next()?];
    Some((stat[open + 1..close].to_owned(), times))
}

/// CPU seconds (user + system) used so far by `pid`.
fn cpu_secs(pid: u32) -> Option<f64> {
    let (_, [user, system, _, _]) = stat_times(format!("/proc/{pid}/stat").as_ref())?;
    Some(user + system)
}

/// CPU seconds (user + system) used so far by the PostgreSQL server on this
/// machine: every `postgres` process's own time, plus the time of the
/// backends that have exited, which the postmaster collected as its
/// children's.
fn postgres_cpu_secs() -> f64 {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| stat_times(&entry.path().join("stat")))
        .filter(|(command, _)| command == "postgres")
        .map(|(_, times)| times.iter().sum::<f64>())
        .sum()
}

/// CPU seconds (user + system) used so far by the Redis behind `conn`.
async fn redis_cpu_secs(conn: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<f64> {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(conn).await?;
    Ok(info
        .lines()
        .filter(|l| l.starts_with("used_cpu_sys:") || l.starts_with("used_cpu_user:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum())
}

async fn throughput(
    args: &Args,
    redis_url: &str,
    admin: &mut PgConnection,
    tag: &str,
) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(7);
    let now = Utc::now();
    let span_us = 3600 * 1_000_000_i64;
    let events: Vec<Activity> = (0..args.events)
        .map(|i| {
            let at = now - Duration::microseconds(span_us)
                + Duration::microseconds(span_us * i as i64 / args.events.max(1) as i64);
            event(&mut rng, at)
        })
        .collect();

    // Baseline: psql \copy of the same rows into an identical empty table.
    let csv = std::env::temp_dir().join(format!("bench_processor_{tag}.csv"));
    write_csv(&csv, &events)?;
    let copy_name = format!("bench_processor_{tag}_copy");
    let copy_url = scratch(
        admin,
        &args.database_url,
        &copy_name,
        Utc::now() - Duration::days(1),
    )
    .await?;
    let postgres_cpu_before = postgres_cpu_secs();
    let started = Instant::now();
    let status = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", &copy_url, "-c"])
        .arg(format!(
            "\\copy user_activity_logs (id, user_id, action, resource_type, resource_id, \
             details, ip_address, user_agent, session_id, created_at) FROM '{}' WITH (FORMAT csv)",
            csv.display()
        ))
        .status()
        .context("running psql")?;
    let copy_secs = started.elapsed().as_secs_f64();
    let copy_postgres_cpu = postgres_cpu_secs() - postgres_cpu_before;
    let _ = std::fs::remove_file(&csv);
    if !status.success() {
        bail!("psql \\copy failed: {status}");
    }
    if count(&copy_url).await? != events.len() as i64 {
        bail!("COPY stored a different number of rows");
    }
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE {copy_name} WITH (FORCE)"
    )))
    .execute(&mut *admin)
    .await?;

    // Preload both streams: one entry per event (v1), and the tracker's
    // v2 entries of `--entry-events` events (the lines the tracker's
    // `WireBatch` writes, as one `XADD n events`).
    let client = redis::Client::open(redis_url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut streams = Vec::new();
    for (shape, per_entry) in [("v1", 1), ("v2", args.entry_events.max(1))] {
        let stream = format!("bench:{tag}:{shape}");
        let started = Instant::now();
        for chunk in events.chunks(10_000) {
            let mut pipe = redis::pipe();
            if per_entry == 1 {
                for event in chunk {
                    pipe.cmd("XADD")
                        .arg(&stream)
                        .arg("*")
                        .arg("data")
                        .arg(event.to_wire_json())
                        .ignore();
                }
            } else {
                for entry in chunk.chunks(per_entry) {
                    let batch = WireBatch::from(entry);
                    pipe.cmd("XADD")
                        .arg(&stream)
                        .arg("*")
                        .arg("n")
                        .arg(batch.len())
                        .arg("events")
                        .arg(batch.as_bytes())
                        .ignore();
                }
            }
            pipe.query_async::<()>(&mut conn).await?;
        }
        // The group the processor would create, so that XPENDING answers
        // from the first poll.
        let _: () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&stream)
            .arg("activity-processor")
            .arg("0")
            .query_async(&mut conn)
            .await?;
        streams.push((shape, per_entry, stream, started.elapsed().as_secs_f64()));
    }
    drop(events);

    let copy_rate = args.events as f64 / copy_secs;
    println!("throughput: {} events", args.events);
    println!(
        "  baseline psql \\copy (CSV): {copy_secs:.2} s, {copy_rate:.0} rows/s; \
         PostgreSQL CPU {copy_postgres_cpu:.1} s"
    );
    let mut rates = Vec::new();
    for (shape, per_entry, stream, preload_secs) in streams {
        println!(
            "  {shape} entries ({per_entry} event(s) each), preloaded in {preload_secs:.1} s:"
        );
        let rate = drain(args, redis_url, admin, tag, &mut conn, &stream, copy_rate).await?;
        rates.push(rate);
    }
    println!(
        "  v2 drain / v1 drain: {:.3} (target >= 1)",
        rates[1] / rates[0]
    );
    Ok(())
}

/// Drains `stream` (preloaded with `args.events` events) with the release
/// processor into an empty table; prints its figures and returns its
/// events/s.
async fn drain(
    args: &Args,
    redis_url: &str,
    admin: &mut PgConnection,
    tag: &str,
    conn: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    copy_rate: f64,
) -> anyhow::Result<f64> {
    let name = format!("bench_processor_{tag}_drain");
    let url = scratch(
        admin,
        &args.database_url,
        &name,
        Utc::now() - Duration::days(1),
    )
    .await?;
    let redis_cpu_before = redis_cpu_secs(conn).await?;
    let postgres_cpu_before = postgres_cpu_secs();
    let started = Instant::now();
    let (processor, _) = start_processor(args, redis_url, &url, stream)?;
    let pid = processor.0.id();
    let mut peak = 0;
    loop {
        peak = peak.max(peak_rss_kib(pid).unwrap_or(0));
        let (length, pending) = stream_backlog(conn, stream).await?;
        if length == 0 && pending == 0 {
            break;
        }
        if started.elapsed() > StdDuration::from_secs(1800) {
            bail!("not drained after 30 minutes: {length} left");
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    let drain_secs = started.elapsed().as_secs_f64();
    peak = peak.max(peak_rss_kib(pid).unwrap_or(0));
    let processor_cpu = cpu_secs(pid).unwrap_or(f64::NAN);
    let redis_cpu = redis_cpu_secs(conn).await? - redis_cpu_before;
    let postgres_cpu = postgres_cpu_secs() - postgres_cpu_before;
    stop(processor)?;
    let stored = count(&url).await?;
    // What the processor's fold timer had not folded yet when the stream
    // was drained: the next fold's (or admin query's) work.
    let pool = sqlx::PgPool::connect(&url).await?;
    let fold_started = Instant::now();
    let left = rollups::fold_pending(&pool).await?;
    let fold_secs = fold_started.elapsed().as_secs_f64();
    pool.close().await;
    sqlx::query(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
        .execute(&mut *admin)
        .await?;
    let _: () = redis::cmd("DEL").arg(stream).query_async(conn).await?;
    if stored != args.events as i64 {
        bail!("the processor stored {stored} rows of {}", args.events);
    }

    let rate = args.events as f64 / drain_secs;
    println!(
        "    processor drain (start to XLEN 0, XPENDING 0): {drain_secs:.2} s, {rate:.0} events/s = {:.0}% of COPY (target >= 80%)",
        100.0 * rate / copy_rate
    );
    let events = args.events as f64;
    println!(
        "    CPU while draining: processor {processor_cpu:.1} s, Redis {redis_cpu:.1} s, \
         PostgreSQL {postgres_cpu:.1} s (of {:.1} s of two cores); per event: \
         processor {:.2} us, Redis {:.2} us, PostgreSQL {:.2} us",
        2.0 * drain_secs,
        processor_cpu * 1e6 / events,
        redis_cpu * 1e6 / events,
        postgres_cpu * 1e6 / events,
    );
    println!(
        "    per-user counts left pending at the end: {left} rows, folded in {fold_secs:.2} s"
    );
    let with_fold = events / (drain_secs + fold_secs);
    println!(
        "    drain and that fold: {:.2} s, {with_fold:.0} events/s = {:.0}% of COPY",
        drain_secs + fold_secs,
        100.0 * with_fold / copy_rate
    );
    println!(
        "    processor peak RSS (VmHWM) while draining: {:.1} MB (target < 100 MB)",
        peak as f64 / 1024.0
    );
    Ok(rate)
}

async fn latency(
    args: &Args,
    redis_url: &str,
    admin: &mut PgConnection,
    tag: &str,
) -> anyhow::Result<()> {
    let name = format!("bench_processor_{tag}_latency");
    let url = scratch(
        admin,
        &args.database_url,
        &name,
        Utc::now() - Duration::days(1),
    )
    .await?;
    let stream = format!("bench:{tag}:latency");
    let (processor, port) = start_processor(args, redis_url, &url, &stream)?;
    // Let it connect and create the group before timing anything.
    tokio::time::sleep(StdDuration::from_millis(500)).await;

    let sent: Arc<Mutex<HashMap<Uuid, Instant>>> = Arc::default();
    let total = args.rate * args.seconds;
    let producer = {
        let sent = sent.clone();
        let client = redis::Client::open(redis_url)?;
        let stream = stream.clone();
        let period = StdDuration::from_secs_f64(1.0 / args.rate as f64);
        tokio::spawn(async move {
            let mut conn = client.get_multiplexed_async_connection().await?;
            let mut rng = StdRng::seed_from_u64(11);
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for _ in 0..total {
                ticker.tick().await;
                let activity = event(&mut rng, Utc::now());
                let json = activity.to_wire_json();
                sent.lock().unwrap().insert(activity.id, Instant::now());
                let _: String = redis::cmd("XADD")
                    .arg(&stream)
                    .arg("*")
                    .arg("data")
                    .arg(json)
                    .query_async(&mut conn)
                    .await?;
            }
            anyhow::Ok(())
        })
    };

    // The processor's writers may commit batches out of stream order: look
    // a few seconds behind the newest row seen, and count each row once.
    let mut conn = PgConnection::connect(&url).await?;
    let mut newest = Utc::now() - Duration::hours(1);
    let mut latencies: Vec<f64> = Vec::with_capacity(total as usize);
    let deadline = Instant::now() + StdDuration::from_secs(args.seconds + 30);
    while (latencies.len() as u64) < total && Instant::now() < deadline {
        let rows: Vec<(Uuid, DateTime<Utc>)> = sqlx::query_as(
            "SELECT id, created_at FROM user_activity_logs WHERE created_at > $1 ORDER BY created_at",
        )
        .bind(newest - Duration::seconds(5))
        .fetch_all(&mut conn)
        .await?;
        let seen = Instant::now();
        {
            let mut sent = sent.lock().unwrap();
            for (id, created_at) in &rows {
                if let Some(at) = sent.remove(id) {
                    latencies.push(seen.duration_since(at).as_secs_f64() * 1000.0);
                }
                newest = newest.max(*created_at);
            }
        }
        tokio::time::sleep(StdDuration::from_millis(POLL_MS)).await;
    }
    producer.await??;
    let (write_ms, batches) = write_time(port).await?;
    stop(processor)?;
    drop(conn);
    sqlx::query(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
        .execute(&mut *admin)
        .await?;
    if (latencies.len() as u64) < total {
        bail!("only {} of {total} rows became visible", latencies.len());
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    let flush = args
        .flush_interval_ms
        .map_or("default".to_owned(), |ms| ms.to_string());
    println!(
        "latency at {} events/s for {} s ({total} events), FLUSH_INTERVAL_MS={flush}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (bound: FLUSH_INTERVAL_MS + 100 ms; rows polled every {POLL_MS} ms)",
        args.rate,
        args.seconds,
        at(0.50),
        at(0.99),
        latencies[latencies.len() - 1]
    );
    println!("  processor: {batches} batches, mean database write {write_ms:.1} ms");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.processor_bin.is_file() {
        bail!(
            "{} not found: cargo build --release -p activity-processor first",
            args.processor_bin.display()
        );
    }
    let tag = format!("{}_{}", std::process::id(), Utc::now().timestamp());
    let dir = std::env::temp_dir().join(format!("bench_processor_redis_{tag}"));
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let redis = start_redis(port, &dir)?;
    let redis_url = format!("redis://127.0.0.1:{port}");
    let mut admin = PgConnection::connect(&args.database_url).await?;

    let result = async {
        if args.events > 0 {
            throughput(&args, &redis_url, &mut admin, &tag).await?;
        }
        if args.seconds > 0 {
            latency(&args, &redis_url, &mut admin, &tag).await?;
        }
        anyhow::Ok(())
    }
    .await;
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
    result
}
