//! What a stored row may hold: the one place every path that writes
//! `user_activity_logs` (the processor, the layer's fallback, spool
//! replay, any later ingest) normalizes an event before it is stored.
//!
//! Two kinds of rules:
//!
//! - the wire format's and the table's rules, always applied
//!   ([`normalize_event`]):
//!   - texts truncated on a character boundary to their column's length,
//!     `details` over 16 KiB replaced by a note of their size
//!     ([`Activity::normalize`]);
//!   - a NUL character (which PostgreSQL text and `jsonb` cannot hold) in
//!     any column or inside `details` replaced by U+FFFD, the fields named
//!     in `details` under [`NUL_NOTE`]; lone surrogate escapes in `details`
//!     the same;
//!   - a number in `details` beyond `f64` (`1e400`, `1e-400`: `jsonb`
//!     takes it, but it could never be read back) stored as a string of
//!     its text, counted in `details` under [`NUMBERS_NOTE`];
//!   - a `created_at` more than [`MAX_AHEAD`] after the event's arrival
//!     clamped to the arrival, the original kept in `details` under
//!     [`ORIGINAL_CREATED_AT_NOTE`]. Arrival is what the path knows the
//!     same way on every redelivery (the stream entry id's time, the spool
//!     record's write time), never the clock at write time, since the
//!     primary key is `(id, created_at)`.
//!
//!   [`needs_normalizing`] is the cheap test the writer runs on every event
//!   (so that the events needing nothing stay borrowed);
//! - the deployment's [`StorageRules`], which the processor configures:
//!   IP truncation (`IP_TRUNCATION`), and the erasure list (events of a
//!   user erased are dropped or pseudonymized on arrival, like the
//!   erasure did to their stored rows). [`StorageRules::verdict`] is the
//!   cheap test, [`StorageRules::apply`] the fix.
//!
//! A new rule goes in both functions of its kind. Lookups by user id
//! (the read queries, erasure, export) go through [`stored_user_id`], the
//! same rules for the one column they search.
//!
//! ```
//! use activity_store::normalize;
//! use activity_tracker::{Activity, ActivityType};
//!
//! let mut activity = Activity::new(ActivityType::Login).user_agent("x".repeat(600));
//! assert!(normalize::needs_normalizing(&activity, None, None));
//! normalize::normalize(&mut activity);
//! assert_eq!(activity.user_agent.as_deref().map(str::len), Some(500));
//! assert!(!normalize::needs_normalizing(&activity, None, None));
//!
//! let mut hidden = Activity::new(ActivityType::WithdrawalRequest)
//!     .user_id("user-1")
//!     .detail("amount", "1000000\u{0}");
//! let changes = normalize::normalize_event(&mut hidden, None, None);
//! assert!(changes.nul);
//! let details = hidden.details.unwrap();
//! assert_eq!(details["amount"], "1000000\u{fffd}");
//! assert_eq!(details[normalize::NUL_NOTE], serde_json::json!(["details"]));
//! ```

mod json_text;

use std::borrow::Cow;
use std::sync::Arc;

use activity_tracker::{Activity, ActivityType, IpTruncation, limits, truncate_chars};
use chrono::{DateTime, SecondsFormat, SubsecRound, TimeDelta, Utc};
use serde_json::{Map, Value};

use crate::privacy::{ErasureList, ErasureMode, ErasurePolicy, UserHash};

/// Key added to `details` when a NUL character was replaced: the fields it
/// was in (`"user_id"`, `"details"`, ...).
pub const NUL_NOTE: &str = "nul_replaced";
/// Key added to `details` when numbers of `details` beyond `f64` were
/// stored as strings: how many.
pub const NUMBERS_NOTE: &str = "numbers_as_text";
/// Key added to `details` when `created_at` was clamped to the arrival:
/// the original `created_at` (RFC 3339).
pub const ORIGINAL_CREATED_AT_NOTE: &str = "original_created_at";
/// How far after its arrival an event may be dated before its
/// `created_at` is clamped: one day, for clocks a little ahead.
pub const MAX_AHEAD: TimeDelta = TimeDelta::days(1);

