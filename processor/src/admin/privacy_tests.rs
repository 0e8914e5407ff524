//! The privacy endpoints (erasure, export) and the audit records, through
//! the router (no port) on a fresh database each.

use std::sync::Arc;

use activity_store::privacy::{ErasureList, ErasurePolicy, PseudonymKey};
use activity_store::testing::{assert_rollups_match_raw, random_activities};
use activity_store::writer::write_batch;
use activity_tracker::{Activity, ActivityType};
use axum::Router;
use axum::http::{Method, StatusCode, header};
use serde_json::{Value, json};
use sqlx::PgPool;

use super::tests::{SECRET, assert_error, call_with, in_an_hour, jwt, send, state_with};
use super::*;

const ADMIN: &str = "Bearer admin-token-0123456789";
const PRIVACY: &str = "Bearer privacy-token-0123456789";
const BOTH: &str = "Bearer shared-token-0123456789";
const USER: &str = "user-2";

fn privacy(key: bool) -> Arc<Privacy> {
    let mut policy = ErasurePolicy::new(key.then(|| PseudonymKey::new(b"privacy test key")));
    policy.hold_days = 30;
    Arc::new(Privacy {
        policy: Arc::new(policy),
        list: ErasureList::new(),
        ip_truncation: None,
        audit_admin_reads: true,
    })
}

fn app_with(pool: PgPool, privacy: Arc<Privacy>) -> Router {
    let auth = AdminAuth::new(
        Some("ops=admin-token-0123456789,shared-token-0123456789"),
        Some(SECRET),
    )
    .with_privacy_tokens(Some("dpo=privacy-token-0123456789,shared-token-0123456789"));
    let key = format!("admin-privacy-test-{}", uuid::Uuid::now_v7());
    router(state_with(pool, &key, auth).with_privacy(privacy))
}

/// Random activity of a few users, and rows of [`USER`] whose texts need
/// quoting in CSV.
async fn populate(pool: &PgPool) {
    write_batch(pool, &random_activities(3, 400, 20, 5))
        .await
        .unwrap();
    let tricky = Activity::new(ActivityType::CaseView)
        .user_id(USER)
        .resource("case", "a,b")
        .user_agent("Agent \"quoted\", with comma")
        .session_id("line\nbreak")
        .ip_address([198, 51, 100, 7].into())
        .detail("note", "x,\"y\"\r\nz");
    write_batch(pool, &[tricky]).await.unwrap();
}

