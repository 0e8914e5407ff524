//! The profile against plain SQL over the raw rows, on a fresh database
//! each (real PostgreSQL): hours and weekdays with PostgreSQL's own
//! `AT TIME ZONE`, shares, addresses, failed logins of both forms, alerts.

use std::collections::BTreeMap;
use std::net::IpAddr;

use activity_tracker::{Activity, ActivityType};
use chrono::{Datelike, NaiveDate, NaiveTime, TimeDelta, Utc, Weekday};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::PgPool;

use super::*;
use crate::testing::{random_activities, window_start};
use crate::writer::write_batch;

fn activity(action: &str, at: DateTime<Utc>) -> Activity {
    Activity::at(ActivityType::custom(action).expect("valid action"), at)
}

/// The `n`-th `weekday` of a month (1-based), as a date.
fn nth_weekday(year: i32, month: u32, weekday: Weekday, n: u32) -> NaiveDate {
    NaiveDate::from_weekday_of_month_opt(year, month, weekday, n as u8).expect("exists")
}

/// The days around which New York's clocks change (the US rule since 2007:
/// the second Sunday of March, the first Sunday of November) and that lie
/// well inside the window starting at `start`.
fn dst_sundays(start: DateTime<Utc>) -> Vec<NaiveDate> {
    let today = Utc::now().date_naive();
    let mut days = Vec::new();
    for year in [today.year() - 1, today.year()] {
        for day in [
            nth_weekday(year, 3, Weekday::Sun, 2),
            nth_weekday(year, 11, Weekday::Sun, 1),
        ] {
            if day - TimeDelta::days(2) > start.date_naive() && day + TimeDelta::days(2) < today {
                days.push(day);
            }
        }
    }
    days
}

/// Alice's rows: spread over the window, dense (every 10 minutes) over
/// each weekend New York's clocks change, failed logins of both forms and
/// logins that did not fail, money movements, addresses old and new; plus
/// other users' rows, anonymous failed logins and rows before the window.
fn alice_and_others(start: DateTime<Utc>) -> Vec<Activity> {
    let mut rng = StdRng::seed_from_u64(61);
    let now = Utc::now();
    let old_ips: Vec<IpAddr> = (1..=4u8).map(|k| IpAddr::from([10, 9, 0, k])).collect();
    let actions = [
        "case_view",
        "case_view",
        "case_create",
        "report_export",
        "logout",
    ];
    let mut events = Vec::new();
    let span = (now - start).num_seconds() - 8 * 86_400;
    for _ in 0..600 {
        // Old addresses only before the last 8 days, so they are not new.
        let at = start + TimeDelta::seconds(rng.random_range(60..span));
        events.push(
            activity(actions[rng.random_range(0..actions.len())], at)
                .user_id("alice")
                .ip_address(old_ips[rng.random_range(0..old_ips.len())]),
        );
    }
    for sunday in dst_sundays(start) {
        let from = (sunday - TimeDelta::days(1))
            .and_time(NaiveTime::MIN)
            .and_utc();
        for k in 0..(6 * 24 * 5 / 2) {
            events.push(
                activity("case_view", from + TimeDelta::minutes(10 * k))
                    .user_id("alice")
                    .ip_address(old_ips[0]),
            );
        }
    }
    // 25 new addresses, first used in the last 6 days, some used again later.
    for k in 0..25u8 {
        let first = now - TimeDelta::hours(6 * 24 - i64::from(k) * 5);
        let ip = IpAddr::from([192, 0, 2, k + 1]);
        events.push(activity("case_view", first).user_id("alice").ip_address(ip));
        for again in 0..(k % 3) {
            let at = first + TimeDelta::minutes(30 * (i64::from(again) + 1));
            events.push(activity("case_update", at).user_id("alice").ip_address(ip));
        }
    }
    // Logins: failed as 4xx (number and string), not failed (2xx, 5xx, none).
    let recent =
        |rng: &mut StdRng| now - TimeDelta::seconds(rng.random_range(9 * 86_400..40 * 86_400));
    for status in [
        serde_json::json!(401),
        serde_json::json!(403),
        serde_json::json!("429"),
        serde_json::json!(400),
        serde_json::json!(200),
        serde_json::json!(302),
        serde_json::json!(500),
        serde_json::json!("4xx"),
    ] {
        let at = recent(&mut rng);
        events.push(
            activity("login", at)
                .user_id("alice")
                .ip_address(old_ips[1])
                .detail("status", status),
        );
    }
    events.push(
        activity("login", recent(&mut rng))
            .user_id("alice")
            .ip_address(old_ips[1]),
    );
    for _ in 0..3 {
        events.push(activity("login_failed", recent(&mut rng)).user_id("alice"));
    }
    // Money: 3 payments and 2 withdrawals; a payment's outcome is not one more.
    for action in [
        "payment_create",
        "payment_create",
        "payment_create",
        "withdrawal_request",
        "withdrawal_request",
        "payment_success",
    ] {
        events.push(
            activity(action, recent(&mut rng))
                .user_id("alice")
                .ip_address(old_ips[2]),
        );
    }
    // Not Alice's, or not in the window.
    for _ in 0..5 {
        events.push(activity("login_failed", recent(&mut rng)).ip_address(old_ips[0]));
    }
    events.push(activity("login_failed", recent(&mut rng)).user_id("bob"));
    events.push(activity("payment_create", start - TimeDelta::hours(2)).user_id("alice"));
    events.push(
        activity("login_failed", start - TimeDelta::days(3))
            .user_id("alice")
            .ip_address(IpAddr::from([203, 0, 113, 9])),
    );
    events.extend(random_activities(62, 300, 30, 4));
    events
}

