//! The quick start: the whole pipeline in one process, what
//! `cargo run --release --example quickstart` runs.
//!
//! [`run`] applies the migrations, starts the example app
//! ([`crate::demo_app`]) with the activity layer and the processor (its
//! consumer and admin API, with a generated admin token), drives a short
//! scenario through the app over HTTP, waits until every event is stored,
//! prints what an admin would look at (fetched from the admin API over
//! HTTP) and the `curl` lines to ask it yourself, then serves until `until`
//! completes. With Redis down it shows the layer's direct-to-database
//! fallback; with PostgreSQL down it stops with one line saying how to
//! start it.
//!
//! ```no_run
//! # async fn example() -> Result<(), activity_tracking::quickstart::QuickstartError> {
//! use activity_tracking::quickstart::{self, Options};
//!
//! let mut out = std::io::stdout();
//! let summary = quickstart::run(Options::from_env(), &mut out, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! println!("{} events stored", summary.events);
//! # Ok(()) }
//! ```

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::time::Duration;

use activity_processor::RunError;
use activity_store::{queries, schema};
use activity_tracker::BuildError;
use chrono::Utc;
use serde_json::Value;

mod client;
mod pipeline;
mod report;
mod scenario;
mod servers;

use client::Http;
use pipeline::Pipeline;
use report::Figures;

/// How long the stored events are waited for before giving up.
const STORE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the quick start connects and listens. [`Options::from_env`] reads
/// the same environment variables as the processor and the examples.
#[derive(Debug, Clone)]
pub struct Options {
    /// `REDIS_URL`.
    pub redis_url: String,
    /// `DATABASE_URL`.
    pub database_url: String,
    /// `STREAM_KEY`.
    pub stream_key: String,
    /// `CONSUMER_GROUP` of the in-process processor.
    pub consumer_group: String,
    /// `APP_LISTEN`: the example app.
    pub app_listen: String,
    /// `ADMIN_LISTEN`: the processor's HTTP server (admin API, health, metrics).
    pub admin_listen: String,
    /// When an address is taken, listen on a free port instead (and say
    /// so) rather than stop.
    pub any_port_if_taken: bool,
    /// The admin API's bearer token; a random one by default.
    pub admin_token: String,
    /// Stop right after the report instead of serving (`--once`).
    pub once: bool,
    /// Redraw the progress line in place (a terminal); otherwise print
    /// only the notable requests and the totals.
    pub progress_in_place: bool,
}

