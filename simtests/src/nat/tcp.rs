//! TCP through a NAT (RFC 5382), for the TCP fallback of clients whose
//! network drops UDP (issue 21).
//!
//! # Model
//!
//! - **Mappings per connection.** A TCP mapping is keyed by the 5-tuple
//!   (internal endpoint, remote endpoint) and is created only by an outbound
//!   SYN. RFC 5382 REQ-1 asks for endpoint-independent mapping; every
//!   connection a simulated host opens comes from a fresh local port, so a
//!   mapping per 5-tuple and an endpoint-independent one are the same here,
//!   and the per-connection form is the one conntrack keeps.
//! - **External port**: the host's paired public IP (RFC 4787 REQ-2, shared
//!   with UDP) and the internal port when no other TCP mapping toward the
//!   same remote holds it, else the next free port above it in the range.
//!   The choice draws nothing from the device's generator, so UDP port
//!   choices are the same with or without TCP traffic. TCP and UDP ports are
//!   separate spaces, as in every real NAT.
//! - **Filtering**: an inbound segment passes only on its own connection's
//!   mapping. Unsolicited SYNs are dropped (RFC 5382 REQ-4 allows it; no
//!   simulated host listens behind a NAT).
//! - **Timeouts** (RFC 5382 REQ-5): a mapping whose connection has been
//!   answered (the remote's SYN-ACK passed) lives [`NatSpec::tcp_timeout`]
//!   idle, at least 2 h 4 min; before that, and after a FIN or a RST either
//!   way, it lives [`TCP_TRANSITORY_TIMEOUT`] (4 min). Segments both ways
//!   refresh it, as conntrack does. Expiry is checked when a mapping is
//!   used (lazily): nothing reads the table otherwise.
//! - **Strict state**: a segment that is not a SYN and matches no mapping
//!   is dropped, both ways. After a reboot ([`Nat::reboot`] flushes these
//!   mappings with the rest) every connection through the device is dead:
//!   its segments are dropped until its ends give up. (Linux with
//!   `nf_conntrack_tcp_loose = 1` adopts a mid-stream segment and, when
//!   the port comes out the same, keeps the connection alive: a deviation,
//!   chosen because most home routers lose the connection on a reboot.)
//! - **Not UDP**: the `udp-blocked` firewall ([`NatSpec::blocks_udp`]) lets
//!   TCP pass. TTLs are decremented as for UDP. TCP hairpinning is not
//!   modelled (dropped): nothing behind a NAT accepts connections.
//!
//! [`NatSpec::tcp_timeout`]: super::NatSpec::tcp_timeout
//! [`NatSpec::blocks_udp`]: super::NatSpec::blocks_udp

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use super::timeouts::after;
use super::{Direction, Nat, NatDecision, Packet};
use crate::addr::Addr;

/// RFC 5382 REQ-5: the idle timeout of a connection's mapping, once it is
/// established, must not be less than 2 hours 4 minutes.
pub const RFC5382_MIN_ESTABLISHED: Duration = Duration::from_secs(2 * 3600 + 4 * 60);
/// RFC 5382 REQ-5: the idle timeout of a mapping in a transitory state
/// (opening, or closing after a FIN or RST): at least 4 minutes.
pub const TCP_TRANSITORY_TIMEOUT: Duration = Duration::from_secs(4 * 60);
/// Linux `nf_conntrack_tcp_timeout_established`: 5 days.
pub const LINUX_TCP_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(5 * 24 * 3600);

/// What a packet in flight is: a UDP datagram, or a TCP segment with its
/// flags (its sequence numbers ride in the payload; a NAT reads only the
/// flags).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Proto {
    /// A UDP datagram.
    #[default]
    Udp,
    /// A TCP segment.
    Tcp(TcpFlags),
}

/// The flags of a TCP segment that the model uses (RFC 9293 §3.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags(u8);

impl TcpFlags {
    /// Opens a connection.
    pub const SYN: TcpFlags = TcpFlags(1);
    /// The acknowledgement number is valid.
    pub const ACK: TcpFlags = TcpFlags(2);
    /// The sender has finished sending.
    pub const FIN: TcpFlags = TcpFlags(4);
    /// The connection is reset.
    pub const RST: TcpFlags = TcpFlags(8);
    /// The segment carries data the receiver should hand on at once.
    pub const PSH: TcpFlags = TcpFlags(16);

