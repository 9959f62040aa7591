//! A simulated host's open sockets: which port each socket is bound to,
//! and which socket a datagram to a port reaches.

use std::collections::{BTreeMap, BTreeSet};

use punchline_core::SocketId;

/// A peer's open sockets and their ports, found either way in O(log n).
pub(crate) struct Sockets {
    port_of: BTreeMap<SocketId, u16>,
    /// The same pairs by port: after the port counter wraps two sockets may
    /// share a port, and a datagram goes to the oldest (lowest id).
    by_port: BTreeSet<(u16, SocketId)>,
}

impl Sockets {
    pub(crate) fn new(primary: SocketId, port: u16) -> Sockets {
        let mut sockets = Sockets { port_of: BTreeMap::new(), by_port: BTreeSet::new() };
        sockets.insert(primary, port);
        sockets
    }

    pub(crate) fn insert(&mut self, id: SocketId, port: u16) {
        if let Some(old) = self.port_of.insert(id, port) {
            self.by_port.remove(&(old, id));
        }
        self.by_port.insert((port, id));
    }

    pub(crate) fn remove(&mut self, id: SocketId) {
        if let Some(port) = self.port_of.remove(&id) {
            self.by_port.remove(&(port, id));
        }
    }

    pub(crate) fn port(&self, id: SocketId) -> Option<u16> {
        self.port_of.get(&id).copied()
    }

    /// The oldest socket bound to `port`.
    pub(crate) fn socket(&self, port: u16) -> Option<SocketId> {
        self.by_port.range((port, SocketId(0))..=(port, SocketId(u32::MAX))).next().map(|&(_, id)| id)
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
}