impl Options {
    /// The environment variables where set (`REDIS_URL`, `DATABASE_URL`,
    /// `STREAM_KEY`, `CONSUMER_GROUP`, `APP_LISTEN`, `ADMIN_LISTEN`,
    /// `ADMIN_TOKENS`: its first token), the defaults otherwise; a fresh
    /// random admin token unless `ADMIN_TOKENS` is set.
    pub fn from_env() -> Self {
        let env = |name: &str, default: &str| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        let admin_token = std::env::var("ADMIN_TOKENS")
            .ok()
            .and_then(|tokens| {
                tokens
                    .split(',')
                    .map(str::trim)
                    .find(|t| !t.is_empty())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| format!("qs-{}", uuid::Uuid::new_v4().simple()));
        Options {
            redis_url: env("REDIS_URL", activity_processor::config::DEFAULT_REDIS_URL),
            database_url: env(
                "DATABASE_URL",
                activity_processor::config::DEFAULT_DATABASE_URL,
            ),
            stream_key: env("STREAM_KEY", activity_tracker::DEFAULT_STREAM_KEY),
            consumer_group: env("CONSUMER_GROUP", "activity-processor"),
            app_listen: env("APP_LISTEN", "127.0.0.1:3000"),
            admin_listen: env("ADMIN_LISTEN", "127.0.0.1:8080"),
            any_port_if_taken: true,
            admin_token,
            once: false,
            progress_in_place: std::io::stdout().is_terminal(),
        }
    }
}

/// Why the quick start stopped; each says in one line what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuickstartError {
    /// PostgreSQL cannot be reached.
    #[error("PostgreSQL is not reachable at {url}: {hint}")]
    PostgresDown {
        /// `DATABASE_URL` (without its password).
        url: String,
        /// How to start it.
        hint: String,
    },
    /// The migrations failed.
    #[error("applying the migrations failed: {0}")]
    Schema(#[from] schema::SchemaError),
    /// The tracker's settings were refused.
    #[error("the activity tracker could not start: {0}")]
    Tracker(#[from] BuildError),
    /// The processor could not start.
    #[error("the processor could not start: {0}")]
    Processor(#[from] RunError),
    /// An address cannot be listened on.
    #[error("cannot listen on {name} {addr}: {source}; set {name} to a free address")]
    Listen {
        /// The variable (`APP_LISTEN`, `ADMIN_LISTEN`).
        name: &'static str,
        /// Its value.
        addr: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A request to the app or the admin API failed.
    #[error("{what} failed: {reason}")]
    Http {
        /// The request.
        what: String,
        /// Why.
        reason: String,
    },
    /// A query of the database failed.
    #[error("querying the database failed: {0}")]
    Database(#[from] sqlx::Error),
    /// An analytics query failed (Redis-down mode reads figures directly).
    #[error("{0}")]
    Analytics(#[from] queries::QueryError),
    /// The events did not all reach the table in time.
    #[error("only {stored} of {expected} events were stored within {STORE_TIMEOUT:?}")]
    NotStored {
        /// Rows found.
        stored: i64,
        /// Events sent.
        expected: i64,
    },
    /// Writing the output failed.
    #[error("writing the output failed: {0}")]
    Output(#[from] std::io::Error),
}

/// What the quick start saw: the figures it printed.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Whether Redis answered (else events went straight to PostgreSQL).
    pub redis_up: bool,
    /// Events the scenario made (all of them stored before the figures
    /// were fetched).
    pub events: i64,
    /// The session ids of this run start with this, in `session_id`.
    pub session_prefix: String,
    /// Where the app listened.
    pub app_addr: SocketAddr,
    /// Where the admin API listened (`None` with Redis down: no processor).
    pub admin_addr: Option<SocketAddr>,
    /// The admin token.
    pub admin_token: String,
    /// `queue-status` (`None` with Redis down).
    pub queue_status: Option<Value>,
    /// `statistics?days=1`.
    pub statistics: Value,
    /// `top-users?days=1&limit=5`.
    pub top_users: Value,
    /// `user/alice/path?days=1`.
    pub user_path: Value,
}

/// Runs the quick start (see the module docs), printing to `out`, and
/// serves until `until` completes (not at all with [`Options::once`]);
/// then stops the app, flushes the tracker and stops the processor.
pub async fn run(
    options: Options,
    out: &mut (dyn Write + Send),
    until: impl Future<Output = ()>,
) -> Result<Summary, QuickstartError> {
    writeln!(out, "activity-tracking quick start")?;
    let pool = servers::open_database(&options, out).await?;
    let redis_up = servers::check_redis(&options, out).await?;
    let pipeline = Pipeline::start(&options, out, pool, redis_up).await?;
    pipeline.print_addresses(out, &options.admin_token)?;

    let result = drive_and_report(&options, out, &pipeline).await;
    if result.is_ok() && !options.once {
        until.await;
    }
    pipeline.stop(out).await?;
    result
}

/// Everything between start-up and serving: the scenario, the wait until
/// it is stored, the admin's view, the curl lines.
async fn drive_and_report(
    options: &Options,
    out: &mut (dyn Write + Send),
    pipeline: &Pipeline,
) -> Result<Summary, QuickstartError> {
    let http = Http::new();
    let started_at = Utc::now() - chrono::Duration::minutes(1);
    // Tells this run's rows from earlier runs' in the same table.
    let session_prefix = format!("qs-{}-", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let in_place = options.progress_in_place;

    let (app, admin) = (pipeline.app_addr, pipeline.admin_addr);
    let expected = scenario::drive(&http, out, app, &session_prefix, in_place).await?;
    let pool = &pipeline.pool;
    let stored =
        report::wait_until_stored(out, pool, started_at, &session_prefix, expected, in_place)
            .await?;
    report::print_route(out, &pipeline.tracker, pipeline.redis_up)?;

    let token = &options.admin_token;
    let figures = Figures::fetch(&http, pool, admin, token).await?;
    report::print_figures(out, &figures, admin)?;
    if let Some(admin) = admin {
        report::print_curl_lines(out, admin, app, token)?;
    }
    if !options.once {
        report::print_serving(out, app, admin)?;
    }
    out.flush()?;

    Ok(Summary {
        redis_up: pipeline.redis_up,
        events: stored,
        session_prefix,
        app_addr: app,
        admin_addr: admin,
        admin_token: options.admin_token.clone(),
        queue_status: figures.queue_status,
        statistics: figures.statistics,
        top_users: figures.top_users,
        user_path: figures.user_path,
    })
}
