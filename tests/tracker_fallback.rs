//! The tracker's fallback chain against real servers: with Redis down,
//! events go straight into `user_activity_logs`; with Redis and PostgreSQL
//! down, into the local spool, bounded in bytes; when a destination is
//! back, the tracker switches back and replays the spool; a spool left by an
//! earlier tracker (torn tail included) is replayed at start-up; an event
//! dated far ahead, spooled and replayed twice, is one row clamped to the
//! time it was spooled.
//!
//! Each database test has its own database (`#[sqlx::test]`), each Redis
//! test its own stream key or a private `redis-server`, each spool its own
//! file.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use activity_store::PostgresSink;
use activity_tracker::{
    Activity, ActivityTracker, ActivityTrackerBuilder, ActivityType, CountersSnapshot,
};
use activity_tracking::harness::{PrivatePostgres, PrivateRedis, stream_activities, wait_until};
use redis::AsyncCommands;
use sqlx::PgPool;
use uuid::Uuid;

/// A Redis nobody listens on.
const NO_REDIS: &str = "redis://127.0.0.1:1";
/// A PostgreSQL nobody listens on.
const NO_POSTGRES: &str = "postgres://postgres@127.0.0.1:1/postgres";
/// Long enough for a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(20);

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn unique_key(test: &str) -> String {
    format!("test:fallback:{test}:{}", Uuid::now_v7())
}

fn spool_path(test: &str) -> PathBuf {
    std::env::temp_dir()
        .join(format!("tracker-fallback-{test}-{}", Uuid::now_v7()))
        .join("activities.spool")
}

fn remove_spool(path: &std::path::Path) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Fast probes and retries, short timeouts: tests take seconds.
fn builder(redis_url: &str, stream_key: &str) -> ActivityTrackerBuilder {
    ActivityTracker::builder()
        .redis_url(redis_url)
        .stream_key(stream_key)
        .connect_timeout(Duration::from_millis(300))
        .response_timeout(Duration::from_secs(2))
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(100))
        .fallback_probe_interval(Duration::from_millis(100))
        .shutdown_timeout(Duration::from_secs(5))
}

/// Tracks `n` logins of users `<tag>-<i>`; returns their ids.
fn track(tracker: &ActivityTracker, tag: &str, n: usize) -> BTreeSet<Uuid> {
    let mut ids = BTreeSet::new();
    for i in 0..n {
        let activity = Activity::new(ActivityType::Login).user_id(format!("{tag}-{i}"));
        ids.insert(activity.id);
        assert!(tracker.track(activity), "queued");
    }
    ids
}

async fn wait_counters(
    tracker: &ActivityTracker,
    what: &str,
    done: impl Fn(&CountersSnapshot) -> bool,
) -> CountersSnapshot {
    match wait_until(what, WAIT, || async {
        let c = tracker.counters();
        done(&c).then_some(c)
    })
    .await
    {
        Ok(c) => c,
        Err(_) => panic!("{what}: {:?}", tracker.counters()),
    }
}

async fn table_ids(pool: &PgPool) -> BTreeSet<Uuid> {
    let rows: Vec<(Uuid,)> = sqlx::query_as("SELECT id FROM user_activity_logs")
        .fetch_all(pool)
        .await
        .expect("select ids");
    rows.into_iter().map(|(id,)| id).collect()
}

async fn stream_ids(url: &str, key: &str) -> BTreeSet<Uuid> {
    let mut conn = redis::Client::open(url)
        .expect("valid url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis reachable");
    stream_activities(&mut conn, key)
        .await
        .into_iter()
        .map(|activity| activity.id)
        .collect()
}

