//! What each side of a session does for its strategy, and the arithmetic of
//! port prediction and birthday probing (DESIGN §3, "Strategies").
//!
//! # Roles
//!
//! The server's offer names the strategy and the peer's measured profile; with
//! its own profile each side knows its [`PunchRole`]:
//!
//! | strategy | my NAT | role |
//! |---|---|---|
//! | `punch` | any | [`PunchRole::Punch`]: openers and probes to the peer's candidates |
//! | `predict` | sequential symmetric, peer a cone | [`PunchRole::Predicted`] |
//! | `predict` | cone, peer sequential symmetric | [`PunchRole::Predicting`] |
//! | `predict` | both sequential symmetric | [`PunchRole::PredictBoth`] |
//! | `birthday` | symmetric | [`PunchRole::Pool`] |
//! | `birthday` | cone | [`PunchRole::Prober`] |
//!
//! # Prediction
//!
//! The predicted side punches from a fresh socket and samples its NAT's
//! allocator on it: a Binding request to the server's primary address, then,
//! when the answer is back, two more sent back to back, to the alternate
//! address and the crossed one. The back-to-back pair is microseconds apart,
//! so its step is the allocator's own (it refines the profile's delta, which
//! a neighbour opening flows at the discovery's own pace can overstate); the
//! step from the first sample to the pair, one round trip, counts the ports
//! other hosts took meanwhile. The next mappings, the ones the openers
//! create, will be `base + k * delta` (`base` the pair's last). The window
//! `k = 1..=W` it announces covers its own openers plus three times the ports
//! the neighbours are expected to take between the pair and the openers
//! (their measured rate times that delay), bounded by
//! [`ClientConfig::prediction_window_min`](crate::client::ClientConfig::prediction_window_min)
//! and `prediction_window_max`.
//!
//! Facing a port-restricted cone, the predicted side opens toward the cone's
//! candidates first and announces the window; the cone opens toward every
//! predicted port (low TTL, as always), and once both announced their openers
//! the predicted side's probes from its new mapping pass the cone's filter.
//!
//! Two sequential symmetric NATs both announce a window of one port before
//! opening: the mapping their next packet will make. Then each sends a single
//! opener, to the other's announced port; it creates exactly the mapping it
//! announced, toward exactly the mapping the peer announced, so each NAT now
//! holds the 5-tuple the other's probes arrive on. One opener each is
//! deliberate: several openers could reach the NAT in another order than they
//! were sent (jitter reorders back-to-back packets), and the k-th mapping
//! would no longer meet the peer's k-th. This needs neither NAT to hand out
//! a port to anyone else in between; when one does, the attempt fails and the
//! next one, from fresh samples, tries again.
//!
//! # Birthday probing
//!
//! The symmetric side opens a pool of `n` sockets and, from each, a low-TTL
//! opener toward the cone's server-observed address: `n` mappings on random ports, each
//! accepting the cone's address. The cone then probes distinct random ports
//! of the symmetric side's public address; the first probe that hits one of
//! the `n` mappings is answered, and both sides have a path. With `R`
//! possible ports and `k` probes the chance of success is
//! `1 - prod_{i<k} (R - n - i) / (R - i)` ([`birthday_success`]); for the
//! defaults (`n` = 256, `k` = 1,024, `R` = 64,512) it is 98.3 %.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::nat::{NatProfile, Strategy};
use crate::rng::Rng;

/// The external ports birthday probing draws from: what Linux and most
/// NATs allocate from (everything above the well-known ports).
pub const BIRTHDAY_PORTS: (u16, u16) = (1024, 65535);

/// What one side does in a session's punching attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PunchRole {
    /// No direct path is attempted.
    RelayOnly,
    /// Openers and probes to the peer's candidates.
    Punch,
    /// My NAT is sequential symmetric, the peer's a cone: I sample, open
    /// toward the peer and announce my predicted window.
    Predicted {
        /// My NAT's measured step.
        delta: i32,
    },
    /// The peer's NAT is sequential symmetric: I open its predicted window.
    Predicting,
    /// Both NATs sequential symmetric: both announce, then open in order.
    PredictBoth {
        /// My NAT's measured step.
        delta: i32,
    },
    /// My NAT is symmetric and unpredictable: I open a pool of mappings.
    Pool,
    /// The peer opens a pool: I probe random ports of its address.
    Prober,
}

