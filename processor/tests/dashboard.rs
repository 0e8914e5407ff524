//! The dashboard in a real browser: a database seeded with activities over
//! several days and users and an alert raised by the built-in `rate`
//! rule, a real processor serving the page, and Debian's headless
//! Chromium driven by Playwright (`tests/dashboard/run.mjs`), which checks
//! every view against the API's own answers and saves screenshots under
//! `target/dashboard-screenshots/`.
//!
//! It needs Node.js (`node`, `npm`) and `/usr/bin/chromium` (or
//! `CHROMIUM`); `.ci/run` installs them when missing. Without them this
//! test fails and says what to install: a browser test that silently
//! passes would prove nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use activity_processor::{Config, Processor};
use activity_store::testing::random_activities;
use activity_store::writer::write_batch;
use activity_tracker::{Activity, ActivityType};
use chrono::{NaiveTime, TimeDelta, Utc};
use serde_json::Value;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "dashboard-test-admin-token";
/// More activities than two pages of the page's recent activity (25 a page).
const PAGED_USER: &str = "alice";
const PAGED_ACTIVITIES: i64 = 80;
/// A burst of this user trips the built-in `rate` rule (more than 50 in 5 minutes).
const ALERTED_USER: &str = "mallory";
/// Screenshots of each view at both widths (and of the sign-in).
const VIEWS: [&str; 6] = [
    "sign-in",
    "overview",
    "statistics",
    "top-users",
    "user",
    "alerts",
];

/// Where the browser test lives and what it runs with; each missing part
/// is a failure that says what to install.
struct BrowserTest {
    dir: PathBuf,
    chromium: PathBuf,
}

impl BrowserTest {
    fn prepare() -> BrowserTest {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/dashboard");
        let chromium = PathBuf::from(
            std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned()),
        );
        assert!(
            chromium.exists(),
            "the dashboard's browser test needs Chromium at {}: install it with \
             `apt-get update && apt-get install -y --no-install-recommends chromium` \
             (.ci/run does), or point CHROMIUM at one",
            chromium.display()
        );
        let node = Command::new("node").arg("--version").output();
        assert!(
            node.is_ok_and(|out| out.status.success()),
            "the dashboard's browser test needs Node.js 20 or later (`node` on PATH): \
             install it with `apt-get install -y nodejs npm` (.ci/run does)"
        );
        if !dir
            .join("node_modules/playwright-core/package.json")
            .exists()
        {
            // The locked version, and never a browser download.
            let npm = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
                .status();
            assert!(
                npm.is_ok_and(|status| status.success()),
                "`npm ci` in {} failed: the dashboard's browser test needs npm and the \
                 npm registry to install playwright-core (package-lock.json)",
                dir.display()
            );
        }
        BrowserTest { dir, chromium }
    }
}

fn screenshot_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is `<target>/tmp`: the screenshots go beside it.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target tmp dir is inside the target dir")
        .join("dashboard-screenshots")
}

fn config(pool: &PgPool) -> Config {
    let mut config = Config::from_env();
    config.database_url = activity_store::testing::database_url(pool);
    config.stream_key = format!("test:dashboard:{}", uuid::Uuid::now_v7());
    config.admin_listen = "127.0.0.1:0".into();
    config.consumer_name = Some("dashboard".into());
    config.legacy_list_key = None;
    // The built-in rules.
    config.alert_rules = None;
    config.alert_evaluate_interval_ms = 50;
    config.admin_tokens = Some(TOKEN.parse().unwrap());
    config
}

