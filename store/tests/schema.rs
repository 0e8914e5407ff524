//! The schema against a real PostgreSQL: migrations, monthly partitions,
//! rows moved out of the default partition, retention.

use activity_store::schema;
use chrono::{DateTime, TimeZone, Utc};
use sqlx::PgPool;

fn at(year: i32, month: u32, day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, month, day, 12, 0, 0).unwrap()
}

async fn partitions(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'user_activity_logs'::regclass ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn insert_rows(pool: &PgPool, created_at: DateTime<Utc>, n: i32) {
    sqlx::query(
        "INSERT INTO user_activity_logs (id, user_id, action, created_at) \
         SELECT gen_random_uuid(), 'user-' || i, 'login', $1 FROM generate_series(1, $2) i",
    )
    .bind(created_at)
    .bind(n)
    .execute(pool)
    .await
    .unwrap();
}

async fn count_in(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrations = false)]
async fn migrations_run_twice_are_a_no_op(pool: PgPool) {
    schema::migrate(&pool).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    insert_rows(&pool, at(2026, 11, 26), 3).await;

    schema::migrate(&pool).await.unwrap();
    let applied_again: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(applied, applied_again);
    assert!(applied >= 1);
    assert_eq!(count_in(&pool, "user_activity_logs").await, 3);
    assert_eq!(partitions(&pool).await, ["user_activity_logs_default"]);
}

#[sqlx::test(migrations = false)]
async fn the_table_has_the_contract_columns(pool: PgPool) {
    schema::migrate(&pool).await.unwrap();
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT column_name::text, \
                format_type(a.atttypid, a.atttypmod), is_nullable::text \
         FROM information_schema.columns c \
         JOIN pg_attribute a ON a.attrelid = 'user_activity_logs'::regclass \
              AND a.attname = c.column_name \
         WHERE c.table_name = 'user_activity_logs' ORDER BY c.ordinal_position",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let expected = [
        ("id", "uuid", "NO"),
        ("user_id", "text", "YES"),
        ("action", "character varying(100)", "NO"),
        ("resource_type", "character varying(50)", "YES"),
        ("resource_id", "character varying(255)", "YES"),
        ("details", "jsonb", "YES"),
        ("ip_address", "inet", "YES"),
        ("user_agent", "character varying(500)", "YES"),
        ("session_id", "character varying(255)", "YES"),
        ("created_at", "timestamp with time zone", "NO"),
    ];
    let columns: Vec<(&str, &str, &str)> = columns
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    assert_eq!(columns, expected);

    let primary_key: String = sqlx::query_scalar(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint \
         WHERE conrelid = 'user_activity_logs'::regclass AND contype = 'p'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(primary_key, "PRIMARY KEY (id, created_at)");
}

#[sqlx::test]
async fn partitions_exist_for_this_month_and_the_next(pool: PgPool) {
    let now = Utc::now();
    let created = schema::ensure_partitions(&pool, now, 1).await.unwrap();
    let this_month = format!("user_activity_logs_p{}", now.format("%Y_%m"));
    let next = now + chrono::Months::new(1);
    let next_month = format!("user_activity_logs_p{}", next.format("%Y_%m"));
    assert_eq!(created, [this_month.clone(), next_month.clone()]);

    let mut expected = vec![
        this_month.clone(),
        next_month,
        "user_activity_logs_default".to_string(),
    ];
    expected.sort();
    assert_eq!(partitions(&pool).await, expected);

    // A second call (another processor, or the timer) finds them and creates none.
    assert!(
        schema::ensure_partitions(&pool, now, 1)
            .await
            .unwrap()
            .is_empty()
    );

    // Rows of this month land in this month's partition, not the default.
    insert_rows(&pool, now, 5).await;
    assert_eq!(count_in(&pool, "user_activity_logs_default").await, 0);
    assert_eq!(count_in(&pool, &this_month).await, 5);
}

#[sqlx::test]
async fn year_boundaries_and_concurrent_callers(pool: PgPool) {
    let (a, b) = tokio::join!(
        schema::ensure_partitions(&pool, at(2030, 11, 30), 2),
        schema::ensure_partitions(&pool, at(2030, 11, 30), 2),
    );
    let (mut a, b) = (a.unwrap(), b.unwrap());
    // One caller made them all, the other found them.
    a.extend(b);
    a.sort();
    assert_eq!(
        a,
        [
            "user_activity_logs_p2030_11",
            "user_activity_logs_p2030_12",
            "user_activity_logs_p2031_01"
        ]
    );
    insert_rows(
        &pool,
        Utc.with_ymd_and_hms(2030, 12, 31, 23, 59, 59).unwrap(),
        1,
    )
    .await;
    insert_rows(&pool, Utc.with_ymd_and_hms(2031, 1, 1, 0, 0, 0).unwrap(), 2).await;
    assert_eq!(count_in(&pool, "user_activity_logs_p2030_12").await, 1);
    assert_eq!(count_in(&pool, "user_activity_logs_p2031_01").await, 2);
}