impl PunchRole {
    /// My role for `strategy`, from both measured profiles.
    pub(crate) fn of(strategy: Strategy, mine: &NatProfile, peer: &NatProfile) -> PunchRole {
        match strategy {
            Strategy::RelayOnly | Strategy::Pending => PunchRole::RelayOnly,
            Strategy::Punch => PunchRole::Punch,
            Strategy::Predict => match (mine.sequential_delta(), peer.sequential_delta()) {
                (Some(delta), Some(_)) => PunchRole::PredictBoth { delta },
                (Some(delta), None) => PunchRole::Predicted { delta },
                (None, _) => PunchRole::Predicting,
            },
            Strategy::Birthday if mine.is_symmetric() => PunchRole::Pool,
            Strategy::Birthday => PunchRole::Prober,
        }
    }

    /// True when I need the peer's window before opening.
    pub(crate) fn needs_peer_prediction(self) -> bool {
        matches!(self, PunchRole::Predicting | PunchRole::PredictBoth { .. })
    }
}

/// Samples of the predicted side's allocator (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AllocatorSamples {
    /// The mapping toward the server's primary address.
    pub(crate) first: SocketAddr,
    /// The mappings of the back-to-back requests one round trip later, in
    /// the order they were answered (the NAT may have seen them in any order).
    pub(crate) burst: Vec<SocketAddr>,
    /// Time between the first answer and the last.
    pub(crate) gap: Duration,
}

impl AllocatorSamples {
    /// The burst's mappings on the sampled IP, ordered along `delta`.
    fn ordered(&self, delta: i32) -> Vec<u16> {
        let mut ports: Vec<u16> =
            self.burst.iter().filter(|b| b.ip() == self.first.ip()).map(SocketAddr::port).collect();
        ports.sort_unstable();
        if delta < 0 {
            ports.reverse();
        }
        ports
    }

    /// The last mapping made: the burst's farthest along `delta`.
    pub(crate) fn base(&self, delta: i32) -> SocketAddr {
        self.ordered(delta).last().map_or(self.first, |p| SocketAddr::new(self.first.ip(), *p))
    }

    /// The step between the burst's two mappings: made microseconds apart,
    /// it is the allocator's own step unless a neighbour slipped in between.
    fn burst_step(&self) -> Option<u32> {
        let ports = self.ordered(1);
        let step = ports.last()?.checked_sub(*ports.first()?)?;
        (ports.len() == 2 && step > 0).then_some(u32::from(step))
    }

    /// Ports other hosts took during the round trip between the first sample
    /// and the burst, or `None` when the samples do not fit the step (the
    /// allocator changed, or reused a port): then the widest window is the
    /// safe guess.
    pub(crate) fn neighbour_ports(&self, delta: i32) -> Option<u32> {
        let near = *self.ordered(delta).first()?;
        let step = i32::from(near) - i32::from(self.first.port());
        if delta == 0 || step % delta != 0 || step / delta < 1 {
            return None;
        }
        Some((step / delta - 1) as u32)
    }
}

/// The step to predict with: the profile's, refined by the burst (the true
/// step divides both: neighbours only ever add whole steps). The profile's
/// step alone can be overstated when a neighbour opened flows at the same
/// pace as the discovery's requests.
pub(crate) fn refine_delta(profile_delta: i32, samples: Option<&AllocatorSamples>) -> i32 {
    match samples.and_then(AllocatorSamples::burst_step) {
        Some(step) if step <= crate::client::discovery::MAX_SEQUENTIAL_STEP as u32 => {
            profile_delta.signum() * crate::client::discovery::gcd(profile_delta.unsigned_abs(), step) as i32
        }
        _ => profile_delta,
    }
}

/// The number of predicted ports to announce (see the module docs).
///
/// `openers` is how many mappings my own openers take before the one the
/// peer must hit; `delay` the time from my last sample to my openers.
pub(crate) fn prediction_window(
    samples: Option<&AllocatorSamples>,
    delta: i32,
    openers: usize,
    delay: Duration,
    min: u16,
    max: u16,
) -> u16 {
    let max = max.max(1);
    let Some(samples) = samples else { return max };
    let Some(taken) = samples.neighbour_ports(delta) else { return max };
    let gap = samples.gap.as_secs_f64().max(1e-3);
    // The burst's mappings were made about half a round trip before their
    // answers arrived; the openers cross the NAT `delay` after that.
    let exposure = delay.as_secs_f64() + gap / 2.0;
    let expected = f64::from(taken) / gap * exposure;
    let wanted = openers as f64 + 3.0 * expected + 1.0;
    (wanted.ceil() as u64).clamp(u64::from(min.max(1)), u64::from(max)) as u16
}

