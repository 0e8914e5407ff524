//! One Segment message straight into its wire line: the mapping of
//! [`super::mapping`] for the messages SDKs send, read with the scanner
//! (`scan`) and written with `details` made from the message's text
//! (`details`), with no `Activity`, no map and few owned strings (and
//! its `timestamp` read by `timestamp` when in the usual shape).
//!
//! It gives what [`super::mapping::map`] gives, or `None`: for any message
//! it cannot read exactly as `serde_json` does, and for every message that
//! would be rejected, so that the rejection and its text come from the
//! one mapping that defines them. The tests (`direct/tests.rs`) hold the
//! two to the same lines, for generated and hostile messages.

use std::borrow::Cow;

use activity_tracker::{WireBatch, WireLine, limits};
use chrono::SubsecRound;

use super::details::{self, Member, MemberValue};
use super::limits::MAX_EVENT_BYTES;
use super::mapping::{self, Kind, MAX_FUTURE, RequestFacts};
use super::scan::{Json, JsonValue, Scanner, plain_integer};
use super::timestamp;

#[cfg(test)]
mod tests;

/// What a message became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direct {
    /// Its line was appended to the batch.
    Stored,
    /// A call accepted and not stored.
    NotStored(Kind),
}

/// Buffers reused from one event of a request to the next.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    details: Vec<u8>,
    /// Where values read and not written are checked.
    unused: Vec<u8>,
}

/// Maps the message whose JSON is `raw`, read already (`message`, `None`
/// when it could not be), as [`mapping::map`] does, appending its line to
/// `batch` when it is stored; `None` (nothing appended) when
/// `mapping::map` must decide.
pub(crate) fn map<'a>(
    raw: &'a str,
    message: Option<&mut Message<'a>>,
    kind: Option<Kind>,
    facts: &RequestFacts<'a>,
    batch: &mut WireBatch,
    scratch: &mut Scratch,
) -> Option<Direct> {
    if raw.len() > MAX_EVENT_BYTES {
        return None;
    }
    // By reference: a message is some 400 bytes, each move a copy.
    let message = message?;
    let kind = match kind {
        Some(kind) => kind,
        None => Kind::from_name(message.kind.as_deref()?)?,
    };
    let user_id = non_empty(message.user_id.take());
    let anonymous_id = non_empty(message.anonymous_id.take());
    if user_id.is_none() && anonymous_id.is_none() {
        return None;
    }
    let page_like = matches!(kind, Kind::Page | Kind::Screen);
    // What `serde_json` reads as a `Value` and the line does not hold must
    // still be a value it reads.
    let unused = &mut scratch.unused;
    for value in [message.name, message.category] {
        if let Some(value) = value.filter(|_| !page_like) {
            unused.clear();
            details::write_value(value, unused)?;
        }
    }
    if let Some(ip) = message.ip {
        unused.clear();
        details::write_value(ip, unused)?;
    }
    let mut members = message.properties.take().unwrap_or_default();
    if matches!(kind, Kind::Identify | Kind::Group | Kind::Alias) {
        unused.clear();
        details::write_object(&mut members, unused)?;
        return Some(Direct::NotStored(kind));
    }
    let action = match kind {
        Kind::Track => {
            let event = message.event.as_deref()?;
            // Never more characters than bytes, and text that starts with
            // an ASCII byte other than white space is not blank: most
            // names need neither count nor trim.
            let starts_plainly = event
                .as_bytes()
                .first()
                .is_some_and(|&b| b.is_ascii() && !matches!(b, b'\t'..=b'\r' | b' '));
            if (!starts_plainly && event.trim().is_empty())
                || (event.len() > limits::ACTION_MAX_CHARS
                    && event.chars().count() > limits::ACTION_MAX_CHARS)
            {
                return None;
            }
            event
        }
        Kind::Page => "page_view",
        _ => "screen_view",
    };
    let created_at = match message.timestamp.as_deref().map(timestamp::parse) {
        Some(Some(at)) if at > facts.received_at + MAX_FUTURE => return None,
        Some(Some(at)) => at,
        _ => mapping::created_at(message.timestamp.as_deref(), facts.received_at).ok()?,
    }
    .trunc_subsecs(6);
    let session_id = match non_empty(message.session_id.take()) {
        Some(session) => Some(session),
        None => match last(&members, "session_id") {
            None => None,
            Some(value) => match value.json {
                Json::Null => None,
                Json::String(text) => Some(text.decode()?).filter(|text| !text.is_empty()),
                Json::Number(number) if plain_integer(number) => Some(Cow::Borrowed(number)),
                // A float's text, or a rejection: `mapping` decides.
                _ => return None,
            },
        },
    };
    let resource_type = lift(&mut members, "resource_type", unused)?;
    let resource_id = lift(&mut members, "resource_id", unused)?;
    if page_like {
        for (key, value) in [("name", message.name), ("category", message.category)] {
            if let Some(value) = value {
                members.push(Member::named(key, MemberValue::Json(value)));
            }
        }
    }
    if let Some(anonymous_id) = &anonymous_id {
        members.push(Member::named(
            "anonymous_id",
            MemberValue::Text(anonymous_id.clone()),
        ));
    }
    members.push(Member::named(
        "source",
        MemberValue::Text(Cow::Borrowed(facts.source)),
    ));
    for (text, max) in [
        (&user_id, limits::USER_ID_MAX_CHARS),
        (&resource_type, limits::RESOURCE_TYPE_MAX_CHARS),
        (&resource_id, limits::RESOURCE_ID_MAX_CHARS),
        (&session_id, limits::SESSION_ID_MAX_CHARS),
        (&message.user_agent, limits::USER_AGENT_MAX_CHARS),
    ] {
        // Never more characters than bytes: most text is not counted.
        if let Some(text) = text
            && text.len() > max
            && text.chars().count() > max
        {
            return None;
        }
    }
    let details = &mut scratch.details;
    details.clear();
    details::write_object(&mut members, details)?;
    if details.len() > limits::DETAILS_MAX_BYTES {
        return None;
    }
    let context_ip = match message.ip.map(|ip| ip.json) {
        Some(Json::String(ip)) => Some(ip.decode()?),
        _ => None,
    };
    let ip_address = mapping::client_ip(context_ip.as_deref(), facts);
    let message_id = non_empty(message.message_id.take());
    let line = WireLine {
        id: mapping::id(message_id.as_deref(), facts.source),
        user_id: user_id.as_deref(),
        action,
        resource_type: resource_type.as_deref(),
        resource_id: resource_id.as_deref(),
        details_json: Some(details),
        ip_address,
        user_agent: message.user_agent.as_deref(),
        session_id: session_id.as_deref(),
        created_at,
    };
    let action_borrowed = kind != Kind::Track || borrowed(&message.event);
    if action_borrowed
        && [
            &user_id,
            &resource_type,
            &resource_id,
            &message.user_agent,
            &session_id,
        ]
        .into_iter()
        .all(borrowed)
    {
        batch.push_plain_line(&line);
    } else {
        batch.push_line(&line);
    }
    Some(Direct::Stored)
}

