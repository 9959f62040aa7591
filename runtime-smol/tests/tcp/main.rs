//! The TCP fallback (issue 21) on loopback, driven by punchline-smol: a
//! server listening on UDP and TCP, and clients whose UDP to the server goes
//! nowhere (their `ClientConfig::server` is a socket nobody reads), so they
//! must log in and stay over TCP.
//!
//! Every port is chosen by the system, so tests run in parallel. Timeouts
//! only guard against hangs; nothing asserts on time.

mod hand;

use std::future::Future;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use punchline_core::wire::frame::MAX_APP_PAYLOAD;
use punchline_smol::{
    BoundServer, Client, ClientConfig, ClientEvent, PathKind, ServerConfig, ServerEvent, TcpCounters, Transport,
    TCP_WRITE_HARD_LIMIT, TCP_WRITE_SOFT_LIMIT,
};
use smol::channel::{Receiver, Sender};
use smol::Task;

const GUARD: Duration = Duration::from_secs(30);

/// Fails the test instead of hanging it.
async fn guard<T>(what: &str, f: impl Future<Output = T>) -> T {
    smol::future::or(f, async {
        smol::Timer::after(GUARD).await;
        panic!("timed out waiting for {what}")
    })
    .await
}

/// Waits (polling) until `check` holds; fails the test after [`GUARD`].
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    guard(what, async {
        while !check() {
            smol::Timer::after(Duration::from_millis(10)).await;
        }
    })
    .await
}

struct TestServer {
    udp: SocketAddr,
    tcp: SocketAddr,
    counters: TcpCounters,
    events: Receiver<ServerEvent>,
    stop: Sender<()>,
    task: Task<std::io::Result<punchline_smol::Server>>,
    /// Where clients whose UDP "goes nowhere" send it: bound, never read.
    dead_udp: UdpSocket,
}

impl TestServer {
    fn start() -> TestServer {
        TestServer::start_with(|_| {})
    }

    fn start_with(tune: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), None);
        tune(&mut config);
        let mut bound = BoundServer::bind_config(config).expect("bind the server");
        let tcp = bound.listen_tcp("127.0.0.1:0".parse().unwrap()).expect("listen on TCP");
        assert_eq!(bound.tcp_addrs(), vec![tcp]);
        let (udp, counters) = (bound.primary(), bound.tcp_counters());
        let (stop, stopped) = smol::channel::bounded::<()>(1);
        let (event_tx, events) = smol::channel::unbounded();
        let task = smol::spawn(bound.run_with_events(
            async move {
                let _ = stopped.recv().await;
            },
            move |event| {
                let _ = event_tx.try_send(event);
            },
        ));
        let dead_udp = UdpSocket::bind("127.0.0.1:0").expect("a socket nobody reads");
        TestServer { udp, tcp, counters, events, stop, task, dead_udp }
    }

    /// A client that cannot reach the server over UDP, only over TCP. It
    /// holds every session on the relay (no punching).
    fn tcp_only(&self, user: &str) -> ClientConfig {
        let mut config = ClientConfig::new(user, self.dead_udp.local_addr().unwrap());
        config.server_tcp = Some(self.tcp);
        config.punch = false;
        config
    }

    /// A client over UDP only, holding its sessions on the relay.
    fn udp_only(&self, user: &str) -> ClientConfig {
        let mut config = ClientConfig::new(user, self.udp);
        config.server_tcp = None;
        config.punch = false;
        config
    }

    /// The next server event `pick` accepts; others are skipped.
    async fn next_event<T>(&self, what: &str, mut pick: impl FnMut(ServerEvent) -> Option<T>) -> T {
        guard(what, async {
            loop {
                let event = self.events.recv().await.expect("the server runs");
                if let Some(found) = pick(event) {
                    return found;
                }
            }
        })
        .await
    }

    /// Waits until every one of `users` went online at the server: their
    /// login proved its address, so peers can reach them.
    async fn online(&self, users: &[&str]) {
        let mut waiting: Vec<&str> = users.to_vec();
        while !waiting.is_empty() {
            let user = self
                .next_event("users online", |e| match e {
                    ServerEvent::UserOnline { user, .. } => Some(user),
                    _ => None,
                })
                .await;
            waiting.retain(|w| *w != user);
        }
    }

    async fn stop(self) -> punchline_smol::Server {
        let _ = self.stop.send(()).await;
        guard("the server to stop", self.task).await.expect("the server ran")
    }
}

async fn start(config: ClientConfig) -> Client {
    Client::start(config, "127.0.0.1:0".parse().unwrap()).await.expect("start a client")
}

