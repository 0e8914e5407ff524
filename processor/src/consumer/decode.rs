//! The lenient reader: turns what producers wrote (current wire format,
//! older producers without `v` or `id`, and the original design's LIST
//! JSON) into an [`Activity`], or says why it never can be stored.
//!
//! ```
//! use activity_processor::consumer::decode::{decode_entry, DecodeError};
//!
//! let json = br#"{"action":"login","user_id":"u1","created_at":"2025-01-02T03:04:05Z"}"#;
//! let decoded = decode_entry("stream", "1-0", Some(json)).unwrap();
//! assert_eq!(decoded.activity().action.as_str(), "login");
//! // No `id`: one derived from the entry id, the same on every redelivery.
//! let again = decode_entry("stream", "1-0", Some(json)).unwrap();
//! assert_eq!(decoded.activity().id, again.activity().id);
//!
//! let err = decode_entry("stream", "2-0", Some(b"not json")).unwrap_err();
//! assert!(matches!(err, DecodeError::Json(_)));
//! ```

use std::borrow::Cow;
use std::net::IpAddr;

use activity_store::writer::StoredEvent;
use activity_tracker::{Activity, ActivityType, WIRE_VERSION, limits};
use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use uuid::Uuid;

/// Payloads larger than this are refused whole: a conforming producer's
/// largest event (16 KiB of `details` plus the bounded text fields) is far
/// below it, and a bound keeps one bad producer from filling memory.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// Namespace of ids derived from stream entry ids (UUID v5).
const STREAM_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6a1f_83f2_4c0e_4d8e_9b57_1d2c_3e4f_5a60);
/// Namespace of ids derived from legacy LIST payloads (UUID v5).
const LEGACY_ID_NAMESPACE: Uuid = Uuid::from_u128(0x0c7d_52a9_8e31_4b6f_a0d4_7f19_2b8e_c351);

/// Key added to `details` when `ip_address` was not an IP: the original text.
pub const INVALID_IP_NOTE: &str = "invalid_ip_address";

/// Why an entry can never be stored (the `reason` of its dead letter).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The stream entry has no `data` field.
    #[error("entry has no data field")]
    MissingData,
    /// A version 2 entry that cannot be read as lines (dead-lettered whole).
    #[error("unreadable version 2 entry: {0}")]
    UnreadableEntry(String),
    /// A line of a version 2 entry's `events` is empty.
    #[error("blank line in a version 2 entry")]
    BlankLine,
    /// The payload is larger than [`MAX_PAYLOAD_BYTES`].
    #[error("payload is {0} bytes; at most 65536 are accepted")]
    Oversize(usize),
    /// Not JSON.
    #[error("invalid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// JSON, but not an object.
    #[error("payload is JSON but not an object")]
    NotAnObject,
    /// A `v` this processor does not know.
    #[error("unknown wire-format version {0}")]
    UnknownVersion(String),
    /// A required field is absent or null.
    #[error("missing required field `{0}`")]
    Missing(&'static str),
    /// A field has a value that cannot be used.
    #[error("invalid `{field}`: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// A decoded entry, ready for the writer ([`StoredEvent`]).
///
/// A `details` object that needs no change is kept as the JSON text it
/// arrived in and stored as it is: most of what decoding would otherwise
/// cost is building a `serde_json::Map` of it only to serialize it again.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Its `details` are `None` when `details_json` holds them.
    activity: Activity,
    details_json: Option<Box<RawValue>>,
    /// When it arrived, the same on every redelivery: the time of the
    /// stream entry's id, or when a legacy list element was read.
    arrived_at: Option<DateTime<Utc>>,
}

impl Decoded {
    /// The activity, without its `details` when they were kept as text
    /// (see [`Decoded::into_activity`]).
    pub fn activity(&self) -> &Activity {
        &self.activity
    }

    /// The whole activity, `details` included.
    pub fn into_activity(self) -> Activity {
        let mut activity = self.activity;
        if let Some(json) = self.details_json {
            activity.details = serde_json::from_str(json.get()).ok();
        }
        activity
    }

    /// When it arrived ([`StoredEvent::arrived_at`]).
    pub fn arrived_at(&self) -> Option<DateTime<Utc>> {
        self.arrived_at
    }
}

impl StoredEvent for Decoded {
    fn activity(&self) -> &Activity {
        &self.activity
    }

