//! The server machine driven by an arbitrary sequence of operations: raw
//! datagrams, real Noise IK logins (answering cookies under load) and frames
//! sealed in the channels they open, plain, forged, replayed and mutated
//! datagrams, from several sources on any server socket; time, timeouts,
//! and the message store answering (or failing) when the input says.
//!
//! The driver holds the client end of every channel it opened, so it can
//! open everything the server seals and check it is what the server says it
//! is, and it keeps the books of who sent what to tell amplification.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use punchline_core::messaging::{MemoryStore, MessageStore, StoreRequest};
use punchline_core::nat::NatProfile;
use punchline_core::secure::{ChannelEnd, HelloSent, PublicKey, StaticKey};
use punchline_core::server::{Server, ServerConfig, ServerEvent, ServerStats};
use punchline_core::wire::channel::{self as layout, MAC_LEN};
use punchline_core::wire::frame::{AnswerFrom, ErrorCode, Frame, MessageId, SessionId};
use punchline_core::wire::{self, stun, MAX_DATAGRAM};
use punchline_core::{Machine, Seed, SocketId, Transmit};

use crate::input::{hello_around, mutate, open_cookie, registered_frame, Input};

/// Names logins use: three valid ones, and two the server refuses.
const NAMES: [&str; 5] = ["alice", "bob", "carol", "not a name", ""];

/// Where datagrams come from: four client addresses (two ports of one
/// IPv4 host, another host, an IPv6 host), and two more that only the
/// input's raw and replayed datagrams use.
const SOURCES: [&str; 6] = [
    "198.51.100.1:4000",
    "198.51.100.1:4001",
    "198.51.100.2:4000",
    "[2001:db8::1]:4000",
    "192.0.2.66:1",
    "[2001:db8::66]:1",
];

/// The most operations one input drives.
const MAX_OPS: usize = 128;

/// The most real handshakes one input makes (each costs the driver and the
/// server two Diffie–Hellmans).
const MAX_HANDSHAKES: usize = 12;

/// The identities logins use: each valid name's own key, and an impostor's.
/// Derived once.
fn identities() -> &'static [StaticKey; 4] {
    static KEYS: OnceLock<[StaticKey; 4]> = OnceLock::new();
    KEYS.get_or_init(|| ["alice", "bob", "carol", "mallory"].map(|n| StaticKey::derive(Seed::from(0), n)))
}

fn sources() -> &'static [SocketAddr; 6] {
    static ADDRS: OnceLock<[SocketAddr; 6]> = OnceLock::new();
    ADDRS.get_or_init(|| SOURCES.map(|a| a.parse().expect("an address")))
}

/// How deep one run got: what the replay test checks its corpus reaches.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reached {
    /// Welcomes carrying `LoginOk`: channels the driver holds.
    pub channels: usize,
    /// `UserOnline` events: logins that proved their address.
    pub online: usize,
    /// Cookie replies the driver opened.
    pub cookies: usize,
    /// Sessions the server created.
    pub sessions: usize,
    /// Frames the server relayed.
    pub relayed: usize,
    /// Text messages the server stored.
    pub texts_stored: usize,
    /// STUN answers.
    pub stun: usize,
    /// Sealed frames the server sent that the driver opened.
    pub sealed_opened: usize,
}

/// What an address sent the server, and what the server sent it while it
/// had not proved it receives there.
#[derive(Clone, Copy, Debug, Default)]
struct Books {
    received: usize,
    received_bytes: usize,
    sent: usize,
    sent_bytes: usize,
    stun_received: usize,
    stun_received_bytes: usize,
    stun_sent: usize,
    stun_sent_bytes: usize,
}

/// A Hello the driver sent and the server has not answered with a Welcome.
struct PendingHello {
    hello: HelloSent,
    name: usize,
    len: usize,
}

