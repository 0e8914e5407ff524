//! The tracker and the processor on a real Redis Cluster (three masters,
//! three replicas, AOF on: `activity_tracking::harness::RedisCluster`) with
//! a sharded stream (`STREAM_SHARDS`): the example app's requests reach
//! the table once each through every shard; two processors split the
//! shards and one of them crashing loses nothing; a master crashing
//! mid-load fails no request and loses at most what it had not
//! replicated; the whole cluster gone, the tracker falls back to
//! PostgreSQL; the ingest API writes to every shard; a shard's slot moved
//! to another master mid-load (a resharding) loses nothing; one node of a
//! cluster named as a single Redis is a clear error.
//!
//! Each scenario prints one line:
//! `scenario <name>: sent N, stored N, duplicates 0, dead-lettered 0, failed requests 0`
//! (the master crash adds what it lost, and why).
//!
//! Processors that are killed with SIGKILL run as child processes: this
//! test executable started again on its `child_processor` test.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use activity_processor::{Config, Processor};
use activity_store::PostgresSink;
use activity_tracker::{ActivityTracker, StreamShards};
use activity_tracking::demo_app;
use activity_tracking::harness::load::{self, Load, LoadPlan, Outcome, send_load};
use activity_tracking::harness::{
    ClusterOptions, HttpServer, Killable, RedisCluster, ScratchDatabase, get_json, processor_child,
    processor_config, run_processor_from_env, wait_until,
};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use redis::Value;
use serde_json::Value as Json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Requests per scenario.
const REQUESTS: usize = 3000;
/// Longest wait for the pipeline to drain, or a failover to finish.
const DRAIN: Duration = Duration::from_secs(60);
/// The admin token of the in-process processors.
const ADMIN_TOKEN: &str = "cluster-test-admin-token";
/// The processors' consumer group (the default).
const GROUP: &str = "activity-processor";
/// Set in the environment of a child started to run a processor.
const CHILD_ENV: &str = "ACTIVITY_CLUSTER_CHILD_PROCESSOR";

// ---------------------------------------------------------------------------
// Servers, app, processor

/// One scenario at a time: six Redis nodes, a processor and an app each
/// are enough for two cores, and a node starved of CPU for longer than
/// the node timeout would be failed over by the others in the middle of
/// someone else's scenario.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A cluster of three masters with a replica each, started off the
/// runtime, and this scenario's turn: held while it runs.
async fn cluster() -> (RedisCluster, tokio::sync::MutexGuard<'static, ()>) {
    let turn = ONE_AT_A_TIME.lock().await;
    let options = ClusterOptions {
        node_timeout: Duration::from_secs(2),
        ..ClusterOptions::default()
    };
    let cluster = tokio::task::spawn_blocking(move || RedisCluster::start_with(options))
        .await
        .unwrap()
        .expect("a private Redis Cluster (redis-server and redis-cli installed)");
    (cluster, turn)
}

fn stream_key(scenario: &str) -> String {
    format!("test:cluster:{scenario}:{}", uuid::Uuid::now_v7().simple())
}

/// The example app (`activity_tracking::demo_app`, what
/// `examples/axum_app` serves) with a tracker writing to `shards` shards
/// of `stream_key` on the cluster at `redis_url`, on a port-0 listener.
struct App {
    tracker: ActivityTracker,
    server: HttpServer,
}

impl App {
    async fn start(
        redis_url: &str,
        stream_key: &str,
        shards: usize,
        fallback_database: Option<&str>,
    ) -> App {
        let mut builder = demo_app::tracker_builder()
            .redis_url(redis_url)
            .stream_key(stream_key)
            .stream_shards(shards)
            .retry_backoff(Duration::from_millis(20), Duration::from_millis(500))
            .fallback_probe_interval(Duration::from_millis(200));
        if let Some(url) = fallback_database {
            builder = builder.fallback_sink(PostgresSink::connect_lazy(url).expect("a valid url"));
        }
        let tracker = builder.build().await.expect("tracker");
        let server = HttpServer::start(demo_app::app(&tracker)).await;
        App { tracker, server }
    }

