//! `STREAM_SHARDS` on a single Redis (the shared one; no cluster needed):
//! the example app's tracker writes 3 shards in turn, the processor reads
//! every shard's group, stores each event once, dead-letters a poison
//! entry into its own shard's dead letters, and `queue-status` shows each
//! shard.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use activity_processor::Processor;
use activity_tracker::StreamShards;
use activity_tracking::demo_app;
use activity_tracking::harness::load::{self, LoadPlan, Outcome, send_load};
use activity_tracking::harness::{
    HttpServer, ScratchDatabase, get_json, processor_config, wait_until,
};
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

const SHARDS: usize = 3;
const REQUESTS: usize = 600;
const ADMIN_TOKEN: &str = "sharded-stream-admin-token";
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_on_one_redis_each_event_stored_once() {
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let key = format!("test:sharded:{}", uuid::Uuid::now_v7().simple());
    let shards = StreamShards::new(&key, SHARDS);
    let database = ScratchDatabase::create("sharded_stream").await;

    let token = CancellationToken::new();
    let mut config = processor_config(&redis_url, &database.url, &key);
    config.stream_shards = SHARDS;
    config.admin_tokens = Some(ADMIN_TOKEN.into());
    let processor = Processor::start(config, token.clone()).await.unwrap();
    let tracker = demo_app::tracker_builder()
        .redis_url(&redis_url)
        .stream_key(&key)
        .stream_shards(SHARDS)
        .build()
        .await
        .unwrap();
    let server = HttpServer::start(demo_app::app(&tracker)).await;

    // A poison entry in shard 1: dead-lettered there, nothing else lost.
    let mut conn = redis::Client::open(redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: String = conn
        .xadd(shards.key(1), "*", &[("data", "not json")])
        .await
        .unwrap();

    let plan = LoadPlan {
        requests: 0..REQUESTS,
        time: Duration::from_secs(1),
        ..LoadPlan::default()
    };
    let request = |marker: &str| {
        http::Request::get(format!("/api/v1/cases/{marker}"))
            .header("authorization", "Bearer user:sharded-user")
            .body(String::new())
            .unwrap()
    };
    let load = send_load(
        server.addr(),
        "sharded",
        &plan,
        request,
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    server.stop().await;
    assert_eq!(tracker.shutdown().await.unsent, 0);

    let rows = load::drained(&database.url, &load.markers, WAIT).await;
    let path = "/api/v1/admin/user-activities/queue-status";
    let admin = processor.local_addr();
    let status = wait_until("every shard drained", WAIT, || async {
        let status = get_json(admin, path, ADMIN_TOKEN).await;
        (status["queue_entries"] == 0 && status["pending"] == 0).then_some(status)
    })
    .await
    .unwrap();
    let outcome = Outcome::new(&load, &rows, status["dead_letter_length"].as_u64().unwrap());
    outcome.print("sharded-single-node");
    outcome.assert_complete();
    assert_eq!(outcome.dead_lettered, 1, "the poison entry");

    let listed = status["shards"].as_array().unwrap();
    assert_eq!(listed.len(), SHARDS, "{status}");
    for (k, shown) in listed.iter().enumerate() {
        assert_eq!(shown["key"], shards.key(k));
        assert_eq!(shown["dead_letter_length"], u64::from(k == 1), "{shown}");
        // Entries are deleted once stored: `entries-added` counts them all.
        // Shard 1 also holds the poison entry, so the tracker's are past it.
        let info: std::collections::HashMap<String, redis::Value> = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(shards.key(k))
            .query_async(&mut conn)
            .await
            .unwrap();
        let added = match info.get("entries-added") {
            Some(redis::Value::Int(n)) => *n,
            other => panic!("entries-added: {other:?}"),
        };
        let poison = i64::from(k == 1);
        assert!(
            added > poison,
            "shard {k}: {added} entries, the tracker wrote none"
        );
    }
    let dead: Vec<String> = (0..SHARDS).map(|k| shards.dead_key(k)).collect();
    let dead_len: u64 = conn.xlen(&dead[1]).await.unwrap();
    assert_eq!(dead_len, 1);

    token.cancel();
    processor.wait().await.unwrap();
    let mut keys: Vec<String> = shards.keys().to_vec();
    keys.extend(dead);
    let _: () = conn.del(&keys).await.unwrap();
    database.drop().await;
}
