//! The servers the quick start needs and the addresses it listens on.
//!
//! PostgreSQL must answer: when nothing listens at the default address and
//! PostgreSQL is installed, a private server is started for the run (the
//! test harness's [`PrivatePostgres`]); otherwise the quick start stops,
//! saying how to start it. Redis may be down: a private `redis-server` is
//! started the same way when it is installed, else the layer falls back to
//! the database. A taken listen address may be swapped for a free port.

use std::io::Write;
use std::time::Duration;

use activity_processor::RunError;
use activity_processor::config::redact;
use activity_store::schema;
use chrono::Utc;
use sqlx::{Connection, PgConnection, PgPool};

use super::{Options, QuickstartError, database};
use crate::harness::{PrivatePostgres, PrivateRedis};

/// How long a server may take to answer before it counts as not running.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// The servers started for this run; each is stopped and its directory
/// removed when this is dropped.
#[derive(Debug, Default)]
pub(super) struct PrivateServers {
    postgres: Option<PrivatePostgres>,
    redis: Option<PrivateRedis>,
}

/// Makes sure a PostgreSQL server answers at `options.database_url`: when
/// none does and [`Options::private_postgres_if_down`] allows it, starts a
/// private one and points `options` at it (said on `out`); otherwise stops
/// with a hint how to start one.
pub(super) async fn reach_postgres(
    options: &mut Options,
    private: &mut PrivateServers,
    out: &mut (dyn Write + Send),
) -> Result<(), QuickstartError> {
    if postgres_answers(&options.database_url).await {
        return Ok(());
    }
    let url = redact(&options.database_url);
    if !options.private_postgres_if_down {
        return Err(QuickstartError::PostgresDown {
            url,
            hint: postgres_hint(),
        });
    }
    match blocking(PrivatePostgres::start).await {
        Ok(server) => {
            writeln!(
                out,
                "  PostgreSQL  nothing answers at {url}: started a private server for this run \
                 at {} (stopped and removed when the quick start ends)",
                server.url()
            )?;
            options.database_url = server.url();
            private.postgres = Some(server);
            Ok(())
        }
        Err(e) => Err(QuickstartError::PostgresDown {
            url,
            hint: format!(
                "{} (starting a private server failed too: {e})",
                postgres_hint()
            ),
        }),
    }
}

/// Connects to `options.database_url`, first making the quick start's
/// fresh database there when [`Options::fresh_database`] names one (and
/// pointing `options` at it); applies the migrations and creates the
/// partitions of today and the next days, and says so on `out`.
pub(super) async fn open_database(
    options: &mut Options,
    out: &mut (dyn Write + Send),
) -> Result<PgPool, QuickstartError> {
    if let Some(name) = &options.fresh_database {
        options.database_url = database::recreate(&options.database_url, name).await?;
    }
    let url = redact(&options.database_url);
    let pool = match activity_processor::connect_database(&options.database_url).await {
        Ok(pool) => pool,
        Err(RunError::Database {
            source: sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut,
            ..
        }) => {
            return Err(QuickstartError::PostgresDown {
                url,
                hint: postgres_hint(),
            });
        }
        Err(e) => return Err(QuickstartError::Connect(e)),
    };
    schema::migrate(&pool).await?;
    schema::ensure_partitions(&pool, Utc::now(), 2).await?;
    if options.fresh_database.is_some() {
        writeln!(
            out,
            "  PostgreSQL  {url}: a database of its own, made afresh for this run; \
             migrations applied (table user_activity_logs)"
        )?;
    } else {
        writeln!(
            out,
            "  PostgreSQL  {url} (DATABASE_URL): migrations applied (table user_activity_logs); \
             the figures below are the whole database's, earlier rows included"
        )?;
    }
    Ok(pool)
}