    /// [`case_views`] to the app, in a task; with how many are answered.
    fn load(&self, scenario: &str, time: Duration) -> (JoinHandle<Load>, Arc<AtomicUsize>) {
        let progress = Arc::new(AtomicUsize::new(0));
        let (addr, scenario) = (self.server.addr(), scenario.to_owned());
        let counted = progress.clone();
        let load = async move { case_views(addr, &scenario, time, counted).await };
        (tokio::spawn(load), progress)
    }

    /// Stops serving and flushes the tracker; returns how many events it
    /// could not send.
    async fn stop(self) -> u64 {
        self.server.stop().await;
        self.tracker.shutdown().await.unsent
    }
}

/// A scenario's database, sharded stream and processor (in this
/// process), on a cluster.
struct Pipeline {
    database: ScratchDatabase,
    shards: StreamShards,
    processor: Processor,
    token: CancellationToken,
}

impl Pipeline {
    /// The processor first (it applies the migrations the app's fallback
    /// needs), then the app, falling back to the database when asked.
    async fn start(
        cluster: &RedisCluster,
        scenario: &str,
        shards: usize,
        fallback: bool,
    ) -> (Pipeline, App) {
        let database = ScratchDatabase::create(&format!("cluster_{scenario}")).await;
        let key = stream_key(scenario);
        let url = cluster.redis_url();
        let token = CancellationToken::new();
        let config = cluster_processor_config(&url, &database.url, &key, shards);
        let processor = Processor::start(config, token.clone()).await.unwrap();
        let fallback = fallback.then_some(database.url.as_str());
        let app = App::start(&url, &key, shards, fallback).await;
        let pipeline = Pipeline {
            shards: StreamShards::new(&key, shards),
            database,
            processor,
            token,
        };
        (pipeline, app)
    }

    /// The processor's admin API.
    fn admin(&self) -> SocketAddr {
        self.processor.local_addr()
    }

    /// Stops the processor (gracefully, unless `wait` is false: then it is
    /// only told to) and drops the database.
    async fn stop(self, wait: bool) {
        self.token.cancel();
        if wait {
            self.processor.wait().await.unwrap();
        }
        self.database.drop().await;
    }
}

/// `REQUESTS` case views (`GET /api/v1/cases/<marker>`, recorded with the
/// marker as `resource_id`) by 50 users, spread over `time`.
async fn case_views(
    addr: SocketAddr,
    scenario: &str,
    time: Duration,
    progress: Arc<AtomicUsize>,
) -> Load {
    let plan = LoadPlan {
        requests: 0..REQUESTS,
        time,
        ..LoadPlan::default()
    };
    let request = |marker: &str| {
        let n: usize = marker.rsplit('-').next().unwrap().parse().unwrap();
        http::Request::get(format!("/api/v1/cases/{marker}"))
            .header("authorization", format!("Bearer user:user-{}", n % 50))
            .body(String::new())
            .unwrap()
    };
    send_load(addr, scenario, &plan, request, progress).await
}

/// [`processor_config`] for `shards` shards, with the admin API's token.
fn cluster_processor_config(
    redis_url: &str,
    database_url: &str,
    stream_key: &str,
    shards: usize,
) -> Config {
    let mut config = processor_config(redis_url, database_url, stream_key);
    config.stream_shards = shards;
    config.admin_tokens = Some(ADMIN_TOKEN.into());
    config
}

/// A processor in a child process, killed (SIGKILL) on drop.
fn spawn_processor(
    redis_url: &str,
    database_url: &str,
    stream_key: &str,
    shards: usize,
    name: &str,
) -> Killable {
    let mut command = processor_child(CHILD_ENV, redis_url, database_url, stream_key, name);
    command
        .env("STREAM_SHARDS", shards.to_string())
        .env_remove("REDIS_CLUSTER");
    Killable::spawn(command)
}

/// Not a test of its own: the body of a processor child (see
/// [`spawn_processor`]); returns at once unless started as one.
#[test]
fn child_processor() {
    if std::env::var_os(CHILD_ENV).is_some() {
        run_processor_from_env();
    }
}

// ---------------------------------------------------------------------------
// Checking

/// `GET <path>` of the admin API at `addr`, as JSON.
async fn admin_get(addr: SocketAddr, path: &str) -> Json {
    get_json(addr, path, ADMIN_TOKEN).await
}

