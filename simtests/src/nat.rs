//! A NAT device per RFC 4787, plus the Linux conntrack behaviour that real
//! home routers add (DESIGN §3, "Open before you probe").
//!
//! A [`Nat`] is a pure state machine: the engine hands it a [`Packet`] and the
//! current simulated time, and gets back the translated packet (or nothing)
//! plus one [`NatDecision`] per thing the device did, for the trace.
//!
//! # Model
//!
//! - **Mapping** (RFC 4787 §4.1): a mapping is keyed by the internal endpoint,
//!   plus the destination IP (address-dependent) or destination IP and port
//!   (address-and-port-dependent).
//! - **IP pooling** (RFC 4787 §4.1, REQ-2, "paired"): an internal host is
//!   paired with one public IP, chosen round-robin over `public_ips` the first
//!   time the host sends, and keeps it until the NAT reboots.
//! - **Port allocation** (RFC 4787 §4.2.2): [`PortPolicy`]; ports are unique
//!   per public IP. Preservation falls back to a *random* free port, as Linux
//!   does (its fallback port looks random: 28330 in DESIGN §3).
//! - **Timeouts** (RFC 4787 §4.3): a mapping expires `timeout` after the last
//!   outbound packet through it (REQ-6); inbound packets refresh it only when
//!   [`NatSpec::inbound_refreshes`] is set (RFC 4787 leaves this open, and
//!   most NATs do not). Each remote endpoint a mapping has sent to is a
//!   *permission* with its own timer, so a path that goes quiet closes even
//!   while the server keepalive holds the mapping: Linux keeps one conntrack
//!   entry per flow, each with its own timeout.
//! - **Filtering** (RFC 4787 §5): endpoint-independent accepts anyone;
//!   address-dependent accepts IPs with a live permission;
//!   address-and-port-dependent accepts endpoints with a live permission.
//! - **Hairpinning** (RFC 4787 §6, REQ-9): [`Nat::hairpin`] translates the
//!   source to its external mapping, then filters toward the target as if
//!   the packet came from outside.
//! - **Unsolicited packets**: [`Unsolicited::Drop`] leaves nothing behind
//!   (the textbook NAT). [`Unsolicited::Track`] models Linux conntrack: an
//!   inbound packet that matches no mapping or is filtered creates an entry
//!   `remote -> public ip:port` (addressed to the router itself) that lives
//!   `timeout` after the remote's last packet. While it lives, more packets of
//!   that tuple are swallowed, and an outbound packet that would leave on
//!   exactly that 5-tuple gets a different external port, for that
//!   destination only ([`NatDecision::PortCollision`]).
//! - **TTL**: the device is a router: it decrements the TTL of every packet
//!   and drops a packet whose TTL reaches 0, before any translation, so a
//!   dying packet creates no state.
//!
//! # Deviations from a real Linux `masquerade`
//!
//! Linux keys NAT state by 5-tuple, so two internal hosts may share one
//! external port toward *different* destinations. Here an external port
//! belongs to one mapping. This only matters with several hosts using the
//! same local port behind one `linux` NAT, which no example scenario does.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use punchline_core::nat::{FilteringBehavior, MappingBehavior};

use crate::addr::Addr;
use crate::fast_map::FastMap;
use crate::rng::Rng;
use crate::small_map::SmallMap;

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
    /// Drop every UDP packet in both directions (a firewall).
    pub blocks_udp: bool,
    /// The NAT this one sits behind (e.g. a CGNAT), by name.
    pub behind: Option<String>,
    /// Other hosts behind the device opening this many new outbound flows
    /// per second (a chatty neighbour), evenly spaced from time zero. Each
    /// takes the next port of a sequential allocator, which is what makes
    /// port prediction hard; random and preserving allocators are left alone
    /// (a random pick rarely lands on a neighbour's port). Default 0.
    pub background_flows: u32,
}

/// The named NAT configurations of DESIGN §4.
///
/// | preset | mapping | filtering | ports | timeout | hairpin | unsolicited |
/// |---|---|---|---|---|---|---|
/// | `open` | none (no translation) | none | - | - | - | - |
/// | `full-cone` | EI | EI | preserve | 120 s | yes | drop |
/// | `restricted-cone` | EI | AD | preserve | 120 s | yes | drop |
/// | `port-restricted-cone` | EI | APD | preserve | 120 s | yes | drop |
/// | `symmetric-sequential` | APD | APD | sequential +1 | 120 s | no | drop |
/// | `symmetric-random` | APD | APD | random | 120 s | no | drop |
/// | `linux` | EI | APD | preserve | 30 s | no | track |
/// | `linux-random` | APD | APD | random | 30 s | no | track |
/// | `udp-blocked` | EI | APD | preserve | 120 s | no | drop, and all UDP dropped |
///
/// 120 s is the shortest timeout RFC 4787 REQ-5 allows, so keepalives are
/// tested against the most demanding conforming NAT. The cone presets hairpin
/// as REQ-9 requires; symmetric and Linux presets do not (`masquerade` needs
/// extra rules to hairpin).
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
    /// A firewall that drops all UDP.
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

    /// The presets of `punchline-sim matrix` (every one that can reach the
    /// server: all but `udp-blocked`).
    pub const MATRIX: [Preset; 8] = [
        Preset::Open,
        Preset::FullCone,
        Preset::RestrictedCone,
        Preset::PortRestrictedCone,
        Preset::SymmetricSequential,
        Preset::SymmetricRandom,
        Preset::Linux,
        Preset::LinuxRandom,
    ];

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

/// A UDP datagram in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Source endpoint.
    pub src: SocketAddr,
    /// Destination endpoint.
    pub dst: SocketAddr,
    /// Remaining hop limit; every router decrements it.
    pub ttl: u8,
    /// The datagram's bytes.
    pub payload: Bytes,
}

/// Which way a packet crosses a NAT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From an inside host toward the outside.
    Outbound,
    /// From the outside toward an inside host.
    Inbound,
}

/// One thing a NAT did with a packet; `Display` gives one trace line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NatDecision {
    /// A new mapping `internal -> external`, created by a packet to `remote`.
    MappingCreated { nat: Arc<str>, internal: SocketAddr, external: SocketAddr, remote: SocketAddr },
    /// A packet was translated: outbound `src` becomes `via`; inbound `dst`
    /// (= `via`) becomes the internal endpoint `to`.
    Translated { nat: Arc<str>, dir: Direction, src: SocketAddr, dst: SocketAddr, via: SocketAddr, to: SocketAddr },
    /// An inbound packet to a live mapping was refused by its filtering.
    Filtered { nat: Arc<str>, src: SocketAddr, dst: SocketAddr, filtering: FilteringBehavior },
    /// An inbound packet matched no mapping (or no address of ours).
    NoMapping { nat: Arc<str>, src: SocketAddr, dst: SocketAddr },
    /// An unsolicited inbound packet hit conntrack state: `created` for the
    /// packet that made the entry, false for later packets it swallowed.
    TrackedUnsolicited { nat: Arc<str>, src: SocketAddr, dst: SocketAddr, created: bool },
    /// The 5-tuple `blocked -> remote` is held by a tracked entry, so traffic
    /// from `internal` to `remote` got its own mapping on `external`.
    PortCollision { nat: Arc<str>, internal: SocketAddr, remote: SocketAddr, blocked: SocketAddr, external: SocketAddr },
    /// The TTL reached 0 here; the packet died before translation.
    TtlExpired { nat: Arc<str>, dir: Direction, src: SocketAddr, dst: SocketAddr },
    /// An inside host reached another inside host through our public address.
    Hairpinned { nat: Arc<str>, src: SocketAddr, dst: SocketAddr, via: SocketAddr, to: SocketAddr },
    /// A packet to our own public address, with hairpinning off.
    HairpinRefused { nat: Arc<str>, src: SocketAddr, dst: SocketAddr },
    /// The firewall dropped a UDP packet.
    UdpBlocked { nat: Arc<str>, dir: Direction, src: SocketAddr, dst: SocketAddr },
    /// A mapping idle for `timeout` was removed.
    MappingExpired { nat: Arc<str>, internal: SocketAddr, external: SocketAddr, timeout: Duration },
    /// The `open` router forwarded a packet unchanged.
    Forwarded { nat: Arc<str>, dir: Direction, src: SocketAddr, dst: SocketAddr },
    /// No external port (or public IP) was free for a new mapping.
    NoFreePort { nat: Arc<str>, src: SocketAddr, dst: SocketAddr },
    /// Other hosts behind the device opened `flows` new flows since its last
    /// allocation (see [`NatSpec::background_flows`]).
    Background { nat: Arc<str>, flows: u64 },
}

