//! The sender's ledger: loss detection and the probe timeout of RFC 9002 §6,
//! driving a [`Controller`] (§7) and a [`Pacer`] (§7.7).
//!
//! [`Recovery`] numbers packets, remembers the ones in flight with the
//! caller's description of each (`M`, say a file chunk), and turns
//! acknowledgements and timeouts into what was delivered and what was lost.
//! Lost packets are never resent under their number: the caller sends their
//! contents again in new packets, so an acknowledgement is never ambiguous
//! (RFC 9002 §2, §4.2).
//!
//! Departures from RFC 9002, all simplifications for one packet number
//! space whose packets are all ack-eliciting:
//! - persistent congestion (§7.6) is judged on the packets declared lost by
//!   one acknowledgement, with a gap in packet numbers ending a run (a
//!   packet in between was acknowledged, or declared lost before);
//! - the peer's max_ack_delay is [`MAX_ACK_DELAY`], the constant both ends
//!   use, rather than a transport parameter;
//! - the thresholds adapt (§6.1.1 and §6.1.2 allow it): a packet declared
//!   lost by the packet threshold and then acknowledged raises it to the
//!   reordering seen; one declared lost by the time threshold raises that
//!   by an eighth of an RTT, up to twice the RTT;
//! - an acknowledgement whose delay is far beyond the peer's max_ack_delay
//!   gives no RTT sample (§5.1 takes every newly acknowledged largest);
//! - the backed-off PTO is at most [`MAX_PTO`] (or the PTO itself when that
//!   is longer): a file transfer paused by a network cut probes at least
//!   that often, so it resumes within about [`MAX_PTO`] of the cut healing
//!   rather than up to a doubled PTO later (QUIC leaves this to its idle
//!   timeout; a session here has its own).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::timer::Moment;

use super::ack::{AckRanges, MAX_ACK_DELAY};
use super::cc::Controller;
use super::pacer::Pacer;
use super::rtt::{RttEstimator, GRANULARITY, INITIAL_RTT};

/// A packet is lost once a packet this many numbers later is acknowledged
/// (RFC 9002 §6.1.1 kPacketThreshold).
pub const PACKET_THRESHOLD: u64 = 3;

/// A packet is lost once it was sent this many eighths of an RTT before a
/// later one was acknowledged (RFC 9002 §6.1.2 kTimeThreshold = 9/8).
pub const TIME_THRESHOLD_EIGHTHS: u32 = 9;

/// Lost packets spanning this many PTOs, with nothing acknowledged in
/// between, are persistent congestion (RFC 9002 §7.6.1).
pub const PERSISTENT_CONGESTION_THRESHOLD: u32 = 3;

/// Packets a sender may send, regardless of its window, when the probe
/// timeout fires (RFC 9002 §6.2.4).
pub const PTO_PROBES: u8 = 2;

/// The PTO doubles at most this many times in a row.
const MAX_PTO_BACKOFF_EXPONENT: u32 = 16;

/// The largest packet threshold reordering can raise (RFC 9002 §6.1.1
/// warns that a large one delays loss detection; the time threshold still
/// applies).
pub const MAX_PACKET_THRESHOLD: u64 = 32;

/// The largest time threshold reordering can raise, in eighths of an RTT.
pub const MAX_TIME_THRESHOLD_EIGHTHS: u32 = 16;

/// Packets remembered as lost, to notice they were reordered instead.
const MAX_DECLARED_LOST: usize = 256;

/// The longest a backed-off probe timeout waits (see the module docs).
pub const MAX_PTO: Duration = Duration::from_secs(2);

/// Acknowledgements delayed longer than this give no RTT sample (see
/// [`Recovery::on_ack`]): the peer promises [`MAX_ACK_DELAY`], and a few
/// times that leaves room for a busy receiver.
const MAX_SAMPLED_ACK_DELAY: Duration = MAX_ACK_DELAY.saturating_mul(4);

/// What an acknowledgement settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckOutcome<M> {
    /// The packets newly acknowledged, in packet number order.
    pub acked: Vec<M>,
    /// The packets declared lost, in packet number order: their contents
    /// must be sent again in new packets (if still wanted).
    pub lost: Vec<M>,
}

/// What the loss-detection timer found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeoutOutcome<M> {
    /// Packets declared lost by the time threshold, in packet number order.
    pub lost: Vec<M>,
    /// How many probe packets to send now, regardless of the window: 0, or
    /// [`PTO_PROBES`] when the probe timeout fired. New data, or the
    /// contents of the oldest packet in flight again; each is reported to
    /// [`Recovery::on_sent`] as usual.
    pub probes: u8,
}

/// Counters since the ledger was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Packets sent.
    pub sent_packets: u64,
    /// Bytes sent.
    pub sent_bytes: u64,
    /// Packets newly acknowledged.
    pub acked_packets: u64,
    /// Packets declared lost.
    pub lost_packets: u64,
    /// Batches of losses signalled to the controller (it reduces its window
    /// at most once per round trip, so several may count as one reduction).
    pub congestion_events: u64,
    /// Congestion events that were persistent congestion.
    pub persistent_congestions: u64,
    /// Probe timeouts that fired.
    pub pto_count_total: u64,
    /// Calls to [`Recovery::reset_path`].
    pub path_resets: u64,
    /// Acknowledgements ignored whole: malformed, or naming a packet number
    /// not yet handed out.
    pub ignored_acks: u64,
    /// Packets declared lost by the packet threshold and acknowledged
    /// after all: the path reorders (see [`Recovery::packet_threshold`]).
    pub spurious_losses: u64,
}

