//! Round-trip time estimation, as RFC 9002 §5 describes it.
//!
//! Three figures come out of the samples: the minimum (§5.2), a smoothed
//! mean and its mean deviation (§5.3, the same exponentially weighted
//! averages as TCP's RFC 6298). From them the probe timeout is computed
//! (§6.2.1). Until the first sample the estimator answers with the initial
//! RTT (§6.2.2).

use std::time::Duration;

use super::ack::MAX_ACK_DELAY;

/// The RTT assumed before any sample: 333 ms, RFC 9002 §6.2.2.
pub const INITIAL_RTT: Duration = Duration::from_millis(333);

/// The timer granularity (RFC 9002 §6.1.2 kGranularity): the smallest
/// interval a loss or probe timer is given.
pub const GRANULARITY: Duration = Duration::from_millis(1);

/// A path's round-trip time, from acknowledgement samples (RFC 9002 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RttEstimator {
    initial: Duration,
    latest: Duration,
    smoothed: Duration,
    rttvar: Duration,
    min: Duration,
    has_sample: bool,
}

impl RttEstimator {
    /// An estimator that knows nothing yet: smoothed = `initial_rtt` and
    /// rttvar = `initial_rtt` / 2 (RFC 9002 §5.3); latest and min are zero.
    pub fn new(initial_rtt: Duration) -> Self {
        RttEstimator {
            initial: initial_rtt,
            latest: Duration::ZERO,
            smoothed: initial_rtt,
            rttvar: initial_rtt / 2,
            min: Duration::ZERO,
            has_sample: false,
        }
    }

    /// Takes one sample: `latest` is the time from sending the newly
    /// acknowledged largest packet to receiving its acknowledgement, and
    /// `ack_delay` the delay the peer says it held that acknowledgement.
    ///
    /// The peer's delay is capped at [`MAX_ACK_DELAY`] (both ends run the
    /// same [`AckTracker`](super::AckTracker), so that is the peer's
    /// max_ack_delay, RFC 9002 §5.3) and subtracted only when the result
    /// does not fall below the minimum RTT; the first sample ignores it.
    pub fn update(&mut self, latest: Duration, ack_delay: Duration) {
        self.latest = latest;
        if !self.has_sample {
            // §5.3: the first sample sets everything; its ack delay is not
            // trusted because there is no min_rtt to check it against.
            self.has_sample = true;
            self.min = latest;
            self.smoothed = latest;
            self.rttvar = latest / 2;
            return;
        }
        // §5.2: min_rtt ignores the ack delay, so a lying peer cannot push it
        // down.
        self.min = self.min.min(latest);
        let ack_delay = ack_delay.min(MAX_ACK_DELAY);
        let adjusted = if latest >= self.min + ack_delay { latest - ack_delay } else { latest };
        let sample_var = self.smoothed.abs_diff(adjusted);
        self.rttvar = (self.rttvar * 3 + sample_var) / 4;
        self.smoothed = (self.smoothed * 7 + adjusted) / 8;
    }

    /// The smoothed RTT (the initial RTT before any sample).
    pub fn smoothed(&self) -> Duration {
        self.smoothed
    }

    /// The RTT's mean deviation.
    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }

    /// The smallest RTT sampled (zero before any sample).
    pub fn min(&self) -> Duration {
        self.min
    }

    /// The latest RTT sample (zero before any sample).
    pub fn latest(&self) -> Duration {
        self.latest
    }

    /// Whether a sample was taken.
    pub fn has_sample(&self) -> bool {
        self.has_sample
    }

    /// The initial RTT this estimator was built with.
    pub fn initial(&self) -> Duration {
        self.initial
    }

    /// The probe timeout before backoff (RFC 9002 §6.2.1):
    /// smoothed + max(4 × rttvar, kGranularity) + max_ack_delay.
    pub fn pto(&self, max_ack_delay: Duration) -> Duration {
        self.smoothed + (self.rttvar * 4).max(GRANULARITY) + max_ack_delay
    }
}

impl Default for RttEstimator {
    /// An estimator starting from [`INITIAL_RTT`].
    fn default() -> Self {
        RttEstimator::new(INITIAL_RTT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn before_a_sample_the_initial_rtt_rules_the_pto() {
        // Given a fresh estimator,
        let rtt = RttEstimator::default();
        // then it answers with 333 ms, rttvar 166.5 ms, and a PTO of
        // 333 + 4 × 166.5 + 25 = 1024 ms.
        assert!(!rtt.has_sample());
        assert_eq!(rtt.smoothed(), 333 * MS);
        assert_eq!(rtt.rttvar(), Duration::from_micros(166_500));
        assert_eq!(rtt.pto(MAX_ACK_DELAY), 1024 * MS);
    }

    #[test]
    fn the_first_sample_sets_everything_and_ignores_its_ack_delay() {
        // Given a fresh estimator, when the first sample is 100 ms with 20 ms
        // of claimed ack delay,
        let mut rtt = RttEstimator::default();
        rtt.update(100 * MS, 20 * MS);
        // then smoothed = min = latest = 100 ms and rttvar = 50 ms.
        assert_eq!((rtt.smoothed(), rtt.min(), rtt.latest(), rtt.rttvar()), (100 * MS, 100 * MS, 100 * MS, 50 * MS));
        assert_eq!(rtt.pto(MAX_ACK_DELAY), (100 + 200 + 25) * MS);
    }

    #[test]
    fn ack_delay_is_subtracted_only_above_min_rtt_and_capped() {
        // Given a first sample of 100 ms,
        let mut rtt = RttEstimator::default();
        rtt.update(100 * MS, Duration::ZERO);
        // when a 120 ms sample says 20 ms of it was ack delay, then the
        // adjusted 100 ms leaves smoothed at 100 ms;
        rtt.update(120 * MS, 20 * MS);
        assert_eq!(rtt.smoothed(), 100 * MS);
        assert_eq!(rtt.latest(), 120 * MS);
        // when a 110 ms sample claims 30 ms (it would fall below min_rtt), it
        // is taken whole: smoothed = (7 × 100 + 110) / 8;
        rtt.update(110 * MS, 30 * MS);
        assert_eq!(rtt.smoothed(), Duration::from_micros(101_250));
        // and a claimed hour of ack delay counts as 25 ms at most.
        let mut capped = RttEstimator::default();
        capped.update(100 * MS, Duration::ZERO);
        capped.update(200 * MS, Duration::from_secs(3600));
        assert_eq!(capped.smoothed(), (7 * 100 * MS + 175 * MS) / 8);
    }

    #[test]
    fn min_rtt_follows_the_smallest_raw_sample() {
        // Given samples of 100, 80 (with ack delay) and 120 ms,
        let mut rtt = RttEstimator::default();
        rtt.update(100 * MS, Duration::ZERO);
        rtt.update(80 * MS, 10 * MS);
        rtt.update(120 * MS, Duration::ZERO);
        // then min is the raw 80 ms, not 70.
        assert_eq!(rtt.min(), 80 * MS);
    }

    #[test]
    fn the_pto_keeps_one_granule_of_variance() {
        // Given identical samples (rttvar decays towards zero),
        let mut rtt = RttEstimator::default();
        for _ in 0..100 {
            rtt.update(10 * MS, Duration::ZERO);
        }
        // then the PTO still adds at least 1 ms.
        assert!(rtt.rttvar() * 4 < GRANULARITY);
        assert_eq!(rtt.pto(Duration::ZERO), 11 * MS);
    }
}
