//! The event model: one [`Activity`] per recorded user action, and its wire
//! format (version [`WIRE_VERSION`]), the JSON object carried in the `data`
//! field of a Redis Stream entry.
//!
//! ```
//! use activity_tracker::{Activity, ActivityType};
//!
//! let activity = Activity::new(ActivityType::CaseCreate)
//!     .user_id("user-123")
//!     .resource("case", "case-456")
//!     .detail("case_amount", 50000.0);
//! let json = activity.to_wire_json();
//! let back = Activity::from_wire_json(json.as_bytes()).unwrap();
//! assert_eq!(back, activity);
//! assert_eq!(back.action.as_str(), "case_create");
//! ```

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use uuid::Uuid;

pub(crate) mod wire;

/// The wire-format version written in the `v` field of every entry.
pub const WIRE_VERSION: u32 = 1;

/// Length limits of the wire format and of the `user_activity_logs` columns.
///
/// Lengths of text fields are counted in characters (Unicode scalar values),
/// as PostgreSQL's `VARCHAR(n)` counts them; `details` is counted in bytes of
/// its serialized JSON.
pub mod limits {
    /// `action`: 1..=100 characters.
    pub const ACTION_MAX_CHARS: usize = 100;
    /// `resource_type`: at most 50 characters.
    pub const RESOURCE_TYPE_MAX_CHARS: usize = 50;
    /// `resource_id`: at most 255 characters.
    pub const RESOURCE_ID_MAX_CHARS: usize = 255;
    /// `user_agent`: truncated to 500 characters.
    pub const USER_AGENT_MAX_CHARS: usize = 500;
    /// `session_id`: at most 255 characters.
    pub const SESSION_ID_MAX_CHARS: usize = 255;
    /// `user_id`: at most 255 characters (the admin API's bound too).
    pub const USER_ID_MAX_CHARS: usize = 255;
    /// `details`: serialized JSON of at most 16 KiB.
    pub const DETAILS_MAX_BYTES: usize = 16 * 1024;
}

/// What a user did: the original catalogue of 24 actions, or an app's own.
///
/// Serialized as its snake_case name (`"case_create"`); any other valid name
/// (1..=100 characters) reads back as [`ActivityType::Custom`].
#[derive(Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ActivityType {
    /// `login`
    Login,
    /// `logout`
    Logout,
    /// `register`
    Register,
    /// `case_create`
    CaseCreate,
    /// `case_view`
    CaseView,
    /// `case_update`
    CaseUpdate,
    /// `case_delete`
    CaseDelete,
    /// `case_assign`
    CaseAssign,
    /// `case_grab`
    CaseGrab,
    /// `case_complete`
    CaseComplete,
    /// `payment_create`
    PaymentCreate,
    /// `payment_success`
    PaymentSuccess,
    /// `payment_failed`
    PaymentFailed,
    /// `document_generate`
    DocumentGenerate,
    /// `document_review`
    DocumentReview,
    /// `document_approve`
    DocumentApprove,
    /// `document_reject`
    DocumentReject,
    /// `document_send`
    DocumentSend,
    /// `withdrawal_request`
    WithdrawalRequest,
    /// `withdrawal_approve`
    WithdrawalApprove,
    /// `withdrawal_reject`
    WithdrawalReject,
    /// `config_update`
    ConfigUpdate,
    /// `profile_update`
    ProfileUpdate,
    /// `password_change`
    PasswordChange,
    /// An app's own action name, made with [`ActivityType::custom`].
    Custom(CustomAction),
}

/// A validated app-defined action name (1..=100 characters, not blank).
///
/// Cheap to clone: routes share one allocation.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CustomAction(Arc<str>);

impl CustomAction {
    /// The action name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CustomAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// The catalogue, in the original design's order, with the wire names.
const CATALOGUE: [(ActivityType, &str); 24] = [
    (ActivityType::Login, "login"),
    (ActivityType::Logout, "logout"),
    (ActivityType::Register, "register"),
    (ActivityType::CaseCreate, "case_create"),
    (ActivityType::CaseView, "case_view"),
    (ActivityType::CaseUpdate, "case_update"),
    (ActivityType::CaseDelete, "case_delete"),
    (ActivityType::CaseAssign, "case_assign"),
    (ActivityType::CaseGrab, "case_grab"),
    (ActivityType::CaseComplete, "case_complete"),
    (ActivityType::PaymentCreate, "payment_create"),
    (ActivityType::PaymentSuccess, "payment_success"),
    (ActivityType::PaymentFailed, "payment_failed"),
    (ActivityType::DocumentGenerate, "document_generate"),
    (ActivityType::DocumentReview, "document_review"),
    (ActivityType::DocumentApprove, "document_approve"),
    (ActivityType::DocumentReject, "document_reject"),
    (ActivityType::DocumentSend, "document_send"),
    (ActivityType::WithdrawalRequest, "withdrawal_request"),
    (ActivityType::WithdrawalApprove, "withdrawal_approve"),
    (ActivityType::WithdrawalReject, "withdrawal_reject"),
    (ActivityType::ConfigUpdate, "config_update"),
    (ActivityType::ProfileUpdate, "profile_update"),
    (ActivityType::PasswordChange, "password_change"),
];

impl ActivityType {
    /// The 24 actions of the original catalogue.
    pub fn catalogue() -> impl Iterator<Item = ActivityType> {
        CATALOGUE.into_iter().map(|(action, _)| action)
    }

