//! Fault injection: an axum app with the activity layer under a bounded
//! load, private Redis and PostgreSQL servers (never the shared ones), a
//! processor, and one fault per scenario: the processor killed, one of two
//! processors killed, PostgreSQL stopped, Redis killed (the app falls back
//! to PostgreSQL), both down (the app spools), the app itself killed while
//! its spool holds events, poison entries in the stream. After recovery the
//! pipeline is drained and every request's event is looked up in the table
//! by its marker (the request's unique case id, stored as `resource_id`), so
//! a missing or duplicated event is named, not only counted.
//!
//! Each scenario prints one line:
//! `scenario <name>: sent N, stored N, duplicates 0, dead-lettered K, failed requests 0`
//! (the app-kill scenario adds what its spool held and what the kill lost).
//!
//! Processes that must be killed with SIGKILL (a processor, the app) run as
//! child processes: this test executable started again on its
//! `child_processor` or `child_app` test, which runs the processor's `run`
//! (as `activity-processor serve` does) or the app, with the settings from
//! the environment.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use activity_processor::Processor;
use activity_store::PostgresSink;
use activity_tracker::{ActivityTracker, ActivityTrackerBuilder, ActivityType};
use activity_tracking::harness::load::{self, Load, LoadPlan, Outcome, send_load};
use activity_tracking::harness::{
    HttpServer, Killable, PrivatePostgres, PrivateRedis, processor_child, processor_config,
    run_processor_from_env, test_child, wait_until,
};
use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use http::Method;
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

/// Requests per scenario.
const REQUESTS: usize = 3000;
/// Over how long they are spread.
const LOAD_TIME: Duration = Duration::from_secs(3);
/// Concurrent clients.
const CLIENTS: usize = 8;
/// Longest wait for the pipeline to drain after recovery.
const DRAIN: Duration = Duration::from_secs(60);
/// Set in the environment of a child started to run a processor.
const CHILD_ENV: &str = "ACTIVITY_FAULTS_CHILD_PROCESSOR";

// ---------------------------------------------------------------------------
// Servers, app, processor

async fn servers() -> (PrivateRedis, PrivatePostgres) {
    let redis = tokio::task::spawn_blocking(PrivateRedis::start);
    let postgres = tokio::task::spawn_blocking(PrivatePostgres::start);
    let redis = redis.await.unwrap().expect("private redis-server");
    let postgres = postgres.await.unwrap().expect("private PostgreSQL");
    (redis, postgres)
}

fn stream_key(scenario: &str) -> String {
    format!("test:faults:{scenario}:{}", uuid::Uuid::now_v7())
}

/// Where the app's tracker falls back to when the stream cannot be written.
#[derive(Debug, Clone, Default)]
struct Fallback {
    /// `database_url`: straight into the table.
    database_url: Option<String>,
    /// `spool_path`: the local spool file.
    spool_path: Option<PathBuf>,
}

/// The app's tracker: `GET /cases/{id}` is recorded as `case_view` with
/// `resource_id = id`.
fn tracker_builder(
    redis_url: &str,
    stream_key: &str,
    fallback: &Fallback,
) -> ActivityTrackerBuilder {
    let mut builder = ActivityTracker::builder()
        .redis_url(redis_url)
        .stream_key(stream_key)
        .retry_backoff(Duration::from_millis(20), Duration::from_millis(500))
        .fallback_probe_interval(Duration::from_millis(200))
        .route(Method::GET, "/cases/{id}", ActivityType::CaseView)
        .resource("case", "id");
    if let Some(url) = &fallback.database_url {
        builder = builder.fallback_sink(PostgresSink::connect_lazy(url).expect("a valid url"));
    }
    if let Some(path) = &fallback.spool_path {
        builder = builder.spool_path(path);
    }
    builder
}

fn routes(tracker: &ActivityTracker) -> Router {
    Router::new()
        .route(
            "/cases/{id}",
            get(|Path(id): Path<String>| async move { id }),
        )
        .layer(tracker.layer())
}

/// An app with the layer on a port-0 listener (see [`tracker_builder`]).
struct App {
    addr: SocketAddr,
    tracker: ActivityTracker,
    server: HttpServer,
}

