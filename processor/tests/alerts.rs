//! The alert rules against the real database: events stored by the writer
//! (as the processor and the layer's fallback store them), or inserted by
//! hand, evaluated by passes of the evaluator; and end to end, two
//! processors sharing one stream and raising one alert.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use activity_processor::alerts::evaluate::{PassOutcome, PassSettings, evaluate_pass};
use activity_processor::alerts::rules::RuleSet;
use activity_processor::{Config, Processor};
use activity_store::writer::write_batch;
use activity_tracker::{Activity, ActivityType};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "alerts-test-admin-token";

fn settings(batch_limit: i64) -> PassSettings {
    PassSettings {
        batch_limit,
        max_lateness: Duration::from_secs(3600),
        webhook_urls: Vec::new(),
    }
}

/// Passes until the inbox is empty; the outcomes summed.
async fn evaluate_all(pool: &PgPool, rules: &RuleSet, batch_limit: i64) -> PassOutcome {
    let mut total = PassOutcome::default();
    loop {
        let outcome = evaluate_pass(pool, rules, &settings(batch_limit))
            .await
            .unwrap();
        assert!(!outcome.locked_elsewhere);
        total.taken += outcome.taken;
        total.evaluated += outcome.evaluated;
        total.late += outcome.late;
        total.raised.extend(outcome.raised);
        if outcome.taken == 0 {
            return total;
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
struct AlertRow {
    rule: String,
    group_kind: String,
    group_value: String,
    count: i64,
    first_event_at: DateTime<Utc>,
    last_event_at: DateTime<Utc>,
    ip: Option<String>,
}

async fn alerts(pool: &PgPool) -> Vec<AlertRow> {
    sqlx::query_as(
        "SELECT rule, group_kind, group_value, count, first_event_at, last_event_at,
                host(ip_address) AS ip
         FROM user_activity_alerts ORDER BY created_at, id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

fn rules(toml: &str) -> RuleSet {
    RuleSet::from_toml(toml).unwrap()
}

/// `n` case views by `user`, one second apart, ending `ago` before now.
fn burst(user: &str, n: usize, ago: TimeDelta) -> Vec<Activity> {
    let start = Utc::now() - ago - TimeDelta::seconds(n as i64);
    (0..n)
        .map(|i| {
            Activity::at(ActivityType::CaseView, start + TimeDelta::seconds(i as i64))
                .user_id(user)
                .resource("case", format!("case-{i}"))
        })
        .collect()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn an_episode_counts_the_same_whatever_order_its_events_are_stored_in(pool: PgPool) {
    let rate = rules("[rate]\nthreshold = 50\nwindow = \"5m\"");
    let events = burst("shuffled", 120, TimeDelta::minutes(1));
    // The last 40 stored and evaluated first (another processor, or a
    // spool, was quicker; too few to alert alone), then the first 80:
    // one episode from the 51st event counting all 120, as in-order
    // storing makes.
    let (earlier, later) = events.split_at(80);
    write_batch(&pool, later).await.unwrap();
    evaluate_all(&pool, &rate, 1000).await;
    write_batch(&pool, earlier).await.unwrap();
    evaluate_all(&pool, &rate, 1000).await;
    let alerts = alerts(&pool).await;
    assert_eq!(alerts.len(), 1, "one episode");
    assert_eq!(alerts[0].count, 120);
    assert_eq!(alerts[0].first_event_at, events[50].created_at);
    assert_eq!(alerts[0].last_event_at, events[119].created_at);

    // In order, the same count.
    let in_order = burst("in-order", 120, TimeDelta::minutes(1));
    write_batch(&pool, &in_order[..80]).await.unwrap();
    evaluate_all(&pool, &rate, 1000).await;
    write_batch(&pool, &in_order[80..]).await.unwrap();
    evaluate_all(&pool, &rate, 1000).await;
    let alerts = self::alerts(&pool).await;
    let in_order_alert = alerts.iter().find(|a| a.group_value == "in-order").unwrap();
    assert_eq!(in_order_alert.count, 120);
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn rate_fires_once_above_the_threshold_and_not_at_it(pool: PgPool) {
    let rate = rules("[rate]\nthreshold = 50\nwindow = \"5m\"");
    // Exactly 50 in 50 seconds: not more than 50.
    write_batch(&pool, &burst("calm", 50, TimeDelta::minutes(2)))
        .await
        .unwrap();
    // 51: one alert.
    write_batch(&pool, &burst("busy", 51, TimeDelta::minutes(2)))
        .await
        .unwrap();
    // 60 spread over 10 minutes: never more than 30 in 5 minutes.
    let start = Utc::now() - TimeDelta::minutes(11);
    let spread: Vec<Activity> = (0..60)
        .map(|i| {
            Activity::at(ActivityType::CaseView, start + TimeDelta::seconds(10 * i))
                .user_id("spread")
        })
        .collect();
    write_batch(&pool, &spread).await.unwrap();

    let outcome = evaluate_all(&pool, &rate, 1000).await;
    assert_eq!(outcome.evaluated, 161);
    assert_eq!(outcome.raised, ["rate"]);
    let alerts = alerts(&pool).await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        (
            alerts[0].group_kind.as_str(),
            alerts[0].group_value.as_str()
        ),
        ("user", "busy")
    );
    assert_eq!(alerts[0].count, 51);
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn a_storm_is_one_alert_with_a_rising_count(pool: PgPool) {
    let rate = rules("[rate]\nthreshold = 50\nwindow = \"5m\"");
    let storm = burst("storm", 300, TimeDelta::minutes(1));
    // Stored in batches as a processor would, evaluated in small passes,
    // redelivered once: the duplicates never reach the rules.
    for chunk in storm.chunks(40) {
        write_batch(&pool, chunk).await.unwrap();
        evaluate_all(&pool, &rate, 17).await;
    }
    let again = write_batch(&pool, &storm[..100]).await.unwrap();
    assert_eq!(again.duplicates, 100);
    let outcome = evaluate_all(&pool, &rate, 17).await;
    assert_eq!(outcome.taken, 0, "a redelivery adds nothing to the inbox");

    let alerts = alerts(&pool).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].count, 300, "every event of the storm, once");
    assert_eq!(alerts[0].first_event_at, storm[50].created_at);
    assert_eq!(alerts[0].last_event_at, storm[299].created_at);

    // After the cooldown, a new burst is a new episode.
    let later: Vec<Activity> = (0..51)
        .map(|i| {
            Activity::at(
                ActivityType::CaseView,
                storm[299].created_at + TimeDelta::minutes(6) + TimeDelta::milliseconds(i),
            )
            .user_id("storm")
        })
        .collect();
    write_batch(&pool, &later).await.unwrap();
    evaluate_all(&pool, &rate, 1000).await;
    let alerts = self::alerts(&pool).await;
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[1].count, 51);
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn rate_by_ip_with_an_action_filter(pool: PgPool) {
    let payments = rules(
        "[payment_burst]\nkind = \"rate\"\nthreshold = 3\nwindow = \"1m\"\n\
         group_by = \"ip\"\nactions = [\"payment_create\"]",
    );
    let at = Utc::now() - TimeDelta::seconds(30);
    let mut events = Vec::new();
    for i in 0..4 {
        // Four users, one address: four payments and many views.
        events.push(
            Activity::at(ActivityType::PaymentCreate, at + TimeDelta::seconds(i))
                .user_id(format!("payer-{i}"))
                .ip_address(ip("198.51.100.7")),
        );
        events.push(
            Activity::at(ActivityType::CaseView, at + TimeDelta::seconds(i))
                .user_id("viewer")
                .ip_address(ip("198.51.100.8")),
        );
    }
    write_batch(&pool, &events).await.unwrap();
    evaluate_all(&pool, &payments, 1000).await;
    let alerts = alerts(&pool).await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].rule, "payment_burst");
    assert_eq!(
        (
            alerts[0].group_kind.as_str(),
            alerts[0].group_value.as_str()
        ),
        ("ip", "198.51.100.7")
    );
    assert_eq!(alerts[0].count, 4);
}

fn login(user: &str, at: DateTime<Utc>, status: u16) -> Activity {
    Activity::at(ActivityType::Login, at)
        .user_id(user)
        .detail("status", status)
        .ip_address(ip("203.0.113.9"))
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn failed_then_success_fires_after_enough_failures(pool: PgPool) {
    let brute = rules("[failed_then_success]\nfailures = 5\nwindow = \"10m\"");
    let t = Utc::now() - TimeDelta::minutes(5);
    let mut events = Vec::new();
    // Five failures, of both forms, then a success: an alert.
    for i in 0..3 {
        events.push(login("victim", t + TimeDelta::seconds(i), 401));
    }
    for i in 3..5 {
        events.push(
            Activity::at(
                ActivityType::custom("login_failed").unwrap(),
                t + TimeDelta::seconds(i),
            )
            .user_id("victim"),
        );
    }
    events.push(login("victim", t + TimeDelta::seconds(10), 200));
    // Four failures then a success: none.
    for i in 0..4 {
        events.push(login("lucky", t + TimeDelta::seconds(i), 403));
    }
    events.push(login("lucky", t + TimeDelta::seconds(10), 200));
    // Five failures and no success: none.
    for i in 0..5 {
        events.push(login("locked-out", t + TimeDelta::seconds(i), 401));
    }
    write_batch(&pool, &events).await.unwrap();
    evaluate_all(&pool, &brute, 1000).await;
    let alerts = alerts(&pool).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].group_value, "victim");
    assert_eq!(alerts[0].count, 6, "five failures and the success");
    assert_eq!(alerts[0].ip.as_deref(), Some("203.0.113.9"));
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn new_ip_fires_for_a_known_user_on_an_unseen_address(pool: PgPool) {
    let new_ip = rules("[new_ip]\nlookback_days = 30\nipv4_prefix = 24");
    let now = Utc::now();
    // History, stored ten days ago (too late to be evaluated itself).
    let history = vec![
        Activity::at(ActivityType::Login, now - TimeDelta::days(10))
            .user_id("alice")
            .ip_address(ip("192.0.2.10")),
        Activity::at(ActivityType::Login, now - TimeDelta::days(40))
            .user_id("bob")
            .ip_address(ip("192.0.2.20")),
        Activity::at(ActivityType::Login, now - TimeDelta::days(10))
            .user_id("bob")
            .ip_address(ip("198.51.100.1")),
    ];
    write_batch(&pool, &history).await.unwrap();
    let outcome = evaluate_all(&pool, &new_ip, 1000).await;
    assert_eq!((outcome.late, outcome.evaluated), (3, 0));

    let t = now - TimeDelta::minutes(1);
    let events = vec![
        // Same /24 as before: known.
        Activity::at(ActivityType::CaseView, t)
            .user_id("alice")
            .ip_address(ip("192.0.2.99")),
        // A new network, twice: one alert.
        Activity::at(ActivityType::CaseView, t + TimeDelta::seconds(1))
            .user_id("alice")
            .ip_address(ip("203.0.113.5")),
        Activity::at(ActivityType::CaseView, t + TimeDelta::seconds(2))
            .user_id("alice")
            .ip_address(ip("203.0.113.5")),
        // Bob's 192.0.2.x was 40 days ago: not seen in 30 days, new again.
        Activity::at(ActivityType::CaseView, t)
            .user_id("bob")
            .ip_address(ip("192.0.2.20")),
        // A user without history: no alert.
        Activity::at(ActivityType::Login, t)
            .user_id("carol")
            .ip_address(ip("203.0.113.77")),
    ];
    write_batch(&pool, &events).await.unwrap();
    evaluate_all(&pool, &new_ip, 1000).await;
    let alerts = alerts(&pool).await;
    let found: Vec<(&str, Option<&str>, i64)> = alerts
        .iter()
        .map(|a| (a.group_value.as_str(), a.ip.as_deref(), a.count))
        .collect();
    assert_eq!(found.len(), 2, "{alerts:?}");
    assert!(
        found.contains(&("alice", Some("203.0.113.5"), 1)),
        "{found:?}"
    );
    assert!(found.contains(&("bob", Some("192.0.2.20"), 1)), "{found:?}");
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn rows_inserted_outside_the_processor_are_evaluated(pool: PgPool) {
    // As the layer's direct fallback or a script would: plain INSERT and COPY.
    sqlx::query(
        "INSERT INTO user_activity_logs (id, user_id, action, created_at)
         SELECT gen_random_uuid(), 'scripted', 'case_view', now() - interval '1 second' * g
         FROM generate_series(1, 60) g",
    )
    .execute(&pool)
    .await
    .unwrap();
    let outcome = evaluate_all(&pool, &RuleSet::builtin(), 1000).await;
    assert_eq!(outcome.evaluated, 60);
    let alerts = alerts(&pool).await;
    assert_eq!(alerts.len(), 1);
    assert_eq!((alerts[0].rule.as_str(), alerts[0].count), ("rate", 60));
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn late_events_are_stored_but_not_evaluated(pool: PgPool) {
    write_batch(&pool, &burst("replayed", 80, TimeDelta::hours(2)))
        .await
        .unwrap();
    let outcome = evaluate_all(&pool, &RuleSet::builtin(), 1000).await;
    assert_eq!(
        (outcome.taken, outcome.late, outcome.evaluated),
        (80, 80, 0)
    );
    assert!(alerts(&pool).await.is_empty());
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM user_activity_logs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 80);
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn a_pass_that_fails_leaves_its_events_for_the_next(pool: PgPool) {
    write_batch(&pool, &burst("patient", 55, TimeDelta::minutes(1)))
        .await
        .unwrap();
    // Another evaluator holds the lock: this one takes nothing.
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(activity_processor::alerts::evaluate::EVALUATOR_LOCK_KEY)
        .execute(&mut *holder)
        .await
        .unwrap();
    let outcome = evaluate_pass(&pool, &RuleSet::builtin(), &settings(1000))
        .await
        .unwrap();
    assert!(outcome.locked_elsewhere);
    // The holder took rows and died before committing.
    sqlx::query("DELETE FROM user_activity_alert_inbox")
        .execute(&mut *holder)
        .await
        .unwrap();
    holder.rollback().await.unwrap();
    let outcome = evaluate_all(&pool, &RuleSet::builtin(), 1000).await;
    assert_eq!(outcome.evaluated, 55);
    assert_eq!(alerts(&pool).await.len(), 1);
}

fn config(pool: &PgPool, stream_key: &str, consumer: &str) -> Config {
    let mut config = Config::from_env();
    config.database_url = activity_store::testing::database_url(pool);
    config.stream_key = stream_key.to_owned();
    config.admin_listen = "127.0.0.1:0".into();
    config.batch_size = 10;
    config.flush_interval_ms = 50;
    config.consumer_name = Some(consumer.into());
    config.legacy_list_key = None;
    config.admin_tokens = Some(TOKEN.parse().unwrap());
    config.alert_evaluate_interval_ms = 50;
    config
}

async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn two_processors_splitting_a_burst_raise_one_alert(pool: PgPool) {
    let stream_key = format!("test:alerts:{}", uuid::Uuid::now_v7());
    let token = CancellationToken::new();
    let one = Processor::start(config(&pool, &stream_key, "one"), token.clone())
        .await
        .unwrap();
    let two = Processor::start(config(&pool, &stream_key, "two"), token.clone())
        .await
        .unwrap();

    // 120 events of one user, one entry each: both consumers take some.
    let client = redis::Client::open(Config::from_env().redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let events = burst("split", 120, TimeDelta::seconds(5));
    for chunk in events.chunks(10) {
        let mut pipe = redis::pipe();
        for event in chunk {
            pipe.cmd("XADD")
                .arg(&stream_key)
                .arg("*")
                .arg("data")
                .arg(event.to_wire_json())
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let addr = one.local_addr();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let alert = loop {
        let (status, body) = http(
            addr,
            "GET",
            "/api/v1/admin/user-activities/alerts?user_id=split",
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let list = body["alerts"].as_array().unwrap().clone();
        assert!(list.len() <= 1, "one alert for the burst: {body}");
        if list.len() == 1 && list[0]["count"] == 120 {
            break list[0].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no alert of 120: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM user_activity_logs WHERE user_id = 'split'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stored, 120);
    let (one_stats, two_stats) = (one.stats().snapshot(), two.stats().snapshot());
    assert!(
        one_stats.stored > 0 && two_stats.stored > 0,
        "both processors stored part of the burst ({} and {})",
        one_stats.stored,
        two_stats.stored
    );
    assert_eq!(alert["rule"], "rate");
    assert_eq!(alert["group_kind"], "user");
    assert_eq!(alert["status"], "open");

    // Acknowledge it; the filter by status sees it move.
    let id = alert["id"].as_str().unwrap();
    let (status, acked) = http(
        addr,
        "POST",
        &format!("/api/v1/admin/user-activities/alerts/{id}/acknowledge"),
    )
    .await;
    assert_eq!(
        (status, acked["status"].as_str()),
        (200, Some("acknowledged"))
    );
    let (_, open) = http(
        addr,
        "GET",
        "/api/v1/admin/user-activities/alerts?status=open",
    )
    .await;
    assert_eq!(open["alerts"].as_array().unwrap().len(), 0);
    let (status, one_alert) = http(
        addr,
        "GET",
        &format!("/api/v1/admin/user-activities/alerts/{id}"),
    )
    .await;
    assert_eq!((status, one_alert["count"].as_i64()), (200, Some(120)));
    let (status, body) = http(
        addr,
        "GET",
        "/api/v1/admin/user-activities/alerts?status=closed",
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_parameter"))
    );
    let missing = uuid::Uuid::now_v7();
    let (status, _) = http(
        addr,
        "POST",
        &format!("/api/v1/admin/user-activities/alerts/{missing}/acknowledge"),
    )
    .await;
    assert_eq!(status, 404);
    let (_, queue) = http(addr, "GET", "/api/v1/admin/user-activities/queue-status").await;
    assert_eq!(queue["alert_queue_length"], 0);

    token.cancel();
    one.wait().await.unwrap();
    two.wait().await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&stream_key)
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_bad_rule_file_stops_start_up_naming_rule_and_field() {
    let dir = std::env::temp_dir().join(format!("alert-rules-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rules.toml");
    std::fs::write(&file, "[rate]\nthreshold = -3\n").unwrap();
    let mut config = Config::from_env();
    config.alert_rules = Some(file.display().to_string());
    config.admin_listen = "127.0.0.1:0".into();
    let error = Processor::start(config, CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        error.starts_with("ALERT_RULES: rule `rate`, field `threshold`: must be a whole number"),
        "{error}"
    );
    assert!(!error.contains('\n'));
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn alerts_expire_with_the_retention(pool: PgPool) {
    let now = Utc::now();
    write_batch(&pool, &burst("old", 51, TimeDelta::days(100)))
        .await
        .unwrap();
    write_batch(&pool, &burst("new", 51, TimeDelta::minutes(1)))
        .await
        .unwrap();
    // The old burst is late for the rules: raise its alert by evaluating
    // with a lateness that admits it.
    let admit_old = PassSettings {
        max_lateness: Duration::from_secs(200 * 86400),
        ..settings(1000)
    };
    while evaluate_pass(&pool, &RuleSet::builtin(), &admit_old)
        .await
        .unwrap()
        .taken
        > 0
    {}
    assert_eq!(alerts(&pool).await.len(), 2);
    activity_store::schema::drop_expired_partitions(&pool, now, 90)
        .await
        .unwrap();
    let left = alerts(&pool).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].group_value, "new");
}
