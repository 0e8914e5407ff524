//! The ingest API end to end through `Processor::start` against the shared
//! Redis and PostgreSQL: each test has its own stream key and database.
//! Requests are written by hand (raw HTTP/1.1), so every header and byte
//! is the test's; the real Segment SDK is driven by the root package's
//! `tests/segment_sdk.rs`.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use activity_processor::ingest::message_uuid;
use activity_processor::{Config, Processor};
use base64::Engine;
use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);
const KEY: &str = "wk-web-0123456789";
const SERVER_KEY: &str = "wk-server-0123456789";

fn config(pool: &PgPool) -> Config {
    let mut config = Config::from_env();
    config.database_url = activity_store::testing::database_url(pool);
    config.stream_key = format!("test:ingest:{}", uuid::Uuid::now_v7());
    config.admin_listen = "127.0.0.1:0".into();
    config.ingest_listen = "127.0.0.1:0".into();
    config.ingest_write_keys = Some(format!("web={KEY},server={SERVER_KEY}").as_str().into());
    config.ingest_trusted_ip_sources = Some("server".into());
    config.batch_size = 100;
    config.flush_interval_ms = 50;
    config.consumer_name = Some("c1".into());
    config.legacy_list_key = None;
    config.alert_rules = Some("none".into());
    config
}

async fn start(config: &Config) -> (Processor, CancellationToken) {
    let token = CancellationToken::new();
    let processor = Processor::start(config.clone(), token.clone())
        .await
        .unwrap();
    (processor, token)
}

async fn stop(processor: Processor, token: CancellationToken, config: &Config) {
    token.cancel();
    tokio::time::timeout(Duration::from_secs(10), processor.wait())
        .await
        .unwrap()
        .unwrap();
    let mut conn = redis(config).await;
    let _: () = conn
        .del(&[&config.stream_key, &config.dead_letter_key()])
        .await
        .unwrap();
}