impl App {
    async fn start(redis_url: &str, stream_key: &str, fallback: &Fallback) -> App {
        let tracker = tracker_builder(redis_url, stream_key, fallback)
            .build()
            .await
            .expect("tracker");
        let server = HttpServer::start(routes(&tracker)).await;
        App {
            addr: server.addr(),
            tracker,
            server,
        }
    }

    /// Stops serving and flushes the tracker; returns how many events it
    /// could not send.
    async fn stop(self) -> u64 {
        self.server.stop().await;
        self.tracker.shutdown().await.unsent
    }
}

/// The processor in this test's process on the scenario's servers, and the
/// token that stops it.
async fn start_processor(
    redis: &PrivateRedis,
    postgres: &PrivatePostgres,
    stream_key: &str,
) -> (Processor, CancellationToken) {
    let token = CancellationToken::new();
    let config = processor_config(&redis.url(), &postgres.url(), stream_key);
    let processor = Processor::start(config, token.clone()).await.unwrap();
    (processor, token)
}

/// A processor in a child process, killed (SIGKILL) on drop.
struct ChildProcessor;

impl ChildProcessor {
    fn spawn(redis_url: &str, database_url: &str, stream_key: &str, name: &str) -> Killable {
        let command = processor_child(CHILD_ENV, redis_url, database_url, stream_key, name);
        Killable::spawn(command)
    }
}

/// Not a test of its own: the body of a processor child (see
/// [`ChildProcessor`]); returns at once unless started as one.
#[test]
fn child_processor() {
    if std::env::var_os(CHILD_ENV).is_some() {
        run_processor_from_env();
    }
}

// ---------------------------------------------------------------------------
// Load and checking (activity_tracking::harness::load)

/// Sends `REQUESTS` requests `GET /cases/<scenario>-<n>` spread evenly over
/// `LOAD_TIME` from `CLIENTS` clients; `progress` counts answered requests.
async fn load(addr: SocketAddr, scenario: &str, progress: Arc<AtomicUsize>) -> Load {
    load_range(addr, scenario, 0..REQUESTS, LOAD_TIME, progress).await
}

/// Sends the requests numbered `range`, spread evenly over `time`.
async fn load_range(
    addr: SocketAddr,
    scenario: &str,
    range: std::ops::Range<usize>,
    time: Duration,
    progress: Arc<AtomicUsize>,
) -> Load {
    let plan = LoadPlan {
        requests: range,
        time,
        clients: CLIENTS,
        ..LoadPlan::default()
    };
    let request = |marker: &str| {
        http::Request::get(format!("/cases/{marker}"))
            .body(String::new())
            .unwrap()
    };
    send_load(addr, scenario, &plan, request, progress).await
}

/// Waits until at least `n` requests were answered.
async fn answered(progress: &AtomicUsize, n: usize) {
    load::answered(progress, n, DRAIN).await
}

/// Waits (bounded by `DRAIN`) until every marker is in the table.
async fn drained(database_url: &str, markers: &[String]) -> HashMap<String, i64> {
    load::drained(database_url, markers, DRAIN).await
}

/// Rows per marker, or `None` while the database cannot answer.
async fn stored(database_url: &str) -> Option<HashMap<String, i64>> {
    load::rows_per_marker(database_url).await
}

async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("private redis reachable")
}

async fn dead_lettered(redis_url: &str, stream_key: &str) -> u64 {
    redis_conn(redis_url)
        .await
        .xlen(format!("{stream_key}:dead"))
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------
// Scenarios

/// 1. The only processor is killed with SIGKILL mid-load and started again
///    under the same consumer name: its unacknowledged entries are read
///    again and stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processor_killed_mid_load_and_restarted() {
    let scenario = "processor-sigkill";
    let (redis, postgres) = servers().await;
    let key = stream_key(scenario);
    let mut processor = ChildProcessor::spawn(&redis.url(), &postgres.url(), &key, "p1");
    let app = App::start(&redis.url(), &key, &Fallback::default()).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(load(app.addr, scenario, progress.clone()));

    answered(&progress, REQUESTS / 3).await;
    processor.kill();
    answered(&progress, REQUESTS * 2 / 3).await;
    let _processor = ChildProcessor::spawn(&redis.url(), &postgres.url(), &key, "p1");

    let load = load.await.unwrap();
    assert_eq!(app.stop().await, 0, "the tracker sent everything");
    let rows = drained(&postgres.url(), &load.markers).await;
    let outcome = Outcome::new(&load, &rows, dead_lettered(&redis.url(), &key).await);
    outcome.print(scenario);
    outcome.assert_complete();
    assert_eq!(outcome.dead_lettered, 0);
}

