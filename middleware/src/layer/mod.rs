//! The tower layer that records each request mapped to an activity.
//!
//! The app tells the layer who the user is with an [`ActivityUser`] request
//! extension (from its auth middleware), and a handler tells it what only
//! the handler knows with an [`ActivityEnrichment`] response extension:
//!
//! ```
//! use activity_tracker::{ActivityEnrichment, ActivityType, ActivityUser};
//! use axum::extract::Request;
//! use axum::middleware::Next;
//! use axum::response::Response;
//!
//! // The app's auth middleware: added after the activity layer (`.layer(activity)
//! // .layer(from_fn(auth))`), so it runs first and the layer sees the user.
//! async fn auth(mut request: Request, next: Next) -> Response {
//!     let user = request
//!         .headers()
//!         .get("authorization")
//!         .and_then(|value| value.to_str().ok())
//!         .and_then(|value| value.strip_prefix("Bearer user:"))
//!         .map(ActivityUser::from);
//!     if let Some(user) = user {
//!         request.extensions_mut().insert(user);
//!     }
//!     next.run(request).await
//! }
//!
//! // Login learns the user id; a failed login stays anonymous.
//! async fn login() -> (ActivityEnrichment, &'static str) {
//!     (ActivityEnrichment::new().user_id("user-42"), "welcome")
//! }
//!
//! // A payment route mapped to `payment_create` that records the outcome.
//! async fn pay() -> (ActivityEnrichment, &'static str) {
//!     let enrichment = ActivityEnrichment::new()
//!         .action(ActivityType::PaymentFailed)
//!         .resource_id("pay-7")
//!         .detail("amount", 120.5);
//!     (enrichment, "declined")
//! }
//!
//! // Health checks are mapped by a wildcard route but not worth keeping.
//! async fn ping() -> (ActivityEnrichment, &'static str) {
//!     (ActivityEnrichment::skip(), "pong")
//! }
//! # let _ = (axum::middleware::from_fn::<_, (Request,)>(auth), login, pay, ping);
//! ```
//!
//! The layer itself comes from the tracker (`tracker.layer()`), which owns
//! the route table ([`CaptureConfig`](crate::CaptureConfig)), the bounded
//! intake and the background task writing to the stream. It goes around an
//! axum `Router` (`.layer(tracker.layer())`, or around the whole router,
//! `tracker.layer().layer(router)`, which spares axum's boxing of each
//! route's layered service: docs/benchmarks.md; serve it with
//! `into_make_service_with_connect_info::<SocketAddr>()` for the client IP)
//! or around any tower service of `http::Request`/`http::Response`, such as
//! a hyper `service_fn` (give it the peer address with
//! [`ActivityLayer::peer_addr`] or a [`PeerAddr`](crate::PeerAddr)
//! request extension).
//!
//! # Cost on the request path
//!
//! Unmapped requests: one route lookup. Mapped requests: the lookup, two
//! clock reads, clones of refcounted header values into a box of the
//! thread's (reused), and when the response is ready the event's id and
//! wire JSON line, written on this thread and copied into the intake's
//! batch under its lock. A request whose future is dropped before its
//! response is ready (client gone), or whose inner service fails, is not
//! recorded.
//!
//! [`ActivityUser`]: crate::ActivityUser
//! [`ActivityEnrichment`]: crate::ActivityEnrichment

mod context;
mod future;
#[allow(clippy::module_inception)]
mod layer;
mod service;

pub(crate) use self::context::CaptureContext;

