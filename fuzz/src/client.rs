//! The client machine driven by an arbitrary sequence of operations, with
//! the driver playing its server: it answers the client's Hellos with real
//! Welcomes (or errors, or cookie replies), answers key requests and STUN
//! Binding requests, and holds the server's end of each channel, so that
//! what it seals reaches the client's logic. Beside that: raw and plain
//! datagrams from the server's addresses and from strangers, forged,
//! mutated and replayed sealed datagrams, peer-shaped bytes, time, timeouts
//! and the client's commands.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use punchline_core::client::{Client, ClientConfig, ClientEvent};
use punchline_core::messaging::{MessageId, TextRejection, TextStatus};
use punchline_core::nat::{NatProfile, Strategy};
use punchline_core::secure::{seal_text, ChannelEnd, HelloReceived, StaticKey};
use punchline_core::wire::channel::{self as layout, Hello};
use punchline_core::wire::frame::{CloseReason, ErrorCode, Frame, SessionId};
use punchline_core::wire::{self, stun, MAX_DATAGRAM};
use punchline_core::{Machine, Seed, SocketId, Transmit};

use crate::input::{cookie_reply, hello_around, mutate, registered_frame, Input};

/// Where datagrams come from: the server, its alternate address, and two
/// strangers (peers, or forgers).
const SOURCES: [&str; 4] = ["203.0.113.10:3478", "203.0.113.11:3479", "198.51.100.7:5000", "[2001:db8::7]:5000"];

/// Who the client names: two other users, itself, and an invalid name.
const USERS: [&str; 4] = ["bob", "carol", "alice", "not a name"];

/// The most operations one input drives.
const MAX_OPS: usize = 128;

/// The most Hellos the driver answers in one input.
const MAX_HANDSHAKES: usize = 8;

/// The most sockets the driver opens in one run.
const MAX_SOCKETS: u32 = 64;

fn sources() -> &'static [SocketAddr; 4] {
    static ADDRS: OnceLock<[SocketAddr; 4]> = OnceLock::new();
    ADDRS.get_or_init(|| SOURCES.map(|a| a.parse().expect("an address")))
}

/// The key of user `name` the driver plays (bob, carol...), derived as
/// `ClientConfig::new` derives each user's, made once per process.
fn user_key(name: &str) -> &'static StaticKey {
    static KEYS: OnceLock<Vec<StaticKey>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| USERS.iter().map(|u| StaticKey::derive(Seed::from(0), u)).collect());
    &keys[USERS.iter().position(|u| *u == name).unwrap_or(0)]
}

/// The server's key (the one `ServerConfig::new` derives), and the
/// client's identity (the one `ClientConfig::new` derives for "alice").
fn keys() -> &'static (StaticKey, StaticKey) {
    static KEYS: OnceLock<(StaticKey, StaticKey)> = OnceLock::new();
    KEYS.get_or_init(|| (StaticKey::derive(Seed::from(0), "server"), StaticKey::derive(Seed::from(0), "alice")))
}

/// How deep one run got: what the replay test checks its corpus reaches.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reached {
    /// `LoggedIn` events.
    pub logins: usize,
    /// Sealed frames the client sent that the driver opened.
    pub sealed_opened: usize,
    /// `SessionOpened` events.
    pub sessions: usize,
    /// `TextReceived` events.
    pub texts: usize,
    /// `NatProfile` events.
    pub profiles: usize,
    /// Cookie replies the driver sent for a Hello.
    pub cookies: usize,
}

struct Driver {
    client: Client,
    now: Instant,
    /// Sockets the client was given and has not released.
    sockets: Vec<(SocketId, SocketAddr)>,
    next_socket: u32,
    /// `OpenSockets` requests not answered yet.
    requests: Vec<(u32, u16)>,
    /// The latest Hello the client sent, not answered yet.
    hello: Option<Transmit>,
    handshakes: usize,
    /// The nonce of the latest key request.
    key_request: Option<(SocketId, u64)>,
    /// Binding requests the client sent: socket, destination, transaction.
    bindings: Vec<(SocketId, SocketAddr, stun::TransactionId)>,
    /// The server's end of every channel the driver opened, with its token;
    /// the last is the current one.
    ends: Vec<(u64, ChannelEnd)>,
    /// Sealed datagrams fed unmodified, for replays.
    sealed_fed: Vec<Vec<u8>>,
    /// Sessions the driver offered.
    sessions: Vec<SessionId>,
    reached: Reached,
}

