//! The server machine: login, presence, keepalive, NAT behaviour discovery,
//! connect coordination and relay (DESIGN §3, "Client ↔ server").
//!
//! The server owns up to four sockets (see [`Server::sockets`]): its primary
//! and alternate addresses, and the two crossed combinations of their IPs and
//! ports, so that a client can ask for answers "from the other port" and "from
//! the other address" and classify its NAT per RFC 4787 / RFC 5780 §4.
//!
//! It is never an open relay: [`Frame::Relay`] is forwarded only from a
//! logged-in member of a session the server created, from the address that
//! member logged in from, to the other member. Everything else is dropped and
//! counted in [`ServerStats`].
//!
//! Clients whose network drops UDP connect over TCP (issue 21): the driver
//! accepts connections and hands them in ([`Server::stream_accepted`]); a
//! connection carries the same datagrams, framed
//! ([`wire::stream`](crate::wire::stream)), and a user logged in over one is
//! reached over it. The channel, the limits and the relay's rules are the
//! same on both transports; a user moves between them as it moves between
//! addresses, on an authenticated keepalive.

mod handshake;
mod known;
mod limits;
mod mailbox;
mod relay;
mod storage;
mod stun;
mod users;

pub use mailbox::MailboxConfig;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::debug;

use crate::machine::{Machine, SocketId, Transmit};
use crate::messaging::{StoreCompletion, StoreRequest};
use crate::nat::{NatProfile, Strategy};
use crate::rng::Rng;
use crate::secure::{ChannelEnd, CookieJar, MacKeys, PublicKey, StaticKey};
use crate::streams::{Received, Streams};
use crate::timer::Timers;
use crate::wire::frame::{AnswerFrom, CloseReason, ErrorCode, Frame, FrameError, SessionId, Transport};
use crate::wire::{self, channel as layout};

use known::KnownNames;
use limits::{Bucket, SourceLimits};
use users::Users;

/// The server's settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The primary address clients log in to.
    pub primary: SocketAddr,
    /// The alternate address for NAT behaviour discovery. With a different IP
    /// *and* port, the server also listens on the crossed combinations.
    pub alternate: Option<SocketAddr>,
    /// Seeds tokens, session ids and the handshakes' ephemeral keys: OS entropy when deployed
    /// ([`Seed::from_entropy`](crate::Seed::from_entropy)), a number for
    /// reproducible runs. Default `Seed::from(0)`.
    pub seed: crate::Seed,
    /// The server's static key: clients pin its public half, and every
    /// login is a Noise IK handshake with it. [`ServerConfig::new`] derives
    /// one from `Seed::from(0)` for tests; a deployment loads its own
    /// (`punchline-server --key`).
    pub key: StaticKey,
    /// Handshakes per second above which the server is *under load*: it
    /// then spends a Diffie–Hellman only on Hellos that echo a cookie for
    /// their source address, and answers others with one (WireGuard's
    /// mac2). Default 1,000.
    pub handshakes_per_second: u32,
    /// A user not heard from for this long is offline.
    pub user_timeout: Duration,
    /// How often an unacknowledged session offer is sent again.
    pub offer_retransmit: Duration,
    /// How many times an offer is sent before the session is abandoned.
    pub offer_attempts: u32,
    /// Requests a source IP may burst.
    pub request_burst: u32,
    /// Requests per second a source IP may sustain.
    pub request_rate: u32,
    /// Relayed bytes a session may burst.
    pub relay_burst_bytes: u32,
    /// Relayed bytes per second a session may sustain.
    pub relay_rate_bytes: u32,
    /// Most sources (IPv4 addresses, IPv6 /64s) the request limiter tracks;
    /// when full, the one idle the longest is forgotten to make room.
    pub max_sources: usize,
    /// Most sessions one user may have open.
    pub max_sessions_per_user: usize,
    /// Most users online at once. A login that proves its address when the
    /// server is full is refused with `RateLimited` (the client retries
    /// later); online users are never evicted for newcomers. Default
    /// 1,000,000.
    pub max_users: usize,
    /// Text messaging: limits and retransmission ([`MailboxConfig`]).
    pub mailbox: MailboxConfig,
    /// Most stream (TCP) connections open at once; a connection accepted
    /// beyond it is closed at once. Default 100,000.
    pub max_streams: usize,
    /// Most stream connections from one IP address (many users may share
    /// a NAT's address). Default 256.
    pub max_streams_per_ip: usize,
    /// A stream connection no logged-in user is reached over, silent this
    /// long, is closed. Default 30 s.
    pub stream_idle_timeout: Duration,
}

