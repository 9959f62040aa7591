//! A logged-in client under attack from the server's address (3). The test
//! plays the server: it answers the client's Hello itself and holds the
//! server's end of the channel, so that what the server really says (offers
//! with known keys, relayed peer frames) arrives sealed, while forgeries
//! come plain, from strangers, mutated or replayed.

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

/// How a server frame reaches the client.
#[derive(Clone, Debug)]
enum Source {
    /// Sealed in the channel by the server's end, from the server's address:
    /// what the server says.
    Sealed,
    /// Sealed by the server's end, but from another address (sealed frames
    /// authenticate themselves, whoever forwards them).
    SealedVia(SocketAddr),
    /// In the clear from the server's address: a forgery, or a server that
    /// forgot the channel.
    Plain,
    /// In the clear from a stranger.
    Stranger(SocketAddr),
}

#[derive(Clone, Debug)]
enum ClientOp {
    /// Arbitrary bytes from one of the server's addresses.
    Garbage {
        from: usize,
        socket: usize,
        bytes: Vec<u8>,
    },
    /// A server frame with random fields, maybe mutated (before it is
    /// sealed), from `source`.
    ServerFrame {
        frame: Frame,
        mutations: Vec<Mutation>,
        source: Source,
    },
    /// A sealed datagram the client was fed before, again (counted back from
    /// the most recent).
    Replay {
        back: usize,
    },
    /// The server answers the client's latest Hello (after it lost its
    /// login) with `LoginOk` and this token, opening a new channel.
    AnswerHello {
        token: u64,
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

fn server_source() -> impl Strategy<Value = Source> + Clone {
    prop_oneof![
        6 => Just(Source::Sealed),
        1 => select(peer_pool().to_vec()).prop_map(Source::SealedVia),
        2 => Just(Source::Plain),
        2 => select(peer_pool().to_vec()).prop_map(Source::Stranger),
    ]
}

/// Tokens a server hands out: random, so mostly 9- or 10-byte varints,
/// sometimes small.
pub(crate) fn token() -> impl Strategy<Value = u64> + Clone {
    prop_oneof![1 => 1u64..300, 3 => (1u64 << 56)..=u64::MAX]
}

fn client_op() -> impl Strategy<Value = ClientOp> + Clone {
    let mutations = prop_oneof![3 => Just(vec![]), 1 => vec(mutation(), 1..=3)];
    prop_oneof![
        2 => (0usize..4, any::<usize>(), garbage())
            .prop_map(|(from, socket, bytes)| ClientOp::Garbage { from, socket, bytes }),
        4 => (server_to_client_frame(), mutations.clone(), server_source())
            .prop_map(|(frame, mutations, source)| ClientOp::ServerFrame { frame, mutations, source }),
        1 => (0usize..8).prop_map(|back| ClientOp::Replay { back }),
        1 => token().prop_map(|token| ClientOp::AnswerHello { token }),
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

/// The client's reflexive address, as the test's server reports it: its
/// primary socket's (it is not behind a NAT).
fn reflexive() -> SocketAddr {
    addr("198.51.100.1:4000")
}

/// A client logged in to the test, which plays the server: the client has
/// the server's key pinned, its Hello is answered with `LoginOk` carrying
/// `token`, and the driver keeps the server's end of the channel. With an
/// alternate server, NAT discovery is under way then.
pub(crate) fn logged_in_client(now: Instant, with_alt: bool, token: u64) -> ClientDriver {
    let mut config = ClientConfig::new("alice", server_primary());
    config.server_key = Some(server_key().public());
    if with_alt {
        config.alt_server = Some(server_alt());
    }
    let mut d = ClientDriver::new(config, now);
    assert!(answer_hello(&mut d, token), "a client with a pinned key sends a Hello at once");
    assert!(d.client.is_logged_in(), "the client logs in with the test's Welcome");
    let _ = d.take_sent();
    d.events.clear();
    d
}

/// Plays the server's side of a handshake: reads the latest Hello the
/// client sent (checking that it is sound: mac1 for the server's key, the
/// client's identity proved, its Login inside), answers it with `LoginOk`
/// carrying `token` and keeps the new channel's server end. False when the
/// client sent no Hello since the sent datagrams were last taken (the
/// Hellos are taken now).
fn answer_hello(d: &mut ClientDriver, token: u64) -> bool {
    let Some(t) = d.sent.iter().rev().find(|t| t.payload.first() == Some(&layout::tag::HELLO)).cloned() else {
        return false;
    };
    d.sent.retain(|t| t.payload.first() != Some(&layout::tag::HELLO));
    let key = server_key();
    assert_eq!(t.destination, server_primary(), "Hellos go to the primary address");
    assert_eq!(t.socket, d.primary.0, "Hellos leave from the primary socket");
    let hello = Hello::parse(&t.payload).expect("the driver checked the layout");
    assert!(mac1_valid(&key.public(), &hello), "the client's mac1 is keyed by the pinned server key");
    let received = HelloReceived::read(&key, hello.sender, hello.noise, Seed::from(token))
        .expect("the client's Hello opens with the server's key");
    assert_eq!(received.client_key(), d.client.config().identity.public(), "the Hello proves the client's identity");
    assert_eq!(Some(received.payload()), t.plaintext.as_deref(), "the Hello carries its plaintext");
    let Ok(Frame::Login { request, user, host_candidates }) = Frame::decode(received.payload()) else {
        panic!("a Hello without a Login inside");
    };
    assert_eq!((user.as_str(), host_candidates), ("alice", vec![d.primary.1]));
    let login_ok = Frame::LoginOk { request, token, reflexive: reflexive() }.encode();
    let (welcome, end) = received.answer(&login_ok, token).expect("the server's end answers");
    let (sent, stats, online) = (d.sent.len(), d.client.stats().clone(), d.client.is_logged_in());
    let old_end = d.server_end.replace(end);
    d.feed(t.socket, server_primary(), &welcome);
    // A Welcome is never counted: it completes the client's handshake, or
    // (not the one it waits for: logged in already, or a Hello sent since)
    // it is ignored.
    assert_eq!(d.client.stats(), &stats);
    if online || !d.client.is_logged_in() {
        assert_eq!(d.sent.len(), sent, "an ignored Welcome made the client send");
        d.server_end = old_end;
        return true;
    }
    // The client proves at once that it received the Welcome: a keepalive
    // sealed in the new channel (the driver opened it with the server's end).
    let proof = d.sent[sent..].iter().find(|t| t.payload.first() == Some(&layout::tag::SEALED));
    let proof = proof.and_then(sent_frame);
    assert!(matches!(proof, Some(Frame::Keepalive { token: t, .. }) if t == token), "the proof is {proof:?}");
    true
}

/// Whether the client takes `addr` for its server's.
fn is_server(d: &ClientDriver, addr: SocketAddr) -> bool {
    addr == d.client.config().server || Some(addr) == d.client.config().alt_server
}

/// True for the frames a client takes from its server inside the channel.
fn taken_from_server(frame: &Frame) -> bool {
    matches!(
        frame,
        Frame::KeepaliveAck { .. }
            | Frame::LookupReply { .. }
            | Frame::Offer { .. }
            | Frame::Relayed { .. }
            | Frame::SessionEnded { .. }
            | Frame::DiscoverReply { .. }
            | Frame::Error { .. }
            | Frame::TextAck { .. }
            | Frame::TextRejected { .. }
            | Frame::TextDeliver { .. }
            | Frame::InboxStatus { .. }
    )
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

/// The session a peer frame names.
fn session_of(frame: &Frame) -> SessionId {
    match frame {
        Frame::Probe { session, .. } | Frame::ProbeAck { session, .. } | Frame::Session { session, .. } => *session,
        _ => unreachable!("peer frames are authenticated frames"),
    }
}

/// The `back`-th most recent of `items`, wrapping around.
fn recent<T: Clone>(items: &[T], back: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[items.len() - 1 - back % items.len()].clone())
}

fn set_session(frame: &mut Frame, id: SessionId) {
    match frame {
        Frame::Probe { session, .. } | Frame::ProbeAck { session, .. } | Frame::Session { session, .. } => {
            *session = id
        }
        _ => unreachable!("peer frames are authenticated frames"),
    }
}

/// Delivers a sealed peer frame directly or through the relay (sealed in
/// the channel); returns the datagram.
fn deliver_peer(d: &mut ClientDriver, session: SessionId, bytes: Vec<u8>, via: &Via) -> Vec<u8> {
    match via {
        Via::Direct { socket, raw, from } => {
            let sockets: Vec<SocketId> = d.live.keys().copied().collect();
            let socket = raw.map(SocketId).unwrap_or(sockets[socket % sockets.len()]);
            d.feed(socket, *from, &bytes);
            bytes
        }
        Via::Relayed => {
            let wrapped = Frame::Relayed { session, payload: bytes };
            d.feed_sealed(&wrapped.encode())
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
                // Then undecodable bytes are counted once, as malformed (or,
                // for the channel's datagrams, as their first byte says).
                if let Some(expected) = client_after_unread(&before, bytes, is_server(d, servers[*from])) {
                    prop_assert_eq!(d.client.stats(), &expected);
                }
            }
            ClientOp::ServerFrame { frame, mutations, source } => {
                // When a server frame with random fields arrives, maybe
                // mutated, sealed or not.
                let inner = mutate(frame.encode(), mutations);
                let online = d.client.is_logged_in();
                let sent = d.sent.len();
                let (from, bytes) = match source {
                    Source::Sealed => (server_primary(), d.feed_sealed(&inner)),
                    Source::SealedVia(via) => {
                        let end = d.server_end.as_ref().expect("the test plays the server");
                        let sealed = end.seal(&inner).expect("counters left");
                        d.feed(d.primary.0, *via, &sealed);
                        (*via, sealed)
                    }
                    Source::Plain => {
                        d.feed(d.primary.0, servers[0], &inner);
                        (servers[0], inner.clone())
                    }
                    Source::Stranger(stranger) => {
                        d.feed(d.primary.0, *stranger, &inner);
                        (*stranger, inner.clone())
                    }
                };
                let stats = d.client.stats().clone();
                let quiet = d.events.len() == seen && d.sent.len() == sent;
                let decoded = Frame::decode(&inner);
                let count = |field: fn(&mut ClientStats) -> &mut u64| {
                    let mut expected = before.clone();
                    *field(&mut expected) += 1;
                    expected
                };
                if let Some(expected) = client_after_unread(&before, &bytes, is_server(d, from)) {
                    // Then what the client cannot read (a sealed frame too
                    // large for a datagram among it), or must not (a mutation
                    // made a handshake datagram of it), is counted once.
                    prop_assert_eq!(&stats, &expected);
                } else if matches!(source, Source::Sealed | Source::SealedVia(_)) {
                    if !online {
                        // Then nothing opens while the client is logged out.
                        prop_assert_eq!(&stats, &count(|s| &mut s.unauthenticated));
                        prop_assert!(quiet, "a sealed frame moved a logged-out client");
                    } else if let Ok(decoded) = decoded {
                        if !taken_from_server(&decoded) {
                            // And a frame a server does not send is unexpected.
                            prop_assert_eq!(&stats, &count(|s| &mut s.unexpected));
                            prop_assert!(quiet, "a {:?} from the server moved the client", decoded);
                        } else if let Frame::Relayed { session, payload } = decoded {
                            // And a relayed payload that is no peer frame of
                            // the session it is relayed for is malformed.
                            let peer = Frame::decode(&payload).ok().filter(|f| f.is_authenticated());
                            if peer.is_none_or(|f| session_of(&f) != session) {
                                prop_assert_eq!(&stats, &count(|s| &mut s.malformed));
                            }
                        }
                    } else {
                        // And a sealed undecodable frame is malformed.
                        prop_assert_eq!(&stats, &count(|s| &mut s.malformed));
                        prop_assert!(quiet);
                    }
                } else if let Ok(decoded) = decoded {
                    // A plain frame (no mutation made a channel datagram of
                    // it: those decode as no frame).
                    let hint =
                        matches!(decoded, Frame::Error { code: ErrorCode::NotLoggedIn, .. }) && is_server(d, from);
                    if decoded == Frame::Opener {
                        // Then a stray opener carries nothing.
                        prop_assert_eq!(&stats, &before);
                        prop_assert!(quiet);
                    } else if hint {
                        // Then the server's hint that it forgot the channel is
                        // counted nowhere: believed (a fresh Hello goes) only
                        // while a keepalive awaits its answer, else ignored.
                        prop_assert_eq!(&stats, &before);
                        let hello = d.sent[sent..].iter().any(|t| t.payload.first() == Some(&layout::tag::HELLO));
                        prop_assert!(hello || quiet, "an ignored NotLoggedIn caused {:?}", &d.events[seen..]);
                        prop_assert_eq!(hello, online && !d.client.is_logged_in());
                    } else if !decoded.is_authenticated() {
                        // Then any other signaling frame outside the channel,
                        // from the server's address or not, is dropped as
                        // unauthenticated and changes nothing.
                        prop_assert_eq!(&stats, &count(|s| &mut s.unauthenticated));
                        prop_assert!(quiet, "a plain {:?} caused {:?}", decoded, &d.events[seen..]);
                    }
                }
            }
            ClientOp::Replay { back } => {
                // When a sealed datagram the client took before comes again.
                if let Some(old) = recent(&d.sealed_fed, *back) {
                    let sent = d.sent.len();
                    d.feed(d.primary.0, server_primary(), &old);
                    // Then it is refused as unauthenticated (or malformed again,
                    // if it never fitted a datagram) and changes nothing.
                    if old.len() > MAX_DATAGRAM {
                        prop_assert_eq!(d.client.stats(), &ClientStats { malformed: before.malformed + 1, ..before });
                    } else {
                        prop_assert_eq!(
                            d.client.stats(),
                            &ClientStats { unauthenticated: before.unauthenticated + 1, ..before }
                        );
                    }
                    prop_assert_eq!(d.events.len(), seen, "a replay caused {:?}", &d.events[seen..]);
                    prop_assert_eq!(d.sent.len(), sent, "a replay made the client send");
                }
            }
            ClientOp::AnswerHello { token } => {
                // When the server answers the client's latest Hello (if it lost
                // its login and sent one since the last look).
                let waiting = !d.client.is_logged_in();
                let answered = answer_hello(d, *token);
                // Then a client that waited for it is logged in again, in the
                // new channel (checked in `answer_hello`).
                if answered && waiting && d.client.is_logged_in() {
                    let logged_in = d.events[seen..].iter().any(|e| matches!(e, ClientEvent::LoggedIn { .. }));
                    prop_assert!(logged_in, "logged in again without a LoggedIn event");
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
                d.feed_sealed(&offer.encode());
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
                let online = d.client.is_logged_in();
                let delivered = deliver_peer(d, session, bytes, via);
                if delivered.len() > MAX_DATAGRAM {
                    // Then one that does not fit a datagram (relayed, so
                    // sealed again) is malformed.
                    prop_assert_eq!(d.client.stats(), &ClientStats { malformed: before.malformed + 1, ..before });
                } else if forged || (matches!(via, Via::Relayed) && !online) {
                    // Then a forged one (or any relayed while logged out) is
                    // counted once as unauthenticated and changes nothing else.
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
    fn a_logged_in_client_survives_a_hostile_server_address(
        with_alt in any::<bool>(),
        token in token(),
        ops in client_ops(),
    ) {
        // Given a client logged in with a real handshake to the test, which
        // plays the server (NAT discovery under way when the server has an
        // alternate address).
        let now = Instant::now();
        let mut d = logged_in_client(now, with_alt, token);
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
    fn an_idle_client_without_nat_discovery_holds_no_extra_socket(token in token(), ops in client_ops()) {
        // Given a logged-in client without an alternate server, after any
        // of the above.
        let now = Instant::now();
        let mut d = logged_in_client(now, false, token);
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
    fn an_idle_client_with_nat_discovery_holds_no_extra_socket(token in token(), ops in client_ops()) {
        // Given a logged-in client whose NAT discovery is under way.
        let now = Instant::now();
        let mut d = logged_in_client(now, true, token);
        run_client_ops(&mut d, &ops)?;
        // When ten minutes pass without input.
        d.idle(Duration::from_secs(600));
        // Then every socket it asked for has been released.
        prop_assert_eq!(&d.opened, &BTreeSet::new());
    }
}