/// Runs the operations the input describes. Nothing panics, and:
/// - every transmit is 1..=`MAX_DATAGRAM` bytes from a socket the client
///   was given and did not release, and parses; a TTL only on openers, the
///   configured one; in the clear only peer frames, openers and STUN;
///   channel datagrams only to the server's addresses; a sealed frame opens
///   with the server end of its channel, to its plaintext; a Hello carries
///   a sound Login (mac1 as an independent BLAKE2s computes it);
/// - a frame not sealed in the current channel is never acted on: a plain
///   signaling frame (from the server's address or not: a forged
///   `TextDeliver`, `Offer`, `KeepaliveAck`...), a mutated, replayed or
///   forged sealed datagram, one sealed in a channel the client left, causes
///   no event and no transmit (but a `NotLoggedIn` from the server's address,
///   the server's hint, which may start a login);
/// - sockets released were opened on request, never the primary;
/// - after a timeout the next deadline is in the future (within 64 wake-ups
///   at one instant: else a driver spins).
pub fn check(data: &[u8]) -> Reached {
    let mut input = Input::new(data);
    let src = sources();
    let mut config = ClientConfig::new("alice", src[0]);
    if !input.one_in(4) {
        config.server_key = Some(keys().0.public());
    }
    if input.bool() {
        config.alt_server = Some(src[1]);
    }
    let now = Instant::now();
    let primary = (SocketId(0), "192.0.2.50:40000".parse().expect("an address"));
    let mut d = Driver {
        client: Client::new(config, primary, now),
        now,
        sockets: vec![primary],
        next_socket: 1,
        requests: Vec::new(),
        hello: None,
        handshakes: 0,
        key_request: None,
        bindings: Vec::new(),
        ends: Vec::new(),
        sealed_fed: Vec::new(),
        sessions: Vec::new(),
        reached: Reached::default(),
    };
    d.drain();
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        match input.byte() % 20 {
            // Any bytes from anyone on any socket.
            0 => {
                let (socket, from, bytes) = (d.pick_socket(&mut input), input.pick(src), input.bytes());
                d.feed(socket, from, &bytes);
            }
            // A registered frame with any body, in the clear.
            1 => {
                let (from, kind, body) = (input.pick(src), input.byte(), input.bytes());
                d.plain(from, &registered_frame(kind, &body));
            }
            // The server answers the latest Hello.
            2 | 3 => d.answer_hello(&mut input),
            // The server answers the latest Hello with a cookie reply.
            4 => {
                let Some(t) = d.hello.take() else { continue };
                let hello = Hello::parse(&t.payload).expect("checked when sent");
                let cookie = std::array::from_fn(|_| input.byte());
                let nonce = std::array::from_fn(|_| input.byte());
                let reply = cookie_reply(&keys().0.public(), hello.sender, &cookie, &nonce, &hello.mac1);
                d.reached.cookies += 1;
                d.feed(t.socket, t.destination, &reply);
            }
            // The server (or an impostor) answers the latest key request.
            5 => {
                let Some((socket, nonce)) = d.key_request else { continue };
                let nonce = if input.one_in(8) { input.u64() } else { nonce };
                let key = if input.one_in(4) { keys().1.public() } else { keys().0.public() };
                d.feed(socket, src[0], &layout::key_reply(nonce, &key.0));
            }
            // A server frame sealed in the current channel (from the server,
            // or forwarded from elsewhere), maybe mutated after sealing.
            6..=9 => {
                let Some(frame) = d.server_frame(&mut input) else { continue };
                let from = if input.one_in(8) { input.pick(src) } else { src[0] };
                let Some(mut sealed) = d.ends.last().and_then(|(_, end)| end.seal(&frame)) else { continue };
                if input.one_in(8) && mutate(&mut sealed, &mut input) {
                    d.quiet(from, &sealed, "a mutated sealed datagram");
                } else {
                    d.sealed_fed.push(sealed.clone());
                    d.feed(d.sockets[0].0, from, &sealed);
                }
            }
            // The same, in the clear.
            10 => {
                let Some(frame) = d.server_frame(&mut input) else { continue };
                d.plain(input.pick(src), &frame);
            }
            // The same, sealed in a channel the client left.
            11 => {
                let Some(frame) = d.server_frame(&mut input) else { continue };
                let n = d.ends.len();
                if n < 2 {
                    continue;
                }
                let (_, end) = &d.ends[usize::from(input.byte()) % (n - 1)];
                let Some(sealed) = end.seal(&frame) else { continue };
                d.quiet(src[0], &sealed, "a frame sealed in a channel the client left");
            }
            // A sealed datagram fed before, again.
            12 => {
                let Some(old) = input.recent(&d.sealed_fed).cloned() else { continue };
                d.quiet(src[0], &old, "a replayed sealed datagram");
            }
            // A forgery in the sealed layout, naming the client's index.
            13 => {
                // (With a counter no channel reaches: the keys grow from the
                // input, so the fuzzer can learn a datagram another run sealed,
                // which this run's server end would seal too.)
                let (receiver, counter, ciphertext) = (input.u64(), input.u64() | 1 << 63, input.bytes());
                let mut forged = layout::sealed_buffer(receiver, counter, ciphertext.len());
                forged[layout::SEALED_HEADER..].copy_from_slice(&ciphertext);
                if !d.sealed_fed.contains(&forged) {
                    d.quiet(src[0], &forged, "a forged sealed datagram");
                }
            }
            // The server answers the client's Binding requests.
            14 => {
                let mapped = SocketAddr::new(input.pick(src).ip(), input.u16());
                for (socket, to, tid) in std::mem::take(&mut d.bindings) {
                    if !input.one_in(4) {
                        d.feed(socket, to, &stun::binding_success(tid, mapped));
                    }
                }
            }
            // Time passes: a little, a lot, or to the next deadline.
            15 => match input.byte() % 3 {
                0 => d.advance(Duration::from_millis(input.u16().into())),
                1 => d.advance(Duration::from_secs(input.byte().into())),
                _ => {
                    let next = d.client.poll_timeout().map_or(Duration::ZERO, |at| at.saturating_duration_since(d.now));
                    d.advance(next);
                }
            },
            // The driver answers a socket request, with up to `count`.
            16 => {
                if d.requests.is_empty() {
                    continue;
                }
                let (request, asked) = d.requests.remove(usize::from(input.byte()) % d.requests.len());
                let count = u32::from(input.byte()).min(asked.into()).min(MAX_SOCKETS.saturating_sub(d.next_socket));
                let opened: Vec<(SocketId, SocketAddr)> = (d.next_socket..d.next_socket + count)
                    .map(|n| (SocketId(n), SocketAddr::from(([192, 0, 2, 50], 40_000 + n as u16))))
                    .collect();
                d.next_socket += count;
                d.sockets.extend_from_slice(&opened);
                d.client.sockets_opened(d.now, request, &opened);
                d.drain();
            }
            // Peer-shaped bytes: a registered peer frame with any body,
            // directly from a stranger or relayed in the channel.
            17 => {
                let (kind, body, relayed) = (input.byte(), input.bytes(), input.bool());
                let session = input.recent(&d.sessions).copied().unwrap_or(SessionId(input.u64()));
                let peer = peer_frame(kind, session, &body);
                if relayed {
                    let relayed = Frame::Relayed { session, payload: peer }.encode();
                    let Some(sealed) = d.ends.last().and_then(|(_, end)| end.seal(&relayed)) else { continue };
                    d.sealed_fed.push(sealed.clone());
                    d.feed(d.sockets[0].0, src[0], &sealed);
                } else {
                    let (socket, from) = (d.pick_socket(&mut input), input.pick(&src[2..]));
                    d.feed(socket, from, &peer);
                }
            }
            // A command.
            _ => d.command(&mut input),
        }
    }
    d.reached
}