pub use self::future::ResponseFuture;
pub use self::layer::ActivityLayer;
pub use self::service::ActivityService;

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::Arc;

    use axum::Router;
    use axum::extract::connect_info::MockConnectInfo;
    use axum::routing::{get, post};
    use http::{HeaderValue, Method, Request, Response, StatusCode};
    use http_body_util::{BodyExt, Full};
    use tower::{Service, ServiceBuilder, ServiceExt};

    use super::*;
    use crate::CaptureConfig;
    use crate::counters::Counters;
    use crate::dispatcher::intake::{Intake, Take};
    use crate::{Activity, ActivityEnrichment, ActivityType, ActivityUser, PeerAddr};

    struct Harness {
        layer: ActivityLayer,
        counters: Arc<Counters>,
        intake: Arc<Intake>,
        /// Taken from the intake, not yet looked at.
        taken: std::collections::VecDeque<Activity>,
    }

    impl Harness {
        fn new(config: CaptureConfig, capacity: usize) -> Self {
            config.validate().unwrap();
            let config = Arc::new(config);
            let counters = Arc::new(Counters::default());
            let (sender, intake) = Intake::new(capacity, 1024, std::time::Duration::ZERO);
            let layer = ActivityLayer::new(Arc::new(
                CaptureContext::new(config.clone(), sender, counters.clone()).unwrap(),
            ));
            Harness {
                layer,
                counters,
                intake,
                taken: Default::default(),
            }
        }

        fn next(&mut self) -> Option<Activity> {
            let mut batches = Vec::new();
            let all = Take {
                budget: usize::MAX,
                all: true,
            };
            self.intake
                .take(&mut batches, all, tokio::time::Instant::now());
            for batch in batches {
                let activities = batch
                    .activities()
                    .expect("the layer writes valid wire JSON");
                self.taken.extend(activities);
            }
            self.taken.pop_front()
        }
    }

    fn config() -> CaptureConfig {
        CaptureConfig::new()
            .route(Method::POST, "/api/v1/auth/login", ActivityType::Login)
            .route(Method::GET, "/api/v1/cases/{id}", ActivityType::CaseView)
            .resource("case", "id")
            .route(
                Method::POST,
                "/api/v1/payments",
                ActivityType::PaymentCreate,
            )
            .session_cookie("session_id")
    }

    async fn hello(
        _: Request<Full<bytes::Bytes>>,
    ) -> Result<Response<Full<bytes::Bytes>>, Infallible> {
        let mut response = Response::new(Full::from("hello"));
        response
            .headers_mut()
            .insert("x-app", HeaderValue::from_static("1"));
        Ok(response)
    }

    fn get_request(uri: &str) -> Request<Full<bytes::Bytes>> {
        Request::get(uri).body(Full::default()).unwrap()
    }

    #[tokio::test]
    async fn mapped_request_is_sent_and_response_untouched() {
        let mut harness = Harness::new(config(), 8);
        let mut service = ServiceBuilder::new()
            .layer(
                harness
                    .layer
                    .clone()
                    .peer_addr("192.0.2.10:5555".parse().unwrap()),
            )
            .service_fn(hello);
        let request = Request::get("/api/v1/cases/c-77")
            .header("user-agent", "test-agent")
            .header("cookie", "session_id=s-1")
            .body(Full::default())
            .unwrap();
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-app"], "1");
        assert_eq!(response.headers().len(), 1);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello");

        let activity = harness.next().expect("one activity");
        assert_eq!(activity.action, ActivityType::CaseView);
        assert_eq!(activity.resource_type.as_deref(), Some("case"));
        assert_eq!(activity.resource_id.as_deref(), Some("c-77"));
        assert_eq!(activity.ip_address, Some("192.0.2.10".parse().unwrap()));
        assert_eq!(activity.user_agent.as_deref(), Some("test-agent"));
        assert_eq!(activity.session_id.as_deref(), Some("s-1"));
        assert_eq!(activity.user_id, None);
        assert_eq!(activity.details.as_ref().unwrap()["status"], 200);
        assert!(harness.next().is_none());
        assert_eq!(harness.counters.snapshot().captured, 1);
    }

    #[tokio::test]
    async fn unmapped_requests_pass_through_without_events() {
        let mut harness = Harness::new(config(), 8);
        let mut service = ServiceBuilder::new()
            .layer(harness.layer.clone())
            .service_fn(hello);
        for uri in [
            "/",
            "/api/v1/auth/login",
            "/api/v1/cases",
            "/api/v1/cases/1/x",
        ] {
            let response = service
                .ready()
                .await
                .unwrap()
                .call(get_request(uri))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
        assert!(harness.next().is_none());
        assert_eq!(harness.counters.snapshot().captured, 0);
    }

    #[tokio::test]
    async fn full_intake_drops_and_counts_without_blocking() {
        let harness = Harness::new(config(), 2);
        let mut service = ServiceBuilder::new()
            .layer(harness.layer.clone())
            .service_fn(hello);
        for _ in 0..5 {
            service
                .ready()
                .await
                .unwrap()
                .call(get_request("/api/v1/cases/1"))
                .await
                .unwrap();
        }
        let counters = harness.counters.snapshot();
        assert_eq!(counters.captured, 2);
        assert_eq!(counters.dropped_full, 3);
    }

    #[tokio::test]
    async fn closed_intake_drops_and_counts() {
        let Harness {
            layer,
            counters,
            intake,
            ..
        } = Harness::new(config(), 8);
        intake.close();
        let mut service = ServiceBuilder::new().layer(layer).service_fn(hello);
        let response = service
            .ready()
            .await
            .unwrap()
            .call(get_request("/api/v1/cases/1"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let counters = counters.snapshot();
        assert_eq!(counters.captured, 0);
        assert_eq!(counters.dropped_closed, 1);
    }

    #[tokio::test]
    async fn inner_errors_pass_through_and_are_not_recorded() {
        let mut harness = Harness::new(config(), 8);
        let mut service = ServiceBuilder::new()
            .layer(harness.layer.clone())
            .service_fn(|_: Request<Full<bytes::Bytes>>| async {
                Err::<Response<Full<bytes::Bytes>>, _>("broken")
            });
        let result = service
            .ready()
            .await
            .unwrap()
            .call(get_request("/api/v1/cases/1"))
            .await;
        assert_eq!(result.unwrap_err(), "broken");
        assert!(harness.next().is_none());
    }

    #[tokio::test]
    async fn enrichment_is_applied_and_taken_out_of_the_response() {
        let mut harness = Harness::new(config(), 8);
        let mut service = ServiceBuilder::new()
            .layer(harness.layer.clone())
            .service_fn(|request: Request<Full<bytes::Bytes>>| async move {
                let mut response = Response::new(Full::<bytes::Bytes>::default());
                let enrichment = if request.uri().path() == "/api/v1/payments" {
                    ActivityEnrichment::new()
                        .action(ActivityType::PaymentFailed)
                        .resource("payment", "pay-1")
                        .detail("amount", 12)
                } else {
                    ActivityEnrichment::skip()
                };
                response.extensions_mut().insert(enrichment);
                Ok::<_, Infallible>(response)
            });
        let mut request = Request::post("/api/v1/payments")
            .body(Full::default())
            .unwrap();
        request.extensions_mut().insert(ActivityUser::new("u-1"));
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        assert!(response.extensions().get::<ActivityEnrichment>().is_none());
        let activity = harness.next().unwrap();
        assert_eq!(activity.action, ActivityType::PaymentFailed);
        assert_eq!(activity.user_id.as_deref(), Some("u-1"));
        assert_eq!(activity.resource_id.as_deref(), Some("pay-1"));
        assert_eq!(activity.details.unwrap()["amount"], 12);

        let request = Request::post("/api/v1/auth/login")
            .body(Full::default())
            .unwrap();
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        assert!(response.extensions().get::<ActivityEnrichment>().is_none());
        assert!(harness.next().is_none());
        assert_eq!(harness.counters.snapshot().captured, 1);
    }

    #[tokio::test]
    async fn axum_router_uses_matched_path_connect_info_and_extensions() {
        let mut harness = Harness::new(config(), 8);
        let app = Router::new()
            .route(
                "/api/v1/auth/login",
                post(|| async { (ActivityEnrichment::new().user_id("u-42"), "ok") }),
            )
            .route("/api/v1/cases/{id}", get(|| async { "case" }))
            .route("/health", get(|| async { "up" }))
            .layer(harness.layer.clone())
            .layer(MockConnectInfo(SocketAddr::from(([198, 51, 100, 7], 4000))));

        let response = app
            .clone()
            .oneshot(
                Request::post("/api/v1/auth/login")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
        let login = harness.next().unwrap();
        assert_eq!(login.action, ActivityType::Login);
        assert_eq!(login.user_id.as_deref(), Some("u-42"));
        assert_eq!(login.ip_address, Some("198.51.100.7".parse().unwrap()));
        assert_eq!(login.details.unwrap()["route"], "/api/v1/auth/login");

        let mut request = Request::get("/api/v1/cases/c%2F9")
            .body(axum::body::Body::empty())
            .unwrap();
        request
            .extensions_mut()
            .insert(PeerAddr("203.0.113.1:1".parse().unwrap()));
        app.clone().oneshot(request).await.unwrap();
        let view = harness.next().unwrap();
        assert_eq!(view.resource_id.as_deref(), Some("c/9"));
        assert_eq!(view.ip_address, Some("203.0.113.1".parse().unwrap()));

        for uri in ["/health", "/nowhere"] {
            app.clone()
                .oneshot(Request::get(uri).body(axum::body::Body::empty()).unwrap())
                .await
                .unwrap();
        }
        assert!(harness.next().is_none());
    }

    /// A `std::io::Write` into a shared buffer, for a log subscriber.
    #[derive(Clone, Default)]
    struct LogBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for LogBuffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn requests_without_a_client_address_are_warned_about_once() {
        let log = LogBuffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer({
                let log = log.clone();
                move || log.clone()
            })
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let mut harness = Harness::new(config(), 8);
        // `axum::serve(listener, app)` without connect info: no address.
        let app = Router::new()
            .route("/api/v1/cases/{id}", get(|| async { "case" }))
            .layer(harness.layer.clone());
        let warnings = || {
            String::from_utf8(log.0.lock().unwrap().clone())
                .unwrap()
                .matches("carries no client address")
                .count()
        };

        let mut with_peer = Request::get("/api/v1/cases/c-1")
            .body(axum::body::Body::empty())
            .unwrap();
        with_peer
            .extensions_mut()
            .insert(PeerAddr("203.0.113.1:1".parse().unwrap()));
        app.clone().oneshot(with_peer).await.unwrap();
        assert!(harness.next().unwrap().ip_address.is_some());
        assert_eq!(warnings(), 0);

        for _ in 0..2 {
            let request = Request::get("/api/v1/cases/c-2")
                .body(axum::body::Body::empty())
                .unwrap();
            app.clone().oneshot(request).await.unwrap();
            assert_eq!(harness.next().unwrap().ip_address, None);
        }
        assert_eq!(warnings(), 1, "{:?}", log.0.lock().unwrap());
        assert!(
            String::from_utf8(log.0.lock().unwrap().clone())
                .unwrap()
                .contains("into_make_service_with_connect_info")
        );
    }
}
