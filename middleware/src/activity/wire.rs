//! The wire-format writer: the JSON object of [`Activity`], written by hand.
//!
//! Serializing is the dispatcher's main per-event work. Through serde, the
//! `v` field needed a flattened map, `created_at` a `String` per event, and
//! every string went through a byte-at-a-time escaping loop; here the fields
//! are written in their fixed order straight into the caller's buffer, and
//! strings are checked eight bytes at a time for anything to escape.
//!
//! The output is byte for byte what `serde_json` writes for the same object
//! (same field order, same escapes), which the tests check.

use std::io::Write as _;
use std::net::IpAddr;

use chrono::{Datelike, SecondsFormat, Timelike};
use serde_json::{Map, Value};

use super::{Activity, WIRE_VERSION};

/// Appends the wire JSON of `activity` to `out`.
pub(super) fn write(activity: &Activity, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"v\":");
    write_u32(out, WIRE_VERSION);
    out.extend_from_slice(b",\"id\":\"");
    let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.extend_from_slice(activity.id.hyphenated().encode_lower(&mut id).as_bytes());
    out.extend_from_slice(b"\",\"user_id\":");
    write_opt_str(out, activity.user_id.as_deref());
    out.extend_from_slice(b",\"action\":");
    write_str(out, activity.action.as_str());
    out.extend_from_slice(b",\"resource_type\":");
    write_opt_str(out, activity.resource_type.as_deref());
    out.extend_from_slice(b",\"resource_id\":");
    write_opt_str(out, activity.resource_id.as_deref());
    out.extend_from_slice(b",\"details\":");
    match &activity.details {
        Some(details) => write_map(out, details),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"ip_address\":");
    match activity.ip_address {
        // An address's text never needs escaping.
        Some(IpAddr::V4(ip)) => {
            out.push(b'"');
            for (i, octet) in ip.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                write_u8(out, octet);
            }
            out.push(b'"');
        }
        Some(IpAddr::V6(ip)) => {
            out.push(b'"');
            write!(out, "{ip}").expect("writing to a Vec cannot fail");
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"user_agent\":");
    write_opt_str(out, activity.user_agent.as_deref());
    out.extend_from_slice(b",\"session_id\":");
    write_opt_str(out, activity.session_id.as_deref());
    out.extend_from_slice(b",\"created_at\":\"");
    write_timestamp(out, &activity.created_at);
    out.extend_from_slice(b"\"}");
}

fn write_u32(out: &mut Vec<u8>, n: u32) {
    serde_json::to_writer(out, &n).expect("writing to a Vec cannot fail");
}

/// An IPv4 octet in decimal (what `Display` writes, without its formatter).
fn write_u8(out: &mut Vec<u8>, n: u8) {
    if n >= 100 {
        out.push(b'0' + n / 100);
    }
    if n >= 10 {
        out.push(b'0' + n / 10 % 10);
    }
    out.push(b'0' + n % 10);
}

/// `created_at` as RFC 3339 in UTC with microseconds, as the serde path
/// (`to_rfc3339_opts(SecondsFormat::Micros, true)`) writes it, without a
/// `String` per event.
fn write_timestamp(out: &mut Vec<u8>, at: &chrono::DateTime<chrono::Utc>) {
    // The fields of the naive UTC time: `DateTime`'s own accessors apply
    // the (zero) offset again on every call.
    let utc = at.naive_utc();
    let year = utc.year();
    let nanos = utc.nanosecond();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        // Years chrono writes with a sign, and leap seconds: rare enough to
        // leave to chrono.
        out.extend_from_slice(at.to_rfc3339_opts(SecondsFormat::Micros, true).as_bytes());
        return;
    }
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |start: usize, digits: usize, mut value: u32| {
        for i in (start..start + digits).rev() {
            text[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year as u32);
    put(5, 2, utc.month());
    put(8, 2, utc.day());
    put(11, 2, utc.hour());
    put(14, 2, utc.minute());
    put(17, 2, utc.second());
    put(20, 6, nanos / 1_000);
    out.extend_from_slice(&text);
}

fn write_opt_str(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => write_str(out, text),
        None => out.extend_from_slice(b"null"),
    }
}

