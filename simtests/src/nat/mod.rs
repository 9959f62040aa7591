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
//! - **UDP firewall**: with [`NatSpec::blocks_udp`] (the `udp-blocked`
//!   preset, or a scenario's `block_udp` event at run time,
//!   [`Nat::set_blocks_udp`]) every UDP packet crossing the device is
//!   dropped, both ways; TCP passes.
//! - **TCP** (RFC 5382, for the TCP fallback): mappings of their own, per
//!   connection, made by an outbound SYN, with their own timeouts (2 h 4 min
//!   at least once established), flushed by a reboot; see `tcp`.
//!
//! # Deviations from a real Linux `masquerade`
//!
//! Linux keys NAT state by 5-tuple, so two internal hosts may share one
//! external port toward *different* destinations. Here an external port
//! belongs to one mapping. This only matters with several hosts using the
//! same local port behind one `linux` NAT, which no example scenario does.
//!
//! # Modules
//!
//! - `spec`: what defines a device ([`NatSpec`]); `preset`: the named
//!   configurations of DESIGN §4 ([`Preset`]);
//! - `mapping`: mappings and the filtering of inbound packets (RFC 4787 §4.1, §5);
//! - `ports`: IP pairing and external port allocation (RFC 4787 §4.1, §4.2);
//! - `timeouts`: expiry (RFC 4787 §4.3) and Linux conntrack's tracked entries;
//! - `tcp`: TCP segments and their mappings (RFC 5382);
//! - `decision`: packets, and what the device did with them, for the trace.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use crate::fast_map::FastMap;
use crate::rng::Rng;
use crate::small_map::SmallMap;

mod decision;
mod mapping;
mod ports;
mod preset;
mod spec;
mod tcp;
#[cfg(test)]
mod tests;
mod timeouts;

pub use decision::{Direction, NatDecision, Packet};
use mapping::{Mapping, MappingKey};
pub use preset::{Preset, UnknownPreset};
pub use spec::{
    parse_filtering, parse_mapping, NatSpec, PortPolicy, Unsolicited, DEFAULT_PORT_RANGE, LINUX_UDP_TIMEOUT,
    RFC4787_MIN_TIMEOUT,
};
pub use tcp::{
    Proto, TcpDecision, TcpFlags, LINUX_TCP_ESTABLISHED_TIMEOUT, RFC5382_MIN_ESTABLISHED, TCP_TRANSITORY_TIMEOUT,
};

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
    /// TCP mappings (see `tcp`), apart from UDP's.
    tcp: tcp::TcpTable,
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
            tcp: tcp::TcpTable::default(),
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
        if pkt.is_tcp() {
            return self.tcp_outbound(now, pkt, log);
        }
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
        if pkt.is_tcp() {
            return self.tcp_inbound(now, pkt, log);
        }
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
        if pkt.is_tcp() && self.spec.translate {
            self.tcp_hairpin(&pkt, log);
            return None;
        }
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

    /// Power-cycles the device: every mapping (UDP and TCP), tracked entry
    /// and IP pairing is flushed and the port allocator starts over. Every
    /// TCP connection through the device dies with its mapping.
    pub fn reboot(&mut self) {
        self.tcp.clear();
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

    /// Turns the UDP firewall on or off ([`NatSpec::blocks_udp`]): the
    /// scenario's `block_udp` and `unblock_udp` events on a NAT. Mappings
    /// are kept (they expire as usual while nothing crosses).
    pub fn set_blocks_udp(&mut self, blocks: bool) {
        self.spec.blocks_udp = blocks;
    }

    /// The router part common to every direction: TTL, firewall, expiry.
    fn enter(&mut self, now: Duration, mut pkt: Packet, dir: Direction, log: &mut Vec<NatDecision>) -> Option<Packet> {
        self.expire(now, log);
        if self.spec.blocks_udp && !pkt.is_tcp() {
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
}
