//! Alert webhooks: the delivery side.
//!
//! The alert rules (`crate::alerts`) raise an alert and, in the same
//! transaction, one row of `user_activity_alert_deliveries` per URL of
//! `ALERT_WEBHOOK_URLS` (migration `0006_alerts.sql`). [`run_deliveries`]
//! sends those rows: the alert as the admin API shows it, in a Standard
//! Webhooks envelope, signed with `ALERT_WEBHOOK_SECRET`
//! ([`WebhookSecret`]), the same `webhook-id` on every attempt so that
//! receivers can drop duplicates (delivery is at least once). Timeouts,
//! connection errors, 429 and 5xx are retried with backoff for
//! `ALERT_WEBHOOK_RETRY_HOURS`; another 4xx fails the delivery at once; a
//! 410 Gone disables the URL (`user_activity_webhook_disabled`,
//! [`disabled_urls`]). The payload, headers and verification are in
//! `docs/webhooks.md`.
//!
//! - `config.rs`: the settings, checked ([`WebhookConfig`]).
//! - `signing.rs`: the secret and the signature headers.
//! - `payload.rs`: the body.
//! - `client.rs`: one POST over http or https, and what its answer means.
//! - `queue.rs`: the delivery rows: claims under a lease, outcomes,
//!   disabled URLs.
//! - `delivery.rs`: the worker loop and its metrics.
//!
//! ```no_run
//! # async fn demo(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use activity_processor::webhook::{WebhookConfig, WebhookSettings, run_deliveries};
//! use tokio_util::sync::CancellationToken;
//!
//! let settings = WebhookSettings {
//!     urls: Some("https://hooks.example.com/alerts"),
//!     secret: Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
//!     retry_hours: 24,
//!     link_base_url: Some("https://admin.example.com"),
//!     admin_listen: "127.0.0.1:8080".parse()?,
//! };
//! if let Some(config) = WebhookConfig::from_settings(&settings)? {
//!     let shutdown = CancellationToken::new();
//!     tokio::spawn(run_deliveries(pool, Arc::new(config), shutdown.clone()));
//! }
//! # Ok(()) }
//! ```

mod client;
mod config;
mod delivery;
pub mod payload;
mod queue;
mod signing;

pub use config::{
    DEFAULT_BACKOFF_INITIAL, DEFAULT_BACKOFF_MAX, DEFAULT_MAX_IN_FLIGHT, DEFAULT_POLL_INTERVAL,
    DEFAULT_REQUEST_TIMEOUT, DEFAULT_RETRY_HOURS, WebhookConfig, WebhookConfigError,
    WebhookSettings, default_link_base_url, parse_link_base_url, parse_urls, retry_for,
};
pub use delivery::{DELIVERIES_METRIC, DISABLED_URLS_METRIC, run_deliveries};
pub use queue::{DisabledUrl, disabled_urls};
pub use signing::{MIN_SECRET_BYTES, SECRET_PREFIX, SignedHeaders, WebhookSecret};
