//! Dispatcher throughput: events per second that `track()`, called from
//! several tasks, gets into the Redis stream, against a baseline of raw
//! pipelined `XADD`s of the same payloads measured in the same run.
//!
//! ```sh
//! cargo run --release -p activity-tracker --example bench_dispatcher
//! ```
//!
//! Environment: `REDIS_URL` (default `redis://127.0.0.1:6379`), `EVENTS`
//! (default 400000), `TASKS` (default 4), `MAX_BATCH` (default 1024),
//! `CHANNEL_CAPACITY` (default 16384), `POOL_SIZE` (default 2: batch
//! writes in flight at once), `STREAM_FORMAT` (`v2`, the default, `v2-lz4`
//! or `v1`: the tracker's entry shape).

use std::error::Error;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use activity_tracker::{Activity, ActivityTracker, ActivityType, StreamFormat};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// An event like the layer records for a mapped request.
fn sample(i: usize) -> Activity {
    Activity::new(ActivityType::CaseView)
        .user_id(format!("user-{}", i % 1000))
        .resource("case", format!("case-{i}"))
        .ip_address(IpAddr::V4(Ipv4Addr::new(192, 168, 1, (i % 250) as u8)))
        .user_agent("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)")
        .session_id("3f9c2a7e-session")
        .detail("method", "GET")
        .detail("route", "/api/v1/cases/{id}")
        .detail("status", 200)
        .detail("latency_ms", 1)
}

/// How often a producer checks the channel has room (see `main`).
const CHECK_EVERY: u64 = 64;

/// User + system CPU seconds used by this process so far (Linux).
fn process_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesized command name; utime and stime are the
    // 14th and 15th fields of the whole line, in clock ticks (100 per second).
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

