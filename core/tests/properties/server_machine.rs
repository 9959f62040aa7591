//! A stateful server under attack (2b).

use super::*;

// ---------------------------------------------------------------------------
// 2b. A stateful server: learned tokens and sessions reach its deep paths
// ---------------------------------------------------------------------------

/// Where a frame to the server comes from.
#[derive(Clone, Debug)]
enum From {
    Pool(usize),
    /// The address the substituted token was handed to.
    TokenOwner,
    Any(SocketAddr),
}

/// Which learned values to substitute into a generated frame. Token and
/// session indexes count back from the most recently learned.
#[derive(Clone, Debug)]
struct Pick {
    token: Option<usize>,
    session: Option<usize>,
    name: Option<usize>,
    /// For a relay frame carrying a peer datagram of the session it was
    /// generated for: whether the datagram follows it to the learned
    /// session (else it names another session than the frame).
    rehome: bool,
}

/// How a frame to the server travels.
#[derive(Clone, Debug)]
enum Wrap {
    /// Sealed in the channel of the client whose token it carries (the most
    /// recent channel when it carries none the test holds).
    Own,
    /// Sealed in the `i`-th most recent channel, whoever's: a client naming
    /// another's token, or a frame with none.
    Other(usize),
    /// In the clear, outside any channel.
    Plain,
}

/// What a flood is made of.
#[derive(Clone, Copy, Debug)]
enum FloodKind {
    /// A STUN Binding request.
    Stun,
    /// A key request.
    KeyRequest,
    /// A Hello whose mac1 is wrong.
    Hello,
    /// A plain signaling frame (a `Discover`).
    Plain,
}

#[derive(Clone, Debug)]
enum ServerOp {
    /// Hostile bytes.
    Raw {
        socket: SocketId,
        from: From,
        bytes: Vec<u8>,
    },
    /// A client frame with learned tokens, sessions and names substituted,
    /// maybe mutated (`mutations` before sealing, `outer` after), sealed
    /// in a channel or not.
    Frame {
        socket: SocketId,
        from: From,
        /// (Boxed: frames are the largest of the inputs.)
        frame: Box<Frame>,
        pick: Pick,
        mutations: Vec<Mutation>,
        wrap: Wrap,
        outer: Vec<Mutation>,
    },
    /// A datagram shaped as sealed in the `channel`-th most recent channel,
    /// from its owner's address, with a random counter and ciphertext.
    Forged {
        channel: usize,
        counter: u64,
        ciphertext: Vec<u8>,
    },
    /// A sealed datagram the server opened before, again, from where it
    /// came (counted back from the most recent).
    Replay {
        back: usize,
    },
    /// A login of a pool name from a pool address, with a real handshake
    /// (answering a cookie when the server is under load) and the proof
    /// that follows it (a sealed keepalive), maybe followed by its NAT
    /// profile (a connect to a user waits for its profile, or for a grace
    /// period after its login). An impostor logs in with another key than
    /// the name's.
    Login {
        name: usize,
        from: usize,
        request: u32,
        profile: Option<NatProfile>,
        impostor: bool,
    },
    /// A connect to a pool name with a recently learned token, sealed in
    /// its channel, from the address it was handed to.
    HonestConnect {
        token: usize,
        peer: usize,
        request: u32,
    },
    /// A relay frame from a member of a learned session, with that member's
    /// latest token, sealed in its channel, carrying a peer datagram of the
    /// session (`tag`, then `body`: the server reads only the session).
    HonestRelay {
        member: usize,
        tag: u8,
        body: Vec<u8>,
    },
    /// The same request, `count` times at one instant from one address.
    Flood {
        from: usize,
        count: usize,
        kind: FloodKind,
    },
    Advance(Duration),
}

fn from() -> impl Strategy<Value = From> + Clone {
    prop_oneof![
        2 => (0usize..5).prop_map(From::Pool),
        5 => Just(From::TokenOwner),
        1 => socket_addr().prop_map(From::Any),
    ]
}

fn pick() -> impl Strategy<Value = Pick> + Clone {
    let recent = || prop_oneof![1 => Just(None), 6 => (0usize..3).prop_map(Some), 2 => any::<usize>().prop_map(Some)];
    let name = prop_oneof![1 => Just(None), 4 => (0..NAMES.len()).prop_map(Some)];
    let rehome = prop_oneof![4 => Just(true), 1 => Just(false)];
    (recent(), recent(), name, rehome).prop_map(|(token, session, name, rehome)| Pick { token, session, name, rehome })
}