/// A channel the driver holds: a Welcome with `LoginOk` finished its Hello.
struct Channel {
    name: usize,
    /// Our index: the receiver of the server's sealed frames.
    index: u64,
    token: u64,
    end: ChannelEnd,
    /// Where the Welcome went: the address the first sealed frame proves.
    welcomed_at: SocketAddr,
    /// Where its sealed frames come from.
    from: SocketAddr,
}

struct Driver {
    server: Server,
    now: Instant,
    server_key: PublicKey,
    sockets: Vec<SocketId>,
    heard_from: BTreeSet<SocketAddr>,
    /// Addresses a client holding a channel sent a sealed frame from, or
    /// that a Welcome went to before such a frame proved it arrived.
    trusted: BTreeSet<SocketAddr>,
    books: BTreeMap<SocketAddr, Books>,
    hellos: Vec<PendingHello>,
    /// Every Hello datagram fed, for replays.
    hello_datagrams: Vec<Vec<u8>>,
    handshakes: usize,
    /// The sender indexes of Hellos with a valid mac1 around junk.
    junk_senders: BTreeSet<u64>,
    cookies: BTreeMap<SocketAddr, [u8; MAC_LEN]>,
    channels: Vec<Channel>,
    /// Sealed datagrams fed unmodified, with their source.
    sealed_fed: Vec<(Vec<u8>, SocketAddr)>,
    sessions: Vec<SessionId>,
    session_members: BTreeMap<SessionId, [String; 2]>,
    /// Users online and sessions live, as the events tell.
    online: BTreeSet<String>,
    live: BTreeSet<SessionId>,
    store: MemoryStore,
    polled: Vec<StoreRequest>,
    stats: ServerStats,
    reached: Reached,
}

