//! One stream entry as read, turned into the items the sink stores.
//!
//! - A version 1 entry (`data`) is one event.
//! - A version 2 entry (`n`, `events`: JSON lines) is one item per line,
//!   each decoded on its own: a line that is not a valid event is
//!   dead-lettered alone, the others are stored. The entry is acknowledged
//!   when the last of its lines is stored or dead-lettered
//!   ([`PendingEntry`]), however the lines were spread over batches.
//! - A version 2 entry with a `codec` field has its `events` decompressed
//!   first (at most `MAX_DECOMPRESSED_BYTES`).
//! - A version 2 entry's `arrived_ms` (a replayed spool record's write
//!   time) is its events' arrival, never later than the entry id's time
//!   ([`entry_arrival`]); one that is not a time is ignored, logged and
//!   counted (`activity_processor_entry_fields_ignored_total{field}`), and
//!   the entry read as if it had none.
//! - A version 2 entry that cannot be read as lines (`n` not matching its
//!   lines, `events` not UTF-8, both `data` and `events`, no events, an
//!   unknown codec, `events` that does not decompress) is one item,
//!   dead-lettered whole with its fields `events` (as read), `n` and
//!   `codec`.
//!
//! The lines are slices of the entry's `events` buffer (`Bytes`), not
//! copies: what a dead letter needs is kept without copying each event.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use activity_tracker::{ARRIVED_MS_FIELD, EntryCodec};
use bytes::Bytes;
use redis::Value;

use super::decode::{DecodeError, decode_entry, decode_line_arrived, entry_arrival, entry_time};
use super::{Item, Origin};

/// One stream entry as read: its id and its fields (none when the entry
/// was deleted while pending: Redis then returns its id alone).
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) id: String,
    pub(crate) fields: Vec<(String, Value)>,
}

/// A stream entry some of whose events are still being stored.
#[derive(Debug)]
pub(crate) struct PendingEntry {
    /// The entry id, for `XACK` and `XDEL`.
    pub(crate) id: String,
    /// The shard it was read from (`Settings::shards`).
    pub(crate) shard: usize,
    /// Events of the entry not stored or dead-lettered yet.
    left: AtomicUsize,
}

impl PendingEntry {
    fn new(id: String, shard: usize, events: usize) -> Arc<Self> {
        Arc::new(PendingEntry {
            id,
            shard,
            left: AtomicUsize::new(events),
        })
    }

    /// Notes one of its events done (committed or dead-lettered); `true`
    /// for the last one, when the entry may be acknowledged.
    pub(crate) fn event_done(&self) -> bool {
        self.left.fetch_sub(1, Ordering::AcqRel) == 1
    }
}

/// What was read, as the dead-letter stream keeps it.
#[derive(Debug, Clone)]
pub(crate) enum Payload {
    /// A version 1 entry's `data` (or its fields as JSON, without one), a
    /// version 2 entry's line, or a legacy list element.
    Data(Bytes),
    /// A version 2 entry that could not be read as lines, `events` as read
    /// (compressed, if it was).
    Entry {
        events: Bytes,
        n: Bytes,
        codec: Option<Bytes>,
    },
}

/// Why a version 2 entry is dead-lettered whole.
fn unreadable(reason: impl Into<String>) -> DecodeError {
    DecodeError::UnreadableEntry(reason.into())
}

