//! The alerts raised by the processor's rules (`user_activity_alerts`,
//! migration `0006_alerts.sql`) as the admin API and the webhooks show them:
//! one alert, a filtered page of them, and acknowledging one.
//!
//! Raising alerts is the processor's (`activity_processor::alerts`); this
//! module only reads them and changes their status.
//!
//! ```no_run
//! # async fn demo(pool: sqlx::PgPool) -> Result<(), activity_store::queries::QueryError> {
//! use activity_store::alerts::{AlertFilter, AlertStatus, list_alerts};
//!
//! let open = AlertFilter { status: Some(AlertStatus::Open), ..AlertFilter::default() };
//! let page = list_alerts(&pool, &open).await?;
//! for alert in &page.alerts {
//!     println!("{} {}={} x{}", alert.rule, alert.group_kind, alert.group_value, alert.count);
//! }
//! # Ok(()) }
//! ```

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::queries::{
    QueryError, check_days, check_limit, check_user_id, decode_cursor, encode_cursor, invalid,
};

/// The table of alerts.
pub const ALERTS_TABLE: &str = "user_activity_alerts";
/// Page size of [`list_alerts`] without a `limit`.
pub const DEFAULT_ALERT_LIMIT: u32 = 50;
/// Largest page of [`list_alerts`].
pub const MAX_ALERT_LIMIT: u32 = 500;
/// Window of [`list_alerts`] without `days`.
pub const DEFAULT_ALERT_DAYS: u32 = 30;

/// One alert: an episode of a rule for a group (a user or an IP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Alert {
    /// The alert id (UUID v7).
    pub id: Uuid,
    /// The rule's name (`rate`, `failed_then_success`, `new_ip`, or the name
    /// the rule file gives it).
    pub rule: String,
    /// `user` or `ip`: what the rule counts by.
    pub group_kind: String,
    /// The user id or the IP address (or network) counted by.
    pub group_value: String,
    /// The user of the triggering events, when they have one.
    pub user_id: Option<String>,
    /// The client IP of the first triggering event.
    pub ip_address: Option<String>,
    /// The event that started the episode.
    pub first_event_id: Uuid,
    /// Its `created_at`.
    pub first_event_at: DateTime<Utc>,
    /// The newest matching event of the episode.
    pub last_event_id: Uuid,
    /// Its `created_at`.
    pub last_event_at: DateTime<Utc>,
    /// Matching events in the episode so far.
    pub count: i64,
    /// `open` or `acknowledged`.
    pub status: String,
    /// When it was acknowledged.
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// When it was raised.
    pub created_at: DateTime<Utc>,
}

/// The columns of [`Alert`], in its order, for `SELECT`s.
pub const ALERT_COLUMNS: &str = "id, rule, group_kind, group_value, user_id, \
    host(ip_address) AS ip_address, first_event_id, first_event_at, last_event_id, \
    last_event_at, count, status, acknowledged_at, created_at";

/// An alert's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertStatus {
    /// Not yet acknowledged.
    Open,
    /// Acknowledged by an admin.
    Acknowledged,
}

impl AlertStatus {
    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Open => "open",
            AlertStatus::Acknowledged => "acknowledged",
        }
    }

    /// Parses `open` / `acknowledged`.
    pub fn parse(text: &str) -> Result<Self, QueryError> {
        match text {
            "open" => Ok(AlertStatus::Open),
            "acknowledged" => Ok(AlertStatus::Acknowledged),
            _ => Err(invalid(
                "status",
                format!(
                    "status must be `open` or `acknowledged` (got `{}`)",
                    text.escape_debug()
                ),
            )),
        }
    }
}

/// What [`list_alerts`] selects.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    /// Only alerts of this status.
    pub status: Option<AlertStatus>,
    /// Only alerts of this rule.
    pub rule: Option<String>,
    /// Only alerts about this user.
    pub user_id: Option<String>,
    /// Alerts raised in the last `days` days (1..=366); `None` = 30.
    pub days: Option<u32>,
    /// Page size (1..=500); `None` = 50.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page; `None` = the newest page.
    pub cursor: Option<String>,
}