/// Whether Redis answers at `options.redis_url`, said on `out` with what
/// follows from it: the stream the events go to, or the database fallback
/// and no processor. When it does not answer and
/// [`Options::private_redis_if_down`] allows it, starts a private
/// `redis-server` and points `options` at it. With
/// [`Options::fresh_stream`], empties the stream first.
pub(super) async fn reach_redis(
    options: &mut Options,
    private: &mut PrivateServers,
    out: &mut (dyn Write + Send),
) -> Result<bool, QuickstartError> {
    let url = redact(&options.redis_url);
    let mut up = redis_answers(&options.redis_url).await;
    let mut not_started = None;
    if !up && options.private_redis_if_down {
        match blocking(PrivateRedis::start).await {
            Ok(server) => {
                writeln!(
                    out,
                    "  Redis       nothing answers at {url}: started a private redis-server for \
                     this run at {} (stopped and removed when the quick start ends)",
                    server.url()
                )?;
                options.redis_url = server.url();
                private.redis = Some(server);
                up = true;
            }
            Err(e) => not_started = Some(e),
        }
    }
    let url = redact(&options.redis_url);
    if up {
        if options.fresh_stream {
            clear_stream(&options.redis_url, &options.stream_key).await?;
        }
        writeln!(
            out,
            "  Redis       {url}: events go to the stream {}{}",
            options.stream_key,
            if options.fresh_stream {
                " (emptied first)"
            } else {
                ""
            }
        )?;
        return Ok(true);
    }
    let why = not_started.map_or_else(String::new, |e| {
        format!(" (no private redis-server either: {e})")
    });
    writeln!(
        out,
        "  Redis       {url}: NOT REACHABLE{why}. The layer falls back to writing straight \
         into PostgreSQL (the tracker's fallback sink); the processor and its admin API need \
         Redis, so they are not started and the figures below are read from the database."
    )?;
    Ok(false)
}

/// Whether a PostgreSQL server answers at `url` within [`ANSWER_TIMEOUT`]:
/// any answer counts, a refused login or a missing database included (the
/// connection that follows says what is wrong).
async fn postgres_answers(url: &str) -> bool {
    match tokio::time::timeout(ANSWER_TIMEOUT, PgConnection::connect(url)).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            true
        }
        Ok(Err(sqlx::Error::Io(_) | sqlx::Error::Tls(_))) | Err(_) => false,
        Ok(Err(_)) => true,
    }
}

/// Whether Redis answers `PING` within [`ANSWER_TIMEOUT`].
async fn redis_answers(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let ping = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    matches!(tokio::time::timeout(ANSWER_TIMEOUT, ping).await, Ok(Ok(_)))
}

/// Deletes the stream `key` (its consumer groups with it) and its
/// dead-letter stream.
async fn clear_stream(url: &str, key: &str) -> Result<(), QuickstartError> {
    let failed = |e: redis::RedisError| QuickstartError::Redis {
        url: redact(url),
        reason: e.to_string(),
    };
    let client = redis::Client::open(url).map_err(failed)?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(failed)?;
    redis::cmd("DEL")
        .arg(key)
        .arg(format!("{key}:dead"))
        .query_async::<()>(&mut conn)
        .await
        .map_err(failed)
}

/// Runs a blocking start-up (a private server's) off the async threads.
async fn blocking<T: Send + 'static>(
    start: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(start)
        .await
        .map_err(std::io::Error::other)?
}

/// `addr`, or `127.0.0.1:0` (a free port, said on `out`) when `addr` is
/// taken and `any_port` allows it.
pub(super) fn free_if_taken(
    out: &mut (dyn Write + Send),
    name: &'static str,
    addr: &str,
    any_port: bool,
) -> Result<String, QuickstartError> {
    match std::net::TcpListener::bind(addr) {
        Ok(listener) => {
            drop(listener);
            Ok(addr.to_owned())
        }
        Err(source) if any_port && source.kind() == std::io::ErrorKind::AddrInUse => {
            writeln!(
                out,
                "  note: {name} {addr} is in use (another app or processor?); using a free port \
                 instead (set {name} to choose one)"
            )?;
            Ok("127.0.0.1:0".to_owned())
        }
        Err(source) => Err(QuickstartError::Listen {
            name,
            addr: addr.to_owned(),
            source,
        }),
    }
}

/// How to start PostgreSQL on this machine: the Debian cluster command
/// when there is a cluster, a generic hint otherwise.
fn postgres_hint() -> String {
    let cluster = std::fs::read_dir("/etc/postgresql").ok().and_then(|dir| {
        dir.filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().into_string().ok())
            .max()
    });
    match cluster {
        Some(version) => {
            format!("start it with `pg_ctlcluster {version} main start` (or set DATABASE_URL)")
        }
        None => "start PostgreSQL (e.g. `sudo systemctl start postgresql`) or set DATABASE_URL"
            .to_owned(),
    }
}