fn wrap() -> impl Strategy<Value = Wrap> + Clone {
    prop_oneof![8 => Just(Wrap::Own), 1 => (0usize..4).prop_map(Wrap::Other), 2 => Just(Wrap::Plain)]
}

fn server_op() -> impl Strategy<Value = ServerOp> + Clone {
    let mutations = prop_oneof![4 => Just(vec![]), 1 => vec(mutation(), 1..=3)];
    let outer = prop_oneof![8 => Just(vec![]), 1 => vec(mutation(), 1..=3)];
    let flood = select(vec![FloodKind::Stun, FloodKind::KeyRequest, FloodKind::Hello, FloodKind::Plain]);
    let frame = prop_oneof![
        2 => client_to_server_frame(),
        2 => connect(),
        3 => relay(),
        1 => offer_ack(),
        1 => leave(),
        1 => keepalive(),
        1 => text_send(),
    ];
    prop_oneof![
        2 => (socket_id(), from(), garbage()).prop_map(|(socket, from, bytes)| ServerOp::Raw { socket, from, bytes }),
        8 => (socket_id(), from(), frame, pick(), mutations, wrap(), outer)
            .prop_map(|(socket, from, frame, pick, mutations, wrap, outer)| {
                ServerOp::Frame { socket, from, frame: Box::new(frame), pick, mutations, wrap, outer }
            }),
        1 => (0usize..4, u64s(), vec(any::<u8>(), 0..=80))
            .prop_map(|(channel, counter, ciphertext)| ServerOp::Forged { channel, counter, ciphertext }),
        1 => (0usize..6).prop_map(|back| ServerOp::Replay { back }),
        // Mostly each name from its own address, so logins do not keep
        // replacing each other.
        3 => (0..NAMES.len(), prop_oneof![4 => Just(None), 1 => (0usize..5).prop_map(Some)], 0u32..2,
              prop_oneof![1 => Just(None), 3 => nat_profile().prop_map(Some)],
              prop_oneof![6 => Just(false), 1 => Just(true)])
            .prop_map(|(name, from, request, profile, impostor)| {
                ServerOp::Login { name, from: from.unwrap_or(name), request, profile, impostor }
            }),
        4 => (0usize..3, 0..NAMES.len(), 0u32..3)
            .prop_map(|(token, peer, request)| ServerOp::HonestConnect { token, peer, request }),
        4 => (any::<usize>(), select(peer_tags()), payload(MAX_RELAY_PAYLOAD - layout::PEER_HEADER))
            .prop_map(|(member, tag, body)| ServerOp::HonestRelay { member, tag, body }),
        1 => (0usize..2, 65usize..=100, flood)
            .prop_map(|(from, count, kind)| ServerOp::Flood { from, count, kind }),
        1 => prop_oneof![4 => (0u64..2_000).prop_map(Duration::from_millis), 1 => advance()]
            .prop_map(ServerOp::Advance),
    ]
}

fn server_config() -> impl Strategy<Value = ServerConfig> {
    let alternate = select(vec![Some(server_alt()), None, Some(addr("203.0.113.10:3479"))]);
    (alternate, any::<bool>()).prop_map(|(alternate, tight)| {
        let mut config = ServerConfig::new(server_primary(), alternate);
        if tight {
            config.user_timeout = Duration::from_secs(20);
            config.offer_attempts = 3;
            config.request_burst = 4;
            config.request_rate = 1;
            config.relay_burst_bytes = 3000;
            config.relay_rate_bytes = 500;
            config.max_sources = 3;
            config.max_sessions_per_user = 1;
            config.handshakes_per_second = 2;
        }
        config
    })
}

/// The `i`-th most recent of `items`.
fn recent<T: Clone>(items: &[T], i: Option<usize>) -> Option<T> {
    let i = i?;
    (!items.is_empty()).then(|| items[items.len() - 1 - i % items.len()].clone())
}