/// The sender's side of a bulk flow: packet numbers, packets in flight,
/// RTT, congestion window and pacing.
///
/// The call protocol, all times given by the caller:
/// 1. to send, take [`Recovery::next_pn`], check [`Recovery::can_send`] and
///    [`Recovery::send_time`], then report the packet to
///    [`Recovery::on_sent`];
/// 2. give every valid acknowledgement to [`Recovery::on_ack`];
/// 3. arm a timer at [`Recovery::timeout`] and call
///    [`Recovery::on_timeout`] when it fires;
/// 4. say when the sender runs out of data with
///    [`Recovery::set_app_limited`];
/// 5. on a path change, call [`Recovery::reset_path`] and send again what
///    it returns.
#[derive(Clone, Debug)]
pub struct Recovery<M, T = Instant> {
    rtt: RttEstimator,
    controller: Box<dyn Controller<T>>,
    pacer: Pacer<T>,
    max_datagram: u64,
    /// Packets in flight, by packet number.
    sent: BTreeMap<u64, SentPacket<M, T>>,
    next_pn: u64,
    bytes_in_flight: u64,
    largest_acked: Option<u64>,
    /// How far below the largest acknowledged a packet is lost: starts at
    /// [`PACKET_THRESHOLD`] and grows when the path is seen to reorder.
    packet_threshold: u64,
    /// The time threshold in eighths of an RTT: starts at
    /// [`TIME_THRESHOLD_EIGHTHS`] and grows when the path is seen to delay
    /// some packets behind later ones by more.
    time_threshold_eighths: u32,
    /// Packets declared lost lately, with the largest acknowledged when
    /// they were (`None`: by the time threshold): an acknowledgement of one
    /// of them shows how far the path reorders.
    declared_lost: BTreeMap<u64, Option<u64>>,
    /// When the earliest packet awaiting the time threshold becomes lost.
    loss_time: Option<T>,
    /// When the last packet was sent (all are ack-eliciting).
    last_sent: Option<T>,
    /// Probe timeouts in a row without an acknowledgement (the backoff).
    pto_count: u32,
    /// Probes still allowed past the window.
    probes: u8,
    app_limited: bool,
    /// Packets from this number on were sent after the path's first RTT
    /// sample: persistent congestion starts no earlier (RFC 9002 §7.6.2).
    first_pn_after_sample: Option<u64>,
    stats: RecoveryStats,
}

#[derive(Clone, Debug)]
struct SentPacket<M, T> {
    time: T,
    bytes: u64,
    meta: M,
}

impl<M, T: Moment> Recovery<M, T> {
    /// An empty ledger using `controller`, pacing datagrams of
    /// `max_datagram` bytes, with the RTT at [`INITIAL_RTT`].
    pub fn new(controller: Box<dyn Controller<T>>, max_datagram: u64) -> Self {
        Recovery {
            rtt: RttEstimator::new(INITIAL_RTT),
            controller,
            pacer: Pacer::new(max_datagram),
            max_datagram,
            sent: BTreeMap::new(),
            next_pn: 0,
            bytes_in_flight: 0,
            largest_acked: None,
            packet_threshold: PACKET_THRESHOLD,
            time_threshold_eighths: TIME_THRESHOLD_EIGHTHS,
            declared_lost: BTreeMap::new(),
            loss_time: None,
            last_sent: None,
            pto_count: 0,
            probes: 0,
            app_limited: false,
            first_pn_after_sample: None,
            stats: RecoveryStats::default(),
        }
    }

    /// Hands out the next packet number: strictly increasing, never reused,
    /// not even across [`Recovery::reset_path`]. A number handed out but
    /// never sent is simply a gap.
    pub fn next_pn(&mut self) -> u64 {
        let pn = self.next_pn;
        self.next_pn += 1;
        pn
    }

    /// Packet `pn` (from [`Recovery::next_pn`]) of `bytes` bytes, carrying
    /// `meta`, left at `now`. Uses up one probe if a PTO allowed some.
    ///
    /// A caller bug (a number not handed out, or one already sent) panics
    /// in debug builds; in release builds a repeated number is ignored.
    pub fn on_sent(&mut self, now: T, pn: u64, bytes: u64, meta: M) {
        debug_assert!(pn < self.next_pn, "packet number {pn} was not handed out");
        debug_assert!(!self.sent.contains_key(&pn), "packet number {pn} sent twice");
        if self.sent.contains_key(&pn) {
            return;
        }
        self.next_pn = self.next_pn.max(pn + 1);
        self.sent.insert(pn, SentPacket { time: now, bytes, meta });
        self.bytes_in_flight += bytes;
        self.last_sent = Some(now);
        self.pacer.on_sent(bytes);
        self.probes = self.probes.saturating_sub(1);
        self.stats.sent_packets += 1;
        self.stats.sent_bytes += bytes;
    }

