//! The stream's cap, configured in events, turned into the entry count
//! `XTRIM MAXLEN` takes.
//!
//! With one event per entry (v1) the two are the same. With many (v2), the
//! sink remembers the sizes of the entries it wrote last (run-length
//! encoded: a steady load makes one run), as many of the newest as hold
//! the cap's events, and trims the stream to that many entries: the newest
//! entries that together hold the cap. For one producer that keeps the
//! stream at the cap (to within the entries `~` trimming leaves, at most a
//! tenth of them, see `EXACT_TRIM_BELOW`) whatever the batch sizes, and
//! however they change. Several producers writing batches of like sizes
//! (instances of one app under one load balancer) keep it near the cap
//! too; a producer whose entries are much smaller or larger than the
//! others' moves it by the ratio of their sizes.
//!
//! Until it has written the cap's events itself (after a start), the sink
//! does not know how many events the older entries hold, and trims to the
//! cap counted as entries: it never trims below the cap in events, and the
//! stream holds at most the events of that many entries.

use std::collections::VecDeque;

/// Below this many entries the trim is exact (`MAXLEN =`): Redis's
/// approximate trim (`~`) only removes whole nodes of up to 100 entries,
/// which for a stream of few large entries could leave several times the
/// cap. From it on, `~` leaves at most a tenth more.
pub(super) const EXACT_TRIM_BELOW: u64 = 1000;

/// See the module docs.
#[derive(Debug)]
pub(super) struct StreamCap {
    /// The cap in events.
    max_events: u64,
    /// Sizes of the newest entries written, oldest first: (events per
    /// entry, entries of that size in a row).
    runs: VecDeque<(u64, u64)>,
    /// Events in `runs`.
    events: u64,
    /// Entries in `runs`.
    entries: u64,
}

impl StreamCap {
    pub(super) fn new(max_events: usize) -> Self {
        StreamCap {
            max_events: (max_events as u64).max(1),
            runs: VecDeque::new(),
            events: 0,
            entries: 0,
        }
    }

    /// Notes `entries` entries of `events_per_entry` events each, written
    /// after all those noted before.
    pub(super) fn record(&mut self, events_per_entry: usize, entries: usize) {
        let (size, count) = (events_per_entry as u64, entries as u64);
        if size == 0 || count == 0 {
            return;
        }
        match self.runs.back_mut() {
            Some((last, run)) if *last == size => *run += count,
            _ => self.runs.push_back((size, count)),
        }
        self.events += size * count;
        self.entries += count;
        // Forget the oldest entries the newest ones no longer need to
        // reach the cap.
        while self.events > self.max_events {
            let Some((size, run)) = self.runs.front_mut() else {
                break;
            };
            let spare = (self.events - self.max_events) / *size;
            if spare == 0 {
                break;
            }
            let dropped = spare.min(*run);
            *run -= dropped;
            self.events -= dropped * *size;
            self.entries -= dropped;
            if *run == 0 {
                self.runs.pop_front();
            }
        }
    }

    /// The entry count to trim the stream to.
    pub(super) fn max_entries(&self) -> u64 {
        if self.events >= self.max_events {
            self.entries
        } else {
            self.max_events
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_per_entry_is_the_cap_itself() {
        let mut cap = StreamCap::new(1000);
        assert_eq!(cap.max_entries(), 1000);
        for _ in 0..5000 {
            cap.record(1, 1);
        }
        assert_eq!(cap.max_entries(), 1000);
        assert_eq!(cap.runs.len(), 1);
    }

    #[test]
    fn the_newest_entries_that_hold_the_cap_whatever_their_sizes() {
        let mut cap = StreamCap::new(10_000);
        for _ in 0..100 {
            cap.record(1000, 1);
        }
        assert_eq!(cap.max_entries(), 10);
        // The load drops: small entries replace the large ones.
        for _ in 0..2000 {
            cap.record(5, 1);
        }
        assert_eq!(cap.max_entries(), 2000);
        cap.record(3, 3);
        // 3 * 3 more events: the oldest 5-event entry is no longer needed,
        // and the newest entries still hold at least the cap.
        assert_eq!(cap.max_entries(), 2000 - 1 + 3);
        assert!(
            cap.events >= 10_000 && cap.events < 10_000 + 5,
            "{}",
            cap.events
        );
    }

    #[test]
    fn until_the_cap_is_written_the_trim_never_goes_below_it() {
        let mut cap = StreamCap::new(10_000);
        cap.record(1000, 3);
        assert_eq!(cap.max_entries(), 10_000);
    }

    #[test]
    fn mixed_sizes_keep_the_events_within_one_entry_of_the_cap() {
        let mut cap = StreamCap::new(50_000);
        let mut sizes = (1..=1024u64).cycle();
        let mut written: Vec<u64> = Vec::new();
        for _ in 0..5000 {
            let size = sizes.next().unwrap() * 7 % 1024 + 1;
            written.push(size);
            cap.record(size as usize, 1);
            let kept = cap.max_entries() as usize;
            if cap.events >= 50_000 {
                let held: u64 = written.iter().rev().take(kept).sum();
                assert!((50_000..50_000 + 1024).contains(&held), "{held}");
            }
        }
    }
}
