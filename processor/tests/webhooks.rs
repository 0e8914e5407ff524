//! Alert webhooks end to end: delivery rows as the alert rules make them,
//! `run_deliveries` sending them over real HTTP to a receiver written in
//! Python (`tests/python/webhook_receiver.py`) that verifies every request
//! with the `standardwebhooks` package, and the rows and answers checked.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use activity_processor::webhook::{
    DELIVERIES_METRIC, DISABLED_URLS_METRIC, WebhookConfig, WebhookSecret, disabled_urls,
    run_deliveries,
};
use serde_json::Value;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const LINK_BASE: &str = "https://admin.example.test";
const WAIT: Duration = Duration::from_secs(30);

/// The Python receiver, on a free port, killed when dropped.
struct Receiver {
    child: std::process::Child,
    port: u16,
    records: PathBuf,
}

impl Receiver {
    async fn start() -> Receiver {
        Self::start_with(&[]).await
    }

    /// With `TLS_CERT` and `TLS_KEY`, an https receiver.
    async fn start_with(env: &[(&str, &std::path::Path)]) -> Receiver {
        let records = std::env::temp_dir().join(format!("webhooks-{}.jsonl", Uuid::now_v7()));
        let mut child = std::process::Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../tests/python/webhook_receiver.py"
            ))
            .env("WEBHOOK_SECRET", SECRET)
            .env("RECORD_FILE", &records)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs");
        let stdout = child.stdout.take().expect("stdout is piped");
        // One short line, printed as soon as the port is bound.
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
                .map(|_| line)
        });
        let line = tokio::time::timeout(WAIT, line)
            .await
            .expect("the receiver starts in time")
            .unwrap()
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "the receiver prints its port, not {line:?} (is standardwebhooks installed? .ci/run installs it)"
                )
            });
        Receiver {
            child,
            port,
            records,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request received so far, in order.
    fn received(&self) -> Vec<Value> {
        match std::fs::read_to_string(&self.records) {
            Ok(text) => text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The requests received at `path`.
    fn received_at(&self, path: &str) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|r| r["path"] == path)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.records);
    }
}

/// Settings paced for a test: retries after 100 ms doubling to 400 ms.
fn config(urls: Vec<String>) -> WebhookConfig {
    let secret: WebhookSecret = SECRET.parse().unwrap();
    let mut config = WebhookConfig::new(urls, secret, LINK_BASE.into()).unwrap();
    config.backoff_initial = Duration::from_millis(100);
    config.backoff_max = Duration::from_millis(400);
    config.poll_interval = Duration::from_millis(50);
    config.request_timeout = Duration::from_secs(5);
    config
}

fn start(pool: &PgPool, config: WebhookConfig) -> (CancellationToken, JoinHandle<()>) {
    let token = CancellationToken::new();
    let worker = tokio::spawn(run_deliveries(
        pool.clone(),
        Arc::new(config),
        token.clone(),
    ));
    (token, worker)
}

async fn stop(worker: (CancellationToken, JoinHandle<()>)) {
    worker.0.cancel();
    tokio::time::timeout(WAIT, worker.1)
        .await
        .expect("the worker stops")
        .unwrap();
}

/// An alert as the rules raise it.
async fn insert_alert(pool: &PgPool) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO user_activity_alerts (id, rule, group_kind, group_value, user_id, ip_address,
             first_event_id, first_event_at, last_event_id, last_event_at, count)
         VALUES ($1, 'failed_then_success', 'user', 'u-42', 'u-42', '203.0.113.7',
             $2, now() - interval '1 minute', $3, now(), 6)",
    )
    .bind(id)
    .bind(Uuid::now_v7())
    .bind(Uuid::now_v7())
    .execute(pool)
    .await
    .unwrap();
    id
}

/// A pending delivery as the rules make it; its `webhook-id`.
async fn insert_delivery(pool: &PgPool, alert: Uuid, url: &str) -> String {
    let webhook_id = format!("msg_{}", alert.simple());
    sqlx::query(
        "INSERT INTO user_activity_alert_deliveries (alert_id, url, webhook_id) VALUES ($1, $2, $3)",
    )
    .bind(alert)
    .bind(url)
    .bind(&webhook_id)
    .execute(pool)
    .await
    .unwrap();
    webhook_id
}