    /// Bytes sent and neither acknowledged nor declared lost.
    pub fn bytes_in_flight(&self) -> u64 {
        self.bytes_in_flight
    }

    /// The congestion window, in bytes.
    pub fn window(&self) -> u64 {
        self.controller.window()
    }

    /// Whether a packet of `bytes` fits in the window now, or a probe is
    /// owed (a PTO fired: RFC 9002 §6.2.4 lets probes exceed the window).
    pub fn can_send(&self, bytes: u64) -> bool {
        self.probes > 0 || self.bytes_in_flight.saturating_add(bytes) <= self.window()
    }

    /// When a packet of `bytes` may leave (RFC 9002 §7.7): `None` means
    /// now, `Some(t)` not before `t`. Probes are not paced.
    pub fn send_time(&mut self, now: T, bytes: u64) -> Option<T> {
        if self.probes > 0 {
            return None;
        }
        let window = self.controller.window();
        self.pacer.delay(now, bytes, self.rtt.smoothed(), window)
    }

    /// Says whether the sender is application-limited (RFC 9002 §7.8): it
    /// had room in its window (and pacing allowed it) but nothing to send.
    /// While it is, acknowledgements do not grow the window, which would
    /// otherwise grow on a flow that never tested it. Set it when the
    /// sender runs dry with room left; clear it when data waits again.
    pub fn set_app_limited(&mut self, app_limited: bool) {
        self.app_limited = app_limited;
    }

    /// Whether the sender said it is application-limited.
    pub fn app_limited(&self) -> bool {
        self.app_limited
    }

    /// Takes an acknowledgement received at `now` (RFC 9002 §6.1, Appendix
    /// A.7). Packet numbers not in flight (already settled, forgotten by
    /// [`Recovery::reset_path`], or never sent) are ignored; an
    /// acknowledgement that is malformed or names a number not yet handed
    /// out is hostile and ignored whole.
    pub fn on_ack(&mut self, now: T, ack: &AckRanges) -> AckOutcome<M> {
        let mut outcome = AckOutcome { acked: Vec::new(), lost: Vec::new() };
        let Some(largest) = ack.largest().filter(|&l| ack.is_valid() && l < self.next_pn) else {
            self.stats.ignored_acks += 1;
            return outcome;
        };

        // Lowest range first, so the acknowledged come out in order.
        let mut acked = Vec::new();
        for &(lo, hi) in ack.ranges.iter().rev() {
            let pns: Vec<u64> = self.sent.range(lo..=hi).map(|(&pn, _)| pn).collect();
            for pn in pns {
                if let Some(packet) = self.sent.remove(&pn) {
                    self.bytes_in_flight -= packet.bytes;
                    acked.push((pn, packet));
                }
            }
        }
        self.learn_reordering(ack);
        let Some(&(largest_newly, ref newest)) = acked.last() else { return outcome };
        self.largest_acked = Some(self.largest_acked.map_or(largest_newly, |l| l.max(largest_newly)));

        // §5.1: a sample only when the largest acknowledged is newly so;
        // otherwise the ack's delay does not describe it.
        // An acknowledgement that says it waited longer than the peer
        // promised (it repeats what arrived before a network cut, say)
        // measures the wait, not the path: a 30 s sample would stretch the
        // probe timeout past the cut's end.
        if largest_newly == largest && ack.delay <= MAX_SAMPLED_ACK_DELAY {
            let first = !self.rtt.has_sample();
            self.rtt.update(now.saturating_duration_since(newest.time), ack.delay);
            if first {
                self.first_pn_after_sample = Some(self.next_pn);
            }
        }
        // §6.2.1: an acknowledgement proves the path works; the backoff ends.
        self.pto_count = 0;

        // Appendix A.7: losses first, so a congestion event starts recovery
        // before the acknowledged packets could grow the window.
        let (lost, persistent) = self.detect_lost(now, true);
        self.signal_losses(now, &lost, persistent);
        for (_, packet) in &acked {
            self.controller.on_ack(now, packet.time, packet.bytes, self.app_limited, &self.rtt);
        }
        self.stats.acked_packets += acked.len() as u64;
        outcome.acked = acked.into_iter().map(|(_, p)| p.meta).collect();
        outcome.lost = lost.into_iter().map(|p| p.meta).collect();
        outcome
    }

    /// The loss-detection timer (RFC 9002 §6.2, Appendix A.8): when a
    /// packet awaiting the time threshold becomes lost, else the probe
    /// timeout while packets are in flight (last send + PTO × 2^backoff),
    /// else `None`.
    pub fn timeout(&self) -> Option<T> {
        if let Some(loss_time) = self.loss_time {
            return Some(loss_time);
        }
        if self.sent.is_empty() {
            return None;
        }
        let backoff = 1u32 << self.pto_count.min(MAX_PTO_BACKOFF_EXPONENT);
        let pto = self.rtt.pto(MAX_ACK_DELAY);
        let backed_off = pto.checked_mul(backoff).map_or(MAX_PTO.max(pto), |d| d.min(MAX_PTO.max(pto)));
        Some(self.last_sent? + backed_off)
    }

