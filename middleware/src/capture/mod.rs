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

mod client_ip;
mod extensions;
mod routes;
mod session;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{ConnectInfo, MatchedPath};
use chrono::{DateTime, Utc};
use http::header::{COOKIE, USER_AGENT};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

pub use extensions::{ActivityEnrichment, ActivityUser, PeerAddr};

use self::client_ip::{ForwardedHeaders, HeaderValues, TrustedProxies};
use self::routes::{Route, RouteTable};
use crate::counters::Counters;
use crate::envelope::Envelope;
use crate::{Activity, ActivityType, limits, truncate_chars};

/// Why a [`CaptureConfig`] is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureConfigError {
    /// `matchit` refused the pattern (syntax, or a conflict with another
    /// pattern of the table).
    #[error("invalid route pattern `{pattern}`: {reason}")]
    Pattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The same method and pattern were mapped twice.
    #[error("route {method} {pattern} is mapped twice")]
    Duplicate {
        /// The method.
        method: Method,
        /// The pattern.
        pattern: String,
    },
    /// `resource(...)` came before any `route(...)`.
    #[error("`resource({kind:?}, {param:?})` must follow a `route(...)`")]
    ResourceWithoutRoute {
        /// The resource type given.
        kind: String,
        /// The parameter given.
        param: String,
    },
    /// The last route's pattern has no such path parameter.
    #[error("route pattern `{pattern}` has no path parameter `{param}` for the resource id")]
    NoSuchParam {
        /// The pattern of the last route.
        pattern: String,
        /// The parameter asked for.
        param: String,
    },
    /// A trusted proxy that is neither a CIDR nor an IP address.
    #[error(
        "invalid trusted proxy `{value}` (expected a CIDR such as 10.0.0.0/8 or an IP): {reason}"
    )]
    InvalidProxy {
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A session header name that is not a valid HTTP header name.
    #[error("invalid session header name `{0}`")]
    InvalidHeaderName(String),
    /// An empty session cookie name.
    #[error("the session cookie name is empty")]
    EmptyCookieName,
}

/// How requests map to activities and where client facts come from.
///
/// Builder-style: every method takes and returns the config. Mistakes
/// (a bad pattern, a bad CIDR) are collected and reported by
/// [`CaptureConfig::validate`], which the tracker's `build()` calls, so a
/// chain of calls never needs a `?` in the middle.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    routes: RouteTable,
    trusted: TrustedProxies,
    session_cookie: Option<Arc<str>>,
    session_header: Option<HeaderName>,
    record_errors: bool,
    /// Mistakes made while building, reported by `validate`.
    errors: Vec<CaptureConfigError>,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            routes: RouteTable::default(),
            trusted: TrustedProxies::default(),
            session_cookie: None,
            session_header: None,
            record_errors: true,
            errors: Vec::new(),
        }
    }
}

impl CaptureConfig {
    /// No route mapped, no trusted proxy, no session source, 4xx/5xx
    /// recorded.
    pub fn new() -> Self {
        CaptureConfig::default()
    }

    /// Records `action` for requests with this method whose route matches
    /// `pattern` (axum/matchit syntax: `/api/v1/cases/{id}`,
    /// `/files/{*path}`). Inside an axum `Router` the pattern must be
    /// written as the route is (it is compared with axum's `MatchedPath`).
    /// Methods are matched exactly: a `HEAD` that axum serves with a `GET`
    /// handler is not recorded unless `HEAD` is mapped too.
    pub fn route(mut self, method: Method, pattern: &str, action: ActivityType) -> Self {
        if let Err(error) = self.routes.insert(method, pattern, action) {
            self.errors.push(error);
        }
        self
    }

    /// Names the resource of the route added last: `resource_type` is
    /// `kind` and `resource_id` the value of the path parameter `param`
    /// (percent-decoded).
    pub fn resource(mut self, kind: &str, param: &str) -> Self {
        if let Err(error) = self.routes.resource(kind, param) {
            self.errors.push(error);
        }
        self
    }

