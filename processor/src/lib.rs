//! The activity processor: drains the activity stream into PostgreSQL and
//! serves the admin API and its dashboard page.
//!
//! The binary `activity-processor serve` is [`run`] with a [`Config`] from
//! the command line; tests and examples run the whole processor in-process:
//!
//! ```no_run
//! # async fn example() -> Result<(), activity_processor::RunError> {
//! use activity_processor::{Config, Processor};
//! use tokio_util::sync::CancellationToken;
//!
//! let mut config = Config::from_env();
//! config.admin_listen = "127.0.0.1:0".into();
//! let token = CancellationToken::new();
//! let processor = Processor::start(config, token.clone()).await?;
//! println!("health on http://{}/readyz", processor.local_addr());
//! token.cancel(); // what SIGTERM does: the batch in hand is committed and acknowledged
//! processor.wait().await
//! # }
//! ```

pub mod admin;
pub mod alerts;
pub mod config;
pub mod consumer;
pub mod dashboard;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod ingest;
pub mod privacy;
mod queue_length;
pub mod redrive;
pub mod server;
pub mod stats;
pub mod webhook;

pub mod db_message;

mod run;

pub use config::Config;
pub use run::{Context, Processor, RunError, connect_database, run};
