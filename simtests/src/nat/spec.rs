//! What defines a NAT device's behaviour: [`NatSpec`] and its parts.

use std::net::Ipv4Addr;
use std::time::Duration;

use punchline_core::nat::{FilteringBehavior, MappingBehavior};

/// How a NAT picks the external port of a new mapping (RFC 4787 §4.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortPolicy {
    /// The internal port when it is free on the public IP (RFC 4787 REQ-3
    /// "port preservation"), otherwise a random free port in range.
    Preserve,
    /// The previously allocated port plus `delta`, wrapping within the range
    /// and skipping ports in use. The first allocation is random.
    Sequential {
        /// Step between consecutive allocations (may be negative).
        delta: i32,
    },
    /// A uniformly random free port in range.
    Random,
}

/// What an unsolicited inbound packet leaves behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsolicited {
    /// Nothing: the textbook NAT drops it and forgets it.
    Drop,
    /// Linux conntrack state that blocks the packet's 5-tuple for later
    /// outbound translation (DESIGN §3).
    Track,
}

/// Everything that defines a NAT device's behaviour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatSpec {
    /// The device's name, used in traces and by `behind` references.
    pub name: String,
    /// Public addresses; internal hosts are paired with one each.
    pub public_ips: Vec<Ipv4Addr>,
    /// False for the `open` preset: a plain router that forwards without
    /// translation or filtering (hosts behind it use public addresses).
    pub translate: bool,
    /// Mapping behaviour (RFC 4787 §4.1).
    pub mapping: MappingBehavior,
    /// Filtering behaviour (RFC 4787 §5).
    pub filtering: FilteringBehavior,
    /// External port allocation (RFC 4787 §4.2.2).
    pub ports: PortPolicy,
    /// Inclusive range of external ports the NAT allocates from.
    pub port_range: (u16, u16),
    /// Idle time after which a mapping, a permission or a tracked entry
    /// expires (RFC 4787 §4.3).
    pub timeout: Duration,
    /// Whether inbound packets refresh the mapping they pass (RFC 4787 §4.3,
    /// REQ-6 leaves it optional). Default false.
    pub inbound_refreshes: bool,
    /// Whether the device hairpins (RFC 4787 §6, REQ-9).
    pub hairpin: bool,
    /// What an unsolicited inbound packet leaves behind.
    pub unsolicited: Unsolicited,
    /// Drop every UDP packet in both directions (a firewall); TCP passes.
    pub blocks_udp: bool,
    /// Idle time after which the mapping of an established TCP connection
    /// expires (RFC 5382 REQ-5: at least 2 h 4 min); mappings of opening
    /// or closing connections use
    /// [`TCP_TRANSITORY_TIMEOUT`](super::TCP_TRANSITORY_TIMEOUT).
    pub tcp_timeout: Duration,
    /// The NAT this one sits behind (e.g. a CGNAT), by name.
    pub behind: Option<String>,
    /// Other hosts behind the device opening this many new outbound flows
    /// per second (a chatty neighbour), evenly spaced from time zero. Each
    /// takes the next port of a sequential allocator, which is what makes
    /// port prediction hard; random and preserving allocators are left alone
    /// (a random pick rarely lands on a neighbour's port). Default 0.
    pub background_flows: u32,
}

/// Default external port range: everything above the well-known ports.
pub const DEFAULT_PORT_RANGE: (u16, u16) = (1024, 65535);
/// RFC 4787 §4.3 REQ-5: a UDP mapping must not expire in less than 2 minutes.
pub const RFC4787_MIN_TIMEOUT: Duration = Duration::from_secs(120);
/// Linux `nf_conntrack_udp_timeout`: an unreplied UDP flow's lifetime.
pub const LINUX_UDP_TIMEOUT: Duration = Duration::from_secs(30);

/// Parses a mapping behaviour name (see [`MappingBehavior::name`]).
pub fn parse_mapping(s: &str) -> Option<MappingBehavior> {
    use MappingBehavior as M;
    [M::EndpointIndependent, M::AddressDependent, M::AddressAndPortDependent].into_iter().find(|m| m.name() == s)
}

/// Parses a filtering behaviour name (see [`FilteringBehavior::name`]).
pub fn parse_filtering(s: &str) -> Option<FilteringBehavior> {
    use FilteringBehavior as F;
    [F::EndpointIndependent, F::AddressDependent, F::AddressAndPortDependent].into_iter().find(|f| f.name() == s)
}
