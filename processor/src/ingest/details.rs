//! An event's `details` written straight from the message's JSON text,
//! byte for byte what the `serde_json` way writes: there the message's
//! `properties` are read into a `serde_json::Map` (keys sorted, the last
//! of a repeated key kept, numbers read as `u64`, `i64` or `f64`, strings
//! decoded), changed, and written back (compact, numbers and escapes in
//! `serde_json`'s one form). Here the members are sorted and written from
//! their text, with no map. A value `serde_json` would refuse (a number
//! beyond `f64` such as `1e400`, a lone surrogate escape) gives `None`,
//! and the event goes the `serde_json` way.

use std::borrow::Cow;

use super::scan::{Json, JsonStr, JsonValue, Scanner, plain_integer};

/// One member of an object to write.
#[derive(Debug, Clone)]
pub(crate) struct Member<'a> {
    /// The key, decoded.
    pub(crate) key: Cow<'a, str>,
    /// Whether the key holds nothing to escape (then it is copied as it is).
    pub(crate) plain_key: bool,
    pub(crate) value: MemberValue<'a>,
}

impl<'a> Member<'a> {
    /// A member whose key is one of the mapping's own (nothing to escape).
    pub(crate) fn named(key: &'static str, value: MemberValue<'a>) -> Self {
        Member {
            key: Cow::Borrowed(key),
            plain_key: true,
            value,
        }
    }
}

/// A member's value.
#[derive(Debug, Clone)]
pub(crate) enum MemberValue<'a> {
    /// A JSON value, written as `serde_json` writes the value it reads
    /// from its text.
    Json(JsonValue<'a>),
    /// Text, written as a JSON string.
    Text(Cow<'a, str>),
}

/// Reads the object at the scanner's position (valid JSON or not: `None`
/// when not), appending its members to `members` in their order.
pub(crate) fn read_members<'a>(
    scanner: &mut Scanner<'a>,
    members: &mut Vec<Member<'a>>,
) -> Option<()> {
    scanner.object(|key, scanner| {
        let key = key.string();
        let value = scanner.json_value()?;
        members.push(Member {
            key: key.decode()?,
            plain_key: key.plain().is_some(),
            value: MemberValue::Json(value),
        });
        Some(())
    })
}

/// Writes `members` as one object, as a `serde_json::Map` into which they
/// were inserted in their order writes it: sorted by key, the last of
/// each key kept. Sorts `members`. `None` when a value, kept or not, is
/// one `serde_json` refuses.
pub(crate) fn write_object(members: &mut [Member<'_>], out: &mut Vec<u8>) -> Option<()> {
    // Stable: of the members with one key, the last inserted stays last.
    members.sort_by(|a, b| {
        // The keys' order as `str`s (their bytes'), most often told by
        // their first bytes, without a call to compare the rest.
        let (a, b) = (a.key.as_bytes(), b.key.as_bytes());
        match (a.first(), b.first()) {
            (Some(x), Some(y)) if x != y => x.cmp(y),
            _ => a.cmp(b),
        }
    });
    out.push(b'{');
    let mut first = true;
    for (i, member) in members.iter().enumerate() {
        if members
            .get(i + 1)
            .is_some_and(|next| next.key == member.key)
        {
            // Given way to a later one, yet read by `serde_json` all the
            // same: a value it refuses is refused here too.
            if let MemberValue::Json(value) = member.value {
                let end = out.len();
                write_value(value, out)?;
                out.truncate(end);
            }
            continue;
        }
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        if member.plain_key {
            write_plain(&member.key, out);
        } else {
            write_text(&member.key, out);
        }
        out.push(b':');
        match &member.value {
            MemberValue::Json(value) => write_value(*value, out)?,
            MemberValue::Text(text) => write_text(text, out),
        }
    }
    out.push(b'}');
    Some(())
}

/// Writes `value` (at most [`super::scan::MAX_DEPTH`] deep) as
/// `serde_json` writes the `serde_json::Value` it reads from its text.
pub(crate) fn write_value(value: JsonValue<'_>, out: &mut Vec<u8>) -> Option<()> {
    match value.json {
        Json::Null => out.extend_from_slice(b"null"),
        Json::Bool(true) => out.extend_from_slice(b"true"),
        Json::Bool(false) => out.extend_from_slice(b"false"),
        Json::Number(number) => write_number(number, out)?,
        Json::String(string) => write_string(string, out)?,
        Json::Array => {
            out.push(b'[');
            let mut first = true;
            Scanner::new(value.text).array(|scanner| {
                if !std::mem::take(&mut first) {
                    out.push(b',');
                }
                write_value(scanner.json_value()?, out)
            })?;
            out.push(b']');
        }
        Json::Object => {
            let mut nested = Vec::new();
            read_members(&mut Scanner::new(value.text), &mut nested)?;
            write_object(&mut nested, out)?;
        }
    }
    Some(())
}

/// A number as `serde_json` writes what it reads from it: a plain integer
/// as it is, anything else read and written by `serde_json` itself.
fn write_number(number: &str, out: &mut Vec<u8>) -> Option<()> {
    if plain_integer(number) {
        out.extend_from_slice(number.as_bytes());
        return Some(());
    }
    let number: serde_json::Number = serde_json::from_str(number).ok()?;
    serde_json::to_writer(&mut *out, &number).ok()
}

/// A string as `serde_json` writes it: with no escape in the text, as it
/// is (it then holds nothing to escape); else decoded, and escaped again.
fn write_string(string: JsonStr<'_>, out: &mut Vec<u8>) -> Option<()> {
    match string.plain() {
        Some(plain) => write_plain(plain, out),
        None => write_escaped(&string.decode()?, out),
    }
    Some(())
}

/// Text as a JSON string.
pub(crate) fn write_text(text: &str, out: &mut Vec<u8>) {
    if text.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        write_escaped(text, out);
    } else {
        write_plain(text, out);
    }
}

