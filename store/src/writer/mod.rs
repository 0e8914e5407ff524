//! The idempotent batch writer into `user_activity_logs`, shared by the
//! processor and the layer's Redis-down fallback.
//!
//! [`write_batch`] stores a batch in one transaction: it normalizes each
//! event ([`normalize`](crate::normalize): the contract's truncations), drops ids
//! repeated within the batch, inserts idempotently on the primary key
//! `(id, created_at)`, updates the rollups with the rows actually inserted,
//! and commits. Writing the same events again (a redelivery) stores nothing
//! new and says so in [`WriteOutcome::duplicates`]. A small batch is one
//! statement, `INSERT ... SELECT FROM UNNEST(...) ON CONFLICT DO NOTHING`
//! with the rollup updates attached; a larger one goes in with `COPY`, and
//! if it holds an event already stored it is rolled back and written again
//! with the `INSERT` (see [`InsertMethod`]).
//!
//! The writers take any [`StoredEvent`]: an [`Activity`], or an event that brings
//! its `details` as JSON text already (the processor keeps them as they
//! arrived on the wire), which is then stored without being parsed.
//!
//! [`write_batch_isolating`] is what a consumer calls: when the database
//! rejects the batch because of the data of some rows (a string too long for
//! its column, a `\u0000` in text or JSON), it splits the batch until those
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

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::IpAddr;
use std::ops::Range;

use chrono::{DateTime, SecondsFormat, Utc};
use foldhash::fast::RandomState;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use activity_tracker::Activity;

use crate::normalize;
use crate::rollups::{self, InsertedRow};

/// What a batch write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteOutcome {
    /// Rows newly stored.
    pub inserted: u64,
    /// Events already in the table (redelivery) or repeated within the
    /// batch, skipped.
    pub duplicates: u64,
}

impl WriteOutcome {
    fn add(&mut self, other: WriteOutcome) {
        self.inserted += other.inserted;
        self.duplicates += other.duplicates;
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
            .map(|details| Cow::Owned(details_json(details)))
    }
}

impl StoredEvent for Activity {
    fn activity(&self) -> &Activity {
        self
    }
}

/// The event as an owned [`Activity`], its `details` read back from
/// [`StoredEvent::details_json`] where the activity has none.
fn owned_activity<E: StoredEvent>(event: &E) -> Activity {
    let mut activity = event.activity().clone();
    if activity.details.is_none() {
        activity.details = event
            .details_json()
            .and_then(|json| serde_json::from_str(&json).ok());
    }
    activity
}

/// Why a batch write failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The database answered with an error or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Updating the rollups in the insert's transaction failed (the insert
    /// was rolled back with it).
    #[error("updating the rollups failed: {0}")]
    Rollups(#[source] sqlx::Error),
}

