//! A simulated host's open sockets: which port each socket is bound to,
//! and which socket a datagram to a port reaches.

use punchline_core::SocketId;
use smallvec::SmallVec;

/// How many sockets a peer keeps inline before spilling to the heap: its
/// primary socket and a few more cover every peer that is not birthday
/// probing.
const INLINE: usize = 4;

/// A peer's open sockets and their ports, found either way by binary search.
///
/// Every datagram a peer sends or receives looks up one of these, so small
/// tables live inline in the peer's record rather than behind a pointer.
pub(crate) struct Sockets {
    /// `(socket, port)`, sorted by socket.
    by_socket: SmallVec<[(SocketId, u16); INLINE]>,
    /// The same pairs as `(port, socket)`, sorted: after the port counter
    /// wraps two sockets may share a port, and a datagram goes to the oldest
    /// (lowest id), the first of its port.
    by_port: SmallVec<[(u16, SocketId); INLINE]>,
}

impl Sockets {
    pub(crate) fn new(primary: SocketId, port: u16) -> Sockets {
        let mut sockets = Sockets { by_socket: SmallVec::new(), by_port: SmallVec::new() };
        sockets.insert(primary, port);
        sockets
    }

    pub(crate) fn insert(&mut self, id: SocketId, port: u16) {
        self.remove(id);
        let at = self.by_socket.partition_point(|&(s, _)| s < id);
        self.by_socket.insert(at, (id, port));
        let at = self.by_port.partition_point(|&entry| entry < (port, id));
        self.by_port.insert(at, (port, id));
    }

    pub(crate) fn remove(&mut self, id: SocketId) {
        if let Ok(at) = self.by_socket.binary_search_by_key(&id, |&(s, _)| s) {
            let (_, port) = self.by_socket.remove(at);
            if let Ok(at) = self.by_port.binary_search(&(port, id)) {
                self.by_port.remove(at);
            }
        }
    }

    pub(crate) fn port(&self, id: SocketId) -> Option<u16> {
        let at = self.by_socket.binary_search_by_key(&id, |&(s, _)| s).ok()?;
        Some(self.by_socket[at].1)
    }

    /// The oldest socket bound to `port`.
    pub(crate) fn socket(&self, port: u16) -> Option<SocketId> {
        let at = self.by_port.partition_point(|&(p, _)| p < port);
        self.by_port.get(at).filter(|&&(p, _)| p == port).map(|&(_, id)| id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_reaches_the_oldest_socket_on_its_port() {
        // Given the primary socket and two more, two of them sharing a port
        // (as after the port counter wraps),
        let mut sockets = Sockets::new(SocketId(0), 4000);
        sockets.insert(SocketId(7), 40000);
        sockets.insert(SocketId(3), 40000);
        // then each socket knows its port, and the port finds the lowest id;
        assert_eq!(sockets.port(SocketId(7)), Some(40000));
        assert_eq!(sockets.socket(4000), Some(SocketId(0)));
        assert_eq!(sockets.socket(40000), Some(SocketId(3)));
        // when that one is released, the other takes the port's datagrams,
        sockets.remove(SocketId(3));
        assert_eq!(sockets.socket(40000), Some(SocketId(7)));
        // and when both are gone, nothing listens there.
        sockets.remove(SocketId(7));
        assert_eq!(sockets.socket(40000), None);
        assert_eq!(sockets.port(SocketId(7)), None);
    }

    #[test]
    fn rebinding_a_socket_moves_it_to_the_new_port() {
        let mut sockets = Sockets::new(SocketId(0), 4000);
        sockets.insert(SocketId(0), 4001);
        assert_eq!(sockets.socket(4000), None);
        assert_eq!(sockets.socket(4001), Some(SocketId(0)));
    }

    proptest::proptest! {
        /// Given any sequence of binds and releases over more sockets than
        /// fit inline, the table answers both ways as a plain map would.
        #[test]
        fn the_table_agrees_with_a_map_of_sockets_to_ports(
            ops in proptest::collection::vec((0u32..12, 4000u16..4006, proptest::bool::ANY), 1..200),
        ) {
            use std::collections::BTreeMap;
            let mut sockets = Sockets::new(SocketId(0), 4000);
            let mut reference = BTreeMap::from([(SocketId(0), 4000u16)]);
            for (id, port, bind) in ops {
                let id = SocketId(id);
                if bind {
                    sockets.insert(id, port);
                    reference.insert(id, port);
                } else {
                    sockets.remove(id);
                    reference.remove(&id);
                }
                for id in (0..12).map(SocketId) {
                    proptest::prop_assert_eq!(sockets.port(id), reference.get(&id).copied());
                }
                for port in 4000..4006 {
                    let oldest = reference.iter().find(|&(_, &p)| p == port).map(|(&id, _)| id);
                    proptest::prop_assert_eq!(sockets.socket(port), oldest);
                }
            }
        }
    }
}
