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
//!    previous one has finished and takes `size * 8 / bandwidth`. Without a
//!    `buffer` the queue is unbounded (bufferbloat, not tail drop); with one,
//!    a packet that does not fit is dropped at the tail (see
//!    [`LinkSpec::buffer`]): it takes no bandwidth and draws nothing from the
//!    loss chain, and its [`Arrivals`] say [`Arrivals::tail_dropped`].
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
    /// Bytes the interface queue holds; `None` is unbounded. What it bounds
    /// is the backlog: every byte accepted and not yet fully serialised,
    /// the packet on the wire included. A packet is accepted when the
    /// backlog plus its size fits, and always when the interface is idle (a
    /// buffer smaller than one packet sends one at a time rather than
    /// none). So no accepted packet waits longer than `buffer * 8 /
    /// bandwidth` before its last bit leaves. Needs `bandwidth`: without
    /// it nothing queues and the buffer never fills.
    pub buffer: Option<u64>,
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
    /// How far `busy_until` is past the exact end of the queue, for the
    /// buffer's accounting (kept only when the link has one), in
    /// nanoseconds times the bandwidth in bit/s (a bit is `10^9` of them).
    /// `busy_until` rounds each packet up to a whole nanosecond; the
    /// backlog must not count those roundings as bytes. Under one
    /// bandwidth's worth per packet of the busy period, so a `u64`, which
    /// keeps a bandwidth-limited link on three cache lines.
    rounding: u64,
    /// Packets dropped because the buffer was full.
    tail_drops: u64,
    spec: LinkSpec,
}

/// The arrival times of one transmitted packet's copies, earliest first:
/// none (lost), one, or two (duplicated). A slice of them, held inline
/// because the engine asks for one per packet and hop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Arrivals {
    times: [Duration; 2],
    len: u8,
    tail_dropped: bool,
}

impl Arrivals {
    /// True when the packet was lost because the interface queue was full
    /// (then there are no arrivals), not to the link's loss or a partition.
    pub fn tail_dropped(&self) -> bool {
        self.tail_dropped
    }

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
            rounding: 0,
            tail_drops: 0,
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