impl ServerConfig {
    /// Defaults for a server at `primary`.
    pub fn new(primary: SocketAddr, alternate: Option<SocketAddr>) -> Self {
        ServerConfig {
            primary,
            alternate,
            seed: crate::Seed::from(0),
            key: StaticKey::derive(crate::Seed::from(0), "server"),
            handshakes_per_second: 1_000,
            user_timeout: Duration::from_secs(75),
            offer_retransmit: Duration::from_millis(500),
            offer_attempts: 20,
            request_burst: 64,
            request_rate: 32,
            relay_burst_bytes: 512 * 1024,
            relay_rate_bytes: 2 * 1024 * 1024,
            max_sources: 100_000,
            max_sessions_per_user: 64,
            max_users: 1_000_000,
            mailbox: MailboxConfig::default(),
            max_streams: 100_000,
            max_streams_per_ip: 256,
            stream_idle_timeout: Duration::from_secs(30),
        }
    }
}

/// What happened on the server that an operator may care about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerEvent {
    /// A user logged in.
    UserOnline {
        /// Who.
        user: String,
        /// From where.
        reflexive: SocketAddr,
    },
    /// A user went offline (logout, timeout, or a new login elsewhere).
    UserOffline {
        /// Who.
        user: String,
    },
    /// A session was created.
    SessionCreated {
        /// Its id.
        session: SessionId,
        /// The member that asked.
        initiator: String,
        /// The member that was asked.
        responder: String,
        /// The strategy both were told.
        strategy: Strategy,
    },
    /// A session's relay channel was removed.
    SessionEnded {
        /// Its id.
        session: SessionId,
    },
    /// The message store failed; the affected message was refused (its
    /// sender retries) or stays stored (its delivery is retried).
    StoreFailed {
        /// What the store said.
        error: String,
    },
    /// A request to the driver: close the stream connection `conn` (over a
    /// limit, broken framing, or idle without a login). Its pending writes
    /// may be dropped; it is not reported back as closed.
    CloseStream {
        /// The connection.
        conn: SocketId,
    },
}

/// Counters of what the server did and refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Datagrams that were neither STUN nor a decodable frame.
    pub malformed: u64,
    /// Requests refused by the per-source limits.
    pub rate_limited: u64,
    /// Relay frames refused: unknown session, not a member, wrong source.
    pub relay_refused: u64,
    /// Relay frames over the session's byte rate.
    pub relay_throttled: u64,
    /// Relay frames forwarded.
    pub relayed: u64,
    /// STUN Binding requests answered.
    pub stun_answered: u64,
    /// Frames that need a login but carried an unknown token.
    pub bad_token: u64,
    /// Handshakes completed (a Welcome sent with `LoginOk`).
    pub handshakes: u64,
    /// Hellos refused: bad mac1, undecryptable, no login inside, or no
    /// room to wait for the store.
    pub handshakes_refused: u64,
    /// Cookie replies sent, under load.
    pub cookies_sent: u64,
    /// Logins refused because the name is bound to another key.
    pub key_mismatches: u64,
    /// Sealed frames and Hellos refused as replays.
    pub replayed: u64,
    /// Frames that did not authenticate: forged sealed frames, and
    /// signaling frames sent outside a channel.
    pub unauthenticated: u64,
    /// Text messages committed to the store.
    pub texts_stored: u64,
    /// Stored text messages the recipient acknowledged (and that were deleted).
    pub texts_delivered: u64,
    /// Text messages refused (limits, unknown recipient, store failure).
    pub texts_rejected: u64,
    /// Store calls that failed.
    pub store_errors: u64,
    /// Stream connections accepted and kept.
    pub streams_accepted: u64,
    /// Stream connections closed at once: over `max_streams` or
    /// `max_streams_per_ip`.
    pub streams_refused: u64,
    /// Stream connections closed because their bytes broke the framing.
    pub streams_broken: u64,
}

