//! Ids for captured requests: UUID v7 whose timestamp is when the request
//! started (`created_at`, to the millisecond) and whose 74 random bits
//! come from a generator seeded once from the system's randomness.
//!
//! `Uuid::now_v7()` reads the clock again and draws from a thread-local
//! cryptographic generator for every id: a few hundred instructions per
//! event. The request's start time is already
//! known, and an id needs to be unique, not unpredictable: SplitMix64 (a
//! 64-bit state, two steps an id), seeded from the standard library's
//! per-process hash keys, fills the random bits; two ids of one
//! millisecond collide with a chance of about 2^-64. Each thread that
//! writes events has a generator of its own ([`v7_at`]), seeded apart.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use uuid::Uuid;

/// See the module docs.
#[derive(Debug, Clone, Copy)]
pub(super) struct IdGenerator {
    state: u64,
}

thread_local! {
    /// This thread's generator, seeded when first used.
    static IDS: Cell<Option<IdGenerator>> = const { Cell::new(None) };
}

/// A UUID v7 for an event that happened `unix_micros` after the epoch,
/// from this thread's generator ([`IdGenerator::v7_at`]).
pub(super) fn v7_at(unix_micros: i64) -> Uuid {
    IDS.with(|ids| {
        let mut generator = ids.get().unwrap_or_else(IdGenerator::new);
        let id = generator.v7_at(unix_micros);
        ids.set(Some(generator));
        id
    })
}

impl IdGenerator {
    pub(super) fn new() -> Self {
        // The standard library's hasher keys come from the system's
        // randomness, new for each `RandomState`.
        let seed = RandomState::new().hash_one(std::time::SystemTime::now());
        IdGenerator { state: seed }
    }

    /// A UUID v7 for an event that happened `unix_micros` after the epoch
    /// (before it: at the epoch, the earliest time a v7 id holds).
    pub(super) fn v7_at(&mut self, unix_micros: i64) -> Uuid {
        // RFC 9562's layout, written directly: 48 bits of milliseconds,
        // version 7, 12 random bits; variant `10`, 62 random bits.
        let millis = u64::try_from(unix_micros.div_euclid(1000)).unwrap_or(0) & ((1 << 48) - 1);
        let rand_b = self.next() >> 2 | 1 << 63;
        let rand_a = self.next() & 0x0fff;
        let high = millis << 16 | 0x7000 | rand_a;
        Uuid::from_u64_pair(high, rand_b)
    }

    /// SplitMix64's next output.
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use std::collections::HashSet;

    #[test]
    fn ids_are_v7_at_the_event_time_and_distinct() {
        let at: DateTime<Utc> = "2026-12-02T04:40:00.123456Z".parse().unwrap();
        let mut ids = IdGenerator::new();
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let id = ids.v7_at(at.timestamp_micros());
            assert_eq!(id.get_version_num(), 7);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
            let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
            assert_eq!((secs, nanos / 1_000_000), (at.timestamp() as u64, 123));
            assert!(seen.insert(id));
        }
        // Two generators do not repeat each other.
        let mut other = IdGenerator::new();
        assert!(!seen.contains(&other.v7_at(at.timestamp_micros())));
    }
}
