//! The off-request-path half of capturing: the facts kept for a mapped
//! request ([`CapturedRequest`]) and how the dispatcher writes them as the
//! event's wire JSON (id, strings, client IP, session, `details`) without
//! making an [`Activity`](crate::Activity), with the little it needs from
//! the config ([`ClientResolver`]).

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, StatusCode, Uri};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::client_ip::{ForwardedHeaders, HeaderValues, TrustedProxies};
use super::routes::Route;
use super::session;
use super::{ActivityEnrichment, ActivityUser};
use crate::IpTruncation;
use crate::activity::prefix_chars;
use crate::activity::wire::{WireDetails, WireFields, WireText, WireTime, write_fields};
use crate::limits;

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

/// Most boxes kept in a thread's [`SPARE_BOXES`].
const MAX_SPARE_BOXES: usize = 64;

thread_local! {
    /// Boxes of captured requests written and emptied, for the next
    /// requests on this thread to fill instead of allocating.
    #[allow(clippy::vec_box, reason = "the boxes themselves are what is reused")]
    static SPARE_BOXES: RefCell<Vec<Box<CapturedRequest>>> = const { RefCell::new(Vec::new()) };
}

/// `facts` in a box: a spare one of this thread's, else a new one.
pub(super) fn boxed(facts: CapturedRequest) -> Box<CapturedRequest> {
    let spare = SPARE_BOXES.with(|spare| spare.try_borrow_mut().ok()?.pop());
    match spare {
        Some(mut spare) => {
            *spare = facts;
            spare
        }
        None => Box::new(facts),
    }
}

/// Cheap facts gathered on the request path, written as an event's wire
/// JSON by the dispatcher with [`CapturedRequest::write_wire_json`].
/// Filled in by the request half (`request.rs`).
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
    /// `x-request-id` (tower-http's `SetRequestId`, or a proxy's), so the
    /// activity can be found in the app's logs.
    pub(super) request_id: Option<HeaderValue>,
    pub(super) user: Option<ActivityUser>,
    pub(super) enrichment: Option<Box<ActivityEnrichment>>,
}

impl CapturedRequest {
    /// Writes the event's wire JSON line to `out` (a fresh id, from the
    /// request's start), then empties the box and keeps it for another
    /// request on this thread.
    pub(crate) fn write_line_and_recycle(
        mut self: Box<Self>,
        client: &ClientResolver,
        out: &mut Vec<u8>,
    ) {
        let created_at = self.created_at_micros();
        self.write_wire_json(super::ids::v7_at(created_at), created_at, client, out);
        self.empty();
        SPARE_BOXES.with(|spare| {
            if let Ok(mut spare) = spare.try_borrow_mut()
                && spare.len() < MAX_SPARE_BOXES
            {
                spare.push(self);
            }
        });
    }

    /// Drops what the facts hold of the request (header values, the URI,
    /// the user, the enrichment), keeping the box for another request.
    fn empty(&mut self) {
        self.uri = None;
        self.forwarded = None;
        self.user_agent = None;
        self.session_cookie = HeaderValues::None;
        self.session_header = None;
        self.request_id = None;
        self.user = None;
        self.enrichment = None;
    }

    /// When the request started, in whole microseconds since the Unix
    /// epoch (rounded down, before it too): its `created_at`.
    pub(crate) fn created_at_micros(&self) -> i64 {
        let saturate = |micros: u128| i64::try_from(micros).unwrap_or(i64::MAX);
        match self.started_at.duration_since(UNIX_EPOCH) {
            Ok(after) => saturate(after.as_micros()),
            Err(before) => {
                let before = before.duration();
                let round_up = u128::from(before.subsec_nanos() % 1_000 != 0);
                -saturate(before.as_micros() + round_up)
            }
        }
    }

