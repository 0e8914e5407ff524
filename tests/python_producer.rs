//! A producer in another language: the Python snippet of
//! `docs/wire-format.md` (`tests/python/produce_v2.py`, redis-py) writes
//! version 2 entries (one of them LZ4-compressed by the `lz4` package),
//! and a real processor stores every valid event once and dead-letters
//! the bad line alone, with its entry and index.

use std::time::Duration;

use activity_processor::{Config, Processor};
use activity_tracking::harness::{ScratchDatabase, wait_until};
use redis::AsyncCommands;
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_written_by_redis_py_are_stored_line_by_line() {
    let redis_url = env("REDIS_URL", "redis://127.0.0.1:6379");
    let database = ScratchDatabase::create("python_producer").await;
    let database_url = database.url.clone();

    let mut config = Config::from_env();
    config.redis_url = redis_url.clone();
    config.database_url = database_url.clone();
    config.stream_key = format!("test:python:{}", uuid::Uuid::now_v7());
    config.admin_listen = "127.0.0.1:0".into();
    config.flush_interval_ms = 50;
    config.legacy_list_key = None;
    let token = CancellationToken::new();
    let processor = Processor::start(config.clone(), token.clone())
        .await
        .unwrap();

    let output = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/produce_v2.py"
        ))
        .env("REDIS_URL", &redis_url)
        .env("STREAM_KEY", &config.stream_key)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "the producer failed (are redis-py and lz4 installed? .ci/run installs them): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ids: Vec<String> = serde_json::from_slice(&output.stdout).unwrap();

    let mut db = sqlx::PgConnection::connect(&database_url).await.unwrap();
    wait_until("six rows", WAIT, || {
        let url = database_url.clone();
        async move {
            let mut db = sqlx::PgConnection::connect(&url).await.ok()?;
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM user_activity_logs")
                .fetch_one(&mut db)
                .await
                .ok()?;
            (n == 6).then_some(())
        }
    })
    .await
    .unwrap();
    let rows: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT action, user_id, resource_id FROM user_activity_logs ORDER BY action, user_id",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    let row = |a: &str, u: &str, r: Option<&str>| {
        (a.to_owned(), Some(u.to_owned()), r.map(str::to_owned))
    };
    assert_eq!(
        rows,
        [
            row("case_view", "user-123", Some("case-456")),
            row("case_view", "user-9", Some("case-9")),
            row("login", "user-123", None),
            row("login", "user-7", None),
            row("login", "user-9", None),
            row("logout", "user-7", None),
        ]
    );
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT id::text FROM user_activity_logs WHERE user_id IN ('user-123', 'user-9') ORDER BY id",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(stored, expected, "each line keeps its own id");

    let mut redis = redis::Client::open(redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let dead_key = format!("{}:dead", config.stream_key);
    let dead: redis::streams::StreamRangeReply = redis.xrange_all(&dead_key).await.unwrap();
    assert_eq!(dead.ids.len(), 1, "only the bad line is dead-lettered");
    let fields = &dead.ids[0];
    let text = |name: &str| fields.get::<String>(name).unwrap_or_default();
    assert_eq!(text("data"), r#"{"action": 5}"#);
    assert_eq!(text("index"), "1");
    assert!(!text("entry").is_empty());
    assert!(text("reason").contains("action"), "{}", text("reason"));
    wait_until("stream acknowledged", WAIT, || {
        let mut redis = redis.clone();
        let key = config.stream_key.clone();
        async move { (redis.xlen::<_, u64>(&key).await.ok()? == 0).then_some(()) }
    })
    .await
    .unwrap();

    token.cancel();
    processor.wait().await.unwrap();
    let _: () = redis.del(&[&config.stream_key, &dead_key]).await.unwrap();
    drop(db);
    database.drop().await;
}

/// The shard keys a producer in another language computes from
/// docs/wire-format.md ("A sharded stream", the same function in
/// `tests/python/shard_keys.py`) are the tracker's and the processor's.
#[test]
fn shard_keys_computed_in_python_are_the_trackers() {
    let counts = [1usize, 2, 3, 4, 6, 7, 16, 100, 1024];
    let output = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/shard_keys.py"
        ))
        .arg("user_activities_stream")
        .args(counts.map(|n| n.to_string()))
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let python: std::collections::HashMap<String, Vec<String>> =
        serde_json::from_slice(&output.stdout).expect("JSON");
    for count in counts {
        let shards = activity_tracker::StreamShards::new("user_activities_stream", count);
        assert_eq!(python[&count.to_string()], shards.keys(), "{count} shards");
    }
}
