//! The alert endpoints: `GET alerts`, `GET alerts/{id}`,
//! `POST alerts/{id}/acknowledge`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use uuid::Uuid;

use super::handlers::{Params, number, params};
use super::{AdminState, ApiError, ErrorBody};
use activity_store::alerts::{self, Alert, AlertFilter, AlertPage, AlertStatus};

type ApiResult<T> = Result<Json<T>, ApiError>;

fn alert_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(id).map_err(|_| {
        ApiError::bad_parameter("id", format!("id must be an alert id, a UUID (got {id:?})"))
    })
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no alert has the id {id}"),
    )
}

/// Alerts raised in the last `days` days, newest first, one page.
#[utoipa::path(
    get,
    path = "/api/v1/admin/user-activities/alerts",
    tag = "admin",
    params(
        ("status" = Option<String>, Query, description = "`open` or `acknowledged`"),
        ("rule" = Option<String>, Query, description = "Only this rule's alerts"),
        ("user_id" = Option<String>, Query, description = "Only alerts about this user"),
        ("days" = Option<u32>, Query, description = "Raised in the last days, 1..=366 (default 30)"),
        ("limit" = Option<u32>, Query, description = "Page size, 1..=500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of alerts", body = AlertPage),
        (status = 400, description = "A parameter is out of bounds", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(super) async fn list(State(state): State<AdminState>, p: Params) -> ApiResult<AlertPage> {
    let p = params(p)?;
    let filter = AlertFilter {
        status: p.get("status").map(|s| AlertStatus::parse(s)).transpose()?,
        rule: p.get("rule").cloned(),
        user_id: p.get("user_id").cloned(),
        days: Some(number(&p, "days", alerts::DEFAULT_ALERT_DAYS)?),
        limit: Some(number(&p, "limit", alerts::DEFAULT_ALERT_LIMIT)?),
        cursor: p.get("cursor").cloned(),
    };
    Ok(Json(alerts::list_alerts(&state.pool, &filter).await?))
}

/// One alert (the link of its webhook delivery).
#[utoipa::path(
    get,
    path = "/api/v1/admin/user-activities/alerts/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "The alert id")),
    responses(
        (status = 200, description = "The alert", body = Alert),
        (status = 400, description = "Not an alert id", body = ErrorBody),
        (status = 404, description = "No such alert", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(super) async fn get(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> ApiResult<Alert> {
    let id = alert_id(&id)?;
    let alert = alerts::get_alert(&state.pool, id).await?;
    alert.map(Json).ok_or_else(|| not_found(id))
}

/// Marks an alert acknowledged (again: no change) and returns it.
#[utoipa::path(
    post,
    path = "/api/v1/admin/user-activities/alerts/{id}/acknowledge",
    tag = "admin",
    params(("id" = String, Path, description = "The alert id")),
    responses(
        (status = 200, description = "The alert, acknowledged", body = Alert),
        (status = 400, description = "Not an alert id", body = ErrorBody),
        (status = 404, description = "No such alert", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(super) async fn acknowledge(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> ApiResult<Alert> {
    let id = alert_id(&id)?;
    let alert = alerts::acknowledge_alert(&state.pool, id).await?;
    alert.map(Json).ok_or_else(|| not_found(id))
}