/// Runs the operations the input describes. Nothing panics, and after every
/// input (checked by [`Driver::drain`]):
/// - every transmit is 1..=`MAX_DATAGRAM` bytes, leaves from a server socket
///   with the default TTL, goes to an address the server heard from, and
///   parses: STUN, a channel datagram by its layout, or a plain frame, which
///   is only ever an `Error`; a Hello, Welcome or sealed frame shows the
///   frame it carries as its plaintext;
/// - no amplification: to an address that has not proved it receives (no
///   sealed frame from it, no Welcome there that a sealed frame answered),
///   the server sends no more datagrams and no more bytes than it received
///   from it (STUN aside: an answer per request), and never a sealed frame;
/// - a Welcome answers one of the driver's Hellos, once, is smaller than it
///   and finishes it; a `LoginOk` names the Hello's source; a cookie reply
///   to one of its Hellos opens with that Hello's mac1;
/// - every sealed frame opens with the driver's end of its channel, to its
///   plaintext; what concerns a session is sealed only for its members, and
///   an offer names the other member;
/// - the counters never go down and agree with what was sent (handshakes,
///   cookies, STUN answers, relayed frames); the users online and the
///   sessions are those the events announced; the store requests
///   outstanding are those polled and not completed;
/// - a datagram that is neither STUN nor a frame is counted malformed and
///   changes nothing else; a signaling frame outside any channel is counted
///   unauthenticated and answered with nothing; replayed and forged sealed
///   datagrams are never acted on (at most a plain `NotLoggedIn`);
/// - after a timeout, the next deadline is in the future.
pub fn check(data: &[u8]) -> Reached {
    let mut input = Input::new(data);
    let primary: SocketAddr = "203.0.113.10:3478".parse().expect("an address");
    let alternate: Option<SocketAddr> = match input.byte() % 3 {
        0 => Some("203.0.113.11:3479".parse().expect("an address")),
        1 => None,
        _ => Some("203.0.113.10:3479".parse().expect("an address")),
    };
    let mut config = ServerConfig::new(primary, alternate);
    if input.bool() {
        // Tight limits: cookies from the second handshake in a second,
        // quickly forgotten users, few sources and sessions.
        config.handshakes_per_second = 1;
        config.user_timeout = Duration::from_secs(20);
        config.offer_attempts = 3;
        config.request_burst = 6;
        config.request_rate = 1;
        config.relay_burst_bytes = 3000;
        config.relay_rate_bytes = 500;
        config.max_sources = 3;
        config.max_sessions_per_user = 1;
        config.max_users = 2;
    }
    let now = Instant::now();
    let server = Server::new(config, now);
    let mut d = Driver {
        server_key: server.public_key(),
        sockets: server.sockets().iter().map(|&(id, _)| id).collect(),
        stats: server.stats().clone(),
        server,
        now,
        heard_from: BTreeSet::new(),
        trusted: BTreeSet::new(),
        books: BTreeMap::new(),
        hellos: Vec::new(),
        hello_datagrams: Vec::new(),
        handshakes: 0,
        junk_senders: BTreeSet::new(),
        cookies: BTreeMap::new(),
        channels: Vec::new(),
        sealed_fed: Vec::new(),
        sessions: Vec::new(),
        session_members: BTreeMap::new(),
        online: BTreeSet::new(),
        live: BTreeSet::new(),
        store: MemoryStore::new(),
        polled: Vec::new(),
        reached: Reached::default(),
    };
    let all = sources();
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        match input.byte() % 16 {
            // Any bytes, from anyone, on any socket.
            0 => {
                let (socket, from, bytes) = (input.pick(&d.sockets), input.pick(all), input.bytes());
                let before = d.stats.clone();
                let sent = d.feed(socket, from, &bytes);
                if bytes.is_empty() || bytes.len() > MAX_DATAGRAM || wire::classify(&bytes) == wire::Kind::Unknown {
                    assert_eq!(d.stats, ServerStats { malformed: before.malformed + 1, ..before }, "{bytes:02x?}");
                    assert_eq!(sent, 0, "answered bytes that are neither STUN nor a frame");
                }
            }
            // A frame of a registered type with any body, in the clear.
            1 => {
                let (socket, from, kind, body) = (input.pick(&d.sockets), input.pick(all), input.byte(), input.bytes());
                let bytes = registered_frame(kind, &body);
                d.plain(socket, from, &bytes);
            }
            // A login with a real handshake; maybe its Hello mutated, maybe
            // proved at once with a sealed keepalive.
            2 | 3 => d.login(&mut input),
            // A frame sealed in one of the driver's channels.
            4..=6 => d.sealed(&mut input),
            // A frame a logged-in client would seal, in the clear instead.
            7 => {
                let Some(i) = d.pick_channel(&mut input) else { continue };
                let (socket, from) = (input.pick(&d.sockets), d.channels[i].from);
                let bytes = d.client_frame(i, &mut input);
                d.plain(socket, from, &bytes);
            }
            // A sealed datagram fed before, again, from where it came or
            // elsewhere.
            8 => {
                let Some((datagram, from)) = input.recent(&d.sealed_fed).cloned() else { continue };
                let from = if input.bool() { input.pick(all) } else { from };
                d.refused(input.pick(&d.sockets), from, &datagram);
            }
            // A forgery in the sealed layout, naming a live channel.
            9 => {
                let Some(i) = d.pick_channel(&mut input) else { continue };
                // (With a counter no channel reaches: the keys grow from the
                // input, so the fuzzer can learn a datagram another run sealed,
                // which this run's client end would seal too.)
                let (counter, ciphertext) = (input.u64() | 1 << 63, input.bytes());
                let mut forged = layout::sealed_buffer(d.channels[i].token, counter, ciphertext.len());
                forged[layout::SEALED_HEADER..].copy_from_slice(&ciphertext);
                let from = d.channels[i].from;
                d.refused(d.sockets[0], from, &forged);
            }
            // A Hello fed before, again, from anyone.
            10 => {
                let Some(hello) = input.recent(&d.hello_datagrams).cloned() else { continue };
                let from = input.pick(all);
                d.feed(input.pick(&d.sockets), from, &hello);
            }
            // A Hello with a valid mac1 around any bytes: the server spends
            // a Diffie–Hellman on it, which fails.
            11 => {
                let (sender, noise, from) = (input.u64(), input.bytes(), input.pick(all));
                d.junk_senders.insert(sender);
                let hello = hello_around(&d.server_key, sender, &noise);
                d.feed(d.sockets[0], from, &hello);
            }
            // A key request, maybe cut short or padded.
            12 => {
                let (from, nonce, len) = (input.pick(all), input.u64(), input.byte());
                let mut request = layout::key_request(nonce);
                request.resize(usize::from(len) % 80 + 2, 0);
                d.feed(input.pick(&d.sockets), from, &request);
            }
            // A STUN Binding request.
            13 => {
                let (socket, from) = (input.pick(&d.sockets), input.pick(all));
                let transaction = std::array::from_fn(|_| input.byte());
                d.feed(socket, from, &stun::binding_request(stun::TransactionId(transaction)));
            }
            // Time passes: a little, a lot, or to the next deadline.
            14 => match input.byte() % 3 {
                0 => d.advance(Duration::from_millis(input.u16().into())),
                1 => d.advance(Duration::from_secs(input.byte().into())),
                _ => {
                    let next = d.server.poll_timeout().map_or(Duration::ZERO, |at| at.saturating_duration_since(d.now));
                    d.advance(next);
                }
            },
            // The store carries out what was polled, or fails it all.
            _ => {
                d.store.set_failing(input.one_in(4));
                let completions = d.store.execute(std::mem::take(&mut d.polled));
                for completion in completions {
                    d.server.handle_store_completion(d.now, completion);
                }
                d.drain(None);
            }
        }
    }
    d.reached
}

