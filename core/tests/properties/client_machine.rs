//! A logged-in client under attack from the server's address (3).

use super::*;

// ---------------------------------------------------------------------------
// 3. A logged-in client under attack from the server's address
// ---------------------------------------------------------------------------

/// Sessions whose keys the test knows: an offer for slot `i` carries
/// `slot_key(i)`, so the test can seal peer frames for it.
const SLOTS: usize = 3;

fn slot_id(i: usize) -> SessionId {
    [SessionId(0x1111), SessionId(0x2222_3333_4444), SessionId(u64::MAX)][i]
}

fn slot_key(i: usize) -> SessionKey {
    [i as u8 + 1; 32]
}

/// Addresses peers send from, and announce as candidates.
fn peer_pool() -> [SocketAddr; 3] {
    [addr("198.51.100.2:4000"), addr("[2001:db8::2]:4000"), addr("192.0.2.7:5555")]
}

#[derive(Clone, Debug)]
enum Seal {
    /// With the slot's key, as the client's peer.
    Right,
    /// With the slot's key, as the client itself (a reflected frame).
    Reflected,
    /// With another key.
    WrongKey,
    /// Not at all: the MAC stays zero.
    Unsealed,
}

#[derive(Clone, Debug)]
enum Via {
    /// Straight to one of the client's sockets (an index into those it
    /// holds, or a raw id) from `from`.
    Direct { socket: usize, raw: Option<u32>, from: SocketAddr },
    /// Wrapped in `Relayed` from the server.
    Relayed,
}

/// What an honest peer of a known-key session does next. Its frames carry
/// fresh counters and the next sequence number of its stream.
#[derive(Clone, Debug)]
enum Honest {
    Stream(StreamMessage),
    /// Acknowledges `next` (counted back from what the client sent) with
    /// selective bits.
    Ack {
        back: u64,
        bits: u64,
    },
    Probe {
        attempt: u16,
    },
    /// Acknowledges a probe, observing `observed`.
    ProbeAck {
        attempt: u16,
        observed: SocketAddr,
    },
}

