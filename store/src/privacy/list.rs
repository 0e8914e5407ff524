//! The erasure list (`activity_erasures`) and its copy in memory, which the
//! writer checks each event against.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{ErasureMode, PSEUDONYM_PREFIX};

/// The keyed hash of a user id ([`PseudonymKey::hash`](super::PseudonymKey::hash)).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserHash(pub(super) [u8; 32]);

impl UserHash {
    /// `erased:` and the hash in hex.
    pub fn pseudonym(&self) -> String {
        format!("{PSEUDONYM_PREFIX}{self}")
    }

    /// The hash's bytes, as stored.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Display for UserHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for UserHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserHash({self})")
    }
}

/// The users on the erasure list, in memory: what the writer checks every
/// event against without a query. Cheap to clone (one shared copy).
///
/// [`refresh`](Self::refresh) reloads it from the table (the processor does
/// on a timer, and after each erasure it makes), so an erasure made by
/// another processor is seen within one refresh; rows stored meanwhile are
/// caught by the [`sweep`](super::sweep).
#[derive(Debug, Clone, Default)]
pub struct ErasureList {
    users: Arc<RwLock<Arc<HashMap<UserHash, ErasureMode>>>>,
}

impl ErasureList {
    /// An empty list (until the first refresh).
    pub fn new() -> Self {
        Self::default()
    }

    /// Reloads the users still held (their hold not over); returns how many.
    pub async fn refresh(&self, pool: &PgPool) -> Result<usize, sqlx::Error> {
        let rows: Vec<(Vec<u8>, String)> = sqlx::query_as(
            "SELECT user_hash, mode FROM activity_erasures WHERE hold_until > now()",
        )
        .fetch_all(pool)
        .await?;
        let users: HashMap<UserHash, ErasureMode> = rows
            .into_iter()
            .filter_map(|(hash, mode)| {
                let hash: [u8; 32] = hash.try_into().ok()?;
                Some((UserHash(hash), mode.parse().ok()?))
            })
            .collect();
        let n = users.len();
        *self.users.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(users);
        Ok(n)
    }

    /// Whether nobody is held: the writer then hashes nothing.
    pub fn is_empty(&self) -> bool {
        self.snapshot().is_empty()
    }

    /// How the user of this hash was erased, if they are held.
    pub fn mode_of(&self, hash: &UserHash) -> Option<ErasureMode> {
        self.snapshot().get(hash).copied()
    }

    fn snapshot(&self) -> Arc<HashMap<UserHash, ErasureMode>> {
        self.users.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Puts the user on the list (or renews their hold, with the latest mode),
/// committed before any row is touched, so that writers start erasing the
/// user's new events while the erasure runs.
pub(super) async fn hold(
    pool: &PgPool,
    hash: &UserHash,
    mode: ErasureMode,
    hold_until: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO activity_erasures (user_hash, mode, erased_at, hold_until)
         VALUES ($1, $2, now(), $3)
         ON CONFLICT (user_hash) DO UPDATE
         SET mode = excluded.mode, erased_at = excluded.erased_at,
             hold_until = GREATEST(activity_erasures.hold_until, excluded.hold_until)",
    )
    .bind(hash.as_bytes().as_slice())
    .bind(mode.as_str())
    .bind(hold_until)
    .execute(pool)
    .await?;
    Ok(())
}

/// Forgets the users whose hold is over; returns how many.
pub(super) async fn expire(pool: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM activity_erasures WHERE hold_until <= now()")
            .execute(pool)
            .await?
            .rows_affected(),
    )
}
