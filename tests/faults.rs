//! Fault injection: an axum app with the activity layer under a bounded
//! load, private Redis and PostgreSQL servers, a processor, and one fault
//! per scenario (a processor killed, a database stopped, poison in the
//! stream). After recovery the pipeline is drained and every request's
//! event is looked up in the table by its marker (the request's unique
//! case id, stored as `resource_id`), so a missing or duplicated event is
//! named, not only counted.
//!
//! Each scenario prints one line:
//! `scenario <name>: sent N, stored N, duplicates 0, dead-lettered K, failed requests 0`.
//!
//! Processors that must be killed with SIGKILL run as child processes: this
//! test executable started again on its `child_processor` test, which runs
//! the processor's `run` with the settings from the environment (as the
//! `activity-processor serve` binary does).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use activity_processor::{Config, Processor};
use activity_tracker::{ActivityTracker, ActivityType};
use activity_tracking::harness::{PrivatePostgres, PrivateRedis, wait_until};
use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use http::Method;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
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

/// An app with the layer on a port-0 listener: `GET /cases/{id}` is
/// recorded as `case_view` with `resource_id = id`.
struct App {
    addr: SocketAddr,
    tracker: ActivityTracker,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

impl App {
    async fn start(redis_url: &str, stream_key: &str) -> App {
        let tracker = ActivityTracker::builder()
            .redis_url(redis_url)
            .stream_key(stream_key)
            .retry_backoff(Duration::from_millis(20), Duration::from_millis(500))
            .route(Method::GET, "/cases/{id}", ActivityType::CaseView)
            .resource("case", "id")
            .build()
            .await
            .expect("tracker");
        let app = Router::new()
            .route(
                "/cases/{id}",
                get(|Path(id): Path<String>| async move { id }),
            )
            .layer(tracker.layer());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
                .unwrap();
            }
        });
        App {
            addr,
            tracker,
            shutdown,
            server,
        }
    }

    /// Stops serving and flushes the tracker; returns how many events it
    /// could not send.
    async fn stop(self) -> u64 {
        self.shutdown.cancel();
        let _ = self.server.await;
        self.tracker.shutdown().await.unsent
    }
}

fn processor_config(redis_url: &str, database_url: &str, stream_key: &str) -> Config {
    let mut config = Config::from_env();
    config.redis_url = redis_url.to_owned();
    config.database_url = database_url.to_owned();
    config.stream_key = stream_key.to_owned();
    config.admin_listen = "127.0.0.1:0".into();
    config.batch_size = 500;
    config.flush_interval_ms = 50;
    config.claim_idle_ms = 1000;
    config.consumer_name = Some("in-process".into());
    config.legacy_list_key = None;
    config
}

/// A processor in a child process, killed (SIGKILL) on drop.
struct ChildProcessor(Option<Child>);

impl ChildProcessor {
    fn spawn(redis_url: &str, database_url: &str, stream_key: &str, name: &str) -> Self {
        let exe = std::env::current_exe().expect("test executable");
        let child = Command::new(exe)
            .args([
                "child_processor",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, "1")
            .env("REDIS_URL", redis_url)
            .env("DATABASE_URL", database_url)
            .env("STREAM_KEY", stream_key)
            .env("CONSUMER_NAME", name)
            .env("CLAIM_IDLE_MS", "1000")
            .env("BATCH_SIZE", "500")
            .env("FLUSH_INTERVAL_MS", "50")
            .env("ADMIN_LISTEN", "127.0.0.1:0")
            .env_remove("LEGACY_LIST_KEY")
            .env_remove("RETENTION_DAYS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a processor child");
        ChildProcessor(Some(child))
    }

    /// SIGKILL: the batch in hand is neither committed nor acknowledged.
    fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            child.kill().expect("SIGKILL the processor");
            child.wait().expect("reap the processor");
        }
    }
}

