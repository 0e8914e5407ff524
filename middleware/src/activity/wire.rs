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

use chrono::SecondsFormat;
use serde_json::{Map, Value};

use super::{Activity, WIRE_VERSION};

/// Appends the wire JSON of `activity` to `out`.
pub(super) fn write(activity: &Activity, out: &mut Vec<u8>) {
    write_fields(
        out,
        &WireFields {
            id: activity.id,
            user_id: activity.user_id.as_deref(),
            action: WireText::Plain(activity.action.as_str()),
            resource_type: activity.resource_type.as_deref(),
            resource_id: activity.resource_id.as_deref(),
            details: match &activity.details {
                Some(details) => WireDetails::Map(details),
                None => WireDetails::Null,
            },
            ip_address: activity.ip_address,
            user_agent: activity.user_agent.as_deref(),
            session_id: activity.session_id.as_deref(),
            created_at: WireTime::At(&activity.created_at),
            text_is_plain: false,
        },
    );
}

/// The fields of one event, borrowed from wherever they are: an
/// [`Activity`], or a request the layer captured (which then needs no
/// `Activity`, no `details` map and no owned strings of its own). The
/// caller brings them within the contract's limits first.
#[derive(Debug)]
pub(crate) struct WireFields<'a> {
    pub(crate) id: uuid::Uuid,
    pub(crate) user_id: Option<&'a str>,
    pub(crate) action: WireText<'a>,
    pub(crate) resource_type: Option<&'a str>,
    pub(crate) resource_id: Option<&'a str>,
    pub(crate) details: WireDetails<'a>,
    pub(crate) ip_address: Option<IpAddr>,
    pub(crate) user_agent: Option<&'a str>,
    pub(crate) session_id: Option<&'a str>,
    pub(crate) created_at: WireTime<'a>,
    /// Whether the caller knows the text fields (`user_id`, a plain
    /// `action`, `resource_type`, `resource_id`, `user_agent`,
    /// `session_id`) hold nothing to escape: then they are copied with no
    /// check.
    pub(crate) text_is_plain: bool,
}

/// `created_at`, as the event holds it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WireTime<'a> {
    /// A chrono time (an [`Activity`]'s).
    At(&'a chrono::DateTime<chrono::Utc>),
    /// Microseconds since the Unix epoch (a captured request's start):
    /// written with no calendar type in between.
    #[cfg(feature = "tracker")]
    UnixMicros(i64),
}

