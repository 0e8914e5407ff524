//! One Segment message straight into its wire line: the mapping of
//! [`super::mapping`] for the messages SDKs send, read with the scanner
//! (`scan`) and written with `details` made from the message's text
//! (`details`), with no `Activity`, no map and few owned strings.
//!
//! It gives what [`super::mapping::map`] gives, or `None`: for any message
//! it cannot read exactly as `serde_json` does, and for every message that
//! would be rejected, so that the rejection and its text come from the
//! one mapping that defines them. The tests (`direct/tests.rs`) hold the
//! two to the same lines, for generated and hostile messages.

use std::borrow::Cow;
use std::net::IpAddr;

use activity_tracker::{WireBatch, WireLine, limits};
use chrono::SubsecRound;

use super::details::{self, Member, MemberValue};
use super::limits::MAX_EVENT_BYTES;
use super::mapping::{self, Kind, RequestFacts};
use super::scan::{self, Json, Scanner, plain_integer};

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
pub(crate) struct Scratch<'a> {
    members: Vec<Member<'a>>,
    details: Vec<u8>,
    /// Where values read and not written are checked.
    unused: Vec<u8>,
}

/// Maps the message whose JSON is `raw` as [`mapping::map`] does, appending
/// its line to `batch` when it is stored; `None` (nothing appended) when
/// `mapping::map` must decide.
pub(crate) fn map<'a>(
    raw: &'a str,
    kind: Option<Kind>,
    facts: &RequestFacts<'a>,
    batch: &mut WireBatch,
    scratch: &mut Scratch<'a>,
) -> Option<Direct> {
    if raw.len() > MAX_EVENT_BYTES {
        return None;
    }
    let message = Message::read(raw)?;
    let kind = match kind {
        Some(kind) => kind,
        None => Kind::from_name(message.kind.as_deref()?)?,
    };
    let user_id = non_empty(message.user_id);
    let anonymous_id = non_empty(message.anonymous_id);
    if user_id.is_none() && anonymous_id.is_none() {
        return None;
    }
    let page_like = matches!(kind, Kind::Page | Kind::Screen);
    // What `serde_json` reads as a `Value` and the line does not hold must
    // still be a value it reads.
    let unused = &mut scratch.unused;
    for json in [message.name, message.category] {
        if let Some(json) = json.filter(|_| !page_like) {
            unused.clear();
            details::write_value(json, unused)?;
        }
    }
    if let Some(ip) = message.ip {
        unused.clear();
        details::write_value(ip, unused)?;
    }
    if matches!(kind, Kind::Identify | Kind::Group | Kind::Alias) {
        if let Some(properties) = message.properties {
            unused.clear();
            details::write_value(properties, unused)?;
        }
        return Some(Direct::NotStored(kind));
    }
    let action = match kind {
        Kind::Track => {
            let event = message.event.as_deref()?;
            if event.trim().is_empty() || event.chars().count() > limits::ACTION_MAX_CHARS {
                return None;
            }
            event
        }
        Kind::Page => "page_view",
        _ => "screen_view",
    };
    let created_at = mapping::created_at(message.timestamp.as_deref(), facts.received_at)
        .ok()?
        .trunc_subsecs(6);

    let members = &mut scratch.members;
    members.clear();
    if let Some(properties) = message.properties {
        details::members(properties, members)?;
    }
    let session_id = match non_empty(message.session_id) {
        Some(session) => Some(session),
        None => match last(members, "session_id") {
            None => None,
            Some(json) => match scan::read(json)? {
                Json::Null => None,
                Json::String(text) => Some(text.decode()?).filter(|text| !text.is_empty()),
                Json::Number(number) if plain_integer(number) => Some(Cow::Borrowed(number)),
                // A float's text, or a rejection: `mapping` decides.
                _ => return None,
            },
        },
    };
    let resource_type = lift(members, "resource_type")?;
    let resource_id = lift(members, "resource_id")?;
    if page_like {
        for (key, json) in [("name", message.name), ("category", message.category)] {
            if let Some(json) = json {
                members.push(Member {
                    key: Cow::Borrowed(key),
                    value: MemberValue::Json(json),
                });
            }
        }
    }
    if let Some(anonymous_id) = &anonymous_id {
        members.push(Member {
            key: Cow::Borrowed("anonymous_id"),
            value: MemberValue::Text(anonymous_id.clone()),
        });
    }
    members.push(Member {
        key: Cow::Borrowed("source"),
        value: MemberValue::Text(Cow::Borrowed(facts.source)),
    });
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
    details::write_object(members, details)?;
    if details.len() > limits::DETAILS_MAX_BYTES {
        return None;
    }
    let context_ip = match message.ip.map(scan::read) {
        Some(Some(Json::String(ip))) => Some(ip.decode()?),
        _ => None,
    };
    let ip_address = match context_ip {
        Some(ip) if facts.trusts_context_ip => ip
            .trim()
            .parse::<IpAddr>()
            .ok()
            .map(|ip| ip.to_canonical())
            .or(facts.peer_ip),
        _ => facts.peer_ip,
    };
    let message_id = non_empty(message.message_id);
    batch.push_line(&WireLine {
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
    });
    Some(Direct::Stored)
}

/// The fields of a message the mapping reads, as `mapping`'s `Message`
/// and `Context` read them.
#[derive(Debug, Default)]
struct Message<'a> {
    kind: Option<Cow<'a, str>>,
    event: Option<Cow<'a, str>>,
    user_id: Option<Cow<'a, str>>,
    anonymous_id: Option<Cow<'a, str>>,
    message_id: Option<Cow<'a, str>>,
    timestamp: Option<Cow<'a, str>>,
    /// The object's text.
    properties: Option<&'a str>,
    /// The texts of values other than `null`.
    name: Option<&'a str>,
    category: Option<&'a str>,
    user_agent: Option<Cow<'a, str>>,
    session_id: Option<Cow<'a, str>>,
    ip: Option<&'a str>,
}