async fn xlen(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> redis::RedisResult<u64> {
    redis::cmd("XLEN").arg(key).query_async(conn).await
}

/// Events in the stream: each entry's `n` (one for an entry without),
/// summed inside Redis so the events themselves are not sent back.
async fn stream_events(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
) -> redis::RedisResult<u64> {
    const SUM: &str = include_str!("../../bench/lib/stream_events.lua");
    redis::cmd("EVAL")
        .arg(SUM)
        .arg(1)
        .arg(key)
        .query_async(conn)
        .await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let url = env_or("REDIS_URL", "redis://127.0.0.1:6379".to_owned());
    let events: usize = env_or("EVENTS", 400_000);
    let tasks: usize = env_or("TASKS", 4).max(1);
    let max_batch: usize = env_or("MAX_BATCH", 1024);
    let capacity: usize = env_or("CHANNEL_CAPACITY", 16_384);
    let pool_size: u32 = env_or("POOL_SIZE", 2);
    let format_name = env_or("STREAM_FORMAT", "v2".to_owned());
    let format = match format_name.as_str() {
        "v1" => StreamFormat::V1,
        "v2" => StreamFormat::V2,
        "v2-lz4" => StreamFormat::V2Lz4,
        other => return Err(format!("STREAM_FORMAT {other:?}: v1, v2 or v2-lz4").into()),
    };
    let client = redis::Client::open(url.as_str())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    // Counting the tracker's events walks the whole stream in a script.
    conn.set_response_timeout(Duration::from_secs(60));
    let run = std::process::id();
    let base_key = format!("bench:dispatcher:{run}:baseline");
    let tracker_key = format!("bench:dispatcher:{run}:tracker");
    let max_len = events * 2;

    // Baseline: the same kind of payloads, serialized beforehand, pipelined
    // in batches of `max_batch` over one connection, with the commands the
    // tracker sends (an `XADD` per event, an `XTRIM` per batch).
    let payloads: Vec<String> = (0..events).map(|i| sample(i).to_wire_json()).collect();
    let payload_bytes = payloads.iter().map(String::len).sum::<usize>() / events.max(1);
    let started = Instant::now();
    let cpu_started = process_cpu_secs();
    for chunk in payloads.chunks(max_batch) {
        let mut pipe = redis::pipe();
        for json in chunk {
            pipe.cmd("XADD")
                .arg(&base_key)
                .arg("*")
                .arg("data")
                .arg(json)
                .ignore();
        }
        pipe.cmd("XTRIM")
            .arg(&base_key)
            .arg("MAXLEN")
            .arg("~")
            .arg(max_len)
            .ignore();
        pipe.query_async::<()>(&mut conn).await?;
    }
    let base_secs = started.elapsed().as_secs_f64();
    let base_cpu = process_cpu_secs() - cpu_started;
    let base_count = xlen(&mut conn, &base_key).await?;
    drop(payloads);

    // The tracker: `tasks` producers calling `track()`; a producer waits
    // while the channel is nearly full, so the figure is what the
    // dispatcher sustains, with nothing dropped.
    let tracker = ActivityTracker::builder()
        .redis_url(url.as_str())
        .stream_key(tracker_key.as_str())
        .stream_max_len(max_len)
        .max_batch(max_batch)
        .channel_capacity(capacity)
        .pool_size(pool_size)
        .stream_format(format)
        .shutdown_timeout(Duration::from_secs(60))
        .build()
        .await?;
    // Each producer's events are made beforehand, as the baseline's are.
    let mut shares: Vec<Vec<Activity>> = (0..tasks).map(|_| Vec::new()).collect();
    for i in 0..events {
        shares[i % tasks].push(sample(i));
    }
    let started = Instant::now();
    let cpu_started = process_cpu_secs();
    let mut producers = Vec::new();
    for share in shares {
        let tracker = tracker.clone();
        producers.push(tokio::spawn(async move {
            let mut sent = 0u64;
            for activity in share {
                // Wait for room rather than spin on a full channel: the
                // dispatcher is what is measured. Room is checked every
                // `CHECK_EVERY` events (reading the counters on every one
                // cost the producers more than `track` does), for that many
                // events per task, so none is ever dropped.
                if sent % CHECK_EVERY == 0 {
                    loop {
                        let c = tracker.counters();
                        if c.captured - c.sent + CHECK_EVERY * tasks as u64 <= capacity as u64 {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                tracker.track(activity);
                sent += 1;
                if sent % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for producer in producers {
        producer.await?;
    }
    let summary = tracker.shutdown().await;
    let tracker_secs = started.elapsed().as_secs_f64();
    let tracker_cpu = process_cpu_secs() - cpu_started;
    let tracker_count = stream_events(&mut conn, &tracker_key).await?;
    let tracker_entries = xlen(&mut conn, &tracker_key).await?;
    let counters = tracker.counters();

    redis::cmd("DEL")
        .arg(&base_key)
        .arg(&tracker_key)
        .query_async::<()>(&mut conn)
        .await?;

    let base_rate = base_count as f64 / base_secs;
    let tracker_rate = tracker_count as f64 / tracker_secs;
    println!(
        "events per run:        {events} ({tasks} producer tasks, batches of {max_batch}, {payload_bytes} bytes of JSON each on average, tracker writes {format_name})"
    );
    println!(
        "baseline raw XADD:     {base_count} entries in {base_secs:.3} s = {base_rate:.0} events/s"
    );
    println!(
        "tracker track():       {tracker_count} events ({tracker_entries} entries) in {tracker_secs:.3} s = {tracker_rate:.0} events/s"
    );
    println!(
        "tracker counters:      captured {} sent {} dropped {}",
        counters.captured,
        counters.sent,
        counters.dropped()
    );
    println!("ratio tracker/baseline: {:.2}", tracker_rate / base_rate);
    // CPU time of this process (not Redis's) per event: less sensitive to
    // other load on the machine than the rates.
    println!(
        "client CPU per event:  baseline {:.2} us, tracker {:.2} us",
        base_cpu * 1e6 / base_count.max(1) as f64,
        tracker_cpu * 1e6 / tracker_count.max(1) as f64
    );
    // At least once: a write that timed out on a busy machine is sent
    // again and may land twice (the processor stores each id once).
    println!(
        "duplicates:            {} (send errors {}, retries {})",
        tracker_count.saturating_sub(events as u64),
        counters.send_errors,
        counters.retries
    );
    if summary.unsent > 0 || tracker_count < events as u64 {
        return Err(format!(
            "expected {events} entries in the tracker's stream, found {tracker_count} ({} unsent)",
            summary.unsent
        )
        .into());
    }
    Ok(())
}
