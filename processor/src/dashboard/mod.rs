//! The admin dashboard: a browser page at `/admin/` on `ADMIN_LISTEN` that
//! shows what the admin API answers (docs/dashboard.md).
//!
//! The page and its ES modules are embedded in the binary ([`assets`]);
//! the page holds no data, so it needs no credentials: its scripts ask
//! the admin API with the token the admin signs in with, kept in the
//! tab's `sessionStorage`. Every answer of this router carries a strict
//! Content-Security-Policy (no inline script or style, requests to this
//! origin only), `nosniff` and `no-referrer`.
//!
//! ```no_run
//! # async fn demo(ctx: activity_processor::Context) {
//! use activity_processor::{dashboard, server};
//!
//! // Merged beside the admin API, behind the one HTTP stack.
//! let routes = server::router(ctx, dashboard::router());
//! # let _ = routes; }
//! ```
//!
//! Caching: the assets live under `/admin/assets/<version>/`, the version
//! a hash of every embedded file, and may be kept for a year (`immutable`);
//! the page names them and is revalidated on every load (`no-cache` with
//! an `ETag`, answered 304 when unchanged).

mod assets;

use axum::Router;
use axum::extract::Path;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, LOCATION,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::admin::ApiError;

/// Where the page is served.
pub const PAGE_PATH: &str = "/admin/";

/// The page's policy: its own scripts, styles and images (and `data:`
/// images), requests to its own origin (the admin API), nothing else; no
/// `<base>`, no form submissions, no framing.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// The page: revalidated at each load (it names the assets' version).
const PAGE_CACHE: &str = "no-cache";
/// An asset under its version never changes.
const ASSET_CACHE: &str = "public, max-age=31536000, immutable";

/// `/admin` (redirected to `/admin/`), the page at `/admin/`, and its
/// assets under `/admin/assets/<version>/<file>`.
pub fn router() -> Router {
    Router::new()
        .route("/admin", get(redirect_to_page))
        .route(PAGE_PATH, get(page))
        .route("/admin/assets/{version}/{file}", get(asset))
        .layer(axum::middleware::map_response(security_headers))
}

/// The page's relative asset URLs need the trailing slash.
async fn redirect_to_page() -> Response {
    (
        StatusCode::PERMANENT_REDIRECT,
        [(LOCATION, HeaderValue::from_static(PAGE_PATH))],
    )
        .into_response()
}

async fn page(headers: HeaderMap) -> Response {
    cached(
        &headers,
        "text/html; charset=utf-8",
        PAGE_CACHE,
        assets::index_html().as_bytes(),
    )
}

async fn asset(Path((version, file)): Path<(String, String)>, headers: HeaderMap) -> Response {
    match assets::find(&file) {
        Some(asset) if version == assets::version() => {
            cached(&headers, asset.content_type, ASSET_CACHE, asset.body)
        }
        Some(_) => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "this processor serves the dashboard's version {}, not {version}: reload {PAGE_PATH}",
                assets::version()
            ),
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("the dashboard has no file {file:?}"),
        )
        .into_response(),
    }
}

/// `body` with its type, cache policy and `ETag` (the version: every
/// file changes only with it), or 304 when the browser has it already.
fn cached(
    request: &HeaderMap,
    content_type: &'static str,
    cache: &'static str,
    body: &'static [u8],
) -> Response {
    let etag = format!("\"{}\"", assets::version());
    let etag_value = HeaderValue::from_str(&etag).expect("a quoted hex string is a header value");
    let headers = [
        (CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (CACHE_CONTROL, HeaderValue::from_static(cache)),
        (ETAG, etag_value),
    ];
    if matches_etag(request, &etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (headers, body).into_response()
}

/// Whether `If-None-Match` lists `etag` (or `*`). A weak match counts:
/// compression may have marked it weak on the way out.
fn matches_etag(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}

/// On every answer of the dashboard's routes, errors included.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests;
