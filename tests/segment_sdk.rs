//! The real Segment Python SDK (`segment-analytics-python`, pinned, in a
//! virtualenv under the target directory made by
//! `tests/python/setup_segment_venv.sh`) sends to the processor's ingest
//! server, changed only in its host and write key
//! (`tests/python/segment_send.py`): the rows match what it sent field by
//! field, with gzip off and on, and a 503 during a send is retried by the
//! SDK and stored once.

use std::time::Duration;

use activity_processor::ingest::message_uuid;
use activity_processor::{Config, Processor};
use activity_tracking::harness::{ScratchDatabase, wait_until};
use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The venv's python, made (once) by the project's script.
fn segment_python() -> String {
    let output = std::process::Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/setup_segment_venv.sh"
        ))
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "setup_segment_venv.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn sender(python: &str, host: &str, key: &str, prefix: &str, gzip: bool) -> std::process::Command {
    let mut command = std::process::Command::new(python);
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/segment_send.py"
        ))
        .env("INGEST_HOST", host)
        .env("WRITE_KEY", key)
        .env("PREFIX", prefix)
        .env("GZIP", if gzip { "1" } else { "0" });
    command
}

/// A database of its own, and a processor configuration on it.
struct Setup {
    database: ScratchDatabase,
    database_url: String,
    config: Config,
}

impl Setup {
    async fn new(name: &str) -> Setup {
        let database = ScratchDatabase::create(&format!("segment_{name}")).await;
        let database_url = database.url.clone();
        let mut config = Config::from_env();
        config.redis_url = env("REDIS_URL", "redis://127.0.0.1:6379");
        config.database_url = database_url.clone();
        config.stream_key = format!("test:segment:{}", uuid::Uuid::now_v7());
        config.admin_listen = "127.0.0.1:0".into();
        config.ingest_listen = "127.0.0.1:0".into();
        config.ingest_write_keys = Some("py=wk-python-0001,pyserver=wk-python-server-0001".into());
        config.ingest_trusted_ip_sources = Some("pyserver".into());
        config.flush_interval_ms = 50;
        config.legacy_list_key = None;
        config.alert_rules = Some("none".into());
        Setup {
            database,
            database_url,
            config,
        }
    }

    async fn db(&self) -> PgConnection {
        PgConnection::connect(&self.database_url).await.unwrap()
    }

    async fn wait_rows(&self, n: i64) {
        wait_until(&format!("{n} rows"), WAIT, || {
            let url = self.database_url.clone();
            async move {
                let mut db = PgConnection::connect(&url).await.ok()?;
                let count: i64 = sqlx::query_scalar("SELECT count(*) FROM user_activity_logs")
                    .fetch_one(&mut db)
                    .await
                    .ok()?;
                (count == n).then_some(())
            }
        })
        .await
        .unwrap();
    }

