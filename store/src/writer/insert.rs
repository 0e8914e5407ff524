//! The statements each [`InsertMethod`](super::InsertMethod) sends. Every
//! one that updates the rollups does it with
//! [`add_to_rollups!`](crate::rollups::sums), over the rows it inserted.

use sqlx::{PgPool, Postgres, Transaction};

use super::columns::Columns;
use super::copy_text::copy_text;
use crate::rollups::sums::{add_to_rollups, utc_day, utc_hour};

/// The `INSERT` of the ten columns bound as arrays, skipping rows already
/// stored, returning what the rollups need of the rows it inserted.
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
    RETURNING user_id, action::text AS action, created_at"
    };
}

/// The `INSERT` from the session's temporary table, skipping rows already
/// stored, returning what the rollups need of the rows it inserted.
macro_rules! insert_from_batch_table {
    () => {
        "\
    INSERT INTO user_activity_logs \
        (id, user_id, action, resource_type, resource_id, details, \
         ip_address, user_agent, session_id, created_at) \
    SELECT id, user_id, action, resource_type, resource_id, details, \
           ip_address, user_agent, session_id, created_at \
    FROM user_activity_batch \
    ON CONFLICT DO NOTHING \
    RETURNING user_id, action::text AS action, created_at"
    };
}

/// The rows a `COPY` inserted (all of the batch: it fails rather than skip
/// one), bound as three arrays.
macro_rules! copied_rows {
    () => {
        "SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[]) \
         AS s(user_id, action, created_at)"
    };
}

/// How many rows `$rows` returned, without touching the rollups (only to
/// measure what they cost).
macro_rules! count_only {
    ($rows:expr) => {
        concat!("WITH stored AS (", $rows, ") SELECT COUNT(*) FROM stored")
    };
}

/// One of the statements below: with the rollups or without.
fn statement(with_rollups: bool, with: &'static str, without: &'static str) -> &'static str {
    if with_rollups { with } else { without }
}

const UNNEST_WITH_ROLLUPS: &str = add_to_rollups!(insert_unnest!());
const UNNEST_ONLY: &str = count_only!(insert_unnest!());
const BATCH_TABLE_WITH_ROLLUPS: &str = add_to_rollups!(insert_from_batch_table!());
const BATCH_TABLE_ONLY: &str = count_only!(insert_from_batch_table!());
const COPIED_WITH_ROLLUPS: &str = add_to_rollups!(copied_rows!());

/// Binds the columns to a statement with [`insert_unnest!`]'s parameters.
fn bind_columns<'q, O>(
    query: sqlx::query::QueryScalar<'q, Postgres, O, sqlx::postgres::PgArguments>,
    rows: &'q Columns<'_>,
) -> sqlx::query::QueryScalar<'q, Postgres, O, sqlx::postgres::PgArguments> {
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

/// The `UNNEST` insert (and the rollups) as one statement, outside any
/// explicit transaction: the database runs it atomically. Returns how many
/// rows were inserted.
pub(crate) async fn unnest_one_statement(
    pool: &PgPool,
    rows: &Columns<'_>,
    with_rollups: bool,
) -> Result<u64, sqlx::Error> {
    let sql = statement(with_rollups, UNNEST_WITH_ROLLUPS, UNNEST_ONLY);
    let inserted: i64 = bind_columns(sqlx::query_scalar(sql), rows)
        .fetch_one(pool)
        .await?;
    Ok(inserted as u64)
}

/// The `UNNEST` insert (and the rollups) in the caller's transaction.
pub(crate) async fn unnest(
    tx: &mut Transaction<'_, Postgres>,
    rows: &Columns<'_>,
    with_rollups: bool,
) -> Result<u64, sqlx::Error> {
    let sql = statement(with_rollups, UNNEST_WITH_ROLLUPS, UNNEST_ONLY);
    let inserted: i64 = bind_columns(sqlx::query_scalar(sql), rows)
        .fetch_one(&mut **tx)
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

/// Inserts every row with `COPY` (failing on a row already stored), then
/// adds them all to the rollups.
pub(crate) async fn copy(
    tx: &mut Transaction<'_, Postgres>,
    rows: &Columns<'_>,
    with_rollups: bool,
) -> Result<u64, sqlx::Error> {
    copy_into(
        tx,
        "COPY user_activity_logs (id, user_id, action, resource_type, resource_id, \
         details, ip_address, user_agent, session_id, created_at) FROM STDIN",
        rows,
    )
    .await?;
    if with_rollups {
        sqlx::query(COPIED_WITH_ROLLUPS)
            .bind(&rows.user_ids)
            .bind(&rows.actions)
            .bind(&rows.created_ats)
            .execute(&mut **tx)
            .await?;
    }
    Ok(rows.len() as u64)
}

/// `COPY` into a session-local temporary table, then one `INSERT ...
/// SELECT ... ON CONFLICT DO NOTHING` from it (and the rollups).
pub(crate) async fn copy_temp_table(
    tx: &mut Transaction<'_, Postgres>,
    rows: &Columns<'_>,
    with_rollups: bool,
) -> Result<u64, sqlx::Error> {
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
    let sql = statement(with_rollups, BATCH_TABLE_WITH_ROLLUPS, BATCH_TABLE_ONLY);
    let inserted: i64 = sqlx::query_scalar(sql).fetch_one(&mut **tx).await?;
    Ok(inserted as u64)
}
