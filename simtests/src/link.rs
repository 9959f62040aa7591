//! A lossy, jittery, bandwidth-limited link, one direction at a time.
//!
//! A peer's `link` in a scenario is its access link; the engine builds one
//! [`Link`] per direction from the same [`LinkSpec`], each with its own forked
//! generator, and asks [`Link::transmit`] when each copy of a packet arrives.
//!
//! Per packet, in this order:
//! 1. **Partition**: while [`Link::set_partitioned`] is on, every packet is
//!    lost at the interface and takes no bandwidth. Packets already in flight
//!    when the partition starts still arrive; the engine may drop them too.
//! 2. **Bandwidth**: a FIFO serialisation queue. A packet starts when the
//!    previous one has finished and takes `size * 8 / bandwidth`; the queue
//!    is unbounded (bufferbloat, not tail drop).
//! 3. **Loss**: independent with probability `loss`, or bursty with a
//!    Gilbert-Elliott chain when `loss_burst` is set (see [`LinkSpec`]).
//!    A lost packet has still used the bandwidth.
//! 4. **Delay**: `latency` plus jitter uniform in `[-jitter, +jitter]`, the
//!    sum clamped at 0 (a packet never arrives before it was sent). Jitter
//!    alone can reorder packets sent closer together than the jitter.
//! 5. **Reordering**: with probability `reorder`, a packet is held back an
//!    extra `max(latency, 5ms)`, so packets sent after it overtake it.
//! 6. **Duplication**: with probability `duplicate`, a delivered packet
//!    arrives twice, each copy with its own jitter.

use std::time::Duration;

use crate::rng::Rng;

/// The conditions of one link. The default is an ideal link: no delay, no
/// loss, unlimited bandwidth.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinkSpec {
    /// One-way base delay.
    pub latency: Duration,
    /// Half-width of the uniform jitter added to `latency`.
    pub jitter: Duration,
    /// Long-run fraction of packets lost, in `[0, 1]`.
    pub loss: f64,
    /// Mean length of a loss burst in packets (`>= 1`), making loss bursty
    /// (Gilbert-Elliott: a lossless good state and an all-lost bad state).
    /// With burst length `b` the chain reaches at most `b / (b + 1)` loss;
    /// a higher `loss` is clamped there (except `loss = 1`, which loses
    /// everything). `None`: independent losses.
    pub loss_burst: Option<f64>,
    /// Probability that a delivered packet arrives twice, in `[0, 1]`.
    pub duplicate: f64,
    /// Probability that a packet is held back so later ones overtake it.
    pub reorder: f64,
    /// Bits per second; `None` is unlimited.
    pub bandwidth: Option<u64>,
}

/// One direction of a link: the queue, the loss chain and the generator.
///
/// Laid out by hand (`repr(C)`, cache-line aligned): the first line holds
/// all that a plain link (latency and jitter only, the usual case) reads per
/// packet, so sending over it costs one cache line, not three. A simulation
/// of a thousand hosts touches each link rarely, and every line is a miss.
#[derive(Clone, Debug)]
#[repr(C, align(64))]
pub struct Link {
    rng: Rng,
    /// The latency and jitter in nanoseconds, when both fit in a `u64`.
    latency_ns: u64,
    jitter_ns: u64,
    partitioned: bool,
    /// Latency and jitter are all the link applies: no loss, duplication,
    /// reordering or bandwidth limit, and both fit in nanoseconds.
    plain: bool,
    /// Gilbert-Elliott state: true while in the all-lost bad state.
    in_burst: bool,
    /// When the interface finishes sending the last queued packet.
    busy_until: Duration,
    spec: LinkSpec,
}

/// The arrival times of one transmitted packet's copies, earliest first:
/// none (lost), one, or two (duplicated). A slice of them, held inline
/// because the engine asks for one per packet and hop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Arrivals {
    times: [Duration; 2],
    len: u8,
}

impl Arrivals {
    fn push(&mut self, at: Duration) {
        self.times[usize::from(self.len)] = at;
        self.len += 1;
    }
}

impl std::ops::Deref for Arrivals {
    type Target = [Duration];

    fn deref(&self) -> &[Duration] {
        &self.times[..usize::from(self.len)]
    }
}

impl IntoIterator for Arrivals {
    type Item = Duration;
    type IntoIter = std::iter::Take<std::array::IntoIter<Duration, 2>>;

