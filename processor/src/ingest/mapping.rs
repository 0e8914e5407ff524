//! One Segment message (a `track`, `page`, `screen`, `identify`, `group`
//! or `alias` call) into one activity, or the reason it cannot be one.
//! Every rule is in `docs/ingest.md`; what is stored is normalized later
//! by the store's writer, like every other event.

use std::net::IpAddr;

use activity_tracker::{Activity, ActivityType, limits};
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::limits::MAX_EVENT_BYTES;

/// The namespace of the UUID v5 ids made of `<source name>:<messageId>`
/// when a `messageId` is not a UUID. Fixed for ever: changing it would
/// store an SDK's retry of an event sent before the change a second time.
pub const MESSAGE_ID_NAMESPACE: Uuid = uuid::uuid!("c1ce9ce0-f2b8-4e18-b171-5579adaa0685");

/// How far ahead of the receive time a `timestamp` may be.
pub const MAX_FUTURE: TimeDelta = TimeDelta::days(1);

/// The six calls of the Segment tracking API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Track,
    Page,
    Screen,
    Identify,
    Group,
    Alias,
}

impl Kind {
    /// The kind a message's `type` (or a path's last segment) names.
    pub(crate) fn from_name(name: &str) -> Option<Kind> {
        Some(match name {
            "track" => Kind::Track,
            "page" => Kind::Page,
            "screen" => Kind::Screen,
            "identify" => Kind::Identify,
            "group" => Kind::Group,
            "alias" => Kind::Alias,
            _ => return None,
        })
    }

    /// Its name, as in `type`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Track => "track",
            Kind::Page => "page",
            Kind::Screen => "screen",
            Kind::Identify => "identify",
            Kind::Group => "group",
            Kind::Alias => "alias",
        }
    }
}

/// What a message became.
#[derive(Debug)]
pub(crate) enum Mapped {
    /// An activity to store.
    Stored(Box<Activity>),
    /// A call accepted and not stored (`identify`, `group`, `alias`).
    NotStored(Kind),
}

/// Why a message was rejected: a stable code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

fn reject(reason: &'static str, message: impl Into<String>) -> Rejection {
    Rejection {
        reason,
        message: message.into(),
    }
}

/// What the request tells about every message in it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestFacts<'a> {
    /// The source's name (`details.source`).
    pub(crate) source: &'a str,
    /// Whether the source may name the client's address (`context.ip`).
    pub(crate) trusts_context_ip: bool,
    /// The client's address as the connection shows it (through the
    /// trusted proxies).
    pub(crate) peer_ip: Option<IpAddr>,
    /// When the request arrived.
    pub(crate) received_at: DateTime<Utc>,
}