#[derive(Clone, Debug)]
enum ClientOp {
    /// Arbitrary bytes from one of the server's addresses.
    Garbage {
        from: usize,
        socket: usize,
        bytes: Vec<u8>,
    },
    /// A server frame with random fields, maybe mutated; from the server, or
    /// from a stranger.
    ServerFrame {
        frame: Frame,
        mutations: Vec<Mutation>,
        stranger: Option<SocketAddr>,
    },
    /// An offer for a known-key session.
    Offer {
        slot: usize,
        request: u32,
        initiator: bool,
        peer: String,
        peer_candidates: Vec<SocketAddr>,
        strategy: NatStrategy,
    },
    /// An honest peer's next frame.
    Honest {
        slot: usize,
        act: Honest,
        via: Via,
    },
    /// A random peer frame of a known-key session, sealed some way.
    Peer {
        slot: usize,
        frame: Frame,
        seal: Seal,
        via: Via,
        mutations: Vec<Mutation>,
    },
    /// The server answers every Binding request the client sent it since the
    /// last answer, mapping the socket to `mapped`.
    AnswerBindings {
        mapped: SocketAddr,
    },
    /// A STUN message to one of the client's sockets.
    Stun {
        socket: usize,
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    Send {
        slot: usize,
        len: usize,
    },
    Close {
        slot: usize,
    },
    Connect {
        peer: usize,
    },
    Advance(Duration),
}

fn peer_source() -> impl Strategy<Value = SocketAddr> + Clone {
    prop_oneof![3 => select(peer_pool().to_vec()), 1 => socket_addr()]
}

fn seal() -> impl Strategy<Value = Seal> + Clone {
    prop_oneof![
        3 => Just(Seal::Right),
        1 => Just(Seal::Reflected),
        1 => Just(Seal::WrongKey),
        1 => Just(Seal::Unsealed),
    ]
}

fn via() -> impl Strategy<Value = Via> + Clone {
    prop_oneof![
        (any::<usize>(), prop_oneof![6 => Just(None), 1 => any::<u32>().prop_map(Some)], peer_source())
            .prop_map(|(socket, raw, from)| Via::Direct { socket, raw, from }),
        Just(Via::Relayed),
    ]
}

fn honest() -> impl Strategy<Value = Honest> + Clone {
    let attempt = prop_oneof![3 => 0u16..2, 1 => 2u16..5];
    let message = prop_oneof![
        2 => payload(MAX_APP_PAYLOAD).prop_map(StreamMessage::App),
        2 => (attempt.clone(), vec(peer_source(), 0..=MAX_CANDIDATES))
            .prop_map(|(attempt, candidates)| StreamMessage::Candidates { attempt, candidates }),
        2 => attempt.clone().prop_map(|attempt| StreamMessage::OpenersOut { attempt }),
    ];
    prop_oneof![
        6 => message.prop_map(Honest::Stream),
        2 => (0u64..3, prop_oneof![Just(0u64), any::<u64>()]).prop_map(|(back, bits)| Honest::Ack { back, bits }),
        2 => attempt.clone().prop_map(|attempt| Honest::Probe { attempt }),
        2 => (attempt, peer_source()).prop_map(|(attempt, observed)| Honest::ProbeAck { attempt, observed }),
    ]
}

/// Random peer frames with small counters, attempts and sequence numbers.
fn peer_frame() -> BoxedStrategy<Frame> {
    let counter = prop_oneof![3 => 0u64..400, 1 => u64s()];
    prop_oneof![
        1 => (0u16..4, counter.clone())
            .prop_map(|(attempt, counter)| Frame::Probe { session: SessionId(0), attempt, counter }),
        1 => (0u16..4, u64s(), counter.clone(), peer_source()).prop_map(|(attempt, probe_counter, counter, observed)| {
            Frame::ProbeAck { session: SessionId(0), attempt, probe_counter, counter, observed }
        }),
        3 => (counter, session_body(true))
            .prop_map(|(counter, body)| Frame::Session { session: SessionId(0), counter, body }),
    ]
    .boxed()
}

fn client_op() -> impl Strategy<Value = ClientOp> + Clone {
    let mutations = prop_oneof![3 => Just(vec![]), 1 => vec(mutation(), 1..=3)];
    let stranger = prop_oneof![3 => Just(None), 1 => select(peer_pool().to_vec()).prop_map(Some)];
    prop_oneof![
        2 => (0usize..4, any::<usize>(), garbage())
            .prop_map(|(from, socket, bytes)| ClientOp::Garbage { from, socket, bytes }),
        3 => (server_to_client_frame(), mutations.clone(), stranger)
            .prop_map(|(frame, mutations, stranger)| ClientOp::ServerFrame { frame, mutations, stranger }),
        2 => (0..SLOTS, 0u32..8, prop_oneof![3 => Just(false), 1 => Just(true)], select(NAMES.to_vec()),
              vec(peer_source(), 0..=MAX_CANDIDATES), prop_oneof![4 => Just(NatStrategy::Punch), 1 => nat_strategy()])
            .prop_map(|(slot, request, initiator, peer, peer_candidates, strategy)| ClientOp::Offer {
                slot, request, initiator, peer: peer.to_owned(), peer_candidates, strategy,
            }),
        8 => (0..SLOTS, honest(), via()).prop_map(|(slot, act, via)| ClientOp::Honest { slot, act, via }),
        3 => (0..SLOTS, peer_frame(), seal(), via(), mutations)
            .prop_map(|(slot, frame, seal, via, mutations)| ClientOp::Peer { slot, frame, seal, via, mutations }),
        2 => socket_addr().prop_map(|mapped| ClientOp::AnswerBindings { mapped }),
        1 => (any::<usize>(), source(), stun_shaped())
            .prop_map(|(socket, from, bytes)| ClientOp::Stun { socket, from, bytes }),
        1 => (0..SLOTS, prop_oneof![0..=64usize, MAX_APP_PAYLOAD - 2..=MAX_APP_PAYLOAD + 1])
            .prop_map(|(slot, len)| ClientOp::Send { slot, len }),
        1 => (0..SLOTS).prop_map(|slot| ClientOp::Close { slot }),
        1 => (0..NAMES.len()).prop_map(|peer| ClientOp::Connect { peer }),
        3 => advance().prop_map(ClientOp::Advance),
    ]
}

/// A client logged in to a real server through an in-memory network that
/// delivers every datagram at once; the loop stops as soon as the client is
/// logged in (with an alternate server, NAT discovery is under way then).
pub(crate) fn logged_in_client(now: Instant, with_alt: bool) -> ClientDriver {
    let mut server = Server::new(ServerConfig::new(server_primary(), Some(server_alt())), now);
    let mut config = ClientConfig::new("alice", server_primary());
    if with_alt {
        config.alt_server = Some(server_alt());
    }
    let mut d = ClientDriver::new(config, now);
    for _ in 0..64 {
        if d.client.is_logged_in() {
            break;
        }
        for t in d.take_sent() {
            let from = d.live[&t.socket];
            if let Some(&(socket, _)) = server.sockets().iter().find(|(_, a)| *a == t.destination) {
                server.handle_datagram(now, socket, from, &t.payload);
            }
        }
        while server.poll_event().is_some() {}
        while let Some(t) = server.poll_transmit() {
            let from = server.sockets().iter().find(|(id, _)| *id == t.socket).expect("the server's own socket").1;
            if let Some((&socket, _)) = d.live.iter().find(|(_, a)| **a == t.destination) {
                d.feed(socket, from, &t.payload);
            }
        }
    }
    assert!(d.client.is_logged_in(), "the client logs in over a perfect network");
    let _ = d.take_sent();
    d.events.clear();
    d
}

/// The honest peer's side of one known-key session.
#[derive(Clone, Debug, Default)]
struct PeerState {
    counter: u64,
    next_seq: u64,
}

/// The role the client plays in `session`, from its last `SessionOpened`.
fn client_role(events: &[ClientEvent], session: SessionId) -> Option<Role> {
    events.iter().rev().find_map(|e| match e {
        ClientEvent::SessionOpened { session: s, initiator, .. } if *s == session => {
            Some(if *initiator { Role::Initiator } else { Role::Responder })
        }
        _ => None,
    })
}

fn set_session(frame: &mut Frame, id: SessionId) {
    match frame {
        Frame::Probe { session, .. } | Frame::ProbeAck { session, .. } | Frame::Session { session, .. } => {
            *session = id
        }
        _ => unreachable!("peer frames are authenticated frames"),
    }
}

/// Delivers a sealed peer frame directly or through the relay.
fn deliver_peer(d: &mut ClientDriver, session: SessionId, bytes: Vec<u8>, via: &Via) {
    match via {
        Via::Direct { socket, raw, from } => {
            let sockets: Vec<SocketId> = d.live.keys().copied().collect();
            let socket = raw.map(SocketId).unwrap_or(sockets[socket % sockets.len()]);
            d.feed(socket, *from, &bytes);
        }
        Via::Relayed => {
            let wrapped = Frame::Relayed { session, payload: bytes };
            d.feed(d.primary.0, server_primary(), &wrapped.encode());
        }
    }
}

fn run_client_ops(d: &mut ClientDriver, ops: &[ClientOp]) -> Result<(), TestCaseError> {
    let servers = server_addrs();
    let mut peers: BTreeMap<SessionId, PeerState> = BTreeMap::new();
    for op in ops {
        let before = d.client.stats().clone();
        let seen = d.events.len();
        match op {
            ClientOp::Garbage { from, socket, bytes } => {
                // When garbage arrives from one of the server's addresses.
                let sockets: Vec<SocketId> = d.live.keys().copied().collect();
                d.feed(sockets[socket % sockets.len()], servers[*from], bytes);
                // Then undecodable bytes are counted once as malformed.
                if undecodable(bytes) {
                    prop_assert_eq!(d.client.stats(), &ClientStats { malformed: before.malformed + 1, ..before });
                }
            }
            ClientOp::ServerFrame { frame, mutations, stranger } => {
                // When a server frame with random fields arrives.
                let bytes = mutate(frame.encode(), mutations);
                d.feed(d.primary.0, stranger.unwrap_or(servers[0]), &bytes);
                let stats = d.client.stats();
                if undecodable(&bytes) {
                    // Then a broken one is malformed.
                    prop_assert_eq!(stats, &ClientStats { malformed: before.malformed + 1, ..before });
                } else if let (Some(_), Ok(decoded)) = (stranger, Frame::decode(&bytes)) {
                    // And a server frame from a stranger is unexpected.
                    if !decoded.is_authenticated() && decoded != Frame::Opener {
                        prop_assert_eq!(stats, &ClientStats { unexpected: before.unexpected + 1, ..before });
                    }
                } else if let Ok(Frame::Relayed { payload, .. }) = Frame::decode(&bytes) {
                    // And a relayed payload that is no peer frame is malformed.
                    if !Frame::decode(&payload).is_ok_and(|f| f.is_authenticated()) {
                        prop_assert_eq!(stats, &ClientStats { malformed: before.malformed + 1, ..before });
                    }
                }
            }
            ClientOp::Offer { slot, request, initiator, peer, peer_candidates, strategy } => {
                let session = slot_id(*slot);
                let offer = Frame::Offer {
                    request: *request,
                    session,
                    key: slot_key(*slot),
                    initiator: *initiator,
                    peer: peer.clone(),
                    peer_candidates: peer_candidates.clone(),
                    strategy: *strategy,
                    peer_profile: NatProfile::default(),
                };
                d.feed(d.primary.0, servers[0], &offer.encode());
                let opened = d.events[seen..]
                    .iter()
                    .any(|e| matches!(e, ClientEvent::SessionOpened { session: s, .. } if *s == session));
                if opened {
                    peers.insert(session, PeerState::default());
                }
            }
            ClientOp::Honest { slot, act, via } => {
                let session = slot_id(*slot);
                let own = client_role(&d.events, session).unwrap_or(Role::Responder);
                let state = peers.entry(session).or_default();
                state.counter += 1;
                let counter = state.counter;
                let mut frame = match act {
                    Honest::Stream(message) => {
                        state.next_seq += 1;
                        let body = SessionBody::Stream { seq: state.next_seq - 1, message: message.clone() };
                        Frame::Session { session, counter, body }
                    }
                    Honest::Ack { back, bits } => {
                        // Acknowledge up to what the client may have sent.
                        let next = 64u64.saturating_sub(*back);
                        Frame::Session { session, counter, body: SessionBody::Ack { next, received_after: *bits } }
                    }
                    Honest::Probe { attempt } => Frame::Probe { session, attempt: *attempt, counter },
                    Honest::ProbeAck { attempt, observed } => {
                        Frame::ProbeAck { session, attempt: *attempt, probe_counter: 1, counter, observed: *observed }
                    }
                };
                set_session(&mut frame, session);
                let mut bytes = frame.encode();
                auth::seal(&mut bytes, &slot_key(*slot), own.peer());
                deliver_peer(d, session, bytes, via);
            }
            ClientOp::Peer { slot, frame, seal, via, mutations } => {
                // When a random peer frame arrives, sealed some way.
                let session = slot_id(*slot);
                let mut frame = frame.clone();
                set_session(&mut frame, session);
                let own = client_role(&d.events, session).unwrap_or(Role::Responder);
                let mut bytes = frame.encode();
                match seal {
                    Seal::Right => auth::seal(&mut bytes, &slot_key(*slot), own.peer()),
                    Seal::Reflected => auth::seal(&mut bytes, &slot_key(*slot), own),
                    Seal::WrongKey => auth::seal(&mut bytes, &[0xee; 32], own.peer()),
                    Seal::Unsealed => {}
                }
                let bytes = mutate(bytes, mutations);
                let forged = !matches!(seal, Seal::Right) && mutations.is_empty();
                deliver_peer(d, session, bytes, via);
                // Then a forged one is counted once as unauthenticated and
                // changes nothing else.
                if forged {
                    prop_assert_eq!(
                        d.client.stats(),
                        &ClientStats { unauthenticated: before.unauthenticated + 1, ..before }
                    );
                    prop_assert_eq!(d.events.len(), seen, "a forged peer frame caused {:?}", &d.events[seen..]);
                }
            }
            ClientOp::AnswerBindings { mapped } => {
                for t in d.take_sent() {
                    let Ok(m) = stun::Message::decode(&t.payload) else { continue };
                    if m.class == stun::Class::Request && servers.contains(&t.destination) {
                        let answer = stun::binding_success(m.transaction_id, *mapped);
                        d.feed(t.socket, t.destination, &answer);
                    }
                }
            }
            ClientOp::Stun { socket, from, bytes } => {
                let sockets: Vec<SocketId> = d.live.keys().copied().collect();
                d.feed(sockets[socket % sockets.len()], *from, bytes);
            }
            ClientOp::Send { slot, len } => {
                // When the application sends; then the result is exact.
                let session = slot_id(*slot);
                let open = d.client.sessions().any(|s| s == session);
                let result = d.client.send(d.now, session, &vec![0x5a; *len]);
                if *len > MAX_APP_PAYLOAD {
                    prop_assert_eq!(result, Err(SendError::TooLarge { len: *len, max: MAX_APP_PAYLOAD }));
                } else if !open {
                    prop_assert_eq!(result, Err(SendError::UnknownSession));
                } else {
                    prop_assert!(matches!(result, Ok(()) | Err(SendError::WindowFull)), "{:?}", result);
                }
                d.drain();
            }
            ClientOp::Close { slot } => {
                d.client.close(d.now, slot_id(*slot));
                d.drain();
                prop_assert!(!d.client.sessions().any(|s| s == slot_id(*slot)));
            }
            ClientOp::Connect { peer } => {
                let result = d.client.connect(d.now, NAMES[*peer]);
                if NAMES[*peer] == "alice" {
                    prop_assert!(result.is_err(), "connecting to oneself is refused");
                }
                d.drain();
            }
            ClientOp::Advance(by) => d.advance(*by),
        }
        // And no counter ever goes down.
        let after = d.client.stats();
        prop_assert!(after.malformed >= before.malformed);
        prop_assert!(after.unauthenticated >= before.unauthenticated);
        prop_assert!(after.unexpected >= before.unexpected);
    }
    Ok(())
}

fn client_ops() -> impl Strategy<Value = Vec<ClientOp>> {
    vec(client_op(), 1..48)
}

proptest! {
    #![proptest_config(config(1536))]

    #[test]
    fn a_logged_in_client_survives_a_hostile_server_address(with_alt in any::<bool>(), ops in client_ops()) {
        // Given a client logged in to a real server (NAT discovery under way
        // when the server has an alternate address).
        let now = Instant::now();
        let mut d = logged_in_client(now, with_alt);
        // When it is fed garbage, forged and mutated server frames, offers
        // with known keys, honest and forged peer frames, with time passing.
        run_client_ops(&mut d, &ops)?;
        // Then nothing panicked, every transmit was well formed and left from
        // a socket the driver holds (checked by the driver), and after the
        // peer timeout every session is gone.
        d.idle(Duration::from_secs(120));
        prop_assert_eq!(d.client.sessions().count(), 0);
    }

    #[test]
    fn an_idle_client_without_nat_discovery_holds_no_extra_socket(ops in client_ops()) {
        // Given a logged-in client without an alternate server, after any
        // of the above.
        let now = Instant::now();
        let mut d = logged_in_client(now, false);
        run_client_ops(&mut d, &ops)?;
        // When ten minutes pass without input.
        d.idle(Duration::from_secs(600));
        // Then every socket it asked for has been released.
        prop_assert_eq!(&d.opened, &BTreeSet::new());
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn an_idle_client_with_nat_discovery_holds_no_extra_socket(ops in client_ops()) {
        // Given a logged-in client whose NAT discovery is under way.
        let now = Instant::now();
        let mut d = logged_in_client(now, true);
        run_client_ops(&mut d, &ops)?;
        // When ten minutes pass without input.
        d.idle(Duration::from_secs(600));
        // Then every socket it asked for has been released.
        prop_assert_eq!(&d.opened, &BTreeSet::new());
    }
}