/// A string field, as text to escape or as JSON made already.
#[derive(Debug)]
pub(crate) enum WireText<'a> {
    /// Text, escaped as it is written.
    Plain(&'a str),
    /// A JSON string, quotes included, written as it is.
    #[cfg(feature = "tracker")]
    Json(&'a [u8]),
}

/// What `details` holds.
#[derive(Debug)]
pub(crate) enum WireDetails<'a> {
    /// `null`.
    Null,
    /// A map as it is.
    Map(&'a Map<String, Value>),
    /// One JSON object made already (by a caller that has its text, not
    /// a map), written as it is.
    Json(&'a [u8]),
    /// The layer's own facts over a handler's details (whose keys named
    /// like the layer's give way to them), written in the key order a
    /// `serde_json::Map` would have: the same object the map the layer
    /// used to build would make.
    #[cfg(feature = "tracker")]
    Request {
        handler: Option<&'a Map<String, Value>>,
        method: &'a str,
        route: &'a str,
        /// `,"method":..,"route":..,"status":`, made once per route: with
        /// no handler details, the object is `{"latency_ms":` latency, this,
        /// status `}`.
        tail: &'a [u8],
        status: u16,
        latency_micros: u64,
        /// The request's `x-request-id`, when it has one.
        request_id: Option<&'a str>,
    },
}

/// The keys the layer writes into `details`, in sorted order
/// (`request_id` only when the request has one).
#[cfg(feature = "tracker")]
pub(crate) const LAYER_DETAIL_KEYS: [&str; 5] =
    ["latency_ms", "method", "request_id", "route", "status"];

/// The index of `request_id` in [`LAYER_DETAIL_KEYS`].
#[cfg(feature = "tracker")]
const REQUEST_ID_KEY: usize = 2;

/// Appends the wire JSON of one event to `out`: the fields in their fixed
/// order, each written straight into the buffer.
pub(crate) fn write_fields(out: &mut Vec<u8>, event: &WireFields<'_>) {
    let write_str = if event.text_is_plain {
        write_plain_str
    } else {
        write_str
    };
    out.extend_from_slice(b"{\"v\":");
    write_u32(out, WIRE_VERSION);
    out.extend_from_slice(b",\"id\":\"");
    let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.extend_from_slice(event.id.hyphenated().encode_lower(&mut id).as_bytes());
    out.push(b'"');
    // Fields with no value are left out: a reader takes an absent field as
    // null, and the bytes are what Redis stores while an event waits.
    if let Some(user_id) = event.user_id {
        out.extend_from_slice(b",\"user_id\":");
        write_str(out, user_id);
    }
    out.extend_from_slice(b",\"action\":");
    match event.action {
        WireText::Plain(text) => write_str(out, text),
        #[cfg(feature = "tracker")]
        WireText::Json(json) => out.extend_from_slice(json),
    }
    if let Some(kind) = event.resource_type {
        out.extend_from_slice(b",\"resource_type\":");
        write_str(out, kind);
    }
    if let Some(id) = event.resource_id {
        out.extend_from_slice(b",\"resource_id\":");
        write_str(out, id);
    }
    match &event.details {
        WireDetails::Null => {}
        WireDetails::Map(details) => {
            out.extend_from_slice(b",\"details\":");
            write_map(out, details);
        }
        WireDetails::Json(details) => {
            out.extend_from_slice(b",\"details\":");
            out.extend_from_slice(details);
        }
        #[cfg(feature = "tracker")]
        WireDetails::Request {
            handler: None,
            tail,
            status,
            latency_micros,
            request_id: None,
            ..
        } => {
            out.extend_from_slice(b",\"details\":{\"latency_ms\":");
            write_millis(out, *latency_micros);
            out.extend_from_slice(tail);
            write_u32(out, u32::from(*status));
            out.push(b'}');
        }
        #[cfg(feature = "tracker")]
        WireDetails::Request {
            handler,
            method,
            route,
            status,
            latency_micros,
            request_id,
            ..
        } => {
            out.extend_from_slice(b",\"details\":");
            write_request_details(
                out,
                &RequestDetails {
                    handler: *handler,
                    method,
                    route,
                    status: *status,
                    latency_micros: *latency_micros,
                    request_id: *request_id,
                },
            );
        }
    }
    match event.ip_address {
        // An address's text never needs escaping.
        Some(IpAddr::V4(ip)) => {
            out.extend_from_slice(b",\"ip_address\":\"");
            for (i, octet) in ip.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                write_u8(out, octet);
            }
            out.push(b'"');
        }
        Some(IpAddr::V6(ip)) => {
            out.extend_from_slice(b",\"ip_address\":\"");
            write!(out, "{ip}").expect("writing to a Vec cannot fail");
            out.push(b'"');
        }
        None => {}
    }
    if let Some(agent) = event.user_agent {
        out.extend_from_slice(b",\"user_agent\":");
        write_str(out, agent);
    }
    if let Some(session) = event.session_id {
        out.extend_from_slice(b",\"session_id\":");
        write_str(out, session);
    }
    out.extend_from_slice(b",\"created_at\":\"");
    match event.created_at {
        WireTime::At(at) => write_timestamp(out, at),
        #[cfg(feature = "tracker")]
        WireTime::UnixMicros(micros) => write_unix_micros(out, micros),
    }
    out.extend_from_slice(b"\"}");
}

#[cfg(feature = "tracker")]
/// The layer's `details`: the handler's keys and the layer's four merged
/// in sorted order, as a `serde_json::Map` holding both would iterate.
/// The layer's facts of one request, for [`write_request_details`].
#[cfg(feature = "tracker")]
struct RequestDetails<'a> {
    handler: Option<&'a Map<String, Value>>,
    method: &'a str,
    route: &'a str,
    status: u16,
    latency_micros: u64,
    request_id: Option<&'a str>,
}