    /// An app's own action. Names of the catalogue give the catalogue's
    /// variant, so `custom("login")` equals [`ActivityType::Login`].
    pub fn custom(name: impl AsRef<str>) -> Result<Self, InvalidAction> {
        let name = name.as_ref();
        if let Some((action, _)) = CATALOGUE.iter().find(|(_, wire)| *wire == name) {
            return Ok(action.clone());
        }
        if name.trim().is_empty() {
            return Err(InvalidAction::Empty);
        }
        let chars = name.chars().count();
        if chars > limits::ACTION_MAX_CHARS {
            return Err(InvalidAction::TooLong(chars));
        }
        Ok(ActivityType::Custom(CustomAction(Arc::from(name))))
    }

    /// The wire name (`"case_create"`).
    pub fn as_str(&self) -> &str {
        match self {
            ActivityType::Custom(custom) => custom.as_str(),
            known => CATALOGUE
                .iter()
                .find(|(action, _)| action == known)
                .map(|(_, wire)| *wire)
                .expect("every non-custom variant is in the catalogue"),
        }
    }
}

impl fmt::Debug for ActivityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for ActivityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ActivityType {
    type Err = InvalidAction;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ActivityType::custom(s)
    }
}

impl Serialize for ActivityType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ActivityType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        ActivityType::custom(&*name).map_err(serde::de::Error::custom)
    }
}

/// Why an action name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidAction {
    /// Empty or only white space.
    #[error("action name is empty")]
    Empty,
    /// Longer than [`limits::ACTION_MAX_CHARS`].
    #[error("action name is {0} characters long; at most 100 are allowed")]
    TooLong(usize),
}

/// One recorded user action: a row of `user_activity_logs`.
///
/// Made with [`Activity::new`] (fresh UUID v7 id, `created_at` now) and the
/// chainable setters; serialized with [`Activity::to_wire_json`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    /// UUID v7 made at capture; the idempotency key end to end.
    pub id: Uuid,
    /// The app's own user id; `None` for anonymous actions (failed login).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// What was done.
    pub action: ActivityType,
    /// Kind of the object acted on (`"case"`), at most 50 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    /// Id of the object acted on, at most 255 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// Free-form JSON object (≤ 16 KiB serialized); the layer adds `method`,
    /// `route`, `status` and `latency_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Map<String, Value>>,
    /// Client IP after trusted-proxy resolution.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<IpAddr>,
    /// User agent, at most 500 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Session id, at most 255 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// When the request started (UTC).
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
}

impl Activity {
    /// A new activity with a fresh UUID v7 id, made now, and no other field set.
    pub fn new(action: ActivityType) -> Self {
        Activity::at(action, Utc::now())
    }

    /// A new activity with a fresh UUID v7 id that happened at `created_at`
    /// (kept to the microsecond, the precision of the table and the wire).
    pub fn at(action: ActivityType, created_at: DateTime<Utc>) -> Self {
        let created_at = created_at.trunc_subsecs(6);
        Activity {
            id: Uuid::now_v7(),
            user_id: None,
            action,
            resource_type: None,
            resource_id: None,
            details: None,
            ip_address: None,
            user_agent: None,
            session_id: None,
            created_at,
        }
    }

