//! A message's `timestamp` in the one shape SDKs send
//! (`2026-12-02T11:59:59.123456789+00:00`, or with `Z`), read without
//! chrono's general RFC 3339 parser, which was a visible part of the
//! ingest's cost per event. Any other text (white space, a lowercase `t`,
//! a leap second, more than nine decimals...) gives `None`, and chrono
//! reads it as before; the tests hold the two to the same instant.

use chrono::{DateTime, Utc};

/// The instant `text` names, as `DateTime::parse_from_rfc3339` reads it,
/// when `text` is `YYYY-MM-DDTHH:MM:SS`, an optional `.` and one to nine
/// digits, then `Z` or `±HH:MM`; `None` otherwise.
pub(crate) fn parse(text: &str) -> Option<DateTime<Utc>> {
    let bytes = text.as_bytes();
    let (date_time, rest) = bytes.split_first_chunk::<19>()?;
    let [
        y0,
        y1,
        y2,
        y3,
        b'-',
        m0,
        m1,
        b'-',
        d0,
        d1,
        b'T',
        h0,
        h1,
        b':',
        i0,
        i1,
        b':',
        s0,
        s1,
    ] = *date_time
    else {
        return None;
    };
    let year = number(&[y0, y1, y2, y3])?;
    let month = number(&[m0, m1])?;
    let day = number(&[d0, d1])?;
    let hour = number(&[h0, h1])?;
    let minute = number(&[i0, i1])?;
    let second = number(&[s0, s1])?;
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let (nanos, offset) = match rest.split_first() {
        Some((b'.', after)) => {
            let count = after.iter().take_while(|b| b.is_ascii_digit()).count();
            if !(1..=9).contains(&count) {
                return None;
            }
            let (fraction, offset) = after.split_at(count);
            (number(fraction)? * 10u32.pow((9 - count) as u32), offset)
        }
        _ => (0, rest),
    };
    let offset_seconds = match *offset {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h0, h1, b':', m0, m1] => {
            let hours = number(&[h0, h1])?;
            let minutes = number(&[m0, m1])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = i64::from(hours * 3600 + minutes * 60);
            if sign == b'-' { -seconds } else { seconds }
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(year), month, day);
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_seconds;
    DateTime::from_timestamp(seconds, nanos)
}

/// ASCII digits as a number (at most nine of them).
fn number(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0, |value, &digit| {
        digit
            .is_ascii_digit()
            .then(|| value * 10 + u32::from(digit - b'0'))
    })
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn chrono(text: &str) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|at| at.with_timezone(&Utc))
    }

    #[test]
    fn timestamps_read_as_chrono_reads_them() {
        for text in [
            "2026-12-02T11:59:59.123456789+00:00",
            "2026-12-02T11:59:59Z",
            "2026-12-02T11:59:59.1Z",
            "2026-12-01T10:00:00-05:30",
            "2026-12-01T00:00:00+23:59",
            "2024-02-29T23:59:59.999999999-23:59",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.5+00:00",
            "2000-02-29T12:00:00Z",
        ] {
            assert_eq!(parse(text), chrono(text), "{text}");
            assert!(parse(text).is_some(), "{text}");
        }
        // Left to chrono (which reads some, refuses others).
        for text in [
            " 2026-12-02T11:59:59Z",
            "2026-12-02t11:59:59Z",
            "2026-12-02 11:59:59Z",
            "2026-12-02T11:59:59z",
            "2026-12-02T11:59:60Z",
            "2026-12-02T11:59:59.1234567891Z",
            "2026-12-02T11:59:59.Z",
            "2026-12-02T11:59:59",
            "2026-12-02T11:59:59+0000",
            "2026-12-02T11:59:59+24:00",
            "2026-02-29T11:59:59Z",
            "1900-02-29T11:59:59Z",
            "2026-13-02T11:59:59Z",
            "2026-00-02T11:59:59Z",
            "2026-12-00T11:59:59Z",
            "2026-12-02T24:00:00Z",
            "2026-12-02T11:60:00Z",
            "+2026-12-02T11:59:59Z",
            "2026-1２-02T11:59:59Z",
        ] {
            assert_eq!(parse(text), None, "{text}");
        }
    }

    #[test]
    fn generated_timestamps_read_as_chrono_reads_them() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut read = 0;
        for _ in 0..100_000 {
            let fraction = match rng.random_range(0..4) {
                0 => String::new(),
                n => format!(".{:09}", rng.random_range(0..1_000_000_000u32))[..=n * 3].to_owned(),
            };
            let offset = match rng.random_range(0..3) {
                0 => "Z".to_owned(),
                _ => format!(
                    "{}{:02}:{:02}",
                    if rng.random_bool(0.5) { '+' } else { '-' },
                    rng.random_range(0..26),
                    rng.random_range(0..62)
                ),
            };
            let text = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{fraction}{offset}",
                rng.random_range(0..10_000),
                rng.random_range(0..14),
                rng.random_range(0..33),
                rng.random_range(0..25),
                rng.random_range(0..61),
                rng.random_range(0..61),
            );
            let ours = parse(&text);
            if ours.is_some() {
                read += 1;
                assert_eq!(ours, chrono(&text), "{text}");
            } else if chrono(&text).is_some() {
                // Only a leap second is left to chrono among these.
                assert!(text[17..19] == *"60", "{text}");
            }
        }
        assert!(read > 10_000, "{read}");
    }
}
