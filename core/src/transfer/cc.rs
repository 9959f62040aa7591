//! Congestion control: the [`Controller`] trait, and [`NewReno`] as RFC 9002
//! §7 and Appendix B specify it.
//!
//! A controller only sizes a window of bytes in flight. Loss detection, RTT
//! estimation and pacing are [`Recovery`](super::Recovery)'s, so another
//! controller plugs in behind the same small trait. Room is left for a
//! LEDBAT-style background controller (RFC 6817): it would grow and shrink
//! its window from queueing delay (`rtt.latest()` against `rtt.min()`,
//! both passed to [`Controller::on_ack`]) and yield to any other traffic.
//! It is not built.

use std::fmt::Debug;
use std::time::{Duration, Instant};

use crate::timer::Moment;

use super::rtt::RttEstimator;

/// A congestion controller: the size of the window of bytes a sender may
/// have in flight, grown by acknowledgements and shrunk by congestion
/// events. Time is always an argument; a controller never reads a clock.
pub trait Controller<T = Instant>: Debug + Send {
    /// The congestion window, in bytes.
    fn window(&self) -> u64;

    /// `bytes` sent at `sent` were acknowledged at `now`. `app_limited`
    /// says the sender was not using its window (RFC 9002 §7.8): the window
    /// must not grow from such an acknowledgement.
    fn on_ack(&mut self, now: T, sent: T, bytes: u64, app_limited: bool, rtt: &RttEstimator);

    /// Packets were declared lost at `now`; the largest of them was sent at
    /// `sent`. `persistent` says the losses span a persistent congestion
    /// period (RFC 9002 §7.6).
    fn on_congestion_event(&mut self, now: T, sent: T, persistent: bool);

    /// Whether the controller is in slow start.
    fn in_slow_start(&self) -> bool;

    /// Back to the initial window: the path changed and nothing learnt about
    /// the old one applies (RFC 9000 §9.4).
    fn reset(&mut self);

    /// A boxed copy (so that `Box<dyn Controller>` is `Clone`).
    fn clone_box(&self) -> Box<dyn Controller<T>>;
}

impl<T> Clone for Box<dyn Controller<T>> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

/// The default maximum datagram size a window counts in: 1200 bytes, the
/// smallest QUIC path MTU (RFC 9000 §14), which also fits the relay.
pub const DEFAULT_MAX_DATAGRAM: u64 = 1200;

/// [`NewReno`]'s parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewRenoConfig {
    /// The maximum datagram size, in bytes: the unit of window growth.
    pub max_datagram: u64,
    /// The initial window, in bytes (RFC 9002 §7.2).
    pub initial_window: u64,
    /// A cap on the window, in bytes, so that a long clean path cannot grow
    /// it (and the sender's ledger) without bound.
    pub max_window: u64,
}

impl NewRenoConfig {
    /// The defaults for datagrams of `max_datagram` bytes: an initial window
    /// of min(10 × max_datagram, max(14720, 2 × max_datagram)) per RFC 9002
    /// §7.2, and a 64 MiB cap.
    pub fn new(max_datagram: u64) -> Self {
        NewRenoConfig {
            max_datagram,
            initial_window: (10 * max_datagram).min(14_720u64.max(2 * max_datagram)),
            max_window: 64 << 20,
        }
    }

    /// The smallest window (RFC 9002 §7.2 kMinimumWindow): 2 datagrams.
    pub fn minimum_window(&self) -> u64 {
        2 * self.max_datagram
    }
}

impl Default for NewRenoConfig {
    /// [`NewRenoConfig::new`] with [`DEFAULT_MAX_DATAGRAM`].
    fn default() -> Self {
        NewRenoConfig::new(DEFAULT_MAX_DATAGRAM)
    }
}

/// NewReno (RFC 9002 §7.3, Appendix B; RFC 6582): slow start doubles the
/// window each round trip, congestion avoidance adds one datagram per
/// window acknowledged, and a congestion event halves it at most once per
/// round trip.
#[derive(Clone, Debug)]
pub struct NewReno<T = Instant> {
    config: NewRenoConfig,
    window: u64,
    ssthresh: u64,
    /// When the current recovery period started (Appendix B
    /// congestion_recovery_start_time): packets sent before it neither
    /// reduce the window again nor grow it.
    recovery_start: Option<T>,
    /// Bytes acknowledged in congestion avoidance since the window last
    /// grew.
    bytes_acked: u64,
    /// Slow start's delay watch (RFC 9406).
    hystart: HyStart<T>,
}

