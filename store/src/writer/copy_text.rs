//! `COPY`'s text format, written straight into one buffer: nothing is
//! allocated per row.

use chrono::{DateTime, SecondsFormat, Utc};

use super::columns::Columns;

/// The rows in `COPY`'s text format: tab-separated, `\N` for null,
/// backslash escapes for backslash, tab, newline and carriage return.
/// Written straight into one buffer: nothing is allocated per row.
pub(crate) fn copy_text(rows: &Columns<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 400);
    for i in 0..rows.len() {
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        out.extend_from_slice(rows.ids[i].hyphenated().encode_lower(&mut id).as_bytes());
        for text in [
            rows.user_ids[i].as_deref(),
            Some(&*rows.actions[i]),
            rows.resource_types[i].as_deref(),
            rows.resource_ids[i].as_deref(),
            rows.details[i].as_deref(),
        ] {
            out.push(b'\t');
            push_copy_field(&mut out, text);
        }
        out.push(b'\t');
        match rows.ip_addresses[i] {
            // An address's text has nothing to escape.
            Some(ip) => {
                use std::io::Write as _;
                write!(out, "{ip}").expect("writing to a Vec cannot fail");
            }
            None => out.extend_from_slice(b"\\N"),
        }
        for text in [
            rows.user_agents[i].as_deref(),
            rows.session_ids[i].as_deref(),
        ] {
            out.push(b'\t');
            push_copy_field(&mut out, text);
        }
        out.push(b'\t');
        push_timestamp(&mut out, rows.created_ats[i]);
        out.push(b'\n');
    }
    out
}

/// One text field of `COPY`'s text format.
pub(crate) fn push_copy_field(out: &mut Vec<u8>, value: Option<&str>) {
    let Some(text) = value else {
        out.extend_from_slice(b"\\N");
        return;
    };
    // Runs without a byte to escape (nearly all text) are copied whole.
    let mut rest = text.as_bytes();
    while let Some(at) = next_to_escape(rest) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(match rest[at] {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            _ => b"\\r",
        });
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
}

/// The first backslash, tab, newline or carriage return in `bytes`.
///
/// Skips eight bytes at a time while none of them is a backslash or below
/// 0x20 (a word-wide test: fields are mostly short, too short for
/// `memchr`'s vector paths to pay), then looks byte by byte.
fn next_to_escape(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut start = 0;
    for word in bytes.chunks_exact(8) {
        let word = u64::from_le_bytes(word.try_into().expect("chunks of eight"));
        // A high bit set where a byte may be below 0x20, or a backslash
        // (zero after the XOR); never unset where one is.
        let below_space = word.wrapping_sub(ONES * 0x20) & !word;
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let backslash = backslash.wrapping_sub(ONES) & !backslash;
        if (below_space | backslash) & HIGHS != 0 {
            break;
        }
        start += 8;
    }
    bytes[start..]
        .iter()
        .position(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
        .map(|at| start + at)
}

/// `at` as `YYYY-MM-DD HH:MM:SS.ffffff+00`, digit by digit: chrono's
/// formatting allocates and interprets a format for every row.
pub(crate) fn push_timestamp(out: &mut Vec<u8>, at: DateTime<Utc>) {
    use chrono::{Datelike, Timelike};
    let (date, time) = (at.date_naive(), at.time());
    let Ok(year) = u32::try_from(date.year()) else {
        out.extend_from_slice(at.to_rfc3339_opts(SecondsFormat::Micros, true).as_bytes());
        return;
    };
    // Years past 9999 and leap seconds are left to chrono.
    if year > 9999 || time.nanosecond() >= 1_000_000_000 {
        out.extend_from_slice(at.to_rfc3339_opts(SecondsFormat::Micros, true).as_bytes());
        return;
    }
    let mut push = |n: u32, width: usize, then: &[u8]| {
        let start = out.len();
        out.resize(start + width, b'0');
        let mut n = n;
        for digit in out[start..].iter_mut().rev() {
            *digit = b'0' + (n % 10) as u8;
            n /= 10;
        }
        out.extend_from_slice(then);
    };
    push(year, 4, b"-");
    push(date.month(), 2, b"-");
    push(date.day(), 2, b" ");
    push(time.hour(), 2, b":");
    push(time.minute(), 2, b":");
    push(time.second(), 2, b".");
    push(time.nanosecond() / 1000, 6, b"+00");
}

#[cfg(test)]
mod tests {
    use activity_tracker::{Activity, ActivityType};
    use chrono::TimeZone;

    use super::*;
    use crate::normalize::StorageRules;

    #[test]
    fn copy_text_escapes_and_marks_nulls() {
        let event = Activity::at(
            ActivityType::Login,
            Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
        )
        .user_id("a\tb\\c\nd\re");
        let columns = Columns::from_batch(
            std::slice::from_ref(&event),
            &StorageRules::NONE,
            chrono::Utc::now(),
        );
        let text = String::from_utf8(copy_text(&columns)).unwrap();
        assert_eq!(
            text,
            format!(
                "{}\ta\\tb\\\\c\\nd\\re\tlogin\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t2026-01-02 03:04:05.000000+00\n",
                event.id
            )
        );
    }

    #[test]
    fn copy_fields_escape_what_the_text_format_requires() {
        let escaped = |text: &str| {
            let mut out = Vec::new();
            push_copy_field(&mut out, Some(text));
            String::from_utf8(out).unwrap()
        };
        assert_eq!(escaped("plain ü"), "plain ü");
        assert_eq!(escaped("a\\b\tc\nd\re"), r"a\\b\tc\nd\re");
        // A carriage return before the other bytes, and at the end.
        assert_eq!(escaped("x\ry\\z\r"), r"x\ry\\z\r");
        // Past the first words, and after a control byte that needs nothing.
        let long = format!(
            "{}\t{}\u{1}{}\\end",
            "a".repeat(17),
            "b".repeat(9),
            "c".repeat(20)
        );
        let expected = format!(
            "{}\\t{}\u{1}{}\\\\end",
            "a".repeat(17),
            "b".repeat(9),
            "c".repeat(20)
        );
        assert_eq!(escaped(&long), expected);
        for at in 0..20 {
            let mut text = "x".repeat(20);
            text.replace_range(at..at + 1, "\r");
            assert_eq!(next_to_escape(text.as_bytes()), Some(at));
            assert_eq!(next_to_escape(&text.as_bytes()[at + 1..]), None);
        }
        let mut null = Vec::new();
        push_copy_field(&mut null, None);
        assert_eq!(null, br"\N");
    }

    #[test]
    fn copy_timestamps_read_back_to_the_microsecond() {
        for text in [
            "2026-11-27T04:30:00.123456Z",
            "0999-01-02T03:04:05Z",
            "2024-02-29T23:59:59.000001Z",
        ] {
            let at: DateTime<Utc> = text.parse().unwrap();
            let mut out = Vec::new();
            push_timestamp(&mut out, at);
            let written = String::from_utf8(out).unwrap();
            let back = DateTime::parse_from_str(&written, "%Y-%m-%d %H:%M:%S%.f%#z").unwrap();
            assert_eq!(back, at, "{written}");
        }
    }
}
