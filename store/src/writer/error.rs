//! Why a batch write failed, and what the caller can do about it: retry
//! the batch later ([`WriteError::is_transient`]), isolate the rows the
//! database refuses ([`WriteError::is_data_error`]), or neither (a setup
//! problem for an operator).

use std::borrow::Cow;

/// Why a batch write failed. The rows and their rollups are written by
/// the same statements, so either failure is the database's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The database answered with an error or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl WriteError {
    pub(crate) fn sqlx(&self) -> &sqlx::Error {
        match self {
            WriteError::Database(error) => error,
        }
    }

    /// The SQLSTATE code, when the database answered with an error.
    pub fn sqlstate(&self) -> Option<Cow<'_, str>> {
        match self.sqlx() {
            sqlx::Error::Database(error) => error.code(),
            _ => None,
        }
    }

    /// Whether the same batch can succeed later: the database was
    /// unreachable, restarting, overloaded, or the transaction lost a race
    /// (connection errors, pool timeout, SQLSTATE classes 08, 53, 57P0x,
    /// 40001, 40P01, 55P03, 57014). Retry the whole batch with backoff; the
    /// write is idempotent.
    pub fn is_transient(&self) -> bool {
        match self.sqlx() {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => true,
            sqlx::Error::Database(error) => {
                error.code().is_some_and(|code| is_transient_code(&code))
            }
            _ => false,
        }
    }

    /// Whether the database refused the data of some row (SQLSTATE class 22
    /// data exception or 23 integrity violation, or a value the driver could
    /// not encode): retrying cannot help, but the other rows of the batch
    /// can be stored. [`write_batch_isolating`] handles it.
    ///
    /// An error that is neither this nor [transient](Self::is_transient)
    /// (a missing table, a permission denied) is a setup problem: no batch
    /// can succeed until an operator fixes it.
    pub fn is_data_error(&self) -> bool {
        match self.sqlx() {
            sqlx::Error::Encode(_) => true,
            sqlx::Error::Database(error) => error
                .code()
                .is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
            _ => false,
        }
    }
}

pub(crate) fn is_transient_code(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources: disk full, out of memory, too many connections
        || matches!(
            code,
            "40001" // serialization failure
                | "40P01" // deadlock detected
                | "55P03" // lock not available
                | "57014" // query canceled (statement timeout)
                | "57P01" // admin shutdown
                | "57P02" // crash shutdown
                | "57P03" // cannot connect now (starting up)
                | "58030" // I/O error
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_codes() {
        for code in [
            "08006", "08001", "40001", "40P01", "53300", "53100", "57P01", "57P03", "55P03",
        ] {
            assert!(is_transient_code(code), "{code}");
        }
        for code in ["22001", "22021", "23505", "42P01", "42501", "XX000"] {
            assert!(!is_transient_code(code), "{code}");
        }
    }
}
