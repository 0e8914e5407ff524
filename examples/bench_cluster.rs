//! A Redis Cluster against a single Redis node, in one run: events per
//! second through the tracker into the stream, the processor's drain of
//! them into PostgreSQL, and the CPU each Redis process spends per event.
//!
//! Two deployments run side by side for the whole run:
//!
//! - a single private `redis-server` on a free port, with the cluster
//!   nodes' persistence (`--appendonly yes --appendfsync everysec --save
//!   ""`) and no replica: the baseline;
//! - a private Redis Cluster of the harness ([`RedisCluster::start_with`]:
//!   3 masters, a replica each, the same persistence), with Redis's
//!   default node timeout of 15 s rather than the harness's 1 s, so that a
//!   node starved of CPU for a moment is not failed over; every node's
//!   role is checked after each configuration, and the replicas' full
//!   resynchronizations are counted (printed when there were any).
//!
//! Before the first round, one unmeasured pass of the tracker into each
//! deployment (a Redis that has run a while has its memory already).
//! Each round runs the configurations in turn: the single node with one
//! shard, then the cluster with each of `SHARDS` shards (default 1, 3, 6).
//! For each:
//!
//! 1. `EVENTS` events like the layer's go through `tracker.track()` from
//!    `TASKS` tasks of this process (as `bench_dispatcher` does), from the
//!    first call until `shutdown()` returns; the events stored are then
//!    counted in every shard (each entry's `n`, summed inside Redis);
//! 2. the release processor (`activity-processor serve`, its defaults,
//!    `REDIS_URL` and `STREAM_SHARDS` matching) drains them into a fresh
//!    scratch database on `DATABASE_URL`'s server, timed from its start
//!    until every shard has `XLEN` 0 and nothing pending (every event
//!    committed and acknowledged); then `count(*)` must be `EVENTS`;
//! 3. around each phase, the CPU time of every `redis-server` process
//!    over the events, in microseconds per event: the whole process (user
//!    and system time of `/proc/<pid>/stat`, every thread, with its
//!    waited-for children's, so an append-only-file rewrite's fork is
//!    counted in its node's) and its main thread alone
//!    (`/proc/<pid>/task/<pid>/stat`: the thread that runs the commands,
//!    which bounds what one node takes).
//!    The busiest main thread's figure says at what rate, all events
//!    counted, the busiest node's core would be full.
//!
//! Each cluster figure is also printed over the single node's of the same
//! round; the summary gives the medians over the rounds. On a machine of
//! two cores, six cluster nodes, the tracker, the processor and PostgreSQL
//! share the same two cores: the rates show the cluster's overhead, not
//! its scaling; the per-process CPU figures are what scaling on more
//! machines is reckoned from (docs/scaling.md).
//!
//! The benchmark's own connections (counting, `XGROUP CREATE`, the drain's
//! polling) are plain single-node connections to the master of each key's
//! slot, by the harness's slot map, not the product's cluster client.
//!
//! Environment: `EVENTS` (default 400000), `TASKS` (4), `ROUNDS` (5),
//! `SHARDS` (`1,3,6`), `MAX_BATCH` (1024), `PROCESSOR_BIN`
//! (`target/release/activity-processor`), `DATABASE_URL`
//! (`postgres://postgres@127.0.0.1:5432/postgres`).
//!
//! Run through `bench/redis_cluster.sh`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use activity_tracker::{Activity, ActivityTracker, ActivityType, StreamShards};
use activity_tracking::harness::{ClusterOptions, RedisCluster, free_port};
use anyhow::{Context, bail};
use chrono::Utc;
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// An event like the layer records for a mapped request (as in
/// `bench_dispatcher`).
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

/// The CPU times of `/proc/<pid>/stat` in seconds: utime, stime, cutime,
/// cstime (clock ticks are 100 a second on Linux).
fn stat_times(pid: &str) -> Option<[f64; 4]> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesized command name start with field 3 (the
    // state): utime is field 14.
    let after = &stat[stat.rfind(')')? + 2..];
    let mut fields = after.split_whitespace().skip(11);
    let mut next = || Some(fields.next()?.parse::<f64>().ok()? / 100.0);
    Some([next()?, next()?, next()?, next()?])
}

/// User + system CPU seconds of this process so far (not its children:
/// the processor it runs is counted on its own).
fn own_cpu_secs() -> f64 {
    stat_times("self").map_or(0.0, |[user, system, _, _]| user + system)
}

