//! A logged-in client under attack from the server's address and its
//! peers' (3). The test plays the server: it answers the client's Hello
//! itself and holds the server's end of the channel, so that what the
//! server really says (offers naming keys the test holds, relayed
//! handshakes and peer datagrams) arrives sealed, while forgeries come
//! plain, from strangers, mutated or replayed. It plays the client's peers
//! too: for each session slot it runs the session's end-to-end handshake
//! with the client through the relay, as the user the offer named, and
//! seals peer frames in the keys it made, while forgeries come in another
//! handshake's keys, reflected, replayed, tampered or in the clear.

use super::*;
use punchline_core::wire::frame::files::TransferId;

// ---------------------------------------------------------------------------
// 3. A logged-in client under attack from the server's address
// ---------------------------------------------------------------------------

/// Sessions the test plays the peer of: an offer for slot `i` names
/// `slot_id(i)` and a key the test holds, so the test can run its
/// handshake and seal peer frames for it.
const SLOTS: usize = 3;

fn slot_id(i: usize) -> SessionId {
    [SessionId(0x1111), SessionId(0x2222_3333_4444), SessionId(u64::MAX)][i]
}

fn slot_of(session: SessionId) -> Option<usize> {
    (0..SLOTS).find(|i| slot_id(*i) == session)
}

/// Addresses peers send from, and announce as candidates.
fn peer_pool() -> [SocketAddr; 3] {
    [addr("198.51.100.2:4000"), addr("[2001:db8::2]:4000"), addr("192.0.2.7:5555")]
}

/// The client's own key: [`ClientConfig::new`]'s for "alice".
fn client_key() -> PublicKey {
    user_key("alice").public()
}

/// How a peer datagram is sealed.
#[derive(Clone, Debug)]
enum Seal {
    /// In the slot's keys, as the client's peer: authentic (unless mutated).
    Right,
    /// The client's own latest datagram of the session, sent back to it.
    Reflected,
    /// In the keys of another handshake of the same session: an attacker
    /// who knows the session id, not the members' keys.
    WrongKey,
    /// An authentic datagram the client got before (counted back from the
    /// most recent), again.
    Replayed { back: usize },
    /// Not at all: the peer frame in the clear.
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

/// What an honest peer of a session the test plays does next. Its frames
/// carry fresh counters and the next sequence number of its stream.
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
    /// A file data-plane body (a piece or an acknowledgement with
    /// credits), any numbers: what a hostile peer could send.
    File(SessionBody),
}

/// How the test's peer plays its part of a session's handshake (the
/// session's responder sends the hello, its initiator the welcome).
#[derive(Clone, Debug)]
enum Handshake {
    /// Its genuine part, through the relay: its hello (the client is the
    /// session's initiator), or its answer to the client's hello and the
    /// welcome (unless `hold`: then the peer holds keys and the client not
    /// yet, so what it seals reaches the client before its keys).
    Genuine { hold: bool },
    /// Its genuine datagram with one bit flipped after the header.
    Tampered { at: usize, bit: u8 },
    /// A datagram of another handshake naming this session: a hello from
    /// the impostor's key, or the peer's for another session under this
    /// one's header; a welcome to another hello.
    Foreign { other_session: bool },
    /// Its genuine datagram, straight from a peer address instead of
    /// through the relay.
    Direct { from: SocketAddr },
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

/// How a text the server delivers was sealed.
#[derive(Clone, Debug)]
enum TextSeal {
    /// By its sender's key, to the client's, for these names and id.
    Right,
    /// By the impostor's key, under the sender's name.
    Impostor,
    /// By its sender, for another recipient: it does not open here.
    Misaddressed,
    /// Not at all: random bytes.
    Garbage(Vec<u8>),
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
    /// An offer for a slot, naming `peer`'s key (or, from an impostor
    /// directory, mallory's); with `reply`, an initiator's answers the
    /// client's latest connect to `peer`.
    Offer {
        slot: usize,
        request: u32,
        reply: bool,
        initiator: bool,
        peer: String,
        impostor: bool,
        peer_candidates: Vec<SocketAddr>,
        strategy: NatStrategy,
    },
    /// The test's peer's part of a slot's handshake.
    Handshake {
        slot: usize,
        how: Handshake,
    },
    /// An honest peer's next frame.
    Honest {
        slot: usize,
        act: Honest,
        via: Via,
    },
    /// A random peer frame of a slot's session, sealed some way, maybe
    /// mutated after it was sealed.
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
    /// The application sends a text to a pool user.
    SendText {
        to: usize,
        text: String,
    },
    /// The server's directory answers every lookup the client sent since
    /// the last answer: with each user's key, the impostor's, or none.
    AnswerLookups {
        known: bool,
        impostor: bool,
    },
    /// The server delivers a text from a pool user, sealed some way.
    DeliverText {
        from: usize,
        id: MessageId,
        text: String,
        how: TextSeal,
    },
    Advance(Duration),
}

fn peer_source() -> impl Strategy<Value = SocketAddr> + Clone {
    prop_oneof![3 => select(peer_pool().to_vec()), 1 => socket_addr()]
}

fn seal() -> impl Strategy<Value = Seal> + Clone {
    prop_oneof![
        4 => Just(Seal::Right),
        1 => Just(Seal::Reflected),
        1 => Just(Seal::WrongKey),
        1 => (0usize..4).prop_map(|back| Seal::Replayed { back }),
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
        1 => file_message(),
        // An offer under a name the client takes, so pieces and
        // acknowledgements of it reach the receiving side.
        2 => (0u32..4, prop_oneof![0u64..100_000, any::<u64>()], any::<[u8; 32]>()).prop_map(|(t, size, root)| {
            StreamMessage::FileOffer { transfer: TransferId(t), name: "hostile.bin".into(), size, root }
        }),
    ];
    prop_oneof![
        6 => message.prop_map(Honest::Stream),
        3 => file_body().prop_map(Honest::File),
        2 => (0u64..3, prop_oneof![Just(0u64), any::<u64>()]).prop_map(|(back, bits)| Honest::Ack { back, bits }),
        2 => attempt.clone().prop_map(|attempt| Honest::Probe { attempt }),
        2 => (attempt, peer_source()).prop_map(|(attempt, observed)| Honest::ProbeAck { attempt, observed }),
    ]
}

fn handshake_how() -> impl Strategy<Value = Handshake> + Clone {
    prop_oneof![
        6 => prop_oneof![4 => Just(false), 1 => Just(true)].prop_map(|hold| Handshake::Genuine { hold }),
        1 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Handshake::Tampered { at, bit }),
        1 => any::<bool>().prop_map(|other_session| Handshake::Foreign { other_session }),
        1 => peer_source().prop_map(|from| Handshake::Direct { from }),
    ]
}

