//! The TCP fallback (issue 21), through the public API of the real machines
//! on the harness's network: logins over TCP when UDP is blocked, the relay
//! between any mix of transports, moves between UDP and TCP in the middle of
//! a session with nothing lost, and a server that treats a stream with the
//! same suspicion as a datagram.

mod harness;

use std::net::SocketAddr;
use std::time::Duration;

use harness::{Harness, SERVER};
use punchline_core::client::{ClientEvent, PathKind, UDP_DEAD_AFTER};
use punchline_core::wire::frame::{Frame, Transport};
use punchline_core::wire::stream::{self, StreamDecoder};
use punchline_core::wire::stun;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// When client `i` reported each transport change.
fn transport_changes(h: &Harness, i: usize) -> Vec<(Duration, Transport)> {
    h.find(i, |e| match e {
        ClientEvent::TransportChanged { transport } => Some(*transport),
        _ => None,
    })
}

fn logged_in_at(h: &Harness, i: usize) -> Option<Duration> {
    h.find(i, |e| matches!(e, ClientEvent::LoggedIn { .. }).then_some(())).first().map(|(t, _)| *t)
}

/// Client `i`'s one session's snapshot.
fn session(h: &Harness, i: usize) -> punchline_core::client::SessionInfo {
    let c = &h.clients[i].client;
    let id = c.sessions().next().expect("a session");
    c.session_info(id).expect("its info")
}

/// Numbered messages `from..to`, as bytes.
fn numbered(from: u32, to: u32) -> Vec<Vec<u8>> {
    (from..to).map(|n| format!("message {n}").into_bytes()).collect()
}

#[test]
fn a_client_whose_udp_is_blocked_logs_in_over_tcp_after_the_delay() {
    // Given a client whose network drops UDP.
    let mut h = Harness::new(1);
    let config = h.config("alice");
    let alice = h.add_public_client(config);
    h.block_udp(alice, true);
    // When it has tried for a second.
    h.run_until(Duration::from_secs(1));
    // Then it asked for TCP once the login had waited 300 ms, logged in
    // over it one connect and one handshake later, and the server has it.
    let asked = h.find(alice, |e| matches!(e, ClientEvent::OpenStream { to, .. } if *to == SERVER).then_some(()));
    assert_eq!(asked.iter().map(|(t, _)| *t).collect::<Vec<_>>(), vec![ms(300)]);
    assert_eq!(logged_in_at(&h, alice), Some(ms(300) + h.latency * 4));
    assert_eq!(transport_changes(&h, alice), vec![(ms(300) + h.latency * 4, Transport::Tcp)]);
    assert_eq!(h.clients[alice].client.transport(), Transport::Tcp);
    assert_eq!(h.server.online_users().collect::<Vec<_>>(), vec!["alice"]);
    assert_eq!((h.server.stream_count(), h.server.stats().streams_accepted), (1, 1));
}

#[test]
fn a_client_whose_udp_works_never_opens_a_connection() {
    // Given a client on an ordinary network.
    let mut h = Harness::new(2);
    let config = h.config("alice");
    let alice = h.add_public_client(config);
    // When it logs in and lives a minute.
    h.run_until(Duration::from_secs(60));
    // Then it stayed on UDP and never asked for TCP.
    assert!(h.clients[alice].client.is_logged_in());
    assert_eq!(h.clients[alice].client.transport(), Transport::Udp);
    assert!(h.find(alice, |e| matches!(e, ClientEvent::OpenStream { .. }).then_some(())).is_empty());
    assert_eq!(h.server.stream_count(), 0);
}

#[test]
fn a_login_over_udp_that_is_only_slow_closes_the_connection_it_opened() {
    // Given a server 200 ms away each way: a login's answer takes 400 ms,
    // past the 300 ms after which TCP joins in.
    let mut h = Harness::new(3);
    h.latency = ms(200);
    let config = h.config("alice");
    let alice = h.add_public_client(config);
    // When the login completes.
    h.run_until(Duration::from_secs(3));
    // Then UDP answered first (its Hello left 300 ms before the TCP copy):
    // the client stays on UDP and closes the connection, and the server
    // closes its end.
    assert_eq!(logged_in_at(&h, alice), Some(ms(400)));
    assert_eq!(h.clients[alice].client.transport(), Transport::Udp);
    assert!(transport_changes(&h, alice).is_empty());
    let closed = h.find(alice, |e| matches!(e, ClientEvent::CloseStream { .. }).then_some(()));
    assert_eq!(closed.len(), 1);
    assert_eq!(h.server.stream_count(), 0);
}