#[derive(Debug, sqlx::FromRow)]
struct Delivery {
    status: String,
    attempts: i32,
    last_error: Option<String>,
    leased_until: Option<chrono::DateTime<chrono::Utc>>,
    finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

async fn delivery(pool: &PgPool, alert: Uuid, url: &str) -> Delivery {
    sqlx::query_as(
        "SELECT status, attempts, last_error, leased_until, finished_at
         FROM user_activity_alert_deliveries WHERE alert_id = $1 AND url = $2",
    )
    .bind(alert)
    .bind(url)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Waits until the delivery's status is not `pending`; returns it.
async fn finished(pool: &PgPool, alert: Uuid, url: &str) -> Delivery {
    let deadline = Instant::now() + WAIT;
    loop {
        let row = delivery(pool, alert, url).await;
        if row.status != "pending" {
            return row;
        }
        assert!(Instant::now() < deadline, "still pending: {row:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn count_status(pool: &PgPool, status: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM user_activity_alert_deliveries WHERE status = $1")
        .bind(status)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn wait_until_delivered(pool: &PgPool, n: i64) {
    let deadline = Instant::now() + WAIT;
    while count_status(pool, "delivered").await < n {
        assert!(
            Instant::now() < deadline,
            "fewer than {n} delivered in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn a_delivery_is_signed_and_carries_the_alert_and_its_link(pool: PgPool) {
    let receiver = Receiver::start().await;
    let url = receiver.url("/ok/1");
    let alert = insert_alert(&pool).await;
    let webhook_id = insert_delivery(&pool, alert, &url).await;
    let worker = start(&pool, config(vec![url.clone()]));

    let row = finished(&pool, alert, &url).await;
    stop(worker).await;
    assert_eq!(row.status, "delivered");
    assert_eq!(row.attempts, 1);
    assert_eq!(row.last_error, None);
    assert_eq!(row.leased_until, None);
    assert!(row.finished_at.is_some());

    let received = receiver.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let request = &received[0];
    assert_eq!(request["verified"], true, "{request}");
    assert_eq!(request["webhook_id"], webhook_id.as_str());
    assert_eq!(request["content_type"], "application/json");
    let signed_at: i64 = request["webhook_timestamp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((signed_at - chrono::Utc::now().timestamp()).abs() < 60);

    // The alert exactly as the admin API serializes it, plus its link.
    let stored = activity_store::alerts::get_alert(&pool, alert)
        .await
        .unwrap()
        .unwrap();
    let mut data = serde_json::to_value(&stored).unwrap();
    data["admin_url"] = format!("{LINK_BASE}/api/v1/admin/user-activities/alerts/{alert}").into();
    let payload = &request["payload"];
    assert_eq!(payload["type"], "alert.raised");
    assert_eq!(payload["data"], data);
    assert_eq!(payload["data"]["count"], 6);
    assert_eq!(payload["data"]["ip_address"], "203.0.113.7");
    let timestamp =
        chrono::DateTime::parse_from_rfc3339(payload["timestamp"].as_str().unwrap()).unwrap();
    assert_eq!(timestamp, stored.created_at);
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn a_failed_attempt_is_retried_with_the_same_webhook_id(pool: PgPool) {
    let receiver = Receiver::start().await;
    let url = receiver.url("/flaky/1");
    let alert = insert_alert(&pool).await;
    let webhook_id = insert_delivery(&pool, alert, &url).await;
    let worker = start(&pool, config(vec![url.clone()]));

    let row = finished(&pool, alert, &url).await;
    stop(worker).await;
    assert_eq!(row.status, "delivered");
    assert_eq!(row.attempts, 2);
    // Why the first attempt failed stays on record.
    let error = row.last_error.unwrap();
    assert!(
        error.contains("500") && error.contains("try again"),
        "{error}"
    );

    let received = receiver.received();
    assert_eq!(received.len(), 2, "{received:?}");
    let answered: Vec<_> = received.iter().map(|r| r["answered"].clone()).collect();
    assert_eq!(answered, [500, 200]);
    for request in &received {
        assert_eq!(request["webhook_id"], webhook_id.as_str());
        assert_eq!(request["verified"], true, "{request}");
    }
    // The retry came after the backoff (100 ms nominal, jittered to 50-100 ms).
    let gap =
        received[1]["received_at"].as_f64().unwrap() - received[0]["received_at"].as_f64().unwrap();
    assert!(gap >= 0.05, "retried after {gap} s");
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn gone_disables_the_url_and_its_pending_and_later_deliveries(pool: PgPool) {
    let metrics = activity_processor::server::install_metrics().expect("a recorder installs");
    let receiver = Receiver::start().await;
    let gone = receiver.url("/gone/1");
    let ok = receiver.url("/ok/2");
    let first = insert_alert(&pool).await;
    let first_id = insert_delivery(&pool, first, &gone).await;
    insert_delivery(&pool, first, &ok).await;
    // Pending, due later: disabled with the URL, never sent.
    let waiting = insert_alert(&pool).await;
    insert_delivery(&pool, waiting, &gone).await;
    sqlx::query(
        "UPDATE user_activity_alert_deliveries SET next_attempt_at = now() + interval '1 hour'
         WHERE alert_id = $1",
    )
    .bind(waiting)
    .execute(&pool)
    .await
    .unwrap();
    let worker = start(&pool, config(vec![gone.clone(), ok.clone()]));

    let row = finished(&pool, first, &gone).await;
    assert_eq!(row.status, "disabled");
    assert_eq!(row.attempts, 1);
    assert!(row.last_error.unwrap().contains("410"));
    assert_eq!(finished(&pool, first, &ok).await.status, "delivered");
    let row = delivery(&pool, waiting, &gone).await;
    assert_eq!(row.status, "disabled");
    assert_eq!(row.attempts, 0);

    let listed = disabled_urls(&pool).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].url, gone);
    assert!(
        listed[0].reason.contains("410") && listed[0].reason.contains(&first_id),
        "{}",
        listed[0].reason
    );
    let json = serde_json::to_value(&listed).unwrap();
    assert_eq!(json[0]["url"], gone.as_str());
    assert!(json[0]["disabled_at"].is_string());

    // A later alert's delivery to the URL (one made by an evaluator that
    // had not seen the 410 yet) is disabled, not sent; the other URL
    // still gets its own.
    let later = insert_alert(&pool).await;
    insert_delivery(&pool, later, &gone).await;
    insert_delivery(&pool, later, &ok).await;
    let row = finished(&pool, later, &gone).await;
    assert_eq!(row.status, "disabled");
    assert_eq!(row.attempts, 0);
    assert!(row.last_error.unwrap().starts_with("not sent"));
    assert_eq!(finished(&pool, later, &ok).await.status, "delivered");
    stop(worker).await;

    assert_eq!(
        receiver.received_at("/gone/1").len(),
        1,
        "one request, the 410"
    );
    assert_eq!(receiver.received_at("/ok/2").len(), 2);
    let rendered = metrics.render();
    let disabled = rendered
        .lines()
        .find(|l| l.starts_with(&format!("{DELIVERIES_METRIC}{{outcome=\"disabled\"}}")))
        .unwrap_or_else(|| panic!("no disabled count in {rendered}"));
    let disabled: f64 = disabled.rsplit(' ').next().unwrap().parse().unwrap();
    // Tests share the process's recorder: at least this test's three.
    assert!(disabled >= 3.0, "{disabled}");
    assert!(rendered.contains(DISABLED_URLS_METRIC), "{rendered}");
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn refused_deliveries_fail_at_once_and_failing_ones_when_the_window_passes(pool: PgPool) {
    let receiver = Receiver::start().await;
    let refuse = receiver.url("/refuse/1");
    let down = receiver.url("/down/1");
    let slow = receiver.url("/slow/3/1");
    // Nothing listens there: bound, then closed.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", listener.local_addr().unwrap())
    };
    let alert = insert_alert(&pool).await;
    for url in [&refuse, &down, &slow, &closed] {
        insert_delivery(&pool, alert, url).await;
    }
    let mut config = config(vec![
        refuse.clone(),
        down.clone(),
        slow.clone(),
        closed.clone(),
    ]);
    config.retry_for = Duration::from_secs(2);
    config.request_timeout = Duration::from_millis(500);
    let worker = start(&pool, config);

    let row = finished(&pool, alert, &refuse).await;
    assert_eq!(row.status, "failed");
    assert_eq!(row.attempts, 1);
    let error = row.last_error.unwrap();
    assert!(
        error.contains("400") && error.contains("unknown payload"),
        "{error}"
    );

    for (url, reason) in [
        (&down, "503"),
        (&slow, "no answer within the request timeout"),
        (&closed, "cannot connect"),
    ] {
        let row = finished(&pool, alert, url).await;
        assert_eq!(row.status, "failed", "{url}");
        assert!(row.attempts >= 3, "{url}: {row:?}");
        let error = row.last_error.unwrap();
        assert!(error.contains(reason), "{url}: {error}");
    }
    // Retried until the window had passed, not given up before.
    let early: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM user_activity_alert_deliveries
         WHERE url <> $1 AND finished_at < created_at + interval '2 seconds'",
    )
    .bind(&refuse)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(early, 0, "given up before the retry window had passed");
    stop(worker).await;

    assert_eq!(receiver.received_at("/refuse/1").len(), 1);
    let down_row = delivery(&pool, alert, &down).await;
    assert_eq!(
        receiver.received_at("/down/1").len(),
        down_row.attempts as usize,
        "each attempt is one request"
    );
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn a_restarted_worker_neither_loses_nor_repeats_deliveries(pool: PgPool) {
    let receiver = Receiver::start().await;
    let url = receiver.url("/slow/0.2/1");
    let mut ids = Vec::new();
    for _ in 0..16 {
        let alert = insert_alert(&pool).await;
        ids.push(insert_delivery(&pool, alert, &url).await);
    }
    let mut paced = config(vec![url.clone()]);
    paced.max_in_flight = 2;

    let first = start(&pool, paced.clone());
    let deadline = Instant::now() + WAIT;
    while receiver.received().len() < 3 {
        assert!(Instant::now() < deadline, "the first worker sends");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop(first).await;
    // Stopped mid-way, with what it had under way recorded, no lease left.
    let delivered = count_status(&pool, "delivered").await;
    assert!((3..16).contains(&delivered), "{delivered} delivered");
    assert_eq!(delivered as usize, receiver.received().len());
    let leased: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM user_activity_alert_deliveries WHERE leased_until IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(leased, 0);

    let second = start(&pool, paced);
    wait_until_delivered(&pool, 16).await;
    stop(second).await;
    let mut times: HashMap<String, usize> = HashMap::new();
    for request in receiver.received() {
        assert_eq!(request["verified"], true);
        *times
            .entry(request["webhook_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    for id in &ids {
        assert_eq!(times.get(id), Some(&1), "{id}: {times:?}");
    }
    assert_eq!(times.len(), ids.len());
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn a_dead_workers_lease_is_taken_over_once_it_has_passed(pool: PgPool) {
    let receiver = Receiver::start().await;
    let url = receiver.url("/ok/lease");
    let alert = insert_alert(&pool).await;
    insert_delivery(&pool, alert, &url).await;
    // As a processor that claimed it and died leaves it.
    let started = Instant::now();
    sqlx::query(
        "UPDATE user_activity_alert_deliveries SET leased_until = now() + interval '1.5 seconds'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let worker = start(&pool, config(vec![url.clone()]));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(receiver.received().is_empty(), "sent under another's lease");
    let row = finished(&pool, alert, &url).await;
    stop(worker).await;
    assert_eq!(row.status, "delivered");
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert_eq!(receiver.received().len(), 1);
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn two_workers_never_send_the_same_delivery(pool: PgPool) {
    let receiver = Receiver::start().await;
    let url = receiver.url("/slow/0.05/1");
    let mut ids = Vec::new();
    for _ in 0..24 {
        let alert = insert_alert(&pool).await;
        ids.push(insert_delivery(&pool, alert, &url).await);
    }
    let mut paced = config(vec![url.clone()]);
    paced.max_in_flight = 4;
    let a = start(&pool, paced.clone());
    let b = start(&pool, paced);
    wait_until_delivered(&pool, 24).await;
    stop(a).await;
    stop(b).await;

    let received = receiver.received();
    assert_eq!(received.len(), 24, "each sent once");
    assert!(received.iter().all(|r| r["concurrent"] == false));
    let mut sent: Vec<_> = received
        .iter()
        .map(|r| r["webhook_id"].as_str().unwrap().to_owned())
        .collect();
    sent.sort();
    ids.sort();
    assert_eq!(sent, ids);
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn https_receivers_are_checked_against_the_trusted_roots(pool: PgPool) {
    // A certificate of its own for the receiver, for 127.0.0.1.
    let dir = std::env::temp_dir().join(format!("webhooks-tls-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=webhook receiver"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let receiver = Receiver::start_with(&[("TLS_CERT", &cert), ("TLS_KEY", &key)]).await;
    let https = |path: &str| format!("https://127.0.0.1:{}{path}", receiver.port);

    // Trusting the receiver's certificate: delivered, over TLS.
    let trusted = https("/ok/trusted");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(<rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::from_pem_file(&cert).unwrap())
        .unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let alert = insert_alert(&pool).await;
    insert_delivery(&pool, alert, &trusted).await;
    let worker = start(&pool, config(vec![trusted.clone()]).with_tls(tls));
    let row = finished(&pool, alert, &trusted).await;
    stop(worker).await;
    assert_eq!(row.status, "delivered");
    let received = receiver.received_at("/ok/trusted");
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["verified"], true);

    // With the system's roots only, the self-signed certificate is
    // refused: nothing is sent, the attempt is retried, and says why.
    let untrusted = https("/ok/untrusted");
    let alert = insert_alert(&pool).await;
    insert_delivery(&pool, alert, &untrusted).await;
    let worker = start(&pool, config(vec![untrusted.clone()]));
    let deadline = Instant::now() + WAIT;
    let row = loop {
        let row = delivery(&pool, alert, &untrusted).await;
        if row.attempts >= 1 {
            break row;
        }
        assert!(Instant::now() < deadline, "no attempt in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop(worker).await;
    assert_eq!(row.status, "pending");
    let error = row.last_error.unwrap();
    assert!(error.contains("certificate"), "{error}");
    assert!(receiver.received_at("/ok/untrusted").is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The whole path in one processor: events stored (here straight by the
/// writer, as the layer's fallback stores them), the rule raising an
/// alert, its delivery row, the signed request reaching the receiver once.
#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn a_processor_posts_each_alert_its_rules_raise_once(pool: PgPool) {
    use activity_tracker::{Activity, ActivityType};

    let receiver = Receiver::start().await;
    let url = receiver.url("/ok/processor");
    let mut config = activity_processor::Config::from_env();
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set by .cargo/config.toml");
    let name = pool.connect_options().get_database().unwrap().to_owned();
    let server = base.rsplit_once('/').map(|(s, _)| s).unwrap_or(&base);
    config.database_url = format!("{server}/{name}");
    config.stream_key = format!("test:webhooks:{}", Uuid::now_v7());
    config.admin_listen = "127.0.0.1:0".into();
    config.legacy_list_key = None;
    config.alert_evaluate_interval_ms = 50;
    config.alert_webhook_urls = Some(url.clone());
    config.alert_webhook_secret = Some(SECRET.parse().unwrap());
    let token = CancellationToken::new();
    let processor = activity_processor::Processor::start(config, token.clone())
        .await
        .unwrap();

    let start = chrono::Utc::now() - chrono::TimeDelta::seconds(70);
    let burst: Vec<Activity> = (0..70)
        .map(|i| {
            Activity::at(
                ActivityType::CaseView,
                start + chrono::TimeDelta::seconds(i),
            )
            .user_id("hooked")
        })
        .collect();
    activity_store::writer::write_batch(&pool, &burst)
        .await
        .unwrap();

    let deadline = Instant::now() + WAIT;
    while receiver.received_at("/ok/processor").is_empty() {
        assert!(
            Instant::now() < deadline,
            "no delivery reached the receiver"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Time for a second delivery, if one were wrongly made.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = receiver.received_at("/ok/processor");
    assert_eq!(received.len(), 1, "{received:?}");
    let request = &received[0];
    assert_eq!(request["verified"], true, "{request}");
    let data = &request["payload"]["data"];
    assert_eq!(data["rule"], "rate");
    assert_eq!(data["group_value"], "hooked");
    let id = data["id"].as_str().unwrap();
    let admin = format!(
        "http://{}/api/v1/admin/user-activities/alerts/{id}",
        processor.local_addr()
    );
    assert_eq!(data["admin_url"], admin.as_str());
    let alerts: i64 = sqlx::query_scalar("SELECT count(*) FROM user_activity_alerts")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(alerts, 1);
    token.cancel();
    processor.wait().await.unwrap();
}