    /// Sets the user id.
    pub fn user_id(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// Sets the resource type and id.
    pub fn resource(mut self, kind: impl Into<String>, id: impl Into<String>) -> Self {
        self.resource_type = Some(kind.into());
        self.resource_id = Some(id.into());
        self
    }

    /// Adds one key to `details`.
    pub fn detail(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.details
            .get_or_insert_with(Map::new)
            .insert(key.into(), value.into());
        self
    }

    /// Sets the client IP.
    pub fn ip_address(mut self, ip: IpAddr) -> Self {
        self.ip_address = Some(ip);
        self
    }

    /// Sets the user agent (truncated by [`Activity::normalize`]).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    /// Sets the session id.
    pub fn session_id(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }

    /// Brings the optional text fields within the contract's limits:
    /// `user_agent`, `session_id`, `resource_type`, `resource_id` and
    /// `user_id` are truncated on a character boundary; oversize `details`
    /// are replaced by `{"truncated": true, "original_bytes": N}` so the
    /// event itself is never lost. Returns whether anything changed.
    pub fn normalize(&mut self) -> bool {
        let mut changed = false;
        for (field, max) in [
            (&mut self.user_agent, limits::USER_AGENT_MAX_CHARS),
            (&mut self.session_id, limits::SESSION_ID_MAX_CHARS),
            (&mut self.resource_type, limits::RESOURCE_TYPE_MAX_CHARS),
            (&mut self.resource_id, limits::RESOURCE_ID_MAX_CHARS),
            (&mut self.user_id, limits::USER_ID_MAX_CHARS),
        ] {
            if let Some(text) = field {
                changed |= truncate_chars(text, max);
            }
        }
        // Serializing only to measure is the costliest step of the
        // dispatcher's per-event work: skip it when a cheap bound says the
        // details are small enough anyway.
        if let Some(details) = self
            .details
            .as_ref()
            .filter(|details| map_size_bound(details) > limits::DETAILS_MAX_BYTES)
        {
            let bytes = serde_json::to_vec(details).map(|v| v.len()).unwrap_or(0);
            if bytes > limits::DETAILS_MAX_BYTES {
                let mut replaced = Map::new();
                replaced.insert("truncated".into(), Value::Bool(true));
                replaced.insert("original_bytes".into(), Value::from(bytes));
                self.details = Some(replaced);
                changed = true;
            }
        }
        changed
    }

    /// The wire-format JSON object (with `"v": 1`), as written to the `data`
    /// field of a stream entry.
    pub fn to_wire_json(&self) -> String {
        let mut json = Vec::with_capacity(512);
        self.write_wire_json(&mut json);
        String::from_utf8(json).expect("the wire writer only writes UTF-8")
    }

    /// Appends the wire-format JSON object of [`Activity::to_wire_json`] to
    /// `out`, so a batch can be serialized into one reused buffer.
    ///
    /// ```
    /// use activity_tracker::{Activity, ActivityType};
    ///
    /// let activity = Activity::new(ActivityType::Login).user_id("user-123");
    /// let mut buffer = Vec::new();
    /// activity.write_wire_json(&mut buffer);
    /// assert_eq!(buffer, activity.to_wire_json().as_bytes());
    /// ```
    pub fn write_wire_json(&self, out: &mut Vec<u8>) {
        wire::write(self, out);
    }

    /// Reads a wire-format JSON object strictly: `v` must be 1, and `id`,
    /// `action` and `created_at` must be present and valid. (The processor
    /// has its own lenient reader for older producers.)
    pub fn from_wire_json(bytes: &[u8]) -> Result<Self, WireError> {
        let wire: WireOwned = serde_json::from_slice(bytes).map_err(WireError::Json)?;
        if wire.v != WIRE_VERSION {
            return Err(WireError::UnknownVersion(wire.v));
        }
        Ok(wire.activity)
    }
}

/// Why a wire entry could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Not JSON, or a field of the wrong type or missing.
    #[error("invalid wire JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// A `v` this library does not know.
    #[error("unknown wire-format version {0}; this reader knows version 1")]
    UnknownVersion(u32),
}

#[derive(Deserialize)]
struct WireOwned {
    v: u32,
    #[serde(flatten)]
    activity: Activity,
}

/// An upper bound of the serialized size of a JSON object, found without
/// serializing it: every string byte counts as 6 (a `\u00XX` escape), every
/// number as 40.
fn map_size_bound(map: &Map<String, Value>) -> usize {
    2 + map
        .iter()
        .map(|(key, value)| 2 + 6 * key.len() + 2 + value_size_bound(value))
        .sum::<usize>()
}

fn value_size_bound(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 40,
        Value::String(text) => 2 + 6 * text.len(),
        Value::Array(items) => 2 + items.iter().map(|v| value_size_bound(v) + 1).sum::<usize>(),
        Value::Object(map) => map_size_bound(map),
    }
}

/// Truncates `text` to at most `max_chars` characters, on a character
/// boundary. Returns whether it was cut.
pub fn truncate_chars(text: &mut String, max_chars: usize) -> bool {
    if text.len() <= max_chars {
        // Never more characters than bytes.
        return false;
    }
    match text.char_indices().nth(max_chars) {
        Some((byte_index, _)) => {
            text.truncate(byte_index);
            true
        }
        None => false,
    }
}

