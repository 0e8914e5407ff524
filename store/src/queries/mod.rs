//! The admin API's queries as library functions, so an app can call them
//! without HTTP: statistics, one user's activity, the most active users,
//! feature usage and a user's behaviour path.
//!
//! Every window is "the last `days` UTC days": from midnight UTC of the day
//! `days - 1` days before today, with no upper bound (so `days = 1` is
//! today). Figures over many users come from the rollups (see
//! `store/migrations/0002_rollups.sql`), kept exact by the writer;
//! figures of one user come from the raw table through its
//! `(user_id, created_at)` index. Rows without a user id count as
//! activities but never as a user.
//!
//! ```no_run
//! # async fn demo(pool: sqlx::PgPool) -> Result<(), activity_store::queries::QueryError> {
//! use activity_store::queries;
//!
//! let stats = queries::get_user_activity_stats(&pool, "user-123", 30).await?;
//! println!("{} activities: {:?}", stats.total_activities, stats.activity_breakdown);
//! let top = queries::get_top_users(&pool, 30, 10).await?;
//! assert!(top.users.len() <= 10);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

pub(crate) use crate::normalize::stored_user_id;

pub mod profile;
pub use profile::build_user_profile;

/// Largest `days` accepted.
pub const MAX_DAYS: u32 = 366;
/// Bounds of `limit` for [`get_top_users`]: at most this many users.
pub const MAX_TOP_USERS: u32 = 1000;
/// Default page size of [`UserActivityStats::recent`].
pub const DEFAULT_RECENT_LIMIT: u32 = 50;
/// Largest page of [`UserActivityStats::recent`].
pub const MAX_RECENT_LIMIT: u32 = 500;
/// Largest `limit` for [`get_user_path`].
pub const MAX_PATH_LIMIT: u32 = 5000;
/// Longest user id accepted (the contract's limit).
pub const MAX_USER_ID_CHARS: usize = 255;
/// How many actions [`Statistics::top_actions`] lists.
pub const TOP_ACTIONS: usize = 10;

/// Why a query could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// A parameter is out of its bounds or malformed.
    #[error("invalid parameter `{parameter}`: {message}")]
    InvalidParameter {
        /// The parameter's name, as in the HTTP API.
        parameter: &'static str,
        /// What is wrong and what is accepted.
        message: String,
    },
    /// The database answered with an error or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

pub(crate) fn invalid(parameter: &'static str, message: impl Into<String>) -> QueryError {
    QueryError::InvalidParameter {
        parameter,
        message: message.into(),
    }
}

/// Folds the pending per-user counts (see [`crate::rollups`]) so that the
/// per-user rollups hold every batch committed so far: called before
/// reading them.
async fn fold_pending(pool: &PgPool) -> Result<(), QueryError> {
    crate::rollups::fold_pending(pool).await?;
    Ok(())
}

/// Checks `days` (1..=366).
pub fn check_days(days: u32) -> Result<(), QueryError> {
    if (1..=MAX_DAYS).contains(&days) {
        Ok(())
    } else {
        Err(invalid(
            "days",
            format!("days must be between 1 and {MAX_DAYS} (got {days})"),
        ))
    }
}

/// Checks a `limit` against `1..=max`.
pub fn check_limit(limit: u32, max: u32) -> Result<(), QueryError> {
    if (1..=max).contains(&limit) {
        Ok(())
    } else {
        Err(invalid(
            "limit",
            format!("limit must be between 1 and {max} (got {limit})"),
        ))
    }
}

/// Checks a user id (1..=255 characters).
pub fn check_user_id(user_id: &str) -> Result<(), QueryError> {
    let chars = user_id.chars().count();
    if chars == 0 || chars > MAX_USER_ID_CHARS {
        Err(invalid(
            "user_id",
            format!("user_id must be 1 to {MAX_USER_ID_CHARS} characters (got {chars})"),
        ))
    } else {
        Ok(())
    }
}

/// The first day of the window and its first instant.
#[derive(Debug, Clone, Copy)]
struct Window {
    today: NaiveDate,
    start_day: NaiveDate,
    start: DateTime<Utc>,
}

