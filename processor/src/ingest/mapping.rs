//! One Segment message (a `track`, `page`, `screen`, `identify`, `group`
//! or `alias` call) into one activity, or the reason it cannot be one.
//! Every rule is in `docs/ingest.md`; what is stored is normalized later
//! by the store's writer, like every other event.

use std::borrow::Cow;
use std::net::IpAddr;

use activity_tracker::{Activity, ActivityType, limits};
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor, value::MapAccessDeserializer};
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

/// The fields of a message that are read; every other one is skipped
/// unread. Text borrows from the request where it holds no escapes.
#[derive(Deserialize)]
struct Message<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(rename = "userId", default)]
    user_id: Option<IdText>,
    #[serde(rename = "anonymousId", default)]
    anonymous_id: Option<IdText>,
    #[serde(rename = "messageId", default)]
    message_id: Option<IdText>,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(default)]
    properties: Option<Map<String, Value>>,
    #[serde(borrow, default)]
    context: Option<ObjectOnly<Context<'a>>>,
    #[serde(default)]
    name: Option<Value>,
    #[serde(default)]
    category: Option<Value>,
}

#[derive(Deserialize)]
struct Context<'a> {
    #[serde(rename = "userAgent", borrow, default)]
    user_agent: Option<Cow<'a, str>>,
    #[serde(rename = "sessionId", default)]
    session_id: Option<IdText>,
    /// Any JSON: garbage here is ignored (the peer is used), not an error.
    #[serde(default)]
    ip: Option<Value>,
}

/// A struct read from a JSON object only. `serde` reads a struct from an
/// array too, its fields in order (`[null, null, "user-1"]` would be a
/// message with a `userId`), which no Segment client sends and the API's
/// document refuses: a message, its `context` and a request body are
/// objects.
pub(crate) struct ObjectOnly<T>(pub(crate) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(ObjectVisitor(std::marker::PhantomData))
            .map(ObjectOnly)
    }
}

/// An id as Segment messages carry them: a string or a number, as text.
struct IdText(String);

impl<'de> Deserialize<'de> for IdText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = IdText;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E>(self, text: &str) -> Result<IdText, E> {
                Ok(IdText(text.to_owned()))
            }
            fn visit_i64<E>(self, n: i64) -> Result<IdText, E> {
                Ok(IdText(n.to_string()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<IdText, E> {
                Ok(IdText(n.to_string()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<IdText, E> {
                Ok(IdText(
                    serde_json::Number::from_f64(n)
                        .map_or_else(|| n.to_string(), |n| n.to_string()),
                ))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl IdText {
    /// The text, an empty one counting as absent.
    fn into_text(id: Option<IdText>) -> Option<String> {
        id.map(|IdText(text)| text).filter(|text| !text.is_empty())
    }
}

/// How much longer than its source text JSON parsed and written again can
/// be: strings and keys never grow, a number at most some 4.5 times
/// (`1e15` is written `1000000000000000.0`).
const REWRITE_GROWTH: usize = 5;

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
    let ObjectOnly(message): ObjectOnly<Message<'_>> = serde_json::from_str(raw).map_err(|e| {
        reject(
            "invalid_message",
            format!("the event is not a message object: {e}"),
        )
    })?;
    let kind = match kind {
        Some(kind) => kind,
        None => match message.kind.as_deref() {
            Some(name) => Kind::from_name(name).ok_or_else(|| {
                reject(
                    "unknown_type",
                    format!(
                        "unknown type {name:?}; use track, page, screen, identify, group or alias"
                    ),
                )
            })?,
            None => return Err(reject("unknown_type", "the event has no `type`")),
        },
    };
    let user_id = IdText::into_text(message.user_id);
    let anonymous_id = IdText::into_text(message.anonymous_id);
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
        Kind::Track => match message.event.as_deref() {
            Some(event) => ActivityType::custom(event)
                .map_err(|e| reject("invalid_event", format!("`event`: {e}")))?,
            None => {
                return Err(reject(
                    "invalid_event",
                    "a track call needs an `event` string",
                ));
            }
        },
        Kind::Page => ActivityType::custom("page_view").expect("a valid name"),
        _ => ActivityType::custom("screen_view").expect("a valid name"),
    };
    let created_at = created_at(message.timestamp.as_deref(), facts.received_at)?;
    let mut details = message.properties.unwrap_or_default();
    let (user_agent, context_session, context_ip) = match message.context {
        Some(ObjectOnly(context)) => (
            context.user_agent.map(Cow::into_owned),
            IdText::into_text(context.session_id),
            context.ip,
        ),
        None => (None, None, None),
    };
    let session_id = match context_session {
        Some(session) => Some(session),
        None => match details.get("session_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) if text.is_empty() => None,
            Some(Value::String(text)) => Some(text.clone()),
            Some(Value::Number(number)) => Some(number.to_string()),
            Some(_) => {
                return Err(reject(
                    "invalid_message",
                    "`properties.session_id` is not a string or a number",
                ));
            }
        },
    };
    let resource_type = lift(&mut details, "resource_type");
    let resource_id = lift(&mut details, "resource_id");
    if matches!(kind, Kind::Page | Kind::Screen) {
        for (key, value) in [("name", message.name), ("category", message.category)] {
            if let Some(value) = value.filter(|v| !v.is_null()) {
                details.insert(key.to_owned(), value);
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
    // `details` is made of the message's own text plus the source's name
    // and a few keys: measured only when that bound could pass the limit.
    let bound = raw.len() * REWRITE_GROWTH + facts.source.len() + 64;
    if bound > limits::DETAILS_MAX_BYTES {
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
    }
    let context_ip = match &context_ip {
        Some(Value::String(ip)) => Some(ip.as_str()),
        _ => None,
    };
    let ip_address = client_ip(context_ip, facts);
    let id = id(
        IdText::into_text(message.message_id).as_deref(),
        facts.source,
    );
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
pub(super) fn id(message_id: Option<&str>, source: &str) -> Uuid {
    match message_id {
        None => Uuid::now_v7(),
        Some(text) => Uuid::try_parse(text).unwrap_or_else(|_| message_uuid(source, text)),
    }
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
pub(super) fn created_at(
    timestamp: Option<&str>,
    received_at: DateTime<Utc>,
) -> Result<DateTime<Utc>, Rejection> {
    let Some(text) = timestamp else {
        return Ok(received_at);
    };
    let at = DateTime::parse_from_rfc3339(text.trim())
        .map_err(|e| {
            reject(
                "invalid_timestamp",
                format!("`timestamp` {text:?} is not an ISO 8601 date with an offset: {e}"),
            )
        })?
        .with_timezone(&Utc);
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

/// The client's address: `context.ip` when the source is trusted to name
/// it and it parses, else the peer's (through the trusted proxies).
pub(super) fn client_ip(context_ip: Option<&str>, facts: &RequestFacts<'_>) -> Option<IpAddr> {
    match context_ip {
        Some(ip) if facts.trusts_context_ip => ip
            .trim()
            .parse::<IpAddr>()
            .ok()
            .map(|ip| ip.to_canonical())
            .or(facts.peer_ip),
        _ => facts.peer_ip,
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
