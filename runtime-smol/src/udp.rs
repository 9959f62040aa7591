//! The UDP plumbing both drivers share: a set of non-blocking sockets named by
//! [`SocketId`], a receive that waits on all of them at once, and a send that
//! honours a transmit's TTL.

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::task::{Context, Poll};

use punchline_core::{SocketId, Transmit};
use smol::Async;
use tracing::debug;

/// Room for the largest datagram a machine accepts (and a little more, so an
/// oversized one is seen as oversized instead of silently truncated).
pub(crate) const RECV_BUFFER: usize = punchline_core::wire::MAX_DATAGRAM + 1;

/// One bound UDP socket and the TTL it sends with by default.
#[derive(Debug)]
pub(crate) struct Endpoint {
    socket: Async<UdpSocket>,
    local: SocketAddr,
    /// The kernel's default TTL (hop limit), restored after a low-TTL send.
    default_ttl: u32,
}

impl Endpoint {
    pub(crate) fn bind(addr: SocketAddr) -> io::Result<Self> {
        let socket = Async::<UdpSocket>::bind(addr)?;
        let local = socket.get_ref().local_addr()?;
        let default_ttl = get_ttl(socket.get_ref(), local)?;
        Ok(Endpoint { socket, local, default_ttl })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Sends `t` from this socket. A transmit with a TTL leaves with that TTL
    /// (DESIGN §3: openers must die before the peer's NAT); the socket's
    /// default is restored afterwards. Only the driver task sends on the
    /// socket, so nothing else can go out with the low TTL in between.
    ///
    /// A transmit whose TTL cannot be set is dropped, not sent at full TTL:
    /// a full-TTL opener can poison the peer's NAT, a missing one only costs
    /// the probes that follow a little time.
    pub(crate) async fn send(&self, t: &Transmit) -> io::Result<()> {
        match t.ttl {
            None => self.socket.send_to(&t.payload, t.destination).await.map(drop),
            Some(ttl) => {
                set_ttl(self.socket.get_ref(), self.local, u32::from(ttl))?;
                let sent = self.socket.send_to(&t.payload, t.destination).await.map(drop);
                let restored = set_ttl(self.socket.get_ref(), self.local, self.default_ttl);
                sent.and(restored)
            }
        }
    }
}

/// The sockets of one machine, by id.
#[derive(Debug, Default)]
pub(crate) struct SocketSet {
    sockets: BTreeMap<SocketId, Endpoint>,
    /// Where the next receive starts looking, so one busy socket cannot
    /// starve the others.
    cursor: usize,
}

/// What one receive produced.
pub(crate) type Received = (SocketId, io::Result<(usize, SocketAddr)>);

impl SocketSet {
    pub(crate) fn insert(&mut self, id: SocketId, endpoint: Endpoint) {
        self.sockets.insert(id, endpoint);
    }

    pub(crate) fn contains(&self, id: SocketId) -> bool {
        self.sockets.contains_key(&id)
    }

    pub(crate) fn remove(&mut self, id: SocketId) -> Option<Endpoint> {
        self.sockets.remove(&id)
    }

    pub(crate) fn addrs(&self) -> Vec<(SocketId, SocketAddr)> {
        self.sockets.iter().map(|(id, e)| (*id, e.local)).collect()
    }

    /// Sends `t` from the socket it names. Errors are the network's (no route,
    /// buffer full): logged and counted by the caller, never fatal, because a
    /// lost datagram is something the protocol already survives.
    pub(crate) async fn send(&self, t: &Transmit) -> io::Result<()> {
        match self.sockets.get(&t.socket) {
            Some(endpoint) => endpoint.send(t).await,
            None => {
                // The machine released this socket and still had a datagram
                // queued for it, or named one the driver never opened.
                debug!(socket = t.socket.0, "transmit for a socket that is not open; dropped");
                Err(io::Error::new(io::ErrorKind::NotFound, "no such socket"))
            }
        }
    }

    /// Receives one datagram into `buf` from whichever socket has one, or
    /// registers the task's waker with every socket.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Received> {
        let n = self.sockets.len();
        if n == 0 {
            return Poll::Pending;
        }
        let start = self.cursor % n;
        for (i, (id, endpoint)) in self.sockets.iter().enumerate().cycle().skip(start).take(n) {
            loop {
                match endpoint.socket.get_ref().recv_from(buf) {
                    Ok(got) => {
                        self.cursor = i + 1;
                        return Poll::Ready((*id, Ok(got)));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => match endpoint.socket.poll_readable(cx) {
                        // Readiness arrived between the attempt and the poll:
                        // try again.
                        Poll::Ready(Ok(())) => continue,
                        Poll::Ready(Err(e)) => {
                            self.cursor = i + 1;
                            return Poll::Ready((*id, Err(e)));
                        }
                        Poll::Pending => break,
                    },
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.cursor = i + 1;
                        return Poll::Ready((*id, Err(e)));
                    }
                }
            }
        }
        Poll::Pending
    }
}

fn get_ttl(socket: &UdpSocket, local: SocketAddr) -> io::Result<u32> {
    let sock = socket2::SockRef::from(socket);
    if local.is_ipv4() {
        sock.ttl()
    } else {
        sock.unicast_hops_v6()
    }
}

fn set_ttl(socket: &UdpSocket, local: SocketAddr, ttl: u32) -> io::Result<()> {
    let sock = socket2::SockRef::from(socket);
    if local.is_ipv4() {
        sock.set_ttl(ttl)
    } else {
        sock.set_unicast_hops_v6(ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn a_low_ttl_send_restores_the_default_ttl() {
        smol::block_on(async {
            // Given a socket and its kernel default TTL
            let a = Endpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let b = Endpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let default = get_ttl(a.socket.get_ref(), a.local).unwrap();
            assert_ne!(default, 2);

            // When it sends a transmit with TTL 2
            let t = Transmit {
                socket: SocketId(0),
                destination: b.local,
                ttl: Some(2),
                payload: Bytes::from("x"),
                plaintext: None,
                droppable: false,
            };
            a.send(&t).await.unwrap();

            // Then the datagram arrives (loopback has no hops) and the socket's
            // TTL is the default again
            let mut buf = [0u8; 16];
            let (n, from) = b.socket.recv_from(&mut buf).await.unwrap();
            assert_eq!((&buf[..n], from), (&b"x"[..], a.local));
            assert_eq!(get_ttl(a.socket.get_ref(), a.local).unwrap(), default);
        });
    }
}
