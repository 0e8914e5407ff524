//! The admin router through `tower::ServiceExt::oneshot` (no port), on a
//! fresh database each and the shared Redis with a stream key of its own.

use std::sync::Arc;
use std::time::Duration;

use activity_store::writer::write_batch;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use sqlx::PgPool;
use tower::ServiceExt;

use super::*;
use activity_store::queries;
use activity_store::testing::random_activities;

pub(super) const TOKEN: &str = "static-admin-token-0123456789";
pub(super) const SECRET: &str = "jwt-secret-for-tests";

fn redis_client() -> redis::Client {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    redis::Client::open(url).expect("REDIS_URL parses")
}

pub(super) fn state_with(pool: PgPool, stream_key: &str, auth: AdminAuth) -> AdminState {
    AdminState::new(
        pool,
        redis_client(),
        stream_key,
        "activity-processor",
        Arc::new(ProcessorStats::new()),
        auth,
    )
}

fn app(pool: PgPool) -> Router {
    let key = format!("admin-test-{}", uuid::Uuid::now_v7());
    router(state_with(
        pool,
        &key,
        AdminAuth::new(Some(TOKEN), Some(SECRET)),
    ))
}

/// Sends a request; the status, headers and whole body.
pub(super) async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    auth: Option<&str>,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(auth) = auth {
        request = request.header(header::AUTHORIZATION, auth);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, bytes.to_vec())
}

/// [`send`] with a JSON answer.
pub(super) async fn call_with(
    app: &Router,
    method: Method,
    uri: &str,
    auth: Option<&str>,
) -> (StatusCode, HeaderMap, Value) {
    let (status, headers, bytes) = send(app, method, uri, auth).await;
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{uri}: body is not JSON ({e}): {bytes:?}"));
    (status, headers, body)
}

async fn call(app: &Router, uri: &str, auth: Option<&str>) -> (StatusCode, HeaderMap, Value) {
    call_with(app, Method::GET, uri, auth).await
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
    let (status, _, body) = call(app, uri, Some(&format!("Bearer {TOKEN}"))).await;
    (status, body)
}

