//! A part's pending events (see `engine::hosts` and `engine::network`): the
//! ones it scheduled itself, and the ones the other parts sent it.
//!
//! Events at the same instant run in a fixed order whatever thread ran the
//! other parts, and whenever their events were handed over: the scenario's
//! events first (file order), then by the part that scheduled them (the
//! groups of hosts in order, then the network), each part's in the order it
//! scheduled them. Keeping the origins in separate queues gives
//! that for free: each queue is in its own origin's scheduling order (a
//! part's events are handed over in the order it scheduled them), and a pop
//! takes the earliest head, by that precedence on a tie.

use std::time::Duration;

use super::parcel::Parcel;
use super::queue::EventQueue;
use crate::nat::Packet;

/// A part of the world, named by its place in the order of parts: the
/// groups of hosts are parts `0..groups` and the network is part `groups`
/// (see `engine::HOST_GROUPS`). At the same instant, events run in this
/// order of the part that scheduled them.
pub(super) type Part = usize;

/// Events one part scheduled for another, in scheduling order, with the
/// earliest time among them (the window planner needs it).
pub(super) struct Outbox<E> {
    pub(super) events: Vec<(Duration, E)>,
    earliest: Option<Duration>,
}

impl<E> Outbox<E> {
    pub(super) fn new() -> Self {
        Outbox { events: Vec::new(), earliest: None }
    }

    pub(super) fn push(&mut self, at: Duration, event: E) {
        self.earliest = Some(self.earliest.map_or(at, |e| e.min(at)));
        self.events.push((at, event));
    }

    /// Schedules one event per arrival time of `packet` (none when the
    /// link lost it), moving the packet into the last one: a duplicate
    /// shares the payload's bytes, refcounted.
    pub(super) fn push_copies(&mut self, arrivals: &[Duration], packet: Packet, event: impl Fn(Parcel) -> E) {
        let Some((&last, rest)) = arrivals.split_last() else { return };
        let parcel = Parcel::from(packet);
        for &at in rest {
            self.push(at, event(parcel.clone()));
        }
        self.push(last, event(parcel));
    }

    pub(super) fn earliest(&self) -> Option<Duration> {
        self.earliest
    }

    /// Hands the events over, in order, into the receiving part's empty
    /// `inbox`, and takes that vector's room for the next ones.
    pub(super) fn hand_over(&mut self, inbox: &mut Vec<(Duration, E)>) {
        debug_assert!(inbox.is_empty(), "an inbox is emptied before the next hand-over");
        self.earliest = None;
        std::mem::swap(&mut self.events, inbox);
    }
}

/// One part's pending events: the scenario's, and those each part that
/// sends here scheduled (its own among them).
pub(super) struct Pending<E> {
    /// The scenario's events (they come first at their instant).
    scenario: EventQueue<E>,
    /// By the part that scheduled them, in part order.
    from: Vec<(Part, EventQueue<E>)>,
}

impl<E> Pending<E> {
    /// An empty queue for events from the parts `origins`, with room for
    /// `events` from each.
    pub(super) fn new(origins: impl IntoIterator<Item = Part>, events: usize) -> Self {
        let mut from: Vec<(Part, EventQueue<E>)> =
            origins.into_iter().map(|part| (part, EventQueue::with_capacity(events))).collect();
        from.sort_by_key(|&(part, _)| part);
        Pending { scenario: EventQueue::with_capacity(0), from }
    }

    /// Schedules one of the scenario's events (before anything else at
    /// the same instant).
    pub(super) fn push_scenario(&mut self, at: Duration, event: E) {
        self.scenario.push(at, event);
    }

    /// Queues an event that part `from` scheduled; each part's events are
    /// queued in the order that part scheduled them.
    pub(super) fn push(&mut self, from: Part, at: Duration, event: E) {
        let queue = self.from.iter_mut().find(|(part, _)| *part == from).map(|(_, queue)| queue);
        queue.expect("events come only from the parts the queue was made for").push(at, event);
    }

    /// The time of the next event.
    pub(super) fn next_at(&self) -> Option<Duration> {
        self.next().map(|(_, at)| Duration::from_nanos(at))
    }

    /// Removes and returns the next event if it is due at or before `end`.
    pub(super) fn pop_until(&mut self, end: Duration) -> Option<(Duration, E)> {
        let (queue, _) = self.next()?;
        match queue {
            None => self.scenario.pop_until(end),
            Some(k) => self.from[k].1.pop_until(end),
        }
    }

    /// The queue with the earliest head (`None`: the scenario's) and that
    /// head's time; on a tie the scenario's, then by part order.
    fn next(&self) -> Option<(Option<usize>, u64)> {
        let mut best = self.scenario.first_at().map(|at| (None, at));
        for (k, (_, queue)) in self.from.iter().enumerate() {
            if let Some(at) = queue.first_at() {
                if best.is_none_or(|(_, best_at)| at < best_at) {
                    best = Some((Some(k), at));
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut Pending<&'static str>) -> Vec<&'static str> {
        std::iter::from_fn(|| q.pop_until(Duration::MAX).map(|(_, e)| e)).collect()
    }

    #[test]
    fn at_the_same_instant_the_scenario_comes_first_then_each_part_in_its_scheduling_order() {
        let ms = Duration::from_millis;
        // Given events from every part, interleaved in time and with ties,
        // queued in an order unlike the parts' order,
        let mut q = Pending::new([2, 0, 1], 0);
        q.push(2, ms(2), "network 2a");
        q.push(1, ms(2), "other 2");
        q.push_scenario(ms(2), "scenario 2");
        q.push(0, ms(1), "first 1");
        q.push(2, ms(2), "network 2b");
        q.push(0, ms(2), "first 2");
        q.push(2, ms(3), "network 3");
        assert_eq!(q.next_at(), Some(ms(1)));
        // when drained, then time decides, then the scenario, then the
        // parts in order, each in its own order.
        assert_eq!(
            drain(&mut q),
            ["first 1", "scenario 2", "first 2", "other 2", "network 2a", "network 2b", "network 3"]
        );
        assert_eq!(q.next_at(), None);
    }

    #[test]
    fn an_outbox_hands_over_in_order_and_knows_its_earliest() {
        let ms = Duration::from_millis;
        let mut out = Outbox::new();
        assert_eq!(out.earliest(), None);
        out.push(ms(5), 'a');
        out.push(ms(2), 'b');
        out.push(ms(9), 'c');
        assert_eq!(out.earliest(), Some(ms(2)));
        let mut inbox = Vec::new();
        out.hand_over(&mut inbox);
        assert_eq!(inbox, vec![(ms(5), 'a'), (ms(2), 'b'), (ms(9), 'c')]);
        assert_eq!(out.earliest(), None);
        assert!(out.events.is_empty());
    }
}