    /// Appends the event's wire JSON to `out`, once the response is there,
    /// with `id` and `created_at` (as
    /// [`CapturedRequest::created_at_micros`] gives it): the strings, the client
    /// IP, and `details` with `method`, `route`, `status` and `latency_ms`
    /// over the handler's own, written straight from the captured facts
    /// (no [`Activity`](crate::Activity), no map, no owned strings for what
    /// is borrowed). Whether the request is recorded at all was settled by
    /// `Pending::finish`, which never hands over a skipped one.
    pub(crate) fn write_wire_json(
        &self,
        id: Uuid,
        created_at_micros: i64,
        client: &ClientResolver,
        out: &mut Vec<u8>,
    ) {
        let enrichment = self.enrichment.as_deref();
        let route = &*self.route;
        let user_id = enrichment
            .and_then(|e| e.user_id.as_deref())
            .or(self.user.as_ref().map(ActivityUser::as_str));
        let path_id;
        let resource_id = match enrichment.and_then(|e| e.resource_id.as_deref()) {
            Some(id) => Some(id),
            None => {
                path_id = self
                    .uri
                    .as_ref()
                    .and_then(|uri| route.resource_id(uri.path()));
                path_id.as_deref()
            }
        };
        let resource_type = match enrichment.and_then(|e| e.resource_type.as_deref()) {
            Some(kind) => Some(kind),
            None => route
                .resource
                .as_ref()
                .map(|spec| &*spec.kind)
                .filter(|_| resource_id.is_some()),
        };
        // Only a handler's details can be too big; then they give way to a
        // marker, and the layer's own facts are kept.
        let marker;
        let handler = match enrichment.and_then(|e| e.details.as_ref()) {
            Some(details) => match oversize_marker(details) {
                Some(too_big) => {
                    marker = too_big;
                    Some(&marker)
                }
                None => Some(details),
            },
            None => None,
        };
        let user_agent = self.user_agent.as_ref().map(session::user_agent);
        let session_id = client
            .session_cookie
            .as_ref()
            .and_then(|name| session::session_from_cookies(&self.session_cookie, name))
            .or_else(|| {
                self.session_header
                    .as_ref()
                    .and_then(session::session_from_header)
            });
        write_fields(
            out,
            &WireFields {
                id,
                user_id: user_id.map(|text| prefix_chars(text, limits::USER_ID_MAX_CHARS)),
                action: match enrichment.and_then(|e| e.action.as_ref()) {
                    Some(action) => WireText::Plain(action.as_str()),
                    None => WireText::Json(&route.json.action),
                },
                resource_type: resource_type
                    .map(|text| prefix_chars(text, limits::RESOURCE_TYPE_MAX_CHARS)),
                resource_id: resource_id
                    .map(|text| prefix_chars(text, limits::RESOURCE_ID_MAX_CHARS)),
                details: WireDetails::Request {
                    handler,
                    method: route.method.as_str(),
                    route: &route.pattern,
                    tail: &route.json.details_tail,
                    status: self.status.as_u16(),
                    latency_micros: u64::try_from(self.latency.as_micros()).unwrap_or(u64::MAX),
                    request_id: self.request_id.as_ref().and_then(request_id),
                },
                ip_address: client
                    .trusted
                    .resolve(self.peer, self.forwarded.as_ref())
                    .map(|ip| client.ip_truncation.map_or(ip, |cut| cut.apply(ip))),
                // Bounded already.
                user_agent: user_agent.as_deref(),
                session_id: session_id.as_deref(),
                created_at: WireTime::UnixMicros(created_at_micros),
                text_is_plain: false,
            },
        );
    }
}

#[cfg(test)]
impl CapturedRequest {
    /// The activity a reader gets from the line the dispatcher writes: what
    /// the capture tests check.
    pub(crate) fn read_back(&self, client: &ClientResolver) -> crate::Activity {
        let mut json = Vec::new();
        self.write_wire_json(Uuid::now_v7(), self.created_at_micros(), client, &mut json);
        crate::Activity::from_wire_json(&json).expect("the layer writes valid wire JSON")
    }
}

/// The request id as kept in `details`: visible ASCII (what a header
/// value may hold as text), at most [`REQUEST_ID_MAX_CHARS`]; anything
/// else is not an id a log would show, and is left out.
fn request_id(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?;
    (!text.is_empty()).then(|| prefix_chars(text, REQUEST_ID_MAX_CHARS))
}

/// Longer ids are cut: a UUID is 36, the longest common formats under 100.
const REQUEST_ID_MAX_CHARS: usize = 128;

/// `{"truncated": true, "original_bytes": N}` when a handler's details
/// would not leave room for the layer's keys within the 16 KiB limit.
fn oversize_marker(details: &Map<String, Value>) -> Option<Map<String, Value>> {
    /// Room kept for `method`, `route`, `status` and `latency_ms`.
    const LAYER_KEYS_ROOM: usize = 1024;
    let bytes = serde_json::to_vec(details).map_or(usize::MAX, |json| json.len());
    if bytes <= limits::DETAILS_MAX_BYTES - LAYER_KEYS_ROOM {
        return None;
    }
    let mut marker = Map::new();
    marker.insert("truncated".into(), Value::Bool(true));
    marker.insert("original_bytes".into(), Value::from(bytes));
    Some(marker)
}
