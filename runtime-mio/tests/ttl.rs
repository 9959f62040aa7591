//! Per-packet TTL: a transmit with `ttl` leaves with that TTL and the
//! socket's default is restored for the next one.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bytes::Bytes;
use punchline_core::{Machine, SocketId, Transmit};
use punchline_mio::{Endpoint, Role, Sockets};

/// A machine that only sends what it is given.
#[derive(Default)]
struct Sender {
    queue: VecDeque<Transmit>,
}

impl Machine for Sender {
    type Event = ();
    fn handle_datagram(&mut self, _: Instant, _: SocketId, _: SocketAddr, _: &[u8]) {}
    fn handle_timeout(&mut self, _: Instant) {}
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.queue.pop_front()
    }
    fn poll_event(&mut self) -> Option<()> {
        None
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

impl Role for Sender {
    fn driver_event(&mut self, _: Instant, event: (), _: &mut Sockets) -> Option<()> {
        Some(event)
    }
}

#[test]
fn low_ttl_transmits_are_sent_and_the_default_ttl_is_restored() {
    // Given an endpoint whose socket has the system's default TTL, and a receiver.
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind");
    receiver.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let probe = socket.try_clone().expect("clone");
    let default_ttl = probe.ttl().expect("ttl");
    assert_ne!(default_ttl, 2);
    let mut endpoint = Endpoint::new(Sender::default(), vec![(SocketId(0), socket)]).expect("endpoint");

    // When an opener with TTL 2 and then a normal datagram are flushed.
    let to = receiver.local_addr().expect("addr");
    for (ttl, payload) in [(Some(2), &b"opener"[..]), (None, b"probe")] {
        endpoint.machine_mut().queue.push_back(Transmit {
            socket: SocketId(0),
            destination: to,
            ttl,
            payload: Bytes::copy_from_slice(payload),
        });
    }
    endpoint.flush(Instant::now(), &mut |()| {});

    // Then both arrive (loopback has no routers to expire the opener), and
    // the socket's TTL is back to its default.
    let mut buf = [0u8; 64];
    for expected in [&b"opener"[..], b"probe"] {
        let (len, _) = receiver.recv_from(&mut buf).expect("datagram arrives");
        assert_eq!(&buf[..len], expected);
    }
    assert_eq!(probe.ttl().expect("ttl"), default_ttl);
}