impl NatDecision {
    /// The device that decided.
    pub fn nat(&self) -> &str {
        use NatDecision as D;
        match self {
            D::MappingCreated { nat, .. }
            | D::Translated { nat, .. }
            | D::Filtered { nat, .. }
            | D::NoMapping { nat, .. }
            | D::TrackedUnsolicited { nat, .. }
            | D::PortCollision { nat, .. }
            | D::TtlExpired { nat, .. }
            | D::Hairpinned { nat, .. }
            | D::HairpinRefused { nat, .. }
            | D::UdpBlocked { nat, .. }
            | D::MappingExpired { nat, .. }
            | D::Forwarded { nat, .. }
            | D::NoFreePort { nat, .. }
            | D::Background { nat, .. } => nat,
        }
    }

    /// Writes the trace line (the `Display` text) piece by piece: the engine
    /// writes one for every packet crossing a NAT, straight into its line
    /// buffer, and `write!`'s argument machinery was most of their cost.
    pub fn write_to<W: fmt::Write>(&self, out: &mut W) -> fmt::Result {
        use NatDecision as D;
        out.write_str("nat ")?;
        out.write_str(self.nat())?;
        out.write_str(": ")?;
        // "{a} -> {b}", the pair most lines start with.
        let pair = |out: &mut W, word: &str, a: &SocketAddr, b: &SocketAddr| -> fmt::Result {
            out.write_str(word)?;
            Addr(*a).write_to(out)?;
            out.write_str(" -> ")?;
            Addr(*b).write_to(out)
        };
        match self {
            D::MappingCreated { internal, external, remote, .. } => {
                pair(out, "map ", internal, external)?;
                out.write_str(" (for ")?;
                Addr(*remote).write_to(out)?;
                out.write_str(")")
            }
            D::Translated { dir: Direction::Outbound, src, dst, via, .. } => {
                pair(out, "out ", src, dst)?;
                out.write_str(" as ")?;
                Addr(*via).write_to(out)
            }
            D::Translated { dir: Direction::Inbound, src, dst, to, .. } => {
                pair(out, "in ", src, dst)?;
                out.write_str(" to ")?;
                Addr(*to).write_to(out)
            }
            D::Filtered { src, dst, filtering, .. } => {
                pair(out, "filter ", src, dst)?;
                out.write_str(" (")?;
                out.write_str(filtering.name())?;
                out.write_str(" filtering: not sent there)")
            }
            D::NoMapping { src, dst, .. } => {
                pair(out, "drop ", src, dst)?;
                out.write_str(" (no mapping)")
            }
            D::TrackedUnsolicited { src, dst, created: true, .. } => {
                pair(out, "track ", src, dst)?;
                out.write_str(" (unsolicited; conntrack now holds this 5-tuple)")
            }
            D::TrackedUnsolicited { src, dst, created: false, .. } => {
                pair(out, "drop ", src, dst)?;
                out.write_str(" (held by a tracked unsolicited entry)")
            }
            D::PortCollision { internal, remote, blocked, external, .. } => {
                pair(out, "", blocked, remote)?;
                pair(out, " is held by a tracked entry; map ", internal, external)?;
                out.write_str(" for ")?;
                Addr(*remote).write_to(out)?;
                out.write_str(" only")
            }
            D::TtlExpired { dir, src, dst, .. } => {
                pair(out, "ttl expired ", src, dst)?;
                out.write_str(" (")?;
                out.write_str(dir_name(*dir))?;
                out.write_str(")")
            }
            D::Hairpinned { src, dst, via, to, .. } => {
                pair(out, "hairpin ", src, dst)?;
                out.write_str(" as ")?;
                Addr(*via).write_to(out)?;
                out.write_str(" to ")?;
                Addr(*to).write_to(out)
            }
            D::HairpinRefused { src, dst, .. } => {
                pair(out, "drop ", src, dst)?;
                out.write_str(" (no hairpinning)")
            }
            D::UdpBlocked { dir, src, dst, .. } => {
                pair(out, "drop ", src, dst)?;
                out.write_str(" (UDP blocked, ")?;
                out.write_str(dir_name(*dir))?;
                out.write_str(")")
            }
            D::MappingExpired { internal, external, timeout, .. } => {
                pair(out, "expire ", internal, external)?;
                write!(out, " (idle {})", crate::duration::format_duration(*timeout))
            }
            D::Forwarded { dir, src, dst, .. } => {
                pair(out, "route ", src, dst)?;
                out.write_str(" (")?;
                out.write_str(dir_name(*dir))?;
                out.write_str(", no translation)")
            }
            D::Background { flows, .. } => write!(out, "neighbours opened {flows} flow(s)"),
            D::NoFreePort { src, dst, .. } => {
                pair(out, "drop ", src, dst)?;
                out.write_str(" (no free external port)")
            }
        }
    }
}

impl fmt::Display for NatDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

/// A NAT device: the state behind one [`NatSpec`].
///
/// Laid out by hand (`repr(C)`, cache-line aligned): what every packet
/// reads comes first, so a device's expiry check and mapping lookup share
/// one cache line and the tables' headers the next. A simulation of a
/// thousand devices touches each rarely, and every line is a miss.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct Nat {
    /// No entry of either deadline heap falls before this, so
    /// [`Nat::expire`] can return without touching them: most packets
    /// expire nothing, and the heaps of a thousand NATs do not stay cached.
    next_expiry: Duration,
    /// The first of `spec.public_ips`, kept here too: most devices have one
    /// public address, and every inbound packet checks it.
    first_public_ip: Option<Ipv4Addr>,
    /// Whether decisions are written to the caller's log (see
    /// [`Nat::record_decisions`]).
    records_decisions: bool,
    /// Inline up to two (a home NAT's usual count), so a packet's lookup
    /// stays within the device's first lines (see [`SmallMap`]).
    mappings: SmallMap<MappingKey, Mapping, 2>,
    by_external: SmallMap<SocketAddrV4, MappingKey, 2>,
    /// Conntrack entries left by unsolicited packets: (remote, our external
    /// endpoint) -> time of the remote's last packet.
    tracked: FastMap<(SocketAddr, SocketAddrV4), Duration>,
    spec: NatSpec,
    name: Arc<str>,
    rng: Rng,
    /// Deadlines of mappings, earliest first; an entry whose mapping was
    /// refreshed since is pushed again with the new deadline when popped.
    mapping_deadlines: BinaryHeap<Reverse<(Duration, MappingKey)>>,
    tracked_deadlines: BinaryHeap<Reverse<(Duration, (SocketAddr, SocketAddrV4))>>,
    /// RFC 4787 REQ-2 paired pooling: internal host -> its public IP.
    paired: FastMap<IpAddr, Ipv4Addr>,
    /// Last port allocated per public IP, for sequential allocation.
    last_port: FastMap<Ipv4Addr, u16>,
    /// Background flows already accounted for (see
    /// [`NatSpec::background_flows`]).
    background_seen: u64,
}

impl Nat {
    /// A device with no state yet; `rng` drives its port choices.
    pub fn new(spec: NatSpec, rng: Rng) -> Nat {
        Nat {
            first_public_ip: spec.public_ips.first().copied(),
            name: Arc::from(spec.name.as_str()),
            spec,
            rng,
            mappings: SmallMap::default(),
            by_external: SmallMap::default(),
            mapping_deadlines: BinaryHeap::new(),
            tracked: FastMap::default(),
            tracked_deadlines: BinaryHeap::new(),
            paired: FastMap::default(),
            last_port: FastMap::default(),
            background_seen: 0,
            next_expiry: Duration::MAX,
            records_decisions: true,
        }
    }