/// HyStart++'s round tracking (RFC 9406 §4): slow start ends when the
/// round trip of a round exceeds the previous round's by an eighth (4 to
/// 16 ms), that is when a queue starts to build, instead of when it
/// overflows: the overshoot's burst of losses is avoided, and flows that
/// share a bottleneck leave slow start together, on equal terms.
/// Simplified: slow start ends there (no conservative slow start, §4.3).
#[derive(Clone, Copy, Debug)]
struct HyStart<T> {
    /// When the current round began: a round ends when a packet sent after
    /// it is acknowledged.
    round_start: Option<T>,
    /// The smallest RTT sample of the current round, and how many it took.
    current_min: Option<Duration>,
    samples: u32,
    /// The previous round's smallest.
    last_min: Option<Duration>,
}

/// RFC 9406 §4.1's constants.
const HYSTART_SAMPLES: u32 = 8;
const HYSTART_MIN_THRESH: Duration = Duration::from_millis(4);
const HYSTART_MAX_THRESH: Duration = Duration::from_millis(16);

impl<T> Default for HyStart<T> {
    fn default() -> Self {
        HyStart { round_start: None, current_min: None, samples: 0, last_min: None }
    }
}

impl<T: Moment> HyStart<T> {
    /// An acknowledgement in slow start of a packet sent at `sent`, with
    /// `rtt`'s latest sample; true when slow start should end.
    fn on_ack(&mut self, now: T, sent: T, rtt: &RttEstimator) -> bool {
        match self.round_start {
            Some(start) if sent < start => {}
            _ => {
                self.last_min = self.current_min.or(self.last_min);
                self.current_min = None;
                self.samples = 0;
                self.round_start = Some(now);
            }
        }
        if !rtt.has_sample() {
            return false;
        }
        self.samples += 1;
        let latest = rtt.latest();
        self.current_min = Some(self.current_min.map_or(latest, |m| m.min(latest)));
        match (self.current_min, self.last_min) {
            (Some(current), Some(last)) if self.samples >= HYSTART_SAMPLES => {
                current >= last + (last / 8).clamp(HYSTART_MIN_THRESH, HYSTART_MAX_THRESH)
            }
            _ => false,
        }
    }
}

/// The loss reduction factor (RFC 9002 §7.3.2, kLossReductionFactor).
const LOSS_REDUCTION_NUM: u64 = 1;
const LOSS_REDUCTION_DEN: u64 = 2;

impl<T: Moment> NewReno<T> {
    /// A controller in slow start at the configured initial window.
    pub fn new(config: NewRenoConfig) -> Self {
        let mut reno = NewReno {
            config,
            window: 0,
            ssthresh: 0,
            recovery_start: None,
            bytes_acked: 0,
            hystart: HyStart::default(),
        };
        reno.reset();
        reno
    }

    /// The slow start threshold, in bytes (`u64::MAX` until the first
    /// congestion event).
    pub fn ssthresh(&self) -> u64 {
        self.ssthresh
    }

    /// The configuration.
    pub fn config(&self) -> &NewRenoConfig {
        &self.config
    }

    /// Appendix B InCongestionRecovery: sent at or before the recovery start.
    fn in_recovery(&self, sent: T) -> bool {
        self.recovery_start.is_some_and(|start| sent <= start)
    }
}

impl<T: Moment> Default for NewReno<T> {
    fn default() -> Self {
        NewReno::new(NewRenoConfig::default())
    }
}

impl<T: Moment> Controller<T> for NewReno<T> {
    fn window(&self) -> u64 {
        self.window
    }

    fn on_ack(&mut self, now: T, sent: T, bytes: u64, app_limited: bool, rtt: &RttEstimator) {
        // §7.3.2: a recovery period ends when a packet sent during it is
        // acknowledged; acknowledgements of older packets do not grow the
        // window. §7.8: nor do those of an app-limited sender.
        if self.in_recovery(sent) || app_limited {
            return;
        }
        if self.window < self.ssthresh && self.hystart.on_ack(now, sent, rtt) {
            // RFC 9406: the queue has started to build; stop doubling.
            self.ssthresh = self.window;
        }
        if self.window < self.ssthresh {
            // §7.3.1 slow start: one byte of window per byte acknowledged.
            self.window = self.window.saturating_add(bytes);
        } else {
            // §7.3.3 congestion avoidance: max_datagram × acked / window per
            // ack, i.e. one datagram per window acknowledged. Counting the
            // acknowledged bytes, rather than dividing each time, loses
            // nothing to integer truncation when the window is large.
            self.bytes_acked = self.bytes_acked.saturating_add(bytes);
            if self.bytes_acked >= self.window {
                self.bytes_acked -= self.window;
                self.window = self.window.saturating_add(self.config.max_datagram);
            }
        }
        self.window = self.window.min(self.config.max_window);
    }