    /// Both sets of flags.
    pub const fn with(self, other: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | other.0)
    }

    /// True when every flag of `other` is set.
    pub const fn has(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// A connection's first segment: SYN without ACK.
    pub const fn is_syn(self) -> bool {
        self.has(TcpFlags::SYN) && !self.has(TcpFlags::ACK)
    }

    /// The name a trace shows: `SYN`, `SYN-ACK`, `ACK`, `PSH-ACK`,
    /// `FIN-ACK`, `RST`, ...
    pub fn name(self) -> &'static str {
        const S: u8 = TcpFlags::SYN.0;
        const A: u8 = TcpFlags::ACK.0;
        const F: u8 = TcpFlags::FIN.0;
        const R: u8 = TcpFlags::RST.0;
        const P: u8 = TcpFlags::PSH.0;
        match self.0 {
            S => "SYN",
            x if x == S | A => "SYN-ACK",
            A => "ACK",
            x if x == P | A => "PSH-ACK",
            x if x == F | A => "FIN-ACK",
            x if x == F | P | A => "FIN-PSH-ACK",
            R => "RST",
            x if x == R | A => "RST-ACK",
            _ => "flags?",
        }
    }
}

impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The TCP mappings of one device.
#[derive(Debug, Default)]
pub(super) struct TcpTable {
    /// By (internal, remote).
    mappings: BTreeMap<(SocketAddr, SocketAddr), TcpMapping>,
    /// (external, remote) -> internal.
    by_external: BTreeMap<(SocketAddrV4, SocketAddr), SocketAddr>,
}

#[derive(Clone, Copy, Debug)]
struct TcpMapping {
    external: SocketAddrV4,
    last_seen: Duration,
    /// The remote answered the SYN, and neither side has sent a FIN or RST.
    established: bool,
}

impl TcpTable {
    pub(super) fn clear(&mut self) {
        self.mappings.clear();
        self.by_external.clear();
    }

    pub(super) fn len(&self) -> usize {
        self.mappings.len()
    }
}

/// One thing a NAT did with a TCP segment: one trace line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcpDecision {
    /// An outbound SYN made a mapping `internal -> external` toward `remote`.
    Mapped { internal: SocketAddr, external: SocketAddr, remote: SocketAddr },
    /// A segment was translated: outbound `src` left as `via`; inbound `dst`
    /// (= `via`) went to `to`.
    Translated { dir: Direction, src: SocketAddr, dst: SocketAddr, via: SocketAddr, to: SocketAddr, flags: TcpFlags },
    /// The `open` router passed a segment unchanged.
    Forwarded { dir: Direction, src: SocketAddr, dst: SocketAddr, flags: TcpFlags },
    /// A segment matched no mapping (and, outbound, was no SYN to make one).
    NoMapping { dir: Direction, src: SocketAddr, dst: SocketAddr, flags: TcpFlags },
    /// A mapping idle past its timeout was removed when next looked up.
    Expired { internal: SocketAddr, external: SocketAddr, remote: SocketAddr, timeout: Duration },
    /// No external port was free for a new mapping.
    NoFreePort { src: SocketAddr, dst: SocketAddr },
    /// A segment to one of the device's own public addresses (no TCP
    /// hairpinning).
    Hairpin { src: SocketAddr, dst: SocketAddr },
}