/// What [`normalize_event`] changed in one event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Changes {
    /// Anything at all.
    pub any: bool,
    /// A NUL (or a lone surrogate escape) was replaced by U+FFFD.
    pub nul: bool,
    /// Numbers of `details` beyond `f64` became strings.
    pub numbers: bool,
    /// `created_at` was clamped to the arrival.
    pub clamped: bool,
}

/// Whether [`normalize_event`] would change `activity`, whose `details` are
/// `details_json` (the text the writer would store), which arrived at
/// `arrival` (`None`: no clamping). Cheap: no text is copied or parsed.
pub fn needs_normalizing(
    activity: &Activity,
    details_json: Option<&str>,
    arrival: Option<DateTime<Utc>>,
) -> bool {
    over(&activity.user_agent, limits::USER_AGENT_MAX_CHARS)
        || over(&activity.session_id, limits::SESSION_ID_MAX_CHARS)
        || over(&activity.resource_type, limits::RESOURCE_TYPE_MAX_CHARS)
        || over(&activity.resource_id, limits::RESOURCE_ID_MAX_CHARS)
        || over(&activity.user_id, limits::USER_ID_MAX_CHARS)
        || details_json.is_some_and(|json| json.len() > limits::DETAILS_MAX_BYTES)
        || text_fields(activity).any(|(_, text)| text.contains('\0'))
        || activity.action.as_str().contains('\0')
        || details_json.is_some_and(|json| json_text::scan(json, None).any())
        || arrival.is_some_and(|arrival| too_far_ahead(activity.created_at, arrival))
}

/// Makes `activity` storable by every rule but the clamp (there is no
/// arrival); returns whether anything changed.
pub fn normalize(activity: &mut Activity) -> bool {
    normalize_event(activity, None, None).any
}

/// Makes `activity` storable: every rule of the module's list. Its
/// `details` are `activity.details`, or, when those are `None`,
/// `details_json` (an event that kept them as the text it arrived in),
/// read into `activity.details` then. `arrival`: when the event arrived
/// (see the module's docs); `None` clamps nothing.
pub fn normalize_event(
    activity: &mut Activity,
    details_json: Option<&str>,
    arrival: Option<DateTime<Utc>>,
) -> Changes {
    let mut changes = Changes::default();
    let mut nul_fields: Vec<Value> = Vec::new();
    for (name, field) in [
        ("user_id", &mut activity.user_id),
        ("resource_type", &mut activity.resource_type),
        ("resource_id", &mut activity.resource_id),
        ("user_agent", &mut activity.user_agent),
        ("session_id", &mut activity.session_id),
    ] {
        if let Some(text) = field.as_mut().filter(|text| text.contains('\0')) {
            *text = text.replace('\0', "\u{fffd}");
            nul_fields.push(Value::from(name));
        }
    }
    if activity.action.as_str().contains('\0') {
        let replaced = activity.action.as_str().replace('\0', "\u{fffd}");
        // The same number of characters, and a NUL is not white space, so
        // the name stays valid.
        if let Ok(action) = ActivityType::custom(replaced) {
            activity.action = action;
            nul_fields.push(Value::from("action"));
        }
    }

    // `details` as text: what the event brought, or its map serialized.
    let text: Option<Cow<'_, str>> = match (&activity.details, details_json) {
        (None, Some(json)) => Some(Cow::Borrowed(json)),
        (Some(details), _) => Some(Cow::Owned(details_text(details))),
        (None, None) => None,
    };
    let mut numbers = 0;
    if let Some(text) = text {
        let (rewritten, found) = json_text::storable(&text);
        if let Some(rewritten) = rewritten {
            activity.details = Some(details_map(&rewritten));
            if found.nul + found.lone_surrogates > 0 {
                nul_fields.push(Value::from("details"));
            }
            numbers = found.numbers;
        } else if activity.details.is_none() {
            activity.details = Some(details_map(&text));
        }
    }

    let mut notes = Map::new();
    if !nul_fields.is_empty() {
        changes.nul = true;
        notes.insert(NUL_NOTE.to_owned(), Value::Array(nul_fields));
    }
    if numbers > 0 {
        changes.numbers = true;
        notes.insert(NUMBERS_NOTE.to_owned(), Value::from(numbers));
    }
    if let Some(arrival) = arrival.filter(|&arrival| too_far_ahead(activity.created_at, arrival)) {
        changes.clamped = true;
        notes.insert(
            ORIGINAL_CREATED_AT_NOTE.to_owned(),
            Value::from(
                activity
                    .created_at
                    .to_rfc3339_opts(SecondsFormat::Micros, true),
            ),
        );
        activity.created_at = arrival.trunc_subsecs(6);
    }
    let add_notes = |activity: &mut Activity| {
        if !notes.is_empty() {
            let details = activity.details.get_or_insert_with(Map::new);
            for (key, value) in &notes {
                details.insert(key.clone(), value.clone());
            }
        }
    };
    add_notes(activity);
    let limited = activity.normalize();
    if limited {
        // Oversize details were replaced by a note of their size: the
        // notes of this function go on that note.
        add_notes(activity);
    }
    changes.any = limited || changes.nul || changes.numbers || changes.clamped;
    changes
}