impl Driver {
    /// Feeds one datagram and checks what follows; returns how many
    /// datagrams the server sent.
    fn feed(&mut self, socket: SocketId, from: SocketAddr, payload: &[u8]) -> usize {
        self.heard_from.insert(from);
        let books = self.books.entry(from).or_default();
        if wire::classify(payload) == wire::Kind::Stun {
            books.stun_received += 1;
            books.stun_received_bytes += payload.len();
        } else {
            books.received += 1;
            books.received_bytes += payload.len();
        }
        self.server.handle_datagram(self.now, socket, from, payload);
        self.drain(None)
    }

    /// Feeds a datagram in the clear that the channel must carry: a
    /// signaling frame is dropped unread.
    fn plain(&mut self, socket: SocketId, from: SocketAddr, bytes: &[u8]) {
        let before = self.stats.clone();
        let sent = self.feed(socket, from, bytes);
        if bytes.len() <= MAX_DATAGRAM && Frame::decode(bytes).is_ok() {
            let expected = ServerStats { unauthenticated: before.unauthenticated + 1, ..before };
            assert_eq!(self.stats, expected, "a signaling frame outside any channel");
            assert_eq!(sent, 0, "a signaling frame outside any channel was answered");
        }
    }

    /// Feeds a replayed or forged sealed datagram: never acted on. At most
    /// a plain `NotLoggedIn` goes back (when the channel is gone).
    fn refused(&mut self, socket: SocketId, from: SocketAddr, datagram: &[u8]) {
        let before = self.stats.clone();
        let (users, sessions) = (self.online.clone(), self.live.clone());
        let mut out = Vec::new();
        self.feed_collect(socket, from, datagram, &mut out);
        let not_logged_in = Frame::Error { request: 0, code: ErrorCode::NotLoggedIn };
        for t in &out {
            assert_eq!(Frame::decode(&t.payload).ok(), Some(not_logged_in.clone()), "a refused datagram was answered");
        }
        assert!(out.len() <= 1);
        assert_eq!((users, sessions), (self.online.clone(), self.live.clone()), "a refused datagram moved the server");
        let refusals = [
            self.stats.replayed - before.replayed,
            self.stats.unauthenticated - before.unauthenticated,
            self.stats.bad_token - before.bad_token,
            self.stats.malformed - before.malformed,
        ];
        assert_eq!(refusals.iter().sum::<u64>(), 1, "{before:?} -> {:?}", self.stats);
    }

