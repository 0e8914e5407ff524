//! The idempotent batch writer into `user_activity_logs`, shared by the
//! processor and the layer's Redis-down fallback.
//!
//! [`write_batch`] stores a batch in one transaction: it normalizes each
//! event ([`normalize`](crate::normalize): the contract's truncations), drops ids
//! repeated within the batch, inserts idempotently on the primary key
//! `(id, created_at)`, updates the rollups with the rows actually inserted,
//! and commits. Writing the same events again (a redelivery) stores nothing
//! new and says so in [`WriteOutcome::duplicates`]. A small batch is one
//! statement, `INSERT ... SELECT FROM UNNEST(...)` with the rollup updates
//! attached; a larger one goes in with `COPY`; either, if it holds an event
//! already stored, is rolled back and written again with `INSERT ... ON
//! CONFLICT DO NOTHING` (see [`InsertMethod`]). The rollups get the sums of
//! the rows inserted, computed by [`rollups`](crate::rollups)' one
//! definition.
//!
//! The writers take any [`StoredEvent`]: an [`Activity`], or an event that brings
//! its `details` as JSON text already (the processor keeps them as they
//! arrived on the wire), which is then stored without being parsed.
//!
//! [`write_batch_isolating`] is what a consumer calls: when the database
//! rejects the batch because of the data of some rows (a date outside
//! PostgreSQL's range; NULs and numbers beyond `f64` never get there, the
//! normalization fixes them first), it splits the batch until those
//! rows are isolated, stores all the others and hands back the rejected ones
//! with the database's message, to be dead-lettered. Any other failure is an
//! `Err`; [`WriteError::is_transient`] tells whether retrying the whole batch
//! later can succeed (it is idempotent, so retrying is always safe).
//!
//! ```no_run
//! # async fn example(pool: sqlx::PgPool) -> Result<(), activity_store::writer::WriteError> {
//! use activity_store::writer::write_batch_isolating;
//! use activity_tracker::{Activity, ActivityType};
//!
//! let batch = vec![
//!     Activity::new(ActivityType::Login).user_id("user-1"),
//!     Activity::new(ActivityType::CaseView).user_id("user-1").resource("case", "case-9"),
//! ];
//! let outcome = write_batch_isolating(&pool, &batch).await?;
//! assert_eq!(outcome.written.inserted + outcome.written.duplicates, 2);
//! for rejected in &outcome.rejected {
//!     eprintln!("event {} refused: {}", rejected.activity.id, rejected.message);
//! }
//! # Ok(())
//! # }
//! ```

pub(crate) mod columns;
mod copy_text;
mod error;
mod insert;

use std::borrow::Cow;
use std::ops::Range;

use activity_tracker::Activity;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::normalize::StorageRules;
use columns::Columns;
pub use error::WriteError;

/// What a batch write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteOutcome {
    /// Rows newly stored.
    pub inserted: u64,
    /// Events already in the table (redelivery) or repeated within the
    /// batch, skipped.
    pub duplicates: u64,
    /// Events of users erased by deletion, not stored
    /// ([`StorageRules`]' erasure list).
    pub erased: u64,
    /// Events whose NUL characters (or lone surrogate escapes in
    /// `details`) were replaced ([`normalize`](crate::normalize)); a
    /// redelivered event counts again.
    pub nul_replaced: u64,
    /// Events whose `details` held numbers beyond `f64`, stored as strings.
    pub numbers_as_text: u64,
    /// Events dated more than a day after their arrival, clamped to it.
    pub clamped: u64,
}

impl WriteOutcome {
    fn add(&mut self, other: WriteOutcome) {
        self.inserted += other.inserted;
        self.duplicates += other.duplicates;
        self.erased += other.erased;
        self.nul_replaced += other.nul_replaced;
        self.numbers_as_text += other.numbers_as_text;
        self.clamped += other.clamped;
    }
}

/// What [`write_batch_isolating`] did: the rows stored, and the rows the
/// database refused for their data.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct IsolatedOutcome {
    /// Rows stored and duplicates skipped, over all the good rows.
    pub written: WriteOutcome,
    /// Rows the database refused, in batch order; none of them is stored.
    pub rejected: Vec<RejectedRow>,
}

