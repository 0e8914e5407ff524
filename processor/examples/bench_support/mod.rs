//! Helpers shared by the processor's benchmark programs (`bench_writer`,
//! `bench_processor`, `bench_admin`): scratch databases with the schema,
//! the `psql \copy` CSV of a set of events, row counts.
//!
//! Included with `#[path = "bench_support/mod.rs"] mod bench_support;`; each
//! program uses only part of it.
#![allow(dead_code)]

pub(crate) mod processes;

use std::io::{BufWriter, Write};
use std::path::Path;

use activity_store::schema;
use activity_tracker::Activity;
use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};

/// One CSV field as `psql \copy ... CSV` reads it: empty for NULL, quoted
/// when it holds a separator, a quote, a line break, or is the empty string.
pub(crate) fn csv_field(out: &mut impl Write, value: Option<&str>) -> std::io::Result<()> {
    match value {
        None => Ok(()),
        Some(text) => {
            if text.is_empty() || text.contains([',', '"', '\n', '\r']) {
                write!(out, "\"{}\"", text.replace('"', "\"\""))
            } else {
                out.write_all(text.as_bytes())
            }
        }
    }
}

/// The events as the CSV `psql \copy` loads, normalized as the writer
/// stores them.
pub(crate) fn write_csv(path: &Path, events: &[Activity]) -> anyhow::Result<()> {
    let mut out = BufWriter::new(std::fs::File::create(path)?);
    for event in events {
        let mut normalized = event.clone();
        normalized.normalize();
        let id = normalized.id.to_string();
        let details = normalized
            .details
            .map(|details| serde_json::Value::Object(details).to_string());
        let ip = normalized.ip_address.map(|ip| ip.to_string());
        let created_at = normalized
            .created_at
            .to_rfc3339_opts(SecondsFormat::Micros, true);
        let fields = [
            Some(id.as_str()),
            normalized.user_id.as_deref(),
            Some(normalized.action.as_str()),
            normalized.resource_type.as_deref(),
            normalized.resource_id.as_deref(),
            details.as_deref(),
            ip.as_deref(),
            normalized.user_agent.as_deref(),
            normalized.session_id.as_deref(),
            Some(created_at.as_str()),
        ];
        for (i, field) in fields.into_iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            csv_field(&mut out, field)?;
        }
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// The server's URL with another database name.
pub(crate) fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let (base, _) = url
        .rsplit_once('/')
        .context("DATABASE_URL has no database part")?;
    Ok(format!("{base}/{name}"))
}

/// An empty scratch database `name` on `url`'s server, with the processor's
/// schema and the monthly partitions from `first` on; returns its URL.
pub(crate) async fn scratch(
    admin: &mut PgConnection,
    url: &str,
    name: &str,
    first: DateTime<Utc>,
) -> anyhow::Result<String> {
    drop_database(admin, name).await?;
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut *admin)
        .await?;
    let url = with_database(url, name)?;
    let pool = PgPool::connect(&url).await?;
    schema::migrate(&pool).await?;
    schema::ensure_partitions(&pool, first, 2).await?;
    pool.close().await;
    Ok(url)
}

/// Drops a scratch database, closing its connections.
pub(crate) async fn drop_database(admin: &mut PgConnection, name: &str) -> anyhow::Result<()> {
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut *admin)
    .await?;
    Ok(())
}

/// Rows in `user_activity_logs` of the database at `url`.
pub(crate) async fn count(url: &str) -> anyhow::Result<i64> {
    let mut conn = PgConnection::connect(url).await?;
    let n = sqlx::query_scalar("SELECT count(*) FROM user_activity_logs")
        .fetch_one(&mut conn)
        .await?;
    Ok(n)
}
