//! The delivery rows (`user_activity_alert_deliveries`) as a queue:
//! claiming due ones under a lease, recording each attempt's outcome, and
//! the URLs disabled after a 410 (`user_activity_webhook_disabled`).
//!
//! A claim leases rows (`leased_until`) in one statement that skips rows
//! another worker is claiming (`FOR UPDATE SKIP LOCKED`) or holds a live
//! lease on, so two processors never send the same attempt at once, and a
//! dead processor's rows are taken over once its lease has passed. An
//! outcome is recorded only by the lease's holder (the `leased_until` it
//! got), except `delivered`, which is true whoever sent it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// `last_error` of a delivery not sent because its URL was disabled.
const DISABLED_BEFORE_SENDING: &str = "not sent: the URL is disabled (it answered 410 Gone)";

/// A delivery claimed for one attempt.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct Claimed {
    /// The row.
    pub(super) id: i64,
    /// The alert to send.
    pub(super) alert_id: Uuid,
    /// Where to.
    pub(super) url: String,
    /// `webhook-id`, the same on every attempt.
    pub(super) webhook_id: String,
    /// Attempts made before this one.
    pub(super) attempts: i32,
    /// The lease this worker holds (`None` when `disabled` is set).
    pub(super) leased_until: Option<DateTime<Utc>>,
    /// The URL was disabled: the claim marked the row `disabled` instead of
    /// leasing it, and nothing is to be sent.
    pub(super) disabled: bool,
}

/// A webhook URL that answered 410 Gone and gets no more deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct DisabledUrl {
    /// The URL, as configured in `ALERT_WEBHOOK_URLS`.
    pub url: String,
    /// When it answered 410.
    pub disabled_at: DateTime<Utc>,
    /// The answer, and the delivery it was given to.
    pub reason: String,
}

/// The URLs disabled after a 410 Gone, oldest first (for `queue-status`).
/// Deleting a URL's row from `user_activity_webhook_disabled` enables it
/// again for alerts raised after that.
pub async fn disabled_urls(pool: &PgPool) -> Result<Vec<DisabledUrl>, sqlx::Error> {
    sqlx::query_as(
        "SELECT url, disabled_at, reason FROM user_activity_webhook_disabled
         ORDER BY disabled_at, url",
    )
    .fetch_all(pool)
    .await
}

/// How many URLs are disabled.
pub(super) async fn count_disabled(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM user_activity_webhook_disabled")
        .fetch_one(pool)
        .await
}

/// Leases up to `limit` due deliveries for `lease`, the longest waiting
/// first. Due rows whose URL has been disabled since they were made are
/// marked `disabled` in the same statement and returned with `disabled`
/// set, unleased.
pub(super) async fn claim(
    pool: &PgPool,
    limit: usize,
    lease: Duration,
) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_as(
        "WITH due AS (
             SELECT d.id,
                    EXISTS (SELECT 1 FROM user_activity_webhook_disabled w WHERE w.url = d.url)
                        AS disabled
             FROM user_activity_alert_deliveries d
             WHERE d.status = 'pending' AND d.next_attempt_at <= now()
               AND (d.leased_until IS NULL OR d.leased_until < now())
             ORDER BY d.next_attempt_at
             LIMIT $1
             FOR UPDATE OF d SKIP LOCKED
         )
         UPDATE user_activity_alert_deliveries d
         SET leased_until = CASE WHEN due.disabled THEN NULL
                                 ELSE now() + make_interval(secs => $2) END,
             status = CASE WHEN due.disabled THEN 'disabled' ELSE d.status END,
             finished_at = CASE WHEN due.disabled THEN now() ELSE d.finished_at END,
             last_error = CASE WHEN due.disabled THEN $3 ELSE d.last_error END
         FROM due
         WHERE d.id = due.id
         RETURNING d.id, d.alert_id, d.url, d.webhook_id, d.attempts, d.leased_until,
                   due.disabled",
    )
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .bind(lease.as_secs_f64())
    .bind(DISABLED_BEFORE_SENDING)
    .fetch_all(pool)
    .await
}

