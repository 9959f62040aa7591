//! The oracle: for the NATs in front of two peers, whether a direct path can
//! be opened with the strategies the core implements, and which strategy the
//! core will choose.
//!
//! The two answers come from different places on purpose. `strategy` is what
//! the core's [`choose_strategy`] picks from the profiles a correct client
//! measures ([`profile_of`]). `direct` is worked out here from the devices'
//! real behaviour, case by case (see [`expect`]). When the core's choice and
//! the physics disagree, the matrix shows it.
//!
//! The oracle is about peers behind *different* NATs. Two peers behind the
//! same NAT reach each other over their host candidates whatever the NAT
//! does, and the engine should expect `direct` for them. Nested NATs (a home
//! NAT behind a CGNAT) are not folded into one profile here: the scenario
//! that uses them states its expectation.

use punchline_core::nat::{choose_strategy, FilteringBehavior, MappingBehavior, NatProfile, PortAllocation, Strategy};

use crate::nat::{NatSpec, PortPolicy, Preset};
use crate::report::Outcome;

/// What a run between two peers should end with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expectation {
    /// A direct path is achievable with the implemented strategies (the
    /// connection should end `direct`; otherwise on the relay: see
    /// [`Expectation::outcome`]).
    pub direct: bool,
    /// What the core's [`choose_strategy`] picks from the measured profiles.
    pub strategy: Strategy,
    /// Both peers can reach the server: over UDP, or over TCP where UDP is
    /// blocked (the TCP fallback, issue 21). Every preset lets one of them
    /// through, so this is always true for the presets.
    pub server_reachable: bool,
    /// A side's UDP is blocked: that peer logs in over TCP, and the relay
    /// rides TCP on its side.
    pub over_tcp: bool,
    /// Why, in one sentence.
    pub reason: &'static str,
}

impl Expectation {
    /// The outcome the run should end with: `direct`, or on the relay
    /// (`relay-tcp` when a side's UDP is blocked, else `relay`).
    pub fn outcome(&self) -> Outcome {
        match (self.direct, self.over_tcp) {
            (true, _) => Outcome::Direct,
            (false, true) => Outcome::RelayTcp,
            (false, false) => Outcome::Relay,
        }
    }
}

/// The strategies the core implements: all four.
pub const IMPLEMENTED: &[Strategy] = &[Strategy::Punch, Strategy::Predict, Strategy::Birthday, Strategy::RelayOnly];

/// What a correct client behind `spec` measures (DESIGN §3, "NAT profile"):
/// the device's own RFC 4787 behaviour, public for the `open` router, and
/// nothing at all behind a UDP firewall (no answer ever comes back over
/// UDP, and a client on TCP does not measure).
pub fn profile_of(spec: &NatSpec) -> NatProfile {
    if spec.blocks_udp {
        return NatProfile::default();
    }
    if !spec.translate {
        return NatProfile::public();
    }
    NatProfile {
        mapping: Some(spec.mapping),
        filtering: Some(spec.filtering),
        ports: Some(match spec.ports {
            PortPolicy::Preserve => PortAllocation::Preserving,
            PortPolicy::Sequential { delta } => PortAllocation::Sequential { delta },
            PortPolicy::Random => PortAllocation::Random,
        }),
        public: false,
    }
}