/// Random peer frames with small counters, attempts and sequence numbers.
fn random_peer_frame() -> BoxedStrategy<Frame> {
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

fn text_seal() -> impl Strategy<Value = TextSeal> + Clone {
    prop_oneof![
        4 => Just(TextSeal::Right),
        1 => Just(TextSeal::Impostor),
        1 => Just(TextSeal::Misaddressed),
        1 => sealed_text().prop_map(TextSeal::Garbage),
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
        4 => (0..SLOTS, (0u32..8, any::<bool>()), prop_oneof![3 => Just(false), 2 => Just(true)],
              select(NAMES.to_vec()), prop_oneof![8 => Just(false), 1 => Just(true)],
              vec(peer_source(), 0..=MAX_CANDIDATES), prop_oneof![4 => Just(NatStrategy::Punch), 1 => nat_strategy()])
            .prop_map(|(slot, (request, reply), initiator, peer, impostor, peer_candidates, strategy)| ClientOp::Offer {
                slot, request, reply, initiator, peer: peer.to_owned(), impostor, peer_candidates, strategy,
            }),
        7 => (0..SLOTS, handshake_how()).prop_map(|(slot, how)| ClientOp::Handshake { slot, how }),
        8 => (0..SLOTS, honest(), via()).prop_map(|(slot, act, via)| ClientOp::Honest { slot, act, via }),
        4 => (0..SLOTS, random_peer_frame(), seal(), via(), mutations)
            .prop_map(|(slot, frame, seal, via, mutations)| ClientOp::Peer { slot, frame, seal, via, mutations }),
        2 => socket_addr().prop_map(|mapped| ClientOp::AnswerBindings { mapped }),
        1 => (any::<usize>(), source(), stun_shaped())
            .prop_map(|(socket, from, bytes)| ClientOp::Stun { socket, from, bytes }),
        1 => (0..SLOTS, prop_oneof![0..=64usize, MAX_APP_PAYLOAD - 2..=MAX_APP_PAYLOAD + 1])
            .prop_map(|(slot, len)| ClientOp::Send { slot, len }),
        1 => (0..SLOTS).prop_map(|slot| ClientOp::Close { slot }),
        2 => (0..NAMES.len()).prop_map(|peer| ClientOp::Connect { peer }),
        1 => (1..NAMES.len(), "[ -~]{0,40}").prop_map(|(to, text)| ClientOp::SendText { to, text }),
        1 => (prop_oneof![4 => Just(true), 1 => Just(false)], prop_oneof![6 => Just(false), 1 => Just(true)])
            .prop_map(|(known, impostor)| ClientOp::AnswerLookups { known, impostor }),
        1 => (1..NAMES.len(), message_id(), "[ -~]{0,40}", text_seal())
            .prop_map(|(from, id, text, how)| ClientOp::DeliverText { from, id, text, how }),
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
    assert_eq!(config.identity.public(), client_key(), "the test's peers know the client's key");
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

/// The identity the test holds for `key`: a pool user's, or the
/// impostor's; `None` for keys the test does not hold (random offers and
/// lookup replies pin those).
fn identity_of(key: Option<&PublicKey>) -> Option<&'static StaticKey> {
    let key = key?;
    NAMES.iter().chain(&["mallory"]).map(|n| user_key(n)).find(|k| k.public() == *key)
}

/// The test's peer in one slot's session, as the client last opened it.
struct Peer {
    /// The identity it plays with (the key the offer named, which the
    /// client pinned), when the test holds it.
    identity: Option<&'static StaticKey>,
    /// True when the client is the session's initiator (it answers our
    /// hello); else it sent its own hello, which we answer.
    client_initiator: bool,
    /// Where the client's relay frames for this session start in
    /// [`ClientDriver::relays`].
    relays_from: usize,
    /// Our hello, while the client is the initiator.
    hello: Option<(PeerHelloSent, Vec<u8>)>,
    /// The client's welcome to it: a resent hello gets the same one.
    client_welcome: Option<Vec<u8>>,
    /// Our welcome, once we answered the client's hello.
    welcome: Option<Vec<u8>>,
    /// True once the client holds the session's keys.
    keyed: bool,
    /// Our stream: the next frame counter and sequence number.
    counter: u64,
    next_seq: u64,
    /// The authentic datagrams the client got from us (opened or held), for
    /// replays.
    delivered: Vec<Vec<u8>>,
}

/// What the test knows of the client beyond its driver.
#[derive(Default)]
struct Model {
    slots: [Option<Peer>; SLOTS],
    /// For every session the client opened, the datagrams it holds until
    /// the session's keys exist, in order.
    held: BTreeMap<SessionId, Vec<(Held, Option<SocketId>)>>,
    /// Seeds the test's handshakes, so that each has its own ephemeral key.
    seeds: u64,
    /// Texts the application sent: their recipient and text, by id.
    texts: BTreeMap<MessageId, (String, String)>,
    /// Texts raised to the application, by sender and id.
    received: BTreeSet<(String, MessageId)>,
    /// How much of [`ClientDriver::to_server`] the test has read.
    read_to_server: usize,
    /// How many of the client's lookups the directory answered.
    lookups_answered: usize,
}

/// A datagram a client holds until its session's keys exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Held {
    /// It will not open: refused then.
    Forged,
    /// It will open and be handled.
    Authentic,
    /// It will open, and close the session: what is held after it finds no
    /// session then.
    Closing,
}

/// What the client counts when its session's keys exist and it handles
/// what it held: each that does not open, and each after one that closed
/// the session.
///
/// One that came on a socket the client released since (`live` says which
/// are held now; `None` is the relay) is dropped unopened and counted
/// unexpected: it would be answered from a socket the driver closed.
/// Returns (unauthenticated, unexpected).
fn refused_when_keyed(held: &[(Held, Option<SocketId>)], live: impl Fn(SocketId) -> bool) -> (u64, u64) {
    let mut closed = false;
    let (mut refused, mut dropped) = (0, 0);
    for (h, socket) in held {
        match h {
            _ if socket.is_some_and(|s| !live(s)) => dropped += 1,
            _ if closed => refused += 1,
            Held::Forged => refused += 1,
            Held::Authentic => {}
            Held::Closing => closed = true,
        }
    }
    (refused, dropped)
}

/// How a datagram the peer sent stands, for a client that may hold it.
fn held_as(authentic: bool, frame: Option<&Frame>) -> Held {
    match frame {
        _ if !authentic => Held::Forged,
        Some(Frame::Session { body: SessionBody::Close { .. }, .. }) => Held::Closing,
        _ => Held::Authentic,
    }
}

/// What must come of a datagram the client gets.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expect {
    /// Dropped (or held until its session's keys exist): nothing happens
    /// but the counters' change, to these.
    Refused(ClientStats),
    /// Opened in its session's keys and handled: counted nowhere.
    Opened,
    /// The test cannot tell.
    Unknown,
}