/// The server's protocol state. See the [module documentation](self).
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    sockets: Vec<(SocketId, SocketAddr)>,
    rng: Rng,
    users: Users<User>,
    /// Completed handshakes waiting for their first sealed frame, by token.
    pending: BTreeMap<u64, handshake::PendingLogin>,
    /// Hellos waiting for the store to say which key their name has.
    hellos_awaiting_store: usize,
    /// While a sealed frame is handled: its channel's token, in which
    /// [`Server::reply`] seals the answer.
    current: Option<u64>,
    mac_keys: MacKeys,
    cookies: CookieJar,
    seen_hellos: handshake::SeenHellos,
    known_users: KnownNames,
    sessions: BTreeMap<SessionId, RelaySession>,
    limits: SourceLimits,
    timers: Timers<ServerTimer>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ServerEvent>,
    stats: ServerStats,
    last_now: Option<Instant>,
    storage: storage::Storage,
    mailbox: mailbox::Mailbox,
    streams: Streams,
    /// Closed connections some user is still reached over (until it moves
    /// or times out): what is sent there is dropped.
    closed_streams: BTreeSet<SocketId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ServerTimer {
    /// Resend unacknowledged offers of a session.
    Offer(SessionId),
    /// Expire silent users and idle limiter entries.
    Sweep,
    /// Retransmit text deliveries; answer senders waiting for them.
    Mailbox,
}

#[derive(Debug)]
struct User {
    /// The static key its handshake proved.
    key: PublicKey,
    /// The channel its frames are sealed in.
    channel: ChannelEnd,
    reflexive: SocketAddr,
    socket: SocketId,
    /// Its address as last seen over UDP, while it may be on TCP: the
    /// public address its peers learn for LAN detection.
    udp_reflexive: Option<SocketAddr>,
    host_candidates: Vec<SocketAddr>,
    profile: NatProfile,
    /// A profile was reported (possibly with unmeasured fields).
    profile_known: bool,
    last_seen: Instant,
    sessions: BTreeSet<SessionId>,
    /// Connect requests already answered, so retransmissions get the same
    /// session.
    connects: BTreeMap<u32, SessionId>,
}

#[derive(Debug)]
struct RelaySession {
    initiator: String,
    responder: String,
    strategy: Strategy,
    request: u32,
    /// Members that have not acknowledged their offer yet.
    unacked: BTreeSet<String>,
    offers_sent: u32,
    /// Both members acknowledged an offer once: the session lives even if a
    /// later offer (after a member moved) goes unacknowledged.
    established: bool,
    relay_bucket: Option<Bucket>,
}

impl Server {
    /// A server with `config`. Bind the addresses of [`Server::sockets`] and
    /// feed their datagrams in with the matching [`SocketId`].
    ///
    /// Offline messages live in a store the driver owns: carry out what
    /// [`Server::poll_store_request`] asks and hand the outcome back through
    /// [`Server::handle_store_completion`] (see [`crate::messaging`]).
    pub fn new(config: ServerConfig, now: Instant) -> Self {
        let sockets = server_sockets(config.primary, config.alternate);
        let mut timers = Timers::default();
        timers.set(ServerTimer::Sweep, now + Duration::from_secs(5));
        let rng = Rng::new(config.seed).fork(0x005e_7ee5);
        Server {
            limits: SourceLimits::new(config.request_burst, config.request_rate, config.max_sources),
            pending: BTreeMap::new(),
            hellos_awaiting_store: 0,
            current: None,
            mac_keys: MacKeys::for_server(&config.key.public()),
            cookies: CookieJar::new(rng.fork(0x00c0_0c1e), now),
            seen_hellos: handshake::SeenHellos::default(),
            rng,
            config,
            sockets,
            users: Users::new(),
            known_users: KnownNames::new(known::MAX_KNOWN_NAMES),
            sessions: BTreeMap::new(),
            timers,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: ServerStats::default(),
            last_now: Some(now),
            storage: storage::Storage::default(),
            mailbox: mailbox::Mailbox::default(),
            streams: Streams::default(),
            closed_streams: BTreeSet::new(),
        }
    }

    /// The driver accepted the stream connection `conn` from `remote` (on
    /// any of its TCP listeners). Its bytes come in through
    /// [`handle_stream_data`](Machine::handle_stream_data). Over
    /// [`ServerConfig::max_streams`] or [`ServerConfig::max_streams_per_ip`]
    /// it is closed at once ([`ServerEvent::CloseStream`]). `conn` must not
    /// name one of [`Server::sockets`].
    pub fn stream_accepted(&mut self, now: Instant, conn: SocketId, remote: SocketAddr) {
        self.last_now = Some(now);
        let full = self.streams.len() >= self.config.max_streams
            || self.streams.count_from(remote.ip()) >= self.config.max_streams_per_ip;
        if full || self.streams.contains(conn) || self.sockets.iter().any(|(id, _)| *id == conn) {
            debug!(%remote, conn = conn.0, "a stream connection over the limits; closed");
            self.stats.streams_refused += 1;
            self.events.push_back(ServerEvent::CloseStream { conn });
            return;
        }
        self.stats.streams_accepted += 1;
        self.streams.open(now, conn, remote);
    }

