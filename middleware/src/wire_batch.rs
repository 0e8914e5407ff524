//! A batch of events as the wire format's JSON lines: what a version 2
//! stream entry's `events` field holds, and what the tracker's dispatcher
//! batches, sends, retries and spools, so that an event is serialized once
//! and never held as an [`Activity`] on the way to Redis.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::activity::wire::{self, WireDetails, WireFields, WireText, WireTime};
use crate::{Activity, WireError};

/// The optional field of a version 2 stream entry holding its events'
/// first arrival, [`WireBatch::arrived_at`], in milliseconds since the Unix
/// epoch as a decimal integer (`docs/wire-format.md`): what the tracker
/// writes for a batch replayed from its spool, and the processor reads as
/// the events' arrival (never later than the entry id's time).
pub const ARRIVED_MS_FIELD: &str = "arrived_ms";

/// One event's wire fields, borrowed, with `details` as JSON text made
/// already: for a producer that has an event's parts as text (the
/// processor's ingest, which reads them out of a request) and would
/// otherwise build an [`Activity`] and a `details` map only to write them.
///
/// [`WireBatch::push_line`] writes the same line [`WireBatch::push`]
/// writes for the [`Activity`] with these fields, when `details` is the
/// text `serde_json` writes for that activity's map. The caller brings the
/// fields within the wire format's limits (`docs/wire-format.md`).
#[derive(Debug, Clone, Copy)]
pub struct WireLine<'a> {
    /// The event's id.
    pub id: Uuid,
    /// `user_id`.
    pub user_id: Option<&'a str>,
    /// `action`.
    pub action: &'a str,
    /// `resource_type`.
    pub resource_type: Option<&'a str>,
    /// `resource_id`.
    pub resource_id: Option<&'a str>,
    /// `details`: one JSON object, written as it is.
    pub details_json: Option<&'a [u8]>,
    /// `ip_address`.
    pub ip_address: Option<IpAddr>,
    /// `user_agent`.
    pub user_agent: Option<&'a str>,
    /// `session_id`.
    pub session_id: Option<&'a str>,
    /// `created_at` (written to the microsecond).
    pub created_at: DateTime<Utc>,
}

/// Events as JSON lines, one wire-format object per line, joined by `\n`
/// (no trailing newline), with their count.
///
/// ```
/// use activity_tracker::{Activity, ActivityType, WireBatch};
///
/// let mut batch = WireBatch::new();
/// batch.push(&Activity::new(ActivityType::Login).user_id("u1"));
/// batch.push(&Activity::new(ActivityType::Logout).user_id("u1"));
/// assert_eq!(batch.len(), 2);
/// assert_eq!(batch.lines().count(), 2);
/// let back = batch.activities().unwrap();
/// assert_eq!(back[1].action.as_str(), "logout");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WireBatch {
    /// The lines, joined by `\n`. Shared only while a sink writes them
    /// (`shared_bytes`: the Redis sink hands them to its writing thread
    /// without a copy); written to only when unshared (`Arc::make_mut`).
    bytes: Arc<Vec<u8>>,
    /// How many lines.
    count: usize,
    /// When the events first arrived, if earlier than this write: set on a
    /// batch read back from the spool (the time its record was written).
    arrived_at: Option<DateTime<Utc>>,
}

impl WireBatch {
    /// An empty batch.
    pub fn new() -> Self {
        WireBatch::default()
    }

    /// An empty batch with room for `bytes` bytes of lines.
    pub fn with_capacity(bytes: usize) -> Self {
        WireBatch {
            bytes: Arc::new(Vec::with_capacity(bytes)),
            count: 0,
            arrived_at: None,
        }
    }

    /// When the events first arrived somewhere they may be delivered from
    /// again: for a batch read back from the tracker's spool, the time its
    /// record was written (to the millisecond). `None` for a fresh batch:
    /// its arrival is where it is written now.
    ///
    /// A sink passes it on, so that a date too far ahead is clamped to the
    /// same arrival however late and however often the batch is replayed
    /// (the Redis sink as the v2 entry's `arrived_ms` field,
    /// `activity-store`'s `PostgresSink` as each row's arrival; see
    /// `docs/wire-format.md`).
    pub fn arrived_at(&self) -> Option<DateTime<Utc>> {
        self.arrived_at
    }