#[test]
fn two_clients_on_tcp_relay_in_order_and_their_session_is_relay_tcp() {
    // Given two clients whose networks both drop UDP, logged in over TCP.
    let mut h = Harness::new(4);
    let (a, b) = (h.config("alice"), h.config("bob"));
    let alice = h.add_natted_client(a, true);
    let bob = h.add_natted_client(b, true);
    h.block_udp(alice, true);
    h.block_udp(bob, true);
    h.run_until(Duration::from_secs(1));
    // When alice connects and both send a hundred messages.
    h.connect(alice, "bob");
    h.run_for(Duration::from_secs(1));
    for m in numbered(0, 100) {
        h.send(alice, &m);
        h.send(bob, &m);
    }
    h.run_for(Duration::from_secs(5));
    // Then each received the other's messages once, in order, over the
    // relay, and both call the session relay-tcp.
    assert_eq!(h.received(bob), numbered(0, 100));
    assert_eq!(h.received(alice), numbered(0, 100));
    for i in [alice, bob] {
        let info = session(&h, i);
        assert_eq!((info.path, info.relay_transport), (PathKind::Relay, Transport::Tcp));
    }
    assert_eq!(h.direct_packets, 0);
}

#[test]
fn a_udp_client_and_a_tcp_client_relay_both_ways_and_both_see_relay_tcp() {
    // Given alice behind a network that drops UDP and bob on an ordinary one.
    let mut h = Harness::new(5);
    let (a, b) = (h.config("alice"), h.config("bob"));
    let alice = h.add_natted_client(a, true);
    let bob = h.add_natted_client(b, true);
    h.block_udp(alice, true);
    h.run_until(Duration::from_secs(1));
    // When bob connects to alice and both send.
    h.connect(bob, "alice");
    h.run_for(Duration::from_secs(1));
    for m in numbered(0, 20) {
        h.send(alice, &m);
        h.send(bob, &m);
    }
    h.run_for(Duration::from_secs(5));
    // Then the relay joined UDP and TCP both ways, and bob, who is on UDP
    // himself, knows from the offer that the relay leg to alice is TCP.
    assert_eq!(h.received(alice), numbered(0, 20));
    assert_eq!(h.received(bob), numbered(0, 20));
    assert_eq!(h.clients[bob].client.transport(), Transport::Udp);
    assert_eq!(session(&h, bob).relay_transport, Transport::Tcp);
    assert_eq!(session(&h, alice).relay_transport, Transport::Tcp);
    // Each was told so once, when the session opened.
    for i in [alice, bob] {
        let told = h.find(i, |e| match e {
            ClientEvent::RelayTransportChanged { transport, .. } => Some(*transport),
            _ => None,
        });
        assert_eq!(told.iter().map(|(_, t)| *t).collect::<Vec<_>>(), vec![Transport::Tcp]);
    }
    // And what the server relays to alice over TCP is marked droppable.
    let (_, link) = h.stream_of(alice).expect("alice's connection");
    assert!(link.droppable >= 20, "{} droppable transmits", link.droppable);
}

#[test]
fn texts_through_the_server_reach_a_client_on_tcp_once() {
    // Given bob on TCP and alice on UDP, not in a session.
    let mut h = Harness::new(6);
    let (a, b) = (h.config("alice"), h.config("bob"));
    let alice = h.add_public_client(a);
    let bob = h.add_public_client(b);
    h.block_udp(bob, true);
    h.run_until(Duration::from_secs(1));
    // When alice sends bob three texts through the server.
    let ids: Vec<_> = ["one", "two", "three"].iter().map(|t| h.send_text(alice, "bob", t)).collect();
    h.run_for(Duration::from_secs(5));
    // Then bob shows each once, in order.
    let texts = h.texts(bob);
    let expected: Vec<_> =
        ids.iter().zip(["one", "two", "three"]).map(|(id, t)| ("alice".to_owned(), *id, t.to_owned())).collect();
    assert_eq!(texts, expected);
}