/// Maps the message whose JSON is `raw`; `kind` is the path's (`/v1/track`),
/// `None` for a `/v1/batch` item, which names its own `type`.
pub(crate) fn map(
    raw: &str,
    kind: Option<Kind>,
    facts: &RequestFacts<'_>,
) -> Result<Mapped, Rejection> {
    if raw.len() > MAX_EVENT_BYTES {
        return Err(reject(
            "event_too_large",
            format!(
                "the event is {} bytes of JSON; at most {MAX_EVENT_BYTES} are accepted",
                raw.len()
            ),
        ));
    }
    let mut message: Map<String, Value> = match serde_json::from_str(raw) {
        Ok(Value::Object(message)) => message,
        _ => return Err(reject("invalid_message", "the event is not a JSON object")),
    };
    let kind = match kind {
        Some(kind) => kind,
        None => match message.get("type") {
            Some(Value::String(name)) => Kind::from_name(name).ok_or_else(|| {
                reject(
                    "unknown_type",
                    format!(
                        "unknown type {name:?}; use track, page, screen, identify, group or alias"
                    ),
                )
            })?,
            _ => return Err(reject("unknown_type", "the event has no `type`")),
        },
    };
    let user_id = id_text(&message, "userId")?;
    let anonymous_id = id_text(&message, "anonymousId")?;
    if user_id.is_none() && anonymous_id.is_none() {
        return Err(reject(
            "missing_user",
            "the event has neither `userId` nor `anonymousId`",
        ));
    }
    if matches!(kind, Kind::Identify | Kind::Group | Kind::Alias) {
        return Ok(Mapped::NotStored(kind));
    }
    let action = match kind {
        Kind::Track => match message.get("event") {
            Some(Value::String(event)) => ActivityType::custom(event)
                .map_err(|e| reject("invalid_event", format!("`event`: {e}")))?,
            _ => {
                return Err(reject(
                    "invalid_event",
                    "a track call needs an `event` string",
                ));
            }
        },
        Kind::Page => ActivityType::custom("page_view").expect("a valid name"),
        _ => ActivityType::custom("screen_view").expect("a valid name"),
    };
    let created_at = created_at(&message, facts.received_at)?;
    let mut details = match message.remove("properties") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(properties)) => properties,
        Some(_) => return Err(reject("invalid_message", "`properties` is not an object")),
    };
    let context = match message.get("context") {
        None | Some(Value::Null) => None,
        Some(Value::Object(context)) => Some(context),
        Some(_) => return Err(reject("invalid_message", "`context` is not an object")),
    };
    let session_id = match context.and_then(|c| c.get("sessionId")) {
        Some(value) => scalar_text(value, "context.sessionId")?,
        None => match details.get("session_id") {
            Some(value) => scalar_text(value, "properties.session_id")?,
            None => None,
        },
    };
    let resource_type = lift(&mut details, "resource_type");
    let resource_id = lift(&mut details, "resource_id");
    if matches!(kind, Kind::Page | Kind::Screen) {
        for key in ["name", "category"] {
            if let Some(value) = message.get(key).filter(|v| !v.is_null()) {
                details.insert(key.to_owned(), value.clone());
            }
        }
    }
    if let Some(anonymous_id) = &anonymous_id {
        details.insert(
            "anonymous_id".to_owned(),
            Value::from(anonymous_id.as_str()),
        );
    }
    details.insert("source".to_owned(), Value::from(facts.source));
    let user_agent = match context.and_then(|c| c.get("userAgent")) {
        None | Some(Value::Null) => None,
        Some(Value::String(agent)) => Some(agent.clone()),
        Some(_) => {
            return Err(reject(
                "invalid_message",
                "`context.userAgent` is not a string",
            ));
        }
    };
    for (name, value, max) in [
        ("userId", &user_id, limits::USER_ID_MAX_CHARS),
        (
            "properties.resource_type",
            &resource_type,
            limits::RESOURCE_TYPE_MAX_CHARS,
        ),
        (
            "properties.resource_id",
            &resource_id,
            limits::RESOURCE_ID_MAX_CHARS,
        ),
        ("session id", &session_id, limits::SESSION_ID_MAX_CHARS),
        (
            "context.userAgent",
            &user_agent,
            limits::USER_AGENT_MAX_CHARS,
        ),
    ] {
        if let Some(text) = value {
            let chars = text.chars().count();
            if chars > max {
                return Err(reject(
                    "field_too_long",
                    format!("{name} is {chars} characters long; at most {max} are stored"),
                ));
            }
        }
    }
    let details_bytes = serde_json::to_vec(&details).map_or(0, |json| json.len());
    if details_bytes > limits::DETAILS_MAX_BYTES {
        return Err(reject(
            "properties_too_large",
            format!(
                "`properties` make {details_bytes} bytes of details; at most {} are stored",
                limits::DETAILS_MAX_BYTES
            ),
        ));
    }
    let ip_address = if facts.trusts_context_ip {
        context
            .and_then(|c| c.get("ip"))
            .and_then(Value::as_str)
            .and_then(|ip| ip.trim().parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical())
            .or(facts.peer_ip)
    } else {
        facts.peer_ip
    };
    let id = id(&message, facts.source)?;
    let mut activity = Activity::at(action, created_at);
    activity.id = id;
    activity.user_id = user_id;
    activity.resource_type = resource_type;
    activity.resource_id = resource_id;
    activity.details = Some(details);
    activity.ip_address = ip_address;
    activity.user_agent = user_agent;
    activity.session_id = session_id;
    Ok(Mapped::Stored(Box::new(activity)))
}

/// `messageId` → `id`: itself when a UUID, else the UUID v5 of
/// `<source>:<messageId>` in [`MESSAGE_ID_NAMESPACE`]; without one, a
/// fresh UUID v7 (a retry of such an event cannot be recognized).
fn id(message: &Map<String, Value>, source: &str) -> Result<Uuid, Rejection> {
    let text = match message.get("messageId") {
        None | Some(Value::Null) => return Ok(Uuid::now_v7()),
        Some(Value::String(text)) if text.is_empty() => return Ok(Uuid::now_v7()),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) => number.to_string(),
        Some(_) => return Err(reject("invalid_message", "`messageId` is not a string")),
    };
    Ok(Uuid::try_parse(&text).unwrap_or_else(|_| message_uuid(source, &text)))
}