/// User + system CPU seconds of `pid` so far, without its children.
fn cpu_secs(pid: u32) -> f64 {
    stat_times(&pid.to_string()).map_or(f64::NAN, |[user, system, _, _]| user + system)
}

/// User + system CPU seconds of the Redis process `pid` so far: the whole
/// process (every thread, and its children that exited: the fork of an
/// append-only-file rewrite), and its main thread alone (the one that runs
/// the commands, the bound of one node).
fn redis_cpu_secs(pid: u32) -> [f64; 2] {
    let whole = stat_times(&pid.to_string()).map_or(f64::NAN, |t| t.iter().sum());
    let main = stat_times(&format!("{pid}/task/{pid}"))
        .map_or(f64::NAN, |[user, system, _, _]| user + system);
    [whole, main]
}

/// Kills the child process on drop, so a failed run leaves nothing behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The single-node baseline: a `redis-server` with the cluster nodes'
/// persistence, in a directory of its own, killed and removed on drop.
struct SingleNode {
    server: Option<Reaped>,
    port: u16,
    dir: PathBuf,
}

impl SingleNode {
    fn start() -> anyhow::Result<Self> {
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("bench-cluster-single-{port}"));
        std::fs::create_dir_all(&dir)?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--appendonly", "yes", "--appendfsync", "everysec"])
            .args(["--save", ""])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .context("running redis-server")?;
        let node = SingleNode {
            server: Some(Reaped(child)),
            port,
            dir,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                bail!("redis-server did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(node)
    }

    fn pid(&self) -> u32 {
        self.server.as_ref().expect("running").0.id()
    }
}

impl Drop for SingleNode {
    fn drop(&mut self) {
        self.server.take();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One `redis-server` whose CPU time is measured.
#[derive(Debug, Clone)]
struct RedisProcess {
    /// `node`, or `m1`.. `m3` (the masters by their first slot) and `r1`..
    /// `r3` (the replica of each).
    name: String,
    pid: u32,
    port: u16,
    /// Whether it is a master (and must stay one for the run).
    master: bool,
}

/// Where the streams are: the URL the tracker and the processor are given,
/// the processes measured, and the benchmark's own connection to the
/// master of each key's slot.
struct Deployment {
    url: String,
    processes: Vec<RedisProcess>,
    /// The master of a slot by the harness's slot map (`None`: one node).
    cluster: Option<Vec<activity_tracking::harness::Master>>,
    single_port: u16,
    conns: HashMap<u16, redis::aio::MultiplexedConnection>,
}

impl Deployment {
    fn single(node: &SingleNode) -> anyhow::Result<Self> {
        Ok(Deployment {
            url: format!("redis://127.0.0.1:{}", node.port),
            processes: vec![RedisProcess {
                name: "node".into(),
                pid: node.pid(),
                port: node.port,
                master: true,
            }],
            cluster: None,
            single_port: node.port,
            conns: HashMap::new(),
        })
    }

    fn cluster(cluster: &RedisCluster) -> anyhow::Result<Self> {
        let mut processes = Vec::new();
        let mut replicas = Vec::new();
        for (i, master) in cluster.masters().iter().enumerate() {
            let pid = cluster.pid(master.node.port).context("a master runs")?;
            processes.push(RedisProcess {
                name: format!("m{}", i + 1),
                pid,
                port: master.node.port,
                master: true,
            });
            for replica in &master.replicas {
                let pid = cluster.pid(replica.port).context("a replica runs")?;
                replicas.push(RedisProcess {
                    name: format!("r{}", i + 1),
                    pid,
                    port: replica.port,
                    master: false,
                });
            }
        }
        processes.extend(replicas);
        Ok(Deployment {
            url: cluster.redis_url(),
            processes,
            cluster: Some(cluster.masters().to_vec()),
            single_port: 0,
            conns: HashMap::new(),
        })
    }

    /// The benchmark's connection to the node that serves `key`.
    async fn conn(&mut self, key: &str) -> anyhow::Result<&mut redis::aio::MultiplexedConnection> {
        let port = self.port_of(key)?;
        self.conn_to(port).await
    }

    /// The port of the node that serves `key`, by the slot map of the start.
    fn port_of(&self, key: &str) -> anyhow::Result<u16> {
        Ok(match &self.cluster {
            None => self.single_port,
            Some(masters) => {
                let slot = activity_tracking::harness::key_slot(key);
                masters
                    .iter()
                    .find(|m| m.owns(slot))
                    .context("a master serves every slot")?
                    .node
                    .port
            }
        })
    }

    /// The benchmark's connection to the node on `port`.
    async fn conn_to(
        &mut self,
        port: u16,
    ) -> anyhow::Result<&mut redis::aio::MultiplexedConnection> {
        if let std::collections::hash_map::Entry::Vacant(vacant) = self.conns.entry(port) {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
            let mut conn = client.get_multiplexed_async_connection().await?;
            // Counting the events walks the whole stream in a script.
            conn.set_response_timeout(Duration::from_secs(60));
            vacant.insert(conn);
        }
        Ok(self.conns.get_mut(&port).expect("inserted"))
    }

    /// CPU seconds of every process so far, in the order of `processes`:
    /// the whole process and its main thread.
    fn cpu(&self) -> Vec<[f64; 2]> {
        self.processes
            .iter()
            .map(|p| redis_cpu_secs(p.pid))
            .collect()
    }

    /// Events in the shards: each entry's `n` (one for an entry without).
    async fn stored_events(&mut self, shards: &StreamShards) -> anyhow::Result<u64> {
        const SUM: &str = include_str!("../bench/lib/stream_events.lua");
        let mut total = 0;
        for key in shards.keys() {
            let n: u64 = redis::cmd("EVAL")
                .arg(SUM)
                .arg(1)
                .arg(key)
                .query_async(self.conn(key).await?)
                .await?;
            total += n;
        }
        Ok(total)
    }

    /// Entries left (`XLEN`) and pending for the processor's group over
    /// every shard: the drain is over when both are 0.
    async fn backlog(&mut self, shards: &StreamShards) -> anyhow::Result<(u64, i64)> {
        let (mut length, mut pending) = (0, 0);
        for key in shards.keys() {
            let mut pipe = redis::pipe();
            pipe.cmd("XLEN").arg(key);
            pipe.cmd("XPENDING").arg(key).arg(GROUP);
            let (len, summary): (u64, redis::Value) =
                pipe.query_async(self.conn(key).await?).await?;
            length += len;
            pending += match summary {
                redis::Value::Array(summary) => match summary.first() {
                    Some(redis::Value::Int(n)) => *n,
                    _ => 0,
                },
                _ => 1,
            };
        }
        Ok((length, pending))
    }

    /// Checks that every node still has its role (a node that stalls past
    /// the cluster's node timeout is failed over, and the figures would be
    /// those of another layout) and returns the full resynchronizations of
    /// replicas the masters have served so far (`sync_full`): a replica
    /// that falls too far behind its master is sent the whole data set
    /// again, which costs both far more than the events.
    async fn check_roles(&mut self) -> anyhow::Result<u64> {
        let mut full_syncs = 0;
        for process in self.processes.clone() {
            let conn = self.conn_to(process.port).await?;
            let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut *conn).await?;
            let is_master =
                matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master");
            if is_master != process.master {
                bail!(
                    "{} (:{}) is no longer a {}: the cluster failed over during the run",
                    process.name,
                    process.port,
                    if process.master { "master" } else { "replica" }
                );
            }
            if process.master {
                let stats: String = redis::cmd("INFO").arg("stats").query_async(conn).await?;
                full_syncs += stats
                    .lines()
                    .find_map(|l| l.strip_prefix("sync_full:"))
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        Ok(full_syncs)
    }

    /// Runs `cmd` on the node of `key`.
    async fn run(&mut self, key: &str, cmd: &redis::Cmd) -> anyhow::Result<()> {
        cmd.query_async::<()>(self.conn(key).await?).await?;
        Ok(())
    }
}

/// The processor's default consumer group.
const GROUP: &str = "activity-processor";

/// How often a producer checks the channel has room (as in
/// `bench_dispatcher`).
const CHECK_EVERY: u64 = 64;

/// How often the drain looks at the backlog.
const POLL: Duration = Duration::from_millis(25);

struct Settings {
    events: usize,
    tasks: usize,
    max_batch: usize,
    capacity: usize,
    processor_bin: PathBuf,
    database_url: String,
}

/// What one configuration measured in one round.
#[derive(Debug, Clone)]
struct Figures {
    tracker_rate: f64,
    client_us: f64,
    entries: u64,
    duplicates: u64,
    /// The tracker's failed batch writes (each retried).
    send_errors: u64,
    /// Microseconds per event of each Redis process while tracking: the
    /// whole process, its main thread.
    tracking_us: Vec<[f64; 2]>,
    /// Full resynchronizations of a replica during the configuration.
    full_syncs: u64,
    drain_rate: f64,
    processor_us: f64,
    /// The same while draining.
    draining_us: Vec<[f64; 2]>,
}

/// What the tracker did with `EVENTS` events.
struct Tracked {
    /// From the first `track()` until `shutdown()` returned.
    secs: f64,
    /// Events it could not send.
    unsent: u64,
    /// Failed batch writes (each retried).
    send_errors: u64,
    /// CPU seconds of this process meanwhile.
    own_cpu: f64,
    /// Microseconds per event of each Redis process meanwhile.
    redis_us: Vec<[f64; 2]>,
}

/// `settings.events` events through `track()` from `settings.tasks` tasks
/// into `shards` shards of `stream_key` at `url`, until `shutdown()` has
/// flushed them (the events are made beforehand, outside the time).
async fn track_events(
    settings: &Settings,
    deployment: &Deployment,
    stream_key: &str,
    shards: usize,
) -> anyhow::Result<Tracked> {
    let events = settings.events;
    let tracker = ActivityTracker::builder()
        .redis_url(deployment.url.as_str())
        .stream_key(stream_key)
        .stream_shards(shards)
        .stream_max_len(events * 2)
        .max_batch(settings.max_batch)
        .channel_capacity(settings.capacity)
        .shutdown_timeout(Duration::from_secs(60))
        .build()
        .await?;
    let tasks = settings.tasks;
    let mut shares: Vec<Vec<Activity>> = (0..tasks).map(|_| Vec::new()).collect();
    for i in 0..events {
        shares[i % tasks].push(sample(i));
    }
    let capacity = settings.capacity as u64;
    let redis_before = deployment.cpu();
    let own_before = own_cpu_secs();
    let started = Instant::now();
    let mut producers = Vec::new();
    for share in shares {
        let tracker = tracker.clone();
        producers.push(tokio::spawn(async move {
            let mut sent = 0u64;
            for activity in share {
                // Wait for room rather than drop: the dispatcher and Redis
                // are what is measured. Room is checked every
                // `CHECK_EVERY` events, for that many per task.
                if sent % CHECK_EVERY == 0 {
                    loop {
                        let c = tracker.counters();
                        if c.captured - c.sent + CHECK_EVERY * tasks as u64 <= capacity {
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
    Ok(Tracked {
        secs: started.elapsed().as_secs_f64(),
        own_cpu: own_cpu_secs() - own_before,
        redis_us: per_event_us(&redis_before, &deployment.cpu(), events),
        unsent: summary.unsent,
        send_errors: tracker.counters().send_errors,
    })
}

/// `EVENTS` events through the tracker into `shards` shards, then drained
/// by the processor.
async fn measure(
    settings: &Settings,
    deployment: &mut Deployment,
    admin: &mut PgConnection,
    stream_key: &str,
    shards: usize,
) -> anyhow::Result<Figures> {
    let events = settings.events;
    let stream = StreamShards::new(stream_key, shards);

    // Tracking: as bench_dispatcher, with the shards and the cluster.
    let full_syncs_before = deployment.check_roles().await?;
    let tracked = track_events(settings, deployment, stream_key, shards).await?;
    let stored = deployment.stored_events(&stream).await?;
    let mut entries = 0;
    for key in stream.keys() {
        let len: u64 = redis::cmd("XLEN")
            .arg(key)
            .query_async(deployment.conn(key).await?)
            .await?;
        entries += len;
    }
    if tracked.unsent > 0 || stored < events as u64 {
        bail!(
            "expected {events} events in the shards of {stream_key}, found {stored} ({} unsent)",
            tracked.unsent
        );
    }

    // Draining: the processor's group on every shard beforehand (what it
    // makes itself at start, from the first entry), so that XPENDING
    // answers from the first poll.
    for key in stream.keys() {
        deployment
            .run(
                key,
                redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(key)
                    .arg(GROUP)
                    .arg("0"),
            )
            .await?;
    }
    let name = stream_key.replace([':', '-', '.'], "_");
    let database_url = scratch(admin, &settings.database_url, &name).await?;
    let admin_port = free_port()?;
    let redis_before = deployment.cpu();
    let started = Instant::now();
    let child = Command::new(&settings.processor_bin)
        .arg("serve")
        .env("REDIS_URL", &deployment.url)
        .env("DATABASE_URL", &database_url)
        .env("STREAM_KEY", stream_key)
        .env("STREAM_SHARDS", shards.to_string())
        .env("CONSUMER_NAME", "bench")
        .env("ADMIN_LISTEN", format!("127.0.0.1:{admin_port}"))
        .env("LOG_LEVEL", "error")
        .env_remove("REDIS_CLUSTER")
        .env_remove("LEGACY_LIST_KEY")
        .spawn()
        .with_context(|| format!("running {}", settings.processor_bin.display()))?;
    let mut processor = Reaped(child);
    loop {
        let (length, pending) = deployment.backlog(&stream).await?;
        if length == 0 && pending == 0 {
            break;
        }
        if let Some(status) = processor.0.try_wait()? {
            bail!("the processor exited with {status} before draining ({length} entries left)");
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("not drained after 10 minutes: {length} entries left, {pending} pending");
        }
        tokio::time::sleep(POLL).await;
    }
    let drain_secs = started.elapsed().as_secs_f64();
    let processor_cpu = cpu_secs(processor.0.id());
    let draining_us = per_event_us(&redis_before, &deployment.cpu(), events);
    Command::new("kill")
        .args(["-TERM", &processor.0.id().to_string()])
        .status()?;
    let status = processor.0.wait()?;
    if !status.success() {
        bail!("the processor exited with {status} after SIGTERM");
    }
    let rows = count(&database_url).await?;
    sqlx::query(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
        .execute(&mut *admin)
        .await?;
    for key in stream.keys() {
        deployment.run(key, redis::cmd("DEL").arg(key)).await?;
    }
    if rows != events as i64 {
        bail!("the processor stored {rows} rows of {events}");
    }
    let full_syncs = deployment.check_roles().await? - full_syncs_before;
    Ok(Figures {
        full_syncs,
        tracker_rate: stored as f64 / tracked.secs,
        client_us: tracked.own_cpu * 1e6 / events as f64,
        entries,
        duplicates: stored - events as u64,
        send_errors: tracked.send_errors,
        tracking_us: tracked.redis_us,
        drain_rate: events as f64 / drain_secs,
        processor_us: processor_cpu * 1e6 / events as f64,
        draining_us,
    })
}

fn per_event_us(before: &[[f64; 2]], after: &[[f64; 2]], events: usize) -> Vec<[f64; 2]> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| [0, 1].map(|i| (a[i] - b[i]) * 1e6 / events as f64))
        .collect()
}

/// The server's URL with another database name.
fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let (base, _) = url
        .rsplit_once('/')
        .context("DATABASE_URL has no database part")?;
    Ok(format!("{base}/{name}"))
}

/// A fresh scratch database `name` with the processor's schema and this
/// month's partitions; returns its URL.
async fn scratch(admin: &mut PgConnection, url: &str, name: &str) -> anyhow::Result<String> {
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut *admin)
    .await?;
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut *admin)
        .await?;
    let url = with_database(url, name)?;
    let pool = PgPool::connect(&url).await?;
    activity_store::schema::migrate(&pool).await?;
    activity_store::schema::ensure_partitions(&pool, Utc::now() - chrono::Duration::days(1), 2)
        .await?;
    pool.close().await;
    Ok(url)
}

async fn count(url: &str) -> anyhow::Result<i64> {
    let mut conn = PgConnection::connect(url).await?;
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM user_activity_logs")
            .fetch_one(&mut conn)
            .await?,
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

/// `m1 0.80 (0.61), ...`: each process's microseconds per event, the
/// whole process and (in parentheses) its main thread, with the sums and
/// the busiest main thread, whose reciprocal is what one node's core
/// sustains.
fn per_process(processes: &[RedisProcess], us: &[[f64; 2]]) -> String {
    let each: Vec<String> = processes
        .iter()
        .zip(us)
        .map(|(p, [whole, main])| format!("{} {whole:.2} ({main:.2})", p.name))
        .collect();
    let busiest = us.iter().map(|[_, main]| *main).fold(0.0, f64::max);
    format!(
        "{}; sum {:.2} ({:.2}); busiest main thread {busiest:.2} us/event: full at {:.0} events/s",
        each.join(", "),
        us.iter().map(|[whole, _]| whole).sum::<f64>(),
        us.iter().map(|[_, main]| main).sum::<f64>(),
        1e6 / busiest
    )
}

/// The stream key of configuration `c` of round `round`. A single shard on
/// the cluster is the stream key itself, on whichever master its slot
/// falls: the key is chosen on the first master (`m1`), so that each
/// process's figures compare across rounds.
fn stream_key(deployment: &Deployment, run: u32, round: usize, c: usize, shards: usize) -> String {
    let key = format!("bench:cluster:{run}:r{round}:c{c}");
    let Some(masters) = deployment.cluster.as_ref().filter(|_| shards == 1) else {
        return key;
    };
    (0..)
        .map(|j| format!("{key}.{j}"))
        .find(|k| masters[0].owns(activity_tracking::harness::key_slot(k)))
        .expect("a third of the slots is found within a few tries")
}

/// The configurations of a round: the deployment (0 the single node, 1
/// the cluster) and the shards.
fn configurations(shard_counts: &[usize]) -> Vec<(usize, usize)> {
    let mut all = vec![(0, 1)];
    all.extend(shard_counts.iter().map(|&n| (1, n)));
    all
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings {
        events: env_or("EVENTS", 400_000),
        tasks: env_or("TASKS", 4).max(1),
        max_batch: env_or("MAX_BATCH", 1024),
        capacity: 16_384,
        processor_bin: env_or(
            "PROCESSOR_BIN",
            PathBuf::from("target/release/activity-processor"),
        ),
        database_url: env_or(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres".to_owned(),
        ),
    };
    let rounds: usize = env_or("ROUNDS", 5).max(1);
    let shard_counts: Vec<usize> = env_or("SHARDS", "1,3,6".to_owned())
        .split(',')
        .map(|n| n.trim().parse())
        .collect::<Result<_, _>>()
        .context("SHARDS: a comma-separated list of shard counts")?;
    if !settings.processor_bin.is_file() {
        bail!(
            "{} not found: cargo build --release -p activity-processor first",
            settings.processor_bin.display()
        );
    }

    let single = SingleNode::start()?;
    let started = Instant::now();
    // Redis's default node timeout, not the harness's 1 s (made for quick
    // failovers): on two shared cores a busy node can miss a second of
    // pings, and a failover would change the layout being measured.
    let options = ClusterOptions {
        node_timeout: Duration::from_secs(15),
        ..ClusterOptions::default()
    };
    let cluster = tokio::task::spawn_blocking(move || RedisCluster::start_with(options)).await??;
    let mut deployments = [Deployment::single(&single)?, Deployment::cluster(&cluster)?];
    let names: Vec<String> = deployments[1]
        .processes
        .iter()
        .map(|p| p.name.clone())
        .collect();
    println!(
        "redis cluster: {} events a configuration, {} producer tasks, batches of {}, {rounds} rounds; \
         single node :{} (AOF everysec, no replica); cluster of 3 masters + 3 replicas (AOF everysec, \
         node timeout {:?}) on :{}, started in {:.1} s; processes {}",
        settings.events,
        settings.tasks,
        settings.max_batch,
        single.port,
        cluster.options().node_timeout,
        cluster
            .ports()
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(","),
        started.elapsed().as_secs_f64(),
        names.join(" ")
    );
    let mut admin = PgConnection::connect(&settings.database_url).await?;
    let run = std::process::id();
    let configs = configurations(&shard_counts);
    let label = |(deployment, shards): (usize, usize)| {
        let which = if deployment == 0 {
            "single node"
        } else {
            "cluster"
        };
        format!(
            "{which}, {shards} shard{}",
            if shards == 1 { "" } else { "s" }
        )
    };
    // A first pass into each deployment, not measured: a Redis that has
    // run a while has its memory and its files already, and the first
    // round would otherwise pay for the new processes' page faults.
    for (d, deployment) in deployments.iter_mut().enumerate() {
        let key = format!("bench:cluster:{run}:warm-up{d}");
        let shards = if d == 0 { 1 } else { 6 };
        track_events(&settings, deployment, &key, shards).await?;
        for key in StreamShards::new(&key, shards).keys() {
            deployment.run(key, redis::cmd("DEL").arg(key)).await?;
        }
    }
    let mut results: Vec<Vec<Figures>> = vec![Vec::new(); configs.len()];
    for round in 1..=rounds {
        for (c, &(deployment, shards)) in configs.iter().enumerate() {
            let key = stream_key(&deployments[deployment], run, round, c, shards);
            let figures = measure(
                &settings,
                &mut deployments[deployment],
                &mut admin,
                &key,
                shards,
            )
            .await
            .with_context(|| format!("round {round}, {}", label(configs[c])))?;
            // The single node's figures of this round (measured first).
            let base = results[0].last().filter(|_| c > 0).cloned();
            let vs = |value: f64, pick: fn(&Figures) -> f64| match &base {
                Some(base) => format!(" ({:.2} x single node)", value / pick(base)),
                None => String::new(),
            };
            println!("--- round {round}, {}:", label(configs[c]));
            print_figures(
                &figures,
                &deployments[deployment].processes,
                &vs(figures.tracker_rate, |f| f.tracker_rate),
                &vs(figures.drain_rate, |f| f.drain_rate),
            );
            results[c].push(figures);
        }
    }

    // Medians over the rounds, and the medians of each round's ratio to
    // the single node.
    println!(
        "=== medians of {rounds} rounds ({} events each); Redis CPU in us/event, whole process (main thread):",
        settings.events
    );
    let single_node = results[0].clone();
    for (c, &(deployment, _)) in configs.iter().enumerate() {
        let runs = &results[c];
        let med = |pick: fn(&Figures) -> f64| median(runs.iter().map(pick).collect());
        let ratio = |pick: fn(&Figures) -> f64| -> String {
            if c == 0 {
                return String::new();
            }
            let ratios = runs
                .iter()
                .zip(&single_node)
                .map(|(f, b)| pick(f) / pick(b));
            format!(" ({:.2} x single node)", median(ratios.collect()))
        };
        let medians = Figures {
            tracker_rate: med(|f| f.tracker_rate),
            client_us: med(|f| f.client_us),
            entries: runs[0].entries,
            duplicates: runs.iter().map(|f| f.duplicates).sum(),
            send_errors: runs.iter().map(|f| f.send_errors).sum(),
            tracking_us: column_of(runs, |f| &f.tracking_us),
            full_syncs: runs.iter().map(|f| f.full_syncs).sum(),
            drain_rate: med(|f| f.drain_rate),
            processor_us: med(|f| f.processor_us),
            draining_us: column_of(runs, |f| &f.draining_us),
        };
        println!("{}:", label(configs[c]));
        print_figures(
            &medians,
            &deployments[deployment].processes,
            &ratio(|f| f.tracker_rate),
            &ratio(|f| f.drain_rate),
        );
    }
    drop(cluster);
    drop(single);
    Ok(())
}

fn print_figures(figures: &Figures, processes: &[RedisProcess], tracker_vs: &str, drain_vs: &str) {
    println!(
        "  tracker: {:.0} events/s{tracker_vs}; {} entries, {} duplicates, {} failed writes; client CPU {:.2} us/event",
        figures.tracker_rate,
        figures.entries,
        figures.duplicates,
        figures.send_errors,
        figures.client_us
    );
    println!(
        "    Redis CPU while tracking: {}",
        per_process(processes, &figures.tracking_us)
    );
    println!(
        "  processor drain: {:.0} events/s{drain_vs}; processor CPU {:.2} us/event",
        figures.drain_rate, figures.processor_us
    );
    println!(
        "    Redis CPU while draining: {}",
        per_process(processes, &figures.draining_us)
    );
    if figures.full_syncs > 0 {
        println!(
            "  full resynchronizations of a replica: {} (the figures include them)",
            figures.full_syncs
        );
    }
}

/// The medians over `runs` of each process's figures.
fn column_of(runs: &[Figures], pick: fn(&Figures) -> &Vec<[f64; 2]>) -> Vec<[f64; 2]> {
    let processes = runs.first().map_or(0, |f| pick(f).len());
    (0..processes)
        .map(|p| [0, 1].map(|i| median(runs.iter().map(|f| pick(f)[p][i]).collect())))
        .collect()
}