/// 2. Two processors in one group; one is killed mid-load and never comes
///    back: the survivor claims the entries it left pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_processors_killed_survivor_reclaims() {
    let scenario = "group-survivor";
    let (redis, postgres) = servers().await;
    let key = stream_key(scenario);
    let mut doomed = ChildProcessor::spawn(&redis.url(), &postgres.url(), &key, "doomed");
    let _survivor = ChildProcessor::spawn(&redis.url(), &postgres.url(), &key, "survivor");
    let app = App::start(&redis.url(), &key, &Fallback::default()).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(load(app.addr, scenario, progress.clone()));

    answered(&progress, REQUESTS / 2).await;
    doomed.kill();

    let load = load.await.unwrap();
    assert_eq!(app.stop().await, 0, "the tracker sent everything");
    let rows = drained(&postgres.url(), &load.markers).await;
    let outcome = Outcome::new(&load, &rows, dead_lettered(&redis.url(), &key).await);
    outcome.print(scenario);
    outcome.assert_complete();
    assert_eq!(outcome.dead_lettered, 0);

    // Nothing is left pending on the dead consumer: the survivor took it.
    let mut conn = redis_conn(&redis.url()).await;
    wait_until("no entry pending in the group", DRAIN, || {
        let mut conn = conn.clone();
        let key = key.clone();
        async move {
            let pending: redis::streams::StreamPendingReply =
                conn.xpending(&key, "activity-processor").await.ok()?;
            (pending.count() == 0).then_some(())
        }
    })
    .await
    .unwrap();
    let _: () = conn.del(&key).await.unwrap();
}

/// 3. PostgreSQL stopped for several seconds mid-load, then started again:
///    the processor retries and acknowledges only what it committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_stopped_mid_load_and_restarted() {
    let scenario = "postgres-down";
    let (redis, mut postgres) = servers().await;
    let key = stream_key(scenario);
    let (processor, token) = start_processor(&redis, &postgres, &key).await;
    let app = App::start(&redis.url(), &key, &Fallback::default()).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(load(app.addr, scenario, progress.clone()));

    answered(&progress, REQUESTS / 4).await;
    tokio::task::block_in_place(|| postgres.stop()).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Nothing can be stored meanwhile, so nothing is acknowledged: the
    // stream holds the events captured during the outage.
    let mut conn = redis_conn(&redis.url()).await;
    let backlog: u64 = conn.xlen(&key).await.unwrap();
    assert!(
        backlog > 0,
        "events wait in the stream while the database is down"
    );
    tokio::task::block_in_place(|| postgres.start_again()).unwrap();

    let load = load.await.unwrap();
    assert_eq!(app.stop().await, 0, "the tracker sent everything");
    let rows = drained(&postgres.url(), &load.markers).await;
    let outcome = Outcome::new(&load, &rows, dead_lettered(&redis.url(), &key).await);
    outcome.print(scenario);
    outcome.assert_complete();
    assert_eq!(outcome.dead_lettered, 0);
    token.cancel();
    processor.wait().await.unwrap();
}

/// A valid event, as a producer would write it, named by `marker`.
fn good_event(marker: &str) -> String {
    let activity = activity_tracker::Activity::new(activity_tracker::ActivityType::CaseView)
        .resource("case", marker);
    activity.to_wire_json()
}

