//! Erasure end to end through `Processor::start`, the shared Redis and
//! PostgreSQL: events of an erased user that arrive afterwards, through the
//! stream (the writer's check) and through an app's direct fallback (the
//! sweep), and IP truncation of every producer's events.

use std::net::SocketAddr;
use std::time::Duration;

use activity_processor::{Config, Processor};
use activity_store::PostgresSink;
use activity_store::testing::assert_rollups_match_raw;
use activity_tracker::{Activity, ActivityType, Sink};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const PRIVACY_TOKEN: &str = "privacy-token-for-tests-0123";
const KEY: &str = "pseudonym-key-for-tests-0123456789";

fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set by .cargo/config.toml");
    let name = pool.connect_options().get_database().unwrap().to_owned();
    let server = base.rsplit_once('/').map(|(s, _)| s).unwrap_or(&base);
    format!("{server}/{name}")
}

fn config(pool: &PgPool) -> Config {
    let mut config = Config::from_env();
    config.database_url = database_url(pool);
    config.stream_key = format!("test:privacy:{}", uuid::Uuid::now_v7());
    config.admin_listen = "127.0.0.1:0".into();
    config.batch_size = 100;
    config.flush_interval_ms = 50;
    // One writer: a batch read later is committed later.
    config.db_writers = 1;
    config.consumer_name = Some("c1".into());
    config.legacy_list_key = None;
    config.admin_privacy_tokens = Some(format!("dpo={PRIVACY_TOKEN}").as_str().into());
    config.pseudonym_key = Some(KEY.into());
    config.ip_truncation = Some("24,48".parse().unwrap());
    config
}

async fn push(config: &Config, events: &[Activity]) {
    let mut conn = redis::Client::open(config.redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut pipe = redis::pipe();
    for event in events {
        pipe.cmd("XADD")
            .arg(&config.stream_key)
            .arg("*")
            .arg("data")
            .arg(event.to_wire_json())
            .ignore();
    }
    pipe.query_async::<()>(&mut conn).await.unwrap();
}

async fn count(pool: &PgPool, sql: &'static str, user: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(user)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn rows_of(pool: &PgPool, user: &str) -> i64 {
    count(
        pool,
        "SELECT count(*) FROM user_activity_logs WHERE user_id = $1",
        user,
    )
    .await
}

async fn wait_rows(pool: &PgPool, user: &str, n: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while rows_of(pool, user).await != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {n} rows of {user}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// One request over a fresh connection; the status and the JSON body.
async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {PRIVACY_TOKEN}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn event(user: &str, ip: &str) -> Activity {
    Activity::new(ActivityType::CaseView)
        .user_id(user)
        .ip_address(ip.parse().unwrap())
        .user_agent("Agent/1.0")
        .detail("status", 200)
        .detail("email", "someone@example.com")
}

#[sqlx::test(migrations = false)]
async fn late_events_of_erased_users_are_erased_on_every_path(pool: PgPool) {
    let config = config(&pool);
    let token = CancellationToken::new();
    let processor = Processor::start(config.clone(), token.clone())
        .await
        .unwrap();
    let addr = processor.local_addr();

    let before: Vec<Activity> = (0..5)
        .flat_map(|_| {
            [
                event("deleted", "198.51.100.7"),
                event("pseudonymized", "198.51.100.8"),
            ]
        })
        .collect();
    push(&config, &before).await;
    wait_rows(&pool, "pseudonymized", 5).await;
    wait_rows(&pool, "deleted", 5).await;

    let (status, receipt) = http(
        addr,
        "DELETE",
        "/api/v1/admin/user-activities/user/deleted?mode=delete",
    )
    .await;
    assert_eq!(
        (status, receipt["rows"].as_u64()),
        (200, Some(5)),
        "{receipt}"
    );
    let (status, receipt) = http(
        addr,
        "DELETE",
        "/api/v1/admin/user-activities/user/pseudonymized?mode=pseudonymize",
    )
    .await;
    assert_eq!(status, 200, "{receipt}");
    let pseudonym = receipt["pseudonym"].as_str().unwrap().to_owned();

    // Late, through the stream, and a marker after them; with one writer,
    // once the marker is stored the late events were handled.
    push(
        &config,
        &[
            event("deleted", "198.51.100.7"),
            event("pseudonymized", "198.51.100.8"),
            event("marker", "2001:db8:1:2:3:4:5:6"),
            event("marker", "::ffff:203.0.113.99"),
            event("marker", "203.0.113.77"),
        ],
    )
    .await;
    wait_rows(&pool, "marker", 3).await;
    assert_eq!(rows_of(&pool, "deleted").await, 0);
    assert_eq!(rows_of(&pool, "pseudonymized").await, 0);
    assert_eq!(rows_of(&pool, &pseudonym).await, 6);
    let cleared = count(
        &pool,
        "SELECT count(*) FROM user_activity_logs WHERE user_id = $1 AND ip_address IS NULL
         AND user_agent IS NULL AND details = '{\"status\": 200}'::jsonb",
        &pseudonym,
    )
    .await;
    assert_eq!(cleared, 6);

    // Every producer's addresses are stored truncated, IPv4-mapped as IPv4.
    let mut ips: Vec<String> = sqlx::query_scalar(
        "SELECT host(ip_address) FROM user_activity_logs WHERE user_id = 'marker'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    ips.sort();
    assert_eq!(ips, ["2001:db8:1::", "203.0.113.0", "203.0.113.0"]);

    // Late, through an app's direct fallback, which has no key: stored, then
    // swept.
    let fallback = PostgresSink::connect_lazy(&config.database_url).unwrap();
    fallback
        .send(&[
            event("deleted", "198.51.100.7"),
            event("pseudonymized", "198.51.100.8"),
        ])
        .await
        .unwrap();
    assert_eq!(rows_of(&pool, "deleted").await, 1);
    let privacy = processor.context().privacy.clone();
    let swept = privacy.sweep(&pool).await.unwrap();
    assert_eq!(swept.len(), 2);
    assert_eq!(rows_of(&pool, "deleted").await, 0);
    assert_eq!(rows_of(&pool, "pseudonymized").await, 0);
    assert_eq!(rows_of(&pool, &pseudonym).await, 7);
    assert_rollups_match_raw(&pool).await;

    let mut records: Vec<Value> = sqlx::query_scalar(
        "SELECT details - 'pseudonym' FROM user_activity_logs
         WHERE action = 'user_erased' AND user_id IS NULL",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    records.sort_by_key(|r| r.to_string());
    assert_eq!(
        records,
        [
            json!({"mode": "delete", "who": "erasure-sweep", "rows": 1}),
            json!({"mode": "delete", "who": "dpo", "rows": 5}),
            json!({"mode": "pseudonymize", "who": "erasure-sweep", "rows": 1}),
            json!({"mode": "pseudonymize", "who": "dpo", "rows": 5}),
        ]
    );

    token.cancel();
    processor.wait().await.unwrap();
    let mut conn = redis::Client::open(config.redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&config.stream_key)
        .arg(config.dead_letter_key())
        .query_async(&mut conn)
        .await
        .unwrap();
}