    /// Stream connections open now.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// The sockets the driver must bind: [`SocketId`]`(0)` is the primary
    /// address, `(1)` the alternate, `(2)` primary IP with alternate port,
    /// `(3)` alternate IP with primary port (the last two only when the IPs
    /// and ports both differ).
    pub fn sockets(&self) -> &[(SocketId, SocketAddr)] {
        &self.sockets
    }

    /// The server's public key, which clients pin.
    pub fn public_key(&self) -> PublicKey {
        self.config.key.public()
    }

    /// Counters of what the server did and refused.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// Users online now, in name order.
    pub fn online_users(&self) -> impl Iterator<Item = &str> {
        self.users.iter().map(|(name, _)| name)
    }

    /// Sessions with a relay channel now.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The next storage request for the driver to carry out. Drain it after
    /// every input, with [`poll_transmit`](crate::Machine::poll_transmit),
    /// and hand each completion back in request order through
    /// [`handle_store_completion`](Self::handle_store_completion).
    ///
    /// A driver that batches (group commit) submits everything it polled
    /// while a commit was in flight as the next transaction:
    /// [`MessageStore::execute`](crate::messaging::MessageStore::execute).
    pub fn poll_store_request(&mut self) -> Option<StoreRequest> {
        self.storage.poll()
    }

    /// Feeds in the outcome of a request from
    /// [`poll_store_request`](Self::poll_store_request). A completion for a
    /// request this machine did not issue is ignored.
    pub fn handle_store_completion(&mut self, now: Instant, completion: StoreCompletion) {
        self.last_now = Some(now);
        let Some(waiting) = self.storage.complete(completion.id) else {
            debug!(id = completion.id.0, "completion of an unknown store request; ignored");
            return;
        };
        self.resume(now, waiting, completion.result);
    }

    /// Storage requests issued and not completed yet.
    pub fn store_requests_outstanding(&self) -> usize {
        self.storage.outstanding()
    }
}

impl Machine for Server {
    type Event = ServerEvent;

    fn handle_datagram(&mut self, now: Instant, socket: SocketId, from: SocketAddr, payload: &[u8]) {
        self.last_now = Some(now);
        if payload.len() > wire::MAX_DATAGRAM {
            self.stats.malformed += 1;
            return;
        }
        match wire::classify(payload) {
            wire::Kind::Stun => self.stun(now, socket, from, payload),
            wire::Kind::Punchline if layout::is_channel_tag(payload[0]) => match payload[0] {
                layout::tag::SEALED => self.sealed(now, socket, from, payload),
                layout::tag::HELLO if self.limits.allow(now, from.ip()) => self.hello(now, socket, from, payload),
                layout::tag::KEY_REQUEST if self.limits.allow(now, from.ip()) => {
                    self.key_request(socket, from, payload)
                }
                layout::tag::HELLO | layout::tag::KEY_REQUEST => self.stats.rate_limited += 1,
                _ => {
                    debug!(%from, tag = payload[0], "a channel datagram a server does not accept");
                    self.stats.malformed += 1;
                }
            },
            wire::Kind::Punchline => match Frame::decode(payload) {
                Ok(frame) => {
                    // Signaling travels only inside a channel.
                    debug!(%from, tag = frame.tag(), "a signaling frame outside any channel");
                    self.stats.unauthenticated += 1;
                }
                Err(FrameError::UnsupportedVersion(v)) => {
                    debug!(%from, version = v, "frame of an unsupported version");
                    self.stats.malformed += 1;
                    // Told so only when the answer is smaller than the
                    // frame: the source proved nothing (issue 20; found by
                    // the server_machine fuzz target, a 2-byte frame got a
                    // 4-byte answer).
                    let answer = Frame::Error { request: 0, code: ErrorCode::UnsupportedVersion };
                    if answer.encode().len() < payload.len() && self.limits.allow(now, from.ip()) {
                        self.reply_plain(socket, from, answer);
                    }
                }
                Err(error) => {
                    debug!(%from, %error, "dropped a malformed frame");
                    self.stats.malformed += 1;
                }
            },
            wire::Kind::Unknown => self.stats.malformed += 1,
        }
    }

