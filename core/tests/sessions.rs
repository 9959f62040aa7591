//! Sessions end to end through an in-memory network: relay first, openers
//! before probes, migration, fallback, retry, authentication, determinism.

mod harness;

use std::time::Duration;

use harness::Harness;
use punchline_core::client::{ClientEvent, PathKind};
use punchline_core::wire::frame::{CloseReason, Frame, SessionId};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn opened(e: &ClientEvent) -> Option<SessionId> {
    match e {
        ClientEvent::SessionOpened { session, .. } => Some(*session),
        _ => None,
    }
}

fn direct(e: &ClientEvent) -> Option<std::net::SocketAddr> {
    match e {
        ClientEvent::PathDirect { remote, .. } => Some(*remote),
        _ => None,
    }
}

fn fell_back(e: &ClientEvent) -> Option<()> {
    matches!(e, ClientEvent::PathFellBack { .. }).then_some(())
}

fn punch_failed(e: &ClientEvent) -> Option<(u16, Option<Duration>)> {
    match e {
        ClientEvent::PunchFailed { attempt, retry_in, .. } => Some((*attempt, *retry_in)),
        _ => None,
    }
}

/// Two logged-in public clients, discovery finished, at t = 5 s.
fn public_pair(seed: u64) -> (Harness, usize, usize) {
    let mut h = Harness::new(seed);
    let a = h.add_public_client(h.config("alice"));
    let b = h.add_public_client(h.config("bob"));
    h.run_until(Duration::from_secs(5));
    (h, a, b)
}

/// [`public_pair`], connected: alice's session to bob is direct at 6 s.
fn direct_public_pair(seed: u64) -> (Harness, usize, usize) {
    let (mut h, a, b) = public_pair(seed);
    h.connect(a, "bob");
    h.run_for(Duration::from_secs(1));
    assert_eq!(h.find(a, direct).len(), 1);
    (h, a, b)
}

fn natted_pair(seed: u64, track: bool) -> (Harness, usize, usize) {
    let mut h = Harness::new(seed);
    let a = h.add_natted_client(h.config("alice"), track);
    let b = h.add_natted_client(h.config("bob"), track);
    h.run_until(Duration::from_secs(5));
    (h, a, b)
}

#[test]
fn two_public_clients_are_on_the_relay_after_one_round_trip_and_direct_after_their_keys_and_one_probe_round_trip() {
    // Given two public clients, logged in, 10 ms from everything.
    let (mut h, a, b) = public_pair(1);
    assert!(h.clients[a].client.is_logged_in() && h.clients[b].client.is_logged_in());
    let t0 = h.elapsed();

    // When alice connects to bob, and sends as soon as the session opens.
    h.connect(a, "bob");
    h.run_for(ms(20));
    h.send(a, b"first");
    h.run_for(Duration::from_secs(2));

    // Then both have the session after one server round trip (20 ms)...
    let a_open = h.find(a, opened);
    let b_open = h.find(b, opened);
    assert_eq!(a_open.len(), 1);
    assert_eq!(a_open[0].0 - t0, ms(20), "alice: one round trip to the server");
    assert_eq!(b_open[0].0 - t0, ms(20), "bob: at the same moment (DESIGN §3 step 4)");
    assert_eq!(a_open[0].1, b_open[0].1, "same session id on both sides");
    // ... alice's first bytes reach bob over the relay once bob's end-to-end
    // hello has crossed it (20 ms) and they have (20 ms) ...
    let first = h.log.iter().position(|l| l.contains("DataReceived")).expect("bob received");
    assert!(h.log[first].starts_with(&format!("{:?}", t0 + ms(20 + 20 + 20))), "{}", h.log[first]);
    assert_eq!(h.received(b), [b"first".to_vec()]);
    // ... and the path is direct once both hold keys (bob when alice's
    // welcome arrives, 20 ms after his hello reached her), his announcements
    // reached her over the relay and one probe round trip went through.
    let a_direct = h.find(a, direct);
    let b_direct = h.find(b, direct);
    assert_eq!(a_direct.len(), 1);
    assert_eq!(b_direct[0].0 - t0, ms(20 + 20 + 20 + 20));
    assert_eq!(a_direct[0].0 - t0, ms(20 + 20 + 20 + 30));
    assert_eq!(a_direct[0].1, h.public_addr(b));
    assert_eq!(b_direct[0].1, h.public_addr(a));
    let session = a_open[0].1;
    let info = h.clients[a].client.session_info(session).unwrap();
    assert_eq!(info.path, PathKind::Direct { socket: punchline_core::SocketId(0), remote: h.public_addr(b) });
    assert_eq!(info.fallbacks, 0);
}