/// `GET alerts`: a page of alerts, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertPage {
    /// The alerts, newest first.
    pub alerts: Vec<Alert>,
    /// Pass as `cursor` to get the next (older) page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// Longest rule name accepted in a filter (rule names are short).
const MAX_RULE_CHARS: usize = 100;

/// The alerts that `filter` selects, newest first, one page.
pub async fn list_alerts(pool: &PgPool, filter: &AlertFilter) -> Result<AlertPage, QueryError> {
    let days = filter.days.unwrap_or(DEFAULT_ALERT_DAYS);
    check_days(days)?;
    let limit = filter.limit.unwrap_or(DEFAULT_ALERT_LIMIT);
    check_limit(limit, MAX_ALERT_LIMIT)?;
    if let Some(user_id) = &filter.user_id {
        check_user_id(user_id)?;
    }
    if let Some(rule) = &filter.rule {
        let chars = rule.chars().count();
        if chars == 0 || chars > MAX_RULE_CHARS {
            return Err(invalid(
                "rule",
                format!("rule must be 1 to {MAX_RULE_CHARS} characters (got {chars})"),
            ));
        }
    }
    let after = filter.cursor.as_deref().map(decode_cursor).transpose()?;
    let since = Utc::now() - TimeDelta::days(i64::from(days));
    let sql = format!(
        "SELECT {ALERT_COLUMNS} FROM {ALERTS_TABLE}
         WHERE created_at >= $1
           AND ($2::text IS NULL OR status = $2)
           AND ($3::text IS NULL OR rule = $3)
           AND ($4::text IS NULL OR user_id = $4)
           AND ($5::timestamptz IS NULL OR (created_at, id) < ($5, $6))
         ORDER BY created_at DESC, id DESC LIMIT $7"
    );
    let mut alerts: Vec<Alert> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(since)
        .bind(filter.status.map(AlertStatus::as_str))
        // Text with a NUL, which PostgreSQL refuses as a parameter, is
        // looked up as the writer would have stored it: no match.
        .bind(filter.rule.as_deref().map(crate::normalize::stored_user_id))
        .bind(
            filter
                .user_id
                .as_deref()
                .map(crate::normalize::stored_user_id),
        )
        .bind(after.map(|(at, _)| at))
        .bind(after.map(|(_, id)| id))
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await?;
    let more = alerts.len() > limit as usize;
    alerts.truncate(limit as usize);
    let next_cursor = more
        .then(|| alerts.last().map(|a| encode_cursor(a.created_at, a.id)))
        .flatten();
    Ok(AlertPage {
        alerts,
        next_cursor,
    })
}

/// One alert by id, `None` if there is none.
pub async fn get_alert(pool: &PgPool, id: Uuid) -> Result<Option<Alert>, QueryError> {
    let sql = format!("SELECT {ALERT_COLUMNS} FROM {ALERTS_TABLE} WHERE id = $1");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// Marks an alert acknowledged (again: a no-op keeping the first time) and
/// returns it; `None` if there is none.
pub async fn acknowledge_alert(pool: &PgPool, id: Uuid) -> Result<Option<Alert>, QueryError> {
    let sql = format!(
        "UPDATE {ALERTS_TABLE}
         SET status = 'acknowledged', acknowledged_at = COALESCE(acknowledged_at, now())
         WHERE id = $1 RETURNING {ALERT_COLUMNS}"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// Deletes the alerts whose last event is older than `cutoff` (retention;
/// their deliveries go with them); returns how many.
pub(crate) async fn forget_before(
    conn: &mut sqlx::PgConnection,
    cutoff: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM user_activity_alerts WHERE last_event_at < $1")
        .bind(cutoff)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}