impl<'a> Message<'a> {
    /// The fields, or `None` where `serde_json` would refuse the message
    /// (a field of the wrong type, a field twice) or might read it
    /// otherwise (a key with escapes).
    fn read(raw: &'a str) -> Option<Self> {
        let mut message = Message::default();
        let mut seen = Seen::default();
        let mut scanner = Scanner::new(raw);
        scanner.ws();
        scanner.object(|key, scanner| {
            let key = key.plain()?;
            let field = match key {
                "type" => &mut message.kind,
                "event" => &mut message.event,
                "timestamp" => &mut message.timestamp,
                "userId" | "anonymousId" | "messageId" => {
                    seen.first(key)?;
                    let id = id_text(scanner.value()?)?;
                    match key {
                        "userId" => message.user_id = id,
                        "anonymousId" => message.anonymous_id = id,
                        _ => message.message_id = id,
                    }
                    return Some(());
                }
                "properties" => {
                    seen.first(key)?;
                    message.properties = match scanner.value()? {
                        Json::Null => None,
                        Json::Object(json) => Some(json),
                        _ => return None,
                    };
                    return Some(());
                }
                "context" => {
                    seen.first(key)?;
                    match scanner.value()? {
                        Json::Null => {}
                        Json::Object(json) => message.read_context(json)?,
                        _ => return None,
                    }
                    return Some(());
                }
                "name" | "category" => {
                    seen.first(key)?;
                    let json = any_value(scanner)?;
                    if key == "name" {
                        message.name = json;
                    } else {
                        message.category = json;
                    }
                    return Some(());
                }
                _ => return scanner.skip_value(),
            };
            seen.first(key)?;
            *field = text(scanner.value()?)?;
            Some(())
        })?;
        scanner.end()?;
        Some(message)
    }

    fn read_context(&mut self, json: &'a str) -> Option<()> {
        let mut seen = Seen::default();
        let mut scanner = Scanner::new(json);
        scanner.object(|key, scanner| {
            let key = key.plain()?;
            match key {
                "userAgent" => self.user_agent = text(scanner.value()?)?,
                "sessionId" => self.session_id = id_text(scanner.value()?)?,
                "ip" => self.ip = any_value(scanner)?,
                _ => return scanner.skip_value(),
            }
            seen.first(key)
        })?;
        scanner.end()
    }
}

/// The fields of an object met so far, so that one met twice (which
/// `serde_json` refuses) is found.
#[derive(Debug, Default)]
struct Seen(Vec<&'static str>);

impl Seen {
    fn first(&mut self, key: &str) -> Option<()> {
        const FIELDS: [&str; 13] = [
            "type",
            "event",
            "timestamp",
            "userId",
            "anonymousId",
            "messageId",
            "properties",
            "context",
            "name",
            "category",
            "userAgent",
            "sessionId",
            "ip",
        ];
        let field = FIELDS.iter().find(|field| **field == key)?;
        if self.0.contains(field) {
            return None;
        }
        self.0.push(field);
        Some(())
    }
}

/// An optional string field: `null` or a string.
fn text(value: Json<'_>) -> Option<Option<Cow<'_, str>>> {
    match value {
        Json::Null => Some(None),
        Json::String(text) => Some(Some(text.decode()?)),
        _ => None,
    }
}

/// An id (`mapping`'s `IdText`): `null`, a string, or an integer's text
/// (a float is left to `mapping`, which writes it as `serde_json` does).
fn id_text(value: Json<'_>) -> Option<Option<Cow<'_, str>>> {
    match value {
        Json::Number(number) if plain_integer(number) => Some(Some(Cow::Borrowed(number))),
        value => text(value),
    }
}

/// An optional value of any type: the text of one other than `null`.
fn any_value<'a>(scanner: &mut Scanner<'a>) -> Option<Option<&'a str>> {
    let start = scanner.position();
    match scanner.value()? {
        Json::Null => Some(None),
        _ => Some(Some(scanner.since(start))),
    }
}

/// An id's text, an empty one counting as absent.
fn non_empty(text: Option<Cow<'_, str>>) -> Option<Cow<'_, str>> {
    text.filter(|text| !text.is_empty())
}

/// The value of `key` in `members`: the last of that key's, as in a map.
fn last<'a>(members: &[Member<'a>], key: &str) -> Option<&'a str> {
    match members.iter().rev().find(|member| member.key == key)?.value {
        MemberValue::Json(json) => Some(json),
        MemberValue::Text(_) => None,
    }
}

/// Takes `key` out of the members into its column when its value is a
/// string (`mapping`'s `lift`); `None` when the string cannot be read.
fn lift<'a>(members: &mut Vec<Member<'a>>, key: &str) -> Option<Option<Cow<'a, str>>> {
    let Some(json) = last(members, key) else {
        return Some(None);
    };
    let Json::String(text) = scan::read(json)? else {
        return Some(None);
    };
    let text = text.decode()?;
    // The members of that key given way to the last were read by
    // `serde_json` all the same.
    let mut unused = Vec::new();
    for member in members.iter().filter(|member| member.key == key) {
        if let MemberValue::Json(json) = member.value {
            unused.clear();
            details::write_value(json, &mut unused)?;
        }
    }
    members.retain(|member| member.key != key);
    Some(Some(text))
}
