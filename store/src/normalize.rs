//! What a stored row may hold: the one place every path that writes
//! `user_activity_logs` (the processor, the layer's fallback, any later
//! ingest) normalizes an event before it is stored.
//!
//! Today's rules are the wire format's limits ([`Activity::normalize`]):
//! texts truncated on a character boundary to their column's length,
//! `details` over 16 KiB replaced by a note of their size. A new rule goes
//! in both functions here: [`needs_normalizing`], the cheap test the writer
//! runs on every event (so that the events needing nothing stay borrowed),
//! and [`normalize`], which applies it.
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

use activity_tracker::{Activity, limits};

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

/// Whether `text` is longer than `max` characters.
fn over(text: &Option<String>, max: usize) -> bool {
    // The byte length bounds the character count: most texts are ruled out
    // without counting.
    text.as_deref()
        .is_some_and(|text| text.len() > max && text.chars().count() > max)
}