pub(super) fn jwt(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

pub(super) fn in_an_hour() -> i64 {
    chrono::Utc::now().timestamp() + 3600
}

pub(super) fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn authentication_cases(pool: PgPool) {
    let app = app(pool);
    let uri = "/api/v1/admin/user-activities/statistics";
    let cases: Vec<(&str, Option<String>, StatusCode, Option<&str>)> = vec![
        (
            "no header",
            None,
            StatusCode::UNAUTHORIZED,
            Some("missing_token"),
        ),
        (
            "wrong scheme",
            Some(format!("Basic {TOKEN}")),
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
        ),
        (
            "empty bearer",
            Some("Bearer ".into()),
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
        ),
        (
            "bad token",
            Some("Bearer not-the-token".into()),
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
        ),
        (
            "static token prefix",
            Some(format!("Bearer {}", &TOKEN[..10])),
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
        ),
        (
            "expired JWT",
            Some(format!(
                "Bearer {}",
                jwt(
                    json!({"role": "admin", "exp": chrono::Utc::now().timestamp() - 3600}),
                    SECRET
                )
            )),
            StatusCode::UNAUTHORIZED,
            Some("token_expired"),
        ),
        (
            "JWT without exp",
            Some(format!("Bearer {}", jwt(json!({"role": "admin"}), SECRET))),
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
        ),
        (
            "JWT signed with another secret",
            Some(format!(
                "Bearer {}",
                jwt(
                    json!({"role": "admin", "exp": in_an_hour()}),
                    "another-secret"
                )
            )),
            StatusCode::UNAUTHORIZED,
            Some("invalid_token"),
        ),
        (
            "JWT without role",
            Some(format!(
                "Bearer {}",
                jwt(json!({"exp": in_an_hour()}), SECRET)
            )),
            StatusCode::FORBIDDEN,
            Some("forbidden"),
        ),
        (
            "JWT with another role",
            Some(format!(
                "Bearer {}",
                jwt(json!({"role": "viewer", "exp": in_an_hour()}), SECRET)
            )),
            StatusCode::FORBIDDEN,
            Some("forbidden"),
        ),
        (
            "valid static token",
            Some(format!("Bearer {TOKEN}")),
            StatusCode::OK,
            None,
        ),
        (
            "valid JWT",
            Some(format!(
                "bearer {}",
                jwt(
                    json!({"role": "admin", "exp": in_an_hour(), "sub": "ops"}),
                    SECRET
                )
            )),
            StatusCode::OK,
            None,
        ),
    ];
    for (name, auth, status, code) in cases {
        let (got, headers, body) = call(&app, uri, auth.as_deref()).await;
        assert_eq!(got, status, "{name}: {body}");
        if let Some(code) = code {
            assert_error(&body, code);
        }
        if status == StatusCode::UNAUTHORIZED {
            let challenge = headers[header::WWW_AUTHENTICATE].to_str().unwrap();
            assert!(challenge.starts_with("Bearer"), "{name}: {challenge}");
        }
        if let Some(auth) = &auth {
            let token = auth.split_once(' ').map(|(_, t)| t).unwrap_or("");
            if token.len() > 8 {
                assert!(!body.to_string().contains(token), "{name}: token echoed");
            }
        }
    }
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn without_tokens_or_secret_every_request_is_refused(pool: PgPool) {
    let app = router(state_with(
        pool,
        "admin-test-unconfigured",
        AdminAuth::new(None, None),
    ));
    for auth in [
        None,
        Some(format!("Bearer {TOKEN}")),
        Some("Bearer ".into()),
    ] {
        let (status, headers, body) = call(
            &app,
            "/api/v1/admin/user-activities/actions",
            auth.as_deref(),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(headers.contains_key(header::WWW_AUTHENTICATE));
        assert_error(&body, "admin_api_disabled");
    }
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn bad_parameters_are_400_naming_the_parameter(pool: PgPool) {
    let app = app(pool);
    let long = "u".repeat(256);
    let p = "/api/v1/admin/user-activities";
    let cases = [
        (format!("{p}/statistics?days=0"), "days"),
        (format!("{p}/statistics?days=367"), "days"),
        (format!("{p}/statistics?days=seven"), "days"),
        (format!("{p}/statistics?days=-1"), "days"),
        (format!("{p}/actions?days=1000"), "days"),
        (format!("{p}/top-users?limit=0"), "limit"),
        (format!("{p}/top-users?limit=1001"), "limit"),
        (format!("{p}/top-users?days=30&limit=ten"), "limit"),
        (format!("{p}/user/{long}"), "user_id"),
        (format!("{p}/user/{long}/path"), "user_id"),
        (format!("{p}/user/u1?limit=501"), "limit"),
        (format!("{p}/user/u1?days=0"), "days"),
        (format!("{p}/user/u1?cursor=not-a-cursor"), "cursor"),
        (format!("{p}/user/u1/path?limit=0"), "limit"),
        (format!("{p}/user/u1/path?days=400"), "days"),
    ];
    for (uri, parameter) in cases {
        let (status, body) = get(&app, &uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_error(&body, "invalid_parameter");
        assert!(
            body["message"].as_str().unwrap().contains(parameter),
            "{uri}: {body}"
        );
    }
    // Bounds themselves are fine.
    for uri in [
        format!("{p}/statistics?days=1"),
        format!("{p}/statistics?days=366"),
        format!("{p}/top-users?limit=1000&days=366"),
        format!("{p}/user/{}?limit=500", "u".repeat(255)),
    ] {
        assert_eq!(get(&app, &uri).await.0, StatusCode::OK, "{uri}");
    }
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn a_user_id_full_of_sql_is_just_a_user_without_rows(pool: PgPool) {
    write_batch(&pool, &random_activities(20, 50, 3, 5))
        .await
        .unwrap();
    let app = app(pool.clone());
    let evil = "x'; DROP TABLE user_activity_logs; -- \" OR 1=1 %_\\";
    let encoded: String = evil.bytes().map(|b| format!("%{b:02X}")).collect();
    let (status, body) = get(
        &app,
        &format!("/api/v1/admin/user-activities/user/{encoded}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], evil);
    assert_eq!(body["total_activities"], 0);
    assert_eq!(body["recent"], json!([]));
    let (status, body) = get(
        &app,
        &format!("/api/v1/admin/user-activities/user/{encoded}/path"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["steps"], json!([]));
    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM user_activity_logs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 50);
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn endpoints_answer_what_the_library_computes(pool: PgPool) {
    write_batch(&pool, &random_activities(21, 400, 20, 6))
        .await
        .unwrap();
    let app = app(pool.clone());
    let p = "/api/v1/admin/user-activities";
    let json = |v: &dyn erased::Ser| v.value();
    let cases: Vec<(String, Value)> = vec![
        (
            format!("{p}/statistics"),
            json(&queries::get_statistics(&pool, 7).await.unwrap()),
        ),
        (
            format!("{p}/statistics?days=30"),
            json(&queries::get_statistics(&pool, 30).await.unwrap()),
        ),
        (
            format!("{p}/top-users?days=30&limit=3"),
            json(&queries::get_top_users(&pool, 30, 3).await.unwrap()),
        ),
        (
            format!("{p}/actions"),
            json(&queries::get_action_usage(&pool, 7).await.unwrap()),
        ),
        (
            format!("{p}/user/user-2?days=30"),
            json(
                &queries::get_user_activity_stats(&pool, "user-2", 30)
                    .await
                    .unwrap(),
            ),
        ),
        (
            format!("{p}/user/user-2/path?days=1&limit=200"),
            json(
                &queries::get_user_path(&pool, "user-2", 1, 200)
                    .await
                    .unwrap(),
            ),
        ),
    ];
    for (uri, expected) in cases {
        let (status, body) = get(&app, &uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        assert_eq!(body, expected, "{uri}");
    }
    // The contract keys, by name.
    let (_, s) = get(&app, &format!("{p}/statistics?days=7")).await;
    for key in [
        "days",
        "total_activities",
        "today_activities",
        "active_users",
        "activity_breakdown",
        "daily",
        "hourly",
        "top_actions",
    ] {
        assert!(s.get(key).is_some(), "statistics lacks {key}");
    }
    assert_eq!(s["daily"].as_array().unwrap().len(), 7);
    assert_eq!(s["hourly"].as_array().unwrap().len(), 24);
    let (total,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM user_activity_logs WHERE created_at >= $1")
            .bind(activity_store::testing::window_start(7).1)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(s["total_activities"], total);
    let (_, u) = get(&app, &format!("{p}/user/user-2?days=30&limit=5")).await;
    assert_eq!(u["recent"].as_array().unwrap().len(), 5);
    let cursor = u["next_cursor"].as_str().unwrap();
    let (status, next) = get(
        &app,
        &format!("{p}/user/user-2?days=30&limit=5&cursor={cursor}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(next["recent"][0]["id"], u["recent"][0]["id"]);
}

/// `serde_json::to_value` for the test table above.
mod erased {
    pub(super) trait Ser {
        fn value(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Ser for T {
        fn value(&self) -> serde_json::Value {
            serde_json::to_value(self).expect("serializable")
        }
    }
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn queue_status_reports_the_stream_the_group_and_the_table(pool: PgPool) {
    write_batch(&pool, &random_activities(22, 120, 2, 6))
        .await
        .unwrap();
    let key = format!("admin-test-{}", uuid::Uuid::now_v7());
    let stats = Arc::new(ProcessorStats::new());
    stats.record_batch(7, 2, Duration::from_millis(3));
    stats.record_dead_lettered(1);
    let state = AdminState::new(
        pool.clone(),
        redis_client(),
        key.clone(),
        "activity-processor",
        stats,
        AdminAuth::new(Some(TOKEN), None),
    );
    let app = router(state);
    let uri = "/api/v1/admin/user-activities/queue-status";

    // No stream, no group yet: zeros, not errors.
    let (status, body) = get(&app, uri).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["queue_length"], 0);
    assert_eq!(body["pending"], 0);
    assert_eq!(body["consumers"], json!([]));

    let mut con = redis_client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("XGROUP")
        .arg(&["CREATE", &key, "activity-processor", "$", "MKSTREAM"])
        .query_async(&mut con)
        .await
        .unwrap();
    for i in 0..5 {
        let _: String = redis::cmd("XADD")
            .arg(&[&key, "*", "data", &format!("{{\"n\":{i}}}")])
            .query_async(&mut con)
            .await
            .unwrap();
    }
    // Two version 2 entries: 3 and 4 events.
    for n in [3, 4] {
        let lines = vec![r#"{"action":"login"}"#; n].join("\n");
        let _: String = redis::cmd("XADD")
            .arg(&[&key, "*", "n", &n.to_string(), "events", &lines])
            .query_async(&mut con)
            .await
            .unwrap();
    }
    let _: String = redis::cmd("XADD")
        .arg(&[&format!("{key}:dead"), "*", "data", "x", "reason", "test"])
        .query_async(&mut con)
        .await
        .unwrap();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg(&[
            "GROUP",
            "activity-processor",
            "worker-1",
            "COUNT",
            "3",
            "STREAMS",
            &key,
            ">",
        ])
        .query_async(&mut con)
        .await
        .unwrap();

    let (status, body) = get(&app, uri).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["queue_length"], 5 + 3 + 4);
    assert_eq!(body["queue_entries"], 7);
    assert_eq!(body["pending"], 3);
    assert_eq!(body["dead_letter_length"], 1);
    assert_eq!(body["consumers"][0]["name"], "worker-1");
    assert_eq!(body["consumers"][0]["pending"], 3);
    assert!(body["consumers"][0]["idle_ms"].is_u64());
    let age = body["oldest_pending_age_seconds"].as_f64().unwrap();
    assert!((0.0..60.0).contains(&age), "{age}");
    assert_eq!(body["processed_total"], 10);
    assert_eq!(body["db_write_success_rate"], 1.0);
    assert!(body["last_batch_at"].is_string());
    assert!(body["redis_error"].is_null());
    let (today, total, users): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE (created_at AT TIME ZONE 'UTC')::date
                                  = (now() AT TIME ZONE 'UTC')::date),
                count(*),
                count(DISTINCT user_id) FILTER (WHERE (created_at AT TIME ZONE 'UTC')::date
                                                 = (now() AT TIME ZONE 'UTC')::date)
         FROM user_activity_logs",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (
            &body["today_activities"],
            &body["total_activities"],
            &body["active_users_today"]
        ),
        (&json!(today), &json!(total), &json!(users))
    );
    let _: () = redis::cmd("DEL")
        .arg(&[&key, &format!("{key}:dead")])
        .query_async(&mut con)
        .await
        .unwrap();
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn redis_down_still_answers_with_the_database_figures(pool: PgPool) {
    let state = AdminState::new(
        pool,
        redis::Client::open("redis://127.0.0.1:1").unwrap(),
        "k",
        "activity-processor",
        Arc::new(ProcessorStats::new()),
        AdminAuth::new(Some(TOKEN), None),
    );
    let (status, body) = get(&router(state), "/api/v1/admin/user-activities/queue-status").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["queue_length"].is_null());
    assert!(body["redis_error"].is_string());
    assert_eq!(body["total_activities"], 0);
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn openapi_lists_every_route_with_the_bearer_scheme(pool: PgPool) {
    let app = app(pool);
    // Served without credentials.
    let (status, _, doc) = call(&app, OPENAPI_PATH, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with('3'));
    let paths = doc["paths"].as_object().unwrap();
    let routes = routes();
    let operations: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(routes.len(), operations, "{:?}", paths.keys());
    for AdminRoute { path, method, .. } in routes {
        let op = &paths
            .get(&path)
            .unwrap_or_else(|| panic!("{path} is not in the OpenAPI document"))
            [method.as_str().to_ascii_lowercase()];
        assert_eq!(op["security"], json!([{"bearer": []}]), "{method} {path}");
        assert!(op["responses"]["401"].is_object(), "{method} {path}");
        // And the route really is served (auth runs before anything else).
        let concrete = path.replace("{user_id}", "u1");
        let (status, _, _) = call_with(&app, method.clone(), &concrete, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {concrete}");
    }
    for schema in [
        "QueueStatus",
        "Statistics",
        "UserActivityStats",
        "UserPath",
        "TopUsers",
        "ActionUsageReport",
        "ErasureReceipt",
        "ErrorBody",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} is not described"
        );
    }
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    let stats = &paths["/api/v1/admin/user-activities/statistics"]["get"];
    assert!(
        stats["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "days")
    );
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn other_methods_get_a_json_405(pool: PgPool) {
    let app = app(pool);
    let response = app
        .oneshot(
            Request::post("/api/v1/admin/user-activities/statistics")
                .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_error(&body, "method_not_allowed");
}
