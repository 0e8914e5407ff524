//! The whole processor, in-process: start-up checks, migrations, the
//! consumer, the HTTP server, and the timers (partitions, retention, gauges).

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use chrono::Utc;
use sqlx::postgres::{PgConnection, PgPoolOptions};
use sqlx::{Connection, PgPool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alerts::{self, AlertSettings};
use crate::config::{Config, ConfigError, Roles, redact};
use crate::consumer::{self, ConsumerError};
use crate::db_message;
use crate::http::{self, StackSettings};
use crate::privacy::{self, Privacy};
use crate::server;
use crate::stats::ProcessorStats;
use crate::webhook::{self, WebhookConfig, WebhookConfigError, WebhookSettings};
use activity_store::schema::{self, SchemaError};

/// Monthly partitions made ahead of the current month.
const PARTITION_MONTHS_AHEAD: u32 = 2;
/// How often partitions are made ahead and expired ones dropped.
const MAINTENANCE_PERIOD: Duration = Duration::from_secs(3600);
/// How often the stream length and pending gauges are refreshed.
const GAUGE_PERIOD: Duration = Duration::from_secs(5);
/// How long start-up waits for Redis to answer a command.
const STARTUP_REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// What the processor's parts share; what the admin API's router is built
/// from.
#[derive(Debug, Clone)]
pub struct Context {
    /// The settings it runs with.
    pub config: Arc<Config>,
    /// Connections to `DATABASE_URL`.
    pub pool: PgPool,
    /// `REDIS_URL`, a node or a cluster (open a connection per use or
    /// keep one: each times replies out after 500 ms by default).
    pub redis: activity_tracker::RedisClient,
    /// The consumer's counters.
    pub stats: Arc<ProcessorStats>,
    /// The storage rules, the erasure policy and list, the audit of reads.
    pub privacy: Arc<Privacy>,
    /// The alert rules and how they are evaluated.
    pub alerts: Arc<AlertSettings>,
    /// Where new alerts are posted; `None` without `ALERT_WEBHOOK_URLS`.
    pub webhooks: Option<Arc<WebhookConfig>>,
}

/// Why the processor could not start or stopped with an error; each says
/// in one line what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A setting cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database cannot be reached at start (or refused the
    /// connection: no such database or role, a wrong password).
    #[error(
        "cannot connect to the database at DATABASE_URL ({url}): {}; {}",
        db_message::describe(source),
        db_message::connect_hint(source)
    )]
    Database {
        /// The URL, without its password.
        url: String,
        /// What sqlx said.
        #[source]
        source: sqlx::Error,
    },
    /// The webhook settings cannot work.
    #[error(transparent)]
    Webhook(#[from] WebhookConfigError),
    /// Migrations or partitions failed.
    #[error("{}", db_message::describe_schema(.0))]
    Schema(#[from] SchemaError),
    /// Redis cannot be reached at start (or is a cluster reached as one
    /// node).
    #[error("{source}; {}", redis_hint(source, url))]
    Redis {
        /// `REDIS_URL`, without its password.
        url: String,
        /// What failed.
        #[source]
        source: ConsumerError,
    },
    /// `ADMIN_LISTEN` cannot be bound.
    #[error("cannot listen on ADMIN_LISTEN {addr}: {source}; choose a free address")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// `INGEST_LISTEN` cannot be bound.
    #[error("cannot listen on INGEST_LISTEN {addr}: {source}; choose a free address")]
    IngestListen {
        /// The address.
        addr: SocketAddr,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
}

/// A running processor (see [`Processor::start`]).
#[derive(Debug)]
pub struct Processor {
    ctx: Context,
    /// Where the admin server listens; `None` without the `admin` role.
    admin_addr: Option<SocketAddr>,
    /// Where the ingest server listens; `None` without it.
    ingest_addr: Option<SocketAddr>,
    main: JoinHandle<()>,
}

/// A bound listener and what it serves.
type Served = (tokio::net::TcpListener, Router);

/// Binds `addr` for the setting `name`, or says why not.
async fn bind(
    addr: SocketAddr,
    error: fn(SocketAddr, std::io::Error) -> RunError,
) -> Result<(tokio::net::TcpListener, SocketAddr), RunError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| error(addr, source))?;
    let local = listener
        .local_addr()
        .map_err(|source| error(addr, source))?;
    Ok((listener, local))
}