    /// The loss-detection timer fired at `now` (RFC 9002 Appendix A.9):
    /// declares time-threshold losses, or fires the probe timeout, which
    /// doubles the next one. Nothing happens before [`Recovery::timeout`].
    pub fn on_timeout(&mut self, now: T) -> TimeoutOutcome<M> {
        let mut outcome = TimeoutOutcome { lost: Vec::new(), probes: 0 };
        if self.loss_time.is_some_and(|t| now >= t) {
            let (lost, _) = self.detect_lost(now, false);
            self.signal_losses(now, &lost, false);
            outcome.lost = lost.into_iter().map(|p| p.meta).collect();
        } else if self.loss_time.is_none() && self.timeout().is_some_and(|t| now >= t) {
            self.pto_count += 1;
            self.probes = PTO_PROBES;
            self.stats.pto_count_total += 1;
            outcome.probes = PTO_PROBES;
        }
        outcome
    }

    /// The path changed (RFC 9000 §9.4): forgets every packet in flight and
    /// returns their descriptions, in packet number order, to be sent again.
    /// That is no congestion event: the controller, the RTT estimator and
    /// the pacer start over as on a new path. Packet numbers keep
    /// increasing, so late acknowledgements of the forgotten are ignored.
    pub fn reset_path(&mut self) -> Vec<M> {
        let forgotten = std::mem::take(&mut self.sent).into_values().map(|p| p.meta).collect();
        self.bytes_in_flight = 0;
        self.controller.reset();
        self.rtt = RttEstimator::new(self.rtt.initial());
        self.pacer = Pacer::new(self.max_datagram);
        self.largest_acked = None;
        self.packet_threshold = PACKET_THRESHOLD;
        self.time_threshold_eighths = TIME_THRESHOLD_EIGHTHS;
        self.declared_lost.clear();
        self.loss_time = None;
        self.last_sent = None;
        self.pto_count = 0;
        self.probes = 0;
        self.first_pn_after_sample = None;
        self.stats.path_resets += 1;
        forgotten
    }

    /// The RTT estimate.
    pub fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    /// The congestion controller.
    pub fn controller(&self) -> &dyn Controller<T> {
        self.controller.as_ref()
    }

    /// Packets in flight.
    pub fn packets_in_flight(&self) -> usize {
        self.sent.len()
    }

    /// The oldest packet in flight: its number and description (what a
    /// probe may carry again).
    pub fn oldest_in_flight(&self) -> Option<(u64, &M)> {
        self.sent.first_key_value().map(|(&pn, p)| (pn, &p.meta))
    }

    /// The largest packet number acknowledged on this path.
    pub fn largest_acked(&self) -> Option<u64> {
        self.largest_acked
    }

    /// Probe timeouts in a row without an acknowledgement.
    pub fn pto_count(&self) -> u32 {
        self.pto_count
    }

    /// Probes still allowed past the window.
    pub fn probes_owed(&self) -> u8 {
        self.probes
    }

    /// The counters.
    pub fn stats(&self) -> RecoveryStats {
        self.stats
    }

    /// RFC 9002 §6.1 (Appendix A.10 DetectAndRemoveLostPackets): removes
    /// and returns the packets below the largest acknowledged that are lost
    /// by the packet or the time threshold, rearms the loss time for the
    /// others, and says whether the losses are persistent congestion (only
    /// judged on an acknowledgement, `due_to_ack`).
    fn detect_lost(&mut self, now: T, due_to_ack: bool) -> (Vec<SentPacket<M, T>>, bool) {
        self.loss_time = None;
        let Some(largest_acked) = self.largest_acked else { return (Vec::new(), false) };
        let loss_delay = self.loss_delay();
        // §7.6.1: the duration without the backoff.
        let congestion_period = self.rtt.pto(MAX_ACK_DELAY) * PERSISTENT_CONGESTION_THRESHOLD;

        let mut lost_pns = Vec::new();
        let mut persistent = false;
        // The send time of the first lost packet of the current run of
        // consecutive packet numbers (none acknowledged in between).
        let mut run_start: Option<T> = None;
        let mut prev_pn: Option<u64> = None;
        for (&pn, packet) in self.sent.range(..largest_acked) {
            if prev_pn.is_none_or(|p| p + 1 != pn) {
                run_start = None;
            }
            prev_pn = Some(pn);
            let by_time = now.saturating_duration_since(packet.time) >= loss_delay;
            let by_order = largest_acked - pn >= self.packet_threshold;
            if by_time || by_order {
                lost_pns.push(pn);
                self.declared_lost.insert(pn, (!by_time).then_some(largest_acked));
                if due_to_ack && self.first_pn_after_sample.is_some_and(|first| pn >= first) {
                    match run_start {
                        Some(start) if packet.time.saturating_duration_since(start) > congestion_period => {
                            persistent = true;
                        }
                        Some(_) => {}
                        None => run_start = Some(packet.time),
                    }
                }
            } else {
                let at = packet.time + loss_delay;
                self.loss_time = Some(self.loss_time.map_or(at, |t| t.min(at)));
                run_start = None;
            }
        }
        let mut lost = Vec::with_capacity(lost_pns.len());
        for pn in lost_pns {
            if let Some(packet) = self.sent.remove(&pn) {
                self.bytes_in_flight -= packet.bytes;
                lost.push(packet);
            }
        }
        (lost, persistent)
    }

