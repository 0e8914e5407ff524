//! What the layer captures per request, and how it becomes an [`Activity`].
//!
//! A [`CaptureConfig`] says which requests are recorded (method + route
//! pattern → [`ActivityType`], with an optional resource named by a path
//! parameter), which peers are trusted proxies, where the session id is,
//! and whether 4xx/5xx responses are recorded.
//!
//! ```
//! use activity_tracker::{ActivityType, CaptureConfig};
//! use http::Method;
//!
//! let config = CaptureConfig::new()
//!     .route(Method::POST, "/api/v1/auth/login", ActivityType::Login)
//!     .route(Method::GET, "/api/v1/cases/{id}", ActivityType::CaseView)
//!     .resource("case", "id")
//!     .trusted_proxies(["10.0.0.0/8", "fd00::/8"])
//!     .session_cookie("session_id");
//! assert!(config.validate().is_ok());
//!
//! // Mistakes are reported, not ignored.
//! let bad = CaptureConfig::new().trusted_proxies(["10.0.0.0/33"]);
//! assert!(bad.validate().unwrap_err().to_string().contains("10.0.0.0/33"));
//! ```
//!
//! On the request path the layer only looks the route up and keeps cheap
//! facts (refcounted header values, the socket address, the start time,
//! the [`ActivityUser`]); the dispatcher turns them into an [`Activity`]
//! (id, strings, client IP, JSON) off the request path.
//!
//! One file per job: `config` (what to capture, and its mistakes),
//! `request` (the request-path half), `captured` (the facts kept and the
//! activity made of them, off the request path), and the helpers they
//! share: `routes`, `client_ip`, `session`, `extensions`. Capture knows
//! nothing of the intake or the counters: the layer hands what it
//! captured to the dispatcher.
//!
//! [`Activity`]: crate::Activity
//! [`ActivityType`]: crate::ActivityType

mod captured;
pub(crate) mod client_ip;
mod config;
mod extensions;
mod ids;
mod request;
mod routes;
mod session;

pub use self::client_ip::ClientIpResolver;
pub use self::config::{CaptureConfig, CaptureConfigError};
pub use self::extensions::{ActivityEnrichment, ActivityUser, PeerAddr};

pub(crate) use self::request::Pending;

#[cfg(test)]
mod tests {
    use chrono::{SubsecRound, Utc};
    use http::{Method, Request, Response, StatusCode};

    use super::captured::ClientResolver;
    use super::*;
    use crate::{Activity, ActivityType};

    struct Harness {
        config: CaptureConfig,
        client: ClientResolver,
    }

    impl Harness {
        fn new(config: CaptureConfig) -> Self {
            config.validate().unwrap();
            Harness {
                client: config.client_resolver().clone(),
                config,
            }
        }

        /// Runs one request/response pair through the capture and returns
        /// what the dispatcher would make of it.
        fn run(
            &mut self,
            request: Request<()>,
            peer: Option<&str>,
            response: Response<()>,
        ) -> Option<Activity> {
            let peer = peer.map(|peer| peer.parse().unwrap());
            let mut response = response;
            let captured = self.config.begin(&request, peer)?.finish(&mut response)?;
            Some(captured.read_back(&self.client))
        }
    }

    /// The config the capture tests share (and the config test checks).
    pub(super) fn config() -> CaptureConfig {
        CaptureConfig::new()
            .route(Method::POST, "/login", ActivityType::Login)
            .route(Method::GET, "/cases/{id}", ActivityType::CaseView)
            .resource("case", "id")
            .route(Method::POST, "/cases", ActivityType::CaseCreate)
            .trusted_proxies(["10.0.0.0/8"])
            .session_cookie("sid")
            .session_header("x-session-id")
    }

    fn ok() -> Response<()> {
        Response::new(())
    }

    fn with_status(status: u16) -> Response<()> {
        let mut response = Response::new(());
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        response
    }

    #[test]
    fn activity_carries_the_request_facts_and_layer_details() {
        let mut harness = Harness::new(config());
        let before = Utc::now();
        let request = Request::get("/cases/c-9?tab=notes")
            .header("user-agent", "Agent/1.0")
            .header("cookie", "a=b; sid=s-123")
            .extension(ActivityUser::new("u-7"))
            .body(())
            .unwrap();
        let activity = harness
            .run(request, Some("198.51.100.4:5000"), ok())
            .unwrap();
        assert_eq!(activity.id.get_version_num(), 7);
        assert_eq!(activity.action, ActivityType::CaseView);
        assert_eq!(activity.user_id.as_deref(), Some("u-7"));
        assert_eq!(activity.resource_type.as_deref(), Some("case"));
        assert_eq!(activity.resource_id.as_deref(), Some("c-9"));
        assert_eq!(activity.ip_address, Some("198.51.100.4".parse().unwrap()));
        assert_eq!(activity.user_agent.as_deref(), Some("Agent/1.0"));
        assert_eq!(activity.session_id.as_deref(), Some("s-123"));
        assert!(activity.created_at >= before.trunc_subsecs(6));
        assert!(activity.created_at <= Utc::now());
        let details = activity.details.unwrap();
        assert_eq!(details["method"], "GET");
        assert_eq!(details["route"], "/cases/{id}");
        assert_eq!(details["status"], 200);
        assert!(details["latency_ms"].as_f64().unwrap() >= 0.0);
        assert_eq!(details.len(), 4);
    }