impl TcpDecision {
    /// Writes the trace line's text after `nat NAME: `.
    pub(super) fn write_to<W: fmt::Write>(&self, out: &mut W) -> fmt::Result {
        let pair = |out: &mut W, word: &str, a: &SocketAddr, b: &SocketAddr| -> fmt::Result {
            out.write_str(word)?;
            Addr(*a).write_to(out)?;
            out.write_str(" -> ")?;
            Addr(*b).write_to(out)
        };
        match self {
            TcpDecision::Mapped { internal, external, remote } => {
                pair(out, "map tcp ", internal, external)?;
                out.write_str(" (for ")?;
                Addr(*remote).write_to(out)?;
                out.write_str(")")
            }
            TcpDecision::Translated { dir: Direction::Outbound, src, dst, via, flags, .. } => {
                pair(out, "out tcp ", src, dst)?;
                out.write_str(" as ")?;
                Addr(*via).write_to(out)?;
                write!(out, " [{flags}]")
            }
            TcpDecision::Translated { dir: Direction::Inbound, src, dst, to, flags, .. } => {
                pair(out, "in tcp ", src, dst)?;
                out.write_str(" to ")?;
                Addr(*to).write_to(out)?;
                write!(out, " [{flags}]")
            }
            TcpDecision::Forwarded { dir, src, dst, flags } => {
                pair(out, "pass tcp ", src, dst)?;
                let dir = if *dir == Direction::Outbound { "outbound" } else { "inbound" };
                write!(out, " [{flags}] ({dir}, no translation)")
            }
            TcpDecision::NoMapping { dir, src, dst, flags } => {
                pair(out, "drop tcp ", src, dst)?;
                match dir {
                    Direction::Outbound => write!(out, " [{flags}] (no mapping, and not a SYN)"),
                    Direction::Inbound => write!(out, " [{flags}] (no mapping)"),
                }
            }
            TcpDecision::Expired { internal, external, remote, timeout } => {
                pair(out, "tcp mapping ", internal, external)?;
                out.write_str(" for ")?;
                Addr(*remote).write_to(out)?;
                write!(out, " expired ({}s idle)", timeout.as_secs())
            }
            TcpDecision::NoFreePort { src, dst } => {
                pair(out, "drop tcp ", src, dst)?;
                out.write_str(" (no free external port)")
            }
            TcpDecision::Hairpin { src, dst } => {
                pair(out, "drop tcp ", src, dst)?;
                out.write_str(" (to our own address: no TCP hairpinning)")
            }
        }
    }
}

impl Nat {
    /// A TCP segment from inside toward `pkt.dst` (the router part, TTL,
    /// is done). Returns it translated, or `None` when dropped.
    pub(super) fn tcp_outbound(
        &mut self,
        now: Duration,
        mut pkt: Packet,
        log: &mut Vec<NatDecision>,
    ) -> Option<Packet> {
        let Proto::Tcp(flags) = pkt.proto else { return None };
        if !self.spec.translate {
            let (src, dst) = (pkt.src, pkt.dst);
            self.note(log, |nat| {
                NatDecision::Tcp(nat, TcpDecision::Forwarded { dir: Direction::Outbound, src, dst, flags })
            });
            return Some(pkt);
        }
        let key = (pkt.src, pkt.dst);
        self.expire_tcp(now, key, log);
        let external = match self.tcp.mappings.get(&key) {
            Some(m) => m.external,
            None if flags.is_syn() => self.map_tcp(now, key, log)?,
            None => {
                let (src, dst) = key;
                self.note(log, |nat| {
                    NatDecision::Tcp(nat, TcpDecision::NoMapping { dir: Direction::Outbound, src, dst, flags })
                });
                return None;
            }
        };
        self.refresh_tcp(now, key, flags, Direction::Outbound);
        let (src, dst, via) = (pkt.src, pkt.dst, SocketAddr::V4(external));
        self.note(log, |nat| {
            NatDecision::Tcp(nat, TcpDecision::Translated { dir: Direction::Outbound, src, dst, via, to: dst, flags })
        });
        pkt.src = via;
        Some(pkt)
    }

    /// A TCP segment from outside to one of our public addresses. Returns
    /// it addressed to the inside host, or `None` when dropped.
    pub(super) fn tcp_inbound(&mut self, now: Duration, mut pkt: Packet, log: &mut Vec<NatDecision>) -> Option<Packet> {
        let Proto::Tcp(flags) = pkt.proto else { return None };
        let (src, dst) = (pkt.src, pkt.dst);
        if !self.spec.translate {
            self.note(log, |nat| {
                NatDecision::Tcp(nat, TcpDecision::Forwarded { dir: Direction::Inbound, src, dst, flags })
            });
            return Some(pkt);
        }
        let internal = match dst {
            SocketAddr::V4(ext) => self.tcp.by_external.get(&(ext, src)).copied(),
            SocketAddr::V6(_) => None,
        };
        let internal = internal.filter(|&internal| !self.expire_tcp(now, (internal, src), log));
        let Some(to) = internal else {
            self.note(log, |nat| {
                NatDecision::Tcp(nat, TcpDecision::NoMapping { dir: Direction::Inbound, src, dst, flags })
            });
            return None;
        };
        self.refresh_tcp(now, (to, src), flags, Direction::Inbound);
        self.note(log, |nat| {
            NatDecision::Tcp(nat, TcpDecision::Translated { dir: Direction::Inbound, src, dst, via: dst, to, flags })
        });
        pkt.dst = to;
        Some(pkt)
    }