/// A peer frame of the registry's peer rows (`kind` picks one) in the
/// clear: its tag, the version, the session id, then `body`. A client must
/// refuse it: peer frames travel only sealed end to end.
fn peer_frame(kind: u8, session: SessionId, body: &[u8]) -> Vec<u8> {
    let peers: Vec<u8> = punchline_core::wire::frame::FRAME_TYPES.iter().filter(|t| t.peer).map(|t| t.tag).collect();
    let mut out = vec![peers[usize::from(kind) % peers.len()], punchline_core::wire::frame::VERSION];
    let mut id = session.0;
    while id >= 0x80 {
        out.push(id as u8 | 0x80);
        id >>= 7;
    }
    out.push(id as u8);
    out.extend_from_slice(body);
    out
}

impl Driver {
    fn pick_socket(&self, input: &mut Input<'_>) -> SocketId {
        self.sockets[usize::from(input.byte()) % self.sockets.len()].0
    }

    /// Feeds one datagram; returns what followed: the transmits and events.
    fn feed(&mut self, socket: SocketId, from: SocketAddr, payload: &[u8]) -> (usize, Vec<ClientEvent>) {
        self.client.handle_datagram(self.now, socket, from, payload);
        self.drain()
    }

    /// Feeds what must not be acted on: no transmit, no event.
    fn quiet(&mut self, from: SocketAddr, payload: &[u8], what: &str) {
        let (sent, events) = self.feed(self.sockets[0].0, from, payload);
        assert!(sent == 0 && events.is_empty(), "{what} caused {sent} transmits and {events:?}");
    }