fn plus_one(before: &ClientStats, field: fn(&mut ClientStats) -> &mut u64) -> ClientStats {
    let mut expected = before.clone();
    *field(&mut expected) += 1;
    expected
}

impl Model {
    fn seed(&mut self) -> Seed {
        self.seeds += 1;
        Seed::from(self.seeds)
    }

    /// How the client holds `session` now.
    fn view(&self, d: &ClientDriver, session: SessionId) -> PeerView {
        if !d.client.sessions().any(|s| s == session) {
            return PeerView::Absent;
        }
        match slot_of(session).and_then(|i| self.slots[i].as_ref()) {
            Some(peer) if peer.keyed => PeerView::Keyed,
            _ => PeerView::Unkeyed { held: self.held.get(&session).map_or(0, Vec::len) },
        }
    }

    /// A `PeerSealed` datagram with its header reaches its session: it
    /// opens if authentic and the keys exist, waits for them while there is
    /// room (authentic or not: the client cannot tell yet), and is refused
    /// otherwise.
    fn arrive(
        &mut self,
        d: &ClientDriver,
        before: &ClientStats,
        datagram: &[u8],
        how: Held,
        socket: Option<SocketId>,
    ) -> Expect {
        let session = SessionId(layout::peer_session(datagram).expect("the caller checked the header"));
        match self.view(d, session) {
            PeerView::Keyed if how != Held::Forged => Expect::Opened,
            PeerView::Unkeyed { held } if held < MAX_EARLY => {
                self.held.entry(session).or_default().push((how, socket));
                Expect::Refused(before.clone())
            }
            _ => Expect::Refused(plus_one(before, |s| &mut s.unauthenticated)),
        }
    }

    /// `bytes` straight from `from`, authentic (`how`) when it is a
    /// datagram the peer sealed in the session's keys, unaltered, arriving
    /// first.
    fn expect_direct(
        &mut self,
        d: &ClientDriver,
        before: &ClientStats,
        bytes: &[u8],
        (socket, from): (SocketId, SocketAddr),
        how: Held,
    ) -> Expect {
        let sealed = bytes.len() <= MAX_DATAGRAM && bytes.first() == Some(&layout::tag::PEER_SEALED);
        if sealed && layout::peer_session(bytes).is_some() {
            return self.arrive(d, before, bytes, how, Some(socket));
        }
        match Frame::decode(bytes) {
            // The server's hint that it forgot the channel (see the
            // server frames below).
            Ok(Frame::Error { code: ErrorCode::NotLoggedIn, .. }) if is_server(d, from) => Expect::Unknown,
            // Any other frame in the clear, a peer frame included: not
            // believed.
            Ok(_) => Expect::Refused(plus_one(before, |s| &mut s.unauthenticated)),
            Err(_) => match client_after_unread(before, bytes, |s| self.view(d, s)) {
                Some(expected) => Expect::Refused(expected),
                None => Expect::Unknown,
            },
        }
    }

    /// `payload` relayed for `session` in a `Relayed` frame the server's
    /// end sealed, while the client is online: what is no peer datagram of
    /// that session is malformed; a sealed one reaches its session; a
    /// handshake datagram that is not genuine is unauthenticated.
    fn expect_relayed(
        &mut self,
        d: &ClientDriver,
        before: &ClientStats,
        session: SessionId,
        payload: &[u8],
        how: Held,
    ) -> Expect {
        if layout::peer_session(payload) != Some(session.0) {
            Expect::Refused(plus_one(before, |s| &mut s.malformed))
        } else if payload[0] == layout::tag::PEER_SEALED {
            self.arrive(d, before, payload, how, None)
        } else {
            Expect::Refused(plus_one(before, |s| &mut s.unauthenticated))
        }
    }

    /// A peer datagram delivered `via` (see [`deliver_peer`]), judged
    /// before it is fed.
    fn expect_via(
        &mut self,
        d: &ClientDriver,
        before: &ClientStats,
        session: SessionId,
        bytes: &[u8],
        via: &Via,
        how: Held,
    ) -> Expect {
        match via {
            Via::Direct { from, .. } => self.expect_direct(d, before, bytes, (direct_socket(d, via), *from), how),
            Via::Relayed => {
                let relayed = Frame::Relayed { session, payload: bytes.to_vec() }.encode();
                if relayed.len() + SEALED_OVERHEAD > MAX_DATAGRAM {
                    // Relayed, so sealed again: too large for a datagram.
                    Expect::Refused(plus_one(before, |s| &mut s.malformed))
                } else if !d.client.is_logged_in() {
                    // The channel is gone: nothing opens.
                    Expect::Refused(plus_one(before, |s| &mut s.unauthenticated))
                } else {
                    self.expect_relayed(d, before, session, bytes, how)
                }
            }
        }
    }