#[test]
fn udp_blocked_mid_session_moves_to_tcp_within_five_seconds_and_loses_nothing() {
    for seed in 0..5 {
        // Given a session between two clients (on the relay, so every
        // message crosses the server), messages flowing both ways every
        // 100 ms.
        let mut h = Harness::new(10 + seed);
        h.drop_direct = true;
        let (a, b) = (h.config("alice"), h.config("bob"));
        let alice = h.add_natted_client(a, true);
        let bob = h.add_natted_client(b, true);
        h.run_until(Duration::from_secs(1));
        h.connect(alice, "bob");
        h.run_until(Duration::from_secs(3));
        let mut n = 0;
        let step = |h: &mut Harness, n: &mut u32| {
            let m = format!("message {n}").into_bytes();
            h.send(alice, &m);
            h.send(bob, &m);
            *n += 1;
            h.run_for(ms(100));
        };
        while h.elapsed() < Duration::from_secs(10) {
            step(&mut h, &mut n);
        }
        // When alice's network starts dropping UDP at 10 s.
        let blocked_at = h.elapsed();
        h.block_udp(alice, true);
        while h.elapsed() < Duration::from_secs(20) {
            step(&mut h, &mut n);
        }
        h.run_for(Duration::from_secs(10));
        // Then alice moved to TCP within 5 s and the session is relay-tcp.
        let changes = transport_changes(&h, alice);
        assert_eq!(changes.len(), 1, "seed {seed}: {changes:?}");
        let (moved_at, transport) = changes[0];
        assert_eq!(transport, Transport::Tcp);
        let took = moved_at - blocked_at;
        assert!(took <= Duration::from_secs(5), "seed {seed}: moved after {took:?}");
        assert!(took >= UDP_DEAD_AFTER, "seed {seed}: moved after {took:?}, before UDP counted as dead");
        assert_eq!(session(&h, bob).relay_transport, Transport::Tcp, "seed {seed}");
        // And every message arrived exactly once, in order, both ways.
        assert_eq!(h.received(bob), numbered(0, n), "seed {seed}");
        assert_eq!(h.received(alice), numbered(0, n), "seed {seed}");
    }
}

#[test]
fn a_direct_session_survives_a_udp_block_on_the_relay_over_tcp() {
    // Given a direct session between two clients.
    let mut h = Harness::new(20);
    let (a, b) = (h.config("alice"), h.config("bob"));
    let alice = h.add_natted_client(a, true);
    let bob = h.add_natted_client(b, true);
    h.run_until(Duration::from_secs(1));
    h.connect(alice, "bob");
    h.run_until(Duration::from_secs(8));
    assert!(matches!(session(&h, alice).path, PathKind::Direct { .. }), "{:?}", session(&h, alice));
    // When alice's UDP is blocked and both keep sending.
    h.block_udp(alice, true);
    let blocked_at = h.elapsed();
    for m in numbered(0, 100) {
        h.send(alice, &m);
        h.send(bob, &m);
        h.run_for(ms(100));
    }
    h.run_for(Duration::from_secs(10));
    // Then the session fell back to the relay, whose leg to alice is TCP,
    // within 5 s, and nothing was lost.
    let (moved_at, _) = transport_changes(&h, alice)[0];
    assert!(moved_at - blocked_at <= Duration::from_secs(5), "moved after {:?}", moved_at - blocked_at);
    assert_eq!((session(&h, alice).path, session(&h, alice).relay_transport), (PathKind::Relay, Transport::Tcp));
    assert_eq!(h.received(bob), numbered(0, 100));
    assert_eq!(h.received(alice), numbered(0, 100));
}

#[test]
fn a_client_on_tcp_moves_back_to_udp_within_the_retry_interval() {
    // Given alice on TCP because her UDP was blocked, in a session.
    let mut h = Harness::new(30);
    h.drop_direct = true;
    let (a, b) = (h.config("alice"), h.config("bob"));
    let udp_retry = a.udp_retry;
    let alice = h.add_natted_client(a, true);
    let bob = h.add_natted_client(b, true);
    h.block_udp(alice, true);
    h.run_until(Duration::from_secs(1));
    h.connect(alice, "bob");
    h.run_until(Duration::from_secs(3));
    // When UDP works again.
    h.block_udp(alice, false);
    let unblocked_at = h.elapsed();
    let mut sent = 0;
    while h.elapsed() < unblocked_at + udp_retry + Duration::from_secs(5) {
        h.send(bob, format!("message {sent}").as_bytes());
        sent += 1;
        h.run_for(ms(250));
    }
    // Then she is back on UDP within one retry interval, closed her
    // connection, the server closed its end, bob's view followed, and
    // nothing was lost.
    let changes = transport_changes(&h, alice);
    assert_eq!(changes.iter().map(|(_, t)| *t).collect::<Vec<_>>(), vec![Transport::Tcp, Transport::Udp]);
    assert!(changes[1].0 - unblocked_at <= udp_retry, "back after {:?}", changes[1].0 - unblocked_at);
    assert_eq!(h.clients[alice].client.transport(), Transport::Udp);
    assert_eq!(h.server.stream_count(), 0);
    assert_eq!(session(&h, bob).relay_transport, Transport::Udp);
    let told: Vec<_> = h
        .find(bob, |e| match e {
            ClientEvent::RelayTransportChanged { transport, .. } => Some(*transport),
            _ => None,
        })
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    assert_eq!(told, vec![Transport::Tcp, Transport::Udp]);
    assert_eq!(h.received(alice), numbered(0, sent));
}

