//! The hand-off from the request path (and `track`) to the dispatcher: a
//! bounded buffer of events as wire JSON lines, already cut into batches of
//! at most `max_batch`, behind one short lock.
//!
//! A producer writes its event's line on its own thread, into a buffer of
//! that thread's, and then, under the lock, copies it to the end of the
//! batch being filled. No box, no channel slot, no allocation per event: the
//! dispatcher takes whole batches (`take`), and gives their buffers back
//! once written (`recycle`). A full intake drops the newest event and a
//! closed one refuses it, as a bounded channel would; the caller counts
//! which.
//!
//! The dispatcher is woken (a [`Notify`] permit, so a wake-up is never
//! lost) only when it has something new to do: the first event into an
//! empty intake, a batch filled, the intake closed, or the last
//! [`IntakeSender`] gone. A batch still filling is taken when its linger,
//! counted from its first event, is over: the crate's one size-or-age
//! rule, [`BatchLimits`].

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::{BatchLimits, WireBatch};

/// What [`Intake::take`] may move.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Take {
    /// Events to stop at (whole batches: the last may go past it).
    pub(crate) budget: usize,
    /// Whether the batch being filled goes too, due or not.
    pub(crate) all: bool,
}

/// What became of an offered event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
    /// In the intake, to be written.
    Queued,
    /// Dropped: the intake holds its capacity of events.
    Full,
    /// Dropped: the tracker is shutting down.
    Closed,
}

/// See the module docs. Shared by the senders and the dispatcher.
#[derive(Debug)]
pub(crate) struct Intake {
    state: Mutex<State>,
    /// Wakes the dispatcher (see the module docs for when).
    wake: Notify,
    /// Most events held.
    capacity: usize,
    /// Live [`IntakeSender`]s: none left means no event can come any more.
    senders: AtomicUsize,
}

#[derive(Debug)]
struct State {
    /// The batch being filled.
    open: WireBatch,
    /// `max_batch` and the linger, the clock started at the open batch's
    /// first event (stopped while it is empty).
    limits: BatchLimits<Instant>,
    /// Full batches, oldest first.
    sealed: VecDeque<WireBatch>,
    /// Events in `open` and `sealed`.
    events: usize,
    closed: bool,
    /// The most bytes a batch took: a new batch starts with room for that
    /// much, so its buffer is allocated once, not grown.
    batch_bytes: usize,
    /// Buffers of written batches, for new ones (a batch's buffer is
    /// hundreds of KiB: allocating one per batch costs page faults).
    spare: Vec<Vec<u8>>,
}

/// Most buffers kept in [`State::spare`].
const SPARE_BUFFERS: usize = 4;

