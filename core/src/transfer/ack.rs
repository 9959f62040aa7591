//! The receiver's side: which packet numbers arrived, and when to say so.
//!
//! [`AckTracker`] keeps the received packet numbers as ranges, like a QUIC
//! ACK frame's (RFC 9000 §19.3), bounded to [`MAX_ACK_RANGES`]: the lowest
//! ranges are forgotten first, and a packet number below what is remembered
//! counts as a duplicate. It decides when an acknowledgement is due as RFC
//! 9000 §13.2 does: at once after every second ack-eliciting packet
//! (§13.2.2) or on a packet that arrives out of order (§13.2.1), otherwise
//! at most [`MAX_ACK_DELAY`] after the first unacknowledged one.
//!
//! [`AckRanges`] is the acknowledgement as it travels. It comes off the
//! wire, so it is hostile until [`AckRanges::is_valid`] says otherwise.

use std::time::{Duration, Instant};

use crate::timer::Moment;

use serde::{Deserialize, Serialize};

/// The most ranges an acknowledgement carries (and a tracker remembers).
pub const MAX_ACK_RANGES: usize = 32;

/// The longest a receiver holds an acknowledgement: 25 ms, the default
/// max_ack_delay of RFC 9000 §18.2. Both ends use it, so it is also the
/// peer's max_ack_delay in RTT estimation and the PTO (RFC 9002 §5.3, §6.2.1).
pub const MAX_ACK_DELAY: Duration = Duration::from_millis(25);

/// Ack-eliciting packets after which an acknowledgement is sent at once
/// (RFC 9000 §13.2.2), unless the sender asks for another threshold
/// ([`AckTracker::set_threshold`]).
pub const ACK_ELICITING_THRESHOLD: u32 = 2;

/// The largest threshold a sender may ask for.
pub const MAX_ACK_ELICITING_THRESHOLD: u32 = 32;

/// An acknowledgement: the packet numbers received, and how long the
/// receiver held it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckRanges {
    /// Inclusive `(lo, hi)` ranges of packet numbers, largest first.
    pub ranges: Vec<(u64, u64)>,
    /// Time from the largest packet's arrival to this acknowledgement
    /// (RFC 9000 §19.3 ACK Delay).
    pub delay: Duration,
}

impl AckRanges {
    /// Whether this acknowledgement is well formed: 1 to [`MAX_ACK_RANGES`]
    /// ranges, each with lo ≤ hi, strictly descending, with a gap of at
    /// least one packet number between neighbours (neither overlapping nor
    /// adjacent). One that is not must be dropped.
    pub fn is_valid(&self) -> bool {
        if self.ranges.is_empty() || self.ranges.len() > MAX_ACK_RANGES {
            return false;
        }
        if self.ranges.iter().any(|&(lo, hi)| lo > hi) {
            return false;
        }
        // The lower neighbour must end at least two below the upper one's
        // start: `below.hi + 1 < above.lo`, without overflow.
        self.ranges.windows(2).all(|w| w[1].1.checked_add(1).is_some_and(|next| next < w[0].0))
    }

    /// The largest packet number acknowledged.
    pub fn largest(&self) -> Option<u64> {
        self.ranges.first().map(|&(_, hi)| hi)
    }

    /// Whether `pn` is acknowledged.
    pub fn contains(&self, pn: u64) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= pn && pn <= hi)
    }
}

/// The receiver's record of packet numbers, and its acknowledgement timer.
///
/// Every packet it is told of is taken as ack-eliciting: acknowledgements
/// themselves are not numbered packets of the transfer.
#[derive(Clone, Debug)]
pub struct AckTracker<T = Instant> {
    /// Received packet numbers, inclusive ranges, largest first, at most
    /// [`MAX_ACK_RANGES`].
    ranges: Vec<(u64, u64)>,
    /// Packet numbers below this were forgotten with their ranges: they
    /// count as duplicates.
    floor: u64,
    /// When the largest packet number arrived.
    largest_at: Option<T>,
    /// Packets received since the last acknowledgement was taken.
    unacked: u32,
    /// When the first of them arrived.
    first_unacked_at: Option<T>,
    /// When an acknowledgement became due at once (every second packet, or
    /// one out of order).
    immediate_at: Option<T>,
    /// Packets after which an acknowledgement is due at once (0 until the
    /// sender asks: [`ACK_ELICITING_THRESHOLD`]).
    threshold: u32,
}