#[test]
fn data_sent_before_and_during_migration_arrives_once_in_order() {
    let (mut h, a, b) = public_pair(2);
    h.connect(a, "bob");
    h.run_for(ms(20));
    // Given a session still on the relay, when alice sends while the path
    // migrates under her.
    for i in 0..20u8 {
        h.send(a, &[i]);
        h.run_for(ms(5));
    }
    h.run_for(Duration::from_secs(2));
    // Then bob got everything, once, in order, and the path is direct.
    let expected: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i]).collect();
    assert_eq!(h.received(b), expected);
    assert_eq!(h.find(a, direct).len(), 1);
}

/// Unsolicited packets from the *peer's* public IP that client `i`'s NAT
/// keeps conntrack state for (NAT discovery leaves some for the server's
/// alternate addresses, by design, on a socket it then discards).
fn tracked_at(h: &Harness, i: usize, peer: usize) -> usize {
    let peer_ip = h.clients[peer].nat.as_ref().unwrap().public_ip;
    h.clients[i].nat.as_ref().unwrap().tracked.iter().filter(|(remote, _)| remote.ip() == peer_ip).count()
}

#[test]
fn linux_nats_connect_directly_even_when_one_offer_is_seconds_late() {
    // Given two clients behind NATs that keep conntrack state for unsolicited
    // packets, and bob's offer delayed by 3 s.
    let (mut h, a, b) = natted_pair(3, true);
    h.offer_delay.insert(b, Duration::from_secs(3));

    // When alice connects.
    let t0 = h.elapsed();
    h.connect(a, "bob");
    h.run_for(Duration::from_secs(10));

    // Then bob's NAT never saw an unsolicited packet: alice did not probe
    // before bob's openers were out; both went direct on the first attempt.
    assert_eq!(tracked_at(&h, b, a), 0, "bob's NAT was never poisoned");
    assert_eq!(tracked_at(&h, a, b), 0);
    assert!(h.find(a, punch_failed).is_empty() && h.find(b, punch_failed).is_empty());
    let a_direct = h.find(a, direct);
    let b_direct = h.find(b, direct);
    assert_eq!(a_direct.len(), 1);
    assert_eq!(b_direct.len(), 1);
    assert!(a_direct[0].0 - t0 > Duration::from_secs(3), "not before bob had his offer");
    assert_eq!(a_direct[0].1, h.public_addr(b));
    assert_eq!(b_direct[0].1, h.public_addr(a));
}

#[test]
fn a_poisoned_attempt_recovers_by_retrying_from_fresh_local_ports() {
    // Given linux-like NATs, bob's offer 3 s late, and a stray packet from
    // alice's mapping reaching bob's NAT before bob opened anything.
    let (mut h, a, b) = natted_pair(4, true);
    h.offer_delay.insert(b, Duration::from_secs(3));
    h.connect(a, "bob");
    h.run_for(Duration::from_secs(1));
    let (alice_public, bob_public) = (h.public_addr(a), h.public_addr(b));
    h.inject(alice_public, bob_public, Frame::Opener { session: SessionId(1), counter: 1 }.encode());
    h.run_for(ms(50));
    assert_eq!(tracked_at(&h, b, a), 1, "bob's NAT now blocks alice's 5-tuple");

    // When the session goes on for a while.
    h.run_for(Duration::from_secs(30));

    // Then the first attempt failed, and the retry from fresh sockets made it.
    assert_eq!(h.find(a, punch_failed).first().map(|(_, f)| *f), Some((0, Some(Duration::from_secs(5)))));
    let a_direct = h.find(a, |e| match e {
        ClientEvent::PathDirect { socket, remote, .. } => Some((*socket, *remote)),
        _ => None,
    });
    assert_eq!(a_direct.len(), 1);
    assert_ne!(a_direct[0].1 .0, punchline_core::SocketId(0), "direct from a fresh socket");
    assert_ne!(a_direct[0].1 .1, bob_public, "to bob's fresh mapping");
    assert_eq!(h.find(b, direct).len(), 1);
}