    /// Whether the device writes its decisions to the log its methods take
    /// (on by default). A caller that discards them, like an untraced run,
    /// turns this off so they are not built; the packets' fate is the same.
    pub fn record_decisions(&mut self, on: bool) {
        self.records_decisions = on;
    }

    /// Whether `ip` is one of the device's public addresses.
    fn owns(&self, ip: Ipv4Addr) -> bool {
        self.first_public_ip == Some(ip) || (self.spec.public_ips.len() > 1 && self.spec.public_ips.contains(&ip))
    }

    /// Appends the decision `make` builds from the device's name, when
    /// decisions are recorded.
    fn note(&self, log: &mut Vec<NatDecision>, make: impl FnOnce(Arc<str>) -> NatDecision) {
        if self.records_decisions {
            log.push(make(self.name.clone()));
        }
    }

    /// The configuration this device runs.
    pub fn spec(&self) -> &NatSpec {
        &self.spec
    }

    /// True when `ip` is one of the device's public addresses, so packets to
    /// it belong to [`Nat::inbound`] (or [`Nat::hairpin`] from inside).
    pub fn is_public_ip(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => self.owns(v4),
            IpAddr::V6(_) => false,
        }
    }

    /// A packet from an inside host toward the outside. Returns it with its
    /// source translated and its TTL decremented, or `None` when dropped.
    /// `pkt.dst` should not be one of our public IPs: use [`Nat::hairpin`].
    pub fn outbound(&mut self, now: Duration, pkt: Packet, log: &mut Vec<NatDecision>) -> Option<Packet> {
        let mut pkt = self.enter(now, pkt, Direction::Outbound, log)?;
        if !self.spec.translate {
            self.note(log, |nat| NatDecision::Forwarded { nat, dir: Direction::Outbound, src: pkt.src, dst: pkt.dst });
            return Some(pkt);
        }
        let via = self.translate_source(now, pkt.src, pkt.dst, log)?;
        self.note(log, |nat| NatDecision::Translated {
            nat,
            dir: Direction::Outbound,
            src: pkt.src,
            dst: pkt.dst,
            via,
            to: pkt.dst,
        });
        pkt.src = via;
        Some(pkt)
    }

    /// A packet from the outside to one of our public addresses. Returns it
    /// addressed to the inside host, TTL decremented, or `None` when dropped.
    pub fn inbound(&mut self, now: Duration, pkt: Packet, log: &mut Vec<NatDecision>) -> Option<Packet> {
        let mut pkt = self.enter(now, pkt, Direction::Inbound, log)?;
        if !self.spec.translate {
            if self.is_public_ip(pkt.dst.ip()) {
                self.note(log, |nat| NatDecision::Forwarded {
                    nat,
                    dir: Direction::Inbound,
                    src: pkt.src,
                    dst: pkt.dst,
                });
                return Some(pkt);
            }
            self.note(log, |nat| NatDecision::NoMapping { nat, src: pkt.src, dst: pkt.dst });
            return None;
        }
        let to = self.translate_destination(now, pkt.src, pkt.dst, log)?;
        self.note(log, |nat| NatDecision::Translated {
            nat,
            dir: Direction::Inbound,
            src: pkt.src,
            dst: pkt.dst,
            via: pkt.dst,
            to,
        });
        pkt.dst = to;
        Some(pkt)
    }

    /// A packet from an inside host to one of this device's own public
    /// addresses (RFC 4787 §6). With hairpinning on, the source becomes the
    /// sender's external mapping, the target mapping's filtering applies, and
    /// the packet is returned addressed to the inside target; otherwise it is
    /// dropped.
    pub fn hairpin(&mut self, now: Duration, pkt: Packet, log: &mut Vec<NatDecision>) -> Option<Packet> {
        let mut pkt = self.enter(now, pkt, Direction::Outbound, log)?;
        if !self.spec.translate {
            // A plain router delivering between two of its own hosts.
            self.note(log, |nat| NatDecision::Forwarded { nat, dir: Direction::Inbound, src: pkt.src, dst: pkt.dst });
            return Some(pkt);
        }
        if !self.spec.hairpin {
            self.note(log, |nat| NatDecision::HairpinRefused { nat, src: pkt.src, dst: pkt.dst });
            return None;
        }
        let via = self.translate_source(now, pkt.src, pkt.dst, log)?;
        let to = self.translate_destination(now, via, pkt.dst, log)?;
        self.note(log, |nat| NatDecision::Hairpinned { nat, src: pkt.src, dst: pkt.dst, via, to });
        pkt.src = via;
        pkt.dst = to;
        Some(pkt)
    }

    /// Removes every mapping, permission and tracked entry idle past the
    /// timeout at `now`, logging each expired mapping. Every other method
    /// calls this first; the engine may call it to get exact counts.
    pub fn expire(&mut self, now: Duration, log: &mut Vec<NatDecision>) {
        if now < self.next_expiry {
            return;
        }
        while let Some(Reverse((deadline, key))) = self.mapping_deadlines.peek().cloned() {
            if deadline > now {
                break;
            }
            self.mapping_deadlines.pop();
            let Some(mapping) = self.mappings.get(&key) else { continue };
            let actual = after(mapping.last_refresh, self.spec.timeout);
            if actual > now {
                self.mapping_deadlines.push(Reverse((actual, key)));
                continue;
            }
            let external = mapping.external;
            self.mappings.remove(&key);
            self.by_external.remove(&external);
            self.note(log, |nat| NatDecision::MappingExpired {
                nat,
                internal: key.internal,
                external: SocketAddr::V4(external),
                timeout: self.spec.timeout,
            });
        }
        while let Some(Reverse((deadline, tuple))) = self.tracked_deadlines.peek().cloned() {
            if deadline > now {
                break;
            }
            self.tracked_deadlines.pop();
            let Some(&last_seen) = self.tracked.get(&tuple) else { continue };
            let actual = after(last_seen, self.spec.timeout);
            if actual > now {
                self.tracked_deadlines.push(Reverse((actual, tuple)));
            } else {
                self.tracked.remove(&tuple);
            }
        }
        let earliest = |heap: Option<Duration>| heap.unwrap_or(Duration::MAX);
        self.next_expiry = earliest(self.mapping_deadlines.peek().map(|Reverse((at, _))| *at))
            .min(earliest(self.tracked_deadlines.peek().map(|Reverse((at, _))| *at)));
    }

    /// Power-cycles the device: every mapping, tracked entry and IP pairing
    /// is flushed and the port allocator starts over.
    pub fn reboot(&mut self) {
        self.mappings.clear();
        self.by_external.clear();
        self.mapping_deadlines.clear();
        self.tracked.clear();
        self.tracked_deadlines.clear();
        self.next_expiry = Duration::MAX;
        self.paired.clear();
        self.last_port.clear();
    }

    /// Mappings held as of the last call (expired ones are removed lazily;
    /// call [`Nat::expire`] first for an exact count at a given time).
    pub fn mapping_count(&self) -> usize {
        self.mappings.len()
    }

    /// Conntrack entries left by unsolicited packets, as of the last call.
    pub fn tracked_count(&self) -> usize {
        self.tracked.len()
    }
}

/// What a mapping is keyed by: the internal endpoint, plus the destination
/// parts its mapping behaviour depends on (RFC 4787 §4.1). A per-destination
/// mapping made by a [`NatDecision::PortCollision`] carries both parts
/// whatever the behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct MappingKey {
    internal: SocketAddr,
    dest_ip: Option<IpAddr>,
    dest_port: Option<u16>,
}

#[derive(Clone, Debug)]
struct Mapping {
    external: SocketAddrV4,
    last_refresh: Duration,
    /// Permissions for filtering: when the mapping last sent to each remote.
    sent_to: Permissions,
}

/// When a mapping last sent to each remote endpoint, or to each remote
/// address (the latest over its ports): whichever the device's filtering
/// (RFC 4787 §5) reads, so a check is one lookup. Endpoint-independent
/// filtering reads neither and records nothing.
#[derive(Clone, Debug, Default)]
struct Permissions {
    endpoints: FastMap<SocketAddr, Duration>,
    addresses: FastMap<IpAddr, Duration>,
}