fn write_map(out: &mut Vec<u8>, map: &Map<String, Value>) {
    out.push(b'{');
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, key);
        out.push(b':');
        write_value(out, value);
    }
    out.push(b'}');
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // serde_json's own number formatting (itoa / ryu), without allocating.
        Value::Number(n) => {
            serde_json::to_writer(&mut *out, n).expect("a Number always serializes")
        }
        Value::String(text) => write_str(out, text),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => write_map(out, map),
    }
}

/// `0x01` in every byte of a word.
const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
/// `0x80` in every byte of a word.
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// Whether any byte of `word` is a control character, `"` or `\`: the only
/// bytes JSON requires escaping (serde_json escapes exactly these too).
fn word_needs_escape(word: u64) -> bool {
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    let quote = has_zero(word ^ (ONES * u64::from(b'"')));
    let backslash = has_zero(word ^ (ONES * u64::from(b'\\')));
    (below_space | quote | backslash) != 0
}

fn byte_needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// Writes `text` as a JSON string, escaping as serde_json does: the short
/// forms for `"`, `\`, backspace, form feed, newline, carriage return and
/// tab, `\u00XX` (lowercase hex) for the other control characters, and
/// everything else (`/`, non-ASCII) as is.
fn write_str(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // Start of the bytes not written yet.
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Most text has nothing to escape: skip it a word at a time.
        if let Some(chunk) = bytes.get(i..i + 8) {
            let word = u64::from_ne_bytes(chunk.try_into().expect("eight bytes"));
            if !word_needs_escape(word) {
                i += 8;
                continue;
            }
        }
        let byte = bytes[i];
        if !byte_needs_escape(byte) {
            i += 1;
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        write_escape(out, byte);
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn write_escape(out: &mut Vec<u8>, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short = match byte {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x0c => b'f',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        _ => {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]);
            return;
        }
    };
    out.extend_from_slice(&[b'\\', short]);
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};
    use serde::Serialize;
    use serde_json::json;

    use super::*;
    use crate::ActivityType;

    /// What the serde path wrote before the hand-written writer: the
    /// reference the writer must match byte for byte.
    fn serde_wire(activity: &Activity) -> String {
        #[derive(Serialize)]
        struct WireRef<'a> {
            v: u32,
            #[serde(flatten)]
            activity: &'a Activity,
        }
        serde_json::to_string(&WireRef {
            v: WIRE_VERSION,
            activity,
        })
        .unwrap()
    }

    fn assert_same_as_serde(activity: &Activity) {
        let ours = activity.to_wire_json();
        let reference = serde_wire(activity);
        assert_eq!(ours, reference);
        let ours_value: Value = serde_json::from_str(&ours).unwrap();
        let reference_value: Value = serde_json::from_str(&reference).unwrap();
        assert_eq!(ours_value, reference_value);
        assert_eq!(
            &Activity::from_wire_json(ours.as_bytes()).unwrap(),
            activity
        );
    }

    /// Strings with every kind of byte the escaping must handle, at every
    /// position relative to the eight-byte words.
    fn tricky_strings() -> Vec<String> {
        let mut all: Vec<String> = vec![
            String::new(),
            "plain".into(),
            "exactly8".into(),
            "quote\" and backslash\\ and slash /".into(),
            "\"\\\"\\".into(),
            "\u{0}\u{1}\u{8}\u{9}\u{a}\u{b}\u{c}\u{d}\u{1f} \u{7f}".into(),
            "new\nline\ttab\rreturn".into(),
            "é ü ß 日本語 \u{2028}\u{2029}".into(),
            "emoji 😀👍🏽 and 🇫🇷".into(),
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)".into(),
            "</script><!-- \u{fffd}".into(),
        ];
        for special in ['"', '\\', '\n', '\u{1}', '\u{1f}', 'é', '😀'] {
            for at in 0..17 {
                let mut text = "a".repeat(at);
                text.push(special);
                text.push_str(&"b".repeat(17 - at));
                all.push(text);
            }
        }
        // Every ASCII byte, so no escape rule is missed.
        all.push((0u8..128).map(char::from).collect());
        all
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for text in tricky_strings() {
            let mut ours = Vec::new();
            write_str(&mut ours, &text);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(&text).unwrap(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn activities_with_tricky_fields_match_the_serde_output() {
        for text in tricky_strings() {
            let mut activity = Activity::new(
                ActivityType::custom(format!("x{}", text.chars().take(99).collect::<String>()))
                    .unwrap(),
            )
            .user_id(text.clone())
            .resource(text.clone(), text.clone())
            .user_agent(text.clone())
            .session_id(text.clone())
            .detail(text.clone(), text.clone())
            .detail(
                "nested",
                json!({ "k": [text.clone(), 1, -2, 1.5, null, true, false, {}] }),
            );
            assert_same_as_serde(&activity);
            activity.details = None;
            assert_same_as_serde(&activity);
        }
    }

    #[test]
    fn every_field_absent_or_present_matches_the_serde_output() {
        let bare = Activity::new(ActivityType::Login);
        assert_same_as_serde(&bare);
        let ips: [IpAddr; 7] = [
            "192.168.1.100".parse().unwrap(),
            "0.0.0.0".parse().unwrap(),
            "10.9.99.255".parse().unwrap(),
            "1.20.100.200".parse().unwrap(),
            "::ffff:192.0.2.1".parse().unwrap(),
            "::1".parse().unwrap(),
            "2001:db8::8a2e:370:7334".parse().unwrap(),
        ];
        for ip in ips {
            let activity = Activity::new(ActivityType::CaseView)
                .user_id("user-1")
                .resource("case", "case-1")
                .ip_address(ip)
                .user_agent("curl/8.5")
                .session_id("s-1")
                .detail("method", "GET")
                .detail("route", "/api/v1/cases/{id}")
                .detail("status", 200)
                .detail("latency_ms", 3.187)
                .detail("big", u64::MAX)
                .detail("negative", i64::MIN)
                .detail("tiny", 1e-300)
                .detail("huge", 1.5e300);
            assert_same_as_serde(&activity);
        }
    }

    #[test]
    fn octets_are_written_as_display_writes_them() {
        for n in 0..=u8::MAX {
            let mut ours = Vec::new();
            write_u8(&mut ours, n);
            assert_eq!(ours, n.to_string().as_bytes());
        }
    }

    #[test]
    fn timestamps_match_chrono_including_its_edge_cases() {
        let times: Vec<DateTime<Utc>> = vec![
            Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 26, 20, 15, 3).unwrap()
                + chrono::Duration::microseconds(123_456),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap()
                + chrono::Duration::nanoseconds(999_999_999),
            Utc.with_ymd_and_hms(1, 2, 3, 4, 5, 6).unwrap() + chrono::Duration::nanoseconds(7),
            // Outside four digits and a leap second: written by chrono.
            Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-1, 1, 1, 0, 0, 0).unwrap(),
            chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
                .unwrap()
                .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
                .unwrap()
                .and_utc(),
            Utc::now(),
        ];
        for at in times {
            let mut ours = Vec::new();
            write_timestamp(&mut ours, &at);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                at.to_rfc3339_opts(SecondsFormat::Micros, true),
                "{at:?}"
            );
            let mut activity = Activity::new(ActivityType::Logout);
            activity.created_at = at;
            assert_eq!(activity.to_wire_json(), serde_wire(&activity));
        }
    }

    #[test]
    fn the_writer_appends_to_what_is_in_the_buffer() {
        let first = Activity::new(ActivityType::Login).user_id("a");
        let second = Activity::new(ActivityType::Logout).user_id("b");
        let mut buffer = b"prefix".to_vec();
        first.write_wire_json(&mut buffer);
        second.write_wire_json(&mut buffer);
        let expected = format!("prefix{}{}", first.to_wire_json(), second.to_wire_json());
        assert_eq!(buffer, expected.as_bytes());
    }
}
