//! Pacing (RFC 9002 §7.7): spreading a window's packets over the round trip
//! instead of sending them in one burst that a bottleneck's queue must
//! absorb.
//!
//! A token bucket in the style of quinn's pacer: tokens (bytes) accrue at
//! 1.25 × window / smoothed RTT (§7.7's N = 1.25, so that pacing never
//! holds the sender below its window), and the bucket holds the window's
//! share of 2 ms, clamped to between 10 and 256 datagrams. A sender that
//! runs dry waits until the bucket is full again, so it wakes up once per
//! burst rather than once per packet. Time is an argument; the bucket
//! refills from the instants it is given and never holds more than its
//! capacity, however long it sat idle.

use std::time::{Duration, Instant};

use crate::timer::Moment;

/// The interval whose share of the window the bucket holds.
pub const BURST_INTERVAL: Duration = Duration::from_millis(2);
/// The smallest bucket, in datagrams: small windows are not paced finer.
pub const MIN_BURST_PACKETS: u64 = 10;
/// The largest bucket, in datagrams.
pub const MAX_BURST_PACKETS: u64 = 256;

/// The pacing rate is window / smoothed RTT × 5 / 4 (RFC 9002 §7.7, N = 1.25).
const RATE_NUM: u128 = 5;
const RATE_DEN: u128 = 4;

/// A token bucket deciding when the next packet may leave (RFC 9002 §7.7).
///
/// Ask [`Pacer::delay`] before sending; when it says `None`, send and report
/// the bytes to [`Pacer::on_sent`], which takes them from the bucket.
#[derive(Clone, Debug)]
pub struct Pacer<T = Instant> {
    max_datagram: u64,
    capacity: u64,
    /// Bytes that may leave now.
    tokens: u64,
    /// The instant the tokens were counted up to; `None` until the first
    /// question, when the bucket starts full (the initial burst).
    prev: Option<T>,
}

impl<T: Moment> Pacer<T> {
    /// A full bucket for datagrams of `max_datagram` bytes.
    pub fn new(max_datagram: u64) -> Self {
        let max_datagram = max_datagram.max(1);
        Pacer { max_datagram, capacity: MIN_BURST_PACKETS * max_datagram, tokens: u64::MAX, prev: None }
    }

    /// When `bytes` may leave, for a path of smoothed RTT `srtt` and a
    /// congestion window of `window` bytes: `None` means now, `Some(t)` not
    /// before `t` (then ask again at `t`). Refills the bucket up to `now`;
    /// it does not take tokens ([`Pacer::on_sent`] does).
    pub fn delay(&mut self, now: T, bytes: u64, srtt: Duration, window: u64) -> Option<T> {
        let window = u128::from(window.max(self.max_datagram));
        let srtt = srtt.as_nanos().max(1);
        self.capacity = self.capacity_for(window, srtt);
        self.tokens = self.tokens.min(self.capacity);

        match self.prev {
            None => {
                self.tokens = self.capacity;
                self.prev = Some(now);
            }
            Some(prev) => {
                let elapsed = now.saturating_duration_since(prev).as_nanos();
                let earned = elapsed.saturating_mul(window * RATE_NUM) / (srtt * RATE_DEN);
                let room = u128::from(self.capacity - self.tokens);
                if earned >= room {
                    // Full: idle time beyond this point earns nothing.
                    self.tokens = self.capacity;
                    self.prev = Some(now);
                } else {
                    // Advance only by the time the earned bytes took, so
                    // the fraction of a byte left over is not lost.
                    self.tokens += earned as u64;
                    let spent = earned * srtt * RATE_DEN / (window * RATE_NUM);
                    self.prev = Some(prev + Duration::from_nanos(spent as u64));
                }
            }
        }

        // A full bucket never holds a packet back, even one larger than it.
        if self.tokens >= bytes || self.tokens == self.capacity {
            return None;
        }
        // Wait until the bucket is full (or holds `bytes`): one wake-up per
        // burst, as quinn does.
        let needed = u128::from(bytes.max(self.capacity) - self.tokens);
        let wait = (needed * srtt * RATE_DEN).div_ceil(window * RATE_NUM);
        let prev = self.prev.unwrap_or(now);
        Some(prev + Duration::from_nanos(wait.min(u128::from(u64::MAX)) as u64))
    }

    /// `bytes` left: takes them from the bucket.
    pub fn on_sent(&mut self, bytes: u64) {
        self.tokens = self.tokens.saturating_sub(bytes);
    }

