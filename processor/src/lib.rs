//! The activity processor: drains the activity stream into PostgreSQL and
//! serves the admin API.

pub mod analytics;
pub mod schema;