#[cfg(feature = "tracker")]
fn write_request_details(out: &mut Vec<u8>, request: &RequestDetails<'_>) {
    let RequestDetails {
        handler,
        method,
        route,
        status,
        latency_micros,
        request_id,
    } = *request;
    // `request_id` is the layer's only when the request has one; else a
    // handler's key of that name is kept like any other.
    let is_layer_key = |key: usize| key != REQUEST_ID_KEY || request_id.is_some();
    let write_layer_key = |out: &mut Vec<u8>, key: usize| {
        out.push(b'"');
        out.extend_from_slice(LAYER_DETAIL_KEYS[key].as_bytes());
        out.extend_from_slice(b"\":");
        match key {
            0 => write_millis(out, latency_micros),
            1 => write_str(out, method),
            REQUEST_ID_KEY => write_str(out, request_id.unwrap_or_default()),
            3 => write_str(out, route),
            _ => write_u32(out, u32::from(status)),
        }
    };
    out.push(b'{');
    let mut first = true;
    let mut comma = |out: &mut Vec<u8>| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
    };
    let mut next_layer_key = 0;
    for (key, value) in handler.into_iter().flatten() {
        while next_layer_key < LAYER_DETAIL_KEYS.len()
            && LAYER_DETAIL_KEYS[next_layer_key] <= key.as_str()
        {
            if is_layer_key(next_layer_key) {
                comma(out);
                write_layer_key(out, next_layer_key);
            }
            next_layer_key += 1;
        }
        if LAYER_DETAIL_KEYS
            .iter()
            .position(|layer_key| *layer_key == key.as_str())
            .is_some_and(is_layer_key)
        {
            // The layer's own fact wins, as `insert` over the map did.
            continue;
        }
        comma(out);
        write_str(out, key);
        out.push(b':');
        write_value(out, value);
    }
    while next_layer_key < LAYER_DETAIL_KEYS.len() {
        if is_layer_key(next_layer_key) {
            comma(out);
            write_layer_key(out, next_layer_key);
        }
        next_layer_key += 1;
    }
    out.push(b'}');
}

#[cfg(feature = "tracker")]
/// Microseconds as milliseconds with up to three decimals, as serde_json
/// writes the `f64` `micros / 1000.0` (its shortest form that reads back
/// the same: `1.234`, `1.2`, `0.001`, `3.0`).
fn write_millis(out: &mut Vec<u8>, micros: u64) {
    if micros >= 1 << 53 {
        // Past what an f64 holds exactly; never a real latency.
        serde_json::to_writer(&mut *out, &(micros as f64 / 1000.0))
            .expect("writing to a Vec cannot fail");
        return;
    }
    out.extend_from_slice(itoa::Buffer::new().format(micros / 1000).as_bytes());
    let fraction = (micros % 1000) as usize;
    if fraction == 0 {
        out.extend_from_slice(b".0");
        return;
    }
    let [tens, ones] = DIGIT_PAIRS[fraction % 100];
    let digits = [b'.', b'0' + (fraction / 100) as u8, tens, ones];
    // Without the trailing zeros (the fraction is not zero: one digit stays).
    let end = digits.iter().rposition(|&digit| digit != b'0').unwrap_or(3) + 1;
    out.extend_from_slice(&digits[..end]);
}

fn write_u32(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
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
    if at.timestamp_subsec_nanos() >= 1_000_000_000 {
        // A leap second, which chrono writes as `:60`.
        out.extend_from_slice(at.to_rfc3339_opts(SecondsFormat::Micros, true).as_bytes());
        return;
    }
    write_unix_micros(out, at.timestamp_micros());
}

