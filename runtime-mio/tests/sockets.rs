//! Socket requests: many fresh sockets on the primary's IP (birthday
//! probing asks for up to 256), each usable, then released.

use std::collections::{BTreeSet, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bytes::Bytes;
use punchline_core::{Machine, SocketId, Transmit};
use punchline_mio::{Endpoint, Role, Sockets};

/// Asks its driver for sockets, then sends one datagram from each, then
/// releases them: the client's pattern, without the protocol.
#[derive(Default)]
struct Asker {
    requests: VecDeque<Request>,
    transmits: VecDeque<Transmit>,
    opened: Vec<(SocketId, SocketAddr)>,
}

#[derive(Debug)]
enum Request {
    Open(u16),
    Release(SocketId),
}

impl Machine for Asker {
    type Event = Request;
    fn handle_datagram(&mut self, _: Instant, _: SocketId, _: SocketAddr, _: &[u8]) {}
    fn handle_timeout(&mut self, _: Instant) {}
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }
    fn poll_event(&mut self) -> Option<Request> {
        self.requests.pop_front()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

impl Role for Asker {
    fn driver_event(&mut self, _: Instant, event: Request, sockets: &mut Sockets) -> Option<Request> {
        match event {
            Request::Open(count) => self.opened = sockets.open_beside(SocketId(0), count),
            Request::Release(id) => sockets.release(id),
        }
        None
    }
}

#[test]
fn opens_256_sockets_beside_the_primary_and_releases_them() {
    // Given an endpoint with a primary socket on 127.0.0.3.
    let primary = UdpSocket::bind("127.0.0.3:0").expect("bind");
    let mut endpoint = Endpoint::new(Asker::default(), vec![(SocketId(0), primary)]).expect("endpoint");

    // When the machine asks for 256 sockets.
    endpoint.machine_mut().requests.push_back(Request::Open(256));
    endpoint.flush(Instant::now(), &mut |_| {});

    // Then it gets 256 new ids and distinct ports on the primary's IP.
    let opened = endpoint.machine().opened.clone();
    assert_eq!(opened.len(), 256);
    let ids: BTreeSet<SocketId> = opened.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), 256);
    assert!(!ids.contains(&SocketId(0)));
    let ports: BTreeSet<u16> = opened.iter().map(|(_, a)| a.port()).collect();
    assert_eq!(ports.len(), 256);
    assert!(opened.iter().all(|(_, a)| a.ip().to_string() == "127.0.0.3"));
    assert_eq!(endpoint.sockets().len(), 257);

    // And each sends from its own address.
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind");
    receiver.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let to = receiver.local_addr().expect("addr");
    for (id, _) in &opened[..8] {
        let payload = Bytes::from(id.0.to_string());
        endpoint.machine_mut().transmits.push_back(Transmit {
            socket: *id,
            destination: to,
            ttl: None,
            payload,
            plaintext: None,
            droppable: false,
        });
    }
    endpoint.flush(Instant::now(), &mut |_| {});
    let mut buf = [0u8; 16];
    for (id, addr) in &opened[..8] {
        let (len, from) = receiver.recv_from(&mut buf).expect("datagram");
        assert_eq!((&buf[..len], from), (id.0.to_string().as_bytes(), *addr));
    }

    // When they are released, then only the primary is left.
    for (id, _) in &opened {
        endpoint.machine_mut().requests.push_back(Request::Release(*id));
    }
    endpoint.flush(Instant::now(), &mut |_| {});
    assert_eq!(endpoint.sockets().local_addrs().iter().map(|(id, _)| *id).collect::<Vec<_>>(), [SocketId(0)]);
}