#[test]
fn when_every_direct_packet_is_dropped_the_session_stays_on_the_relay_and_punching_backs_off() {
    // Given a network that drops all traffic between the clients.
    let (mut h, a, b) = public_pair(5);
    h.drop_direct = true;
    h.connect(a, "bob");

    // When ten minutes pass, with data sent now and then.
    for i in 0..10u8 {
        h.run_for(Duration::from_secs(60));
        h.send(a, &[i]);
    }
    h.run_for(Duration::from_secs(1));

    // Then data flowed over the relay, never direct.
    assert_eq!(h.received(b), (0..10u8).map(|i| vec![i]).collect::<Vec<_>>());
    assert!(h.find(a, direct).is_empty());
    // Attempts failed and were retried with a doubling backoff, then given up.
    let failures: Vec<(u16, Option<Duration>)> = h.find(a, punch_failed).into_iter().map(|(_, f)| f).collect();
    let s = Duration::from_secs;
    assert_eq!(
        failures,
        vec![(0, Some(s(5))), (1, Some(s(10))), (2, Some(s(20))), (3, Some(s(40))), (4, Some(s(80))), (5, None)]
    );
    // Each attempt probed the one candidate every 100 ms for 4 s: 41 probes.
    let session = h.clients[a].client.sessions().next().unwrap();
    let info = h.clients[a].client.session_info(session).unwrap();
    assert_eq!(info.attempts, 6);
    assert_eq!(info.probes_sent, 6 * 41);
    assert_eq!(info.path, PathKind::Relay);
}

#[test]
fn a_direct_path_that_dies_falls_back_to_the_relay_in_time_and_returns_when_healed() {
    let (mut h, a, b) = direct_public_pair(6);

    // When the direct path dies and alice keeps sending.
    h.drop_direct = true;
    let t_drop = h.elapsed();
    for i in 0..10u8 {
        h.send(a, &[i]);
        h.run_for(ms(100));
    }
    h.run_for(Duration::from_secs(3));

    // Then she fell back within the fallback timeout (3 s) of the last
    // answered keepalive, and every message arrived via the relay.
    let back = h.find(a, fell_back);
    assert_eq!(back.len(), 1);
    assert!(back[0].0 > t_drop + Duration::from_secs(2) && back[0].0 <= t_drop + Duration::from_secs(3));
    assert_eq!(h.received(b), (0..10u8).map(|i| vec![i]).collect::<Vec<_>>());
    let last_data = h.find(b, |e| matches!(e, ClientEvent::DataReceived { .. }).then_some(()));
    assert!(last_data.last().unwrap().0 <= t_drop + Duration::from_secs(3) + ms(50));

    // When the path heals, the session returns to direct on a retry.
    h.drop_direct = false;
    h.run_for(Duration::from_secs(30));
    assert_eq!(h.find(a, direct).len(), 2);
    let session = h.clients[a].client.sessions().next().unwrap();
    assert!(matches!(h.clients[a].client.session_info(session).unwrap().path, PathKind::Direct { .. }));
    assert_eq!(h.clients[a].client.session_info(session).unwrap().fallbacks, 1);
}