    /// Sets [`WireBatch::arrived_at`].
    pub fn set_arrived_at(&mut self, at: Option<DateTime<Utc>>) {
        self.arrived_at = at;
    }

    /// The buffer, emptied, for another batch to reuse.
    #[cfg(feature = "tracker")]
    pub(crate) fn into_empty_buffer(self) -> Vec<u8> {
        let mut bytes = Arc::try_unwrap(self.bytes).unwrap_or_default();
        bytes.clear();
        bytes
    }

    /// An empty batch writing into `buffer` (emptied).
    #[cfg(feature = "tracker")]
    pub(crate) fn in_buffer(mut buffer: Vec<u8>) -> Self {
        buffer.clear();
        WireBatch {
            bytes: Arc::new(buffer),
            count: 0,
            arrived_at: None,
        }
    }

    /// Makes room for `bytes` more bytes of lines.
    #[cfg(feature = "tracker")]
    pub(crate) fn reserve(&mut self, bytes: usize) {
        Arc::make_mut(&mut self.bytes).reserve(bytes);
    }

    /// Appends `activity`'s wire JSON as a line.
    pub fn push(&mut self, activity: &Activity) {
        self.push_with(|out| activity.write_wire_json(out));
    }

    /// Appends the wire JSON of `line` as a line.
    ///
    /// ```
    /// use activity_tracker::{Activity, ActivityType, WireBatch, WireLine};
    ///
    /// let activity = Activity::new(ActivityType::Login)
    ///     .user_id("u1")
    ///     .detail("via", "sso");
    /// let mut batch = WireBatch::new();
    /// batch.push_line(&WireLine {
    ///     id: activity.id,
    ///     user_id: Some("u1"),
    ///     action: "login",
    ///     resource_type: None,
    ///     resource_id: None,
    ///     details_json: Some(br#"{"via":"sso"}"#),
    ///     ip_address: None,
    ///     user_agent: None,
    ///     session_id: None,
    ///     created_at: activity.created_at,
    /// });
    /// assert_eq!(batch.as_bytes(), activity.to_wire_json().as_bytes());
    /// ```
    pub fn push_line(&mut self, line: &WireLine<'_>) {
        self.push_fields(line, false);
    }

    /// Appends the wire JSON of `line` as a line, as
    /// [`WireBatch::push_line`] does, for a caller that knows its text
    /// fields (`user_id`, `action`, `resource_type`, `resource_id`,
    /// `user_agent`, `session_id`) hold nothing JSON escapes (no `"`, `\`
    /// or control character): they are copied with no check, and a field
    /// that does hold one makes a line that is not JSON. For text read out
    /// of JSON strings written without escapes (the processor's ingest).
    ///
    /// ```
    /// use activity_tracker::{Activity, ActivityType, WireBatch, WireLine};
    ///
    /// let activity = Activity::new(ActivityType::Login).user_id("u1");
    /// let mut batch = WireBatch::new();
    /// batch.push_plain_line(&WireLine {
    ///     id: activity.id,
    ///     user_id: Some("u1"),
    ///     action: "login",
    ///     resource_type: None,
    ///     resource_id: None,
    ///     details_json: None,
    ///     ip_address: None,
    ///     user_agent: None,
    ///     session_id: None,
    ///     created_at: activity.created_at,
    /// });
    /// assert_eq!(batch.as_bytes(), activity.to_wire_json().as_bytes());
    /// ```
    pub fn push_plain_line(&mut self, line: &WireLine<'_>) {
        self.push_fields(line, true);
    }

    fn push_fields(&mut self, line: &WireLine<'_>, text_is_plain: bool) {
        self.push_with(|out| {
            wire::write_fields(
                out,
                &WireFields {
                    id: line.id,
                    user_id: line.user_id,
                    action: WireText::Plain(line.action),
                    resource_type: line.resource_type,
                    resource_id: line.resource_id,
                    details: match line.details_json {
                        Some(json) => WireDetails::Json(json),
                        None => WireDetails::Null,
                    },
                    ip_address: line.ip_address,
                    user_agent: line.user_agent,
                    session_id: line.session_id,
                    created_at: WireTime::At(&line.created_at),
                    text_is_plain,
                },
            );
        });
    }

