//! What a stored row may hold: the one place every path that writes
//! `user_activity_logs` (the processor, the layer's fallback, any later
//! ingest) normalizes an event before it is stored.
//!
//! Two kinds of rules:
//!
//! - the wire format's limits ([`Activity::normalize`]), always applied:
//!   texts truncated on a character boundary to their column's length,
//!   `details` over 16 KiB replaced by a note of their size.
//!   [`needs_normalizing`] is the cheap test the writer runs on every event
//!   (so that the events needing nothing stay borrowed), [`normalize`]
//!   applies them;
//! - the deployment's [`StorageRules`], which the processor configures:
//!   IP truncation (`IP_TRUNCATION`), and the erasure list (events of a
//!   user erased are dropped or pseudonymized on arrival, like the
//!   erasure did to their stored rows). [`StorageRules::verdict`] is the
//!   cheap test, [`StorageRules::apply`] the fix.
//!
//! A new rule goes in both functions of its kind.
//!
//! ```
//! use activity_store::normalize;
//! use activity_tracker::{Activity, ActivityType};
//!
//! let mut activity = Activity::new(ActivityType::Login).user_agent("x".repeat(600));
//! assert!(normalize::needs_normalizing(&activity, None));
//! normalize::normalize(&mut activity);
//! assert_eq!(activity.user_agent.as_deref().map(str::len), Some(500));
//! assert!(!normalize::needs_normalizing(&activity, None));
//! ```

use std::borrow::Cow;
use std::sync::Arc;

use activity_tracker::{Activity, IpTruncation, limits, truncate_chars};

use crate::privacy::{ErasureList, ErasureMode, ErasurePolicy, UserHash};

/// Whether [`normalize`] would change `activity`, whose `details` are
/// `details_json` (the text the writer would store). Cheap: no text is
/// copied or parsed.
pub fn needs_normalizing(activity: &Activity, details_json: Option<&str>) -> bool {
    over(&activity.user_agent, limits::USER_AGENT_MAX_CHARS)
        || over(&activity.session_id, limits::SESSION_ID_MAX_CHARS)
        || over(&activity.resource_type, limits::RESOURCE_TYPE_MAX_CHARS)
        || over(&activity.resource_id, limits::RESOURCE_ID_MAX_CHARS)
        || over(&activity.user_id, limits::USER_ID_MAX_CHARS)
        || details_json.is_some_and(|json| json.len() > limits::DETAILS_MAX_BYTES)
}

/// Makes `activity` storable; returns whether anything changed.
pub fn normalize(activity: &mut Activity) -> bool {
    activity.normalize()
}

/// A user id as the writer stores it: truncated like
/// [`Activity::normalize`] truncates it. What an erasure looks a user up by.
pub fn stored_user_id(user_id: &str) -> Cow<'_, str> {
    if over(&Some(user_id), limits::USER_ID_MAX_CHARS) {
        let mut owned = user_id.to_owned();
        truncate_chars(&mut owned, limits::USER_ID_MAX_CHARS);
        Cow::Owned(owned)
    } else {
        Cow::Borrowed(user_id)
    }
}

/// The rules a deployment adds to the wire format's limits. The default
/// adds none.
///
/// ```
/// use activity_store::normalize::{StorageRules, Verdict};
/// use activity_tracker::{Activity, ActivityType, IpTruncation};
///
/// let rules = StorageRules {
///     ip_truncation: Some(IpTruncation::new(24, 48).unwrap()),
///     ..StorageRules::default()
/// };
/// let mut activity = Activity::new(ActivityType::Login).ip_address([192, 0, 2, 77].into());
/// let verdict = rules.verdict(&activity);
/// assert_eq!(verdict, Verdict::Change(None));
/// rules.apply(&mut activity, &verdict);
/// assert_eq!(activity.ip_address, Some([192, 0, 2, 0].into()));
/// ```
#[derive(Debug, Clone, Default)]
pub struct StorageRules {
    /// Client addresses cut to their network prefix (`IP_TRUNCATION`).
    pub ip_truncation: Option<IpTruncation>,
    /// Events of users on the erasure list erased on arrival.
    pub erasure: Option<ErasureCheck>,
}

/// The erasure list the writer checks, with the policy (key, `details`
/// keys kept) to erase by.
#[derive(Debug, Clone)]
pub struct ErasureCheck {
    /// The key (without one nothing is checked) and the `details` kept.
    pub policy: Arc<ErasurePolicy>,
    /// Who is held.
    pub list: ErasureList,
}

/// What [`StorageRules`] do to one event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Nothing: it is stored as it is.
    AsIs,
    /// It is changed before it is stored; by a pseudonymizing erasure when
    /// the hash of its user is given.
    Change(Option<UserHash>),
    /// Its user was erased by deletion: it is not stored.
    Drop,
}

impl StorageRules {
    /// No rule beyond the wire format's limits.
    pub const NONE: StorageRules = StorageRules {
        ip_truncation: None,
        erasure: None,
    };

    /// What these rules do to `activity`. Cheap when they do nothing: the
    /// user id is hashed only while someone is on the erasure list.
    pub fn verdict(&self, activity: &Activity) -> Verdict {
        if let (Some(check), Some(user)) = (&self.erasure, activity.user_id.as_deref())
            && let Some(key) = &check.policy.key
            && !check.list.is_empty()
        {
            let hash = key.hash(&stored_user_id(user));
            match check.list.mode_of(&hash) {
                Some(ErasureMode::Delete) => return Verdict::Drop,
                Some(ErasureMode::Pseudonymize) => return Verdict::Change(Some(hash)),
                None => {}
            }
        }
        match (self.ip_truncation, activity.ip_address) {
            (Some(cut), Some(ip)) if cut.changes(ip) => Verdict::Change(None),
            _ => Verdict::AsIs,
        }
    }

    /// Applies `verdict` (of [`verdict`](Self::verdict) on this activity,
    /// after [`normalize`]). A pseudonymized event keeps only the `details`
    /// keys of the policy and loses its address, user agent and session,
    /// as the erasure did to the user's stored rows.
    pub fn apply(&self, activity: &mut Activity, verdict: &Verdict) {
        if let Verdict::Change(Some(hash)) = verdict {
            activity.user_id = Some(hash.pseudonym());
            activity.ip_address = None;
            activity.user_agent = None;
            activity.session_id = None;
            if let (Some(details), Some(check)) = (&mut activity.details, &self.erasure) {
                details.retain(|key, _| check.policy.keeps_detail(key));
            }
            if activity.details.as_ref().is_some_and(|d| d.is_empty()) {
                activity.details = None;
            }
        }
        if let (Some(cut), Some(ip)) = (self.ip_truncation, activity.ip_address) {
            activity.ip_address = Some(cut.apply(ip));
        }
    }
}

/// Whether `text` is longer than `max` characters.
fn over(text: &Option<impl AsRef<str>>, max: usize) -> bool {
    // The byte length bounds the character count: most texts are ruled out
    // without counting.
    text.as_ref()
        .map(AsRef::as_ref)
        .is_some_and(|text: &str| text.len() > max && text.chars().count() > max)
}
