//! The user profile (the original design's `build_user_profile`): how
//! active a user is, what they use most, when (in a time zone of the
//! caller's choice), from which addresses, and a risk score made of named,
//! weighted factors. `docs/profile.md` explains every figure and the
//! score's formula.
//!
//! ```no_run
//! # async fn demo(pool: sqlx::PgPool) -> Result<(), activity_store::queries::QueryError> {
//! use activity_store::queries::{self, profile::{ProfileOptions, parse_time_zone}};
//!
//! let profile = queries::build_user_profile(&pool, "user-123", 90).await?;
//! println!("{:?}, risk {}", profile.activity_level, profile.risk_score.score);
//!
//! let options = ProfileOptions {
//!     days: 30,
//!     time_zone: parse_time_zone("America/New_York")?,
//! };
//! let local = queries::profile::build_user_profile_with(&pool, "user-123", &options).await?;
//! assert_eq!(local.usage_pattern.hourly.len(), 24);
//! # Ok(()) }
//! ```
//!
//! Every figure but the open alerts comes from one statement: an
//! index-only range scan of the window on the covering `(user_id,
//! created_at) INCLUDE (action, ip_address)` index (migration 0007; the
//! rollups hold no per-user hour, weekday or address figures, so they
//! could not spare it), aggregated in the database, and the failed logins
//! from a partial index of them; the open alerts are one lookup in
//! `user_activity_alerts`. The hour and weekday of an activity are those
//! of its `created_at` in the chosen zone, with the zone's UTC offsets
//! taken from `chrono-tz` (not from the server's time-zone database), so
//! the answer is the same on every server.

use chrono::{DateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use sqlx::PgPool;

use super::{QueryError, Window, check_user_id, invalid};

/// The window of the original design's profile, in days (the default).
pub const DEFAULT_PROFILE_DAYS: u32 = 90;
/// The window the activity thresholds are stated for, in days.
pub const ACTIVITY_REFERENCE_DAYS: u32 = 90;
/// More activities than this per [`ACTIVITY_REFERENCE_DAYS`] is
/// [`ActivityLevel::High`] (the original design's rule).
pub const HIGH_ACTIVITY_ABOVE: u32 = 100;
/// More activities than this per [`ACTIVITY_REFERENCE_DAYS`] (and not
/// high) is [`ActivityLevel::Medium`]; this many or fewer is low.
pub const MEDIUM_ACTIVITY_ABOVE: u32 = 10;
/// How many actions [`UserProfile::primary_functions`] lists.
pub const PRIMARY_FUNCTIONS: usize = 5;
/// First local hour of the working day: activity before it is off-hours.
pub const WORKING_DAY_START_HOUR: u32 = 8;
/// Local hour the working day ends: activity from it on is off-hours.
pub const WORKING_DAY_END_HOUR: u32 = 20;
/// An address first used this many days ago or later is new.
pub const NEW_IP_DAYS: i64 = 7;
/// How many new addresses [`IpSummary::new_ips`] lists (the newest).
pub const NEW_IPS_LISTED: usize = 20;
/// The actions that move money: a payment made, a withdrawal asked for
/// (their outcomes, `payment_success`, `withdrawal_approve`, ..., are the
/// same movement again and do not count twice).
pub const MONEY_ACTIONS: [&str; 2] = ["payment_create", "withdrawal_request"];
/// An app's own action for a failed login (a `login` answered with a 4xx
/// status is one too).
pub const LOGIN_FAILED_ACTION: &str = "login_failed";

/// Every name [`parse_time_zone`] accepts as written (the IANA names of
/// the time-zone data this build carries), for the API's documents.
pub fn time_zone_names() -> impl Iterator<Item = &'static str> {
    chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())
}

/// Checks and parses an IANA time-zone name (`tz`), e.g. `Europe/Berlin`.
pub fn parse_time_zone(name: &str) -> Result<Tz, QueryError> {
    name.parse::<Tz>().map_err(|_| {
        invalid(
            "tz",
            format!(
                "tz must be an IANA time-zone name such as UTC or America/New_York (got {name:?})"
            ),
        )
    })
}

/// What [`build_user_profile_with`] looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileOptions {
    /// The window: the last `days` UTC days (1..=366), as every endpoint.
    pub days: u32,
    /// The zone of the hour-of-day and weekday counts and of off-hours.
    pub time_zone: Tz,
}

