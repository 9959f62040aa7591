//! The server over TCP on loopback (issue 21): clients whose UDP goes
//! nowhere log in and meet through the relay over TCP; large relayed
//! datagrams cross intact; a client that stops reading costs a bounded
//! buffer; bytes that are not ours close the connection; STUN Binding works
//! over TCP (RFC 8489 §6.2.2).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use punchline_core::client::{Client, ClientConfig, ClientEvent};
use punchline_core::server::ServerConfig;
use punchline_core::wire::frame::{Transport, MAX_APP_PAYLOAD};
use punchline_core::wire::stun::{binding_request, Class, Message, TransactionId};
use punchline_core::wire::MAX_DATAGRAM;
use punchline_core::{Machine, SocketId};
use punchline_mio::{ClientHandle, ServerRunner, ShutdownHandle, TcpCounters, FIRST_STREAM_ID, SOFT_WRITE_LIMIT};

struct Running {
    udp: SocketAddr,
    tcp: Vec<SocketAddr>,
    counters: TcpCounters,
    shutdown: ShutdownHandle,
    thread: Option<thread::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    /// A server on 127.0.0.1, port 0, with TCP on its primary address (the
    /// default) and on one more port, and relay limits raised so that a
    /// test's bulk is never throttled.
    fn start() -> Running {
        let mut config = ServerConfig::new(addr("127.0.0.1:0"), None);
        config.relay_burst_bytes = 64 << 20;
        config.relay_rate_bytes = 64 << 20;
        let mut runner = ServerRunner::bind_config(config).expect("server binds");
        let udp = runner.local_addrs()[0].1;
        let extra = runner.listen_tcp(addr("127.0.0.1:0")).expect("second listener");
        let tcp = runner.tcp_addrs();
        assert_eq!(tcp, [udp, extra], "TCP on the primary's own IP and port first, then the extra listener");
        assert_ne!(extra.port(), 0);
        let (counters, shutdown) = (runner.tcp_counters(), runner.shutdown_handle());
        let thread = Some(thread::spawn(move || runner.run(|_| {})));
        Running { udp, tcp, counters, shutdown, thread }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.shutdown();
        if let Some(thread) = self.thread.take() {
            let ended = thread.join().expect("server thread");
            if !thread::panicking() {
                ended.expect("server ran cleanly");
            }
        }
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address parses")
}

/// The first event that `pred` accepts. The deadline only turns a hang into
/// a failure; it is far beyond anything awaited here.
fn wait_for(client: &ClientHandle, what: &str, mut pred: impl FnMut(&ClientEvent) -> bool) -> ClientEvent {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut skipped = Vec::new();
    while Instant::now() < deadline {
        if let Some(e) = client.next_event(Duration::from_millis(100)) {
            if pred(&e) {
                return e;
            }
            skipped.push(e);
        }
    }
    panic!("timed out waiting for {what}; other events: {skipped:?}");
}

/// A client whose UDP to the server goes into `blackhole` (a socket nobody
/// reads) and who finds the server over TCP at `tcp`. Sessions stay on the
/// relay (`punch` off), so their data crosses the server.
fn tcp_only_client(user: &str, blackhole: SocketAddr, tcp: SocketAddr) -> ClientHandle {
    let config =
        ClientConfig { server_tcp: Some(tcp), punch: false, send_window: 4096, ..ClientConfig::new(user, blackhole) };
    ClientHandle::start(config, addr("127.0.0.1:0")).expect("client starts")
}

fn log_in_over_tcp(client: &ClientHandle, name: &str) {
    wait_for(client, &format!("{name} logged in"), |e| matches!(e, ClientEvent::LoggedIn { .. }));
    assert_eq!(client.call(|c, _| c.transport()).expect("running"), Transport::Tcp);
    assert_eq!(client.tcp_stats().connected, 1);
    await_online(client, name);
}

/// Waits until the server counts `name` online. A login goes online at the
/// server only when the client's first sealed frame (the keepalive it sends
/// on the Welcome) arrives; a connect to it before that is refused as
/// `UnknownPeer`. Its own lookup, answered after that keepalive, shows it
/// arrived.
fn await_online(client: &ClientHandle, name: &str) {
    client.lookup(name).expect("running").expect("valid name");
    let found = wait_for(client, "lookup", |e| matches!(e, ClientEvent::LookupResult { .. }));
    assert!(matches!(found, ClientEvent::LookupResult { online: true, .. }), "{found:?}");
}

/// Alice asks for bob; both see the session open. Returns alice's and bob's
/// view of its id.
fn open_session(alice: &ClientHandle, bob: &ClientHandle) -> punchline_core::wire::frame::SessionId {
    alice.connect("bob").expect("running").expect("valid peer");
    let ClientEvent::SessionOpened { session, .. } =
        wait_for(alice, "alice's session", |e| matches!(e, ClientEvent::SessionOpened { .. }))
    else {
        unreachable!()
    };
    wait_for(bob, "bob's session", |e| matches!(e, ClientEvent::SessionOpened { session: s, .. } if *s == session));
    session
}

#[test]
fn clients_whose_udp_is_blackholed_log_in_over_tcp_and_meet_through_the_relay() {
    // Given a server, and a UDP socket nobody reads standing in for the
    // server's UDP address: datagrams to it vanish, as behind a firewall
    // that drops UDP.
    let server = Running::start();
    let blackhole = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let blackhole = blackhole.local_addr().expect("addr");

    // When alice finds the server's TCP on its primary address, and bob on
    // the extra listener.
    let alice = tcp_only_client("alice", blackhole, server.tcp[0]);
    let bob = tcp_only_client("bob", blackhole, server.tcp[1]);

    // Then both log in over TCP.
    log_in_over_tcp(&alice, "alice");
    log_in_over_tcp(&bob, "bob");

    // When alice opens a session with bob and sends on it.
    let session = open_session(&alice, &bob);
    alice.send(session, b"over the relay, over TCP").expect("running").expect("sent");

    // Then bob gets it, through a relay that is TCP.
    let got = wait_for(&bob, "data", |e| matches!(e, ClientEvent::DataReceived { .. }));
    assert_eq!(got, ClientEvent::DataReceived { session, data: bytes_of(b"over the relay, over TCP") });
    let info = alice.call(move |c, _| c.session_info(session)).expect("running").expect("open");
    assert_eq!(info.relay_transport, Transport::Tcp);

    // When bob sends alice a text through the server, then she gets it and
    // bob hears it was delivered.
    let id = bob.send_text("alice", "a text over TCP").expect("running").expect("queued");
    let text = wait_for(&alice, "text", |e| matches!(e, ClientEvent::TextReceived { .. }));
    assert!(
        matches!(text, ClientEvent::TextReceived { ref from, ref text, .. } if from == "bob" && text == "a text over TCP")
    );
    wait_for(&bob, "text acked", |e| matches!(e, ClientEvent::TextAcked { id: i, .. } if *i == id));

    // And the server accepted exactly their two connections.
    assert_eq!(server.counters.stats().accepted, 2);
    alice.shutdown().expect("clean shutdown");
    bob.shutdown().expect("clean shutdown");
}

#[test]
fn one_client_over_tcp_and_one_over_udp_meet_through_the_relay() {
    // Given alice behind a UDP blackhole, and bob with working UDP.
    let server = Running::start();
    let blackhole = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let alice = tcp_only_client("alice", blackhole.local_addr().expect("addr"), server.tcp[0]);
    let bob =
        ClientHandle::start(ClientConfig { punch: false, ..ClientConfig::new("bob", server.udp) }, addr("127.0.0.1:0"))
            .expect("bob starts");
    log_in_over_tcp(&alice, "alice");
    wait_for(&bob, "bob logged in", |e| matches!(e, ClientEvent::LoggedIn { .. }));
    assert_eq!(bob.call(|c, _| c.transport()).expect("running"), Transport::Udp);
    await_online(&bob, "bob");

    // When bob opens a session with alice and sends on it.
    bob.connect("alice").expect("running").expect("valid peer");
    let ClientEvent::SessionOpened { session, .. } =
        wait_for(&bob, "bob's session", |e| matches!(e, ClientEvent::SessionOpened { .. }))
    else {
        unreachable!()
    };
    wait_for(&alice, "alice's session", |e| matches!(e, ClientEvent::SessionOpened { .. }));
    bob.send(session, b"from UDP to TCP").expect("running").expect("sent");

    // Then alice gets it, and both see a relay that is TCP (one member is).
    let got = wait_for(&alice, "data", |e| matches!(e, ClientEvent::DataReceived { .. }));
    assert_eq!(got, ClientEvent::DataReceived { session, data: bytes_of(b"from UDP to TCP") });
    for client in [&alice, &bob] {
        let info = client.call(move |c, _| c.session_info(session)).expect("running").expect("open");
        assert_eq!(info.relay_transport, Transport::Tcp);
    }
    alice.shutdown().expect("clean shutdown");
    bob.shutdown().expect("clean shutdown");
}

#[test]
fn large_relayed_datagrams_cross_tcp_intact_and_in_order() {
    // Given two clients on TCP with a session on the relay.
    let server = Running::start();
    let blackhole = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let blackhole = blackhole.local_addr().expect("addr");
    let alice = tcp_only_client("alice", blackhole, server.tcp[0]);
    let bob = tcp_only_client("bob", blackhole, server.tcp[0]);
    log_in_over_tcp(&alice, "alice");
    log_in_over_tcp(&bob, "bob");
    let session = open_session(&alice, &bob);

    // When alice sends 3,000 messages of the largest size (about 3.4 MB),
    // each numbered, as fast as her send window lets her.
    let count = 3000u32;
    let message = |i: u32| -> Vec<u8> {
        let mut m = vec![(i % 251) as u8; MAX_APP_PAYLOAD];
        m[..4].copy_from_slice(&i.to_be_bytes());
        m
    };
    let sender = thread::spawn(move || {
        for i in 0..count {
            let data = message(i);
            loop {
                match alice.send(session, &data).expect("running") {
                    Ok(()) => break,
                    Err(punchline_core::client::SendError::WindowFull) => thread::sleep(Duration::from_millis(2)),
                    Err(e) => panic!("send {i}: {e:?}"),
                }
            }
        }
        alice
    });

    // Then bob gets every one, whole and in order.
    for i in 0..count {
        let got = wait_for(&bob, &format!("message {i}"), |e| matches!(e, ClientEvent::DataReceived { .. }));
        let ClientEvent::DataReceived { data, .. } = got else { unreachable!() };
        assert!(data[..] == message(i)[..], "message {i} arrived changed or out of order");
    }
    let alice = sender.join().expect("sender");
    // And nothing was dropped on the way: the readers kept up.
    assert_eq!(server.counters.stats().dropped, 0);
    alice.shutdown().expect("clean shutdown");
    bob.shutdown().expect("clean shutdown");
}

/// A client driven by hand over a blocking `TcpStream` (its UDP goes
/// nowhere), so that the test decides when it stops reading.
struct HandDriven {
    client: Client,
    stream: Option<TcpStream>,
    events: Vec<ClientEvent>,
}

/// The id the hand-driven client's connection goes by.
const HAND_CONN: SocketId = SocketId(FIRST_STREAM_ID);

impl HandDriven {
    fn new(user: &str, blackhole: SocketAddr, tcp: SocketAddr) -> HandDriven {
        let local = UdpSocket::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
        let config = ClientConfig { server_tcp: Some(tcp), punch: false, ..ClientConfig::new(user, blackhole) };
        HandDriven {
            client: Client::new(config, (SocketId(0), local), Instant::now()),
            stream: None,
            events: Vec::new(),
        }
    }

