//! The engine's event queue: events totally ordered by (time, sequence
//! number), so two events at the same instant run in the order they were
//! scheduled.
//!
//! The heap holds only 16-byte keys; the events themselves (packets are the
//! bulk of them) stay put in a slab whose free slots are reused, so no
//! allocation happens per event once the slab has grown. A key packs the
//! time in nanoseconds, the sequence number and the slot into one `u128`
//! whose integer order is the events' order, so a comparison is one
//! instruction pair. The heap is 4-ary: a thousand-host world keeps a few
//! thousand events pending, and a 4-ary heap is half as deep as a binary
//! one, with a node's four children on at most two cache lines.

use std::time::Duration;

/// The default number of sequence numbers handed out before the pending
/// keys are renumbered (see [`EventQueue::renumber`]).
const SEQ_LIMIT: u64 = 1 << 32;

pub(crate) struct EventQueue<E> {
    /// A 4-ary min-heap: the children of `i` are `4i + 1 ..= 4i + 4`.
    heap: Vec<u128>,
    slots: Vec<Slot<E>>,
    free: Vec<u32>,
    seq: u64,
    seq_limit: u64,
}

impl<E> EventQueue<E> {
    /// An empty queue.
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty queue with room for `events` pending events before any of
    /// its arrays grows.
    ///
    /// Growing them in the middle of a run is dearer than it looks: each
    /// step copies the array, and glibc's allocator answers a request of
    /// 1 KB or more by first merging every small chunk freed since the last
    /// such request (`malloc_consolidate`); a run frees a datagram's payload
    /// per packet event. In a thousand-host world that walk over cold chunks
    /// was about 3 % of the run.
    pub(crate) fn with_capacity(events: usize) -> Self {
        Self::with_seq_limit(SEQ_LIMIT, events)
    }

    fn with_seq_limit(seq_limit: u64, events: usize) -> Self {
        EventQueue {
            heap: Vec::with_capacity(events),
            slots: Vec::with_capacity(events),
            free: Vec::with_capacity(events),
            seq: 0,
            seq_limit,
        }
    }

    /// Schedules `event` at `at`, after every event already scheduled at `at`.
    ///
    /// Times are kept in whole nanoseconds up to `u64::MAX` (584 years);
    /// later ones are all treated as that last instant, in scheduling order.
    pub(crate) fn push(&mut self, at: Duration, event: E) {
        if self.seq >= self.seq_limit {
            self.renumber();
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Slot(Some(event));
                slot
            }
            None => {
                let slot = u32::try_from(self.slots.len()).expect("fewer than 2^32 events pending");
                self.slots.push(Slot(Some(event)));
                slot
            }
        };
        let key = (u128::from(nanos(at)) << 64) | (u128::from(self.seq) << 32) | u128::from(slot);
        self.seq += 1;
        self.sift_up(key);
    }

    /// The time of the first event, in nanoseconds.
    pub(crate) fn first_at(&self) -> Option<u64> {
        self.heap.first().map(|&key| (key >> 64) as u64)
    }

    /// Removes and returns the first event if it is due at or before `end`.
    pub(crate) fn pop_until(&mut self, end: Duration) -> Option<(Duration, E)> {
        let &first = self.heap.first()?;
        let at = (first >> 64) as u64;
        if at > nanos(end) {
            return None;
        }
        let last = self.heap.pop().expect("the heap has a first key");
        if !self.heap.is_empty() {
            self.sift_down(last);
        }
        let slot = first as u32;
        self.free.push(slot);
        let event = self.slots[slot as usize].0.take().expect("every queued slot holds an event");
        Some((Duration::from_nanos(at), event))
    }

    fn sift_up(&mut self, key: u128) {
        let mut i = self.heap.len();
        self.heap.push(key);
        while i > 0 {
            let parent = (i - 1) / 4;
            if self.heap[parent] <= key {
                break;
            }
            self.heap[i] = self.heap[parent];
            i = parent;
        }
        self.heap[i] = key;
    }

    /// Puts `key` in the root's place and lets it sink to where it belongs.
    /// Keys are unique (their sequence numbers are), so there are no ties.
    fn sift_down(&mut self, key: u128) {
        let heap = &mut self.heap[..];
        let len = heap.len();
        let mut i = 0;
        loop {
            let first = 4 * i + 1;
            let Some(children) = heap.get(first..first + 4) else {
                // Fewer than four children: they are leaves, so this is the
                // last step down.
                let least = (first..len).min_by_key(|&child| heap[child]);
                if let Some(least) = least.filter(|&least| heap[least] < key) {
                    heap[i] = heap[least];
                    i = least;
                }
                break;
            };
            // A tournament between the four children, without data-dependent
            // loops.
            let (a, a_at) = if children[1] < children[0] { (children[1], 1) } else { (children[0], 0) };
            let (b, b_at) = if children[3] < children[2] { (children[3], 3) } else { (children[2], 2) };
            let (least, least_at) = if b < a { (b, b_at) } else { (a, a_at) };
            if least >= key {
                break;
            }
            heap[i] = least;
            i = first + least_at;
        }
        heap[i] = key;
    }

    /// Gives the pending keys the sequence numbers `0..n` in their current
    /// order, so the 32 bits a key has for its sequence number never run
    /// out. A sorted array is a valid heap, and the order of every pair of
    /// events is unchanged.
    fn renumber(&mut self) {
        self.heap.sort_unstable();
        for (seq, key) in self.heap.iter_mut().enumerate() {
            let time_and_slot = *key & !(u128::from(u32::MAX) << 32);
            *key = time_and_slot | ((seq as u128) << 32);
        }
        self.seq = self.heap.len() as u64;
    }
}