    fn on_congestion_event(&mut self, now: T, sent: T, persistent: bool) {
        // §7.3.2: one reduction per round trip. A loss of a packet sent
        // before the current recovery period started belongs to the same
        // congestion event.
        if !self.in_recovery(sent) {
            self.recovery_start = Some(now);
            let reduced = self.window / LOSS_REDUCTION_DEN * LOSS_REDUCTION_NUM;
            self.ssthresh = reduced.max(self.config.minimum_window());
            self.window = self.ssthresh;
            self.bytes_acked = 0;
        }
        if persistent {
            // §7.6.2 and Appendix B OnPacketsLost: collapse to the minimum
            // window and leave recovery, so the next acknowledgements start
            // slow start towards ssthresh.
            self.window = self.config.minimum_window();
            self.recovery_start = None;
            self.bytes_acked = 0;
        }
    }

    fn in_slow_start(&self) -> bool {
        self.window < self.ssthresh
    }

    fn reset(&mut self) {
        self.window = self.config.initial_window.clamp(self.config.minimum_window(), self.config.max_window);
        self.ssthresh = u64::MAX;
        self.recovery_start = None;
        self.bytes_acked = 0;
        self.hystart = HyStart::default();
    }

    fn clone_box(&self) -> Box<dyn Controller<T>> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const MSS: u64 = DEFAULT_MAX_DATAGRAM;

    fn rtt() -> RttEstimator {
        RttEstimator::default()
    }

    #[test]
    fn the_default_initial_window_is_rfc_9002s() {
        // Given 1200-byte datagrams, then 10 × 1200 = 12000 (below 14720);
        assert_eq!(NewRenoConfig::default().initial_window, 12_000);
        // with 1500-byte ones, 14720 (below 15000); with 9000-byte ones,
        // 2 × 9000 (above 14720).
        assert_eq!(NewRenoConfig::new(1500).initial_window, 14_720);
        assert_eq!(NewRenoConfig::new(9000).initial_window, 18_000);
        assert_eq!(NewReno::<Duration>::default().window(), 12_000);
        assert!(NewReno::<Duration>::default().in_slow_start());
    }

    #[test]
    fn slow_start_doubles_the_window_each_round_trip() {
        // Given a fresh controller,
        let t0 = Duration::ZERO;
        let mut cc = NewReno::<Duration>::default();
        // when each round trip acknowledges a whole window, packet by packet,
        for round in 1..=4u32 {
            let sent = t0 + 100 * MS * (round - 1);
            let now = sent + 100 * MS;
            let window = cc.window();
            for _ in 0..window / MSS {
                cc.on_ack(now, sent, MSS, false, &rtt());
            }
            // then the window doubles.
            assert_eq!(cc.window(), 2 * window, "round {round}");
        }
        assert_eq!(cc.window(), 16 * 12_000);
    }

    #[test]
    fn slow_start_ends_when_the_round_trip_grows_by_an_eighth() {
        // Given slow start on a 100 ms path,
        let t0 = Duration::ZERO;
        let mut cc = NewReno::<Duration>::default();
        let mut rtt = RttEstimator::default();
        let mut round = |cc: &mut NewReno<Duration>, n: u32, sample: Duration| {
            let sent = t0 + 200 * MS * n;
            rtt.update(sample, Duration::ZERO);
            for _ in 0..cc.window() / MSS {
                cc.on_ack(sent + sample, sent, MSS, false, &rtt);
            }
        };
        round(&mut cc, 0, 100 * MS);
        round(&mut cc, 1, 100 * MS);
        assert!(cc.in_slow_start());
        // when a round's round trips are 16 ms longer (a queue builds: more
        // than the 12.5 ms an eighth allows),
        round(&mut cc, 2, 116 * MS);
        // then slow start ends there, before any loss.
        assert!(!cc.in_slow_start());
        assert_eq!(cc.ssthresh(), cc.window());
    }

    #[test]
    fn congestion_avoidance_grows_one_datagram_per_window_acknowledged() {
        // Given a controller out of slow start at 20 datagrams,
        let t0 = Duration::ZERO;
        let mut cc = NewReno::<Duration>::default();
        for _ in 0..30 {
            cc.on_ack(t0, t0, MSS, false, &rtt());
        }
        cc.on_congestion_event(t0 + MS, t0, false);
        assert_eq!(cc.window(), 20 * MSS);
        assert!(!cc.in_slow_start());
        // when a window's worth of packets sent after the event is
        // acknowledged, round after round,
        for round in 0..5u64 {
            let window = cc.window();
            for _ in 0..window / MSS {
                cc.on_ack(t0 + 3 * MS, t0 + 2 * MS, MSS, false, &rtt());
            }
            // then each round adds exactly one datagram.
            assert_eq!(cc.window(), 20 * MSS + (round + 1) * MSS);
        }
    }

