//! The quick start: the whole pipeline in one process, what
//! `cargo run --release --example quickstart` runs.
//!
//! [`run`] makes a database of its own (dropped and created again at each
//! run, unless `DATABASE_URL` names one) and applies the migrations, starts
//! the example app ([`crate::demo_app`]) with the activity layer and the
//! processor (its consumer and admin API, with a generated admin token),
//! drives a short scenario through the app over HTTP, waits until every
//! event is stored, prints what an admin would look at (fetched from the
//! admin API over HTTP) and the `curl` lines to ask it yourself, then
//! serves until `until` completes. When PostgreSQL or Redis is installed
//! but not running at its default address it starts a private server for
//! the run; with Redis unreachable otherwise it shows the layer's
//! direct-to-database fallback; with no PostgreSQL at all it stops with one
//! line saying how to start it.
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
mod database;
mod pipeline;
mod report;
mod scenario;
mod servers;

use client::Http;
use pipeline::Pipeline;
use report::Figures;

/// How long the stored events are waited for before giving up.
const STORE_TIMEOUT: Duration = Duration::from_secs(30);

/// The database the quick start makes afresh at each run when
/// `DATABASE_URL` is not given.
pub const FRESH_DATABASE: &str = "activity_quickstart";

/// The stream the quick start empties and uses at each run when neither
/// `DATABASE_URL` nor `STREAM_KEY` is given.
pub const FRESH_STREAM_KEY: &str = "activity_quickstart_stream";

/// Where the quick start connects and listens. [`Options::from_env`] reads
/// the same environment variables as the processor and the examples.
#[derive(Debug, Clone)]
pub struct Options {
    /// `REDIS_URL`.
    pub redis_url: String,
    /// `DATABASE_URL`; with [`Options::fresh_database`], the server on
    /// which that database is made.
    pub database_url: String,
    /// A database to drop and create again on `database_url`'s server and
    /// use, so that the figures are this run's alone; `None`: use
    /// `database_url` as it is (its figures include earlier rows).
    pub fresh_database: Option<String>,
    /// `STREAM_KEY`.
    pub stream_key: String,
    /// Delete `stream_key` (its groups and its dead letters) before the
    /// run, so that nothing left from earlier runs is stored in this one.
    pub fresh_stream: bool,
    /// When no PostgreSQL answers at `database_url`, start a private server
    /// in a temporary directory for the run (if PostgreSQL is installed).
    pub private_postgres_if_down: bool,
    /// When no Redis answers at `redis_url`, start a private `redis-server`
    /// for the run (if it is installed) rather than show the fallback.
    pub private_redis_if_down: bool,
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
    ///
    /// A `DATABASE_URL` other than the default (the one
    /// `.cargo/config.toml` sets) is used as it is; otherwise the quick
    /// start makes [`FRESH_DATABASE`] afresh on the default server and,
    /// unless `STREAM_KEY` is set, empties and uses [`FRESH_STREAM_KEY`].
    /// A server left at its default address that does not answer is
    /// replaced by a private one.
    pub fn from_env() -> Self {
        let given = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let env = |name: &str, default: &str| given(name).unwrap_or_else(|| default.to_owned());
        let default_database = activity_processor::config::DEFAULT_DATABASE_URL;
        let default_redis = activity_processor::config::DEFAULT_REDIS_URL;
        let database_url = env("DATABASE_URL", default_database);
        let redis_url = env("REDIS_URL", default_redis);
        let own_database = database_url == default_database;
        let stream_key = given("STREAM_KEY");
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
            private_redis_if_down: redis_url == default_redis,
            redis_url,
            private_postgres_if_down: own_database,
            database_url,
            fresh_database: own_database.then(|| FRESH_DATABASE.to_owned()),
            fresh_stream: own_database && stream_key.is_none(),
            stream_key: stream_key.unwrap_or_else(|| {
                if own_database {
                    FRESH_STREAM_KEY.to_owned()
                } else {
                    activity_tracker::DEFAULT_STREAM_KEY.to_owned()
                }
            }),
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
    /// The database answered but refused the connection (no such
    /// database or role, a wrong password, ...).
    #[error("{0}")]
    Connect(RunError),
    /// Redis answered with an error.
    #[error("Redis at {url} failed: {reason}")]
    Redis {
        /// `REDIS_URL` (without its password).
        url: String,
        /// What it said.
        reason: String,
    },
    /// The migrations failed.
    #[error("{}", activity_processor::db_message::describe_schema(.0))]
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
    #[error(
        "querying the database failed: {}",
        activity_processor::db_message::describe(.0)
    )]
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
    /// The database the events were stored in (a private server's is gone
    /// once [`run`] has returned).
    pub database_url: String,
    /// The stream the events went through.
    pub stream_key: String,
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
    let mut options = options;
    // Dropped last: the private servers outlive everything using them.
    let mut private = servers::PrivateServers::default();
    servers::reach_postgres(&mut options, &mut private, out).await?;
    let pool = servers::open_database(&mut options, out).await?;
    let redis_up = servers::reach_redis(&mut options, &mut private, out).await?;
    let pipeline = Pipeline::start(&options, out, pool, redis_up).await?;
    pipeline.print_addresses(out, &options.admin_token)?;

    let result = drive_and_report(&options, out, &pipeline).await;
    if result.is_ok() && !options.once {
        until.await;
    }
    pipeline.stop(out).await?;
    drop(private);
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
    if options.once {
        // The servers stop right after this: lines pointing at them, with
        // this run's token, would not work.
        report::print_once_note(out, admin.is_some())?;
    } else {
        if let Some(admin) = admin {
            report::print_curl_lines(out, admin, app, token)?;
        }
        report::print_serving(out, app, admin)?;
    }
    out.flush()?;

    Ok(Summary {
        redis_up: pipeline.redis_up,
        events: stored,
        session_prefix,
        database_url: options.database_url.clone(),
        stream_key: options.stream_key.clone(),
        app_addr: app,
        admin_addr: admin,
        admin_token: options.admin_token.clone(),
        queue_status: figures.queue_status,
        statistics: figures.statistics,
        top_users: figures.top_users,
        user_path: figures.user_path,
    })
}
