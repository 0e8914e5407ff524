//! The quick start end to end, as `cargo run --example quickstart -- --once`
//! runs it (the same library function), with its own database, stream key
//! and ports: every figure it fetched from the admin API matches the rows in
//! `user_activity_logs`; a second run into its fresh database shows only
//! its own events; servers that are not running are replaced by private
//! ones. Each test deletes the stream it used.

use std::collections::BTreeMap;

use activity_tracking::harness::ScratchDatabase;
use activity_tracking::quickstart::{self, Options, QuickstartError};
use serde_json::Value;
use sqlx::{Connection, PgConnection, PgPool};

/// Deletes a test's stream and its dead-letter stream from the shared
/// Redis when dropped, whether the test passed or not.
struct StreamCleanup {
    redis_url: String,
    key: String,
}

impl Drop for StreamCleanup {
    fn drop(&mut self) {
        let deleted = redis::Client::open(self.redis_url.as_str())
            .and_then(|client| client.get_connection())
            .and_then(|mut conn| {
                redis::cmd("DEL")
                    .arg(&self.key)
                    .arg(format!("{}:dead", self.key))
                    .query::<()>(&mut conn)
            });
        if let Err(e) = deleted {
            eprintln!("could not delete the stream {}: {e}", self.key);
        }
    }
}

fn options(database_url: &str, redis_url: &str) -> Options {
    Options {
        redis_url: redis_url.to_owned(),
        database_url: database_url.to_owned(),
        fresh_database: None,
        stream_key: format!("quickstart-test-{}", uuid::Uuid::new_v4()),
        fresh_stream: false,
        private_postgres_if_down: false,
        private_redis_if_down: false,
        consumer_group: "activity-processor".to_owned(),
        app_listen: "127.0.0.1:0".to_owned(),
        admin_listen: "127.0.0.1:0".to_owned(),
        any_port_if_taken: false,
        admin_token: format!("test-{}", uuid::Uuid::new_v4().simple()),
        once: true,
        progress_in_place: false,
    }
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn int(value: &Value, name: &str) -> i64 {
    value
        .get(name)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("{name} missing in {value}"))
}

/// The admin figures of `summary` against the rows of the table.
async fn assert_figures_match_rows(
    pool: &PgPool,
    summary: &quickstart::Summary,
) -> anyhow::Result<()> {
    let today = "created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'";
    let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM user_activity_logs WHERE {today}"
    )))
    .fetch_one(pool)
    .await?;
    assert_eq!(
        rows, summary.events,
        "the table holds exactly this run's events"
    );
    assert_eq!(rows, 22, "every request of the scenario is one row");

    let stats = &summary.statistics;
    assert_eq!(int(stats, "today_activities"), rows);
    let users: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(DISTINCT user_id) FROM user_activity_logs WHERE {today}"
    )))
    .fetch_one(pool)
    .await?;
    assert_eq!(int(stats, "active_users"), users);
    assert_eq!(
        users, 4,
        "alice, bob, carol, dave; the failed login is anonymous"
    );

    let by_action: BTreeMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT action, count(*) FROM user_activity_logs GROUP BY action",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    let breakdown: BTreeMap<String, i64> =
        serde_json::from_value(stats["activity_breakdown"].clone())?;
    assert_eq!(breakdown, by_action);
    assert_eq!(by_action["payment_failed"], 1, "bob's declined payment");

    let by_user: Vec<(String, i64)> = sqlx::query_as(
        "SELECT user_id, count(*) AS n FROM user_activity_logs WHERE user_id IS NOT NULL \
         GROUP BY user_id ORDER BY n DESC, user_id",
    )
    .fetch_all(pool)
    .await?;
    let top: Vec<(String, i64)> = summary.top_users["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| {
            (
                u["user_id"].as_str().expect("user_id").to_owned(),
                int(u, "activity_count"),
            )
        })
        .collect();
    assert_eq!(top, by_user);

    let alice: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM user_activity_logs WHERE user_id = 'alice' ORDER BY created_at",
    )
    .fetch_all(pool)
    .await?;
    let path: Vec<String> = summary.user_path["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["action"].as_str().expect("action").to_owned())
        .collect();
    assert_eq!(path, alice);
    assert_eq!(path.first().map(String::as_str), Some("login"));

    // The failed login: anonymous, with its status; the forged
    // X-Forwarded-For is not believed (no trusted proxy).
    let failed: (Option<String>, i64) = sqlx::query_as(
        "SELECT user_id, (details->>'status')::bigint FROM user_activity_logs \
         WHERE action = 'login' AND session_id LIKE '%mallory'",
    )
    .fetch_one(pool)
    .await?;
    assert_eq!(failed, (None, 401));
    let forged: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM user_activity_logs WHERE ip_address = '203.0.113.66'::inet",
    )
    .fetch_one(pool)
    .await?;
    assert_eq!(forged, 0);
    Ok(())
}

