//! The HTTP stack every listener shares, over real connections: the
//! processor's admin listener (request ids, JSON errors for axum's own
//! answers, CORS, compression, connections closed when idle), and the
//! stack around routes of the test's own for what the admin routes cannot
//! show (a handler that reads a body, or panics).

use std::net::SocketAddr;
use std::time::Duration;

use activity_processor::http::{self, ConnectionTimeouts, StackSettings};
use activity_processor::{Config, Processor};
use axum::Router;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::routing::{get, post};
use serde_json::Value;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "http-stack-test-admin-token";
const ALLOWED_ORIGIN: &str = "https://admin.example.com";

/// A response read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Header names lowercased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {:?} {:?}",
                self.headers,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Sends `request` (whole, as bytes) on a new connection and reads the
/// answer until the server closes it (`Connection: close`).
async fn exchange(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut raw))
        .await
        .expect("the server answers and closes")
        .unwrap();
    parse(&raw)
}

fn parse(raw: &[u8]) -> Answer {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v == "chunked")
    {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut chunked: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = chunked.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&chunked[..line_end]).unwrap(), 16).unwrap();
        if size == 0 {
            return body;
        }
        let start = line_end + 2;
        body.extend_from_slice(&chunked[start..start + size]);
        chunked = &chunked[start + size + 2..];
    }
}

fn get_request(path: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\n{extra_headers}Connection: close\r\n\r\n"
    )
    .into_bytes()
}