#[sqlx::test]
async fn rows_in_the_default_partition_move_to_their_new_partition(pool: PgPool) {
    // Written while March and May 2031 had no partition: strays.
    insert_rows(&pool, at(2031, 3, 1), 40).await;
    insert_rows(
        &pool,
        Utc.with_ymd_and_hms(2031, 3, 31, 23, 59, 59).unwrap(),
        2,
    )
    .await;
    insert_rows(&pool, at(2031, 5, 10), 7).await;
    assert_eq!(count_in(&pool, "user_activity_logs_default").await, 49);

    let created = schema::ensure_partitions(&pool, at(2031, 3, 15), 0)
        .await
        .unwrap();
    assert_eq!(created, ["user_activity_logs_p2031_03"]);

    assert_eq!(count_in(&pool, "user_activity_logs_p2031_03").await, 42);
    // May's rows stay where they are until May's partition is made.
    assert_eq!(count_in(&pool, "user_activity_logs_default").await, 7);
    assert_eq!(count_in(&pool, "user_activity_logs").await, 49);

    // The moved rows keep their indexes working (the partition has them).
    let indexes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_indexes WHERE tablename = 'user_activity_logs_p2031_03'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(indexes >= 4, "primary key + 3 indexes, got {indexes}");

    let created = schema::ensure_partitions(&pool, at(2031, 4, 2), 1)
        .await
        .unwrap();
    assert_eq!(
        created,
        ["user_activity_logs_p2031_04", "user_activity_logs_p2031_05"]
    );
    assert_eq!(count_in(&pool, "user_activity_logs_default").await, 0);
    assert_eq!(count_in(&pool, "user_activity_logs_p2031_05").await, 7);

    // Moved rows reached the alert inbox once, when first stored; rows
    // stored after a move still reach it.
    assert_eq!(count_in(&pool, "user_activity_alert_inbox").await, 49);
    insert_rows(&pool, at(2031, 4, 20), 3).await;
    assert_eq!(count_in(&pool, "user_activity_alert_inbox").await, 52);
}

#[sqlx::test]
async fn retention_drops_old_partitions_and_keeps_recent_ones(pool: PgPool) {
    schema::ensure_partitions(&pool, at(2026, 1, 10), 5)
        .await
        .unwrap();
    for month in 1..=6 {
        insert_rows(&pool, at(2026, month, 10), 10).await;
    }
    // Strays in the default partition: one older than the retention (of a
    // month without a partition), deleted like its month would be; one
    // dated ahead of every partition, kept.
    insert_rows(&pool, at(2025, 6, 1), 1).await;
    insert_rows(&pool, at(2040, 1, 1), 1).await;

    // Keep forever.
    let dropped = schema::drop_expired_partitions(&pool, at(2026, 7, 15), 0)
        .await
        .unwrap();
    assert!(dropped.is_empty());

    // Cutoff 2026-04-16 12:00: January to March end before it; April does not.
    let dropped = schema::drop_expired_partitions(&pool, at(2026, 7, 15), 90)
        .await
        .unwrap();
    assert_eq!(
        dropped,
        [
            "user_activity_logs_p2026_01",
            "user_activity_logs_p2026_02",
            "user_activity_logs_p2026_03"
        ]
    );
    assert_eq!(
        partitions(&pool).await,
        [
            "user_activity_logs_default",
            "user_activity_logs_p2026_04",
            "user_activity_logs_p2026_05",
            "user_activity_logs_p2026_06"
        ]
    );
    assert_eq!(count_in(&pool, "user_activity_logs").await, 31);
    assert_eq!(count_in(&pool, "user_activity_logs_default").await, 1);
    let kept: DateTime<Utc> =
        sqlx::query_scalar("SELECT created_at FROM user_activity_logs_default")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(kept, at(2040, 1, 1));

    // Nothing more to drop on the next tick.
    let dropped = schema::drop_expired_partitions(&pool, at(2026, 7, 15), 90)
        .await
        .unwrap();
    assert!(dropped.is_empty());
}