/// Substitutes learned tokens, sessions and pool names into `frame`;
/// returns the address of the substituted token's owner.
fn patch(frame: &mut Frame, pick: &Pick, tokens: &[(u64, SocketAddr)], sessions: &[SessionId]) -> Option<SocketAddr> {
    let learned = recent(tokens, pick.token);
    let (tok, sid) = (learned.map(|(t, _)| t), recent(sessions, pick.session));
    let name = pick.name.map(|i| NAMES[i].to_owned());
    match frame {
        Frame::Login { user, .. } => *user = name.unwrap_or_else(|| user.clone()),
        Frame::Keepalive { token, .. } | Frame::Profile { token, .. } | Frame::Logout { token } => {
            *token = tok.unwrap_or(*token)
        }
        Frame::Lookup { token, user, .. } => {
            *token = tok.unwrap_or(*token);
            *user = name.unwrap_or_else(|| user.clone());
        }
        Frame::Connect { token, peer, .. } => {
            *token = tok.unwrap_or(*token);
            *peer = name.unwrap_or_else(|| peer.clone());
        }
        Frame::OfferAck { token, session } | Frame::Leave { token, session } => {
            *token = tok.unwrap_or(*token);
            *session = sid.unwrap_or(*session);
        }
        Frame::Relay { token, session, payload } => {
            *token = tok.unwrap_or(*token);
            let generated = *session;
            *session = sid.unwrap_or(*session);
            if pick.rehome && layout::peer_session(payload) == Some(generated.0) {
                payload[2..10].copy_from_slice(&session.0.to_le_bytes());
            }
        }
        Frame::TextSend { token, to: user, .. } | Frame::TextDeliverAck { token, from: user, .. } => {
            *token = tok.unwrap_or(*token);
            *user = name.unwrap_or_else(|| user.clone());
        }
        Frame::InboxSync { token } => *token = tok.unwrap_or(*token),
        _ => {}
    }
    learned.map(|(_, owner)| owner)
}

/// A completed login whose client end the test holds (in the driver's
/// `ends`, by `index`).
#[derive(Clone, Debug)]
struct Channel {
    token: u64,
    /// The client's index: the receiver of the server's sealed frames.
    index: u64,
    name: String,
    owner: SocketAddr,
}

/// What the test knows of the server's users.
#[derive(Debug, Default)]
struct Model {
    channels: Vec<Channel>,
    /// The token of each name's latest proved login: the one the server
    /// holds while the name is online.
    online: BTreeMap<String, u64>,
    /// Sealed datagrams the server opened, with the token of their channel
    /// and where they came from.
    opened: Vec<(Vec<u8>, u64, SocketId, SocketAddr)>,
    /// Seeds the test's handshakes, so that each has its own ephemeral key.
    handshakes: u64,
}

impl Model {
    fn channel(&self, token: u64) -> Option<&Channel> {
        self.channels.iter().find(|c| c.token == token)
    }

    /// True while the server holds the channel of `token`: its name is
    /// online, under that login.
    fn known(&self, server: &Server, token: u64) -> bool {
        let Some(c) = self.channel(token) else { return false };
        self.online.get(&c.name) == Some(&token) && server.online_users().any(|n| n == c.name)
    }
}

/// The identities the test logs in with: each name's own key, and an
/// impostor's. Derived once.
fn identity(name: &str, impostor: bool) -> &'static StaticKey {
    static KEYS: std::sync::OnceLock<Vec<StaticKey>> = std::sync::OnceLock::new();
    let keys =
        KEYS.get_or_init(|| NAMES.iter().chain(&["mallory"]).map(|n| StaticKey::derive(Seed::from(0), n)).collect());
    let i = if impostor { NAMES.len() } else { NAMES.iter().position(|n| *n == name).expect("a pool name") };
    &keys[i]
}

/// Checks what the server sent for a sealed datagram in a channel it does
/// not hold: one more frame with an unknown token, and a plain
/// `NotLoggedIn` to the source, or none when the source's request limit
/// refused it (counted as rate limited).
fn assert_unknown_channel(
    before: &ServerStats,
    after: &ServerStats,
    sent: &[Transmit],
    from: SocketAddr,
) -> Result<(), TestCaseError> {
    let limited = u64::from(sent.is_empty());
    let expected =
        ServerStats { bad_token: before.bad_token + 1, rate_limited: before.rate_limited + limited, ..before.clone() };
    prop_assert_eq!(after, &expected);
    prop_assert!(sent.len() <= 1, "{} datagrams for an unknown channel", sent.len());
    if let Some(t) = sent.first() {
        prop_assert_eq!(t.destination, from);
        prop_assert_eq!(Frame::decode(&t.payload), Ok(Frame::Error { request: 0, code: ErrorCode::NotLoggedIn }));
    }
    Ok(())
}