/// The id of a `messageId` that is not a UUID.
pub fn message_uuid(source: &str, message_id: &str) -> Uuid {
    Uuid::new_v5(
        &MESSAGE_ID_NAMESPACE,
        format!("{source}:{message_id}").as_bytes(),
    )
}

/// `timestamp` as sent (to the microsecond), or the receive time without
/// one; more than [`MAX_FUTURE`] ahead is refused, not clamped (a clamp
/// would differ on each retry, and so would the stored key).
fn created_at(
    message: &Map<String, Value>,
    received_at: DateTime<Utc>,
) -> Result<DateTime<Utc>, Rejection> {
    let at = match message.get("timestamp") {
        None | Some(Value::Null) => return Ok(received_at),
        Some(Value::String(text)) => DateTime::parse_from_rfc3339(text.trim())
            .map_err(|e| {
                reject(
                    "invalid_timestamp",
                    format!("`timestamp` {text:?} is not an ISO 8601 date with an offset: {e}"),
                )
            })?
            .with_timezone(&Utc),
        Some(_) => return Err(reject("invalid_timestamp", "`timestamp` is not a string")),
    };
    if at > received_at + MAX_FUTURE {
        return Err(reject(
            "timestamp_in_future",
            format!(
                "`timestamp` {} is more than a day after the time received ({received_at})",
                at.to_rfc3339()
            ),
        ));
    }
    Ok(at.trunc_subsecs(6))
}

/// A user id as text: a string (empty counts as absent) or a number.
fn id_text(message: &Map<String, Value>, key: &str) -> Result<Option<String>, Rejection> {
    match message.get(key) {
        None => Ok(None),
        Some(value) => scalar_text(value, key),
    }
}

fn scalar_text(value: &Value, name: &str) -> Result<Option<String>, Rejection> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) if text.is_empty() => Ok(None),
        Value::String(text) => Ok(Some(text.clone())),
        Value::Number(number) => Ok(Some(number.to_string())),
        _ => Err(reject(
            "invalid_message",
            format!("`{name}` is not a string or a number"),
        )),
    }
}

