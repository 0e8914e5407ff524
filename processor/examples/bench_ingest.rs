//! The ingest server's throughput against its baseline, in one run:
//!
//! - baseline: the same events as wire lines, each its own `XADD <key> *
//!   data <line>`, pipelined a batch (of `--batch-events`) at a time, over
//!   `--connections` connections: what a producer writing v1 entries
//!   itself costs;
//! - ingest: `activity-processor serve` with `SERVE_ROLES=ingest` (the
//!   release binary, a child process), sent the same events as Segment
//!   `track` messages, `POST /v1/batch` of `--batch-events` each, over
//!   `--connections` keep-alive connections from this process (the load
//!   generator, on the same machine), with gzip off, then on.
//!
//! Each prints events/s, CPU per event of the ingest process and of
//! Redis, and Redis's memory per event; `--rounds` rounds of the three
//! runs in turn (so a machine shared with other work slows each about
//! alike), then the medians and the ratio of the ingest's median events/s
//! to the baseline's. Every stream's events are counted back (the `n` of
//! each v2 entry) before a figure is printed. A private `redis-server` on
//! a free port holds the streams.
//!
//! ```text
//! cargo build --release -p activity-processor --bin activity-processor --example bench_ingest
//! target/release/examples/bench_ingest --events 200000
//! ```
//!
//! Run through `bench/ingest.sh`.

#[path = "bench_support/mod.rs"]
mod bench_support;
use bench_support::processes::{Reaped, event, free_port, start_redis, stop};

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use activity_tracker::Activity;
use anyhow::{Context, bail};
use bytes::Bytes;
use chrono::Utc;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
struct Args {
    /// Events sent in each run.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Events per request (and per baseline pipeline).
    #[arg(long, default_value_t = 100)]
    batch_events: usize,
    /// Concurrent connections of the load generator (and of the baseline).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Rounds of the three runs (baseline, gzip off, gzip on), in turn.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The processor binary.
    #[arg(long, default_value = "target/release/activity-processor")]
    processor_bin: PathBuf,
}

const WRITE_KEY: &str = "bench-write-key-0123456789";

/// The track message of an event, as a Segment SDK sends it.
fn segment_message(activity: &Activity) -> Value {
    let mut properties = activity.details.clone().unwrap_or_default();
    if let (Some(kind), Some(id)) = (&activity.resource_type, &activity.resource_id) {
        properties.insert("resource_type".into(), json!(kind));
        properties.insert("resource_id".into(), json!(id));
    }
    json!({
        "type": "track",
        "event": activity.action.as_str(),
        "userId": activity.user_id,
        "messageId": activity.id.to_string(),
        "timestamp": activity.created_at.to_rfc3339(),
        "properties": properties,
        "context": {
            "userAgent": activity.user_agent,
            "sessionId": activity.session_id,
            "library": {"name": "analytics-python", "version": "2.4.0"},
        },
    })
}

/// CPU seconds used so far by process `pid` (user + system, every thread).
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name (which may hold spaces), from
    // field 3 on: utime and stime are fields 14 and 15.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unreadable /proc stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    // USER_HZ is 100 on Linux.
    Ok(ticks / 100.0)
}

/// Events in `key`: the sum of the entries' `n` (1 for a v1 entry).
async fn stream_events(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
) -> anyhow::Result<u64> {
    let script = r"local total = 0
          for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
            local n = 1
            local fields = entry[2]
            for j = 1, #fields, 2 do
              if fields[j] == 'n' then n = tonumber(fields[j + 1]) end
            end
            total = total + n
          end
          return total";
    Ok(redis::cmd("EVAL")
        .arg(script)
        .arg(1)
        .arg(key)
        .query_async(conn)
        .await?)
}

/// A connection whose replies may take long (redis' default is 500 ms; a
/// script counting a stream of 200,000 entries takes longer).
async fn connect(client: &redis::Client) -> anyhow::Result<redis::aio::MultiplexedConnection> {
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(120)));
    Ok(client
        .get_multiplexed_async_connection_with_config(&config)
        .await?)
}

/// The bytes Redis holds for `key`, every entry counted.
async fn memory_usage(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
) -> anyhow::Result<u64> {
    Ok(redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .arg("SAMPLES")
        .arg(0)
        .query_async(conn)
        .await?)
}

struct Figures {
    events_per_second: f64,
    /// Redis's memory for the stream, per event (`MEMORY USAGE`).
    redis_bytes: f64,
    ingest_cpu_us: Option<f64>,
    redis_cpu_us: f64,
}