#[tokio::test]
async fn quickstart_once_figures_match_the_table() -> anyhow::Result<()> {
    let db = ScratchDatabase::create("quickstart").await;
    let options = options(&db.url, &redis_url());
    let _cleanup = StreamCleanup {
        redis_url: options.redis_url.clone(),
        key: options.stream_key.clone(),
    };
    let mut out = Vec::new();
    let result = quickstart::run(options, &mut out, std::future::ready(())).await;
    let printed = String::from_utf8_lossy(&out).into_owned();
    let summary = result.map_err(|e| anyhow::anyhow!("{e}\n{printed}"))?;
    assert!(summary.redis_up);

    let pool = PgPool::connect(&db.url).await?;
    assert_figures_match_rows(&pool, &summary).await?;
    let queue = summary.queue_status.as_ref().expect("queue status");
    assert_eq!(int(queue, "total_activities"), summary.events);
    assert_eq!(int(queue, "today_activities"), summary.events);
    assert_eq!(int(queue, "active_users_today"), 4);
    assert_eq!(int(queue, "queue_length"), 0, "{printed}");
    assert_eq!(int(queue, "dead_letter_length"), 0);

    // What it printed is what it fetched; with --once, no curl line for
    // servers about to stop, but how to get working ones.
    assert!(
        printed.contains("22 activities today, 4 active users"),
        "{printed}"
    );
    assert!(printed.contains("the whole database's"), "{printed}");
    assert!(!printed.contains("curl -s"), "{printed}");
    assert!(
        printed.contains("Run without `--once` to try the admin API and the app yourself"),
        "{printed}"
    );
    pool.close().await;
    db.drop().await;
    Ok(())
}

/// The figures of a run into a fresh database are that run's alone, the
/// second time too; serving (no `--once`), it prints the curl lines with
/// its token.
#[tokio::test]
async fn quickstart_reruns_into_a_fresh_database_show_only_their_own_events() -> anyhow::Result<()>
{
    let server = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = format!("quickstart_fresh_{}", uuid::Uuid::new_v4().simple());
    let mut first = options(&server, &redis_url());
    first.fresh_database = Some(name.clone());
    first.fresh_stream = true;
    let _cleanup = StreamCleanup {
        redis_url: first.redis_url.clone(),
        key: first.stream_key.clone(),
    };
    let second = Options {
        once: false,
        ..first.clone()
    };

    let mut printed = Vec::new();
    for options in [first, second] {
        let mut out = Vec::new();
        let result = quickstart::run(options, &mut out, std::future::ready(())).await;
        let text = String::from_utf8_lossy(&out).into_owned();
        let summary = result.map_err(|e| anyhow::anyhow!("{e}\n{text}"))?;
        assert!(summary.database_url.ends_with(&format!("/{name}")));
        assert_eq!(int(&summary.statistics, "today_activities"), 22, "{text}");
        assert!(text.contains("a database of its own"), "{text}");
        assert!(text.contains("(emptied first)"), "{text}");
        assert!(
            text.contains("22 activities today, 4 active users"),
            "{text}"
        );
        assert!(!text.contains("earlier steps"), "{text}");
        let pool = PgPool::connect(&summary.database_url).await?;
        assert_figures_match_rows(&pool, &summary).await?;
        pool.close().await;
        printed.push((text, summary));
    }
    let (serving, summary) = &printed[1];
    let admin = summary.admin_addr.expect("admin address");
    assert!(
        serving.contains(&format!(
            "curl -s -H 'authorization: Bearer {}' 'http://{admin}/api/v1/admin/user-activities/queue-status'",
            summary.admin_token
        )),
        "{serving}"
    );
    assert!(serving.contains("Ctrl-C stops"), "{serving}");

    let mut conn = PgConnection::connect(&server).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await?;
    Ok(())
}