/// The ports `base + k * delta` for `k` in `1..=window`, skipping any that
/// fall outside the port space.
pub(crate) fn predicted_ports(base: SocketAddr, delta: i32, window: u16) -> Vec<SocketAddr> {
    (1..=i64::from(window))
        .filter_map(|k| {
            let port = i64::from(base.port()) + k * i64::from(delta);
            u16::try_from(port).ok().filter(|p| *p != 0).map(|p| SocketAddr::new(base.ip(), p))
        })
        .collect()
}

/// The chance that `probes` distinct random ports out of `range` hit at
/// least one of `pool` open mappings (sampling without replacement).
pub fn birthday_success(range: u32, pool: u32, probes: u32) -> f64 {
    if pool == 0 {
        return 0.0;
    }
    if u64::from(pool) + u64::from(probes) > u64::from(range) {
        return 1.0;
    }
    let (range, pool) = (f64::from(range), f64::from(pool));
    let mut miss = 1.0;
    for i in 0..probes {
        let i = f64::from(i);
        miss *= (range - pool - i) / (range - i);
    }
    1.0 - miss
}

/// Distinct random ports of one address, for the prober.
#[derive(Debug)]
pub(crate) struct PortSampler {
    ip: IpAddr,
    used: BTreeSet<u16>,
}

impl PortSampler {
    pub(crate) fn new(ip: IpAddr) -> Self {
        PortSampler { ip, used: BTreeSet::new() }
    }

    /// How many ports were drawn.
    pub(crate) fn drawn(&self) -> u32 {
        self.used.len() as u32
    }