/// One event the database refused to store, with its reason.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RejectedRow {
    /// Its position in the batch given to [`write_batch_isolating`].
    pub index: usize,
    /// The event as given (before normalization).
    pub activity: Activity,
    /// The SQLSTATE the database answered (`"22021"`, `"22001"`, ...), when
    /// it came from the database.
    pub code: Option<String>,
    /// The database's error message, for the dead-letter entry's `reason`.
    pub message: String,
}

/// What the writer stores of one event. An [`Activity`] is one; so is a
/// reader's decoded entry that keeps `details` as the JSON text it arrived
/// in, which the writer then sends as it is instead of building a
/// `serde_json::Map` only to serialize it again.
pub trait StoredEvent {
    /// The event. Its `details` are read only through
    /// [`StoredEvent::details_json`].
    fn activity(&self) -> &Activity;

    /// The event's `details` as the text of a JSON object; by default
    /// [`Activity::details`] serialized.
    fn details_json(&self) -> Option<Cow<'_, str>> {
        self.activity()
            .details
            .as_ref()
            .map(|details| Cow::Owned(columns::details_json(details)))
    }

    /// When the event arrived where it was read from, the same on every
    /// redelivery (a stream entry id's time, a spool record's write time):
    /// what a `created_at` too far ahead is clamped to
    /// ([`normalize`](crate::normalize)). `None` (the default): the time
    /// the writer writes its batch, right for a path that never delivers
    /// an event twice, such as the layer's fallback sink.
    fn arrived_at(&self) -> Option<DateTime<Utc>> {
        None
    }
}

impl StoredEvent for Activity {
    fn activity(&self) -> &Activity {
        self
    }
}

/// The event as an owned [`Activity`], its `details` read back from
/// [`StoredEvent::details_json`] where the activity has none.
pub(crate) fn owned_activity<E: StoredEvent>(event: &E) -> Activity {
    let mut activity = event.activity().clone();
    if activity.details.is_none() {
        activity.details = event
            .details_json()
            .and_then(|json| serde_json::from_str(&json).ok());
    }
    activity
}

/// How [`write_batch_with`] sends the rows.
///
/// All store the same rows with the same guarantees (idempotent, all or
/// nothing per batch); they differ only in speed. [`InsertMethod::Auto`]
/// is the default, chosen by measurement (`bench/writer_vs_copy.sh`,
/// docs/benchmarks.md): one statement for a small batch, the server's bulk
/// insert path (`COPY`) for a large one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum InsertMethod {
    /// One `INSERT ... SELECT ... FROM UNNEST($1::uuid[], ...) ON CONFLICT DO
    /// NOTHING`, the columns bound as arrays.
    Unnest,
    /// `COPY` into a session-local temporary table, then one `INSERT ...
    /// SELECT ... ON CONFLICT DO NOTHING` from it.
    CopyTempTable,
    /// `COPY` straight into `user_activity_logs`, the server's bulk insert.
    /// A batch holding an event already stored (a redelivery, refused by
    /// the primary key) is rolled back and written again with
    /// [`InsertMethod::Unnest`], so the outcome is the same; redeliveries
    /// are rare, so nearly every batch takes the fast path.
    CopyOptimistic,
    /// One statement and no explicit transaction: the `UNNEST` insert and
    /// the rollup updates as data-modifying parts of a single `WITH`
    /// query, which the database runs atomically. One round trip instead of
    /// the four of a `COPY` transaction (`BEGIN`, `COPY`, the rollups,
    /// `COMMIT`), which is what a small batch costs; and no
    /// `COPY`, whose end waits for the server's delayed TCP acknowledgement
    /// (about 40 ms) when the rows fit in one segment (the client does not
    /// set `TCP_NODELAY`). Like [`InsertMethod::CopyOptimistic`], a batch
    /// holding an event already stored fails it and is written again with
    /// [`InsertMethod::Unnest`].
    OneStatement,
    /// [`InsertMethod::OneStatement`] for batches of up to
    /// [`ONE_STATEMENT_MAX_ROWS`] events, [`InsertMethod::CopyOptimistic`]
    /// for larger ones.
    #[default]
    Auto,
}