/// Takes `key` out of `details` into its column when it is a string.
fn lift(details: &mut Map<String, Value>, key: &str) -> Option<String> {
    if !details.get(key).is_some_and(Value::is_string) {
        return None;
    }
    match details.remove(key) {
        Some(Value::String(text)) => Some(text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn facts(trusted: bool) -> RequestFacts<'static> {
        RequestFacts {
            source: "web",
            trusts_context_ip: trusted,
            peer_ip: Some("198.51.100.7".parse().unwrap()),
            received_at: "2026-12-02T12:00:00Z".parse().unwrap(),
        }
    }

    fn stored(message: Value, kind: Option<Kind>, trusted: bool) -> Activity {
        match map(&message.to_string(), kind, &facts(trusted)) {
            Ok(Mapped::Stored(activity)) => *activity,
            other => panic!("{other:?}"),
        }
    }

    fn rejected(message: Value) -> &'static str {
        match map(&message.to_string(), None, &facts(false)) {
            Err(rejection) => rejection.reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_track_call_maps_field_by_field() {
        let activity = stored(
            json!({
                "type": "track", "event": "case_view", "userId": "u-1", "anonymousId": "a-1",
                "messageId": "0b6a2a8e-9d0f-4c53-a0f8-6a1e9a4f1b11",
                "timestamp": "2026-12-01T10:00:00.123456789+02:00",
                "properties": {"resource_type": "case", "resource_id": "c-9", "amount": 5, "session_id": "s-p"},
                "context": {"userAgent": "UA/1", "ip": "203.0.113.1", "sessionId": "s-c"}
            }),
            None,
            false,
        );
        assert_eq!(
            activity.id.to_string(),
            "0b6a2a8e-9d0f-4c53-a0f8-6a1e9a4f1b11"
        );
        assert_eq!(activity.action.as_str(), "case_view");
        assert_eq!(activity.user_id.as_deref(), Some("u-1"));
        assert_eq!(activity.resource_type.as_deref(), Some("case"));
        assert_eq!(activity.resource_id.as_deref(), Some("c-9"));
        assert_eq!(
            activity.created_at.to_rfc3339(),
            "2026-12-01T08:00:00.123456+00:00"
        );
        assert_eq!(activity.user_agent.as_deref(), Some("UA/1"));
        assert_eq!(activity.session_id.as_deref(), Some("s-c"));
        // Not a trusted source: the peer, not `context.ip`.
        assert_eq!(activity.ip_address, "198.51.100.7".parse().ok());
        assert_eq!(
            Value::Object(activity.details.unwrap()),
            json!({"amount": 5, "session_id": "s-p", "anonymous_id": "a-1", "source": "web"})
        );
    }

    #[test]
    fn ids_come_from_the_message_id_and_the_source_name() {
        let message = json!({"type": "track", "event": "x", "userId": "u", "messageId": "ajs-123"});
        let activity = stored(message.clone(), None, true);
        assert_eq!(activity.id, message_uuid("web", "ajs-123"));
        assert_eq!(activity.id.get_version_num(), 5);
        assert_eq!(stored(message, None, true).id, activity.id);
        assert_ne!(message_uuid("app", "ajs-123"), activity.id);
    }

    #[test]
    fn page_screen_and_the_calls_not_stored() {
        let page = stored(
            json!({"anonymousId": "a", "name": "Home", "category": "Docs", "properties": {"url": "/"},
                   "context": {"ip": "203.0.113.1"}}),
            Some(Kind::Page),
            true,
        );
        assert_eq!(page.action.as_str(), "page_view");
        assert_eq!(page.user_id, None);
        assert_eq!(page.ip_address, "203.0.113.1".parse().ok());
        assert_eq!(
            Value::Object(page.details.unwrap()),
            json!({"url": "/", "name": "Home", "category": "Docs", "anonymous_id": "a", "source": "web"})
        );
        let screen = stored(
            json!({"type": "screen", "userId": 42, "name": "Cart"}),
            None,
            false,
        );
        assert_eq!(screen.action.as_str(), "screen_view");
        assert_eq!(screen.user_id.as_deref(), Some("42"));
        for kind in ["identify", "group", "alias"] {
            let result = map(
                &json!({"type": kind, "userId": "u"}).to_string(),
                None,
                &facts(false),
            );
            assert!(matches!(result, Ok(Mapped::NotStored(k)) if k.name() == kind));
        }
    }

    #[test]
    fn bad_events_are_rejected_with_their_reason() {
        assert_eq!(
            rejected(json!({"type": "track", "event": "x"})),
            "missing_user"
        );
        assert_eq!(
            rejected(json!({"type": "nope", "userId": "u"})),
            "unknown_type"
        );
        assert_eq!(
            rejected(json!({"type": "track", "userId": "u"})),
            "invalid_event"
        );
        assert_eq!(
            rejected(json!({"type": "track", "userId": "u", "event": "e".repeat(101)})),
            "invalid_event"
        );
        assert_eq!(
            rejected(json!({"type": "track", "userId": "u".repeat(256), "event": "x"})),
            "field_too_long"
        );
        assert_eq!(
            rejected(json!({"type": "track", "userId": "u", "event": "x",
                            "properties": {"resource_type": "t".repeat(51)}})),
            "field_too_long"
        );
        assert_eq!(
            rejected(json!({"type": "track", "userId": "u", "event": "x",
                            "properties": {"blob": "b".repeat(20 * 1024)}})),
            "properties_too_large"
        );
        assert_eq!(
            rejected(json!({"type": "track", "userId": "u", "event": "x",
                            "properties": {"blob": "b".repeat(40 * 1024)}})),
            "event_too_large"
        );
        assert_eq!(
            rejected(json!({"type": "track", "userId": "u", "event": "x",
                            "timestamp": "2026-12-03T12:00:01Z"})),
            "timestamp_in_future"
        );
        assert_eq!(
            rejected(
                json!({"type": "track", "userId": "u", "event": "x", "timestamp": "yesterday"})
            ),
            "invalid_timestamp"
        );
        assert_eq!(rejected(json!([1])), "invalid_message");
        // A day ahead exactly is accepted.
        stored(
            json!({"type": "track", "userId": "u", "event": "x", "timestamp": "2026-12-03T12:00:00Z"}),
            None,
            false,
        );
    }
}