#[test]
fn a_connection_the_server_closes_brings_the_client_back_over_tcp() {
    // Given alice on TCP.
    let mut h = Harness::new(40);
    let config = h.config("alice");
    let alice = h.add_public_client(config);
    h.block_udp(alice, true);
    h.run_until(Duration::from_secs(1));
    let (conn, _) = h.stream_of(alice).expect("a connection");
    // When the network resets the connection.
    h.break_stream(conn);
    h.run_for(Duration::from_secs(10));
    // Then she went back to UDP, found it still blocked, and reconnected
    // over a new connection; she is online throughout.
    let changes: Vec<_> = transport_changes(&h, alice).into_iter().map(|(_, t)| t).collect();
    assert_eq!(changes, vec![Transport::Tcp, Transport::Udp, Transport::Tcp]);
    let (new_conn, _) = h.stream_of(alice).expect("a new connection");
    assert_ne!(new_conn, conn);
    assert!(h.clients[alice].client.is_logged_in());
    assert_eq!(h.server.online_users().collect::<Vec<_>>(), vec!["alice"]);
}

// ---- the server's side of streams ----

const SCANNER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 66)), 40000);

/// Every datagram the server wrote to `conn` so far, unframed.
fn written_to(h: &Harness, conn: punchline_core::SocketId) -> Vec<Vec<u8>> {
    let link = &h.streams[&conn];
    let mut decoder = StreamDecoder::new();
    for p in h.server_sent.iter().filter(|p| p.dst == link.remote) {
        decoder.push(&p.payload);
    }
    std::iter::from_fn(|| decoder.next_datagram().expect("well framed")).collect()
}

#[test]
fn stun_over_tcp_is_answered_with_the_connections_address() {
    // Given a connection from a STUN client.
    let mut h = Harness::new(50);
    let conn = h.raw_stream(SCANNER);
    // When it sends a Binding request as RFC 8489 frames it on TCP, cut in
    // two pieces.
    let tid = stun::TransactionId([9; 12]);
    let request = stun::binding_request(tid);
    let (first, second) = request.split_at(7);
    h.inject_stream(conn, first.to_vec());
    h.inject_stream(conn, second.to_vec());
    h.run_for(ms(100));
    // Then the answer is a Binding success with the connection's address.
    let answers = written_to(&h, conn);
    assert_eq!(answers.len(), 1);
    let answer = stun::Message::decode(&answers[0]).expect("a STUN answer");
    assert_eq!((answer.transaction_id, answer.xor_mapped_address()), (tid, Some(SCANNER)));
    assert_eq!(h.server.stats().stun_answered, 1);
}

#[test]
fn a_stream_that_breaks_the_framing_is_closed_and_counted() {
    // Given a connection.
    let mut h = Harness::new(51);
    let conn = h.raw_stream(SCANNER);
    // When it speaks HTTP.
    h.inject_stream(conn, b"GET / HTTP/1.1\r\nHost: example\r\n\r\n".to_vec());
    h.run_for(ms(100));
    // Then the server closed it, counted it, and answered nothing.
    assert_eq!(h.server.stream_count(), 0);
    assert_eq!(h.server.stats().streams_broken, 1);
    assert!(written_to(&h, conn).is_empty());
    assert!(!h.streams[&conn].open);
}

#[test]
fn signaling_over_a_stream_needs_the_channel_as_over_udp() {
    // Given a connection that never did a handshake.
    let mut h = Harness::new(52);
    let conn = h.raw_stream(SCANNER);
    // When it sends signaling frames in the clear: a keepalive with a made
    // up token, a connect, a relay frame.
    for frame in [
        Frame::Keepalive { token: 7, profile: Default::default() },
        Frame::Connect { token: 7, request: 1, peer: "bob".into(), profile: Default::default() },
    ] {
        h.inject_stream(conn, stream::encode(&frame.encode()));
    }
    h.run_for(ms(100));
    // Then nothing is answered and each is counted as unauthenticated, as
    // over UDP: TCP is not a way around the channel.
    assert!(written_to(&h, conn).is_empty());
    assert_eq!(h.server.stats().unauthenticated, 2);
}

