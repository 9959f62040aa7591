//! A session's reliable, ordered message stream.
//!
//! Messages carry sequence numbers; the receiver acknowledges cumulatively
//! with a selective bitmap, delivers in order and drops duplicates; the sender
//! retransmits on the session's *current* path after a retransmission timeout
//! (RFC 6298's estimator, with a lower floor because the peers are
//! applications, not kernels). Because retransmissions follow the path, a
//! message in flight when the path changes is resent on the new one: nothing
//! is lost in a migration.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::timer::Moment;
use crate::wire::frame::StreamMessage;

/// The smallest retransmission timeout.
const MIN_RTO: Duration = Duration::from_millis(200);
/// The largest retransmission timeout.
const MAX_RTO: Duration = Duration::from_secs(3);
/// The timeout before any round trip was measured (RFC 6298 §2.1 says 1 s;
/// a relay round trip is usually far less).
const INITIAL_RTO: Duration = Duration::from_millis(500);
/// Most out-of-order messages buffered by the receiver.
const MAX_REORDER: u64 = 1024;

#[derive(Debug)]
struct Pending<T> {
    message: StreamMessage,
    first_sent: T,
    last_sent: T,
    retries: u32,
}

#[derive(Debug)]
pub(crate) struct Stream<T = Instant> {
    next_seq: u64,
    unacked: BTreeMap<u64, Pending<T>>,
    srtt: Option<Duration>,
    rttvar: Duration,
    recv_next: u64,
    reorder: BTreeMap<u64, StreamMessage>,
}

impl<T: Moment> Stream<T> {
    pub(crate) fn new() -> Self {
        Stream {
            next_seq: 0,
            unacked: BTreeMap::new(),
            srtt: None,
            rttvar: Duration::ZERO,
            recv_next: 0,
            reorder: BTreeMap::new(),
        }
    }

    /// Application messages (data and texts, which share the send window)
    /// not yet acknowledged.
    pub(crate) fn unacked_app(&self) -> usize {
        self.unacked
            .values()
            .filter(|p| matches!(p.message, StreamMessage::App(_) | StreamMessage::Text { .. }))
            .count()
    }

    /// Queues `message`; returns its sequence number. The caller sends it.
    pub(crate) fn push(&mut self, now: T, message: StreamMessage) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.unacked.insert(seq, Pending { message, first_sent: now, last_sent: now, retries: 0 });
        seq
    }

    pub(crate) fn message(&self, seq: u64) -> Option<&StreamMessage> {
        self.unacked.get(&seq).map(|p| &p.message)
    }

    /// Every unacknowledged sequence number, oldest first.
    pub(crate) fn all_unacked(&self) -> Vec<u64> {
        self.unacked.keys().copied().collect()
    }

    /// Marks every unacknowledged message as sent now (after a path change
    /// resent them all).
    pub(crate) fn mark_all_sent(&mut self, now: T) {
        for p in self.unacked.values_mut() {
            p.last_sent = now;
        }
    }

    /// Processes an acknowledgement.
    pub(crate) fn on_ack(&mut self, now: T, next: u64, received_after: u64) {
        let mut acked: Vec<u64> = self.unacked.range(..next).map(|(s, _)| *s).collect();
        for bit in 0..64 {
            if received_after & (1 << bit) != 0 {
                let seq = next.saturating_add(1 + bit);
                if self.unacked.contains_key(&seq) {
                    acked.push(seq);
                }
            }
        }
        for seq in acked {
            if let Some(p) = self.unacked.remove(&seq) {
                // Karn's rule: only never-retransmitted messages give samples.
                if p.retries == 0 {
                    self.sample(now.saturating_duration_since(p.first_sent));
                }
            }
        }
    }

    /// When the oldest unacknowledged message is due again.
    pub(crate) fn retransmit_at(&self) -> Option<T> {
        self.unacked.values().map(|p| p.last_sent + self.backoff(p.retries)).min()
    }

    /// Sequence numbers due for retransmission; marks them sent.
    pub(crate) fn due(&mut self, now: T) -> Vec<u64> {
        let rto = |retries| self.backoff(retries);
        let due: Vec<u64> =
            self.unacked.iter().filter(|(_, p)| p.last_sent + rto(p.retries) <= now).map(|(s, _)| *s).collect();
        for seq in &due {
            let p = self.unacked.get_mut(seq).expect("collected from the map above");
            p.last_sent = now;
            p.retries += 1;
        }
        due
    }

    /// Takes in a message; returns what is now deliverable, in order.
    pub(crate) fn receive(&mut self, seq: u64, message: StreamMessage) -> Vec<StreamMessage> {
        if seq < self.recv_next || seq >= self.recv_next + MAX_REORDER {
            return Vec::new();
        }
        self.reorder.entry(seq).or_insert(message);
        let mut out = Vec::new();
        while let Some(m) = self.reorder.remove(&self.recv_next) {
            out.push(m);
            self.recv_next += 1;
        }
        out
    }

    /// The acknowledgement to send for what was received.
    pub(crate) fn ack(&self) -> (u64, u64) {
        let mut bits = 0u64;
        for seq in self.reorder.keys() {
            let offset = seq - self.recv_next - 1;
            if offset < 64 {
                bits |= 1 << offset;
            }
        }
        (self.recv_next, bits)
    }

    fn rto(&self) -> Duration {
        match self.srtt {
            None => INITIAL_RTO,
            Some(srtt) => (srtt + 4 * self.rttvar).clamp(MIN_RTO, MAX_RTO),
        }
    }

    fn backoff(&self, retries: u32) -> Duration {
        (self.rto() * 2u32.saturating_pow(retries.min(4))).min(MAX_RTO)
    }

    /// RFC 6298 §2.2–2.3.
    fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