/// True for the frames a server takes from a client, inside its channel.
fn taken_from_client(frame: &Frame) -> bool {
    matches!(
        frame,
        Frame::Keepalive { .. }
            | Frame::Profile { .. }
            | Frame::Lookup { .. }
            | Frame::Connect { .. }
            | Frame::OfferAck { .. }
            | Frame::Relay { .. }
            | Frame::Discover { .. }
            | Frame::TextSend { .. }
            | Frame::TextDeliverAck { .. }
            | Frame::InboxSync { .. }
            | Frame::Logout { .. }
            | Frame::Leave { .. }
    )
}

/// One more in one counter of `before`.
fn plus(before: &ServerStats, field: fn(&mut ServerStats) -> &mut u64) -> ServerStats {
    let mut expected = before.clone();
    *field(&mut expected) += 1;
    expected
}

/// A login with a real handshake, and its proof. See [`ServerOp::Login`].
fn login(
    d: &mut ServerDriver,
    model: &mut Model,
    name: &str,
    from: SocketAddr,
    request: u32,
    impostor: bool,
) -> Result<Option<u64>, TestCaseError> {
    let identity = identity(name, impostor);
    let server = d.server.public_key();
    prop_assert_eq!(server, server_key().public());
    let login = Frame::Login { request, user: name.to_owned(), host_candidates: vec![from] }.encode();
    let mut cookie = None;
    for attempt in 0..2 {
        model.handshakes += 1;
        let (hello, datagram) = HelloSent::start(identity, &server, &login, cookie.as_ref(), model.handshakes.into());
        let before = d.server.stats().clone();
        d.feed(SocketId(0), from, &datagram);
        let after = d.server.stats().clone();
        let sent = d.take_sent();
        if after.rate_limited > before.rate_limited {
            // Then a Hello over its source's limit is refused, unanswered.
            prop_assert_eq!(&after, &plus(&before, |s| &mut s.rate_limited));
            prop_assert!(sent.is_empty());
            return Ok(None);
        }
        // Then exactly one answer goes back to the Hello's source, smaller
        // than the Hello.
        prop_assert_eq!(sent.len(), 1, "{} answers to a Hello", sent.len());
        let answer = &sent[0];
        prop_assert_eq!(answer.destination, from);
        prop_assert!(answer.payload.len() < datagram.len(), "an answer as large as its Hello");
        if answer.payload[0] == layout::tag::COOKIE_REPLY {
            // Under load, a cookie that opens for this Hello only; and a Hello
            // that echoes it is not asked for another.
            prop_assert_eq!(attempt, 0, "a cookie reply to a Hello with a fresh cookie");
            prop_assert_eq!(&after, &plus(&before, |s| &mut s.cookies_sent));
            prop_assert!(answer.plaintext.is_none());
            let opened = open_cookie(&server, &answer.payload, hello.mac1());
            prop_assert!(opened.is_some(), "a cookie reply that does not open for its Hello");
            prop_assert_eq!(open_cookie(&server, &answer.payload, &[0; 16]), None);
            cookie = opened;
            continue;
        }
        prop_assert_eq!(answer.payload[0], layout::tag::WELCOME);
        let index = hello.sender();
        let finished = hello.finish(&answer.payload);
        let Some((payload, finished)) = finished else {
            return Err(TestCaseError::fail("a Welcome that does not finish its Hello"));
        };
        prop_assert_eq!(Some(&payload[..]), answer.plaintext.as_deref());
        let key = identity.public();
        let bound = d.bound.get(name).copied();
        match Frame::decode(&payload) {
            Ok(Frame::LoginOk { request: answered, token, reflexive }) => {
                // Then a name bound to nothing, or to this key, is logged in.
                prop_assert!(bound.is_none_or(|b| b == key), "{} logged in with another key than its own", name);
                prop_assert_eq!((answered, reflexive), (request, from));
                prop_assert_eq!(&after, &plus(&before, |s| &mut s.handshakes));
                let end = finished.into_channel(token);
                let Some(end) = end else { return Err(TestCaseError::fail("no channel from a LoginOk")) };
                d.ends.insert(index, end);
                d.owners.insert(index, name.to_owned());
                model.channels.push(Channel { token, index, name: name.to_owned(), owner: from });
                // And once a sealed keepalive proves the address, the name is
                // online under this login (replacing any other) and bound.
                let keepalive = Frame::Keepalive { token, profile: NatProfile::default() }.encode();
                let proof = d.ends[&index].seal(&keepalive).expect("a fresh channel");
                let before = d.server.stats().clone();
                d.feed(SocketId(0), from, &proof);
                let after = d.server.stats().clone();
                prop_assert!(d.server.online_users().any(|n| n == name), "{} is not online after its proof", name);
                model.online.insert(name.to_owned(), token);
                d.bound.entry(name.to_owned()).or_insert(key);
                model.opened.push((proof, token, SocketId(0), from));
                // And the keepalive is answered (or refused by the limit).
                let acks = d
                    .take_sent()
                    .iter()
                    .filter(|t| t.destination == from)
                    .filter_map(sent_frame)
                    .filter(|f| matches!(f, Frame::KeepaliveAck { .. }))
                    .collect::<Vec<_>>();
                if after.rate_limited == before.rate_limited {
                    prop_assert_eq!(acks, vec![Frame::KeepaliveAck { reflexive: from }]);
                } else {
                    prop_assert_eq!(&after, &plus(&before, |s| &mut s.rate_limited));
                    prop_assert!(acks.is_empty());
                }
                return Ok(Some(token));
            }
            Ok(Frame::Error { request: answered, code }) => {
                // Then a name bound to another key is refused, for good.
                prop_assert_eq!((answered, code), (request, ErrorCode::KeyMismatch));
                prop_assert!(bound.is_some_and(|b| b != key), "{} refused with {:?}", name, code);
                prop_assert_eq!(&after, &plus(&before, |s| &mut s.key_mismatches));
                let _ = finished;
                return Ok(None);
            }
            other => return Err(TestCaseError::fail(format!("a Welcome carrying {other:?}"))),
        }
    }
    Err(TestCaseError::fail("a Hello echoing a fresh cookie got another cookie reply"))
}

