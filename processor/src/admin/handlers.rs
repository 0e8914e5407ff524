//! The admin endpoints.

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use redis::streams::{StreamInfoConsumersReply, StreamPendingReply};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::auth::Caller;
use super::privacy::{audit_read, refuse_erased};
use super::{AdminState, ApiDoc, ApiError, ErrorBody};
use crate::queue_length::{QueueLength, queue_length};
use activity_store::queries::{
    self, ActionUsageReport, RecentPage, Statistics, TopUsers, UserActivityStats, UserPath,
};

pub(super) type Params = Result<Query<HashMap<String, String>>, QueryRejection>;
type ApiResult<T> = Result<Json<T>, ApiError>;

/// The query string as a map; a malformed one is a 400 like any bad parameter.
pub(super) fn params(params: Params) -> Result<HashMap<String, String>, ApiError> {
    params.map(|Query(p)| p).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            format!("malformed query string: {e}"),
        )
    })
}

/// An integer parameter, `default` when absent. Bounds are checked by the
/// store's query functions, which name the parameter too.
pub(super) fn number(
    p: &HashMap<String, String>,
    name: &'static str,
    default: u32,
) -> Result<u32, ApiError> {
    match p.get(name) {
        None => Ok(default),
        Some(v) => v.trim().parse::<u32>().map_err(|_| {
            ApiError::bad_parameter(name, format!("{name} must be a whole number (got {v:?})"))
        }),
    }
}

/// One consumer of the group, from `XINFO CONSUMERS`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsumerStatus {
    /// The consumer's name (`CONSUMER_NAME`).
    pub name: String,
    /// Entries delivered to it and not yet acknowledged.
    pub pending: u64,
    /// Milliseconds since it last read or was delivered to.
    pub idle_ms: u64,
}

/// `GET queue-status`: the original design's monitoring figures.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueStatus {
    /// The stream read (`STREAM_KEY`).
    pub stream_key: String,
    /// Each shard's figures (one with `STREAM_SHARDS=1`); the figures
    /// below are their sums. Empty when Redis cannot be reached.
    pub shards: Vec<ShardStatus>,
    /// Events waiting in the stream: exact up to 16 entries, beyond that
    /// estimated from the events of the 16 newest (an entry of version 2
    /// holds many; see `docs/operations.md`); null when Redis cannot be
    /// reached.
    pub queue_length: Option<u64>,
    /// Entries in the stream (`XLEN`, exact); null when Redis cannot be
    /// reached.
    pub queue_entries: Option<u64>,
    /// Entries delivered to the group and not yet acknowledged.
    pub pending: Option<u64>,
    /// The group's consumers.
    pub consumers: Vec<ConsumerStatus>,
    /// Age of the oldest pending entry (from its stream id), in seconds.
    pub oldest_pending_age_seconds: Option<f64>,
    /// Entries in the dead-letter streams `<stream>:dead` (of every
    /// shard: `<shard>:dead`).
    pub dead_letter_length: Option<u64>,
    /// Why the Redis figures are null, when they are.
    pub redis_error: Option<String>,
    /// Events handled by this processor since it started (stored,
    /// duplicates skipped, dead-lettered).
    pub processed_total: u64,
    /// Events handled per second, over the last minute.
    pub processed_per_second: f64,
    /// Share of database writes that succeeded; null before the first.
    pub db_write_success_rate: Option<f64>,
    /// When this processor last committed a batch.
    pub last_batch_at: Option<DateTime<Utc>>,
    /// Activities stored today (UTC).
    pub today_activities: i64,
    /// Activities stored, all time (within retention).
    pub total_activities: i64,
    /// Distinct users active today (UTC).
    pub active_users_today: i64,
    /// Stored events not yet evaluated by the alert rules; null when the
    /// database cannot say.
    pub alert_queue_length: Option<i64>,
    /// Webhook URLs that answered 410 Gone and get no more deliveries.
    pub disabled_webhook_urls: Vec<crate::webhook::DisabledUrl>,
}