async fn redis(config: &Config) -> redis::aio::MultiplexedConnection {
    redis::Client::open(config.redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// An answer: status, headers (names lower-case), body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

fn basic(key: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{key}:"));
    format!("Basic {encoded}")
}

async fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    // The server may answer (413) before the whole body is read.
    let _ = stream.write_all(body).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

async fn post_json(addr: SocketAddr, path: &str, body: &Value) -> Answer {
    post(
        addr,
        path,
        &[("Authorization", &basic(KEY))],
        body.to_string().as_bytes(),
    )
    .await
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn track(user: &str, event: &str, message_id: &str) -> Value {
    json!({
        "type": "track", "event": event, "userId": user, "messageId": message_id,
        "timestamp": "2026-11-30T09:15:00.250Z",
        "properties": {"plan": "pro"},
    })
}

async fn rows(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM user_activity_logs")
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

async fn wait_rows(pool: &PgPool, n: i64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let count = rows(pool).await;
        if count == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{count} rows, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Rows are stored and the stream drained (so a count that should not
/// grow has had every chance to).
async fn wait_drained(config: &Config) {
    let mut conn = redis(config).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let len: u64 = conn.xlen(&config.stream_key).await.unwrap();
        if len == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stream not drained: {len}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

type Row = (
    String,
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

async fn row(pool: &PgPool, id: &str) -> Row {
    sqlx::query_as(
        "SELECT id::text, user_id, action, resource_type, resource_id, details, host(ip_address), \
         user_agent, session_id, created_at FROM user_activity_logs WHERE id = $1::uuid",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrations = false)]
async fn every_call_maps_to_its_row_field_by_field(pool: PgPool) {
    let config = config(&pool);
    let (processor, token) = start(&config).await;
    let addr = processor.ingest_addr().expect("ingest listening");
    let batch = json!({
        "batch": [
            {
                "type": "track", "event": "case_view", "userId": "u-1", "anonymousId": "anon-1",
                "messageId": "0b6a2a8e-9d0f-4c53-a0f8-6a1e9a4f1b11",
                "timestamp": "2026-11-30T10:15:00.123+02:00",
                "properties": {"resource_type": "case", "resource_id": "c-9", "amount": 12.5},
                "context": {"userAgent": "Mozilla/5.0 (X11)", "sessionId": "s-1", "ip": "203.0.113.5"}
            },
            {
                "type": "page", "anonymousId": "anon-2", "name": "Pricing", "category": "Docs",
                "messageId": "page-1", "timestamp": "2026-11-30T08:00:00Z",
                "properties": {"url": "https://example.com/pricing", "session_id": "s-2"}
            },
            {"type": "screen", "userId": 7, "name": "Cart", "messageId": "screen-1",
             "timestamp": "2026-11-30T08:00:01Z"},
            {"type": "identify", "userId": "u-1", "traits": {"email": "a@example.com"}},
            {"type": "group", "userId": "u-1", "groupId": "g-1"},
            {"type": "alias", "userId": "u-1", "previousId": "anon-1"}
        ],
        "sentAt": "2026-11-30T08:00:05Z"
    });
    let answer = post_json(addr, "/v1/batch", &batch).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.json(),
        json!({"success": true, "accepted": 3, "not_stored": 3, "rejected": []})
    );
    wait_rows(&pool, 3).await;

    let track = row(&pool, "0b6a2a8e-9d0f-4c53-a0f8-6a1e9a4f1b11").await;
    assert_eq!(track.1.as_deref(), Some("u-1"));
    assert_eq!(track.2, "case_view");
    assert_eq!(track.3.as_deref(), Some("case"));
    assert_eq!(track.4.as_deref(), Some("c-9"));
    assert_eq!(
        track.5,
        Some(json!({"amount": 12.5, "anonymous_id": "anon-1", "source": "web"}))
    );
    // `web` is not trusted for `context.ip`: the connection's address.
    assert_eq!(track.6.as_deref(), Some("127.0.0.1"));
    assert_eq!(track.7.as_deref(), Some("Mozilla/5.0 (X11)"));
    assert_eq!(track.8.as_deref(), Some("s-1"));
    assert_eq!(
        track.9,
        "2026-11-30T08:15:00.123Z".parse::<DateTime<Utc>>().unwrap()
    );

    let page = row(&pool, &message_uuid("web", "page-1").to_string()).await;
    assert_eq!(page.1, None);
    assert_eq!(page.2, "page_view");
    assert_eq!(
        page.5,
        Some(
            json!({"url": "https://example.com/pricing", "session_id": "s-2",
                    "name": "Pricing", "category": "Docs", "anonymous_id": "anon-2", "source": "web"})
        )
    );
    assert_eq!(page.8.as_deref(), Some("s-2"));
    let screen = row(&pool, &message_uuid("web", "screen-1").to_string()).await;
    assert_eq!(
        (screen.1.as_deref(), screen.2.as_str()),
        (Some("7"), "screen_view")
    );

    // A single call, with a trailing slash, the key in the body, from a
    // source trusted for `context.ip`; no timestamp: the receive time.
    let before = Utc::now();
    let answer = post(
        addr,
        "/v1/track/",
        &[],
        json!({"writeKey": SERVER_KEY, "userId": "u-2", "event": "login", "messageId": "m-1",
               "context": {"ip": "203.0.113.5"}})
        .to_string()
        .as_bytes(),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    wait_rows(&pool, 4).await;
    let login = row(&pool, &message_uuid("server", "m-1").to_string()).await;
    assert_eq!(login.2, "login");
    assert_eq!(login.6.as_deref(), Some("203.0.113.5"));
    assert_eq!(login.5, Some(json!({"source": "server"})));
    assert!(login.9 >= before.trunc_subsecs_micros() && login.9 <= Utc::now());

    for path in [
        "/v1/page",
        "/v1/screen/",
        "/v1/identify/",
        "/v1/group",
        "/v1/alias/",
    ] {
        let answer = post_json(addr, path, &json!({"userId": "u-3", "name": "X"})).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
    }
    wait_rows(&pool, 6).await;
    wait_drained(&config).await;
    stop(processor, token, &config).await;
}

trait Micros {
    fn trunc_subsecs_micros(self) -> Self;
}

impl Micros for DateTime<Utc> {
    fn trunc_subsecs_micros(self) -> Self {
        chrono::SubsecRound::trunc_subsecs(self, 6)
    }
}

#[sqlx::test(migrations = false)]
async fn write_keys_by_basic_auth_or_body_and_nothing_else(pool: PgPool) {
    let config = config(&pool);
    let (processor, token) = start(&config).await;
    let addr = processor.ingest_addr().unwrap();
    let event = track("u-1", "login", "auth-1");
    let body = event.to_string();
    let with_key = |key: &str| {
        let mut event = event.clone();
        event["writeKey"] = json!(key);
        event.to_string()
    };
    let longer = format!("{KEY}x");
    let shorter = &KEY[..KEY.len() - 1];
    // (headers, body, status, error code)
    type Case<'a> = (Vec<(&'a str, String)>, String, u16, &'a str);
    let cases: Vec<Case> = vec![
        (vec![("Authorization", basic(KEY))], body.clone(), 200, ""),
        (vec![], with_key(KEY), 200, ""),
        (vec![], body.clone(), 401, "missing_write_key"),
        (
            vec![("Authorization", basic("nope"))],
            body.clone(),
            401,
            "invalid_write_key",
        ),
        (vec![], with_key("nope"), 401, "invalid_write_key"),
        (
            vec![("Authorization", basic(&longer))],
            body.clone(),
            401,
            "invalid_write_key",
        ),
        (
            vec![("Authorization", basic(shorter))],
            body.clone(),
            401,
            "invalid_write_key",
        ),
        (vec![], with_key(shorter), 401, "invalid_write_key"),
        // The header is the credential when present, whatever the body says.
        (
            vec![("Authorization", basic("nope"))],
            with_key(KEY),
            401,
            "invalid_write_key",
        ),
    ];
    for (headers, body, status, code) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let answer = post(addr, "/v1/track", &headers, body.as_bytes()).await;
        assert_eq!(answer.status, status, "{headers:?} {body}: {}", answer.body);
        if status == 401 {
            assert_eq!(answer.json()["error"], code);
            assert!(answer.json()["message"].is_string());
            assert_eq!(
                answer.header("www-authenticate"),
                Some("Basic realm=\"activity-ingest\"")
            );
        }
    }
    // Twice accepted, the same messageId: one row.
    wait_rows(&pool, 1).await;
    wait_drained(&config).await;
    assert_eq!(rows(&pool).await, 1);
    stop(processor, token, &config).await;
}

#[sqlx::test(migrations = false)]
async fn limits_and_bad_events_are_answered_with_their_reasons(pool: PgPool) {
    let config = config(&pool);
    let (processor, token) = start(&config).await;
    let addr = processor.ingest_addr().unwrap();

    // A mixed batch: the valid ones stored, the others listed by index.
    let mut big = track("u-1", "x", "big");
    big["properties"] = json!({"blob": "b".repeat(33 * 1024)});
    let mut wide = track("u-1", "x", "wide");
    wide["properties"] = json!({"blob": "w".repeat(20 * 1024)});
    let mut future = track("u-1", "x", "future");
    future["timestamp"] = json!((Utc::now() + chrono::TimeDelta::hours(25)).to_rfc3339());
    let mut soon = track("u-1", "soon", "soon");
    soon["timestamp"] = json!((Utc::now() + chrono::TimeDelta::hours(23)).to_rfc3339());
    let mut long_ua = track("u-1", "x", "ua");
    long_ua["context"] = json!({"userAgent": "a".repeat(501)});
    let batch = json!({"batch": [
        track("u-1", "ok_1", "ok-1"),
        big,
        wide,
        future,
        {"type": "track", "event": "x", "messageId": "nobody"},
        {"type": "track", "userId": "u-1", "event": "e".repeat(101)},
        long_ua,
        "not an object",
        soon,
        track("u-2", "ok_2", "ok-2"),
    ]});
    let answer = post_json(addr, "/v1/batch", &batch).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["accepted"], 3);
    let rejected: Vec<(u64, String)> = body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert!(r["message"].as_str().is_some_and(|m| !m.is_empty()), "{r}");
            (
                r["index"].as_u64().unwrap(),
                r["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(u64, String)> = [
        (1, "event_too_large"),
        (2, "properties_too_large"),
        (3, "timestamp_in_future"),
        (4, "missing_user"),
        (5, "invalid_event"),
        (6, "field_too_long"),
        (7, "invalid_message"),
    ]
    .into_iter()
    .map(|(i, r)| (i, r.to_owned()))
    .collect();
    assert_eq!(rejected, expected);
    wait_rows(&pool, 3).await;
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM user_activity_logs ORDER BY action")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(actions, ["ok_1", "ok_2", "soon"]);

    // None valid: 400, still listing why.
    let answer = post_json(addr, "/v1/batch", &json!({"batch": [{"type": "track"}, 5]})).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["error"], "no_valid_events");
    assert_eq!(body["rejected"][1]["index"], 1);
    let answer = post_json(addr, "/v1/batch", &json!({"batch": []})).await;
    assert_eq!(
        (answer.status, answer.json()["error"].clone()),
        (400, json!("no_events"))
    );
    // A single call over 32 KB: that event rejected, so 400.
    let answer = post_json(
        addr,
        "/v1/track",
        &json!({"userId": "u", "event": "x",
        "properties": {"blob": "b".repeat(33 * 1024)}}),
    )
    .await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.json()["rejected"][0]["reason"], "event_too_large");

    // Not JSON, or not a batch.
    for body in [&b"{not json"[..], b"[1,2]", b"{\"batch\": 5}", b"\xff\xfe"] {
        let answer = post(addr, "/v1/batch", &[("Authorization", &basic(KEY))], body).await;
        assert_eq!(answer.status, 400, "{}", answer.body);
        assert_eq!(answer.json()["error"], "invalid_json");
    }

    // Over 500 KB: 413, as sent or once decompressed.
    let events: Vec<Value> = (0..30)
        .map(|i| {
            let mut event = track("u", "x", &format!("bulk-{i}"));
            event["properties"] = json!({"pad": "p".repeat(17 * 1024)});
            event
        })
        .collect();
    let large = json!({"batch": events}).to_string();
    assert!(large.len() > 500 * 1024);
    let answer = post(
        addr,
        "/v1/batch",
        &[("Authorization", &basic(KEY))],
        large.as_bytes(),
    )
    .await;
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert_eq!(answer.json()["error"], "request_too_large");
    let gzipped = gzip(large.as_bytes());
    assert!(gzipped.len() < 500 * 1024);
    let answer = post(
        addr,
        "/v1/batch",
        &[("Authorization", &basic(KEY)), ("Content-Encoding", "gzip")],
        &gzipped,
    )
    .await;
    assert_eq!(answer.status, 413, "{}", answer.body);
    // A bomb: 10 MB of zeros as ~10 KB, refused at the limit.
    let bomb = gzip(&vec![b'0'; 10 * 1024 * 1024]);
    assert!(bomb.len() < 20 * 1024);
    let answer = post(
        addr,
        "/v1/batch",
        &[("Authorization", &basic(KEY)), ("Content-Encoding", "gzip")],
        &bomb,
    )
    .await;
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert!(
        answer.json()["message"]
            .as_str()
            .unwrap()
            .contains("decompressed")
    );
    // A gzip body within the limits is read like a plain one.
    let small = json!({"batch": [track("u-3", "zipped", "zip-1")]}).to_string();
    let answer = post(
        addr,
        "/v1/batch",
        &[("Authorization", &basic(KEY)), ("Content-Encoding", "gzip")],
        &gzip(small.as_bytes()),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answer = post(
        addr,
        "/v1/batch",
        &[("Authorization", &basic(KEY)), ("Content-Encoding", "br")],
        small.as_bytes(),
    )
    .await;
    assert_eq!(answer.status, 415, "{}", answer.body);
    wait_rows(&pool, 4).await;
    wait_drained(&config).await;
    assert_eq!(rows(&pool).await, 4);
    stop(processor, token, &config).await;
}

#[sqlx::test(migrations = false)]
async fn retries_of_a_batch_store_each_event_once(pool: PgPool) {
    let config = config(&pool);
    let (processor, token) = start(&config).await;
    let addr = processor.ingest_addr().unwrap();
    let uuid_id = "5f1c8b52-3a51-4d7e-9f0a-0c2f4e6d8a10";
    let batch = |sent_at: &str| {
        json!({"batch": [track("u-1", "retry_uuid", uuid_id), track("u-1", "retry_text", "ajs-next-42")],
               "sentAt": sent_at})
    };
    for (i, sent_at) in [
        "2026-11-30T09:15:01Z",
        "2026-11-30T09:15:03Z",
        "2026-11-30T09:16:00Z",
    ]
    .iter()
    .enumerate()
    {
        // As an SDK retries: the same events, another sentAt, gzip or not.
        let body = batch(sent_at).to_string();
        let answer = if i == 1 {
            post(
                addr,
                "/v1/batch",
                &[("Authorization", &basic(KEY)), ("Content-Encoding", "gzip")],
                &gzip(body.as_bytes()),
            )
            .await
        } else {
            post(
                addr,
                "/v1/batch",
                &[("Authorization", &basic(KEY))],
                body.as_bytes(),
            )
            .await
        };
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    wait_rows(&pool, 2).await;
    wait_drained(&config).await;
    let stored: Vec<(String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id::text, action, created_at FROM user_activity_logs ORDER BY action",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let at = "2026-11-30T09:15:00.250Z".parse::<DateTime<Utc>>().unwrap();
    assert_eq!(
        stored,
        [
            (
                message_uuid("web", "ajs-next-42").to_string(),
                "retry_text".to_owned(),
                at
            ),
            (uuid_id.to_owned(), "retry_uuid".to_owned(), at),
        ]
    );
    assert_eq!(processor.stats().snapshot().duplicates, 4);
    stop(processor, token, &config).await;
}

#[sqlx::test(migrations = false)]
async fn a_source_over_its_rate_gets_429_with_retry_after(pool: PgPool) {
    let mut config = config(&pool);
    config.ingest_rate_limit = Some(10);
    let (processor, token) = start(&config).await;
    let addr = processor.ingest_addr().unwrap();
    let events = |prefix: &str, n: usize| {
        let batch: Vec<Value> = (0..n)
            .map(|i| track("u", "rated", &format!("{prefix}-{i}")))
            .collect();
        json!({"batch": batch})
    };
    // Three seconds' events at once are let in, and the source then waits
    // until they are paid for.
    let answer = post_json(addr, "/v1/batch", &events("a", 30)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answer = post_json(addr, "/v1/batch", &events("b", 1)).await;
    assert_eq!(answer.status, 429, "{}", answer.body);
    assert_eq!(answer.json()["error"], "rate_limited");
    let wait: u64 = answer.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3).contains(&wait), "{wait}");
    // Another source has its own rate.
    let answer = post(
        addr,
        "/v1/track",
        &[("Authorization", &basic(SERVER_KEY))],
        track("u", "rated", "c-0").to_string().as_bytes(),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    wait_rows(&pool, 31).await;
    stop(processor, token, &config).await;
}

#[sqlx::test(migrations = false)]
async fn a_backlog_over_the_bound_is_503_with_retry_after(pool: PgPool) {
    let mut config = config(&pool);
    // No consumer: what is accepted stays in the stream.
    config.serve_roles = "ingest".into();
    config.ingest_max_backlog = 5;
    let (processor, token) = start(&config).await;
    let addr = processor.ingest_addr().unwrap();
    let answer = post_json(
        addr,
        "/v1/batch",
        &json!({"batch": (0..8).map(|i| track("u", "x", &format!("m-{i}"))).collect::<Vec<_>>()}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let mut conn = redis(&config).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let refused = loop {
        let answer = post_json(addr, "/v1/track", &track("u", "x", "late")).await;
        if answer.status == 503 {
            break answer;
        }
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(tokio::time::Instant::now() < deadline, "never refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(refused.json()["error"], "unavailable");
    assert!(
        refused
            .header("retry-after")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    // One entry per accepted request, each a v2 entry.
    let entries: redis::streams::StreamRangeReply =
        conn.xrange_all(&config.stream_key).await.unwrap();
    let first = &entries.ids[0];
    assert_eq!(first.get::<String>("n").as_deref(), Some("8"));
    assert_eq!(first.get::<String>("events").unwrap().lines().count(), 8);
    stop(processor, token, &config).await;
}

#[sqlx::test(migrations = false)]
async fn serve_roles_run_only_the_parts_named(pool: PgPool) {
    // Ingest alone: no admin listener, no consumer, no database at all.
    let mut config = config(&pool);
    config.serve_roles = "ingest".into();
    config.database_url = "postgres://postgres@127.0.0.1:1/nowhere".into();
    let (processor, token) = start(&config).await;
    assert_eq!(processor.admin_addr(), None);
    let addr = processor.ingest_addr().unwrap();
    let answer = post_json(addr, "/v1/track", &track("u", "alone", "r-1")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let mut conn = redis(&config).await;
    let len: u64 = conn.xlen(&config.stream_key).await.unwrap();
    assert_eq!(len, 1, "in the stream, for a consumer elsewhere");
    stop(processor, token, &config).await;

    // Admin and consumer: no ingest listener though write keys are set.
    let mut config = self::config(&pool);
    config.serve_roles = "consumer,admin".into();
    let (processor, token) = start(&config).await;
    assert_eq!(processor.ingest_addr(), None);
    assert!(processor.admin_addr().is_some());
    stop(processor, token, &config).await;

    // A taken INGEST_LISTEN stops start-up, naming the setting.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = self::config(&pool);
    config.ingest_listen = taken.local_addr().unwrap().to_string();
    let error = Processor::start(config, CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("INGEST_LISTEN"), "{error}");
}

async fn get(addr: SocketAddr, path: &str) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    Answer {
        status: head[9..12].parse().unwrap(),
        headers: Vec::new(),
        body: body.to_owned(),
    }
}

#[sqlx::test(migrations = false)]
async fn the_openapi_document_describes_every_path_and_limit(pool: PgPool) {
    let mut config = config(&pool);
    config.serve_roles = "ingest".into();
    let (processor, token) = start(&config).await;
    let addr = processor.ingest_addr().unwrap();

    // Served without credentials, as the admin API's is.
    let answer = get(addr, "/v1/openapi.json").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let document = answer.json();
    assert_eq!(document["openapi"], "3.1.0");
    for path in [
        "/v1/batch",
        "/v1/track",
        "/v1/page",
        "/v1/screen",
        "/v1/identify",
        "/v1/group",
        "/v1/alias",
    ] {
        let operation = &document["paths"][path]["post"];
        assert!(operation["requestBody"].is_object(), "{path}");
        for status in ["200", "400", "401", "413", "429", "503"] {
            assert!(
                operation["responses"][status].is_object(),
                "{path} {status}"
            );
        }
    }
    let schemas = &document["components"]["schemas"];
    let track_event = &schemas["Track"]["allOf"][1]["properties"]["event"];
    assert_eq!(track_event["maxLength"], 100);
    assert_eq!(track_event["minLength"], 1);
    let stored = &schemas["Stored"]["allOf"][1]["properties"];
    assert_eq!(stored["userId"]["maxLength"], 255);
    assert_eq!(
        stored["properties"]["properties"]["resource_type"]["maxLength"],
        50
    );
    assert_eq!(
        stored["context"]["properties"]["userAgent"]["maxLength"],
        500
    );
    assert_eq!(stored["timestamp"]["format"], "date-time");
    // A batch is valid when it holds at least one valid message.
    let batch = &schemas["Batch"]["properties"]["batch"];
    assert_eq!(batch["minItems"], 1);
    assert_eq!(batch["contains"]["$ref"], "#/components/schemas/BatchItem");
    stop(processor, token, &config).await;
}

#[sqlx::test(migrations = false)]
async fn messages_contexts_and_bodies_are_objects_not_arrays(pool: PgPool) {
    let mut config = config(&pool);
    config.serve_roles = "ingest".into();
    let (processor, token) = start(&config).await;
    let addr = processor.ingest_addr().unwrap();

    // serde reads a struct from an array too, its fields in order: this
    // one would have been a page view by `userId` 0.
    let answer = post_json(
        addr,
        "/v1/page",
        &json!({"userId": 0, "context": [null, null]}),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.json()["rejected"][0]["reason"], "invalid_message");
    let answer = post_json(addr, "/v1/track", &json!([null, "signup", "user-1"])).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.json()["error"], "invalid_json");
    let answer = post_json(
        addr,
        "/v1/batch",
        &json!([[{"type": "track", "event": "signup", "userId": "user-1"}]]),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.json()["error"], "invalid_json");
    let answer = post_json(
        addr,
        "/v1/batch",
        &json!({"batch": [["track", "signup", "user-1"], track("user-1", "signup", "m-1")]}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["accepted"], 1);
    assert_eq!(body["rejected"][0]["index"], 0);
    assert_eq!(body["rejected"][0]["reason"], "invalid_message");
    let mut conn = redis(&config).await;
    let len: u64 = conn.xlen(&config.stream_key).await.unwrap();
    assert_eq!(len, 1, "only the object message was written");
    stop(processor, token, &config).await;
}