    #[test]
    fn ip_truncation_keeps_the_network_of_each_family() {
        let mut harness = Harness::new(config().ip_truncation(24, 48));
        for (peer, stored) in [
            ("203.0.113.9:1", "203.0.113.0"),
            ("[2001:db8:1:2::7]:1", "2001:db8:1::"),
            ("[::ffff:203.0.113.9]:1", "203.0.113.0"),
        ] {
            let request = Request::post("/login").body(()).unwrap();
            let activity = harness.run(request, Some(peer), ok()).unwrap();
            assert_eq!(activity.ip_address, Some(stored.parse().unwrap()), "{peer}");
        }
        // Behind a trusted proxy, the client's address is the one cut.
        let proxied = Request::post("/login")
            .header("x-forwarded-for", "198.51.100.23")
            .body(())
            .unwrap();
        let activity = harness.run(proxied, Some("10.0.0.1:1"), ok()).unwrap();
        assert_eq!(activity.ip_address, Some("198.51.100.0".parse().unwrap()));
        let error = config().ip_truncation(33, 48).validate().unwrap_err();
        assert!(error.to_string().contains("e.g. 24,48"), "{error}");
    }

    #[test]
    fn unmapped_requests_capture_nothing() {
        let harness = Harness::new(config());
        let request = Request::get("/cases").body(()).unwrap();
        assert!(harness.config.begin(&request, None).is_none());
        let request = Request::delete("/cases/1").body(()).unwrap();
        assert!(harness.config.begin(&request, None).is_none());
    }

    #[test]
    fn proxy_headers_count_only_from_trusted_peers() {
        let mut harness = Harness::new(config());
        let forged = || {
            Request::post("/login")
                .header("x-forwarded-for", "6.6.6.6")
                .header("forwarded", "for=6.6.6.6")
                .body(())
                .unwrap()
        };
        let activity = harness.run(forged(), Some("203.0.113.9:1"), ok()).unwrap();
        assert_eq!(activity.ip_address, Some("203.0.113.9".parse().unwrap()));

        let proxied = Request::post("/login")
            .header("x-forwarded-for", "6.6.6.6, 198.51.100.23")
            .body(())
            .unwrap();
        let activity = harness.run(proxied, Some("10.0.0.2:1"), ok()).unwrap();
        assert_eq!(activity.ip_address, Some("198.51.100.23".parse().unwrap()));

        // No peer known at all: no IP, whatever the headers say.
        let activity = harness.run(forged(), None, ok()).unwrap();
        assert_eq!(activity.ip_address, None);
    }

    #[test]
    fn enrichment_overrides_and_merges() {
        let mut harness = Harness::new(config());
        let request = Request::post("/cases")
            .extension(ActivityUser::new("u-from-auth"))
            .body(())
            .unwrap();
        let mut response = ok();
        response.extensions_mut().insert(
            ActivityEnrichment::new()
                .user_id("u-from-handler")
                .resource("case", "c-new")
                .detail("amount", 5)
                .detail("status", "forged"),
        );
        let activity = harness.run(request, None, response).unwrap();
        assert_eq!(activity.action, ActivityType::CaseCreate);
        assert_eq!(activity.user_id.as_deref(), Some("u-from-handler"));
        assert_eq!(activity.resource_type.as_deref(), Some("case"));
        assert_eq!(activity.resource_id.as_deref(), Some("c-new"));
        let details = activity.details.unwrap();
        assert_eq!(details["amount"], 5);
        assert_eq!(details["status"], 200, "the layer's facts win");

        // A resource id alone keeps the route's resource type.
        let request = Request::get("/cases/c-1").body(()).unwrap();
        let mut response = ok();
        response.extensions_mut().insert(
            ActivityEnrichment::new()
                .resource_id("c-canonical")
                .action(ActivityType::CaseGrab),
        );
        let activity = harness.run(request, None, response).unwrap();
        assert_eq!(activity.action, ActivityType::CaseGrab);
        assert_eq!(activity.resource_type.as_deref(), Some("case"));
        assert_eq!(activity.resource_id.as_deref(), Some("c-canonical"));

        // Skip records nothing.
        let request = Request::get("/cases/c-1").body(()).unwrap();
        let mut response = ok();
        response.extensions_mut().insert(ActivityEnrichment::skip());
        assert!(harness.run(request, None, response).is_none());
    }

