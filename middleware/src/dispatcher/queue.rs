//! The dispatcher's queue: events waiting to be sent, already serialized,
//! oldest first, cut into batches of at most `max_batch` as they arrive.
//!
//! Each event is written once, as its wire JSON line, into the batch being
//! filled (one buffer per batch, so a batch goes to Redis as one `XADD`
//! argument with no per-event copy or allocation). A failed batch comes
//! back to the front whole, and is sent again as it is.

use std::collections::VecDeque;

use crate::WireBatch;

/// See the module docs.
#[derive(Debug)]
pub(super) struct Queue {
    /// Whole batches, oldest first: full ones, and failed ones put back.
    sealed: VecDeque<WireBatch>,
    /// The batch being filled, newest events.
    open: WireBatch,
    /// Events in `sealed` and `open`.
    events: usize,
    /// Most events a batch holds.
    max_batch: usize,
    /// The most bytes a batch took: the open batch starts with room for
    /// that much, so a batch buffer is allocated once, not grown.
    batch_bytes: usize,
    /// Buffers of batches written, kept for new batches: a batch's buffer
    /// is large (hundreds of KiB), and allocating and freeing one per batch
    /// costs page faults and, when the allocator maps and unmaps it, stalls
    /// of the app's own threads.
    spare: Vec<Vec<u8>>,
}

/// Most buffers kept in [`Queue::spare`].
const SPARE_BUFFERS: usize = 4;

impl Queue {
    pub(super) fn new(max_batch: usize) -> Self {
        Queue {
            sealed: VecDeque::new(),
            open: WireBatch::new(),
            events: 0,
            max_batch: max_batch.max(1),
            batch_bytes: 0,
            spare: Vec::new(),
        }
    }

    /// Events waiting.
    pub(super) fn len(&self) -> usize {
        self.events
    }

    pub(super) fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Appends one event, written by `write` as its wire JSON.
    pub(super) fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        if self.open.is_empty() {
            if let Some(buffer) = self.spare.pop() {
                self.open = WireBatch::in_buffer(buffer);
            }
            self.open.reserve(self.batch_bytes);
        }
        self.open.push_with(write);
        self.events += 1;
        if self.open.len() >= self.max_batch {
            self.batch_bytes = self.batch_bytes.max(self.open.as_bytes().len());
            self.sealed.push_back(std::mem::take(&mut self.open));
        }
    }

    /// Puts a batch back in front (a failed write, to be retried first).
    pub(super) fn push_front(&mut self, batch: WireBatch) {
        if batch.is_empty() {
            return;
        }
        self.events += batch.len();
        self.sealed.push_front(batch);
    }

    /// Takes the oldest batch: a whole one, else the one being filled.
    pub(super) fn pop_batch(&mut self) -> Option<WireBatch> {
        let batch = match self.sealed.pop_front() {
            Some(batch) => batch,
            None if !self.open.is_empty() => {
                self.batch_bytes = self.batch_bytes.max(self.open.as_bytes().len());
                std::mem::take(&mut self.open)
            }
            None => return None,
        };
        self.events -= batch.len();
        Some(batch)
    }

    /// Takes back the buffer of a batch that was written.
    pub(super) fn recycle(&mut self, batch: WireBatch) {
        if self.spare.len() < SPARE_BUFFERS {
            self.spare.push(batch.into_empty_buffer());
        }
    }

    /// Drops the `n` oldest events; returns how many there were.
    pub(super) fn drop_oldest(&mut self, n: usize) -> usize {
        let mut left = n.min(self.events);
        let dropped = left;
        while left > 0 {
            let front = match self.sealed.front_mut() {
                Some(front) => front,
                None => &mut self.open,
            };
            let take = left.min(front.len());
            front.drop_oldest(take);
            if front.is_empty() {
                self.sealed.pop_front();
            }
            left -= take;
        }
        self.events -= dropped;
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Activity, ActivityType};

    fn push(queue: &mut Queue, user: &str) {
        let activity = Activity::new(ActivityType::Login).user_id(user);
        queue.push_with(|out| activity.write_wire_json(out));
    }

    fn users(batch: &WireBatch) -> Vec<String> {
        let activities = batch.activities().unwrap();
        activities.into_iter().map(|a| a.user_id.unwrap()).collect()
    }

    #[test]
    fn batches_are_cut_at_max_batch_and_come_out_oldest_first() {
        let mut queue = Queue::new(2);
        for user in ["a", "b", "c", "d", "e"] {
            push(&mut queue, user);
        }
        assert_eq!(queue.len(), 5);
        assert_eq!(users(&queue.pop_batch().unwrap()), ["a", "b"]);
        let second = queue.pop_batch().unwrap();
        assert_eq!(users(&second), ["c", "d"]);
        // A failed batch goes back in front, whole.
        queue.push_front(second);
        assert_eq!(queue.len(), 3);
        assert_eq!(users(&queue.pop_batch().unwrap()), ["c", "d"]);
        assert_eq!(users(&queue.pop_batch().unwrap()), ["e"]);
        assert!(queue.pop_batch().is_none() && queue.is_empty());
    }

    #[test]
    fn the_oldest_events_are_dropped_first() {
        let mut queue = Queue::new(3);
        for user in ["a", "b", "c", "d", "e"] {
            push(&mut queue, user);
        }
        assert_eq!(queue.drop_oldest(4), 4);
        assert_eq!(queue.len(), 1);
        assert_eq!(users(&queue.pop_batch().unwrap()), ["e"]);
        push(&mut queue, "f");
        assert_eq!(queue.drop_oldest(5), 1);
        assert!(queue.is_empty() && queue.pop_batch().is_none());
    }
}