    fn into_iter(self) -> Self::IntoIter {
        self.times.into_iter().take(usize::from(self.len))
    }
}

/// Extra delay of a reordered packet when the latency is shorter.
pub const MIN_REORDER_DELAY: Duration = Duration::from_millis(5);

impl Link {
    /// A link with empty queue, in the good loss state, not partitioned.
    pub fn new(spec: LinkSpec, rng: Rng) -> Link {
        let latency_ns = u64::try_from(spec.latency.as_nanos()).ok();
        let jitter_ns = u64::try_from(spec.jitter.as_nanos()).ok();
        // Each test is written as the full path's, so a plain link draws
        // from its generator exactly as the full path would.
        let plain = latency_ns.is_some()
            && jitter_ns.is_some()
            && spec.bandwidth.filter(|&b| b > 0).is_none()
            && spec.loss_burst.is_none()
            && never(spec.loss)
            && never(spec.duplicate)
            && never(spec.reorder);
        Link {
            rng,
            latency_ns: latency_ns.unwrap_or(0),
            jitter_ns: jitter_ns.unwrap_or(0),
            partitioned: false,
            plain,
            in_burst: false,
            busy_until: Duration::ZERO,
            spec,
        }
    }

    /// The conditions this link applies.
    pub fn spec(&self) -> &LinkSpec {
        &self.spec
    }

    /// The shortest time any packet takes across this link: its latency
    /// less its jitter (queueing behind a bandwidth limit and reordering only
    /// add to it). The engine's lookahead (see `engine::parallel`).
    pub fn min_delay(&self) -> Duration {
        self.spec.latency.saturating_sub(self.spec.jitter)
    }

    /// Cuts (`true`) or restores (`false`) the link.
    pub fn set_partitioned(&mut self, partitioned: bool) {
        self.partitioned = partitioned;
    }

    /// True while the link is cut.
    pub fn is_partitioned(&self) -> bool {
        self.partitioned
    }

    /// Sends a packet of `size` bytes at `now` and returns the arrival time of
    /// each copy, earliest first: empty when lost, two when duplicated.
    pub fn transmit(&mut self, now: Duration, size: usize) -> Arrivals {
        let mut arrivals = Arrivals::default();
        if self.partitioned {
            return arrivals;
        }
        if self.plain {
            let nanos = self.jittered(i128::from(self.latency_ns), i128::from(self.jitter_ns));
            arrivals.push(now + nanos_to_duration(nanos));
            return arrivals;
        }
        let sent = self.serialise(now, size);
        if self.lose() {
            return arrivals;
        }
        arrivals.push(sent + self.delay());
        if self.spec.duplicate > 0.0 && self.rng.unit() < self.spec.duplicate {
            arrivals.push(sent + self.delay());
            // Both slots are filled: sorting the array sorts the copies.
            arrivals.times.sort();
        }
        arrivals
    }

    /// Queues the packet behind the previous ones and returns when its last
    /// bit has left.
    fn serialise(&mut self, now: Duration, size: usize) -> Duration {
        let Some(bandwidth) = self.spec.bandwidth.filter(|&b| b > 0) else {
            return now;
        };
        let bits = (size as u128) * 8;
        let nanos = (bits * 1_000_000_000).div_ceil(u128::from(bandwidth));
        let busy = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        let start = now.max(self.busy_until);
        self.busy_until = start.saturating_add(busy);
        self.busy_until
    }

    fn lose(&mut self) -> bool {
        let loss = self.spec.loss.clamp(0.0, 1.0);
        if loss >= 1.0 {
            return true;
        }
        match self.spec.loss_burst {
            None => loss > 0.0 && self.rng.unit() < loss,
            Some(burst) => {
                // Gilbert-Elliott: leave the bad state with r = 1/b so bursts
                // last b packets on average; enter it with p such that the
                // stationary bad fraction p / (p + r) equals `loss`.
                let leave = 1.0 / burst.max(1.0);
                let enter = (loss * leave / (1.0 - loss)).min(1.0);
                let flip = if self.in_burst { leave } else { enter };
                if self.rng.unit() < flip {
                    self.in_burst = !self.in_burst;
                }
                self.in_burst
            }
        }
    }

    fn delay(&mut self) -> Duration {
        let nanos = self.jittered(self.spec.latency.as_nanos() as i128, self.spec.jitter.as_nanos() as i128);
        let mut delay = nanos_to_duration(nanos);
        if self.spec.reorder > 0.0 && self.rng.unit() < self.spec.reorder {
            delay += self.spec.latency.max(MIN_REORDER_DELAY);
        }
        delay
    }

