//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`): the
//! writer's normalization and the cursor reader, reached without making
//! them part of the API. Not for use by anything else; may change at any
//! time.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::normalize::StorageRules;
use crate::writer::StoredEvent;
use crate::writer::columns::Columns;

/// A `next_cursor` read back, or `None` for a 400.
pub fn decode_cursor(cursor: &str) -> Option<(DateTime<Utc>, Uuid)> {
    crate::queries::decode_cursor(cursor).ok()
}

/// The `next_cursor` of a page ending at `(at, id)`.
pub fn encode_cursor(at: DateTime<Utc>, id: Uuid) -> String {
    crate::queries::encode_cursor(at, id)
}

/// One row as the writer sends it to PostgreSQL.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `id`.
    pub id: Uuid,
    /// `user_id`.
    pub user_id: Option<String>,
    /// `action`.
    pub action: String,
    /// `resource_type`.
    pub resource_type: Option<String>,
    /// `resource_id`.
    pub resource_id: Option<String>,
    /// `details`, the JSON text.
    pub details: Option<String>,
    /// `ip_address`.
    pub ip_address: Option<IpAddr>,
    /// `user_agent`.
    pub user_agent: Option<String>,
    /// `session_id`.
    pub session_id: Option<String>,
    /// `created_at`.
    pub created_at: DateTime<Utc>,
}

/// The row the writer would store for `event` written at `written_at`
/// (its arrival when it brings none), through the same normalization.
pub fn stored_row<E: StoredEvent>(event: &E, written_at: DateTime<Utc>) -> Option<Row> {
    let columns = Columns::from_batch(std::slice::from_ref(event), &StorageRules::NONE, written_at);
    let text = |column: &Option<std::borrow::Cow<'_, str>>| column.as_deref().map(str::to_owned);
    (columns.len() == 1).then(|| Row {
        id: columns.ids[0],
        user_id: text(&columns.user_ids[0]),
        action: columns.actions[0].to_string(),
        resource_type: text(&columns.resource_types[0]),
        resource_id: text(&columns.resource_ids[0]),
        details: text(&columns.details[0]),
        ip_address: columns.ip_addresses[0],
        user_agent: text(&columns.user_agents[0]),
        session_id: text(&columns.session_ids[0]),
        created_at: columns.created_ats[0],
    })
}