    async fn drop(self) {
        let mut redis = redis::Client::open(self.config.redis_url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let _: () = redis
            .del(&[&self.config.stream_key, &self.config.dead_letter_key()])
            .await
            .unwrap();
        self.database.drop().await;
    }
}

type Row = (
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<Value>,
    Option<String>,
    Option<String>,
    Option<String>,
    DateTime<Utc>,
);

async fn row(db: &mut PgConnection, id: uuid::Uuid) -> Row {
    sqlx::query_as(
        "SELECT user_id, action, resource_type, resource_id, details, host(ip_address), \
         user_agent, session_id, created_at FROM user_activity_logs WHERE id = $1",
    )
    .bind(id)
    .fetch_one(db)
    .await
    .unwrap_or_else(|e| panic!("row {id}: {e}"))
}

fn some(text: &str) -> Option<String> {
    Some(text.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_sent_by_the_python_sdk_are_stored_field_by_field() {
    let python = segment_python();
    let setup = Setup::new("fields").await;
    let token = CancellationToken::new();
    let processor = Processor::start(setup.config.clone(), token.clone())
        .await
        .unwrap();
    let host = format!("http://{}", processor.ingest_addr().unwrap());
    let at: DateTime<Utc> = "2026-11-30T09:15:00.123Z".parse().unwrap();
    let mut db = setup.db().await;
    let mut stored = 0;
    for (source, key, gzip) in [
        ("py", "wk-python-0001", false),
        ("pyserver", "wk-python-server-0001", true),
    ] {
        let prefix = format!("{source}-{}", uuid::Uuid::now_v7().simple());
        let before = Utc::now();
        // Off the runtime's workers: the processor answers on them.
        let mut command = sender(&python, &host, key, &prefix, gzip);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .unwrap();
        assert!(
            output.status.success(),
            "the SDK failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
        let sent: Value = serde_json::from_slice(&output.stdout).unwrap();
        // identify is accepted and not stored: three rows a run.
        stored += 3;
        setup.wait_rows(stored).await;
        // A server-side source trusted for `context.ip`; the other one
        // gets the connection's address.
        let ip = if source == "pyserver" {
            "203.0.113.9"
        } else {
            "127.0.0.1"
        };

        let track = row(&mut db, message_uuid(source, &format!("{prefix}-track"))).await;
        assert_eq!(
            track,
            (
                some("user-42"),
                "case_view".to_owned(),
                some("case"),
                some("case-7"),
                Some(json!({"amount": 12.5, "source": source})),
                some(ip),
                some("Mozilla/5.0 (Python test)"),
                some("sess-1"),
                at,
            )
        );
        let page = row(&mut db, message_uuid(source, &format!("{prefix}-page"))).await;
        assert_eq!(
            page,
            (
                some("user-42"),
                "page_view".to_owned(),
                None,
                None,
                Some(
                    json!({"url": "https://example.com/pricing", "name": "Pricing",
                            "category": "Docs", "source": source})
                ),
                some("127.0.0.1"),
                None,
                None,
                at,
            )
        );
        // A UUID messageId is the id itself; the SDK's own timestamp.
        let id: uuid::Uuid = sent["anonymous_id"].as_str().unwrap().parse().unwrap();
        let anonymous = row(&mut db, id).await;
        assert_eq!(anonymous.0, None);
        assert_eq!(anonymous.1, "signup_started");
        assert_eq!(
            anonymous.4,
            Some(json!({"anonymous_id": "anon-9", "source": source}))
        );
        let slack = chrono::TimeDelta::seconds(1);
        assert!(
            anonymous.8 >= before - slack && anonymous.8 <= Utc::now(),
            "{}",
            anonymous.8
        );
        let identified: i64 =
            sqlx::query_scalar("SELECT count(*) FROM user_activity_logs WHERE id = $1")
                .bind(message_uuid(source, &format!("{prefix}-identify")))
                .fetch_one(&mut db)
                .await
                .unwrap();
        assert_eq!(identified, 0);
    }
    token.cancel();
    processor.wait().await.unwrap();
    drop(db);
    setup.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_during_a_send_is_retried_by_the_sdk_and_stored_once() {
    let python = segment_python();
    let mut setup = Setup::new("retry").await;
    // An ingest alone refusing any backlog; an event is already waiting,
    // with no consumer running to store it.
    setup.config.serve_roles = "ingest".into();
    setup.config.ingest_max_backlog = 0;
    let mut redis = redis::Client::open(setup.config.redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let waiting =
        activity_tracker::Activity::new(activity_tracker::ActivityType::Login).user_id("waiting");
    let _: String = redis
        .xadd(
            &setup.config.stream_key,
            "*",
            &[("data", waiting.to_wire_json())],
        )
        .await
        .unwrap();
    let ingest_token = CancellationToken::new();
    let ingest = Processor::start(setup.config.clone(), ingest_token.clone())
        .await
        .unwrap();
    let host = format!("http://{}", ingest.ingest_addr().unwrap());
    let prefix = format!("retry-{}", uuid::Uuid::now_v7().simple());
    let child = sender(&python, &host, "wk-python-0001", &prefix, false)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // The SDK has been answered 503: nothing of its batch is in the stream.
    let metrics = activity_processor::server::install_metrics().expect("the recorder");
    wait_until("a 503", WAIT, || {
        let text = metrics.render();
        async move {
            text.contains("activity_processor_ingest_unavailable_total{cause=\"backlog\"}")
                .then_some(())
        }
    })
    .await
    .unwrap();
    let len: u64 = redis.xlen(&setup.config.stream_key).await.unwrap();
    assert_eq!(len, 1);

    // A consumer elsewhere drains the backlog; the SDK's retry gets in.
    let mut consumer_config = setup.config.clone();
    consumer_config.serve_roles = "consumer".into();
    let consumer_token = CancellationToken::new();
    let consumer = Processor::start(consumer_config, consumer_token.clone())
        .await
        .unwrap();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        output.status.success(),
        "the SDK failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sent: Value = serde_json::from_slice(&output.stdout).unwrap();
    setup.wait_rows(4).await;
    wait_until("stream drained", WAIT, || {
        let mut redis = redis.clone();
        let key = setup.config.stream_key.clone();
        async move { (redis.xlen::<_, u64>(&key).await.ok()? == 0).then_some(()) }
    })
    .await
    .unwrap();
    let mut db = setup.db().await;
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM user_activity_logs ORDER BY id")
        .fetch_all(&mut db)
        .await
        .unwrap();
    let mut expected = vec![
        waiting.id,
        message_uuid("py", &format!("{prefix}-track")),
        message_uuid("py", &format!("{prefix}-page")),
        sent["anonymous_id"].as_str().unwrap().parse().unwrap(),
    ];
    expected.sort();
    assert_eq!(ids, expected, "each stored once");

    consumer_token.cancel();
    consumer.wait().await.unwrap();
    ingest_token.cancel();
    ingest.wait().await.unwrap();
    drop(db);
    setup.drop().await;
}