/// The queue status once every shard is empty, nothing pending and no
/// dead letter waits (or as it is at the deadline).
async fn queue_drained(admin: SocketAddr) -> Json {
    let path = "/api/v1/admin/user-activities/queue-status";
    let drained = wait_until("every shard drained", DRAIN, || async {
        let status = admin_get(admin, path).await;
        let empty = status["queue_entries"] == 0 && status["pending"] == 0;
        empty.then_some(status)
    })
    .await;
    match drained {
        Ok(status) => status,
        Err(_) => admin_get(admin, path).await,
    }
}

/// A field of a Redis map reply (`XINFO`), as an integer.
fn int_field(reply: &HashMap<String, Value>, field: &str) -> i64 {
    match reply.get(field) {
        Some(Value::Int(n)) => *n,
        other => panic!("{field}: {other:?}"),
    }
}

/// `XINFO STREAM <key>`'s `entries-added`: every entry ever written to
/// the shard, deleted ones included.
async fn entries_added(cluster: &RedisCluster, key: &str) -> i64 {
    let info: HashMap<String, Value> = cluster
        .query(key, redis::cmd("XINFO").arg("STREAM").arg(key))
        .await
        .expect("XINFO STREAM");
    int_field(&info, "entries-added")
}

/// `XINFO CONSUMERS <key> <group>`: each consumer's name and pending count.
async fn consumers(cluster: &RedisCluster, key: &str) -> HashMap<String, i64> {
    let reply: Vec<HashMap<String, Value>> = cluster
        .query(
            key,
            redis::cmd("XINFO").arg("CONSUMERS").arg(key).arg(GROUP),
        )
        .await
        .unwrap_or_default();
    reply
        .iter()
        .map(|consumer| {
            let name = match consumer.get("name") {
                Some(Value::BulkString(name)) => String::from_utf8_lossy(name).into_owned(),
                other => panic!("name: {other:?}"),
            };
            (name, int_field(consumer, "pending"))
        })
        .collect()
}

/// Entries in the shards' dead-letter streams.
async fn dead_lettered(cluster: &RedisCluster, shards: &StreamShards) -> u64 {
    let dead: Vec<String> = (0..shards.len()).map(|k| shards.dead_key(k)).collect();
    cluster.xlen_total(&dead).await.expect("XLEN")
}

// ---------------------------------------------------------------------------
// Scenarios

/// 1. The example app on 4 shards, one processor: every request's event
///    stored once, every shard written to (on all three masters), nothing
///    left pending, and `queue-status` showing each shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_shards_every_event_stored_once_through_every_shard() {
    let scenario = "four-shards";
    let (cluster, _turn) = cluster().await;
    let (pipeline, app) = Pipeline::start(&cluster, scenario, 4, false).await;
    let shards = pipeline.shards.clone();
    let spread = cluster.keys_per_master(shards.keys());
    assert!(
        spread.iter().all(|(_, n)| *n > 0),
        "the 4 shards fall on all 3 masters: {spread:?}"
    );

    let (load, _) = app.load(scenario, Duration::from_secs(3));
    let load = load.await.unwrap();
    assert_eq!(app.stop().await, 0, "the tracker sent everything");
    let rows = load::drained(&pipeline.database.url, &load.markers, DRAIN).await;
    let status = queue_drained(pipeline.admin()).await;
    let outcome = Outcome::new(&load, &rows, dead_lettered(&cluster, &shards).await);
    outcome.print(scenario);
    outcome.assert_complete();
    assert_eq!(outcome.dead_lettered, 0);

    // Every shard was written to, and is drained.
    for shard in shards.keys() {
        let added = entries_added(&cluster, shard).await;
        assert!(added > 0, "{shard}: no entry written");
        println!("shard {shard}: {added} entries");
    }
    let listed = status["shards"].as_array().expect("shards listed");
    assert_eq!(listed.len(), 4, "{status}");
    for (shown, key) in listed.iter().zip(shards.keys()) {
        assert_eq!(shown["key"], key.as_str());
        assert_eq!(shown["pending"], 0, "{shown}");
        assert_eq!(shown["queue_entries"], 0, "{shown}");
        assert_eq!(shown["dead_letter_length"], 0, "{shown}");
    }
    assert_eq!(status["pending"], 0, "{status}");
    assert_eq!(status["queue_entries"], 0, "{status}");
    pipeline.stop(true).await;
}