async fn add_alert(pool: &PgPool, user: &str, status: &str) {
    sqlx::query(
        "INSERT INTO user_activity_alerts
             (id, rule, group_kind, group_value, user_id, first_event_id, first_event_at,
              last_event_id, last_event_at, count, status)
         VALUES ($1, 'rate', 'user', $2, $2, $1, now(), $1, now(), 1, $3)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(user)
    .bind(status)
    .execute(pool)
    .await
    .unwrap();
    // The unique key includes first_event_at: keep each alert's apart.
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
}

/// Counts by PostgreSQL's local hour and ISO weekday of Alice's rows.
async fn local_counts(
    pool: &PgPool,
    user: &str,
    since: DateTime<Utc>,
    zone: &str,
) -> (Vec<i64>, Vec<i64>) {
    let rows: Vec<(i32, i32, i64)> = sqlx::query_as(
        "SELECT EXTRACT(HOUR FROM created_at AT TIME ZONE $3)::int4,
                EXTRACT(ISODOW FROM created_at AT TIME ZONE $3)::int4, COUNT(*)
         FROM user_activity_logs WHERE user_id = $1 AND created_at >= $2 GROUP BY 1, 2",
    )
    .bind(user)
    .bind(since)
    .bind(zone)
    .fetch_all(pool)
    .await
    .unwrap();
    let (mut hours, mut days) = (vec![0i64; 24], vec![0i64; 7]);
    for (h, d, n) in rows {
        hours[h as usize] += n;
        days[d as usize - 1] += n;
    }
    (hours, days)
}

fn factor(p: &UserProfile, name: &str) -> f64 {
    p.risk_score
        .factors
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no factor {name}"))
        .value
}

#[sqlx::test(migrator = "crate::MIGRATOR")]
async fn profile_equals_plain_sql_in_new_york_across_dst(pool: PgPool) {
    let days = 366;
    let (_, start) = window_start(days);
    assert!(
        !dst_sundays(start).is_empty(),
        "the window holds a clock change"
    );
    write_batch(&pool, &alice_and_others(start)).await.unwrap();
    add_alert(&pool, "alice", "open").await;
    add_alert(&pool, "alice", "open").await;
    add_alert(&pool, "alice", "acknowledged").await;
    add_alert(&pool, "bob", "open").await;

    let options = ProfileOptions {
        days,
        time_zone: parse_time_zone("America/New_York").unwrap(),
    };
    let p = build_user_profile_with(&pool, "alice", &options)
        .await
        .unwrap();
    assert_eq!(
        (p.user_id.as_str(), p.days, p.since),
        ("alice", days, start)
    );

    let (total, first, last, ips): (i64, Option<DateTime<Utc>>, Option<DateTime<Utc>>, i64) =
        sqlx::query_as(
            "SELECT COUNT(*), MIN(created_at), MAX(created_at), COUNT(DISTINCT ip_address)
             FROM user_activity_logs WHERE user_id = 'alice' AND created_at >= $1",
        )
        .bind(start)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(total > 1000, "{total}");
    assert_eq!(
        (p.total_activities, p.first_seen, p.last_seen),
        (total, first, last)
    );
    assert_eq!(p.activity_level, ActivityLevel::High);

    // Hours and weekdays in New York, by PostgreSQL's time-zone database.
    let (hours, weekdays) = local_counts(&pool, "alice", start, "America/New_York").await;
    assert_eq!(p.usage_pattern.hourly, hours);
    assert_eq!(p.usage_pattern.weekdays, weekdays);
    assert_eq!(p.usage_pattern.time_zone, "America/New_York");
    // And not the UTC ones: the zone moved the rows.
    let (utc_hours, _) = local_counts(&pool, "alice", start, "UTC").await;
    assert_ne!(hours, utc_hours);
    let (off,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM user_activity_logs WHERE user_id = 'alice' AND created_at >= $1
           AND (EXTRACT(HOUR FROM created_at AT TIME ZONE 'America/New_York') < 8
                OR EXTRACT(HOUR FROM created_at AT TIME ZONE 'America/New_York') >= 20)",
    )
    .bind(start)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(p.usage_pattern.off_hours_share, off as f64 / total as f64);
    let max = *hours.iter().max().unwrap();
    assert_eq!(
        p.usage_pattern.peak_hour,
        hours.iter().position(|n| *n == max).map(|h| h as u32)
    );

    // The top actions and their shares.
    let top: Vec<(String, i64)> = sqlx::query_as(
        "SELECT action::text, COUNT(*) AS c FROM user_activity_logs
         WHERE user_id = 'alice' AND created_at >= $1 GROUP BY 1 ORDER BY c DESC, 1 LIMIT 5",
    )
    .bind(start)
    .fetch_all(&pool)
    .await
    .unwrap();
    let got: Vec<(String, i64, f64)> = p
        .primary_functions
        .iter()
        .map(|f| (f.action.clone(), f.count, f.share))
        .collect();
    let expected: Vec<(String, i64, f64)> = top
        .into_iter()
        .map(|(a, c)| (a, c, c as f64 / total as f64))
        .collect();
    assert_eq!(got, expected);

    // Addresses: distinct ones, and the new ones, newest first, 20 listed.
    assert_eq!(p.ip_summary.distinct_ips, ips);
    let new: Vec<(String, DateTime<Utc>, DateTime<Utc>, i64)> = sqlx::query_as(
        "SELECT host(ip_address), MIN(created_at) AS f, MAX(created_at), COUNT(*)
         FROM user_activity_logs
         WHERE user_id = 'alice' AND created_at >= $1 AND ip_address IS NOT NULL
         GROUP BY ip_address HAVING MIN(created_at) >= $2 ORDER BY f DESC, ip_address",
    )
    .bind(start)
    .bind(p.ip_summary.new_since)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(new.len(), 25);
    assert_eq!(p.ip_summary.new_ip_count, 25);
    let got: Vec<(String, DateTime<Utc>, DateTime<Utc>, i64)> = p
        .ip_summary
        .new_ips
        .iter()
        .map(|i| (i.ip_address.clone(), i.first_seen, i.last_seen, i.count))
        .collect();
    assert_eq!(got, new[..NEW_IPS_LISTED].to_vec());
    let since = Utc::now() - TimeDelta::days(NEW_IP_DAYS);
    assert!((since - p.ip_summary.new_since).num_seconds().abs() < 60);

    // The risk factors' figures.
    let (failed, money): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE action = 'login_failed'
                                   OR (action = 'login' AND details->>'status' IN
                                       ('400', '401', '403', '429'))),
                COUNT(*) FILTER (WHERE action IN ('payment_create', 'withdrawal_request'))
         FROM user_activity_logs WHERE user_id = 'alice' AND created_at >= $1",
    )
    .bind(start)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((failed, money), (4 + 3, 5), "the rows as written");
    assert_eq!(factor(&p, "failed_logins"), failed as f64);
    assert_eq!(factor(&p, "money_movements"), money as f64);
    assert_eq!(factor(&p, "open_alerts"), 2.0);
    assert_eq!(factor(&p, "distinct_ips"), ips as f64);
    assert_eq!(factor(&p, "off_hours_share"), off as f64 / total as f64);
    let points: f64 = p.risk_score.factors.iter().map(|f| f.points).sum();
    assert_eq!(p.risk_score.score, points.round() as u32);
    assert_eq!(
        p.risk_score,
        risk_score(&RiskInputs {
            failed_logins: failed,
            open_alerts: 2,
            distinct_ips: ips,
            off_hours_share: off as f64 / total as f64,
            money_movements: money,
        })
    );
}

