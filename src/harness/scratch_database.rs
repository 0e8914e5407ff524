//! A database of a test's own on the shared PostgreSQL, made empty and
//! dropped at the end, so tests run side by side without seeing each
//! other's rows.

use sqlx::{AssertSqlSafe, Connection};

/// A database made on `DATABASE_URL`'s server (default
/// `postgres://postgres@127.0.0.1:5432/postgres`), named after the test
/// and a UUID v7; removed by [`ScratchDatabase::drop`] (with `FORCE`:
/// connections still open are closed).
#[derive(Debug)]
pub struct ScratchDatabase {
    admin_url: String,
    name: String,
    /// Its URL, for `DATABASE_URL` or a pool.
    pub url: String,
}

impl ScratchDatabase {
    /// Makes the database `<prefix>_<uuid>` (`-` in `prefix` become `_`).
    pub async fn create(prefix: &str) -> ScratchDatabase {
        let admin_url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!(
            "{}_{}",
            prefix.replace('-', "_"),
            uuid::Uuid::now_v7().simple()
        );
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("PostgreSQL at DATABASE_URL");
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("CREATE DATABASE");
        let (base, _) = admin_url.rsplit_once('/').expect("a URL with a database");
        let url = format!("{base}/{name}");
        ScratchDatabase {
            admin_url,
            name,
            url,
        }
    }

    /// Drops it.
    pub async fn drop(self) {
        let mut admin = sqlx::PgConnection::connect(&self.admin_url)
            .await
            .expect("PostgreSQL at DATABASE_URL");
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await
        .expect("DROP DATABASE");
    }
}
