//! External endpoints: the public IP a host is paired with (RFC 4787 §4.1,
//! REQ-2) and the port a new mapping gets (RFC 4787 §4.2.2).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use super::{Nat, NatDecision, PortPolicy};

impl Nat {
    /// The endpoint port preservation would give `internal` if it is free of
    /// mappings (tracked entries are checked by the caller).
    pub(super) fn preserved_candidate(&mut self, internal: SocketAddr) -> Option<SocketAddrV4> {
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
    pub(super) fn run_background(&mut self, now: Duration, log: &mut Vec<NatDecision>) {
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

    /// Picks a free external endpoint for `internal -> remote`: the paired
    /// public IP, and a port per the policy that is neither mapped nor held
    /// toward `remote` by a tracked entry (Linux picks a unique tuple).
    pub(super) fn allocate(
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
    pub(super) fn paired_ip(&mut self, host: IpAddr) -> Option<Ipv4Addr> {
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