    /// Appends one line written by `write`, which must append exactly one
    /// wire-format JSON object (no newline) to the buffer it is given.
    pub(crate) fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let bytes = Arc::make_mut(&mut self.bytes);
        if self.count > 0 {
            bytes.push(b'\n');
        }
        write(bytes);
        self.count += 1;
    }

    /// Appends every line of `other` after this batch's. The batch keeps
    /// the earlier of the two arrivals ([`WireBatch::arrived_at`]; one set
    /// is earlier than none), so that no event's arrival moves later.
    pub fn append(&mut self, other: WireBatch) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other;
            return;
        }
        self.arrived_at = match (self.arrived_at, other.arrived_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let bytes = Arc::make_mut(&mut self.bytes);
        bytes.push(b'\n');
        bytes.extend_from_slice(&other.bytes);
        self.count += other.count;
    }

    /// Events in the batch.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The lines joined by `\n`, as a v2 entry's `events` field holds them.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The lines as [`WireBatch::as_bytes`] gives them, shared rather
    /// than copied, for a writer that must own what it writes.
    #[cfg(feature = "tracker")]
    pub(crate) fn shared_bytes(&self) -> Arc<Vec<u8>> {
        Arc::clone(&self.bytes)
    }

    /// Each event's JSON.
    pub fn lines(&self) -> impl Iterator<Item = &[u8]> {
        self.bytes.split(|&byte| byte == b'\n').take(self.count)
    }

    /// The events read back as activities (strictly, as
    /// [`Activity::from_wire_json`] does): for sinks that store activities
    /// rather than the wire format.
    pub fn activities(&self) -> Result<Vec<Activity>, WireError> {
        self.lines().map(Activity::from_wire_json).collect()
    }

    /// Drops the `n` oldest events (all of them when `n` is at least the
    /// length).
    #[cfg(feature = "tracker")]
    pub(crate) fn drop_oldest(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        if n >= self.count {
            Arc::make_mut(&mut self.bytes).clear();
            self.count = 0;
            return;
        }
        let mut cut = 0;
        for _ in 0..n {
            let newline = self.bytes[cut..]
                .iter()
                .position(|&byte| byte == b'\n')
                .expect("a batch of more than n lines has n newlines");
            cut += newline + 1;
        }
        Arc::make_mut(&mut self.bytes).drain(..cut);
        self.count -= n;
    }
}

impl From<&[Activity]> for WireBatch {
    fn from(activities: &[Activity]) -> Self {
        let mut batch = WireBatch::with_capacity(activities.len() * 512);
        for activity in activities {
            batch.push(activity);
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ActivityType;

    fn batch(users: &[&str]) -> WireBatch {
        let mut batch = WireBatch::new();
        for user in users {
            batch.push(&Activity::new(ActivityType::Login).user_id(*user));
        }
        batch
    }

    fn users(batch: &WireBatch) -> Vec<String> {
        batch
            .activities()
            .unwrap()
            .into_iter()
            .map(|a| a.user_id.unwrap())
            .collect()
    }

    #[test]
    #[cfg(feature = "tracker")]
    fn lines_come_back_in_order_and_the_oldest_can_be_dropped() {
        let mut b = batch(&["a", "b", "c", "d"]);
        assert!(!b.as_bytes().ends_with(b"\n"));
        assert_eq!(users(&b), ["a", "b", "c", "d"]);
        b.drop_oldest(0);
        assert_eq!(b.len(), 4);
        b.drop_oldest(2);
        assert_eq!((b.len(), users(&b)), (2, vec!["c".into(), "d".into()]));
        b.append(batch(&["e"]));
        assert_eq!(users(&b), ["c", "d", "e"]);
        b.drop_oldest(9);
        assert!(b.is_empty() && b.as_bytes().is_empty());
        assert_eq!(b.lines().count(), 0);
        b.append(batch(&["f"]));
        assert_eq!(users(&b), ["f"]);
    }

    #[test]
    fn a_line_is_never_split_by_escaped_newlines() {
        let mut b = WireBatch::new();
        b.push(&Activity::new(ActivityType::Login).user_agent("two\nlines"));
        b.push(&Activity::new(ActivityType::Logout));
        assert_eq!(b.lines().count(), 2);
        assert_eq!(
            b.activities().unwrap()[0].user_agent.as_deref(),
            Some("two\nlines")
        );
    }
}