impl Window {
    fn last_days(days: u32) -> Result<Self, QueryError> {
        check_days(days)?;
        let today = Utc::now().date_naive();
        let start_day = today - TimeDelta::days(i64::from(days) - 1);
        Ok(Self {
            today,
            start_day,
            start: start_day.and_time(NaiveTime::MIN).and_utc(),
        })
    }

    fn days(&self) -> impl Iterator<Item = NaiveDate> {
        self.start_day.iter_days().take_while(|d| *d <= self.today)
    }
}

/// One action's usage over a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActionUsage {
    /// The action name.
    pub action: String,
    /// Activities with this action.
    pub usage_count: i64,
    /// Distinct users who did it.
    pub user_count: i64,
}

/// One UTC day of [`Statistics::daily`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DailyFigure {
    /// The UTC day.
    pub date: NaiveDate,
    /// Activities that day.
    pub count: i64,
    /// Distinct users active that day.
    pub active_users: i64,
}

/// `GET statistics`: activity over the last `days` days.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Statistics {
    /// The window, in days.
    pub days: u32,
    /// First instant of the window (midnight UTC).
    pub since: DateTime<Utc>,
    /// Activities in the window.
    pub total_activities: i64,
    /// Activities today (UTC).
    pub today_activities: i64,
    /// Distinct users active in the window.
    pub active_users: i64,
    /// Activities per action.
    pub activity_breakdown: BTreeMap<String, i64>,
    /// One entry per day of the window, oldest first, zero-filled.
    pub daily: Vec<DailyFigure>,
    /// Activities by hour of day (UTC), 24 entries, hour 0 first.
    pub hourly: Vec<i64>,
    /// The most used actions (at most 10), by usage.
    pub top_actions: Vec<ActionUsage>,
}

/// Usage and users per action over a window, from the rollups.
async fn action_figures(
    pool: &PgPool,
    w: &Window,
) -> Result<(Vec<ActionUsage>, [i64; 24], i64), QueryError> {
    fold_pending(pool).await?;
    let rows: Vec<(String, i32, bool, i64)> = sqlx::query_as(
        "SELECT action::text,
                EXTRACT(HOUR FROM bucket AT TIME ZONE 'UTC')::int4,
                bucket >= $2,
                SUM(n)::int8
         FROM activity_rollup_hourly WHERE bucket >= $1
         GROUP BY 1, 2, 3",
    )
    .bind(w.start)
    .bind(w.today.and_time(NaiveTime::MIN).and_utc())
    .fetch_all(pool)
    .await?;
    let users: Vec<(String, i64)> = sqlx::query_as(
        "SELECT action::text, SUM(n)::int8 FROM activity_rollup_action_last_hist
         WHERE last_day >= $1 GROUP BY 1",
    )
    .bind(w.start_day)
    .fetch_all(pool)
    .await?;
    let users: BTreeMap<String, i64> = users.into_iter().collect();
    let mut usage: BTreeMap<String, i64> = BTreeMap::new();
    let mut hourly = [0i64; 24];
    let mut today = 0;
    for (action, hour, is_today, n) in rows {
        *usage.entry(action).or_default() += n;
        if let Some(slot) = usize::try_from(hour).ok().and_then(|h| hourly.get_mut(h)) {
            *slot += n;
        }
        if is_today {
            today += n;
        }
    }
    let mut actions: Vec<ActionUsage> = usage
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(action, usage_count)| ActionUsage {
            user_count: users.get(&action).copied().unwrap_or(0),
            action,
            usage_count,
        })
        .collect();
    actions.sort_by(|a, b| {
        b.usage_count
            .cmp(&a.usage_count)
            .then_with(|| a.action.cmp(&b.action))
    });
    Ok((actions, hourly, today))
}