async fn audit_records(pool: &PgPool, action: &str) -> Vec<Value> {
    sqlx::query_scalar(
        "SELECT details FROM user_activity_logs WHERE action = $1 AND user_id IS NULL
         ORDER BY created_at",
    )
    .bind(action)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The audit record of an export is written once the download ended.
async fn wait_for_audit(pool: &PgPool, action: &str) -> Vec<Value> {
    for _ in 0..100 {
        let records = audit_records(pool, action).await;
        if !records.is_empty() {
            return records;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no {action} record");
}

/// The user's rows as the export must give them, oldest first.
async fn table_rows(pool: &PgPool, user: &str) -> Vec<Value> {
    sqlx::query_scalar(
        "SELECT json_build_object('id', id, 'user_id', user_id, 'action', action,
                'resource_type', resource_type, 'resource_id', resource_id, 'details', details,
                'ip_address', host(ip_address), 'user_agent', user_agent,
                'session_id', session_id)
         FROM user_activity_logs WHERE user_id = $1 ORDER BY created_at, id",
    )
    .bind(user)
    .fetch_all(pool)
    .await
    .unwrap()
}

fn without_time(mut row: Value) -> Value {
    row.as_object_mut().unwrap().remove("created_at");
    row
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn role_matrix(pool: PgPool) {
    let app = app_with(pool, privacy(true));
    let erase = format!("{PREFIX}/user/{USER}?mode=delete");
    // Another user's: the erased one's answers 404 (below).
    let export = format!("{PREFIX}/user/user-1/export");
    let statistics = format!("{PREFIX}/statistics");
    let privacy_jwt = format!(
        "Bearer {}",
        jwt(
            json!({"role": "privacy", "sub": "jwt-dpo", "exp": in_an_hour()}),
            SECRET
        )
    );
    let admin_jwt = format!(
        "Bearer {}",
        jwt(
            json!({"role": "admin", "sub": "jwt-ops", "exp": in_an_hour()}),
            SECRET
        )
    );
    for (method, uri, auth, expected) in [
        (Method::DELETE, &erase, Some(ADMIN), StatusCode::FORBIDDEN),
        (Method::DELETE, &erase, Some(PRIVACY), StatusCode::OK),
        (Method::DELETE, &erase, None, StatusCode::UNAUTHORIZED),
        (
            Method::DELETE,
            &erase,
            Some(admin_jwt.as_str()),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::DELETE,
            &erase,
            Some(privacy_jwt.as_str()),
            StatusCode::OK,
        ),
        (Method::DELETE, &erase, Some(BOTH), StatusCode::OK),
        (Method::GET, &export, Some(ADMIN), StatusCode::FORBIDDEN),
        (Method::GET, &export, Some(PRIVACY), StatusCode::OK),
        (Method::GET, &export, None, StatusCode::UNAUTHORIZED),
        (
            Method::GET,
            &statistics,
            Some(PRIVACY),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::GET,
            &statistics,
            Some(privacy_jwt.as_str()),
            StatusCode::FORBIDDEN,
        ),
        (Method::GET, &statistics, Some(ADMIN), StatusCode::OK),
        (Method::GET, &statistics, Some(BOTH), StatusCode::OK),
    ] {
        let (status, _, body) = send(&app, method.clone(), uri, auth).await;
        assert_eq!(status, expected, "{method} {uri} with {auth:?}");
        if status == StatusCode::FORBIDDEN {
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_error(&body, "forbidden");
        }
    }
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn an_erased_users_endpoints_answer_404_while_others_answer(pool: PgPool) {
    populate(&pool).await;
    let app = app_with(pool.clone(), privacy(true));
    let endpoints = |user: &str| {
        [
            (format!("{PREFIX}/user/{user}"), ADMIN),
            (format!("{PREFIX}/user/{user}/path"), ADMIN),
            (format!("{PREFIX}/user/{user}/profile"), ADMIN),
            (format!("{PREFIX}/user/{user}/export"), PRIVACY),
        ]
    };
    for (uri, auth) in endpoints(USER) {
        let (status, _, _) = send(&app, Method::GET, &uri, Some(auth)).await;
        assert_eq!(status, StatusCode::OK, "{uri} before the erasure");
    }
    let erase = format!("{PREFIX}/user/{USER}?mode=pseudonymize");
    let (status, _, _) = send(&app, Method::DELETE, &erase, Some(PRIVACY)).await;
    assert_eq!(status, StatusCode::OK);

    for (uri, auth) in endpoints(USER) {
        let (status, _, body) = send(&app, Method::GET, &uri, Some(auth)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri} after the erasure");
        assert_error(&serde_json::from_slice(&body).unwrap(), "user_erased");
    }
    // `user-2` and a NUL is stored as another user (`user-2` and U+FFFD),
    // not the one erased.
    let (status, _, _) = send(
        &app,
        Method::GET,
        &format!("{PREFIX}/user/user-2%00"),
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "another user: user-2 and U+FFFD");
    for (uri, auth) in endpoints("user-1") {
        let (status, _, _) = send(&app, Method::GET, &uri, Some(auth)).await;
        assert_eq!(status, StatusCode::OK, "{uri}: another user");
    }
    // Erasing again (renewing the hold) still works.
    let (status, _, _) = send(&app, Method::DELETE, &erase, Some(PRIVACY)).await;
    assert_eq!(status, StatusCode::OK);
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn without_a_key_an_erased_user_reads_as_one_without_activities(pool: PgPool) {
    populate(&pool).await;
    let app = app_with(pool.clone(), privacy(false));
    let erase = format!("{PREFIX}/user/{USER}?mode=delete");
    let (status, _, _) = send(&app, Method::DELETE, &erase, Some(PRIVACY)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = send(
        &app,
        Method::GET,
        &format!("{PREFIX}/user/{USER}"),
        Some(ADMIN),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "nobody is held without PSEUDONYM_KEY"
    );
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["total_activities"], 0);
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn erasure_answers_a_receipt_and_is_recorded_with_who(pool: PgPool) {
    populate(&pool).await;
    let app = app_with(pool.clone(), privacy(true));
    let uri = format!("{PREFIX}/user/{USER}");
    let (status, _, body) = call_with(&app, Method::DELETE, &uri, Some(PRIVACY)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "invalid_parameter");
    assert!(body["message"].as_str().unwrap().contains("mode"), "{body}");
    let (status, _, body) = call_with(
        &app,
        Method::DELETE,
        &format!("{uri}?mode=shred"),
        Some(PRIVACY),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let before = table_rows(&pool, USER).await.len() as u64;
    let (status, _, receipt) = call_with(
        &app,
        Method::DELETE,
        &format!("{uri}?mode=pseudonymize"),
        Some(PRIVACY),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["rows"], before);
    assert_eq!(receipt["mode"], "pseudonymize");
    assert!(receipt["finished_at"].is_string() && receipt["held_until"].is_string());
    let pseudonym = receipt["pseudonym"].as_str().unwrap().to_owned();
    assert!(pseudonym.starts_with("erased:"));
    let partitions: u64 = receipt["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(partitions, before);
    assert!(table_rows(&pool, USER).await.is_empty());
    assert_eq!(table_rows(&pool, &pseudonym).await.len() as u64, before);
    assert_rollups_match_raw(&pool).await;
    assert_eq!(
        audit_records(&pool, "user_erased").await,
        [json!({"mode": "pseudonymize", "who": "dpo", "rows": before, "pseudonym": pseudonym})]
    );
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn pseudonymize_without_the_key_is_a_409(pool: PgPool) {
    let app = app_with(pool, privacy(false));
    let uri = format!("{PREFIX}/user/{USER}?mode=pseudonymize");
    let (status, _, body) = call_with(&app, Method::DELETE, &uri, Some(PRIVACY)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "pseudonym_key_unset");
    assert!(body["message"].as_str().unwrap().contains("PSEUDONYM_KEY"));
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn ndjson_export_has_every_row_and_field_of_the_table(pool: PgPool) {
    populate(&pool).await;
    let app = app_with(pool.clone(), privacy(true));
    let (status, headers, body) = send(
        &app,
        Method::GET,
        &format!("{PREFIX}/user/{USER}/export?format=ndjson"),
        Some(PRIVACY),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/x-ndjson");
    let disposition = headers[header::CONTENT_DISPOSITION].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename="),
        "{disposition}"
    );
    let lines: Vec<Value> = String::from_utf8(body)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let expected = table_rows(&pool, USER).await;
    assert!(expected.len() > 10);
    assert!(lines.iter().all(|l| l["created_at"].is_string()));
    assert_eq!(
        lines.into_iter().map(without_time).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(
        wait_for_audit(&pool, "user_exported").await,
        [
            json!({"who": "dpo", "user": USER, "rows": expected.len(), "format": "ndjson",
                "complete": true})
        ]
    );
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn csv_export_is_read_back_by_pythons_csv_module(pool: PgPool) {
    populate(&pool).await;
    let app = app_with(pool.clone(), privacy(true));
    let (status, headers, body) = send(
        &app,
        Method::GET,
        &format!("{PREFIX}/user/{USER}/export?format=csv"),
        Some(PRIVACY),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    let path = std::env::temp_dir().join(format!("export-{}.csv", uuid::Uuid::now_v7()));
    std::fs::write(&path, &body).unwrap();
    // Python's own reader, strict about quoting, gives each record back as a dict.
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import csv, json, sys\n\
             with open(sys.argv[1], newline='', encoding='utf-8') as f:\n\
             \x20   print(json.dumps(list(csv.DictReader(f, strict=True))))",
        )
        .arg(&path)
        .output()
        .expect("python3 runs");
    std::fs::remove_file(&path).ok();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let records: Vec<serde_json::Map<String, Value>> =
        serde_json::from_slice(&output.stdout).unwrap();
    let expected = table_rows(&pool, USER).await;
    assert_eq!(records.len(), expected.len());
    for (record, row) in records.iter().zip(&expected) {
        for (column, value) in row.as_object().unwrap() {
            let text = match value {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let got = &record[column];
            if column == "details" && !text.is_empty() {
                let parsed: Value = serde_json::from_str(got.as_str().unwrap()).unwrap();
                assert_eq!(&parsed, value, "{column}");
            } else {
                assert_eq!(got, &Value::String(text), "{column}");
            }
        }
    }
    assert!(
        records
            .iter()
            .any(|r| r["session_id"] == "line\nbreak" && r["resource_id"] == "a,b")
    );
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn admin_reads_of_one_user_are_recorded(pool: PgPool) {
    populate(&pool).await;
    let app = app_with(pool.clone(), privacy(true));
    for path in [format!("user/{USER}"), format!("user/{USER}/path")] {
        let (status, _, _) =
            call_with(&app, Method::GET, &format!("{PREFIX}/{path}"), Some(ADMIN)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    assert_eq!(
        audit_records(&pool, "admin_read").await,
        [
            json!({"who": "ops", "user": USER, "endpoint": "user"}),
            json!({"who": "ops", "user": USER, "endpoint": "path"}),
        ]
    );
    // Off: nothing recorded.
    let quiet = Arc::new(Privacy {
        audit_admin_reads: false,
        ..(*privacy(true)).clone()
    });
    let app = app_with(pool.clone(), quiet);
    call_with(
        &app,
        Method::GET,
        &format!("{PREFIX}/user/{USER}"),
        Some(ADMIN),
    )
    .await;
    assert_eq!(audit_records(&pool, "admin_read").await.len(), 2);
}
