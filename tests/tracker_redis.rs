//! The tracker against a real Redis: requests through an axum app become
//! stream entries with the right facts, responses are untouched, and an
//! unreachable or restarted Redis never fails or blocks a request.
//!
//! Each test writes to its own stream key and deletes it at the end.

use std::net::SocketAddr;
use std::time::Duration;

use activity_tracker::{
    Activity, ActivityEnrichment, ActivityTracker, ActivityTrackerBuilder, ActivityType,
    ActivityUser, CaseAction, DocumentAction, PaymentAction, StreamFormat, WithdrawalAction,
};
use activity_tracking::harness::{PrivateRedis, stream_activities, stream_events, wait_until};
use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{Path, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use redis::AsyncCommands;
use serde_json::json;
use tower::ServiceExt;

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn unique_key(test: &str) -> String {
    format!("test:tracker:{test}:{}", uuid::Uuid::now_v7())
}

async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("valid redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis reachable")
}

/// The activities in the stream, in stream order.
async fn read_stream(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<Activity> {
    stream_activities(conn, key).await
}

/// The events in the stream (a version 2 entry holds several).
async fn events(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> u64 {
    stream_events(conn, key).await.expect("XRANGE")
}

/// The events in the stream, or `None` while Redis cannot answer (a
/// restarted server answers `LOADING` while it reads its append-only file
/// back).
async fn try_events(mut conn: redis::aio::MultiplexedConnection, key: String) -> Option<u64> {
    stream_events(&mut conn, &key).await
}

fn builder(url: &str, key: &str) -> ActivityTrackerBuilder {
    ActivityTracker::builder()
        .redis_url(url)
        .stream_key(key)
        .route(Method::POST, "/api/v1/auth/login", ActivityType::Login)
        .route(Method::POST, "/api/v1/cases", ActivityType::CaseCreate)
        .route(Method::GET, "/api/v1/cases/{id}", ActivityType::CaseView)
        .resource("case", "id")
        .session_cookie("session_id")
}

/// Fake authentication: `Authorization: Bearer user:<id>`.
async fn fake_auth(mut request: Request, next: Next) -> Response {
    let user = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer user:"))
        .map(ActivityUser::from);
    if let Some(user) = user {
        request.extensions_mut().insert(user);
    }
    next.run(request).await
}

fn routes() -> Router {
    Router::new()
        .route(
            "/api/v1/auth/login",
            post(|| async {
                (
                    ActivityEnrichment::new().user_id("u-login"),
                    axum::Json(json!({"token": "user:u-login"})),
                )
            }),
        )
        .route(
            "/api/v1/cases",
            post(|| async { (StatusCode::CREATED, "created") }),
        )
        .route(
            "/api/v1/cases/{id}",
            get(|Path(id): Path<String>| async move {
                ([("x-case", id.clone())], axum::Json(json!({"id": id})))
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
}

fn tracked(tracker: &ActivityTracker) -> Router {
    routes()
        .layer(tracker.layer())
        .layer(middleware::from_fn(fake_auth))
}

/// Sends one HTTP/1 request over a fresh connection.
async fn http_send(
    addr: SocketAddr,
    request: http::Request<Body>,
) -> (StatusCode, axum::body::Bytes) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let response = sender.send_request(request).await.expect("response");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_requests_make_exactly_n_entries_with_the_request_facts() {
    let key = unique_key("n-requests");
    let tracker = builder(&redis_url(), &key).build().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = tracked(&tracker);
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    let n = 30;
    for i in 0..n {
        let request = match i % 3 {
            0 => http::Request::post("/api/v1/auth/login"),
            1 => http::Request::get(format!("/api/v1/cases/case-{i}"))
                .header("authorization", format!("Bearer user:u-{i}")),
            _ => http::Request::get("/healthz"), // unmapped: not recorded
        }
        .header("host", "localhost")
        .header("user-agent", format!("agent-{i}"))
        .header("cookie", format!("theme=dark; session_id=s-{i}"))
        .body(Body::empty())
        .unwrap();
        let (status, _) = http_send(addr, request).await;
        assert_eq!(status, StatusCode::OK);
    }
    let summary = tracker.shutdown().await;
    server.abort();

    let mut conn = redis_conn(&redis_url()).await;
    let recorded = 2 * n / 3;
    assert_eq!(events(&mut conn, &key).await, recorded as u64);
    assert_eq!((summary.sent, summary.unsent), (recorded as u64, 0));
    let activities = read_stream(&mut conn, &key).await;
    let mut logins = 0;
    let mut views = 0;
    for activity in &activities {
        let i: usize = activity.user_agent.as_deref().unwrap()["agent-".len()..]
            .parse()
            .unwrap();
        assert_eq!(activity.session_id.as_deref(), Some(&*format!("s-{i}")));
        assert_eq!(activity.ip_address, Some("127.0.0.1".parse().unwrap()));
        let details = activity.details.as_ref().unwrap();
        assert_eq!(details["status"], 200);
        match i % 3 {
            0 => {
                logins += 1;
                assert_eq!(activity.action, ActivityType::Login);
                assert_eq!(activity.user_id.as_deref(), Some("u-login"));
                assert_eq!(activity.resource_id, None);
                assert_eq!(details["route"], "/api/v1/auth/login");
            }
            1 => {
                views += 1;
                assert_eq!(activity.action, ActivityType::CaseView);
                assert_eq!(activity.user_id.as_deref(), Some(&*format!("u-{i}")));
                assert_eq!(activity.resource_type.as_deref(), Some("case"));
                assert_eq!(activity.resource_id.as_deref(), Some(&*format!("case-{i}")));
                assert_eq!(details["method"], "GET");
                assert_eq!(details["route"], "/api/v1/cases/{id}");
            }
            _ => panic!("an unmapped request was recorded: {activity:?}"),
        }
    }
    assert_eq!((logins, views), (n / 3, n / 3));
    let _: () = conn.del(&key).await.unwrap();
}

#[tokio::test]
async fn responses_are_the_same_byte_for_byte_with_and_without_the_layer() {
    let key = unique_key("unchanged");
    let tracker = builder(&redis_url(), &key).build().await.unwrap();
    let peer = MockConnectInfo(SocketAddr::from(([192, 0, 2, 1], 4321)));
    let bare = routes().layer(middleware::from_fn(fake_auth)).layer(peer);
    let with_layer = tracked(&tracker).layer(peer);
    let requests = || {
        vec![
            http::Request::post("/api/v1/auth/login").body(Body::empty()),
            http::Request::post("/api/v1/cases").body(Body::from("{}")),
            http::Request::get("/api/v1/cases/c%2F1?x=1")
                .header("authorization", "Bearer user:7")
                .body(Body::empty()),
            http::Request::get("/healthz").body(Body::empty()),
            http::Request::get("/nowhere").body(Body::empty()),
            http::Request::delete("/api/v1/cases/c1").body(Body::empty()),
        ]
    };
    for (a, b) in requests().into_iter().zip(requests()) {
        let a = bare.clone().oneshot(a.unwrap()).await.unwrap();
        let b = with_layer.clone().oneshot(b.unwrap()).await.unwrap();
        assert_eq!(a.status(), b.status());
        assert_eq!(a.version(), b.version());
        assert_eq!(a.headers(), b.headers());
        let a = a.into_body().collect().await.unwrap().to_bytes();
        let b = b.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(a, b);
    }
    let summary = tracker.shutdown().await;
    // login, create, view (200), and the 405 on a mapped path is not mapped.
    assert_eq!((summary.sent, summary.unsent), (3, 0));
    let mut conn = redis_conn(&redis_url()).await;
    let _: () = conn.del(&key).await.unwrap();
}

#[tokio::test]
async fn unreachable_redis_never_fails_a_request_and_is_counted() {
    let tracker = builder("redis://127.0.0.1:1", &unique_key("unreachable"))
        .connect_timeout(Duration::from_millis(100))
        .retry_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .shutdown_timeout(Duration::from_millis(200))
        .build()
        .await
        .expect("an unreachable redis does not fail the build");
    let app = tracked(&tracker).layer(MockConnectInfo(SocketAddr::from(([10, 1, 2, 3], 1))));
    for i in 0..10 {
        let request = http::Request::get(format!("/api/v1/cases/{i}"))
            .body(Body::empty())
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(1), app.clone().oneshot(request))
            .await
            .expect("a request never waits on redis")
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    wait_until("send errors counted", Duration::from_secs(5), || async {
        (tracker.counters().send_errors >= 2).then_some(())
    })
    .await
    .unwrap();
    let counters = tracker.counters();
    assert_eq!((counters.captured, counters.sent), (10, 0));
    assert!(counters.retries >= 1, "{counters:?}");
    let summary = tracker.shutdown().await;
    assert_eq!((summary.sent, summary.unsent), (0, 10));
    assert_eq!(tracker.counters().dropped_shutdown, 10);
}

#[tokio::test]
async fn a_full_channel_drops_and_counts_and_never_blocks() {
    let tracker = builder("redis://127.0.0.1:1", &unique_key("full"))
        .channel_capacity(1)
        .connect_timeout(Duration::from_millis(100))
        .shutdown_timeout(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    let app = tracked(&tracker).layer(MockConnectInfo(SocketAddr::from(([10, 1, 2, 3], 1))));
    let n = 50;
    // All in one poll, within microseconds: the dispatcher (on its own
    // thread) takes the first event, then lingers 5 ms without reading the
    // channel, so the channel of one fills at once.
    let responses = tokio::time::timeout(
        Duration::from_secs(1),
        futures_join_all((0..n).map(|i| {
            let request = http::Request::post("/api/v1/cases")
                .header("user-agent", format!("burst-{i}"))
                .body(Body::empty())
                .unwrap();
            app.clone().oneshot(request)
        })),
    )
    .await
    .expect("a full channel never blocks a request");
    assert!(
        responses
            .iter()
            .all(|r| r.as_ref().unwrap().status() == StatusCode::CREATED)
    );
    let counters = tracker.counters();
    assert_eq!(counters.captured + counters.dropped_full, n);
    assert!(counters.dropped_full >= 1, "{counters:?}");
    tracker.shutdown().await;
}

/// `join_all` without another dependency: polls every future in turn.
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (future, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}

#[tokio::test]
async fn manual_helpers_land_in_the_stream() {
    let key = unique_key("manual");
    let tracker = ActivityTracker::builder()
        .redis_url(redis_url())
        .stream_key(&key)
        .build()
        .await
        .unwrap();
    let ip = Some("192.168.1.100".parse().unwrap());
    assert!(tracker.track_login("user-123", ip, Some("Mozilla/5.0")));
    assert!(tracker.track_logout("user-123", ip));
    assert!(tracker.track_case_action(
        "user-123",
        CaseAction::Create,
        "case-456",
        Some(json!({"case_amount": 50000.0})),
        ip,
    ));
    assert!(tracker.track_payment("user-123", PaymentAction::Failed, "pay-1", None, None));
    assert!(tracker.track_document_action("user-123", DocumentAction::Approve, "doc-9", None, ip));
    assert!(tracker.track_withdrawal(
        "user-123",
        WithdrawalAction::Request,
        "wd-1",
        Some(json!({"amount": 10})),
        ip
    ));
    assert!(tracker.track_config_update("admin-1", "max_cases", Some(json!({"to": 5})), ip));
    assert!(tracker.track_profile_update("user-123", Some(json!({"field": "email"})), ip));
    assert!(tracker.track_password_change("user-123", ip));
    let custom = ActivityType::custom("export_report").unwrap();
    assert!(tracker.track(Activity::new(custom).user_id("user-123")));
    let summary = tracker.shutdown().await;
    assert_eq!((summary.sent, summary.unsent), (10, 0));

    let mut conn = redis_conn(&redis_url()).await;
    let activities = read_stream(&mut conn, &key).await;
    let seen: Vec<(&str, Option<&str>, Option<&str>)> = activities
        .iter()
        .map(|a| {
            (
                a.action.as_str(),
                a.resource_type.as_deref(),
                a.resource_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("login", None, None),
            ("logout", None, None),
            ("case_create", Some("case"), Some("case-456")),
            ("payment_failed", Some("payment"), Some("pay-1")),
            ("document_approve", Some("document"), Some("doc-9")),
            ("withdrawal_request", Some("withdrawal"), Some("wd-1")),
            ("config_update", Some("config"), Some("max_cases")),
            ("profile_update", None, None),
            ("password_change", None, None),
            ("export_report", None, None),
        ]
    );
    let login = &activities[0];
    assert_eq!(login.user_agent.as_deref(), Some("Mozilla/5.0"));
    assert_eq!(login.ip_address, ip);
    assert_eq!(
        activities[2].details.as_ref().unwrap()["case_amount"],
        50000.0
    );
    assert_eq!(activities[6].user_id.as_deref(), Some("admin-1"));
    let _: () = conn.del(&key).await.unwrap();
}

/// What `capped` found in the stream.
struct Capped {
    /// Entries in the stream.
    entries: u64,
    /// The resource ids of the events kept.
    kept: Vec<u32>,
    /// Each entry's `codec` field, if it has one.
    codecs: Vec<Option<String>>,
}

/// Tracks 5,000 events into a stream capped at 1,000 events, written in
/// `format`, and reads back what is kept.
async fn capped(key: &str, format: StreamFormat) -> Capped {
    let tracker = ActivityTracker::builder()
        .redis_url(redis_url())
        .stream_key(key)
        .stream_max_len(1000)
        .stream_format(format)
        .build()
        .await
        .unwrap();
    for i in 0..5000 {
        assert!(
            tracker.track(Activity::new(ActivityType::CaseView).resource("case", i.to_string()))
        );
    }
    let summary = tracker.shutdown().await;
    assert_eq!((summary.sent, summary.unsent), (5000, 0));
    let mut conn = redis_conn(&redis_url()).await;
    let entries: u64 = conn.xlen(key).await.unwrap();
    let kept: Vec<u32> = read_stream(&mut conn, key)
        .await
        .iter()
        .map(|a| a.resource_id.as_deref().unwrap().parse().unwrap())
        .collect();
    let raw: redis::streams::StreamRangeReply = conn.xrange_all(key).await.unwrap();
    let codecs = raw.ids.iter().map(|entry| entry.get("codec")).collect();
    let _: () = conn.del(key).await.unwrap();
    // Two batches of up to 1,024 may be in flight at once, and the one that
    // lands last is the newest in the stream, whatever events it holds: an
    // event of the last two batches is kept, the oldest are gone.
    assert!(kept.iter().any(|&i| i >= 5000 - 2 * 1024), "{kept:?}");
    assert!(kept.iter().all(|&i| i >= 1000), "an old event was kept");
    Capped {
        entries,
        kept,
        codecs,
    }
}

#[tokio::test]
async fn the_stream_is_capped_at_about_its_max_len_oldest_first() {
    // Version 1: `MAXLEN ~` trims whole nodes of the stream (100 entries
    // by default): never below the cap, a little above it at most.
    let capped = capped(&unique_key("cap-v1"), StreamFormat::V1).await;
    assert_eq!(capped.entries as usize, capped.kept.len());
    assert!(
        (1000..1500).contains(&capped.kept.len()),
        "{} events",
        capped.kept.len()
    );
}

#[tokio::test]
async fn the_cap_counts_events_when_an_entry_holds_many() {
    // Version 2, plain and LZ4-compressed (each `events` one frame, read
    // back through the codec by the harness): batches of up to 1,024
    // events an entry; the trim keeps the newest entries that hold the
    // cap: never below it, and less than one entry above it.
    for (format, codec) in [(StreamFormat::V2, None), (StreamFormat::V2Lz4, Some("lz4"))] {
        let capped = capped(&unique_key("cap-v2"), format).await;
        assert!(capped.entries < 5, "{format:?}: {} entries", capped.entries);
        assert!(
            (1000..1000 + 1024).contains(&capped.kept.len()),
            "{format:?}: {} events",
            capped.kept.len()
        );
        assert!(
            capped.codecs.iter().all(|c| c.as_deref() == codec),
            "{format:?}: {:?}",
            capped.codecs
        );
    }
}

#[tokio::test]
async fn tower_https_request_id_is_recorded_in_details() {
    use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

    let key = unique_key("request-id");
    let tracker = builder(&redis_url(), &key)
        .linger(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    // SetRequestId outside the tracker's layer, as an app stacks them.
    let app = tracked(&tracker)
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid));
    let made = app
        .clone()
        .oneshot(
            http::Request::get("/api/v1/cases/c-1")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let made_id = made.headers()["x-request-id"].to_str().unwrap().to_owned();
    let sent = app
        .oneshot(
            http::Request::get("/api/v1/cases/c-2")
                .header("x-request-id", "from-the-edge-42")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(sent.headers()["x-request-id"], "from-the-edge-42");
    let mut conn = redis_conn(&redis_url()).await;
    wait_until("two entries", Duration::from_secs(10), || {
        let mut conn = conn.clone();
        let key = key.clone();
        async move { (stream_events(&mut conn, &key).await == Some(2)).then_some(()) }
    })
    .await
    .unwrap();
    let recorded: Vec<(String, String)> = read_stream(&mut conn, &key)
        .await
        .into_iter()
        .map(|activity| {
            let details = activity.details.unwrap();
            (
                activity.resource_id.unwrap(),
                details["request_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        recorded,
        [
            ("c-1".to_owned(), made_id),
            ("c-2".to_owned(), "from-the-edge-42".to_owned())
        ]
    );
    tracker.shutdown().await;
    let _: () = conn.del(&key).await.unwrap();
}

#[tokio::test]
async fn shutdown_flushes_what_is_buffered() {
    let key = unique_key("flush");
    let tracker = ActivityTracker::builder()
        .redis_url(redis_url())
        .stream_key(&key)
        .max_batch(5000)
        // Longer than the test: the dispatcher, on its own thread, holds
        // the partial batch until the shutdown flushes it.
        .linger(Duration::from_secs(600))
        .build()
        .await
        .unwrap();
    for i in 0..2000 {
        assert!(
            tracker.track(Activity::new(ActivityType::CaseView).resource("case", i.to_string()))
        );
    }
    let summary = tracker.shutdown().await;
    assert_eq!(
        (summary.sent, summary.flushed, summary.unsent),
        (2000, 2000, 0)
    );
    assert!(!summary.timed_out);
    let mut conn = redis_conn(&redis_url()).await;
    assert_eq!(events(&mut conn, &key).await, 2000);
    let _: () = conn.del(&key).await.unwrap();
}

#[tokio::test]
async fn events_held_while_redis_is_down_arrive_when_it_is_back() {
    let mut redis = PrivateRedis::start().unwrap();
    let key = unique_key("restart");
    let tracker = ActivityTracker::builder()
        .redis_url(redis.url())
        .stream_key(&key)
        .connect_timeout(Duration::from_millis(200))
        .retry_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let conn = redis_conn(&redis.url()).await;
    for _ in 0..5 {
        tracker.track_logout("before", None);
    }
    wait_until("first entries", Duration::from_secs(5), || {
        let (conn, key) = (conn.clone(), key.clone());
        async move { (try_events(conn, key).await == Some(5)).then_some(()) }
    })
    .await
    .unwrap();

    redis.kill().unwrap();
    for _ in 0..7 {
        assert!(tracker.track_logout("during", None));
    }
    wait_until("a failed write", Duration::from_secs(5), || async {
        (tracker.counters().send_errors >= 1).then_some(())
    })
    .await
    .unwrap();
    redis.start_again().unwrap();

    let mut conn = redis_conn(&redis.url()).await;
    wait_until("held entries", Duration::from_secs(10), || {
        let (conn, key) = (conn.clone(), key.clone());
        async move { (try_events(conn, key).await >= Some(12)).then_some(()) }
    })
    .await
    .unwrap();
    let summary = tracker.shutdown().await;
    assert_eq!((summary.sent, summary.unsent), (12, 0));
    let users: Vec<String> = read_stream(&mut conn, &key)
        .await
        .into_iter()
        .map(|a| a.user_id.unwrap())
        .collect();
    assert_eq!(users.iter().filter(|u| *u == "during").count(), 7);
    assert_eq!(users.len(), 12);
}

#[tokio::test]
async fn a_connection_broken_by_a_quick_restart_fails_no_write() {
    // A connection that wrote a moment ago is taken without a `PING`; when
    // Redis restarted meanwhile, the write fails at once on it, and is
    // made again on a new connection: no error, no retry, no event lost.
    let mut redis = PrivateRedis::start().unwrap();
    let key = unique_key("quick_restart");
    let tracker = ActivityTracker::builder()
        .redis_url(redis.url())
        .stream_key(&key)
        .pool_size(1)
        .build()
        .await
        .unwrap();
    tracker.track_logout("before", None);
    wait_until("the first write", Duration::from_secs(5), || async {
        (tracker.counters().sent == 1).then_some(())
    })
    .await
    .unwrap();
    redis.kill().unwrap();
    redis.start_again().unwrap();
    tracker.track_logout("after", None);
    wait_until("the second write", Duration::from_secs(5), || async {
        (tracker.counters().sent == 2).then_some(())
    })
    .await
    .unwrap();
    let c = tracker.counters();
    assert_eq!((c.send_errors, c.retries, c.dropped()), (0, 0, 0), "{c:?}");
    let mut conn = redis_conn(&redis.url()).await;
    let users: Vec<String> = read_stream(&mut conn, &key)
        .await
        .into_iter()
        .map(|a| a.user_id.unwrap())
        .collect();
    assert_eq!(users, ["before", "after"]);
    assert_eq!(tracker.shutdown().await.unsent, 0);
}