/// A frame sealed in a channel: the frame (encoded) and the channel's token.
type Inner = Option<(Vec<u8>, u64)>;

fn run_server_ops(d: &mut ServerDriver, ops: &[ServerOp]) -> Result<(), TestCaseError> {
    let pool = client_pool();
    let mut model = Model::default();
    for op in ops {
        // What comes in: the datagram, and (sealed in a channel) the frame
        // inside with its channel's token.
        let (socket, from, bytes, inner): (SocketId, From, Vec<u8>, Inner) = match op {
            ServerOp::Raw { socket, from, bytes } => (*socket, from.clone(), bytes.clone(), None),
            ServerOp::Frame { socket, from, frame, pick, mutations, wrap, outer } => {
                let mut frame = Frame::clone(frame);
                let owner = patch(&mut frame, pick, &d.tokens, &d.sessions);
                let from = match (from, owner) {
                    (From::TokenOwner, Some(owner)) => From::Any(owner),
                    (f, _) => f.clone(),
                };
                let plain = mutate(frame.encode(), mutations);
                let channel = match wrap {
                    Wrap::Own => frame.token().and_then(|t| model.channel(t)).or(model.channels.last()).cloned(),
                    Wrap::Other(i) => recent(&model.channels, Some(*i)),
                    Wrap::Plain => None,
                };
                match channel {
                    Some(c) => {
                        let sealed = d.ends[&c.index].seal(&plain).expect("counters left");
                        let mutated = mutate(sealed.clone(), outer);
                        // (Mutations that undo each other leave it sealed.)
                        let inner = (mutated == sealed).then_some((plain, c.token));
                        (*socket, from, mutated, inner)
                    }
                    None => (*socket, from, plain, None),
                }
            }
            ServerOp::Forged { channel, counter, ciphertext } => {
                let Some(c) = recent(&model.channels, Some(*channel)) else { continue };
                let mut datagram = layout::sealed_buffer(c.token, *counter, ciphertext.len());
                datagram[layout::SEALED_HEADER..].copy_from_slice(ciphertext);
                let before = d.server.stats().clone();
                d.feed(SocketId(0), c.owner, &datagram);
                let (after, sent) = (d.server.stats().clone(), d.take_sent());
                if ciphertext.len() < 16 {
                    // Then one too short for its AEAD tag is malformed.
                    prop_assert_eq!(&after, &plus(&before, |s| &mut s.malformed));
                } else if model.known(&d.server, c.token) {
                    // Then one that does not authenticate in a live channel is
                    // refused as forged (or, with a counter the channel saw or
                    // left behind, as a replay) and answered with nothing.
                    let forged = plus(&before, |s| &mut s.unauthenticated);
                    let replayed = plus(&before, |s| &mut s.replayed);
                    prop_assert!(after == forged || after == replayed, "{:?}", after);
                    prop_assert!(sent.is_empty());
                } else {
                    assert_unknown_channel(&before, &after, &sent, c.owner)?;
                }
                continue;
            }
            ServerOp::Replay { back } => {
                let Some((datagram, token, socket, from)) = recent(&model.opened, Some(*back)) else { continue };
                let before = d.server.stats().clone();
                d.feed(socket, from, &datagram);
                let (after, sent) = (d.server.stats().clone(), d.take_sent());
                if model.known(&d.server, token) {
                    // Then a sealed frame the server opened once is refused as
                    // a replay, and changes nothing.
                    prop_assert_eq!(&after, &plus(&before, |s| &mut s.replayed));
                    prop_assert!(sent.is_empty(), "a replay was answered: {:?}", sent);
                } else {
                    assert_unknown_channel(&before, &after, &sent, from)?;
                }
                continue;
            }
            ServerOp::Login { name, from, request, profile, impostor } => {
                let name = NAMES[*name];
                let token = login(d, &mut model, name, pool[*from], *request, *impostor)?;
                match (token, profile) {
                    (Some(token), Some(profile)) => {
                        let frame = Frame::Profile { token, profile: *profile }.encode();
                        let c = model.channel(token).expect("just logged in");
                        let sealed = d.ends[&c.index].seal(&frame).expect("counters left");
                        (SocketId(0), From::Pool(*from), sealed, Some((frame, token)))
                    }
                    _ => continue,
                }
            }
            ServerOp::HonestConnect { token, peer, request } => {
                let Some((token, from)) = recent(&d.tokens, Some(*token)) else { continue };
                let connect = Frame::Connect {
                    token,
                    request: *request,
                    peer: NAMES[*peer].to_owned(),
                    profile: NatProfile::default(),
                }
                .encode();
                let Some(c) = model.channel(token) else { continue };
                let sealed = d.ends[&c.index].seal(&connect).expect("counters left");
                (SocketId(0), From::Any(from), sealed, Some((connect, token)))
            }
            ServerOp::HonestRelay { member, tag, body } => {
                let Some((session, from)) = recent(&d.members, Some(*member % 4)) else { continue };
                let Some(&(token, _)) = d.tokens.iter().rev().find(|(_, owner)| *owner == from) else { continue };
                // (At most what a client can seal in one datagram.)
                let mut payload = layout::peer_handshake(*tag, session.0, body);
                let header = Frame::Relay { token, session, payload: vec![0; MAX_RELAY_PAYLOAD] }.encode().len();
                payload.truncate(MAX_DATAGRAM - SEALED_OVERHEAD - (header - MAX_RELAY_PAYLOAD));
                let relay = Frame::Relay { token, session, payload }.encode();
                let Some(c) = model.channel(token) else { continue };
                let sealed = d.ends[&c.index].seal(&relay).expect("counters left");
                (SocketId(0), From::Any(from), sealed, Some((relay, token)))
            }
            ServerOp::Flood { from, count, kind } => {
                // When one source sends more requests at one instant than
                // the request burst allows.
                let before = d.server.stats().clone();
                let request = match kind {
                    FloodKind::Stun => stun::binding_request(stun::TransactionId([7; 12])),
                    FloodKind::KeyRequest => layout::key_request(7),
                    FloodKind::Hello => {
                        let mut hello = real_hellos()[0].clone();
                        hello[20] ^= 1;
                        hello
                    }
                    FloodKind::Plain => Frame::Discover { nonce: 1, answer_from: AnswerFrom::Same }.encode(),
                };
                // (Floods come from their own addresses, so the clients above
                // keep their request budget.)
                let flooder = [addr("192.0.2.66:1"), addr("[2001:db8::66]:1")][*from % 2];
                for _ in 0..*count {
                    d.feed(SocketId(0), flooder, &request);
                }
                let (after, sent) = (d.server.stats().clone(), d.take_sent());
                let refused = after.rate_limited - before.rate_limited;
                let excess = (*count as u64).saturating_sub(d.request_burst.into());
                match kind {
                    // Then a plain signaling frame is dropped unread, each
                    // counted as unauthenticated, and none is answered.
                    FloodKind::Plain => {
                        let expected =
                            ServerStats { unauthenticated: before.unauthenticated + *count as u64, ..before };
                        prop_assert_eq!(&after, &expected);
                        prop_assert!(sent.is_empty());
                    }
                    // Then at least the excess is refused and counted, and
                    // every request is refused or answered.
                    FloodKind::Stun => {
                        prop_assert!(refused >= excess, "{} of {} refused", refused, count);
                        prop_assert_eq!(after.stun_answered - before.stun_answered + refused, *count as u64);
                    }
                    FloodKind::KeyRequest => {
                        prop_assert!(refused >= excess, "{} of {} refused", refused, count);
                        prop_assert_eq!(&after, &ServerStats { rate_limited: after.rate_limited, ..before });
                        prop_assert_eq!(sent.len() as u64 + refused, *count as u64);
                        // (Each answer is the server's key, smaller than the
                        // request.)
                        let key = d.server.public_key().0;
                        for t in &sent {
                            prop_assert_eq!(layout::parse_key_reply(&t.payload), Some((7, key)));
                            prop_assert!(t.payload.len() < request.len() && t.destination == flooder);
                        }
                    }
                    // Then a Hello whose mac1 is wrong costs no handshake:
                    // refused by the limit or for its mac1, unanswered.
                    FloodKind::Hello => {
                        prop_assert!(refused >= excess, "{} of {} refused", refused, count);
                        let expected = ServerStats {
                            rate_limited: after.rate_limited,
                            handshakes_refused: before.handshakes_refused + *count as u64 - refused,
                            ..before
                        };
                        prop_assert_eq!(&after, &expected);
                        prop_assert!(sent.is_empty());
                    }
                }
                continue;
            }
            ServerOp::Advance(by) => {
                d.advance(*by);
                let _ = d.take_sent();
                continue;
            }
        };
        let from = match from {
            From::Pool(i) => pool[i],
            From::TokenOwner => pool[0],
            From::Any(a) => a,
        };
        // (Whether the server holds the channel, before the frame.)
        let known = inner.as_ref().map(|(_, token)| model.known(&d.server, *token));
        let before = d.server.stats().clone();
        d.feed(socket, from, &bytes);
        let after = d.server.stats().clone();
        let sent = d.take_sent();
        // Then undecodable input, and what only a client receives, is
        // counted once as malformed (what is limited per source first may be
        // rate-limited instead).
        if server_drops_unread(&bytes) {
            assert_server_dropped(&before, &after, &bytes)?;
        }
        match (&inner, known) {
            // (A datagram over the limit is malformed, unread: above.)
            _ if bytes.len() > MAX_DATAGRAM => {}
            (Some((plain, token)), Some(true)) => {
                model.opened.push((bytes.clone(), *token, socket, from));
                match Frame::decode(plain) {
                    // And a sealed frame that does not decode is malformed.
                    Err(_) => {
                        prop_assert_eq!(&after, &plus(&before, |s| &mut s.malformed));
                        prop_assert!(sent.is_empty());
                    }
                    // And a frame naming another token than its channel's is
                    // refused.
                    Ok(frame) if frame.token().is_some_and(|t| t != *token) => {
                        prop_assert_eq!(&after, &plus(&before, |s| &mut s.bad_token));
                        prop_assert!(sent.is_empty(), "a frame with another channel's token was answered");
                    }
                    // And a relay frame is counted once: relayed, throttled or
                    // refused; refused when its payload is no peer datagram
                    // of its session (the relay carries the sessions' own
                    // datagrams, nothing else), and then nothing is sent.
                    Ok(Frame::Relay { session, payload, .. }) => {
                        let counted = (after.relayed + after.relay_throttled + after.relay_refused)
                            - (before.relayed + before.relay_throttled + before.relay_refused);
                        prop_assert_eq!(counted, 1, "{:?} -> {:?}", before, after);
                        if layout::peer_session(&payload) != Some(session.0) {
                            prop_assert_eq!(&after, &plus(&before, |s| &mut s.relay_refused));
                            prop_assert!(sent.is_empty(), "a foreign relay payload was answered: {:?}", sent);
                        }
                    }
                    // And a frame a server does not take, even sealed, is
                    // malformed (once past the source's limit).
                    Ok(frame) if !taken_from_client(&frame) => {
                        let absorbed = ServerStats {
                            malformed: after.malformed,
                            rate_limited: after.rate_limited,
                            ..before.clone()
                        };
                        prop_assert_eq!(&after, &absorbed);
                        prop_assert_eq!(
                            after.malformed + after.rate_limited,
                            before.malformed + before.rate_limited + 1
                        );
                        prop_assert!(sent.is_empty());
                    }
                    Ok(_) => {}
                }
            }
            // And a sealed frame in a channel the server forgot is refused.
            (Some(_), Some(false)) => assert_unknown_channel(&before, &after, &sent, from)?,
            _ => {}
        }
        if matches!(op, ServerOp::Frame { wrap: Wrap::Plain, .. }) && Frame::decode(&bytes).is_ok() {
            // And a signaling frame outside any channel is dropped unread.
            prop_assert_eq!(&after, &plus(&before, |s| &mut s.unauthenticated));
            prop_assert!(sent.is_empty(), "a plain frame was answered: {:?}", sent);
        }
        // And a Relayed frame leaves only for a Relay that came in sealed,
        // carrying its session and payload unchanged, and is counted.
        let relayed: Vec<Frame> =
            sent.iter().filter_map(sent_frame).filter(|f| matches!(f, Frame::Relayed { .. })).collect();
        prop_assert_eq!(after.relayed - before.relayed, relayed.len() as u64);
        if let Some(Frame::Relayed { session, payload }) = relayed.first() {
            prop_assert_eq!(relayed.len(), 1);
            let relay = inner.as_ref().map(|(plain, _)| Frame::decode(plain));
            let Some(Ok(Frame::Relay { session: s, payload: p, .. })) = relay else {
                return Err(TestCaseError::fail(format!("a Relayed frame left for {relay:?}")));
            };
            prop_assert_eq!((session, payload), (&s, &p));
        }
        // And no counter ever goes down.
        prop_assert!(
            counters(&after).iter().zip(counters(&before)).all(|(a, b)| *a >= b),
            "{:?} -> {:?}",
            before,
            after
        );
    }
    Ok(())
}