/// Whether `created_at` is more than [`MAX_AHEAD`] after `arrival`.
fn too_far_ahead(created_at: DateTime<Utc>, arrival: DateTime<Utc>) -> bool {
    arrival
        .checked_add_signed(MAX_AHEAD)
        .is_some_and(|latest| created_at > latest)
}

/// The optional text columns, named.
fn text_fields(activity: &Activity) -> impl Iterator<Item = (&'static str, &str)> {
    [
        ("user_id", &activity.user_id),
        ("resource_type", &activity.resource_type),
        ("resource_id", &activity.resource_id),
        ("user_agent", &activity.user_agent),
        ("session_id", &activity.session_id),
    ]
    .into_iter()
    .filter_map(|(name, text)| text.as_deref().map(|text| (name, text)))
}

fn details_text(details: &Map<String, Value>) -> String {
    serde_json::to_string(details)
        .expect("a JSON object always serializes: string keys, no non-finite floats in Value")
}

/// Storable `details` text as a map: an object as it is, anything else
/// under `value` (text that is not JSON, which no reader hands over, under
/// `value` as a string).
fn details_map(text: &str) -> Map<String, Value> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => map,
        Ok(other) => Map::from_iter([("value".to_owned(), other)]),
        Err(_) => Map::from_iter([("value".to_owned(), Value::from(text))]),
    }
}

/// `details` JSON text (any JSON value) rewritten so that `jsonb` takes it
/// and it reads back: NUL and lone surrogate escapes replaced by U+FFFD,
/// numbers beyond `f64` as strings. For readers that parse `details`
/// before the writer sees them.
pub fn storable_details_text(text: &str) -> Cow<'_, str> {
    match json_text::storable(text).0 {
        Some(rewritten) => Cow::Owned(rewritten),
        None => Cow::Borrowed(text),
    }
}

/// A user id as the writer stores it: NULs replaced and truncated like
/// [`normalize_event`] does. What the read queries, an erasure and an
/// export look a user up by.
pub fn stored_user_id(user_id: &str) -> Cow<'_, str> {
    let mut user_id = Cow::Borrowed(user_id);
    if user_id.contains('\0') {
        user_id = Cow::Owned(user_id.replace('\0', "\u{fffd}"));
    }
    if over(&Some(&*user_id), limits::USER_ID_MAX_CHARS) {
        let mut owned = user_id.into_owned();
        truncate_chars(&mut owned, limits::USER_ID_MAX_CHARS);
        user_id = Cow::Owned(owned);
    }
    user_id
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