    /// Packets this link dropped at the tail of a full buffer so far.
    pub fn tail_drops(&self) -> u64 {
        self.tail_drops
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
        let Some(sent) = self.serialise(now, size) else {
            self.tail_drops += 1;
            arrivals.tail_dropped = true;
            return arrivals;
        };
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
    /// bit has left, or `None` when the buffer has no room for it.
    fn serialise(&mut self, now: Duration, size: usize) -> Option<Duration> {
        let Some(bandwidth) = self.spec.bandwidth.filter(|&b| b > 0) else {
            return Some(now);
        };
        let bits = (size as u128) * 8;
        let exact_end = match self.spec.buffer {
            None => None,
            Some(buffer) => Some(self.admit(now, bits, bandwidth, buffer)?),
        };
        let nanos = (bits * 1_000_000_000).div_ceil(u128::from(bandwidth));
        let busy = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        let start = now.max(self.busy_until);
        self.busy_until = start.saturating_add(busy);
        if let Some(end) = exact_end {
            let rounding = scaled(self.busy_until, bandwidth).saturating_sub(end);
            self.rounding = u64::try_from(rounding).unwrap_or(u64::MAX);
        }
        Some(self.busy_until)
    }

    /// Tail drop: whether a packet of `bits` arriving at `now` fits, that
    /// is when the backlog plus the packet fits in `buffer` bytes, or the
    /// queue is empty. If so, the exact end of the queue with it (in the
    /// units of `rounding`): exact integer arithmetic, so a packet that
    /// fits exactly is accepted at every bandwidth.
    fn admit(&self, now: Duration, bits: u128, bandwidth: u64, buffer: u64) -> Option<u128> {
        const NANOS_PER_SEC: u128 = 1_000_000_000;
        let now = scaled(now, bandwidth);
        let end = scaled(self.busy_until, bandwidth).saturating_sub(u128::from(self.rounding));
        let start = end.max(now);
        let backlog = start - now;
        let packet = bits.saturating_mul(NANOS_PER_SEC);
        let room = u128::from(buffer).saturating_mul(8 * NANOS_PER_SEC);
        if backlog > 0 && backlog.saturating_add(packet) > room {
            return None;
        }
        Some(start.saturating_add(packet))
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

/// An instant in nanoseconds times `bandwidth` (bit/s): the unit in which a
/// packet's serialisation ends exactly, a bit being `10^9` of them.
fn scaled(at: Duration, bandwidth: u64) -> u128 {
    at.as_nanos().saturating_mul(u128::from(bandwidth))
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
    fn a_full_buffer_drops_at_the_tail_and_passes_again_once_drained() {
        // Given 1 Mbit/s (a 1000-byte packet takes 8 ms), 10 ms latency and
        // a 3000-byte buffer,
        let spec = LinkSpec { latency: ms(10), bandwidth: Some(1_000_000), buffer: Some(3000), ..LinkSpec::default() };
        let mut l = link(spec);
        // when ten 1000-byte packets leave at the same instant,
        let burst: Vec<Arrivals> = (0..10).map(|_| l.transmit(ms(0), 1000)).collect();
        // then the three that fit arrive one serialisation apart and the
        // seven behind them are dropped at the tail, counted as such;
        let delivered: Vec<Vec<Duration>> = burst.iter().filter(|a| !a.is_empty()).map(|a| a.to_vec()).collect();
        assert_eq!(delivered, [vec![ms(18)], vec![ms(26)], vec![ms(34)]]);
        assert!(burst[..3].iter().all(|a| !a.tail_dropped()));
        assert!(burst[3..].iter().all(|a| a.is_empty() && a.tail_dropped()));
        assert_eq!(l.tail_drops(), 7);
        // when one packet has left (8 ms), room for exactly one more opens,
        // and the dropped ones took no bandwidth: it queues behind the three;
        assert_eq!(l.transmit(ms(8), 1000).to_vec(), vec![ms(42)]);
        assert!(l.transmit(ms(8), 1000).tail_dropped());
        // and once the queue has drained (32 ms), a burst of three passes again.
        let again: Vec<Vec<Duration>> = (0..3).map(|_| l.transmit(ms(32), 1000).to_vec()).collect();
        assert_eq!(again, [vec![ms(50)], vec![ms(58)], vec![ms(66)]]);
        assert_eq!(l.tail_drops(), 8);
    }

    #[test]
    fn a_buffer_smaller_than_a_packet_sends_one_at_a_time() {
        // Given a 500-byte buffer at 1 Mbit/s,
        let mut l = link(LinkSpec { bandwidth: Some(1_000_000), buffer: Some(500), ..LinkSpec::default() });
        // when 1000-byte packets arrive together, then after the queue drains,
        let together: Vec<bool> = (0..3).map(|_| l.transmit(ms(0), 1000).is_empty()).collect();
        let after = l.transmit(ms(8), 1000).to_vec();
        // then only the one that found the interface idle goes each time.
        assert_eq!(together, [false, true, true]);
        assert_eq!(after, vec![ms(16)]);
    }

    #[test]
    fn a_packet_that_fits_exactly_is_accepted_whatever_the_rounding() {
        // Given 3 Gbit/s, where a 1000-byte packet takes 2666.67 ns (each
        // departure time rounds up by a third of a nanosecond, a bit's worth
        // at this rate), and room for exactly four,
        let spec = LinkSpec { bandwidth: Some(3_000_000_000), buffer: Some(4000), ..LinkSpec::default() };
        let mut l = link(spec);
        // when six arrive at once,
        let lost: Vec<bool> = (0..6).map(|_| l.transmit(ms(0), 1000).is_empty()).collect();
        // then exactly four are accepted;
        assert_eq!(lost, [false, false, false, false, true, true]);
        // and once the first has left (2667 ns, rounded up), exactly one more.
        let later: Vec<bool> = (0..2).map(|_| l.transmit(Duration::from_nanos(2667), 1000).is_empty()).collect();
        assert_eq!(later, [false, true]);
    }

    #[test]
    fn without_a_buffer_nothing_is_dropped_at_the_tail() {
        // Given an unbounded queue (today's default) at 1 Mbit/s,
        let mut l = link(LinkSpec { bandwidth: Some(1_000_000), ..LinkSpec::default() });
        // when a thousand packets arrive at once, then every one is delivered.
        assert!((0..1000).all(|_| l.transmit(ms(0), 1000).len() == 1));
        assert_eq!(l.tail_drops(), 0);
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
    fn a_link_spans_three_cache_lines_buffer_or_not() {
        // The plain path reads the first line only; a bandwidth-limited
        // link, with or without a buffer, three (see `Link`).
        assert_eq!(std::mem::size_of::<Link>(), 3 * 64);
        assert!(std::mem::offset_of!(Link, plain) < 64);
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
            LinkSpec { bandwidth: Some(1_000_000), buffer: Some(3000), ..LinkSpec::default() },
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
