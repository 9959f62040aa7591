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

pub(crate) fn stats_sum(s: &ServerStats) -> u64 {
    s.malformed + s.rate_limited + s.stun_answered
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn hostile_datagrams_never_panic_a_fresh_client_or_server(inputs in vec(input(), 1..24)) {
        // Given a fresh client (logging in) and a fresh server, both born at
        // one instant.
        let now = Instant::now();
        let mut client = ClientDriver::new(ClientConfig::new("alice", server_primary()), now);
        let mut server = ServerDriver::new(ServerConfig::new(server_primary(), Some(server_alt())), now);
        for input in &inputs {
            match input {
                Input::Datagram { socket, from, payload } => {
                    // When each is fed the same hostile datagram.
                    let (c_before, s_before) = (client.client.stats().clone(), server.server.stats().clone());
                    client.feed(*socket, *from, payload);
                    server.feed(*socket, *from, payload);
                    // Then undecodable input is counted exactly once, as
                    // malformed (the server may rate-limit STUN first).
                    if undecodable(payload) {
                        let c = client.client.stats();
                        prop_assert_eq!(c, &ClientStats { malformed: c_before.malformed + 1, ..c_before.clone() });
                        let s = server.server.stats();
                        if wire::classify(payload) == wire::Kind::Stun && payload.len() <= MAX_DATAGRAM {
                            prop_assert_eq!(stats_sum(s), stats_sum(&s_before) + 1);
                        } else {
                            prop_assert_eq!(s, &ServerStats { malformed: s_before.malformed + 1, ..s_before.clone() });
                        }
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
