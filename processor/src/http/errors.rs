//! Every error answer in the API's JSON shape, `{"error": "<code>",
//! "message": "<text>"}`: the handlers' own already are; this makes the
//! others so too (axum's rejections and default 404/405, the timeout's
//! 408, the body limit's 413, a panic's 500).

use std::any::Any;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::json;

/// How much of a plain-text error body becomes the message; axum's and
/// tower-http's are one short sentence.
const MESSAGE_MAX_BYTES: usize = 1024;

/// The stable code of an error answer with `status` and no code of its own.
pub fn error_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal_error",
        _ => "bad_request",
    }
}

/// Middleware: an error answer that is not JSON becomes JSON, keeping its
/// status and headers (`Allow`, `Retry-After`), with its text as the
/// message (or one saying what was asked, when it had none). Counts
/// every error answer by status.
pub(super) async fn json_errors(request: Request, next: Next) -> Response {
    // Kept for the message of an error without one; cloning them copies
    // no bytes (both are refcounted), unlike the path as a `String`.
    let method = request.method().clone();
    let uri = request.uri().clone();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    metrics::counter!("activity_processor_http_errors_total", "status" => status.as_str().to_owned())
        .increment(1);
    if is_json(response.headers().get(CONTENT_TYPE)) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match http_body_util::Limited::new(body, MESSAGE_MAX_BYTES)
        .collect()
        .await
    {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes())
            .trim()
            .to_owned(),
        Err(_) => String::new(),
    };
    let path = uri.path();
    let message = if !text.is_empty() {
        text
    } else {
        match status {
            StatusCode::NOT_FOUND => format!("nothing is served at {path}"),
            StatusCode::METHOD_NOT_ALLOWED => {
                let allowed = parts
                    .headers
                    .get(ALLOW)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none");
                format!("{method} is not allowed on {path}; allowed: {allowed}")
            }
            StatusCode::REQUEST_TIMEOUT => {
                "the request was not received and answered in time".to_owned()
            }
            StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large".to_owned(),
            s => s.canonical_reason().unwrap_or("error").to_owned(),
        }
    };
    let body = json!({ "error": error_code(status), "message": message }).to_string();
    parts.headers.remove(CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, Body::from(body))
}

fn is_json(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// A handler's panic: a JSON 500, the panic logged and counted
/// (`activity_processor_http_panics_total`); the connection and the
/// process carry on.
pub(super) fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    tracing::error!(panic = %what, "a request handler panicked; answered 500");
    metrics::counter!("activity_processor_http_panics_total").increment(1);
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(json!({
            "error": "internal_error",
            "message": "the server failed while answering; see the processor's log",
        })),
    )
        .into_response()
}