/// The largest batch [`InsertMethod::Auto`] writes as one statement: up to
/// about this size one statement is faster than a `COPY` transaction,
/// chosen by measurement (`bench/writer_vs_copy.sh`; the figures are in
/// docs/benchmarks.md).
pub const ONE_STATEMENT_MAX_ROWS: usize = 256;

/// Stores `batch` atomically (one transaction or one statement); events
/// already stored are skipped.
///
/// Normalizes each event first ([`normalize`](crate::normalize)), skips ids repeated
/// in the batch, and updates the rollups with the rows actually inserted in
/// the same transaction. All or nothing: on `Err` nothing of the batch is
/// stored. A batch with a row the database refuses fails whole; use
/// [`write_batch_isolating`] to store the others.
pub async fn write_batch<E: StoredEvent>(
    pool: &PgPool,
    batch: &[E],
) -> Result<WriteOutcome, WriteError> {
    write_batch_with(pool, batch, InsertMethod::default()).await
}

/// [`write_batch`] applying the deployment's [`StorageRules`] (IP
/// truncation, the erasure list) besides the wire format's limits.
pub async fn write_batch_with_rules<E: StoredEvent>(
    pool: &PgPool,
    batch: &[E],
    rules: &StorageRules,
) -> Result<WriteOutcome, WriteError> {
    write(
        pool,
        batch,
        InsertMethod::default(),
        true,
        rules,
        Utc::now(),
    )
    .await
}

/// [`write_batch`] with an explicit [`InsertMethod`] (for benchmarks).
pub async fn write_batch_with<E: StoredEvent>(
    pool: &PgPool,
    batch: &[E],
    method: InsertMethod,
) -> Result<WriteOutcome, WriteError> {
    write(pool, batch, method, true, &StorageRules::NONE, Utc::now()).await
}

/// [`write_batch_with`] without updating the rollups, which it leaves
/// stale: only for measuring what the rollups cost (`bench/`).
#[doc(hidden)]
pub async fn write_batch_without_rollups<E: StoredEvent>(
    pool: &PgPool,
    batch: &[E],
    method: InsertMethod,
) -> Result<WriteOutcome, WriteError> {
    write(pool, batch, method, false, &StorageRules::NONE, Utc::now()).await
}

async fn write<E: StoredEvent>(
    pool: &PgPool,
    batch: &[E],
    method: InsertMethod,
    with_rollups: bool,
    rules: &StorageRules,
    written_at: DateTime<Utc>,
) -> Result<WriteOutcome, WriteError> {
    let rows = Columns::from_batch(batch, rules, written_at);
    let normalized = WriteOutcome {
        nul_replaced: rows.normalized.nul,
        numbers_as_text: rows.normalized.numbers,
        clamped: rows.normalized.clamped,
        ..WriteOutcome::default()
    };
    if rows.len() == 0 {
        return Ok(WriteOutcome {
            erased: rows.erased,
            duplicates: batch.len() as u64 - rows.erased,
            ..normalized
        });
    }
    let method = match method {
        InsertMethod::Auto if rows.len() <= ONE_STATEMENT_MAX_ROWS => InsertMethod::OneStatement,
        InsertMethod::Auto => InsertMethod::CopyOptimistic,
        chosen => chosen,
    };
    let inserted = match method {
        InsertMethod::OneStatement => {
            match insert::one_statement(pool, &rows, with_rollups).await {
                Err(error) if is_unique_violation(&error) => {
                    write_rows(pool, &rows, Path::Unnest, with_rollups).await?
                }
                other => other?,
            }
        }
        InsertMethod::Auto | InsertMethod::CopyOptimistic => {
            match write_rows(pool, &rows, Path::Copy, with_rollups).await {
                Err(WriteError::Database(error)) if is_unique_violation(&error) => {
                    write_rows(pool, &rows, Path::Unnest, with_rollups).await?
                }
                other => other?,
            }
        }
        InsertMethod::Unnest => write_rows(pool, &rows, Path::Unnest, with_rollups).await?,
        InsertMethod::CopyTempTable => {
            write_rows(pool, &rows, Path::CopyTempTable, with_rollups).await?
        }
    };
    Ok(WriteOutcome {
        inserted,
        duplicates: batch.len() as u64 - inserted - rows.erased,
        erased: rows.erased,
        ..normalized
    })
}

