//! Hostile bytes never panic a fresh client or server (2).

use super::*;

/// One input to a machine.
#[derive(Clone, Debug)]
enum Input {
    Datagram { socket: SocketId, from: SocketAddr, payload: Vec<u8> },
    Advance(Duration),
}

pub(crate) fn source() -> impl Strategy<Value = SocketAddr> + Clone {
    prop_oneof![
        2 => select(server_addrs().to_vec()),
        2 => select(client_pool().to_vec()),
        1 => socket_addr(),
    ]
}

pub(crate) fn socket_id() -> impl Strategy<Value = SocketId> + Clone {
    prop_oneof![4 => (0u32..4).prop_map(SocketId), 1 => any::<u32>().prop_map(SocketId)]
}

pub(crate) fn advance() -> impl Strategy<Value = Duration> + Clone {
    prop_oneof![(0u64..2_000).prop_map(Duration::from_millis), (0u64..120).prop_map(Duration::from_secs),]
}

fn input() -> impl Strategy<Value = Input> + Clone {
    prop_oneof![
        5 => (socket_id(), source(), garbage())
            .prop_map(|(socket, from, payload)| Input::Datagram { socket, from, payload }),
        1 => advance().prop_map(Input::Advance),
    ]
}

/// True for a `PeerSealed` datagram without its header (a client drops it
/// as malformed, not unauthenticated).
fn undecodable_peer(payload: &[u8]) -> bool {
    payload.first() == Some(&layout::tag::PEER_SEALED) && layout::peer_session(payload).is_none()
}

pub(crate) fn stats_sum(s: &ServerStats) -> u64 {
    s.malformed + s.rate_limited + s.stun_answered
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn hostile_datagrams_never_panic_a_fresh_client_or_server(pinned in any::<bool>(), inputs in vec(input(), 1..24)) {
        // Given a fresh client (logging in: asking for the server's key, or
        // with it pinned, sending a Hello) and a fresh server, both born at
        // one instant.
        let now = Instant::now();
        let mut config = ClientConfig::new("alice", server_primary());
        if pinned {
            config.server_key = Some(server_key().public());
        }
        let mut client = ClientDriver::new(config, now);
        let mut server = ServerDriver::new(ServerConfig::new(server_primary(), Some(server_alt())), now);
        for input in &inputs {
            match input {
                Input::Datagram { socket, from, payload } => {
                    // When each is fed the same hostile datagram.
                    let (c_before, s_before) = (client.client.stats().clone(), server.server.stats().clone());
                    client.feed(*socket, *from, payload);
                    server.feed(*socket, *from, payload);
                    // Then input either machine cannot (or must not) read is
                    // counted exactly once, mostly as malformed (the server
                    // may rate-limit STUN, Hellos and key requests first; the
                    // client counts the channel's and the sessions' datagrams
                    // by their first byte and their header: a fresh client
                    // has no session, so a sealed peer datagram with its
                    // header is unauthenticated, and so is a session's
                    // handshake outside the relay).
                    if let Some(expected) = client_after_unread(&c_before, payload, |_| PeerView::Absent) {
                        prop_assert_eq!(client.client.stats(), &expected);
                    }
                    if server_drops_unread(payload) {
                        assert_server_dropped(&s_before, server.server.stats(), payload)?;
                    }
                    // And a logging-in client believes no signaling frame
                    // outside a channel, no peer frame outside a session's
                    // encryption, nor any sealed frame.
                    let decoded = Frame::decode(payload);
                    let plain = decoded.is_ok();
                    let hint = decoded
                        .as_ref()
                        .is_ok_and(|f| matches!(f, Frame::Error { code: ErrorCode::NotLoggedIn, .. }));
                    let sealed = (is_peer_datagram(payload) || payload.first() == Some(&layout::tag::SEALED))
                        && payload.len() <= MAX_DATAGRAM
                        && !undecodable_peer(payload);
                    if (plain && !(hint && *from == server_primary())) || sealed {
                        let c = client.client.stats();
                        prop_assert_eq!(c, &ClientStats { unauthenticated: c_before.unauthenticated + 1, ..c_before.clone() });
                    }
                    // And any frame in the clear, a peer frame (an opener
                    // included) too, is dropped unread by the server, which takes
                    // frames only from a channel.
                    if decoded.is_ok() {
                        let s = server.server.stats();
                        prop_assert_eq!(s, &ServerStats { unauthenticated: s_before.unauthenticated + 1, ..s_before.clone() });
                    }
                }
                // And time passes in between, running both machines' timers.
                Input::Advance(by) => {
                    client.advance(*by);
                    server.advance(*by);
                }
            }
        }
        // (Every transmit was checked by the drivers: at most MAX_DATAGRAM
        // bytes, decodable, from a held socket.)
        let _ = (client.take_sent(), server.take_sent());
    }
}