    fn handle_stream_data(&mut self, now: Instant, conn: SocketId, bytes: &[u8]) {
        self.last_now = Some(now);
        let (remote, datagrams, broken) = match self.streams.receive(now, conn, bytes) {
            Received::Datagrams(remote, datagrams) => (remote, datagrams, None),
            Received::Broken(remote, datagrams, error) => (remote, datagrams, Some(error)),
            Received::Unknown => return debug!(conn = conn.0, "bytes on a connection we do not hold; ignored"),
        };
        for datagram in datagrams {
            self.handle_datagram(now, conn, remote, &datagram);
        }
        if let Some(error) = broken {
            debug!(%remote, %error, "a stream connection that breaks the framing; closed");
            self.stats.streams_broken += 1;
            self.close_stream(conn);
        }
    }

    fn handle_stream_closed(&mut self, now: Instant, conn: SocketId) {
        self.last_now = Some(now);
        if let Some(closed) = self.streams.close(conn) {
            self.forget_stream(conn, closed.bound);
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.last_now = Some(now);
        for timer in self.timers.expire(now) {
            match timer {
                ServerTimer::Offer(session) => self.resend_offers(now, session),
                ServerTimer::Mailbox => self.mailbox_timeout(now),
                ServerTimer::Sweep => {
                    self.sweep(now);
                    self.timers.set(ServerTimer::Sweep, now + Duration::from_secs(5));
                }
            }
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        loop {
            let t = self.transmits.pop_front()?;
            let closed = &self.closed_streams;
            if let Some(t) = self.streams.prepare(t, |s| closed.contains(&s)) {
                return Some(t);
            }
        }
    }

    fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if !self.transmits.is_empty() || !self.events.is_empty() || self.storage.has_queued() {
            return self.last_now;
        }
        self.timers.next().map(|(_, at)| at)
    }
}

impl Server {
    fn handle_frame(&mut self, now: Instant, socket: SocketId, from: SocketAddr, frame: Frame) {
        // Relay traffic is limited per session by bytes, text frames per user
        // (see `mailbox`); everything else is a request, limited per source
        // address.
        let limited_elsewhere = matches!(
            frame,
            Frame::Relay { .. } | Frame::TextSend { .. } | Frame::TextDeliverAck { .. } | Frame::InboxSync { .. }
        );
        if !limited_elsewhere && !self.limits.allow(now, from.ip()) {
            debug!(%from, "request over the source's rate limit");
            self.stats.rate_limited += 1;
            return;
        }
        match frame {
            Frame::Keepalive { token, profile } => {
                let Some((name, user)) = self.users.by_token_mut(token) else {
                    self.stats.bad_token += 1;
                    return self.not_logged_in(socket, from, 0);
                };
                user.last_seen = now;
                user.profile = profile;
                // A NAT may rebind the mapping (or reboot, or the user
                // moved): follow the user to its new address, so relayed
                // frames keep reaching it, and tell its peers.
                // Between UDP and TCP the address may even stay the same
                // (one external address and port for both): the socket
                // says the way changed.
                let moved = user.reflexive != from || user.socket != socket;
                user.reflexive = from;
                user.socket = socket;
                if !self.streams.contains(socket) {
                    user.udp_reflexive = Some(from);
                }
                self.streams.mark_bound(socket);
                let (name, sessions): (String, Vec<SessionId>) =
                    if moved { (name.to_owned(), user.sessions.iter().copied().collect()) } else { Default::default() };
                self.reply(socket, from, Frame::KeepaliveAck { reflexive: from });
                for session in sessions {
                    self.reoffer_to_peer(now, session, &name);
                }
            }
            Frame::Profile { token, profile } => {
                if let Some(user) = self.user_by_token(token) {
                    user.profile = profile;
                    user.profile_known = true;
                    user.last_seen = now;
                } else {
                    self.not_logged_in(socket, from, 0);
                }
            }
            Frame::Lookup { token, request, user } => {
                if self.user_by_token(token).is_none() {
                    return self.not_logged_in(socket, from, request);
                }
                let online = self.users.contains(&user);
                match self.users.get(&user).map(|u| u.key).or_else(|| self.known_users.key(&user)) {
                    Some(key) => self.reply(socket, from, Frame::LookupReply { request, online, key: Some(key.0) }),
                    None if !valid_user_name(&user) => {
                        self.reply(socket, from, Frame::LookupReply { request, online, key: None })
                    }
                    None => {
                        // Which key, if any, the store knows.
                        let waiting =
                            storage::Waiting::Lookup { reply_to: (socket, from, token), request, user: user.clone() };
                        self.storage.request(crate::messaging::StoreOp::ReadUser { user }, waiting);
                    }
                }
            }
            Frame::Connect { token, request, peer, profile } => {
                // A connect may leave before the client's NAT discovery ends
                // (it carries an unmeasured profile then): only a measured
                // one counts.
                if let Some(user) = self.user_by_token(token).filter(|_| profile != NatProfile::default()) {
                    user.profile = profile;
                    user.profile_known = true;
                }
                self.connect(now, socket, from, token, request, peer)
            }
            Frame::OfferAck { token, session } => {
                let Some((name, _)) = self.users.by_token(token) else {
                    self.stats.bad_token += 1;
                    return;
                };
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.unacked.remove(name);
                    if s.unacked.is_empty() {
                        s.established = true;
                        self.timers.stop(&ServerTimer::Offer(session));
                    }
                }
            }
            Frame::Relay { token, session, payload } => self.relay(now, from, token, session, payload),
            Frame::Leave { token, session } => {
                let Some((name, _)) = self.users.by_token(token) else {
                    self.stats.bad_token += 1;
                    return;
                };
                // A member closed the session before its end-to-end keys
                // existed (it cannot tell the peer itself): end it for both.
                if self.sessions.get(&session).is_some_and(|s| s.initiator == name || s.responder == name) {
                    self.end_session(session, CloseReason::Peer);
                }
            }
            Frame::Discover { nonce, answer_from } => {
                if let Some(out) = self.answer_socket(socket, answer_from) {
                    self.reply(out, from, Frame::DiscoverReply { nonce, reflexive: from });
                }
            }
            Frame::TextSend { token, id, to, sealed } => self.text_send(now, socket, from, token, id, to, sealed),
            Frame::TextDeliverAck { token, from: sender, id } => {
                self.text_delivered(now, socket, from, token, sender, id)
            }
            Frame::InboxSync { token } => self.inbox_sync(now, socket, from, token),
            Frame::Logout { token } => {
                if let Some(name) = self.users.by_token(token).map(|(name, _)| name.to_owned()) {
                    self.go_offline(&name);
                }
            }
            other => {
                debug!(%from, tag = other.tag(), "frame a server does not accept");
                self.stats.malformed += 1;
            }
        }
    }