impl WriteError {
    fn sqlx(&self) -> &sqlx::Error {
        match self {
            WriteError::Database(error) | WriteError::Rollups(error) => error,
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

fn is_transient_code(code: &str) -> bool {
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
    /// the six of a transaction, which is what a small batch costs; and no
    /// `COPY`, whose end waits for the server's delayed TCP acknowledgement
    /// (about 40 ms) when the rows fit in one segment (the client does not
    /// set `TCP_NODELAY`).
    OneStatement,
    /// [`InsertMethod::OneStatement`] for batches of up to
    /// [`ONE_STATEMENT_MAX_ROWS`] events, [`InsertMethod::CopyOptimistic`]
    /// for larger ones.
    #[default]
    Auto,
}

/// The largest batch [`InsertMethod::Auto`] writes as one statement: up to
/// it one statement is faster than a `COPY` transaction, from about even at
/// this size to forty times at a few events (`bench/writer_vs_copy.sh`,
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

/// [`write_batch`] with an explicit [`InsertMethod`] (for benchmarks).
pub async fn write_batch_with<E: StoredEvent>(
    pool: &PgPool,
    batch: &[E],
    method: InsertMethod,
) -> Result<WriteOutcome, WriteError> {
    write(pool, batch, method, true).await
}

/// [`write_batch_with`] without updating the rollups, which it leaves
/// stale: only for measuring what the rollups cost (`bench/`).
#[doc(hidden)]
pub async fn write_batch_without_rollups<E: StoredEvent>(
    pool: &PgPool,
    batch: &[E],
    method: InsertMethod,
) -> Result<WriteOutcome, WriteError> {
    write(pool, batch, method, false).await
}

async fn write<E: StoredEvent>(
    pool: &PgPool,
    batch: &[E],
    method: InsertMethod,
    with_rollups: bool,
) -> Result<WriteOutcome, WriteError> {
    if batch.is_empty() {
        return Ok(WriteOutcome::default());
    }
    let rows = Columns::from_batch(batch);
    let method = match method {
        InsertMethod::Auto if rows.len() <= ONE_STATEMENT_MAX_ROWS => InsertMethod::OneStatement,
        InsertMethod::Auto => InsertMethod::CopyOptimistic,
        chosen => chosen,
    };
    let inserted = match method {
        InsertMethod::OneStatement => insert_one_statement(pool, &rows, with_rollups).await?,
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
        duplicates: batch.len() as u64 - inserted,
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
        Path::Unnest => Inserted::Returned(insert_unnest(&mut tx, rows).await?),
        Path::CopyTempTable => Inserted::Returned(insert_copy_temp_table(&mut tx, rows).await?),
        Path::Copy => {
            insert_copy(&mut tx, rows).await?;
            Inserted::Every
        }
    };
    if with_rollups {
        match &inserted {
            Inserted::Every => rollups::apply_borrowed(&mut tx, rows.keys()).await,
            Inserted::Returned(returned) => rollups::apply(&mut tx, returned).await,
        }
        .map_err(WriteError::Rollups)?;
    }
    tx.commit().await?;
    Ok(match inserted {
        Inserted::Every => rows.len() as u64,
        Inserted::Returned(returned) => returned.len() as u64,
    })
}

/// Which rows a statement inserted.
enum Inserted {
    /// All of them (`COPY`, which fails rather than skip one).
    Every,
    /// Those it returned (the others were stored already).
    Returned(Vec<InsertedRow>),
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
    isolating(pool, batch, InsertMethod::default()).await
}

async fn isolating<E: StoredEvent>(
    pool: &PgPool,
    batch: &[E],
    method: InsertMethod,
) -> Result<IsolatedOutcome, WriteError> {
    let mut outcome = IsolatedOutcome::default();
    // Ranges still to write, the next one last: batch order is kept, so
    // the table sees rows in roughly the order they happened.
    let mut pending: Vec<Range<usize>> = Vec::new();
    pending.push(0..batch.len());
    while let Some(range) = pending.pop() {
        if range.is_empty() {
            continue;
        }
        match write_batch_with(pool, &batch[range.clone()], method).await {
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

/// The batch as columns, normalized and without repeated ids. Text is
/// borrowed from the batch; only events that normalization changes are
/// copied.
struct Columns<'a> {
    ids: Vec<Uuid>,
    user_ids: Vec<Option<Cow<'a, str>>>,
    actions: Vec<Cow<'a, str>>,
    resource_types: Vec<Option<Cow<'a, str>>>,
    resource_ids: Vec<Option<Cow<'a, str>>>,
    details: Vec<Option<Cow<'a, str>>>,
    ip_addresses: Vec<Option<IpAddr>>,
    user_agents: Vec<Option<Cow<'a, str>>>,
    session_ids: Vec<Option<Cow<'a, str>>>,
    created_ats: Vec<DateTime<Utc>>,
}

fn details_json(details: &serde_json::Map<String, serde_json::Value>) -> String {
    serde_json::to_string(details)
        .expect("a JSON object always serializes: string keys, no non-finite floats in Value")
}

impl<'a> Columns<'a> {
    fn from_batch<E: StoredEvent>(batch: &'a [E]) -> Self {
        let n = batch.len();
        // foldhash: SipHash was a visible part of a drain's CPU time.
        let mut seen = HashSet::with_capacity_and_hasher(n, RandomState::default());
        let mut columns = Columns {
            ids: Vec::with_capacity(n),
            user_ids: Vec::with_capacity(n),
            actions: Vec::with_capacity(n),
            resource_types: Vec::with_capacity(n),
            resource_ids: Vec::with_capacity(n),
            details: Vec::with_capacity(n),
            ip_addresses: Vec::with_capacity(n),
            user_agents: Vec::with_capacity(n),
            session_ids: Vec::with_capacity(n),
            created_ats: Vec::with_capacity(n),
        };
        for event in batch {
            let activity = event.activity();
            if !seen.insert(activity.id) {
                continue;
            }
            let details = event.details_json();
            if normalize::needs_normalizing(activity, details.as_deref()) {
                let mut owned = owned_activity(event);
                normalize::normalize(&mut owned);
                columns.push_owned(owned);
            } else {
                columns.push_borrowed(activity, details);
            }
        }
        columns
    }

    fn push_borrowed(&mut self, activity: &'a Activity, details: Option<Cow<'a, str>>) {
        let borrow = |text: &'a Option<String>| text.as_deref().map(Cow::Borrowed);
        self.ids.push(activity.id);
        self.user_ids.push(borrow(&activity.user_id));
        self.actions.push(Cow::Borrowed(activity.action.as_str()));
        self.resource_types.push(borrow(&activity.resource_type));
        self.resource_ids.push(borrow(&activity.resource_id));
        self.details.push(details);
        self.ip_addresses.push(activity.ip_address);
        self.user_agents.push(borrow(&activity.user_agent));
        self.session_ids.push(borrow(&activity.session_id));
        self.created_ats.push(activity.created_at);
    }

    fn push_owned(&mut self, activity: Activity) {
        self.ids.push(activity.id);
        self.user_ids.push(activity.user_id.map(Cow::Owned));
        self.actions
            .push(Cow::Owned(activity.action.as_str().to_owned()));
        self.resource_types
            .push(activity.resource_type.map(Cow::Owned));
        self.resource_ids.push(activity.resource_id.map(Cow::Owned));
        self.details.push(
            activity
                .details
                .as_ref()
                .map(|d| Cow::Owned(details_json(d))),
        );
        self.ip_addresses.push(activity.ip_address);
        self.user_agents.push(activity.user_agent.map(Cow::Owned));
        self.session_ids.push(activity.session_id.map(Cow::Owned));
        self.created_ats.push(activity.created_at);
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    /// What the rollups need of each row.
    fn keys(&self) -> impl Iterator<Item = rollups::RowKey<'_>> {
        (0..self.len()).map(|i| {
            (
                self.user_ids[i].as_deref(),
                &*self.actions[i],
                self.created_ats[i],
            )
        })
    }
}

type ReturnedRow = (Option<String>, String, DateTime<Utc>);

fn into_inserted(rows: Vec<ReturnedRow>) -> Vec<InsertedRow> {
    rows.into_iter()
        .map(|(user_id, action, created_at)| InsertedRow {
            user_id,
            action,
            created_at,
        })
        .collect()
}

/// The `INSERT` of the ten columns bound as arrays, skipping rows already
/// stored, returning what the rollups need of the rows it inserted; a macro
/// so that [`INSERT_UNNEST_WITH_ROLLUPS`] can embed it with `concat!`.
macro_rules! insert_unnest {
    () => {
        "\
    INSERT INTO user_activity_logs \
        (id, user_id, action, resource_type, resource_id, details, \
         ip_address, user_agent, session_id, created_at) \
    SELECT id, user_id, action, resource_type, resource_id, details::jsonb, \
           ip_address, user_agent, session_id, created_at \
    FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], \
                $6::text[], $7::inet[], $8::text[], $9::text[], $10::timestamptz[]) \
         AS t(id, user_id, action, resource_type, resource_id, details, \
              ip_address, user_agent, session_id, created_at) \
    ON CONFLICT DO NOTHING \
    RETURNING user_id, action::text, created_at"
    };
}

/// See [`insert_unnest!`].
const INSERT_UNNEST: &str = insert_unnest!();

/// [`INSERT_UNNEST`] with [`rollups::apply`]'s updates, as one statement:
/// the same sums, made by the database from the rows inserted. Each update
/// waits for the previous one (its filter reads the previous one's
/// results), so the tables are locked in the order `apply` locks them and
/// concurrent writers on either path queue instead of deadlocking.
const INSERT_UNNEST_WITH_ROLLUPS: &str = concat!(
    "WITH inserted AS (",
    insert_unnest!(),
    "), \
    hourly AS ( \
        INSERT INTO activity_rollup_hourly AS t (bucket, action, n) \
        SELECT date_trunc('hour', created_at, 'UTC'), action, COUNT(*) FROM inserted \
        GROUP BY 1, 2 ORDER BY 1, 2 \
        ON CONFLICT (bucket, action) DO UPDATE SET n = t.n + excluded.n \
        RETURNING 1), \
    daily AS ( \
        INSERT INTO activity_rollup_daily AS t (day, activities, users) \
        SELECT (created_at AT TIME ZONE 'UTC')::date, COUNT(*), 0 FROM inserted \
        WHERE (SELECT COUNT(*) FROM hourly) > 0 \
        GROUP BY 1 ORDER BY 1 \
        ON CONFLICT (day) DO UPDATE SET activities = t.activities + excluded.activities \
        RETURNING 1), \
    pending AS ( \
        INSERT INTO activity_rollup_pending (day, user_id, action, n) \
        SELECT (created_at AT TIME ZONE 'UTC')::date, user_id, action, COUNT(*) FROM inserted \
        WHERE user_id IS NOT NULL AND (SELECT COUNT(*) FROM daily) > 0 \
        GROUP BY 1, 2, 3) \
    SELECT COUNT(*) FROM inserted"
);

/// Binds the columns to a statement with [`INSERT_UNNEST`]'s parameters.
fn bind_columns<'q, O>(
    query: sqlx::query::QueryAs<'q, Postgres, O, sqlx::postgres::PgArguments>,
    rows: &'q Columns<'_>,
) -> sqlx::query::QueryAs<'q, Postgres, O, sqlx::postgres::PgArguments> {
    query
        .bind(&rows.ids)
        .bind(&rows.user_ids)
        .bind(&rows.actions)
        .bind(&rows.resource_types)
        .bind(&rows.resource_ids)
        .bind(&rows.details)
        .bind(&rows.ip_addresses)
        .bind(&rows.user_agents)
        .bind(&rows.session_ids)
        .bind(&rows.created_ats)
}

async fn insert_unnest(
    tx: &mut Transaction<'_, Postgres>,
    rows: &Columns<'_>,
) -> Result<Vec<InsertedRow>, sqlx::Error> {
    let returned: Vec<ReturnedRow> = bind_columns(sqlx::query_as(INSERT_UNNEST), rows)
        .fetch_all(&mut **tx)
        .await?;
    Ok(into_inserted(returned))
}

/// [`InsertMethod::OneStatement`]: returns how many rows were inserted.
async fn insert_one_statement(
    pool: &PgPool,
    rows: &Columns<'_>,
    with_rollups: bool,
) -> Result<u64, WriteError> {
    if !with_rollups {
        let returned: Vec<ReturnedRow> = bind_columns(sqlx::query_as(INSERT_UNNEST), rows)
            .fetch_all(pool)
            .await?;
        return Ok(returned.len() as u64);
    }
    let (inserted,): (i64,) = bind_columns(sqlx::query_as(INSERT_UNNEST_WITH_ROLLUPS), rows)
        .fetch_one(pool)
        .await?;
    Ok(inserted as u64)
}

/// Sends `rows` with `COPY <table> (columns) FROM STDIN`.
async fn copy_into(
    tx: &mut Transaction<'_, Postgres>,
    statement: &str,
    rows: &Columns<'_>,
) -> Result<(), sqlx::Error> {
    let mut copy = tx.copy_in_raw(statement).await?;
    if let Err(error) = copy.send(copy_text(rows)).await {
        // The protocol requires ending the COPY either way.
        let _ = copy.abort("sending the batch failed").await;
        return Err(error);
    }
    copy.finish().await?;
    Ok(())
}

/// Inserts every row with `COPY`: fails on a row already stored.
async fn insert_copy(
    tx: &mut Transaction<'_, Postgres>,
    rows: &Columns<'_>,
) -> Result<(), sqlx::Error> {
    copy_into(
        tx,
        "COPY user_activity_logs (id, user_id, action, resource_type, resource_id, \
         details, ip_address, user_agent, session_id, created_at) FROM STDIN",
        rows,
    )
    .await
}

async fn insert_copy_temp_table(
    tx: &mut Transaction<'_, Postgres>,
    rows: &Columns<'_>,
) -> Result<Vec<InsertedRow>, sqlx::Error> {
    // Session-local and emptied at each commit; created once per connection
    // (checked rather than `IF NOT EXISTS`, which logs a notice every time).
    let missing: bool =
        sqlx::query_scalar("SELECT to_regclass('pg_temp.user_activity_batch') IS NULL")
            .fetch_one(&mut **tx)
            .await?;
    if missing {
        sqlx::query(
            "CREATE TEMPORARY TABLE user_activity_batch \
             (LIKE user_activity_logs INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
        )
        .execute(&mut **tx)
        .await?;
    }
    copy_into(
        tx,
        "COPY user_activity_batch (id, user_id, action, resource_type, resource_id, \
         details, ip_address, user_agent, session_id, created_at) FROM STDIN",
        rows,
    )
    .await?;

    let returned: Vec<ReturnedRow> = sqlx::query_as(
        "INSERT INTO user_activity_logs \
             (id, user_id, action, resource_type, resource_id, details, \
              ip_address, user_agent, session_id, created_at) \
         SELECT id, user_id, action, resource_type, resource_id, details, \
                ip_address, user_agent, session_id, created_at \
         FROM user_activity_batch \
         ON CONFLICT DO NOTHING \
         RETURNING user_id, action::text, created_at",
    )
    .fetch_all(&mut **tx)
    .await?;
    Ok(into_inserted(returned))
}

/// The rows in `COPY`'s text format: tab-separated, `\N` for null,
/// backslash escapes for backslash, tab, newline and carriage return.
/// Written straight into one buffer: nothing is allocated per row.
fn copy_text(rows: &Columns<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 400);
    for i in 0..rows.len() {
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        out.extend_from_slice(rows.ids[i].hyphenated().encode_lower(&mut id).as_bytes());
        for text in [
            rows.user_ids[i].as_deref(),
            Some(&*rows.actions[i]),
            rows.resource_types[i].as_deref(),
            rows.resource_ids[i].as_deref(),
            rows.details[i].as_deref(),
        ] {
            out.push(b'\t');
            push_copy_field(&mut out, text);
        }
        out.push(b'\t');
        match rows.ip_addresses[i] {
            // An address's text has nothing to escape.
            Some(ip) => {
                use std::io::Write as _;
                write!(out, "{ip}").expect("writing to a Vec cannot fail");
            }
            None => out.extend_from_slice(b"\\N"),
        }
        for text in [
            rows.user_agents[i].as_deref(),
            rows.session_ids[i].as_deref(),
        ] {
            out.push(b'\t');
            push_copy_field(&mut out, text);
        }
        out.push(b'\t');
        push_timestamp(&mut out, rows.created_ats[i]);
        out.push(b'\n');
    }
    out
}

/// One text field of `COPY`'s text format.
fn push_copy_field(out: &mut Vec<u8>, value: Option<&str>) {
    let Some(text) = value else {
        out.extend_from_slice(b"\\N");
        return;
    };
    // Runs without a byte to escape (nearly all text) are copied whole.
    let mut rest = text.as_bytes();
    while let Some(at) = next_to_escape(rest) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(match rest[at] {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            _ => b"\\r",
        });
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
}

/// The first backslash, tab, newline or carriage return in `bytes`.
///
/// Skips eight bytes at a time while none of them is a backslash or below
/// 0x20 (a word-wide test: fields are mostly short, too short for
/// `memchr`'s vector paths to pay), then looks byte by byte.
fn next_to_escape(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut start = 0;
    for word in bytes.chunks_exact(8) {
        let word = u64::from_le_bytes(word.try_into().expect("chunks of eight"));
        // A high bit set where a byte may be below 0x20, or a backslash
        // (zero after the XOR); never unset where one is.
        let below_space = word.wrapping_sub(ONES * 0x20) & !word;
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let backslash = backslash.wrapping_sub(ONES) & !backslash;
        if (below_space | backslash) & HIGHS != 0 {
            break;
        }
        start += 8;
    }
    bytes[start..]
        .iter()
        .position(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
        .map(|at| start + at)
}

/// `at` as `YYYY-MM-DD HH:MM:SS.ffffff+00`, digit by digit: chrono's
/// formatting allocates and interprets a format for every row.
fn push_timestamp(out: &mut Vec<u8>, at: DateTime<Utc>) {
    use chrono::{Datelike, Timelike};
    let (date, time) = (at.date_naive(), at.time());
    let Ok(year) = u32::try_from(date.year()) else {
        out.extend_from_slice(at.to_rfc3339_opts(SecondsFormat::Micros, true).as_bytes());
        return;
    };
    // Years past 9999 and leap seconds are left to chrono.
    if year > 9999 || time.nanosecond() >= 1_000_000_000 {
        out.extend_from_slice(at.to_rfc3339_opts(SecondsFormat::Micros, true).as_bytes());
        return;
    }
    let mut push = |n: u32, width: usize, then: &[u8]| {
        let start = out.len();
        out.resize(start + width, b'0');
        let mut n = n;
        for digit in out[start..].iter_mut().rev() {
            *digit = b'0' + (n % 10) as u8;
            n /= 10;
        }
        out.extend_from_slice(then);
    };
    push(year, 4, b"-");
    push(date.month(), 2, b"-");
    push(date.day(), 2, b" ");
    push(time.hour(), 2, b":");
    push(time.minute(), 2, b":");
    push(time.second(), 2, b".");
    push(time.nanosecond() / 1000, 6, b"+00");
}

#[cfg(test)]
mod tests;