/// The next raw event that `pick` accepts; others are skipped.
async fn next_matching<T>(client: &Client, what: &str, mut pick: impl FnMut(ClientEvent) -> Option<T>) -> T {
    guard(what, async {
        loop {
            let event = client.next_event().await.unwrap_or_else(|| panic!("client stopped before {what}"));
            if let Some(found) = pick(event) {
                return found;
            }
        }
    })
    .await
}

/// A message of `len` bytes that says which it is: no two are alike.
fn message(i: u32, len: usize) -> Vec<u8> {
    let mut m: Vec<u8> = (0..len).map(|j| (j as u32).wrapping_mul(31).wrapping_add(i) as u8).collect();
    m[..4].copy_from_slice(&i.to_be_bytes());
    m
}

#[test]
fn clients_whose_udp_is_blocked_log_in_over_tcp_and_talk_through_the_relay() {
    smol::block_on(async {
        // Given a server, Alice and Bob whose UDP to it goes nowhere, and
        // Carol on UDP
        let server = TestServer::start();
        let alice = start(server.tcp_only("alice")).await;
        let bob = start(server.tcp_only("bob")).await;
        let carol = start(server.udp_only("carol")).await;
        let bob_accepts = bob.accept();
        let carol_accepts = carol.accept();

        // When they log in
        let alice_seen = guard("alice's login", alice.wait_logged_in()).await.expect("alice logs in");
        guard("bob's login", bob.wait_logged_in()).await.expect("bob logs in");
        guard("carol's login", carol.wait_logged_in()).await.expect("carol logs in");
        server.online(&["alice", "bob", "carol"]).await;

        // Then Alice and Bob are on TCP (the server saw Alice at her
        // connection's address, on loopback), Carol on UDP
        assert_eq!(
            (alice.transport(), bob.transport(), carol.transport()),
            (Transport::Tcp, Transport::Tcp, Transport::Udp)
        );
        assert_eq!(alice_seen.ip(), alice.local_addr().ip());
        let changed = next_matching(&alice, "alice's TransportChanged", |e| match e {
            ClientEvent::TransportChanged { transport } => Some(transport),
            _ => None,
        })
        .await;
        assert_eq!(changed, Transport::Tcp);
        assert_eq!(alice.tcp_stats().open, 1);
        assert_eq!(server.counters.get().open, 2, "one connection per TCP client");

        // When Alice (TCP) opens a session with Carol (UDP), and another
        // with Bob (TCP)
        let to_carol = guard("the session with carol", alice.connect_session("carol")).await.expect("opens");
        let from_alice_c = guard("carol's accept", carol_accepts).await.expect("carol accepted");
        let to_bob = guard("the session with bob", alice.connect_session("bob")).await.expect("opens");
        let from_alice_b = guard("bob's accept", bob_accepts).await.expect("bob accepted");

        // Then data crosses the relay both ways, in order and intact
        for (a, b) in [(&to_carol, &from_alice_c), (&to_bob, &from_alice_b)] {
            for i in 0..50 {
                a.send(&message(i, 700)).await.expect("send");
                b.send(&message(1000 + i, 300)).await.expect("send");
            }
            for i in 0..50 {
                assert_eq!(guard("data at the peer", b.recv()).await.as_deref(), Some(&message(i, 700)[..]));
                assert_eq!(guard("data back", a.recv()).await.as_deref(), Some(&message(1000 + i, 300)[..]));
            }
            assert_eq!((a.path(), b.path()), (PathKind::Relay, PathKind::Relay));
        }

        // And every side sees a relay over TCP
        for (client, session) in
            [(&alice, &to_carol), (&carol, &from_alice_c), (&alice, &to_bob), (&bob, &from_alice_b)]
        {
            let info = client.session_info(session.id()).await.expect("the session is open");
            assert_eq!(info.relay_transport, Transport::Tcp, "{}'s view", session.peer());
        }

        // And a text through the server arrives
        let id = alice.send_text("bob", "hello over tcp").await.expect("text accepted");
        let (from, text) = next_matching(&bob, "bob's text", |e| match e {
            ClientEvent::TextReceived { from, text, .. } => Some((from, text)),
            _ => None,
        })
        .await;
        assert_eq!((from.as_str(), text.as_str()), ("alice", "hello over tcp"));
        next_matching(&alice, "the text's ack", |e| {
            matches!(e, ClientEvent::TextAcked { id: i, .. } if i == id).then_some(())
        })
        .await;

        // When Alice shuts down, her logout leaves over her connection
        // before it closes: the server hears it and drops the connection
        guard("alice's shutdown", alice.shutdown()).await;
        server
            .next_event("alice offline", |e| {
                matches!(e, ServerEvent::UserOffline { user } if user == "alice").then_some(())
            })
            .await;
        until("alice's connection to close", || server.counters.get().open == 1).await;

        bob.shutdown().await;
        carol.shutdown().await;
        let counters = server.counters.clone();
        let machine = server.stop().await;
        let stats = machine.stats();
        assert_eq!((stats.streams_accepted, stats.streams_refused, stats.streams_broken), (2, 0, 0));
        let tcp = counters.get();
        assert_eq!((tcp.open, tcp.buffered, tcp.tcp_dropped, tcp.overflowed), (0, 0, 0, 0), "{tcp:?}");
    });
}