impl Drop for ChildProcessor {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Not a test of its own: the body of a processor child (see
/// [`ChildProcessor`]); returns at once unless started as one.
#[test]
fn child_processor() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // The parent may start us before the database accepts connections
        // again: retry the start like a supervisor would.
        loop {
            match activity_processor::run(Config::from_env(), CancellationToken::new()).await {
                Ok(()) => return,
                Err(e) => {
                    eprintln!("processor child: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
}

// ---------------------------------------------------------------------------
// Load

/// What the clients saw: every request's marker and how many failed.
struct Load {
    markers: Vec<String>,
    failed: usize,
}

/// Sends `REQUESTS` requests `GET /cases/<scenario>-<n>` spread evenly over
/// `LOAD_TIME` from `CLIENTS` clients; `progress` counts answered requests.
async fn load(addr: SocketAddr, scenario: &str, progress: Arc<AtomicUsize>) -> Load {
    let client: Client<HttpConnector, String> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(CLIENTS)
        .build_http();
    let start = tokio::time::Instant::now();
    let mut workers = Vec::new();
    for worker in 0..CLIENTS {
        let client = client.clone();
        let progress = progress.clone();
        let scenario = scenario.to_owned();
        workers.push(tokio::spawn(async move {
            let mut failed = 0;
            for n in (worker..REQUESTS).step_by(CLIENTS) {
                tokio::time::sleep_until(start + LOAD_TIME.mul_f64(n as f64 / REQUESTS as f64))
                    .await;
                let uri = format!("http://{addr}/cases/{scenario}-{n}");
                let request = http::Request::get(uri).body(String::new()).unwrap();
                let ok = match tokio::time::timeout(Duration::from_secs(5), async {
                    let response = client.request(request).await?;
                    let status = response.status();
                    let _ = response.into_body().collect().await?;
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(status)
                })
                .await
                {
                    Ok(Ok(status)) => status.is_success(),
                    _ => false,
                };
                if !ok {
                    failed += 1;
                }
                progress.fetch_add(1, Ordering::Relaxed);
            }
            failed
        }));
    }
    let mut failed = 0;
    for worker in workers {
        failed += worker.await.unwrap();
    }
    Load {
        markers: (0..REQUESTS).map(|n| format!("{scenario}-{n}")).collect(),
        failed,
    }
}

/// Waits until at least `n` requests were answered.
async fn answered(progress: &AtomicUsize, n: usize) {
    wait_until(&format!("{n} requests answered"), DRAIN, || async {
        (progress.load(Ordering::Relaxed) >= n).then_some(())
    })
    .await
    .unwrap();
}

// ---------------------------------------------------------------------------
// Checking

/// Rows per `resource_id` in the table, or `None` while the database
/// cannot answer.
async fn stored(database_url: &str) -> Option<HashMap<String, i64>> {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(database_url)
        .await
        .ok()?;
    let rows: Vec<(Option<String>, i64)> =
        sqlx::query_as("SELECT resource_id, count(*) FROM user_activity_logs GROUP BY resource_id")
            .fetch_all(&mut conn)
            .await
            .ok()?;
    Some(
        rows.into_iter()
            .map(|(id, n)| (id.unwrap_or_default(), n))
            .collect(),
    )
}

/// Waits (bounded by `DRAIN`) until every marker is in the table, and
/// returns the rows per marker then (or as they are at the deadline).
async fn drained(database_url: &str, markers: &[String]) -> HashMap<String, i64> {
    let done = wait_until("the pipeline to drain", DRAIN, || async {
        let rows = stored(database_url).await?;
        markers.iter().all(|m| rows.contains_key(m)).then_some(rows)
    })
    .await;
    match done {
        Ok(rows) => rows,
        Err(_) => stored(database_url).await.unwrap_or_default(),
    }
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

/// The outcome of a scenario, as printed.
#[derive(Debug)]
struct Outcome {
    sent: usize,
    stored: usize,
    duplicates: i64,
    dead_lettered: u64,
    failed: usize,
    /// Markers of requests whose event is not in the table.
    missing: Vec<String>,
}

impl Outcome {
    fn new(load: &Load, rows: &HashMap<String, i64>, dead_lettered: u64) -> Outcome {
        let mut missing = Vec::new();
        let mut duplicates = 0;
        for marker in &load.markers {
            match rows.get(marker) {
                Some(n) => duplicates += n - 1,
                None => missing.push(marker.clone()),
            }
        }
        let sent_set: HashSet<&String> = load.markers.iter().collect();
        let strays: Vec<&String> = rows.keys().filter(|k| !sent_set.contains(k)).collect();
        assert!(strays.is_empty(), "rows no request made: {strays:?}");
        Outcome {
            sent: load.markers.len(),
            stored: load.markers.len() - missing.len(),
            duplicates,
            dead_lettered,
            failed: load.failed,
            missing,
        }
    }

    fn print(&self, scenario: &str) {
        println!(
            "scenario {scenario}: sent {}, stored {}, duplicates {}, dead-lettered {}, failed requests {}",
            self.sent, self.stored, self.duplicates, self.dead_lettered, self.failed
        );
    }

    /// stored = sent, no duplicate, no failed request.
    fn assert_complete(&self) {
        assert!(
            self.missing.is_empty(),
            "{} events missing, e.g. {:?}",
            self.missing.len(),
            &self.missing[..self.missing.len().min(10)]
        );
        assert_eq!(self.stored, self.sent);
        assert_eq!(self.duplicates, 0, "duplicated events");
        assert_eq!(self.failed, 0, "failed requests");
    }
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
    let app = App::start(&redis.url(), &key).await;
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
    let app = App::start(&redis.url(), &key).await;
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
    let token = CancellationToken::new();
    let processor = Processor::start(
        processor_config(&redis.url(), &postgres.url(), &key),
        token.clone(),
    )
    .await
    .unwrap();
    let app = App::start(&redis.url(), &key).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(load(app.addr, scenario, progress.clone()));

    answered(&progress, REQUESTS / 4).await;
    tokio::task::block_in_place(|| postgres.stop()).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::block_in_place(|| postgres.start_again()).unwrap();

    let load = load.await.unwrap();
    assert_eq!(app.stop().await, 0, "the tracker sent everything");
    let rows = drained(&postgres.url(), &load.markers).await;
    let outcome = Outcome::new(&load, &rows, dead_lettered(&redis.url(), &key).await);
    outcome.print(scenario);
    outcome.assert_complete();
    assert_eq!(outcome.dead_lettered, 0);
    assert!(
        processor.stats().snapshot().db_errors > 0,
        "the database really went away mid-load"
    );
    token.cancel();
    processor.wait().await.unwrap();
}

/// Poison payloads: each can never be stored, each names its marker.
fn poison(n: usize) -> Option<String> {
    let marker = format!("poison-{n}");
    match n % 6 {
        0 => Some(format!("{{\"resource_id\":\"{marker}\"")),
        1 => Some(format!("[\"{marker}\"]")),
        2 => Some(format!(
            r#"{{"v":2,"action":"login","created_at":"2025-01-01T00:00:00Z","resource_id":"{marker}"}}"#
        )),
        3 => Some(format!(
            r#"{{"action":"","created_at":"2025-01-01T00:00:00Z","resource_id":"{marker}"}}"#
        )),
        4 => Some(format!(
            r#"{{"id":"nope","action":"login","created_at":"2025-01-01T00:00:00Z","resource_id":"{marker}"}}"#
        )),
        _ => None,
    }
}

/// 7. One entry in a hundred is poison, written straight into the stream
///    between the app's: every valid event is stored, every poison entry
///    is in the dead-letter stream with its original data and a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_entries_dead_lettered_valid_ones_stored() {
    let scenario = "poison";
    let (redis, postgres) = servers().await;
    let key = stream_key(scenario);
    let token = CancellationToken::new();
    let processor = Processor::start(
        processor_config(&redis.url(), &postgres.url(), &key),
        token.clone(),
    )
    .await
    .unwrap();
    let app = App::start(&redis.url(), &key).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(load(app.addr, scenario, progress.clone()));

    let poison_count = REQUESTS / 100;
    let mut conn = redis_conn(&redis.url()).await;
    let mut poisons = HashSet::new();
    for n in 0..poison_count {
        answered(&progress, n * REQUESTS / poison_count).await;
        let mut xadd = redis::cmd("XADD");
        xadd.arg(&key).arg("*");
        match poison(n) {
            Some(data) => xadd.arg("data").arg(data),
            // No `data` field at all.
            None => xadd.arg("payload").arg(format!("poison-{n}")),
        };
        poisons.insert(format!("poison-{n}"));
        let _: String = xadd.query_async(&mut conn).await.unwrap();
    }

    let load = load.await.unwrap();
    assert_eq!(app.stop().await, 0, "the tracker sent everything");
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
        // The original payload (a data-less entry's fields, as JSON)
        // carries the poison's marker.
        let data: String = entry.get("data").expect("the original data");
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
        assert!(seen.insert(marker), "dead-lettered twice: {data:?}");
    }
    assert_eq!(seen, poisons, "every poison entry dead-lettered once");
    token.cancel();
    processor.wait().await.unwrap();
}
