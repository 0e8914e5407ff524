//! The binary's command line: every option in `--help`, and one clear line
//! and a non-zero exit for each misconfiguration.

use std::process::Command;

fn processor() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_activity-processor"));
    // The test environment's own settings must not leak into these runs.
    for var in [
        "REDIS_URL",
        "DATABASE_URL",
        "STREAM_KEY",
        "CONSUMER_GROUP",
        "CONSUMER_NAME",
        "BATCH_SIZE",
        "FLUSH_INTERVAL_MS",
        "DB_WRITERS",
        "CLAIM_IDLE_MS",
        "ROLLUP_FOLD_INTERVAL_MS",
        "ADMIN_LISTEN",
        "RETENTION_DAYS",
        "LEGACY_LIST_KEY",
        "LOG_LEVEL",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    command
}

#[test]
fn help_lists_every_option_with_its_variable_and_default() {
    let output = processor().args(["serve", "--help"]).output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for (flag, var) in [
        ("--redis-url", "REDIS_URL"),
        ("--database-url", "DATABASE_URL"),
        ("--stream-key", "STREAM_KEY"),
        ("--consumer-group", "CONSUMER_GROUP"),
        ("--consumer-name", "CONSUMER_NAME"),
        ("--batch-size", "BATCH_SIZE"),
        ("--flush-interval-ms", "FLUSH_INTERVAL_MS"),
        ("--db-writers", "DB_WRITERS"),
        ("--claim-idle-ms", "CLAIM_IDLE_MS"),
        ("--rollup-fold-interval-ms", "ROLLUP_FOLD_INTERVAL_MS"),
        ("--admin-listen", "ADMIN_LISTEN"),
        ("--retention-days", "RETENTION_DAYS"),
        ("--legacy-list-key", "LEGACY_LIST_KEY"),
        ("--log-level", "LOG_LEVEL"),
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
        assert!(
            help.contains(&format!("env: {var}")),
            "{var} missing from:\n{help}"
        );
    }
    for default in [
        "redis://127.0.0.1:6379",
        "user_activities_stream",
        "[default: activity-processor]",
        "127.0.0.1:8080",
        "<hostname>-<pid>",
    ] {
        assert!(help.contains(default), "{default} missing from:\n{help}");
    }

    let output = processor().arg("--help").output().unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for subcommand in ["serve", "migrate"] {
        assert!(
            help.contains(subcommand),
            "{subcommand} missing from:\n{help}"
        );
    }
}

/// The one line of a run that fails, with what it printed on stderr.
fn the_one_line(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = processor()
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!output.status.success(), "{args:?} {env:?} succeeded");
    let stderr = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?} {env:?}:\n{stderr}");
    lines[0].to_owned()
}

fn fails_with_one_line(args: &[&str], env: &[(&str, &str)], needle: &str) {
    let line = the_one_line(args, env);
    assert!(
        line.contains(needle),
        "{args:?} {env:?}: {needle:?} not in {line}"
    );
    assert!(!line.contains("panicked"), "{line}");
}