/// Microseconds since the Unix epoch as [`write_timestamp`] writes them:
/// the civil date from the day count (Howard Hinnant's `civil_from_days`),
/// then fixed-width digits. Events come mostly in time order, so the date's
/// text is kept per thread for the day last written ([`LAST_DATE`]): the
/// calendar arithmetic runs once a day, not once an event.
fn write_unix_micros(out: &mut Vec<u8>, micros: i64) {
    const MICROS_PER_DAY: i64 = 86_400_000_000;
    let days = micros.div_euclid(MICROS_PER_DAY);
    let of_day = micros.rem_euclid(MICROS_PER_DAY) as u64;
    let date = match LAST_DATE.get() {
        Some((day, text)) if day == days => text,
        _ => match date_text(days) {
            Some(text) => {
                LAST_DATE.set(Some((days, text)));
                text
            }
            None => return write_unix_micros_by_chrono(out, micros),
        },
    };
    let seconds = of_day / 1_000_000;
    let fraction = of_day % 1_000_000;
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    text[..11].copy_from_slice(&date);
    let mut put_pair = |at: usize, value: u64| {
        // All below 100: remainders, or hours of a day.
        text[at..at + 2].copy_from_slice(&DIGIT_PAIRS[value as usize]);
    };
    put_pair(11, seconds / 3600);
    put_pair(14, seconds / 60 % 60);
    put_pair(17, seconds % 60);
    put_pair(20, fraction / 10_000);
    put_pair(22, fraction / 100 % 100);
    put_pair(24, fraction % 100);
    out.extend_from_slice(&text);
}

thread_local! {
    /// The day count last written by [`write_unix_micros`] on this thread,
    /// and its `YYYY-MM-DDT`.
    static LAST_DATE: std::cell::Cell<Option<(i64, [u8; 11])>> =
        const { std::cell::Cell::new(None) };
}