    /// A port not drawn before, or `None` once every port was.
    pub(crate) fn next(&mut self, rng: &mut Rng) -> Option<SocketAddr> {
        let (lo, hi) = BIRTHDAY_PORTS;
        let span = u64::from(hi - lo) + 1;
        if self.used.len() as u64 >= span {
            return None;
        }
        loop {
            let port = lo + rng.below(span) as u16;
            if self.used.insert(port) {
                return Some(SocketAddr::new(self.ip, port));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::{FilteringBehavior, MappingBehavior, PortAllocation};

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([198, 51, 100, 7], port))
    }

    #[test]
    fn predicted_ports_step_by_delta_and_stay_in_the_port_space() {
        assert_eq!(predicted_ports(addr(5000), 2, 3), [addr(5002), addr(5004), addr(5006)]);
        assert_eq!(predicted_ports(addr(65534), 1, 3), [addr(65535)]);
        assert_eq!(predicted_ports(addr(2), -1, 3), [addr(1)]);
    }

    #[test]
    fn a_quiet_nat_gets_the_smallest_window_that_covers_the_openers() {
        // Given two samples exactly one step apart (nobody else took a port),
        let samples =
            AllocatorSamples { first: addr(5000), burst: vec![addr(5002), addr(5001)], gap: Duration::from_millis(80) };
        assert_eq!(samples.base(1), addr(5002));
        // when the window for two openers is computed,
        let window = prediction_window(Some(&samples), 1, 2, Duration::from_millis(10), 4, 64);
        // then it is the configured minimum.
        assert_eq!(window, 4);
    }

    #[test]
    fn the_window_grows_with_the_neighbours_rate_and_stops_at_the_maximum() {
        // Given a neighbour that took 5 ports during an 80 ms round trip,
        let busy =
            AllocatorSamples { first: addr(5000), burst: vec![addr(5006), addr(5007)], gap: Duration::from_millis(80) };
        // then the window covers three times the ports expected before the openers (5 * 50 / 80 = 3.1).
        assert_eq!(prediction_window(Some(&busy), 1, 2, Duration::from_millis(10), 4, 64), 13);
        // and a flood is capped.
        let flood = AllocatorSamples { first: addr(5000), burst: vec![addr(5400)], gap: Duration::from_millis(80) };
        assert_eq!(prediction_window(Some(&flood), 1, 2, Duration::from_millis(10), 4, 64), 64);
        // Samples that do not fit the step give the widest window.
        let odd = AllocatorSamples { first: addr(5000), burst: vec![addr(4000)], gap: Duration::from_millis(80) };
        assert_eq!(prediction_window(Some(&odd), 1, 2, Duration::ZERO, 4, 64), 64);
    }

    #[test]
    fn fresh_samples_correct_an_overstated_delta() {
        // Given a profile that measured 3 (a neighbour opening flows at the discovery's own pace),
        // and a burst whose two mappings are one port apart,
        let samples =
            AllocatorSamples { first: addr(5000), burst: vec![addr(5004), addr(5003)], gap: Duration::from_millis(80) };
        // then the prediction steps by 1, and the two ports before the burst were the neighbour's.
        assert_eq!(refine_delta(3, Some(&samples)), 1);
        assert_eq!(samples.neighbour_ports(1), Some(2));
        // Without a burst pair the profile's step stands.
        assert_eq!(refine_delta(3, None), 3);
        let single = AllocatorSamples { burst: vec![addr(5003)], ..samples };
        assert_eq!(refine_delta(3, Some(&single)), 3);
    }

    #[test]
    fn roles_follow_the_strategy_and_both_profiles() {
        let cone = NatProfile {
            mapping: Some(MappingBehavior::EndpointIndependent),
            filtering: Some(FilteringBehavior::AddressAndPortDependent),
            ports: Some(PortAllocation::Preserving),
            public: false,
        };
        let sequential = NatProfile {
            mapping: Some(MappingBehavior::AddressAndPortDependent),
            ports: Some(PortAllocation::Sequential { delta: 1 }),
            ..cone
        };
        let random = NatProfile { ports: Some(PortAllocation::Random), ..sequential };
        assert_eq!(PunchRole::of(Strategy::Predict, &sequential, &cone), PunchRole::Predicted { delta: 1 });
        assert_eq!(PunchRole::of(Strategy::Predict, &cone, &sequential), PunchRole::Predicting);
        assert_eq!(PunchRole::of(Strategy::Predict, &sequential, &sequential), PunchRole::PredictBoth { delta: 1 });
        assert_eq!(PunchRole::of(Strategy::Birthday, &random, &cone), PunchRole::Pool);
        assert_eq!(PunchRole::of(Strategy::Birthday, &cone, &random), PunchRole::Prober);
        assert_eq!(PunchRole::of(Strategy::RelayOnly, &random, &random), PunchRole::RelayOnly);
    }

    #[test]
    fn birthday_probability_matches_its_closed_form_edges() {
        assert_eq!(birthday_success(100, 0, 50), 0.0);
        assert_eq!(birthday_success(100, 60, 50), 1.0);
        // One probe hits with probability pool / range.
        assert!((birthday_success(1000, 10, 1) - 0.01).abs() < 1e-12);
        // The defaults: 256 sockets, 1,024 probes over 64,512 ports.
        let p = birthday_success(64_512, 256, 1024);
        assert!((0.982..0.985).contains(&p), "{p}");
    }

    #[test]
    fn birthday_probability_agrees_with_a_simulation_over_many_seeds() {
        // Given a small port space where the closed form is far from 0 and 1,
        let (range, pool, probes) = (2000u32, 20u32, 60u32);
        let expected = birthday_success(range, pool, probes);
        // when pools and probe sequences are drawn with the prober's own sampler over 4,000 seeds,
        let runs = 4000;
        let mut hits = 0;
        for seed in 0..runs {
            let mut rng = Rng::new(seed);
            let mut open = BTreeSet::new();
            while open.len() < pool as usize {
                open.insert(rng.below(u64::from(range)) as u16);
            }
            let mut used = BTreeSet::new();
            let mut hit = false;
            while used.len() < probes as usize {
                let port = rng.below(u64::from(range)) as u16;
                if used.insert(port) && open.contains(&port) {
                    hit = true;
                }
            }
            hits += u32::from(hit);
        }
        // then the observed rate is within four standard errors of the formula.
        let observed = f64::from(hits) / runs as f64;
        let sigma = (expected * (1.0 - expected) / runs as f64).sqrt();
        assert!((observed - expected).abs() < 4.0 * sigma, "observed {observed}, expected {expected}");
    }

    #[test]
    fn the_sampler_never_repeats_a_port() {
        let mut rng = Rng::new(3);
        let mut sampler = PortSampler::new(addr(0).ip());
        let drawn: BTreeSet<u16> = (0..5000).map(|_| sampler.next(&mut rng).expect("ports left").port()).collect();
        assert_eq!(drawn.len(), 5000);
        assert_eq!(sampler.drawn(), 5000);
        assert!(drawn.iter().all(|p| *p >= BIRTHDAY_PORTS.0));
    }
}
