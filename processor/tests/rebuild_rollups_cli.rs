//! `activity-processor rebuild-rollups [--since DATE]` through the binary,
//! on a fresh database: rows inserted behind the writer's back show up in
//! the admin figures after it, and the secrets never show in `--help`.

use std::process::Command;

use sqlx::PgPool;

fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let (server, _) = base
        .rsplit_once('/')
        .expect("DATABASE_URL names a database");
    let name = pool
        .connect_options()
        .get_database()
        .expect("the test database has a name")
        .to_owned();
    format!("{server}/{name}")
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn rebuild_rollups_brings_a_backfill_into_the_figures(pool: PgPool) {
    sqlx::query(
        "INSERT INTO user_activity_logs (id, user_id, action, created_at)
         SELECT gen_random_uuid(), 'backfilled-' || (g % 3), 'login', now() - (g || ' hours')::interval
         FROM generate_series(0, 47) g",
    )
    .execute(&pool)
    .await
    .unwrap();
    let before = activity_store::queries::get_statistics(&pool, 7)
        .await
        .unwrap();
    assert_eq!(
        before.total_activities, 0,
        "the backfill bypassed the rollups"
    );

    let output = Command::new(env!("CARGO_BIN_EXE_activity-processor"))
        .args(["rebuild-rollups", "--database-url", &database_url(&pool)])
        .env_remove("LOG_LEVEL")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("48 rows"));

    let after = activity_store::queries::get_statistics(&pool, 7)
        .await
        .unwrap();
    assert_eq!((after.total_activities, after.active_users), (48, 3));

    let since = (chrono::Utc::now().date_naive() - chrono::TimeDelta::days(1)).to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_activity-processor"))
        .args([
            "rebuild-rollups",
            "--since",
            &since,
            "--database-url",
            &database_url(&pool),
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let again = activity_store::queries::get_statistics(&pool, 7)
        .await
        .unwrap();
    assert_eq!(again, after);

    let output = Command::new(env!("CARGO_BIN_EXE_activity-processor"))
        .args(["rebuild-rollups", "--since", "yesterday"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--since"));
}

#[test]
fn admin_secrets_are_options_whose_values_help_never_shows() {
    let output = Command::new(env!("CARGO_BIN_EXE_activity-processor"))
        .args(["serve", "--help"])
        .env("ADMIN_TOKENS", "very-secret-token")
        .env("ADMIN_JWT_SECRET", "very-secret-key")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("ADMIN_TOKENS") && help.contains("ADMIN_JWT_SECRET"));
    assert!(!help.contains("very-secret"));
}