    /// `latency`, plus a uniform draw in [-jitter, +jitter] when there is
    /// jitter, in nanoseconds.
    fn jittered(&mut self, latency: i128, jitter: i128) -> i128 {
        let mut nanos = latency;
        if jitter > 0 {
            nanos += (self.rng.unit() * (2 * jitter + 1) as f64) as i128 - jitter;
        }
        nanos
    }
}

/// True when a probability never fires: the full path tests `p > 0.0`
/// before drawing, so zero, a negative value or NaN neither draws nor fires.
fn never(probability: f64) -> bool {
    probability.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
}

/// A delay in nanoseconds as a `Duration`, clamped to [0, `u64::MAX` ns].
fn nanos_to_duration(nanos: i128) -> Duration {
    Duration::from_nanos(u64::try_from(nanos.max(0)).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn link(spec: LinkSpec) -> Link {
        Link::new(spec, Rng::new(42))
    }

    #[test]
    fn an_ideal_link_delivers_once_after_the_latency() {
        let mut l = link(LinkSpec { latency: ms(20), ..LinkSpec::default() });
        assert_eq!(l.transmit(ms(100), 1200).to_vec(), vec![ms(120)]);
    }

    #[test]
    fn bandwidth_queues_packets_behind_each_other() {
        // Given 1 Mbit/s and 10 ms latency,
        let mut l = link(LinkSpec { latency: ms(10), bandwidth: Some(1_000_000), ..LinkSpec::default() });
        // when three 1250-byte packets (10 ms each on the wire) leave at once
        // and a fourth after the queue has drained,
        let burst: Vec<_> = (0..3).map(|_| l.transmit(ms(0), 1250).to_vec()).collect();
        let later = l.transmit(ms(100), 1250).to_vec();
        // then each waits for the previous one.
        assert_eq!(burst, [vec![ms(20)], vec![ms(30)], vec![ms(40)]]);
        assert_eq!(later, vec![ms(120)]);
    }

    #[test]
    fn jitter_stays_within_bounds_and_never_goes_below_zero_delay() {
        // Given 1 ms latency and 5 ms jitter,
        let mut l = link(LinkSpec { latency: ms(1), jitter: ms(5), ..LinkSpec::default() });
        // when many packets are sent at t = 1 s,
        let arrivals: Vec<Duration> = (0..2000).flat_map(|_| l.transmit(ms(1000), 100)).collect();
        // then all arrive within [1000, 1006] ms, the earliest exactly at the
        // send time (clamped), the latest within a millisecond of the bound.
        let (min, max) = (arrivals.iter().min().unwrap(), arrivals.iter().max().unwrap());
        assert_eq!(*min, ms(1000));
        assert!(*max <= ms(1006) && *max > ms(1005), "{max:?}");
    }

    #[test]
    fn random_loss_matches_its_rate() {
        let mut l = link(LinkSpec { loss: 0.2, ..LinkSpec::default() });
        let lost = (0..10_000).filter(|_| l.transmit(ms(0), 100).is_empty()).count();
        assert!((1800..=2200).contains(&lost), "{lost}");
    }

    #[test]
    fn bursty_loss_keeps_its_rate_and_mean_burst_length() {
        // Given 20% loss in bursts of 4 packets on average,
        let mut l = link(LinkSpec { loss: 0.2, loss_burst: Some(4.0), ..LinkSpec::default() });
        // when 20 000 packets are sent,
        let lost: Vec<bool> = (0..20_000).map(|_| l.transmit(ms(0), 100).is_empty()).collect();
        // then about 20% are lost, in runs of about 4.
        let total = lost.iter().filter(|&&x| x).count();
        let bursts = lost.windows(2).filter(|w| w[1] && !w[0]).count();
        let mean_burst = total as f64 / bursts as f64;
        assert!((3600..=4400).contains(&total), "{total}");
        assert!((3.5..=4.5).contains(&mean_burst), "{mean_burst}");
    }

    #[test]
    fn total_loss_loses_everything_with_or_without_bursts() {
        for burst in [None, Some(1.0), Some(3.0)] {
            let mut l = link(LinkSpec { loss: 1.0, loss_burst: burst, ..LinkSpec::default() });
            assert!((0..100).all(|_| l.transmit(ms(0), 100).is_empty()), "{burst:?}");
        }
    }

    #[test]
    fn duplication_delivers_two_copies() {
        let mut l = link(LinkSpec { latency: ms(5), duplicate: 1.0, ..LinkSpec::default() });
        assert_eq!(l.transmit(ms(0), 100).to_vec(), vec![ms(5), ms(5)]);
    }

    #[test]
    fn no_packet_arrives_sooner_than_the_minimum_delay() {
        // Given links with every kind of condition,
        let specs = [
            LinkSpec { latency: ms(20), jitter: ms(3), ..LinkSpec::default() },
            LinkSpec { latency: ms(2), jitter: ms(5), ..LinkSpec::default() },
            LinkSpec { latency: ms(10), jitter: ms(4), reorder: 0.5, duplicate: 0.5, ..LinkSpec::default() },
            LinkSpec { latency: ms(7), jitter: ms(1), bandwidth: Some(1_000_000), loss: 0.2, ..LinkSpec::default() },
        ];
        for spec in specs {
            let mut l = link(spec.clone());
            // when thousands of packets cross, then none beats the bound.
            for k in 0..5000u64 {
                let now = Duration::from_micros(k * 37);
                for at in l.transmit(now, 1200) {
                    assert!(at >= now + l.min_delay(), "{spec:?}: {at:?} < {now:?} + {:?}", l.min_delay());
                }
            }
        }
    }

    #[test]
    fn reordered_packets_are_overtaken() {
        // Given every packet held back, then half of them,
        let mut always = link(LinkSpec { latency: ms(20), reorder: 1.0, ..LinkSpec::default() });
        assert_eq!(always.transmit(ms(0), 100).to_vec(), vec![ms(40)]);
        let mut half = link(LinkSpec { latency: ms(20), reorder: 0.5, ..LinkSpec::default() });
        // when packets leave 1 ms apart,
        let arrivals: Vec<Duration> = (0..100).flat_map(|i| half.transmit(ms(i), 100)).collect();
        // then some arrive after a packet sent later.
        let overtaken = arrivals.windows(2).filter(|w| w[1] < w[0]).count();
        assert!(overtaken > 10, "{overtaken}");
    }

    #[test]
    fn a_partitioned_link_loses_everything_until_healed() {
        let mut l = link(LinkSpec { latency: ms(10), bandwidth: Some(1_000_000), ..LinkSpec::default() });
        l.set_partitioned(true);
        assert!(l.transmit(ms(0), 1250).is_empty());
        l.set_partitioned(false);
        // The dropped packet took no bandwidth.
        assert_eq!(l.transmit(ms(0), 1250).to_vec(), vec![ms(20)]);
    }

    #[test]
    fn a_plain_link_delivers_exactly_as_the_full_path_would() {
        // Given links with only latency and jitter (and one without jitter),
        for jitter in [ms(0), ms(3)] {
            let spec = LinkSpec { latency: ms(20), jitter, ..LinkSpec::default() };
            let mut plain = Link::new(spec.clone(), Rng::new(5));
            assert!(plain.plain, "latency and jitter alone make a plain link");
            // when the same packets go through it and through the full path,
            let mut full = Link::new(spec, Rng::new(5));
            full.plain = false;
            // then every arrival is the same.
            for i in 0..500 {
                assert_eq!(plain.transmit(ms(i), 100), full.transmit(ms(i), 100), "packet {i}");
            }
        }
        // Any other condition takes the full path.
        for spec in [
            LinkSpec { loss: 0.1, ..LinkSpec::default() },
            LinkSpec { loss_burst: Some(3.0), ..LinkSpec::default() },
            LinkSpec { duplicate: 0.1, ..LinkSpec::default() },
            LinkSpec { reorder: 0.1, ..LinkSpec::default() },
            LinkSpec { bandwidth: Some(1_000_000), ..LinkSpec::default() },
        ] {
            assert!(!Link::new(spec.clone(), Rng::new(5)).plain, "{spec:?}");
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_arrivals() {
        let spec = LinkSpec {
            latency: ms(30),
            jitter: ms(10),
            loss: 0.3,
            duplicate: 0.1,
            reorder: 0.1,
            ..LinkSpec::default()
        };
        let run = |seed| {
            let mut l = Link::new(spec.clone(), Rng::new(seed));
            (0..200).map(|i| l.transmit(ms(i), 100).to_vec()).collect::<Vec<_>>()
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
    }
}
