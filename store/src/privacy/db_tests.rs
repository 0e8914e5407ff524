//! Erasure, late arrivals, storage rules and export on a fresh database
//! each, checked with plain SQL over the raw rows.

use std::net::IpAddr;
use std::sync::Arc;

use activity_tracker::{Activity, ActivityType, IpTruncation};
use chrono::{TimeDelta, TimeZone, Utc};
use serde_json::json;
use sqlx::PgPool;

use super::*;
use crate::normalize::{ErasureCheck, StorageRules};
use crate::testing::{assert_rollups_match_raw, random_activities};
use crate::writer::{write_batch, write_batch_with_rules};
use crate::{rollups, schema};

const TARGET: &str = "user-3";

fn policy() -> ErasurePolicy {
    ErasurePolicy::new(Some(PseudonymKey::new(b"test key")))
}

fn rules(policy: &ErasurePolicy, list: &ErasureList) -> StorageRules {
    StorageRules {
        ip_truncation: None,
        erasure: Some(ErasureCheck {
            policy: Arc::new(policy.clone()),
            list: list.clone(),
        }),
    }
}

/// Random activity of 8 users over 60 days (so over three monthly
/// partitions), plus rows of the target in the default partition (a month
/// without its partition) and with details of the layer and of the app;
/// partly folded, partly pending.
async fn populate(pool: &PgPool) {
    schema::ensure_partitions(pool, Utc::now() - TimeDelta::days(62), 3)
        .await
        .unwrap();
    let events = random_activities(7, 900, 60, 8);
    for (i, chunk) in events.chunks(100).enumerate() {
        write_batch(pool, chunk).await.unwrap();
        if i == 4 {
            rollups::fold_pending(pool).await.unwrap();
        }
    }
    // Years back: a month without a partition (a date years ahead would
    // be clamped to the write time by the writer).
    let far = Utc.with_ymd_and_hms(2021, 5, 6, 7, 8, 9).unwrap();
    let detailed = |at| {
        Activity::at(ActivityType::CaseView, at)
            .user_id(TARGET)
            .user_agent("Mozilla/5.0")
            .session_id("sess-1")
            .ip_address([198, 51, 100, 7].into())
            .detail("method", "GET")
            .detail("route", "/cases/{id}")
            .detail("status", 200)
            .detail("email", "someone@example.com")
    };
    write_batch(pool, &[detailed(far), detailed(Utc::now())])
        .await
        .unwrap();
}

/// Every row not of `user`, as text, sorted: what must not change.
async fn others(pool: &PgPool, user: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT concat_ws('|', id, user_id, action, details, ip_address, user_agent,
                          session_id, created_at)
         FROM user_activity_logs WHERE user_id IS DISTINCT FROM $1 ORDER BY 1",
    )
    .bind(user)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn rows_of(pool: &PgPool, user: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM user_activity_logs WHERE user_id = $1")
        .bind(user)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn delete_removes_every_row_of_the_user_and_keeps_the_rollups_exact(pool: PgPool) {
    populate(&pool).await;
    let before = rows_of(&pool, TARGET).await;
    let others_before = others(&pool, TARGET).await;
    assert!(before > 50, "{before}");
    let receipt = erase_user_with_chunk(
        &pool,
        TARGET,
        ErasureMode::Delete,
        &policy(),
        &ErasureList::new(),
        7,
    )
    .await
    .unwrap();
    assert_eq!(receipt.rows as i64, before);
    assert_eq!(
        receipt.partitions.iter().map(|p| p.rows).sum::<u64>(),
        receipt.rows
    );
    assert!(
        receipt
            .partitions
            .iter()
            .any(|p| p.partition == schema::DEFAULT_PARTITION && p.rows == 1),
        "{:?}",
        receipt.partitions
    );
    assert!(receipt.pseudonym.is_none() && receipt.held_until.is_some());
    assert!(receipt.rollup_rows_corrected > 0);
    assert_eq!(rows_of(&pool, TARGET).await, 0);
    assert_eq!(others(&pool, TARGET).await, others_before);
    assert_rollups_match_raw(&pool).await;
    // The list keeps the keyed hash, never the id.
    let held: Vec<Vec<u8>> = sqlx::query_scalar("SELECT user_hash FROM activity_erasures")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        held,
        vec![policy().key.unwrap().hash(TARGET).as_bytes().to_vec()]
    );
    // Again: nothing left to erase.
    let again = erase_user(
        &pool,
        TARGET,
        ErasureMode::Delete,
        &policy(),
        &ErasureList::new(),
    )
    .await
    .unwrap();
    assert_eq!(again.rows, 0);
    assert_rollups_match_raw(&pool).await;
}