impl<T: Moment> Default for AckTracker<T> {
    fn default() -> Self {
        AckTracker {
            ranges: Vec::new(),
            floor: 0,
            largest_at: None,
            unacked: 0,
            first_unacked_at: None,
            immediate_at: None,
            threshold: 0,
        }
    }
}

impl<T: Moment> AckTracker<T> {
    /// A tracker that has received nothing.
    pub fn new() -> Self {
        AckTracker::default()
    }

    /// The sender asks for an acknowledgement every `packets` packets (as
    /// draft-ietf-quic-ack-frequency's ACK_FREQUENCY frame does), clamped
    /// to `1..=`[`MAX_ACK_ELICITING_THRESHOLD`]. A bulk sender with a large
    /// window asks for fewer acknowledgements: each costs the receiver a
    /// sealed datagram and the sender an opened one.
    pub fn set_threshold(&mut self, packets: u32) {
        self.threshold = packets.clamp(1, MAX_ACK_ELICITING_THRESHOLD);
    }

    /// The threshold in use.
    pub fn threshold(&self) -> u32 {
        if self.threshold == 0 {
            ACK_ELICITING_THRESHOLD
        } else {
            self.threshold
        }
    }

    /// Packet `pn` arrived at `now`. Returns `false` for a duplicate, or for
    /// a packet number too old to know (below the ranges forgotten): the
    /// caller must drop its contents.
    pub fn on_received(&mut self, now: T, pn: u64) -> bool {
        if pn < self.floor {
            return false;
        }
        // The first range (largest first) starting at or below pn.
        let at = self.ranges.iter().position(|&(lo, _)| lo <= pn);
        if at.is_some_and(|i| pn <= self.ranges[i].1) {
            return false;
        }
        let largest = self.ranges.first().map(|&(_, hi)| hi);
        // pn falls between ranges[at - 1] (above) and ranges[at] (below).
        let at = at.unwrap_or(self.ranges.len());
        let joins_below = at < self.ranges.len() && self.ranges[at].1 + 1 == pn;
        let joins_above = at > 0 && pn.checked_add(1) == Some(self.ranges[at - 1].0);
        match (joins_below, joins_above) {
            (true, true) => {
                self.ranges[at - 1].0 = self.ranges[at].0;
                self.ranges.remove(at);
            }
            (true, false) => self.ranges[at].1 = pn,
            (false, true) => self.ranges[at - 1].0 = pn,
            (false, false) => self.ranges.insert(at, (pn, pn)),
        }
        if self.ranges.len() > MAX_ACK_RANGES {
            // Forget the oldest: its packets are long declared lost or
            // acknowledged by the sender.
            if let Some((_, hi)) = self.ranges.pop() {
                self.floor = hi.saturating_add(1);
            }
        }

        // RFC 9000 §13.2.1: a packet below the largest (a reordering or a
        // gap being filled), or one with missing packets just below it, is
        // acknowledged at once so that the sender learns of the gap.
        let out_of_order = largest.is_some_and(|l| pn < l || pn > l.saturating_add(1));
        if largest.is_none_or(|l| pn > l) {
            self.largest_at = Some(now);
        }
        self.unacked += 1;
        self.first_unacked_at.get_or_insert(now);
        if out_of_order || self.unacked >= self.threshold() {
            self.immediate_at.get_or_insert(now);
        }
        true
    }

    /// When an acknowledgement is due: `None` when nothing awaits one;
    /// otherwise an instant at which to call [`AckTracker::take_ack`] (one
    /// at or before the latest arrival means now).
    pub fn ack_due(&self) -> Option<T> {
        let first = self.first_unacked_at?;
        Some(self.immediate_at.unwrap_or(first + MAX_ACK_DELAY))
    }