    #[test]
    fn losses_in_one_round_trip_halve_the_window_once() {
        // Given a window of 40 datagrams,
        let t0 = Duration::ZERO;
        let mut cc = NewReno::<Duration>::default();
        for _ in 0..30 {
            cc.on_ack(t0, t0, MSS, false, &rtt());
        }
        assert_eq!(cc.window(), 40 * MSS);
        // when three losses of packets sent before the first event are
        // signalled one after another,
        cc.on_congestion_event(t0 + 100 * MS, t0 + 10 * MS, false);
        cc.on_congestion_event(t0 + 101 * MS, t0 + 20 * MS, false);
        cc.on_congestion_event(t0 + 102 * MS, t0 + 100 * MS, false);
        // then the window is halved once;
        assert_eq!(cc.window(), 20 * MSS);
        assert_eq!(cc.ssthresh(), 20 * MSS);
        // acknowledgements of packets sent before recovery do not grow it;
        cc.on_ack(t0 + 150 * MS, t0 + 50 * MS, 40 * MSS, false, &rtt());
        assert_eq!(cc.window(), 20 * MSS);
        // and a loss of a packet sent after recovery started halves it again.
        cc.on_congestion_event(t0 + 250 * MS, t0 + 150 * MS, false);
        assert_eq!(cc.window(), 10 * MSS);
    }

    #[test]
    fn the_window_never_falls_below_two_datagrams() {
        // Given a controller, when it is halved ten round trips running,
        let t0 = Duration::ZERO;
        let mut cc = NewReno::<Duration>::default();
        for i in 1..=10u32 {
            cc.on_congestion_event(t0 + 10 * MS * i, t0 + 10 * MS * i - MS, false);
        }
        // then it stops at the minimum window.
        assert_eq!(cc.window(), 2 * MSS);
    }

    #[test]
    fn persistent_congestion_collapses_to_the_minimum_and_slow_starts_back() {
        // Given a window of 40 datagrams,
        let t0 = Duration::ZERO;
        let mut cc = NewReno::<Duration>::default();
        for _ in 0..30 {
            cc.on_ack(t0, t0, MSS, false, &rtt());
        }
        // when a persistent congestion event arrives,
        cc.on_congestion_event(t0 + 100 * MS, t0 + 90 * MS, true);
        // then the window is the minimum, with ssthresh at half the old one,
        assert_eq!(cc.window(), 2 * MSS);
        assert_eq!(cc.ssthresh(), 20 * MSS);
        assert!(cc.in_slow_start());
        // and the next acknowledgement grows it (recovery is over).
        cc.on_ack(t0 + 200 * MS, t0 + 50 * MS, MSS, false, &rtt());
        assert_eq!(cc.window(), 3 * MSS);
    }

    #[test]
    fn app_limited_acks_do_not_grow_the_window() {
        // Given a fresh controller, when acks arrive while app-limited,
        let t0 = Duration::ZERO;
        let mut cc = NewReno::<Duration>::default();
        for _ in 0..10 {
            cc.on_ack(t0, t0, MSS, true, &rtt());
        }
        // then the window stays at its initial size.
        assert_eq!(cc.window(), 12_000);
    }

    #[test]
    fn the_window_is_capped_and_reset_restores_the_initial_state() {
        // Given a cap of 20 datagrams,
        let t0 = Duration::ZERO;
        let mut cc = NewReno::<Duration>::new(NewRenoConfig { max_window: 20 * MSS, ..NewRenoConfig::default() });
        // when slow start would take it to 40,
        for _ in 0..30 {
            cc.on_ack(t0, t0, MSS, false, &rtt());
        }
        // then it stops at 20;
        assert_eq!(cc.window(), 20 * MSS);
        // and after a loss and a reset it is back in slow start at 10.
        cc.on_congestion_event(t0 + MS, t0, false);
        cc.reset();
        assert_eq!((cc.window(), cc.ssthresh()), (10 * MSS, u64::MAX));
        let boxed: Box<dyn Controller<Duration>> = Box::new(cc);
        assert_eq!(boxed.clone().window(), 10 * MSS);
    }
}