#[sqlx::test]
async fn pseudonymize_leaves_only_the_pseudonym_and_the_figures_unchanged(pool: PgPool) {
    populate(&pool).await;
    let before = rows_of(&pool, TARGET).await;
    let others_before = others(&pool, TARGET).await;
    let totals = |pool: PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT sum(activities)::int8 FROM activity_rollup_daily")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let activities_before = totals(pool.clone()).await;
    let policy = policy();
    let receipt = erase_user_with_chunk(
        &pool,
        TARGET,
        ErasureMode::Pseudonymize,
        &policy,
        &ErasureList::new(),
        11,
    )
    .await
    .unwrap();
    let pseudonym = policy.key.as_ref().unwrap().pseudonym(TARGET);
    assert_eq!(receipt.pseudonym.as_deref(), Some(pseudonym.as_str()));
    assert_eq!(receipt.rows as i64, before);
    assert_eq!(rows_of(&pool, TARGET).await, 0);
    assert_eq!(rows_of(&pool, &pseudonym).await, before);
    let (personal, details): (i64, Vec<serde_json::Value>) = (
        sqlx::query_scalar(
            "SELECT count(*) FROM user_activity_logs WHERE user_id = $1
             AND (ip_address IS NOT NULL OR user_agent IS NOT NULL OR session_id IS NOT NULL)",
        )
        .bind(&pseudonym)
        .fetch_one(&pool)
        .await
        .unwrap(),
        sqlx::query_scalar(
            "SELECT details FROM user_activity_logs WHERE user_id = $1 AND details IS NOT NULL",
        )
        .bind(&pseudonym)
        .fetch_all(&pool)
        .await
        .unwrap(),
    );
    assert_eq!(personal, 0);
    assert_eq!(
        details,
        vec![json!({"method": "GET", "route": "/cases/{id}", "status": 200}); 2]
    );
    assert_eq!(others(&pool, &pseudonym).await, others_before);
    assert_eq!(totals(pool.clone()).await, activities_before);
    assert_rollups_match_raw(&pool).await;
}

#[sqlx::test]
async fn pseudonymize_without_a_key_is_refused(pool: PgPool) {
    let error = erase_user(
        &pool,
        TARGET,
        ErasureMode::Pseudonymize,
        &ErasurePolicy::new(None),
        &ErasureList::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, ErasureError::NoKey), "{error}");
    assert!(error.to_string().contains("PSEUDONYM_KEY"));
}

#[sqlx::test]
async fn a_user_stored_truncated_is_found_by_the_full_id(pool: PgPool) {
    let long = "ü".repeat(300);
    write_batch(
        &pool,
        &[Activity::new(ActivityType::Login).user_id(long.clone())],
    )
    .await
    .unwrap();
    let receipt = erase_user(
        &pool,
        &long,
        ErasureMode::Delete,
        &policy(),
        &ErasureList::new(),
    )
    .await
    .unwrap();
    assert_eq!(receipt.rows, 1);
    assert_rollups_match_raw(&pool).await;
}

