//! The privacy role's endpoints: erasing a user (`DELETE user/{user_id}`)
//! and the audit record of an admin read of one user's data.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use serde_json::Map;

use super::auth::Caller;
use super::handlers::{Params, params};
use super::{AdminState, ApiError, ErrorBody};
use activity_store::privacy::{self, ErasureError, ErasureMode, ErasureReceipt};

impl From<ErasureError> for ApiError {
    fn from(e: ErasureError) -> Self {
        match e {
            ErasureError::NoKey => {
                Self::new(StatusCode::CONFLICT, "pseudonym_key_unset", e.to_string())
            }
            ErasureError::EmptyUserId => Self::bad_parameter("user_id", e.to_string()),
            e => {
                tracing::error!(error = %e, "erasure failed");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_error",
                    "the erasure failed part-way; run it again to finish it (see the processor's log)",
                )
            }
        }
    }
}

/// Erases every row of a user (`mode=delete`) or replaces their id with a
/// stable pseudonym and clears what identifies them (`mode=pseudonymize`);
/// the rollups are exact when it answers. Privacy role.
#[utoipa::path(
    delete,
    path = "/api/v1/admin/user-activities/user/{user_id}",
    tag = "privacy",
    params(
        ("user_id" = String, Path, description = "The app's user id"),
        ("mode" = String, Query, description = "`delete` or `pseudonymize` (required)"),
    ),
    responses(
        (status = 200, description = "The receipt", body = ErasureReceipt),
        (status = 400, description = "`mode` missing or unknown", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Not of the privacy role", body = ErrorBody),
        (status = 409, description = "`pseudonymize` without PSEUDONYM_KEY", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(super) async fn erase_user(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(user_id): Path<String>,
    p: Params,
) -> Result<Json<ErasureReceipt>, ApiError> {
    let p = params(p)?;
    let mode: ErasureMode = p
        .get("mode")
        .ok_or_else(|| ApiError::bad_parameter("mode", "mode is required: delete or pseudonymize"))?
        .parse()
        .map_err(|message: String| ApiError::bad_parameter("mode", message))?;
    let privacy = &state.privacy;
    let receipt =
        privacy::erase_user(&state.pool, &user_id, mode, &privacy.policy, &privacy.list).await?;
    tracing::info!(who = %caller.name, mode = mode.as_str(), rows = receipt.rows, "user erased");
    crate::privacy::record_erasure(&state.pool, &caller.name, &receipt).await;
    Ok(Json(receipt))
}

/// 404 for a user erased and still held (see
/// [`crate::privacy::Privacy::is_erased`]): after `DELETE user/{id}`, the
/// user's endpoints no longer answer as for a user who is there.
pub(super) fn refuse_erased(state: &AdminState, user_id: &str) -> Result<(), ApiError> {
    match state.privacy.is_erased(user_id) {
        true => Err(ApiError::erased_user()),
        false => Ok(()),
    }
}

/// Records an `admin_read` activity (who, which user, which endpoint) when
/// `AUDIT_ADMIN_READS` is on.
pub(super) async fn audit_read(state: &AdminState, caller: &Caller, user_id: &str, endpoint: &str) {
    if !state.privacy.audit_admin_reads {
        return;
    }
    let mut details = Map::new();
    details.insert("who".into(), caller.name.as_str().into());
    details.insert("user".into(), user_id.into());
    details.insert("endpoint".into(), endpoint.into());
    crate::privacy::record(&state.pool, "admin_read", details).await;
}