/// Whether `text` is absent or borrowed from the body: then it was a JSON
/// string written without escapes (which holds no `"`, no `\` and, the
/// scanner checked, no control character) or an integer's digits, and
/// holds nothing to escape. Decoded text is owned.
fn borrowed(text: &Option<Cow<'_, str>>) -> bool {
    !matches!(text, Some(Cow::Owned(_)))
}

/// The fields of a message the mapping reads, as `mapping`'s `Message`
/// and `Context` read them.
#[derive(Debug, Default)]
pub(crate) struct Message<'a> {
    kind: Option<Cow<'a, str>>,
    event: Option<Cow<'a, str>>,
    user_id: Option<Cow<'a, str>>,
    anonymous_id: Option<Cow<'a, str>>,
    message_id: Option<Cow<'a, str>>,
    timestamp: Option<Cow<'a, str>>,
    /// The members of `properties`, in their order.
    properties: Option<Vec<Member<'a>>>,
    /// Values other than `null`.
    name: Option<JsonValue<'a>>,
    category: Option<JsonValue<'a>>,
    user_agent: Option<Cow<'a, str>>,
    session_id: Option<Cow<'a, str>>,
    ip: Option<JsonValue<'a>>,
}

/// The fields read, one bit each, so that one met twice (which
/// `serde_json` refuses) is found.
#[derive(Debug, Default)]
struct Seen(u16);

impl Seen {
    fn first(&mut self, field: u16) -> Option<()> {
        if self.0 & field != 0 {
            return None;
        }
        self.0 |= field;
        Some(())
    }
}

impl<'a> Message<'a> {
    /// Reads the message that is the whole of `raw` (white space around
    /// it allowed).
    pub(crate) fn read(raw: &'a str) -> Option<Self> {
        let mut scanner = Scanner::new(raw);
        scanner.ws();
        let message = Message::read_at(&mut scanner)?;
        scanner.end()?;
        Some(message)
    }

