//! The processor's privacy settings and duties: the storage rules its
//! writer applies (`IP_TRUNCATION`, the erasure list), the erasure policy
//! (`PSEUDONYM_KEY`, `ERASE_KEEP_DETAIL_KEYS`, `ERASURE_HOLD_DAYS`), the
//! audit records (`user_erased`, `user_exported`, `admin_read`), and the
//! timer that keeps the erasure list fresh and sweeps the rows that reached
//! the table without the writer's check.

use std::sync::Arc;
use std::time::Duration;

use activity_store::normalize::{ErasureCheck, StorageRules};
use activity_store::privacy::{self, ErasureList, ErasurePolicy, ErasureReceipt, PseudonymKey};
use activity_tracker::{Activity, ActivityType, IpTruncation};
use serde_json::{Map, Value};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// How often the erasure list is reloaded: how long an erasure made by
/// another processor may go unseen by this one's writer.
const LIST_REFRESH: Duration = Duration::from_secs(5);
/// How often the sweep looks for rows of erased users that reached the
/// table without the writer's check.
const SWEEP_PERIOD: Duration = Duration::from_secs(300);
/// Who the sweep's `user_erased` records name.
pub const SWEEP_ACTOR: &str = "erasure-sweep";

/// The privacy settings, shared by the consumer's writer and the admin API.
#[derive(Debug, Clone)]
pub struct Privacy {
    /// The key, the `details` keys kept, the hold.
    pub policy: Arc<ErasurePolicy>,
    /// The users held, as the writer checks them.
    pub list: ErasureList,
    /// `IP_TRUNCATION`.
    pub ip_truncation: Option<IpTruncation>,
    /// `AUDIT_ADMIN_READS`.
    pub audit_admin_reads: bool,
}

impl Default for Privacy {
    /// No key, no truncation, no audit of reads.
    fn default() -> Self {
        Self {
            policy: Arc::new(ErasurePolicy::new(None)),
            list: ErasureList::new(),
            ip_truncation: None,
            audit_admin_reads: false,
        }
    }
}

impl Privacy {
    /// From the settings of `serve`.
    pub fn from_config(config: &Config) -> Self {
        let mut policy = ErasurePolicy::new(
            config
                .pseudonym_key
                .as_ref()
                .map(|key| PseudonymKey::new(key.expose().as_bytes())),
        );
        policy.keep_detail_keys = config.erase_keep_detail_keys();
        policy.hold_days = config.erasure_hold_days;
        Self {
            policy: Arc::new(policy),
            list: ErasureList::new(),
            ip_truncation: config.ip_truncation,
            audit_admin_reads: config.audit_admin_reads,
        }
    }

    /// What the writer applies to every event it stores.
    pub fn storage_rules(&self) -> StorageRules {
        StorageRules {
            ip_truncation: self.ip_truncation,
            erasure: self.policy.key.is_some().then(|| ErasureCheck {
                policy: self.policy.clone(),
                list: self.list.clone(),
            }),
        }
    }

    /// Whether `user_id` was erased and is still held (its hold, of
    /// `ERASURE_HOLD_DAYS`, not over): the user endpoints answer 404 for
    /// such a user. Needs `PSEUDONYM_KEY`, without which nobody is held.
    pub fn is_erased(&self, user_id: &str) -> bool {
        self.policy.is_held(&self.list, user_id)
    }

    /// Logs at start-up what erasures will not do.
    pub fn warn_if_unkeyed(&self) {
        if self.policy.key.is_none() {
            tracing::warn!(
                "PSEUDONYM_KEY is not set: erasure with mode=pseudonymize is refused, and erased users are not held against late events"
            );
        }
    }

    /// Runs the sweep once: erases again the rows of held users that
    /// reached the table without the writer's check, each recorded as a
    /// `user_erased` activity by [`SWEEP_ACTOR`]. Returns the receipts.
    pub async fn sweep(&self, pool: &PgPool) -> Result<Vec<ErasureReceipt>, privacy::ErasureError> {
        let receipts = privacy::sweep(pool, &self.policy, &self.list).await?;
        for receipt in &receipts {
            record_erasure(pool, SWEEP_ACTOR, receipt).await;
        }
        Ok(receipts)
    }
}

/// Stores an audit activity (`user_id` null) through the store's writer;
/// a failure is logged, not returned: the action it records is done.
pub async fn record(pool: &PgPool, action: &str, details: Map<String, Value>) {
    let action = ActivityType::custom(action).expect("the audit actions are valid names");
    let mut activity = Activity::new(action);
    activity.details = Some(details);
    if let Err(e) = activity_store::writer::write_batch(pool, &[activity]).await {
        tracing::error!(error = %e, "storing an audit record failed");
    }
}

/// Records an erasure as a `user_erased` activity: mode, who, rows, and
/// the pseudonym for `pseudonymize`.
pub async fn record_erasure(pool: &PgPool, who: &str, receipt: &ErasureReceipt) {
    let mut details = Map::new();
    details.insert("mode".into(), receipt.mode.as_str().into());
    details.insert("who".into(), who.into());
    details.insert("rows".into(), receipt.rows.into());
    if let Some(pseudonym) = &receipt.pseudonym {
        details.insert("pseudonym".into(), pseudonym.as_str().into());
    }
    record(pool, "user_erased", details).await;
}

/// Reloads the erasure list every [`LIST_REFRESH`] and sweeps every
/// [`SWEEP_PERIOD`], until `token` is cancelled.
pub(crate) async fn maintain(privacy: Arc<Privacy>, pool: PgPool, token: CancellationToken) {
    let mut refresh = tokio::time::interval(LIST_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sweep = tokio::time::interval(SWEEP_PERIOD);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = refresh.tick() => {
                if let Err(e) = privacy.list.refresh(&pool).await {
                    tracing::warn!(error = %e, "reloading the erasure list failed; retrying");
                }
            }
            _ = sweep.tick() => {
                match privacy.sweep(&pool).await {
                    Ok(receipts) if !receipts.is_empty() => {
                        let rows: u64 = receipts.iter().map(|r| r.rows).sum();
                        tracing::info!(users = receipts.len(), rows, "erasure sweep erased late rows");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "erasure sweep failed; next period retries"),
                }
            }
        }
    }
}
