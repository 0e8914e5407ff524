//! The writer against a real PostgreSQL, one fresh database per test, with
//! the store's migrations.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

use super::*;
use activity_tracker::{ActivityType, limits};
use chrono::DateTime;
use columns::details_json;

type StoredRow = (
    Uuid,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<Value>,
    Option<IpAddr>,
    Option<String>,
    Option<String>,
    DateTime<Utc>,
);

/// The table's rows as activities, ordered by id.
async fn stored(pool: &PgPool) -> Vec<Activity> {
    let rows: Vec<StoredRow> = sqlx::query_as(
        "SELECT id, user_id, action::text, resource_type::text, resource_id::text, details, \
                ip_address, user_agent::text, session_id::text, created_at \
         FROM user_activity_logs ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|row| Activity {
            id: row.0,
            user_id: row.1,
            action: ActivityType::custom(row.2).unwrap(),
            resource_type: row.3,
            resource_id: row.4,
            details: row.5.map(|details| match details {
                Value::Object(map) => map,
                other => panic!("details stored as a non-object: {other}"),
            }),
            ip_address: row.6,
            user_agent: row.7,
            session_id: row.8,
            created_at: row.9,
        })
        .collect()
}

async fn count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM user_activity_logs")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Events using every field, including values the writer must normalize.
fn varied_events() -> Vec<Activity> {
    let at = Utc.with_ymd_and_hms(2026, 11, 26, 20, 1, 2).unwrap()
        + chrono::Duration::microseconds(123_456);
    vec![
        Activity::at(ActivityType::Login, at)
            .user_id("user-123")
            .ip_address("192.168.1.100".parse().unwrap())
            .user_agent("Mozilla/5.0 (X11; Linux x86_64)")
            .session_id("sess-1")
            .detail("method", "POST")
            .detail("route", "/api/login")
            .detail("status", 200)
            .detail("latency_ms", 12.5),
        Activity::at(
            ActivityType::CaseCreate,
            at + chrono::Duration::microseconds(1),
        )
        .user_id("0193a0c4-6f1e-7b8a-9c2d-3e4f5a6b7c8d")
        .resource("case", "case-456")
        .detail("case_amount", 50000.0)
        .detail(
            "nested",
            json!({"a": [1, 2, {"b": null}], "quote": "it's \"x\"\t\\"}),
        )
        .ip_address("2001:db8::7".parse().unwrap())
        // Over the limit, multi-byte: truncated to 500 characters.
        .user_agent("ü".repeat(700)),
        // Anonymous, nothing optional.
        Activity::at(ActivityType::custom("export_report").unwrap(), at)
            .session_id("s".repeat(300))
            // Over 16 KiB: replaced by a marker, the event kept.
            .detail("blob", "x".repeat(20_000)),
        Activity::at(ActivityType::PaymentFailed, at + chrono::Duration::days(40))
            .user_id("user-9\nwith newline")
            .detail("reason", "card declined"),
    ]
}

fn normalized(events: &[Activity]) -> Vec<Activity> {
    let mut events: Vec<Activity> = events
        .iter()
        .cloned()
        .map(|mut event| {
            event.normalize();
            event
        })
        .collect();
    events.sort_by_key(|event| event.id);
    events
}

async fn rows_match_events(pool: PgPool, method: InsertMethod) {
    let events = varied_events();
    let outcome = write_batch_with(&pool, &events, method).await.unwrap();
    assert_eq!(
        outcome,
        WriteOutcome {
            inserted: 4,
            duplicates: 0,
            erased: 0
        }
    );

    let stored = stored(&pool).await;
    assert_eq!(stored, normalized(&events));
    let user_agent = stored
        .iter()
        .find_map(|event| event.user_agent.as_ref().filter(|ua| ua.starts_with('ü')))
        .unwrap();
    assert_eq!(user_agent.chars().count(), limits::USER_AGENT_MAX_CHARS);

    // The IP is an INET (subnets can be queried), created_at keeps its
    // microseconds, details are a JSON object.
    let in_subnet: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM user_activity_logs WHERE ip_address << '192.168.0.0/16'::inet",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(in_subnet, 1);
    let micros: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(microseconds FROM created_at)::float8 FROM user_activity_logs \
         WHERE action = 'login'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(micros, [2_123_456.0]);
    let status: i64 = sqlx::query_scalar(
        "SELECT (details->>'status')::int8 FROM user_activity_logs WHERE action = 'login'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(status, 200);
}

#[sqlx::test]
async fn rows_match_the_events_field_by_field(pool: PgPool) {
    rows_match_events(pool, InsertMethod::Unnest).await;
}

#[sqlx::test]
async fn rows_match_the_events_field_by_field_through_a_temporary_table(pool: PgPool) {
    rows_match_events(pool, InsertMethod::CopyTempTable).await;
}

#[sqlx::test]
async fn rows_match_the_events_field_by_field_through_copy(pool: PgPool) {
    rows_match_events(pool, InsertMethod::CopyOptimistic).await;
}

#[sqlx::test]
async fn rows_match_the_events_field_by_field_in_one_statement(pool: PgPool) {
    rows_match_events(pool, InsertMethod::OneStatement).await;
}

/// An event whose `details` are held as JSON text, as the processor's
/// reader keeps them.
struct DetailsAsText {
    activity: Activity,
    details: Option<String>,
}

impl StoredEvent for DetailsAsText {
    fn activity(&self) -> &Activity {
        &self.activity
    }

    fn details_json(&self) -> Option<Cow<'_, str>> {
        self.details.as_deref().map(Cow::Borrowed)
    }
}

