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