    fn feed_collect(&mut self, socket: SocketId, from: SocketAddr, payload: &[u8], out: &mut Vec<Transmit>) {
        self.heard_from.insert(from);
        let books = self.books.entry(from).or_default();
        books.received += 1;
        books.received_bytes += payload.len();
        self.server.handle_datagram(self.now, socket, from, payload);
        self.drain(Some(out));
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        for _ in 0..64 {
            self.server.handle_timeout(self.now);
            self.drain(None);
            match self.server.poll_timeout() {
                Some(at) if at <= self.now => {}
                _ => return,
            }
        }
        panic!("the server's deadline stays at or before now: its driver would spin");
    }

    /// One of the channels, counted back from the most recent.
    fn pick_channel(&self, input: &mut Input<'_>) -> Option<usize> {
        let back = usize::from(input.byte());
        (!self.channels.is_empty()).then(|| self.channels.len() - 1 - back % self.channels.len())
    }

    fn login(&mut self, input: &mut Input<'_>) {
        let (name, impostor, from) = (usize::from(input.byte()) % NAMES.len(), input.one_in(8), input.byte());
        let (request, hosts, socket, prove) = (input.u32(), input.byte() % 3, input.byte(), input.bool());
        let mutated = input.one_in(8);
        if self.handshakes >= MAX_HANDSHAKES {
            return;
        }
        self.handshakes += 1;
        let from = sources()[usize::from(from) % 4];
        let socket = self.sockets[usize::from(socket) % self.sockets.len()];
        let identity = &identities()[if impostor { 3 } else { name % 3 }];
        let host_candidates = sources()[..usize::from(hosts)].to_vec();
        let login = Frame::Login { request, user: NAMES[name].to_owned(), host_candidates }.encode();
        let cookie = self.cookies.get(&from).copied();
        let seed = Seed::from(self.handshakes as u64);
        let (hello, mut datagram) = HelloSent::start(identity, &self.server_key, &login, cookie.as_ref(), seed);
        let index = hello.sender();
        if mutated {
            mutate(&mut datagram, input);
        }
        self.hellos.push(PendingHello { hello, name, len: datagram.len() });
        self.hello_datagrams.push(datagram.clone());
        self.feed(socket, from, &datagram);
        if prove {
            if let Some(i) = self.channels.iter().position(|c| c.index == index) {
                let keepalive = Frame::Keepalive { token: self.channels[i].token, profile: NatProfile::default() };
                self.feed_sealed_with(i, socket, from, &keepalive.encode(), None);
            }
        }
    }