/// Statistics over the last `days` days (`GET statistics`).
pub async fn get_statistics(pool: &PgPool, days: u32) -> Result<Statistics, QueryError> {
    let w = Window::last_days(days)?;
    let (actions, hourly, today_activities) = action_figures(pool, &w).await?;
    let daily_rows: Vec<(NaiveDate, i64, i64)> =
        sqlx::query_as("SELECT day, activities, users FROM activity_rollup_daily WHERE day >= $1")
            .bind(w.start_day)
            .fetch_all(pool)
            .await?;
    let by_day: BTreeMap<NaiveDate, (i64, i64)> = daily_rows
        .into_iter()
        .map(|(d, a, u)| (d, (a, u)))
        .collect();
    let (active_users,): (i64,) = sqlx::query_as(
        "SELECT COALESCE(SUM(n), 0)::int8 FROM activity_rollup_user_last_hist WHERE last_day >= $1",
    )
    .bind(w.start_day)
    .fetch_one(pool)
    .await?;
    Ok(Statistics {
        days,
        since: w.start,
        total_activities: actions.iter().map(|a| a.usage_count).sum(),
        today_activities,
        active_users,
        activity_breakdown: actions
            .iter()
            .map(|a| (a.action.clone(), a.usage_count))
            .collect(),
        daily: w
            .days()
            .map(|date| {
                let (count, active_users) = by_day.get(&date).copied().unwrap_or((0, 0));
                DailyFigure {
                    date,
                    count,
                    active_users,
                }
            })
            .collect(),
        hourly: hourly.to_vec(),
        top_actions: actions.into_iter().take(TOP_ACTIONS).collect(),
    })
}

/// `GET actions`: feature usage over the last `days` days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActionUsageReport {
    /// The window, in days.
    pub days: u32,
    /// Every action used in the window, most used first (ties by name).
    pub actions: Vec<ActionUsage>,
}

/// Usage count and distinct users per action over the last `days` days
/// (`GET actions`, the original design's feature-usage query).
pub async fn get_action_usage(pool: &PgPool, days: u32) -> Result<ActionUsageReport, QueryError> {
    let w = Window::last_days(days)?;
    let (actions, _, _) = action_figures(pool, &w).await?;
    Ok(ActionUsageReport { days, actions })
}

/// One entry of [`TopUsers::users`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopUser {
    /// The user id.
    pub user_id: String,
    /// Activities in the window.
    pub activity_count: i64,
    /// Distinct actions in the window.
    pub action_types: i64,
}

/// `GET top-users`: the most active users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopUsers {
    /// The window, in days.
    pub days: u32,
    /// Most active first (ties by user id).
    pub users: Vec<TopUser>,
}

/// How deep the threshold algorithm first reads each day's list.
const TOP_USERS_FIRST_DEPTH: i64 = 64;
/// Past this depth a plain aggregate over the window is cheaper.
const TOP_USERS_MAX_DEPTH: i64 = 4096;