/// One event's place in the slab, aligned to a cache line: an event is read
/// long after it was written, when its lines are cold, and a packet event
/// (64 bytes, see `engine::parcel`) aligned so is one line, never two.
#[repr(align(64))]
struct Slot<E>(Option<E>);

/// `at` in whole nanoseconds, saturating at `u64::MAX`.
fn nanos(at: Duration) -> u64 {
    u64::try_from(at.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    #[test]
    fn times_past_u64_nanoseconds_keep_scheduling_order() {
        let mut q = EventQueue::new();
        q.push(Duration::MAX, "first");
        q.push(Duration::from_nanos(u64::MAX), "second");
        q.push(Duration::from_secs(1), "soon");
        assert_eq!(q.pop_until(Duration::from_secs(2)), Some((Duration::from_secs(1), "soon")));
        assert_eq!(q.pop_until(Duration::from_secs(2)), None);
        assert_eq!(q.pop_until(Duration::MAX).map(|(_, e)| e), Some("first"));
        assert_eq!(q.pop_until(Duration::MAX).map(|(_, e)| e), Some("second"));
    }

    /// The reference: a sorted list of (time, scheduling index).
    fn reference_pop(pending: &mut Vec<(u64, u64)>, end: u64) -> Option<(u64, u64)> {
        let first = *pending.iter().min()?;
        if first.0 > end {
            return None;
        }
        pending.retain(|&e| e != first);
        Some(first)
    }

    proptest! {
        /// Given any interleaving of pushes and pops, with a sequence limit
        /// small enough that renumbering happens many times and any room
        /// made up front, the queue pops
        /// exactly what a sorted list of (time, scheduling order) would.
        #[test]
        fn the_heap_pops_in_time_then_scheduling_order(
            ops in prop::collection::vec((any::<bool>(), 0u64..20, 0u64..25), 1..400),
            seq_limit in 1u64..40,
            capacity in 0usize..50,
        ) {
            let mut q = EventQueue::with_seq_limit(seq_limit, capacity);
            let mut reference = Vec::new();
            for (index, (push, time, end)) in ops.into_iter().enumerate() {
                if push {
                    q.push(Duration::from_nanos(time), index as u64);
                    reference.push((time, index as u64));
                } else {
                    let got = q.pop_until(Duration::from_nanos(end));
                    let want = reference_pop(&mut reference, end);
                    prop_assert_eq!(got.map(|(at, e)| (at.as_nanos() as u64, e)), want);
                }
            }
            while let Some(want) = reference_pop(&mut reference, u64::MAX) {
                let got = q.pop_until(Duration::MAX).map(|(at, e)| (at.as_nanos() as u64, e));
                prop_assert_eq!(got, Some(want));
            }
            prop_assert!(q.pop_until(Duration::MAX).is_none());
        }
    }
}
