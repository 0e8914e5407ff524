//! The one HTTP server stack of every listener (the admin API and the
//! ingest API): the layers every request goes through ([`stack`]) and the
//! accept loop with the connections' timeouts ([`serve`]).
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use std::time::Duration;
//!
//! use activity_processor::http::{self, ConnectionTimeouts, StackSettings};
//! use axum::Router;
//! use axum::routing::get;
//! use tokio_util::sync::CancellationToken;
//!
//! let routes = Router::new().route("/hello", get(|| async { "hello" }));
//! let app = http::stack(routes, &StackSettings::admin(Duration::from_secs(30), Vec::new()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! http::serve(listener, app, ConnectionTimeouts::default(), CancellationToken::new()).await
//! # }
//! ```
//!
//! Outermost first, a request meets: `authorization` (and cookie) headers
//! marked sensitive, so no log shows them; an `x-request-id` set when the
//! client sent none, and echoed on the response; a span per request
//! named by the matched route, with the request id; CORS for the allowed
//! origins only; response compression (admin JSON); every error answer made
//! the API's JSON shape; panics caught into a JSON 500; a timeout (408);
//! the body limit (413).

mod connection;
mod errors;
mod idle;

use std::time::Duration;

use axum::Router;
use axum::extract::MatchedPath;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, PROXY_AUTHORIZATION};
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use connection::{ConnectionTimeouts, serve};
pub use errors::error_code;

/// The header carrying the request id, set when the client sent none.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// What differs between the listeners' stacks.
#[derive(Debug, Clone)]
pub struct StackSettings {
    /// A request not answered within this long gets 408 (a body that
    /// stalls, a handler that hangs). The response body is not bounded
    /// by it: an export streams for as long as it takes.
    pub request_timeout: Duration,
    /// Bodies over this many bytes get 413; `None` leaves the limit to
    /// the routes (the ingest API checks its own, after decompression).
    pub body_limit: Option<usize>,
    /// Compress responses when the client accepts gzip.
    pub compress: bool,
    /// Origins whose browsers may call cross-origin; empty: none (no CORS
    /// headers, so browsers refuse).
    pub cors_origins: Vec<HeaderValue>,
}

/// The admin API's request bodies are small JSON objects (an erasure's
/// options): anything bigger is a mistake or an attack.
const ADMIN_BODY_LIMIT: usize = 64 * 1024;

impl StackSettings {
    /// The admin listener's: a small body limit, compressed JSON, CORS for
    /// `cors_origins` (`ADMIN_CORS_ORIGINS`).
    pub fn admin(request_timeout: Duration, cors_origins: Vec<HeaderValue>) -> Self {
        Self {
            request_timeout,
            body_limit: Some(ADMIN_BODY_LIMIT),
            compress: true,
            cors_origins,
        }
    }

    /// The ingest listener's: no body limit here (the ingest routes check
    /// theirs after decompression), no compression (its answers are a few
    /// bytes), no CORS.
    pub fn ingest(request_timeout: Duration) -> Self {
        Self {
            request_timeout,
            body_limit: None,
            compress: false,
            cors_origins: Vec::new(),
        }
    }
}

/// `routes` behind the stack. The layers wrap each route (and the
/// fallback), so the trace span and the error bodies know the matched
/// route; requests no route matches get the same layers through the
/// fallback.
pub fn stack(routes: Router, settings: &StackSettings) -> Router {
    let mut router = routes;
    if let Some(limit) = settings.body_limit {
        router = router.layer(RequestBodyLimitLayer::new(limit));
    }
    router = router
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            settings.request_timeout,
        ))
        .layer(CatchPanicLayer::custom(errors::panic_response))
        .layer(axum::middleware::from_fn(errors::json_errors));
    if settings.compress {
        router = router.layer(CompressionLayer::new());
    }
    if !settings.cors_origins.is_empty() {
        router = router.layer(cors(&settings.cors_origins));
    }
    router
        .layer(PropagateRequestIdLayer::new(REQUEST_ID_HEADER))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(SetRequestIdLayer::new(REQUEST_ID_HEADER, MakeRequestUuid))
        .layer(SetSensitiveRequestHeadersLayer::new([
            AUTHORIZATION,
            PROXY_AUTHORIZATION,
            COOKIE,
        ]))
}

/// The admin API's CORS: only `origins`, with the methods and headers a
/// browser page needs to call it with a bearer token.
fn cors(origins: &[HeaderValue]) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins.iter().cloned()))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([AUTHORIZATION, CONTENT_TYPE])
        .expose_headers([REQUEST_ID_HEADER])
        .max_age(Duration::from_secs(600))
}

/// A span per request, named by the matched route (not the path: one
/// route, one name, whatever the ids in it), with the request id.
fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("<no route>", MatchedPath::as_str);
    let request_id = request
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %request.method(),
        route,
        request_id,
    )
}

/// Parses `ADMIN_CORS_ORIGINS`: comma-separated origins
/// (`scheme://host[:port]`, no path, no wildcard).
pub fn parse_cors_origins(list: &str) -> Result<Vec<HeaderValue>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|origin| !origin.is_empty())
        .map(|origin| {
            let (scheme, rest) = origin
                .split_once("://")
                .ok_or_else(|| format!("{origin:?} is not an origin (scheme://host[:port])"))?;
            if !matches!(scheme, "http" | "https") {
                return Err(format!("{origin:?}: the scheme must be http or https"));
            }
            if rest.is_empty() || rest.contains(['/', '*', '?', '#', ' ']) {
                return Err(format!(
                    "{origin:?} is not an origin: give scheme://host[:port], without a path or a wildcard"
                ));
            }
            HeaderValue::from_str(origin).map_err(|_| format!("{origin:?} is not a header value"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_origins_parse() {
        let origins = parse_cors_origins("https://admin.example.com, http://localhost:3000")
            .expect("valid origins");
        assert_eq!(origins.len(), 2);
        assert_eq!(origins[1], "http://localhost:3000");
        assert!(parse_cors_origins("").expect("empty").is_empty());
        for bad in [
            "admin.example.com",
            "https://*.example.com",
            "https://example.com/",
            "ftp://example.com",
            "https://",
        ] {
            assert!(parse_cors_origins(bad).is_err(), "{bad} accepted");
        }
    }
}