    /// Reads the message at the scanner's position, or `None` where
    /// `serde_json` would refuse it (a field of the wrong type, a field
    /// twice) or might read it otherwise (a key with escapes).
    pub(crate) fn read_at(scanner: &mut Scanner<'a>) -> Option<Self> {
        let mut message = Message::default();
        let mut seen = Seen::default();
        scanner.object(|key, scanner| {
            match key.plain_bytes()? {
                b"type" => {
                    seen.first(1)?;
                    message.kind = text(scanner.value()?)?;
                }
                b"event" => {
                    seen.first(1 << 1)?;
                    message.event = text(scanner.value()?)?;
                }
                b"timestamp" => {
                    seen.first(1 << 2)?;
                    message.timestamp = text(scanner.value()?)?;
                }
                b"userId" => {
                    seen.first(1 << 3)?;
                    message.user_id = id_text(scanner.value()?)?;
                }
                b"anonymousId" => {
                    seen.first(1 << 4)?;
                    message.anonymous_id = id_text(scanner.value()?)?;
                }
                b"messageId" => {
                    seen.first(1 << 5)?;
                    message.message_id = id_text(scanner.value()?)?;
                }
                b"properties" => {
                    seen.first(1 << 6)?;
                    if scanner.peek()? == b'{' {
                        let mut members = Vec::with_capacity(8);
                        details::read_members(scanner, &mut members)?;
                        message.properties = Some(members);
                    } else {
                        scanner.value().filter(|json| matches!(json, Json::Null))?;
                    }
                }
                b"context" => {
                    seen.first(1 << 7)?;
                    if scanner.peek()? == b'{' {
                        message.read_context(scanner)?;
                    } else {
                        scanner.value().filter(|json| matches!(json, Json::Null))?;
                    }
                }
                b"name" => {
                    seen.first(1 << 8)?;
                    message.name = non_null(scanner.json_value()?);
                }
                b"category" => {
                    seen.first(1 << 9)?;
                    message.category = non_null(scanner.json_value()?);
                }
                _ => scanner.skip_value()?,
            }
            Some(())
        })?;
        Some(message)
    }

    fn read_context(&mut self, scanner: &mut Scanner<'a>) -> Option<()> {
        let mut seen = Seen::default();
        scanner.object(|key, scanner| {
            match key.plain_bytes()? {
                b"userAgent" => {
                    seen.first(1)?;
                    self.user_agent = text(scanner.value()?)?;
                }
                b"sessionId" => {
                    seen.first(1 << 1)?;
                    self.session_id = id_text(scanner.value()?)?;
                }
                b"ip" => {
                    seen.first(1 << 2)?;
                    self.ip = non_null(scanner.json_value()?);
                }
                _ => scanner.skip_value()?,
            }
            Some(())
        })
    }
}

/// An optional string field: `null` or a string.
#[inline]
fn text(value: Json<'_>) -> Option<Option<Cow<'_, str>>> {
    match value {
        Json::Null => Some(None),
        Json::String(text) => Some(Some(text.decode()?)),
        _ => None,
    }
}

/// An id (`mapping`'s `IdText`): `null`, a string, or an integer's text
/// (a float is left to `mapping`, which writes it as `serde_json` does).
#[inline]
fn id_text(value: Json<'_>) -> Option<Option<Cow<'_, str>>> {
    match value {
        Json::Number(number) if plain_integer(number) => Some(Some(Cow::Borrowed(number))),
        value => text(value),
    }
}

/// An optional value of any type, `null` counting as absent.
fn non_null(value: JsonValue<'_>) -> Option<JsonValue<'_>> {
    (!matches!(value.json, Json::Null)).then_some(value)
}

/// An id's text, an empty one counting as absent.
fn non_empty(text: Option<Cow<'_, str>>) -> Option<Cow<'_, str>> {
    text.filter(|text| !text.is_empty())
}

/// The value of `key` in `members`: the last of that key's, as in a map.
fn last<'a>(members: &[Member<'a>], key: &str) -> Option<JsonValue<'a>> {
    match members.iter().rev().find(|member| member.key == key)?.value {
        MemberValue::Json(value) => Some(value),
        MemberValue::Text(_) => None,
    }
}

/// Takes `key` out of the members into its column when its value is a
/// string (`mapping`'s `lift`); `None` when a value of that key is one
/// `serde_json` refuses.
fn lift<'a>(
    members: &mut Vec<Member<'a>>,
    key: &str,
    unused: &mut Vec<u8>,
) -> Option<Option<Cow<'a, str>>> {
    // The last member of that key (its value, as in a map), and how many.
    let mut last = None;
    let mut count = 0;
    for (index, member) in members.iter().enumerate() {
        if member.key == key {
            last = Some(index);
            count += 1;
        }
    }
    let Some(last) = last else {
        return Some(None);
    };
    let MemberValue::Json(JsonValue {
        json: Json::String(text),
        ..
    }) = members[last].value
    else {
        return Some(None);
    };
    let text = text.decode()?;
    if count == 1 {
        members.remove(last);
        return Some(Some(text));
    }
    // The members of that key given way to the last were read by
    // `serde_json` all the same.
    for member in members.iter().filter(|member| member.key == key) {
        if let MemberValue::Json(value) = member.value {
            unused.clear();
            details::write_value(value, unused)?;
        }
    }
    members.retain(|member| member.key != key);
    Some(Some(text))
}