#[sqlx::test]
async fn details_given_as_text_are_stored_like_the_object(pool: PgPool) {
    let events = varied_events();
    let as_text: Vec<DetailsAsText> = events
        .iter()
        .map(|event| {
            let mut activity = event.clone();
            let details = activity.details.take().map(|d| details_json(&d));
            DetailsAsText { activity, details }
        })
        .collect();
    for method in [
        InsertMethod::Unnest,
        InsertMethod::CopyTempTable,
        InsertMethod::CopyOptimistic,
        InsertMethod::OneStatement,
    ] {
        let outcome = write_batch_with(&pool, &as_text, method).await.unwrap();
        assert_eq!(outcome.inserted, 4, "{method:?}");
        // Text within the limits is stored as it is; events with a field
        // to truncate or details over 16 KiB are normalized, details kept.
        assert_eq!(stored(&pool).await, normalized(&events), "{method:?}");
        sqlx::query("DELETE FROM user_activity_logs")
            .execute(&pool)
            .await
            .unwrap();
    }
}

#[sqlx::test]
async fn the_same_batch_twice_is_stored_once(pool: PgPool) {
    let events = varied_events();
    let first = write_batch(&pool, &events).await.unwrap();
    assert_eq!(
        first,
        WriteOutcome {
            inserted: 4,
            duplicates: 0,
            erased: 0
        }
    );
    let again = write_batch(&pool, &events).await.unwrap();
    assert_eq!(
        again,
        WriteOutcome {
            inserted: 0,
            duplicates: 4,
            erased: 0
        }
    );
    for method in [
        InsertMethod::CopyTempTable,
        InsertMethod::CopyOptimistic,
        InsertMethod::OneStatement,
    ] {
        let again = write_batch_with(&pool, &events, method).await.unwrap();
        assert_eq!(
            again,
            WriteOutcome {
                inserted: 0,
                duplicates: 4,
                erased: 0
            },
            "{method:?}"
        );
    }
    assert_eq!(count(&pool).await, 4);

    // Half old, half new: only the new half is inserted.
    let mut mixed = events[..2].to_vec();
    mixed.push(Activity::new(ActivityType::Logout).user_id("user-123"));
    mixed.push(Activity::new(ActivityType::Logout).user_id("user-124"));
    // Through COPY: the primary key refuses the batch, written again with UNNEST.
    let outcome = write_batch_with(&pool, &mixed, InsertMethod::CopyOptimistic)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        WriteOutcome {
            inserted: 2,
            duplicates: 2,
            erased: 0
        }
    );
    assert_eq!(count(&pool).await, 6);
}

#[sqlx::test]
async fn the_same_event_twice_in_one_batch_is_stored_once(pool: PgPool) {
    let event = Activity::new(ActivityType::CaseView).user_id("user-1");
    let other = Activity::new(ActivityType::CaseView).user_id("user-2");
    for method in [
        InsertMethod::Unnest,
        InsertMethod::CopyTempTable,
        InsertMethod::CopyOptimistic,
        InsertMethod::OneStatement,
    ] {
        sqlx::query("DELETE FROM user_activity_logs")
            .execute(&pool)
            .await
            .unwrap();
        let batch = [event.clone(), other.clone(), event.clone()];
        let outcome = write_batch_with(&pool, &batch, method).await.unwrap();
        assert_eq!(
            outcome,
            WriteOutcome {
                inserted: 2,
                duplicates: 1,
                erased: 0
            },
            "{method:?}"
        );
        assert_eq!(count(&pool).await, 2);
    }
}

#[sqlx::test]
async fn an_empty_batch_writes_nothing(pool: PgPool) {
    assert_eq!(
        write_batch::<Activity>(&pool, &[]).await.unwrap(),
        WriteOutcome::default()
    );
    let outcome = write_batch_isolating::<Activity>(&pool, &[]).await.unwrap();
    assert_eq!(outcome.written, WriteOutcome::default());
    assert!(outcome.rejected.is_empty());
}

