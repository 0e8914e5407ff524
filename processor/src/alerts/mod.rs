//! Alert rules evaluated on stored rows.
//!
//! Every row inserted into `user_activity_logs`, by this processor, another
//! one or the layer's direct-to-PostgreSQL fallback, also lands in
//! `user_activity_alert_inbox` (a trigger, migration `0006_alerts.sql`),
//! in the same transaction and only if it was really inserted. The
//! evaluator takes the inbox's oldest rows, evaluates the [`rules`] in
//! event-time order ([`evaluate`]) and deletes the rows in the transaction
//! that records the alerts: every stored event counts once, a redelivered
//! duplicate never, and a crash loses nothing. Alerts are rows of
//! `user_activity_alerts`, one per episode; webhook deliveries are rows
//! made with them, sent by the webhook module.
//!
//! ```no_run
//! # async fn demo(pool: sqlx::PgPool) {
//! use std::sync::Arc;
//! use activity_processor::alerts::{AlertSettings, rules::RuleSet, run_evaluator};
//!
//! let settings = AlertSettings::new(Arc::new(RuleSet::builtin()));
//! run_evaluator(pool, settings, tokio_util::sync::CancellationToken::new()).await;
//! # }
//! ```

pub mod evaluate;
pub mod rules;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use evaluate::{PassOutcome, PassSettings, evaluate_pass, prune_windows};
use rules::RuleSet;

/// Inbox rows a pass takes at most.
pub const PASS_LIMIT: i64 = 5000;
/// How often old window events are pruned.
const PRUNE_PERIOD: Duration = Duration::from_secs(30);
/// Wait after a failed pass (the database is down or busy).
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// How the evaluator runs.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// The rules (empty: the inbox is emptied without evaluating).
    pub rules: Arc<RuleSet>,
    /// `ALERT_MAX_LATENESS`.
    pub max_lateness: Duration,
    /// How often an idle evaluator looks at the inbox.
    pub interval: Duration,
    /// `ALERT_WEBHOOK_URLS`: each new alert gets a delivery to each.
    pub webhook_urls: Vec<String>,
}

impl AlertSettings {
    /// `rules` with the defaults: 1 h lateness, a look every 200 ms, no
    /// webhooks.
    pub fn new(rules: Arc<RuleSet>) -> Self {
        Self {
            rules,
            max_lateness: Duration::from_secs(3600),
            interval: Duration::from_millis(200),
            webhook_urls: Vec::new(),
        }
    }
}

/// Evaluates the inbox until `shutdown`: a pass, then the next at once if
/// it was full, else after `interval`. A pass in progress at shutdown
/// finishes (or rolls back: its rows stay in the inbox).
pub async fn run_evaluator(pool: PgPool, settings: AlertSettings, shutdown: CancellationToken) {
    let pass = PassSettings {
        batch_limit: PASS_LIMIT,
        max_lateness: settings.max_lateness,
        webhook_urls: settings.webhook_urls.clone(),
    };
    let mut last_prune = Instant::now();
    loop {
        let pause = match evaluate_pass(&pool, &settings.rules, &pass).await {
            Ok(outcome) => {
                record(&outcome);
                if outcome.taken as i64 >= PASS_LIMIT {
                    Duration::ZERO
                } else {
                    settings.interval
                }
            }
            Err(error) => {
                tracing::warn!(%error, "alert evaluation failed; the events stay in the inbox and are evaluated on the next pass");
                metrics::counter!("activity_processor_alert_evaluation_errors_total").increment(1);
                ERROR_PAUSE
            }
        };
        if last_prune.elapsed() >= PRUNE_PERIOD {
            last_prune = Instant::now();
            if let Err(error) = prune_windows(&pool, &settings.rules, settings.max_lateness).await {
                tracing::warn!(%error, "pruning old alert window events failed");
            }
        }
        if pause.is_zero() {
            if shutdown.is_cancelled() {
                return;
            }
            continue;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

fn record(outcome: &PassOutcome) {
    if outcome.evaluated > 0 {
        metrics::counter!("activity_processor_alert_events_evaluated_total")
            .increment(outcome.evaluated as u64);
    }
    if outcome.late > 0 {
        metrics::counter!("activity_processor_alert_events_late_total")
            .increment(outcome.late as u64);
        tracing::info!(
            events = outcome.late,
            "events stored more than ALERT_MAX_LATENESS after they happened were not evaluated"
        );
    }
    for rule in &outcome.raised {
        metrics::counter!("activity_processor_alerts_raised_total", "rule" => rule.clone())
            .increment(1);
    }
}

/// Rows waiting in the inbox (for `queue-status`).
pub async fn inbox_length(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM user_activity_alert_inbox")
        .fetch_one(pool)
        .await
}
