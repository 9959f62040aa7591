//! A packet in flight, and what a NAT did with it: one [`NatDecision`]
//! per step, each one trace line.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use punchline_core::nat::FilteringBehavior;

use super::tcp::{Proto, TcpDecision};
use crate::addr::Addr;

/// A packet in flight: a UDP datagram, or a TCP segment ([`Packet::proto`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Source endpoint.
    pub src: SocketAddr,
    /// Destination endpoint.
    pub dst: SocketAddr,
    /// Remaining hop limit; every router decrements it.
    pub ttl: u8,
    /// The datagram's bytes (for a TCP segment, its sequence numbers and
    /// data, as the engine encodes them).
    pub payload: Bytes,
    /// UDP, or TCP with the segment's flags.
    pub proto: Proto,
}

impl Packet {
    /// A UDP datagram.
    pub fn udp(src: SocketAddr, dst: SocketAddr, ttl: u8, payload: Bytes) -> Packet {
        Packet { src, dst, ttl, payload, proto: Proto::Udp }
    }

    /// True for a TCP segment.
    pub fn is_tcp(&self) -> bool {
        matches!(self.proto, Proto::Tcp(_))
    }
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
    /// allocation (see [`NatSpec::background_flows`](super::NatSpec::background_flows)).
    Background { nat: Arc<str>, flows: u64 },
    /// What the device did with a TCP segment (see `nat::tcp`).
    Tcp(Arc<str>, TcpDecision),
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
            | D::Background { nat, .. }
            | D::Tcp(nat, _) => nat,
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
            D::Tcp(_, decision) => decision.write_to(out),
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

fn dir_name(dir: Direction) -> &'static str {
    match dir {
        Direction::Outbound => "outbound",
        Direction::Inbound => "inbound",
    }
}