    fn details_json(&self) -> Option<Cow<'_, str>> {
        match &self.details_json {
            Some(json) => Some(Cow::Borrowed(json.get())),
            None => self.activity.details_json(),
        }
    }

    fn arrived_at(&self) -> Option<DateTime<Utc>> {
        self.arrived_at
    }
}

/// The id the reader gives an event without one: a UUID v5 of the stream
/// key, the entry id and (in a version 2 entry) the line's index.
pub fn derived_id(stream_key: &str, entry_id: &str, index: Option<usize>) -> Uuid {
    let name = match index {
        None => format!("{stream_key}\n{entry_id}"),
        Some(index) => format!("{stream_key}\n{entry_id}\n{index}"),
    };
    Uuid::new_v5(&STREAM_ID_NAMESPACE, name.as_bytes())
}

/// The id the legacy list reader gives an element without one: a UUID v5
/// of the payload.
pub fn derived_legacy_id(payload: &[u8]) -> Uuid {
    Uuid::new_v5(&LEGACY_ID_NAMESPACE, payload)
}

/// The time of a stream entry id (`<ms>-<seq>`), its arrival in Redis.
pub fn entry_time(entry_id: &str) -> Option<DateTime<Utc>> {
    let ms = entry_id.split_once('-').map_or(entry_id, |(ms, _)| ms);
    DateTime::from_timestamp_millis(ms.parse::<i64>().ok()?)
}

/// A version 2 entry's `arrived_ms` that is not a time: the field is
/// ignored (the events' arrival is the entry id's time) and counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`arrived_ms` {0:?} is not a whole number of milliseconds since 1970")]
pub struct InvalidArrival(pub String);

/// The arrival of the events of version 2 entry `entry_id` whose
/// `arrived_ms` field (`activity_tracker::ARRIVED_MS_FIELD`) is
/// `arrived_ms`: that time when it is earlier than the entry id's (a
/// replayed spool record's write time), never later (a producer cannot
/// move its arrival ahead); the entry id's time without the field.
///
/// ```
/// use activity_processor::consumer::decode::{entry_arrival, entry_time};
///
/// let at = |ms: i64| chrono::DateTime::from_timestamp_millis(ms);
/// assert_eq!(entry_arrival("1700000005000-0", Some(b"1700000000000")), Ok(at(1_700_000_000_000)));
/// assert_eq!(entry_arrival("1700000005000-0", Some(b"1800000000000")), Ok(at(1_700_000_005_000)));
/// assert_eq!(entry_arrival("1700000005000-0", None), Ok(entry_time("1700000005000-0")));
/// assert!(entry_arrival("1700000005000-0", Some(b"soon")).is_err());
/// ```
pub fn entry_arrival(
    entry_id: &str,
    arrived_ms: Option<&[u8]>,
) -> Result<Option<DateTime<Utc>>, InvalidArrival> {
    let entry = entry_time(entry_id);
    let Some(field) = arrived_ms else {
        return Ok(entry);
    };
    let invalid = || InvalidArrival(String::from_utf8_lossy(field).into_owned());
    let text = std::str::from_utf8(field).map_err(|_| invalid())?.trim();
    // Digits only: no sign, so nothing before 1970.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let arrived = text
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .ok_or_else(invalid)?;
    Ok(Some(entry.map_or(arrived, |entry| entry.min(arrived))))
}

/// Reads the `data` field of stream entry `entry_id` of `stream_key`.
///
/// `v` missing is read as version 1 and `id` missing gets a UUID v5 of the
/// stream key and entry id (older producers); optional fields are brought
/// within the contract ([`Activity::normalize`]); an invalid IP becomes
/// null with the original text noted in `details`.
pub fn decode_entry(
    stream_key: &str,
    entry_id: &str,
    data: Option<&[u8]>,
) -> Result<Decoded, DecodeError> {
    let data = data.ok_or(DecodeError::MissingData)?;
    decode(data, None, entry_time(entry_id), || {
        derived_id(stream_key, entry_id, None)
    })
}