    /// Follows what the last operation changed: sessions the client opened
    /// (each slot's peer starts afresh, with the identity of the key the
    /// client pinned for it), texts raised, and every text the client sent
    /// through the server, which must open for its recipient's pinned key,
    /// from the client's own, as the application sent it.
    fn follow(&mut self, d: &mut ClientDriver, seen: usize, relays_from: usize) -> Result<(), TestCaseError> {
        let events: Vec<ClientEvent> = d.events[seen..].to_vec();
        for e in &events {
            match e {
                ClientEvent::SessionOpened { session, peer, initiator, .. } => {
                    self.held.insert(*session, Vec::new());
                    if let Some(i) = slot_of(*session) {
                        let identity = identity_of(d.client.config().peer_keys.get(peer));
                        self.slots[i] = Some(Peer {
                            identity,
                            client_initiator: *initiator,
                            relays_from,
                            hello: None,
                            client_welcome: None,
                            welcome: None,
                            keyed: false,
                            counter: 0,
                            next_seq: 0,
                            delivered: Vec::new(),
                        });
                        d.follow(*session);
                    }
                }
                ClientEvent::TextReceived { from, id, .. } => {
                    prop_assert!(self.received.insert((from.clone(), *id)), "{} from {} raised twice", id, from);
                }
                _ => {}
            }
        }
        for frame in &d.to_server[self.read_to_server..] {
            let Frame::TextSend { to, id, sealed, .. } = frame else { continue };
            // (Texts from before a re-login are sent again, sealed the same.)
            let pinned = d.client.config().peer_keys.get(to);
            prop_assert!(pinned.is_some(), "a text sealed to {} without a pinned key", to);
            let Some((recipient, text)) = self.texts.get(id) else {
                return Err(TestCaseError::fail(format!("a text {id} the application did not send")));
            };
            prop_assert_eq!(to, recipient);
            if let Some(identity) = identity_of(pinned) {
                let opened = open_text(identity, ("alice", to, *id), sealed);
                prop_assert_eq!(opened, Some((client_key(), text.clone())), "text {} to {}", id, to);
            }
        }
        self.read_to_server = d.to_server.len();
        Ok(())
    }
}

/// An attacker's end of `session` (mallory's, from a handshake with eve):
/// what someone who knows the session id, and not the members' keys, can
/// seal. One per session and thread.
fn attackers_seal(session: SessionId, frame: &[u8]) -> Vec<u8> {
    thread_local! {
        static ENDS: std::cell::RefCell<BTreeMap<SessionId, SessionCipher<Duration>>> =
            const { std::cell::RefCell::new(BTreeMap::new()) };
    }
    ENDS.with_borrow_mut(|ends| {
        let end = ends.entry(session).or_insert_with(|| {
            handshake(user_key("mallory"), user_key("eve"), session, Duration::ZERO, session.0 ^ 0x5eed).0
        });
        end.seal(Duration::ZERO, frame).expect("counters left").0
    })
}

/// A handshake datagram of another handshake naming `session`, whose
/// peer's key is `peer`'s (the test's identity for it, if it holds one):
/// for a client that answers hellos (`hello`), an impostor's hello to the
/// client's key (mallory's, or eve's when the session's peer is mallory),
/// or the peer's own for another session under this one's header; else a
/// welcome to another hello (eve's to mallory's). Made once each.
fn foreign_handshake(session: SessionId, hello: bool, other_session: bool, peer: Option<&StaticKey>) -> Vec<u8> {
    type Made = BTreeMap<(SessionId, bool, bool, Option<PublicKey>), Vec<u8>>;
    static MADE: std::sync::Mutex<Made> = std::sync::Mutex::new(BTreeMap::new());
    let (mallory, eve) = (user_key("mallory"), user_key("eve"));
    let key = (session, hello, other_session, peer.map(StaticKey::public));
    let mut made = MADE.lock().expect("no test panics while holding it");
    made.entry(key)
        .or_insert_with(|| {
            if !hello {
                let (_, theirs) = PeerHelloSent::start(mallory, &eve.public(), session, Seed::from(9));
                let answer =
                    PeerHelloReceived::answer(eve, &mallory.public(), session, &theirs, Duration::ZERO, 10.into());
                return answer.expect("eve answers mallory").0;
            }
            if !other_session {
                let impostor = if peer.is_some_and(|p| p.public() == mallory.public()) { eve } else { mallory };
                return PeerHelloSent::start(impostor, &client_key(), session, Seed::from(11)).1;
            }
            let other = SessionId(session.0 ^ 1);
            let mut datagram = PeerHelloSent::start(peer.unwrap_or(mallory), &client_key(), other, Seed::from(12)).1;
            datagram[2..10].copy_from_slice(&session.0.to_le_bytes());
            datagram
        })
        .clone()
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
        _ => unreachable!("peer frames are the session's"),
    }
}

/// The socket a direct delivery arrives on: one the driver holds, or a raw
/// id (a driver bug the client must survive). The relay's is the primary.
fn direct_socket(d: &ClientDriver, via: &Via) -> SocketId {
    match via {
        Via::Direct { socket, raw, .. } => {
            let sockets: Vec<SocketId> = d.live.keys().copied().collect();
            raw.map(SocketId).unwrap_or(sockets[socket % sockets.len()])
        }
        Via::Relayed => d.primary.0,
    }
}

/// Delivers a peer datagram directly or through the relay (sealed in the
/// channel); returns what was fed.
fn deliver_peer(d: &mut ClientDriver, session: SessionId, bytes: Vec<u8>, via: &Via) -> Vec<u8> {
    match via {
        Via::Direct { from, .. } => {
            let socket = direct_socket(d, via);
            d.feed(socket, *from, &bytes);
            bytes
        }
        Via::Relayed => {
            let wrapped = Frame::Relayed { session, payload: bytes };
            d.feed_sealed(&wrapped.encode())
        }
    }
}

/// Checks what a datagram did against what was expected of it: a refusal
/// changes the counters as said and nothing else (no event); an opened one
/// is counted nowhere.
fn assert_outcome(d: &ClientDriver, expect: &Expect, before: &ClientStats, seen: usize) -> Result<(), TestCaseError> {
    match expect {
        Expect::Refused(expected) => {
            prop_assert_eq!(d.client.stats(), expected);
            prop_assert_eq!(d.events.len(), seen, "a refused datagram caused {:?}", &d.events[seen..]);
        }
        Expect::Opened => prop_assert_eq!(d.client.stats(), before, "an authentic datagram was counted"),
        Expect::Unknown => {}
    }
    Ok(())
}

/// The welcome the client relayed for `session` since `from` in
/// [`ClientDriver::relays`].
fn relayed_welcome(d: &ClientDriver, session: SessionId, from: usize) -> Option<Vec<u8>> {
    d.relays[from..].iter().rev().find(|(s, p)| *s == session && p[0] == layout::tag::PEER_WELCOME).map(|r| r.1.clone())
}