impl Processor {
    /// Checks the settings, binds `ADMIN_LISTEN` and `INGEST_LISTEN` (as
    /// `SERVE_ROLES` asks), connects, applies the migrations, makes the
    /// partitions ahead, and starts the consumer, the HTTP servers and the
    /// timers. They run until `token` is cancelled. A process without the
    /// `consumer` and `admin` roles never connects to the database.
    pub async fn start(config: Config, token: CancellationToken) -> Result<Processor, RunError> {
        config.validate()?;
        let roles = config.serve_roles()?;
        // First: a taken address is found before anything is connected to
        // or changed.
        let admin = match roles.admin {
            true => Some(
                bind(config.listen_addr()?, |addr, source| RunError::Listen {
                    addr,
                    source,
                })
                .await?,
            ),
            false => None,
        };
        let ingest_keys = roles.ingest && config.ingest_write_keys()?.is_some();
        let ingest = match ingest_keys {
            true => Some(
                bind(config.ingest_listen_addr()?, |addr, source| {
                    RunError::IngestListen { addr, source }
                })
                .await?,
            ),
            false => None,
        };
        let admin_addr = admin.as_ref().map(|(_, addr)| *addr);
        let ingest_addr = ingest.as_ref().map(|(_, addr)| *addr);
        let webhooks = WebhookConfig::from_settings(&WebhookSettings {
            urls: config.alert_webhook_urls.as_deref(),
            secret: config.alert_webhook_secret.as_ref().map(|s| s.expose()),
            retry_hours: config.alert_webhook_retry_hours,
            link_base_url: config.alert_link_base_url.as_deref(),
            admin_listen: match admin_addr {
                Some(addr) => addr,
                None => config.listen_addr()?,
            },
        })?
        .map(Arc::new);
        let alert_settings = alert_settings(&config, webhooks.as_deref())?;
        let uses_database = roles.consumer || roles.admin;
        // Besides the writers: folds, retention and admin queries.
        let writers = u32::try_from(config.db_writers).unwrap_or(u32::MAX);
        let pool = match uses_database {
            true => connect_pool(&config.database_url, writers.saturating_add(5)).await?,
            false => lazy_pool(&config.database_url, 1)?,
        };
        let redis = config.redis_client()?;
        // Longer than redis' 500 ms default reply timeout: a server just
        // started, or a loaded machine, may be slow to answer the first
        // command, and start-up should not fail for that.
        let redis_error = |source| RunError::Redis {
            url: redact(&config.redis_url),
            source,
        };
        let mut conn = redis
            .connect(Duration::from_secs(2), Some(STARTUP_REPLY_TIMEOUT))
            .await
            .map_err(|source| {
                redis_error(ConsumerError::Group {
                    stream: config.stream_key.clone(),
                    group: config.consumer_group.clone(),
                    source,
                })
            })?;
        for key in config.stream_shards().keys() {
            consumer::ensure_group(&mut conn, key, &config.consumer_group)
                .await
                .map_err(redis_error)?;
        }
        server::install_metrics();
        let privacy = Privacy::from_config(&config);
        if uses_database {
            // Both servers are reachable: only now change the database.
            schema::migrate(&pool).await?;
            schema::ensure_partitions(&pool, Utc::now(), PARTITION_MONTHS_AHEAD).await?;
            privacy.warn_if_unkeyed();
            privacy
                .list
                .refresh(&pool)
                .await
                .map_err(|source| RunError::Database {
                    url: redact(&config.database_url),
                    source,
                })?;
        }
        let ingest_state = crate::ingest::IngestState::from_config(&config, redis.clone())?;
        if roles.ingest && ingest_state.is_none() {
            tracing::info!("INGEST_WRITE_KEYS is unset: no ingest server");
        }

        let ctx = Context {
            config: Arc::new(config),
            pool,
            redis,
            stats: Arc::new(ProcessorStats::new()),
            privacy: Arc::new(privacy),
            alerts: Arc::new(alert_settings),
            webhooks,
        };
        let admin = match admin {
            Some((listener, _)) => Some((
                listener,
                http::stack(
                    server::router(ctx.clone(), extra_routes(&ctx)),
                    &StackSettings::admin(
                        ctx.config.http_request_timeout(),
                        ctx.config.cors_origins()?,
                    ),
                ),
            )),
            None => None,
        };
        let ingest = match (ingest, ingest_state) {
            (Some((listener, _)), Some(state)) => Some((
                listener,
                http::stack(
                    crate::ingest::router(state),
                    &StackSettings::ingest(ctx.config.http_request_timeout()),
                ),
            )),
            _ => None,
        };
        let main = tokio::spawn(run_parts(ctx.clone(), roles, admin, ingest, token));
        tracing::info!(
            admin = ?admin_addr,
            ingest = ?ingest_addr,
            consumer = roles.consumer,
            "processor started"
        );
        Ok(Processor {
            ctx,
            admin_addr,
            ingest_addr,
            main,
        })
    }