    /// Packets lost by the packet threshold that `ack` acknowledges after
    /// all were reordered, not lost: the threshold grows to cover the
    /// distance seen (RFC 9002 §6.1.1 allows an adaptive threshold; Linux's
    /// RACK does the same), up to [`MAX_PACKET_THRESHOLD`]. Their pieces
    /// were sent again meanwhile; that cost is paid once per distance.
    fn learn_reordering(&mut self, ack: &AckRanges) {
        for &(lo, hi) in &ack.ranges {
            let reordered: Vec<(u64, Option<u64>)> =
                self.declared_lost.range(lo..=hi).map(|(&pn, &l)| (pn, l)).collect();
            for (pn, largest_then) in reordered {
                self.declared_lost.remove(&pn);
                self.stats.spurious_losses += 1;
                match largest_then {
                    Some(largest) => {
                        let distance = (largest - pn + 1).min(MAX_PACKET_THRESHOLD);
                        self.packet_threshold = self.packet_threshold.max(distance);
                    }
                    // Late beyond the time threshold: allow an eighth more
                    // of an RTT, up to twice the RTT.
                    None => {
                        self.time_threshold_eighths = (self.time_threshold_eighths + 1).min(MAX_TIME_THRESHOLD_EIGHTHS)
                    }
                }
            }
        }
        // Only the recent past tells: forget the oldest beyond a bound.
        while self.declared_lost.len() > MAX_DECLARED_LOST {
            self.declared_lost.pop_first();
        }
    }

    /// The packet threshold in use: [`PACKET_THRESHOLD`], or more on a path
    /// seen to reorder.
    pub fn packet_threshold(&self) -> u64 {
        self.packet_threshold
    }

    /// How long after its sending a packet below the largest acknowledged
    /// is lost (RFC 9002 §6.1.2): 9/8 × max(latest RTT, smoothed RTT), at
    /// least the timer granularity.
    fn loss_delay(&self) -> Duration {
        let rtt = self.rtt.latest().max(self.rtt.smoothed());
        (rtt * self.time_threshold_eighths / 8).max(GRANULARITY)
    }