    /// True when `user` is online: it completed a handshake and proved it
    /// receives at its address (see `handshake`).
    fn reachable(&self, user: &str) -> bool {
        self.users.contains(user)
    }

    fn sweep(&mut self, now: Instant) {
        let silent: Vec<String> = self
            .users
            .iter()
            .filter(|(_, u)| now.saturating_duration_since(u.last_seen) >= self.config.user_timeout)
            .map(|(n, _)| n.to_owned())
            .collect();
        for name in silent {
            debug!(user = %name, "no keepalive within the user timeout (or no proof of its address)");
            self.go_offline(&name);
        }
        // A login that never proved its address (spoofed, or its client
        // gone at once) is forgotten sooner.
        self.pending.retain(|_, p| now.saturating_duration_since(p.since) < UNPROVEN_TIMEOUT);
        self.limits.forget_idle(now, Duration::from_secs(60));
        // A connection nobody logged in over (a scanner, a STUN client done
        // with it, a client that moved back to UDP) is closed once idle.
        let idle: Vec<SocketId> = self
            .streams
            .iter()
            .filter(|(_, c)| now.saturating_duration_since(c.last_active) >= self.config.stream_idle_timeout)
            .filter(|(_, c)| !c.bound)
            .map(|(id, _)| id)
            .collect();
        for conn in idle {
            debug!(conn = conn.0, "an idle stream connection without a login; closed");
            self.close_stream(conn);
        }
        // One pass over the users, and only while a closed connection is
        // still named by one.
        if !self.closed_streams.is_empty() {
            let named: BTreeSet<SocketId> = self.users.iter().map(|(_, u)| u.socket).collect();
            self.closed_streams.retain(|conn| named.contains(conn));
        }
    }