#[sqlx::test]
async fn late_events_are_erased_by_the_writer_and_by_the_sweep(pool: PgPool) {
    populate(&pool).await;
    let policy = policy();
    let list = ErasureList::new();
    let rules = rules(&policy, &list);
    let late = || {
        Activity::new(ActivityType::Login)
            .user_id(TARGET)
            .ip_address([198, 51, 100, 7].into())
            .detail("status", 200)
            .detail("email", "x@example.com")
    };

    // Deleted: the writer drops the late event.
    erase_user(&pool, TARGET, ErasureMode::Delete, &policy, &list)
        .await
        .unwrap();
    let outcome = write_batch_with_rules(
        &pool,
        &[late(), Activity::new(ActivityType::Login).user_id("user-1")],
        &rules,
    )
    .await
    .unwrap();
    assert_eq!(
        (outcome.inserted, outcome.erased, outcome.duplicates),
        (1, 1, 0)
    );
    assert_eq!(rows_of(&pool, TARGET).await, 0);

    // A writer without the check (the app's fallback) stores it; the sweep
    // erases it.
    write_batch(&pool, &[late(), late()]).await.unwrap();
    assert_eq!(rows_of(&pool, TARGET).await, 2);
    let swept = sweep(&pool, &policy, &list).await.unwrap();
    assert_eq!(swept.iter().map(|r| r.rows).sum::<u64>(), 2);
    assert_eq!(rows_of(&pool, TARGET).await, 0);
    assert_rollups_match_raw(&pool).await;
    assert!(sweep(&pool, &policy, &list).await.unwrap().is_empty());

    // Pseudonymized: the writer stores the late event under the pseudonym,
    // cleared like the stored rows; the sweep merges what the fallback
    // stored into the pseudonym's rollups.
    let other = "user-5";
    let pseudonym = policy.key.as_ref().unwrap().pseudonym(other);
    let before = rows_of(&pool, other).await;
    erase_user(&pool, other, ErasureMode::Pseudonymize, &policy, &list)
        .await
        .unwrap();
    let late_other = || late().user_id(other);
    let outcome = write_batch_with_rules(&pool, &[late_other()], &rules)
        .await
        .unwrap();
    assert_eq!(outcome.inserted, 1);
    let (ip, details): (Option<String>, Option<serde_json::Value>) = sqlx::query_as(
        "SELECT host(ip_address), details FROM user_activity_logs
         WHERE user_id = $1 ORDER BY created_at DESC LIMIT 1",
    )
    .bind(&pseudonym)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((ip, details), (None, Some(json!({"status": 200}))));
    write_batch(&pool, &[late_other()]).await.unwrap();
    sweep(&pool, &policy, &list).await.unwrap();
    assert_eq!(rows_of(&pool, other).await, 0);
    assert_eq!(rows_of(&pool, &pseudonym).await, before + 2);
    assert_rollups_match_raw(&pool).await;

    // After the hold, events are stored again.
    sqlx::query("UPDATE activity_erasures SET hold_until = now() - interval '1 second'")
        .execute(&pool)
        .await
        .unwrap();
    assert!(sweep(&pool, &policy, &list).await.unwrap().is_empty());
    assert!(list.is_empty());
    write_batch_with_rules(&pool, &[late()], &rules)
        .await
        .unwrap();
    assert_eq!(rows_of(&pool, TARGET).await, 1);
}

#[sqlx::test]
async fn the_writer_truncates_addresses_of_both_families(pool: PgPool) {
    let rules = StorageRules {
        ip_truncation: Some(IpTruncation::new(24, 48).unwrap()),
        ..StorageRules::default()
    };
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let batch: Vec<Activity> = ["203.0.113.77", "2001:db8:1:2:3::4", "::ffff:203.0.113.77"]
        .into_iter()
        .map(|a| Activity::new(ActivityType::Login).ip_address(ip(a)))
        .collect();
    write_batch_with_rules(&pool, &batch, &rules).await.unwrap();
    let mut stored: Vec<String> =
        sqlx::query_scalar("SELECT host(ip_address) FROM user_activity_logs")
            .fetch_all(&pool)
            .await
            .unwrap();
    stored.sort();
    assert_eq!(stored, ["2001:db8:1::", "203.0.113.0", "203.0.113.0"]);
}

#[sqlx::test]
async fn export_reads_every_row_oldest_first_page_by_page(pool: PgPool) {
    let start = Utc::now() - TimeDelta::days(3);
    let batch: Vec<Activity> = (0..2_345)
        .map(|i| {
            Activity::at(
                ActivityType::CaseView,
                start + TimeDelta::seconds(i % 1_000),
            )
            .user_id("exported")
        })
        .collect();
    for chunk in batch.chunks(500) {
        write_batch(&pool, chunk).await.unwrap();
    }
    write_batch(
        &pool,
        &[Activity::new(ActivityType::Login).user_id("someone else")],
    )
    .await
    .unwrap();
    let mut cursor = ExportCursor::new(pool.clone(), "exported");
    let mut rows = Vec::new();
    while let Some(page) = cursor.next_page().await.unwrap() {
        assert!(page.len() <= 1_000);
        rows.extend(page);
    }
    let expected: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT id FROM user_activity_logs WHERE user_id = 'exported' ORDER BY created_at, id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), expected);
    assert_eq!(expected.len(), 2_345);
}
