//! The delivery worker: claims due deliveries, sends each signed, records
//! the outcome, counts it.

use std::sync::Arc;
use std::time::Duration;

use activity_store::alerts;
use activity_tracker::Backoff;
use chrono::Utc;
use hyper::Uri;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::client::{Answer, Sender};
use super::queue::{self, Claimed};
use super::{WebhookConfig, payload};

/// Counter of finished attempts and deliveries, by `outcome`: `delivered`,
/// `retried` (an attempt failed, another is scheduled), `failed` (given up:
/// refused, or the retry window passed), `disabled` (not sent or no more:
/// the URL answered 410).
pub const DELIVERIES_METRIC: &str = "activity_processor_alert_deliveries_total";
/// Gauge of the webhook URLs disabled after a 410.
pub const DISABLED_URLS_METRIC: &str = "activity_processor_alert_webhook_disabled_urls";

/// How often the disabled-URLs gauge is read from the table (other
/// processors disable URLs too).
const GAUGE_PERIOD: Duration = Duration::from_secs(30);
/// Pauses after a failed claim (the database is down or busy).
const DB_BACKOFF: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(10));

/// Sends alert webhooks until `shutdown`: claims due deliveries (up to
/// `max_in_flight` at once, looking every `poll_interval` when idle), posts
/// each signed, and records it `delivered`, retried later with backoff,
/// `failed`, or `disabled` with its URL after a 410 Gone. At shutdown it
/// stops claiming and lets the attempts under way finish and be recorded
/// (each is bounded by the request timeout).
///
/// Any number of workers, in one processor or several, may run on one
/// database: each attempt is leased to one of them.
pub async fn run_deliveries(pool: PgPool, config: Arc<WebhookConfig>, shutdown: CancellationToken) {
    let sender = Sender::new(&config);
    for outcome in Outcome::ALL {
        metrics::counter!(DELIVERIES_METRIC, "outcome" => outcome.as_str()).increment(0);
    }
    let mut in_flight = JoinSet::new();
    let mut db_backoff = Backoff::new(DB_BACKOFF.0, DB_BACKOFF.1);
    let mut gauge = tokio::time::interval(GAUGE_PERIOD);
    gauge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !shutdown.is_cancelled() {
        let free = config.max_in_flight.max(1).saturating_sub(in_flight.len());
        let mut pause = config.poll_interval;
        if free > 0 {
            match queue::claim(&pool, free, config.lease()).await {
                Ok(claimed) => {
                    db_backoff.reset();
                    // A full claim: more may be due at once.
                    if claimed.len() == free {
                        pause = Duration::ZERO;
                    }
                    for delivery in claimed {
                        if delivery.disabled {
                            count(Outcome::Disabled, 1);
                            continue;
                        }
                        in_flight.spawn(deliver(
                            pool.clone(),
                            config.clone(),
                            sender.clone(),
                            delivery,
                        ));
                    }
                }
                Err(e) => {
                    pause = db_backoff.next_delay();
                    tracing::warn!(error = %e, retry_in = ?pause, "claiming webhook deliveries failed");
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => {}
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => report_panic(done),
            _ = tokio::time::sleep(pause) => {}
            _ = gauge.tick() => refresh_gauge(&pool).await,
        }
    }
    while let Some(done) = in_flight.join_next().await {
        report_panic(done);
    }
}

/// What a delivery's attempt came to, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    Retried,
    Failed,
    Disabled,
}

impl Outcome {
    const ALL: [Outcome; 4] = [
        Outcome::Delivered,
        Outcome::Retried,
        Outcome::Failed,
        Outcome::Disabled,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retried => "retried",
            Outcome::Failed => "failed",
            Outcome::Disabled => "disabled",
        }
    }
}

fn count(outcome: Outcome, n: u64) {
    metrics::counter!(DELIVERIES_METRIC, "outcome" => outcome.as_str()).increment(n);
}