/// The items of `entry` of `stream_key` (shard `shard`), read at `received`.
pub(crate) fn items(
    stream_key: &str,
    shard: usize,
    entry: Entry,
    received: tokio::time::Instant,
) -> Vec<Item> {
    let Entry { id, mut fields } = entry;
    let mut take = |name: &str| {
        fields
            .iter()
            .position(|(field, _)| field == name)
            .map(|at| bytes_of(fields.swap_remove(at).1))
    };
    let data = take("data");
    let events = take("events");
    let n = take("n");
    let codec = take("codec");
    let Some(events) = events else {
        let decoded = decode_entry(stream_key, &id, data.as_deref());
        // Without a `data` field, the dead letter keeps the fields there were.
        let payload = data.unwrap_or_else(|| Bytes::from(fields_as_json(&fields)));
        let entry = PendingEntry::new(id, shard, 1);
        return vec![Item {
            origin: Origin::Stream { entry, line: None },
            payload: Payload::Data(payload),
            received,
            decoded,
        }];
    };
    let arrived_ms = take(ARRIVED_MS_FIELD);
    let n = n.unwrap_or_default();
    let whole = |id: String, reason: DecodeError, events: Bytes, n: Bytes| {
        vec![Item {
            origin: Origin::Stream {
                entry: PendingEntry::new(id, shard, 1),
                line: None,
            },
            payload: Payload::Entry {
                events,
                n,
                codec: codec.clone(),
            },
            received,
            decoded: Err(reason),
        }]
    };
    if data.is_some() {
        return whole(id, unreadable("entry has both data and events"), events, n);
    }
    // The dead letter of a whole entry keeps `events` as it was read.
    let raw = events;
    let events = match &codec {
        None => raw.clone(),
        Some(name) => {
            let Some(known) = EntryCodec::from_name(name) else {
                let reason =
                    unreadable(format!("unknown codec {:?}", String::from_utf8_lossy(name)));
                return whole(id, reason, raw, n);
            };
            match known.decompress(&raw) {
                Ok(lines) => Bytes::from(lines),
                Err(error) => return whole(id, unreadable(error.to_string()), raw, n),
            }
        }
    };
    if std::str::from_utf8(&events).is_err() {
        return whole(id, unreadable("events is not UTF-8"), raw, n);
    }
    let lines = split_lines(&events);
    let count = std::str::from_utf8(&n)
        .ok()
        .and_then(|text| text.trim().parse::<usize>().ok());
    match count {
        None => {
            let reason = unreadable("n is missing or not a whole number");
            return whole(id, reason, raw, n);
        }
        Some(0) if lines.is_empty() => {
            return whole(id, unreadable("entry holds no events"), raw, n);
        }
        Some(count) if count != lines.len() => {
            let reason = unreadable(format!(
                "n is {count} but events holds {} lines",
                lines.len()
            ));
            return whole(id, reason, raw, n);
        }
        Some(_) => {}
    }
    let arrived_at = match entry_arrival(&id, arrived_ms.as_deref()) {
        Ok(at) => at,
        Err(error) => {
            metrics::counter!("activity_processor_entry_fields_ignored_total", "field" => ARRIVED_MS_FIELD)
                .increment(1);
            tracing::warn!(stream = %stream_key, entry = %id, %error, "entry field ignored");
            entry_time(&id)
        }
    };
    let entry = PendingEntry::new(id, shard, lines.len());
    lines
        .into_iter()
        .enumerate()
        .map(|(index, (start, end))| {
            let line = events.slice(start..end);
            Item {
                decoded: decode_line_arrived(stream_key, &entry.id, index, &line, arrived_at),
                origin: Origin::Stream {
                    entry: Arc::clone(&entry),
                    line: Some(index),
                },
                payload: Payload::Data(line),
                received,
            }
        })
        .collect()
}

/// The lines of a v2 `events` field as byte ranges: split on `\n`, a `\r`
/// before it stripped, one trailing `\n` allowed (so `""` holds none).
fn split_lines(events: &[u8]) -> Vec<(usize, usize)> {
    let body = events.strip_suffix(b"\n").unwrap_or(events);
    if body.is_empty() {
        return Vec::new();
    }
    let mut lines = Vec::new();
    let mut start = 0;
    for (at, _) in body.iter().enumerate().filter(|(_, byte)| **byte == b'\n') {
        lines.push((start, at));
        start = at + 1;
    }
    lines.push((start, body.len()));
    for (start, end) in &mut lines {
        if *end > *start && events[*end - 1] == b'\r' {
            *end -= 1;
        }
    }
    lines
}

fn bytes_of(value: Value) -> Bytes {
    match value {
        Value::BulkString(bytes) => Bytes::from(bytes),
        Value::SimpleString(text) => Bytes::from(text.into_bytes()),
        other => Bytes::from(format!("{other:?}").into_bytes()),
    }
}

