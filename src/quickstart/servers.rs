//! The servers the quick start needs and the addresses it listens on:
//! PostgreSQL must answer (or the quick start stops, saying how to start
//! it), Redis may be down (the layer then falls back to the database), and
//! a taken listen address may be swapped for a free port.

use std::io::Write;
use std::time::Duration;

use activity_processor::config::redact;
use activity_store::schema;
use chrono::Utc;
use sqlx::PgPool;

use super::{Options, QuickstartError};

/// Connects to PostgreSQL, applies the migrations and creates the
/// partitions of today and the next days, and says so on `out`.
///
/// PostgreSQL comes first: without it nothing can be stored, so an
/// unreachable server stops the quick start with a hint how to start it.
pub(super) async fn open_database(
    options: &Options,
    out: &mut (dyn Write + Send),
) -> Result<PgPool, QuickstartError> {
    let url = redact(&options.database_url);
    let pool = match activity_processor::connect_database(&options.database_url).await {
        Ok(pool) => pool,
        Err(_) => {
            return Err(QuickstartError::PostgresDown {
                url,
                hint: postgres_hint(),
            });
        }
    };
    schema::migrate(&pool).await?;
    schema::ensure_partitions(&pool, Utc::now(), 2).await?;
    writeln!(
        out,
        "  PostgreSQL  {url}: migrations applied (table user_activity_logs)"
    )?;
    Ok(pool)
}

/// Whether Redis answers, said on `out` with what follows from it: the
/// stream the events go to, or the database fallback and no processor.
pub(super) async fn check_redis(
    options: &Options,
    out: &mut (dyn Write + Send),
) -> Result<bool, QuickstartError> {
    let redis_up = redis_answers(&options.redis_url).await;
    if redis_up {
        writeln!(
            out,
            "  Redis       {}: events go to the stream {}",
            redact(&options.redis_url),
            options.stream_key
        )?;
    } else {
        writeln!(
            out,
            "  Redis       {}: NOT REACHABLE. The layer falls back to writing straight into \
             PostgreSQL (the tracker's fallback sink); the processor and its admin API need \
             Redis, so they are not started and the figures below are read from the database.",
            redact(&options.redis_url)
        )?;
    }
    Ok(redis_up)
}

/// Whether Redis answers `PING` within 2 s.
async fn redis_answers(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let ping = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), ping).await,
        Ok(Ok(_))
    )
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
