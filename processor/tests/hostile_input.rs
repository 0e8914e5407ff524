//! Issue 20 end to end: bad input never hides an activity. A running
//! processor (`Processor::start`) on the shared Redis and PostgreSQL, each
//! test with its own stream key and database; events sent by the real
//! tracker or written with raw `XADD`s as other producers do; dead letters
//! of an older processor redriven by the real binary.

use std::net::SocketAddr;
use std::time::Duration;

use activity_processor::consumer::decode::derived_id;
use activity_processor::{Config, Processor};
use activity_store::normalize::{NUL_NOTE, ORIGINAL_CREATED_AT_NOTE};
use activity_store::testing::{count_rows, wait_for};
use activity_tracker::{Activity, ActivityTracker, ActivityType};
use redis::AsyncCommands;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const TOKEN: &str = "hostile-input-admin-token";

fn config(pool: &PgPool) -> Config {
    let mut config = Config::from_env();
    config.database_url = activity_store::testing::database_url(pool);
    config.stream_key = format!("test:hostile:{}", Uuid::now_v7());
    config.admin_listen = "127.0.0.1:0".into();
    config.admin_tokens = Some(TOKEN.parse().unwrap());
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

/// Until the group has read and acknowledged everything in the stream.
async fn wait_drained(conn: &mut redis::aio::MultiplexedConnection, config: &Config) {
    let key = config.stream_key.clone();
    wait_for("the stream drained", || {
        let mut conn = conn.clone();
        let key = key.clone();
        async move {
            let len: u64 = conn.xlen(&key).await.unwrap();
            len == 0
        }
    })
    .await;
}

async fn http_get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    let body = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, body)
}

async fn stop(processor: Processor, token: CancellationToken) {
    token.cancel();
    tokio::time::timeout(Duration::from_secs(10), processor.wait())
        .await
        .unwrap()
        .unwrap();
}

async fn cleanup(conn: &mut redis::aio::MultiplexedConnection, config: &Config) {
    let _: () = conn.del(&config.stream_key).await.unwrap();
    let _: () = conn.del(config.dead_letter_key()).await.unwrap();
}

const USER_PAGE: &str = "/api/v1/admin/user-activities/user";