/// One shard of the stream in `queue-status` (one element with
/// `STREAM_SHARDS=1`: the stream itself).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ShardStatus {
    /// The shard's stream key.
    pub key: String,
    /// Its Redis Cluster slot (`CLUSTER KEYSLOT`), for placing shards
    /// when resharding.
    pub slot: u16,
    /// Events waiting in the shard (estimated as `queue_length`).
    pub queue_length: u64,
    /// Entries in the shard (`XLEN`).
    pub queue_entries: u64,
    /// The shard's entries delivered to the group and not yet acknowledged.
    pub pending: u64,
    /// Age of the shard's oldest pending entry, in seconds.
    pub oldest_pending_age_seconds: Option<f64>,
    /// Entries in the shard's dead-letter stream `<key>:dead`.
    pub dead_letter_length: u64,
}

#[derive(Debug, Default)]
struct StreamFigures {
    queue_length: QueueLength,
    dead_letter_length: u64,
    pending: u64,
    oldest_pending_ms: Option<i64>,
    consumers: Vec<ConsumerStatus>,
}

impl StreamFigures {
    /// Every shard's figures together: sums, the oldest pending entry of
    /// any, and each consumer once (its pending summed, its idle time the
    /// least: it reads every shard).
    fn sum(shards: &[StreamFigures]) -> StreamFigures {
        let mut total = StreamFigures {
            queue_length: QueueLength::sum(
                &shards.iter().map(|f| f.queue_length).collect::<Vec<_>>(),
            ),
            dead_letter_length: shards.iter().map(|f| f.dead_letter_length).sum(),
            pending: shards.iter().map(|f| f.pending).sum(),
            oldest_pending_ms: shards.iter().filter_map(|f| f.oldest_pending_ms).min(),
            consumers: Vec::new(),
        };
        for consumer in shards.iter().flat_map(|f| &f.consumers) {
            match total.consumers.iter_mut().find(|c| c.name == consumer.name) {
                Some(seen) => {
                    seen.pending += consumer.pending;
                    seen.idle_ms = seen.idle_ms.min(consumer.idle_ms);
                }
                None => total.consumers.push(consumer.clone()),
            }
        }
        total
    }
}

fn is_no_group(e: &redis::RedisError) -> bool {
    e.code() == Some("NOGROUP")
}

/// The figures of every shard, shard 0 first.
async fn shard_figures(state: &AdminState) -> redis::RedisResult<Vec<StreamFigures>> {
    let mut con = state
        .redis
        .connect(std::time::Duration::from_secs(2), None)
        .await?;
    let mut figures = Vec::with_capacity(state.shards.len());
    for key in state.shards.keys() {
        figures.push(stream_figures(&mut con, key, &state.consumer_group).await?);
    }
    Ok(figures)
}

/// The figures of the stream (or shard) `key`.
async fn stream_figures(
    con: &mut activity_tracker::RedisConnection,
    key: &str,
    group: &str,
) -> redis::RedisResult<StreamFigures> {
    let mut f = StreamFigures {
        queue_length: queue_length(con, key).await?,
        dead_letter_length: con.xlen(activity_tracker::dead_letter_key(key)).await?,
        ..StreamFigures::default()
    };
    match con.xpending::<_, _, StreamPendingReply>(key, group).await {
        Ok(StreamPendingReply::Data(data)) => {
            f.pending = data.count as u64;
            f.oldest_pending_ms = data
                .start_id
                .split_once('-')
                .and_then(|(ms, _)| ms.parse().ok());
        }
        Ok(_) => {}
        Err(e) if is_no_group(&e) => return Ok(f),
        Err(e) => return Err(e),
    }
    match con
        .xinfo_consumers::<_, _, StreamInfoConsumersReply>(key, group)
        .await
    {
        Ok(reply) => {
            f.consumers = reply
                .consumers
                .into_iter()
                .map(|c| ConsumerStatus {
                    name: c.name,
                    pending: c.pending as u64,
                    idle_ms: c.idle as u64,
                })
                .collect();
        }
        Err(e) if is_no_group(&e) => {}
        Err(e) => return Err(e),
    }
    Ok(f)
}