/// The `limit` users with the most activities in the window, most first
/// (ties by user id), exactly.
///
/// The threshold algorithm over the per-day lists of the (day, n DESC)
/// index: read the top `depth` users of every day of the window; a user
/// not read has on each day at most the last count read that day (or
/// nothing, when a day's list ended), so at most their sum, the threshold.
/// When the `limit`-th best total among the users read beats the
/// threshold, no one else can enter (or tie into) the answer. Otherwise
/// read deeper; past [`TOP_USERS_MAX_DEPTH`], aggregate the whole window.
async fn top_user_counts(
    pool: &PgPool,
    w: &Window,
    limit: u32,
    first_depth: i64,
) -> Result<Vec<(String, i64)>, QueryError> {
    let mut depth = first_depth.max(i64::from(limit));
    while depth <= TOP_USERS_MAX_DEPTH {
        // Per day: its top `depth` users, and whether its list went on.
        let read: Vec<(NaiveDate, String, i64, i64)> = sqlx::query_as(
            "SELECT d::date, t.user_id, t.n, t.rn
             FROM generate_series($1::date,
                    GREATEST($1::date, (SELECT MAX(day) FROM activity_rollup_user_daily)),
                    interval '1 day') d
             CROSS JOIN LATERAL (
                 SELECT user_id, n, row_number() OVER (ORDER BY n DESC) AS rn
                 FROM (SELECT user_id, n FROM activity_rollup_user_daily
                       WHERE day = d::date ORDER BY n DESC LIMIT $2) top
             ) t",
        )
        .bind(w.start_day)
        .bind(depth)
        .fetch_all(pool)
        .await?;
        // The last count read on each day whose list was cut at `depth`:
        // a user not read that day had at most this much then.
        let cut: BTreeMap<NaiveDate, i64> = read
            .iter()
            .filter(|r| r.3 == depth)
            .map(|r| (r.0, r.2))
            .collect();
        let threshold: i64 = cut.values().sum();
        // Per user read: the counts read (a lower bound of the total) and
        // the cut values of the cut days they were read on.
        let mut seen: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        for (day, user, n, _) in &read {
            let e = seen.entry(user.as_str()).or_default();
            e.0 += n;
            e.1 += cut.get(day).copied().unwrap_or(0);
        }
        // Only users whose best case reaches the `limit`-th worst case can
        // be in the answer; the others need no exact total.
        let mut lower: Vec<i64> = seen.values().map(|(known, _)| *known).collect();
        lower.sort_unstable_by(|a, b| b.cmp(a));
        let bar = lower.get(limit as usize - 1).copied().unwrap_or(0);
        let candidates: Vec<&str> = seen
            .iter()
            .filter(|(_, (known, cut_seen))| known + threshold - cut_seen >= bar)
            .map(|(user, _)| *user)
            .collect();
        // One key lookup per candidate (index-only on (user_id, day) INCLUDE n).
        let top: Vec<(String, i64)> = sqlx::query_as(
            "SELECT u.user_id, s.c FROM unnest($1::text[]) AS u(user_id)
             CROSS JOIN LATERAL (
                 SELECT SUM(n)::int8 AS c FROM activity_rollup_user_daily r
                 WHERE r.user_id = u.user_id AND r.day >= $2) s
             WHERE s.c IS NOT NULL ORDER BY s.c DESC, u.user_id LIMIT $3",
        )
        .bind(&candidates)
        .bind(w.start_day)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
        let settled = threshold == 0
            || (top.len() == limit as usize && top.last().is_some_and(|(_, c)| *c > threshold));
        if settled {
            return Ok(top);
        }
        depth *= 8;
    }
    Ok(sqlx::query_as(
        "SELECT user_id, SUM(n)::int8 AS c FROM activity_rollup_user_daily
         WHERE day >= $1 GROUP BY user_id ORDER BY c DESC, user_id LIMIT $2",
    )
    .bind(w.start_day)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?)
}

/// The `limit` most active users over the last `days` days (`GET
/// top-users`, the original design's "most active users" query).
pub async fn get_top_users(pool: &PgPool, days: u32, limit: u32) -> Result<TopUsers, QueryError> {
    let w = Window::last_days(days)?;
    check_limit(limit, MAX_TOP_USERS)?;
    fold_pending(pool).await?;
    let top = top_user_counts(pool, &w, limit, TOP_USERS_FIRST_DEPTH).await?;
    let ids: Vec<String> = top.iter().map(|(u, _)| u.clone()).collect();
    let kinds: Vec<(String, i64)> = sqlx::query_as(
        "SELECT user_id, COUNT(*)::int8 FROM activity_rollup_user_action_last
         WHERE user_id = ANY($1) AND last_day >= $2 GROUP BY user_id",
    )
    .bind(&ids)
    .bind(w.start_day)
    .fetch_all(pool)
    .await?;
    let kinds: BTreeMap<String, i64> = kinds.into_iter().collect();
    Ok(TopUsers {
        days,
        users: top
            .into_iter()
            .map(|(user_id, activity_count)| TopUser {
                action_types: kinds.get(&user_id).copied().unwrap_or(0),
                user_id,
                activity_count,
            })
            .collect(),
    })
}

/// One stored activity, as [`UserActivityStats::recent`] lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActivityRecord {
    /// The activity id (UUID v7).
    pub id: Uuid,
    /// The action name.
    pub action: String,
    /// Kind of the resource acted on.
    pub resource_type: Option<String>,
    /// Id of the resource acted on.
    pub resource_id: Option<String>,
    /// Free-form details (JSON object).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub details: Option<serde_json::Value>,
    /// Client IP address.
    pub ip_address: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// The app's session id.
    pub session_id: Option<String>,
    /// When it happened.
    pub created_at: DateTime<Utc>,
}

