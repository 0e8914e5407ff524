//! The statements each [`InsertMethod`](super::InsertMethod) sends. Every
//! one that updates the rollups adds the sums of the rows it inserted
//! ([`BatchSums`](crate::rollups::sums::BatchSums), the one definition of
//! them) in the same transaction or statement.

use sqlx::{PgPool, Postgres, Transaction};

use super::columns::Columns;
use super::copy_text::copy_text;
use crate::rollups::sums::{self, BatchSums, OwnedRowKey, apply_sums_ctes, keys_of};

/// The `INSERT` of the ten columns bound as arrays, `$1` to `$10`, without
/// `ON CONFLICT`: it fails (SQLSTATE 23505) on a row already stored.
macro_rules! insert_unnest_plain {
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
              ip_address, user_agent, session_id, created_at)"
    };
}

/// [`insert_unnest_plain!`] skipping rows already stored, returning what
/// the rollups need of the rows it inserted.
const INSERT_UNNEST: &str = concat!(
    insert_unnest_plain!(),
    " ON CONFLICT DO NOTHING RETURNING user_id, action::text, created_at"
);

/// [`InsertMethod::OneStatement`](super::InsertMethod::OneStatement): the
/// insert and the sums of every row of the batch (`$11` to `$19`), as one
/// statement the database runs atomically. A row already stored fails it
/// whole (then the batch goes again through [`unnest`]).
const ONE_STATEMENT: &str = concat!(
    "WITH inserted AS (",
    insert_unnest_plain!(),
    " RETURNING 1), ",
    apply_sums_ctes!(
        "(SELECT COUNT(*) FROM inserted) > 0",
        "$11",
        "$12",
        "$13",
        "$14",
        "$15",
        "$16",
        "$17",
        "$18",
        "$19"
    ),
    " SELECT COUNT(*) FROM inserted"
);

/// [`INSERT_UNNEST`] counting the rows it inserted, without the rollups
/// (only to measure what they cost).
const UNNEST_ONLY: &str = concat!(
    "WITH inserted AS (",
    insert_unnest_plain!(),
    " ON CONFLICT DO NOTHING RETURNING 1) SELECT COUNT(*) FROM inserted"
);

/// The rollup keys of every row of the batch.
fn all_keys<'a>(rows: &'a Columns<'_>) -> impl Iterator<Item = sums::RowKey<'a>> {
    (0..rows.len()).map(|i| {
        (
            rows.user_ids[i].as_deref(),
            &*rows.actions[i],
            rows.created_ats[i],
        )
    })
}

/// Binds the columns, `$1` to `$10`, to any query (`query_as` or
/// `query_scalar`).
macro_rules! bind_columns {
    ($query:expr, $rows:expr) => {
        $query
            .bind(&$rows.ids)
            .bind(&$rows.user_ids)
            .bind(&$rows.actions)
            .bind(&$rows.resource_types)
            .bind(&$rows.resource_ids)
            .bind(&$rows.details)
            .bind(&$rows.ip_addresses)
            .bind(&$rows.user_agents)
            .bind(&$rows.session_ids)
            .bind(&$rows.created_ats)
    };
}

/// The `UNNEST` insert and the sums of the whole batch as one statement,
/// outside any explicit transaction; returns how many rows were inserted.
/// Fails with a unique violation when a row is stored already.
pub(crate) async fn one_statement(
    pool: &PgPool,
    rows: &Columns<'_>,
    with_rollups: bool,
) -> Result<u64, sqlx::Error> {
    let inserted: i64 = if with_rollups {
        let sums = BatchSums::of(all_keys(rows)).into_columns();
        sums.bind(bind_columns!(sqlx::query_scalar(ONE_STATEMENT), rows))
            .fetch_one(pool)
            .await?
    } else {
        bind_columns!(sqlx::query_scalar(UNNEST_ONLY), rows)
            .fetch_one(pool)
            .await?
    };
    Ok(inserted as u64)
}

/// The `UNNEST` insert skipping rows already stored, and the sums of those
/// it inserted, in the caller's transaction.
pub(crate) async fn unnest(
    tx: &mut Transaction<'_, Postgres>,
    rows: &Columns<'_>,
    with_rollups: bool,
) -> Result<u64, sqlx::Error> {
    let returned: Vec<OwnedRowKey> = bind_columns!(sqlx::query_as(INSERT_UNNEST), rows)
        .fetch_all(&mut **tx)
        .await?;
    if with_rollups {
        sums::add(tx, keys_of(&returned)).await?;
    }
    Ok(returned.len() as u64)
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
/// adds the sums of them all.
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
        sums::add(tx, all_keys(rows)).await?;
    }
    Ok(rows.len() as u64)
}

/// `COPY` into a session-local temporary table, then one `INSERT ...
/// SELECT ... ON CONFLICT DO NOTHING` from it, and the sums of the rows it
/// inserted.
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
    let returned: Vec<OwnedRowKey> = sqlx::query_as(
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
    if with_rollups {
        sums::add(tx, keys_of(&returned)).await?;
    }
    Ok(returned.len() as u64)
}
