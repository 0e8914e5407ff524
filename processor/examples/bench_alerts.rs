//! The alert rules' cost and speed, with the release binary as a separate
//! process (docs/benchmarks.md, "Alert rules"):
//!
//! 1. drain: `--events` events preloaded into a stream, drained by
//!    `activity-processor serve` into an empty table, three ways per round:
//!    without the inbox trigger at all, with it and `ALERT_RULES=none`, and
//!    with the three built-in rules; events/s of each, the ratio of the
//!    rules' drain to the two others, and how long after the drain the
//!    evaluation caught up (inbox empty). Medians over `--rounds` rounds,
//!    the three ways in turn so that drift of the machine hits them alike.
//! 2. latency: a steady `--rate` events/s for `--seconds` seconds with the
//!    built-in rules; each second one new user sends 51 of those events,
//!    crossing `rate`'s threshold; for each, the time from just before the
//!    `XADD` of its 51st event to its alert row being visible (polled every
//!    10 ms), p50/p99/max against the bound `FLUSH_INTERVAL_MS` + 1 s.
//!
//! ```text
//! cargo build --release -p activity-processor --bin activity-processor --example bench_alerts
//! target/release/examples/bench_alerts --events 200000
//! ```
//!
//! Run through `bench/alerts.sh`.

#[path = "bench_support/mod.rs"]
mod bench_support;
use bench_support::processes::{Reaped, event, free_port, start_redis, stop, stream_backlog};
use bench_support::{count, drop_database, scratch};

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration as StdDuration, Instant};

use anyhow::{Context, bail};
use chrono::{Duration, Utc};
use clap::Parser;
use rand::SeedableRng;
use rand::rngs::StdRng;
use sqlx::{Connection, PgConnection};

#[derive(Debug, Parser)]
struct Args {
    /// Events preloaded for each drain.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Rounds of the three drains; medians are printed.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Events per second in the latency run.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Length of the latency run, in seconds (0: no latency run).
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// `FLUSH_INTERVAL_MS` given to the processor.
    #[arg(long, default_value_t = 200)]
    flush_interval_ms: u64,
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

/// The three ways a drain runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Way {
    /// The inbox trigger dropped: the store as it was before alerts.
    NoTrigger,
    /// The trigger fills the inbox; `ALERT_RULES=none` empties it.
    RulesOff,
    /// The three built-in rules.
    BuiltIn,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::NoTrigger => "no inbox trigger",
            Way::RulesOff => "ALERT_RULES=none",
            Way::BuiltIn => "built-in rules",
        }
    }
}

fn start_processor(
    args: &Args,
    redis_url: &str,
    database_url: &str,
    stream: &str,
    way: Way,
) -> anyhow::Result<Reaped> {
    let port = free_port()?;
    let mut command = Command::new(&args.processor_bin);
    command
        .arg("serve")
        .env("REDIS_URL", redis_url)
        .env("DATABASE_URL", database_url)
        .env("STREAM_KEY", stream)
        .env("CONSUMER_NAME", "bench")
        .env("ADMIN_LISTEN", format!("127.0.0.1:{port}"))
        .env("LOG_LEVEL", "error")
        .env("FLUSH_INTERVAL_MS", args.flush_interval_ms.to_string())
        .env_remove("LEGACY_LIST_KEY")
        .env_remove("ALERT_WEBHOOK_URLS");
    match way {
        Way::BuiltIn => command.env_remove("ALERT_RULES"),
        Way::NoTrigger | Way::RulesOff => command.env("ALERT_RULES", "none"),
    };
    let child = command
        .spawn()
        .with_context(|| format!("running {}", args.processor_bin.display()))?;
    Ok(Reaped(child))
}

async fn preload(
    conn: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    events: usize,
    seed: u64,
) -> anyhow::Result<()> {
    // The group first, so that the drain's end can be read before the
    // processor has made it.
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg("activity-processor")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await?;
    let mut rng = StdRng::seed_from_u64(seed);
    let start = Utc::now() - Duration::seconds(60);
    let mut pipe = redis::pipe();
    for i in 0..events {
        let at = start + Duration::microseconds((60_000_000 * i / events.max(1)) as i64);
        pipe.cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg("data")
            .arg(event(&mut rng, at).to_wire_json())
            .ignore();
        if i % 5000 == 4999 {
            pipe.query_async::<()>(conn).await?;
            pipe = redis::pipe();
        }
    }
    if events % 5000 != 0 {
        pipe.query_async::<()>(conn).await?;
    }
    Ok(())
}