    fn close_stream(&mut self, conn: SocketId) {
        if let Some(closed) = self.streams.close(conn) {
            self.forget_stream(conn, closed.bound);
            self.events.push_back(ServerEvent::CloseStream { conn });
        }
    }

    /// A connection closed. Users reached over it stay online until they
    /// move (their client reconnects, or falls back to UDP, and its
    /// keepalive says where) or time out; what is sent to them meanwhile is
    /// dropped, and nothing queued for it leaves.
    /// Without a scan of the users: a connection that was `bound` may still
    /// be named by one (the sweep forgets it once none does).
    fn forget_stream(&mut self, conn: SocketId, bound: bool) {
        self.transmits.retain(|t| t.socket != conn);
        if bound {
            self.closed_streams.insert(conn);
        }
    }

    /// How `user` is reached: over a stream connection, or UDP.
    fn transport_of(&self, user: &User) -> Transport {
        if self.streams.contains(user.socket) {
            Transport::Tcp
        } else {
            Transport::Udp
        }
    }

    fn go_offline(&mut self, name: &str) {
        let Some((_, user)) = self.users.remove(name) else { return };
        self.mailbox.forget_user(name);
        for session in user.sessions {
            self.end_session(session, CloseReason::PeerOffline);
        }
        self.events.push_back(ServerEvent::UserOffline { user: name.to_owned() });
    }

    fn user_by_token(&mut self, token: u64) -> Option<&mut User> {
        let user = self.users.by_token_mut(token).map(|(_, user)| user);
        if user.is_none() {
            self.stats.bad_token += 1;
        }
        user
    }

    fn not_logged_in(&mut self, socket: SocketId, from: SocketAddr, request: u32) {
        self.reply(socket, from, Frame::Error { request, code: ErrorCode::NotLoggedIn });
    }

    fn fresh_token(&mut self) -> u64 {
        loop {
            let t = self.rng.next_u64();
            if t != 0 && !self.users.holds_token(t) && !self.pending.contains_key(&t) {
                return t;
            }
        }
    }

    /// The socket that answers "from `answer_from`" a request that arrived on
    /// `socket`.
    fn answer_socket(&self, socket: SocketId, answer_from: AnswerFrom) -> Option<SocketId> {
        let (_, here) = *self.sockets.iter().find(|(id, _)| *id == socket)?;
        let alternate = self.config.alternate?;
        let primary = self.config.primary;
        let other_ip = if here.ip() == primary.ip() { alternate.ip() } else { primary.ip() };
        let other_port = if here.port() == primary.port() { alternate.port() } else { primary.port() };
        let wanted = match answer_from {
            AnswerFrom::Same => here,
            AnswerFrom::OtherPort => SocketAddr::new(here.ip(), other_port),
            AnswerFrom::OtherAddress => SocketAddr::new(other_ip, other_port),
        };
        self.sockets.iter().find(|(_, a)| *a == wanted).map(|(id, _)| *id)
    }

    /// Answers the sealed frame being handled: `frame` goes to `to` (its
    /// source, or for NAT discovery another of the sender's sockets) sealed
    /// in the channel it came in. Outside the handling of a sealed frame
    /// nothing is sent: the server answers no signaling outside a channel.
    fn reply(&mut self, socket: SocketId, to: SocketAddr, frame: Frame) {
        match self.current {
            Some(token) => self.send_in(token, socket, to, frame),
            None => debug!(%to, tag = frame.tag(), "an answer outside any channel; dropped"),
        }
    }

    /// Answers a request that waited (for the store, or a recipient's
    /// acknowledgement): to where it came from, in the channel it came in.
    fn reply_in(&mut self, (socket, to, token): storage::ReplyTo, frame: Frame) {
        self.send_in(token, socket, to, frame);
    }

    /// Sends `frame` to `user`, sealed in its own channel, at its address.
    fn send_to_user(&mut self, user: &str, frame: Frame) {
        if let Some((token, u)) = self.users.get_with_token(user) {
            let (socket, to) = (u.socket, u.reflexive);
            self.send_in(token, socket, to, frame);
        }
    }

