//! The off-request-path half of capturing: the facts kept for a mapped
//! request ([`CapturedRequest`]) and how the dispatcher turns them into an
//! [`Activity`] (id, strings, client IP, session, JSON), with the little it
//! needs from the config ([`ClientResolver`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use http::{HeaderValue, StatusCode, Uri};
use serde_json::{Map, Value};

use super::client_ip::{ForwardedHeaders, HeaderValues, TrustedProxies};
use super::routes::Route;
use super::session;
use super::{ActivityEnrichment, ActivityUser};
use crate::IpTruncation;
use crate::{Activity, limits, truncate_chars};

/// Which client facts to believe: the trusted proxies (for the client IP)
/// and the session cookie's name. A copy of the config's, given to the
/// dispatcher when it is made.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientResolver {
    /// Peers whose proxy headers are believed.
    pub(super) trusted: TrustedProxies,
    /// The cookie holding the session id, if one is configured.
    pub(super) session_cookie: Option<Arc<str>>,
    /// The client address cut to its network before it is kept, if set.
    pub(super) ip_truncation: Option<IpTruncation>,
}

/// Cheap facts gathered on the request path, made into an [`Activity`] by
/// the dispatcher with [`CapturedRequest::into_activity`]. Filled in by
/// the request half (`request.rs`).
#[derive(Debug)]
pub(crate) struct CapturedRequest {
    /// The mapped route (action, pattern, resource parameter).
    pub(super) route: Arc<Route>,
    /// The request URI, kept only when the route names a resource.
    pub(super) uri: Option<Uri>,
    /// When the request started (`created_at`).
    pub(super) started_at: SystemTime,
    /// From the request to the response head.
    pub(super) latency: Duration,
    pub(super) status: StatusCode,
    /// The socket peer.
    pub(super) peer: Option<IpAddr>,
    /// Proxy headers, kept only when the peer is a trusted proxy.
    pub(super) forwarded: Option<ForwardedHeaders>,
    pub(super) user_agent: Option<HeaderValue>,
    /// The `Cookie` header(s), kept only when a session cookie is configured.
    pub(super) session_cookie: HeaderValues,
    /// The session header, when one is configured.
    pub(super) session_header: Option<HeaderValue>,
    pub(super) user: Option<ActivityUser>,
    pub(super) enrichment: Option<ActivityEnrichment>,
}

impl CapturedRequest {
    /// Builds the activity, off the request path (in the dispatcher): the
    /// UUID v7, `created_at`, the strings, the client IP, and `details`
    /// with `method`, `route`, `status` and `latency_ms` over the handler's
    /// own. Whether the request is recorded at all was settled by
    /// `Pending::finish`, which never hands over a skipped one.
    pub(crate) fn into_activity(self, client: &ClientResolver) -> Activity {
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

        activity.ip_address = client
            .trusted
            .resolve(self.peer, self.forwarded.as_ref())
            .map(|ip| client.ip_truncation.map_or(ip, |cut| cut.apply(ip)));
        activity.user_agent = self.user_agent.as_ref().map(session::user_agent);
        activity.session_id = client
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
