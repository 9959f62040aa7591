//! Who sits at each address of each network segment: segment 0 is the
//! public internet, `n + 1` the inside of NAT `n`.
//!
//! Routing asks this twice or three times per datagram, for segments all
//! over the world, so the common case is kept to one cache line: a segment
//! with at most [`INLINE`] nodes (the inside of a home NAT holds one host)
//! lists them inline, and only larger segments (the internet, a CGNAT's
//! inside) go to one shared hash table.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};

use crate::fast_map::FastMap;

/// What sits at one address of a network segment: a peer host or a NAT's
/// public side (their indices in the simulation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Node {
    Peer(u32),
    Nat(u32),
}

/// Nodes a segment lists inline.
const INLINE: usize = 2;

/// The address index of every segment.
#[derive(Default)]
pub(crate) struct SegmentIndex {
    /// By segment: its nodes inline, or `None` when it has more than
    /// [`INLINE`] (then they are in `large`).
    small: Vec<Option<Inline>>,
    /// Nodes of the larger segments at IPv4 addresses, by segment and
    /// address packed in one word (see [`v4_key`]): hashing it is one
    /// multiply, where a `(usize, IpAddr)` tuple took several. Only ever
    /// looked up, never iterated.
    large_v4: FastMap<u64, Node>,
    /// The same at IPv6 addresses.
    large_v6: FastMap<(usize, Ipv6Addr), Node>,
}

/// Up to [`INLINE`] nodes of one segment, within one cache line.
#[derive(Clone, Copy, Default)]
#[repr(align(64))]
struct Inline {
    len: u8,
    nodes: [Option<(IpAddr, Node)>; INLINE],
}

impl SegmentIndex {
    /// An index of `nodes` over `segments` segments (every key's segment is
    /// below it).
    pub(crate) fn new(segments: usize, nodes: &BTreeMap<(usize, IpAddr), Node>) -> SegmentIndex {
        let mut counts = vec![0usize; segments];
        for &(segment, _) in nodes.keys() {
            counts[segment] += 1;
        }
        let mut small: Vec<Option<Inline>> = counts.iter().map(|&n| (n <= INLINE).then(Inline::default)).collect();
        let (mut large_v4, mut large_v6) = (FastMap::default(), FastMap::default());
        for (&(segment, ip), &node) in nodes {
            match (&mut small[segment], ip) {
                (Some(inline), _) => {
                    inline.nodes[usize::from(inline.len)] = Some((ip, node));
                    inline.len += 1;
                }
                (None, IpAddr::V4(v4)) => {
                    large_v4.insert(v4_key(segment, v4.to_bits()), node);
                }
                (None, IpAddr::V6(v6)) => {
                    large_v6.insert((segment, v6), node);
                }
            }
        }
        SegmentIndex { small, large_v4, large_v6 }
    }

    /// The node at `ip` on `segment`.
    pub(crate) fn get(&self, segment: usize, ip: IpAddr) -> Option<Node> {
        match self.small.get(segment) {
            Some(Some(inline)) => inline.nodes.iter().flatten().find(|(at, _)| *at == ip).map(|&(_, node)| node),
            _ => match ip {
                IpAddr::V4(v4) => self.large_v4.get(&v4_key(segment, v4.to_bits())).copied(),
                IpAddr::V6(v6) => self.large_v6.get(&(segment, v6)).copied(),
            },
        }
    }
}

/// A segment and an IPv4 address in one word. Segments are numbered by NAT,
/// so they fit in 32 bits (the simulation indexes hosts with `u32`).
fn v4_key(segment: usize, ip: u32) -> u64 {
    ((segment as u64) << 32) | u64::from(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn small_and_large_segments_answer_alike() {
        // Given the internet with three NATs, one NAT inside with a peer and
        // a nested NAT, one with three peers, and one empty inside,
        let mut nodes = BTreeMap::new();
        for (i, public) in ["198.51.100.1", "198.51.100.2", "198.51.100.3"].into_iter().enumerate() {
            nodes.insert((0, ip(public)), Node::Nat(i as u32));
        }
        nodes.insert((1, ip("10.0.0.2")), Node::Peer(0));
        nodes.insert((1, ip("10.0.0.3")), Node::Nat(2));
        for peer in 1..=3 {
            nodes.insert((2, ip(&format!("10.0.1.{peer}"))), Node::Peer(peer));
        }
        nodes.insert((0, ip("2001:db8::1")), Node::Peer(4));
        nodes.insert((2, ip("2001:db8::1")), Node::Peer(5));
        let index = SegmentIndex::new(4, &nodes);
        // when asked, then each address on each segment gives its node,
        for (&(segment, at), &node) in &nodes {
            assert_eq!(index.get(segment, at), Some(node));
        }
        // and nothing else is found, on any segment or beyond the last.
        assert_eq!(index.get(0, ip("10.0.0.2")), None);
        assert_eq!(index.get(1, ip("198.51.100.1")), None);
        assert_eq!(index.get(2, ip("10.0.0.2")), None);
        assert_eq!(index.get(3, ip("10.0.1.1")), None);
        assert_eq!(index.get(0, ip("10.0.1.1")), None, "same address, other large segment");
        assert_eq!(index.get(0, ip("::ffff:198.51.100.1")), None, "IPv6 is not IPv4");
        assert_eq!(index.get(1, ip("2001:db8::1")), None);
        assert_eq!(index.get(7, ip("10.0.0.2")), None);
    }
}