    /// Sends `frame` to `to` sealed in the channel of the user holding
    /// `token`: never chosen by address, which two users behind one NAT may
    /// share. Nothing is sent once that user is gone.
    fn send_in(&mut self, token: u64, socket: SocketId, to: SocketAddr, frame: Frame) {
        self.send_in_as(token, socket, to, frame, false);
    }

    /// [`Server::send_in`], marking the datagram [`Transmit::droppable`]
    /// when it is relayed.
    fn send_in_as(&mut self, token: u64, socket: SocketId, to: SocketAddr, frame: Frame, droppable: bool) {
        let Some((_, user)) = self.users.by_token(token) else {
            debug!(%to, tag = frame.tag(), "the channel is gone; a frame dropped");
            return;
        };
        let plain = frame.encode();
        let Some(datagram) = user.channel.seal(&plain) else {
            debug!(%to, "a channel's counter is exhausted");
            return;
        };
        self.send_carrying(socket, to, datagram, plain);
        if droppable {
            if let Some(t) = self.transmits.back_mut() {
                t.droppable = true;
            }
        }
    }

    /// Sends `frame` outside any channel: only the tiny errors that say a
    /// request cannot be understood (smaller than it).
    fn reply_plain(&mut self, socket: SocketId, to: SocketAddr, frame: Frame) {
        self.send(socket, to, wire::frame_bytes(&frame, |_| {}));
    }

    fn send(&mut self, socket: SocketId, to: SocketAddr, payload: Bytes) {
        self.transmits.push_back(Transmit {
            socket,
            destination: to,
            ttl: None,
            payload,
            plaintext: None,
            droppable: false,
        });
    }

    /// Queues a datagram of the channel that carries `frame` (see
    /// [`Transmit::plaintext`]).
    fn send_carrying(&mut self, socket: SocketId, to: SocketAddr, payload: Vec<u8>, frame: Vec<u8>) {
        let (payload, plaintext) = (wire::payload_bytes(payload), Some(Bytes::from(frame)));
        self.transmits.push_back(Transmit { socket, destination: to, ttl: None, payload, plaintext, droppable: false });
    }
}

/// The sockets a server with these addresses listens on.
fn server_sockets(primary: SocketAddr, alternate: Option<SocketAddr>) -> Vec<(SocketId, SocketAddr)> {
    let mut sockets = vec![(SocketId(0), primary)];
    if let Some(alt) = alternate {
        if alt != primary {
            sockets.push((SocketId(1), alt));
        }
        if alt.ip() != primary.ip() && alt.port() != primary.port() {
            sockets.push((SocketId(2), SocketAddr::new(primary.ip(), alt.port())));
            sockets.push((SocketId(3), SocketAddr::new(alt.ip(), primary.port())));
        }
    }
    sockets
}

/// A user name is 1 to 64 bytes of letters and digits of any script
/// (Unicode alphanumerics: `alice`, `李雷`, `Zoë2`) and the punctuation
/// [`USER_NAME_PUNCTUATION`]. Everything else is refused: spaces, control
/// characters, and the invisible format characters (bidirectional
/// overrides such as U+202E, zero-width joiners) that would let a name
/// print as another on a terminal.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= wire::frame::MAX_USER_NAME
        && name.chars().all(|c| c.is_alphanumeric() || USER_NAME_PUNCTUATION.contains(c))
}

/// How long a completed handshake may wait for the proof of its address
/// (its first sealed frame, see `handshake`) before it is forgotten:
/// clients prove at once, and
/// retry their keepalive within 2 s.
const UNPROVEN_TIMEOUT: Duration = Duration::from_secs(10);

/// The punctuation a user name may contain besides letters and digits.
pub const USER_NAME_PUNCTUATION: &str = "-_.@+";

#[cfg(test)]
mod tests {
    use super::valid_user_name;

    #[test]
    fn names_are_letters_digits_and_a_little_punctuation_of_any_script() {
        for name in ["alice", "bob-2", "carol.smith@example", "李雷", "Zoë+work", "a_b"] {
            assert!(valid_user_name(name), "{name}");
        }
    }

    #[test]
    fn names_that_could_print_as_another_are_refused() {
        // A right-to-left override, a zero-width joiner, an escape sequence,
        // a space, and nothing at all.
        for name in ["ali\u{202e}ec", "al\u{200d}ice", "bob\u{1b}[2J", "bob smith", "", "bob!"] {
            assert!(!valid_user_name(name), "{name:?}");
        }
        assert!(!valid_user_name(&"a".repeat(65)));
    }
}
