//! The pieces the quick start runs in its own process: the tracker of the
//! activity layer, the processor (consumer and admin API, only when Redis
//! answers) and the example app; started in that order and stopped in
//! reverse, so that every event the app captured is flushed and stored.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Duration;

use activity_processor::admin::Secret;
use activity_processor::{Config, Processor};
use activity_store::PostgresSink;
use activity_tracker::ActivityTracker;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Options, QuickstartError, servers};
use crate::demo_app;

/// Everything [`Pipeline::start`] started, for the scenario and the report
/// to use and for [`Pipeline::stop`] to stop.
#[derive(Debug)]
pub(super) struct Pipeline {
    /// Where the events end up; with Redis down also where the figures
    /// are read from. Closed by `stop`.
    pub(super) pool: PgPool,
    /// Whether Redis answered at start-up (else there is no processor).
    pub(super) redis_up: bool,
    /// The activity layer's tracker, shared by the app; its counters say
    /// which way the events went.
    pub(super) tracker: ActivityTracker,
    /// Where the app listens.
    pub(super) app_addr: SocketAddr,
    /// Where the processor's HTTP server listens (`None`: no processor).
    pub(super) admin_addr: Option<SocketAddr>,
    /// The processor, started only when Redis answers: it consumes the
    /// stream, and it needs Redis to start at all.
    processor: Option<Processor>,
    /// The app's server; ends once `token` is cancelled.
    server: JoinHandle<io::Result<()>>,
    /// Stops the app's server and the processor.
    token: CancellationToken,
}

impl Pipeline {
    /// Starts the tracker, the processor (when `redis_up`) and the app,
    /// with the events stored through `pool`'s database.
    pub(super) async fn start(
        options: &Options,
        out: &mut (dyn Write + Send),
        pool: PgPool,
        redis_up: bool,
    ) -> Result<Self, QuickstartError> {
        let tracker = start_tracker(options).await?;
        let token = CancellationToken::new();
        let mut processor = None;
        if redis_up {
            let admin_listen = servers::free_if_taken(
                out,
                "ADMIN_LISTEN",
                &options.admin_listen,
                options.any_port_if_taken,
            )?;
            match Processor::start(processor_config(options, admin_listen), token.clone()).await {
                Ok(started) => processor = Some(started),
                Err(e) => {
                    tracker.shutdown().await;
                    return Err(e.into());
                }
            }
        }
        let (app_addr, server) = serve_app(options, out, &tracker, &token).await?;
        Ok(Pipeline {
            pool,
            redis_up,
            app_addr,
            admin_addr: processor.as_ref().map(Processor::local_addr),
            tracker,
            processor,
            server,
            token,
        })
    }

    /// Where to reach the app and the admin API, and the admin token.
    pub(super) fn print_addresses(
        &self,
        out: &mut (dyn Write + Send),
        admin_token: &str,
    ) -> io::Result<()> {
        writeln!(
            out,
            "  App         http://{} (the example app, tracked)",
            self.app_addr
        )?;
        if let Some(admin) = self.admin_addr {
            writeln!(
                out,
                "  Processor   http://{admin} (admin API, /healthz, /readyz, /metrics)"
            )?;
            writeln!(out, "  Admin token {admin_token}")?;
        }
        writeln!(out)
    }

    /// Stops the app first (no new events), then flushes the tracker, then
    /// stops the processor once it has stored what it read; says on `out`
    /// what the tracker captured and where it went.
    pub(super) async fn stop(self, out: &mut (dyn Write + Send)) -> Result<(), QuickstartError> {
        writeln!(out, "stopping...")?;
        self.token.cancel();
        let _ = self.server.await;
        let shutdown = self.tracker.shutdown().await;
        if let Some(processor) = self.processor {
            processor.wait().await?;
        }
        self.pool.close().await;
        let counters = self.tracker.counters();
        writeln!(
            out,
            "stopped: {} events captured, {} to the stream, {} straight to PostgreSQL, {} unsent",
            counters.captured, counters.sent, counters.stored_direct, shutdown.unsent
        )?;
        Ok(())
    }
}

/// The example app's tracker, sending to the stream, or straight to
/// PostgreSQL while Redis does not answer.
async fn start_tracker(options: &Options) -> Result<ActivityTracker, QuickstartError> {
    Ok(demo_app::tracker_builder()
        .redis_url(&options.redis_url)
        .stream_key(&options.stream_key)
        .fallback_sink(PostgresSink::connect_lazy(&options.database_url)?)
        .fallback_probe_interval(Duration::from_millis(500))
        .build()
        .await?)
}

/// The processor's settings: the environment's, with the quick start's
/// servers, stream, listen address and admin token.
fn processor_config(options: &Options, admin_listen: String) -> Config {
    let mut config = Config::from_env();
    config.redis_url = options.redis_url.clone();
    config.database_url = options.database_url.clone();
    config.stream_key = options.stream_key.clone();
    config.consumer_group = options.consumer_group.clone();
    // One name across runs, so reruns do not pile up consumers in the group.
    if config.consumer_name.is_none() {
        config.consumer_name = Some("quickstart".to_owned());
    }
    config.admin_listen = admin_listen;
    config.admin_tokens = Some(Secret::from(options.admin_token.as_str()));
    config.admin_jwt_secret = None;
    config
}

/// Serves the example app, tracked by `tracker`, until `token` is
/// cancelled; answers where it listens and the server's task.
async fn serve_app(
    options: &Options,
    out: &mut (dyn Write + Send),
    tracker: &ActivityTracker,
    token: &CancellationToken,
) -> Result<(SocketAddr, JoinHandle<io::Result<()>>), QuickstartError> {
    let app_listen = servers::free_if_taken(
        out,
        "APP_LISTEN",
        &options.app_listen,
        options.any_port_if_taken,
    )?;
    let listener = tokio::net::TcpListener::bind(&app_listen)
        .await
        .map_err(|source| QuickstartError::Listen {
            name: "APP_LISTEN",
            addr: app_listen.clone(),
            source,
        })?;
    let app_addr = listener.local_addr()?;
    let app = demo_app::app(tracker);
    let shutdown = token.clone().cancelled_owned();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
    });
    Ok((app_addr, server))
}