/// `00` to `99`, for writing two digits at a time.
const DIGIT_PAIRS: [[u8; 2]; 100] = {
    let mut pairs = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        pairs[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    pairs
};

/// `YYYY-MM-DDT` of a day count from 1970-01-01, for years 0 to 9999
/// (`None` for the others, which chrono writes with a sign).
fn date_text(days: i64) -> Option<[u8; 11]> {
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut text = *b"0000-00-00T";
    // In range: checked above, or a month and a day.
    let year = year as usize;
    text[0..2].copy_from_slice(&DIGIT_PAIRS[year / 100]);
    text[2..4].copy_from_slice(&DIGIT_PAIRS[year % 100]);
    text[5..7].copy_from_slice(&DIGIT_PAIRS[month as usize]);
    text[8..10].copy_from_slice(&DIGIT_PAIRS[day as usize]);
    Some(text)
}

/// Years chrono writes with a sign: rare enough to leave to chrono. Past
/// chrono's range (±262,000 years) only from a clock gone mad: written as
/// chrono's nearest time rather than not at all.
#[cold]
fn write_unix_micros_by_chrono(out: &mut Vec<u8>, micros: i64) {
    let at = chrono::DateTime::from_timestamp_micros(micros).unwrap_or(if micros < 0 {
        chrono::DateTime::<chrono::Utc>::MIN_UTC
    } else {
        chrono::DateTime::<chrono::Utc>::MAX_UTC
    });
    out.extend_from_slice(at.to_rfc3339_opts(SecondsFormat::Micros, true).as_bytes());
}

/// The proleptic Gregorian (year, month, day) of a day count from
/// 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
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

/// Whether any byte of `bytes` must be escaped: a word at a time, then
/// the last few bytes.
fn needs_escape(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        if word_needs_escape(u64::from_ne_bytes(word.try_into().expect("eight bytes"))) {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&byte| byte_needs_escape(byte))
}

fn byte_needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// Writes `text`, which holds nothing to escape, as a JSON string.
fn write_plain_str(out: &mut Vec<u8>, text: &str) {
    debug_assert!(
        !needs_escape(text.as_bytes()),
        "text said to be plain holds a character to escape: {text:?}"
    );
    out.reserve(text.len() + 2);
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

/// Writes `text` as a JSON string, escaping as serde_json does: the short
/// forms for `"`, `\`, backspace, form feed, newline, carriage return and
/// tab, `\u00XX` (lowercase hex) for the other control characters, and
/// everything else (`/`, non-ASCII) as is.
fn write_str(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if !needs_escape(bytes) {
        // Most text: one copy.
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
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
    fn unix_microseconds_are_written_as_chrono_writes_them() {
        // Every day boundary's neighbours across four-digit years, and a
        // spread of times in between (a fixed-seed walk, no `rand`).
        let mut micros: Vec<i64> = vec![
            0,
            -1,
            1,
            DateTime::<Utc>::MIN_UTC.timestamp_micros(),
            DateTime::<Utc>::MAX_UTC.timestamp_micros(),
        ];
        for year in [
            0, 1, 4, 100, 400, 1600, 1900, 1969, 1970, 2000, 2024, 2100, 9999, 10_000,
        ] {
            let start = Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap();
            let at = start.timestamp_micros();
            micros.extend([at - 1, at, at + 1]);
            let leap_day = Utc.with_ymd_and_hms(year, 3, 1, 0, 0, 0).unwrap();
            micros.extend([leap_day.timestamp_micros() - 1, leap_day.timestamp_micros()]);
            // The same day again, at other times: the per-thread date kept
            // from the event before must be that day's.
            micros.extend([at + 3_600_000_001, at + 86_399_999_999, at]);
        }
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Within years 0..=9999 and beyond both ends.
            micros.push((state % (400_000_000_000_000_000)) as i64 - 100_000_000_000_000_000);
        }
        for micros in micros {
            let mut ours = Vec::new();
            write_unix_micros(&mut ours, micros);
            let at = chrono::DateTime::from_timestamp_micros(micros).unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                at.to_rfc3339_opts(SecondsFormat::Micros, true),
                "{micros}"
            );
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

    #[test]
    #[cfg(feature = "tracker")]
    fn latencies_are_written_as_serde_json_writes_the_float() {
        let micros = (0..5000u64).chain([
            9_999,
            10_000,
            123_456,
            1_000_000,
            86_400_000_000,
            (1 << 53) + 7,
            u64::MAX,
        ]);
        for micros in micros {
            let mut ours = Vec::new();
            write_millis(&mut ours, micros);
            let serde = serde_json::to_string(&(micros as f64 / 1000.0)).unwrap();
            assert_eq!(String::from_utf8(ours).unwrap(), serde, "{micros}");
        }
    }

    #[test]
    #[cfg(feature = "tracker")]
    fn request_details_are_the_map_the_layer_would_build() {
        let handlers: Vec<Option<Map<String, Value>>> = vec![
            None,
            Some(Map::new()),
            Some(serde_json::from_str(r#"{"amount": 5, "zeta": [1, {"b": null}], "a\"b": "x"}"#).unwrap()),
            // Keys named like the layer's give way; keys sorting between them stay.
            Some(serde_json::from_str(r#"{"status": "forged", "method": 1, "m": true, "s": "s", "route2": 2, "latency_ms": 0, "": ""}"#).unwrap()),
            Some(serde_json::from_str(r#"{"request_id": "handler's", "request": 1, "request_idx": 2}"#).unwrap()),
        ];
        for (handler, request_id) in handlers
            .into_iter()
            .flat_map(|handler| [(handler.clone(), None), (handler, Some("req-7"))])
        {
            let mut ours = Vec::new();
            write_request_details(
                &mut ours,
                &RequestDetails {
                    handler: handler.as_ref(),
                    method: "POST",
                    route: "/cases/{id}",
                    status: 201,
                    latency_micros: 1234,
                    request_id,
                },
            );
            let mut expected = handler.clone().unwrap_or_default();
            expected.insert("method".into(), Value::from("POST"));
            expected.insert("route".into(), Value::from("/cases/{id}"));
            expected.insert("status".into(), Value::from(201));
            expected.insert("latency_ms".into(), Value::from(1.234));
            if let Some(id) = request_id {
                expected.insert("request_id".into(), Value::from(id));
            }
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(&expected).unwrap(),
                "{handler:?}"
            );
        }
    }
}
