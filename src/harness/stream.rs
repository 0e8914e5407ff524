//! Reading a stream back as the processor would, for tests that check what
//! the tracker wrote: entries of either shape (version 1: `data`; version
//! 2: `n` and `events`, and `codec` when compressed, `arrived_ms` when
//! replayed from a spool), read strictly.

use activity_tracker::{ARRIVED_MS_FIELD, Activity, EntryCodec};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamRangeReply};

/// The activities in the stream `key`, in stream order. Panics on an
/// entry that is not exactly a version 1 or a well-formed version 2 entry
/// of valid events: what the tracker writes must be.
pub async fn stream_activities(conn: &mut MultiplexedConnection, key: &str) -> Vec<Activity> {
    let reply: StreamRangeReply = conn.xrange_all(key).await.expect("XRANGE");
    reply.ids.iter().flat_map(entry_activities).collect()
}

/// The events in the stream `key`: the sum of the entries' `n` (one for a
/// version 1 entry), or `None` while Redis cannot answer.
pub async fn stream_events(conn: &mut MultiplexedConnection, key: &str) -> Option<u64> {
    let reply: StreamRangeReply = conn.xrange_all(key).await.ok()?;
    Some(
        reply
            .ids
            .iter()
            .map(|entry| entry.get::<u64>("n").unwrap_or(1))
            .sum(),
    )
}

fn entry_activities(entry: &StreamId) -> Vec<Activity> {
    let read = |json: &str| {
        Activity::from_wire_json(json.as_bytes())
            .unwrap_or_else(|e| panic!("entry {}: {e}: {json}", entry.id))
    };
    if let Some(data) = entry.get::<String>("data") {
        assert_eq!(
            entry.map.len(),
            1,
            "entry {}: data and nothing else",
            entry.id
        );
        return vec![read(&data)];
    }
    let events: Vec<u8> = entry
        .get("events")
        .unwrap_or_else(|| panic!("entry {}: neither data nor events", entry.id));
    let n: usize = entry.get("n").expect("a version 2 entry has n");
    let codec: Option<Vec<u8>> = entry.get("codec");
    let arrived_ms: Option<String> = entry.get(ARRIVED_MS_FIELD);
    if let Some(arrived_ms) = &arrived_ms {
        let entry_ms = entry.id.split_once('-').map_or("", |(ms, _)| ms);
        let (arrived, entry_ms): (u64, u64) = (
            arrived_ms.parse().expect("arrived_ms is a whole number"),
            entry_ms.parse().expect("an entry id's time"),
        );
        assert!(
            arrived <= entry_ms,
            "entry {}: arrived_ms {arrived} after the entry",
            entry.id
        );
    }
    assert_eq!(
        entry.map.len(),
        2 + usize::from(codec.is_some()) + usize::from(arrived_ms.is_some()),
        "entry {}: n and events (and codec, arrived_ms) and nothing else",
        entry.id
    );
    let events = match codec {
        None => events,
        Some(name) => EntryCodec::from_name(&name)
            .unwrap_or_else(|| panic!("entry {}: unknown codec {name:?}", entry.id))
            .decompress(&events)
            .unwrap_or_else(|e| panic!("entry {}: {e}", entry.id)),
    };
    let events = String::from_utf8(events).expect("events is UTF-8");
    let activities: Vec<Activity> = events.split('\n').map(read).collect();
    assert_eq!(
        activities.len(),
        n,
        "entry {}: n is the number of lines",
        entry.id
    );
    activities
}