/// Every counter of `s`.
fn counters(s: &ServerStats) -> [u64; 17] {
    [
        s.malformed,
        s.rate_limited,
        s.relay_refused,
        s.relay_throttled,
        s.relayed,
        s.stun_answered,
        s.bad_token,
        s.handshakes,
        s.handshakes_refused,
        s.cookies_sent,
        s.key_mismatches,
        s.replayed,
        s.unauthenticated,
        s.texts_stored,
        s.texts_delivered,
        s.texts_rejected,
        s.store_errors,
    ]
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn a_server_survives_hostile_clients_and_forgets_them_when_idle(
        config in server_config(),
        ops in vec(server_op(), 1..40),
    ) {
        // Given a server with default or tight limits (two handshakes a
        // second before it asks for cookies), and an alternate
        // address (four sockets), one on the same IP (two), or none (one).
        let now = Instant::now();
        let mut d = ServerDriver::new(config, now);
        // When honest logins (real handshakes, answering cookies under load,
        // impostors with another key) arrive, then frames carrying learned
        // tokens, sessions and names (maybe mutated), sealed in their own
        // channel, in another's or in none, forged and replayed sealed
        // frames, garbage and floods, with time passing.
        run_server_ops(&mut d, &ops)?;
        // Then nothing panicked, every transmit was well formed and went to
        // an address the server had heard from (checked by the driver), and
        // after ten silent minutes every user and session is gone.
        d.idle(Duration::from_secs(600));
        prop_assert_eq!(d.server.online_users().count(), 0);
        prop_assert_eq!(d.server.session_count(), 0);
    }
}
