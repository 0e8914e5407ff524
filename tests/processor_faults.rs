//! The processor when its servers go away: a private PostgreSQL stopped and
//! started again, a private Redis killed and started again. Nothing is lost,
//! `/readyz` tells the truth meanwhile.

use std::net::SocketAddr;
use std::time::Duration;

use activity_processor::{Config, Processor};
use activity_tracker::{Activity, ActivityType};
use activity_tracking::harness::{PrivatePostgres, PrivateRedis, wait_until};
use redis::AsyncCommands;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

fn config(redis_url: String, database_url: String) -> Config {
    let mut config = Config::from_env();
    config.redis_url = redis_url;
    config.database_url = database_url;
    config.stream_key = format!("test:faults:{}", uuid::Uuid::now_v7());
    config.admin_listen = "127.0.0.1:0".into();
    config.batch_size = 100;
    config.flush_interval_ms = 50;
    config.consumer_name = Some("faults".into());
    config.legacy_list_key = None;
    config
}

async fn push(redis_url: &str, key: &str, n: usize) -> Vec<Activity> {
    let mut conn = redis::Client::open(redis_url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let events: Vec<Activity> = (0..n)
        .map(|i| Activity::new(ActivityType::PaymentCreate).user_id(format!("u{i}")))
        .collect();
    let mut pipe = redis::pipe();
    for event in &events {
        pipe.cmd("XADD")
            .arg(key)
            .arg("*")
            .arg("data")
            .arg(event.to_wire_json())
            .ignore();
    }
    pipe.query_async::<()>(&mut conn).await.unwrap();
    events
}

async fn rows(database_url: &str) -> Option<i64> {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(database_url)
        .await
        .ok()?;
    sqlx::query_scalar("SELECT count(*) FROM user_activity_logs")
        .fetch_one(&mut conn)
        .await
        .ok()
}

async fn wait_rows(database_url: &str, n: i64) {
    wait_until(&format!("{n} rows"), WAIT, || async {
        (rows(database_url).await == Some(n)).then_some(())
    })
    .await
    .unwrap();
}

async fn private_servers() -> (PrivateRedis, PrivatePostgres) {
    let redis = tokio::task::spawn_blocking(PrivateRedis::start)
        .await
        .unwrap()
        .unwrap();
    let postgres = tokio::task::spawn_blocking(PrivatePostgres::start)
        .await
        .unwrap()
        .unwrap();
    (redis, postgres)
}

async fn start(config: &Config) -> (Processor, CancellationToken) {
    let token = CancellationToken::new();
    let processor = Processor::start(config.clone(), token.clone())
        .await
        .unwrap();
    (processor, token)
}

async fn ready_status(addr: SocketAddr) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response[9..12].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_stopped_and_restarted_loses_nothing() {
    let mut postgres = tokio::task::spawn_blocking(PrivatePostgres::start)
        .await
        .unwrap()
        .unwrap();
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let config = config(redis_url.clone(), postgres.url());
    let token = CancellationToken::new();
    let processor = Processor::start(config.clone(), token.clone())
        .await
        .unwrap();
    let addr = processor.local_addr();

    push(&redis_url, &config.stream_key, 200).await;
    wait_rows(&postgres.url(), 200).await;
    assert_eq!(ready_status(addr).await, 200);

    tokio::task::block_in_place(|| postgres.stop()).unwrap();
    push(&redis_url, &config.stream_key, 300).await;
    wait_until("writes failing and being retried", WAIT, || async {
        processor.stats().snapshot().db_retrying.then_some(())
    })
    .await
    .unwrap();
    assert_eq!(ready_status(addr).await, 503);
    let mut conn = redis::Client::open(redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let length: u64 = conn.xlen(&config.stream_key).await.unwrap();
    assert_eq!(
        length, 300,
        "nothing acknowledged while the database is down"
    );

    tokio::task::block_in_place(|| postgres.start_again()).unwrap();
    wait_rows(&postgres.url(), 500).await;
    wait_until("ready again", WAIT, || async {
        (ready_status(addr).await == 200).then_some(())
    })
    .await
    .unwrap();
    wait_until("stream drained", WAIT, || {
        let mut conn = conn.clone();
        let key = config.stream_key.clone();
        async move { (conn.xlen::<_, u64>(&key).await.ok()? == 0).then_some(()) }
    })
    .await
    .unwrap();
    assert!(processor.stats().snapshot().db_errors > 0);

    token.cancel();
    processor.wait().await.unwrap();
    let _: () = conn.del(&config.stream_key).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_loses_nothing() {
    let (mut redis, postgres) = private_servers().await;
    let config = config(redis.url(), postgres.url());
    let (processor, token) = start(&config).await;

    push(&redis.url(), &config.stream_key, 150).await;
    wait_rows(&postgres.url(), 150).await;

    tokio::task::block_in_place(|| redis.kill()).unwrap();
    wait_until("not ready without Redis", WAIT, || async {
        (ready_status(processor.local_addr()).await == 503).then_some(())
    })
    .await
    .unwrap();
    tokio::task::block_in_place(|| redis.start_again()).unwrap();
    push(&redis.url(), &config.stream_key, 250).await;
    wait_rows(&postgres.url(), 400).await;

    token.cancel();
    processor.wait().await.unwrap();
}

/// Stopping the processor while Redis is gone and stored batches wait to
/// be acknowledged: the shutdown grace (10 s) is spent once for all of
/// them, not once per batch and step, and what was stored but not
/// acknowledged is redelivered to the next processor and stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_redis_gone_spends_the_grace_once() {
    const GRACE: Duration = Duration::from_secs(10);
    let (mut redis, mut postgres) = private_servers().await;
    let config = config(redis.url(), postgres.url());
    let (processor, token) = start(&config).await;
    push(&redis.url(), &config.stream_key, 100).await;
    wait_rows(&postgres.url(), 100).await;

    // Batches read and held by the writers while the database is down...
    tokio::task::block_in_place(|| postgres.stop()).unwrap();
    push(&redis.url(), &config.stream_key, 1_000).await;
    wait_until("writes failing and being retried", WAIT, || async {
        processor.stats().snapshot().db_retrying.then_some(())
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // ...then stored once it is back, with nowhere to acknowledge them.
    tokio::task::block_in_place(|| redis.kill()).unwrap();
    tokio::task::block_in_place(|| postgres.start_again()).unwrap();
    // Stored: the count has grown and stays put.
    wait_until("the held batches stored", WAIT, || {
        let url = postgres.url();
        async move {
            let now = rows(&url).await?;
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            (now > 100 && rows(&url).await? == now).then_some(())
        }
    })
    .await
    .unwrap();

    let stopping = std::time::Instant::now();
    token.cancel();
    tokio::time::timeout(Duration::from_secs(60), processor.wait())
        .await
        .expect("the processor stops")
        .unwrap();
    let took = stopping.elapsed();
    println!("stopped in {took:?} with Redis gone");
    assert!(
        took < GRACE + Duration::from_secs(4),
        "stopping took {took:?}; the grace is {GRACE:?} in all"
    );

    // Redis back: the unacknowledged entries go to the next processor, and
    // the rows stored already are not stored again.
    tokio::task::block_in_place(|| redis.start_again()).unwrap();
    let (processor, token) = start(&config).await;
    wait_rows(&postgres.url(), 1_100).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rows(&postgres.url()).await, Some(1_100), "no duplicates");
    token.cancel();
    processor.wait().await.unwrap();
}