fn config(pool: &PgPool) -> Config {
    let mut config = Config::from_env();
    config.database_url = activity_store::testing::database_url(pool);
    config.stream_key = format!("test:http-stack:{}", uuid::Uuid::now_v7());
    config.admin_listen = "127.0.0.1:0".into();
    config.consumer_name = Some("http-stack".into());
    config.legacy_list_key = None;
    config.alert_rules = Some("none".into());
    config.admin_tokens = Some(TOKEN.parse().unwrap());
    config.admin_cors_origins = Some(ALLOWED_ORIGIN.into());
    config.http_header_read_timeout_ms = 300;
    config
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn the_admin_listener_answers_through_the_stack(pool: PgPool) {
    let token = CancellationToken::new();
    let processor = Processor::start(config(&pool), token.clone())
        .await
        .unwrap();
    let addr = processor.local_addr();
    let queue = "/api/v1/admin/user-activities/queue-status";

    // A request id is made when none is sent, and a client's is echoed.
    let made = exchange(addr, &get_request(queue, "")).await;
    assert_eq!(made.status, 200, "{:?}", made.json());
    let id = made.header("x-request-id").expect("a request id is set");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "a UUID: {id}");
    let echoed = exchange(addr, &get_request(queue, "X-Request-Id: ticket-4711\r\n")).await;
    assert_eq!(echoed.header("x-request-id"), Some("ticket-4711"));

    // axum's own answers are the API's JSON errors.
    let missing = exchange(addr, &get_request("/no/such/page", "")).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("content-type"), Some("application/json"));
    assert_eq!(missing.json()["error"], "not_found");
    assert!(
        missing.json()["message"]
            .as_str()
            .unwrap()
            .contains("/no/such/page")
    );
    let wrong_method = exchange(
        addr,
        b"POST /healthz HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.json()["error"], "method_not_allowed");
    assert!(wrong_method.header("allow").unwrap().contains("GET"));
    let not_utf8 = exchange(
        addr,
        &get_request("/api/v1/admin/user-activities/user/%FF%FE", ""),
    )
    .await;
    assert_eq!(not_utf8.status, 400);
    assert_eq!(not_utf8.json()["error"], "bad_request");
    assert!(!not_utf8.json()["message"].as_str().unwrap().is_empty());

    // Compression when asked for.
    let compressed = exchange(
        addr,
        &get_request(
            "/api/v1/admin/user-activities/statistics?days=30",
            "Accept-Encoding: gzip\r\n",
        ),
    )
    .await;
    assert_eq!(compressed.status, 200);
    assert_eq!(compressed.header("content-encoding"), Some("gzip"));
    assert_eq!(&compressed.body[..2], &[0x1f, 0x8b], "a gzip stream");

    // CORS: the allowed origin's preflight and request get the headers;
    // another origin gets none, so its browser refuses.
    let preflight = |origin: &str| {
        format!(
            "OPTIONS {queue} HTTP/1.1\r\nHost: test\r\nOrigin: {origin}\r\n\
             Access-Control-Request-Method: GET\r\n\
             Access-Control-Request-Headers: authorization\r\nConnection: close\r\n\r\n"
        )
        .into_bytes()
    };
    let allowed = exchange(addr, &preflight(ALLOWED_ORIGIN)).await;
    assert_eq!(allowed.status, 200);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some(ALLOWED_ORIGIN)
    );
    assert!(
        allowed
            .header("access-control-allow-headers")
            .unwrap()
            .contains("authorization")
    );
    let refused = exchange(addr, &preflight("https://evil.example.net")).await;
    assert_eq!(refused.header("access-control-allow-origin"), None);
    let simple = exchange(
        addr,
        &get_request(queue, &format!("Origin: {ALLOWED_ORIGIN}\r\n")),
    )
    .await;
    assert_eq!(simple.status, 200);
    assert_eq!(
        simple.header("access-control-allow-origin"),
        Some(ALLOWED_ORIGIN)
    );

    // A connection that never finishes its headers, and one kept alive
    // after its request, are both closed by the header-read timeout.
    let mut half_sent = TcpStream::connect(addr).await.unwrap();
    half_sent
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: te")
        .await
        .unwrap();
    let mut kept_alive = TcpStream::connect(addr).await.unwrap();
    kept_alive
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), half_sent.read_to_end(&mut raw))
        .await
        .expect("the half-sent connection is closed")
        .unwrap();
    let mut kept = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), kept_alive.read_to_end(&mut kept))
        .await
        .expect("the idle kept-alive connection is closed")
        .unwrap();
    assert!(kept.starts_with(b"HTTP/1.1 200"), "answered before closing");

    token.cancel();
    processor.wait().await.unwrap();
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn the_ingest_listener_answers_through_the_stack(pool: PgPool) {
    let mut config = config(&pool);
    config.ingest_listen = "127.0.0.1:0".into();
    config.ingest_write_keys = Some("web=stack-test-write-key".into());
    config.http_request_timeout_ms = 700;
    let token = CancellationToken::new();
    let processor = Processor::start(config, token.clone()).await.unwrap();
    let ingest = processor.ingest_addr().expect("an ingest listener");
    // `stack-test-write-key:` in Basic.
    let auth = "Authorization: Basic c3RhY2stdGVzdC13cml0ZS1rZXk6\r\n";

    let track = format!(
        "POST /v1/track HTTP/1.1\r\nHost: test\r\n{auth}Content-Type: application/json\r\n\
         X-Request-Id: sdk-req-1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    let answer = exchange(ingest, track.as_bytes()).await;
    assert_eq!(answer.header("x-request-id"), Some("sdk-req-1"));
    assert_eq!(answer.header("content-type"), Some("application/json"));

    let missing = exchange(
        ingest,
        b"GET /v2/nothing HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "not_found");
    let wrong_method = exchange(
        ingest,
        b"GET /v1/batch HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.json()["error"], "method_not_allowed");

    // A body that stops halfway: 408, and nothing stored.
    let stalled = format!(
        "POST /v1/batch HTTP/1.1\r\nHost: test\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: 500\r\nConnection: close\r\n\r\n{{\"batch\": ["
    );
    let answer = exchange(ingest, stalled.as_bytes()).await;
    assert_eq!(answer.status, 408);
    assert_eq!(answer.json()["error"], "request_timeout");

    token.cancel();
    processor.wait().await.unwrap();
}

/// The stack around routes of the test's own, served like the processor's.
async fn serve_test_routes(
    request_timeout: Duration,
    timeouts: ConnectionTimeouts,
) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
    let routes = Router::new()
        .route("/echo", post(|body: Bytes| async move { body }))
        .route(
            "/json",
            post(|axum::Json(value): axum::Json<Value>| async move { axum::Json(value) }),
        )
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("a handler bug");
                }
                "never"
            }),
        )
        .route(
            "/authorization-is-sensitive",
            get(|headers: HeaderMap| async move {
                headers
                    .get(AUTHORIZATION)
                    .map(|v| v.is_sensitive().to_string())
                    .unwrap_or_default()
            }),
        );
    let app = http::stack(routes, &StackSettings::admin(request_timeout, Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = CancellationToken::new();
    let server = tokio::spawn({
        let token = token.clone();
        async move {
            http::serve(listener, app, timeouts, token).await.unwrap();
        }
    });
    (addr, token, server)
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_a_panic_a_json_500() {
    let (addr, token, server) = serve_test_routes(
        Duration::from_millis(500),
        ConnectionTimeouts {
            header_read: Duration::from_secs(5),
            idle: Duration::from_secs(5),
        },
    )
    .await;

    let echoed = exchange(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert_eq!(
        (echoed.status, echoed.body.as_slice()),
        (200, &b"hello"[..])
    );

    // Ten of a hundred bytes, then nothing.
    let stalled = exchange(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\nConnection: close\r\n\r\n0123456789",
    )
    .await;
    assert_eq!(stalled.status, 408);
    assert_eq!(stalled.json()["error"], "request_timeout");

    // Over the admin listener's body limit: 413, as JSON.
    let big = vec![b'x'; 100 * 1024];
    let mut request = format!(
        "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        big.len()
    )
    .into_bytes();
    request.extend_from_slice(&big);
    let too_big = exchange(addr, &request).await;
    assert_eq!(too_big.status, 413);
    assert_eq!(too_big.json()["error"], "payload_too_large");

    // axum's own rejection of a body that is not JSON: 415, as JSON.
    let not_json = exchange(
        addr,
        b"POST /json HTTP/1.1\r\nHost: test\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .await;
    assert_eq!(not_json.status, 415);
    assert_eq!(not_json.json()["error"], "unsupported_media_type");
    assert!(
        not_json.json()["message"]
            .as_str()
            .unwrap()
            .contains("application/json"),
        "axum's text kept as the message: {:?}",
        not_json.json()
    );

    let panicked = exchange(
        addr,
        b"GET /panic HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(panicked.status, 500);
    assert_eq!(panicked.json()["error"], "internal_error");
    // The server carries on.
    let after = exchange(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    )
    .await;
    assert_eq!(after.status, 200);

    // The bearer token is marked sensitive before any layer could log it.
    let sensitive = exchange(
        addr,
        b"GET /authorization-is-sensitive HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer secret\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(sensitive.body, b"true");

    token.cancel();
    tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .expect("the server stops when told")
        .unwrap();
}

#[tokio::test]
async fn a_connection_silent_mid_body_is_closed_by_the_idle_timeout() {
    // The request timeout is longer here, so only the idle timeout acts.
    let (addr, token, server) = serve_test_routes(
        Duration::from_secs(30),
        ConnectionTimeouts {
            header_read: Duration::from_secs(5),
            idle: Duration::from_millis(400),
        },
    )
    .await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n0123")
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("the idle connection is closed")
        .ok();
    token.cancel();
    server.await.unwrap();
}