/// Ten good events and three the database refuses: a NUL in text, a NUL in
/// JSON, a date before PostgreSQL's range.
fn batch_with_bad_rows() -> (Vec<Activity>, Vec<usize>) {
    let mut batch: Vec<Activity> = (0..13)
        .map(|i| Activity::new(ActivityType::CaseView).user_id(format!("user-{i}")))
        .collect();
    batch[3] = batch[3].clone().user_agent("bad\u{0}agent");
    batch[8] = batch[8].clone().detail("note", "nul \u{0} inside");
    batch[12].created_at = Utc.with_ymd_and_hms(-5000, 1, 1, 0, 0, 0).unwrap();
    (batch, vec![3, 8, 12])
}

async fn bad_rows_are_isolated(pool: PgPool, method: InsertMethod) {
    let (batch, bad) = batch_with_bad_rows();

    let whole = write_batch_with(&pool, &batch, method).await.unwrap_err();
    assert!(whole.is_data_error(), "{whole}");
    assert!(!whole.is_transient(), "{whole}");
    assert_eq!(count(&pool).await, 0, "all or nothing");

    let outcome = isolating(&pool, &batch, method, &StorageRules::NONE)
        .await
        .unwrap();
    assert_eq!(
        outcome.written,
        WriteOutcome {
            inserted: 10,
            duplicates: 0,
            erased: 0
        }
    );
    let rejected: Vec<usize> = outcome.rejected.iter().map(|row| row.index).collect();
    assert_eq!(rejected, bad);
    for row in &outcome.rejected {
        assert_eq!(row.activity, batch[row.index]);
        assert!(!row.message.is_empty());
        let code = row.code.as_deref().unwrap();
        assert!(code.starts_with("22"), "{code}: {}", row.message);
    }
    assert!(
        outcome.rejected[2].message.contains("out of range"),
        "{}",
        outcome.rejected[2].message
    );

    let mut good: Vec<Activity> = batch
        .iter()
        .enumerate()
        .filter(|(i, _)| !bad.contains(i))
        .map(|(_, event)| event.clone())
        .collect();
    good.sort_by_key(|event| event.id);
    assert_eq!(stored(&pool).await, good);

    // A redelivery of the same batch: the good rows are duplicates now.
    let again = isolating(&pool, &batch, method, &StorageRules::NONE)
        .await
        .unwrap();
    assert_eq!(
        again.written,
        WriteOutcome {
            inserted: 0,
            duplicates: 10,
            erased: 0
        }
    );
    assert_eq!(again.rejected.len(), 3);
}

#[sqlx::test]
async fn rows_the_database_refuses_are_isolated_and_the_others_stored(pool: PgPool) {
    bad_rows_are_isolated(pool, InsertMethod::Unnest).await;
}

#[sqlx::test]
async fn rows_the_database_refuses_through_a_temporary_table_are_isolated(pool: PgPool) {
    bad_rows_are_isolated(pool, InsertMethod::CopyTempTable).await;
}

#[sqlx::test]
async fn rows_the_database_refuses_through_copy_are_isolated(pool: PgPool) {
    bad_rows_are_isolated(pool, InsertMethod::CopyOptimistic).await;
}

#[sqlx::test]
async fn rows_the_database_refuses_in_one_statement_are_isolated(pool: PgPool) {
    bad_rows_are_isolated(pool, InsertMethod::OneStatement).await;
}

#[sqlx::test]
async fn a_constraint_violation_is_a_data_error(pool: PgPool) {
    // A constraint an operator added (class 23): isolated like bad data.
    sqlx::query(
        "ALTER TABLE user_activity_logs ADD CONSTRAINT no_blocked_user \
         CHECK (user_id IS DISTINCT FROM 'blocked')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let batch = [
        Activity::new(ActivityType::Login).user_id("alice"),
        Activity::new(ActivityType::Login).user_id("blocked"),
        Activity::new(ActivityType::Login).user_id("bob"),
    ];
    let outcome = write_batch_isolating(&pool, &batch).await.unwrap();
    assert_eq!(outcome.written.inserted, 2);
    assert_eq!(outcome.rejected.len(), 1);
    assert_eq!(outcome.rejected[0].index, 1);
    assert_eq!(outcome.rejected[0].code.as_deref(), Some("23514"));
    assert!(outcome.rejected[0].message.contains("no_blocked_user"));
}

#[sqlx::test]
async fn a_missing_table_is_neither_transient_nor_data(pool: PgPool) {
    sqlx::query("DROP TABLE user_activity_logs CASCADE")
        .execute(&pool)
        .await
        .unwrap();
    let batch = [Activity::new(ActivityType::Login)];
    let error = write_batch_isolating(&pool, &batch).await.unwrap_err();
    assert!(!error.is_transient() && !error.is_data_error(), "{error}");
    assert_eq!(error.sqlstate().as_deref(), Some("42P01"));
}

#[tokio::test]
async fn an_unreachable_database_is_transient() {
    // Nothing listens on port 1.
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy("postgres://postgres@127.0.0.1:1/postgres")
        .unwrap();
    let batch = [Activity::new(ActivityType::Login)];
    let error = write_batch_isolating(&pool, &batch).await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert!(!error.is_data_error());
}
