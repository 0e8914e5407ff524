//! The dispatcher's queue: batches waiting to be sent, oldest first, as
//! the intake cut them (at most `max_batch` events each) and once they are
//! due. A failed batch comes back to the front whole, and is sent again as
//! it is.

use std::collections::VecDeque;

use crate::WireBatch;

/// See the module docs.
#[derive(Debug, Default)]
pub(super) struct Queue {
    /// Whole batches, oldest first.
    batches: VecDeque<WireBatch>,
    /// Events in `batches`.
    events: usize,
}

impl Queue {
    pub(super) fn new() -> Self {
        Queue::default()
    }

    /// Events waiting.
    pub(super) fn len(&self) -> usize {
        self.events
    }

    pub(super) fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Appends a batch taken from the intake (the newest events).
    pub(super) fn push_back(&mut self, batch: WireBatch) {
        if batch.is_empty() {
            return;
        }
        self.events += batch.len();
        self.batches.push_back(batch);
    }

    /// Puts a batch back in front (a failed write, to be retried first).
    pub(super) fn push_front(&mut self, batch: WireBatch) {
        if batch.is_empty() {
            return;
        }
        self.events += batch.len();
        self.batches.push_front(batch);
    }

    /// Takes the oldest batch.
    pub(super) fn pop_batch(&mut self) -> Option<WireBatch> {
        let batch = self.batches.pop_front()?;
        self.events -= batch.len();
        Some(batch)
    }

    /// Drops the `n` oldest events; returns how many there were.
    pub(super) fn drop_oldest(&mut self, n: usize) -> usize {
        let mut left = n.min(self.events);
        let dropped = left;
        while left > 0 {
            let Some(front) = self.batches.front_mut() else {
                break;
            };
            let take = left.min(front.len());
            front.drop_oldest(take);
            if front.is_empty() {
                self.batches.pop_front();
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

    /// Pushes one batch of an event per user.
    fn push(queue: &mut Queue, users: &[&str]) {
        let mut batch = WireBatch::new();
        for user in users {
            batch.push(&Activity::new(ActivityType::Login).user_id(*user));
        }
        queue.push_back(batch);
    }

    fn users(batch: &WireBatch) -> Vec<String> {
        let activities = batch.activities().unwrap();
        activities.into_iter().map(|a| a.user_id.unwrap()).collect()
    }

    #[test]
    fn batches_come_out_oldest_first() {
        let mut queue = Queue::new();
        push(&mut queue, &["a", "b"]);
        push(&mut queue, &["c", "d"]);
        push(&mut queue, &["e"]);
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
        let mut queue = Queue::new();
        push(&mut queue, &["a", "b", "c"]);
        push(&mut queue, &["d", "e"]);
        assert_eq!(queue.drop_oldest(4), 4);
        assert_eq!(queue.len(), 1);
        assert_eq!(users(&queue.pop_batch().unwrap()), ["e"]);
        push(&mut queue, &["f"]);
        assert_eq!(queue.drop_oldest(5), 1);
        assert!(queue.is_empty() && queue.pop_batch().is_none());
    }
}
