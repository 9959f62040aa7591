//! The stream connections a machine holds (the TCP fallback, issue 21):
//! each one's remote address and the decoder that turns its bytes back into
//! datagrams. Shared by the server (every accepted connection) and the client
//! (its one connection to the server).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use crate::machine::{SocketId, Transmit};
use crate::wire::stream::{self, StreamDecoder, StreamError};

/// Open connections by id, in id order.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    conns: BTreeMap<SocketId, Conn>,
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) remote: SocketAddr,
    decoder: StreamDecoder,
    /// When bytes last came in or went out.
    pub(crate) last_active: Instant,
    /// A user was reached over it (a login, or a move onto it): it is never
    /// closed as idle, and a user may still name it after it closes.
    pub(crate) bound: bool,
}

/// What a piece of a stream held.
#[derive(Debug)]
pub(crate) enum Received {
    /// Whole datagrams (possibly none yet), from the connection's remote
    /// address.
    Datagrams(SocketAddr, Vec<Vec<u8>>),
    /// The framing broke: the datagrams before the break, and why. The
    /// connection must be closed.
    Broken(SocketAddr, Vec<Vec<u8>>, StreamError),
    /// Not a connection we hold.
    Unknown,
}

impl Streams {
    pub(crate) fn open(&mut self, now: Instant, conn: SocketId, remote: SocketAddr) {
        self.conns.insert(conn, Conn { remote, decoder: StreamDecoder::new(), last_active: now, bound: false });
    }

    pub(crate) fn close(&mut self, conn: SocketId) -> Option<Conn> {
        self.conns.remove(&conn)
    }

    /// A user is reached over `conn` now (nothing for a UDP socket).
    pub(crate) fn mark_bound(&mut self, conn: SocketId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.bound = true;
        }
    }

    pub(crate) fn contains(&self, conn: SocketId) -> bool {
        self.conns.contains_key(&conn)
    }

    pub(crate) fn len(&self) -> usize {
        self.conns.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (SocketId, &Conn)> {
        self.conns.iter().map(|(id, c)| (*id, c))
    }

    /// Connections from `ip`.
    pub(crate) fn count_from(&self, ip: std::net::IpAddr) -> usize {
        self.conns.values().filter(|c| c.remote.ip() == ip).count()
    }

    /// Feeds `bytes` read from `conn` to its decoder.
    pub(crate) fn receive(&mut self, now: Instant, conn: SocketId, bytes: &[u8]) -> Received {
        let Some(c) = self.conns.get_mut(&conn) else { return Received::Unknown };
        c.last_active = now;
        c.decoder.push(bytes);
        let mut datagrams = Vec::new();
        loop {
            match c.decoder.next_datagram() {
                Ok(Some(d)) => datagrams.push(d),
                Ok(None) => return Received::Datagrams(c.remote, datagrams),
                Err(error) => return Received::Broken(c.remote, datagrams, error),
            }
        }
    }

    /// `t` made ready for its driver: a datagram for a connection framed
    /// into stream bytes; `None` for a connection that is gone (`gone` says
    /// which: closed while the datagram was queued, or still named by a
    /// user who has not moved since). Anything else is a UDP socket's, and
    /// passes unchanged.
    pub(crate) fn prepare(&mut self, mut t: Transmit, gone: impl Fn(SocketId) -> bool) -> Option<Transmit> {
        if let Some(c) = self.conns.get_mut(&t.socket) {
            t.payload = Bytes::from(stream::encode(&t.payload));
            t.destination = c.remote;
            t.ttl = None;
            return Some(t);
        }
        if gone(t.socket) {
            tracing::debug!(socket = t.socket.0, "a datagram for a connection that closed; dropped");
            return None;
        }
        Some(t)
    }
}
