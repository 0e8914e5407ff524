//! End to end through `Processor::start` against the shared Redis and
//! PostgreSQL: each test has its own stream key and its own database.

use std::net::SocketAddr;
use std::time::Duration;

use activity_processor::{Config, Processor};
use activity_store::testing::{WAIT, count_rows, wait_for};
use activity_tracker::{Activity, ActivityType, EntryCodec};
use redis::AsyncCommands;
use serde_json::Value;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

fn config(pool: &PgPool) -> Config {
    let mut config = Config::from_env();
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set by .cargo/config.toml");
    let name = pool
        .connect_options()
        .get_database()
        .expect("sqlx::test names the database")
        .to_owned();
    let server = base
        .rsplit_once('/')
        .map(|(server, _)| server)
        .unwrap_or(&base)
        .to_owned();
    config.database_url = format!("{server}/{name}");
    config.stream_key = format!("test:processor:{}", uuid::Uuid::now_v7());
    config.admin_listen = "127.0.0.1:0".into();
    config.batch_size = 100;
    config.flush_interval_ms = 50;
    config.consumer_name = Some("c1".into());
    config.legacy_list_key = None;
    config.retention_days = 0;
    config
}

async fn redis(config: &Config) -> redis::aio::MultiplexedConnection {
    redis::Client::open(config.redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn push(conn: &mut redis::aio::MultiplexedConnection, key: &str, events: &[Activity]) {
    let mut pipe = redis::pipe();
    for event in events {
        pipe.cmd("XADD")
            .arg(key)
            .arg("*")
            .arg("data")
            .arg(event.to_wire_json())
            .ignore();
    }
    pipe.query_async::<()>(conn).await.unwrap();
}

fn events(n: usize) -> Vec<Activity> {
    (0..n)
        .map(|i| {
            Activity::new(ActivityType::CaseView)
                .user_id(format!("user-{}", i % 7))
                .resource("case", format!("case-{i}"))
                .detail("i", i)
        })
        .collect()
}

async fn wait_rows(pool: &PgPool, n: i64) {
    wait_for(&format!("{n} rows"), || async {
        count_rows(pool).await == n
    })
    .await;
}

/// Stream empty and nothing pending for the group.
async fn wait_drained(conn: &mut redis::aio::MultiplexedConnection, config: &Config) {
    let key = config.stream_key.clone();
    let group = config.consumer_group.clone();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let len: u64 = conn.xlen(&key).await.unwrap();
        let pending: redis::Value = redis::cmd("XPENDING")
            .arg(&key)
            .arg(&group)
            .query_async(conn)
            .await
            .unwrap();
        let pending = match pending {
            redis::Value::Array(summary) => match summary.first() {
                Some(redis::Value::Int(n)) => *n,
                _ => -1,
            },
            _ => -1,
        };
        if len == 0 && pending == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stream not drained: XLEN {len}, XPENDING {pending}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn cleanup(conn: &mut redis::aio::MultiplexedConnection, config: &Config) {
    let _: () = conn.del(&config.stream_key).await.unwrap();
    let _: () = conn.del(config.dead_letter_key()).await.unwrap();
}

async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[sqlx::test(migrations = false)]
async fn n_events_become_n_rows_and_the_stream_is_drained(pool: PgPool) {
    let config = config(&pool);
    let mut conn = redis(&config).await;
    let sent = events(450);
    push(&mut conn, &config.stream_key, &sent).await;

    let token = CancellationToken::new();
    let processor = Processor::start(config.clone(), token.clone())
        .await
        .unwrap();
    wait_rows(&pool, 450).await;
    wait_drained(&mut conn, &config).await;

    // Field by field, as sent.
    let probe = &sent[17];
    let (user_id, action, resource_id, details): (Option<String>, String, Option<String>, Value) = sqlx::query_as(
        "SELECT user_id, action, resource_id, details FROM user_activity_logs WHERE id = $1 AND created_at = $2",
    )
    .bind(probe.id)
    .bind(probe.created_at)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(user_id, probe.user_id);
    assert_eq!(action, "case_view");
    assert_eq!(resource_id, probe.resource_id);
    assert_eq!(details["i"], 17);

    let stats = processor.stats().snapshot();
    assert_eq!(stats.stored, 450);
    assert_eq!(stats.consumed, 450);
    assert_eq!(stats.dead_lettered, 0);

    // The same events again (a producer retrying): stored once.
    push(&mut conn, &config.stream_key, &sent[..50]).await;
    wait_for("duplicates counted", || async {
        processor.stats().snapshot().duplicates == 50
    })
    .await;
    assert_eq!(count_rows(&pool).await, 450);
    wait_drained(&mut conn, &config).await;

    let addr = processor.local_addr();
    let (status, body) = http_get(addr, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_get(addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["database"], "ok");
    assert_eq!(ready["redis"], "ok");
    let (status, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("activity_processor_stored_total"), "{body}");
    assert!(
        body.contains("activity_processor_write_seconds_bucket"),
        "{body}"
    );

    token.cancel();
    tokio::time::timeout(Duration::from_secs(10), processor.wait())
        .await
        .unwrap()
        .unwrap();
    cleanup(&mut conn, &config).await;
}

#[sqlx::test(migrations = false)]
async fn lz4_compressed_entries_become_rows_once_each(pool: PgPool) {
    let config = config(&pool);
    let mut conn = redis(&config).await;
    let sent = events(300);
    // Three version 2 entries of 100 events, each compressed; the last one
    // written twice (a producer retrying): its events are stored once.
    let mut pipe = redis::pipe();
    for chunk in sent.chunks(100).chain(std::iter::once(&sent[200..])) {
        let lines: Vec<String> = chunk.iter().map(Activity::to_wire_json).collect();
        pipe.cmd("XADD")
            .arg(&config.stream_key)
            .arg("*")
            .arg("n")
            .arg(chunk.len())
            .arg("codec")
            .arg("lz4")
            .arg("events")
            .arg(EntryCodec::Lz4.compress(lines.join("\n").as_bytes()))
            .ignore();
    }
    pipe.query_async::<()>(&mut conn).await.unwrap();

    let token = CancellationToken::new();
    let processor = Processor::start(config.clone(), token.clone())
        .await
        .unwrap();
    wait_rows(&pool, 300).await;
    wait_drained(&mut conn, &config).await;
    wait_for("duplicates counted", || async {
        processor.stats().snapshot().duplicates == 100
    })
    .await;
    let stats = processor.stats().snapshot();
    assert_eq!(
        (stats.stored, stats.consumed, stats.dead_lettered),
        (300, 400, 0)
    );
    assert_eq!(count_rows(&pool).await, 300);
    let probe = &sent[250];
    let resource: Option<String> = sqlx::query_scalar(
        "SELECT resource_id FROM user_activity_logs WHERE id = $1 AND created_at = $2",
    )
    .bind(probe.id)
    .bind(probe.created_at)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(resource, probe.resource_id);

    token.cancel();
    tokio::time::timeout(Duration::from_secs(10), processor.wait())
        .await
        .unwrap()
        .unwrap();
    cleanup(&mut conn, &config).await;
}

#[sqlx::test(migrations = false)]
async fn poison_entries_are_dead_lettered_with_reasons_and_valid_ones_stored(pool: PgPool) {
    let config = config(&pool);
    let key = config.stream_key.clone();
    let mut conn = redis(&config).await;
    let good = events(10);
    push(&mut conn, &key, &good[..5]).await;
    let now = "2025-06-01T12:00:00Z";
    let poison: Vec<(&str, String)> = vec![
        ("data", "{not json".to_owned()),
        (
            "data",
            format!(r#"{{"v":9,"action":"login","created_at":"{now}"}}"#),
        ),
        ("data", format!(r#"{{"v":1,"created_at":"{now}"}}"#)),
        (
            "data",
            r#"{"v":1,"action":"login","created_at":"last tuesday"}"#.to_owned(),
        ),
        (
            "data",
            format!(r#"{{"v":1,"id":"123","action":"login","created_at":"{now}"}}"#),
        ),
        (
            "data",
            format!(
                r#"{{"v":1,"action":"{}","created_at":"{now}"}}"#,
                "a".repeat(101)
            ),
        ),
        ("payload", "no data field".to_owned()),
    ];
    for (field, value) in &poison {
        let _: String = conn
            .xadd(&key, "*", &[(*field, value.as_str())])
            .await
            .unwrap();
    }
    push(&mut conn, &key, &good[5..]).await;
    // PostgreSQL refuses NUL in text: once a dead letter, now stored with
    // U+FFFD by the writer (issue 20).
    let nul = Activity::new(ActivityType::Login).user_agent("bad\u{0}agent");
    push(&mut conn, &key, std::slice::from_ref(&nul)).await;

    let token = CancellationToken::new();
    let processor = Processor::start(config.clone(), token.clone())
        .await
        .unwrap();
    wait_rows(&pool, 11).await;
    let agent: String =
        sqlx::query_scalar("SELECT user_agent FROM user_activity_logs WHERE id = $1")
            .bind(nul.id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(agent, "bad\u{fffd}agent");
    wait_drained(&mut conn, &config).await;

    let dead: redis::streams::StreamRangeReply =
        conn.xrange_all(config.dead_letter_key()).await.unwrap();
    let reasons: Vec<String> = dead
        .ids
        .iter()
        .map(|entry| entry.get::<String>("reason").unwrap())
        .collect();
    assert_eq!(reasons.len(), poison.len(), "{reasons:#?}");
    for needle in [
        "invalid JSON",
        "unknown wire-format version 9",
        "missing required field `action`",
        "invalid `created_at`",
        "invalid `id`",
        "invalid `action`",
        "no data field",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(needle)),
            "no reason with {needle:?} in {reasons:#?}"
        );
    }
    let datas: Vec<String> = dead
        .ids
        .iter()
        .map(|e| e.get::<String>("data").unwrap())
        .collect();
    assert!(
        datas.contains(&"{not json".to_owned()),
        "original payload kept: {datas:?}"
    );
    assert_eq!(
        processor.stats().snapshot().dead_lettered,
        poison.len() as u64
    );

    token.cancel();
    processor.wait().await.unwrap();
    cleanup(&mut conn, &config).await;
}

#[sqlx::test(migrations = false)]
async fn two_processors_in_one_group_store_each_event_once(pool: PgPool) {
    let config = config(&pool);
    let mut conn = redis(&config).await;
    let sent = events(3000);
    push(&mut conn, &config.stream_key, &sent).await;

    let token = CancellationToken::new();
    let mut second_config = config.clone();
    second_config.consumer_name = Some("c2".into());
    let (a, b) = tokio::join!(
        Processor::start(config.clone(), token.clone()),
        Processor::start(second_config, token.clone()),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    // More while both run, interleaved with their reads.
    let more = events(1000);
    for chunk in more.chunks(100) {
        push(&mut conn, &config.stream_key, chunk).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wait_rows(&pool, 4000).await;
    wait_drained(&mut conn, &config).await;
    let distinct: i64 = sqlx::query_scalar("SELECT count(DISTINCT id) FROM user_activity_logs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(distinct, 4000);
    let (sa, sb) = (a.stats().snapshot(), b.stats().snapshot());
    assert_eq!(sa.stored + sb.stored, 4000);
    assert!(
        sa.stored > 0 && sb.stored > 0,
        "both shared the work: {} / {}",
        sa.stored,
        sb.stored
    );

    token.cancel();
    a.wait().await.unwrap();
    b.wait().await.unwrap();
    cleanup(&mut conn, &config).await;
}

#[sqlx::test(migrations = false)]
async fn entries_left_pending_by_a_stopped_consumer_are_claimed(pool: PgPool) {
    let mut config = config(&pool);
    config.claim_idle_ms = 300;
    let key = config.stream_key.clone();
    let mut conn = redis(&config).await;
    let sent = events(120);
    push(&mut conn, &key, &sent).await;
    // A consumer that read everything and died before acknowledging.
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&key)
        .arg(&config.consumer_group)
        .arg("0")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(&config.consumer_group)
        .arg("died")
        .arg("COUNT")
        .arg(1000)
        .arg("STREAMS")
        .arg(&key)
        .arg(">")
        .query_async(&mut conn)
        .await
        .unwrap();

    let token = CancellationToken::new();
    let processor = Processor::start(config.clone(), token.clone())
        .await
        .unwrap();
    wait_rows(&pool, 120).await;
    wait_drained(&mut conn, &config).await;
    assert_eq!(processor.stats().snapshot().reclaimed, 120);

    token.cancel();
    processor.wait().await.unwrap();
    cleanup(&mut conn, &config).await;
}

#[sqlx::test(migrations = false)]
async fn cancellation_mid_batch_commits_and_acknowledges_the_batch_in_hand(pool: PgPool) {
    let mut config = config(&pool);
    config.batch_size = 1000;
    config.flush_interval_ms = 600_000;
    let mut conn = redis(&config).await;

    let token = CancellationToken::new();
    let processor = Processor::start(config.clone(), token.clone())
        .await
        .unwrap();
    push(&mut conn, &config.stream_key, &events(57)).await;
    wait_for("57 entries read", || async {
        processor.stats().snapshot().consumed == 57
    })
    .await;
    assert_eq!(
        count_rows(&pool).await,
        0,
        "neither full nor old: still in hand"
    );

    token.cancel();
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(5), processor.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(count_rows(&pool).await, 57);
    wait_drained(&mut conn, &config).await;
    cleanup(&mut conn, &config).await;
}

#[sqlx::test(migrations = false)]
async fn legacy_list_producers_are_drained_into_rows(pool: PgPool) {
    let mut config = config(&pool);
    let list = format!("{}:legacy", config.stream_key);
    config.legacy_list_key = Some(list.clone());
    let processing = format!("{list}:processing:c1");
    let mut conn = redis(&config).await;
    // As the original design's producers wrote them: column names, no `v`,
    // no `id`, `created_at` optional, details as a JSON string.
    let payloads = [
        r#"{"user_id":"user-123","action":"login","ip_address":"192.168.1.100","user_agent":"Mozilla/5.0"}"#.to_owned(),
        r#"{"user_id":"user-123","action":"case_create","resource_type":"case","resource_id":"case-456","details":"{\"case_amount\": 50000.0}","created_at":"2025-03-04T05:06:07.123456"}"#.to_owned(),
        r#"{"user_id":"u9","action":"logout","ip_address":"not-an-ip"}"#.to_owned(),
        "garbage".to_owned(),
    ];
    for payload in &payloads {
        let _: () = conn.lpush(&list, payload).await.unwrap();
    }
    // Left in this consumer's processing list by a previous run: recovered.
    let _: () = conn
        .lpush(
            &processing,
            r#"{"user_id":"u7","action":"register","created_at":"2025-01-01T00:00:00Z"}"#,
        )
        .await
        .unwrap();
    // Left by a consumer that is gone from the group: moved back and stored.
    let orphan = format!("{list}:processing:gone");
    let _: () = conn
        .lpush(
            &orphan,
            r#"{"user_id":"u8","action":"password_change","created_at":"2025-01-01T00:00:00Z"}"#,
        )
        .await
        .unwrap();

    let token = CancellationToken::new();
    let processor = Processor::start(config.clone(), token.clone())
        .await
        .unwrap();
    wait_rows(&pool, 5).await;
    wait_for("legacy lists emptied", || {
        let mut conn = conn.clone();
        let (list, processing, orphan) = (list.clone(), processing.clone(), orphan.clone());
        async move {
            let a: u64 = conn.llen(&list).await.unwrap();
            let b: u64 = conn.llen(&processing).await.unwrap();
            let c: u64 = conn.llen(&orphan).await.unwrap();
            a == 0 && b == 0 && c == 0
        }
    })
    .await;
    let (amount, created): (Value, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
        "SELECT details->'case_amount', created_at FROM user_activity_logs WHERE action = 'case_create'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(amount, 50000.0);
    assert_eq!(created.to_rfc3339(), "2025-03-04T05:06:07.123456+00:00");
    let (ip, details): (Option<String>, Value) = sqlx::query_as(
        "SELECT host(ip_address), details FROM user_activity_logs WHERE action = 'logout'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(ip, None);
    assert_eq!(details["invalid_ip_address"], "not-an-ip");
    let dead: u64 = conn.xlen(config.dead_letter_key()).await.unwrap();
    assert_eq!(dead, 1, "the garbage payload");

    token.cancel();
    processor.wait().await.unwrap();
    let _: () = conn.del(&list).await.unwrap();
    cleanup(&mut conn, &config).await;
}