#[test]
fn the_server_refuses_connections_over_its_limits() {
    // Given a server that takes two connections per address.
    let mut h = Harness::new(53);
    h.server_config.max_streams_per_ip = 2;
    h.start_server(Box::new(punchline_core::messaging::MemoryStore::new()));
    // When one address opens three.
    let conns: Vec<_> = (0..3).map(|n| h.raw_stream(SocketAddr::new(SCANNER.ip(), SCANNER.port() + n))).collect();
    h.run_for(ms(100));
    // Then the third was closed at once and counted.
    assert_eq!(h.server.stream_count(), 2);
    assert_eq!(h.server.stats().streams_refused, 1);
    assert_eq!(conns.iter().map(|c| h.streams[c].open).collect::<Vec<_>>(), vec![true, true, false]);
}

#[test]
fn an_idle_connection_without_a_login_is_closed() {
    // Given a connection that says nothing.
    let mut h = Harness::new(54);
    let conn = h.raw_stream(SCANNER);
    let idle = h.server_config.stream_idle_timeout;
    // When it stays silent past the idle timeout (and the next sweep).
    h.run_for(idle + Duration::from_secs(6));
    // Then the server closed it.
    assert_eq!(h.server.stream_count(), 0);
    assert!(!h.streams[&conn].open);
}

#[test]
fn a_logged_in_connection_is_kept_however_long_it_idles() {
    // Given a client on TCP.
    let mut h = Harness::new(55);
    let config = h.config("alice");
    let alice = h.add_public_client(config);
    h.block_udp(alice, true);
    // When ten minutes pass with only keepalives.
    h.run_until(Duration::from_secs(600));
    // Then it is still online over its first connection.
    assert_eq!(h.streams.len(), 1);
    assert!(h.stream_of(alice).is_some());
    assert_eq!(h.server.online_users().collect::<Vec<_>>(), vec!["alice"]);
}

mod hostile_streams {
    use super::*;
    use proptest::prelude::*;
    use punchline_core::server::{Server, ServerConfig};
    use punchline_core::{Machine, SocketId};

    /// A unit that frames well: a sealed-looking datagram of any bytes, or
    /// garbage that may break the framing.
    fn piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 1..1200).prop_map(|mut d| {
                d[0] = 0x70 | (d[0] & 0x07);
                stream::encode(&d)
            }),
            prop::collection::vec(any::<u8>(), 0..64),
        ]
    }

    proptest! {
        #[test]
        fn any_bytes_on_a_connection_are_dropped_counted_or_close_it_never_panic(
            pieces in prop::collection::vec(piece(), 0..24),
            cut in 1usize..700,
        ) {
            // Given a server with one connection from an unknown source.
            let start = std::time::Instant::now();
            let mut server = Server::new(ServerConfig::new(SERVER, None), start);
            let conn = SocketId(1 << 20);
            server.stream_accepted(start, conn, SCANNER);
            // When any bytes arrive on it, cut anywhere.
            let bytes: Vec<u8> = pieces.concat();
            for chunk in bytes.chunks(cut) {
                server.handle_stream_data(start, conn, chunk);
            }
            // Then nothing was answered to a source that never logged in but
            // STUN-sized errors, the connection is open or closed as broken,
            // and no user came of it.
            while let Some(t) = server.poll_transmit() {
                prop_assert_eq!(t.socket, conn);
                prop_assert!(t.payload.len() <= 64, "{} bytes to an unproven connection", t.payload.len());
            }
            let stats = server.stats();
            prop_assert_eq!(server.stream_count() + stats.streams_broken as usize, 1);
            prop_assert_eq!(server.online_users().count(), 0);
        }
    }
}

#[test]
fn a_connect_to_a_user_whose_login_awaits_its_proof_is_deferred_not_refused() {
    // Given bob, whose handshake completed but whose proof (his first
    // sealed frame) has not reached the server yet: his keepalives are
    // lost for a while.
    let mut h = Harness::new(60);
    let (a, b) = (h.config("alice"), h.config("bob"));
    let alice = h.add_public_client(a);
    h.run_until(Duration::from_secs(1));
    let bob = h.add_public_client(b);
    h.run_for(ms(12));
    h.block_udp(bob, true);
    // When alice connects to him meanwhile, and his UDP comes back.
    h.connect(alice, "bob");
    h.run_for(ms(5));
    h.block_udp(bob, false);
    h.run_for(Duration::from_secs(5));
    // Then the connect was not refused: the session opened once he proved
    // his address.
    assert!(h.find(alice, |e| matches!(e, ClientEvent::ConnectFailed { .. }).then_some(())).is_empty());
    assert_eq!(h.clients[alice].client.sessions().count(), 1);
}