impl Permissions {
    fn record(&mut self, filtering: FilteringBehavior, remote: SocketAddr, now: Duration) {
        match filtering {
            FilteringBehavior::EndpointIndependent => {}
            FilteringBehavior::AddressDependent => {
                self.addresses.insert(remote.ip(), now);
            }
            FilteringBehavior::AddressAndPortDependent => {
                self.endpoints.insert(remote, now);
            }
        }
    }

    /// Last packet sent to `remote`.
    fn endpoint(&self, remote: SocketAddr) -> Option<Duration> {
        self.endpoints.get(&remote).copied()
    }

    /// Last packet sent to any port of `ip`.
    fn address(&self, ip: IpAddr) -> Option<Duration> {
        self.addresses.get(&ip).copied()
    }
}

fn after(t: Duration, timeout: Duration) -> Duration {
    t.checked_add(timeout).unwrap_or(Duration::MAX)
}

fn dir_name(dir: Direction) -> &'static str {
    match dir {
        Direction::Outbound => "outbound",
        Direction::Inbound => "inbound",
    }
}

impl Nat {
    /// The router part common to every direction: TTL, firewall, expiry.
    fn enter(&mut self, now: Duration, mut pkt: Packet, dir: Direction, log: &mut Vec<NatDecision>) -> Option<Packet> {
        self.expire(now, log);
        if self.spec.blocks_udp {
            self.note(log, |nat| NatDecision::UdpBlocked { nat, dir, src: pkt.src, dst: pkt.dst });
            return None;
        }
        // A router that decrements the TTL to 0 drops the packet (RFC 1812
        // §5.3.1), before the NAT step in its forwarding path.
        pkt.ttl = pkt.ttl.saturating_sub(1);
        if pkt.ttl == 0 {
            self.note(log, |nat| NatDecision::TtlExpired { nat, dir, src: pkt.src, dst: pkt.dst });
            return None;
        }
        Some(pkt)
    }

    /// Finds or creates the mapping for `internal -> remote`, refreshes it,
    /// and returns its external endpoint.
    fn translate_source(
        &mut self,
        now: Duration,
        internal: SocketAddr,
        remote: SocketAddr,
        log: &mut Vec<NatDecision>,
    ) -> Option<SocketAddr> {
        let exact = MappingKey { internal, dest_ip: Some(remote.ip()), dest_port: Some(remote.port()) };
        let key = if self.mappings.contains_key(&exact) { exact } else { self.behaviour_key(internal, remote) };
        let existing = self.mappings.get(&key).map(|m| m.external);
        // The external endpoint this flow would leave from: the mapping's, or
        // for a new mapping the preserved port.
        let wanted = existing.or_else(|| self.preserved_candidate(internal));
        let key = match wanted {
            Some(blocked) if self.tracked.contains_key(&(remote, blocked)) => {
                // Linux conntrack: the reply tuple of the unsolicited entry
                // already owns `blocked -> remote`, so this flow must leave
                // from another port. An endpoint that already has a mapping
                // keeps it for other destinations; one without becomes known
                // by the new port, which its later flows reuse (the kernel's
                // `find_appropriate_src`, measured by the kernel lab).
                let external = self.allocate(internal, remote, log)?;
                let target = if existing.is_some() { exact } else { key };
                if let Some(old) = self.mappings.remove(&target) {
                    self.by_external.remove(&old.external);
                }
                self.insert_mapping(now, target, external);
                self.note(log, |nat| NatDecision::PortCollision {
                    nat,
                    internal,
                    remote,
                    blocked: SocketAddr::V4(blocked),
                    external: SocketAddr::V4(external),
                });
                target
            }
            _ if existing.is_some() => key,
            _ => {
                self.run_background(now, log);
                let external = self.allocate(internal, remote, log)?;
                self.insert_mapping(now, key, external);
                self.note(log, |nat| NatDecision::MappingCreated {
                    nat,
                    internal,
                    external: SocketAddr::V4(external),
                    remote,
                });
                key
            }
        };
        // Invariant: `key` was found or inserted just above.
        let mapping = self.mappings.get_mut(&key).expect("mapping present");
        // RFC 4787 REQ-6: outbound traffic refreshes the mapping.
        mapping.last_refresh = now;
        mapping.sent_to.record(self.spec.filtering, remote, now);
        Some(SocketAddr::V4(mapping.external))
    }

    /// Applies filtering for `remote -> external` and returns the internal
    /// endpoint, or records why the packet was dropped.
    fn translate_destination(
        &mut self,
        now: Duration,
        remote: SocketAddr,
        external: SocketAddr,
        log: &mut Vec<NatDecision>,
    ) -> Option<SocketAddr> {
        let external = match external {
            SocketAddr::V4(v4) if self.owns(*v4.ip()) => v4,
            _ => {
                self.note(log, |nat| NatDecision::NoMapping { nat, src: remote, dst: external });
                return None;
            }
        };
        let tuple = (remote, external);
        if let Some(last_seen) = self.tracked.get_mut(&tuple) {
            // The entry's reply direction is the router itself; refreshed
            // while the remote keeps sending.
            *last_seen = now;
            self.note(log, |nat| NatDecision::TrackedUnsolicited {
                nat,
                src: remote,
                dst: external.into(),
                created: false,
            });
            return None;
        }
        let timeout = self.spec.timeout;
        let filtering = self.spec.filtering;
        let Some(key) = self.by_external.get(&external).copied() else {
            self.note(log, |nat| NatDecision::NoMapping { nat, src: remote, dst: external.into() });
            self.track_unsolicited(now, tuple, log);
            return None;
        };
        // Invariant: `by_external` and `mappings` are updated together.
        let mapping = self.mappings.get_mut(&key).expect("indexed mapping present");
        let live = |sent: Duration| now < after(sent, timeout);
        let permitted = match filtering {
            FilteringBehavior::EndpointIndependent => true,
            // A permission is live while its latest packet is, so the
            // address's latest packet over all its ports decides.
            FilteringBehavior::AddressDependent => mapping.sent_to.address(remote.ip()).is_some_and(live),
            FilteringBehavior::AddressAndPortDependent => mapping.sent_to.endpoint(remote).is_some_and(live),
        };
        if !permitted {
            self.note(log, |nat| NatDecision::Filtered { nat, src: remote, dst: external.into(), filtering });
            self.track_unsolicited(now, tuple, log);
            return None;
        }
        if self.spec.inbound_refreshes {
            mapping.last_refresh = now;
            mapping.sent_to.record(filtering, remote, now);
        }
        Some(key.internal)
    }

    fn track_unsolicited(&mut self, now: Duration, tuple: (SocketAddr, SocketAddrV4), log: &mut Vec<NatDecision>) {
        if self.spec.unsolicited != Unsolicited::Track {
            return;
        }
        self.tracked.insert(tuple, now);
        let deadline = after(now, self.spec.timeout);
        self.tracked_deadlines.push(Reverse((deadline, tuple)));
        self.next_expiry = self.next_expiry.min(deadline);
        self.note(log, |nat| NatDecision::TrackedUnsolicited { nat, src: tuple.0, dst: tuple.1.into(), created: true });
    }

    /// The endpoint port preservation would give `internal` if it is free of
    /// mappings (tracked entries are checked by the caller).
    fn preserved_candidate(&mut self, internal: SocketAddr) -> Option<SocketAddrV4> {
        if self.spec.ports != PortPolicy::Preserve {
            return None;
        }
        let (lo, hi) = (self.spec.port_range.0.max(1), self.spec.port_range.1);
        let port = internal.port();
        let ext = SocketAddrV4::new(self.paired_ip(internal.ip())?, port);
        ((lo..=hi).contains(&port) && !self.by_external.contains_key(&ext)).then_some(ext)
    }