/// One poison entry: its fields, and the markers of the valid events it
/// also holds (stored, where the entry is readable).
struct PoisonEntry {
    fields: Vec<(&'static str, String)>,
    good: Vec<String>,
}

/// Poison entries: each holds something that can never be stored, named by
/// its marker. Version 1 entries of five kinds and one without `data`;
/// a version 2 entry with a bad line between two good ones (the bad line
/// is dead-lettered alone, the good ones stored); a version 2 entry whose
/// `n` does not match its lines (dead-lettered whole).
fn poison(n: usize) -> PoisonEntry {
    let marker = format!("poison-{n}");
    let data = |text: String| PoisonEntry {
        fields: vec![("data", text)],
        good: Vec::new(),
    };
    match n % 8 {
        0 => data(format!("{{\"resource_id\":\"{marker}\"")),
        1 => data(format!("[\"{marker}\"]")),
        2 => data(format!(
            r#"{{"v":2,"action":"login","created_at":"2025-01-01T00:00:00Z","resource_id":"{marker}"}}"#
        )),
        3 => data(format!(
            r#"{{"action":"","created_at":"2025-01-01T00:00:00Z","resource_id":"{marker}"}}"#
        )),
        4 => data(format!(
            r#"{{"id":"nope","action":"login","created_at":"2025-01-01T00:00:00Z","resource_id":"{marker}"}}"#
        )),
        5 => PoisonEntry {
            // No `data` field at all.
            fields: vec![("payload", marker)],
            good: Vec::new(),
        },
        6 => {
            let good = vec![format!("good-{n}-0"), format!("good-{n}-2")];
            let lines = [
                good_event(&good[0]),
                format!("{{\"resource_id\":\"{marker}\""),
                good_event(&good[1]),
            ];
            PoisonEntry {
                fields: vec![("n", "3".into()), ("events", lines.join("\n"))],
                good,
            }
        }
        _ => {
            let lines = [good_event(&marker), good_event(&format!("{marker}-b"))];
            PoisonEntry {
                fields: vec![("n", "5".into()), ("events", lines.join("\n"))],
                good: Vec::new(),
            }
        }
    }
}

/// 7. One entry in a hundred is poison, written straight into the stream
///    between the app's: every valid event is stored (those in a version 2
///    entry with a bad line too), every poison is in the dead-letter
///    stream once, with its original data and a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_entries_dead_lettered_valid_ones_stored() {
    let scenario = "poison";
    let (redis, postgres) = servers().await;
    let key = stream_key(scenario);
    let (processor, token) = start_processor(&redis, &postgres, &key).await;
    let app = App::start(&redis.url(), &key, &Fallback::default()).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(load(app.addr, scenario, progress.clone()));

    let poison_count = REQUESTS / 100;
    let mut conn = redis_conn(&redis.url()).await;
    let mut poisons = HashSet::new();
    let mut good = Vec::new();
    for n in 0..poison_count {
        answered(&progress, n * REQUESTS / poison_count).await;
        let entry = poison(n);
        let mut xadd = redis::cmd("XADD");
        xadd.arg(&key).arg("*");
        for (field, value) in &entry.fields {
            xadd.arg(field).arg(value);
        }
        poisons.insert(format!("poison-{n}"));
        good.extend(entry.good);
        let _: String = xadd.query_async(&mut conn).await.unwrap();
    }

    let mut load = load.await.unwrap();
    assert_eq!(app.stop().await, 0, "the tracker sent everything");
    load.markers.extend(good);
    let rows = drained(&postgres.url(), &load.markers).await;
    let dead_key = format!("{key}:dead");
    wait_until("every poison entry dead-lettered", DRAIN, || {
        let mut conn = conn.clone();
        let dead_key = dead_key.clone();
        async move {
            let n: usize = conn.xlen(&dead_key).await.ok()?;
            (n >= poison_count).then_some(())
        }
    })
    .await
    .unwrap();
    let outcome = Outcome::new(&load, &rows, dead_lettered(&redis.url(), &key).await);
    outcome.print(scenario);
    outcome.assert_complete();
    assert_eq!(outcome.dead_lettered, poison_count as u64);

