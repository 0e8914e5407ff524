//! A version 2 entry (`n`, `events`, `codec`): the entry reader splits it
//! into events, each stored within the contract, or refuses it whole.
//!
//! The first byte chooses the shape: bit 0 compresses the rest with the
//! tracker's LZ4 codec (a valid frame), bit 1 sends the rest as `events`
//! with `codec: lz4` as it is (frames the fuzzer makes), bit 2 gives a
//! wrong `n`.
#![no_main]

use activity_fuzz::check_event;
use activity_processor::fuzzing::entry_events;
use activity_tracker::EntryCodec;
use libfuzzer_sys::fuzz_target;

/// Lines as the reader counts them: split on `\n`, one trailing `\n` allowed.
fn lines(events: &[u8]) -> usize {
    let body = events.strip_suffix(b"\n").unwrap_or(events);
    if body.is_empty() {
        0
    } else {
        body.iter().filter(|b| **b == b'\n').count() + 1
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&shape, events)) = data.split_first() else {
        return;
    };
    let count = lines(events);
    let n = if shape & 4 != 0 { count + 1 } else { count }.to_string();
    let compressed;
    let mut fields: Vec<(&str, &[u8])> = vec![("n", n.as_bytes())];
    if shape & 1 != 0 {
        compressed = EntryCodec::Lz4.compress(events);
        fields.push(("codec", b"lz4"));
        fields.push(("events", &compressed));
    } else if shape & 2 != 0 {
        fields.push(("codec", b"lz4"));
        fields.push(("events", events));
    } else {
        fields.push(("events", events));
    }
    let decoded = entry_events("fuzz", "1767323045000-0", &fields);
    assert!(!decoded.is_empty(), "an entry is at least one item");
    let readable =
        shape & 2 == 0 && shape & 4 == 0 && count > 0 && std::str::from_utf8(events).is_ok();
    if readable {
        assert_eq!(decoded.len(), count, "one item per line");
    }
    for event in decoded.iter().flatten() {
        check_event(event, event.arrived_at());
    }
});