/// `text` cut to at most `max_chars` characters, on a character boundary:
/// [`truncate_chars`] for borrowed text.
#[cfg(feature = "tracker")]
pub(crate) fn prefix_chars(text: &str, max_chars: usize) -> &str {
    if text.len() <= max_chars {
        // Never more characters than bytes.
        return text;
    }
    match text.char_indices().nth(max_chars) {
        Some((byte_index, _)) => &text[..byte_index],
        None => text,
    }
}

/// `created_at` as RFC 3339 in UTC with microseconds (PostgreSQL's
/// `TIMESTAMPTZ` precision), so a value read back from the table equals the
/// value sent.
mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Micros, true))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|at| at.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_round_trips_through_names() {
        assert_eq!(ActivityType::catalogue().count(), 24);
        for action in ActivityType::catalogue() {
            assert_eq!(ActivityType::custom(action.as_str()).unwrap(), action);
        }
        assert_eq!(ActivityType::CaseCreate.as_str(), "case_create");
        assert_eq!(ActivityType::PaymentFailed.as_str(), "payment_failed");
    }

    #[test]
    fn custom_actions_are_validated() {
        assert_eq!(
            ActivityType::custom("export_report").unwrap().as_str(),
            "export_report"
        );
        assert_eq!(ActivityType::custom(""), Err(InvalidAction::Empty));
        assert_eq!(ActivityType::custom("  "), Err(InvalidAction::Empty));
        let long = "é".repeat(101);
        assert_eq!(
            ActivityType::custom(&long),
            Err(InvalidAction::TooLong(101))
        );
        assert!(ActivityType::custom("é".repeat(100)).is_ok());
    }

    #[test]
    fn wire_json_has_version_and_contract_fields() {
        let activity = Activity::new(ActivityType::Login)
            .user_id("u1")
            .ip_address("192.168.1.100".parse().unwrap())
            .user_agent("Mozilla/5.0")
            .session_id("s1");
        let value: Value = serde_json::from_str(&activity.to_wire_json()).unwrap();
        assert_eq!(value["v"], 1);
        assert_eq!(value["id"], activity.id.to_string());
        assert_eq!(value["action"], "login");
        assert_eq!(value["user_id"], "u1");
        assert_eq!(value["ip_address"], "192.168.1.100");
        assert_eq!(value["resource_type"], Value::Null);
        assert_eq!(value["details"], Value::Null);
        let created = value["created_at"].as_str().unwrap();
        assert!(created.ends_with('Z'), "{created}");
        assert_eq!(Activity::id_version(&activity), 7);
    }

    #[test]
    fn strict_reader_refuses_other_versions_and_missing_fields() {
        let activity = Activity::new(ActivityType::Logout);
        let json = activity.to_wire_json().replace("\"v\":1", "\"v\":2");
        assert!(matches!(
            Activity::from_wire_json(json.as_bytes()),
            Err(WireError::UnknownVersion(2))
        ));
        assert!(matches!(
            Activity::from_wire_json(br#"{"v":1,"action":"login"}"#),
            Err(WireError::Json(_))
        ));
    }

    #[test]
    fn normalize_truncates_on_char_boundaries() {
        let mut activity = Activity::new(ActivityType::Login)
            .user_agent("ü".repeat(600))
            .session_id("s".repeat(300));
        assert!(activity.normalize());
        assert_eq!(activity.user_agent.as_ref().unwrap().chars().count(), 500);
        assert_eq!(activity.session_id.as_ref().unwrap().len(), 255);
        assert!(!activity.normalize());
    }

    #[test]
    fn size_bound_is_never_below_the_serialized_size() {
        let details = serde_json::json!({
            "quote\"s": "\u{1}\n\\ é 😀",
            "n": [1.5e300, -12, u64::MAX, null, true],
            "nested": {"a": {"b": []}, "c": ""},
        });
        let Value::Object(map) = details else {
            unreachable!()
        };
        let exact = serde_json::to_vec(&map).unwrap().len();
        assert!(
            map_size_bound(&map) >= exact,
            "{} < {exact}",
            map_size_bound(&map)
        );
    }

    #[test]
    fn oversize_details_are_replaced_not_lost() {
        let mut activity =
            Activity::new(ActivityType::ConfigUpdate).detail("blob", "x".repeat(20_000));
        assert!(activity.normalize());
        let details = activity.details.unwrap();
        assert_eq!(details["truncated"], true);
        assert!(details["original_bytes"].as_u64().unwrap() > 20_000);
    }

    impl Activity {
        fn id_version(&self) -> usize {
            self.id.get_version_num()
        }
    }
}