impl Default for ProfileOptions {
    fn default() -> Self {
        Self {
            days: DEFAULT_PROFILE_DAYS,
            time_zone: Tz::UTC,
        }
    }
}

/// How active a user is, by their activities per day of the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ActivityLevel {
    /// At most [`ActivityThresholds::medium_above`] activities.
    Low,
    /// More than `medium_above`, at most `high_above`.
    Medium,
    /// More than [`ActivityThresholds::high_above`] activities.
    High,
}

/// The activity counts that separate the levels over this window: the
/// counts per [`ACTIVITY_REFERENCE_DAYS`] scaled by `days / 90`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActivityThresholds {
    /// More activities than this is medium (10 × days / 90).
    pub medium_above: f64,
    /// More activities than this is high (100 × days / 90).
    pub high_above: f64,
}

impl ActivityThresholds {
    /// The thresholds of a window of `days` days.
    pub fn for_days(days: u32) -> Self {
        let scale = f64::from(days) / f64::from(ACTIVITY_REFERENCE_DAYS);
        Self {
            medium_above: f64::from(MEDIUM_ACTIVITY_ABOVE) * scale,
            high_above: f64::from(HIGH_ACTIVITY_ABOVE) * scale,
        }
    }
}

/// The level of `total` activities in `days` days. Compared in integers
/// (`total × 90 > 100 × days`), so a count exactly on a threshold is
/// never decided by rounding.
pub fn activity_level(total: i64, days: u32) -> ActivityLevel {
    let scaled = i128::from(total) * i128::from(ACTIVITY_REFERENCE_DAYS);
    let days = i128::from(days);
    if scaled > i128::from(HIGH_ACTIVITY_ABOVE) * days {
        ActivityLevel::High
    } else if scaled > i128::from(MEDIUM_ACTIVITY_ABOVE) * days {
        ActivityLevel::Medium
    } else {
        ActivityLevel::Low
    }
}

/// One of the user's most used actions.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PrimaryFunction {
    /// The action name.
    pub action: String,
    /// The user's activities with this action in the window.
    pub count: i64,
    /// `count` over the user's activities in the window (0..=1).
    pub share: f64,
}

/// When the user is active, in [`UsagePattern::time_zone`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsagePattern {
    /// The IANA zone of the counts (`tz`; `UTC` by default).
    pub time_zone: String,
    /// The version of the IANA time-zone data the zone's offsets came
    /// from (`chrono-tz`'s), e.g. `2025b`.
    pub tz_database: String,
    /// Activities by local hour of day: 24 entries, hour 0 first.
    pub hourly: Vec<i64>,
    /// Activities by local weekday: 7 entries, Monday first.
    pub weekdays: Vec<i64>,
    /// The local hour with the most activities (the earliest of a tie);
    /// null without activities.
    pub peak_hour: Option<u32>,
    /// Share of the activities before 08:00 or from 20:00 local time
    /// (0..=1; 0 without activities).
    pub off_hours_share: f64,
}

/// An address first used by the user in the last [`NEW_IP_DAYS`] days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewIp {
    /// The address.
    pub ip_address: String,
    /// The user's first activity from it in the window.
    pub first_seen: DateTime<Utc>,
    /// The user's last activity from it.
    pub last_seen: DateTime<Utc>,
    /// The user's activities from it in the window.
    pub count: i64,
}

/// The addresses the user acted from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IpSummary {
    /// Distinct addresses in the window.
    pub distinct_ips: i64,
    /// An address whose first use in the window is at or after this
    /// instant (now − 7 days) is new.
    pub new_since: DateTime<Utc>,
    /// How many addresses are new.
    pub new_ip_count: i64,
    /// The newest of them (at most 20), most recently first seen first.
    pub new_ips: Vec<NewIp>,
}

/// One named part of the risk score.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RiskFactor {
    /// `failed_logins`, `open_alerts`, `distinct_ips`, `off_hours_share`
    /// or `money_movements`.
    pub name: String,
    /// The user's figure.
    pub value: f64,
    /// Points at or below this value: none.
    pub baseline: f64,
    /// Points at or above this value: all of `weight`.
    pub saturates_at: f64,
    /// The most points this factor gives; the weights add up to 100.
    pub weight: f64,
    /// `weight × clamp((value − baseline) / (saturates_at − baseline), 0, 1)`.
    pub points: f64,
}