#[test]
fn many_large_datagrams_relayed_over_tcp_arrive_whole_and_in_order() {
    smol::block_on(async {
        // Given two clients over TCP, and a relay that lets a bulk transfer
        // through unthrottled
        let server = TestServer::start_with(|c| {
            c.relay_burst_bytes = 64 << 20;
            c.relay_rate_bytes = 64 << 20;
        });
        let alice = start(server.tcp_only("alice")).await;
        let bob = start(server.tcp_only("bob")).await;
        let accepting = bob.accept();
        guard("alice's login", alice.wait_logged_in()).await.expect("alice logs in");
        guard("bob's login", bob.wait_logged_in()).await.expect("bob logs in");
        server.online(&["alice", "bob"]).await;
        let to_bob = guard("the session", alice.connect_session("bob")).await.expect("opens");
        let from_alice = guard("bob's accept", accepting).await.expect("accepted");

        // When Alice sends 2,000 messages of the largest size: 2.3 MB,
        // framed units the kernel cuts wherever it likes
        const COUNT: u32 = 2000;
        let sending = async {
            for i in 0..COUNT {
                to_bob.send(&message(i, MAX_APP_PAYLOAD)).await.expect("send");
            }
        };

        // Then Bob gets every one whole, in order
        let receiving = async {
            for i in 0..COUNT {
                let got = from_alice.recv().await.expect("the session is open");
                assert!(got[..] == message(i, MAX_APP_PAYLOAD)[..], "message {i} differs");
            }
        };
        guard("the transfer", smol::future::zip(sending, receiving)).await;

        // And nothing was dropped on the way: both read as fast as they can
        let tcp = server.counters.get();
        assert_eq!((tcp.tcp_dropped, tcp.overflowed), (0, 0), "{tcp:?}");
        assert!(tcp.bytes_read > u64::from(COUNT) * MAX_APP_PAYLOAD as u64, "{tcp:?}");

        // When the server stops
        let counters = server.counters.clone();
        server.stop().await;

        // Then it closed its connections, and both clients saw theirs end
        assert_eq!((counters.get().open, counters.get().buffered), (0, 0));
        for client in [&alice, &bob] {
            until("the client's connection to end", || client.tcp_stats().closed_by_peer == 1).await;
            assert_eq!(client.tcp_stats().open, 0);
        }
        alice.shutdown().await;
        bob.shutdown().await;
    });
}