/// 2. Two processors (child processes) share the 3 shards' groups; both
///    take work; one is killed with SIGKILL mid-load and never comes
///    back: the survivor claims what it left pending, and stored = sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processors_split_the_shards_one_killed_nothing_lost() {
    let scenario = "two-processors";
    let (cluster, _turn) = cluster().await;
    let database = ScratchDatabase::create(&format!("cluster_{scenario}")).await;
    let key = stream_key(scenario);
    let shards = StreamShards::new(&key, 3);
    let url = cluster.redis_url();

    // The first applies the migrations before the app could fall back.
    let mut doomed = spawn_processor(&url, &database.url, &key, 3, "doomed");
    let _survivor = spawn_processor(&url, &database.url, &key, 3, "survivor");
    wait_until("both processors in every shard's group", DRAIN, || async {
        for shard in shards.keys() {
            let names = consumers(&cluster, shard).await;
            if !(names.contains_key("doomed") && names.contains_key("survivor")) {
                return None;
            }
        }
        Some(())
    })
    .await
    .unwrap();

    let app = App::start(&url, &key, 3, None).await;
    let (load, progress) = app.load(scenario, Duration::from_secs(4));

    // Both take entries: each is seen holding some unacknowledged.
    let mut seen_holding = HashSet::new();
    let deadline = tokio::time::Instant::now() + DRAIN;
    while !(seen_holding.contains("doomed") && seen_holding.contains("survivor")) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "both processors take work: only {seen_holding:?} seen holding entries"
        );
        for shard in shards.keys() {
            for (name, pending) in consumers(&cluster, shard).await {
                if pending > 0 {
                    seen_holding.insert(name);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    load::answered(&progress, REQUESTS / 2, DRAIN).await;
    doomed.kill();

    let load = load.await.unwrap();
    assert_eq!(app.stop().await, 0, "the tracker sent everything");
    let rows = load::drained(&database.url, &load.markers, DRAIN).await;
    let outcome = Outcome::new(&load, &rows, dead_lettered(&cluster, &shards).await);
    outcome.print(scenario);
    outcome.assert_complete();
    assert_eq!(outcome.dead_lettered, 0);

    // Nothing is left pending on the dead consumer: the survivor took it.
    wait_until("nothing pending anywhere", DRAIN, || async {
        for shard in shards.keys() {
            if consumers(&cluster, shard).await.values().any(|&p| p > 0) {
                return None;
            }
        }
        Some(())
    })
    .await
    .unwrap();
    drop(_survivor);
    database.drop().await;
}

/// 3. A master (the one serving shard 0, one of the 3 shards) is killed
///    with SIGKILL mid-load; its replica is promoted. Every request
///    succeeds (the tracker falls back to PostgreSQL while the cluster
///    refuses writes); what is missing is what the dead master had
///    acknowledged and not yet replicated, at most 1 % of what was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_mid_load_fails_no_request() {
    let scenario = "master-killed";
    let (mut cluster, _turn) = cluster().await;
    let (pipeline, app) = Pipeline::start(&cluster, scenario, 3, true).await;
    let shards = pipeline.shards.clone();
    let (load, progress) = app.load(scenario, Duration::from_secs(8));

    load::answered(&progress, REQUESTS / 4, DRAIN).await;
    let slot = shards.slot(0);
    let before_kill = entries_added(&cluster, shards.key(0)).await;
    let unreplicated = cluster.replication_gap(slot).await.ok();
    let dead = cluster.kill_master_of_slot(slot).expect("SIGKILL a master");
    let failover = cluster.wait_for_failover(DRAIN).await.expect("failover");
    assert_eq!(failover.dead, dead);

    let load = load.await.unwrap();
    let counters = app.tracker.counters();
    assert_eq!(app.stop().await, 0, "the tracker sent everything");
    let status = queue_drained(pipeline.admin()).await;
    assert_eq!(status["pending"], 0, "{status}");
    let rows = load::rows_per_marker(&pipeline.database.url).await.unwrap();
    let outcome = Outcome::new(&load, &rows, dead_lettered(&cluster, &shards).await);
    let lost = outcome.missing.len();
    println!(
        "{}, lost {lost} ({:.2} % of sent: acknowledged by the dead master, not yet on its replica; \
         replication gap at the kill {unreplicated:?} bytes), stored straight into PostgreSQL {} \
         while the cluster refused writes, batch writes retried {}, failover {:?}",
        outcome.line(scenario),
        lost as f64 * 100.0 / outcome.sent as f64,
        counters.stored_direct,
        counters.retries,
        failover.took
    );
    // The dead master's shard was written to again once its replica took
    // over: the load (8 s, the kill after 2 s) outlasts the failover, and
    // the tracker goes back to the stream when the cluster answers.
    let after = entries_added(&cluster, shards.key(0)).await;
    assert!(
        after > before_kill,
        "shard 0 written after the failover: {before_kill} entries at the kill, {after} now"
    );
    assert_eq!(outcome.failed, 0, "failed requests");
    assert_eq!(outcome.duplicates, 0, "duplicated events");
    assert_eq!(outcome.dead_lettered, 0);
    assert!(
        lost * 100 <= outcome.sent,
        "lost {lost} of {}: more than 1 %",
        outcome.sent
    );
    pipeline.stop(true).await;
}

/// 4. The whole cluster gone mid-load (every node killed): the tracker
///    stops waiting on it within its timeouts and stores straight into
///    PostgreSQL, as with a single Redis down; no request fails and no
///    event is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_cluster_down_the_tracker_falls_back_to_postgres() {
    let scenario = "cluster-down";
    let (cluster, _turn) = cluster().await;
    let (pipeline, app) = Pipeline::start(&cluster, scenario, 3, true).await;
    let (load, progress) = app.load(scenario, Duration::from_secs(5));

    load::answered(&progress, REQUESTS / 3, DRAIN).await;
    let killed = std::time::Instant::now();
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
    let tracker = app.tracker.clone();
    wait_until(
        "the tracker storing straight into PostgreSQL",
        DRAIN,
        || async { (tracker.counters().stored_direct > 0).then_some(()) },
    )
    .await
    .unwrap();
    let fell_back_after = killed.elapsed();

    let load = load.await.unwrap();
    let rows = load::drained(&pipeline.database.url, &load.markers, DRAIN).await;
    let counters = app.tracker.counters();
    assert_eq!(app.stop().await, 0, "the tracker stored everything");
    let outcome = Outcome::new(&load, &rows, 0);
    println!(
        "{}, stored straight into PostgreSQL {} (the first {fell_back_after:?} after the kill)",
        outcome.line(scenario),
        counters.stored_direct
    );
    outcome.assert_complete();
    assert!(counters.stored_direct > 0, "{counters:#?}");

    // Not awaited: with no Redis to acknowledge to, the processor's
    // shutdown retries its last acknowledgements for a while (they are
    // stored; unacknowledged, they would be read again and skipped).
    pipeline.stop(false).await;
}

