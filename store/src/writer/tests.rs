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
        Activity::at(ActivityType::PaymentFailed, at - chrono::Duration::days(40))
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
            erased: 0,
            ..WriteOutcome::default()
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
    arrived_at: Option<DateTime<Utc>>,
}

impl StoredEvent for DetailsAsText {
    fn activity(&self) -> &Activity {
        &self.activity
    }

    fn details_json(&self) -> Option<Cow<'_, str>> {
        self.details.as_deref().map(Cow::Borrowed)
    }

    fn arrived_at(&self) -> Option<DateTime<Utc>> {
        self.arrived_at
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
            DetailsAsText {
                activity,
                details,
                arrived_at: None,
            }
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
            erased: 0,
            ..WriteOutcome::default()
        }
    );
    let again = write_batch(&pool, &events).await.unwrap();
    assert_eq!(
        again,
        WriteOutcome {
            inserted: 0,
            duplicates: 4,
            erased: 0,
            ..WriteOutcome::default()
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
                erased: 0,
                ..WriteOutcome::default()
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
            erased: 0,
            ..WriteOutcome::default()
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
                erased: 0,
                ..WriteOutcome::default()
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

/// Ten good events and three the database refuses: dates before
/// PostgreSQL's range (NULs, which it refused before, are normalized now).
fn batch_with_bad_rows() -> (Vec<Activity>, Vec<usize>) {
    let mut batch: Vec<Activity> = (0..13)
        .map(|i| Activity::new(ActivityType::CaseView).user_id(format!("user-{i}")))
        .collect();
    for (i, year) in [(3, -6000), (8, -5500), (12, -5000)] {
        batch[i].created_at = Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap();
    }
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
            erased: 0,
            ..WriteOutcome::default()
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
            erased: 0,
            ..WriteOutcome::default()
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

/// The rows of `user_id` as (user_id, action, details, created_at), read
/// back the way the admin API reads them (serde_json, no arbitrary
/// precision).
async fn read_back(pool: &PgPool) -> Vec<(Option<String>, String, Option<Value>, DateTime<Utc>)> {
    sqlx::query_as(
        "SELECT user_id, action::text, details, created_at FROM user_activity_logs ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test]
async fn a_nul_anywhere_is_stored_replaced_and_noted(pool: PgPool) {
    // Issue 20, item 1: a withdrawal whose body held "1000000\u0000", a
    // path parameter with %00, a login name with \u0000.
    let withdrawal = Activity::new(ActivityType::WithdrawalRequest)
        .user_id("user-1")
        .detail("amount", "1000000\u{0}");
    let path = Activity::new(ActivityType::CaseView)
        .user_id("user-1")
        .resource("case", "case-\u{0}9");
    let login = Activity::new(ActivityType::Login)
        .user_id("admin\u{0}")
        .user_agent("ua\u{0}")
        .session_id("s\u{0}");
    let action = Activity::new(ActivityType::custom("export\u{0}").unwrap()).user_id("user-1");
    let as_text = DetailsAsText {
        activity: Activity::new(ActivityType::Login).user_id("user-2"),
        details: Some(r#"{"k\u0000":"v\u0000","lone":"\ud800"}"#.to_owned()),
        arrived_at: None,
    };
    for method in [
        InsertMethod::Unnest,
        InsertMethod::CopyTempTable,
        InsertMethod::CopyOptimistic,
        InsertMethod::OneStatement,
    ] {
        let batch = [
            withdrawal.clone(),
            path.clone(),
            login.clone(),
            action.clone(),
        ];
        let outcome = write_batch_with(&pool, &batch, method).await.unwrap();
        assert_eq!(
            (outcome.inserted, outcome.nul_replaced),
            (4, 4),
            "{method:?}"
        );
        let outcome = write_batch_with(&pool, std::slice::from_ref(&as_text), method)
            .await
            .unwrap();
        assert_eq!(
            (outcome.inserted, outcome.nul_replaced),
            (1, 1),
            "{method:?}"
        );

        let rows = stored(&pool).await;
        let by_id = |id: Uuid| rows.iter().find(|row| row.id == id).unwrap();
        let w = by_id(withdrawal.id).details.as_ref().unwrap();
        assert_eq!(w["amount"], "1000000\u{fffd}");
        assert_eq!(w[crate::normalize::NUL_NOTE], json!(["details"]));
        assert_eq!(
            by_id(path.id).resource_id.as_deref(),
            Some("case-\u{fffd}9")
        );
        let l = by_id(login.id);
        assert_eq!(l.user_id.as_deref(), Some("admin\u{fffd}"));
        assert_eq!(l.user_agent.as_deref(), Some("ua\u{fffd}"));
        assert_eq!(l.session_id.as_deref(), Some("s\u{fffd}"));
        assert_eq!(
            l.details.as_ref().unwrap()[crate::normalize::NUL_NOTE],
            json!(["user_id", "user_agent", "session_id"])
        );
        assert_eq!(by_id(action.id).action.as_str(), "export\u{fffd}");
        let t = by_id(as_text.activity.id).details.as_ref().unwrap();
        assert_eq!(t["k\u{fffd}"], "v\u{fffd}");
        assert_eq!(t["lone"], "\u{fffd}");

        // The same events again: stored once.
        let again = write_batch_with(&pool, &batch, method).await.unwrap();
        assert_eq!((again.inserted, again.duplicates), (0, 4), "{method:?}");
        assert_eq!(count(&pool).await, 5);
        sqlx::query("DELETE FROM user_activity_logs")
            .execute(&pool)
            .await
            .unwrap();
    }
}

#[sqlx::test]
async fn numbers_beyond_f64_in_details_are_stored_as_text_and_read_back(pool: PgPool) {
    // Issue 20, item 2: `1e400` from a non-Rust producer, kept as text.
    let event = DetailsAsText {
        activity: Activity::new(ActivityType::PaymentCreate).user_id("user-3"),
        details: Some(r#"{"amount":1e400,"tiny":-1e-400,"ok":[1.5,12345678901234567890]}"#.into()),
        arrived_at: None,
    };
    let outcome = write_batch(&pool, std::slice::from_ref(&event))
        .await
        .unwrap();
    assert_eq!((outcome.inserted, outcome.numbers_as_text), (1, 1));
    let rows = read_back(&pool).await;
    let details = rows[0].2.as_ref().unwrap();
    assert_eq!(details["amount"], "1e400");
    assert_eq!(details["tiny"], "-1e-400");
    assert_eq!(details["ok"], json!([1.5, 12345678901234567890u64]));
    assert_eq!(details[crate::normalize::NUMBERS_NOTE], 2);
}

#[sqlx::test]
async fn a_far_future_event_is_clamped_to_its_arrival_the_same_way_each_time(pool: PgPool) {
    // Issue 20, item 5: created_at 9999-12-31, a day ahead is the most allowed.
    let arrived = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap();
    let far = DetailsAsText {
        activity: Activity::at(
            ActivityType::Login,
            Utc.with_ymd_and_hms(9999, 12, 31, 0, 0, 0).unwrap(),
        )
        .user_id("user-4"),
        details: Some(r#"{"k":1}"#.into()),
        arrived_at: Some(arrived),
    };
    let near = DetailsAsText {
        activity: Activity::at(ActivityType::Logout, arrived + chrono::Duration::hours(18))
            .user_id("user-4"),
        details: None,
        arrived_at: Some(arrived),
    };
    let batch = [far, near];
    let outcome = write_batch(&pool, &batch).await.unwrap();
    assert_eq!((outcome.inserted, outcome.clamped), (2, 1));
    // A redelivery (the same arrival): the same key, stored once.
    let again = write_batch(&pool, &batch).await.unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 2));
    let rows = read_back(&pool).await;
    let clamped = rows.iter().find(|row| row.1 == "login").unwrap();
    assert_eq!(clamped.3, arrived);
    let details = clamped.2.as_ref().unwrap();
    assert_eq!(
        details[crate::normalize::ORIGINAL_CREATED_AT_NOTE],
        "9999-12-31T00:00:00.000000Z"
    );
    assert_eq!(details["k"], 1);
    let kept = rows.iter().find(|row| row.1 == "logout").unwrap();
    assert_eq!(kept.3, arrived + chrono::Duration::hours(18));
    assert_eq!(kept.2, None);
    // The rollups count it on the arrival's day.
    let day: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(activities), 0)::int8 FROM activity_rollup_daily WHERE day = $1",
    )
    .bind(arrived.date_naive())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(day, 2);
}
