//! The request-path half of capturing: look the route up, keep cheap facts
//! (refcounted header values, the peer, the start time, the user), and when
//! the response comes, decide whether the request is recorded. Nothing here
//! allocates a string, parses a header or touches the intake.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{ConnectInfo, MatchedPath};
use http::header::{COOKIE, USER_AGENT};
use http::{Request, Response, StatusCode};

use super::captured::{CapturedRequest, boxed};
use super::client_ip::{ForwardedHeaders, HeaderValues};
use super::{ActivityEnrichment, ActivityUser, CaptureConfig, PeerAddr};

/// The request id header of tower-http's `SetRequestId` (and of most
/// proxies that set one).
const REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

impl CaptureConfig {
    /// The request half: nothing beyond the route lookup for unmapped
    /// requests; for mapped ones, cheap facts only. `layer_peer` is the
    /// layer's own peer address, used when the request carries none.
    pub(crate) fn begin<B>(
        &self,
        request: &Request<B>,
        layer_peer: Option<SocketAddr>,
    ) -> Option<Pending> {
        let matched = request
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str);
        let route = self
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
        let trusted = &self.client.trusted;
        // Proxy headers are kept only from a trusted peer: from anyone
        // else they are whatever the client chose to write.
        let forwarded = match peer {
            Some(ip) if !trusted.is_empty() && trusted.contains(ip) => {
                ForwardedHeaders::from_map(headers)
            }
            _ => None,
        };
        let session_cookie = match self.client.session_cookie {
            Some(_) => HeaderValues::from_map(headers, &COOKIE),
            None => HeaderValues::None,
        };
        let session_header = self
            .session_header
            .as_ref()
            .and_then(|name| headers.get(name).cloned());
        let facts = CapturedRequest {
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
            request_id: headers.get(REQUEST_ID).cloned(),
            user: extensions.get::<ActivityUser>().cloned(),
            enrichment: None,
        };
        Some(Pending {
            captured: boxed(facts),
            start,
            record_errors: self.record_errors,
        })
    }
}

/// A mapped request whose response has not come yet.
#[derive(Debug)]
pub(crate) struct Pending {
    /// Boxed from the start: the request's future holds a pointer, not the
    /// facts (a spare box of the thread's when it has one).
    captured: Box<CapturedRequest>,
    /// For the latency (monotonic, unlike `captured.started_at`).
    start: Instant,
    /// The config's `record_errors`, copied so a pending request needs no
    /// handle on the config.
    record_errors: bool,
}

impl Pending {
    /// The response half: status, the handler's enrichment (taken out of
    /// the response), latency. `None` when the request is not recorded
    /// after all (the handler asked to skip it, or its status is not
    /// recorded): this is the only place that decides it.
    pub(crate) fn finish<B>(mut self, response: &mut Response<B>) -> Option<Box<CapturedRequest>> {
        let status = response.status();
        // Boxed when there is one (a handler's choice), so that the common
        // case moves a pointer, not the struct, into the facts.
        let enrichment = match response.extensions().is_empty() {
            true => None,
            false => response
                .extensions_mut()
                .remove::<ActivityEnrichment>()
                .map(Box::new),
        };
        if enrichment
            .as_deref()
            .is_some_and(ActivityEnrichment::is_skip)
        {
            return None;
        }
        if !self.record_errors && (status.is_client_error() || status.is_server_error()) {
            return None;
        }
        self.captured.status = status;
        self.captured.latency = self.start.elapsed();
        self.captured.enrichment = enrichment;
        Some(self.captured)
    }
}