async fn delete_key(url: &str, key: &str) {
    if let Ok(client) = redis::Client::open(url) {
        if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
            let _: Result<(), _> = conn.del(key).await;
        }
    }
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn redis_unreachable_events_go_straight_into_the_table(pool: PgPool) {
    let tracker = builder(NO_REDIS, &unique_key("direct"))
        .fallback_sink(PostgresSink::new(pool.clone()))
        .build()
        .await
        .expect("build");
    let ids = track(&tracker, "direct", 500);
    let c = wait_counters(&tracker, "500 stored directly", |c| c.stored_direct == 500).await;
    assert_eq!((c.sent, c.spooled, c.dropped()), (0, 0, 0), "{c:?}");
    assert_eq!(c.fallback_switches, 1, "switched once: {c:?}");
    assert_eq!(table_ids(&pool).await, ids);
    // The same writer as the processor: the rollups are kept too.
    let (logins,): (i64,) = sqlx::query_as(
        "SELECT COALESCE(SUM(n), 0)::bigint FROM activity_rollup_hourly WHERE action = 'login'",
    )
    .fetch_one(&pool)
    .await
    .expect("rollups");
    assert_eq!(logins, 500);
    let summary = tracker.shutdown().await;
    assert_eq!((summary.unsent, summary.stored_direct), (0, 500));
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn the_tracker_switches_back_to_the_stream_when_redis_answers(pool: PgPool) {
    let mut redis = PrivateRedis::start().expect("private redis");
    redis.kill().expect("kill redis");
    let key = unique_key("switch-back");
    let tracker = builder(&redis.url(), &key)
        .fallback_sink(PostgresSink::new(pool.clone()))
        .build()
        .await
        .expect("build");
    let down = track(&tracker, "down", 200);
    wait_counters(&tracker, "stored directly", |c| c.stored_direct == 200).await;
    assert_eq!(table_ids(&pool).await, down);

    redis.start_again().expect("restart redis");
    wait_counters(&tracker, "switched back", |c| c.fallback_switches == 2).await;
    let up = track(&tracker, "up", 200);
    let c = wait_counters(&tracker, "sent to the stream", |c| c.sent == 200).await;
    assert_eq!((c.stored_direct, c.fallback_switches), (200, 2), "{c:?}");
    assert_eq!(stream_ids(&redis.url(), &key).await, up);
    assert_eq!(tracker.shutdown().await.unsent, 0);
}

#[tokio::test]
async fn both_down_the_spool_fills_to_its_limit_then_is_replayed_into_the_stream() {
    let mut redis = PrivateRedis::start().expect("private redis");
    redis.kill().expect("kill redis");
    let key = unique_key("spool");
    let spool = spool_path("spool");
    let limit = 30_000;
    let tracker = builder(&redis.url(), &key)
        .fallback_sink(PostgresSink::connect_lazy(NO_POSTGRES).expect("a valid url"))
        .spool_path(&spool)
        .spool_max_bytes(limit)
        .max_batch(20)
        .buffer_capacity(100)
        .build()
        .await
        .expect("build");

    // Well past the spool's limit plus the buffer: the rest is dropped.
    let mut ids = BTreeSet::new();
    for round in 0..10 {
        ids.extend(track(&tracker, &format!("r{round}"), 100));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(file_len(&spool) <= limit, "spool within its limit");
    }
    let c = wait_counters(&tracker, "drops past the spool", |c| {
        c.captured == c.spooled + c.dropped_spool_full + 100
    })
    .await;
    assert!(c.spooled > 0 && c.dropped_spool_full > 0, "{c:?}");
    assert_eq!((c.sent, c.stored_direct, c.dropped_buffer_full), (0, 0, 0));
    assert!(file_len(&spool) <= limit && c.spool_bytes == file_len(&spool));
    assert!(c.fallback_switches >= 2, "stream and database down: {c:?}");

    redis.start_again().expect("restart redis");
    let c = wait_counters(&tracker, "spool replayed, buffer sent", |c| {
        c.replayed == c.spooled && c.sent == 100 && c.spool_bytes == 0
    })
    .await;
    assert_eq!(file_len(&spool), 0, "spool truncated after replay");
    assert_eq!(c.spool_bytes, 0);
    let in_stream = stream_ids(&redis.url(), &key).await;
    assert_eq!(in_stream.len() as u64, c.sent + c.replayed);
    assert!(in_stream.is_subset(&ids));
    assert_eq!(c.captured, c.delivered() + c.dropped(), "{c:?}");
    assert_eq!(tracker.shutdown().await.unsent, 0);
    remove_spool(&spool);
}

/// Spools `n` events with a tracker that reaches nothing, and shuts it
/// down, leaving the spool file behind; returns their ids.
async fn leave_a_spool(spool: &std::path::Path, n: usize) -> BTreeSet<Uuid> {
    let tracker = builder(NO_REDIS, &unique_key("unused"))
        .spool_path(spool)
        .build()
        .await
        .expect("build");
    let ids = track(&tracker, "before", n);
    wait_counters(&tracker, "spooled", |c| c.spooled == n as u64).await;
    assert_eq!(tracker.shutdown().await.unsent, 0);
    assert!(file_len(spool) > 0);
    ids
}

#[tokio::test]
async fn a_spool_left_behind_is_replayed_at_start_up_and_its_torn_tail_skipped() {
    let spool = spool_path("left");
    let ids = leave_a_spool(&spool, 150).await;
    // A crash in the middle of an append: a header promising more bytes
    // than follow.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&spool)
        .expect("open spool");
    file.write_all(&[0xff, 0x00, 0x00, 0x00, 1, 2, 3, 4])
        .and_then(|()| file.write_all(b"{\"v\":1,\"id\":"))
        .expect("append torn record");
    drop(file);

    let url = redis_url();
    let key = unique_key("left");
    let tracker = builder(&url, &key)
        .spool_path(&spool)
        .build()
        .await
        .expect("build");
    let c = wait_counters(&tracker, "replayed", |c| c.replayed == 150).await;
    assert_eq!(c.spool_corrupt, 1, "{c:?}");
    assert_eq!(stream_ids(&url, &key).await, ids);
    wait_until("spool truncated", WAIT, || async {
        (file_len(&spool) == 0).then_some(())
    })
    .await
    .expect("spool truncated");
    assert_eq!(tracker.shutdown().await.unsent, 0);
    delete_key(&url, &key).await;
    remove_spool(&spool);
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn a_spool_left_behind_is_replayed_into_the_table_while_redis_is_down(pool: PgPool) {
    let spool = spool_path("to-table");
    let ids = leave_a_spool(&spool, 120).await;
    let tracker = builder(NO_REDIS, &unique_key("to-table"))
        .fallback_sink(PostgresSink::new(pool.clone()))
        .spool_path(&spool)
        .build()
        .await
        .expect("build");
    let c = wait_counters(&tracker, "replayed", |c| c.replayed == 120).await;
    assert_eq!(c.spool_corrupt, 0);
    assert_eq!(table_ids(&pool).await, ids);
    wait_until("spool truncated", WAIT, || async {
        (file_len(&spool) == 0).then_some(())
    })
    .await
    .expect("spool truncated");
    assert_eq!(tracker.shutdown().await.unsent, 0);
    remove_spool(&spool);
}

#[tokio::test]
async fn with_redis_still_down_the_spool_is_replayed_into_the_table_once_postgres_is_back() {
    let mut postgres = PrivatePostgres::start().expect("private postgres");
    let pool = PgPool::connect(&postgres.url()).await.expect("connect");
    activity_store::schema::migrate(&pool)
        .await
        .expect("migrations");
    pool.close().await;
    postgres.stop().expect("stop postgres");
    let spool = spool_path("postgres-back");
    let tracker = builder(NO_REDIS, &unique_key("postgres-back"))
        .fallback_sink(PostgresSink::connect_lazy(&postgres.url()).expect("a valid url"))
        .spool_path(&spool)
        .build()
        .await
        .expect("build");
    let ids = track(&tracker, "pg", 300);
    let c = wait_counters(&tracker, "spooled", |c| c.spooled == 300).await;
    assert_eq!((c.sent, c.stored_direct, c.replayed), (0, 0, 0), "{c:?}");

    postgres.start_again().expect("start postgres");
    wait_counters(&tracker, "replayed", |c| c.replayed == 300).await;
    let later = track(&tracker, "later", 50);
    let c = wait_counters(&tracker, "stored directly", |c| c.stored_direct == 50).await;
    assert_eq!(c.sent, 0, "{c:?}");
    let pool = PgPool::connect(&postgres.url()).await.expect("connect");
    assert_eq!(
        table_ids(&pool).await,
        ids.union(&later).copied().collect::<BTreeSet<_>>()
    );
    wait_until("spool truncated", WAIT, || async {
        (file_len(&spool) == 0).then_some(())
    })
    .await
    .expect("spool truncated");
    assert_eq!(tracker.shutdown().await.unsent, 0);
    pool.close().await;
    remove_spool(&spool);
}

/// The URL of `pool`'s database (a `#[sqlx::test]` one), for a processor.
fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set by .cargo/config.toml");
    let name = pool
        .connect_options()
        .get_database()
        .expect("sqlx::test names the database")
        .to_owned();
    let server = base.rsplit_once('/').map_or(base.as_str(), |(s, _)| s);
    format!("{server}/{name}")
}

/// The write times (Unix milliseconds) of the spool's records, read as
/// the spool's module docs (`middleware/src/dispatcher/spool.rs`)
/// describe them (`length | TIMED: u32 LE | crc32: u32 LE | written_ms:
/// i64 LE | payload`); `None` for a record without.
fn spool_write_times(path: &std::path::Path) -> Vec<Option<i64>> {
    const TIMED: u32 = 0x8000_0000;
    let bytes = std::fs::read(path).expect("read spool");
    let mut at = 0;
    let mut times = Vec::new();
    while at + 8 <= bytes.len() {
        let word = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let len = (word & !TIMED) as usize;
        if word & TIMED != 0 {
            times.push(Some(i64::from_le_bytes(
                bytes[at + 8..at + 16].try_into().unwrap(),
            )));
            at += 16 + len;
        } else {
            times.push(None);
            at += 8 + len;
        }
    }
    assert_eq!(at, bytes.len(), "whole records");
    times
}

/// Spools one login dated `days_ahead` days ahead with a tracker that
/// reaches nothing; returns the event, the spool file's bytes and the
/// record's write time.
async fn spool_one_far_ahead(spool: &std::path::Path, days_ahead: i64) -> (Activity, Vec<u8>, i64) {
    let event = Activity::at(
        ActivityType::Login,
        chrono::Utc::now() + chrono::Duration::days(days_ahead),
    )
    .user_id("far-ahead");
    let tracker = builder(NO_REDIS, &unique_key("unused"))
        .spool_path(spool)
        .build()
        .await
        .expect("build");
    assert!(tracker.track(event.clone()));
    wait_counters(&tracker, "spooled", |c| c.spooled == 1).await;
    assert_eq!(tracker.shutdown().await.unsent, 0);
    let times = spool_write_times(spool);
    assert_eq!(times.len(), 1, "one record");
    let written_ms = times[0].expect("the record carries its write time");
    (event, std::fs::read(spool).expect("read spool"), written_ms)
}

/// Replays the spool file `bytes` with a tracker built by `build`, until
/// its one event is replayed and the file truncated.
async fn replay_spool(spool: &std::path::Path, bytes: &[u8], build: ActivityTrackerBuilder) {
    std::fs::write(spool, bytes).expect("write spool");
    let tracker = build.spool_path(spool).build().await.expect("build");
    let c = wait_counters(&tracker, "replayed", |c| c.replayed == 1).await;
    assert_eq!(c.spool_corrupt, 0, "{c:?}");
    wait_until("spool truncated", WAIT, || async {
        (file_len(spool) == 0).then_some(())
    })
    .await
    .expect("spool truncated");
    assert_eq!(tracker.shutdown().await.unsent, 0);
}

/// The rows of `id`: `created_at` in Unix milliseconds, and the original
/// date noted in `details`.
async fn rows_of(pool: &PgPool, id: Uuid) -> Vec<(i64, serde_json::Value)> {
    let rows: Vec<(chrono::DateTime<chrono::Utc>, serde_json::Value)> =
        sqlx::query_as("SELECT created_at, details FROM user_activity_logs WHERE id = $1")
            .bind(id)
            .fetch_all(pool)
            .await
            .expect("select rows");
    rows.into_iter()
        .map(|(at, details)| {
            (
                at.timestamp_millis(),
                details[activity_store::normalize::ORIGINAL_CREATED_AT_NOTE].clone(),
            )
        })
        .collect()
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn a_far_future_event_replayed_twice_into_the_stream_is_one_row_clamped_to_its_spooling(
    pool: PgPool,
) {
    let spool = spool_path("arrival-stream");
    let (event, bytes, spooled_ms) = spool_one_far_ahead(&spool, 2).await;
    // Replayed later, twice (the same spool again, as after a crash
    // before its truncation): two entries, their ids later than the
    // spooling, each carrying the spool's write time.
    let url = redis_url();
    let key = unique_key("arrival-stream");
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        replay_spool(&spool, &bytes, builder(&url, &key)).await;
    }
    let mut conn = redis::Client::open(url.as_str())
        .expect("valid url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis reachable");
    let entries: redis::streams::StreamRangeReply = conn.xrange_all(&key).await.expect("XRANGE");
    assert_eq!(entries.ids.len(), 2);
    for entry in &entries.ids {
        let entry_ms: i64 = entry.id.split_once('-').unwrap().0.parse().unwrap();
        assert!(
            entry_ms >= spooled_ms + 1000,
            "{} vs {spooled_ms}",
            entry.id
        );
        let arrived: String = entry
            .get(activity_tracker::ARRIVED_MS_FIELD)
            .expect("the entry carries arrived_ms");
        assert_eq!(arrived, spooled_ms.to_string());
    }

    // The processor stores it once, clamped to the spooling, not to either
    // replay.
    let mut config = activity_processor::Config::from_env();
    config.redis_url = url.clone();
    config.database_url = database_url(&pool);
    config.stream_key = key.clone();
    config.admin_listen = "127.0.0.1:0".into();
    config.consumer_name = Some("c1".into());
    config.flush_interval_ms = 50;
    config.legacy_list_key = None;
    config.retention_days = 0;
    let token = tokio_util::sync::CancellationToken::new();
    let processor = activity_processor::Processor::start(config, token.clone())
        .await
        .expect("processor");
    wait_until("the stream drained", WAIT, || {
        let mut conn = conn.clone();
        let key = key.clone();
        async move {
            let len: u64 = conn.xlen(&key).await.unwrap();
            (len == 0).then_some(())
        }
    })
    .await
    .expect("the stream drained");
    let rows = rows_of(&pool, event.id).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, spooled_ms);
    assert_eq!(
        rows[0].1,
        serde_json::Value::String(
            event
                .created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        )
    );
    token.cancel();
    processor.wait().await.expect("processor stops");
    delete_key(&url, &key).await;
    remove_spool(&spool);
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn a_far_future_event_replayed_twice_into_the_table_is_one_row_clamped_to_its_spooling(
    pool: PgPool,
) {
    let spool = spool_path("arrival-table");
    let (event, bytes, spooled_ms) = spool_one_far_ahead(&spool, 2).await;
    // Redis still down: replayed through the fallback sink, twice.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let build = builder(NO_REDIS, &unique_key("arrival-table"))
            .fallback_sink(PostgresSink::new(pool.clone()));
        replay_spool(&spool, &bytes, build).await;
    }
    let rows = rows_of(&pool, event.id).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, spooled_ms);
    remove_spool(&spool);
}