    /// One congestion event for a batch of losses, dated by the last one
    /// sent (RFC 9002 Appendix B.8 OnPacketsLost).
    fn signal_losses(&mut self, now: T, lost: &[SentPacket<M, T>], persistent: bool) {
        let Some(last) = lost.iter().map(|p| p.time).max() else { return };
        self.stats.lost_packets += lost.len() as u64;
        self.stats.congestion_events += 1;
        if persistent {
            self.stats.persistent_congestions += 1;
        }
        self.controller.on_congestion_event(now, last, persistent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::cc::NewReno;

    const MSS: u64 = 1200;
    const MS: Duration = Duration::from_millis(1);

    fn ledger() -> Recovery<u64, Duration> {
        Recovery::<_, Duration>::new(Box::new(NewReno::<Duration>::default()), MSS)
    }

    /// Sends `n` full-size packets at `now`, each described by its number.
    fn send(r: &mut Recovery<u64, Duration>, now: Duration, n: u64) -> Vec<u64> {
        (0..n)
            .map(|_| {
                let pn = r.next_pn();
                r.on_sent(now, pn, MSS, pn);
                pn
            })
            .collect()
    }

    fn ack(ranges: &[(u64, u64)]) -> AckRanges {
        AckRanges { ranges: ranges.to_vec(), delay: Duration::ZERO }
    }

    #[test]
    fn an_ack_settles_its_packets_samples_the_rtt_and_grows_the_window() {
        // Given 3 packets sent at t0,
        let t0 = Duration::ZERO;
        let mut r = ledger();
        assert_eq!(send(&mut r, t0, 3), [0, 1, 2]);
        assert_eq!((r.bytes_in_flight(), r.packets_in_flight()), (3 * MSS, 3));
        // when all are acknowledged 100 ms later (10 ms of it held back),
        let mut all = ack(&[(0, 2)]);
        all.delay = 10 * MS;
        let outcome = r.on_ack(t0 + 100 * MS, &all);
        // then they are returned, nothing is in flight, the first sample is
        // 100 ms whole, and slow start added their bytes to the window.
        assert_eq!(outcome, AckOutcome { acked: vec![0, 1, 2], lost: vec![] });
        assert_eq!(r.bytes_in_flight(), 0);
        assert_eq!((r.rtt().latest(), r.rtt().smoothed()), (100 * MS, 100 * MS));
        assert_eq!(r.window(), 12_000 + 3 * MSS);
        assert_eq!(r.timeout(), None);
        assert_eq!(r.largest_acked(), Some(2));
        assert_eq!(r.stats().acked_packets, 3);
    }

    #[test]
    fn a_path_that_reorders_raises_the_packet_threshold_to_what_it_showed() {
        // Given packets 0 to 9 sent together,
        let t0 = Duration::ZERO;
        let mut r = ledger();
        send(&mut r, t0, 10);
        // when 5 to 9 are acknowledged first (0 to 4 count as lost by the
        // packet threshold of 3), then 0 to 4 after all,
        assert_eq!(r.on_ack(t0 + 20 * MS, &ack(&[(5, 9)])).lost, [0, 1, 2, 3, 4]);
        r.on_ack(t0 + 21 * MS, &ack(&[(0, 9)]));
        // then those were reordered, not lost: the threshold covers the
        // distance seen (10), and the same reordering loses nothing now.
        assert_eq!(r.stats().spurious_losses, 5);
        assert_eq!(r.packet_threshold(), 10);
        send(&mut r, t0 + 22 * MS, 10);
        assert!(r.on_ack(t0 + 23 * MS, &ack(&[(14, 19)])).lost.is_empty());
        // And a new path starts from the RFC's threshold again.
        r.reset_path();
        assert_eq!(r.packet_threshold(), PACKET_THRESHOLD);
    }

    #[test]
    fn a_packet_late_beyond_the_time_threshold_widens_it_by_an_eighth() {
        // Given a 100 ms sample, then packets 1 and 2 sent together,
        let t0 = Duration::ZERO;
        let mut r = ledger();
        send(&mut r, t0, 1);
        r.on_ack(t0 + 100 * MS, &ack(&[(0, 0)]));
        send(&mut r, t0 + 100 * MS, 2);
        // when 2 is acknowledged and 1 is still missing past 9/8 RTT (lost by
        // time), then 1 is acknowledged after all,
        r.on_ack(t0 + 200 * MS, &ack(&[(2, 2)]));
        assert_eq!(r.on_timeout(t0 + 213 * MS).lost, [1]);
        r.on_ack(t0 + 220 * MS, &ack(&[(1, 2)]));
        // then the path's lateness is allowed for: 10/8 of an RTT now.
        assert_eq!(r.stats().spurious_losses, 1);
        assert_eq!(r.loss_delay(), r.rtt.latest().max(r.rtt.smoothed()) * 10 / 8);
    }

    #[test]
    fn an_ack_held_far_beyond_the_promised_delay_gives_no_rtt_sample() {
        // Given a sample of 20 ms, and a packet sent just before a 30 s cut,
        let t0 = Duration::ZERO;
        let mut r = ledger();
        send(&mut r, t0, 1);
        r.on_ack(t0 + 20 * MS, &ack(&[(0, 0)]));
        send(&mut r, t0 + 20 * MS, 1);
        // when the peer's acknowledgement of it, held through the cut (its
        // delay says 30 s), arrives after the cut,
        let mut late = ack(&[(1, 1)]);
        late.delay = Duration::from_secs(30);
        let outcome = r.on_ack(t0 + Duration::from_secs(30) + 40 * MS, &late);
        // then the packet is settled but the estimate keeps the path's 20 ms.
        assert_eq!(outcome.acked, [1]);
        assert_eq!(r.rtt().smoothed(), 20 * MS);
    }

    #[test]
    fn packets_three_below_an_acked_one_are_lost_and_the_rest_wait_for_the_time_threshold() {
        // Given packets 0 to 4 sent at t0,
        let t0 = Duration::ZERO;
        let mut r = ledger();
        send(&mut r, t0, 5);
        // when only 4 is acknowledged, 50 ms later,
        let outcome = r.on_ack(t0 + 50 * MS, &ack(&[(4, 4)]));
        // then 0 and 1 (3 or more below it) are lost and the window halves;
        assert_eq!(outcome, AckOutcome { acked: vec![4], lost: vec![0, 1] });
        assert_eq!(r.window(), 6_000);
        assert_eq!(r.bytes_in_flight(), 2 * MSS);
        // 2 and 3 are lost 9/8 × 50 ms after their sending, by the timer;
        let loss_time = t0 + Duration::from_micros(56_250);
        assert_eq!(r.timeout(), Some(loss_time));
        let early = r.on_timeout(loss_time - MS);
        assert_eq!(early, TimeoutOutcome { lost: vec![], probes: 0 });
        assert_eq!(r.on_timeout(loss_time), TimeoutOutcome { lost: vec![2, 3], probes: 0 });
        // and that second batch, from the same round trip, does not halve
        // the window again.
        assert_eq!(r.window(), 6_000);
        assert_eq!((r.stats().lost_packets, r.stats().congestion_events), (4, 2));
        assert_eq!(r.timeout(), None);
    }

    #[test]
    fn a_packet_sent_more_than_nine_eighths_of_an_rtt_before_an_acked_one_is_lost() {
        // Given packet 0 at t0 and packet 1 at t0 + 100 ms,
        let t0 = Duration::ZERO;
        let mut r = ledger();
        send(&mut r, t0, 1);
        send(&mut r, t0 + 100 * MS, 1);
        // when 1 is acknowledged 50 ms after its sending (one below it: the
        // packet threshold does not apply),
        let outcome = r.on_ack(t0 + 150 * MS, &ack(&[(1, 1)]));
        // then 0, sent 150 ms > 9/8 × 50 ms ago, is lost.
        assert_eq!(outcome, AckOutcome { acked: vec![1], lost: vec![0] });
    }

    #[test]
    fn several_losses_in_one_round_trip_halve_the_window_once() {
        // Given 20 packets sent at t0,
        let t0 = Duration::ZERO;
        let mut r = ledger();
        send(&mut r, t0, 20);
        // when 5..=9 are acknowledged, then 0..=4 are lost and the window
        // halves;
        let first = r.on_ack(t0 + 100 * MS, &ack(&[(5, 9)]));
        assert_eq!(first.lost, [0, 1, 2, 3, 4]);
        assert_eq!(r.window(), 6_000);
        // when 15..=19 are acknowledged, then 10..=14 are lost, in the same
        // recovery period: the window stays;
        let second = r.on_ack(t0 + 110 * MS, &ack(&[(15, 19), (5, 9)]));
        assert_eq!(second, AckOutcome { acked: vec![15, 16, 17, 18, 19], lost: vec![10, 11, 12, 13, 14] });
        assert_eq!(r.window(), 6_000);
        // and a loss among packets sent after recovery began halves it again.
        send(&mut r, t0 + 120 * MS, 6);
        let third = r.on_ack(t0 + 220 * MS, &ack(&[(25, 25)]));
        assert_eq!(third.lost, [20, 21, 22]);
        assert_eq!(r.window(), 3_000);
    }

    /// Packet 0 acknowledged at t0 + 100 ms (the RTT sample), then packets 1
    /// to 13 sent 100 ms apart from t0 + 100 ms.
    fn thirteen_packets_after_a_sample(t0: Duration) -> Recovery<u64, Duration> {
        let mut r = ledger();
        send(&mut r, t0, 1);
        r.on_ack(t0 + 100 * MS, &ack(&[(0, 0)]));
        for k in 1..=13u32 {
            send(&mut r, t0 + 100 * MS * k, 1);
        }
        assert_eq!(r.window(), 13_200);
        r
    }

    #[test]
    fn losses_spanning_three_ptos_are_persistent_congestion() {
        // Given packets 1 to 13 sent over 1.2 s after an RTT sample of 100 ms
        // (PTO 275 ms, so the period is 825 ms),
        let t0 = Duration::ZERO;
        let mut r = thirteen_packets_after_a_sample(t0);
        // when only 13 is acknowledged,
        let outcome = r.on_ack(t0 + 1400 * MS, &ack(&[(13, 13)]));
        // then 1 to 12 are lost, they span 1.1 s with nothing acknowledged
        // in between, and the window collapses to 2 datagrams, which ends
        // recovery, so slow start adds the acknowledged packet (RFC 9002
        // Appendix B.8: the congestion event comes before the ack).
        assert_eq!(outcome.lost, (1..=12).collect::<Vec<_>>());
        assert_eq!(r.rtt().pto(MAX_ACK_DELAY), 275 * MS);
        assert_eq!(r.window(), 2 * MSS + MSS);
        assert_eq!(r.stats().persistent_congestions, 1);
    }

    #[test]
    fn an_acknowledged_packet_in_between_breaks_persistent_congestion() {
        // Given the same packets,
        let t0 = Duration::ZERO;
        let mut r = thirteen_packets_after_a_sample(t0);
        // when 6 and 13 are acknowledged,
        let outcome = r.on_ack(t0 + 1400 * MS, &ack(&[(13, 13), (6, 6)]));
        // then the losses form two runs of 400 and 500 ms: an ordinary
        // halving.
        assert_eq!(outcome.lost, [1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12]);
        assert_eq!(r.window(), 6_600);
        assert_eq!(r.stats().persistent_congestions, 0);
    }

    #[test]
    fn the_probe_timeout_doubles_and_asks_for_two_probes_past_the_window() {
        // Given a full window sent at t0 and no sample (PTO = 333 ms + 4 ×
        // 166.5 ms + 25 ms),
        let t0 = Duration::ZERO;
        let mut r = ledger();
        send(&mut r, t0, 10);
        let pto = 1024 * MS;
        assert_eq!(r.timeout(), Some(t0 + pto));
        assert!(!r.can_send(MSS));
        // when the timer is called early, nothing happens;
        assert_eq!(r.on_timeout(t0 + pto - MS), TimeoutOutcome { lost: vec![], probes: 0 });
        // when it fires, two probes are owed, past the window and unpaced;
        assert_eq!(r.on_timeout(t0 + pto), TimeoutOutcome { lost: vec![], probes: 2 });
        assert_eq!(r.pto_count(), 1);
        assert!(r.can_send(MSS));
        assert_eq!(r.send_time(t0 + pto, MSS), None);
        assert_eq!(r.oldest_in_flight(), Some((0, &0)));
        send(&mut r, t0 + pto, 2);
        assert!(!r.can_send(MSS));
        // then the next timeout is twice as long from the last probe, but
        // never longer than MAX_PTO, and stays there.
        assert_eq!(r.timeout(), Some(t0 + pto + (2 * pto).min(MAX_PTO)));
        assert_eq!(r.on_timeout(t0 + 3 * pto).probes, 2);
        assert_eq!(r.timeout(), Some(t0 + pto + MAX_PTO));
        assert_eq!(r.stats().pto_count_total, 2);
        // When the last probe is acknowledged, the backoff ends and the
        // packets sent at t0 are lost by the time threshold.
        let outcome = r.on_ack(t0 + 3 * pto, &ack(&[(11, 11)]));
        assert_eq!(outcome.lost, (0..=9).collect::<Vec<_>>());
        assert_eq!(r.pto_count(), 0);
        assert_eq!(r.oldest_in_flight(), Some((10, &10)));
    }

    #[test]
    fn acks_for_unknown_or_future_packet_numbers_are_ignored() {
        // Given packets 0 to 2 sent and number 3 handed out but not sent,
        let t0 = Duration::ZERO;
        let mut r = ledger();
        send(&mut r, t0, 3);
        assert_eq!(r.next_pn(), 3);
        let nothing = AckOutcome { acked: vec![], lost: vec![] };
        // when acks name a number not yet handed out, alone or beside a
        // real one, or are malformed, then they are ignored whole;
        assert_eq!(r.on_ack(t0 + 10 * MS, &ack(&[(10, 10)])), nothing);
        assert_eq!(r.on_ack(t0 + 10 * MS, &ack(&[(100, 100), (1, 1)])), nothing);
        assert_eq!(r.on_ack(t0 + 10 * MS, &ack(&[(0, 1), (2, 2)])), nothing);
        assert_eq!(r.on_ack(t0 + 10 * MS, &ack(&[])), nothing);
        assert_eq!(r.stats().ignored_acks, 4);
        // when one names the unsent number, then it settles nothing and
        // yields no RTT sample;
        assert_eq!(r.on_ack(t0 + 10 * MS, &ack(&[(3, 3)])), nothing);
        assert!(!r.rtt().has_sample());
        assert_eq!(r.largest_acked(), None);
        assert_eq!(r.bytes_in_flight(), 3 * MSS);
        // and a real ack settles its packets once only.
        let real = ack(&[(2, 2), (0, 0)]);
        assert_eq!(r.on_ack(t0 + 20 * MS, &real).acked, [0, 2]);
        assert_eq!(r.on_ack(t0 + 30 * MS, &real), nothing);
        assert_eq!(r.bytes_in_flight(), MSS);
    }

    #[test]
    fn a_path_reset_returns_everything_in_flight_and_starts_over() {
        // Given a window grown to 15 datagrams, an RTT of 100 ms, and
        // packets 5 to 14 in flight,
        let t0 = Duration::ZERO;
        let mut r = ledger();
        send(&mut r, t0, 10);
        r.on_ack(t0 + 100 * MS, &ack(&[(0, 4)]));
        send(&mut r, t0 + 100 * MS, 5);
        assert_eq!(r.window(), 15 * MSS);
        // when the path changes,
        let forgotten = r.reset_path();
        // then the packets in flight come back in order, without a loss or
        // a congestion event, and window, RTT and timer start over;
        assert_eq!(forgotten, (5..=14).collect::<Vec<_>>());
        assert_eq!((r.bytes_in_flight(), r.packets_in_flight()), (0, 0));
        assert_eq!(r.window(), 12_000);
        assert!(r.controller().in_slow_start());
        assert!(!r.rtt().has_sample());
        assert_eq!(r.rtt().smoothed(), INITIAL_RTT);
        assert_eq!(r.timeout(), None);
        assert_eq!((r.stats().lost_packets, r.stats().congestion_events, r.stats().path_resets), (0, 0, 1));
        // late acks of the forgotten packets change nothing;
        assert_eq!(r.on_ack(t0 + 200 * MS, &ack(&[(5, 14)])), AckOutcome { acked: vec![], lost: vec![] });
        assert_eq!(r.window(), 12_000);
        // and numbers go on from 15, sampling the new path.
        assert_eq!(send(&mut r, t0 + 200 * MS, 3), [15, 16, 17]);
        assert_eq!(r.on_ack(t0 + 250 * MS, &ack(&[(15, 17)])).acked, [15, 16, 17]);
        assert_eq!(r.rtt().smoothed(), 50 * MS);
        assert_eq!(r.window(), 12_000 + 3 * MSS);
    }

    #[test]
    fn an_app_limited_sender_does_not_grow_its_window() {
        // Given a sender that says it ran out of data,
        let t0 = Duration::ZERO;
        let mut r = ledger();
        r.set_app_limited(true);
        // when its packets are acknowledged, then the window stays;
        send(&mut r, t0, 5);
        r.on_ack(t0 + 100 * MS, &ack(&[(0, 4)]));
        assert_eq!(r.window(), 12_000);
        // and once data waits again, acknowledgements grow it.
        r.set_app_limited(false);
        send(&mut r, t0 + 100 * MS, 5);
        r.on_ack(t0 + 200 * MS, &ack(&[(5, 9)]));
        assert_eq!(r.window(), 12_000 + 5 * MSS);
    }

    #[test]
    fn sending_is_paced_once_the_burst_is_spent() {
        // Given an initial burst of 10 at t0, acknowledged 100 ms later
        // (window 20 datagrams, RTT 100 ms),
        let t0 = Duration::ZERO;
        let mut r = ledger();
        for _ in 0..10 {
            assert!(r.can_send(MSS));
            assert_eq!(r.send_time(t0, MSS), None);
            send(&mut r, t0, 1);
        }
        let now = t0 + 100 * MS;
        r.on_ack(now, &ack(&[(0, 9)]));
        // when a bucket of 10 datagrams is sent,
        for _ in 0..10 {
            assert_eq!(r.send_time(now, MSS), None);
            send(&mut r, now, 1);
        }
        // then the window has room but the next waits 40 ms for the bucket
        // to refill at 1.25 × 20 datagrams per 100 ms.
        assert!(r.can_send(MSS));
        assert_eq!(r.send_time(now, MSS), Some(now + 40 * MS));
    }
}