#[sqlx::test(migrator = "crate::MIGRATOR")]
async fn hours_agree_with_postgresql_in_zones_of_every_kind(pool: PgPool) {
    // Spread over a year, so every zone's clock changes are in.
    write_batch(&pool, &random_activities(63, 3000, 360, 3))
        .await
        .unwrap();
    for zone in [
        "UTC",
        "America/New_York",
        "Europe/Berlin",
        "Asia/Kathmandu",      // +05:45, no DST
        "Australia/Lord_Howe", // +10:30, a half-hour DST
        "America/St_Johns",    // −03:30 / −02:30
        "Pacific/Kiritimati",  // +14:00
    ] {
        for days in [1, 30, 366] {
            let options = ProfileOptions {
                days,
                time_zone: parse_time_zone(zone).unwrap(),
            };
            let p = build_user_profile_with(&pool, "user-1", &options)
                .await
                .unwrap();
            let (hours, weekdays) = local_counts(&pool, "user-1", window_start(days).1, zone).await;
            assert_eq!(p.usage_pattern.hourly, hours, "{zone} days={days}");
            assert_eq!(p.usage_pattern.weekdays, weekdays, "{zone} days={days}");
            assert_eq!(p.total_activities, hours.iter().sum::<i64>());
        }
    }
    // The default is UTC, and agrees with the user endpoint's figures.
    let p = build_user_profile(&pool, "user-2", 90).await.unwrap();
    let s = crate::queries::get_user_activity_stats(&pool, "user-2", 90)
        .await
        .unwrap();
    assert_eq!(p.usage_pattern.time_zone, "UTC");
    assert_eq!(
        (p.total_activities, p.first_seen, p.last_seen),
        (s.total_activities, s.first_seen, s.last_seen)
    );
    assert_eq!(p.ip_summary.distinct_ips, s.ip_addresses.len() as i64);
    let breakdown: BTreeMap<String, i64> = p
        .primary_functions
        .iter()
        .map(|f| (f.action.clone(), f.count))
        .collect();
    assert!(
        breakdown
            .iter()
            .all(|(a, n)| s.activity_breakdown.get(a) == Some(n))
    );
}

