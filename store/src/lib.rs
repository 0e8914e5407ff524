//! The PostgreSQL store of activity tracking: it owns `user_activity_logs`
//! and everything derived from it.
//!
//! - [`schema`]: the embedded migrations, the monthly partitions made ahead
//!   of time, retention by dropping whole partitions;
//! - [`writer`]: the idempotent batch writer every path that stores rows
//!   goes through (the processor, the layer's Redis-down fallback), and
//!   [`normalize`], the one place that decides what a stored row may hold;
//! - [`rollups`]: the aggregate tables the admin figures come from, each
//!   sum defined once and used by every insert path and by the rebuild;
//! - [`queries`]: the admin API's read queries as library functions;
//! - [`privacy`]: erasing, pseudonymizing and exporting one user, and the
//!   erasure list that keeps erasing their late events;
//! - [`PostgresSink`]: the writer as an [`activity_tracker::Sink`], for the
//!   tracker's Redis-down fallback.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use activity_store::{queries, schema, writer};
//! use activity_tracker::{Activity, ActivityType};
//!
//! let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/postgres").await?;
//! schema::migrate(&pool).await?;
//! schema::ensure_partitions(&pool, chrono::Utc::now(), 2).await?;
//! writer::write_batch(&pool, &[Activity::new(ActivityType::Login).user_id("alice")]).await?;
//! let stats = queries::get_user_activity_stats(&pool, "alice", 30).await?;
//! assert_eq!(stats.total_activities, 1);
//! # Ok(()) }
//! ```

pub mod alerts;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod normalize;
pub mod privacy;
pub mod queries;
pub mod rollups;
pub mod schema;
mod sink;
pub mod writer;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use schema::MIGRATOR;
pub use sink::PostgresSink;