#[test]
fn a_direct_path_wakes_no_client_for_nothing_and_the_relay_keepalive_keeps_its_rhythm_after_a_fall_back() {
    // Given two public clients on a direct path,
    let (mut h, a, b) = direct_public_pair(8);
    let opened_at = h.find(a, opened)[0].0;

    // when the path stays direct for four relay keepalive periods (5 s),
    let since = h.elapsed();
    h.run_for(Duration::from_secs(20));

    // then neither client was woken without sending or reporting anything:
    // the relay keepalive, with nothing to do, waits parked.
    for i in [a, b] {
        let idle: Vec<_> = h.clients[i].wakes.iter().filter(|&&(t, busy)| t > since && !busy).collect();
        assert_eq!(idle, Vec::<&(Duration, bool)>::new(), "client {i}");
    }

    // When the path dies and alice falls back to the relay,
    h.drop_direct = true;
    h.run_for(Duration::from_secs(10));
    let fell_back_at = h.find(a, fell_back)[0].0;

    // then her relay keepalive wakes her again, on the beat it kept since the
    // session opened (every 5 s from then), and sends.
    let beat = Duration::from_secs(5);
    let mut next_beat = opened_at + beat;
    while next_beat < fell_back_at {
        next_beat += beat;
    }
    assert!(h.clients[a].wakes.contains(&(next_beat, true)), "no keepalive wake at {next_beat:?}");
    assert!(h.clients[a].wakes.contains(&(next_beat + beat, true)));
}

/// An end of `session` whose keys came from another handshake than the
/// members': what an attacker who knows the session id can seal.
fn attackers_cipher(session: SessionId) -> punchline_core::secure::SessionCipher {
    use punchline_core::secure::{PeerHelloReceived, PeerHelloSent, StaticKey};
    use punchline_core::Seed;
    let (mallory, eve) = (StaticKey::derive(Seed::from(66), "mallory"), StaticKey::derive(Seed::from(66), "eve"));
    let now = std::time::Instant::now();
    let (mut hello, datagram) = PeerHelloSent::start(&mallory, &eve.public(), session, Seed::from(1));
    let (welcome, _) =
        PeerHelloReceived::answer(&eve, &mallory.public(), session, &datagram, now, Seed::from(2)).unwrap();
    hello.finish(&welcome, now).unwrap()
}

#[test]
fn forged_and_replayed_probes_never_change_the_path() {
    let (mut h, a, b) = public_pair(7);
    h.connect(a, "bob");
    h.run_for(Duration::from_secs(1));
    let session = h.clients[a].client.sessions().next().unwrap();
    let path_before = h.clients[a].client.session_info(session).unwrap().path;
    assert!(matches!(path_before, PathKind::Direct { .. }));
    let alice = h.public_addr(a);
    let attacker: std::net::SocketAddr = "192.0.2.66:5555".parse().unwrap();

    // A genuine probe ack bob sent alice, replayed from elsewhere.
    let genuine = h
        .captured
        .iter()
        .find(|(i, p)| *i == b && matches!(p.frame(), Some(Frame::ProbeAck { .. })) && p.plaintext.is_some())
        .map(|(_, p)| p.payload.clone())
        .expect("bob acked a probe");
    // The same ack with one byte of its ciphertext changed.
    let mut tampered = genuine.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    // An ack for this session sealed in keys from another handshake.
    let mut mallory = attackers_cipher(session);
    let ack = |session| Frame::ProbeAck { session, attempt: 0, probe_counter: 1, counter: 5, observed: attacker };
    let (wrong_key, _) = mallory.seal(std::time::Instant::now(), &ack(session).encode()).unwrap();
    // One for another session, and one in the clear.
    let mut other = attackers_cipher(SessionId(session.0 ^ 1));
    let (other_session, _) = other.seal(std::time::Instant::now(), &ack(SessionId(session.0 ^ 1)).encode()).unwrap();
    let clear = ack(session).encode();

    let before = h.clients[a].client.stats().unauthenticated;
    for payload in [genuine, tampered, wrong_key, other_session, clear] {
        h.inject(attacker, alice, payload);
    }
    h.run_for(ms(100));

    assert_eq!(h.clients[a].client.stats().unauthenticated - before, 5);
    assert_eq!(h.clients[a].client.session_info(session).unwrap().path, path_before);
    assert_eq!(h.find(a, direct).len(), 1, "no new path");
}