/// The expectation for peers behind `a` and `b` (`None`: a host on the
/// public side, no NAT), with the strategies in [`IMPLEMENTED`].
///
/// The reasoning, case by case ("cone": endpoint-independent mapping, or no
/// NAT; "symmetric": address- or address-and-port-dependent mapping):
///
/// - **UDP blocked on either side**: the blocked peer's UDP never reaches
///   anyone, so it logs in over TCP (the TCP fallback, issue 21), and the
///   session rides the relay, over TCP on that side: `relay-tcp`. Not
///   direct (peers on one LAN behind the firewall aside: their host
///   candidates never cross it).
/// - **Cone ↔ cone** (any filtering, including Linux `masquerade`): each
///   side's server-reflexive address *is* its mapping toward the peer, so
///   simultaneous openers and probes meet: `Punch`, direct. Against NATs that
///   track unsolicited packets this relies on both sides opening before
///   either probes (DESIGN §3); the client does.
/// - **Cone that does not filter by port (full or address-restricted, or no
///   NAT) ↔ symmetric**: the symmetric side's probes arrive from an unknown
///   port but from the IP the cone side has opened toward (RFC 4787 REQ-2
///   paired pooling keeps it the server-visible IP), so the cone accepts them;
///   the cone side answers the peer-reflexive source, which the symmetric
///   side's mapping toward the cone accepts: `Punch`, direct.
/// - **Port-restricted cone ↔ symmetric**: the cone drops every port it has
///   not sent to, and the symmetric side's port toward it is unknown. Only
///   prediction (sequential ports: `Predict`, the cone opens a window of the
///   predicted next ports) or birthday probing (random ports: `Birthday`, a
///   pool of mappings on one side, random probes from the other) can find it.
/// - **Symmetric ↔ symmetric**: neither port is known. Two sequential NATs can
///   predict each other (`Predict`, both open their windows in the same
///   order). A random side makes it hopeless: its port toward the peer cannot
///   be predicted, and birthday probing needs a side whose port toward the
///   peer is fixed, which neither is.
pub fn expect(a: Option<&NatSpec>, b: Option<&NatSpec>) -> Expectation {
    expect_with(a, b, IMPLEMENTED)
}

/// [`expect`] with an explicit set of implemented strategies.
pub fn expect_with(a: Option<&NatSpec>, b: Option<&NatSpec>, implemented: &[Strategy]) -> Expectation {
    let profile = |side: Option<&NatSpec>| side.map_or_else(NatProfile::public, profile_of);
    let strategy = choose_strategy(&profile(a), &profile(b));
    let (side_a, side_b) = (Side::of(a), Side::of(b));
    let over_tcp = side_a == Side::Blocked || side_b == Side::Blocked;
    let (needed, reason) = needed_strategy(side_a, side_b);
    let direct = needed.is_some_and(|s| implemented.contains(&s));
    Expectation { direct, strategy, server_reachable: true, over_tcp, reason }
}

/// [`expect`] for two presets, as the matrix runs them.
pub fn expect_presets(a: Preset, b: Preset) -> Expectation {
    let spec = |p: Preset, ip: [u8; 4]| p.spec(p.name(), vec![ip.into()]);
    expect(Some(&spec(a, [198, 51, 100, 1])), Some(&spec(b, [198, 51, 100, 6])))
}

/// A device reduced to what decides traversal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Blocked,
    /// Endpoint-independent mapping (or no NAT: endpoint-independent
    /// filtering too).
    Cone {
        port_filtering: bool,
    },
    /// Address(-and-port)-dependent mapping. A symmetric NAT that "preserves"
    /// ports can do so for one destination only, so only `sequential` counts
    /// as predictable.
    Symmetric {
        sequential: bool,
    },
}

impl Side {
    fn of(spec: Option<&NatSpec>) -> Side {
        let Some(spec) = spec else { return Side::Cone { port_filtering: false } };
        if spec.blocks_udp {
            Side::Blocked
        } else if !spec.translate {
            Side::Cone { port_filtering: false }
        } else if spec.mapping == MappingBehavior::EndpointIndependent {
            Side::Cone { port_filtering: spec.filtering == FilteringBehavior::AddressAndPortDependent }
        } else {
            Side::Symmetric { sequential: matches!(spec.ports, PortPolicy::Sequential { .. }) }
        }
    }
}

