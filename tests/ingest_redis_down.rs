//! The ingest while its Redis (a private `redis-server`) is stopped: every
//! request answers 503 with `Retry-After` and nothing is half-accepted;
//! once Redis is back, the same request is accepted and its events are in
//! the stream, once.

use std::time::Duration;

use activity_processor::{Config, Processor};
use activity_tracking::harness::PrivateRedis;
use redis::AsyncCommands;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

async fn post(addr: std::net::SocketAddr, body: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /v1/batch HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    (response[9..12].parse().unwrap(), response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_503_with_retry_after_and_back_is_200() {
    let mut redis = PrivateRedis::start().unwrap();
    let mut config = Config::from_env();
    config.redis_url = redis.url();
    config.stream_key = "test:ingest:down".into();
    config.serve_roles = "ingest".into();
    config.ingest_listen = "127.0.0.1:0".into();
    config.ingest_write_keys = Some("web=wk-down-0123456789".into());
    let token = CancellationToken::new();
    let processor = Processor::start(config.clone(), token.clone())
        .await
        .unwrap();
    let addr = processor.ingest_addr().unwrap();
    let body = r#"{"writeKey": "wk-down-0123456789", "batch": [
        {"type": "track", "event": "login", "userId": "u-1", "messageId": "m-1"},
        {"type": "track", "event": "logout", "userId": "u-1", "messageId": "m-2"}]}"#;

    redis.stop().unwrap();
    for _ in 0..2 {
        let (status, response) = post(addr, body).await;
        assert_eq!(status, 503, "{response}");
        assert!(response.contains("retry-after: 1\r\n"), "{response}");
        assert!(response.contains(r#""error":"unavailable""#), "{response}");
    }

    redis.start_again().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, response) = post(addr, body).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{response}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "Redis never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let entries: redis::streams::StreamRangeReply =
        conn.xrange_all(&config.stream_key).await.unwrap();
    assert_eq!(entries.ids.len(), 1, "the refused requests wrote nothing");
    assert_eq!(entries.ids[0].get::<String>("n").as_deref(), Some("2"));
    token.cancel();
    processor.wait().await.unwrap();
}