fn write_plain(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

fn write_escaped(text: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, text).expect("writing to a Vec cannot fail");
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value};

    use super::*;

    fn value(json: &str) -> JsonValue<'_> {
        Scanner::new(json).json_value().unwrap()
    }

    /// What the `serde_json` way writes for `json`.
    fn serde_written(json: &str) -> Option<String> {
        let value: Value = serde_json::from_str(json).ok()?;
        Some(value.to_string())
    }

    #[test]
    fn values_are_written_as_serde_json_writes_them() {
        for json in [
            "null",
            "true",
            "false",
            "0",
            "-0",
            "-0.0",
            "1.50",
            "1e2",
            "1E+2",
            "1e15",
            "1e16",
            "1e-7",
            "0.1",
            "123456789012345678901234567890",
            "-9223372036854775808",
            "18446744073709551615",
            "18446744073709551616",
            "1e-400",
            "2.2250738585072011e-308",
            r#""plain""#,
            r#""\u00e9\/\"\u007f\u0000""#,
            r#""é 😀 \u2028""#,
            r#"[]"#,
            r#"[ 1 , [ ] , { } , "a" ]"#,
            r#"{"b": 1, "a": {"z": null, "y": [true]}, "b": 2}"#,
            r#"{"\u0062": 1, "b": 2, "a\"": 3}"#,
            r#"{"": 0, " ": 1, "é": 2, "e": 3, "Z": 4}"#,
        ] {
            let mut ours = Vec::new();
            write_value(value(json), &mut ours).unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_written(json).unwrap(),
                "{json}"
            );
        }
    }

    #[test]
    fn values_serde_json_refuses_are_refused() {
        for json in [
            "1e400",
            "-1e400",
            r#""\ud800""#,
            r#"{"a": [1e999]}"#,
            r#"{"\udc00": 1}"#,
        ] {
            assert!(serde_written(json).is_none(), "{json}");
            assert!(
                write_value(value(json), &mut Vec::new()).is_none(),
                "{json}"
            );
        }
    }

    #[test]
    fn members_written_are_the_map_they_make() {
        let json = r#"{"z": 1, "a": "x", "z": [2], "m": {"k": 1, "k": 2}}"#;
        let mut list = Vec::new();
        read_members(&mut Scanner::new(json), &mut list).unwrap();
        list.push(Member::named(
            "a",
            MemberValue::Text("inserted \"last\"".into()),
        ));
        let mut ours = Vec::new();
        write_object(&mut list, &mut ours).unwrap();
        let mut map: Map<String, Value> = serde_json::from_str(json).unwrap();
        map.insert("a".into(), Value::from("inserted \"last\""));
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            Value::Object(map).to_string()
        );
    }
}