/// Reads line `index` (from 0) of the `events` field of version 2 stream
/// entry `entry_id` of `stream_key`: the same object as a version 1
/// entry's `data`, read the same way. A line without `id` gets a UUID v5
/// of the stream key, the entry id and the index, the same on every
/// redelivery.
pub fn decode_line(
    stream_key: &str,
    entry_id: &str,
    index: usize,
    line: &[u8],
) -> Result<Decoded, DecodeError> {
    decode_line_arrived(stream_key, entry_id, index, line, entry_time(entry_id))
}

/// [`decode_line`] of an entry whose events arrived at `arrived_at`
/// ([`entry_arrival`]) rather than at its id's time.
pub fn decode_line_arrived(
    stream_key: &str,
    entry_id: &str,
    index: usize,
    line: &[u8],
    arrived_at: Option<DateTime<Utc>>,
) -> Result<Decoded, DecodeError> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError::BlankLine);
    }
    decode(line, None, arrived_at, || {
        derived_id(stream_key, entry_id, Some(index))
    })
}

/// Reads a JSON string a producer written for the original design pushed
/// onto the legacy LIST: the table's column names, `id` and `created_at`
/// optional. A missing `created_at` becomes `arrived_at`; a missing `id`
/// a UUID v5 of the payload. `arrived_at` is also the arrival a date too
/// far ahead is clamped to (a list element carries no time of its own).
pub fn decode_legacy(payload: &[u8], arrived_at: DateTime<Utc>) -> Result<Decoded, DecodeError> {
    decode(payload, Some(arrived_at), Some(arrived_at), || {
        derived_legacy_id(payload)
    })
}

/// The payload's top-level fields, each as written. Reading into a struct
/// rather than a `serde_json::Map` skips making a `String` of every key and
/// of the fields the processor does not know; text is borrowed from the
/// payload where it has no escapes. A field given twice takes its last
/// value, as a JSON object read into a map does.
#[derive(Default)]
struct Payload<'a> {
    v: Option<Field<'a>>,
    action: Option<Field<'a>>,
    created_at: Option<Field<'a>>,
    id: Option<Field<'a>>,
    details: Option<&'a RawValue>,
    ip_address: Option<Field<'a>>,
    user_id: Option<Field<'a>>,
    resource_type: Option<Field<'a>>,
    resource_id: Option<Field<'a>>,
    user_agent: Option<Field<'a>>,
    session_id: Option<Field<'a>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Payload<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(PayloadVisitor(std::marker::PhantomData))
    }
}

struct PayloadVisitor<'a>(std::marker::PhantomData<Payload<'a>>);

impl<'de: 'a, 'a> Visitor<'de> for PayloadVisitor<'a> {
    type Value = Payload<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut payload = Payload::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::V => payload.v = map.next_value()?,
                Key::Action => payload.action = map.next_value()?,
                Key::CreatedAt => payload.created_at = map.next_value()?,
                Key::Id => payload.id = map.next_value()?,
                Key::Details => payload.details = map.next_value()?,
                Key::IpAddress => payload.ip_address = map.next_value()?,
                Key::UserId => payload.user_id = map.next_value()?,
                Key::ResourceType => payload.resource_type = map.next_value()?,
                Key::ResourceId => payload.resource_id = map.next_value()?,
                Key::UserAgent => payload.user_agent = map.next_value()?,
                Key::SessionId => payload.session_id = map.next_value()?,
                Key::Unknown => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Ok(payload)
    }
}

/// A top-level key, told apart without allocating.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Key {
    V,
    Action,
    CreatedAt,
    Id,
    Details,
    IpAddress,
    UserId,
    ResourceType,
    ResourceId,
    UserAgent,
    SessionId,
    #[serde(other)]
    Unknown,
}

/// One top-level value that is not `null`.
enum Field<'a> {
    Text(Cow<'a, str>),
    /// A number, boolean, array or object.
    Other(Value),
}

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldVisitor(std::marker::PhantomData))
    }
}

struct FieldVisitor<'a>(std::marker::PhantomData<Field<'a>>);

impl<'de: 'a, 'a> Visitor<'de> for FieldVisitor<'a> {
    type Value = Field<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Field::Text(Cow::Borrowed(text)))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Field::Text(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<Self::Value, E> {
        Ok(Field::Text(Cow::Owned(text)))
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
        Ok(Field::Other(Value::Bool(b)))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
        Ok(Field::Other(Value::from(n)))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
        Ok(Field::Other(Value::from(n)))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
        Ok(Field::Other(Value::from(n)))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Value::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Field::Other)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Value::deserialize(de::value::MapAccessDeserializer::new(map)).map(Field::Other)
    }
}