/// Gives a claimed delivery's lease back without counting an attempt (the
/// attempt could not be made: its alert could not be read).
pub(super) async fn release(pool: &PgPool, claimed: &Claimed) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE user_activity_alert_deliveries SET leased_until = NULL
         WHERE id = $1 AND status = 'pending' AND leased_until = $2",
    )
    .bind(claimed.id)
    .bind(claimed.leased_until)
    .execute(pool)
    .await?;
    Ok(())
}

/// The receiver took it. `false` if the row was no longer pending.
pub(super) async fn record_delivered(
    pool: &PgPool,
    claimed: &Claimed,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE user_activity_alert_deliveries
         SET status = 'delivered', attempts = attempts + 1, leased_until = NULL,
             finished_at = now()
         WHERE id = $1 AND status = 'pending'",
    )
    .bind(claimed.id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The attempt failed in a way worth retrying: the next one after `delay`,
/// unless the delivery was made `retry_for` ago or longer, which makes it
/// `failed` (the last attempt is at that deadline, never after). The new
/// status, or `None` if this worker no longer held the lease.
pub(super) async fn record_retry(
    pool: &PgPool,
    claimed: &Claimed,
    error: &str,
    delay: Duration,
    retry_for: Duration,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE user_activity_alert_deliveries
         SET attempts = attempts + 1, last_error = $3, leased_until = NULL,
             status = CASE WHEN now() >= created_at + make_interval(secs => $5)
                           THEN 'failed' ELSE 'pending' END,
             finished_at = CASE WHEN now() >= created_at + make_interval(secs => $5)
                                THEN now() END,
             next_attempt_at = LEAST(now() + make_interval(secs => $4),
                                     created_at + make_interval(secs => $5))
         WHERE id = $1 AND status = 'pending' AND leased_until = $2
         RETURNING status",
    )
    .bind(claimed.id)
    .bind(claimed.leased_until)
    .bind(error)
    .bind(delay.as_secs_f64())
    .bind(retry_for.as_secs_f64())
    .fetch_optional(pool)
    .await
}

/// The receiver refused it for good. `false` if this worker no longer held
/// the lease.
pub(super) async fn record_failed(
    pool: &PgPool,
    claimed: &Claimed,
    error: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE user_activity_alert_deliveries
         SET status = 'failed', attempts = attempts + 1, last_error = $3,
             leased_until = NULL, finished_at = now()
         WHERE id = $1 AND status = 'pending' AND leased_until = $2",
    )
    .bind(claimed.id)
    .bind(claimed.leased_until)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The receiver answered 410 Gone: its URL is disabled, this delivery and
/// every other pending one to the URL become `disabled`, in one
/// transaction. Returns how many deliveries were disabled.
pub(super) async fn disable_url(
    pool: &PgPool,
    claimed: &Claimed,
    error: &str,
) -> Result<u64, sqlx::Error> {
    let reason = format!("{error} (to delivery {})", claimed.webhook_id);
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO user_activity_webhook_disabled (url, reason) VALUES ($1, $2)
         ON CONFLICT (url) DO NOTHING",
    )
    .bind(&claimed.url)
    .bind(&reason)
    .execute(&mut *tx)
    .await?;
    let this = sqlx::query(
        "UPDATE user_activity_alert_deliveries
         SET status = 'disabled', attempts = attempts + 1, last_error = $2,
             leased_until = NULL, finished_at = now()
         WHERE id = $1 AND status = 'pending'",
    )
    .bind(claimed.id)
    .bind(error)
    .execute(&mut *tx)
    .await?;
    let others = sqlx::query(
        "UPDATE user_activity_alert_deliveries
         SET status = 'disabled', last_error = $3, leased_until = NULL, finished_at = now()
         WHERE url = $1 AND status = 'pending' AND id <> $2",
    )
    .bind(&claimed.url)
    .bind(claimed.id)
    .bind(DISABLED_BEFORE_SENDING)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(this.rows_affected() + others.rows_affected())
}