    /// The bucket's size for this window and RTT: the window's share of
    /// [`BURST_INTERVAL`], clamped to [`MIN_BURST_PACKETS`] ..=
    /// [`MAX_BURST_PACKETS`] datagrams.
    fn capacity_for(&self, window: u128, srtt_nanos: u128) -> u64 {
        let share = window * BURST_INTERVAL.as_nanos() / srtt_nanos;
        let share = u64::try_from(share).unwrap_or(u64::MAX);
        share.clamp(MIN_BURST_PACKETS * self.max_datagram, MAX_BURST_PACKETS * self.max_datagram)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: u64 = 1200;
    const MS: Duration = Duration::from_millis(1);

    /// Sends `packets` as fast as the pacer allows from `start`, jumping to
    /// each deadline; returns when the last one left.
    fn send_all(pacer: &mut Pacer<Duration>, start: Duration, packets: u64, srtt: Duration, window: u64) -> Duration {
        let mut now = start;
        for _ in 0..packets {
            while let Some(t) = pacer.delay(now, MSS, srtt, window) {
                assert!(t > now, "a deadline is in the future");
                now = t;
            }
            pacer.on_sent(MSS);
        }
        now
    }

    #[test]
    fn a_window_is_spread_over_most_of_a_round_trip() {
        // Given a window of 100 datagrams and a 100 ms RTT,
        let t0 = Duration::ZERO;
        let mut pacer = Pacer::<Duration>::new(MSS);
        // when 100 datagrams are sent as fast as allowed,
        let last = send_all(&mut pacer, t0, 100, 100 * MS, 100 * MSS);
        // then they take between 60 and 100 ms (at 1.25 × the window rate,
        // 10 leave at once and 90 take 72 ms).
        let took = last - t0;
        assert!(took >= 60 * MS && took <= 100 * MS, "took {took:?}");
        assert_eq!(took, 72 * MS);
    }

    #[test]
    fn the_first_burst_is_the_bucket_and_then_the_sender_waits() {
        // Given a fresh pacer, a window of 100 datagrams and a 100 ms RTT,
        let t0 = Duration::ZERO;
        let mut pacer = Pacer::<Duration>::new(MSS);
        // then 10 datagrams may leave at once;
        for _ in 0..10 {
            assert_eq!(pacer.delay(t0, MSS, 100 * MS, 100 * MSS), None);
            pacer.on_sent(MSS);
        }
        // and the 11th waits until the bucket is full again: 10 datagrams at
        // 1.25 datagrams per millisecond.
        assert_eq!(pacer.delay(t0, MSS, 100 * MS, 100 * MSS), Some(t0 + 8 * MS));
        assert_eq!(pacer.delay(t0 + 8 * MS, MSS, 100 * MS, 100 * MSS), None);
    }

    #[test]
    fn idle_time_earns_no_more_than_one_bucket() {
        // Given a pacer drained at t0,
        let t0 = Duration::ZERO;
        let mut pacer = Pacer::<Duration>::new(MSS);
        send_all(&mut pacer, t0, 10, 100 * MS, 100 * MSS);
        // when it sits idle for ten seconds and then sends a window,
        let start = t0 + Duration::from_secs(10);
        let last = send_all(&mut pacer, start, 100, 100 * MS, 100 * MSS);
        // then only one bucket leaves at once: the rest is paced as before.
        assert_eq!(last - start, 72 * MS);
    }

    #[test]
    fn a_large_window_gets_a_two_millisecond_bucket() {
        // Given a window of 10,000 datagrams over 10 ms (2 ms of it is 2000
        // datagrams, above the 256 cap),
        let t0 = Duration::ZERO;
        let mut pacer = Pacer::<Duration>::new(MSS);
        // then 256 datagrams leave at once and the 257th waits;
        for _ in 0..256 {
            assert_eq!(pacer.delay(t0, MSS, 10 * MS, 10_000 * MSS), None);
            pacer.on_sent(MSS);
        }
        assert!(pacer.delay(t0, MSS, 10 * MS, 10_000 * MSS).is_some());
        // and with a window of 3000 datagrams over 40 ms the bucket is the
        // 2 ms share, 150 datagrams.
        let mut pacer = Pacer::<Duration>::new(MSS);
        assert_eq!(pacer.delay(t0, MSS, 40 * MS, 3000 * MSS), None);
        assert_eq!(pacer.capacity, 150 * MSS);
    }

    #[test]
    fn a_shrinking_window_shrinks_the_bucket_and_slows_the_rate() {
        // Given a full bucket for a window of 1000 datagrams over 10 ms (200),
        let t0 = Duration::ZERO;
        let mut pacer = Pacer::<Duration>::new(MSS);
        assert_eq!(pacer.delay(t0, MSS, 10 * MS, 1000 * MSS), None);
        assert_eq!(pacer.tokens, 200 * MSS);
        // when the window falls to 100 datagrams,
        let last = send_all(&mut pacer, t0, 30, 10 * MS, 100 * MSS);
        // then the bucket holds 20, and the last 10 wait for it to refill
        // at 12.5 datagrams per millisecond: 1.6 ms.
        assert_eq!(pacer.capacity, 20 * MSS);
        assert_eq!(last - t0, Duration::from_micros(1600));
    }
}
