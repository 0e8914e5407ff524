//! A bounded HTTP load whose every request carries a marker (a unique id
//! the app records as the activity's `resource_id`), and the check after
//! it: every marker looked up in `user_activity_logs`, so a missing or a
//! duplicated event is named, not only counted.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::wait_until;

/// How a load is sent: which requests, over how long, by how many clients.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// The requests' numbers; request `n` carries the marker
    /// `<prefix>-<n>`.
    pub requests: Range<usize>,
    /// The requests are spread evenly over this time.
    pub time: Duration,
    /// Concurrent clients (keep-alive connections).
    pub clients: usize,
    /// A request not answered within this counts as failed.
    pub timeout: Duration,
}

impl Default for LoadPlan {
    fn default() -> Self {
        LoadPlan {
            requests: 0..3000,
            time: Duration::from_secs(3),
            clients: 8,
            timeout: Duration::from_secs(5),
        }
    }
}

/// What the clients saw: every request's marker and how many failed (an
/// error, a timeout or a status other than 2xx).
#[derive(Debug, Clone)]
pub struct Load {
    /// The markers of the requests sent, in order.
    pub markers: Vec<String>,
    /// Requests that failed.
    pub failed: usize,
}

/// Sends the requests of `plan` to `addr`: request `n` is
/// `request(<prefix>-<n>)`, a request whose URI is a path (`/cases/x`),
/// sent to `addr`. `progress` counts the requests answered (or failed) so
/// far, for a fault to be injected mid-load.
pub async fn send_load<F>(
    addr: SocketAddr,
    prefix: &str,
    plan: &LoadPlan,
    request: F,
    progress: Arc<AtomicUsize>,
) -> Load
where
    F: Fn(&str) -> http::Request<String> + Send + Sync + 'static,
{
    let client: Client<HttpConnector, String> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(plan.clients)
        .build_http();
    let request = Arc::new(request);
    let markers: Arc<Vec<String>> = Arc::new(
        plan.requests
            .clone()
            .map(|n| format!("{prefix}-{n}"))
            .collect(),
    );
    let start = tokio::time::Instant::now();
    let count = markers.len();
    let mut workers = Vec::new();
    for worker in 0..plan.clients {
        let client = client.clone();
        let progress = progress.clone();
        let request = request.clone();
        let markers = markers.clone();
        let plan = plan.clone();
        workers.push(tokio::spawn(async move {
            let mut failed = 0;
            for i in (worker..count).step_by(plan.clients) {
                tokio::time::sleep_until(start + plan.time.mul_f64(i as f64 / count as f64)).await;
                let mut sent = request(&markers[i]);
                let path = sent.uri().clone();
                *sent.uri_mut() = format!("http://{addr}{path}").parse().expect("a path");
                let ok = match tokio::time::timeout(plan.timeout, async {
                    let response = client.request(sent).await?;
                    let status = response.status();
                    let _ = response.into_body().collect().await?;
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(status)
                })
                .await
                {
                    Ok(Ok(status)) => status.is_success(),
                    _ => false,
                };
                if !ok {
                    failed += 1;
                }
                progress.fetch_add(1, Ordering::Relaxed);
            }
            failed
        }));
    }
    let mut failed = 0;
    for worker in workers {
        failed += worker.await.expect("a load client");
    }
    Load {
        markers: Arc::unwrap_or_clone(markers),
        failed,
    }
}

/// Waits (up to `timeout`) until at least `n` requests were answered.
pub async fn answered(progress: &AtomicUsize, n: usize, timeout: Duration) {
    wait_until(&format!("{n} requests answered"), timeout, || async {
        (progress.load(Ordering::Relaxed) >= n).then_some(())
    })
    .await
    .expect("the load goes on");
}

/// Rows per `resource_id` in the table, or `None` while the database
/// cannot answer.
pub async fn rows_per_marker(database_url: &str) -> Option<HashMap<String, i64>> {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(database_url)
        .await
        .ok()?;
    let rows: Vec<(Option<String>, i64)> =
        sqlx::query_as("SELECT resource_id, count(*) FROM user_activity_logs GROUP BY resource_id")
            .fetch_all(&mut conn)
            .await
            .ok()?;
    Some(
        rows.into_iter()
            .map(|(id, n)| (id.unwrap_or_default(), n))
            .collect(),
    )
}

/// Waits (up to `timeout`) until every marker is in the table, and
/// returns the rows per marker then (or as they are at the deadline).
pub async fn drained(
    database_url: &str,
    markers: &[String],
    timeout: Duration,
) -> HashMap<String, i64> {
    let done = wait_until("the pipeline to drain", timeout, || async {
        let rows = rows_per_marker(database_url).await?;
        markers.iter().all(|m| rows.contains_key(m)).then_some(rows)
    })
    .await;
    match done {
        Ok(rows) => rows,
        Err(_) => rows_per_marker(database_url).await.unwrap_or_default(),
    }
}

/// What a load ended as: sent, stored, duplicated, dead-lettered, failed.
#[derive(Debug)]
pub struct Outcome {
    /// Requests sent.
    pub sent: usize,
    /// Of them, the ones whose event is in the table (once or more).
    pub stored: usize,
    /// Rows beyond the first of an event.
    pub duplicates: i64,
    /// Entries in the dead-letter streams.
    pub dead_lettered: u64,
    /// Requests that failed.
    pub failed: usize,
    /// Markers of requests whose event is not in the table.
    pub missing: Vec<String>,
}

impl Outcome {
    /// Compares the rows with the load. Panics on a row no request made.
    pub fn new(load: &Load, rows: &HashMap<String, i64>, dead_lettered: u64) -> Outcome {
        let mut missing = Vec::new();
        let mut duplicates = 0;
        for marker in &load.markers {
            match rows.get(marker) {
                Some(n) => duplicates += n - 1,
                None => missing.push(marker.clone()),
            }
        }
        let sent: HashSet<&String> = load.markers.iter().collect();
        let strays: Vec<&String> = rows.keys().filter(|k| !sent.contains(k)).collect();
        assert!(strays.is_empty(), "rows no request made: {strays:?}");
        Outcome {
            sent: load.markers.len(),
            stored: load.markers.len() - missing.len(),
            duplicates,
            dead_lettered,
            failed: load.failed,
            missing,
        }
    }

    /// `scenario <name>: sent N, stored N, duplicates 0, dead-lettered K,
    /// failed requests 0`.
    pub fn line(&self, scenario: &str) -> String {
        format!(
            "scenario {scenario}: sent {}, stored {}, duplicates {}, dead-lettered {}, failed requests {}",
            self.sent, self.stored, self.duplicates, self.dead_lettered, self.failed
        )
    }

    /// Prints [`Outcome::line`].
    pub fn print(&self, scenario: &str) {
        println!("{}", self.line(scenario));
    }

    /// Stored = sent, no duplicate, no failed request.
    pub fn assert_complete(&self) {
        assert!(
            self.missing.is_empty(),
            "{} events missing, e.g. {:?}",
            self.missing.len(),
            &self.missing[..self.missing.len().min(10)]
        );
        assert_eq!(self.stored, self.sent);
        assert_eq!(self.duplicates, 0, "duplicated events");
        assert_eq!(self.failed, 0, "failed requests");
    }
}