    let dead: redis::streams::StreamRangeReply = conn.xrange_all(&dead_key).await.unwrap();
    let mut seen = HashSet::new();
    for entry in &dead.ids {
        let reason: String = entry.get("reason").expect("a reason");
        assert!(!reason.is_empty());
        // The original payload (a data-less entry's fields, as JSON; a
        // version 2 entry's line, or its `events` when unreadable)
        // carries the poison's marker.
        let data: String = entry
            .get("data")
            .or_else(|| entry.get("events"))
            .expect("the original data");
        let marker = data
            .find("poison-")
            .map(|at| {
                let digits = data[at + 7..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>();
                format!("poison-{digits}")
            })
            .unwrap_or_else(|| panic!("not a poison entry: {data:?}"));
        let n: usize = marker[7..].parse().unwrap();
        match n % 8 {
            6 => {
                assert_eq!(entry.get::<String>("index").as_deref(), Some("1"));
                assert!(entry.get::<String>("entry").is_some());
            }
            7 => {
                assert_eq!(entry.get::<String>("n").as_deref(), Some("5"));
                assert!(
                    reason.contains("n is 5 but events holds 2 lines"),
                    "{reason}"
                );
            }
            _ => {}
        }
        assert!(seen.insert(marker), "dead-lettered twice: {data:?}");
    }
    assert_eq!(seen, poisons, "every poison entry dead-lettered once");
    token.cancel();
    processor.wait().await.unwrap();
}

/// 4. Redis killed mid-load: the app keeps serving and writes straight
///    into PostgreSQL; Redis started again, the app goes back to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_load_app_falls_back_to_postgres() {
    let scenario = "redis-down";
    let (mut redis, postgres) = servers().await;
    let key = stream_key(scenario);
    let (processor, token) = start_processor(&redis, &postgres, &key).await;
    let fallback = Fallback {
        database_url: Some(postgres.url()),
        spool_path: None,
    };
    let app = App::start(&redis.url(), &key, &fallback).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(load(app.addr, scenario, progress.clone()));

    answered(&progress, REQUESTS / 3).await;
    tokio::task::block_in_place(|| redis.kill()).unwrap();
    answered(&progress, REQUESTS * 2 / 3).await;
    wait_until(
        "events written straight into the database",
        DRAIN,
        || async { (app.tracker.counters().stored_direct > 0).then_some(()) },
    )
    .await
    .unwrap();
    tokio::task::block_in_place(|| redis.start_again()).unwrap();

    let load = load.await.unwrap();
    let counters = app.tracker.counters();
    assert_eq!(app.stop().await, 0, "the tracker wrote everything");
    let rows = drained(&postgres.url(), &load.markers).await;
    let dead = wait_until("Redis loaded", DRAIN, || async {
        let mut conn = redis::Client::open(redis.url())
            .ok()?
            .get_multiplexed_async_connection()
            .await
            .ok()?;
        conn.xlen::<_, u64>(format!("{key}:dead")).await.ok()
    })
    .await
    .unwrap();
    let outcome = Outcome::new(&load, &rows, dead);
    outcome.print(scenario);
    outcome.assert_complete();
    assert!(
        counters.stored_direct > 0,
        "events went straight into the database: {counters:?}"
    );
    token.cancel();
    processor.wait().await.unwrap();
}

fn spool_file(scenario: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "activity-spool-{scenario}-{}",
        uuid::Uuid::new_v4().simple()
    ))
}

/// Events in the spool's complete records (`length | TIMED: u32 LE |
/// crc32: u32 LE | written_ms: i64 LE (with TIMED) | payload`, one
/// activity per payload line).
fn spooled_events(path: &FsPath) -> usize {
    const TIMED: u32 = 0x8000_0000;
    let bytes = std::fs::read(path).unwrap_or_default();
    let mut at = 0;
    let mut events = 0;
    while at + 8 <= bytes.len() {
        let word = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let start = at + 8 + if word & TIMED != 0 { 8 } else { 0 };
        let len = (word & !TIMED) as usize;
        let Some(payload) = bytes.get(start..start + len) else {
            break;
        };
        events += payload
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .count();
        at = start + len;
    }
    events
}

