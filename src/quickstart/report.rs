//! What the quick start shows once the scenario is sent: it waits until
//! every event is in `user_activity_logs`, fetches what an admin would look
//! at (from the admin API, or straight from the database with Redis down),
//! prints it, and prints the `curl` lines to ask the same yourself.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use activity_processor::admin::PREFIX;
use activity_store::queries;
use activity_tracker::ActivityTracker;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;

use super::client::Http;
use super::{QuickstartError, STORE_TIMEOUT};

/// Erases the terminal line, for a progress line redrawn in place.
const CLEAR_LINE: &str = "\r\x1b[2K";

/// How many of the last steps of alice's path are printed: earlier ones
/// (with a `DATABASE_URL` of the user's, earlier runs' today included)
/// only show as a count.
const PATH_STEPS_SHOWN: usize = 12;

/// Waits until the `expected` events of this run are rows of
/// `user_activity_logs` (this run's rows: created since `started_at`, with
/// a session id starting with `session_prefix`), showing the count on
/// `out` (redrawn in place when `in_place`). Answers the rows found; after
/// [`STORE_TIMEOUT`] gives up with [`QuickstartError::NotStored`].
///
/// The line is left open: [`print_route`] ends it.
pub(super) async fn wait_until_stored(
    out: &mut (dyn Write + Send),
    pool: &PgPool,
    started_at: DateTime<Utc>,
    session_prefix: &str,
    expected: i64,
    in_place: bool,
) -> Result<i64, QuickstartError> {
    let deadline = Instant::now() + STORE_TIMEOUT;
    let clear = if in_place { CLEAR_LINE } else { "" };
    loop {
        let stored: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM user_activity_logs WHERE created_at >= $1 AND session_id LIKE $2",
        )
        .bind(started_at)
        .bind(format!("{session_prefix}%"))
        .fetch_one(pool)
        .await?;
        if stored >= expected {
            write!(
                out,
                "{clear}stored   {stored}/{expected} events in user_activity_logs"
            )?;
            return Ok(stored);
        }
        if in_place {
            write!(
                out,
                "{CLEAR_LINE}stored   {stored}/{expected} events in user_activity_logs"
            )?;
            out.flush()?;
        }
        if Instant::now() >= deadline {
            writeln!(out)?;
            return Err(QuickstartError::NotStored { stored, expected });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Ends the stored line with the way the events went: through the stream
/// and the processor, or (Redis down) straight into PostgreSQL.
pub(super) fn print_route(
    out: &mut (dyn Write + Send),
    tracker: &ActivityTracker,
    redis_up: bool,
) -> io::Result<()> {
    let counters = tracker.counters();
    if redis_up {
        writeln!(
            out,
            " (via the stream: {} sent by the layer, stored by the processor)",
            counters.sent
        )?;
    } else {
        writeln!(
            out,
            " (Redis down: {} written straight to PostgreSQL by the layer's fallback)",
            counters.stored_direct
        )?;
    }
    writeln!(out)
}

/// What an admin looks at, as the admin API answers it.
#[derive(Debug)]
pub(super) struct Figures {
    /// `queue-status` (`None` with Redis down: no processor).
    pub(super) queue_status: Option<Value>,
    /// `statistics?days=1`.
    pub(super) statistics: Value,
    /// `top-users?days=1&limit=5`.
    pub(super) top_users: Value,
    /// `user/alice/path?days=1&limit=200`.
    pub(super) user_path: Value,
}

/// `queue-status` once the stream is empty, or as it is after a second:
/// the processor acknowledges (and deletes) an entry just after the
/// commit that made its rows visible, so right after the last row is seen
/// its entry may still be counted for a moment.
async fn settled_queue_status(
    http: &Http,
    admin: SocketAddr,
    token: &str,
) -> Result<Value, QuickstartError> {
    let mut status = http.admin(admin, token, "queue-status").await?;
    for _ in 0..20 {
        if status["queue_length"].as_i64() == Some(0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        status = http.admin(admin, token, "queue-status").await?;
    }
    Ok(status)
}

impl Figures {
    /// From the admin API at `admin` with `token`; without one (Redis
    /// down), the same queries the admin API runs, read from `pool`.
    pub(super) async fn fetch(
        http: &Http,
        pool: &PgPool,
        admin: Option<SocketAddr>,
        token: &str,
    ) -> Result<Self, QuickstartError> {
        Ok(match admin {
            Some(admin) => Figures {
                queue_status: Some(settled_queue_status(http, admin, token).await?),
                statistics: http.admin(admin, token, "statistics?days=1").await?,
                top_users: http.admin(admin, token, "top-users?days=1&limit=5").await?,
                user_path: http
                    .admin(admin, token, "user/alice/path?days=1&limit=200")
                    .await?,
            },
            None => Figures {
                queue_status: None,
                statistics: to_json(queries::get_statistics(pool, 1).await?),
                top_users: to_json(queries::get_top_users(pool, 1, 5).await?),
                user_path: to_json(queries::get_user_path(pool, "alice", 1, 200).await?),
            },
        })
    }
}

/// Prints `figures`, each under a heading naming where it came from: the
/// admin endpoint at `admin`, or the database when there is none.
pub(super) fn print_figures(
    out: &mut (dyn Write + Send),
    figures: &Figures,
    admin: Option<SocketAddr>,
) -> io::Result<()> {
    if let Some(queue) = &figures.queue_status {
        print_queue_status(out, queue, &source(admin, "queue-status"))?;
    }
    print_statistics(
        out,
        &figures.statistics,
        &source(admin, "statistics?days=1"),
    )?;
    print_top_users(
        out,
        &figures.top_users,
        &source(admin, "top-users?days=1&limit=5"),
    )?;
    print_user_path(
        out,
        &figures.user_path,
        &source(admin, "user/alice/path?days=1"),
    )
}

/// Where a figure came from, for its heading.
fn source(admin: Option<SocketAddr>, path: &str) -> String {
    match admin {
        Some(_) => format!("GET {PREFIX}/{path}"),
        None => "read from the database: no admin API without Redis".to_owned(),
    }
}

fn print_queue_status(out: &mut (dyn Write + Send), queue: &Value, source: &str) -> io::Result<()> {
    writeln!(out, "Queue status ({source})")?;
    writeln!(
        out,
        "  stream {}: {} waiting, {} pending, {} dead-lettered; {} processed, database writes {} ok",
        field(queue, "stream_key"),
        field(queue, "queue_length"),
        field(queue, "pending"),
        field(queue, "dead_letter_length"),
        field(queue, "processed_total"),
        queue
            .get("db_write_success_rate")
            .and_then(Value::as_f64)
            .map_or("-".to_owned(), |rate| format!("{:.0}%", rate * 100.0)),
    )?;
    writeln!(out)
}

/// Today's totals and the count of each action, most frequent first.
fn print_statistics(
    out: &mut (dyn Write + Send),
    statistics: &Value,
    source: &str,
) -> io::Result<()> {
    writeln!(out, "Today's statistics ({source})")?;
    writeln!(
        out,
        "  {} activities today, {} active users",
        field(statistics, "today_activities"),
        field(statistics, "active_users")
    )?;
    writeln!(out, "  {:<20} {:>6}", "action", "count")?;
    if let Some(breakdown) = statistics
        .get("activity_breakdown")
        .and_then(Value::as_object)
    {
        let mut rows: Vec<(&String, i64)> = breakdown
            .iter()
            .map(|(action, count)| (action, count.as_i64().unwrap_or(0)))
            .collect();
        // A JSON object has no order of its own: sort for a stable table.
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        for (action, count) in rows {
            writeln!(out, "  {action:<20} {count:>6}")?;
        }
    }
    writeln!(out)
}

fn print_top_users(
    out: &mut (dyn Write + Send),
    top_users: &Value,
    source: &str,
) -> io::Result<()> {
    writeln!(out, "Top users ({source})")?;
    writeln!(
        out,
        "  {:<12} {:>10} {:>13}",
        "user", "activities", "action types"
    )?;
    for user in top_users
        .get("users")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        writeln!(
            out,
            "  {:<12} {:>10} {:>13}",
            field(user, "user_id"),
            field(user, "activity_count"),
            field(user, "action_types")
        )?;
    }
    writeln!(out)
}

/// The last [`PATH_STEPS_SHOWN`] steps of alice's path, each with its time
/// and the resource it touched.
fn print_user_path(
    out: &mut (dyn Write + Send),
    user_path: &Value,
    source: &str,
) -> io::Result<()> {
    writeln!(out, "alice's path today ({source})")?;
    let steps: Vec<&Value> = user_path
        .get("steps")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    if steps.len() > PATH_STEPS_SHOWN {
        writeln!(
            out,
            "  ... {} earlier steps",
            steps.len() - PATH_STEPS_SHOWN
        )?;
    }
    for step in steps
        .iter()
        .skip(steps.len().saturating_sub(PATH_STEPS_SHOWN))
    {
        let resource = match (step.get("resource_type"), step.get("resource_id")) {
            (Some(Value::String(kind)), Some(Value::String(id))) => format!(" {kind}/{id}"),
            _ => String::new(),
        };
        let at = step
            .get("created_at")
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or_else(String::new, |t| t.format("%H:%M:%S%.3f").to_string());
        writeln!(out, "  {at}  {}{resource}", field(step, "action"))?;
    }
    writeln!(out)
}

/// The `curl` lines to ask the admin API at `admin` (with `token`) and the
/// app at `app` yourself, once the quick start has shown its own answers.
pub(super) fn print_curl_lines(
    out: &mut (dyn Write + Send),
    admin: SocketAddr,
    app: SocketAddr,
    token: &str,
) -> io::Result<()> {
    writeln!(out, "Ask the admin API yourself:")?;
    for path in [
        "queue-status",
        "statistics?days=7",
        "top-users?days=1&limit=10",
        "actions?days=7",
        "user/alice?days=30",
        "user/alice/path?days=1",
    ] {
        writeln!(
            out,
            "  curl -s -H 'authorization: Bearer {token}' 'http://{admin}{PREFIX}/{path}'"
        )?;
    }
    writeln!(
        out,
        "  curl -s http://{admin}/metrics | grep activity_processor_stored_total"
    )?;
    writeln!(out, "and the app (each request is recorded):")?;
    writeln!(
        out,
        "  curl -s -X POST http://{app}/api/v1/cases -H 'authorization: Bearer user:erin' \
         -H 'content-type: application/json' -d '{{\"amount\":700}}'"
    )?;
    writeln!(out)
}

/// With `--once`, instead of the `curl` lines: the servers stop right
/// after the report, so how to get lines that work.
pub(super) fn print_once_note(out: &mut (dyn Write + Send), admin_api: bool) -> io::Result<()> {
    let what = if admin_api {
        "the admin API and the app"
    } else {
        "the app"
    };
    writeln!(
        out,
        "Run without `--once` to try {what} yourself: it then serves until Ctrl-C and \
         prints the curl lines that reach it (with its admin token)."
    )?;
    writeln!(out)
}

/// The last line before serving: where the app (and the admin API, if
/// any) can be reached, and how to stop.
pub(super) fn print_serving(
    out: &mut (dyn Write + Send),
    app: SocketAddr,
    admin: Option<SocketAddr>,
) -> io::Result<()> {
    writeln!(
        out,
        "Serving the app on http://{app}{}; Ctrl-C stops.",
        admin.map_or_else(String::new, |a| format!(" and the admin API on http://{a}"))
    )
}

/// A field of a JSON object for display (`-` when null or missing).
fn field(value: &Value, name: &str) -> String {
    match value.get(name) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// A query's answer as the admin API would send it, so both sources print
/// through the same code.
fn to_json(value: impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn printed(print: impl FnOnce(&mut (dyn Write + Send)) -> io::Result<()>) -> String {
        let mut out = Vec::new();
        print(&mut out).expect("writing to a Vec");
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn a_missing_or_null_field_shows_as_a_dash_and_a_string_unquoted() {
        let value = json!({"name": "alice", "count": 3, "none": null});
        assert_eq!(field(&value, "name"), "alice");
        assert_eq!(field(&value, "count"), "3");
        assert_eq!(field(&value, "none"), "-");
        assert_eq!(field(&value, "missing"), "-");
    }

    #[test]
    fn actions_are_listed_most_frequent_first_then_by_name() {
        let statistics = json!({
            "today_activities": 6,
            "active_users": 2,
            "activity_breakdown": {"logout": 1, "login": 2, "case_view": 2, "case_create": 1},
        });
        let text = printed(|out| print_statistics(out, &statistics, "here"));
        let actions: Vec<&str> = text
            .lines()
            .skip(3)
            .filter_map(|line| line.split_whitespace().next())
            .collect();
        assert_eq!(actions, ["case_view", "login", "case_create", "logout"]);
        assert!(
            text.contains("6 activities today, 2 active users"),
            "{text}"
        );
    }

    #[test]
    fn a_long_path_shows_its_last_steps_and_counts_the_rest() {
        let steps: Vec<Value> = (0..PATH_STEPS_SHOWN + 2)
            .map(|i| json!({"action": format!("a{i}")}))
            .collect();
        let text = printed(|out| print_user_path(out, &json!({"steps": steps}), "here"));
        assert!(text.contains("  ... 2 earlier steps\n"), "{text}");
        assert!(!text.contains(" a1\n"), "{text}");
        assert!(
            text.contains(&format!("a{}\n", PATH_STEPS_SHOWN + 1)),
            "{text}"
        );
    }
}