#[test]
fn misconfiguration_exits_non_zero_with_one_clear_line() {
    fails_with_one_line(
        &["serve"],
        &[("BATCH_SIZE", "0")],
        "BATCH_SIZE must be at least 1",
    );
    fails_with_one_line(&["serve", "--batch-size", "lots"], &[], "--batch-size");
    fails_with_one_line(
        &["serve"],
        &[("DB_WRITERS", "0")],
        "DB_WRITERS must be at least 1",
    );
    fails_with_one_line(
        &["serve"],
        &[("ROLLUP_FOLD_INTERVAL_MS", "0")],
        "ROLLUP_FOLD_INTERVAL_MS must be at least 1",
    );
    fails_with_one_line(&["serve"], &[("REDIS_URL", "localhost:6379")], "REDIS_URL");
    fails_with_one_line(
        &["serve"],
        &[("DATABASE_URL", "mysql://db/x")],
        "DATABASE_URL",
    );
    fails_with_one_line(
        &["serve"],
        &[("ADMIN_LISTEN", "everywhere")],
        "ADMIN_LISTEN",
    );
    // Nothing listens on port 1: the database is unreachable at start.
    fails_with_one_line(
        &["serve"],
        &[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/postgres")],
        "cannot connect to the database",
    );
    fails_with_one_line(
        &["migrate"],
        &[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/postgres")],
        "cannot connect to the database",
    );
}

/// `serve` as deployed: events in, rows out, SIGTERM, exit 0 promptly with
/// everything acknowledged.
#[sqlx::test(migrations = false)]
async fn serve_stores_events_and_exits_zero_on_sigterm(pool: sqlx::PgPool) {
    use redis::AsyncCommands;

    let base = std::env::var("DATABASE_URL").unwrap();
    let server = base.rsplit_once('/').unwrap().0.to_owned();
    let database = pool.connect_options().get_database().unwrap().to_owned();
    let redis_url = std::env::var("REDIS_URL").unwrap();
    let stream = format!("test:cli:{}", uuid::Uuid::now_v7());
    let mut child = processor()
        .arg("serve")
        .env("DATABASE_URL", format!("{server}/{database}"))
        .env("REDIS_URL", &redis_url)
        .env("STREAM_KEY", &stream)
        .env("ADMIN_LISTEN", "127.0.0.1:0")
        .env("LOG_LEVEL", "warn")
        .spawn()
        .unwrap();

    let mut conn = redis::Client::open(redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for _ in 0..20 {
        let event = activity_tracker::Activity::new(activity_tracker::ActivityType::Logout);
        let _: String = conn
            .xadd(&stream, "*", &[("data", event.to_wire_json())])
            .await
            .unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let rows: Option<i64> = sqlx::query_scalar("SELECT count(*) FROM user_activity_logs")
            .fetch_one(&pool)
            .await
            .ok();
        if rows == Some(20) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "rows: {rows:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let started = std::time::Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let length: u64 = conn.xlen(&stream).await.unwrap();
    assert_eq!(length, 0);
    let _: () = conn.del(&stream).await.unwrap();
}

#[sqlx::test(migrations = false)]
async fn unreachable_redis_at_start_is_one_clear_line(pool: sqlx::PgPool) {
    let base = std::env::var("DATABASE_URL").unwrap();
    let server = base.rsplit_once('/').unwrap().0.to_owned();
    let database = pool.connect_options().get_database().unwrap().to_owned();
    let url = format!("{server}/{database}");
    let output = tokio::task::spawn_blocking(move || {
        processor()
            .arg("serve")
            .env("DATABASE_URL", url)
            .env("REDIS_URL", "redis://127.0.0.1:1")
            .env("ADMIN_LISTEN", "127.0.0.1:0")
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("is Redis running at REDIS_URL (redis://127.0.0.1:1)?"),
        "{stderr}"
    );
}

#[test]
fn a_bad_value_is_named_as_it_was_given_with_one_prefix() {
    let line = the_one_line(&["serve"], &[("BATCH_SIZE", "abc")]);
    assert!(
        line.starts_with("activity-processor: invalid value 'abc' for BATCH_SIZE: "),
        "{line}"
    );
    assert!(!line.contains("error:"), "{line}");
    assert!(!line.contains("--batch-size"), "{line}");

    let line = the_one_line(&["serve", "--batch-size", "lots"], &[]);
    assert!(
        line.starts_with(
            "activity-processor: invalid value 'lots' for '--batch-size <BATCH_SIZE>': "
        ),
        "{line}"
    );
    assert!(!line.contains("error:"), "{line}");
}

#[test]
fn database_errors_say_what_failed_without_postgres_source_lines() {
    let base = std::env::var("DATABASE_URL").unwrap();
    let server = base.rsplit_once('/').unwrap().0.to_owned();
    let host = server.rsplit_once('@').unwrap().1.to_owned();
    let name = format!("no_such_database_{}", uuid::Uuid::new_v4().simple());
    for (url, says, hint) in [
        (
            format!("{server}/{name}"),
            format!("database \"{name}\" does not exist (SQLSTATE 3D000)"),
            "createdb",
        ),
        (
            format!("postgres://no_such_role@{host}/postgres"),
            "role \"no_such_role\" does not exist (SQLSTATE 28000)".to_owned(),
            "check the user in DATABASE_URL",
        ),
        (
            "postgres://postgres@127.0.0.1:1/postgres".to_owned(),
            "Connection refused".to_owned(),
            "is PostgreSQL running",
        ),
    ] {
        let line = the_one_line(
            &["migrate"],
            &[("DATABASE_URL", &url), ("ADMIN_LISTEN", "127.0.0.1:0")],
        );
        assert!(line.contains("cannot connect to the database"), "{line}");
        assert!(line.contains(&says), "{says:?} not in {line}");
        assert!(line.contains(hint), "{hint:?} not in {line}");
        assert!(!line.contains(" at line "), "{line}");
        if hint != "is PostgreSQL running" {
            assert!(!line.contains("is PostgreSQL running"), "{line}");
        }
    }
}

#[test]
fn a_taken_admin_listen_is_found_before_connecting() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    // Nothing listens on port 1: had it connected first, that would be the error.
    let line = the_one_line(
        &["serve"],
        &[
            ("ADMIN_LISTEN", &addr),
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/postgres"),
        ],
    );
    assert!(
        line.contains(&format!("cannot listen on ADMIN_LISTEN {addr}")),
        "{line}"
    );
}

/// A second start applies no migration: PostgreSQL's notices about what
/// already exists are not logged, and a log that is not a terminal gets
/// no colour codes.
#[sqlx::test(migrations = false)]
async fn restarts_log_no_notices_and_no_colours(pool: sqlx::PgPool) {
    let base = std::env::var("DATABASE_URL").unwrap();
    let server = base.rsplit_once('/').unwrap().0.to_owned();
    let database = pool.connect_options().get_database().unwrap().to_owned();
    let url = format!("{server}/{database}");
    for _ in 0..2 {
        let url = url.clone();
        let output = tokio::task::spawn_blocking(move || {
            processor()
                .arg("migrate")
                .env("DATABASE_URL", url)
                .env("LOG_LEVEL", "info")
                .output()
        })
        .await
        .unwrap()
        .unwrap();
        assert!(output.status.success(), "{output:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(!stderr.contains("skipping"), "{stderr}");
        assert!(!stderr.contains("_sqlx_migrations"), "{stderr}");
        assert!(!stderr.contains('\x1b'), "{stderr}");
    }
}
