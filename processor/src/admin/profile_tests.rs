//! `GET user/{user_id}/profile` through the router (no port), on a fresh
//! database each: the JSON, authentication and the 400s.

use activity_store::queries::profile::{ProfileOptions, build_user_profile_with, parse_time_zone};
use activity_store::testing::random_activities;
use activity_store::writer::write_batch;
use axum::Router;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

use super::tests::{SECRET, TOKEN, assert_error, call_with, in_an_hour, jwt, state_with};
use super::*;

const PRIVACY_TOKEN: &str = "privacy-only-token-0123456789";
const P: &str = "/api/v1/admin/user-activities/user";

fn app(pool: PgPool) -> Router {
    let auth = AdminAuth::new(Some(TOKEN), Some(SECRET)).with_privacy_tokens(Some(PRIVACY_TOKEN));
    let key = format!("admin-profile-test-{}", uuid::Uuid::now_v7());
    router(state_with(pool, &key, auth))
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
    let (status, _, body) =
        call_with(app, Method::GET, uri, Some(&format!("Bearer {TOKEN}"))).await;
    (status, body)
}

/// The profile without `ip_summary.new_since`, which is "now − 7 days" at
/// the time of each call; and that instant.
fn split_new_since(mut profile: Value) -> (Value, chrono::DateTime<chrono::Utc>) {
    let since = profile["ip_summary"]
        .as_object_mut()
        .and_then(|s| s.remove("new_since"))
        .and_then(|v| v.as_str().map(str::to_owned))
        .expect("ip_summary.new_since");
    (profile, since.parse().expect("RFC 3339"))
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn the_endpoint_answers_what_the_library_computes(pool: PgPool) {
    write_batch(&pool, &random_activities(71, 1500, 120, 4))
        .await
        .unwrap();
    let app = app(pool.clone());
    for (query, days, zone) in [
        ("", 90, "UTC"),
        ("?days=30", 30, "UTC"),
        ("?days=366&tz=America/New_York", 366, "America/New_York"),
        ("?tz=Asia/Kathmandu&days=7", 7, "Asia/Kathmandu"),
        ("?days=1&tz=UTC", 1, "UTC"),
    ] {
        let uri = format!("{P}/user-1/profile{query}");
        let (status, body) = get(&app, &uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        let options = ProfileOptions {
            days,
            time_zone: parse_time_zone(zone).unwrap(),
        };
        let expected = build_user_profile_with(&pool, "user-1", &options)
            .await
            .unwrap();
        let (got, got_since) = split_new_since(body);
        // Through JSON text, as the body was: the same float parsing.
        let expected = serde_json::from_str(&serde_json::to_string(&expected).unwrap()).unwrap();
        let (expected, expected_since) = split_new_since(expected);
        assert_eq!(got, expected, "{uri}");
        assert!((expected_since - got_since).num_seconds().abs() < 60);
        assert_eq!(got["usage_pattern"]["time_zone"], zone);
    }

    // The contract's keys, by name.
    let (_, p) = get(&app, &format!("{P}/user-1/profile?days=90")).await;
    let (total,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM user_activity_logs WHERE user_id = 'user-1' AND created_at >= $1",
    )
    .bind(activity_store::testing::window_start(90).1)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(total > 100, "{total}");
    assert_eq!(p["total_activities"], total);
    assert_eq!(p["activity_level"], "high");
    assert_eq!(
        p["activity_thresholds"],
        json!({"medium_above": 10.0, "high_above": 100.0})
    );
    let functions = p["primary_functions"].as_array().unwrap();
    assert!(!functions.is_empty() && functions.len() <= 5);
    for f in functions {
        assert!(
            f["action"].is_string() && f["count"].is_i64() && f["share"].is_f64(),
            "{f}"
        );
    }
    let pattern = &p["usage_pattern"];
    assert_eq!(pattern["hourly"].as_array().unwrap().len(), 24);
    assert_eq!(pattern["weekdays"].as_array().unwrap().len(), 7);
    let hourly: i64 = pattern["hourly"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_i64().unwrap())
        .sum();
    assert_eq!(hourly, total);
    assert!(pattern["peak_hour"].as_u64().is_some_and(|h| h < 24));
    assert!(
        pattern["off_hours_share"]
            .as_f64()
            .is_some_and(|s| (0.0..=1.0).contains(&s))
    );
    assert!(p["ip_summary"]["distinct_ips"].as_i64().unwrap() > 0);
    assert!(p["ip_summary"]["new_ips"].is_array());
    let names: Vec<&str> = p["risk_score"]["factors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            for key in ["value", "baseline", "saturates_at", "weight", "points"] {
                assert!(f[key].is_number(), "{f} lacks {key}");
            }
            f["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        names,
        [
            "failed_logins",
            "open_alerts",
            "distinct_ips",
            "off_hours_share",
            "money_movements"
        ]
    );
    assert!(p["risk_score"]["score"].as_u64().is_some_and(|s| s <= 100));
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn an_unknown_user_gets_zero_counts_like_the_user_endpoint(pool: PgPool) {
    write_batch(&pool, &random_activities(72, 50, 10, 3))
        .await
        .unwrap();
    let app = app(pool);
    let (status, u) = get(&app, &format!("{P}/nobody")).await;
    assert_eq!(
        (status, &u["total_activities"]),
        (StatusCode::OK, &json!(0))
    );
    let (status, p) = get(&app, &format!("{P}/nobody/profile?tz=Europe/Paris")).await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(p["user_id"], "nobody");
    assert_eq!(p["total_activities"], 0);
    assert_eq!(p["activity_level"], "low");
    assert_eq!(p["primary_functions"], json!([]));
    assert_eq!(p["usage_pattern"]["hourly"], json!(vec![0; 24]));
    assert_eq!(p["usage_pattern"]["weekdays"], json!(vec![0; 7]));
    assert_eq!(p["usage_pattern"]["peak_hour"], Value::Null);
    assert_eq!(p["ip_summary"]["distinct_ips"], 0);
    assert_eq!(p["risk_score"]["score"], 0);
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn only_admins_get_profiles(pool: PgPool) {
    let app = app(pool);
    let uri = format!("{P}/u1/profile");
    let admin_jwt = jwt(json!({"role": "admin", "exp": in_an_hour()}), SECRET);
    let privacy_jwt = jwt(json!({"role": "privacy", "exp": in_an_hour()}), SECRET);
    for (auth, status, code) in [
        (None, StatusCode::UNAUTHORIZED, Some("missing_token")),
        (
            Some("Bearer wrong-token".to_owned()),
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
        ),
        (
            Some(format!("Bearer {PRIVACY_TOKEN}")),
            StatusCode::FORBIDDEN,
            Some("forbidden"),
        ),
        (
            Some(format!("Bearer {privacy_jwt}")),
            StatusCode::FORBIDDEN,
            Some("forbidden"),
        ),
        (Some(format!("Bearer {TOKEN}")), StatusCode::OK, None),
        (Some(format!("Bearer {admin_jwt}")), StatusCode::OK, None),
    ] {
        let (got, _, body) = call_with(&app, Method::GET, &uri, auth.as_deref()).await;
        assert_eq!(got, status, "{auth:?}: {body}");
        if let Some(code) = code {
            assert_error(&body, code);
        }
    }
    let (status, _, body) =
        call_with(&app, Method::POST, &uri, Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&body, "method_not_allowed");
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn bad_parameters_are_400_naming_the_parameter(pool: PgPool) {
    let app = app(pool);
    let long = "u".repeat(256);
    for (query, parameter) in [
        ("u1/profile?days=0".to_owned(), "`days`"),
        ("u1/profile?days=367".to_owned(), "`days`"),
        ("u1/profile?days=ninety".to_owned(), "`days`"),
        ("u1/profile?days=-1".to_owned(), "`days`"),
        ("u1/profile?tz=Mars/Olympus".to_owned(), "`tz`"),
        ("u1/profile?tz=".to_owned(), "`tz`"),
        ("u1/profile?tz=america/new_york".to_owned(), "`tz`"),
        ("u1/profile?days=30&tz=UTC%2B3".to_owned(), "`tz`"),
        (format!("{long}/profile"), "`user_id`"),
    ] {
        let uri = format!("{P}/{query}");
        let (status, body) = get(&app, &uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_error(&body, "invalid_parameter");
        assert!(
            body["message"].as_str().unwrap().contains(parameter),
            "{uri}: {body}"
        );
    }
    for query in [
        "days=1",
        "days=366",
        "tz=Pacific/Chatham",
        "tz=Etc/GMT-14&days=2",
    ] {
        let uri = format!("{P}/u1/profile?{query}");
        assert_eq!(get(&app, &uri).await.0, StatusCode::OK, "{uri}");
    }
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn the_openapi_document_describes_the_profile(pool: PgPool) {
    let app = app(pool);
    let (status, _, doc) = call_with(&app, Method::GET, OPENAPI_PATH, None).await;
    assert_eq!(status, StatusCode::OK);
    let op = &doc["paths"]["/api/v1/admin/user-activities/user/{user_id}/profile"]["get"];
    let params: Vec<&str> = op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["user_id", "days", "tz"]);
    for status in ["200", "400", "401", "403"] {
        assert!(op["responses"][status].is_object(), "{status}");
    }
    for schema in [
        "UserProfile",
        "ActivityLevel",
        "UsagePattern",
        "IpSummary",
        "RiskScore",
        "RiskFactor",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} is not described"
        );
    }
}
