//! Every admin error is JSON `{"error": "<code>", "message": "<text>"}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header::WWW_AUTHENTICATE};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use activity_store::queries::QueryError;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A stable machine-readable code, e.g. `invalid_parameter`.
    pub error: String,
    /// What went wrong, for a person.
    pub message: String,
}

/// An error answer of the admin API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// An error with its status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 401, with `WWW-Authenticate: Bearer`.
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// 403: authenticated, but not an admin.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 for a user erased and still held on the erasure list: the
    /// user is gone, not a user without activities (who gets 200 and
    /// zero counts).
    pub fn erased_user() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "user_erased",
            "this user was erased: their activities are deleted or pseudonymized",
        )
    }

    /// 400 naming the parameter.
    pub fn bad_parameter(parameter: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            format!("invalid parameter `{parameter}`: {message}"),
        )
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::InvalidParameter { parameter, message } => {
                Self::bad_parameter(parameter, message)
            }
            e => {
                tracing::error!(error = %e, "admin query failed");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_error",
                    "the database query failed; see the processor's log",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: self.code.to_owned(),
                message: self.message,
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            let value = if self.code == "missing_token" || self.code == "admin_api_disabled" {
                HeaderValue::from_static("Bearer realm=\"activity-admin\"")
            } else {
                HeaderValue::from_static("Bearer realm=\"activity-admin\", error=\"invalid_token\"")
            };
            response.headers_mut().insert(WWW_AUTHENTICATE, value);
        }
        response
    }
}