#[test]
fn a_client_that_is_not_a_member_cannot_push_a_frame_through_the_relay() {
    let mut h = Harness::new(8);
    let a = h.add_public_client(h.config("alice"));
    let b = h.add_public_client(h.config("bob"));
    h.drop_direct = true;
    h.run_until(Duration::from_secs(5));
    h.connect(a, "bob");
    h.run_for(ms(100));
    h.send(a, b"hello");
    h.run_for(Duration::from_secs(1));
    let session = h.clients[a].client.sessions().next().unwrap();

    // Mallory, logged in with her own channel, captured alice's sealed relay
    // datagram; she knows alice's token (it travels in the clear in each
    // sealed header) but not alice's channel keys.
    let (alice_relay, alice_token, inner) = h
        .captured
        .iter()
        .find_map(|(i, p)| match p.frame() {
            Some(Frame::Relay { token, payload, .. }) if *i == a => Some((p.payload.clone(), token, payload)),
            _ => None,
        })
        .unwrap();
    let mallory: std::net::SocketAddr = "192.0.2.66:6666".parse().unwrap();
    let (mallory_token, channel) = h.hand_login(mallory, "mallory");
    let server = harness::SERVER;
    let stats = h.server.stats().clone();
    let bob_frames_before = h.received(b).len();

    // When mallory replays alice's datagram, seals relay frames in her own
    // channel naming alice's token and her own, and sends one in the clear,
    h.inject(mallory, server, alice_relay);
    for token in [alice_token, mallory_token] {
        let relay = Frame::Relay { token, session, payload: inner.clone() }.encode();
        h.inject(mallory, server, channel.seal(&relay).unwrap());
    }
    h.inject(mallory, server, Frame::Relay { token: alice_token, session, payload: inner.clone() }.encode());
    h.run_for(ms(100));

    // then the server refused each, for its own reason: a replay, a token
    // not her channel's, not a member, not authenticated; and bob got
    // nothing new.
    let after = h.server.stats();
    assert_eq!(after.replayed - stats.replayed, 1);
    assert_eq!(after.bad_token - stats.bad_token, 1);
    assert_eq!(after.relay_refused - stats.relay_refused, 1);
    assert_eq!(after.unauthenticated - stats.unauthenticated, 1);
    assert_eq!(after.relayed, stats.relayed);
    assert_eq!(h.received(b).len(), bob_frames_before);
    assert_eq!(h.clients[b].client.stats().unauthenticated, 0);
}

#[test]
fn the_same_seed_and_inputs_give_identical_transmits_and_events() {
    let run = |seed| {
        let (mut h, a, _) = natted_pair(seed, true);
        h.connect(a, "bob");
        h.run_for(Duration::from_secs(1));
        h.send(a, b"determinism");
        h.run_for(Duration::from_secs(20));
        h.log
    };
    let first = run(9);
    assert!(first.len() > 50);
    assert_eq!(first, run(9));
    assert_ne!(first, run(10), "another seed gives other keys and ids");
}

#[test]
fn a_peer_that_vanishes_closes_the_session_with_a_reason() {
    let (mut h, a, b) = public_pair(11);
    h.connect(a, "bob");
    h.run_for(Duration::from_secs(1));
    // Bob's host disappears: nothing of his reaches anyone any more.
    h.clients[b].dead = true;
    h.run_for(Duration::from_secs(120));
    let closed = h.find(a, |e| match e {
        ClientEvent::SessionClosed { reason, .. } => Some(*reason),
        _ => None,
    });
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].1, CloseReason::PeerTimeout);
    assert!(closed[0].0 <= Duration::from_secs(6 + 30 + 1));
}
