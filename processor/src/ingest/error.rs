//! The ingest's error answers: the API's JSON shape `{"error": "<code>",
//! "message": "<text>"}`, with `Retry-After` on 429 and 503 and the
//! rejected events of a batch none of whose events were valid.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One event refused, by its index in the request (0 for a single call).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct RejectedEvent {
    pub(crate) index: usize,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

/// An error answer.
#[derive(Debug)]
pub(crate) struct IngestError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after_secs: Option<u64>,
    rejected: Vec<RejectedEvent>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    rejected: &'a [RejectedEvent],
}

impl IngestError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        IngestError {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
            rejected: Vec::new(),
        }
    }

    /// With `Retry-After`, in whole seconds (at least one).
    pub(crate) fn retry_after(mut self, wait: std::time::Duration) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.retry_after_secs = Some(secs.max(1));
        self
    }

    /// With the events refused.
    pub(crate) fn with_rejected(mut self, rejected: Vec<RejectedEvent>) -> Self {
        self.rejected = rejected;
        self
    }

    /// The code, for the counters.
    pub(crate) fn code(&self) -> &'static str {
        self.code
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(Body {
                error: self.code,
                message: &self.message,
                rejected: &self.rejected,
            }),
        )
            .into_response();
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"activity-ingest\""),
            );
        }
        response
    }
}