    /// A frame a client of channel `i` would send (with its token, mostly),
    /// or any bytes.
    fn client_frame(&self, i: usize, input: &mut Input<'_>) -> Vec<u8> {
        let kind = input.byte();
        let token = match input.byte() % 8 {
            0 => input.recent(&self.channels).map_or(0, |c| c.token),
            1 => input.u64(),
            _ => self.channels[i].token,
        };
        let session = match input.byte() % 4 {
            0 => SessionId(input.u64()),
            _ => input.recent(&self.sessions).copied().unwrap_or(SessionId(0)),
        };
        let name = NAMES[usize::from(input.byte()) % NAMES.len()].to_owned();
        let request = input.u32();
        let id = MessageId { conversation: u64::from(input.byte() % 4), seq: u64::from(input.byte()) };
        let frame = match kind % 14 {
            0 => Frame::Keepalive { token, profile: NatProfile::default() },
            1 => Frame::Profile { token, profile: NatProfile::default() },
            2 => Frame::Lookup { token, request, user: name },
            3 | 4 => Frame::Connect { token, request, peer: name, profile: NatProfile::default() },
            5 => Frame::OfferAck { token, session },
            6 | 7 => {
                // A datagram of the session in the sealed layout (the relay
                // forwards it, unread), or any bytes (refused).
                let payload = if input.bool() {
                    let body = input.bytes();
                    let mut sealed = layout::sealed_buffer_as(layout::tag::PEER_SEALED, session.0, input.u64(), 16);
                    sealed.extend_from_slice(&body);
                    sealed
                } else {
                    input.bytes()
                };
                Frame::Relay { token, session, payload }
            }
            8 => {
                let answer_from = [AnswerFrom::Same, AnswerFrom::OtherPort, AnswerFrom::OtherAddress];
                Frame::Discover { nonce: input.u64(), answer_from: input.pick(&answer_from) }
            }
            9 => Frame::TextSend { token, id, to: name, sealed: input.bytes() },
            10 => Frame::TextDeliverAck { token, from: name, id },
            11 => Frame::InboxSync { token },
            12 => Frame::Logout { token },
            _ => {
                return match input.bool() {
                    true => registered_frame(input.byte(), &input.bytes()),
                    false => input.bytes(),
                }
            }
        };
        let mut bytes = frame.encode();
        if input.one_in(8) {
            mutate(&mut bytes, input);
        }
        bytes
    }

    fn sealed(&mut self, input: &mut Input<'_>) {
        let Some(i) = self.pick_channel(input) else { return };
        let plain = self.client_frame(i, input);
        let socket = input.pick(&self.sockets);
        let from = if input.one_in(4) { input.pick(sources()) } else { self.channels[i].from };
        let outer = input.one_in(8);
        self.feed_sealed_with(i, socket, from, &plain, outer.then_some(input));
    }

    /// Seals `plain` in channel `i` and feeds it from `from`, maybe mutated
    /// after sealing. Unmodified, it proves the channel's client receives
    /// where its Welcome went, and sends from `from`.
    fn feed_sealed_with(
        &mut self,
        i: usize,
        socket: SocketId,
        from: SocketAddr,
        plain: &[u8],
        outer: Option<&mut Input<'_>>,
    ) {
        let Some(mut datagram) = self.channels[i].end.seal(plain) else { return };
        let changed = outer.is_some_and(|input| mutate(&mut datagram, input));
        if !changed {
            self.trusted.insert(from);
            self.trusted.insert(self.channels[i].welcomed_at);
            self.channels[i].from = from;
            self.sealed_fed.push((datagram.clone(), from));
        }
        self.feed(socket, from, &datagram);
    }