    /// Feeds a datagram in the clear: a signaling frame outside the channel
    /// is never acted on (but the server's `NotLoggedIn` hint), nor is a
    /// peer frame outside its session's encryption.
    fn plain(&mut self, from: SocketAddr, payload: &[u8]) {
        let is_server = from == self.client.config().server || Some(from) == self.client.config().alt_server;
        let decoded = (payload.len() <= MAX_DATAGRAM).then(|| Frame::decode(payload).ok()).flatten();
        match decoded {
            Some(Frame::Error { code: ErrorCode::NotLoggedIn, .. }) if is_server => {
                drop(self.feed(self.sockets[0].0, from, payload))
            }
            Some(frame) => self.quiet(from, payload, &format!("a plain {frame:?}")),
            None => drop(self.feed(self.sockets[0].0, from, payload)),
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        for _ in 0..64 {
            self.client.handle_timeout(self.now);
            self.drain();
            match self.client.poll_timeout() {
                Some(at) if at <= self.now => {}
                _ => return,
            }
        }
        panic!("the client's deadline stays at or before now: its driver would spin");
    }

    /// The server's side of a handshake: reads the latest Hello (it must be
    /// sound) and answers it with a Welcome carrying `LoginOk` or an error,
    /// maybe mutated.
    fn answer_hello(&mut self, input: &mut Input<'_>) {
        let (token, ok, code, reflexive, mutated) =
            (input.u64(), !input.one_in(4), input.byte(), input.pick(sources()), input.one_in(8));
        if self.handshakes >= MAX_HANDSHAKES {
            return;
        }
        let Some(t) = self.hello.take() else { return };
        self.handshakes += 1;
        let (server, identity) = keys();
        let hello = Hello::parse(&t.payload).expect("checked when sent");
        let received = HelloReceived::read(server, hello.sender, hello.noise, Seed::from(token));
        // (A client that learned an impostor's key from a key reply encrypts
        // to that key instead.)
        let pinned = self.client.config().server_key == Some(server.public());
        let Some(received) = received else {
            assert!(!pinned, "the client's Hello does not read with the server's key it pinned");
            return;
        };
        assert_eq!(received.client_key(), identity.public(), "the Hello proves the client's identity");
        let Ok(Frame::Login { request, user, .. }) = Frame::decode(received.payload()) else {
            panic!("a Hello without a Login inside")
        };
        assert_eq!(user, "alice");
        let answer = if ok {
            Frame::LoginOk { request, token, reflexive }
        } else {
            let codes = [ErrorCode::BadUserName, ErrorCode::KeyMismatch, ErrorCode::RateLimited, ErrorCode::BadRequest];
            Frame::Error { request, code: codes[usize::from(code) % codes.len()] }
        };
        let Some((mut welcome, end)) = received.answer(&answer.encode(), token) else { return };
        if mutated && mutate(&mut welcome, input) {
            let before = self.client.is_logged_in();
            let (_, events) = self.feed(t.socket, t.destination, &welcome);
            assert!(events.is_empty(), "a mutated Welcome caused {events:?}");
            assert_eq!(self.client.is_logged_in(), before);
            return;
        }
        // The client takes the channel only if it waited for this Welcome
        // (not logged in already, no other Hello sent since).
        // (Held while the Welcome is fed: the client's proof is sealed in it.)
        let online = self.client.is_logged_in();
        self.ends.push((token, end));
        self.feed(t.socket, t.destination, &welcome);
        if !ok || online || !self.client.is_logged_in() {
            self.ends.pop();
        }
    }

    /// A frame a server sends a client, from the input (encoded), or any
    /// bytes; `None` when the input chose an offer and none is possible.
    fn server_frame(&mut self, input: &mut Input<'_>) -> Option<Vec<u8>> {
        let kind = input.byte();
        let session = match input.byte() % 4 {
            0 => SessionId(input.u64()),
            _ => input.recent(&self.sessions).copied().unwrap_or(SessionId(input.byte().into())),
        };
        let request = u32::from(input.byte() % 4);
        let id = MessageId { conversation: u64::from(input.byte() % 4), seq: u64::from(input.byte()) };
        let addr = SocketAddr::new(input.pick(sources()).ip(), input.u16());
        let peer = USERS[usize::from(input.byte()) % USERS.len()].to_owned();
        let frame = match kind % 14 {
            0 => Frame::KeepaliveAck { reflexive: addr },
            1 => Frame::LookupReply { request, online: input.bool(), key: input.bool().then(|| [input.byte(); 32]) },
            2..=4 => {
                let strategies = [Strategy::Punch, Strategy::Predict, Strategy::Birthday, Strategy::RelayOnly];
                let candidates = (0..input.byte() % 4).map(|_| input.pick(sources())).collect();
                let session = SessionId(u64::from(input.byte() % 4));
                self.sessions.push(session);
                Frame::Offer {
                    request,
                    session,
                    // The peer's own key (its sessions can be keyed) or any.
                    peer_key: if input.bool() { user_key(&peer).public().0 } else { [input.byte(); 32] },
                    initiator: input.bool(),
                    peer,
                    peer_candidates: candidates,
                    strategy: input.pick(&strategies),
                    peer_profile: NatProfile::default(),
                    peer_transport: punchline_core::wire::frame::Transport::Udp,
                }
            }
            5 => Frame::Relayed { session, payload: input.bytes() },
            6 => {
                let reasons = [CloseReason::Peer, CloseReason::PeerOffline, CloseReason::PeerTimeout];
                Frame::SessionEnded { session, reason: input.pick(&reasons) }
            }
            7 => Frame::DiscoverReply { nonce: input.u64(), reflexive: addr },
            8 => {
                let codes =
                    [ErrorCode::NotLoggedIn, ErrorCode::UnknownPeer, ErrorCode::PeerOffline, ErrorCode::KeyMismatch];
                Frame::Error { request, code: input.pick(&codes) }
            }
            9 => Frame::TextAck { id, status: input.pick(&[TextStatus::Delivered, TextStatus::Stored]) },
            10 => {
                let reasons = [TextRejection::TooLarge, TextRejection::UnknownRecipient, TextRejection::RateLimited];
                Frame::TextRejected { id, reason: input.pick(&reasons) }
            }
            11 => {
                // Sealed to the client by the peer's own key (so it opens,
                // and is shown unless another key is pinned for the peer),
                // or any bytes.
                let sealed = if input.bool() {
                    let text = String::from_utf8_lossy(&input.bytes()).into_owned();
                    let names = (peer.as_str(), "alice", id);
                    seal_text(user_key(&peer), &keys().1.public(), names, &text, Seed::from(input.u64()))
                } else {
                    input.bytes()
                };
                Frame::TextDeliver { from: peer, id, sealed }
            }
            12 => Frame::InboxStatus { pending: input.byte().into() },
            _ => {
                return Some(if input.bool() { registered_frame(input.byte(), &input.bytes()) } else { input.bytes() })
            }
        };
        let mut bytes = frame.encode();
        if input.one_in(8) {
            mutate(&mut bytes, input);
        }
        Some(bytes)
    }

    fn command(&mut self, input: &mut Input<'_>) {
        let (now, user) = (self.now, USERS[usize::from(input.byte()) % USERS.len()]);
        let open: Vec<SessionId> = self.client.sessions().collect();
        let session = (!open.is_empty()).then(|| open[usize::from(input.byte()) % open.len()]);
        match input.byte() % 8 {
            0 => drop(self.client.connect(now, user)),
            1 => drop(self.client.lookup(now, user)),
            2 => {
                let len = usize::from(input.u16()) % 1400;
                drop(self.client.send(now, session.unwrap_or(SessionId(0)), &vec![0x5a; len]));
            }
            3 => drop(self.client.send_text(now, user, &String::from_utf8_lossy(&input.bytes()))),
            4 => drop(self.client.sync_inbox(now)),
            5 => {
                let id = MessageId { conversation: u64::from(input.byte() % 4), seq: u64::from(input.byte()) };
                self.client.ack_text(now, user, id);
            }
            6 => self.client.close(now, session.unwrap_or(SessionId(0))),
            _ => self.client.logout(now),
        }
        self.drain();
    }

    /// Takes everything the client queued and checks it (see [`check`]).
    fn drain(&mut self) -> (usize, Vec<ClientEvent>) {
        let mut sent = 0;
        while let Some(t) = self.client.poll_transmit() {
            sent += 1;
            self.check_transmit(t);
        }
        let mut events = Vec::new();
        while let Some(event) = self.client.poll_event() {
            match &event {
                ClientEvent::OpenSockets { request, count } => {
                    assert!((1..=1024).contains(count), "asked for {count} sockets");
                    self.requests.push((*request, *count));
                }
                ClientEvent::ReleaseSocket { socket } => {
                    assert_ne!(*socket, self.sockets[0].0, "released the primary socket");
                    let at = self.sockets.iter().position(|(id, _)| id == socket);
                    let Some(at) = at else { panic!("released {socket:?}, which it does not hold") };
                    self.sockets.remove(at);
                }
                ClientEvent::LoggedIn { .. } => self.reached.logins += 1,
                ClientEvent::SessionOpened { .. } => self.reached.sessions += 1,
                ClientEvent::TextReceived { .. } => self.reached.texts += 1,
                ClientEvent::NatProfile(_) => self.reached.profiles += 1,
                _ => {}
            }
            events.push(event);
        }
        (sent, events)
    }

    fn check_transmit(&mut self, t: Transmit) {
        let len = t.payload.len();
        assert!(len > 0 && len <= MAX_DATAGRAM, "a {len}-byte datagram");
        assert!(self.sockets.iter().any(|&(id, _)| id == t.socket), "sent from {:?}, not held", t.socket);
        let config = self.client.config();
        // The server's addresses: its primary and alternate, and their
        // crossed combinations, on which it listens too.
        let servers: Vec<SocketAddr> = std::iter::once(config.server).chain(config.alt_server).collect();
        let to_server = servers.iter().any(|a| a.ip() == t.destination.ip())
            && servers.iter().any(|a| a.port() == t.destination.port());
        match wire::classify(&t.payload) {
            wire::Kind::Stun => {
                let message = stun::Message::decode(&t.payload);
                let Ok(message) = message else { panic!("an undecodable STUN message: {message:?}") };
                assert_eq!((t.ttl, &t.plaintext), (None, &None));
                if message.class == stun::Class::Request && to_server {
                    self.bindings.push((t.socket, t.destination, message.transaction_id));
                }
            }
            wire::Kind::Punchline if layout::is_channel_tag(t.payload[0]) => {
                assert!(to_server, "a channel datagram to {}, not the server", t.destination);
                assert_eq!(t.ttl, None);
                match t.payload[0] {
                    layout::tag::HELLO => {
                        let hello = Hello::parse(&t.payload).expect("a Hello parses");
                        let independent = hello_around(&keys().0.public(), hello.sender, hello.noise);
                        if config.server_key == Some(keys().0.public()) {
                            assert_eq!(&independent[len - 32..len - 16], &hello.mac1, "mac1");
                        }
                        assert_eq!(t.destination, config.server, "a Hello to another address than the server's");
                        assert!(t.plaintext.is_some());
                        self.hello = Some(t);
                    }
                    layout::tag::KEY_REQUEST => {
                        let nonce = layout::parse_key_request(&t.payload).expect("a key request parses");
                        self.key_request = Some((t.socket, nonce));
                    }
                    layout::tag::SEALED => {
                        let (receiver, _, _) = layout::parse_sealed(&t.payload).expect("a sealed frame parses");
                        let plaintext = t.plaintext.as_deref();
                        let frame = plaintext.map(Frame::decode);
                        assert!(matches!(frame, Some(Ok(ref f)) if !f.is_peer()), "sealed {frame:?}");
                        let opened = self
                            .ends
                            .iter_mut()
                            .filter(|(token, _)| *token == receiver)
                            .find_map(|(_, end)| end.open(&t.payload));
                        assert!(opened.is_some(), "a sealed frame that opens in no channel the server opened");
                        let opened = opened.as_deref().map(Frame::decode);
                        match (&opened, &frame) {
                            // A relay frame's plaintext shows the peer frame
                            // its payload seals end to end (for traces); the
                            // server gets the sealed payload.
                            (
                                Some(Ok(Frame::Relay { token, session, payload })),
                                Some(Ok(Frame::Relay { token: t2, session: s2, .. })),
                            ) => {
                                assert_eq!((token, session), (t2, s2), "a relay frame that is not its plaintext");
                                assert_eq!(
                                    layout::peer_session(payload),
                                    Some(session.0),
                                    "a relay of another session"
                                );
                            }
                            _ => assert_eq!(opened, frame, "a sealed frame that is not its plaintext"),
                        }
                        self.reached.sealed_opened += 1;
                    }
                    tag => panic!("the client sent a {tag:#04x}"),
                }
            }
            wire::Kind::Punchline if t.payload[0] == layout::tag::PEER_SEALED => {
                // A session's datagram, sealed end to end, sent directly:
                // its plaintext is a peer frame of the session it names.
                let session = layout::peer_session(&t.payload).expect("a sealed peer datagram parses");
                let frame = t.plaintext.as_deref().map(Frame::decode);
                let Some(Ok(frame)) = frame else { panic!("a sealed peer datagram without its frame: {frame:?}") };
                assert!(frame.is_peer(), "a {frame:?} sealed as a peer frame");
                let opener = matches!(frame, Frame::Opener { .. });
                assert_eq!(t.ttl, opener.then_some(config.opener_ttl), "the opener TTL on openers only");
                let named = frame.session().expect("checked to be a peer frame").0;
                assert_eq!(named, session, "a peer frame sealed under another session");
            }
            wire::Kind::Punchline => {
                let frame = Frame::decode(&t.payload);
                panic!("a frame in the clear: {frame:?} (signaling goes in the channel, peer frames sealed)");
            }
            wire::Kind::Unknown => panic!("sent neither STUN nor a frame: {:02x?}", &t.payload[..len.min(16)]),
        }
    }
}
