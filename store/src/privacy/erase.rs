//! Erasing one user: the erasure list first, then the raw rows partition by
//! partition in bounded chunks (each its own short transaction, with the
//! per-hour and per-day counts corrected in it), then the per-user rollups
//! under the fold's lock.

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::TryStreamExt;
use serde::Serialize;
use sqlx::{AssertSqlSafe, PgPool};

use super::list::{self, ErasureList};
use super::{ErasureMode, ErasurePolicy, PSEUDONYM_PREFIX};
use crate::normalize::stored_user_id;
use crate::rollups;
use crate::schema;

/// Rows erased per transaction: bounds how long an erasure holds row locks
/// (and the per-hour rows writers update) at a time.
const CHUNK_ROWS: i64 = 5_000;

/// Why an erasure could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErasureError {
    /// Pseudonymizing needs the key.
    #[error(
        "pseudonymizing needs PSEUDONYM_KEY, which is not set; set it, or erase with mode=delete"
    )]
    NoKey,
    /// The user id is empty.
    #[error("the user id must not be empty")]
    EmptyUserId,
    /// The database failed; the erasure may be partly done, and running it
    /// again finishes it.
    #[error("database error during the erasure (running it again finishes it): {0}")]
    Database(#[from] sqlx::Error),
}

/// The rows of one partition an erasure changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartitionRows {
    /// The partition (`user_activity_logs_pYYYY_MM` or `user_activity_logs_default`).
    pub partition: String,
    /// Rows deleted or pseudonymized in it.
    pub rows: u64,
}

/// What an erasure did.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErasureReceipt {
    /// How the user was erased.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "delete"))]
    pub mode: ErasureMode,
    /// The pseudonym that replaced the user id (`pseudonymize` only).
    pub pseudonym: Option<String>,
    /// Rows changed, per partition (partitions without any left out).
    pub partitions: Vec<PartitionRows>,
    /// Rows changed in all.
    pub rows: u64,
    /// Rollup rows corrected (per-hour and per-day counts, per-user rows
    /// removed or moved to the pseudonym).
    pub rollup_rows_corrected: u64,
    /// Until when events of this user arriving later are erased the same
    /// way; null when not held (no `PSEUDONYM_KEY`, or `ERASURE_HOLD_DAYS`
    /// is 0).
    pub held_until: Option<DateTime<Utc>>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it finished: the rows and the rollups are as described from then on.
    pub finished_at: DateTime<Utc>,
}

/// Erases every row of `user_id` in every partition (the default one
/// included), and corrects the rollups: exact once it returns.
///
/// `user_id` is looked up as the writer stores it (truncated to the column's
/// length), so every stored user can be found. With a key, the user is put
/// on the erasure list first (for `policy.hold_days`, and `list` reloaded),
/// so that events of theirs arriving later are erased the same way by the
/// writer (or by the [`sweep`]). Writers are never blocked for long: the rows go in chunks of
/// their own transactions, and the admin figures may lag by the chunk in
/// progress until it returns. Running it again is harmless (it finds
/// nothing more to erase).
pub async fn erase_user(
    pool: &PgPool,
    user_id: &str,
    mode: ErasureMode,
    policy: &ErasurePolicy,
    list: &ErasureList,
) -> Result<ErasureReceipt, ErasureError> {
    erase_user_with_chunk(pool, user_id, mode, policy, list, CHUNK_ROWS).await
}

/// [`erase_user`] with chunks of `chunk_rows` rows (for tests).
#[doc(hidden)]
pub async fn erase_user_with_chunk(
    pool: &PgPool,
    user_id: &str,
    mode: ErasureMode,
    policy: &ErasurePolicy,
    list: &ErasureList,
    chunk_rows: i64,
) -> Result<ErasureReceipt, ErasureError> {
    let started_at = Utc::now();
    let user = stored_user_id(user_id);
    if user.is_empty() {
        return Err(ErasureError::EmptyUserId);
    }
    let hash = policy.key.as_ref().map(|key| key.hash(&user));
    let pseudonym = match mode {
        ErasureMode::Delete => None,
        ErasureMode::Pseudonymize => Some(hash.ok_or(ErasureError::NoKey)?.pseudonym()),
    };
    let held_until = match hash {
        Some(hash) if policy.hold_days > 0 => {
            let until = started_at + TimeDelta::days(i64::from(policy.hold_days));
            list::hold(pool, &hash, mode, until).await?;
            // This process's writers erase the user's new events from now on.
            list.refresh(pool).await?;
            Some(until)
        }
        _ => None,
    };

    let mut partitions = Vec::new();
    let mut corrected = 0;

    for partition in schema::partitions(pool).await? {
        let mut rows = 0;
        // Each chunk starts where the last ended (the (user_id, created_at)
        // index), not at the entries of the rows already erased.
        let mut from = None;
        loop {
            let chunk = match &pseudonym {
                None => delete_chunk(pool, &partition, &user, from, chunk_rows).await,
                Some(p) => {
                    pseudonymize_chunk(pool, &partition, &user, p, policy, from, chunk_rows).await
                }
            };
            let done = match chunk {
                Ok(done) => done,
                // Dropped by retention meanwhile: nothing left in it.
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => break,
                Err(e) => return Err(e.into()),
            };
            rows += done.rows;
            corrected += done.corrected;
            from = done.last.or(from);
            if done.rows < chunk_rows as u64 {
                break;
            }
        }
        if rows > 0 {
            partitions.push(PartitionRows { partition, rows });
        }
    }
    corrected += rollups::move_user_locked(pool, &user, pseudonym.as_deref()).await?;
    Ok(ErasureReceipt {
        mode,
        pseudonym,
        rows: partitions.iter().map(|p| p.rows).sum(),
        partitions,
        rollup_rows_corrected: corrected,
        held_until,
        started_at,
        finished_at: Utc::now(),
    })
}

