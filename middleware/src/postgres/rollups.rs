//! Rollup maintenance: aggregate tables kept exact in the same transaction
//! as each batch insert (placeholder: the admin API work fills it in).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// One row the writer actually inserted (duplicates excluded), as the
/// rollups need it.
#[derive(Debug, Clone)]
pub struct InsertedRow {
    /// The app's user id, if any.
    pub user_id: Option<String>,
    /// The action name.
    pub action: String,
    /// When it happened.
    pub created_at: DateTime<Utc>,
}

/// Adds the rows just inserted to the rollups, inside the writer's transaction.
pub async fn apply(_tx: &mut PgConnection, _inserted: &[InsertedRow]) -> Result<(), sqlx::Error> {
    Ok(())
}

/// Removes rollup buckets older than `cutoff`, in the transaction that drops
/// the raw partitions holding them (retention).
pub async fn forget_before(_tx: &mut PgConnection, _cutoff: DateTime<Utc>) -> Result<(), sqlx::Error> {
    Ok(())
}