/// Nothing answers at either address: the quick start starts a private
/// PostgreSQL and a private redis-server, says so, and runs as usual.
#[tokio::test]
async fn quickstart_starts_private_servers_when_none_is_running() -> anyhow::Result<()> {
    let closed = activity_tracking::harness::free_port()?;
    let mut options = options(
        &format!("postgres://postgres@127.0.0.1:{closed}/postgres"),
        &format!("redis://127.0.0.1:{closed}"),
    );
    options.fresh_database = Some("activity_quickstart".to_owned());
    options.private_postgres_if_down = true;
    options.private_redis_if_down = true;
    let mut out = Vec::new();
    let result = quickstart::run(options, &mut out, std::future::ready(())).await;
    let printed = String::from_utf8_lossy(&out).into_owned();
    let summary = result.map_err(|e| anyhow::anyhow!("{e}\n{printed}"))?;
    assert!(summary.redis_up, "{printed}");
    assert!(
        printed.contains(&format!(
            "PostgreSQL  nothing answers at postgres://postgres@127.0.0.1:{closed}/postgres: \
             started a private server"
        )),
        "{printed}"
    );
    assert!(
        printed.contains(&format!(
            "Redis       nothing answers at redis://127.0.0.1:{closed}: started a private \
             redis-server"
        )),
        "{printed}"
    );
    assert!(!summary.database_url.contains(&closed.to_string()));
    assert_eq!(summary.events, 22);
    assert_eq!(int(&summary.statistics, "today_activities"), 22);
    let queue = summary.queue_status.as_ref().expect("queue status");
    assert_eq!(int(queue, "total_activities"), 22);
    // Stopped and removed with the run: nothing listens there any more.
    let port: u16 = summary
        .database_url
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|port| port.parse().ok())
        .expect("a port in the URL");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    Ok(())
}

#[tokio::test]
async fn quickstart_with_redis_down_stores_through_the_database_fallback() -> anyhow::Result<()> {
    let db = ScratchDatabase::create("quickstart").await;
    let closed = activity_tracking::harness::free_port()?;
    // No Redis, no stream: nothing to clean up.
    let mut out = Vec::new();
    let result = quickstart::run(
        options(&db.url, &format!("redis://127.0.0.1:{closed}")),
        &mut out,
        std::future::ready(()),
    )
    .await;
    let printed = String::from_utf8_lossy(&out).into_owned();
    let summary = result.map_err(|e| anyhow::anyhow!("{e}\n{printed}"))?;
    assert!(!summary.redis_up);
    assert!(summary.admin_addr.is_none());
    assert!(printed.contains("NOT REACHABLE"), "{printed}");
    assert!(
        printed.contains("written straight to PostgreSQL"),
        "{printed}"
    );

    let pool = PgPool::connect(&db.url).await?;
    assert_figures_match_rows(&pool, &summary).await?;
    pool.close().await;
    db.drop().await;
    Ok(())
}

#[tokio::test]
async fn quickstart_with_postgres_down_says_how_to_start_it() -> anyhow::Result<()> {
    let closed = activity_tracking::harness::free_port()?;
    let mut out = Vec::new();
    let error = quickstart::run(
        options(
            &format!("postgres://postgres@127.0.0.1:{closed}/postgres"),
            &redis_url(),
        ),
        &mut out,
        std::future::ready(()),
    )
    .await
    .expect_err("no database");
    assert!(matches!(error, QuickstartError::PostgresDown { .. }));
    let message = error.to_string();
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(message.contains("start"), "{message}");
    Ok(())
}