async fn baseline(
    redis_url: &str,
    redis_pid: u32,
    batches: Arc<Vec<Vec<String>>>,
    connections: usize,
    key: &str,
) -> anyhow::Result<Figures> {
    let client = redis::Client::open(redis_url)?;
    let events: usize = batches.iter().map(Vec::len).sum();
    let redis_before = cpu_seconds(redis_pid)?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..connections {
        let batches = batches.clone();
        let key = key.to_owned();
        let mut conn = connect(&client).await?;
        tasks.push(tokio::spawn(async move {
            for batch in batches.iter().skip(worker).step_by(connections) {
                let mut pipe = redis::pipe();
                for line in batch {
                    pipe.cmd("XADD").arg(&key).arg("*").arg("data").arg(line);
                }
                pipe.query_async::<()>(&mut conn).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let redis_cpu = cpu_seconds(redis_pid)? - redis_before;
    let mut conn = connect(&client).await?;
    let stored = stream_events(&mut conn, key).await?;
    if stored != events as u64 {
        bail!("baseline: {stored} events in the stream, {events} sent");
    }
    let memory = memory_usage(&mut conn, key).await?;
    redis::cmd("DEL")
        .arg(key)
        .query_async::<()>(&mut conn)
        .await?;
    Ok(Figures {
        events_per_second: events as f64 / seconds,
        redis_bytes: memory as f64 / events as f64,
        ingest_cpu_us: None,
        redis_cpu_us: redis_cpu * 1e6 / events as f64,
    })
}

async fn post_all(
    addr: std::net::SocketAddr,
    bodies: Arc<Vec<Bytes>>,
    gzip: bool,
    connections: usize,
) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for worker in 0..connections {
        let bodies = bodies.clone();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            let auth = format!(
                "Basic {}",
                base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    format!("{WRITE_KEY}:")
                )
            );
            for body in bodies.iter().skip(worker).step_by(connections) {
                let mut request = hyper::Request::post("/v1/batch")
                    .header("host", "bench")
                    .header("content-type", "application/json")
                    .header("authorization", &auth);
                if gzip {
                    request = request.header("content-encoding", "gzip");
                }
                let request = request.body(Full::new(body.clone()))?;
                sender.ready().await?;
                let response = sender.send_request(request).await?;
                let status = response.status();
                let answer = response.into_body().collect().await?.to_bytes();
                if status != 200 {
                    bail!(
                        "ingest answered {status}: {}",
                        String::from_utf8_lossy(&answer)
                    );
                }
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn ingest(
    args: &Args,
    redis_url: &str,
    redis_pid: u32,
    bodies: Arc<Vec<Bytes>>,
    events: usize,
    gzip: bool,
    key: &str,
) -> anyhow::Result<Figures> {
    let port = free_port()?;
    let child = Command::new(&args.processor_bin)
        .arg("serve")
        .env("SERVE_ROLES", "ingest")
        .env("INGEST_LISTEN", format!("127.0.0.1:{port}"))
        .env("INGEST_WRITE_KEYS", format!("bench={WRITE_KEY}"))
        .env("INGEST_MAX_BACKLOG", "1000000000000")
        .env("REDIS_URL", redis_url)
        .env("STREAM_KEY", key)
        .env("LOG_LEVEL", "warn")
        .spawn()
        .with_context(|| format!("running {}", args.processor_bin.display()))?;
    let child = Reaped(child);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if started.elapsed() > Duration::from_secs(20) {
            bail!("the ingest server did not start");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = child.0.id();
    let ingest_before = cpu_seconds(pid)?;
    let redis_before = cpu_seconds(redis_pid)?;
    let started = Instant::now();
    post_all(addr, bodies, gzip, args.connections).await?;
    let seconds = started.elapsed().as_secs_f64();
    let ingest_cpu = cpu_seconds(pid)? - ingest_before;
    let redis_cpu = cpu_seconds(redis_pid)? - redis_before;
    stop(child)?;
    let mut conn = connect(&redis::Client::open(redis_url)?).await?;
    let stored = stream_events(&mut conn, key).await?;
    if stored != events as u64 {
        bail!("ingest: {stored} events in the stream, {events} sent");
    }
    let memory = memory_usage(&mut conn, key).await?;
    redis::cmd("DEL")
        .arg(key)
        .query_async::<()>(&mut conn)
        .await?;
    Ok(Figures {
        events_per_second: events as f64 / seconds,
        redis_bytes: memory as f64 / events as f64,
        ingest_cpu_us: Some(ingest_cpu * 1e6 / events as f64),
        redis_cpu_us: redis_cpu * 1e6 / events as f64,
    })
}

/// The runs of a round.
const NAMES: [&str; 3] = [
    "baseline: pipelined XADD per event",
    "ingest, gzip off",
    "ingest, gzip on",
];

fn print_row(round: &str, name: &str, figures: &Figures, ratio: Option<f64>) {
    let ingest_cpu = figures
        .ingest_cpu_us
        .map_or("-".to_owned(), |us| format!("{us:.2} µs"));
    let ratio = ratio.map_or(String::new(), |r| format!(" {r:>6.2}x"));
    println!(
        "{round:<6} {name:<34} {:>11.0} {ingest_cpu:>16} {:>12.2} µs {:>13.0}{ratio}",
        figures.events_per_second, figures.redis_cpu_us, figures.redis_bytes,
    );
}

/// Each figure's median over the rounds.
fn median(figures: &[Figures]) -> Figures {
    let middle = |value: fn(&Figures) -> Option<f64>| {
        let mut values: Vec<f64> = figures.iter().filter_map(value).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied()
    };
    Figures {
        events_per_second: middle(|f| Some(f.events_per_second)).unwrap_or(0.0),
        redis_bytes: middle(|f| Some(f.redis_bytes)).unwrap_or(0.0),
        ingest_cpu_us: middle(|f| f.ingest_cpu_us),
        redis_cpu_us: middle(|f| Some(f.redis_cpu_us)).unwrap_or(0.0),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = std::env::temp_dir().join(format!("bench-ingest-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let redis = start_redis(port, &dir)?;
    let redis_pid = redis.0.id();
    let redis_url = format!("redis://127.0.0.1:{port}");

    let mut rng = StdRng::seed_from_u64(15);
    let now = Utc::now();
    let activities: Vec<Activity> = (0..args.events).map(|_| event(&mut rng, now)).collect();
    let lines: Vec<Vec<String>> = activities
        .chunks(args.batch_events)
        .map(|chunk| chunk.iter().map(Activity::to_wire_json).collect())
        .collect();
    let plain: Vec<Bytes> = activities
        .chunks(args.batch_events)
        .map(|chunk| {
            let batch: Vec<Value> = chunk.iter().map(segment_message).collect();
            Bytes::from(json!({"batch": batch, "sentAt": now.to_rfc3339()}).to_string())
        })
        .collect();
    let gzipped: Vec<Bytes> = plain
        .iter()
        .map(|body| {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(body).expect("writing to memory");
            Bytes::from(encoder.finish().expect("writing to memory"))
        })
        .collect();
    let request_bytes = plain.iter().map(Bytes::len).sum::<usize>() / plain.len();
    let gzip_bytes = gzipped.iter().map(Bytes::len).sum::<usize>() / gzipped.len();
    println!(
        "{} events, {} a request ({request_bytes} bytes, {gzip_bytes} gzipped), {} connections",
        args.events, args.batch_events, args.connections
    );
    let lines = Arc::new(lines);
    let (plain, gzipped) = (Arc::new(plain), Arc::new(gzipped));

    let key = "bench:ingest";
    // Rounds of the three runs in turn, so a machine shared with other
    // work slows each about alike; the medians are compared.
    let mut runs: [Vec<Figures>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    println!(
        "{:<6} {:<34} {:>11} {:>16} {:>15} {:>13}",
        "round", "run", "events/s", "ingest CPU/event", "Redis CPU/event", "Redis B/event"
    );
    for round in 1..=args.rounds {
        runs[0].push(baseline(&redis_url, redis_pid, lines.clone(), args.connections, key).await?);
        runs[1].push(
            ingest(
                &args,
                &redis_url,
                redis_pid,
                plain.clone(),
                args.events,
                false,
                key,
            )
            .await?,
        );
        runs[2].push(
            ingest(
                &args,
                &redis_url,
                redis_pid,
                gzipped.clone(),
                args.events,
                true,
                key,
            )
            .await?,
        );
        for (name, figures) in NAMES.iter().zip(&runs) {
            print_row(
                &round.to_string(),
                name,
                figures.last().expect("a run per round"),
                None,
            );
        }
    }
    let medians: Vec<Figures> = runs.iter().map(|figures| median(figures)).collect();
    let base = medians[0].events_per_second;
    println!("medians of {} rounds:", args.rounds);
    for (name, figures) in NAMES.iter().zip(&medians) {
        print_row(
            "median",
            name,
            figures,
            Some(figures.events_per_second / base),
        );
    }
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