impl Field<'_> {
    fn into_value(self) -> Value {
        match self {
            Field::Text(text) => Value::String(text.into_owned()),
            Field::Other(value) => value,
        }
    }
}

fn decode(
    payload: &[u8],
    default_created_at: Option<DateTime<Utc>>,
    arrived_at: Option<DateTime<Utc>>,
    derive_id: impl FnOnce() -> Uuid,
) -> Result<Decoded, DecodeError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(DecodeError::Oversize(payload.len()));
    }
    // A struct also reads from a JSON array (by position): anything but an
    // object is told apart first.
    if payload.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(match serde_json::from_slice::<de::IgnoredAny>(payload) {
            Ok(_) => DecodeError::NotAnObject,
            Err(e) => DecodeError::Json(e),
        });
    }
    let fields: Payload<'_> = serde_json::from_slice(payload).map_err(DecodeError::Json)?;

    match fields.v {
        None => {}
        Some(Field::Other(Value::Number(n))) if n.as_u64() == Some(u64::from(WIRE_VERSION)) => {}
        Some(other) => return Err(DecodeError::UnknownVersion(other.into_value().to_string())),
    }

    let action = match fields.action {
        None => return Err(DecodeError::Missing("action")),
        Some(Field::Text(name)) => ActivityType::custom(&name).map_err(|e| invalid("action", e))?,
        Some(_) => return Err(invalid("action", "not a string")),
    };

    let created_at = match fields.created_at {
        None => default_created_at.ok_or(DecodeError::Missing("created_at"))?,
        Some(Field::Text(text)) => parse_time(&text).ok_or_else(|| {
            invalid(
                "created_at",
                format!("{text:?} is not an RFC 3339 timestamp"),
            )
        })?,
        Some(_) => return Err(invalid("created_at", "not a string")),
    };

    let id = match fields.id {
        None => derive_id(),
        Some(Field::Text(text)) => {
            Uuid::parse_str(&text).map_err(|_| invalid("id", format!("{text:?} is not a UUID")))?
        }
        Some(_) => return Err(invalid("id", "not a string")),
    };

    let mut ip_note = None;
    let ip_address = match fields.ip_address {
        None => None,
        Some(Field::Text(text)) => match text.trim().parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                ip_note = Some(Value::String(text.into_owned()));
                None
            }
        },
        Some(Field::Other(other)) => {
            ip_note = Some(other);
            None
        }
    };

    // An object within the size limit, with nothing to add, is kept as
    // its text; anything else is read, changed and serialized again.
    let raw_details = fields.details.filter(|raw| {
        ip_note.is_none()
            && raw.get().len() <= limits::DETAILS_MAX_BYTES
            && raw.get().starts_with('{')
    });
    let mut details = match (raw_details, fields.details) {
        (None, Some(raw)) => details_map(raw)?,
        _ => None,
    };
    if let Some(original) = ip_note {
        note_invalid_ip(&mut details, original);
    }

    let mut activity = Activity::at(action, created_at);
    activity.id = id;
    activity.user_id = text_field(fields.user_id, "user_id")?;
    activity.resource_type = text_field(fields.resource_type, "resource_type")?;
    activity.resource_id = text_field(fields.resource_id, "resource_id")?;
    activity.user_agent = text_field(fields.user_agent, "user_agent")?;
    activity.session_id = text_field(fields.session_id, "session_id")?;
    activity.details = details;
    activity.ip_address = ip_address;
    // The wire format's limits, so that what is counted is what the
    // writer would store (it applies them again, at no cost, to what needs
    // nothing). The store's other rules (NULs, numbers beyond f64, dates
    // ahead of arrival) are the writer's alone, which counts them.
    activity.normalize();
    Ok(Decoded {
        activity,
        details_json: raw_details.map(RawValue::to_owned),
        arrived_at,
    })
}

