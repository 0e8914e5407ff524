//! Personal data in the activity log: erasing or pseudonymizing a user
//! ([`erase_user`]), exporting everything held about one ([`ExportCursor`]),
//! and the erasure list that keeps erasing the events of an erased user
//! that arrive later ([`ErasureList`], checked by the writer through
//! [`StorageRules`](crate::normalize::StorageRules), and [`sweep`] for the
//! rows that reached the table without that check).
//!
//! A user is known to the list only by a keyed hash of their id
//! ([`PseudonymKey::hash`], HMAC-SHA-256 with `PSEUDONYM_KEY`); the same
//! hash, in hex after `erased:`, is the pseudonym that replaces the id in
//! `pseudonymize` mode, so it is stable: the same user always gets the same
//! pseudonym, and figures keep counting them as one user.
//!
//! ```no_run
//! # async fn demo(pool: sqlx::PgPool) -> Result<(), activity_store::privacy::ErasureError> {
//! use activity_store::privacy::{self, ErasureList, ErasureMode, ErasurePolicy, PseudonymKey};
//!
//! let policy = ErasurePolicy::new(Some(PseudonymKey::new(b"a long random secret")));
//! let list = ErasureList::new();
//! let receipt =
//!     privacy::erase_user(&pool, "user-42", ErasureMode::Pseudonymize, &policy, &list).await?;
//! println!("{} rows now belong to {:?}", receipt.rows, receipt.pseudonym);
//! # Ok(()) }
//! ```

mod erase;
mod export;
mod list;

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use erase::{
    ErasureError, ErasureReceipt, PartitionRows, erase_user, erase_user_with_chunk, sweep,
};
pub use export::{ExportCursor, ExportRow};
pub use list::{ErasureList, UserHash};

/// The prefix of every pseudonym.
pub const PSEUDONYM_PREFIX: &str = "erased:";

/// The `details` keys a pseudonymized row keeps by default: the layer's
/// own, which say nothing about the person.
pub const DEFAULT_KEEP_DETAIL_KEYS: [&str; 5] =
    ["method", "route", "status", "latency_ms", "request_id"];

/// Days an erased user stays on the erasure list by default.
pub const DEFAULT_HOLD_DAYS: u32 = 30;

/// How a user is erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErasureMode {
    /// Every row of the user is deleted; the figures no longer count them.
    Delete,
    /// `user_id` becomes the user's pseudonym; `ip_address`, `user_agent`,
    /// `session_id` and the `details` keys not kept are cleared. The
    /// figures keep counting the rows.
    Pseudonymize,
}

impl ErasureMode {
    /// `delete` or `pseudonymize`, as stored and as the API spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErasureMode::Delete => "delete",
            ErasureMode::Pseudonymize => "pseudonymize",
        }
    }
}

impl std::str::FromStr for ErasureMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "delete" => Ok(ErasureMode::Delete),
            "pseudonymize" => Ok(ErasureMode::Pseudonymize),
            other => Err(format!(
                "mode must be delete or pseudonymize (got {other:?})"
            )),
        }
    }
}

/// The key of the pseudonyms and of the erasure list's hashes
/// (`PSEUDONYM_KEY`). Its `Debug` never shows it.
#[derive(Clone)]
pub struct PseudonymKey {
    /// The HMAC with the key already absorbed: each hash clones it.
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PseudonymKey(***)")
    }
}

impl PseudonymKey {
    /// A key from its bytes (any length; HMAC hashes a long one).
    pub fn new(key: &[u8]) -> Self {
        Self {
            mac: Hmac::new_from_slice(key).expect("HMAC takes keys of any length"),
        }
    }

    /// The keyed hash of a user id as stored (see
    /// [`stored_user_id`](crate::normalize::stored_user_id)).
    pub fn hash(&self, user_id: &str) -> UserHash {
        let mut mac = self.mac.clone();
        mac.update(user_id.as_bytes());
        UserHash(mac.finalize().into_bytes().into())
    }

    /// The pseudonym of a user id as stored: `erased:` and the hex of its
    /// [`hash`](Self::hash).
    pub fn pseudonym(&self, user_id: &str) -> String {
        self.hash(user_id).pseudonym()
    }
}

/// What an erasure needs besides the user: the key, the `details` keys a
/// pseudonymized row keeps, and how long the erased user stays on the list.
#[derive(Debug, Clone)]
pub struct ErasurePolicy {
    /// `PSEUDONYM_KEY`; without it pseudonymizing is refused and erased
    /// users are not held on the erasure list.
    pub key: Option<PseudonymKey>,
    /// `ERASE_KEEP_DETAIL_KEYS`.
    pub keep_detail_keys: Vec<String>,
    /// `ERASURE_HOLD_DAYS`.
    pub hold_days: u32,
}

impl ErasurePolicy {
    /// The defaults, with `key`.
    pub fn new(key: Option<PseudonymKey>) -> Self {
        Self {
            key,
            keep_detail_keys: DEFAULT_KEEP_DETAIL_KEYS.map(str::to_owned).to_vec(),
            hold_days: DEFAULT_HOLD_DAYS,
        }
    }

    /// Whether a pseudonymized row keeps this `details` key.
    pub fn keeps_detail(&self, key: &str) -> bool {
        self.keep_detail_keys.iter().any(|k| k == key)
    }

    /// Whether `user_id` (as a caller names it: normalized as stored
    /// first) is held on `list`: erased, and its hold not over. Always
    /// false without a key, which holds nobody.
    pub fn is_held(&self, list: &ErasureList, user_id: &str) -> bool {
        match &self.key {
            Some(key) if !list.is_empty() => {
                let stored = crate::normalize::stored_user_id(user_id);
                list.mode_of(&key.hash(&stored)).is_some()
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_keyed_and_hide_the_key() {
        let key = PseudonymKey::new(b"k1");
        let p = key.pseudonym("alice");
        assert_eq!(p, key.pseudonym("alice"));
        assert!(p.starts_with(PSEUDONYM_PREFIX) && p.len() == PSEUDONYM_PREFIX.len() + 64);
        assert_ne!(p, key.pseudonym("bob"));
        assert_ne!(p, PseudonymKey::new(b"k2").pseudonym("alice"));
        // RFC 4231 test case 2: the hash is plain HMAC-SHA-256.
        assert_eq!(
            PseudonymKey::new(b"Jefe")
                .hash("what do ya want for nothing?")
                .to_string(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(format!("{key:?}"), "PseudonymKey(***)");
    }
}

#[cfg(test)]
mod db_tests;