/// 5. The ingest API on the cluster with 3 shards: each request's events
///    are one entry on one shard, the shards taken in turn; every event
///    is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_writes_to_every_shard_of_the_cluster() {
    let scenario = "ingest";
    let (cluster, _turn) = cluster().await;
    let database = ScratchDatabase::create(&format!("cluster_{scenario}")).await;
    let key = stream_key(scenario);
    let shards = StreamShards::new(&key, 3);

    let token = CancellationToken::new();
    let mut config = cluster_processor_config(&cluster.redis_url(), &database.url, &key, 3);
    config.ingest_listen = "127.0.0.1:0".into();
    config.ingest_write_keys = Some("web=cluster-write-key".into());
    let processor = Processor::start(config, token.clone()).await.unwrap();
    let ingest = processor.ingest_addr().expect("the ingest listener");

    let client: Client<_, String> = Client::builder(TokioExecutor::new()).build_http();
    let requests = 6;
    let mut markers = Vec::new();
    for request in 0..requests {
        let batch: Vec<Json> = (0..100)
            .map(|n| {
                let marker = format!("{scenario}-{request}-{n}");
                markers.push(marker.clone());
                serde_json::json!({
                    "type": "track",
                    "event": "case_view",
                    "userId": format!("user-{}", n % 7),
                    "messageId": marker,
                    "properties": {"resource_type": "case", "resource_id": marker},
                })
            })
            .collect();
        let body = serde_json::json!({"batch": batch, "writeKey": "cluster-write-key"});
        let post = http::Request::post(format!("http://{ingest}/v1/batch"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .unwrap();
        let response = client.request(post).await.expect("the ingest answers");
        let status = response.status();
        let answer = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(status, 200, "{answer:?}");
    }

    let rows = load::drained(&database.url, &markers, DRAIN).await;
    let load = Load { markers, failed: 0 };
    let outcome = Outcome::new(&load, &rows, dead_lettered(&cluster, &shards).await);
    outcome.print(scenario);
    outcome.assert_complete();
    for shard in shards.keys() {
        let added = entries_added(&cluster, shard).await;
        assert_eq!(added, requests / 3, "{shard}: one entry a request, in turn");
    }

    token.cancel();
    processor.wait().await.unwrap();
    database.drop().await;
}

/// 6. The slot of a shard moved to another master mid-load, as a
///    resharding does (its keys migrated while clients use them): the
///    clients follow `ASK` and `MOVED` without an error, no request fails,
///    every event is stored once, and the shard is read from its new
///    master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_moved_to_another_master_mid_load_loses_nothing() {
    let scenario = "resharded";
    let (mut cluster, _turn) = cluster().await;
    let (pipeline, app) = Pipeline::start(&cluster, scenario, 3, false).await;
    let shards = pipeline.shards.clone();
    let (load, progress) = app.load(scenario, Duration::from_secs(5));

    load::answered(&progress, REQUESTS / 3, DRAIN).await;
    let slot = shards.slot(0);
    let from = cluster.master_of_slot(slot).node.clone();
    let to = cluster
        .masters()
        .iter()
        .position(|m| m.node != from)
        .expect("another master");
    let moved_keys = cluster.move_slot(slot, to).await.expect("the slot moves");
    let now_on = cluster.master_of_slot(slot).node.clone();
    assert_ne!(now_on, from);
    let before_end = entries_added(&cluster, shards.key(0)).await;

    let load = load.await.unwrap();
    let counters = app.tracker.counters();
    assert_eq!(app.stop().await, 0, "the tracker sent everything");
    let rows = load::drained(&pipeline.database.url, &load.markers, DRAIN).await;
    let status = queue_drained(pipeline.admin()).await;
    let outcome = Outcome::new(&load, &rows, dead_lettered(&cluster, &shards).await);
    println!(
        "{}, slot {slot} of {} moved from {from} to {now_on} with {moved_keys} keys, \
         batch writes failed {}",
        outcome.line(scenario),
        shards.key(0),
        counters.send_errors
    );
    outcome.assert_complete();
    assert_eq!(outcome.dead_lettered, 0);
    assert_eq!(
        counters.send_errors, 0,
        "the move is invisible to the tracker"
    );
    assert_eq!(status["pending"], 0, "{status}");
    assert!(
        entries_added(&cluster, shards.key(0)).await > before_end,
        "the shard written to on its new master"
    );
    pipeline.stop(true).await;
}

/// 7. `REDIS_URL` naming one node of the cluster as if it were a single
///    Redis: the processor refuses to start and says what to set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_of_a_cluster_named_as_a_single_redis_is_a_clear_error() {
    let (cluster, _turn) = cluster().await;
    let database = ScratchDatabase::create("cluster_one_node").await;
    let key = stream_key("one-node");
    let elsewhere = cluster
        .masters()
        .iter()
        .find(|m| !m.owns(activity_tracking::harness::key_slot(&key)))
        .expect("a master without the key's slot")
        .node
        .url();
    let config = cluster_processor_config(&elsewhere, &database.url, &key, 1);
    let error = match Processor::start(config, CancellationToken::new()).await {
        Ok(_) => panic!("a processor started on one node of a cluster"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("is one node of a Redis Cluster") && error.contains("REDIS_CLUSTER=true"),
        "{error}"
    );
    database.drop().await;
}