    /// Where the admin HTTP server listens (the real port when
    /// `ADMIN_LISTEN` asked for port 0); without the `admin` role, which
    /// has no listener, the unspecified address `0.0.0.0:0`.
    pub fn local_addr(&self) -> SocketAddr {
        self.admin_addr
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Where the admin HTTP server listens; `None` without the `admin` role.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Where the ingest server listens (the real port when `INGEST_LISTEN`
    /// asked for port 0); `None` without the `ingest` role or
    /// `INGEST_WRITE_KEYS`.
    pub fn ingest_addr(&self) -> Option<SocketAddr> {
        self.ingest_addr
    }

    /// The shared context (pool, Redis client, counters, settings).
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// The consumer's counters.
    pub fn stats(&self) -> Arc<ProcessorStats> {
        self.ctx.stats.clone()
    }

    /// Waits until the processor has stopped (after its token is
    /// cancelled: the batch in hand committed and acknowledged).
    pub async fn wait(self) -> Result<(), RunError> {
        // A panic in a part is a bug; report it as such rather than hide it.
        if let Err(e) = self.main.await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
        Ok(())
    }
}

/// What to check when Redis failed at start: a `MOVED` or `ASK` reply
/// means `REDIS_URL` names one node of a Redis Cluster as if it were a
/// single Redis; anything else, whether Redis runs there.
fn redis_hint(error: &ConsumerError, url: &str) -> String {
    let ConsumerError::Group { source, .. } = error;
    match source.redirect_node() {
        Some(_) => format!(
            "REDIS_URL ({url}) is one node of a Redis Cluster: list its nodes separated by commas (redis://a:7000,redis://b:7001) or set REDIS_CLUSTER=true"
        ),
        None => format!("is Redis running at REDIS_URL ({url})?"),
    }
}

/// How long a statement may take before it is logged as a warning.
const SLOW_STATEMENT: Duration = Duration::from_secs(10);

/// Connects to `url` once to fail fast with a clear error when the
/// database is unreachable (a pool would retry until its timeout), then
/// returns a pool of up to 8 connections.
pub async fn connect_database(url: &str) -> Result<PgPool, RunError> {
    connect_pool(url, 8).await
}

/// [`connect_database`] with a pool of up to `max_connections`.
async fn connect_pool(url: &str, max_connections: u32) -> Result<PgPool, RunError> {
    let error = |source| RunError::Database {
        url: redact(url),
        source,
    };
    let options = pool_options(url)?;
    let first = tokio::time::timeout(
        Duration::from_secs(10),
        PgConnection::connect_with(&options),
    )
    .await
    .map_err(|_| error(sqlx::Error::PoolTimedOut))?
    .map_err(error)?;
    // The checked connection is not kept: the pool opens its own.
    drop(first);
    lazy_pool(url, max_connections)
}

/// A pool of up to `max_connections` that connects when first used.
fn lazy_pool(url: &str, max_connections: u32) -> Result<PgPool, RunError> {
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(pool_options(url)?))
}

/// The connection options of `url`, with the processor's logging.
fn pool_options(url: &str) -> Result<sqlx::postgres::PgConnectOptions, RunError> {
    let options =
        sqlx::postgres::PgConnectOptions::from_str(url).map_err(|e| ConfigError::DatabaseUrl {
            url: redact(url),
            reason: e.to_string(),
        })?;
    // sqlx warns, with the whole statement, about any taking over a second;
    // a fold of 100k pending counts can while a backlog drains, which is
    // no news. Ten seconds is.
    Ok(
        sqlx::ConnectOptions::log_slow_statements(options, log::LevelFilter::Warn, SLOW_STATEMENT)
            // PostgreSQL's notices (`relation "_sqlx_migrations" already
            // exists, skipping` at every start, "partition ... does not
            // exist, skipping") are no news; its warnings are.
            .options([("client_min_messages", "warning")]),
    )
}

/// Runs the whole processor until `token` is cancelled (SIGTERM in the
/// binary), then stops within a bounded time.
pub async fn run(config: Config, token: CancellationToken) -> Result<(), RunError> {
    Processor::start(config, token).await?.wait().await
}

/// The alert rules and their settings, from the configuration; new alerts
/// get a delivery to each of the webhooks' (checked) URLs.
fn alert_settings(
    config: &Config,
    webhooks: Option<&WebhookConfig>,
) -> Result<AlertSettings, ConfigError> {
    let rules = config.alert_rules()?;
    if rules.rules().is_empty() {
        tracing::info!("ALERT_RULES=none: stored events are not evaluated by alert rules");
    }
    let mut settings = AlertSettings::new(Arc::new(rules));
    settings.max_lateness = config.alert_max_lateness()?;
    settings.interval = Duration::from_millis(config.alert_evaluate_interval_ms);
    settings.webhook_urls = webhooks.map(|w| w.urls.clone()).unwrap_or_default();
    Ok(settings)
}

/// The routes merged into the HTTP server besides the health and metrics
/// endpoints: the admin API and the dashboard page.
fn extra_routes(ctx: &Context) -> Router {
    let auth = crate::admin::AdminAuth::from_secrets(
        ctx.config.admin_tokens.as_ref(),
        ctx.config.admin_privacy_tokens.as_ref(),
        ctx.config.admin_jwt_secret.as_ref(),
    )
    .with_max_ttl(
        ctx.config
            .admin_jwt_max_ttl()
            .unwrap_or(crate::admin::DEFAULT_JWT_MAX_TTL),
    );
    auth.warn_if_unconfigured();
    crate::admin::router(crate::admin::AdminState::from_context(ctx, auth))
        .merge(crate::dashboard::router())
}

async fn run_parts(
    ctx: Context,
    roles: Roles,
    admin: Option<Served>,
    ingest: Option<Served>,
    token: CancellationToken,
) {
    let tracker = TaskTracker::new();
    // The servers stop after the consumer, so `/readyz` and `/metrics`
    // answer while the last batch is committed.
    let server_token = CancellationToken::new();
    let timeouts = ctx
        .config
        .connection_timeouts()
        .expect("checked by Config::validate at start");
    for (name, served) in [("admin", admin), ("ingest", ingest)] {
        let Some((listener, app)) = served else {
            continue;
        };
        let server_token = server_token.clone();
        tracker.spawn(async move {
            if let Err(e) = http::serve(listener, app, timeouts, server_token).await {
                tracing::error!(error = %e, server = name, "HTTP server failed");
            }
        });
    }
    if roles.consumer || roles.admin {
        tracker.spawn(gauges(ctx.clone(), token.clone()));
    }
    if roles.consumer {
        tracker.spawn(maintenance(ctx.clone(), token.clone()));
        tracker.spawn(fold_rollups(ctx.clone(), token.clone()));
        tracker.spawn(alerts::run_evaluator(
            ctx.pool.clone(),
            (*ctx.alerts).clone(),
            token.clone(),
        ));
        if let Some(webhooks) = &ctx.webhooks {
            tracker.spawn(webhook::run_deliveries(
                ctx.pool.clone(),
                webhooks.clone(),
                token.clone(),
            ));
        }
        tracker.spawn(privacy::maintain(
            ctx.privacy.clone(),
            ctx.pool.clone(),
            token.clone(),
        ));
        let consumed = consumer::run(
            &ctx.config,
            ctx.pool.clone(),
            ctx.redis.clone(),
            ctx.stats.clone(),
            ctx.privacy.storage_rules(),
            token.clone(),
        )
        .await;
        if let Err(e) = consumed {
            tracing::error!(error = %e, "consumer failed");
            token.cancel();
        }
    } else {
        token.cancelled().await;
    }
    server_token.cancel();
    tracker.close();
    tracker.wait().await;
    ctx.pool.close().await;
}

/// Makes partitions ahead and drops expired ones, every hour.
async fn maintenance(ctx: Context, token: CancellationToken) {
    let mut ticker = tokio::time::interval(MAINTENANCE_PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; start-up already made the partitions.
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let now = Utc::now();
        if let Err(e) = schema::ensure_partitions(&ctx.pool, now, PARTITION_MONTHS_AHEAD).await {
            tracing::warn!(error = %e, "making partitions ahead failed; next hour retries");
        }
        match schema::drop_expired_partitions(&ctx.pool, now, ctx.config.retention_days).await {
            Ok(dropped) if !dropped.is_empty() => {
                tracing::info!(?dropped, "dropped expired partitions")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "dropping expired partitions failed; next hour retries")
            }
        }
    }
}