/// One drain: events/s, seconds from the drain's end to an empty inbox,
/// alerts raised.
async fn drain(
    args: &Args,
    redis_url: &str,
    admin: &mut PgConnection,
    conn: &mut redis::aio::MultiplexedConnection,
    tag: &str,
    way: Way,
    round: usize,
) -> anyhow::Result<(f64, f64, i64)> {
    let name = format!("bench_alerts_{tag}_drain");
    let url = scratch(
        admin,
        &args.database_url,
        &name,
        Utc::now() - Duration::days(1),
    )
    .await?;
    let mut db = PgConnection::connect(&url).await?;
    if way == Way::NoTrigger {
        sqlx::query("DROP TRIGGER user_activity_alert_inbox_fill ON user_activity_logs")
            .execute(&mut db)
            .await?;
    }
    let stream = format!("bench:alerts:{tag}:drain");
    preload(conn, &stream, args.events, round as u64).await?;
    let started = Instant::now();
    let processor = start_processor(args, redis_url, &url, &stream, way)?;
    while stream_backlog(conn, &stream).await? != (0, 0) {
        if started.elapsed() > StdDuration::from_secs(1800) {
            bail!("not drained after 30 minutes");
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    let drain_secs = started.elapsed().as_secs_f64();
    let caught_up = Instant::now();
    loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM user_activity_alert_inbox")
            .fetch_one(&mut db)
            .await?;
        if left == 0 || way == Way::NoTrigger {
            break;
        }
        if caught_up.elapsed() > StdDuration::from_secs(1800) {
            bail!("evaluation not caught up after 30 minutes: {left} left");
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    let catch_up_secs = caught_up.elapsed().as_secs_f64();
    stop(processor)?;
    let alerts: i64 = sqlx::query_scalar("SELECT count(*) FROM user_activity_alerts")
        .fetch_one(&mut db)
        .await?;
    drop(db);
    let stored = count(&url).await?;
    drop_database(admin, &name).await?;
    let _: () = redis::cmd("DEL").arg(&stream).query_async(conn).await?;
    if stored != args.events as i64 {
        bail!("the processor stored {stored} rows of {}", args.events);
    }
    Ok((args.events as f64 / drain_secs, catch_up_secs, alerts))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn drains(
    args: &Args,
    redis_url: &str,
    admin: &mut PgConnection,
    conn: &mut redis::aio::MultiplexedConnection,
    tag: &str,
) -> anyhow::Result<()> {
    let ways = [Way::NoTrigger, Way::RulesOff, Way::BuiltIn];
    let mut rates: HashMap<Way, Vec<f64>> = HashMap::new();
    let mut catch_ups = Vec::new();
    let mut alerts = Vec::new();
    println!(
        "drain of {} events (5,000 users, each event from a random address), {} rounds:",
        args.events, args.rounds
    );
    for round in 0..args.rounds {
        for way in ways {
            let (rate, catch_up, raised) =
                drain(args, redis_url, admin, conn, tag, way, round).await?;
            println!(
                "  round {}: {:>17}: {rate:.0} events/s{}",
                round + 1,
                way.name(),
                if way == Way::BuiltIn {
                    format!(
                        ", evaluation caught up {catch_up:.2} s after the drain, {raised} alerts"
                    )
                } else {
                    String::new()
                }
            );
            rates.entry(way).or_default().push(rate);
            if way == Way::BuiltIn {
                catch_ups.push(catch_up);
                alerts.push(raised as f64);
            }
        }
    }
    let mut m = |way: Way| median(rates.get_mut(&way).expect("measured"));
    let (none, off, on) = (m(Way::NoTrigger), m(Way::RulesOff), m(Way::BuiltIn));
    println!(
        "  medians: no trigger {none:.0}, ALERT_RULES=none {off:.0}, built-in rules {on:.0} events/s"
    );
    println!(
        "  built-in rules / ALERT_RULES=none: {:.3} (target >= 0.85); built-in rules / no trigger: {:.3}",
        on / off,
        on / none
    );
    println!(
        "  evaluation caught up (median) {:.2} s after the drain; alerts (median) {:.0}",
        median(&mut catch_ups),
        median(&mut alerts)
    );
    Ok(())
}

async fn latency(
    args: &Args,
    redis_url: &str,
    admin: &mut PgConnection,
    tag: &str,
) -> anyhow::Result<()> {
    let name = format!("bench_alerts_{tag}_latency");
    let url = scratch(
        admin,
        &args.database_url,
        &name,
        Utc::now() - Duration::days(1),
    )
    .await?;
    let stream = format!("bench:alerts:{tag}:latency");
    let processor = start_processor(args, redis_url, &url, &stream, Way::BuiltIn)?;
    tokio::time::sleep(StdDuration::from_millis(500)).await;

    let total = args.rate * args.seconds;
    let per_second = args.rate;
    if per_second < 60 {
        bail!("--rate must be at least 60 (each second holds one user's 51 events)");
    }
    let client = redis::Client::open(redis_url)?;
    let producer = {
        let stream = stream.clone();
        tokio::spawn(async move {
            let mut conn = client.get_multiplexed_async_connection().await?;
            let mut rng = StdRng::seed_from_u64(7);
            let period = StdDuration::from_secs_f64(1.0 / per_second as f64);
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            // Which events of each second are the burst's: every
            // (per_second / 51)-th, so the burst spreads over the second.
            let stride = per_second / 51;
            let mut crossed: HashMap<String, Instant> = HashMap::new();
            for i in 0..total {
                ticker.tick().await;
                let second = i / per_second;
                let slot = i % per_second;
                let burst_index = (slot % stride == 0)
                    .then_some(slot / stride)
                    .filter(|k| *k < 51);
                let mut activity = event(&mut rng, Utc::now());
                let attacker = format!("burst-{second}");
                if burst_index.is_some() {
                    activity = activity.user_id(attacker.clone());
                }
                let json = activity.to_wire_json();
                let sent = Instant::now();
                let _: String = redis::cmd("XADD")
                    .arg(&stream)
                    .arg("*")
                    .arg("data")
                    .arg(json)
                    .query_async(&mut conn)
                    .await?;
                if burst_index == Some(50) {
                    crossed.insert(attacker, sent);
                }
            }
            anyhow::Ok(crossed)
        })
    };

    let mut db = PgConnection::connect(&url).await?;
    let mut seen: HashMap<String, Instant> = HashMap::new();
    let deadline = Instant::now() + StdDuration::from_secs(args.seconds + 30);
    while (seen.len() as u64) < args.seconds && Instant::now() < deadline {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT group_value FROM user_activity_alerts WHERE rule = 'rate' AND group_kind = 'user'",
        )
        .fetch_all(&mut db)
        .await?;
        let now = Instant::now();
        for (group,) in rows {
            seen.entry(group).or_insert(now);
        }
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    let crossed = producer.await??;
    let counts: Vec<(String, i64)> = sqlx::query_as(
        "SELECT group_value, count FROM user_activity_alerts WHERE rule = 'rate' AND group_kind = 'user'",
    )
    .fetch_all(&mut db)
    .await?;
    stop(processor)?;
    drop(db);
    drop_database(admin, &name).await?;
    if counts.len() as u64 != args.seconds || counts.iter().any(|(_, n)| *n != 51) {
        bail!(
            "expected {} rate alerts of 51 events each, got {counts:?}",
            args.seconds
        );
    }
    let mut latencies: Vec<f64> = crossed
        .iter()
        .map(|(user, sent)| {
            seen.get(user).map_or(f64::INFINITY, |at| {
                at.duration_since(*sent).as_secs_f64() * 1000.0
            })
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "alert latency at {} events/s for {} s ({} bursts crossing `rate`), FLUSH_INTERVAL_MS={}: \
         p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (bound: FLUSH_INTERVAL_MS + 1000 ms = {} ms)",
        args.rate,
        args.seconds,
        latencies.len(),
        args.flush_interval_ms,
        at(0.5),
        at(0.99),
        latencies[latencies.len() - 1],
        args.flush_interval_ms + 1000
    );
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
    let dir = std::env::temp_dir().join(format!("bench_alerts_redis_{tag}"));
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let redis = start_redis(port, &dir)?;
    let redis_url = format!("redis://127.0.0.1:{port}");
    let mut admin = PgConnection::connect(&args.database_url).await?;
    let result = async {
        let client = redis::Client::open(redis_url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        if args.events > 0 && args.rounds > 0 {
            drains(&args, &redis_url, &mut admin, &mut conn, &tag).await?;
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
