//! Everything held about one user, all time, oldest first, page by page
//! (a keyset cursor on `(created_at, id)`): memory stays one page however
//! many rows the user has, and no connection or snapshot is held between
//! pages.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::normalize::stored_user_id;

/// Rows read per page.
const PAGE_ROWS: i64 = 1_000;

/// Every column of the rows of the user `$1`.
macro_rules! export_select {
    () => {
        "SELECT id, user_id, action::text AS action, resource_type::text AS resource_type,
                resource_id::text AS resource_id, details,
                host(ip_address) AS ip_address, user_agent::text AS user_agent,
                session_id::text AS session_id, created_at
         FROM user_activity_logs WHERE user_id = $1"
    };
}

/// One stored row, every column.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct ExportRow {
    /// The activity id.
    pub id: Uuid,
    /// The user id as stored.
    pub user_id: Option<String>,
    /// The action.
    pub action: String,
    /// Kind of the resource acted on.
    pub resource_type: Option<String>,
    /// Id of the resource acted on.
    pub resource_id: Option<String>,
    /// The details (a JSON object).
    pub details: Option<serde_json::Value>,
    /// The client address.
    pub ip_address: Option<String>,
    /// The client's user agent.
    pub user_agent: Option<String>,
    /// The session id.
    pub session_id: Option<String>,
    /// When it happened.
    pub created_at: DateTime<Utc>,
}

impl ExportRow {
    /// The column names, in the order of [`ExportRow::fields`].
    pub const COLUMNS: [&'static str; 10] = [
        "id",
        "user_id",
        "action",
        "resource_type",
        "resource_id",
        "details",
        "ip_address",
        "user_agent",
        "session_id",
        "created_at",
    ];

    /// The columns as text (`None` for null; `details` as JSON text,
    /// `created_at` in RFC 3339), for a CSV line.
    pub fn fields(&self) -> [Option<String>; 10] {
        [
            Some(self.id.to_string()),
            self.user_id.clone(),
            Some(self.action.clone()),
            self.resource_type.clone(),
            self.resource_id.clone(),
            self.details.as_ref().map(|d| d.to_string()),
            self.ip_address.clone(),
            self.user_agent.clone(),
            self.session_id.clone(),
            Some(
                self.created_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            ),
        ]
    }
}

/// The rows of one user, oldest first, one page at a time.
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), sqlx::Error> {
/// use activity_store::privacy::ExportCursor;
///
/// let mut cursor = ExportCursor::new(pool, "user-42");
/// while let Some(page) = cursor.next_page().await? {
///     for row in page {
///         println!("{}", serde_json::to_string(&row).unwrap());
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ExportCursor {
    pool: PgPool,
    user_id: String,
    after: Option<(DateTime<Utc>, Uuid)>,
    done: bool,
}

impl ExportCursor {
    /// A cursor over the rows of `user_id`, looked up as the writer stores
    /// it (truncated to the column's length).
    pub fn new(pool: PgPool, user_id: &str) -> Self {
        Self {
            pool,
            user_id: stored_user_id(user_id).into_owned(),
            after: None,
            done: false,
        }
    }

    /// The next page (never empty), or `None` after the last row.
    pub async fn next_page(&mut self) -> Result<Option<Vec<ExportRow>>, sqlx::Error> {
        if self.done {
            return Ok(None);
        }
        // The first page, then each from the last row read: two statements,
        // so that each is planned as an index range on (user_id, created_at)
        // rather than a scan from the user's first row.
        let rows: Vec<ExportRow> = match self.after {
            None => {
                sqlx::query_as(concat!(
                    export_select!(),
                    " ORDER BY created_at, id LIMIT $2"
                ))
                .bind(&self.user_id)
                .bind(PAGE_ROWS)
                .fetch_all(&self.pool)
                .await?
            }
            Some((at, id)) => {
                sqlx::query_as(concat!(
                    export_select!(),
                    " AND created_at >= $2 AND (created_at, id) > ($2, $3)
                  ORDER BY created_at, id LIMIT $4"
                ))
                .bind(&self.user_id)
                .bind(at)
                .bind(id)
                .bind(PAGE_ROWS)
                .fetch_all(&self.pool)
                .await?
            }
        };
        self.done = rows.len() < PAGE_ROWS as usize;
        match rows.last() {
            None => Ok(None),
            Some(last) => {
                self.after = Some((last.created_at, last.id));
                Ok(Some(rows))
            }
        }
    }
}