    #[test]
    fn the_request_id_is_kept_in_details_in_serde_order() {
        let mut harness = Harness::new(config());
        let with_id = |id: &str| {
            Request::get("/cases/c-1")
                .header("x-request-id", id)
                .body(())
                .unwrap()
        };
        // `details` is the object serde_json would write (sorted keys).
        let line = |request: Request<()>, response: Response<()>, harness: &mut Harness| {
            let mut response = response;
            let captured = harness
                .config
                .begin(&request, None)
                .unwrap()
                .finish(&mut response)
                .unwrap();
            let mut json = Vec::new();
            captured.write_wire_json(uuid::Uuid::nil(), 0, &harness.client, &mut json);
            let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
            let details = format!(",\"details\":{},", value["details"]);
            let line = String::from_utf8(json).unwrap();
            assert!(line.contains(&details), "serde's bytes {details} in {line}");
            value
        };
        let plain = line(with_id("4b2f-req"), ok(), &mut harness);
        assert_eq!(plain["details"]["request_id"], "4b2f-req");
        assert_eq!(plain["details"].as_object().unwrap().len(), 5);

        let mut enriched = ok();
        enriched.extensions_mut().insert(
            ActivityEnrichment::new()
                .detail("request_id", "forged")
                .detail("note", "x"),
        );
        let overridden = line(with_id("4b2f-req"), enriched, &mut harness);
        assert_eq!(
            overridden["details"]["request_id"], "4b2f-req",
            "the layer's wins"
        );
        assert_eq!(overridden["details"]["note"], "x");

        // Without the header, a handler's own `request_id` is kept.
        let mut enriched = ok();
        enriched
            .extensions_mut()
            .insert(ActivityEnrichment::new().detail("request_id", "from-handler"));
        let request = Request::get("/cases/c-1").body(()).unwrap();
        let kept = line(request, enriched, &mut harness);
        assert_eq!(kept["details"]["request_id"], "from-handler");
        let request = Request::get("/cases/c-1").body(()).unwrap();
        let none = line(request, ok(), &mut harness);
        assert!(none["details"].get("request_id").is_none());

        // An overlong id is cut; one that is not text is left out.
        let long = "r".repeat(500);
        let cut = harness.run(with_id(&long), None, ok()).unwrap();
        assert_eq!(
            cut.details.unwrap()["request_id"].as_str().unwrap().len(),
            128
        );
        let request = Request::get("/cases/c-1")
            .header(
                "x-request-id",
                http::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
            )
            .body(())
            .unwrap();
        let binary = harness.run(request, None, ok()).unwrap();
        assert!(binary.details.unwrap().get("request_id").is_none());
    }

    #[test]
    fn errors_are_recorded_unless_configured_not_to() {
        let mut harness = Harness::new(config());
        let failed_login = Request::post("/login").body(()).unwrap();
        let activity = harness.run(failed_login, None, with_status(401)).unwrap();
        assert_eq!(activity.user_id, None);
        assert_eq!(activity.details.unwrap()["status"], 401);

        let mut quiet = Harness::new(config().record_errors(false));
        for status in [400, 404, 500, 503] {
            let request = Request::post("/login").body(()).unwrap();
            assert!(quiet.run(request, None, with_status(status)).is_none());
        }
        let request = Request::post("/login").body(()).unwrap();
        assert!(quiet.run(request, None, with_status(302)).is_some());
    }

    #[test]
    fn session_falls_back_from_cookie_to_header() {
        let mut harness = Harness::new(config());
        let request = Request::post("/login")
            .header("x-session-id", "from-header")
            .body(())
            .unwrap();
        let activity = harness.run(request, None, ok()).unwrap();
        assert_eq!(activity.session_id.as_deref(), Some("from-header"));

        let request = Request::post("/login")
            .header("x-session-id", "from-header")
            .header("cookie", "sid=from-cookie")
            .body(())
            .unwrap();
        let activity = harness.run(request, None, ok()).unwrap();
        assert_eq!(activity.session_id.as_deref(), Some("from-cookie"));

        let request = Request::post("/login").body(()).unwrap();
        let activity = harness.run(request, None, ok()).unwrap();
        assert_eq!(activity.session_id, None);
        assert_eq!(activity.user_agent, None);
    }

    #[test]
    fn activity_fields_stay_within_the_contract() {
        let mut harness = Harness::new(config());
        let long_id = format!("/cases/{}", "é".repeat(300));
        let request = Request::get(&*long_id)
            .header("user-agent", "u".repeat(600))
            .extension(ActivityUser::new("x".repeat(300)))
            .body(())
            .unwrap();
        let activity = harness.run(request, None, ok()).unwrap();
        assert_eq!(activity.resource_id.unwrap().chars().count(), 255);
        assert_eq!(activity.user_id.unwrap().len(), 255);
        assert_eq!(activity.user_agent.unwrap().len(), 500);

        let request = Request::post("/login").body(()).unwrap();
        let mut response = ok();
        response
            .extensions_mut()
            .insert(ActivityEnrichment::new().detail("blob", "b".repeat(20_000)));
        let activity = harness.run(request, None, response).unwrap();
        let details = activity.details.unwrap();
        assert_eq!(details["truncated"], true);
        assert!(details["original_bytes"].as_u64().unwrap() > 20_000);
        assert_eq!(details["route"], "/login", "the layer's facts are kept");
        assert!(details.get("blob").is_none());
    }
}