    /// Peers whose proxy headers (`Forwarded`, `X-Forwarded-For`,
    /// `X-Real-IP`) are believed: CIDRs (`10.0.0.0/8`, `fd00::/8`) or
    /// single addresses. Adds to the ones given before.
    pub fn trusted_proxies<I>(mut self, proxies: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        for proxy in proxies {
            if let Err(error) = self.trusted.add(proxy.as_ref()) {
                self.errors.push(error);
            }
        }
        self
    }

    /// Reads the session id from this cookie.
    pub fn session_cookie(mut self, name: &str) -> Self {
        if name.trim().is_empty() {
            self.errors.push(CaptureConfigError::EmptyCookieName);
        } else {
            self.session_cookie = Some(Arc::from(name.trim()));
        }
        self
    }

    /// Reads the session id from this header (when no session cookie is
    /// configured or the request has none).
    pub fn session_header(mut self, name: &str) -> Self {
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(header) => self.session_header = Some(header),
            Err(_) => self
                .errors
                .push(CaptureConfigError::InvalidHeaderName(name.to_owned())),
        }
        self
    }

    /// Whether responses with a 4xx or 5xx status are recorded (default:
    /// yes; the `status` detail says what happened). When not, they are
    /// skipped even if the handler attached an [`ActivityEnrichment`].
    pub fn record_errors(mut self, record: bool) -> Self {
        self.record_errors = record;
        self
    }

    /// The first mistake made while building this config, if any.
    pub fn validate(&self) -> Result<(), CaptureConfigError> {
        match self.errors.first() {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    /// Whether no route is mapped (the layer then records nothing).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// What the layer needs at run time: the config, the channel to the
/// dispatcher and the counters. Made by the tracker, shared by every
/// clone of the layer and its services behind one `Arc`.
#[derive(Debug)]
pub(crate) struct CaptureContext {
    /// The validated config, shared with the dispatcher (which calls
    /// [`CapturedRequest::into_activity`] with it).
    pub(crate) config: Arc<CaptureConfig>,
    /// The dispatcher's bounded channel; only `try_send` is used on it.
    pub(crate) sender: mpsc::Sender<Envelope>,
    /// Bumped on every offer: `captured`, `dropped_full`, `dropped_closed`.
    pub(crate) counters: Arc<Counters>,
}

impl CaptureContext {
    /// Checks the config and puts the pieces together.
    pub(crate) fn new(
        config: Arc<CaptureConfig>,
        sender: mpsc::Sender<Envelope>,
        counters: Arc<Counters>,
    ) -> Result<Self, CaptureConfigError> {
        config.validate()?;
        Ok(CaptureContext {
            config,
            sender,
            counters,
        })
    }

    /// The request-path half of capturing: nothing beyond the route lookup
    /// for unmapped requests; for mapped ones, cheap facts only.
    pub(crate) fn begin<B>(
        self: &Arc<Self>,
        request: &Request<B>,
        layer_peer: Option<SocketAddr>,
    ) -> Option<Pending> {
        let config = &*self.config;
        let matched = request
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str);
        let route = config
            .routes
            .lookup(request.method(), matched, request.uri().path())?;
        let started_at = SystemTime::now();
        let start = Instant::now();
        let extensions = request.extensions();
        let headers = request.headers();
        let peer = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0)
            .or_else(|| extensions.get::<PeerAddr>().map(|peer| peer.0))
            .or_else(|| {
                extensions
                    .get::<MockConnectInfo<SocketAddr>>()
                    .map(|info| info.0)
            })
            .or(layer_peer)
            .map(|addr| addr.ip());
        let forwarded = match peer {
            Some(ip) if !config.trusted.is_empty() && config.trusted.contains(ip) => {
                ForwardedHeaders::from_map(headers)
            }
            _ => None,
        };
        let session_cookie = match config.session_cookie {
            Some(_) => HeaderValues::from_map(headers, &COOKIE),
            None => HeaderValues::None,
        };
        let session_header = config
            .session_header
            .as_ref()
            .and_then(|name| headers.get(name).cloned());
        Some(Pending {
            captured: CapturedRequest {
                route: route.clone(),
                uri: route.resource.is_some().then(|| request.uri().clone()),
                started_at,
                latency: Duration::ZERO,
                status: StatusCode::OK,
                peer,
                forwarded,
                user_agent: headers.get(USER_AGENT).cloned(),
                session_cookie,
                session_header,
                user: extensions.get::<ActivityUser>().cloned(),
                enrichment: None,
            },
            start,
            context: self.clone(),
        })
    }
}