/// Queue, consumer and storage figures.
#[utoipa::path(
    get,
    path = "/api/v1/admin/user-activities/queue-status",
    tag = "admin",
    responses(
        (status = 200, description = "Queue and processing figures", body = QueueStatus),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(super) async fn queue_status(State(state): State<AdminState>) -> ApiResult<QueueStatus> {
    let (shards, totals, alert_queue, disabled) = tokio::join!(
        shard_figures(&state),
        queries::get_activity_totals(&state.pool),
        crate::alerts::inbox_length(&state.pool),
        crate::webhook::disabled_urls(&state.pool)
    );
    let totals = totals?;
    let stats = state.stats.snapshot();
    let now_ms = Utc::now().timestamp_millis();
    let age = |ms: i64| (now_ms - ms).max(0) as f64 / 1000.0;
    let (stream, shards, redis_error) = match shards {
        Ok(shards) => {
            let each = shards
                .iter()
                .enumerate()
                .map(|(shard, f)| ShardStatus {
                    key: state.shards.key(shard).to_owned(),
                    slot: state.shards.slot(shard),
                    queue_length: f.queue_length.events,
                    queue_entries: f.queue_length.entries,
                    pending: f.pending,
                    oldest_pending_age_seconds: f.oldest_pending_ms.map(age),
                    dead_letter_length: f.dead_letter_length,
                })
                .collect();
            (Some(StreamFigures::sum(&shards)), each, None)
        }
        Err(e) => (None, Vec::new(), Some(e.to_string())),
    };
    Ok(Json(QueueStatus {
        stream_key: state.shards.stream_key().to_owned(),
        shards,
        queue_length: stream.as_ref().map(|f| f.queue_length.events),
        queue_entries: stream.as_ref().map(|f| f.queue_length.entries),
        pending: stream.as_ref().map(|f| f.pending),
        oldest_pending_age_seconds: stream.as_ref().and_then(|f| f.oldest_pending_ms).map(age),
        dead_letter_length: stream.as_ref().map(|f| f.dead_letter_length),
        consumers: stream.map(|f| f.consumers).unwrap_or_default(),
        redis_error,
        processed_total: stats.stored + stats.duplicates + stats.dead_lettered,
        processed_per_second: stats.processed_per_second,
        db_write_success_rate: stats.db_write_success_rate,
        last_batch_at: stats.last_batch_at,
        today_activities: totals.today_activities,
        total_activities: totals.total_activities,
        active_users_today: totals.active_users_today,
        alert_queue_length: alert_queue.ok(),
        disabled_webhook_urls: disabled.unwrap_or_default(),
    }))
}

/// Activity statistics over the last `days` UTC days.
#[utoipa::path(
    get,
    path = "/api/v1/admin/user-activities/statistics",
    tag = "admin",
    params(("days" = Option<u32>, Query, description = "Window in UTC days, 1..=366 (default 7)")),
    responses(
        (status = 200, description = "Statistics", body = Statistics),
        (status = 400, description = "A parameter is out of bounds", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(super) async fn statistics(
    State(state): State<AdminState>,
    p: Params,
) -> ApiResult<Statistics> {
    let p = params(p)?;
    let days = number(&p, "days", 7)?;
    Ok(Json(queries::get_statistics(&state.pool, days).await?))
}

/// One user's activity over the last `days` UTC days, with a page of recent activities.
#[utoipa::path(
    get,
    path = "/api/v1/admin/user-activities/user/{user_id}",
    tag = "admin",
    params(
        ("user_id" = String, Path, description = "The app's user id (1..=255 characters)"),
        ("days" = Option<u32>, Query, description = "Window in UTC days, 1..=366 (default 30)"),
        ("limit" = Option<u32>, Query, description = "Page size of `recent`, 1..=500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "The user's activity", body = UserActivityStats),
        (status = 400, description = "A parameter is out of bounds", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "The user was erased (and is held on the erasure list, `ERASURE_HOLD_DAYS`; needs `PSEUDONYM_KEY`)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(super) async fn user(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(user_id): Path<String>,
    p: Params,
) -> ApiResult<UserActivityStats> {
    let p = params(p)?;
    audit_read(&state, &caller, &user_id, "user").await;
    refuse_erased(&state, &user_id)?;
    let days = number(&p, "days", 30)?;
    let page = RecentPage {
        limit: Some(number(&p, "limit", queries::DEFAULT_RECENT_LIMIT)?),
        cursor: p.get("cursor").cloned(),
    };
    Ok(Json(
        queries::get_user_activity_stats_page(&state.pool, &user_id, days, page).await?,
    ))
}

/// One user's last actions in time order, each with the action before it.
#[utoipa::path(
    get,
    path = "/api/v1/admin/user-activities/user/{user_id}/path",
    tag = "admin",
    params(
        ("user_id" = String, Path, description = "The app's user id (1..=255 characters)"),
        ("days" = Option<u32>, Query, description = "Window in UTC days, 1..=366 (default 1)"),
        ("limit" = Option<u32>, Query, description = "Most recent steps returned, 1..=5000 (default 200)"),
    ),
    responses(
        (status = 200, description = "The behaviour path", body = UserPath),
        (status = 400, description = "A parameter is out of bounds", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "The user was erased (and is held on the erasure list, `ERASURE_HOLD_DAYS`; needs `PSEUDONYM_KEY`)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(super) async fn user_path(
    State(state): State<AdminState>,
    Extension(caller): Extension<Caller>,
    Path(user_id): Path<String>,
    p: Params,
) -> ApiResult<UserPath> {
    let p = params(p)?;
    audit_read(&state, &caller, &user_id, "path").await;
    refuse_erased(&state, &user_id)?;
    let days = number(&p, "days", 1)?;
    let limit = number(&p, "limit", 200)?;
    Ok(Json(
        queries::get_user_path(&state.pool, &user_id, days, limit).await?,
    ))
}

/// The most active users over the last `days` UTC days.
#[utoipa::path(
    get,
    path = "/api/v1/admin/user-activities/top-users",
    tag = "admin",
    params(
        ("days" = Option<u32>, Query, description = "Window in UTC days, 1..=366 (default 30)"),
        ("limit" = Option<u32>, Query, description = "Users returned, 1..=1000 (default 10)"),
    ),
    responses(
        (status = 200, description = "Most active users first", body = TopUsers),
        (status = 400, description = "A parameter is out of bounds", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(super) async fn top_users(State(state): State<AdminState>, p: Params) -> ApiResult<TopUsers> {
    let p = params(p)?;
    let days = number(&p, "days", 30)?;
    let limit = number(&p, "limit", 10)?;
    Ok(Json(
        queries::get_top_users(&state.pool, days, limit).await?,
    ))
}

/// Usage and distinct users per action over the last `days` UTC days.
#[utoipa::path(
    get,
    path = "/api/v1/admin/user-activities/actions",
    tag = "admin",
    params(("days" = Option<u32>, Query, description = "Window in UTC days, 1..=366 (default 7)")),
    responses(
        (status = 200, description = "Actions, most used first", body = ActionUsageReport),
        (status = 400, description = "A parameter is out of bounds", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(super) async fn actions(
    State(state): State<AdminState>,
    p: Params,
) -> ApiResult<ActionUsageReport> {
    let p = params(p)?;
    let days = number(&p, "days", 7)?;
    Ok(Json(queries::get_action_usage(&state.pool, days).await?))
}

/// The OpenAPI document (no authentication).
pub(super) async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// 405 as JSON.
pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this path does not answer this method (the admin API answers GET, and DELETE on user/{user_id})",
    )
}