/// Timer ticks a fold may be put off while the stream has a backlog: with
/// the default `ROLLUP_FOLD_INTERVAL_MS`, a fold at least every 10 s.
const MAX_DEFERRED_FOLDS: u32 = 4;

/// Whether this tick folds, given whether the stream has a backlog and how
/// many ticks in a row have been put off.
///
/// While events wait in the stream, the database's time goes to storing
/// them first: the per-user counts keep piling up as pending rows (queries
/// fold before reading, so they stay exact) and are folded in fewer,
/// larger folds, bounded by [`MAX_DEFERRED_FOLDS`].
fn folds_now(backlogged: bool, deferred: u32) -> bool {
    !backlogged || deferred >= MAX_DEFERRED_FOLDS
}

/// Folds the per-user counts that writers leave pending into the per-user
/// rollups, on a timer (see `activity_store::rollups`), less
/// often while the stream has a backlog ([`folds_now`]). A fold spans the
/// batches committed since the last one, so it upserts each active user
/// once instead of once per batch.
async fn fold_rollups(ctx: Context, token: CancellationToken) {
    let mut ticker =
        tokio::time::interval(Duration::from_millis(ctx.config.rollup_fold_interval_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut deferred = 0;
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if !folds_now(ctx.stats.backlogged(), deferred) {
            deferred += 1;
            continue;
        }
        deferred = 0;
        // Another processor folding now does the work: no reason to wait.
        match activity_store::rollups::try_fold_pending(&ctx.pool).await {
            Ok(Some(rows)) => {
                metrics::counter!("activity_processor_rollup_rows_folded_total").increment(rows)
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "folding pending rollup counts failed; retrying"),
        }
    }
}

/// Refreshes the stream length and pending gauges (and the Prometheus
/// recorder's upkeep).
async fn gauges(ctx: Context, token: CancellationToken) {
    let mut ticker = tokio::time::interval(GAUGE_PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let shards = ctx.config.stream_shards();
    let mut conn = None;
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if let Some(handle) = server::install_metrics() {
            handle.run_upkeep();
        }
        if conn.is_none() {
            conn = ctx.redis.connect(Duration::from_secs(2), None).await.ok();
        }
        let Some(c) = conn.as_mut() else { continue };
        if stream_gauges(c, &shards, &ctx.config.consumer_group)
            .await
            .is_err()
        {
            conn = None;
        }
    }
}

/// Sets the stream's gauges: the sums over the shards, and with several
/// shards each shard's (labelled `shard`, its index).
async fn stream_gauges(
    conn: &mut activity_tracker::RedisConnection,
    shards: &activity_tracker::StreamShards,
    group: &str,
) -> redis::RedisResult<()> {
    let lengths = crate::queue_length::shard_lengths(conn, shards).await?;
    let mut pending_total = 0;
    for (shard, key) in shards.keys().iter().enumerate() {
        let summary: redis::Value = redis::cmd("XPENDING")
            .arg(key)
            .arg(group)
            .query_async(conn)
            .await?;
        let pending = match summary {
            redis::Value::Array(summary) => match summary.first() {
                Some(redis::Value::Int(count)) => *count,
                _ => 0,
            },
            _ => 0,
        };
        pending_total += pending;
        if shards.len() > 1 {
            let label = [("shard", shard.to_string())];
            let length = lengths[shard];
            metrics::gauge!("activity_processor_shard_stream_length", &label)
                .set(length.entries as f64);
            metrics::gauge!("activity_processor_shard_stream_events", &label)
                .set(length.events as f64);
            metrics::gauge!("activity_processor_shard_pending", &label).set(pending as f64);
        }
    }
    let total = crate::queue_length::QueueLength::sum(&lengths);
    metrics::gauge!("activity_processor_stream_length").set(total.entries as f64);
    metrics::gauge!("activity_processor_stream_events").set(total.events as f64);
    metrics::gauge!("activity_processor_pending").set(pending_total as f64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_put_off_only_while_backlogged_and_only_so_long() {
        assert!(folds_now(false, 0));
        assert!(!folds_now(true, 0));
        assert!(!folds_now(true, MAX_DEFERRED_FOLDS - 1));
        assert!(folds_now(true, MAX_DEFERRED_FOLDS));
    }
}
