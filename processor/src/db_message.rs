//! Database errors as one line for a person: PostgreSQL's message and
//! SQLSTATE (without the line of PostgreSQL's own source that sqlx's
//! `Display` appends), and what to do about a failed connection, chosen by
//! what failed rather than always "is PostgreSQL running".
//!
//! ```
//! use activity_processor::db_message;
//!
//! let refused = sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into());
//! assert!(db_message::connect_hint(&refused).contains("PostgreSQL running"));
//! assert!(!db_message::describe(&refused).contains('\n'));
//! ```

use activity_store::schema::SchemaError;
use sqlx::migrate::MigrateError;
use sqlx::postgres::PgDatabaseError;

/// `error` in one line: for an error PostgreSQL returned, its message and
/// SQLSTATE; otherwise sqlx's text with line breaks folded.
pub fn describe(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => match db.try_downcast_ref::<PgDatabaseError>() {
            Some(pg) => format!("{} (SQLSTATE {})", pg.message(), pg.code()),
            None => db.message().to_owned(),
        },
        sqlx::Error::Migrate(migrate) => describe_migrate(migrate),
        other => one_line(&other.to_string()),
    }
}

/// A failed migration in one line (see [`describe`]).
pub fn describe_migrate(error: &MigrateError) -> String {
    match error {
        MigrateError::Execute(e) => format!("while executing migrations: {}", describe(e)),
        MigrateError::ExecuteMigration(e, version) => {
            format!("while executing migration {version}: {}", describe(e))
        }
        other => one_line(&other.to_string()),
    }
}

/// A failed schema operation (migrations, partitions) in one line (see
/// [`describe`]).
pub fn describe_schema(error: &SchemaError) -> String {
    match error {
        SchemaError::Migrate(e) => {
            format!(
                "applying the database migrations failed: {}",
                describe_migrate(e)
            )
        }
        SchemaError::Database(e) => {
            format!(
                "database error while maintaining partitions: {}",
                describe(e)
            )
        }
        other => one_line(&other.to_string()),
    }
}

/// What to do when connecting to `DATABASE_URL` failed with `error`.
pub fn connect_hint(error: &sqlx::Error) -> &'static str {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => {
            "is PostgreSQL running at that address, and the host and port right?"
        }
        sqlx::Error::Tls(_) => "check the TLS settings (sslmode) in DATABASE_URL",
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // invalid_catalog_name
            Some("3D000") => {
                "create that database (e.g. `createdb <name>`) or name an existing one in DATABASE_URL"
            }
            // invalid_authorization_specification: no such role, or pg_hba.conf refuses it
            Some("28000") => {
                "check the user in DATABASE_URL (and that pg_hba.conf lets it connect)"
            }
            // invalid_password
            Some("28P01") => "check the user and password in DATABASE_URL",
            // too_many_connections
            Some("53300") => {
                "the server has no free connection slots; retry or raise max_connections"
            }
            _ => "check DATABASE_URL",
        },
        _ => "check DATABASE_URL",
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_ask_whether_the_server_runs_and_stay_one_line() {
        let error = sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused\nby the peer",
        ));
        assert_eq!(
            describe(&error),
            "error communicating with database: refused by the peer"
        );
        assert!(connect_hint(&error).contains("is PostgreSQL running"));
    }
}
