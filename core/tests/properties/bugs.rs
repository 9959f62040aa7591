//! Bugs found: focused reproducers.

use super::*;

// ---------------------------------------------------------------------------
// Bugs found: focused reproducers
// ---------------------------------------------------------------------------

/// BUG (fixed): `Client::start_discovery` replaced a running discovery
/// without releasing the filtering socket the old one held, so every restart
/// while one ran (a `KeepaliveAck` with a new reflexive address, or a
/// re-login) leaked a socket.
#[test]
fn a_restarted_nat_discovery_releases_the_previous_socket() {
    // Given a client with an alternate server, just logged in: NAT discovery
    // runs and its filtering socket (the only socket it asked for) is open.
    let now = Instant::now();
    let mut d = logged_in_client(now, true, 0x1234_5678_9abc_def0);
    let first: Vec<SocketId> = d.opened.iter().copied().collect();
    assert_eq!(first.len(), 1, "discovery opened its filtering socket");
    // When keepalive answers, sealed in the channel, report new reflexive
    // addresses (a NAT rebinding) 20 times, each restarting discovery.
    for i in 0..20u16 {
        let ack = Frame::KeepaliveAck { reflexive: SocketAddr::new(addr("192.0.2.200:1").ip(), 1000 + i) };
        d.feed_sealed(&ack.encode());
    }
    // And ten minutes pass without any answer.
    d.idle(Duration::from_secs(600));
    // Then every discovery socket has been released.
    assert_eq!(d.opened, BTreeSet::new(), "sockets the client asked for and never released");
}

/// BUG: with `request_rate = 0`, `SourceLimits::forget_idle` computes
/// `Duration::from_secs_f64(burst / f64::MIN_POSITIVE)` = infinity and
/// panics: in every sweep, and in `handle_datagram` once `max_sources`
/// sources are tracked.
#[test]
fn a_server_with_a_zero_request_rate_survives_its_sweep() {
    // Given a server configured to allow only its request burst per source
    // (no sustained rate).
    let now = Instant::now();
    let mut config = ServerConfig::new(server_primary(), None);
    config.request_rate = 0;
    let mut server = Server::new(config, now);
    // When its periodic sweep runs.
    server.handle_timeout(now + Duration::from_secs(5));
    // Then it is still serving.
    assert_eq!(server.poll_timeout(), Some(now + Duration::from_secs(10)));
}

/// BUG (fixed, found by the `client_machine` fuzz target): `Client::logout`
/// dropped every timer but kept a running NAT discovery, whose deadline
/// `poll_timeout` still reported: in the past, served by no timer, so a
/// driver sleeping until it spun.
#[test]
fn a_logout_during_nat_discovery_leaves_no_deadline_in_the_past() {
    // Given a client whose NAT discovery runs, with its filtering socket open,
    let now = Instant::now();
    let mut d = logged_in_client(now, true, 0x0bad_cafe);
    assert_eq!(d.opened.len(), 1, "discovery opened its filtering socket");
    // when it logs out,
    d.client.logout(d.now);
    d.drain();
    // then its socket is given back, and time passes with nothing due in
    // the past (the driver's `advance` fails on a deadline that stays due).
    assert_eq!(d.opened, BTreeSet::new());
    d.advance(Duration::from_secs(5));
    d.idle(Duration::from_secs(60));
}

/// BUG (fixed; found by `a_logged_in_client_survives_a_hostile_server_address`):
/// a sealed peer datagram that arrives before the session's keys is held
/// with the socket it came on, and handled once the handshake completes;
/// if the client released that socket in between (NAT discovery's
/// filtering socket, here), it answers from a socket its driver closed.
#[test]
fn a_held_peer_datagram_is_not_answered_from_a_released_socket() {
    // Given a client whose NAT discovery holds its filtering socket, and a
    // session it is the responder of: its hello is out, and the test's peer
    // (bob) answered it, but the welcome has not reached the client yet.
    let now = Instant::now();
    let mut d = logged_in_client(now, true, 0x5eed);
    let filtering = *d.opened.iter().next().expect("discovery opened its filtering socket");
    let session = SessionId(0x1111);
    let bob = user_key("bob");
    let offer = Frame::Offer {
        request: 0,
        session,
        peer_key: bob.public().0,
        initiator: false,
        peer: "bob".to_owned(),
        peer_candidates: vec![],
        strategy: NatStrategy::Punch,
        peer_profile: NatProfile::default(),
        peer_transport: punchline_core::wire::frame::Transport::Udp,
    };
    d.feed_sealed(&offer.encode());
    let hello =
        d.relays.iter().find(|(s, p)| *s == session && p[0] == layout::tag::PEER_HELLO).expect("a hello").1.clone();
    let alice = d.client.config().identity.public();
    let (welcome, mut bob_end) =
        PeerHelloReceived::answer(bob, &alice, session, &hello, d.now, Seed::from(1)).expect("bob answers");
    // When bob's probe reaches the filtering socket before the client's
    // keys exist (it is held), discovery ends and releases that socket, and
    // then the welcome arrives.
    let probe = Frame::Probe { session, attempt: 0, counter: 1 }.encode();
    let (sealed, _) = bob_end.seal(d.now, &probe).expect("a fresh session seals");
    d.feed(filtering, addr("198.51.100.2:4000"), &sealed);
    d.idle(Duration::from_secs(5));
    assert!(!d.opened.contains(&filtering), "discovery released its socket");
    // Then (the driver checks every transmit) the client does not answer
    // from the released socket.
    d.feed_sealed(&Frame::Relayed { session, payload: welcome }.encode());
}