#[sqlx::test(migrations = false)]
async fn the_trackers_withdrawal_with_a_nul_is_stored_with_the_replacement_character(pool: PgPool) {
    let config = config(&pool);
    let mut conn = redis(&config).await;
    let token = CancellationToken::new();
    let processor = Processor::start(config.clone(), token.clone())
        .await
        .unwrap();

    let tracker = ActivityTracker::builder()
        .redis_url(config.redis_url.clone())
        .stream_key(&config.stream_key)
        .build()
        .await
        .unwrap();
    let withdrawal = Activity::new(ActivityType::WithdrawalRequest)
        .user_id("user-\u{0}42")
        .resource("withdrawal", "wd-\u{0}1")
        .detail("amount", "1000000\u{0}");
    let id = withdrawal.id;
    assert!(tracker.track(withdrawal));
    assert_eq!(tracker.shutdown().await.sent, 1);

    wait_for("the row", || async { count_rows(&pool).await == 1 }).await;
    wait_drained(&mut conn, &config).await;
    let (user_id, resource_id, details): (String, String, Value) = sqlx::query_as(
        "SELECT user_id, resource_id, details FROM user_activity_logs WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(user_id, "user-\u{fffd}42");
    assert_eq!(resource_id, "wd-\u{fffd}1");
    assert_eq!(details["amount"], "1000000\u{fffd}");
    assert_eq!(
        details[NUL_NOTE],
        json!(["user_id", "resource_id", "details"])
    );
    let dead: u64 = conn.xlen(config.dead_letter_key()).await.unwrap();
    assert_eq!(dead, 0, "nothing dead-lettered");

    // The admin page finds the user by the name it was sent with.
    let (status, page) = http_get(processor.local_addr(), &format!("{USER_PAGE}/user-%0042")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total_activities"], 1, "{page}");

    let (_, metrics) = {
        let mut stream = tokio::net::TcpStream::connect(processor.local_addr())
            .await
            .unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        ((), text)
    };
    assert!(
        // Other tests of this binary share the process's recorder: at least ours.
        metrics.contains("activity_processor_events_normalized_total{rule=\"nul\"}"),
        "{metrics}"
    );
    stop(processor, token).await;
    cleanup(&mut conn, &config).await;
}

#[sqlx::test(migrations = false)]
async fn a_raw_xadd_with_1e400_and_a_far_future_date_is_stored_readable_and_clamped(pool: PgPool) {
    let config = config(&pool);
    let mut conn = redis(&config).await;
    let token = CancellationToken::new();
    let processor = Processor::start(config.clone(), token.clone())
        .await
        .unwrap();

    // As a producer in another language writes them.
    let big = r#"{"v":1,"action":"payment_create","user_id":"user-big","created_at":"2026-01-02T03:04:05Z","details":{"amount":1e400}}"#;
    let future =
        r#"{"v":1,"action":"login","user_id":"user-future","created_at":"9999-12-31T23:59:59Z"}"#;
    let _: String = conn
        .xadd(&config.stream_key, "*", &[("data", big)])
        .await
        .unwrap();
    let future_entry: String = conn
        .xadd(&config.stream_key, "*", &[("data", future)])
        .await
        .unwrap();
    wait_for("two rows", || async { count_rows(&pool).await == 2 }).await;

    let addr = processor.local_addr();
    let (status, page) = http_get(addr, &format!("{USER_PAGE}/user-big?days=366")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["recent"][0]["details"]["amount"], "1e400", "{page}");

    // Clamped to the entry id's time, counted today, and today's figure
    // agrees with the daily sums.
    let arrival_ms: i64 = future_entry.split_once('-').unwrap().0.parse().unwrap();
    let (status, page) = http_get(addr, &format!("{USER_PAGE}/user-future")).await;
    assert_eq!(status, 200, "{page}");
    let login = &page["recent"][0];
    let created: chrono::DateTime<chrono::Utc> =
        login["created_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(created.timestamp_millis(), arrival_ms, "{page}");
    assert_eq!(
        login["details"][ORIGINAL_CREATED_AT_NOTE],
        "9999-12-31T23:59:59.000000Z"
    );
    let (_, stats) = http_get(addr, "/api/v1/admin/user-activities/statistics?days=1").await;
    let daily: i64 = stats["daily"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["count"].as_i64().unwrap())
        .sum();
    assert_eq!(stats["today_activities"], daily, "{stats}");
    assert!(daily >= 1, "{stats}");
    let (_, queue) = http_get(addr, "/api/v1/admin/user-activities/queue-status").await;
    assert_eq!(
        queue["today_activities"], stats["today_activities"],
        "{queue}"
    );
    let dead: u64 = conn.xlen(config.dead_letter_key()).await.unwrap();
    assert_eq!(dead, 0);
    stop(processor, token).await;
    cleanup(&mut conn, &config).await;
}

/// The text of `/metrics`.
async fn metrics_text(addr: SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text
}

#[sqlx::test(migrations = false)]
async fn a_v2_entrys_arrived_ms_is_the_arrival_a_far_future_date_is_clamped_to(pool: PgPool) {
    let config = config(&pool);
    let mut conn = redis(&config).await;
    let token = CancellationToken::new();
    let processor = Processor::start(config.clone(), token.clone())
        .await
        .unwrap();

    // One far-future event per entry, each entry with its own `arrived_ms`,
    // as a replayed spool's entries (or another producer) write them.
    let now_ms = chrono::Utc::now().timestamp_millis();
    let earlier_ms = now_ms - 2 * 86_400_000 - 123;
    let cases = [
        ("user-spooled", earlier_ms.to_string()),
        ("user-malformed", "two days ago".to_owned()),
        ("user-ahead", (now_ms + 3 * 86_400_000).to_string()),
    ];
    let mut entry_ms = Vec::new();
    for (user, arrived_ms) in &cases {
        let line = format!(
            r#"{{"v":1,"id":"{}","action":"login","user_id":"{user}","created_at":"9999-12-31T23:59:59Z"}}"#,
            Uuid::now_v7()
        );
        let id: String = conn
            .xadd(
                &config.stream_key,
                "*",
                &[
                    ("n", "1"),
                    (activity_tracker::ARRIVED_MS_FIELD, arrived_ms.as_str()),
                    ("events", line.as_str()),
                ],
            )
            .await
            .unwrap();
        entry_ms.push(id.split_once('-').unwrap().0.parse::<i64>().unwrap());
    }
    wait_for("three rows", || async { count_rows(&pool).await == 3 }).await;
    wait_drained(&mut conn, &config).await;

    let stored = |user: &'static str| {
        let pool = pool.clone();
        async move {
            let (created, details): (chrono::DateTime<chrono::Utc>, Value) = sqlx::query_as(
                "SELECT created_at, details FROM user_activity_logs WHERE user_id = $1",
            )
            .bind(user)
            .fetch_one(&pool)
            .await
            .unwrap();
            assert_eq!(
                details[ORIGINAL_CREATED_AT_NOTE], "9999-12-31T23:59:59.000000Z",
                "{user}"
            );
            created.timestamp_millis()
        }
    };
    // Earlier than the entry: the field's time.
    assert_eq!(stored("user-spooled").await, earlier_ms);
    // Not a time: ignored, the entry id's time; counted.
    assert_eq!(stored("user-malformed").await, entry_ms[1]);
    // Later than the entry: never past the entry id's time.
    assert_eq!(stored("user-ahead").await, entry_ms[2]);
    let dead: u64 = conn.xlen(config.dead_letter_key()).await.unwrap();
    assert_eq!(dead, 0, "nothing dead-lettered");
    let metrics = metrics_text(processor.local_addr()).await;
    assert!(
        metrics.contains("activity_processor_entry_fields_ignored_total{field=\"arrived_ms\"} 1"),
        "{metrics}"
    );
    stop(processor, token).await;
    cleanup(&mut conn, &config).await;
}

/// `activity-processor redrive-dead ARGS` against the test's stream; its
/// output.
fn redrive(config: &Config, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_activity-processor"))
        .arg("redrive-dead")
        .args(args)
        .env("REDIS_URL", &config.redis_url)
        .env("STREAM_KEY", &config.stream_key)
        .env_remove("LOG_LEVEL")
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The dead letters an older processor wrote: a line of a version 2
/// entry (no `id`: the reader derived one) and a version 1 entry (with
/// its `id`), both refused by PostgreSQL for a NUL; and one that is
/// really not an activity.
async fn old_dead_letters(
    conn: &mut redis::aio::MultiplexedConnection,
    config: &Config,
    line: &str,
    v1: &str,
) {
    let dead = config.dead_letter_key();
    let _: String = conn
        .xadd(
            &dead,
            "*",
            &[
                ("data", line),
                ("entry", "1767000000000-0"),
                ("index", "2"),
                ("reason", "rejected by the database: unsupported Unicode escape sequence (SQLSTATE 22P05)"),
            ],
        )
        .await
        .unwrap();
    let _: String = conn
        .xadd(
            &dead,
            "*",
            &[
                ("data", v1),
                ("reason", "rejected by the database: invalid byte sequence for encoding \"UTF8\": 0x00 (SQLSTATE 22021)"),
            ],
        )
        .await
        .unwrap();
}

#[sqlx::test(migrations = false)]
async fn dead_letters_refused_before_the_fix_are_redriven_and_stored_once(pool: PgPool) {
    let config = config(&pool);
    let mut conn = redis(&config).await;
    let token = CancellationToken::new();
    let processor = Processor::start(config.clone(), token.clone())
        .await
        .unwrap();

    let line = r#"{"v":1,"action":"withdrawal_request","user_id":"user-7","created_at":"2026-11-30T10:00:00Z","details":{"amount":"1000000\u0000"}}"#;
    let login = Activity::new(ActivityType::Login).user_id("admin\u{0}");
    let v1 = login.to_wire_json();
    old_dead_letters(&mut conn, &config, line, &v1).await;
    let dead = config.dead_letter_key();
    let _: String = conn
        .xadd(
            &dead,
            "*",
            &[
                ("data", "not json"),
                ("reason", "invalid JSON: expected value at line 1 column 1"),
            ],
        )
        .await
        .unwrap();

    let printed = redrive(&config, &["--reason-contains", "SQLSTATE"]);
    assert!(printed.contains("3 dead letters examined"), "{printed}");
    assert!(
        printed.contains("2 events (ids kept for 1 without one)"),
        "{printed}"
    );
    assert!(printed.contains("1 left as not matching"), "{printed}");
    wait_for("two rows", || async { count_rows(&pool).await == 2 }).await;
    wait_drained(&mut conn, &config).await;

    let kept_id = derived_id(&config.stream_key, "1767000000000-0", Some(2));
    let details: Value = sqlx::query_scalar("SELECT details FROM user_activity_logs WHERE id = $1")
        .bind(kept_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(details["amount"], "1000000\u{fffd}");
    let user: String = sqlx::query_scalar("SELECT user_id FROM user_activity_logs WHERE id = $1")
        .bind(login.id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(user, "admin\u{fffd}");
    let left: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(&dead)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(left.len(), 1, "only the non-matching one is left: {left:?}");

    // Twice: nothing left to redrive, nothing stored twice.
    let printed = redrive(&config, &["--reason-contains", "SQLSTATE"]);
    assert!(printed.contains("0 events"), "{printed}");
    // The same dead letters again (a redrive stopped between re-adding and
    // deleting them): the ids are the same, so no new rows.
    old_dead_letters(&mut conn, &config, line, &v1).await;
    let printed = redrive(
        &config,
        &["--since", "2026-01-01", "--reason-contains", "SQLSTATE"],
    );
    assert!(printed.contains("2 events"), "{printed}");
    wait_for("the duplicates counted", || async {
        processor.stats().snapshot().duplicates >= 2
    })
    .await;
    wait_drained(&mut conn, &config).await;
    assert_eq!(count_rows(&pool).await, 2);

    // A day after every dead letter: nothing is looked at.
    let printed = redrive(&config, &["--since", "2999-01-01"]);
    assert!(printed.contains("0 dead letters examined"), "{printed}");
    stop(processor, token).await;
    cleanup(&mut conn, &config).await;
}

#[test]
fn redrive_dead_help_explains_its_options() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_activity-processor"))
        .args(["redrive-dead", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for needle in [
        "--reason-contains <TEXT>",
        "--since <DATE>",
        "REDIS_URL",
        "STREAM_KEY",
        "Idempotent",
    ] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
}
