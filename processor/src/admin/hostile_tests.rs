//! Issue 20's cases against the admin API: each a regression test of what
//! an attacker (or a non-Rust producer) did, through the router.

use activity_store::normalize::{NUL_NOTE, ORIGINAL_CREATED_AT_NOTE};
use activity_store::writer::{write_batch, write_batch_isolating};
use activity_tracker::{Activity, ActivityType};
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

use super::tests::{SECRET, TOKEN, assert_error, call_with, jwt, state_with};
use super::*;
use crate::consumer::decode::decode_entry;

fn app(pool: PgPool, auth: AdminAuth) -> Router {
    let key = format!("admin-hostile-test-{}", uuid::Uuid::now_v7());
    router(state_with(pool, &key, auth))
}

fn admin_app(pool: PgPool) -> Router {
    app(
        pool,
        AdminAuth::new(Some(TOKEN), Some(SECRET))
            .with_privacy_tokens(Some("privacy-token-0123456789")),
    )
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
    let (status, _, body) =
        call_with(app, Method::GET, uri, Some(&format!("Bearer {TOKEN}"))).await;
    (status, body)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn a_jwt_before_its_nbf_is_refused(pool: PgPool) {
    let app = app(pool, AdminAuth::new(None, Some(SECRET)));
    let uri = format!("{PREFIX}/statistics");
    let early = jwt(
        json!({"role": "admin", "iat": now(), "nbf": now() + 600, "exp": now() + 3600}),
        SECRET,
    );
    let (status, _, body) =
        call_with(&app, Method::GET, &uri, Some(&format!("Bearer {early}"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_error(&body, "token_not_yet_valid");
    let valid = jwt(
        json!({"role": "admin", "iat": now(), "nbf": now() - 5, "exp": now() + 3600}),
        SECRET,
    );
    let (status, _, body) =
        call_with(&app, Method::GET, &uri, Some(&format!("Bearer {valid}"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn a_jwt_living_longer_than_the_max_ttl_is_refused(pool: PgPool) {
    let app = app(pool, AdminAuth::new(None, Some(SECRET)));
    let uri = format!("{PREFIX}/statistics");
    let hour = 3600;
    // (claims, accepted) with the default ADMIN_JWT_MAX_TTL of 24 h.
    let cases = [
        (json!({"iat": now(), "exp": now() + 23 * hour}), true),
        (json!({"iat": now(), "exp": now() + 48 * hour}), false),
        // Issued two hours ago: 22 h left of its 24 h is fine, 23 h is not.
        (
            json!({"iat": now() - 2 * hour, "exp": now() + 22 * hour}),
            true,
        ),
        (
            json!({"iat": now() - 2 * hour, "exp": now() + 23 * hour}),
            false,
        ),
        // Without iat, measured from now.
        (json!({"exp": now() + 23 * hour}), true),
        (json!({"exp": now() + 25 * hour}), false),
        // An iat in the future does not move the start.
        (
            json!({"iat": now() + 100 * hour, "exp": now() + 101 * hour}),
            false,
        ),
        // A year.
        (json!({"iat": now(), "exp": now() + 365 * 24 * hour}), false),
    ];
    for (mut claims, accepted) in cases {
        claims["role"] = json!("admin");
        let token = jwt(claims.clone(), SECRET);
        let (status, _, body) =
            call_with(&app, Method::GET, &uri, Some(&format!("Bearer {token}"))).await;
        if accepted {
            assert_eq!(status, StatusCode::OK, "{claims}: {body}");
        } else {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{claims}: {body}");
            assert_error(&body, "token_lifetime_too_long");
        }
    }
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn the_max_ttl_is_configurable(pool: PgPool) {
    let auth = AdminAuth::new(None, Some(SECRET)).with_max_ttl(std::time::Duration::from_secs(600));
    let app = app(pool, auth);
    let uri = format!("{PREFIX}/statistics");
    for (exp, status) in [(500, StatusCode::OK), (700, StatusCode::UNAUTHORIZED)] {
        let token = jwt(
            json!({"role": "admin", "iat": now(), "exp": now() + exp}),
            SECRET,
        );
        let (got, _, body) =
            call_with(&app, Method::GET, &uri, Some(&format!("Bearer {token}"))).await;
        assert_eq!(got, status, "exp in {exp} s: {body}");
    }
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn a_nul_in_a_user_id_finds_the_user_stored_with_it_and_never_fails(pool: PgPool) {
    // A login name with \u0000: stored with U+FFFD, found by the same name.
    let login = Activity::new(ActivityType::Login).user_id("mallory\u{0}");
    write_batch(&pool, &[login]).await.unwrap();
    let app = admin_app(pool.clone());
    let (status, body) = get(&app, &format!("{PREFIX}/user/mallory%00")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total_activities"], 1, "{body}");
    assert_eq!(body["user_id"], "mallory\u{fffd}");
    let details = &body["recent"][0]["details"];
    assert_eq!(details[NUL_NOTE], json!(["user_id"]), "{body}");

    // A NUL alone, or anywhere a user id or rule is taken: a user without
    // rows, never 503.
    for uri in [
        format!("{PREFIX}/user/%00"),
        format!("{PREFIX}/user/%00/path"),
        format!("{PREFIX}/user/%00/profile"),
        format!("{PREFIX}/alerts?user_id=%00"),
        format!("{PREFIX}/alerts?rule=a%00b"),
    ] {
        let (status, body) = get(&app, &uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    }
    let (status, body) = get(&app, &format!("{PREFIX}/user/%00/path")).await;
    assert_eq!((status, &body["steps"]), (StatusCode::OK, &json!([])));

    // The export finds the row too.
    let (status, _, body) = super::tests::send(
        &app,
        Method::GET,
        &format!("{PREFIX}/user/mallory%00/export"),
        Some("Bearer privacy-token-0123456789"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("mallory\u{fffd}"), "{text}");
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn a_number_beyond_f64_in_details_leaves_the_user_page_readable(pool: PgPool) {
    // The line a non-Rust producer wrote with a raw XADD.
    let line = br#"{"v":1,"action":"payment_create","user_id":"user-1e400","created_at":"2026-01-02T03:04:05Z","details":{"amount":1e400,"currency":"EUR"}}"#;
    let decoded = decode_entry("s", "1767323045000-0", Some(line)).unwrap();
    let outcome = write_batch_isolating(&pool, &[decoded]).await.unwrap();
    assert!(outcome.rejected.is_empty());
    assert_eq!(outcome.written.numbers_as_text, 1);
    let app = admin_app(pool);
    let (status, body) = get(&app, &format!("{PREFIX}/user/user-1e400?days=366")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let details = &body["recent"][0]["details"];
    assert_eq!(details["amount"], "1e400", "{body}");
    assert_eq!(details["currency"], "EUR");
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn a_crafted_cursor_is_400(pool: PgPool) {
    let app = admin_app(pool);
    for cursor in [
        "f000000000000000019a0c4f6f1e7b8a9c2d3e4f5a6b7c8d",
        "7fffffffffffffff019a0c4f6f1e7b8a9c2d3e4f5a6b7c8d",
        "not-a-cursor",
    ] {
        for uri in [
            format!("{PREFIX}/user/u1?cursor={cursor}"),
            format!("{PREFIX}/alerts?cursor={cursor}"),
        ] {
            let (status, body) = get(&app, &uri).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
            assert_error(&body, "invalid_parameter");
        }
    }
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn a_far_future_event_counts_on_its_arrival_day(pool: PgPool) {
    // created_at 9999-12-31, written to the stream now: clamped to the
    // entry id's time.
    let arrived_ms = chrono::Utc::now().timestamp_millis();
    let line = br#"{"v":1,"action":"login","user_id":"time-traveller","created_at":"9999-12-31T23:59:59Z"}"#;
    let decoded = decode_entry("s", &format!("{arrived_ms}-0"), Some(line)).unwrap();
    let normal = Activity::new(ActivityType::Logout).user_id("time-traveller");
    let outcome = write_batch_isolating(&pool, &[decoded]).await.unwrap();
    assert_eq!((outcome.written.inserted, outcome.written.clamped), (1, 1));
    write_batch(&pool, &[normal]).await.unwrap();

    let app = admin_app(pool);
    let (status, stats) = get(&app, &format!("{PREFIX}/statistics?days=7")).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    let daily: i64 = stats["daily"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["count"].as_i64().unwrap())
        .sum();
    assert_eq!(stats["today_activities"], 2, "{stats}");
    assert_eq!(stats["total_activities"], daily, "{stats}");
    let today = chrono::Utc::now().date_naive().to_string();
    let last = stats["daily"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["date"].as_str(), last["count"].as_i64()),
        (Some(&*today), Some(2))
    );

    let (_, queue) = get(&app, &format!("{PREFIX}/queue-status")).await;
    assert_eq!(queue["today_activities"], 2, "{queue}");

    let (_, user) = get(&app, &format!("{PREFIX}/user/time-traveller")).await;
    let last_seen: chrono::DateTime<chrono::Utc> =
        user["last_seen"].as_str().unwrap().parse().unwrap();
    assert!(last_seen <= chrono::Utc::now(), "{user}");
    let clamped = user["recent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "login")
        .unwrap();
    assert_eq!(
        clamped["details"][ORIGINAL_CREATED_AT_NOTE],
        "9999-12-31T23:59:59.000000Z"
    );
    assert_eq!(
        clamped["created_at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap(),
        chrono::DateTime::from_timestamp_millis(arrived_ms).unwrap()
    );
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn the_openapi_document_states_the_limits(pool: PgPool) {
    let app = admin_app(pool);
    let (status, _, doc) = call_with(&app, Method::GET, OPENAPI_PATH, None).await;
    assert_eq!(status, StatusCode::OK);
    let param = |path: &str, method: &str, name: &str| -> Value {
        doc["paths"][format!("{PREFIX}/{path}")][method]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}: no parameters"))
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{path}: no {name}"))["schema"]
            .clone()
    };
    let int = |min: u32, max: u32| json!({"type": "integer", "format": "int32", "minimum": min, "maximum": max});
    for path in [
        "statistics",
        "user/{user_id}",
        "user/{user_id}/path",
        "user/{user_id}/profile",
        "top-users",
        "actions",
        "alerts",
    ] {
        assert_eq!(param(path, "get", "days"), int(1, 366), "{path}");
    }
    assert_eq!(param("user/{user_id}", "get", "limit"), int(1, 500));
    assert_eq!(param("user/{user_id}/path", "get", "limit"), int(1, 5000));
    assert_eq!(param("top-users", "get", "limit"), int(1, 1000));
    assert_eq!(param("alerts", "get", "limit"), int(1, 500));
    assert_eq!(
        param("user/{user_id}", "get", "user_id"),
        json!({"type": "string", "minLength": 1, "maxLength": 255})
    );
    assert_eq!(
        param("user/{user_id}", "get", "cursor")["pattern"],
        super::openapi_limits::CURSOR_PATTERN
    );
    assert_eq!(param("alerts/{id}", "get", "id")["format"], "uuid");
    let zones = param("user/{user_id}/profile", "get", "tz")["enum"].clone();
    assert!(zones.as_array().unwrap().contains(&json!("Europe/Berlin")));
    let export = &doc["paths"][format!("{PREFIX}/user/{{user_id}}/export")]["get"]["responses"]["200"]
        ["content"];
    assert!(export.get("text/csv").is_some(), "{export}");

    // What the pattern promises to take is taken: its extremes answer 200.
    for cursor in [
        "0fffffffffffffffffffffffffffffffffffffffffffffff",
        "ff00000000000000000000000000000000000000000000000",
    ] {
        let cursor = &cursor[..48];
        let (status, body) = get(&app, &format!("{PREFIX}/user/u1?cursor={cursor}")).await;
        assert_eq!(status, StatusCode::OK, "{cursor}: {body}");
        let (status, body) = get(&app, &format!("{PREFIX}/alerts?cursor={cursor}")).await;
        assert_eq!(status, StatusCode::OK, "{cursor}: {body}");
    }
    assert_eq!(
        param("user/{user_id}", "delete", "mode")["enum"],
        json!(["delete", "pseudonymize"])
    );
}