/// One IP address of a user, with how often it was used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IpCount {
    /// The address.
    pub ip_address: String,
    /// Activities from it in the window.
    pub count: i64,
}

/// `GET user/{user_id}`: one user's activity over the last `days` days.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserActivityStats {
    /// The user id.
    pub user_id: String,
    /// The window, in days.
    pub days: u32,
    /// Activities in the window.
    pub total_activities: i64,
    /// Activities per action.
    pub activity_breakdown: BTreeMap<String, i64>,
    /// The user's first activity in the window.
    pub first_seen: Option<DateTime<Utc>>,
    /// The user's last activity in the window.
    pub last_seen: Option<DateTime<Utc>>,
    /// Distinct IP addresses with their counts, most used first.
    pub ip_addresses: Vec<IpCount>,
    /// The newest activities, newest first (one page).
    pub recent: Vec<ActivityRecord>,
    /// Pass as `cursor` to get the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A page of [`UserActivityStats::recent`].
#[derive(Debug, Clone, Default)]
pub struct RecentPage {
    /// Page size (1..=500); `None` = 50.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page; `None` = the newest page.
    pub cursor: Option<String>,
}

/// Keyset position `(created_at, id)` of the last row of a page, as an
/// opaque string: 16 hex digits of microseconds then the id's 32.
pub(crate) fn encode_cursor(at: DateTime<Utc>, id: Uuid) -> String {
    format!("{:016x}{}", at.timestamp_micros(), id.simple())
}

/// A cursor made by [`encode_cursor`] read back; anything else (a crafted
/// `f000…`, garbage) is an invalid parameter, never a query.
pub(crate) fn decode_cursor(cursor: &str) -> Result<(DateTime<Utc>, Uuid), QueryError> {
    let bad = || invalid("cursor", "cursor is not a next_cursor returned by this API");
    // Hex digits only: `from_str_radix` would also take a sign (`+fff…`),
    // which no cursor of ours holds.
    if cursor.len() != 48 || !cursor.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    // The hex of an `i64` (two's complement): a row before 1970 has one too.
    let micros = u64::from_str_radix(&cursor[..16], 16).map_err(|_| bad())? as i64;
    let at = DateTime::from_timestamp_micros(micros)
        .filter(|at| at.timestamp_micros() >= PG_MIN_TIMESTAMP)
        .ok_or_else(bad)?;
    let id = Uuid::try_parse(&cursor[16..]).map_err(|_| bad())?;
    Ok((at, id))
}

/// The start of PostgreSQL's `timestamptz` range (4714-11-24 BC) in
/// microseconds since 1970: no stored row, so no cursor, lies before it.
/// Its end lies beyond chrono's, which `from_timestamp_micros` checks.
const PG_MIN_TIMESTAMP: i64 = -210_866_803_200_000_000;

type RecordRow = (
    Uuid,
    String,
    Option<String>,
    Option<String>,
    Option<serde_json::Value>,
    Option<String>,
    Option<String>,
    Option<String>,
    DateTime<Utc>,
);

/// One user's activity over the last `days` days, with the newest page of
/// `recent` (`GET user/{user_id}`; the original design's
/// `get_user_activity_stats`).
pub async fn get_user_activity_stats(
    pool: &PgPool,
    user_id: &str,
    days: u32,
) -> Result<UserActivityStats, QueryError> {
    get_user_activity_stats_page(pool, user_id, days, RecentPage::default()).await
}