#[test]
fn a_peer_that_stops_reading_gets_a_bounded_buffer_and_relayed_datagrams_are_dropped() {
    smol::block_on(async {
        // Given a server with an unthrottled relay, a client over TCP that
        // the test drives by hand with a small receive window, and Alice over
        // UDP with a session to it
        let server = TestServer::start_with(|c| {
            c.relay_burst_bytes = 64 << 20;
            c.relay_rate_bytes = 64 << 20;
        });
        let slow = hand::HandClient::spawn("slow", server.dead_udp.local_addr().unwrap(), server.tcp);
        let mut config = server.udp_only("alice");
        config.send_window = 10_000;
        let alice = start(config).await;
        guard("alice's login", alice.wait_logged_in()).await.expect("alice logs in");
        guard("slow's login", slow.logged_in()).await;
        server.online(&["alice", "slow"]).await;
        let to_slow = guard("the session", alice.connect_session("slow")).await.expect("opens");
        guard("slow's session", slow.session_opened()).await;

        // When the slow client stops reading and Alice keeps sending (3 MB)
        slow.pause().await;
        for i in 0..3000 {
            alice.send(to_slow.id(), &message(i, 1000)).await.expect("the window has room");
        }

        // Then the server drops relayed datagrams for it and counts them,
        // its buffer for the connection stays near the soft limit (plus
        // the signaling that is never dropped), and the connection stays
        until("relayed datagrams to be dropped", || server.counters.get().tcp_dropped > 0).await;
        let tcp = server.counters.get();
        assert!(tcp.tcp_dropped_bytes >= tcp.tcp_dropped * 1000, "{tcp:?}");
        assert!(tcp.max_buffered as usize <= TCP_WRITE_SOFT_LIMIT + 16 * 1024, "{tcp:?}");
        assert!(tcp.max_buffered as usize > TCP_WRITE_SOFT_LIMIT - 2 * 1024, "the buffer filled: {tcp:?}");
        assert_eq!((tcp.open, tcp.overflowed), (1, 0), "{tcp:?}");

        // When it reads again
        slow.resume();

        // Then what was buffered before the drops arrives, whole and in
        // order, on the same connection: datagrams were dropped whole, so
        // the stream's framing held. (Alice's stream resends the rest; how
        // fast is the core's business: its retransmissions leave over UDP
        // in a burst that the server's socket partly drops.)
        let received = guard("the buffered messages", slow.received(500)).await;
        for (i, got) in received.iter().enumerate() {
            assert!(got[..] == message(i as u32, 1000)[..], "message {i} differs");
        }
        let tcp = server.counters.get();
        assert_eq!((tcp.opened, tcp.closed_by_peer, tcp.overflowed), (1, 0, 0), "{tcp:?}");
        alice.shutdown().await;
        slow.stop().await;
        server.stop().await;
    });
}

#[test]
fn a_peer_that_takes_not_even_signaling_is_disconnected_and_the_machine_told() {
    smol::block_on(async {
        // Given a server that delivers many texts at once, a client over TCP
        // driven by hand, and Alice and Bob, who may each have 3,000 texts
        // in flight (over TCP as well, so that none is lost on the way in,
        // and few enough that their own buffers stay below the hard limit)
        let server = TestServer::start_with(|c| {
            c.mailbox.delivery_window = 10_000;
            c.mailbox.max_stored_per_recipient = 10_000;
        });
        let slow = hand::HandClient::spawn("slow", server.dead_udp.local_addr().unwrap(), server.tcp);
        let mut senders = Vec::new();
        for user in ["alice", "bob"] {
            let mut config = server.tcp_only(user);
            config.messaging.text_window = 3000;
            let client = start(config).await;
            guard("a sender's login", client.wait_logged_in()).await.expect("logs in");
            senders.push(client);
        }
        guard("slow's login", slow.logged_in()).await;
        server.online(&["alice", "bob", "slow"]).await;

        // When the slow client stops reading and they send it 6,000 texts
        // (6.5 MB of deliveries, which are never dropped)
        slow.pause().await;
        let send = |client: &Client| {
            let client = client.clone();
            async move {
                for i in 0..3000 {
                    let text = format!("{i:06} {}", "x".repeat(900));
                    client.send_text("slow", &text).await.expect("the window has room");
                }
            }
        };
        smol::future::zip(send(&senders[0]), send(&senders[1])).await;

        // Then its connection's buffer goes past the soft limit up to the
        // hard one, nothing dropped, and the server closes the connection
        until("the connection to overflow", || server.counters.get().overflowed == 1).await;
        let tcp = server.counters.get();
        assert!(tcp.max_buffered as usize <= TCP_WRITE_HARD_LIMIT, "{tcp:?}");
        assert!(tcp.max_buffered as usize > TCP_WRITE_HARD_LIMIT - 2 * 1024, "{tcp:?}");
        assert_eq!((tcp.open, tcp.tcp_dropped), (2, 0), "the senders' connections are left: {tcp:?}");
        for client in &senders {
            assert_eq!(client.tcp_stats().overflowed, 0, "{:?}", client.tcp_stats());
        }

        // And the machine heard that it closed: once the others are gone
        // too, it holds no connection
        slow.stop().await;
        for client in &senders {
            client.shutdown().await;
        }
        until("every connection to close", || server.counters.get().open == 0).await;
        let machine = server.stop().await;
        assert_eq!((machine.stream_count(), machine.stats().streams_accepted), (0, 3));
    });
}