/// How one transaction inserts the rows.
#[derive(Debug, Clone, Copy)]
enum Path {
    Unnest,
    CopyTempTable,
    /// Not idempotent by itself: fails with a unique violation on a row
    /// already stored.
    Copy,
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

/// Inserts `rows` and updates the rollups in one transaction; returns how
/// many rows were inserted.
async fn write_rows(
    pool: &PgPool,
    rows: &Columns<'_>,
    path: Path,
    with_rollups: bool,
) -> Result<u64, WriteError> {
    let mut tx = pool.begin().await?;
    let inserted = match path {
        Path::Unnest => insert::unnest(&mut tx, rows, with_rollups).await?,
        Path::CopyTempTable => insert::copy_temp_table(&mut tx, rows, with_rollups).await?,
        Path::Copy => insert::copy(&mut tx, rows, with_rollups).await?,
    };
    tx.commit().await?;
    Ok(inserted)
}

/// Stores `batch` like [`write_batch`], isolating the rows the database
/// refuses for their data: the batch is split in halves, recursively, until
/// each refused row stands alone; every other row is stored. Returns the
/// refused rows with the database's message for the caller to dead-letter.
///
/// Returns `Err` for any failure that is not about a row's data (see
/// [`WriteError::is_transient`]); some halves may be committed by then,
/// which is harmless: retrying the whole batch stores the rest and counts
/// the others as duplicates.
pub async fn write_batch_isolating<E: StoredEvent>(
    pool: &PgPool,
    batch: &[E],
) -> Result<IsolatedOutcome, WriteError> {
    write_batch_isolating_with_rules(pool, batch, &StorageRules::NONE).await
}

/// [`write_batch_isolating`] applying the deployment's [`StorageRules`]
/// (what the processor's consumer calls).
pub async fn write_batch_isolating_with_rules<E: StoredEvent>(
    pool: &PgPool,
    batch: &[E],
    rules: &StorageRules,
) -> Result<IsolatedOutcome, WriteError> {
    isolating(pool, batch, InsertMethod::default(), rules).await
}

async fn isolating<E: StoredEvent>(
    pool: &PgPool,
    batch: &[E],
    method: InsertMethod,
    rules: &StorageRules,
) -> Result<IsolatedOutcome, WriteError> {
    let mut outcome = IsolatedOutcome::default();
    // One write time for every half, so that a split batch clamps alike.
    let written_at = Utc::now();
    // Ranges still to write, the next one last: batch order is kept, so
    // the table sees rows in roughly the order they happened.
    let mut pending: Vec<Range<usize>> = Vec::new();
    pending.push(0..batch.len());
    while let Some(range) = pending.pop() {
        if range.is_empty() {
            continue;
        }
        match write(pool, &batch[range.clone()], method, true, rules, written_at).await {
            Ok(written) => outcome.written.add(written),
            Err(error) if error.is_data_error() => {
                if range.len() == 1 {
                    let event = &batch[range.start];
                    tracing::debug!(id = %event.activity().id, %error, "row refused by the database");
                    outcome.rejected.push(RejectedRow {
                        index: range.start,
                        activity: owned_activity(event),
                        code: error.sqlstate().map(Cow::into_owned),
                        message: match error.sqlx() {
                            sqlx::Error::Database(db) => db.message().to_owned(),
                            other => other.to_string(),
                        },
                    });
                } else {
                    let middle = range.start + range.len() / 2;
                    pending.push(middle..range.end);
                    pending.push(range.start..middle);
                }
            }
            Err(error) => return Err(error),
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests;
