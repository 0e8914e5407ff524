//! The quick start's own database: dropped and created again at each run,
//! so that the figures it prints are those of the run that printed them.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

use super::QuickstartError;

/// `url` with its database name replaced by `name` (query parameters kept).
pub(super) fn with_database(url: &str, name: &str) -> String {
    let (without_query, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let authority_at = without_query.find("://").map_or(0, |i| i + 3);
    let base = match without_query[authority_at..].find('/') {
        Some(slash) => &without_query[..authority_at + slash],
        None => without_query,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// Drops database `name` on the server of `server_url` (connections to it
/// are cut) and creates it again, empty; answers its URL.
pub(super) async fn recreate(server_url: &str, name: &str) -> Result<String, QuickstartError> {
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    // Dropping a database takes a second or more: no slow-statement warning.
    let mut conn = PgConnectOptions::from_str(server_url)?
        .disable_statement_logging()
        .connect()
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}")))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(with_database(server_url, name))
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_name_is_replaced_and_the_rest_kept() {
        for (url, expected) in [
            (
                "postgres://postgres@127.0.0.1:5432/postgres",
                "postgres://postgres@127.0.0.1:5432/qs",
            ),
            (
                "postgres://u:p@db.example:5433/app?sslmode=require",
                "postgres://u:p@db.example:5433/qs?sslmode=require",
            ),
            ("postgres://localhost", "postgres://localhost/qs"),
            (
                "postgresql://localhost/?x=1",
                "postgresql://localhost/qs?x=1",
            ),
        ] {
            assert_eq!(with_database(url, "qs"), expected, "{url}");
        }
    }
}
