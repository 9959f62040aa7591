//! The named NAT configurations of DESIGN §4 (see [`Preset`]).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use punchline_core::nat::{FilteringBehavior, MappingBehavior};

use super::{
    NatSpec, PortPolicy, Unsolicited, DEFAULT_PORT_RANGE, LINUX_TCP_ESTABLISHED_TIMEOUT, LINUX_UDP_TIMEOUT,
    RFC4787_MIN_TIMEOUT, RFC5382_MIN_ESTABLISHED,
};

/// The named NAT configurations of DESIGN §4.
///
/// | preset | mapping | filtering | ports | timeout | hairpin | unsolicited | TCP timeout |
/// |---|---|---|---|---|---|---|---|
/// | `open` | none (no translation) | none | - | - | - | - | - |
/// | `full-cone` | EI | EI | preserve | 120 s | yes | drop | 2 h 4 min |
/// | `restricted-cone` | EI | AD | preserve | 120 s | yes | drop | 2 h 4 min |
/// | `port-restricted-cone` | EI | APD | preserve | 120 s | yes | drop | 2 h 4 min |
/// | `symmetric-sequential` | APD | APD | sequential +1 | 120 s | no | drop | 2 h 4 min |
/// | `symmetric-random` | APD | APD | random | 120 s | no | drop | 2 h 4 min |
/// | `linux` | EI | APD | preserve | 30 s | no | track | 5 days |
/// | `linux-random` | APD | APD | random | 30 s | no | track | 5 days |
/// | `udp-blocked` | EI | APD | preserve | 120 s | no | drop, and all UDP dropped | 2 h 4 min |
///
/// 120 s is the shortest timeout RFC 4787 REQ-5 allows, so keepalives are
/// tested against the most demanding conforming NAT. The cone presets hairpin
/// as REQ-9 requires; symmetric and Linux presets do not (`masquerade` needs
/// extra rules to hairpin).
///
/// Every preset passes TCP (RFC 5382, see `nat::tcp`): a mapping per
/// connection, made by its SYN, whose idle timeout once established is the
/// shortest RFC 5382 REQ-5 allows (2 h 4 min), or the kernel's
/// `nf_conntrack_tcp_timeout_established` (5 days) for the Linux presets.
/// `udp-blocked` is a firewall that drops every UDP packet and lets TCP
/// through, as the networks that make the TCP fallback necessary do (hotel
/// and corporate networks, issue 21): its clients log in over TCP and their
/// sessions ride the relay over TCP (`relay-tcp`).
///
/// `linux` models nftables `masquerade`: conntrack keeps one entry per flow
/// and tries to keep the source port, which makes it endpoint-independent in
/// practice; replies only match their own flow (address-and-port-dependent
/// filtering); unsolicited packets leave an entry. Its timeout is 30 s, the
/// kernel's `nf_conntrack_udp_timeout` for a flow that has not seen a reply.
/// A flow that has seen replies lives `nf_conntrack_udp_timeout_stream`
/// (120 s on current kernels, 180 s on older ones); we keep the shorter one
/// for everything because a client that survives 30 s survives the kernel,
/// and DESIGN §3 sizes keepalives for 30 s NATs. `linux-random` models
/// `masquerade fully-random`: a random port for every new flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Preset {
    /// A public host: a router without translation or filtering.
    Open,
    /// Endpoint-independent mapping and filtering.
    FullCone,
    /// Endpoint-independent mapping, address-dependent filtering.
    RestrictedCone,
    /// Endpoint-independent mapping, address-and-port-dependent filtering.
    PortRestrictedCone,
    /// Address-and-port-dependent mapping, sequential ports (delta 1).
    SymmetricSequential,
    /// Address-and-port-dependent mapping, random ports.
    SymmetricRandom,
    /// Linux `masquerade`.
    Linux,
    /// Linux `masquerade fully-random`.
    LinuxRandom,
    /// A firewall that drops all UDP and passes TCP.
    UdpBlocked,
}

/// A preset name that is not one of [`Preset::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown preset {0:?}; expected one of {names}", names = Preset::NAMES)]
pub struct UnknownPreset(pub String);

impl Preset {
    /// Every preset, in the order of DESIGN §4.
    pub const ALL: [Preset; 9] = [
        Preset::Open,
        Preset::FullCone,
        Preset::RestrictedCone,
        Preset::PortRestrictedCone,
        Preset::SymmetricSequential,
        Preset::SymmetricRandom,
        Preset::Linux,
        Preset::LinuxRandom,
        Preset::UdpBlocked,
    ];

    /// The presets of `punchline-sim matrix`: every one. `udp-blocked`
    /// joined with the TCP fallback (issue 21): its pairs log in over TCP
    /// and end on the relay over TCP (`relay-tcp`).
    pub const MATRIX: [Preset; 9] = Preset::ALL;

    /// All preset names, comma-separated, for error messages.
    pub const NAMES: &'static str = "open, full-cone, restricted-cone, port-restricted-cone, \
        symmetric-sequential, symmetric-random, linux, linux-random, udp-blocked";

    /// The name used in scenario files and reports.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Open => "open",
            Preset::FullCone => "full-cone",
            Preset::RestrictedCone => "restricted-cone",
            Preset::PortRestrictedCone => "port-restricted-cone",
            Preset::SymmetricSequential => "symmetric-sequential",
            Preset::SymmetricRandom => "symmetric-random",
            Preset::Linux => "linux",
            Preset::LinuxRandom => "linux-random",
            Preset::UdpBlocked => "udp-blocked",
        }
    }

    /// The device this preset describes, with the given name and addresses.
    pub fn spec(self, name: impl Into<String>, public_ips: Vec<Ipv4Addr>) -> NatSpec {
        use FilteringBehavior as F;
        use MappingBehavior as M;
        let (mapping, filtering, ports) = match self {
            Preset::Open | Preset::FullCone => (M::EndpointIndependent, F::EndpointIndependent, PortPolicy::Preserve),
            Preset::RestrictedCone => (M::EndpointIndependent, F::AddressDependent, PortPolicy::Preserve),
            Preset::PortRestrictedCone | Preset::Linux | Preset::UdpBlocked => {
                (M::EndpointIndependent, F::AddressAndPortDependent, PortPolicy::Preserve)
            }
            Preset::SymmetricSequential => {
                (M::AddressAndPortDependent, F::AddressAndPortDependent, PortPolicy::Sequential { delta: 1 })
            }
            Preset::SymmetricRandom | Preset::LinuxRandom => {
                (M::AddressAndPortDependent, F::AddressAndPortDependent, PortPolicy::Random)
            }
        };
        let linux = matches!(self, Preset::Linux | Preset::LinuxRandom);
        NatSpec {
            name: name.into(),
            public_ips,
            translate: self != Preset::Open,
            mapping,
            filtering,
            ports,
            port_range: DEFAULT_PORT_RANGE,
            timeout: if linux { LINUX_UDP_TIMEOUT } else { RFC4787_MIN_TIMEOUT },
            inbound_refreshes: false,
            hairpin: matches!(
                self,
                Preset::Open | Preset::FullCone | Preset::RestrictedCone | Preset::PortRestrictedCone
            ),
            unsolicited: if linux { Unsolicited::Track } else { Unsolicited::Drop },
            blocks_udp: self == Preset::UdpBlocked,
            tcp_timeout: if linux { LINUX_TCP_ESTABLISHED_TIMEOUT } else { RFC5382_MIN_ESTABLISHED },
            behind: None,
            background_flows: 0,
        }
    }
}

impl FromStr for Preset {
    type Err = UnknownPreset;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Preset::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| UnknownPreset(s.to_owned()))
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