    /// Lets the neighbours' flows since the last allocation take their ports
    /// from the sequential allocator, lazily: only the pointer moves, as if
    /// each flow came and went (RFC 4787 §4.2.2's "port overloading" aside).
    fn run_background(&mut self, now: Duration, log: &mut Vec<NatDecision>) {
        let rate = u128::from(self.spec.background_flows);
        let due = (now.as_nanos() * rate / 1_000_000_000) as u64;
        let new = due.saturating_sub(self.background_seen);
        self.background_seen = due;
        let PortPolicy::Sequential { delta } = self.spec.ports else { return };
        if new == 0 {
            return;
        }
        let (lo, hi) = (i64::from(self.spec.port_range.0.max(1)), i64::from(self.spec.port_range.1));
        if lo > hi {
            return;
        }
        let span = hi - lo + 1;
        let step = (i64::from(delta) * (new % span as u64) as i64).rem_euclid(span);
        // Every entry moves alike, so the table's order does not matter.
        for port in self.last_port.values_mut() {
            *port = (lo + (i64::from(*port) - lo + step).rem_euclid(span)) as u16;
        }
        self.note(log, |nat| NatDecision::Background { nat, flows: new });
    }

    fn behaviour_key(&self, internal: SocketAddr, remote: SocketAddr) -> MappingKey {
        let (dest_ip, dest_port) = match self.spec.mapping {
            MappingBehavior::EndpointIndependent => (None, None),
            MappingBehavior::AddressDependent => (Some(remote.ip()), None),
            MappingBehavior::AddressAndPortDependent => (Some(remote.ip()), Some(remote.port())),
        };
        MappingKey { internal, dest_ip, dest_port }
    }

    fn insert_mapping(&mut self, now: Duration, key: MappingKey, external: SocketAddrV4) {
        self.mappings.insert(key, Mapping { external, last_refresh: now, sent_to: Permissions::default() });
        self.by_external.insert(external, key);
        let deadline = after(now, self.spec.timeout);
        self.mapping_deadlines.push(Reverse((deadline, key)));
        self.next_expiry = self.next_expiry.min(deadline);
    }

    /// Picks a free external endpoint for `internal -> remote`: the paired
    /// public IP, and a port per the policy that is neither mapped nor held
    /// toward `remote` by a tracked entry (Linux picks a unique tuple).
    fn allocate(
        &mut self,
        internal: SocketAddr,
        remote: SocketAddr,
        log: &mut Vec<NatDecision>,
    ) -> Option<SocketAddrV4> {
        let ip = self.paired_ip(internal.ip());
        let port = ip.and_then(|ip| self.pick_port(ip, internal.port(), remote));
        match (ip, port) {
            (Some(ip), Some(port)) => {
                self.last_port.insert(ip, port);
                Some(SocketAddrV4::new(ip, port))
            }
            _ => {
                self.note(log, |nat| NatDecision::NoFreePort { nat, src: internal, dst: remote });
                None
            }
        }
    }

    /// RFC 4787 REQ-2 ("IP address pooling: paired"): a host keeps the public
    /// IP it was first given; new hosts are spread round-robin.
    fn paired_ip(&mut self, host: IpAddr) -> Option<Ipv4Addr> {
        if let Some(ip) = self.paired.get(&host) {
            return Some(*ip);
        }
        let pool = &self.spec.public_ips;
        let ip = *pool.get(self.paired.len() % pool.len().max(1))?;
        self.paired.insert(host, ip);
        Some(ip)
    }

    fn pick_port(&mut self, ip: Ipv4Addr, internal_port: u16, remote: SocketAddr) -> Option<u16> {
        let (lo, hi) = (self.spec.port_range.0.max(1), self.spec.port_range.1);
        if lo > hi {
            return None;
        }
        let span = u64::from(hi - lo) + 1;
        let free = |nat: &Nat, port: u16| {
            let ext = SocketAddrV4::new(ip, port);
            !nat.by_external.contains_key(&ext) && !nat.tracked.contains_key(&(remote, ext))
        };
        match self.spec.ports {
            PortPolicy::Preserve => {
                if (lo..=hi).contains(&internal_port) && free(self, internal_port) {
                    return Some(internal_port);
                }
            }
            PortPolicy::Sequential { delta } => {
                let Some(&last) = self.last_port.get(&ip) else {
                    return self.random_free_port(lo, span, free);
                };
                // RFC 4787 §4.2.2: consecutive mappings get predictable ports.
                let offset = i64::from(last) - i64::from(lo);
                for step in 1..=span as i64 {
                    let port = lo + (offset + step * i64::from(delta)).rem_euclid(span as i64) as u16;
                    if free(self, port) {
                        return Some(port);
                    }
                }
            }
            PortPolicy::Random => {}
        }
        self.random_free_port(lo, span, free)
    }

