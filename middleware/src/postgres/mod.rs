//! The idempotent batch writer into `user_activity_logs` (placeholder
//! signatures; the processor's writer work fills them in).

use sqlx::PgPool;

pub mod rollups;

use crate::Activity;

/// What a batch write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteOutcome {
    /// Rows newly stored.
    pub inserted: u64,
    /// Events already in the table (redelivery), skipped.
    pub duplicates: u64,
}

/// Why a batch write failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The database answered with an error or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Stores `batch` in one transaction; events already stored are skipped.
pub async fn write_batch(_pool: &PgPool, batch: &[Activity]) -> Result<WriteOutcome, WriteError> {
    Ok(WriteOutcome {
        inserted: batch.len() as u64,
        duplicates: 0,
    })
}