/// One attempt of `delivery`: the alert read afresh, signed now, posted,
/// and its outcome recorded.
async fn deliver(pool: PgPool, config: Arc<WebhookConfig>, sender: Sender, delivery: Claimed) {
    let url = loggable(&delivery.url);
    let alert = match alerts::get_alert(&pool, delivery.alert_id).await {
        Ok(Some(alert)) => alert,
        // The alert was deleted, and with it (ON DELETE CASCADE) its
        // deliveries: nothing is left to send or record.
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, webhook_id = %delivery.webhook_id,
                "reading an alert to deliver failed; it is tried again shortly");
            if let Err(e) = queue::release(&pool, &delivery).await {
                tracing::debug!(error = %e, "giving back a delivery's lease failed; it expires");
            }
            return;
        }
    };
    let body = payload::body(&alert, &config.admin_url(alert.id));
    let headers = config
        .secret
        .sign(&delivery.webhook_id, Utc::now().timestamp(), &body);
    let answer = sender.post(&delivery.url, &headers, body).await;
    let attempt = delivery.attempts + 1;
    let recorded = match &answer {
        Answer::Delivered => queue::record_delivered(&pool, &delivery).await.map(|done| {
            if done {
                count(Outcome::Delivered, 1);
                tracing::debug!(%url, webhook_id = %delivery.webhook_id, attempt, "webhook delivered");
            }
        }),
        Answer::Retry(error) => {
            let delay = retry_delay(&config, attempt);
            queue::record_retry(&pool, &delivery, error, delay, config.retry_for)
                .await
                .map(|status| match status.as_deref() {
                    Some("pending") => {
                        count(Outcome::Retried, 1);
                        tracing::info!(%url, webhook_id = %delivery.webhook_id, attempt, %error,
                            retry_in = ?delay, "webhook delivery failed; retrying later");
                    }
                    Some(_) => {
                        count(Outcome::Failed, 1);
                        tracing::warn!(%url, webhook_id = %delivery.webhook_id, attempt, %error,
                            "webhook delivery failed and its retry window (ALERT_WEBHOOK_RETRY_HOURS) has passed; given up");
                    }
                    None => lost_lease(&delivery),
                })
        }
        Answer::Refused(error) => queue::record_failed(&pool, &delivery, error)
            .await
            .map(|done| {
                if done {
                    count(Outcome::Failed, 1);
                    tracing::warn!(%url, webhook_id = %delivery.webhook_id, attempt, %error,
                        "webhook receiver refused the delivery; it is not retried");
                } else {
                    lost_lease(&delivery);
                }
            }),
        Answer::Gone(error) => match queue::disable_url(&pool, &delivery, error).await {
            Ok(disabled) => {
                count(Outcome::Disabled, disabled);
                tracing::warn!(%url, webhook_id = %delivery.webhook_id, %error, disabled,
                    "webhook URL answered 410 Gone: it is disabled and its pending deliveries with it");
                refresh_gauge(&pool).await;
                Ok(())
            }
            Err(e) => Err(e),
        },
    };
    if let Err(e) = recorded {
        tracing::warn!(error = %e, %url, webhook_id = %delivery.webhook_id, ?answer,
            "recording a webhook attempt failed; the delivery is sent again once its lease has passed");
    }
}

fn lost_lease(delivery: &Claimed) {
    tracing::debug!(webhook_id = %delivery.webhook_id,
        "a webhook attempt outlived its lease; another worker records that delivery");
}

/// The delay before the attempt after `attempt` failed: the project's one
/// [`Backoff`] (doubling from `backoff_initial`, capped, jittered). A
/// delivery's state is its row, so the backoff is replayed to its attempt.
fn retry_delay(config: &WebhookConfig, attempt: i32) -> Duration {
    let mut backoff = Backoff::new(config.backoff_initial, config.backoff_max);
    // Past 64 doublings every delay is the cap.
    let steps = attempt.clamp(1, 64);
    let mut delay = backoff.next_delay();
    for _ in 1..steps {
        delay = backoff.next_delay();
    }
    delay
}

async fn refresh_gauge(pool: &PgPool) {
    match queue::count_disabled(pool).await {
        Ok(n) => metrics::gauge!(DISABLED_URLS_METRIC).set(n as f64),
        Err(e) => tracing::debug!(error = %e, "counting disabled webhook URLs failed"),
    }
}

fn report_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!(error = %e, "a webhook delivery panicked; it is sent again once its lease has passed");
    }
}

/// A URL for the logs: scheme and host only, since paths and queries of
/// webhook URLs often carry tokens.
fn loggable(url: &str) -> String {
    match url.parse::<Uri>() {
        Ok(uri) => match (uri.scheme_str(), uri.authority()) {
            (Some(scheme), Some(authority)) => format!("{scheme}://{authority}/…"),
            _ => "(not a URL)".into(),
        },
        Err(_) => "(not a URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_from_the_base_up_to_the_cap() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
        let mut config =
            WebhookConfig::new(vec!["http://a.example/".into()], secret, "http://x".into())
                .unwrap();
        config.backoff_initial = Duration::from_secs(5);
        config.backoff_max = Duration::from_secs(3600);
        let nominal = [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600];
        for (i, secs) in nominal.into_iter().enumerate() {
            let nominal = Duration::from_secs(secs);
            let delay = retry_delay(&config, i as i32 + 1);
            assert!(
                delay >= nominal / 2 && delay <= nominal,
                "attempt {}: {delay:?} vs {nominal:?}",
                i + 1
            );
        }
        assert!(retry_delay(&config, 1000) <= Duration::from_secs(3600));
    }

    #[test]
    fn logged_urls_keep_only_scheme_and_host() {
        assert_eq!(
            loggable("https://hooks.example.com/services/T0/B0/secret?token=x"),
            "https://hooks.example.com/…"
        );
        assert_eq!(loggable("http://10.0.0.7:9000"), "http://10.0.0.7:9000/…");
        assert_eq!(loggable("nonsense here"), "(not a URL)");
    }
}
