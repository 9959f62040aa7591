//! NAT behaviour as RFC 4787 describes it, and the traversal strategies that
//! follow from a pair of behaviours.
//!
//! A [`NatProfile`] is what a client measured about its own NAT (see
//! [`crate::client`]'s NAT discovery); the server chooses a [`Strategy`] for a
//! session from both members' profiles with [`choose_strategy`].

use serde::{Deserialize, Serialize};

/// How a NAT reuses an external mapping for one internal endpoint
/// (RFC 4787 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MappingBehavior {
    /// The same mapping for every destination ("cone"; RFC 4787 REQ-1).
    EndpointIndependent,
    /// A new mapping per destination IP address.
    AddressDependent,
    /// A new mapping per destination IP address and port ("symmetric").
    AddressAndPortDependent,
}

/// Which inbound packets a NAT lets through an existing mapping
/// (RFC 4787 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FilteringBehavior {
    /// Anyone may send to the mapping ("full cone").
    EndpointIndependent,
    /// Only IP addresses the inside host has sent to ("restricted cone").
    AddressDependent,
    /// Only IP address and port pairs the inside host has sent to
    /// ("port-restricted cone").
    AddressAndPortDependent,
}

/// How a NAT picks the external port of a new mapping (RFC 4787 §4.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PortAllocation {
    /// The external port equals the internal port when free.
    Preserving,
    /// Each new mapping takes the previous external port plus `delta`.
    Sequential {
        /// The measured step between consecutive mappings.
        delta: i32,
    },
    /// External ports are unpredictable.
    Random,
}

/// What a client measured about the NAT in front of it.
///
/// `None` in a field means "not measured" (for example, the server has no
/// alternate address, or the measurement's answers were lost).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatProfile {
    /// Mapping behaviour, when measured.
    pub mapping: Option<MappingBehavior>,
    /// Filtering behaviour, when measured.
    pub filtering: Option<FilteringBehavior>,
    /// Port allocation, when measured.
    pub ports: Option<PortAllocation>,
    /// True when the client's host address equals its reflexive address: no
    /// NAT at all.
    pub public: bool,
}

/// How a session tries to open a direct path (DESIGN §3, "Strategies").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Strategy {
    /// Simultaneous openers and probes to every candidate, plus peer-reflexive
    /// learning.
    Punch,
    /// Probe a window of predicted ports of a sequential symmetric NAT.
    Predict,
    /// Birthday-paradox probing between a random symmetric NAT and a
    /// port-restricted cone.
    Birthday,
    /// No direct path can exist: stay on the relay without probing.
    RelayOnly,
    /// Not chosen yet: a session the server made before both members' NAT
    /// profiles were measured. It runs on the relay (and probes LAN host
    /// candidates only) until its initiator chooses the strategy from both
    /// profiles and tells the peer.
    Pending,
}

impl MappingBehavior {
    /// The RFC 4787 name, as scenario files, reports and the command line
    /// spell it: `endpoint-independent`, `address-dependent`,
    /// `address-and-port-dependent`.
    pub fn name(self) -> &'static str {
        match self {
            MappingBehavior::EndpointIndependent => "endpoint-independent",
            MappingBehavior::AddressDependent => "address-dependent",
            MappingBehavior::AddressAndPortDependent => "address-and-port-dependent",
        }
    }
}

impl FilteringBehavior {
    /// The RFC 4787 name, spelt as for [`MappingBehavior::name`].
    pub fn name(self) -> &'static str {
        match self {
            FilteringBehavior::EndpointIndependent => "endpoint-independent",
            FilteringBehavior::AddressDependent => "address-dependent",
            FilteringBehavior::AddressAndPortDependent => "address-and-port-dependent",
        }
    }
}

impl Strategy {
    /// The name used in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Punch => "punch",
            Strategy::Predict => "predict",
            Strategy::Birthday => "birthday",
            Strategy::RelayOnly => "relay-only",
            Strategy::Pending => "pending",
        }
    }
}

impl NatProfile {
    /// A host with no NAT in front of it.
    pub fn public() -> Self {
        NatProfile {
            mapping: Some(MappingBehavior::EndpointIndependent),
            filtering: Some(FilteringBehavior::EndpointIndependent),
            ports: Some(PortAllocation::Preserving),
            public: true,
        }
    }

    /// True when the mapping toward the peer will differ from the mapping the
    /// server observed, so the server-reflexive candidate is useless.
    pub fn is_symmetric(&self) -> bool {
        matches!(self.mapping, Some(MappingBehavior::AddressDependent | MappingBehavior::AddressAndPortDependent))
    }

    /// True when inbound packets need a matching outbound port, not only a
    /// matching address.
    pub fn filters_ports(&self) -> bool {
        !matches!(self.filtering, Some(FilteringBehavior::EndpointIndependent | FilteringBehavior::AddressDependent))
    }

