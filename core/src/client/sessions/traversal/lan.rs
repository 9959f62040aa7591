//! Host candidates on our own network, probed whatever the strategy.
//!
//! Two peers behind one NAT need no NAT traversal at all: each can reach
//! the other's private address directly, on the LAN, even when the NAT maps
//! every flow to a random port (where the strategy is `relay-only`) and
//! does not hairpin. So every session probes the peer's private host
//! candidates from the primary socket, beside whatever its strategy does,
//! for one punch timeout from its start and again from each new attempt.
//!
//! Only candidates that are plausibly on our own network are probed: both
//! peers must announce private addresses (RFC 1918, RFC 6598 shared space,
//! link-local; unique local for IPv6) and either share their public IP
//! (one NAT in front of both) or share a subnet (an IPv4 /24, an IPv6 /64)
//! with one of ours. A private address elsewhere names a host on *another*
//! network; sent from here, a probe to it would reach whatever machine has
//! that address on ours, a stranger.

use std::net::{IpAddr, SocketAddr};

/// One round of LAN probes: the targets and how many rounds remain.
#[derive(Debug, Default)]
pub(crate) struct LanProbing {
    targets: Vec<SocketAddr>,
    rounds_left: u32,
}

impl LanProbing {
    /// The peer's candidates worth probing on our network. `ours` are our
    /// host candidates; the last of `peer_candidates` is the peer's
    /// server-reflexive address, the others its host candidates.
    pub(crate) fn new(ours: &[SocketAddr], our_public: Option<IpAddr>, peer_candidates: &[SocketAddr]) -> Self {
        let Some((peer_public, peer_hosts)) = peer_candidates.split_last() else { return LanProbing::default() };
        let same_public = our_public == Some(peer_public.ip());
        let targets = peer_hosts
            .iter()
            .filter(|c| is_lan_address(c.ip()) && c.port() != 0)
            .filter(|c| {
                ours.iter().any(|o| is_lan_address(o.ip()) && (same_public || same_subnet(o.ip(), c.ip())))
                    && !ours.contains(c)
            })
            .copied()
            .collect();
        LanProbing { targets, rounds_left: 0 }
    }

    /// The targets, if any.
    #[cfg(test)]
    pub(crate) fn targets(&self) -> &[SocketAddr] {
        &self.targets
    }

    /// Probes for `rounds` rounds from now on.
    pub(crate) fn restart(&mut self, rounds: u32) {
        self.rounds_left = if self.targets.is_empty() { 0 } else { rounds };
    }

    /// Stops probing (a direct path was found).
    pub(crate) fn stop(&mut self) {
        self.rounds_left = 0;
    }

    /// The targets of the next round, if one is due.
    pub(crate) fn next_round(&mut self) -> Option<&[SocketAddr]> {
        if self.rounds_left == 0 {
            return None;
        }
        self.rounds_left -= 1;
        Some(&self.targets)
    }

    pub(crate) fn is_active(&self) -> bool {
        self.rounds_left > 0
    }
}

/// A private, shared or link-local address: one that names a host on a
/// local network, not on the internet.
pub(crate) fn is_lan_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            // RFC 6598 shared address space, 100.64.0.0/10 (carrier-grade NAT).
            let shared = a == 100 && (b & 0xc0) == 64;
            v4.is_private() || v4.is_link_local() || shared
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            // fc00::/7 unique local (RFC 4193), fe80::/10 link-local.
            (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// Whether `a` and `b` share an IPv4 /24 or an IPv6 /64.
fn same_subnet(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.octets()[..3] == b.octets()[..3],
        (IpAddr::V6(a), IpAddr::V6(b)) => a.segments()[..4] == b.segments()[..4],
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    #[test]
    fn peers_behind_one_nat_probe_each_others_private_addresses() {
        // Given two peers on one LAN behind one public address,
        let lan = LanProbing::new(
            &[a("192.168.1.2:5000")],
            Some(a("198.51.100.1:1").ip()),
            &[a("192.168.1.3:6000"), a("198.51.100.1:40000")],
        );
        // then the peer's host candidate is a target.
        assert_eq!(lan.targets(), [a("192.168.1.3:6000")]);
    }

    #[test]
    fn a_private_address_on_another_network_is_never_probed() {
        // Given peers behind different NATs, in different private subnets,
        let lan = LanProbing::new(
            &[a("10.0.0.2:5000")],
            Some(a("198.51.100.1:1").ip()),
            &[a("10.0.1.2:6000"), a("198.51.100.6:40000")],
        );
        // then nothing is probed: 10.0.1.2 here would be a stranger.
        assert!(lan.targets().is_empty());
        // Public host candidates are the strategy's business, not the LAN's.
        let public = LanProbing::new(&[a("10.0.0.2:5000")], None, &[a("203.0.113.9:1"), a("203.0.113.9:1")]);
        assert!(public.targets().is_empty());
    }

    #[test]
    fn a_shared_subnet_is_enough_without_a_shared_public_address() {
        // Given one LAN with two ways out (two public addresses),
        let lan = LanProbing::new(
            &[a("10.0.0.2:5000")],
            Some(a("198.51.100.1:1").ip()),
            &[a("10.0.0.3:6000"), a("198.51.100.2:40000")],
        );
        assert_eq!(lan.targets(), [a("10.0.0.3:6000")]);
    }

    #[test]
    fn lan_addresses_are_recognised_in_both_families() {
        for ip in ["10.1.2.3", "172.16.0.1", "192.168.0.1", "100.64.0.1", "169.254.1.1", "fd00::1", "fe80::1"] {
            assert!(is_lan_address(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["8.8.8.8", "100.128.0.1", "2001:db8::1", "127.0.0.1"] {
            assert!(!is_lan_address(ip.parse().expect("ip")), "{ip}");
        }
    }
}