thread_local! {
    /// Where a producer writes its line before taking the lock, so the lock
    /// is held for a copy, not for the writing.
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl Intake {
    /// An empty intake and its first sender: at most `capacity` events,
    /// in batches of at most `max_batch`, one still filling due `linger`
    /// after its first event.
    pub(crate) fn new(
        capacity: usize,
        max_batch: usize,
        linger: Duration,
    ) -> (IntakeSender, Arc<Intake>) {
        let intake = Arc::new(Intake {
            state: Mutex::new(State {
                open: WireBatch::new(),
                limits: BatchLimits::new(max_batch, linger),
                sealed: VecDeque::new(),
                events: 0,
                closed: false,
                batch_bytes: 0,
                spare: Vec::new(),
            }),
            wake: Notify::new(),
            capacity: capacity.max(1),
            senders: AtomicUsize::new(1),
        });
        let sender = IntakeSender {
            intake: Arc::clone(&intake),
        };
        (sender, intake)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned lock still holds
        // whole batches.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends `line` (one wire JSON object) unless full or closed.
    fn offer_line(&self, line: &[u8]) -> Offer {
        let mut state = self.lock();
        if state.closed {
            return Offer::Closed;
        }
        if state.events >= self.capacity {
            return Offer::Full;
        }
        let first = state.events == 0;
        if state.open.is_empty() {
            state.limits.start(Instant::now());
            let room = state.batch_bytes;
            if let Some(buffer) = state.spare.pop() {
                state.open = WireBatch::in_buffer(buffer);
            }
            state.open.reserve(room);
        }
        state.open.push_with(|out| out.extend_from_slice(line));
        state.events += 1;
        let filled = state.limits.is_full(state.open.len());
        if filled {
            let full = std::mem::take(&mut state.open);
            state.batch_bytes = state.batch_bytes.max(full.as_bytes().len());
            state.limits.clear();
            state.sealed.push_back(full);
        }
        drop(state);
        if first || filled {
            self.wake.notify_one();
        }
        Offer::Queued
    }

    /// Moves whole batches into `into`, oldest first, until `budget`
    /// events are moved (the last batch may go past it): the full ones,
    /// then the one being filled when `all` is set or its linger (from its
    /// first event) is over at `now`. Returns the events moved. What is
    /// left waits here, where a full intake drops the newest events, not
    /// the oldest.
    pub(crate) fn take(&self, into: &mut Vec<WireBatch>, take: Take, now: Instant) -> usize {
        let mut state = self.lock();
        let mut taken = 0;
        while taken < take.budget {
            let Some(batch) = state.sealed.pop_front() else {
                break;
            };
            taken += batch.len();
            into.push(batch);
        }
        let due = state.limits.wait_until(now).is_none();
        if taken < take.budget && !state.open.is_empty() && (take.all || due) {
            let open = std::mem::take(&mut state.open);
            state.batch_bytes = state.batch_bytes.max(open.as_bytes().len());
            state.limits.clear();
            taken += open.len();
            into.push(open);
        }
        state.events -= taken;
        taken
    }

    /// When the batch being filled is due (its first event plus the
    /// linger), if one is being filled.
    pub(crate) fn open_due(&self) -> Option<Instant> {
        self.lock().limits.deadline()
    }

    /// Whether any event waits in the intake.
    pub(crate) fn has_events(&self) -> bool {
        self.lock().events > 0
    }

    /// Refuses every later offer; what the intake holds stays to be taken.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Whether every sender is gone (no event can come any more).
    pub(crate) fn senders_gone(&self) -> bool {
        self.senders.load(Ordering::Acquire) == 0
    }

    /// Waits for a wake-up (see the module docs); may return at once for
    /// one that came earlier, so the caller checks what it waits for.
    pub(crate) async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Keeps a written batch's buffer for a later batch.
    pub(crate) fn recycle(&self, batch: WireBatch) {
        let mut state = self.lock();
        if state.spare.len() < SPARE_BUFFERS {
            state.spare.push(batch.into_empty_buffer());
        }
    }
}

/// A producer's handle on the [`Intake`]: what the layer and `track` offer
/// events through. The dispatcher learns from these that no event can come
/// any more (the last one dropped).
#[derive(Debug)]
pub(crate) struct IntakeSender {
    intake: Arc<Intake>,
}

impl IntakeSender {
    /// Offers the line `write` appends (exactly one wire JSON object),
    /// written on this thread before the intake's lock is taken.
    pub(crate) fn offer_with(&self, write: impl FnOnce(&mut Vec<u8>)) -> Offer {
        LINE.with(|line| match line.try_borrow_mut() {
            Ok(mut line) => {
                line.clear();
                write(&mut line);
                self.intake.offer_line(&line)
            }
            // Only if `write` itself offered an event: it gets a buffer of
            // its own.
            Err(_) => {
                let mut line = Vec::new();
                write(&mut line);
                self.intake.offer_line(&line)
            }
        })
    }
}

impl Clone for IntakeSender {
    fn clone(&self) -> Self {
        self.intake.senders.fetch_add(1, Ordering::Relaxed);
        IntakeSender {
            intake: Arc::clone(&self.intake),
        }
    }
}

impl Drop for IntakeSender {
    fn drop(&mut self) {
        if self.intake.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.intake.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(sender: &IntakeSender, n: usize) -> Vec<Offer> {
        (0..n)
            .map(|i| {
                sender.offer_with(|out| out.extend_from_slice(format!("{{\"i\":{i}}}").as_bytes()))
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn batches_are_cut_at_max_batch_and_the_filling_one_waits_its_linger() {
        let (sender, intake) = Intake::new(100, 2, Duration::from_millis(5));
        offer(&sender, 5);
        let due_only = Take {
            budget: usize::MAX,
            all: false,
        };
        let mut taken = Vec::new();
        // Whole batches up to the budget.
        let one = Take {
            budget: 1,
            ..due_only
        };
        assert_eq!(intake.take(&mut taken, one, Instant::now()), 2);
        assert_eq!(intake.take(&mut taken, due_only, Instant::now()), 2);
        let lens: Vec<usize> = taken.iter().map(WireBatch::len).collect();
        assert_eq!(lens, [2, 2]);
        assert_eq!(taken[1].as_bytes(), b"{\"i\":2}\n{\"i\":3}");
        let due = intake.open_due().unwrap();
        let early = due - Duration::from_millis(1);
        assert_eq!(intake.take(&mut taken, due_only, early), 0);
        assert_eq!(intake.take(&mut taken, due_only, due), 1);
        assert!(!intake.has_events() && intake.open_due().is_none());
    }

    #[tokio::test]
    async fn full_and_closed_intakes_refuse_and_say_which() {
        let (sender, intake) = Intake::new(3, 10, Duration::from_secs(1));
        assert_eq!(
            offer(&sender, 4),
            [Offer::Queued, Offer::Queued, Offer::Queued, Offer::Full]
        );
        intake.close();
        let all = Take {
            budget: usize::MAX,
            all: true,
        };
        let mut taken = Vec::new();
        assert_eq!(intake.take(&mut taken, all, Instant::now()), 3);
        // Room again, but closed.
        assert_eq!(offer(&sender, 1), [Offer::Closed]);
    }

    #[tokio::test]
    async fn the_last_sender_gone_wakes_the_dispatcher() {
        let (sender, intake) = Intake::new(3, 10, Duration::from_secs(1));
        let other = sender.clone();
        drop(sender);
        assert!(!intake.senders_gone());
        drop(other);
        assert!(intake.senders_gone());
        // The wake-up is kept for a waiter that comes later.
        tokio::time::timeout(Duration::from_secs(1), intake.woken())
            .await
            .expect("woken");
    }
}