/// A mapped request whose response has not come yet.
#[derive(Debug)]
pub(crate) struct Pending {
    captured: CapturedRequest,
    start: Instant,
    context: Arc<CaptureContext>,
}

impl Pending {
    /// The response half: status, the handler's enrichment (taken out of
    /// the response), latency; then one `try_send`, never waiting.
    pub(crate) fn finish<B>(mut self, response: &mut Response<B>) {
        let status = response.status();
        let enrichment = response.extensions_mut().remove::<ActivityEnrichment>();
        if enrichment.as_ref().is_some_and(ActivityEnrichment::is_skip) {
            return;
        }
        if !self.context.config.record_errors
            && (status.is_client_error() || status.is_server_error())
        {
            return;
        }
        self.captured.status = status;
        self.captured.latency = self.start.elapsed();
        self.captured.enrichment = enrichment;
        let envelope = Envelope::Captured(Box::new(self.captured));
        self.context
            .counters
            .record_offer(self.context.sender.try_send(envelope));
    }
}

/// Cheap facts gathered on the request path, made into an [`Activity`] by
/// the dispatcher with [`CapturedRequest::into_activity`].
#[derive(Debug)]
pub(crate) struct CapturedRequest {
    /// The mapped route (action, pattern, resource parameter).
    route: Arc<Route>,
    /// The request URI, kept only when the route names a resource.
    uri: Option<Uri>,
    /// When the request started (`created_at`).
    started_at: SystemTime,
    /// From the request to the response head.
    latency: Duration,
    status: StatusCode,
    /// The socket peer.
    peer: Option<IpAddr>,
    /// Proxy headers, kept only when the peer is a trusted proxy.
    forwarded: Option<ForwardedHeaders>,
    user_agent: Option<HeaderValue>,
    /// The `Cookie` header(s), kept only when a session cookie is configured.
    session_cookie: HeaderValues,
    /// The session header, when one is configured.
    session_header: Option<HeaderValue>,
    user: Option<ActivityUser>,
    enrichment: Option<ActivityEnrichment>,
}

impl CapturedRequest {
    /// Builds the activity, off the request path (in the dispatcher): the
    /// UUID v7, `created_at`, the strings, the client IP, and `details`
    /// with `method`, `route`, `status` and `latency_ms` over the handler's
    /// own. Whether the request is recorded at all was settled by
    /// [`Pending::finish`], which never sends a skipped one.
    pub(crate) fn into_activity(self, config: &CaptureConfig) -> Activity {
        let enrichment = self.enrichment.unwrap_or_default();
        let route = &*self.route;
        let action = enrichment.action.unwrap_or_else(|| route.action.clone());
        let created_at: DateTime<Utc> = self.started_at.into();
        let mut activity = Activity::at(action, created_at);

        activity.user_id = enrichment
            .user_id
            .or_else(|| self.user.map(|user| user.0.to_string()));

        let path_id = || {
            self.uri
                .as_ref()
                .and_then(|uri| route.resource_id(uri.path()))
        };
        activity.resource_id = enrichment.resource_id.or_else(path_id);
        activity.resource_type = enrichment.resource_type.or_else(|| {
            route
                .resource
                .as_ref()
                .map(|spec| spec.kind.to_string())
                .filter(|_| activity.resource_id.is_some())
        });

        // Only a handler's details can be too big; then they give way to a
        // marker, and the layer's own facts are kept.
        let mut details = match enrichment.details {
            Some(handler) => bounded_details(handler),
            None => Map::new(),
        };
        details.insert("method".into(), Value::from(route.method.as_str()));
        details.insert("route".into(), Value::from(&*route.pattern));
        details.insert("status".into(), Value::from(self.status.as_u16()));
        details.insert("latency_ms".into(), latency_ms(self.latency));
        activity.details = Some(details);

        activity.ip_address = config.trusted.resolve(self.peer, self.forwarded.as_ref());
        activity.user_agent = self.user_agent.as_ref().map(session::user_agent);
        activity.session_id = config
            .session_cookie
            .as_ref()
            .and_then(|name| session::session_from_cookies(&self.session_cookie, name))
            .or_else(|| {
                self.session_header
                    .as_ref()
                    .and_then(session::session_from_header)
            });
        // User agent and session id are bounded already.
        for (field, max) in [
            (&mut activity.user_id, limits::USER_ID_MAX_CHARS),
            (&mut activity.resource_type, limits::RESOURCE_TYPE_MAX_CHARS),
            (&mut activity.resource_id, limits::RESOURCE_ID_MAX_CHARS),
        ] {
            if let Some(text) = field {
                truncate_chars(text, max);
            }
        }
        activity
    }
}