/// Activities over 30 days by a dozen users; over a thousand today (so
/// figures need thousands separators); one user with several pages of
/// recent activity from three addresses; one user's burst of case views.
fn seed() -> Vec<Activity> {
    let mut events = random_activities(18, 3000, 30, 12);
    let now = Utc::now();
    let midnight = now.date_naive().and_time(NaiveTime::MIN).and_utc();
    let today_ms = (now - midnight).num_milliseconds().max(1);
    events.extend(
        random_activities(19, 1200, 1, 12)
            .into_iter()
            .enumerate()
            .map(|(i, mut event)| {
                // Spread over today's UTC hours so far, whatever the time.
                event.created_at = midnight + TimeDelta::milliseconds(i as i64 * today_ms / 1200);
                event
            }),
    );
    let addresses = ["203.0.113.10", "203.0.113.11", "198.51.100.20"];
    let actions = [
        ActivityType::Login,
        ActivityType::CaseView,
        ActivityType::CaseUpdate,
        ActivityType::DocumentGenerate,
        ActivityType::PaymentCreate,
    ];
    events.extend((0..PAGED_ACTIVITIES).map(|i| {
        Activity::at(
            actions[i as usize % actions.len()].clone(),
            now - TimeDelta::hours(6 * i + 1),
        )
        .user_id(PAGED_USER)
        .resource("case", format!("case-{}", i % 7))
        .ip_address(addresses[i as usize % 3].parse().unwrap())
        .session_id(format!("session-{}", i / 10))
        .detail("status", 200)
    }));
    let burst_start = now - TimeDelta::minutes(10);
    events.extend((0..60).map(|i| {
        Activity::at(ActivityType::CaseView, burst_start + TimeDelta::seconds(i))
            .user_id(ALERTED_USER)
            .resource("case", format!("case-{i}"))
            .ip_address("192.0.2.66".parse().unwrap())
    }));
    events
}

async fn get(addr: std::net::SocketAddr, path: &str) -> Value {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{path}: {response}");
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap()
}

#[sqlx::test(migrator = "activity_store::MIGRATOR")]
async fn the_dashboard_in_chromium_shows_what_the_api_answers(pool: PgPool) {
    let browser = BrowserTest::prepare();
    // The monthly partitions first, as a running processor has them: rows
    // stored in the default partition would be moved at start.
    activity_store::schema::ensure_partitions(&pool, Utc::now(), 2)
        .await
        .unwrap();
    for chunk in seed().chunks(500) {
        write_batch(&pool, chunk).await.unwrap();
    }
    let token = CancellationToken::new();
    let processor = Processor::start(config(&pool), token.clone())
        .await
        .unwrap();
    let addr = processor.local_addr();

    // The rules have evaluated every stored event and raised the burst's
    // alert: the figures the page shows stay put while it is checked.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = get(addr, "/api/v1/admin/user-activities/queue-status").await;
        let alerts = get(
            addr,
            &format!(
                "/api/v1/admin/user-activities/alerts?status=open&rule=rate&user_id={ALERTED_USER}"
            ),
        )
        .await;
        if status["alert_queue_length"] == 0 && alerts["alerts"].as_array().unwrap().len() == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rate alert was not raised: {status} {alerts}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let shots = screenshot_dir();
    // Only this run's pictures: a stale one would hide a missing view.
    let _ = std::fs::remove_file(shots.join("failure.png"));
    for view in VIEWS {
        for width in ["1280", "390"] {
            let _ = std::fs::remove_file(shots.join(format!("{view}-{width}.png")));
        }
    }
    let script = browser.dir.join("run.mjs");
    let mut command = Command::new("node");
    command
        .arg(&script)
        .current_dir(&browser.dir)
        .env("DASHBOARD_URL", format!("http://{addr}/admin/"))
        .env("ADMIN_TOKEN", TOKEN)
        .env("SCREENSHOT_DIR", &shots)
        .env("CHROMIUM", &browser.chromium)
        .env("PAGED_USER", PAGED_USER)
        .env("ALERTED_USER", ALERTED_USER);
    // The processor answers the browser on this runtime meanwhile.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "the browser test failed (screenshots in {}):\n{stdout}\n{stderr}",
        shots.display()
    );

    // What the browser did is in the database.
    let status: String = sqlx::query_scalar(
        "SELECT status FROM user_activity_alerts WHERE rule = 'rate' AND group_value = $1",
    )
    .bind(ALERTED_USER)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(status, "acknowledged");
    for view in VIEWS {
        for width in ["1280", "390"] {
            let shot = shots.join(format!("{view}-{width}.png"));
            let size = std::fs::metadata(&shot).map_or(0, |m| m.len());
            assert!(size > 1000, "no screenshot {}", shot.display());
        }
    }
    token.cancel();
    processor.wait().await.unwrap();
}