    /// Takes everything the server queued and checks it (see [`check`]);
    /// returns how many datagrams it sent, and hands them to `out`.
    fn drain(&mut self, mut out: Option<&mut Vec<Transmit>>) -> usize {
        self.polled.extend(std::iter::from_fn(|| self.server.poll_store_request()));
        assert_eq!(self.server.store_requests_outstanding(), self.polled.len());
        while let Some(event) = self.server.poll_event() {
            match event {
                ServerEvent::UserOnline { user, .. } => {
                    self.reached.online += 1;
                    assert!(self.online.insert(user), "online twice");
                }
                ServerEvent::UserOffline { user } => assert!(self.online.remove(&user), "offline, never online"),
                ServerEvent::SessionCreated { session, initiator, responder, .. } => {
                    self.reached.sessions += 1;
                    assert_ne!(initiator, responder, "a session with oneself");
                    assert!(self.online.contains(&initiator) && self.online.contains(&responder));
                    assert!(self.live.insert(session), "a session created twice");
                    self.session_members.insert(session, [initiator, responder]);
                }
                ServerEvent::SessionEnded { session } => assert!(self.live.remove(&session), "ended, never created"),
                ServerEvent::StoreFailed { .. } => {}
                ServerEvent::CloseStream { conn } => panic!("closes stream {conn:?}, but none was accepted"),
            }
        }
        let (mut sent, mut welcomes, mut cookies, mut stun_answers, mut relayed) = (0, 0, 0, 0, 0);
        while let Some(t) = self.server.poll_transmit() {
            sent += 1;
            self.check_transmit(&t);
            match t.payload.first() {
                Some(0x00..=0x03) => stun_answers += 1,
                Some(&layout::tag::COOKIE_REPLY) => cookies += 1,
                Some(&layout::tag::WELCOME) => {
                    if matches!(t.plaintext.as_deref().map(Frame::decode), Some(Ok(Frame::LoginOk { .. }))) {
                        welcomes += 1;
                    }
                }
                Some(&layout::tag::SEALED) => {
                    if matches!(t.plaintext.as_deref().map(Frame::decode), Some(Ok(Frame::Relayed { .. }))) {
                        relayed += 1;
                    }
                }
                _ => {}
            }
            if let Some(out) = out.as_deref_mut() {
                out.push(t);
            }
        }
        let (before, after) = (&self.stats, self.server.stats());
        assert!(counters(after).iter().zip(counters(before)).all(|(a, b)| *a >= b), "{before:?} -> {after:?}");
        assert_eq!(after.handshakes - before.handshakes, welcomes, "handshakes counted, Welcomes sent");
        assert_eq!(after.cookies_sent - before.cookies_sent, cookies, "cookies counted, cookie replies sent");
        assert_eq!(after.stun_answered - before.stun_answered, stun_answers, "STUN answers counted, sent");
        assert_eq!(after.relayed - before.relayed, relayed, "relayed frames counted, sent");
        self.stats = after.clone();
        let online: BTreeSet<String> = self.server.online_users().map(str::to_owned).collect();
        assert_eq!(online, self.online, "the users online are not those the events announced");
        assert_eq!(self.server.session_count(), self.live.len(), "the sessions are not those the events announced");
        self.reached.stun += stun_answers as usize;
        self.reached.relayed += relayed as usize;
        self.reached.texts_stored = self.stats.texts_stored as usize;
        sent
    }