impl RiskFactor {
    fn new(name: &str, value: f64, baseline: f64, saturates_at: f64, weight: f64) -> Self {
        let part = ((value - baseline) / (saturates_at - baseline)).clamp(0.0, 1.0);
        Self {
            name: name.to_owned(),
            value,
            baseline,
            saturates_at,
            weight,
            points: weight * part,
        }
    }
}

/// A 0–100 score with the factors that make it up.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RiskScore {
    /// The factors' points added up, rounded to the nearest whole number.
    pub score: u32,
    /// Every factor, in the order of `docs/profile.md`.
    pub factors: Vec<RiskFactor>,
}

/// The figures the risk score is made of.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RiskInputs {
    /// Failed logins in the window.
    pub failed_logins: i64,
    /// The user's open alerts (of any time).
    pub open_alerts: i64,
    /// Distinct addresses in the window.
    pub distinct_ips: i64,
    /// Share of off-hours activity (0..=1).
    pub off_hours_share: f64,
    /// `payment_create` and `withdrawal_request` activities in the window.
    pub money_movements: i64,
}

/// The risk score of `inputs`: deterministic, see `docs/profile.md`.
pub fn risk_score(inputs: &RiskInputs) -> RiskScore {
    let factors = vec![
        RiskFactor::new(
            "failed_logins",
            inputs.failed_logins as f64,
            0.0,
            10.0,
            30.0,
        ),
        RiskFactor::new("open_alerts", inputs.open_alerts as f64, 0.0, 3.0, 25.0),
        RiskFactor::new("distinct_ips", inputs.distinct_ips as f64, 1.0, 10.0, 15.0),
        RiskFactor::new("off_hours_share", inputs.off_hours_share, 0.0, 1.0, 15.0),
        RiskFactor::new(
            "money_movements",
            inputs.money_movements as f64,
            0.0,
            20.0,
            15.0,
        ),
    ];
    let total: f64 = factors.iter().map(|f| f.points).sum();
    RiskScore {
        score: total.round().clamp(0.0, 100.0) as u32,
        factors,
    }
}

/// `GET user/{user_id}/profile`: one user's profile over the last `days` days.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserProfile {
    /// The user id.
    pub user_id: String,
    /// The window, in days.
    pub days: u32,
    /// First instant of the window (midnight UTC).
    pub since: DateTime<Utc>,
    /// The user's activities in the window.
    pub total_activities: i64,
    /// The user's first activity in the window.
    pub first_seen: Option<DateTime<Utc>>,
    /// The user's last activity in the window.
    pub last_seen: Option<DateTime<Utc>>,
    /// Low, medium or high, by `activity_thresholds`.
    pub activity_level: ActivityLevel,
    /// The counts that separate the levels over this window.
    pub activity_thresholds: ActivityThresholds,
    /// The most used actions (at most 5), most used first (ties by name).
    pub primary_functions: Vec<PrimaryFunction>,
    /// When the user is active.
    pub usage_pattern: UsagePattern,
    /// Where the user acts from.
    pub ip_summary: IpSummary,
    /// How risky the activity looks, and why.
    pub risk_score: RiskScore,
}

/// The user's profile over the last `days` UTC days, hours in UTC (the
/// original design's `build_user_profile`; `days` 1..=366).
pub async fn build_user_profile(
    pool: &PgPool,
    user_id: &str,
    days: u32,
) -> Result<UserProfile, QueryError> {
    let options = ProfileOptions {
        days,
        ..ProfileOptions::default()
    };
    build_user_profile_with(pool, user_id, &options).await
}