/// The test's peer plays its part of `slot`'s handshake `how`; see
/// [`Handshake`].
fn play_handshake(d: &mut ClientDriver, model: &mut Model, slot: usize, how: &Handshake) -> Result<(), TestCaseError> {
    let session = slot_id(slot);
    let (before, seen, sent, relays) = (d.client.stats().clone(), d.events.len(), d.sent.len(), d.relays.len());
    let (online, live) = (d.client.is_logged_in(), d.client.sessions().any(|s| s == session));
    let seed = model.seed();
    let Some(peer) = model.slots[slot].as_mut() else { return Ok(()) };
    // Our genuine part: our hello, or our answer to the client's.
    let genuine = match peer.identity {
        None => None,
        Some(identity) if peer.client_initiator => {
            let (_, hello) =
                peer.hello.get_or_insert_with(|| PeerHelloSent::start(identity, &client_key(), session, seed));
            Some(hello.clone())
        }
        Some(identity) => {
            if peer.welcome.is_none() {
                let hello = d.relays[peer.relays_from..]
                    .iter()
                    .find(|(s, p)| *s == session && p[0] == layout::tag::PEER_HELLO)
                    .map(|r| r.1.clone());
                if let Some(hello) = hello {
                    // The client's hello proves its key, for this session,
                    // to the key its offer named.
                    let answer = PeerHelloReceived::answer(identity, &client_key(), session, &hello, d.now, seed);
                    let Some((welcome, end)) = answer else {
                        return Err(TestCaseError::fail(format!("the client's hello for {session} is not answered")));
                    };
                    peer.welcome = Some(welcome);
                    d.set_peer_end(session, end);
                }
            }
            peer.welcome.clone()
        }
    };
    let relay = |d: &mut ClientDriver, payload: Vec<u8>| d.feed_sealed(&Frame::Relayed { session, payload }.encode());
    let refused = plus_one(&before, |s| &mut s.unauthenticated);
    match how {
        Handshake::Genuine { hold } => {
            let Some(datagram) = genuine else { return Ok(()) };
            if *hold && !peer.client_initiator {
                return Ok(());
            }
            relay(d, datagram);
            if !online || !live {
                // Then with the channel gone nothing opens, and a handshake
                // for a session the client does not have is refused.
                prop_assert_eq!(d.client.stats(), &refused);
                prop_assert_eq!(d.events.len(), seen);
                return Ok(());
            }
            if peer.keyed {
                if peer.client_initiator {
                    // Then a hello the client answered already gets the
                    // same welcome (ours was lost), and is counted nowhere.
                    prop_assert_eq!(d.client.stats(), &before);
                    let again = relayed_welcome(d, session, relays);
                    prop_assert_eq!(&again, &peer.client_welcome, "another welcome to a resent hello");
                } else {
                    // Then a handshake finishes once.
                    prop_assert_eq!(d.client.stats(), &refused);
                    prop_assert_eq!(d.sent.len(), sent, "a second welcome made the client send");
                }
                return Ok(());
            }
            // Then the client holds the session's keys, and what it held
            // for them is handled now: the authentic datagrams opened, the
            // others refused, each once.
            let held = model.held.insert(session, Vec::new()).unwrap_or_default();
            let primary = d.primary.0;
            // (The client trusts only the primary and the sockets it asked
            // for and has not released; a raw id the driver delivers on is
            // not one of them.)
            let (refused, dropped) = refused_when_keyed(&held, |s| s == primary || d.opened.contains(&s));
            let expected = ClientStats {
                unauthenticated: before.unauthenticated + refused,
                unexpected: before.unexpected + dropped,
                ..before.clone()
            };
            prop_assert_eq!(d.client.stats(), &expected, "held {:?}", held);
            peer.keyed = true;
            if peer.client_initiator {
                // And, as the initiator, it relays its welcome, which
                // finishes our hello.
                let welcome = relayed_welcome(d, session, relays);
                let Some(welcome) = welcome else {
                    return Err(TestCaseError::fail("the client answered no welcome to a genuine hello"));
                };
                let (hello, _) = peer.hello.as_mut().expect("we sent it");
                let end = hello.finish(&welcome, d.now);
                let Some(end) = end else { return Err(TestCaseError::fail("the client's welcome finishes nothing")) };
                peer.client_welcome = Some(welcome);
                d.set_peer_end(session, end);
            }
        }
        Handshake::Tampered { at, bit } => {
            let Some(mut datagram) = genuine else { return Ok(()) };
            let at = layout::PEER_HEADER + at % (datagram.len() - layout::PEER_HEADER);
            datagram[at] ^= 1 << bit;
            relay(d, datagram);
            // Then a handshake altered in flight completes nothing, is
            // counted, and leaves the genuine one possible.
            prop_assert_eq!(d.client.stats(), &refused);
            prop_assert_eq!(d.events.len(), seen);
            prop_assert_eq!(d.sent.len(), sent, "a tampered handshake made the client send");
        }
        Handshake::Foreign { other_session } => {
            let datagram = foreign_handshake(session, peer.client_initiator, *other_session, peer.identity);
            relay(d, datagram);
            // Then another handshake's datagram (proving another key, of
            // another session, or answering another hello) completes
            // nothing and is counted.
            prop_assert_eq!(d.client.stats(), &refused);
            prop_assert_eq!(d.events.len(), seen);
            prop_assert_eq!(d.sent.len(), sent, "a foreign handshake made the client send");
        }
        Handshake::Direct { from } => {
            let Some(datagram) = genuine else { return Ok(()) };
            d.feed(d.primary.0, *from, &datagram);
            // Then a handshake outside the relay is not believed.
            prop_assert_eq!(d.client.stats(), &refused);
            prop_assert_eq!(d.events.len(), seen);
        }
    }
    Ok(())
}