    /// A uniformly random free port in `lo..lo+span`; after a few misses, the
    /// first free port scanning up from a random start.
    fn random_free_port(&mut self, lo: u16, span: u64, free: impl Fn(&Nat, u16) -> bool) -> Option<u16> {
        const RANDOM_TRIES: usize = 32;
        for _ in 0..RANDOM_TRIES {
            let port = lo + self.rng.below(span) as u16;
            if free(self, port) {
                return Some(port);
            }
        }
        let start = self.rng.below(span);
        (0..span).map(|i| lo + ((start + i) % span) as u16).find(|&port| free(self, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = "203.0.113.10:3478";
    const ALT: &str = "203.0.113.11:3479";
    const PEER: &str = "198.51.100.2:4000";
    const HOST: &str = "10.0.0.2:4000";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn pkt(src: &str, dst: &str) -> Packet {
        Packet { src: addr(src), dst: addr(dst), ttl: 64, payload: Bytes::from_static(b"x") }
    }

    fn nat(preset: Preset) -> Nat {
        nat_with(preset.spec("home-b", vec!["198.51.100.6".parse().unwrap()]))
    }

    fn nat_with(spec: NatSpec) -> Nat {
        Nat::new(spec, Rng::new(7))
    }

    /// Sends `src -> dst` out and returns the external source it left from.
    fn send(n: &mut Nat, now: Duration, src: &str, dst: &str) -> Option<SocketAddr> {
        n.outbound(now, pkt(src, dst), &mut Vec::new()).map(|p| p.src)
    }

    /// Delivers `src -> dst` from outside and returns the inside destination.
    fn recv(n: &mut Nat, now: Duration, src: &str, dst: &str) -> Option<SocketAddr> {
        n.inbound(now, pkt(src, dst), &mut Vec::new()).map(|p| p.dst)
    }

    fn lines(log: &[NatDecision]) -> Vec<String> {
        log.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn full_cone_maps_preserving_the_port_and_accepts_anyone() {
        // Given a full-cone NAT,
        let mut n = nat(Preset::FullCone);
        let mut log = Vec::new();
        // when a host sends to the server,
        let out = n.outbound(secs(1), pkt(HOST, SERVER), &mut log).unwrap();
        // then the port is preserved, the TTL decremented, and the trace says so;
        assert_eq!((out.src, out.dst, out.ttl), (addr("198.51.100.6:4000"), addr(SERVER), 63));
        assert_eq!(
            lines(&log),
            [
                "nat home-b: map 10.0.0.2:4000 -> 198.51.100.6:4000 (for 203.0.113.10:3478)",
                "nat home-b: out 10.0.0.2:4000 -> 203.0.113.10:3478 as 198.51.100.6:4000",
            ]
        );
        // and a stranger reaches the host through the mapping (RFC 4787 §5 EIF).
        log.clear();
        let back = n.inbound(secs(2), pkt(PEER, "198.51.100.6:4000"), &mut log).unwrap();
        assert_eq!((back.src, back.dst), (addr(PEER), addr(HOST)));
        assert_eq!(lines(&log), ["nat home-b: in 198.51.100.2:4000 -> 198.51.100.6:4000 to 10.0.0.2:4000"]);
    }

    #[test]
    fn restricted_cone_filters_by_address_and_port_restricted_by_endpoint() {
        // Given both cones with a mapping toward the server,
        let mut restricted = nat(Preset::RestrictedCone);
        let mut port_restricted = nat(Preset::PortRestrictedCone);
        for n in [&mut restricted, &mut port_restricted] {
            send(n, secs(0), HOST, SERVER);
        }
        // when the server answers from its other port and a stranger writes,
        // then the restricted cone accepts the same IP on any port,
        assert_eq!(recv(&mut restricted, secs(1), "203.0.113.10:9999", "198.51.100.6:4000"), Some(addr(HOST)));
        assert_eq!(recv(&mut restricted, secs(1), PEER, "198.51.100.6:4000"), None);
        // and the port-restricted cone only the exact endpoint it sent to.
        assert_eq!(recv(&mut port_restricted, secs(1), "203.0.113.10:9999", "198.51.100.6:4000"), None);
        assert_eq!(recv(&mut port_restricted, secs(1), SERVER, "198.51.100.6:4000"), Some(addr(HOST)));
        let mut log = Vec::new();
        port_restricted.inbound(secs(1), pkt(PEER, "198.51.100.6:4000"), &mut log);
        assert_eq!(
            lines(&log),
            ["nat home-b: filter 198.51.100.2:4000 -> 198.51.100.6:4000 \
              (address-and-port-dependent filtering: not sent there)"]
        );
        assert_eq!(port_restricted.tracked_count(), 0, "a textbook NAT leaves nothing behind");
    }

    #[test]
    fn endpoint_independent_mapping_reuses_one_port_for_every_destination() {
        let mut n = nat(Preset::PortRestrictedCone);
        assert_eq!(send(&mut n, secs(0), HOST, SERVER), Some(addr("198.51.100.6:4000")));
        assert_eq!(send(&mut n, secs(0), HOST, ALT), Some(addr("198.51.100.6:4000")));
        assert_eq!(send(&mut n, secs(0), HOST, PEER), Some(addr("198.51.100.6:4000")));
        assert_eq!(n.mapping_count(), 1);
    }

    #[test]
    fn address_dependent_mapping_changes_port_only_for_a_new_address() {
        // Given a NAT whose mapping depends on the destination address,
        let mut spec = Preset::FullCone.spec("ad", vec!["198.51.100.6".parse().unwrap()]);
        spec.mapping = MappingBehavior::AddressDependent;
        let mut n = nat_with(spec);
        // when a host sends to two ports of the server and then to a peer,
        let first = send(&mut n, secs(0), HOST, SERVER).unwrap();
        let same_ip = send(&mut n, secs(0), HOST, "203.0.113.10:9999").unwrap();
        let other_ip = send(&mut n, secs(0), HOST, PEER).unwrap();
        // then the server's IP shares one mapping and the peer gets another.
        assert_eq!(first, addr("198.51.100.6:4000"));
        assert_eq!(same_ip, first);
        assert_ne!(other_ip.port(), 4000);
        assert_eq!(n.mapping_count(), 2);
    }

    #[test]
    fn symmetric_sequential_allocates_consecutive_ports_per_destination() {
        // Given a sequential symmetric NAT,
        let mut n = nat(Preset::SymmetricSequential);
        // when a host sends to three destinations (and again to the first),
        let a = send(&mut n, secs(0), HOST, SERVER).unwrap().port();
        let b = send(&mut n, secs(0), HOST, ALT).unwrap().port();
        let c = send(&mut n, secs(0), HOST, PEER).unwrap().port();
        let a_again = send(&mut n, secs(1), HOST, SERVER).unwrap().port();
        // then each destination gets the next port, and the first keeps its own.
        assert_eq!((b, c, a_again), (a + 1, a + 2, a));
        assert!((1024..=65535).contains(&a));
    }

    #[test]
    fn sequential_allocation_wraps_within_the_range_and_skips_ports_in_use() {
        // Given ports 5000..=5002 with a delta of 2 and a start at 5000,
        let mut spec = Preset::SymmetricSequential.spec("seq", vec!["198.51.100.6".parse().unwrap()]);
        spec.port_range = (5000, 5002);
        spec.ports = PortPolicy::Sequential { delta: 2 };
        let mut n = nat_with(spec);
        let first = send(&mut n, secs(0), HOST, "203.0.113.1:1").unwrap().port();
        // when three more destinations are mapped,
        let next: Vec<u16> =
            (2..=4).map(|i| send(&mut n, secs(0), HOST, &format!("203.0.113.{i}:1")).map_or(0, |a| a.port())).collect();
        // then the ports step by 2 modulo the range, and the fourth finds none.
        let expected = |k: u16| 5000 + (first - 5000 + 2 * k) % 3;
        assert_eq!(next, [expected(1), expected(2), 0]);
        let mut log = Vec::new();
        n.outbound(secs(0), pkt(HOST, "203.0.113.9:1"), &mut log);
        assert_eq!(lines(&log), ["nat seq: drop 10.0.0.2:4000 -> 203.0.113.9:1 (no free external port)"]);
    }

    #[test]
    fn symmetric_random_ports_are_unpredictable_but_deterministic_per_seed() {
        let ports = |seed: u64| {
            let mut n =
                Nat::new(Preset::SymmetricRandom.spec("r", vec!["198.51.100.6".parse().unwrap()]), Rng::new(seed));
            (1..=5)
                .map(|i| send(&mut n, secs(0), HOST, &format!("203.0.113.{i}:1")).unwrap().port())
                .collect::<Vec<_>>()
        };
        assert_eq!(ports(1), ports(1));
        assert_ne!(ports(1), ports(2));
        let p = ports(1);
        assert!(p.windows(2).all(|w| w[1] != w[0].wrapping_add(1)), "not sequential: {p:?}");
    }

    #[test]
    fn preservation_falls_back_to_a_random_port_when_taken() {
        // Given two hosts using the same local port behind one cone,
        let mut n = nat(Preset::PortRestrictedCone);
        let first = send(&mut n, secs(0), HOST, SERVER).unwrap();
        // when the second host sends,
        let second = send(&mut n, secs(0), "10.0.0.3:4000", SERVER).unwrap();
        // then it gets another port, in range.
        assert_eq!(first.port(), 4000);
        assert_ne!(second.port(), 4000);
        assert!(second.port() >= 1024);
    }

    #[test]
    fn a_host_always_gets_the_same_public_ip_from_the_pool() {
        // Given a NAT with two public IPs (RFC 4787 REQ-2, paired),
        let ips = vec!["198.51.100.6".parse().unwrap(), "198.51.100.7".parse().unwrap()];
        let mut n = nat_with(Preset::SymmetricRandom.spec("pool", ips));
        // when two hosts send to several destinations,
        let a: Vec<IpAddr> =
            (1..=4).map(|i| send(&mut n, secs(0), HOST, &format!("203.0.113.{i}:1")).unwrap().ip()).collect();
        let b = send(&mut n, secs(0), "10.0.0.3:4000", SERVER).unwrap().ip();
        // then the first host always uses the first IP, the second the next one.
        assert_eq!(a, vec![IpAddr::from([198, 51, 100, 6]); 4]);
        assert_eq!(b, IpAddr::from([198, 51, 100, 7]));
    }

    #[test]
    fn mappings_expire_without_outbound_traffic_and_inbound_does_not_refresh_by_default() {
        // Given a full cone (120 s) mapping created at t=0,
        let mut n = nat(Preset::FullCone);
        send(&mut n, secs(0), HOST, SERVER);
        // when only inbound traffic flows,
        assert_eq!(recv(&mut n, secs(100), SERVER, "198.51.100.6:4000"), Some(addr(HOST)));
        // then the mapping still dies 120 s after the last outbound packet.
        let mut log = Vec::new();
        assert_eq!(n.inbound(secs(120), pkt(SERVER, "198.51.100.6:4000"), &mut log), None);
        assert_eq!(
            lines(&log),
            [
                "nat home-b: expire 10.0.0.2:4000 -> 198.51.100.6:4000 (idle 2m)",
                "nat home-b: drop 203.0.113.10:3478 -> 198.51.100.6:4000 (no mapping)",
            ]
        );
        assert_eq!(n.mapping_count(), 0);
    }

    #[test]
    fn a_nat_not_recording_decisions_treats_packets_the_same_and_logs_nothing() {
        // Given two linux NATs, one told not to record its decisions,
        let mut recording = nat(Preset::Linux);
        let mut silent = nat(Preset::Linux);
        silent.record_decisions(false);
        let (mut logged, mut unlogged) = (Vec::new(), Vec::new());
        for (n, log) in [(&mut recording, &mut logged), (&mut silent, &mut unlogged)] {
            // when each maps, translates, filters, tracks and expires alike,
            let out = n.outbound(secs(0), pkt(HOST, SERVER), log).map(|p| p.src);
            let back = n.inbound(secs(1), pkt(SERVER, "198.51.100.6:4000"), log).map(|p| p.dst);
            let stray = n.inbound(secs(2), pkt(PEER, "198.51.100.6:4000"), log).map(|p| p.dst);
            n.expire(secs(500), log);
            // then both give each packet the same fate,
            assert_eq!((out, back, stray), (Some(addr("198.51.100.6:4000")), Some(addr(HOST)), None));
            assert_eq!((n.mapping_count(), n.tracked_count()), (0, 0));
        }
        // and only the recording one wrote them down.
        assert!(lines(&logged).iter().any(|l| l.contains("expire")), "{logged:?}");
        assert!(unlogged.is_empty(), "{unlogged:?}");
    }

    #[test]
    fn outbound_traffic_refreshes_and_inbound_does_when_configured() {
        // Given two NATs, one of which lets inbound traffic refresh,
        let mut plain = nat(Preset::FullCone);
        let mut spec = Preset::FullCone.spec("home-b", vec!["198.51.100.6".parse().unwrap()]);
        spec.inbound_refreshes = true;
        let mut refreshing = nat_with(spec);
        for n in [&mut plain, &mut refreshing] {
            send(n, secs(0), HOST, SERVER);
            // when the host sends again at 100 s and hears back at 200 s,
            send(n, secs(100), HOST, SERVER);
            recv(n, secs(200), SERVER, "198.51.100.6:4000");
        }
        // then at 250 s only the inbound-refreshed mapping is alive.
        assert_eq!(recv(&mut plain, secs(250), SERVER, "198.51.100.6:4000"), None);
        assert_eq!(recv(&mut refreshing, secs(250), SERVER, "198.51.100.6:4000"), Some(addr(HOST)));
    }

    #[test]
    fn a_permission_expires_on_its_own_while_keepalives_hold_the_mapping() {
        // Given a port-restricted cone that sent once to a peer at t=0 and
        // keeps a keepalive toward the server,
        let mut n = nat(Preset::PortRestrictedCone);
        send(&mut n, secs(0), HOST, PEER);
        for t in (0..=200).step_by(25) {
            send(&mut n, secs(t), HOST, SERVER);
        }
        // when the peer writes after 120 s of silence toward it,
        // then it is filtered although the mapping lives.
        assert_eq!(recv(&mut n, secs(119), PEER, "198.51.100.6:4000"), Some(addr(HOST)));
        assert_eq!(recv(&mut n, secs(200), PEER, "198.51.100.6:4000"), None);
        assert_eq!(recv(&mut n, secs(200), SERVER, "198.51.100.6:4000"), Some(addr(HOST)));
    }

    #[test]
    fn a_packet_whose_ttl_reaches_zero_dies_before_translation() {
        // Given a cone NAT,
        let mut n = nat(Preset::PortRestrictedCone);
        let mut log = Vec::new();
        // when a TTL-1 packet leaves the host,
        let dying = Packet { ttl: 1, ..pkt(HOST, PEER) };
        assert_eq!(n.outbound(secs(0), dying, &mut log), None);
        // then it is dropped here and leaves no mapping;
        assert_eq!(lines(&log), ["nat home-b: ttl expired 10.0.0.2:4000 -> 198.51.100.2:4000 (outbound)"]);
        assert_eq!(n.mapping_count(), 0);
        // and a TTL-2 opener crosses with TTL 1 left, opening the mapping.
        let opener = n.outbound(secs(0), Packet { ttl: 2, ..pkt(HOST, PEER) }, &mut log).unwrap();
        assert_eq!(opener.ttl, 1);
        assert_eq!(n.mapping_count(), 1);
        // A TTL-0 packet (hostile or broken) is dropped too, without panic.
        assert_eq!(n.inbound(secs(0), Packet { ttl: 0, ..pkt(PEER, "198.51.100.6:4000") }, &mut log), None);
    }

    #[test]
    fn udp_blocked_drops_everything_both_ways() {
        let mut n = nat(Preset::UdpBlocked);
        let mut log = Vec::new();
        assert_eq!(n.outbound(secs(0), pkt(HOST, SERVER), &mut log), None);
        assert_eq!(n.inbound(secs(0), pkt(SERVER, "198.51.100.6:4000"), &mut log), None);
        assert_eq!(
            lines(&log),
            [
                "nat home-b: drop 10.0.0.2:4000 -> 203.0.113.10:3478 (UDP blocked, outbound)",
                "nat home-b: drop 203.0.113.10:3478 -> 198.51.100.6:4000 (UDP blocked, inbound)",
            ]
        );
    }

    #[test]
    fn hairpinning_translates_the_source_and_applies_filtering() {
        // Given two hosts behind a port-restricted cone, each mapped,
        let mut n = nat(Preset::PortRestrictedCone);
        send(&mut n, secs(0), HOST, SERVER);
        send(&mut n, secs(0), "10.0.0.3:5000", SERVER);
        // when the first writes to the second's public endpoint before the
        // second has written to it,
        let mut log = Vec::new();
        assert_eq!(n.hairpin(secs(1), pkt(HOST, "198.51.100.6:5000"), &mut log), None);
        // then filtering drops it; once the second has written back, it passes
        // with the external source (RFC 4787 REQ-9).
        assert_eq!(
            n.hairpin(secs(1), pkt("10.0.0.3:5000", "198.51.100.6:4000"), &mut log).map(|p| (p.src, p.dst)),
            Some((addr("198.51.100.6:5000"), addr(HOST)))
        );
        log.clear();
        let through = n.hairpin(secs(2), pkt(HOST, "198.51.100.6:5000"), &mut log).unwrap();
        assert_eq!((through.src, through.dst), (addr("198.51.100.6:4000"), addr("10.0.0.3:5000")));
        assert_eq!(
            lines(&log),
            ["nat home-b: hairpin 10.0.0.2:4000 -> 198.51.100.6:5000 as 198.51.100.6:4000 to 10.0.0.3:5000"]
        );
    }

    #[test]
    fn without_hairpinning_a_packet_to_our_own_address_is_dropped() {
        let mut n = nat(Preset::Linux);
        let mut log = Vec::new();
        assert_eq!(n.hairpin(secs(0), pkt(HOST, "198.51.100.6:5000"), &mut log), None);
        assert_eq!(lines(&log), ["nat home-b: drop 10.0.0.2:4000 -> 198.51.100.6:5000 (no hairpinning)"]);
    }

    #[test]
    fn linux_unsolicited_probe_poisons_the_five_tuple_as_in_design_section_3() {
        // Given B's linux NAT with B logged in (mapping 4000 toward the server),
        let mut n = nat(Preset::Linux);
        send(&mut n, secs(0), HOST, SERVER);
        // when A's probe arrives before B has sent anything to A,
        let mut log = Vec::new();
        assert_eq!(n.inbound(secs(1), pkt(PEER, "198.51.100.6:4000"), &mut log), None);
        // and A retries,
        assert_eq!(n.inbound(secs(2), pkt(PEER, "198.51.100.6:4000"), &mut log), None);
        // and B then sends to A,
        let b_to_a = n.outbound(secs(3), pkt(HOST, PEER), &mut log).unwrap();
        // then the probe was filtered and tracked, the retry swallowed, and B's
        // packet leaves from another port (as 28330 in DESIGN §3);
        let moved = b_to_a.src;
        assert_ne!(moved.port(), 4000);
        assert_eq!(
            lines(&log),
            [
                "nat home-b: filter 198.51.100.2:4000 -> 198.51.100.6:4000 (address-and-port-dependent filtering: not sent there)".to_owned(),
                "nat home-b: track 198.51.100.2:4000 -> 198.51.100.6:4000 (unsolicited; conntrack now holds this 5-tuple)".to_owned(),
                "nat home-b: drop 198.51.100.2:4000 -> 198.51.100.6:4000 (held by a tracked unsolicited entry)".to_owned(),
                format!("nat home-b: 198.51.100.6:4000 -> 198.51.100.2:4000 is held by a tracked entry; map 10.0.0.2:4000 -> {moved} for 198.51.100.2:4000 only"),
                format!("nat home-b: out 10.0.0.2:4000 -> 198.51.100.2:4000 as {moved}"),
            ]
        );
        // the server still sees port 4000, and A's retries stay swallowed;
        assert_eq!(send(&mut n, secs(4), HOST, SERVER), Some(addr("198.51.100.6:4000")));
        assert_eq!(send(&mut n, secs(4), HOST, PEER), Some(moved));
        assert_eq!(recv(&mut n, secs(5), PEER, "198.51.100.6:4000"), None);
        // while A's packets to the new port get through.
        assert_eq!(recv(&mut n, secs(5), PEER, &moved.to_string()), Some(addr(HOST)));
    }

    #[test]
    fn linux_tracked_entry_blocks_the_preserved_port_of_a_new_mapping_for_that_peer_only() {
        // Given a linux NAT whose host has sent nothing yet, hit by A's probe,
        let mut n = nat(Preset::Linux);
        let mut log = Vec::new();
        n.inbound(secs(0), pkt(PEER, "198.51.100.6:4000"), &mut log);
        assert_eq!(
            lines(&log),
            [
                "nat home-b: drop 198.51.100.2:4000 -> 198.51.100.6:4000 (no mapping)",
                "nat home-b: track 198.51.100.2:4000 -> 198.51.100.6:4000 (unsolicited; conntrack now holds this 5-tuple)",
            ]
        );
        // when the host then sends to A and to the server,
        let to_a = send(&mut n, secs(1), HOST, PEER).unwrap();
        let to_server = send(&mut n, secs(1), HOST, SERVER).unwrap();
        // then A's flow leaves from another port, and, as the kernel lab
        // measured, the host's later flows reuse that port (conntrack looks
        // up the source's existing mapping first).
        assert_ne!(to_a.port(), 4000);
        assert_eq!(to_server, to_a);
    }

    #[test]
    fn linux_tracked_entry_moves_only_that_peer_when_the_host_already_has_a_mapping() {
        // Given a linux NAT whose host already talks to the server, hit by A's probe,
        let mut n = nat(Preset::Linux);
        assert_eq!(send(&mut n, secs(0), HOST, SERVER), Some(addr("198.51.100.6:4000")));
        let mut log = Vec::new();
        n.inbound(secs(1), pkt(PEER, "198.51.100.6:4000"), &mut log);
        // when the host then sends to A and to the server,
        let to_a = send(&mut n, secs(2), HOST, PEER).unwrap();
        let to_server = send(&mut n, secs(2), HOST, SERVER).unwrap();
        // then only A's flow leaves from another port.
        assert_ne!(to_a.port(), 4000);
        assert_eq!(to_server, addr("198.51.100.6:4000"));
    }

    #[test]
    fn linux_opener_before_the_peer_probe_keeps_the_port() {
        // Given a linux NAT whose host opened toward A first (DESIGN §3),
        let mut n = nat(Preset::Linux);
        send(&mut n, secs(0), HOST, SERVER);
        send(&mut n, secs(1), HOST, PEER);
        // when A's probe arrives, then it passes and nothing is tracked.
        assert_eq!(recv(&mut n, secs(2), PEER, "198.51.100.6:4000"), Some(addr(HOST)));
        assert_eq!(n.tracked_count(), 0);
    }

    #[test]
    fn a_tracked_entry_dies_after_the_remote_goes_quiet_for_the_timeout() {
        // Given a tracked entry that A keeps alive until t=20 s,
        let mut n = nat(Preset::Linux);
        for t in [0, 10, 20] {
            recv(&mut n, secs(t), PEER, "198.51.100.6:4000");
        }
        assert_eq!(n.tracked_count(), 1);
        // when the host sends to A at 49 s and at 50 s (30 s after A's last packet),
        // then the first is moved off 4000 and a fresh host's flow at 50 s is not.
        assert_ne!(send(&mut n, secs(49), HOST, PEER).map(|a| a.port()), Some(4000));
        n.expire(secs(50), &mut Vec::new());
        assert_eq!(n.tracked_count(), 0);
        assert_eq!(send(&mut n, secs(50), "10.0.0.3:4000", PEER), Some(addr("198.51.100.6:4000")));
    }

    #[test]
    fn linux_random_maps_each_destination_to_a_random_port_and_tracks() {
        let mut n = nat(Preset::LinuxRandom);
        let a = send(&mut n, secs(0), HOST, SERVER).unwrap();
        let b = send(&mut n, secs(0), HOST, ALT).unwrap();
        assert_ne!(a, b);
        assert_eq!(recv(&mut n, secs(1), PEER, &a.to_string()), None);
        assert_eq!(n.tracked_count(), 1);
    }

    #[test]
    fn reboot_flushes_mappings_and_tracked_state() {
        // Given a linux NAT with a mapping and a tracked entry,
        let mut n = nat(Preset::Linux);
        send(&mut n, secs(0), HOST, SERVER);
        recv(&mut n, secs(0), PEER, "198.51.100.6:4000");
        // when it reboots,
        n.reboot();
        // then the server's packets are unsolicited and the next outbound
        // packet creates a fresh mapping.
        assert_eq!((n.mapping_count(), n.tracked_count()), (0, 0));
        let mut log = Vec::new();
        n.outbound(secs(1), pkt(HOST, SERVER), &mut log);
        assert_eq!(lines(&log)[0], "nat home-b: map 10.0.0.2:4000 -> 198.51.100.6:4000 (for 203.0.113.10:3478)");
    }

    #[test]
    fn the_open_preset_routes_without_translation() {
        // Given an open router for the public host 198.51.100.9,
        let mut n = nat_with(Preset::Open.spec("lan", vec!["198.51.100.9".parse().unwrap()]));
        let mut log = Vec::new();
        // when its host talks to the server and a stranger answers,
        let out = n.outbound(secs(0), pkt("198.51.100.9:4000", SERVER), &mut log).unwrap();
        let back = n.inbound(secs(0), pkt(PEER, "198.51.100.9:4000"), &mut log).unwrap();
        // then nothing is rewritten and no state is kept.
        assert_eq!((out.src, out.ttl, back.dst), (addr("198.51.100.9:4000"), 63, addr("198.51.100.9:4000")));
        assert_eq!(n.mapping_count(), 0);
        assert_eq!(
            lines(&log),
            [
                "nat lan: route 198.51.100.9:4000 -> 203.0.113.10:3478 (outbound, no translation)",
                "nat lan: route 198.51.100.2:4000 -> 198.51.100.9:4000 (inbound, no translation)",
            ]
        );
    }

    #[test]
    fn broken_specs_and_foreign_packets_drop_without_panicking() {
        // Given a NAT without public IPs and one with an empty port range,
        let mut no_ips = nat_with(Preset::FullCone.spec("empty", vec![]));
        let mut spec = Preset::FullCone.spec("inverted", vec!["198.51.100.6".parse().unwrap()]);
        spec.port_range = (6000, 5000);
        let mut inverted = nat_with(spec);
        // when hosts send and strangers write to addresses that are not ours,
        // then everything is dropped.
        assert_eq!(send(&mut no_ips, secs(0), HOST, SERVER), None);
        assert_eq!(send(&mut inverted, secs(0), HOST, SERVER), None);
        assert_eq!(recv(&mut inverted, secs(0), PEER, "192.0.2.1:1"), None);
        assert_eq!(recv(&mut inverted, secs(0), PEER, "[2001:db8::1]:1"), None);
    }

    #[test]
    fn presets_round_trip_through_their_names() {
        for p in Preset::ALL {
            assert_eq!(p.name().parse::<Preset>(), Ok(p));
        }
        assert_eq!(
            "cone".parse::<Preset>().unwrap_err().to_string(),
            "unknown preset \"cone\"; expected one of open, full-cone, restricted-cone, \
             port-restricted-cone, symmetric-sequential, symmetric-random, linux, linux-random, udp-blocked"
        );
        assert!(!Preset::MATRIX.contains(&Preset::UdpBlocked));
    }
}