/// What one chunk did.
struct Chunk {
    /// Rows deleted or pseudonymized.
    rows: u64,
    /// Rollup rows corrected.
    corrected: u64,
    /// The latest `created_at` among them: where the next chunk starts.
    last: Option<DateTime<Utc>>,
}

/// The condition selecting a chunk of `table` (a quoted partition): the
/// rows of `$1` from `$2` on (all when null), oldest first, at most `$3`,
/// by their `ctid`.
fn chunk_of_user(table: &str) -> String {
    format!(
        "ctid = ANY(ARRAY(
             SELECT ctid FROM {table}
             WHERE user_id = $1 AND created_at >= COALESCE($2::timestamptz, '-infinity')
             ORDER BY created_at LIMIT $3))"
    )
}

/// Deletes up to `limit` rows of `user` from `partition`, from `from` on,
/// and takes them out of the per-hour and per-day counts, in one
/// transaction.
async fn delete_chunk(
    pool: &PgPool,
    partition: &str,
    user: &str,
    from: Option<DateTime<Utc>>,
    limit: i64,
) -> Result<Chunk, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let gone: Vec<(String, DateTime<Utc>)> = sqlx::query_as(AssertSqlSafe(format!(
        "DELETE FROM {table} WHERE {rows} RETURNING action::text, created_at",
        table = schema::quote_ident(partition),
        rows = chunk_of_user(&schema::quote_ident(partition)),
    )))
    .bind(user)
    .bind(from)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    // The per-user counts are the fold's: corrected once, at the end.
    let fixed =
        rollups::sums::subtract(&mut tx, gone.iter().map(|(a, at)| (None, a.as_str(), *at)))
            .await?;
    tx.commit().await?;
    Ok(Chunk {
        rows: gone.len() as u64,
        corrected: fixed,
        last: gone.iter().map(|(_, at)| *at).max(),
    })
}

/// Pseudonymizes up to `limit` rows of `user` in `partition`, from `from`
/// on (the per-hour and per-day counts do not change).
async fn pseudonymize_chunk(
    pool: &PgPool,
    partition: &str,
    user: &str,
    pseudonym: &str,
    policy: &ErasurePolicy,
    from: Option<DateTime<Utc>>,
    limit: i64,
) -> Result<Chunk, sqlx::Error> {
    let changed: Vec<DateTime<Utc>> = sqlx::query_scalar(AssertSqlSafe(format!(
        "UPDATE {table}
         SET user_id = $4, ip_address = NULL, user_agent = NULL, session_id = NULL,
             details = (SELECT jsonb_object_agg(k, v) FROM jsonb_each(details) AS e(k, v)
                        WHERE k = ANY($5))
         WHERE {rows} RETURNING created_at",
        table = schema::quote_ident(partition),
        rows = chunk_of_user(&schema::quote_ident(partition)),
    )))
    .bind(user)
    .bind(from)
    .bind(limit)
    .bind(pseudonym)
    .bind(&policy.keep_detail_keys)
    .fetch_all(pool)
    .await?;
    Ok(Chunk {
        rows: changed.len() as u64,
        corrected: 0,
        last: changed.into_iter().max(),
    })
}

/// Erases again the users on the erasure list whose rows reached the table
/// without the writer's check (the app's direct fallback has no key; a
/// processor that had not yet seen the erasure); forgets the users whose
/// hold is over first. Returns a receipt per user found.
///
/// Every stored user is in the per-user rollups (folded, or still
/// pending), so those are what is searched: each user id there is hashed
/// and looked up, no raw row is scanned. Refreshes `list` on the way.
pub async fn sweep(
    pool: &PgPool,
    policy: &ErasurePolicy,
    list: &ErasureList,
) -> Result<Vec<ErasureReceipt>, ErasureError> {
    list::expire(pool).await?;
    list.refresh(pool).await?;
    let Some(key) = &policy.key else {
        return Ok(Vec::new());
    };
    if list.is_empty() {
        return Ok(Vec::new());
    }
    let mut found: Vec<(String, ErasureMode)> = Vec::new();
    {
        let mut users = sqlx::query_scalar::<_, String>(
            "SELECT user_id FROM activity_rollup_user_last WHERE NOT starts_with(user_id, $1)
             UNION
             SELECT user_id FROM activity_rollup_pending WHERE NOT starts_with(user_id, $1)",
        )
        .bind(PSEUDONYM_PREFIX)
        .fetch(pool);
        while let Some(user) = users.try_next().await? {
            if let Some(mode) = list.mode_of(&key.hash(&user)) {
                found.push((user, mode));
            }
        }
    }
    let mut receipts = Vec::with_capacity(found.len());
    for (user, mode) in found {
        receipts.push(erase_user(pool, &user, mode, policy, list).await?);
    }
    Ok(receipts)
}