    fn check_transmit(&mut self, t: &Transmit) {
        let len = t.payload.len();
        assert!(len > 0 && len <= MAX_DATAGRAM, "a {len}-byte datagram");
        assert!(self.sockets.contains(&t.socket), "sent from {:?}, not a server socket", t.socket);
        assert_eq!(t.ttl, None, "the server sends with the default TTL");
        assert!(self.heard_from.contains(&t.destination), "sent to {}, never heard from", t.destination);
        let trusted = self.trusted.contains(&t.destination);
        let books = self.books.entry(t.destination).or_default();
        if wire::classify(&t.payload) == wire::Kind::Stun {
            assert!(stun::Message::decode(&t.payload).is_ok(), "an undecodable STUN message");
            assert_eq!(t.plaintext, None);
            books.stun_sent += 1;
            books.stun_sent_bytes += len;
            assert!(books.stun_sent <= books.stun_received, "more STUN answers than requests to {}", t.destination);
            assert!(
                books.stun_sent_bytes <= stun::MAX_AMPLIFICATION * books.stun_received_bytes,
                "STUN answers of {} bytes to {} bytes of requests from {}",
                books.stun_sent_bytes,
                books.stun_received_bytes,
                t.destination
            );
            return;
        }
        if !trusted {
            books.sent += 1;
            books.sent_bytes += len;
            assert!(
                books.sent <= books.received && books.sent_bytes <= books.received_bytes,
                "amplification toward {}, which proved nothing: {books:?}, now {len} bytes, {:02x?}",
                t.destination,
                &t.payload[..len.min(16)],
            );
        }
        let tag = t.payload[0];
        let plaintext = t.plaintext.as_deref();
        match tag {
            layout::tag::SEALED => {
                assert!(trusted, "a sealed frame to {}, which proved nothing", t.destination);
                let (receiver, _, _) = layout::parse_sealed(&t.payload).expect("a sealed frame parses");
                let Some(c) = self.channels.iter_mut().find(|c| c.index == receiver) else {
                    panic!("sealed in a channel the driver does not hold")
                };
                let opened = c.end.open(&t.payload);
                assert!(opened.is_some(), "a sealed frame that does not open");
                assert_eq!(opened.as_deref(), plaintext, "a sealed frame that is not its plaintext");
                self.reached.sealed_opened += 1;
                let owner = NAMES[c.name];
                let frame = Frame::decode(plaintext.unwrap_or_default()).expect("the server seals frames");
                let session = match &frame {
                    Frame::Offer { session, peer, .. } => {
                        assert_ne!(peer, owner, "an offer to connect to oneself");
                        let members = self.session_members.get(session);
                        assert!(members.is_some_and(|m| m.contains(peer)), "{owner} offered {peer}");
                        self.sessions.push(*session);
                        Some(session)
                    }
                    Frame::Relayed { session, .. } | Frame::SessionEnded { session, .. } => Some(session),
                    _ => None,
                };
                if let Some(session) = session {
                    let members = self.session_members.get(session);
                    assert!(members.is_some_and(|m| m.iter().any(|n| n == owner)), "{frame:?} sealed for {owner}");
                }
            }
            layout::tag::WELCOME => {
                let (receiver, _) = layout::parse_welcome(&t.payload).expect("a Welcome parses");
                let Some(i) = self.hellos.iter().position(|h| h.hello.sender() == receiver) else {
                    panic!("a Welcome to no Hello of ours, or a second one")
                };
                let PendingHello { hello, name, len: hello_len } = self.hellos.swap_remove(i);
                assert!(len < hello_len, "a Welcome of {len} bytes to a Hello of {hello_len}");
                let Some((payload, finished)) = hello.finish(&t.payload) else {
                    panic!("a Welcome that does not finish")
                };
                assert_eq!(Some(&payload[..]), plaintext, "a Welcome that is not its plaintext");
                match Frame::decode(&payload) {
                    Ok(Frame::LoginOk { token, reflexive, .. }) => {
                        assert_eq!(reflexive, t.destination, "a LoginOk naming another address than its Hello's");
                        let end = finished.into_channel(token).expect("a finished handshake gives a channel");
                        self.reached.channels += 1;
                        let (welcomed_at, from) = (t.destination, t.destination);
                        self.channels.push(Channel { name, index: receiver, token, end, welcomed_at, from });
                    }
                    Ok(Frame::Error { .. }) => {}
                    other => panic!("a Welcome carrying {other:?}"),
                }
            }
            layout::tag::COOKIE_REPLY => {
                let (receiver, _, _) = layout::parse_cookie_reply(&t.payload).expect("a cookie reply parses");
                // (A cookie reply to a junk Hello naming one of ours is
                // sealed with the junk's mac1.)
                let ours = self.hellos.iter().find(|h| h.hello.sender() == receiver);
                if let Some(h) = ours.filter(|_| !self.junk_senders.contains(&receiver)) {
                    let cookie = open_cookie(&self.server_key, &t.payload, h.hello.mac1());
                    let Some(cookie) = cookie else { panic!("a cookie reply that does not open for its Hello") };
                    self.cookies.insert(t.destination, cookie);
                    self.reached.cookies += 1;
                }
            }
            layout::tag::KEY_REPLY => {
                let reply = layout::parse_key_reply(&t.payload);
                assert!(reply.is_some_and(|(_, key)| key == self.server_key.0), "a key reply with another key");
            }
            tag if layout::is_channel_tag(tag) => panic!("the server sent a {tag:#04x}"),
            _ => {
                assert_eq!(plaintext, None);
                let frame = Frame::decode(&t.payload);
                assert!(matches!(frame, Ok(Frame::Error { .. })), "a plain {frame:?}: signaling outside a channel");
            }
        }
    }
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
