//! The engine's event queue: events totally ordered by (time, sequence
//! number), so two events at the same instant run in the order they were
//! scheduled.
//!
//! The heap holds only small `(time, seq, slot)` keys; the events themselves
//! (packets are the bulk of them) stay put in a slab whose free slots are
//! reused, so sifting the heap moves 24 bytes per step, not a whole packet,
//! and no allocation happens per event once the slab has grown.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

pub(crate) struct EventQueue<E> {
    heap: BinaryHeap<Reverse<(Duration, u64, u32)>>,
    slots: Vec<Option<E>>,
    free: Vec<u32>,
    seq: u64,
}

impl<E> EventQueue<E> {
    pub(crate) fn new() -> Self {
        EventQueue { heap: BinaryHeap::new(), slots: Vec::new(), free: Vec::new(), seq: 0 }
    }

    /// Schedules `event` at `at`, after every event already scheduled at `at`.
    pub(crate) fn push(&mut self, at: Duration, event: E) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(event);
                slot
            }
            None => {
                let slot = u32::try_from(self.slots.len()).expect("fewer than 2^32 events pending");
                self.slots.push(Some(event));
                slot
            }
        };
        self.heap.push(Reverse((at, self.seq, slot)));
    }

    /// Removes and returns the first event if it is due at or before `end`.
    pub(crate) fn pop_until(&mut self, end: Duration) -> Option<(Duration, E)> {
        let &Reverse((at, _, slot)) = self.heap.peek()?;
        if at > end {
            return None;
        }
        self.heap.pop();
        self.free.push(slot);
        let event = self.slots[slot as usize].take().expect("every queued slot holds an event");
        Some((at, event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_by_time_then_by_scheduling_order() {
        // Given events scheduled out of order, two of them at the same time,
        let mut q = EventQueue::new();
        let ms = Duration::from_millis;
        q.push(ms(5), "late");
        q.push(ms(1), "first at 1");
        q.push(ms(1), "second at 1");
        q.push(ms(3), "middle");
        // when popped up to 4 ms, then only the due ones come, in order,
        let mut out = Vec::new();
        while let Some((at, e)) = q.pop_until(ms(4)) {
            out.push((at, e));
        }
        assert_eq!(out, vec![(ms(1), "first at 1"), (ms(1), "second at 1"), (ms(3), "middle")]);
        // and a slot freed by a pop is reused without disturbing the order.
        q.push(ms(5), "after late");
        assert_eq!(q.slots.len(), 4, "freed slots are reused");
        assert_eq!(q.pop_until(ms(10)), Some((ms(5), "late")));
        assert_eq!(q.pop_until(ms(10)), Some((ms(5), "after late")));
        assert_eq!(q.pop_until(ms(10)), None);
    }
}