#[test]
fn a_connection_that_does_not_speak_the_framing_is_closed() {
    smol::block_on(async {
        // Given a server listening on TCP
        let server = TestServer::start();

        // When an HTTP client connects and asks for a page
        let mut http = TcpStream::connect(server.tcp).expect("connect");
        http.set_read_timeout(Some(GUARD)).unwrap();
        http.write_all(b"GET / HTTP/1.1\r\nHost: punchline\r\n\r\n").expect("write");

        // Then the server closes the connection without a word
        let mut answer = Vec::new();
        match http.read_to_end(&mut answer) {
            Ok(_) => assert!(answer.is_empty(), "the server answered {answer:?}"),
            Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "not closed: {e}"),
        }
        until("the connection to be forgotten", || server.counters.get().open == 0).await;
        let machine = server.stop().await;
        assert_eq!((machine.stats().streams_accepted, machine.stats().streams_broken), (1, 1));
    });
}

#[test]
fn a_stun_binding_over_tcp_is_answered_with_the_connection_s_address() {
    smol::block_on(async {
        // Given a server listening on TCP
        let server = TestServer::start();

        // When a STUN client sends two Binding requests (RFC 8489 §6.2.2:
        // over TCP, messages follow each other framed by their own length),
        // and closes its sending side
        let mut stun = TcpStream::connect(server.tcp).expect("connect");
        stun.set_read_timeout(Some(GUARD)).unwrap();
        let requests = [binding_request([1; 12]), binding_request([2; 12])].concat();
        stun.write_all(&requests).expect("write");
        stun.shutdown(Shutdown::Write).expect("half-close");

        // Then each is answered with a Binding success response for its
        // transaction, whose XOR-MAPPED-ADDRESS is the client's TCP source
        // address
        for id in [[1; 12], [2; 12]] {
            let mut header = [0u8; 20];
            stun.read_exact(&mut header).expect("a response header");
            let mut body = vec![0u8; usize::from(u16::from_be_bytes([header[2], header[3]]))];
            stun.read_exact(&mut body).expect("its attributes");
            assert_eq!(&header[..2], &[0x01, 0x01], "a Binding success response");
            assert_eq!(&header[4..8], &MAGIC_COOKIE.to_be_bytes());
            assert_eq!(&header[8..], &id);
            assert_eq!(xor_mapped_address(&body), Some(stun.local_addr().unwrap()));
        }

        // And then the server closes its side too
        assert_eq!(stun.read(&mut [0u8; 1]).expect("an orderly close"), 0);
        until("the connection to be forgotten", || server.counters.get().open == 0).await;
        assert_eq!(server.counters.get().closed_by_peer, 1);
        server.stop().await;
    });
}

#[test]
fn a_client_that_reaches_neither_udp_nor_tcp_counts_failed_connects_and_keeps_trying() {
    smol::block_on(async {
        // Given a client whose UDP goes nowhere, and a TCP address where
        // nothing listens (a port just freed)
        let server = TestServer::start();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let mut config = server.tcp_only("alice");
        config.server_tcp = Some(closed);

        // When it tries to log in
        let alice = start(config).await;

        // Then its TCP connects fail and are counted, and it stays on UDP,
        // not logged in
        until("a failed connect", || alice.tcp_stats().connect_failures >= 1).await;
        let tcp = alice.tcp_stats();
        assert_eq!((tcp.open, tcp.opened), (0, 0), "{tcp:?}");
        assert_eq!(alice.transport(), Transport::Udp);
        assert_eq!(alice.inspect(|m| m.is_logged_in()).await, Some(false));
        alice.shutdown().await;
        server.stop().await;
    });
}

const MAGIC_COOKIE: u32 = 0x2112_a442;

/// A STUN Binding request without attributes (RFC 8489 §5, §6).
fn binding_request(transaction: [u8; 12]) -> Vec<u8> {
    let mut m = vec![0x00, 0x01, 0x00, 0x00];
    m.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    m.extend_from_slice(&transaction);
    m
}

/// The IPv4 XOR-MAPPED-ADDRESS of a response's attributes (RFC 8489 §14.2).
fn xor_mapped_address(mut attributes: &[u8]) -> Option<SocketAddr> {
    while attributes.len() >= 4 {
        let kind = u16::from_be_bytes([attributes[0], attributes[1]]);
        let len = usize::from(u16::from_be_bytes([attributes[2], attributes[3]]));
        let value = attributes.get(4..4 + len)?;
        if kind == 0x0020 && value.len() == 8 && value[1] == 0x01 {
            let port = u16::from_be_bytes([value[2], value[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
            let ip = u32::from_be_bytes([value[4], value[5], value[6], value[7]]) ^ MAGIC_COOKIE;
            return Some(SocketAddr::from((std::net::Ipv4Addr::from(ip), port)));
        }
        // Values are padded to four bytes.
        attributes = attributes.get(4 + len.div_ceil(4) * 4..)?;
    }
    None
}