    /// Builds the acknowledgement to send at `now` (`None` if nothing was
    /// ever received) and restarts the timer.
    pub fn take_ack(&mut self, now: T) -> Option<AckRanges> {
        let largest_at = self.largest_at?;
        self.unacked = 0;
        self.first_unacked_at = None;
        self.immediate_at = None;
        Some(AckRanges { ranges: self.ranges.clone(), delay: now.saturating_duration_since(largest_at) })
    }

    /// The received ranges, largest first.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    /// The largest packet number received.
    pub fn largest(&self) -> Option<u64> {
        self.ranges.first().map(|&(_, hi)| hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ranges_merge_as_gaps_fill() {
        // Given packets 0, 1, 2, 5 and 10,
        let t0 = Duration::ZERO;
        let mut acks = AckTracker::<Duration>::new();
        for pn in [0, 1, 2, 5, 10] {
            assert!(acks.on_received(t0, pn));
        }
        assert_eq!(acks.ranges(), &[(10, 10), (5, 5), (0, 2)]);
        // when 4 and then 3 arrive, then the low ranges join;
        assert!(acks.on_received(t0, 4));
        assert_eq!(acks.ranges(), &[(10, 10), (4, 5), (0, 2)]);
        assert!(acks.on_received(t0, 3));
        assert_eq!(acks.ranges(), &[(10, 10), (0, 5)]);
        // and 6 to 9 in any order leave one range.
        for pn in [8, 6, 9, 7] {
            assert!(acks.on_received(t0, pn));
        }
        assert_eq!(acks.ranges(), &[(0, 10)]);
        assert_eq!(acks.largest(), Some(10));
    }

    #[test]
    fn duplicates_are_detected() {
        // Given packets 3 to 5 and 9,
        let t0 = Duration::ZERO;
        let mut acks = AckTracker::<Duration>::new();
        for pn in [3, 4, 5, 9] {
            acks.on_received(t0, pn);
        }
        // then each again is a duplicate, and the ranges are unchanged;
        for pn in [3, 4, 5, 9] {
            assert!(!acks.on_received(t0, pn), "{pn}");
        }
        assert_eq!(acks.ranges(), &[(9, 9), (3, 5)]);
        // and packets never seen, even below the lowest range, are new.
        assert!(acks.on_received(t0, 1));
        assert!(acks.on_received(t0, u64::MAX));
    }

    #[test]
    fn at_most_32_ranges_are_kept_and_older_packets_count_as_duplicates() {
        // Given every even packet number from 0 to 80 (41 ranges),
        let t0 = Duration::ZERO;
        let mut acks = AckTracker::<Duration>::new();
        for pn in (0..=80).step_by(2) {
            assert!(acks.on_received(t0, pn));
        }
        // then the 32 largest are kept, 18 to 80;
        assert_eq!(acks.ranges().len(), MAX_ACK_RANGES);
        assert_eq!(acks.ranges().first(), Some(&(80, 80)));
        assert_eq!(acks.ranges().last(), Some(&(18, 18)));
        // the forgotten ones, and anything below them, are duplicates;
        assert!(!acks.on_received(t0, 16));
        assert!(!acks.on_received(t0, 1));
        // and a gap above them is still new, and fills in.
        assert!(acks.on_received(t0, 19));
        assert_eq!(acks.ranges().last(), Some(&(18, 20)));
        assert!(acks.on_received(t0, 79));
        assert_eq!(acks.ranges().first(), Some(&(78, 80)));
        assert_eq!(acks.ranges().len(), MAX_ACK_RANGES - 2);
        let ack = acks.take_ack(t0).unwrap();
        assert!(ack.is_valid());
    }

    #[test]
    fn in_order_packets_are_acknowledged_every_second_one_or_after_the_delay() {
        // Given a tracker, when packet 0 arrives at t0,
        let t0 = Duration::ZERO;
        let mut acks = AckTracker::<Duration>::new();
        assert_eq!(acks.ack_due(), None);
        acks.on_received(t0, 0);
        // then an acknowledgement is due 25 ms later;
        assert_eq!(acks.ack_due(), Some(t0 + MAX_ACK_DELAY));
        // when packet 1 arrives at t0 + 5 ms, it is due at once;
        acks.on_received(t0 + 5 * MS, 1);
        assert_eq!(acks.ack_due(), Some(t0 + 5 * MS));
        // when it is taken at t0 + 7 ms, it names both packets and 2 ms of
        // delay, and nothing is due any more;
        let ack = acks.take_ack(t0 + 7 * MS).unwrap();
        assert_eq!(ack, AckRanges { ranges: vec![(0, 1)], delay: 2 * MS });
        assert_eq!(acks.ack_due(), None);
        // and the next packet starts a new 25 ms delay.
        acks.on_received(t0 + 10 * MS, 2);
        assert_eq!(acks.ack_due(), Some(t0 + 10 * MS + MAX_ACK_DELAY));
    }

    #[test]
    fn out_of_order_packets_are_acknowledged_at_once() {
        // Given packets 0 and 1 acknowledged,
        let t0 = Duration::ZERO;
        let mut acks = AckTracker::<Duration>::new();
        acks.on_received(t0, 0);
        acks.on_received(t0, 1);
        acks.take_ack(t0);
        // when packet 3 arrives with 2 missing below it, then an
        // acknowledgement is due at once;
        acks.on_received(t0 + 10 * MS, 3);
        assert_eq!(acks.ack_due(), Some(t0 + 10 * MS));
        acks.take_ack(t0 + 10 * MS);
        // when 2 arrives late (below the largest), also at once;
        acks.on_received(t0 + 20 * MS, 2);
        assert_eq!(acks.ack_due(), Some(t0 + 20 * MS));
        // and its delay counts from when the largest, 3, arrived.
        assert_eq!(acks.take_ack(t0 + 21 * MS).unwrap().delay, 11 * MS);
        // A duplicate makes nothing due.
        acks.on_received(t0 + 30 * MS, 3);
        assert_eq!(acks.ack_due(), None);
    }

    #[test]
    fn nothing_received_means_no_ack() {
        // Given a fresh tracker, then there is no acknowledgement to take.
        let mut acks = AckTracker::<Duration>::new();
        assert_eq!(acks.take_ack(Duration::ZERO), None);
    }

    #[test]
    fn only_well_formed_ranges_are_valid() {
        let ack = |ranges: Vec<(u64, u64)>| AckRanges { ranges, delay: Duration::ZERO };
        // Given well-formed ranges, then valid;
        assert!(ack(vec![(10, 20), (0, 8)]).is_valid());
        assert!(ack(vec![(u64::MAX, u64::MAX), (0, u64::MAX - 2)]).is_valid());
        let most: Vec<_> = (0..MAX_ACK_RANGES as u64).rev().map(|i| (3 * i, 3 * i + 1)).collect();
        assert!(ack(most.clone()).is_valid());
        // and empty, too many, inverted, ascending, overlapping or adjacent
        // ranges are not.
        assert!(!ack(vec![]).is_valid());
        let mut too_many = vec![(1000, 1000)];
        too_many.extend(most);
        assert!(!ack(too_many).is_valid());
        assert!(!ack(vec![(5, 4)]).is_valid());
        assert!(!ack(vec![(0, 2), (10, 20)]).is_valid());
        assert!(!ack(vec![(10, 20), (5, 10)]).is_valid());
        assert!(!ack(vec![(10, 20), (5, 9)]).is_valid());
        assert!(!ack(vec![(0, 0), (u64::MAX, u64::MAX)]).is_valid());
    }

    #[test]
    fn ack_ranges_survive_the_wire() {
        // Given an acknowledgement, when it is encoded and decoded, then it
        // is unchanged.
        let ack = AckRanges { ranges: vec![(10, 20), (0, 8)], delay: Duration::from_micros(1500) };
        let bytes = postcard::to_allocvec(&ack).unwrap();
        assert_eq!(postcard::from_bytes::<AckRanges>(&bytes).unwrap(), ack);
        assert!(ack.contains(15) && ack.contains(0) && !ack.contains(9) && !ack.contains(21));
        assert_eq!(ack.largest(), Some(20));
    }
}