fn file_len(path: &FsPath) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// 5. Redis and PostgreSQL both down mid-load: the app spools; both come
///    back, the spool is replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_and_postgres_down_app_spools() {
    let scenario = "both-down";
    let (mut redis, mut postgres) = servers().await;
    let key = stream_key(scenario);
    let (processor, token) = start_processor(&redis, &postgres, &key).await;
    let spool = spool_file(scenario);
    let fallback = Fallback {
        database_url: Some(postgres.url()),
        spool_path: Some(spool.clone()),
    };
    let app = App::start(&redis.url(), &key, &fallback).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(load(app.addr, scenario, progress.clone()));

    answered(&progress, REQUESTS / 4).await;
    tokio::task::block_in_place(|| {
        redis.kill()?;
        postgres.stop()
    })
    .unwrap();
    answered(&progress, REQUESTS * 3 / 4).await;
    // Down until the spool has really been used, however long the
    // dispatcher takes to find both destinations down.
    wait_until("events spooled", DRAIN, || async {
        (app.tracker.counters().spooled > 0).then_some(())
    })
    .await
    .unwrap();
    tokio::task::block_in_place(|| {
        postgres.start_again()?;
        redis.start_again()
    })
    .unwrap();

    let load = load.await.unwrap();
    let rows = drained(&postgres.url(), &load.markers).await;
    let counters = wait_until("the spool replayed", DRAIN, || async {
        let c = app.tracker.counters();
        (c.replayed >= c.spooled).then_some(c)
    })
    .await
    .unwrap_or_else(|_| panic!("spooled and replayed: {:?}", app.tracker.counters()));
    assert_eq!(app.stop().await, 0, "the tracker wrote everything");
    let outcome = Outcome::new(&load, &rows, dead_lettered(&redis.url(), &key).await);
    outcome.print(scenario);
    outcome.assert_complete();
    assert_eq!(outcome.dead_lettered, 0);
    assert_eq!(counters.replayed, counters.spooled, "{counters:?}");
    token.cancel();
    processor.wait().await.unwrap();
    let _ = std::fs::remove_file(&spool);
}

/// Set in the environment of a child started to run the app.
const CHILD_APP_ENV: &str = "ACTIVITY_FAULTS_CHILD_APP";
/// The child app's channel capacity.
const CHILD_CHANNEL: usize = 1024;
/// The child app's dispatcher buffer capacity.
const CHILD_BUFFER: usize = 4096;
/// Events in batches being written at once: the builder's default pool
/// size (2) times its default batch size (1024).
const CHILD_IN_FLIGHT: usize = 2 * 1024;
/// The most events a SIGKILL of the child app may lose.
const CHILD_BOUND: usize = CHILD_CHANNEL + CHILD_BUFFER + CHILD_IN_FLIGHT;