    /// A TCP segment from inside to one of our own public addresses.
    pub(super) fn tcp_hairpin(&mut self, pkt: &Packet, log: &mut Vec<NatDecision>) {
        let (src, dst) = (pkt.src, pkt.dst);
        self.note(log, |nat| NatDecision::Tcp(nat, TcpDecision::Hairpin { src, dst }));
    }

    /// TCP mappings held (expired ones are removed when next looked up).
    pub fn tcp_mapping_count(&self) -> usize {
        self.tcp.len()
    }

    /// Removes the mapping of `key` if it has expired by `now`; true if it
    /// did.
    fn expire_tcp(&mut self, now: Duration, key: (SocketAddr, SocketAddr), log: &mut Vec<NatDecision>) -> bool {
        let Some(m) = self.tcp.mappings.get(&key).copied() else { return false };
        let timeout = if m.established { self.spec.tcp_timeout } else { TCP_TRANSITORY_TIMEOUT };
        if now < after(m.last_seen, timeout) {
            return false;
        }
        self.tcp.mappings.remove(&key);
        self.tcp.by_external.remove(&(m.external, key.1));
        let (internal, remote, external) = (key.0, key.1, SocketAddr::V4(m.external));
        self.note(log, |nat| NatDecision::Tcp(nat, TcpDecision::Expired { internal, external, remote, timeout }));
        true
    }

    /// A new mapping for the connection `key`, made by its SYN.
    fn map_tcp(
        &mut self,
        now: Duration,
        key: (SocketAddr, SocketAddr),
        log: &mut Vec<NatDecision>,
    ) -> Option<SocketAddrV4> {
        let (internal, remote) = key;
        let ip = self.paired_ip(internal.ip());
        let (lo, hi) = (self.spec.port_range.0.max(1), self.spec.port_range.1);
        let port = ip.filter(|_| lo <= hi).and_then(|ip| {
            let span = u32::from(hi - lo) + 1;
            let start = if (lo..=hi).contains(&internal.port()) { u32::from(internal.port() - lo) } else { 0 };
            (0..span)
                .map(|i| lo + ((start + i) % span) as u16)
                .find(|&port| !self.tcp.by_external.contains_key(&(SocketAddrV4::new(ip, port), remote)))
        });
        let (Some(ip), Some(port)) = (ip, port) else {
            self.note(log, |nat| NatDecision::Tcp(nat, TcpDecision::NoFreePort { src: internal, dst: remote }));
            return None;
        };
        let external = SocketAddrV4::new(ip, port);
        self.tcp.mappings.insert(key, TcpMapping { external, last_seen: now, established: false });
        self.tcp.by_external.insert((external, remote), internal);
        self.note(log, |nat| {
            NatDecision::Tcp(nat, TcpDecision::Mapped { internal, external: SocketAddr::V4(external), remote })
        });
        Some(external)
    }

    /// A segment passed the mapping of `key`: it is refreshed, established
    /// by the remote's SYN-ACK, and transitory again after a FIN or RST.
    fn refresh_tcp(&mut self, now: Duration, key: (SocketAddr, SocketAddr), flags: TcpFlags, dir: Direction) {
        if let Some(m) = self.tcp.mappings.get_mut(&key) {
            m.last_seen = now;
            if flags.has(TcpFlags::FIN) || flags.has(TcpFlags::RST) {
                m.established = false;
            } else if dir == Direction::Inbound && flags.has(TcpFlags::SYN.with(TcpFlags::ACK)) {
                m.established = true;
            }
        }
    }
}
