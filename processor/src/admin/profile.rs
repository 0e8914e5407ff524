//! `GET user/{user_id}/profile`: the user profile of the store's
//! [`activity_store::queries::profile`], with its window and time zone
//! taken from the query string.

use axum::Json;
use axum::extract::{Extension, Path, State};

use super::auth::Caller;
use super::handlers::{Params, number, params};
use super::privacy::{audit_read, refuse_erased};
use super::{AdminState, ApiError, ErrorBody};
use activity_store::queries::profile::{
    DEFAULT_PROFILE_DAYS, ProfileOptions, UserProfile, build_user_profile_with, parse_time_zone,
};

/// One user's profile: activity level, primary functions, usage pattern in
/// a time zone, addresses and a risk score with its factors
/// (`docs/profile.md`).
#[utoipa::path(
    get,
    path = "/api/v1/admin/user-activities/user/{user_id}/profile",
    tag = "admin",
    params(
        ("user_id" = String, Path, description = "The app's user id (1..=255 characters)"),
        ("days" = Option<u32>, Query, description = "Window in UTC days, 1..=366 (default 90)"),
        ("tz" = Option<String>, Query, description = "IANA time zone of the hour-of-day and weekday counts and of off-hours, e.g. America/New_York (default UTC)"),
    ),
    responses(
        (status = 200, description = "The user's profile (zero counts for a user without activities)", body = UserProfile),
        (status = 400, description = "A parameter is out of bounds or `tz` is not a time zone", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "The user was erased (and is held on the erasure list, `ERASURE_HOLD_DAYS`; needs `PSEUDONYM_KEY`)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(super) async fn user_profile(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(user_id): Path<String>,
    p: Params,
) -> Result<Json<UserProfile>, ApiError> {
    let p = params(p)?;
    audit_read(&state, &caller, &user_id, "profile").await;
    refuse_erased(&state, &user_id)?;
    let mut options = ProfileOptions {
        days: number(&p, "days", DEFAULT_PROFILE_DAYS)?,
        ..ProfileOptions::default()
    };
    if let Some(tz) = p.get("tz") {
        options.time_zone = parse_time_zone(tz)?;
    }
    Ok(Json(
        build_user_profile_with(&state.pool, &user_id, &options).await?,
    ))
}
