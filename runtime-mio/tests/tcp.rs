//! Stream connections in the generic endpoint, under a stand-in machine that
//! says exactly what it sends: partial reads and writes, the write buffer's
//! limits, EOF, and outgoing connections.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use punchline_core::{Machine, SocketId, Transmit};
use punchline_mio::{Endpoint, Role, Sockets, TcpStats, FIRST_STREAM_ID, HARD_WRITE_LIMIT, SOFT_WRITE_LIMIT};

/// Writes what it is told to, and records what the endpoint tells it.
#[derive(Default)]
struct Stub {
    transmits: VecDeque<Transmit>,
    asks: VecDeque<Ask>,
    accepted: Vec<(SocketId, SocketAddr)>,
    opened: Vec<(u32, Option<SocketId>)>,
    received: BTreeMap<SocketId, Vec<u8>>,
    /// How many pieces the bytes came in.
    pieces: usize,
    closed: Vec<SocketId>,
}

#[derive(Debug)]
enum Ask {
    Connect(u32, SocketAddr),
    Close(SocketId),
}

impl Machine for Stub {
    type Event = Ask;
    fn handle_datagram(&mut self, _: Instant, _: SocketId, _: SocketAddr, _: &[u8]) {}
    fn handle_timeout(&mut self, _: Instant) {}
    fn handle_stream_data(&mut self, _: Instant, conn: SocketId, bytes: &[u8]) {
        self.received.entry(conn).or_default().extend_from_slice(bytes);
        self.pieces += 1;
    }
    fn handle_stream_closed(&mut self, _: Instant, conn: SocketId) {
        self.closed.push(conn);
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }
    fn poll_event(&mut self) -> Option<Ask> {
        self.asks.pop_front()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

impl Role for Stub {
    fn driver_event(&mut self, now: Instant, event: Ask, sockets: &mut Sockets) -> Option<Ask> {
        match event {
            Ask::Connect(request, to) => sockets.connect_stream(now, request, to),
            Ask::Close(conn) => sockets.close_stream(conn),
        }
        None
    }
    fn stream_opened(&mut self, _: Instant, request: u32, conn: Option<SocketId>) {
        self.opened.push((request, conn));
    }
    fn stream_accepted(&mut self, _: Instant, conn: SocketId, remote: SocketAddr) {
        self.accepted.push((conn, remote));
    }
}

fn unit(conn: SocketId, payload: Vec<u8>, droppable: bool) -> Transmit {
    let destination = "127.0.0.1:9".parse().expect("addr");
    Transmit { socket: conn, destination, ttl: None, payload: Bytes::from(payload), plaintext: None, droppable }
}

/// Turns the endpoint until `done` holds. The deadline only turns a hang
/// into a failure.
fn turn_until(endpoint: &mut Endpoint<Stub>, what: &str, mut done: impl FnMut(&Endpoint<Stub>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(endpoint) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        endpoint.turn(Some(Instant::now() + Duration::from_millis(20)), &mut |_| {}).expect("turn");
    }
}

/// A client socket to `to` whose receive buffer is tiny, so what the
/// endpoint writes backs up into its own buffer.
fn slow_peer(to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&to.into()).expect("connect");
    socket.into()
}

/// A listener whose connections have a small send buffer (accepted sockets
/// inherit it), so that the kernel cannot absorb what a test writes: loopback
/// otherwise grows a send buffer to megabytes.
fn small_send_buffer_listener() -> std::net::TcpListener {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_send_buffer_size(8192).expect("SO_SNDBUF");
    socket.bind(&"127.0.0.1:0".parse::<SocketAddr>().expect("addr").into()).expect("bind");
    socket.listen(16).expect("listen");
    socket.into()
}

/// An endpoint with one TCP listener on loopback (with a small send buffer
/// when `small` says so) and one peer connected to it: the endpoint, the
/// peer, and the connection's id.
fn accepted_pair(small: bool, peer: impl FnOnce(SocketAddr) -> TcpStream) -> (Endpoint<Stub>, TcpStream, SocketId) {
    let mut endpoint = Endpoint::new(Stub::default(), Vec::new()).expect("endpoint");
    let addr = if small {
        endpoint.adopt_tcp_listener(small_send_buffer_listener()).expect("adopt")
    } else {
        endpoint.listen_tcp("127.0.0.1:0".parse().expect("addr")).expect("listen")
    };
    assert_eq!(endpoint.tcp_addrs(), [addr]);
    let peer = peer(addr);
    turn_until(&mut endpoint, "the connection", |e| !e.machine().accepted.is_empty());
    let (conn, remote) = endpoint.machine().accepted[0];
    assert_eq!(remote, peer.local_addr().expect("addr"));
    assert!(conn.0 >= FIRST_STREAM_ID, "connection ids never meet UDP socket ids: {conn:?}");
    (endpoint, peer, conn)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

fn stats(endpoint: &Endpoint<Stub>) -> TcpStats {
    endpoint.tcp_counters().stats()
}

#[test]
fn bytes_cross_a_connection_whole_and_in_order_both_ways() {
    // Given a peer that does not read yet, with a tiny receive buffer.
    let (mut endpoint, peer, conn) = accepted_pair(true, slow_peer);

    // When the machine writes 2 MiB in 1,000-byte units.
    let sent = pattern(2 << 20, 0x5a);
    for chunk in sent.chunks(1000) {
        endpoint.machine_mut().transmits.push_back(unit(conn, chunk.to_vec(), false));
    }
    endpoint.flush(Instant::now(), &mut |_| {});

    // Then what the kernel did not take waits in the write buffer.
    let backed_up = stats(&endpoint);
    assert!(backed_up.buffered > 0, "the kernel took 2 MiB at once: {backed_up:?}");
    assert_eq!(backed_up.peak_buffered, backed_up.buffered);

    // When the peer reads everything, and at the same time sends 2 MiB of its own.
    let received = pattern(2 << 20, 0xa5);
    let (mut reader, mut writer) = (peer.try_clone().expect("clone"), peer);
    let read_thread = std::thread::spawn(move || {
        let mut got = vec![0; 2 << 20];
        reader.read_exact(&mut got).expect("everything arrives");
        got
    });
    let to_send = received.clone();
    let write_thread = std::thread::spawn(move || writer.write_all(&to_send).map(|()| writer));
    turn_until(&mut endpoint, "both directions", |e| {
        stats(e).buffered == 0 && e.machine().received.get(&conn).map_or(0, Vec::len) == received.len()
    });

    // Then every byte arrived, in order, both ways, the peer's in many
    // pieces; and the connection is still open.
    assert!(read_thread.join().expect("reader") == sent, "the peer got other bytes than were sent");
    let _peer = write_thread.join().expect("writer").expect("written");
    assert!(endpoint.machine().received[&conn] == received, "the machine got other bytes than the peer sent");
    assert!(endpoint.machine().pieces > 1);
    let after = stats(&endpoint);
    assert_eq!((after.open, after.closed_by_peer, after.dropped), (1, 0, 0));
    assert!(endpoint.machine().closed.is_empty());
}

#[test]
fn a_peer_that_never_reads_costs_the_soft_limit_in_relayed_datagrams_then_is_closed_at_the_hard_one() {
    // Given a peer that never reads.
    let (mut endpoint, _peer, conn) = accepted_pair(true, slow_peer);

    // When the machine relays 24 MiB to it in full-size datagrams.
    let unit_len = 1202;
    let count = (24 << 20) / unit_len;
    for i in 0..count {
        endpoint.machine_mut().transmits.push_back(unit(conn, vec![i as u8; unit_len], true));
        if i % 1000 == 0 {
            endpoint.flush(Instant::now(), &mut |_| {});
        }
    }
    endpoint.flush(Instant::now(), &mut |_| {});

    // Then the write buffer stopped one datagram past the soft limit, the
    // rest was dropped and counted, and the connection is still open.
    let s = stats(&endpoint);
    assert!(s.peak_buffered as usize <= SOFT_WRITE_LIMIT + unit_len, "{s:?}");
    assert!(s.peak_buffered as usize > SOFT_WRITE_LIMIT, "{s:?}");
    assert_eq!(s.buffered, s.peak_buffered);
    assert!(s.dropped as usize >= count - (SOFT_WRITE_LIMIT + (1 << 20)) / unit_len, "{s:?}");
    assert_eq!(s.dropped_bytes, s.dropped * unit_len as u64);
    assert_eq!((s.open, s.overflowed), (1, 0));
    assert!(endpoint.machine().closed.is_empty());

    // When signaling (never dropped) keeps coming.
    let signaling = (HARD_WRITE_LIMIT - SOFT_WRITE_LIMIT) / 1000 + 1;
    for _ in 0..signaling {
        endpoint.machine_mut().transmits.push_back(unit(conn, vec![0x80; 1000], false));
    }
    endpoint.flush(Instant::now(), &mut |_| {});

    // Then the connection is closed at the hard limit, and the machine
    // told; nothing stays buffered.
    let s = stats(&endpoint);
    assert!(s.peak_buffered as usize <= HARD_WRITE_LIMIT, "{s:?}");
    assert_eq!((s.open, s.overflowed, s.buffered), (0, 1, 0), "{s:?}");
    assert_eq!(endpoint.machine().closed, [conn]);
}

#[test]
fn eof_and_reset_are_reported_as_closed() {
    // Given two accepted connections.
    let (mut endpoint, first, conn) = accepted_pair(false, |to| TcpStream::connect(to).expect("connect"));
    let addr = endpoint.tcp_addrs()[0];
    let second = TcpStream::connect(addr).expect("connect");
    turn_until(&mut endpoint, "the second connection", |e| e.machine().accepted.len() == 2);
    let other = endpoint.machine().accepted[1].0;
    assert_ne!(other, conn);

    // When the first peer says a word and closes (FIN), and the second
    // resets (data left unread at close).
    (&first).write_all(b"bye").expect("write");
    drop(first);
    endpoint.machine_mut().transmits.push_back(unit(other, b"unread".to_vec(), false));
    endpoint.flush(Instant::now(), &mut |_| {});
    std::thread::sleep(Duration::from_millis(50));
    drop(second);

    // Then the machine got the word, then both closes; nothing is open.
    turn_until(&mut endpoint, "both closes", |e| e.machine().closed.len() == 2);
    assert_eq!(endpoint.machine().received[&conn], b"bye");
    let mut closed = endpoint.machine().closed.clone();
    closed.sort();
    assert_eq!(closed, [conn, other]);
    let s = stats(&endpoint);
    assert_eq!((s.open, s.closed_by_peer, s.accepted), (0, 2, 2));
}

#[test]
fn a_connect_is_answered_with_its_connection_or_none_and_a_close_flushes_then_fins() {
    // Given a listener, and a port where nothing listens.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let to = listener.local_addr().expect("addr");
    let closed_port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let mut endpoint = Endpoint::new(Stub::default(), Vec::new()).expect("endpoint");

    // When the machine asks for a connection to each.
    endpoint.machine_mut().asks.extend([Ask::Connect(7, to), Ask::Connect(8, closed_port)]);
    endpoint.flush(Instant::now(), &mut |_| {});
    turn_until(&mut endpoint, "both outcomes", |e| e.machine().opened.len() == 2);

    // Then the first is answered with a connection, the second with none.
    let mut opened = endpoint.machine().opened.clone();
    opened.sort();
    let conn = opened[0].1.expect("connected");
    assert_eq!(opened, [(7, Some(conn)), (8, None)]);
    assert!(conn.0 >= FIRST_STREAM_ID);
    let s = stats(&endpoint);
    assert_eq!((s.connected, s.connect_failed, s.open), (1, 1, 1));

    // When the machine writes on it, then closes it.
    let (mut accepted, _) = listener.accept().expect("accept");
    endpoint.machine_mut().transmits.push_back(unit(conn, b"hello, server".to_vec(), false));
    endpoint.machine_mut().asks.push_back(Ask::Close(conn));
    endpoint.flush(Instant::now(), &mut |_| {});

    // Then the other end reads the bytes, then EOF; the machine is not told
    // of a close it asked for.
    accepted.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut got = Vec::new();
    accepted.read_to_end(&mut got).expect("read to EOF");
    assert_eq!(got, b"hello, server");
    assert!(endpoint.machine().closed.is_empty());
    assert_eq!(stats(&endpoint).open, 0);
}

#[test]
fn a_connect_that_hangs_is_answered_with_none_after_the_timeout() {
    // Given a listener that never accepts, its backlog full: the kernel
    // drops further SYNs, so a connection attempt hangs.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.bind(&"127.0.0.1:0".parse::<SocketAddr>().expect("addr").into()).expect("bind");
    socket.listen(0).expect("listen");
    let to = socket.local_addr().expect("addr").as_socket().expect("inet");
    let mut endpoint = Endpoint::new(Stub::default(), Vec::new()).expect("endpoint");

    // When the machine asks for four connections to it.
    endpoint.machine_mut().asks.extend((0..4).map(|request| Ask::Connect(request, to)));
    endpoint.flush(Instant::now(), &mut |_| {});
    turn_until(&mut endpoint, "every outcome", |e| e.machine().opened.len() == 4);

    // Then those the backlog took connected, and the rest were answered
    // with none once CONNECT_TIMEOUT passed; no attempt is left open.
    let failed = endpoint.machine().opened.iter().filter(|(_, conn)| conn.is_none()).count();
    assert!(failed >= 1, "{:?}", endpoint.machine().opened);
    let s = stats(&endpoint);
    assert_eq!((s.connect_failed as usize, s.connected as usize + failed), (failed, 4), "{s:?}");
    assert_eq!(s.open, s.connected);
}