    /// The step between consecutive mappings, when this NAT is symmetric and
    /// allocates ports sequentially: the next mapping's port is predictable.
    pub fn sequential_delta(&self) -> Option<i32> {
        match (self.is_symmetric(), self.ports) {
            (true, Some(PortAllocation::Sequential { delta })) if delta != 0 => Some(delta),
            _ => None,
        }
    }
}

/// Chooses how a session between two NATs tries to go direct.
///
/// The reasoning, case by case ("cone": endpoint-independent mapping;
/// "symmetric": address- or address-and-port-dependent mapping, RFC 4787 §4.1):
/// - **Neither side symmetric** (or unmeasured): each side's server-reflexive
///   address is also its mapping toward the peer, so simultaneous openers and
///   probes meet: [`Strategy::Punch`].
/// - **Symmetric ↔ a cone that does not filter by port** (full or
///   address-restricted): the symmetric side's probes arrive from an unknown
///   port but from an address the cone has opened toward, the cone accepts
///   them and answers the peer-reflexive source: [`Strategy::Punch`].
/// - **Sequential symmetric ↔ port-restricted cone**: the symmetric side's
///   next mapping is its last observed port plus the measured delta (plus
///   whatever other hosts behind it took meanwhile); the cone side opens a
///   window of predicted ports: [`Strategy::Predict`].
/// - **Any other symmetric (random, preserving, unmeasured ports) ↔
///   port-restricted cone**: the symmetric side opens many mappings toward the
///   cone from a pool of sockets with low-TTL openers, and the cone probes
///   random ports until one matches; the birthday paradox makes a few hundred
///   sockets and about a thousand probes enough: [`Strategy::Birthday`].
/// - **Sequential symmetric ↔ sequential symmetric**: both sides predict each
///   other's next ports and open them in the same order, so the k-th mapping
///   of each side meets the other's k-th: [`Strategy::Predict`].
/// - **Symmetric ↔ symmetric with a random (or unmeasured) side**: the random
///   side's port toward the peer cannot be known and the other side cannot
///   answer a probe from an unknown port (it filters by port toward a port it
///   never sent to). Birthday probing needs one fixed side, which neither is:
///   no direct path exists, so [`Strategy::RelayOnly`] without a single probe.
///
/// A profile that was not measured counts as a cone: punching costs a
/// bounded number of probes and the relay carries the session meanwhile.
pub fn choose_strategy(a: &NatProfile, b: &NatProfile) -> Strategy {
    match (a.is_symmetric(), b.is_symmetric()) {
        (false, false) => Strategy::Punch,
        (true, false) => symmetric_versus_cone(a, b),
        (false, true) => symmetric_versus_cone(b, a),
        (true, true) => match (a.sequential_delta(), b.sequential_delta()) {
            (Some(_), Some(_)) => Strategy::Predict,
            _ => Strategy::RelayOnly,
        },
    }
}

fn symmetric_versus_cone(symmetric: &NatProfile, cone: &NatProfile) -> Strategy {
    if !cone.filters_ports() {
        Strategy::Punch
    } else if symmetric.sequential_delta().is_some() {
        Strategy::Predict
    } else {
        Strategy::Birthday
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(mapping: MappingBehavior, filtering: FilteringBehavior, ports: PortAllocation) -> NatProfile {
        NatProfile { mapping: Some(mapping), filtering: Some(filtering), ports: Some(ports), public: false }
    }

    const PORT_RESTRICTED: NatProfile = NatProfile {
        mapping: Some(MappingBehavior::EndpointIndependent),
        filtering: Some(FilteringBehavior::AddressAndPortDependent),
        ports: Some(PortAllocation::Preserving),
        public: false,
    };

    #[test]
    fn strategies_follow_the_documented_cases_in_both_orders() {
        use FilteringBehavior as F;
        use MappingBehavior as M;
        let sequential =
            profile(M::AddressAndPortDependent, F::AddressAndPortDependent, PortAllocation::Sequential { delta: 2 });
        let random = profile(M::AddressAndPortDependent, F::AddressAndPortDependent, PortAllocation::Random);
        let restricted = profile(M::EndpointIndependent, F::AddressDependent, PortAllocation::Preserving);
        let cases = [
            (PORT_RESTRICTED, PORT_RESTRICTED, Strategy::Punch),
            (restricted, random, Strategy::Punch),
            (PORT_RESTRICTED, sequential, Strategy::Predict),
            (PORT_RESTRICTED, random, Strategy::Birthday),
            (sequential, sequential, Strategy::Predict),
            (sequential, random, Strategy::RelayOnly),
            (random, random, Strategy::RelayOnly),
            (NatProfile::default(), random, Strategy::Birthday),
        ];
        for (a, b, expected) in cases {
            // Given two profiles, when the strategy is chosen either way round, then it is the documented one.
            assert_eq!(choose_strategy(&a, &b), expected, "{a:?} / {b:?}");
            assert_eq!(choose_strategy(&b, &a), expected, "{b:?} / {a:?}");
        }
    }
}