fn run_client_ops(d: &mut ClientDriver, ops: &[ClientOp]) -> Result<(), TestCaseError> {
    let servers = server_addrs();
    let mut model = Model::default();
    for op in ops {
        let before = d.client.stats().clone();
        let seen = d.events.len();
        let relays_from = d.relays.len();
        match op {
            ClientOp::Garbage { from, socket, bytes } => {
                // When garbage arrives from one of the server's addresses.
                let sockets: Vec<SocketId> = d.live.keys().copied().collect();
                let on = sockets[socket % sockets.len()];
                let expect = model.expect_direct(d, &before, bytes, (on, servers[*from]), Held::Forged);
                d.feed(on, servers[*from], bytes);
                // Then what cannot be read is counted once, as malformed
                // (or, for the channel's and the sessions' datagrams, as
                // their first byte and header say), and a peer datagram for
                // a session in its handshake waits for its keys.
                if let Expect::Refused(expected) = &expect {
                    prop_assert_eq!(d.client.stats(), expected);
                }
            }
            ClientOp::ServerFrame { frame, mutations, source } => {
                // When a server frame with random fields arrives, maybe
                // mutated, sealed or not.
                let inner = mutate(frame.encode(), mutations);
                let online = d.client.is_logged_in();
                let sent = d.sent.len();
                let decoded = Frame::decode(&inner);
                let sealed = matches!(source, Source::Sealed | Source::SealedVia(_));
                let fits = inner.len() + SEALED_OVERHEAD <= MAX_DATAGRAM;
                // (A relayed peer datagram, and plain bytes, are judged
                // before they arrive: a session in its handshake may hold
                // them.)
                let relayed = match &decoded {
                    Ok(Frame::Relayed { session, payload }) if sealed && online && fits => {
                        Some(model.expect_relayed(d, &before, *session, payload, Held::Forged))
                    }
                    _ => None,
                };
                let plain_from = match source {
                    Source::Plain => Some(servers[0]),
                    Source::Stranger(stranger) => Some(*stranger),
                    _ => None,
                };
                let primary = d.primary.0;
                let plain =
                    plain_from.map(|from| model.expect_direct(d, &before, &inner, (primary, from), Held::Forged));
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
                let count = |field: fn(&mut ClientStats) -> &mut u64| plus_one(&before, field);
                if sealed && bytes.len() > MAX_DATAGRAM {
                    // Then a sealed frame too large for a datagram is
                    // malformed, unread.
                    prop_assert_eq!(&stats, &count(|s| &mut s.malformed));
                } else if sealed {
                    if !online {
                        // Then nothing opens while the client is logged out.
                        prop_assert_eq!(&stats, &count(|s| &mut s.unauthenticated));
                        prop_assert!(quiet, "a sealed frame moved a logged-out client");
                    } else if let Ok(decoded) = decoded {
                        if !taken_from_server(&decoded) {
                            // And a frame a server does not send is unexpected.
                            prop_assert_eq!(&stats, &count(|s| &mut s.unexpected));
                            prop_assert!(quiet, "a {:?} from the server moved the client", decoded);
                        } else if let Some(expect) = relayed {
                            // And a relayed payload that is no peer datagram
                            // of the session it is relayed for is malformed;
                            // a sealed one that does not open is refused (or
                            // held while the session's keys do not exist),
                            // a handshake that is not genuine too.
                            assert_outcome(d, &expect, &before, seen)?;
                        } else if let Frame::TextDeliver { from, id, .. } = decoded {
                            // And a delivered text that does not open for
                            // the client (random bytes) is never raised, is
                            // counted, and is acknowledged unseen, so the
                            // server stops delivering it.
                            prop_assert_eq!(&stats, &count(|s| &mut s.unauthenticated));
                            let raised = d.events[seen..].iter().any(|e| matches!(e, ClientEvent::TextReceived { .. }));
                            prop_assert!(!raised, "a text that does not open was raised");
                            let acked = d.to_server[model.read_to_server..].iter().any(
                                |f| matches!(f, Frame::TextDeliverAck { from: f, id: i, .. } if *f == from && *i == id),
                            );
                            prop_assert!(acked, "a text that does not open was not acknowledged");
                        }
                    } else {
                        // And a sealed undecodable frame is malformed.
                        prop_assert_eq!(&stats, &count(|s| &mut s.malformed));
                        prop_assert!(quiet);
                    }
                } else if let Ok(decoded) = decoded {
                    // A plain frame (no mutation made a channel or peer
                    // datagram of it: those decode as no frame).
                    let hint =
                        matches!(decoded, Frame::Error { code: ErrorCode::NotLoggedIn, .. }) && is_server(d, from);
                    if hint {
                        // Then the server's hint that it forgot the channel is
                        // counted nowhere: believed (a fresh Hello goes) only
                        // while a keepalive awaits its answer, else ignored.
                        prop_assert_eq!(&stats, &before);
                        let hello = d.sent[sent..].iter().any(|t| t.payload.first() == Some(&layout::tag::HELLO));
                        prop_assert!(hello || quiet, "an ignored NotLoggedIn caused {:?}", &d.events[seen..]);
                        prop_assert_eq!(hello, online && !d.client.is_logged_in());
                    } else {
                        // Then any other frame outside the channel, from the
                        // server's address or not, is dropped as
                        // unauthenticated and changes nothing.
                        prop_assert_eq!(&stats, &count(|s| &mut s.unauthenticated));
                        prop_assert!(quiet, "a plain {:?} caused {:?}", decoded, &d.events[seen..]);
                    }
                } else if let Some(Expect::Refused(expected)) = plain {
                    // Then plain bytes no decoder takes are counted once
                    // (what a mutation made a channel or peer datagram of as
                    // its first byte and header say).
                    prop_assert_eq!(&stats, &expected);
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
            ClientOp::Offer { slot, request, reply, initiator, peer, impostor, peer_candidates, strategy } => {
                let session = slot_id(*slot);
                // (An initiator's offer answers the client's latest connect
                // to the peer, when asked to and there was one.)
                let connected = d.to_server.iter().rev().find_map(|f| match f {
                    Frame::Connect { request, peer: p, .. } if p == peer => Some(*request),
                    _ => None,
                });
                let request = connected.filter(|_| *reply && *initiator).unwrap_or(*request);
                let key = if *impostor { user_key("mallory") } else { user_key(peer) }.public();
                let pinned = d.client.config().peer_keys.get(peer).copied();
                let (online, existed) = (d.client.is_logged_in(), d.client.sessions().any(|s| s == session));
                let offer = Frame::Offer {
                    request,
                    session,
                    peer_key: key.0,
                    initiator: *initiator,
                    peer: peer.clone(),
                    peer_candidates: peer_candidates.clone(),
                    strategy: *strategy,
                    peer_profile: NatProfile::default(),
                    peer_transport: punchline_core::wire::frame::Transport::Udp,
                };
                d.feed_sealed(&offer.encode());
                let events = &d.events[seen..];
                let opened =
                    events.iter().any(|e| matches!(e, ClientEvent::SessionOpened { session: s, .. } if *s == session));
                let changed = events.iter().any(|e| {
                    matches!(e, ClientEvent::PeerKeyChanged { peer: p, pinned: was, offered }
                        if p == peer && Some(*was) == pinned && *offered == key)
                });
                if !online || existed {
                    // Then an offer that does not open, or for a session the
                    // client has (the peer moved), opens nothing.
                    prop_assert!(!opened, "an offer opened {} again", session);
                } else if pinned.is_some_and(|p| p != key) {
                    // Then a directory naming another key than the pinned one
                    // is refused loudly (unless the offer answers nothing the
                    // client asked for), and no session is made with it.
                    prop_assert!(!opened, "a session with another key than {}'s pinned one", peer);
                    prop_assert!(changed || *initiator, "a changed key for {} went unreported", peer);
                    if changed && *initiator {
                        let failed = events.iter().any(|e| {
                            matches!(e, ClientEvent::ConnectFailed { peer: p, reason: ConnectFailure::PeerKeyChanged }
                                if p == peer)
                        });
                        prop_assert!(failed, "a connect to {} did not fail for its changed key", peer);
                    }
                } else if opened {
                    // Then a session opens with the key pinned (now, on first
                    // use) ...
                    let learned = events.iter().any(
                        |e| matches!(e, ClientEvent::PeerKeyLearned { peer: p, key: k } if p == peer && *k == key),
                    );
                    prop_assert_eq!(learned, pinned.is_none(), "{} pinned {:?} before", peer, pinned);
                    prop_assert_eq!(d.client.config().peer_keys.get(peer), Some(&key));
                    // ... and, as the session's responder, the client relays
                    // its hello at once (an IK message 1 and nothing else).
                    let hellos: Vec<usize> = d.relays[relays_from..]
                        .iter()
                        .filter(|(s, p)| *s == session && p[0] == layout::tag::PEER_HELLO)
                        .map(|(_, p)| p.len())
                        .collect();
                    let expected = if *initiator { vec![] } else { vec![layout::PEER_HEADER + IK_MESSAGE_1_OVERHEAD] };
                    prop_assert_eq!(hellos, expected);
                }
            }
            ClientOp::Handshake { slot, how } => play_handshake(d, &mut model, *slot, how)?,
            ClientOp::Honest { slot, act, via } => {
                // When the test's peer sends its next frame, sealed in the
                // session's keys (once it has them).
                let session = slot_id(*slot);
                let Some(peer) = model.slots[*slot].as_mut() else { continue };
                if !d.peer_ends.contains_key(&session) {
                    continue;
                }
                peer.counter += 1;
                let counter = peer.counter;
                let frame = match act {
                    Honest::Stream(message) => {
                        peer.next_seq += 1;
                        let body = SessionBody::Stream { seq: peer.next_seq - 1, message: message.clone() };
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
                    Honest::File(body) => Frame::Session { session, counter, body: body.clone() },
                };
                let end = d.peer_ends.get_mut(&session).expect("checked above");
                let (sealed, _) = end.seal(d.now, &frame.encode()).expect("counters left");
                let expect = model.expect_via(d, &before, session, &sealed, via, Held::Authentic);
                deliver_peer(d, session, sealed.clone(), via);
                // Then it is opened (or held until the client's keys exist),
                // and never counted as a refusal; or, relayed while the
                // client is logged out, refused with the channel.
                assert_outcome(d, &expect, &before, seen)?;
                if expect == Expect::Opened || expect == Expect::Refused(before.clone()) {
                    model.slots[*slot].as_mut().expect("checked above").delivered.push(sealed);
                }
            }
            ClientOp::Peer { slot, frame, seal, via, mutations } => {
                // When a random peer frame of the slot's session arrives,
                // sealed some way.
                let session = slot_id(*slot);
                let mut frame = frame.clone();
                set_session(&mut frame, session);
                let plain = frame.encode();
                let sealed = match seal {
                    Seal::Right => match d.peer_ends.get_mut(&session) {
                        Some(end) => end.seal(d.now, &plain).expect("counters left").0,
                        None => continue,
                    },
                    Seal::Reflected => match d.peer_sent.get(&session) {
                        Some(own) => own.clone(),
                        None => continue,
                    },
                    Seal::WrongKey => attackers_seal(session, &plain),
                    Seal::Replayed { back } => {
                        let Some(peer) = model.slots[*slot].as_ref() else { continue };
                        let Some(old) = recent(&peer.delivered, *back) else { continue };
                        old
                    }
                    Seal::Unsealed => plain,
                };
                let bytes = mutate(sealed.clone(), mutations);
                // (Only the peer's own datagram, unaltered and new, is
                // authentic: reflected, replayed, foreign, clear or altered
                // ones are not.)
                let authentic = matches!(seal, Seal::Right) && bytes == sealed;
                let expect = model.expect_via(d, &before, session, &bytes, via, held_as(authentic, Some(&frame)));
                deliver_peer(d, session, bytes.clone(), via);
                // Then a datagram that is not authentic never acts: it is
                // counted once (as unauthenticated, or malformed when it is
                // no peer datagram of the session it is relayed for), or
                // waits for the session's keys and is refused then.
                assert_outcome(d, &expect, &before, seen)?;
                if authentic && (expect == Expect::Opened || expect == Expect::Refused(before.clone())) {
                    model.slots[*slot].as_mut().expect("a slot the test plays").delivered.push(bytes);
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
            ClientOp::SendText { to, text } => {
                // When the application sends a text (sealed to the
                // recipient's key once the directory confirmed it: checked
                // as it goes, in `Model::follow`).
                if let Ok(id) = d.client.send_text(d.now, NAMES[*to], text) {
                    model.texts.insert(id, (NAMES[*to].to_owned(), text.clone()));
                }
                d.drain();
            }
            ClientOp::AnswerLookups { known, impostor } => {
                // When the directory answers the client's lookups (each
                // asking again replaces the one before: only the latest for
                // a user is awaited).
                let lookups: Vec<(u32, String)> = d
                    .to_server
                    .iter()
                    .filter_map(|f| match f {
                        Frame::Lookup { request, user, .. } => Some((*request, user.clone())),
                        _ => None,
                    })
                    .collect();
                let latest = |request: u32, user: &str| {
                    lookups.iter().rev().find(|(_, u)| u == user).map(|l| l.0) == Some(request)
                };
                for (request, user) in &lookups[model.lookups_answered..] {
                    let (seen, read) = (d.events.len(), d.to_server.len());
                    let pinned = d.client.config().peer_keys.get(user).copied();
                    let key = match (*known, *impostor) {
                        (false, _) => None,
                        (true, true) => Some(user_key("mallory").public()),
                        (true, false) => Some(user_key(user).public()),
                    };
                    let online = d.client.is_logged_in();
                    let reply = Frame::LookupReply { request: *request, online: true, key: key.map(|k| k.0) };
                    d.feed_sealed(&reply.encode());
                    let events = &d.events[seen..];
                    let texts =
                        d.to_server[read..].iter().filter(|f| matches!(f, Frame::TextSend { to, .. } if to == user));
                    let failed = |reason: TextFailure| {
                        events.iter().any(|e| matches!(e, ClientEvent::TextFailed { reason: r, .. } if *r == reason))
                    };
                    if !latest(*request, user) {
                        // Then a stale answer changes nothing.
                        prop_assert!(events.is_empty(), "a stale lookup answer caused {:?}", events);
                        prop_assert_eq!(texts.count(), 0, "a stale lookup answer sealed a text");
                        continue;
                    }
                    match key {
                        // Then without a key nothing is sealed to the user,
                        // and what waited for it fails.
                        None => {
                            prop_assert_eq!(texts.count(), 0, "a text sealed to {} without a key", user);
                            if online && events.iter().any(|e| matches!(e, ClientEvent::TextFailed { .. })) {
                                prop_assert!(failed(TextFailure::Rejected(TextRejection::UnknownRecipient)));
                            }
                        }
                        // Then a key other than the pinned one is refused
                        // loudly: nothing is sealed to it.
                        Some(key) if pinned.is_some_and(|p| p != key) => {
                            prop_assert_eq!(texts.count(), 0, "a text sealed to a key {} did not pin", user);
                            if online {
                                let changed = events
                                    .iter()
                                    .any(|e| matches!(e, ClientEvent::PeerKeyChanged { peer, .. } if peer == user));
                                prop_assert!(changed, "a changed key for {} went unreported", user);
                            }
                        }
                        // Then the key confirms (or pins) the user's, and the
                        // texts to it go out sealed to it (checked in
                        // `Model::follow`).
                        Some(_) => {}
                    }
                }
                model.lookups_answered = lookups.len();
            }
            ClientOp::DeliverText { from, id, text, how } => {
                // When the server delivers a text from a pool user.
                let name = NAMES[*from];
                let sealed = match how {
                    TextSeal::Right => {
                        seal_text(user_key(name), &client_key(), (name, "alice", *id), text, model.seed())
                    }
                    TextSeal::Impostor => {
                        seal_text(user_key("mallory"), &client_key(), (name, "alice", *id), text, model.seed())
                    }
                    TextSeal::Misaddressed => {
                        seal_text(user_key(name), &client_key(), (name, "carol", *id), text, model.seed())
                    }
                    TextSeal::Garbage(bytes) => bytes.clone(),
                };
                let sealer = match how {
                    TextSeal::Right => Some(user_key(name).public()),
                    TextSeal::Impostor => Some(user_key("mallory").public()),
                    _ => None,
                };
                let pinned = d.client.config().peer_keys.get(name).copied();
                let (online, fresh) = (d.client.is_logged_in(), !model.received.contains(&(name.to_owned(), *id)));
                let read = d.to_server.len();
                d.feed_sealed(&Frame::TextDeliver { from: name.to_owned(), id: *id, sealed }.encode());
                if !online {
                    continue;
                }
                let raised = d.events[seen..].iter().any(|e| {
                    matches!(e, ClientEvent::TextReceived { from: f, id: i, text: t }
                        if f == name && i == id && t == text)
                });
                let acked = d.to_server[read..]
                    .iter()
                    .any(|f| matches!(f, Frame::TextDeliverAck { from: f, id: i, .. } if f == name && i == id));
                // Then the text is acknowledged, seen or not, so the server
                // stops delivering it ...
                prop_assert!(acked, "a delivered text was not acknowledged");
                match sealer {
                    // ... one that does not open for the client (sealed for
                    // another recipient, or garbage) is counted and never
                    // raised ...
                    None => {
                        prop_assert_eq!(d.client.stats(), &plus_one(&before, |s| &mut s.unauthenticated));
                        prop_assert!(!raised);
                    }
                    // ... one sealed by another key than the sender's pinned
                    // one is refused loudly, unseen ...
                    Some(key) if pinned.is_some_and(|p| p != key) => {
                        prop_assert_eq!(d.client.stats(), &before);
                        prop_assert!(!raised, "a text sealed by another key than {}'s was raised", name);
                        let changed = d.events[seen..]
                            .iter()
                            .any(|e| matches!(e, ClientEvent::PeerKeyChanged { peer, .. } if peer == name));
                        prop_assert!(changed);
                    }
                    // ... and one sealed by the sender's key (or the first
                    // key seen for it, pinned now) is raised once.
                    Some(key) => {
                        prop_assert_eq!(d.client.stats(), &before);
                        prop_assert_eq!(raised, fresh, "raised {} (fresh: {})", raised, fresh);
                        prop_assert_eq!(d.client.config().peer_keys.get(name), Some(&key));
                    }
                }
            }
            ClientOp::Advance(by) => d.advance(*by),
        }
        model.follow(d, seen, relays_from)?;
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
        // alternate address) and the client's peers.
        let now = Instant::now();
        let mut d = logged_in_client(now, with_alt, token);
        // When it is fed garbage, forged and mutated server frames, offers
        // naming keys the test holds, genuine and forged session
        // handshakes, honest and forged peer datagrams, texts, with time
        // passing.
        run_client_ops(&mut d, &ops)?;
        // Then nothing panicked, every transmit was well formed and left from
        // a socket the driver holds, and what it sealed for a session the
        // test plays opened there (checked by the driver), and after the
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