/// Not a test of its own: the body of an app child (see [`ChildApp`]);
/// returns at once unless started as one.
#[test]
fn child_app() {
    if std::env::var_os(CHILD_APP_ENV).is_none() {
        return;
    }
    let env = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} set"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _ = tracing_subscriber::fmt()
        .with_env_filter("activity_tracker=debug")
        .with_writer(std::io::stderr)
        .try_init();
    runtime.block_on(async {
        let fallback = Fallback {
            database_url: Some(env("DATABASE_URL")),
            spool_path: Some(env("SPOOL_PATH").into()),
        };
        let tracker = tracker_builder(&env("REDIS_URL"), &env("STREAM_KEY"), &fallback)
            .channel_capacity(CHILD_CHANNEL)
            .buffer_capacity(CHILD_BUFFER)
            .build()
            .await
            .expect("tracker");
        let listener = tokio::net::TcpListener::bind(env("APP_LISTEN"))
            .await
            .unwrap();
        axum::serve(
            listener,
            routes(&tracker).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
}

/// Appends to `path` (the child's log, kept beside its spool).
fn log_file(path: &FsPath) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

/// The app in a child process, killed (SIGKILL) on drop.
struct ChildApp;

impl ChildApp {
    async fn spawn(
        redis_url: &str,
        database_url: &str,
        stream_key: &str,
        spool: &FsPath,
        port: u16,
    ) -> Killable {
        let mut command = test_child("child_app", CHILD_APP_ENV);
        command
            .env("REDIS_URL", redis_url)
            .env("DATABASE_URL", database_url)
            .env("STREAM_KEY", stream_key)
            .env("SPOOL_PATH", spool)
            .env("APP_LISTEN", format!("127.0.0.1:{port}"))
            .stderr(log_file(&spool.with_extension("log")));
        let child = Killable::spawn(command);
        wait_until("the app child to listen", DRAIN, || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(drop)
        })
        .await
        .unwrap();
        child
    }
}

/// 6. The app killed with SIGKILL while Redis and PostgreSQL are down and
///    its spool holds events; servers back, the app started again replays
///    the spool. Only what was still in the app's memory (channel and
///    dispatcher buffer) may be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_killed_while_spooling_replays_at_restart() {
    let scenario = "app-sigkill";
    let (mut redis, mut postgres) = servers().await;
    let key = stream_key(scenario);
    let (processor, token) = start_processor(&redis, &postgres, &key).await;
    let spool = spool_file(scenario);
    let port = activity_tracking::harness::free_port().unwrap();
    let mut app = ChildApp::spawn(&redis.url(), &postgres.url(), &key, &spool, port).await;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let progress = Arc::new(AtomicUsize::new(0));
    let time = LOAD_TIME / 2;
    let first = load_range(addr, scenario, 0..REQUESTS / 3, time, progress.clone()).await;

    tokio::task::block_in_place(|| {
        redis.kill()?;
        postgres.stop()
    })
    .unwrap();
    let second = load_range(addr, scenario, REQUESTS / 3..REQUESTS, time, progress).await;
    // Killed once the spool holds events and has stopped growing for a
    // while: what the dispatcher was going to spool is spooled.
    let mut last = (0, tokio::time::Instant::now());
    wait_until("the spool to hold events and stop growing", DRAIN, || {
        let len = file_len(&spool);
        let now = tokio::time::Instant::now();
        if len != last.0 {
            last = (len, now);
        }
        let settled = len > 0 && now - last.1 >= Duration::from_millis(1500);
        async move { settled.then_some(()) }
    })
    .await
    .unwrap();
    app.kill();
    let spooled_at_kill = spooled_events(&spool);

    tokio::task::block_in_place(|| {
        postgres.start_again()?;
        redis.start_again()
    })
    .unwrap();
    let _app = ChildApp::spawn(&redis.url(), &postgres.url(), &key, &spool, port).await;
    // Drained: the spool replayed and truncated, the stream empty (the
    // processor deletes what it stored), nothing pending.
    let mut conn = redis_conn(&redis.url()).await;
    wait_until("the spool replayed and the stream drained", DRAIN, || {
        let mut conn = conn.clone();
        let key = key.clone();
        let spool = spool.clone();
        async move {
            let length: u64 = conn.xlen(&key).await.ok()?;
            let pending: redis::streams::StreamPendingReply =
                conn.xpending(&key, "activity-processor").await.ok()?;
            (file_len(&spool) == 0 && length == 0 && pending.count() == 0).then_some(())
        }
    })
    .await
    .unwrap();

    let load = Load {
        markers: first.markers.into_iter().chain(second.markers).collect(),
        failed: first.failed + second.failed,
    };
    let database_url = postgres.url();
    let rows = wait_until("the table to answer", DRAIN, || stored(&database_url))
        .await
        .unwrap();
    let outcome = Outcome::new(&load, &rows, dead_lettered(&redis.url(), &key).await);
    // One line, the usual one plus what the kill lost and its bound.
    println!(
        "{}, spooled at the kill {spooled_at_kill}, lost at the kill (in the app's memory) {}, bound {}",
        outcome.line(scenario),
        outcome.missing.len(),
        CHILD_BOUND
    );
    assert!(outcome.missing.len() <= CHILD_BOUND);
    assert_eq!(outcome.duplicates, 0);
    assert_eq!(outcome.failed, 0);
    assert_eq!(outcome.dead_lettered, 0);
    token.cancel();
    processor.wait().await.unwrap();
    let _: () = conn.del(&key).await.unwrap();
    let _ = std::fs::remove_file(&spool);
    let _ = std::fs::remove_file(spool.with_extension("log"));
}