#[sqlx::test(migrator = "crate::MIGRATOR")]
async fn an_unknown_user_has_a_profile_of_zeros(pool: PgPool) {
    write_batch(&pool, &random_activities(64, 100, 10, 3))
        .await
        .unwrap();
    let p = build_user_profile(&pool, "nobody", 90).await.unwrap();
    assert_eq!(
        (p.total_activities, p.first_seen, p.last_seen),
        (0, None, None)
    );
    assert_eq!(p.activity_level, ActivityLevel::Low);
    assert!(p.primary_functions.is_empty());
    assert_eq!(p.usage_pattern.hourly, vec![0; 24]);
    assert_eq!(p.usage_pattern.weekdays, vec![0; 7]);
    assert_eq!(
        (p.usage_pattern.peak_hour, p.usage_pattern.off_hours_share),
        (None, 0.0)
    );
    assert_eq!(
        (p.ip_summary.distinct_ips, p.ip_summary.new_ip_count),
        (0, 0)
    );
    assert!(p.ip_summary.new_ips.is_empty());
    assert_eq!(p.risk_score.score, 0);
    assert_eq!(p.risk_score.factors.len(), 5);
    // Bounds name their parameter.
    for (days, user) in [(0, "u"), (367, "u"), (90, "")] {
        let parameter = match build_user_profile(&pool, user, days).await {
            Err(QueryError::InvalidParameter { parameter, .. }) => parameter,
            other => panic!("{other:?}"),
        };
        assert_eq!(parameter, if user.is_empty() { "user_id" } else { "days" });
    }
}
