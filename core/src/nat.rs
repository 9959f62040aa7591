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
}

impl Strategy {
    /// The name used in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Punch => "punch",
            Strategy::Predict => "predict",
            Strategy::Birthday => "birthday",
            Strategy::RelayOnly => "relay-only",
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
    fn is_symmetric(&self) -> bool {
        matches!(self.mapping, Some(MappingBehavior::AddressDependent | MappingBehavior::AddressAndPortDependent))
    }

    /// True when inbound packets need a matching outbound port, not only a
    /// matching address.
    fn filters_ports(&self) -> bool {
        !matches!(self.filtering, Some(FilteringBehavior::EndpointIndependent | FilteringBehavior::AddressDependent))
    }
}

/// Chooses how a session between two NATs tries to go direct.
///
/// The reasoning, case by case:
/// - Neither side symmetric (both endpoint-independent mapping, or unknown):
///   each side's server-reflexive address is also its mapping toward the
///   peer, so simultaneous openers and probes succeed: [`Strategy::Punch`].
/// - One side symmetric, the other a cone that does not filter by port
///   (full or address-restricted): the cone side's openers and probes reach
///   the symmetric side from a fixed address; the symmetric side's probes
///   arrive at the cone from an unknown port, which the cone accepts because it
///   filters by address only, and the cone answers the peer-reflexive source:
///   [`Strategy::Punch`].
/// - One side symmetric, the other port-restricted: the symmetric side's port
///   toward the cone is unknown and the cone drops every other port. Predicting
///   the port (sequential allocation) or birthday probing (random allocation)
///   is needed; until the client implements them (issue 4) the session stays
///   on the relay: [`Strategy::RelayOnly`].
/// - Both sides symmetric: neither side's port toward the other is known;
///   without prediction no direct path exists: [`Strategy::RelayOnly`].
///
/// A profile that was not measured counts as a cone: punching costs a
/// bounded number of probes and the relay carries the session meanwhile.
pub fn choose_strategy(a: &NatProfile, b: &NatProfile) -> Strategy {
    match (a.is_symmetric(), b.is_symmetric()) {
        (false, false) => Strategy::Punch,
        (true, false) if !b.filters_ports() => Strategy::Punch,
        (false, true) if !a.filters_ports() => Strategy::Punch,
        _ => Strategy::RelayOnly,
    }
}