/// [`get_user_activity_stats`] with a chosen page of `recent`.
pub async fn get_user_activity_stats_page(
    pool: &PgPool,
    user_id: &str,
    days: u32,
    page: RecentPage,
) -> Result<UserActivityStats, QueryError> {
    check_user_id(user_id)?;
    let stored = stored_user_id(user_id);
    let user_id: &str = &stored;
    let w = Window::last_days(days)?;
    let limit = page.limit.unwrap_or(DEFAULT_RECENT_LIMIT);
    check_limit(limit, MAX_RECENT_LIMIT)?;
    let after = page.cursor.as_deref().map(decode_cursor).transpose()?;

    let per_action: Vec<(String, i64, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT action::text, COUNT(*)::int8, MIN(created_at), MAX(created_at)
         FROM user_activity_logs WHERE user_id = $1 AND created_at >= $2 GROUP BY 1",
    )
    .bind(user_id)
    .bind(w.start)
    .fetch_all(pool)
    .await?;
    let ips: Vec<(String, i64)> = sqlx::query_as(
        "SELECT host(ip_address), COUNT(*)::int8 FROM user_activity_logs
         WHERE user_id = $1 AND created_at >= $2 AND ip_address IS NOT NULL
         GROUP BY 1 ORDER BY 2 DESC, 1",
    )
    .bind(user_id)
    .bind(w.start)
    .fetch_all(pool)
    .await?;
    let mut rows: Vec<RecordRow> = sqlx::query_as(
        "SELECT id, action::text, resource_type::text, resource_id::text, details,
                host(ip_address), user_agent::text, session_id::text, created_at
         FROM user_activity_logs
         WHERE user_id = $1 AND created_at >= $2
           AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
         ORDER BY created_at DESC, id DESC LIMIT $5",
    )
    .bind(user_id)
    .bind(w.start)
    .bind(after.map(|(at, _)| at))
    .bind(after.map(|(_, id)| id))
    .bind(i64::from(limit) + 1)
    .fetch_all(pool)
    .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let recent: Vec<ActivityRecord> = rows
        .into_iter()
        .map(
            |(id, action, resource_type, resource_id, details, ip, ua, session, created_at)| {
                ActivityRecord {
                    id,
                    action,
                    resource_type,
                    resource_id,
                    details,
                    ip_address: ip,
                    user_agent: ua,
                    session_id: session,
                    created_at,
                }
            },
        )
        .collect();
    let next_cursor = more
        .then(|| recent.last().map(|r| encode_cursor(r.created_at, r.id)))
        .flatten();
    Ok(UserActivityStats {
        user_id: user_id.to_owned(),
        days,
        total_activities: per_action.iter().map(|r| r.1).sum(),
        first_seen: per_action.iter().map(|r| r.2).min(),
        last_seen: per_action.iter().map(|r| r.3).max(),
        activity_breakdown: per_action.into_iter().map(|r| (r.0, r.1)).collect(),
        ip_addresses: ips
            .into_iter()
            .map(|(ip_address, count)| IpCount { ip_address, count })
            .collect(),
        recent,
        next_cursor,
    })
}

/// One step of [`UserPath::steps`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PathStep {
    /// The action name.
    pub action: String,
    /// Kind of the resource acted on.
    pub resource_type: Option<String>,
    /// Id of the resource acted on.
    pub resource_id: Option<String>,
    /// When it happened.
    pub created_at: DateTime<Utc>,
    /// The user's action just before this one in the window, if any.
    pub prev_action: Option<String>,
}

/// `GET user/{user_id}/path`: a user's sequence of actions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserPath {
    /// The user id.
    pub user_id: String,
    /// The window, in days.
    pub days: u32,
    /// The user's last `limit` actions in the window, oldest first.
    pub steps: Vec<PathStep>,
    /// Whether older steps in the window were left out by `limit`.
    pub truncated: bool,
}

/// `(action, resource_type, resource_id, created_at)`.
type PathRow = (String, Option<String>, Option<String>, DateTime<Utc>);