/// A handler's details, or `{"truncated": true, "original_bytes": N}` when
/// they would not leave room for the layer's keys within the 16 KiB limit.
fn bounded_details(details: Map<String, Value>) -> Map<String, Value> {
    /// Room kept for `method`, `route`, `status` and `latency_ms`.
    const LAYER_KEYS_ROOM: usize = 1024;
    let bytes = serde_json::to_vec(&details).map_or(usize::MAX, |json| json.len());
    if bytes <= limits::DETAILS_MAX_BYTES - LAYER_KEYS_ROOM {
        return details;
    }
    let mut marker = Map::new();
    marker.insert("truncated".into(), Value::Bool(true));
    marker.insert("original_bytes".into(), Value::from(bytes));
    marker
}

/// Milliseconds with microsecond precision (`1.234`).
fn latency_ms(latency: Duration) -> Value {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    Value::from(micros as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use chrono::SubsecRound;

    use super::*;

    struct Harness {
        context: Arc<CaptureContext>,
        receiver: mpsc::Receiver<Envelope>,
    }

    impl Harness {
        fn new(config: CaptureConfig) -> Self {
            let (sender, receiver) = mpsc::channel(16);
            let context =
                CaptureContext::new(Arc::new(config), sender, Arc::new(Counters::default()))
                    .unwrap();
            Harness {
                context: Arc::new(context),
                receiver,
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
            if let Some(pending) = self.context.begin(&request, peer) {
                pending.finish(&mut response);
            }
            match self.receiver.try_recv().ok()? {
                Envelope::Captured(captured) => Some(captured.into_activity(&self.context.config)),
                Envelope::Activity(activity) => Some(*activity),
            }
        }
    }

    fn config() -> CaptureConfig {
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
    fn unmapped_requests_capture_nothing() {
        let harness = Harness::new(config());
        let request = Request::get("/cases").body(()).unwrap();
        assert!(harness.context.begin(&request, None).is_none());
        let request = Request::delete("/cases/1").body(()).unwrap();
        assert!(harness.context.begin(&request, None).is_none());
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

    #[test]
    fn config_mistakes_are_clear_errors() {
        let error = CaptureConfig::new()
            .trusted_proxies(["10.0.0.0/8", "10.0.0.0/40"])
            .validate()
            .unwrap_err();
        assert!(matches!(error, CaptureConfigError::InvalidProxy { .. }));
        assert!(error.to_string().contains("10.0.0.0/40"), "{error}");

        let error = CaptureConfig::new()
            .session_header("bad header")
            .validate()
            .unwrap_err();
        assert_eq!(
            error,
            CaptureConfigError::InvalidHeaderName("bad header".into())
        );
        assert!(matches!(
            CaptureConfig::new().session_cookie(" ").validate(),
            Err(CaptureConfigError::EmptyCookieName)
        ));
        assert!(matches!(
            CaptureConfig::new()
                .route(Method::GET, "/a/{", ActivityType::Login)
                .validate(),
            Err(CaptureConfigError::Pattern { .. })
        ));
        let (sender, _receiver) = mpsc::channel(1);
        assert!(
            CaptureContext::new(
                Arc::new(CaptureConfig::new().resource("case", "id")),
                sender,
                Arc::new(Counters::default()),
            )
            .is_err()
        );
        assert!(config().validate().is_ok());
        assert!(CaptureConfig::default().is_empty());
    }
}