/// The zone's UTC offsets (seconds east) from `from` to `to`: `starts[i]`
/// is when `offsets[i]` takes effect, `starts[0] = from`. Found by reading
/// the offset every hour and bisecting to the second where it changed
/// (a zone never changes twice within an hour).
fn offsets_between(
    tz: Tz,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> (Vec<DateTime<Utc>>, Vec<i32>) {
    let offset_at = |at: DateTime<Utc>| {
        tz.offset_from_utc_datetime(&at.naive_utc())
            .fix()
            .local_minus_utc()
    };
    let mut starts = vec![from];
    let mut offsets = vec![offset_at(from)];
    let step = TimeDelta::hours(1);
    let mut before = from;
    while before < to {
        let after = before + step;
        let current = *offsets.last().expect("one offset at least");
        if offset_at(after) != current {
            // The change is in (before, after]: bisect to the second.
            let (mut lo, mut hi) = (before, after);
            while hi - lo > TimeDelta::seconds(1) {
                let mid = lo + (hi - lo) / 2;
                if offset_at(mid) == current {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            starts.push(hi);
            offsets.push(offset_at(hi));
        }
        before = after;
    }
    (starts, offsets)
}

/// One row of the profile statement: what it describes is `kind`.
///
/// - `a`: one action: `n` activities, the first and last in `first`/`last`;
/// - `w`: one local hour of the week (`bucket`, 0 = Monday 00:00–00:59,
///   167 = Sunday 23:00–23:59): `n` activities;
/// - `i`: the addresses: `n` distinct, `m` new;
/// - `f`: `n` failed logins;
/// - `n`: one new address (`ip`): `n` activities, `first`/`last`.
type ProfileRow = (
    String,
    Option<String>,
    Option<i32>,
    i64,
    i64,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<String>,
);

/// Every aggregate of the profile in one statement. The user's rows of the
/// window are read once into `r` (an index-only scan of the covering
/// `(user_id, created_at) INCLUDE (action, ip_address)` index, migration
/// 0007), then grouped by action, by local hour of the week and by
/// address. A row's local hour counts hours since the Unix epoch in local
/// time: its UTC seconds plus the offset in force then (`$4[i]` from
/// `$3[i]` on, picked by `width_bucket`); the epoch's first hour was a
/// Thursday's, hour 72 of a week starting on Monday. The failed logins
/// repeat the predicate of the partial index `..._failed_login_idx` word
/// for word, so that they are counted from it.
const PROFILE_SQL: &str = "
WITH r AS MATERIALIZED (
    SELECT action::text AS action, created_at, ip_address,
           floor((date_part('epoch', created_at)
                  + ($4::int4[])[width_bucket(created_at, $3::timestamptz[])]) / 3600)::int8
               AS local_hour
    FROM user_activity_logs
    WHERE user_id = $1 AND created_at >= $2
),
ips AS (
    SELECT ip_address, MIN(created_at) AS first_seen, MAX(created_at) AS last_seen,
           COUNT(*)::int8 AS n
    FROM r WHERE ip_address IS NOT NULL GROUP BY ip_address
)
SELECT 'a', action, NULL::int4, COUNT(*)::int8, 0::int8, MIN(created_at), MAX(created_at),
       NULL::text
FROM r GROUP BY action
UNION ALL
SELECT 'w', NULL, ((local_hour + 72) % 168)::int4, COUNT(*)::int8, 0, NULL, NULL, NULL
FROM r GROUP BY 3
UNION ALL
SELECT 'i', NULL, NULL, COUNT(*)::int8, (COUNT(*) FILTER (WHERE first_seen >= $5))::int8,
       NULL, NULL, NULL
FROM ips
UNION ALL
SELECT 'f', NULL, NULL, COUNT(*)::int8, 0, NULL, NULL, NULL
FROM user_activity_logs
WHERE user_id = $1 AND created_at >= $2
  AND (action = 'login_failed'
       OR (action = 'login' AND btrim(details->>'status') ~ '^4[0-9][0-9]$'))
UNION ALL
SELECT * FROM (
    SELECT 'n', NULL, NULL::int4, n, 0::int8, first_seen, last_seen, host(ip_address)
    FROM ips WHERE first_seen >= $5
    ORDER BY first_seen DESC, ip_address LIMIT $6
) new_ips";

/// The user's profile with the chosen window and time zone.
pub async fn build_user_profile_with(
    pool: &PgPool,
    user_id: &str,
    options: &ProfileOptions,
) -> Result<UserProfile, QueryError> {
    check_user_id(user_id)?;
    let stored = super::stored_user_id(user_id);
    let user_id: &str = &stored;
    let w = Window::last_days(options.days)?;
    let now = Utc::now();
    let new_since = now - TimeDelta::days(NEW_IP_DAYS);
    // Rows stamped later than this (clocks ahead) take the offset then.
    let (starts, offsets) = offsets_between(options.time_zone, w.start, now + TimeDelta::days(7));

    let rows: Vec<ProfileRow> = sqlx::query_as(PROFILE_SQL)
        .bind(user_id)
        .bind(w.start)
        .bind(&starts)
        .bind(&offsets)
        .bind(new_since)
        .bind(NEW_IPS_LISTED as i64)
        .fetch_all(pool)
        .await?;
    let (open_alerts,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*)::int8 FROM user_activity_alerts WHERE user_id = $1 AND status = 'open'",
    )
    .bind(user_id)
    .fetch_one(pool)
    .await?;

    let mut per_action: std::collections::BTreeMap<String, i64> = Default::default();
    let mut hourly = vec![0i64; 24];
    let mut weekdays = vec![0i64; 7];
    let (mut total, mut failed_logins) = (0i64, 0i64);
    let (mut first_seen, mut last_seen): (Option<DateTime<Utc>>, _) = (None, None);
    let (mut distinct_ips, mut new_ip_count) = (0, 0);
    let mut new_ips = Vec::new();
    for (kind, action, bucket, n, m, first, last, ip) in rows {
        match kind.as_str() {
            "a" => {
                total += n;
                *per_action.entry(action.unwrap_or_default()).or_default() += n;
                first_seen = match (first_seen, first) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                last_seen = last_seen.max(last);
            }
            "w" => {
                let hour_of_week = bucket.unwrap_or_default().rem_euclid(168) as usize;
                hourly[hour_of_week % 24] += n;
                weekdays[hour_of_week / 24] += n;
            }
            "i" => (distinct_ips, new_ip_count) = (n, m),
            "f" => failed_logins = n,
            _ => {
                if let (Some(ip_address), Some(first_seen), Some(last_seen)) = (ip, first, last) {
                    new_ips.push(NewIp {
                        ip_address,
                        first_seen,
                        last_seen,
                        count: n,
                    });
                }
            }
        }
    }

    let share = |n: i64| {
        if total > 0 {
            n as f64 / total as f64
        } else {
            0.0
        }
    };
    let mut primary: Vec<(String, i64)> = per_action.iter().map(|(a, n)| (a.clone(), *n)).collect();
    primary.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let off_hours: i64 = hourly
        .iter()
        .enumerate()
        .filter(|(h, _)| {
            !(WORKING_DAY_START_HOUR as usize..WORKING_DAY_END_HOUR as usize).contains(h)
        })
        .map(|(_, n)| n)
        .sum();
    let peak_hour = (total > 0)
        .then(|| {
            // max_by_key keeps the last of equals: search from the end.
            (0..24u32).rev().max_by_key(|h| hourly[*h as usize])
        })
        .flatten();
    let off_hours_share = share(off_hours);
    let money_movements = MONEY_ACTIONS
        .iter()
        .map(|a| per_action.get(*a).copied().unwrap_or(0))
        .sum();
    let risk = risk_score(&RiskInputs {
        failed_logins,
        open_alerts,
        distinct_ips,
        off_hours_share,
        money_movements,
    });
    Ok(UserProfile {
        user_id: user_id.to_owned(),
        days: options.days,
        since: w.start,
        total_activities: total,
        first_seen,
        last_seen,
        activity_level: activity_level(total, options.days),
        activity_thresholds: ActivityThresholds::for_days(options.days),
        primary_functions: primary
            .into_iter()
            .take(PRIMARY_FUNCTIONS)
            .map(|(action, count)| PrimaryFunction {
                action,
                count,
                share: share(count),
            })
            .collect(),
        usage_pattern: UsagePattern {
            time_zone: options.time_zone.name().to_owned(),
            tz_database: chrono_tz::IANA_TZDB_VERSION.to_owned(),
            hourly,
            weekdays,
            peak_hour,
            off_hours_share,
        },
        ip_summary: IpSummary {
            distinct_ips,
            new_since,
            new_ip_count,
            new_ips,
        },
        risk_score: risk,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_scale_with_the_window() {
        // The original rule: more than 100 in 90 days is high.
        assert_eq!(activity_level(101, 90), ActivityLevel::High);
        assert_eq!(activity_level(100, 90), ActivityLevel::Medium);
        assert_eq!(activity_level(11, 90), ActivityLevel::Medium);
        assert_eq!(activity_level(10, 90), ActivityLevel::Low);
        assert_eq!(activity_level(0, 90), ActivityLevel::Low);
        // 30 days: a third of each.
        assert_eq!(activity_level(34, 30), ActivityLevel::High);
        assert_eq!(activity_level(33, 30), ActivityLevel::Medium);
        assert_eq!(activity_level(4, 30), ActivityLevel::Medium);
        assert_eq!(activity_level(3, 30), ActivityLevel::Low);
        // 180 days: exactly on the doubled threshold is not above it.
        assert_eq!(activity_level(200, 180), ActivityLevel::Medium);
        assert_eq!(activity_level(201, 180), ActivityLevel::High);
        let t = ActivityThresholds::for_days(45);
        assert_eq!((t.medium_above, t.high_above), (5.0, 50.0));
    }

    #[test]
    fn risk_factors_add_up_within_their_weights() {
        let none = risk_score(&RiskInputs {
            failed_logins: 0,
            open_alerts: 0,
            distinct_ips: 1,
            off_hours_share: 0.0,
            money_movements: 0,
        });
        assert_eq!(none.score, 0);
        assert_eq!(none.factors.iter().map(|f| f.weight).sum::<f64>(), 100.0);
        let all = risk_score(&RiskInputs {
            failed_logins: 1000,
            open_alerts: 50,
            distinct_ips: 500,
            off_hours_share: 1.0,
            money_movements: 999,
        });
        assert_eq!(all.score, 100);
        let some = risk_score(&RiskInputs {
            failed_logins: 5,
            open_alerts: 1,
            distinct_ips: 4,
            off_hours_share: 0.2,
            money_movements: 2,
        });
        let points: Vec<f64> = some.factors.iter().map(|f| f.points).collect();
        let expected = [15.0, 25.0 / 3.0, 15.0 * 3.0 / 9.0, 3.0, 1.5];
        for (got, want) in points.iter().zip(expected) {
            assert!((got - want).abs() < 1e-9, "{points:?}");
        }
        // 15 + 8.33 + 5 + 3 + 1.5 = 32.83
        assert_eq!(some.score, 33);
    }

    #[test]
    fn the_statement_counts_the_failed_logins_this_module_names() {
        let predicate = format!("action = '{LOGIN_FAILED_ACTION}'");
        assert!(PROFILE_SQL.contains(&predicate));
        let migration = include_str!("../../migrations/0007_profile_indexes.sql");
        let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let failed = "action = 'login_failed' OR (action = 'login' AND btrim(details->>'status') ~ '^4[0-9][0-9]$')";
        assert!(words(PROFILE_SQL).contains(failed));
        assert!(words(migration).contains(failed));
    }

    #[test]
    fn time_zones_are_iana_names() {
        assert_eq!(
            parse_time_zone("America/New_York").unwrap(),
            Tz::America__New_York
        );
        assert_eq!(parse_time_zone("UTC").unwrap(), Tz::UTC);
        for bad in ["", "EST5EDT6", "Mars/Olympus", "utc+3", "America/New York"] {
            assert!(matches!(
                parse_time_zone(bad),
                Err(QueryError::InvalidParameter {
                    parameter: "tz",
                    ..
                })
            ));
        }
    }

    #[test]
    fn offsets_follow_daylight_saving_time() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        // New York, 2025: EDT from 9 March 07:00 UTC, EST from 2 November 06:00 UTC.
        let (starts, offsets) = offsets_between(
            Tz::America__New_York,
            at("2025-01-01T00:00:00Z"),
            at("2025-12-31T00:00:00Z"),
        );
        assert_eq!(
            starts,
            [
                at("2025-01-01T00:00:00Z"),
                at("2025-03-09T07:00:00Z"),
                at("2025-11-02T06:00:00Z")
            ]
        );
        assert_eq!(offsets, [-5 * 3600, -4 * 3600, -5 * 3600]);
        // Kathmandu has no DST, and a quarter-hour offset.
        let (starts, offsets) = offsets_between(
            Tz::Asia__Kathmandu,
            at("2025-01-01T00:00:00Z"),
            at("2025-12-31T00:00:00Z"),
        );
        assert_eq!((starts.len(), offsets), (1, vec![5 * 3600 + 45 * 60]));
    }
}

#[cfg(test)]
mod db_tests;