/// `details` as an object: an object as it is, a string holding an object
/// (producers of the original design may have sent `json.dumps(details)`)
/// read, anything else under the key `value`.
fn details_map(raw: &RawValue) -> Result<Option<Map<String, Value>>, DecodeError> {
    // The store's rewrite first: a number beyond f64 (`[1e400]`) would
    // fail this parse, and the event with it.
    let text = activity_store::normalize::storable_details_text(raw.get());
    let value: Value = serde_json::from_str(&text).map_err(DecodeError::Json)?;
    Ok(match value {
        Value::Object(map) => Some(map),
        Value::String(text) => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => Some(map),
            _ => Some(Map::from_iter([("value".to_owned(), Value::String(text))])),
        },
        other => Some(Map::from_iter([("value".to_owned(), other)])),
    })
}

fn invalid(field: &'static str, reason: impl ToString) -> DecodeError {
    DecodeError::Invalid {
        field,
        reason: reason.to_string(),
    }
}

/// RFC 3339, or (original design's Python `isoformat()`) a naive timestamp
/// taken as UTC; kept to the microsecond like the table.
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let at = DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
                .iter()
                .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
                .map(|naive| naive.and_utc())
        })?;
    Some(at.trunc_subsecs(6))
}

/// An optional text column: strings as they are, numbers (user ids of
/// older apps) as their decimal text.
fn text_field(field: Option<Field<'_>>, name: &'static str) -> Result<Option<String>, DecodeError> {
    match field {
        None => Ok(None),
        Some(Field::Text(text)) => Ok(Some(text.into_owned())),
        Some(Field::Other(Value::Number(n))) => Ok(Some(n.to_string())),
        Some(_) => Err(invalid(name, "not a string")),
    }
}