    /// Drives the client until one of its events satisfies `pred`: writes
    /// what it sends over TCP (its UDP is dropped), opens the connection it
    /// asks for (with a tiny receive buffer), and reads what comes back.
    fn drive_until(&mut self, what: &str, mut pred: impl FnMut(&ClientEvent) -> bool) -> ClientEvent {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut buf = vec![0; 65536];
        loop {
            assert!(Instant::now() < deadline, "timed out waiting for {what}; events: {:?}", self.events);
            let now = Instant::now();
            if self.client.poll_timeout().is_some_and(|t| t <= now) {
                self.client.handle_timeout(now);
            }
            while let Some(t) = self.client.poll_transmit() {
                if let (SocketId(id), Some(stream)) = (t.socket, self.stream.as_mut()) {
                    if id == HAND_CONN.0 {
                        stream.write_all(&t.payload).expect("the server takes our bytes");
                    }
                }
            }
            while let Some(event) = self.client.poll_event() {
                match event {
                    ClientEvent::OpenStream { request, to } => {
                        let socket =
                            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
                        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
                        socket.connect(&to.into()).expect("connect");
                        let stream: TcpStream = socket.into();
                        stream.set_read_timeout(Some(Duration::from_millis(10))).expect("timeout");
                        self.stream = Some(stream);
                        self.client.stream_opened(now, request, Some(HAND_CONN));
                    }
                    ClientEvent::OpenSockets { request, .. } => self.client.sockets_opened(now, request, &[]),
                    event => {
                        if pred(&event) {
                            return event;
                        }
                        self.events.push(event);
                    }
                }
            }
            let Some(stream) = self.stream.as_mut() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            match stream.read(&mut buf) {
                Ok(0) => panic!("the server closed the connection; events: {:?}", self.events),
                Ok(n) => self.client.handle_stream_data(Instant::now(), HAND_CONN, &buf[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }
}

#[test]
fn a_reader_that_stops_reading_costs_the_server_at_most_the_soft_limit() {
    // Given bob, on TCP, driven by hand, and alice on UDP, in a session on
    // the relay; alice may have many messages in flight.
    let server = Running::start();
    let blackhole = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut bob = HandDriven::new("bob", blackhole.local_addr().expect("addr"), server.tcp[0]);
    bob.drive_until("bob logged in", |e| matches!(e, ClientEvent::LoggedIn { .. }));
    assert_eq!(bob.client.transport(), Transport::Tcp);
    bob.client.lookup(Instant::now(), "bob").expect("valid name");
    bob.drive_until("bob online", |e| matches!(e, ClientEvent::LookupResult { online: true, .. }));
    let config = ClientConfig { punch: false, send_window: 20_000, ..ClientConfig::new("alice", server.udp) };
    let alice = ClientHandle::start(config, addr("127.0.0.1:0")).expect("alice starts");
    wait_for(&alice, "alice logged in", |e| matches!(e, ClientEvent::LoggedIn { .. }));
    alice.connect("bob").expect("running").expect("valid peer");
    bob.drive_until("bob's session", |e| matches!(e, ClientEvent::SessionOpened { .. }));
    let ClientEvent::SessionOpened { session, .. } =
        wait_for(&alice, "alice's session", |e| matches!(e, ClientEvent::SessionOpened { .. }))
    else {
        unreachable!()
    };

    // When bob stops reading, and alice sends 12,000 of the largest
    // messages (about 13 MB, and her retransmissions after), all relayed to
    // bob's connection.
    for i in 0..12_000u32 {
        let mut data = vec![0x33; MAX_APP_PAYLOAD];
        data[..4].copy_from_slice(&i.to_be_bytes());
        alice.send(session, &data).expect("running").expect("room in the window");
    }

    // Then the server drops relayed datagrams rather than buffer them: its
    // buffer for bob never passed the soft limit by more than one framed
    // datagram (nothing else goes to bob meanwhile), and bob's connection
    // stays open.
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.counters.stats().dropped == 0 {
        assert!(Instant::now() < deadline, "nothing dropped: {:?}", server.counters.stats());
        thread::sleep(Duration::from_millis(10));
    }
    let s = server.counters.stats();
    assert!(s.peak_buffered as usize <= SOFT_WRITE_LIMIT + 2 + MAX_DATAGRAM, "{s:?}");
    assert!(s.peak_buffered as usize > SOFT_WRITE_LIMIT, "{s:?}");
    assert_eq!((s.overflowed, s.closed_by_peer), (0, 0), "{s:?}");
    assert!(s.open >= 1, "{s:?}");
    drop(bob);
    alice.shutdown().expect("clean shutdown");
}

#[test]
fn a_connection_that_speaks_http_is_closed() {
    // Given a server.
    let server = Running::start();
    // When a client sends it an HTTP request over TCP.
    let mut stream = TcpStream::connect(server.tcp[0]).expect("connect");
    stream.write_all(b"GET / HTTP/1.1\r\nHost: punchline\r\n\r\n").expect("write");
    // Then the server closes the connection without a word.
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => assert!(answer.is_empty(), "the server answered {answer:?}"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    // And no connection stays open.
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.counters.stats().open > 0 {
        assert!(Instant::now() < deadline, "the connection stayed open: {:?}", server.counters.stats());
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.counters.stats().accepted, 1);
}

#[test]
fn stun_binding_over_tcp_answers_with_the_tcp_source_address() {
    // Given a server with two TCP listeners.
    let server = Running::start();
    for (n, listener) in server.tcp.iter().enumerate() {
        // When a STUN client sends a Binding request over TCP, as RFC 8489
        // §6.2.2 frames it (the message as it is).
        let mut stream = TcpStream::connect(listener).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let tid = TransactionId([n as u8 + 1; 12]);
        stream.write_all(&binding_request(tid)).expect("write");

        // Then a success response comes back, framed by its own length,
        // whose XOR-MAPPED-ADDRESS is the client's TCP source address.
        let mut header = [0u8; 20];
        stream.read_exact(&mut header).expect("a response header");
        let body = u16::from_be_bytes([header[2], header[3]]) as usize;
        let mut response = header.to_vec();
        response.resize(20 + body, 0);
        stream.read_exact(&mut response[20..]).expect("the response body");
        let message = Message::decode(&response).expect("a STUN message");
        assert_eq!((message.class, message.transaction_id), (Class::SuccessResponse, tid));
        assert_eq!(message.xor_mapped_address(), Some(stream.local_addr().expect("addr")));

        // And the connection still answers a second request.
        let again = TransactionId([0x40 + n as u8; 12]);
        stream.write_all(&binding_request(again)).expect("write");
        stream.read_exact(&mut header).expect("a second response");
        assert_eq!(&header[8..20], &again.0);
    }
}

fn bytes_of(b: &[u8]) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(b)
}