fn fields_as_json(fields: &[(String, Value)]) -> Vec<u8> {
    let object: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .map(|(field, value)| {
            let text = match value {
                Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                other => format!("{other:?}"),
            };
            (field.clone(), serde_json::Value::String(text))
        })
        .collect();
    serde_json::to_vec(&object).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &[u8]) -> Value {
        Value::BulkString(text.to_vec())
    }

    fn entry(fields: &[(&str, &[u8])]) -> Entry {
        Entry {
            id: "1-0".into(),
            fields: fields
                .iter()
                .map(|(name, value)| ((*name).to_owned(), bulk(value)))
                .collect(),
        }
    }

    fn read(fields: &[(&str, &[u8])]) -> Vec<Item> {
        items("s", 0, entry(fields), tokio::time::Instant::now())
    }

    const GOOD: &str = r#"{"action":"login","user_id":"u1","created_at":"2025-01-02T03:04:05Z"}"#;

    #[test]
    fn lines_split_as_the_format_says() {
        assert_eq!(split_lines(b""), vec![]);
        assert_eq!(split_lines(b"\n"), vec![]);
        assert_eq!(split_lines(b"\n\n"), vec![(0, 0), (1, 1)]);
        assert_eq!(split_lines(b"a"), vec![(0, 1)]);
        assert_eq!(split_lines(b"a\n"), vec![(0, 1)]);
        assert_eq!(split_lines(b"a\r\nbc\r\n"), vec![(0, 1), (3, 5)]);
        assert_eq!(split_lines(b"a\n\nb"), vec![(0, 1), (2, 2), (3, 4)]);
        assert_eq!(split_lines(b"a\n\n"), vec![(0, 1), (2, 2)]);
    }

    #[test]
    fn a_bad_line_is_dead_lettered_alone_with_its_index() {
        let events = format!("{GOOD}\r\nnot json\n\n{GOOD}\n");
        let items = read(&[("n", b"4"), ("events", events.as_bytes())]);
        assert_eq!(items.len(), 4);
        let ok: Vec<bool> = items.iter().map(|item| item.decoded.is_ok()).collect();
        assert_eq!(ok, [true, false, false, true]);
        assert!(matches!(items[2].decoded, Err(DecodeError::BlankLine)));
        let Payload::Data(line) = &items[1].payload else {
            panic!()
        };
        assert_eq!(&line[..], b"not json");
        let Origin::Stream { entry, line } = &items[3].origin else {
            panic!()
        };
        assert_eq!(*line, Some(3));
        // Acknowledged after the fourth event, not before.
        assert!(!entry.event_done() && !entry.event_done() && !entry.event_done());
        assert!(entry.event_done());
        // Lines without ids get distinct ids, the same on a second read.
        let again = read(&[("n", b"4"), ("events", events.as_bytes())]);
        let id = |items: &[Item], i: usize| items[i].decoded.as_ref().unwrap().activity().id;
        assert_eq!(id(&items, 0), id(&again, 0));
        assert_ne!(id(&items, 0), id(&items, 3));
    }

    #[test]
    fn unreadable_entries_are_dead_lettered_whole() {
        let two = format!("{GOOD}\n{GOOD}");
        type Fields<'a> = Vec<(&'a str, &'a [u8])>;
        let cases: Vec<(Fields, &str)> = vec![
            (
                vec![("n", b"3"), ("events", two.as_bytes())],
                "n is 3 but events holds 2 lines",
            ),
            (
                vec![("n", b"x"), ("events", two.as_bytes())],
                "not a whole number",
            ),
            (vec![("events", two.as_bytes())], "not a whole number"),
            (vec![("n", b"2"), ("events", b"\xff\xfe\n{}")], "not UTF-8"),
            (vec![("n", b"0"), ("events", b"")], "no events"),
            (
                vec![("n", b"2"), ("codec", b"zstd"), ("events", two.as_bytes())],
                "unknown codec \"zstd\"",
            ),
            (
                vec![("n", b"2"), ("codec", b"lz4"), ("events", two.as_bytes())],
                "not a valid lz4 frame",
            ),
            (
                vec![
                    ("n", b"2"),
                    ("events", two.as_bytes()),
                    ("data", GOOD.as_bytes()),
                ],
                "both data and events",
            ),
        ];
        for (fields, reason) in cases {
            let items = read(&fields);
            assert_eq!(items.len(), 1, "{reason}");
            let error = items[0].decoded.as_ref().unwrap_err().to_string();
            assert!(error.contains(reason), "{error} vs {reason}");
            assert!(matches!(items[0].payload, Payload::Entry { .. }));
        }
    }

    #[test]
    fn compressed_lines_are_read_as_the_lines_they_hold() {
        let lines = format!("{GOOD}\nnot json\n{GOOD}");
        let frame = EntryCodec::Lz4.compress(lines.as_bytes());
        let items = read(&[("n", b"3"), ("codec", b"lz4"), ("events", &frame)]);
        let ok: Vec<bool> = items.iter().map(|item| item.decoded.is_ok()).collect();
        assert_eq!(ok, [true, false, true]);
        // The bad line is dead-lettered as its text, not as compressed bytes.
        let Payload::Data(line) = &items[1].payload else {
            panic!()
        };
        assert_eq!(&line[..], b"not json");
        // Ids derived for lines without one do not depend on the codec.
        let plain = read(&[("n", b"3"), ("events", lines.as_bytes())]);
        let id = |items: &[Item], i: usize| items[i].decoded.as_ref().unwrap().activity().id;
        assert_eq!(id(&items, 2), id(&plain, 2));
        // A count that does not match the decompressed lines keeps the
        // entry whole, compressed as it came, with its codec.
        let items = read(&[("n", b"2"), ("codec", b"lz4"), ("events", &frame)]);
        let Payload::Entry { events, codec, .. } = &items[0].payload else {
            panic!()
        };
        assert_eq!(
            (&events[..], codec.as_deref()),
            (&frame[..], Some(&b"lz4"[..]))
        );
    }

    #[test]
    fn arrived_ms_is_the_arrival_never_later_than_the_entry_id() {
        let arrival = |value: Option<&[u8]>| {
            let mut fields = vec![("n", &b"2"[..])];
            let events = format!("{GOOD}\n{GOOD}");
            fields.push(("events", events.as_bytes()));
            if let Some(value) = value {
                fields.push((ARRIVED_MS_FIELD, value));
            }
            let mut entry = entry(&fields);
            entry.id = "1700000005000-3".into();
            let items = items("s", 0, entry, tokio::time::Instant::now());
            assert_eq!(items.len(), 2);
            let at: Vec<_> = items
                .iter()
                .map(|item| {
                    let decoded = item.decoded.as_ref().expect("stored, whatever arrived_ms");
                    decoded.arrived_at().map(|at| at.timestamp_millis())
                })
                .collect();
            assert_eq!(at[0], at[1]);
            at[0]
        };
        let entry_ms = Some(1_700_000_005_000);
        assert_eq!(arrival(None), entry_ms);
        assert_eq!(arrival(Some(b"1700000000123")), Some(1_700_000_000_123));
        assert_eq!(arrival(Some(b"1700000005001")), entry_ms, "later: the id's");
        for malformed in [
            &b""[..],
            b"soon",
            b"-5",
            b"+5",
            b"1.5",
            b"1e12",
            b"99999999999999999999",
            b"9223372036854775807",
            b"\xff",
        ] {
            assert_eq!(arrival(Some(malformed)), entry_ms, "{malformed:?}");
        }
    }

    #[test]
    fn a_v1_entry_is_one_item() {
        let items = read(&[("data", GOOD.as_bytes())]);
        assert_eq!(items.len(), 1);
        assert!(items[0].decoded.is_ok());
        let items = read(&[("other", b"x")]);
        assert!(matches!(items[0].decoded, Err(DecodeError::MissingData)));
        let Payload::Data(kept) = &items[0].payload else {
            panic!()
        };
        assert_eq!(&kept[..], br#"{"other":"x"}"#);
    }
}