fn note_invalid_ip(details: &mut Option<Map<String, Value>>, original: Value) {
    let original = match original {
        Value::String(mut text) => {
            activity_tracker::truncate_chars(&mut text, limits::RESOURCE_ID_MAX_CHARS);
            Value::String(text)
        }
        other => Value::String(other.to_string().chars().take(255).collect()),
    };
    details
        .get_or_insert_with(Map::new)
        .insert(INVALID_IP_NOTE.to_owned(), original);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(json: &str) -> Result<Activity, DecodeError> {
        decode_entry("s", "1700000000000-0", Some(json.as_bytes())).map(Decoded::into_activity)
    }

    fn legacy(payload: &[u8], arrived: DateTime<Utc>) -> Activity {
        decode_legacy(payload, arrived).unwrap().into_activity()
    }

    #[test]
    fn current_wire_format_round_trips() {
        let sent = Activity::new(ActivityType::CaseCreate)
            .user_id("u1")
            .resource("case", "c1")
            .detail("amount", 5)
            .ip_address("10.0.0.1".parse().unwrap())
            .user_agent("ua")
            .session_id("s1");
        let read = entry(&sent.to_wire_json()).unwrap();
        assert_eq!(read, sent);
    }

    #[test]
    fn missing_v_and_id_are_older_producers() {
        let json = r#"{"action":"login","created_at":"2025-01-02T03:04:05.123456789Z"}"#;
        let a = entry(json).unwrap();
        let b = entry(json).unwrap();
        assert_eq!(a.id, b.id, "redelivery gets the same id");
        assert_eq!(a.id.get_version_num(), 5);
        let other = decode_entry("s", "1700000000000-1", Some(json.as_bytes()))
            .unwrap()
            .into_activity();
        assert_ne!(a.id, other.id);
        assert_eq!(a.created_at.timestamp_subsec_nanos(), 123_456_000);
    }

    #[test]
    fn poison_entries_have_reasons() {
        let cases: [(Option<&str>, &str); 10] = [
            (None, "no data field"),
            (Some("{"), "invalid JSON"),
            (Some("[1]"), "not an object"),
            (
                Some(r#"{"v":2,"action":"login","created_at":"2025-01-01T00:00:00Z"}"#),
                "version 2",
            ),
            (
                Some(r#"{"v":1,"created_at":"2025-01-01T00:00:00Z"}"#),
                "`action`",
            ),
            (
                Some(r#"{"action":"","created_at":"2025-01-01T00:00:00Z"}"#),
                "`action`",
            ),
            (Some(r#"{"action":"login"}"#), "`created_at`"),
            (
                Some(r#"{"action":"login","created_at":"yesterday"}"#),
                "`created_at`",
            ),
            (
                Some(r#"{"id":"nope","action":"login","created_at":"2025-01-01T00:00:00Z"}"#),
                "`id`",
            ),
            (
                Some(r#"{"action":"login","created_at":"2025-01-01T00:00:00Z","user_id":[1]}"#),
                "`user_id`",
            ),
        ];
        for (data, needle) in cases {
            let err = decode_entry("s", "1-0", data.map(str::as_bytes)).unwrap_err();
            assert!(err.to_string().contains(needle), "{data:?}: {err}");
        }
        let long_action = format!(
            r#"{{"action":"{}","created_at":"2025-01-01T00:00:00Z"}}"#,
            "a".repeat(101)
        );
        assert!(
            entry(&long_action)
                .unwrap_err()
                .to_string()
                .contains("`action`")
        );
        let huge = format!(
            r#"{{"action":"x","created_at":"2025-01-01T00:00:00Z","details":{{"b":"{}"}}}}"#,
            "x".repeat(MAX_PAYLOAD_BYTES)
        );
        assert!(matches!(entry(&huge), Err(DecodeError::Oversize(_))));
    }

    #[test]
    fn optional_fields_are_truncated_and_bad_ip_noted() {
        let json = format!(
            r#"{{"action":"login","created_at":"2025-01-01T00:00:00Z","user_agent":"{}","session_id":"{}","ip_address":"999.1.1.1","details":{{"k":1}}}}"#,
            "ü".repeat(600),
            "s".repeat(300)
        );
        let a = entry(&json).unwrap();
        assert_eq!(a.user_agent.unwrap().chars().count(), 500);
        assert_eq!(a.session_id.unwrap().len(), 255);
        assert_eq!(a.ip_address, None);
        let details = a.details.unwrap();
        assert_eq!(details[INVALID_IP_NOTE], "999.1.1.1");
        assert_eq!(details["k"], 1);
    }

    #[test]
    fn legacy_payloads_use_arrival_time_and_payload_hash() {
        let arrived = Utc::now().trunc_subsecs(6);
        let payload = br#"{"user_id":42,"action":"case_view","resource_type":"case","resource_id":"c9","details":"{\"a\":1}","ip_address":"192.168.1.100"}"#;
        let a = legacy(payload, arrived);
        assert_eq!(a.created_at, arrived);
        assert_eq!(a.user_id.as_deref(), Some("42"));
        assert_eq!(a.details.as_ref().unwrap()["a"], 1);
        assert_eq!(a.id, legacy(payload, arrived).id);
        let with_time = br#"{"action":"login","created_at":"2024-05-06T07:08:09.5"}"#;
        let b = legacy(with_time, arrived);
        assert_eq!(b.created_at.to_rfc3339(), "2024-05-06T07:08:09.500+00:00");
    }

    #[test]
    fn a_details_object_is_kept_as_its_text() {
        let json = r#"{"action":"login","created_at":"2025-01-01T00:00:00Z","details": {"k": [1, 2], "s": "\u00e9"} }"#;
        let decoded = decode_entry("s", "1-0", Some(json.as_bytes())).unwrap();
        assert_eq!(decoded.activity().details, None);
        assert_eq!(
            decoded.details_json().as_deref(),
            Some(r#"{"k": [1, 2], "s": "\u00e9"}"#)
        );
        let details = decoded.into_activity().details.unwrap();
        assert_eq!(details["k"], serde_json::json!([1, 2]));
        assert_eq!(details["s"], "é");
    }

    #[test]
    fn details_that_need_changing_are_read() {
        let cases = [
            // A bad IP is noted in the details.
            r#"{"action":"login","created_at":"2025-01-01T00:00:00Z","ip_address":"x","details":{"k":1}}"#,
            // Not an object.
            r#"{"action":"login","created_at":"2025-01-01T00:00:00Z","details":[1]}"#,
            r#"{"action":"login","created_at":"2025-01-01T00:00:00Z","details":"{\"k\":1}"}"#,
        ];
        for json in cases {
            let decoded = decode_entry("s", "1-0", Some(json.as_bytes())).unwrap();
            assert!(decoded.activity().details.is_some(), "{json}");
            let text = decoded.details_json().unwrap();
            let written: Map<String, Value> = serde_json::from_str(&text).unwrap();
            assert_eq!(Some(written), decoded.activity().details, "{json}");
        }
        // Larger than the limit: the contract's replacement, within it.
        let big = format!(
            r#"{{"action":"x","created_at":"2025-01-01T00:00:00Z","details":{{"b":"{}"}}}}"#,
            "x".repeat(limits::DETAILS_MAX_BYTES)
        );
        let decoded = decode_entry("s", "1-0", Some(big.as_bytes())).unwrap();
        let text = decoded.details_json().unwrap();
        assert!(
            text.len() <= limits::DETAILS_MAX_BYTES,
            "{} bytes",
            text.len()
        );
    }

    #[test]
    fn a_nul_is_left_to_the_writer_with_the_details_kept_as_text() {
        // Issue 20, item 1: the writer replaces it (and counts it); the
        // decoder must not lose `details` on the way.
        let json = r#"{"action":"withdrawal_request","user_id":"u\u0000","created_at":"2025-01-01T00:00:00Z","details":{"amount":"1000000\u0000","k":1}}"#;
        let decoded = decode_entry("s", "1-0", Some(json.as_bytes())).unwrap();
        assert_eq!(decoded.activity().user_id.as_deref(), Some("u\u{0}"));
        assert_eq!(
            decoded.details_json().as_deref(),
            Some(r#"{"amount":"1000000\u0000","k":1}"#)
        );
        let mut activity = decoded.activity().clone();
        let changes = activity_store::normalize::normalize_event(
            &mut activity,
            decoded.details_json().as_deref(),
            decoded.arrived_at(),
        );
        assert!(changes.nul);
        let details = activity.details.unwrap();
        assert_eq!(details["amount"], "1000000\u{fffd}");
        assert_eq!(details["k"], 1);
        assert_eq!(
            details[activity_store::normalize::NUL_NOTE],
            serde_json::json!(["user_id", "details"])
        );
    }

    #[test]
    fn numbers_beyond_f64_outside_an_object_do_not_lose_the_event() {
        // `details` that are not an object are read into one: a number
        // beyond f64 there failed the read, and the event with it.
        let json = r#"{"action":"x","created_at":"2025-01-01T00:00:00Z","details":[1e400]}"#;
        let details = entry(json).unwrap().details.unwrap();
        assert_eq!(details["value"], serde_json::json!(["1e400"]));
    }

    #[test]
    fn hostile_details_of_the_fuzz_corpus_are_stored_readably() {
        // Shapes the v1_event target's corpus holds: deep arrays around a
        // number beyond f64, serde_json's raw-value token as a key, a lone
        // surrogate in a key, a NUL in a value.
        let json = r#"{"action":"x","created_at":"2025-01-01T00:00:00Z","details":{"a":[[[[1e999,-0e-0]]]],"$serde_json::private::RawValue":1,"\ud800k":"\u0000","ok":"\ud83d\ude00"}}"#;
        let decoded = decode_entry("s", "1-0", Some(json.as_bytes())).unwrap();
        let mut activity = decoded.activity().clone();
        let changes = activity_store::normalize::normalize_event(
            &mut activity,
            decoded.details_json().as_deref(),
            decoded.arrived_at(),
        );
        assert!(changes.nul && changes.numbers);
        let text = serde_json::to_string(&activity.details).unwrap();
        assert!(!text.contains("\\u0000"), "{text}");
        let details = activity.details.unwrap();
        assert_eq!(details["a"], serde_json::json!([[[["1e999", -0.0]]]]));
        assert_eq!(details["$serde_json::private::RawValue"], 1);
        assert_eq!(details["\u{fffd}k"], "\u{fffd}");
        assert_eq!(details["ok"], "😀");
    }

    #[test]
    fn arrival_is_the_entry_ids_time() {
        let json = r#"{"action":"login","created_at":"2025-01-01T00:00:00Z"}"#;
        let decoded = decode_entry("s", "1767323045123-7", Some(json.as_bytes())).unwrap();
        assert_eq!(
            decoded.arrived_at().map(|at| at.timestamp_millis()),
            Some(1_767_323_045_123)
        );
    }

    #[test]
    fn a_repeated_field_takes_its_last_value() {
        let json = r#"{"action":"login","user_id":"a","created_at":"2025-01-01T00:00:00Z","action":"logout","user_id":null,"extra":{"x":[1]}}"#;
        let a = entry(json).unwrap();
        assert_eq!(a.action.as_str(), "logout");
        assert_eq!(a.user_id, None);
    }
}
