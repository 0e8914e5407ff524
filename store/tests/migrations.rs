//! A database migrated before the store owned the migrations (they lived in
//! `processor/migrations/` up to commit c242170) migrates forward with the
//! store's: sqlx compares each applied migration's checksum with the
//! embedded one, so the released files must have moved byte for byte.
//!
//! `fixtures/old_layout_c242170.sql` is `pg_dump --inserts` of a database
//! that `activity-processor migrate` built at c242170 (schema, partitions
//! and its `_sqlx_migrations` rows), with psql's `\restrict` lines taken
//! out.

use activity_store::{MIGRATOR, schema, writer};
use activity_tracker::{Activity, ActivityType};
use sqlx::{Connection, PgPool};

const OLD_LAYOUT: &str = include_str!("fixtures/old_layout_c242170.sql");

/// Restores the old layout's database into `pool`'s database, on a
/// connection of its own (the dump empties `search_path` for its session).
async fn restore_old_layout(pool: &PgPool) {
    let mut conn = pool.acquire().await.unwrap().detach();
    sqlx::raw_sql(sqlx::AssertSqlSafe(OLD_LAYOUT))
        .execute(&mut conn)
        .await
        .expect("the old layout's dump restores");
    conn.close().await.unwrap();
}

/// `(version, checksum, installed_on)` of every applied migration.
async fn applied(pool: &PgPool) -> Vec<(i64, Vec<u8>, chrono::DateTime<chrono::Utc>)> {
    sqlx::query_as(
        "SELECT version, checksum, installed_on FROM _sqlx_migrations \
         WHERE success ORDER BY version",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrations = false)]
async fn a_database_migrated_by_the_old_layout_migrates_forward(pool: PgPool) {
    restore_old_layout(&pool).await;
    let before = applied(&pool).await;
    assert_eq!(before.len(), 4, "the old layout had four migrations");

    schema::migrate(&pool)
        .await
        .expect("the store's migrations accept what the old layout applied");

    let after = applied(&pool).await;
    assert_eq!(
        after[..before.len()],
        before[..],
        "no released migration ran again or changed"
    );
    for (version, checksum, _) in &before {
        let embedded = MIGRATOR
            .iter()
            .find(|m| m.version == *version)
            .expect("every released migration is still embedded");
        assert_eq!(&*embedded.checksum, &checksum[..], "migration {version}");
    }

    // And the store works on it: partitions, the writer, the rollups.
    schema::ensure_partitions(&pool, chrono::Utc::now(), 1)
        .await
        .unwrap();
    let events = [
        Activity::new(ActivityType::Login).user_id("alice"),
        Activity::new(ActivityType::CaseView).user_id("alice"),
    ];
    let outcome = writer::write_batch(&pool, &events).await.unwrap();
    assert_eq!(outcome.inserted, 2);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM user_activity_logs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 2);
    let counted: i64 =
        sqlx::query_scalar("SELECT sum(activities)::int8 FROM activity_rollup_daily")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(counted, 2, "the rollups count what was stored");
}