/// The strategy that can open a direct path between two sides, if any.
fn needed_strategy(a: Side, b: Side) -> (Option<Strategy>, &'static str) {
    use Side::*;
    match (a, b) {
        (Blocked, _) | (_, Blocked) => {
            (None, "UDP is blocked: the peer logs in over TCP, and the session stays on the relay over TCP")
        }
        (Cone { .. }, Cone { .. }) => (
            Some(Strategy::Punch),
            "cone and cone: each server-reflexive address is the mapping toward the peer, so openers and probes meet",
        ),
        (Cone { port_filtering: false }, Symmetric { .. }) | (Symmetric { .. }, Cone { port_filtering: false }) => (
            Some(Strategy::Punch),
            "symmetric and a cone that filters by address only: the cone accepts the symmetric side's new port \
             and answers its peer-reflexive address",
        ),
        (Cone { port_filtering: true }, Symmetric { sequential: true })
        | (Symmetric { sequential: true }, Cone { port_filtering: true }) => (
            Some(Strategy::Predict),
            "sequential symmetric and port-restricted cone: the cone must probe the predicted next ports",
        ),
        (Cone { port_filtering: true }, Symmetric { sequential: false })
        | (Symmetric { sequential: false }, Cone { port_filtering: true }) => (
            Some(Strategy::Birthday),
            "random symmetric and port-restricted cone: only birthday-paradox probing can find the port",
        ),
        (Symmetric { sequential: true }, Symmetric { sequential: true }) => {
            (Some(Strategy::Predict), "two sequential symmetric NATs: each side must predict the other's next port")
        }
        (Symmetric { .. }, Symmetric { .. }) => {
            (None, "symmetric and random symmetric: neither port is known or predictable, so only the relay works")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Preset::*;

    const D: bool = true;
    const R: bool = false;
    const P: Strategy = Strategy::Punch;
    const Q: Strategy = Strategy::Predict;
    const B: Strategy = Strategy::Birthday;
    const O: Strategy = Strategy::RelayOnly;

    /// The 9x9 matrix, rows `a`, columns `b` in [`Preset::MATRIX`] order:
    /// open, full-cone, restricted-cone, port-restricted-cone,
    /// symmetric-sequential, symmetric-random, linux, linux-random,
    /// udp-blocked.
    const MATRIX: [[(bool, Strategy); 9]; 9] = [
        /* open */ [(D, P), (D, P), (D, P), (D, P), (D, P), (D, P), (D, P), (D, P), (R, P)],
        /* full-cone */ [(D, P), (D, P), (D, P), (D, P), (D, P), (D, P), (D, P), (D, P), (R, P)],
        /* restricted */ [(D, P), (D, P), (D, P), (D, P), (D, P), (D, P), (D, P), (D, P), (R, P)],
        /* port-restr */ [(D, P), (D, P), (D, P), (D, P), (D, Q), (D, B), (D, P), (D, B), (R, P)],
        /* sym-seq */ [(D, P), (D, P), (D, P), (D, Q), (D, Q), (R, O), (D, Q), (R, O), (R, Q)],
        /* sym-random */ [(D, P), (D, P), (D, P), (D, B), (R, O), (R, O), (D, B), (R, O), (R, B)],
        /* linux */ [(D, P), (D, P), (D, P), (D, P), (D, Q), (D, B), (D, P), (D, B), (R, P)],
        /* linux-random */ [(D, P), (D, P), (D, P), (D, B), (R, O), (R, O), (D, B), (R, O), (R, B)],
        /* udp-blocked */ [(R, P), (R, P), (R, P), (R, P), (R, Q), (R, B), (R, P), (R, B), (R, P)],
    ];

    #[test]
    fn every_matrix_pair_has_its_expected_outcome_and_strategy() {
        for (i, a) in Preset::MATRIX.into_iter().enumerate() {
            for (j, b) in Preset::MATRIX.into_iter().enumerate() {
                // Given peers behind presets a and b,
                // when the oracle is asked,
                let got = expect_presets(a, b);
                // then it says exactly what the table says, and the server
                // is reachable from every preset (over TCP where UDP is
                // blocked).
                let (direct, strategy) = MATRIX[i][j];
                assert_eq!((got.direct, got.strategy), (direct, strategy), "{a} / {b}: {}", got.reason);
                assert!(got.server_reachable);
                assert_eq!(got.over_tcp, a == UdpBlocked || b == UdpBlocked, "{a} / {b}");
            }
        }
    }

    #[test]
    fn the_cores_choice_and_the_physics_agree_on_every_matrix_pair_over_udp() {
        // Given every strategy implemented, a direct path exists exactly when
        // the core tries for one, and with the strategy the physics needs:
        // otherwise the core wastes probes or misses a path. (Behind a UDP
        // firewall the profile is unmeasured, and the core's choice is moot:
        // every probe dies at the firewall.)
        for a in Preset::MATRIX.into_iter().filter(|&p| p != UdpBlocked) {
            for b in Preset::MATRIX.into_iter().filter(|&p| p != UdpBlocked) {
                let e = expect_presets(a, b);
                assert_eq!(e.direct, e.strategy != Strategy::RelayOnly, "{a} / {b}");
                let spec = |p: Preset| p.spec(p.name(), vec![[198, 51, 100, 1].into()]);
                let (needed, _) = needed_strategy(Side::of(Some(&spec(a))), Side::of(Some(&spec(b))));
                assert_eq!(needed.unwrap_or(Strategy::RelayOnly), e.strategy, "{a} / {b}");
            }
        }
    }

    #[test]
    fn prediction_and_birthday_cells_become_direct_once_implemented() {
        // Given the strategies of issue 4 implemented,
        let all = [Strategy::Punch, Strategy::Predict, Strategy::Birthday, Strategy::RelayOnly];
        let spec = |p: Preset| p.spec(p.name(), vec![[198, 51, 100, 1].into()]);
        let with_all = |a: Preset, b: Preset| expect_with(Some(&spec(a)), Some(&spec(b)), &all).direct;
        // then the cells issue 4 promises become direct, and the hopeless ones stay relayed.
        assert!(with_all(PortRestrictedCone, SymmetricSequential));
        assert!(with_all(SymmetricSequential, SymmetricSequential));
        assert!(with_all(PortRestrictedCone, SymmetricRandom));
        assert!(with_all(Linux, LinuxRandom));
        assert!(!with_all(SymmetricRandom, SymmetricRandom));
        assert!(!with_all(LinuxRandom, LinuxRandom));
        assert!(!with_all(SymmetricRandom, SymmetricSequential));
    }

    #[test]
    fn udp_blocked_anywhere_means_relay_over_tcp() {
        // Given a peer behind a UDP firewall, facing any preset either way,
        for other in Preset::MATRIX {
            for e in [expect_presets(UdpBlocked, other), expect_presets(other, UdpBlocked)] {
                // then the server is reached over TCP, no direct path, and
                // the outcome is relay-tcp.
                assert_eq!((e.direct, e.server_reachable, e.over_tcp), (false, true, true), "{other}");
                assert_eq!(e.outcome(), Outcome::RelayTcp, "{other}");
                assert_eq!(
                    e.reason,
                    "UDP is blocked: the peer logs in over TCP, and the session stays on the relay over TCP"
                );
            }
        }
        // Everything else keeps its UDP outcome.
        assert_eq!(expect_presets(Linux, Linux).outcome(), Outcome::Direct);
        assert_eq!(expect_presets(SymmetricRandom, LinuxRandom).outcome(), Outcome::Relay);
    }

    #[test]
    fn a_host_without_nat_behaves_like_the_open_preset() {
        let open = Open.spec("open", vec![[198, 51, 100, 9].into()]);
        for b in Preset::MATRIX {
            let spec = b.spec(b.name(), vec![[198, 51, 100, 6].into()]);
            assert_eq!(expect(None, Some(&spec)), expect(Some(&open), Some(&spec)), "{b}");
        }
    }

    #[test]
    fn profiles_are_what_a_correct_client_measures() {
        let ip = vec![[198, 51, 100, 1].into()];
        assert_eq!(profile_of(&Open.spec("o", ip.clone())), NatProfile::public());
        assert_eq!(profile_of(&UdpBlocked.spec("u", ip.clone())), NatProfile::default());
        assert_eq!(
            profile_of(&Linux.spec("l", ip.clone())),
            NatProfile {
                mapping: Some(MappingBehavior::EndpointIndependent),
                filtering: Some(FilteringBehavior::AddressAndPortDependent),
                ports: Some(PortAllocation::Preserving),
                public: false,
            }
        );
        assert_eq!(
            profile_of(&SymmetricSequential.spec("s", ip)),
            NatProfile {
                mapping: Some(MappingBehavior::AddressAndPortDependent),
                filtering: Some(FilteringBehavior::AddressAndPortDependent),
                ports: Some(PortAllocation::Sequential { delta: 1 }),
                public: false,
            }
        );
    }
}