/// A user's last `limit` actions over the last `days` days in time order,
/// each with the action before it (`GET user/{user_id}/path`, the original
/// design's behaviour-path query: `LAG(action) OVER (ORDER BY created_at)`,
/// ties ordered by id).
pub async fn get_user_path(
    pool: &PgPool,
    user_id: &str,
    days: u32,
    limit: u32,
) -> Result<UserPath, QueryError> {
    check_user_id(user_id)?;
    let stored = stored_user_id(user_id);
    let user_id: &str = &stored;
    let w = Window::last_days(days)?;
    check_limit(limit, MAX_PATH_LIMIT)?;
    // One row more than asked: its action is the first step's prev_action.
    let mut rows: Vec<PathRow> = sqlx::query_as(
        "SELECT action::text, resource_type::text, resource_id::text, created_at
         FROM user_activity_logs WHERE user_id = $1 AND created_at >= $2
         ORDER BY created_at DESC, id DESC LIMIT $3",
    )
    .bind(user_id)
    .bind(w.start)
    .bind(i64::from(limit) + 1)
    .fetch_all(pool)
    .await?;
    rows.reverse();
    let truncated = rows.len() > limit as usize;
    let mut prev = None;
    let mut steps = Vec::with_capacity(rows.len());
    for (i, (action, resource_type, resource_id, created_at)) in rows.into_iter().enumerate() {
        if !(truncated && i == 0) {
            steps.push(PathStep {
                action: action.clone(),
                resource_type,
                resource_id,
                created_at,
                prev_action: prev.clone(),
            });
        }
        prev = Some(action);
    }
    Ok(UserPath {
        user_id: user_id.to_owned(),
        days,
        steps,
        truncated,
    })
}

/// The database figures of `GET queue-status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActivityTotals {
    /// Activities today (UTC).
    pub today_activities: i64,
    /// Activities stored, all time (within retention).
    pub total_activities: i64,
    /// Distinct users active today (UTC).
    pub active_users_today: i64,
}

/// Today's and all-time activity counts, from the rollups.
pub async fn get_activity_totals(pool: &PgPool) -> Result<ActivityTotals, QueryError> {
    fold_pending(pool).await?;
    let (today_activities, total_activities, active_users_today): (i64, i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(activities) FILTER (WHERE day = $1), 0)::int8,
                    COALESCE(SUM(activities), 0)::int8,
                    COALESCE(SUM(users) FILTER (WHERE day = $1), 0)::int8
             FROM activity_rollup_daily",
    )
    .bind(Utc::now().date_naive())
    .fetch_one(pool)
    .await?;
    Ok(ActivityTotals {
        today_activities,
        total_activities,
        active_users_today,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let at = DateTime::from_timestamp_micros(1_780_000_000_123_456).unwrap();
        let id = Uuid::now_v7();
        let c = encode_cursor(at, id);
        assert_eq!(decode_cursor(&c).unwrap(), (at, id));
        for bad in [
            "",
            "zz",
            &c[1..],
            "'; DROP TABLE x; --aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            // Found by the `cursor` fuzz target: a sign where a digit goes.
            "+FFFFFFDFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF",
            "+0000000000000000000000000000000000000000000000f",
            // Issue 20, item 4: a time PostgreSQL cannot hold.
            "f000000000000000019a0c4f6f1e7b8a9c2d3e4f5a6b7c8d",
            "7fffffffffffffff019a0c4f6f1e7b8a9c2d3e4f5a6b7c8d",
            "8000000000000000019a0c4f6f1e7b8a9c2d3e4f5a6b7c8d",
        ] {
            assert!(matches!(
                decode_cursor(bad),
                Err(QueryError::InvalidParameter {
                    parameter: "cursor",
                    ..
                })
            ));
        }
    }

    #[test]
    fn bounds_name_their_parameter() {
        assert!(check_days(1).is_ok() && check_days(366).is_ok());
        for d in [0, 367] {
            assert!(matches!(
                check_days(d),
                Err(QueryError::InvalidParameter {
                    parameter: "days",
                    ..
                })
            ));
        }
        assert!(check_user_id(&"x".repeat(255)).is_ok());
        assert!(check_user_id(&"x".repeat(256)).is_err());
        assert!(check_user_id("").is_err());
        assert!(check_limit(0, 10).is_err() && check_limit(11, 10).is_err());
    }

    #[test]
    fn window_has_one_day_per_day() {
        let w = Window::last_days(7).unwrap();
        assert_eq!(w.days().count(), 7);
        assert_eq!(w.days().last(), Some(w.today));
    }
}

#[cfg(test)]
mod db_tests;
