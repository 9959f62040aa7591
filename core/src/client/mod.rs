//! The client machine: login, keepalive, NAT discovery, sessions.
//!
//! A [`Client`] logs in as soon as it is created, keeps its NAT mapping toward
//! the server alive, measures its NAT ([`discovery`]) and reports the profile.
//! [`Client::connect`] asks the server for a session with another user; the
//! session is usable over the server's relay after one round trip, and each
//! session then tries to open a direct path ([`session`]): openers first, then
//! authenticated probes, then migration, keepalive on the direct path and
//! fallback to the relay when it dies.
//!
//! The client starts with one socket, the *primary* socket, which talks to
//! the server and carries the first punching attempt. It asks its driver for
//! more sockets through [`ClientEvent::OpenSockets`] (NAT discovery and retries
//! from fresh local ports) and gives them back with
//! [`ClientEvent::ReleaseSocket`].

mod config;
mod discovery;
mod messaging;
mod session;
mod sessions;
mod stream;
mod traversal;

pub use config::ClientConfig;
pub use messaging::MessagingConfig;
pub use traversal::{birthday_success, BIRTHDAY_PORTS};

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::debug;

use crate::machine::{Machine, SocketId, Transmit};
use crate::messaging::{SendTextError, TextFailure, TextPath};
use crate::nat::{NatProfile, Strategy};
use crate::rng::Rng;
use crate::timer::Timers;
use crate::wire::frame::{
    CloseReason, ErrorCode, Frame, FrameError, MessageId, SessionId, TextStatus, MAX_APP_PAYLOAD,
};
use crate::wire::{self, stun};

use discovery::Discovery;
use messaging::Messaging;
use session::Session;
use sessions::Sessions;

/// Something a user of the client (or its driver) cares about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// The server accepted the login.
    LoggedIn {
        /// The address the server sees us at.
        reflexive: SocketAddr,
    },
    /// The server refused the login (bad user name, unsupported version).
    LoginFailed {
        /// Why.
        code: ErrorCode,
    },
    /// The server has not answered for [`ClientConfig::server_timeout`]. The
    /// client keeps trying; direct sessions keep working.
    ServerUnreachable,
    /// The NAT now maps us to another address (a rebinding or a reboot).
    ReflexiveChanged {
        /// The address before.
        old: SocketAddr,
        /// The address now.
        new: SocketAddr,
    },
    /// NAT discovery finished.
    NatProfile(NatProfile),
    /// Answer to [`Client::lookup`].
    LookupResult {
        /// Who was looked up.
        user: String,
        /// Whether they are online.
        online: bool,
    },
    /// A session exists and is usable over the relay.
    SessionOpened {
        /// The session.
        session: SessionId,
        /// The other member.
        peer: String,
        /// True when we asked for it.
        initiator: bool,
        /// How it will try for a direct path.
        strategy: Strategy,
    },
    /// Both sides' openers are out; probing starts.
    PunchStarted {
        /// The session.
        session: SessionId,
        /// Which attempt (0 is the first).
        attempt: u16,
    },
    /// An attempt ended without a direct path.
    PunchFailed {
        /// The session.
        session: SessionId,
        /// Which attempt.
        attempt: u16,
        /// When the next attempt starts, or `None` when the session gave up
        /// and stays on the relay.
        retry_in: Option<Duration>,
    },
    /// The session now uses a direct path.
    PathDirect {
        /// The session.
        session: SessionId,
        /// Our socket on the path.
        socket: SocketId,
        /// The peer's address on the path.
        remote: SocketAddr,
    },
    /// The direct path stopped answering; the session is back on the relay.
    PathFellBack {
        /// The session.
        session: SessionId,
    },
    /// Application data arrived, in order, exactly once.
    DataReceived {
        /// The session.
        session: SessionId,
        /// The data.
        data: Bytes,
    },
    /// The session ended.
    SessionClosed {
        /// The session.
        session: SessionId,
        /// Why.
        reason: CloseReason,
    },
    /// A [`Client::connect`] failed before a session existed.
    ConnectFailed {
        /// Who we asked for.
        peer: String,
        /// Why.
        reason: ConnectFailure,
    },
    /// Driver: bind `count` new UDP sockets and answer with
    /// [`Client::sockets_opened`] quoting `request`.
    OpenSockets {
        /// Quote this in the answer.
        request: u32,
        /// How many sockets.
        count: u16,
    },
    /// Driver: the client no longer needs `socket`; close it.
    ReleaseSocket {
        /// The socket.
        socket: SocketId,
    },
    /// A text message arrived (the first copy of it: never twice).
    TextReceived {
        /// The sender.
        from: String,
        /// Its id.
        id: MessageId,
        /// The text.
        text: String,
    },
    /// A text sent with [`Client::send_text`] was acknowledged.
    TextAcked {
        /// Its id.
        id: MessageId,
        /// Delivered to the recipient, or stored durably by the server.
        status: TextStatus,
        /// Who acknowledged it: the peer directly, or the server.
        path: TextPath,
    },
    /// A text sent with [`Client::send_text`] failed for good.
    TextFailed {
        /// Its id.
        id: MessageId,
        /// Why.
        reason: TextFailure,
    },
    /// The server holds no more messages for us: everything stored was
    /// received and acknowledged (after a login, or after a backlog drained).
    InboxEmpty,
}

/// Why a connect failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectFailure {
    /// No such user.
    UnknownPeer,
    /// The user exists but is offline.
    PeerOffline,
    /// The server did not answer.
    ServerUnreachable,
    /// The server refused (limits, bad name).
    Refused(ErrorCode),
}

/// Errors of [`Client::connect`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConnectError {
    /// Not logged in yet.
    #[error("not logged in")]
    NotLoggedIn,
    /// The name cannot be a user.
    #[error("invalid user name")]
    BadUserName,
}

/// Errors of [`Client::send`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// No such session (never existed, or closed).
    #[error("no such session")]
    UnknownSession,
    /// Larger than one message may be.
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// The message's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Too many messages are unacknowledged; wait for acknowledgements.
    #[error("send window full")]
    WindowFull,
}

/// The path a session uses now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// Through the server's relay.
    Relay,
    /// Peer to peer.
    Direct {
        /// Our socket.
        socket: SocketId,
        /// The peer's address.
        remote: SocketAddr,
    },
}

/// A snapshot of one session, for reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// The other member.
    pub peer: String,
    /// The strategy.
    pub strategy: Strategy,
    /// The current path.
    pub path: PathKind,
    /// Times the session fell back from direct to the relay.
    pub fallbacks: u32,
    /// Probes sent, all attempts together.
    pub probes_sent: u64,
    /// Punching attempts started.
    pub attempts: u16,
}

/// Counters of what the client dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Undecodable datagrams.
    pub malformed: u64,
    /// Peer frames with a bad MAC, a replayed counter or an unknown session.
    pub unauthenticated: u64,
    /// Frames from an unexpected source (e.g. server frames not from the
    /// server).
    pub unexpected: u64,
}

/// The client's protocol state. See the [module documentation](self).
#[derive(Debug)]
pub struct Client {
    out: Out,
    /// Inline, but each session boxed: a session is about 1 KB, and two inline
    /// would more than double the client for the one or two it holds.
    sessions: Sessions,
    timers: Timers<ClientTimer>,
    login: Login,
    primary: (SocketId, SocketAddr),
    socket_requests: BTreeMap<u32, SocketOwner>,
    next_request: u32,
    messaging: Messaging,
    config: ClientConfig,
    discovery: Option<Discovery>,
    rng: Rng,
    profile: NatProfile,
    connects: BTreeMap<u32, PendingConnect>,
    lookups: BTreeMap<u32, String>,
    stats: ClientStats,
}

/// Output queues shared by the client and its sub-machines.
#[derive(Debug, Default)]
pub(crate) struct Out {
    pub(crate) transmits: VecDeque<Transmit>,
    pub(crate) events: VecDeque<ClientEvent>,
    pub(crate) now: Option<Instant>,
    /// Texts and their acknowledgements that sessions received, for the
    /// messaging half ([`messaging::PeerText`]).
    pub(crate) peer_texts: Vec<(SessionId, messaging::PeerText)>,
}

impl Out {
    /// Queues a datagram built elsewhere (a STUN message).
    pub(crate) fn send(&mut self, socket: SocketId, to: SocketAddr, ttl: Option<u8>, payload: Vec<u8>) {
        self.push(socket, to, ttl, wire::payload_bytes(payload));
    }
    /// Queues `frame`, unsigned.
    pub(crate) fn send_frame(&mut self, socket: SocketId, to: SocketAddr, ttl: Option<u8>, frame: &Frame) {
        self.send_sealed(socket, to, ttl, frame, |_| {});
    }
    /// Queues `frame` once `seal` has signed its encoding in place.
    pub(crate) fn send_sealed(
        &mut self,
        socket: SocketId,
        to: SocketAddr,
        ttl: Option<u8>,
        frame: &Frame,
        seal: impl FnOnce(&mut [u8]),
    ) {
        self.push(socket, to, ttl, wire::frame_bytes(frame, seal));
    }
    fn push(&mut self, socket: SocketId, destination: SocketAddr, ttl: Option<u8>, payload: Bytes) {
        self.transmits.push_back(Transmit { socket, destination, ttl, payload });
    }
    pub(crate) fn event(&mut self, event: ClientEvent) {
        self.events.push_back(event);
    }
}

/// Who asked for sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SocketOwner {
    Discovery,
    Session(SessionId, u16),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ClientTimer {
    Login,
    Keepalive,
    Connect(u32),
    Discovery,
}

#[derive(Debug)]
enum Login {
    Pending { request: u32, sends: u32, since: Instant, reported_unreachable: bool },
    Failed,
    Online { token: u64, reflexive: SocketAddr, awaiting_since: Option<Instant>, reported_unreachable: bool },
    LoggedOut,
}

#[derive(Debug)]
struct PendingConnect {
    peer: String,
    /// 0 while waiting for the login and NAT discovery to finish.
    sends: u32,
    /// The server answered `NotLoggedIn` once and the client logged in
    /// again; a second time ends the connect.
    relogged: bool,
}

/// What a session needs from the client to send.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ctx<'a> {
    pub(crate) now: Instant,
    pub(crate) config: &'a ClientConfig,
    pub(crate) token: Option<u64>,
    pub(crate) primary: (SocketId, SocketAddr),
    /// The primary socket's server-reflexive address, while logged in.
    pub(crate) reflexive: Option<SocketAddr>,
}

/// Builds a [`Ctx`] from the client's fields, borrowing only `config`, so
/// sessions and the output queues stay mutably borrowable beside it.
macro_rules! ctx {
    ($client:ident, $now:expr) => {{
        let (token, reflexive) = match $client.login {
            Login::Online { token, reflexive, .. } => (Some(token), Some(reflexive)),
            _ => (None, None),
        };
        Ctx { now: $now, config: &$client.config, token, primary: $client.primary, reflexive }
    }};
}

impl Client {
    /// A client that logs in at once from its primary socket `primary` (its
    /// id and local address).
    pub fn new(config: ClientConfig, primary: (SocketId, SocketAddr), now: Instant) -> Self {
        let mut client = Client {
            messaging: Messaging::new(Rng::new(config.seed).fork(0x7e47_3e55)),
            rng: Rng::new(config.seed).fork(0x00c1_1e47),
            config,
            primary,
            login: Login::LoggedOut,
            discovery: None,
            profile: NatProfile::default(),
            connects: BTreeMap::new(),
            lookups: BTreeMap::new(),
            sessions: Sessions::default(),
            next_request: 1,
            socket_requests: BTreeMap::new(),
            timers: Timers::default(),
            out: Out { now: Some(now), ..Out::default() },
            stats: ClientStats::default(),
        };
        client.start_login(now);
        client
    }

    /// The settings.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The NAT profile measured so far.
    pub fn nat_profile(&self) -> NatProfile {
        self.profile
    }

    /// Our server-reflexive address, once logged in.
    pub fn reflexive(&self) -> Option<SocketAddr> {
        match self.login {
            Login::Online { reflexive, .. } => Some(reflexive),
            _ => None,
        }
    }

    /// True once the server accepted the login.
    pub fn is_logged_in(&self) -> bool {
        matches!(self.login, Login::Online { .. })
    }

    /// Counters of dropped input.
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// A snapshot of `session`.
    pub fn session_info(&self, session: SessionId) -> Option<SessionInfo> {
        self.sessions.get(&session).map(|s| s.info())
    }

    /// Open sessions, in id order.
    pub fn sessions(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.sessions.keys().copied()
    }

    /// Asks the server for a session with `peer`. Answered by
    /// [`ClientEvent::SessionOpened`] or [`ClientEvent::ConnectFailed`].
    ///
    /// The request waits until the login succeeded and NAT discovery
    /// finished (at most [`ClientConfig::discovery_timeout`] and a few round
    /// trips), so the server chooses the strategy from a measured profile.
    pub fn connect(&mut self, now: Instant, peer: &str) -> Result<(), ConnectError> {
        self.out.now = Some(now);
        if !crate::server::valid_user_name(peer) || peer == self.config.user {
            return Err(ConnectError::BadUserName);
        }
        if matches!(self.login, Login::Failed | Login::LoggedOut) {
            return Err(ConnectError::NotLoggedIn);
        }
        let request = self.fresh_request();
        self.connects.insert(request, PendingConnect { peer: peer.to_owned(), sends: 0, relogged: false });
        self.send_waiting_connects(now);
        Ok(())
    }

    /// Asks the server whether `user` is online; answered by
    /// [`ClientEvent::LookupResult`]. Sent once: a lost answer is not retried.
    pub fn lookup(&mut self, now: Instant, user: &str) -> Result<(), ConnectError> {
        self.out.now = Some(now);
        let Login::Online { token, .. } = self.login else {
            return Err(ConnectError::NotLoggedIn);
        };
        if !crate::server::valid_user_name(user) {
            return Err(ConnectError::BadUserName);
        }
        let request = self.fresh_request();
        self.lookups.insert(request, user.to_owned());
        self.send_to_server(Frame::Lookup { token, request, user: user.to_owned() });
        Ok(())
    }

    /// Sends `data` on `session`, reliably and in order, on whichever path
    /// the session uses.
    pub fn send(&mut self, now: Instant, session: SessionId, data: &[u8]) -> Result<(), SendError> {
        self.out.now = Some(now);
        if data.len() > MAX_APP_PAYLOAD {
            return Err(SendError::TooLarge { len: data.len(), max: MAX_APP_PAYLOAD });
        }
        let ctx = ctx!(self, now);
        let s = self.sessions.get_mut(&session).ok_or(SendError::UnknownSession)?;
        if s.unacked_app() >= self.config.send_window {
            return Err(SendError::WindowFull);
        }
        s.send_app(&ctx, &mut self.out, data.to_vec());
        Ok(())
    }

    /// Sends a text message to user `to`: over a direct session with `to`
    /// when one is open (falling back to the server when the peer does not
    /// acknowledge in time), otherwise through the server, which stores it
    /// while `to` is offline. Answered by [`ClientEvent::TextAcked`] or
    /// [`ClientEvent::TextFailed`] with the returned id. Before the login
    /// completes the message waits. See [`crate::messaging`].
    pub fn send_text(&mut self, now: Instant, to: &str, text: &str) -> Result<MessageId, SendTextError> {
        self.out.now = Some(now);
        if matches!(self.login, Login::Failed | Login::LoggedOut) {
            return Err(SendTextError::NotLoggedIn);
        }
        let ctx = ctx!(self, now);
        self.messaging.send_text(&ctx, &mut self.out, &mut self.sessions, to, text)
    }

    /// Asks the server how many messages it holds for us; answered by
    /// [`ClientEvent::InboxEmpty`] once everything stored has been received
    /// and acknowledged (the server delivers stored messages at login by
    /// itself; this only says when they are all here). Before the login
    /// completes the request waits for it.
    pub fn sync_inbox(&mut self, now: Instant) -> Result<(), SendTextError> {
        self.out.now = Some(now);
        if matches!(self.login, Login::Failed | Login::LoggedOut) {
            return Err(SendTextError::NotLoggedIn);
        }
        let ctx = ctx!(self, now);
        self.messaging.sync_inbox(&ctx, &mut self.out);
        Ok(())
    }

    /// With [`MessagingConfig::ack_on_receipt`] off: the application has
    /// shown or saved the text `id` from `from` ([`ClientEvent::TextReceived`]),
    /// so it is acknowledged now, to the server (which then deletes its copy)
    /// and to the sender over any open session. False when no such text waits
    /// for the application's acknowledgement.
    pub fn ack_text(&mut self, now: Instant, from: &str, id: MessageId) -> bool {
        self.out.now = Some(now);
        let ctx = ctx!(self, now);
        self.messaging.ack_text(&ctx, &mut self.out, &mut self.sessions, from, id)
    }

    /// Text messages sent and not yet acknowledged (nor failed).
    pub fn unacknowledged_texts(&self) -> usize {
        self.messaging.unacknowledged()
    }

    /// Closes `session`, telling the peer.
    pub fn close(&mut self, now: Instant, session: SessionId) {
        self.out.now = Some(now);
        let ctx = ctx!(self, now);
        if let Some(mut s) = self.sessions.remove(&session) {
            s.close(&ctx, &mut self.out, CloseReason::Local);
        }
    }

    /// Logs out: closes every session and tells the server.
    pub fn logout(&mut self, now: Instant) {
        self.out.now = Some(now);
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in ids {
            self.close(now, id);
        }
        if let Login::Online { token, .. } = self.login {
            self.send_to_server(Frame::Logout { token });
        }
        self.login = Login::LoggedOut;
        self.timers = Timers::default();
    }

    /// The driver's answer to [`ClientEvent::OpenSockets`]: the new sockets'
    /// ids and local addresses (fewer than asked, or none, when it could not
    /// bind them).
    pub fn sockets_opened(&mut self, now: Instant, request: u32, sockets: &[(SocketId, SocketAddr)]) {
        self.out.now = Some(now);
        let Some(owner) = self.socket_requests.remove(&request) else {
            for (socket, _) in sockets {
                self.out.event(ClientEvent::ReleaseSocket { socket: *socket });
            }
            return;
        };
        let ctx = ctx!(self, now);
        match owner {
            SocketOwner::Discovery => match self.discovery.as_mut() {
                Some(d) => d.socket_opened(&ctx, &mut self.out, sockets.first().copied()),
                None => sockets.iter().for_each(|(s, _)| self.out.event(ClientEvent::ReleaseSocket { socket: *s })),
            },
            SocketOwner::Session(id, attempt) => match self.sessions.get_mut(&id) {
                Some(s) => s.socket_opened(&ctx, &mut self.out, attempt, sockets),
                None => sockets.iter().for_each(|(s, _)| self.out.event(ClientEvent::ReleaseSocket { socket: *s })),
            },
        }
        self.request_sockets();
    }
}

impl Machine for Client {
    type Event = ClientEvent;

    fn handle_datagram(&mut self, now: Instant, socket: SocketId, from: SocketAddr, payload: &[u8]) {
        self.out.now = Some(now);
        if payload.len() > wire::MAX_DATAGRAM {
            self.stats.malformed += 1;
            return;
        }
        match wire::classify(payload) {
            wire::Kind::Stun => self.handle_stun(now, socket, from, payload),
            wire::Kind::Punchline => match Frame::decode(payload) {
                Ok(frame) => self.handle_frame(now, socket, from, frame, payload),
                Err(FrameError::UnsupportedVersion(v)) => {
                    debug!(%from, version = v, "frame of an unsupported version");
                    self.stats.malformed += 1;
                }
                Err(error) => {
                    debug!(%from, %error, "dropped a malformed datagram");
                    self.stats.malformed += 1;
                }
            },
            wire::Kind::Unknown => self.stats.malformed += 1,
        }
        self.request_sockets();
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.out.now = Some(now);
        for timer in self.timers.expire(now) {
            match timer {
                ClientTimer::Login => self.login_timer(now),
                ClientTimer::Keepalive => self.keepalive_timer(now),
                ClientTimer::Connect(request) => self.connect_timer(now, request),
                ClientTimer::Discovery => {
                    let ctx = ctx!(self, now);
                    if let Some(d) = self.discovery.as_mut() {
                        d.handle_timeout(&ctx, &mut self.out);
                    }
                    self.finish_discovery();
                }
            }
        }
        let ctx = ctx!(self, now);
        let mut closed = Vec::new();
        for (id, s) in self.sessions.iter_mut() {
            if s.next_timeout().is_some_and(|at| at <= now) {
                s.handle_timeout(&ctx, &mut self.out);
            }
            if s.is_closed() {
                closed.push(*id);
            }
        }
        for id in closed {
            self.sessions.remove(&id);
        }
        if self.messaging.next_timeout().is_some_and(|at| at <= now) {
            self.messaging.handle_timeout(&ctx, &mut self.out);
        }
        self.request_sockets();
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<ClientEvent> {
        self.out.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if !self.out.transmits.is_empty() || !self.out.events.is_empty() {
            return self.out.now;
        }
        let timers = self.timers.next().map(|(_, at)| at);
        let discovery = self.discovery.as_ref().and_then(Discovery::next_timeout);
        let sessions = self.sessions.values().filter_map(|s| s.next_timeout()).min();
        [timers, discovery, sessions, self.messaging.next_timeout()].into_iter().flatten().min()
    }
}

impl Client {
    fn fresh_request(&mut self) -> u32 {
        let r = self.next_request;
        self.next_request = self.next_request.wrapping_add(1).max(1);
        r
    }

    fn send_to_server(&mut self, frame: Frame) {
        self.out.send_frame(self.primary.0, self.config.server, None, &frame);
    }

    fn is_server(&self, addr: SocketAddr) -> bool {
        addr == self.config.server || Some(addr) == self.config.alt_server
    }

    fn start_login(&mut self, now: Instant) {
        let request = self.fresh_request();
        self.login = Login::Pending { request, sends: 1, since: now, reported_unreachable: false };
        self.send_login(request);
        self.timers.set(ClientTimer::Login, now + retransmit_after(1));
    }

    fn send_login(&mut self, request: u32) {
        let mut host_candidates = Vec::new();
        if !self.primary.1.ip().is_unspecified() {
            host_candidates.push(self.primary.1);
        }
        self.send_to_server(Frame::Login { request, user: self.config.user.clone(), host_candidates });
    }

    fn login_timer(&mut self, now: Instant) {
        let Login::Pending { request, sends, since, reported_unreachable } = &mut self.login else { return };
        *sends += 1;
        let (request, sends_now) = (*request, *sends);
        if !*reported_unreachable && now.saturating_duration_since(*since) >= self.config.server_timeout {
            *reported_unreachable = true;
            self.out.event(ClientEvent::ServerUnreachable);
        }
        self.send_login(request);
        self.timers.set(ClientTimer::Login, now + retransmit_after(sends_now));
    }

    fn keepalive_timer(&mut self, now: Instant) {
        let Login::Online { token, awaiting_since, reported_unreachable, .. } = &mut self.login else { return };
        let token = *token;
        let waiting = awaiting_since.map(|since| now.saturating_duration_since(since));
        if waiting.is_some_and(|w| w >= self.config.server_timeout) && !*reported_unreachable {
            *reported_unreachable = true;
            self.out.event(ClientEvent::ServerUnreachable);
        }
        awaiting_since.get_or_insert(now);
        self.send_to_server(Frame::Keepalive { token, profile: self.profile });
        // While an answer is missing, ask again soon, so a lost keepalive, a
        // rebinding or a restarted server is noticed quickly.
        let next = if waiting.is_some() { Duration::from_secs(2) } else { KEEPALIVE_RETRY };
        self.timers.set(ClientTimer::Keepalive, now + next.min(self.config.keepalive));
    }

    /// Sends the connects that waited for the login and NAT discovery.
    fn send_waiting_connects(&mut self, now: Instant) {
        let Login::Online { token, .. } = self.login else { return };
        if self.discovery.is_some() {
            return;
        }
        let waiting: Vec<u32> = self.connects.iter().filter(|(_, p)| p.sends == 0).map(|(r, _)| *r).collect();
        for request in waiting {
            let pending = self.connects.get_mut(&request).expect("collected above");
            pending.sends = 1;
            let peer = pending.peer.clone();
            self.send_to_server(Frame::Connect { token, request, peer, profile: self.profile });
            self.timers.set(ClientTimer::Connect(request), now + retransmit_after(1));
        }
    }

    fn connect_timer(&mut self, now: Instant, request: u32) {
        let Some(pending) = self.connects.get_mut(&request) else { return };
        if pending.sends >= CONNECT_SENDS {
            let pending = self.connects.remove(&request).expect("looked up above");
            self.out
                .event(ClientEvent::ConnectFailed { peer: pending.peer, reason: ConnectFailure::ServerUnreachable });
            return;
        }
        pending.sends += 1;
        let (peer, sends) = (pending.peer.clone(), pending.sends);
        if let Login::Online { token, .. } = self.login {
            self.send_to_server(Frame::Connect { token, request, peer, profile: self.profile });
        }
        self.timers.set(ClientTimer::Connect(request), now + retransmit_after(sends));
    }

    fn handle_stun(&mut self, now: Instant, socket: SocketId, from: SocketAddr, payload: &[u8]) {
        let Ok(message) = stun::Message::decode(payload) else {
            self.stats.malformed += 1;
            return;
        };
        if message.class == stun::Class::Request {
            // Answer Binding requests like any STUN server would: it costs
            // nothing and helps peers that check reachability with STUN.
            if let Some(answer) = stun::answer_binding(payload, from) {
                self.out.send(socket, from, None, answer);
            }
            return;
        }
        if message.class != stun::Class::SuccessResponse {
            return;
        }
        let Some(mapped) = message.xor_mapped_address().or_else(|| message.mapped_address()) else { return };
        let ctx = ctx!(self, now);
        let tid = message.transaction_id;
        for s in self.sessions.values_mut() {
            if s.on_binding_response(&ctx, &mut self.out, socket, tid, mapped) {
                return;
            }
        }
    }

    fn handle_frame(&mut self, now: Instant, socket: SocketId, from: SocketAddr, frame: Frame, raw: &[u8]) {
        if frame.is_authenticated() {
            return self.handle_peer_frame(now, socket, from, frame, raw, false);
        }
        if matches!(frame, Frame::Opener) {
            // Openers are not meant to arrive; one that does (a peer on the
            // same LAN) carries nothing.
            return;
        }
        let from_server = self.is_server(from) || self.discovery.as_ref().is_some_and(|d| d.is_server_addr(from));
        if !from_server {
            debug!(%from, "server frame from a source that is not the server");
            self.stats.unexpected += 1;
            return;
        }
        match frame {
            Frame::LoginOk { request, token, reflexive } => {
                let Login::Pending { request: expected, .. } = self.login else { return };
                if request != expected {
                    return;
                }
                self.timers.stop(&ClientTimer::Login);
                self.login = Login::Online { token, reflexive, awaiting_since: None, reported_unreachable: false };
                self.timers.set(ClientTimer::Keepalive, now + self.config.keepalive);
                self.out.event(ClientEvent::LoggedIn { reflexive });
                if self.config.discover_nat {
                    self.start_discovery(now);
                }
                self.send_waiting_connects(now);
                let ctx = ctx!(self, now);
                self.messaging.on_logged_in(&ctx, &mut self.out);
            }
            Frame::KeepaliveAck { reflexive: new } => {
                let Login::Online { reflexive, awaiting_since, reported_unreachable, .. } = &mut self.login else {
                    return;
                };
                *awaiting_since = None;
                *reported_unreachable = false;
                // Back to the regular interval.
                self.timers.set(ClientTimer::Keepalive, now + self.config.keepalive);
                if *reflexive != new {
                    let old = std::mem::replace(reflexive, new);
                    self.out.event(ClientEvent::ReflexiveChanged { old, new });
                    if self.config.discover_nat {
                        self.start_discovery(now);
                    }
                }
            }
            Frame::LookupReply { request, online } => {
                if let Some(user) = self.lookups.remove(&request) {
                    self.out.event(ClientEvent::LookupResult { user, online });
                }
            }
            Frame::Offer { request, session, key, initiator, peer, peer_candidates, strategy, peer_profile } => {
                if let Login::Online { token, .. } = self.login {
                    self.send_to_server(Frame::OfferAck { token, session });
                }
                if self.sessions.contains_key(&session) {
                    return;
                }
                if initiator {
                    match self.connects.get(&request) {
                        Some(p) if p.peer == peer => {
                            self.connects.remove(&request);
                            self.timers.stop(&ClientTimer::Connect(request));
                        }
                        // An offer for a connect we gave up on, or forged.
                        _ => return,
                    }
                }
                let ctx = ctx!(self, now);
                let role = if initiator { crate::auth::Role::Initiator } else { crate::auth::Role::Responder };
                let rng = self.rng.fork(session.0);
                let profiles = (self.profile, peer_profile);
                let s = Session::new(
                    &ctx,
                    &mut self.out,
                    session,
                    key,
                    role,
                    peer,
                    peer_candidates,
                    strategy,
                    profiles,
                    rng,
                );
                self.sessions.insert(session, Box::new(s));
            }
            Frame::Relayed { session, payload } => {
                // The relay names the session it forwarded for; a payload
                // that claims another session is dropped before any MAC work.
                match Frame::decode(&payload) {
                    Ok(inner) if inner.is_authenticated() && peer_session(&inner) == Some(session) => {
                        self.handle_peer_frame(now, socket, from, inner, &payload, true);
                    }
                    _ => self.stats.malformed += 1,
                }
            }
            Frame::SessionEnded { session, reason } => {
                let ctx = ctx!(self, now);
                if let Some(mut s) = self.sessions.remove(&session) {
                    s.close(&ctx, &mut self.out, reason);
                }
            }
            Frame::DiscoverReply { nonce, reflexive } => {
                let ctx = ctx!(self, now);
                if let Some(d) = self.discovery.as_mut() {
                    d.on_reply(&ctx, &mut self.out, socket, nonce, reflexive);
                }
                self.finish_discovery();
            }
            Frame::Error { request, code } => self.handle_error(now, request, code),
            Frame::TextAck { id, status } => self.messaging.on_server_answer(&mut self.out, id, Ok(status)),
            Frame::TextRejected { id, reason } => self.messaging.on_server_answer(&mut self.out, id, Err(reason)),
            Frame::TextDeliver { from, id, text } => {
                let ctx = ctx!(self, now);
                self.messaging.on_server_text(&ctx, &mut self.out, from, id, text);
            }
            Frame::InboxStatus { pending } => {
                let ctx = ctx!(self, now);
                self.messaging.on_inbox_status(&ctx, &mut self.out, pending);
            }
            other => {
                debug!(tag = other.tag(), "frame a client does not accept");
                self.stats.unexpected += 1;
            }
        }
    }

    fn handle_error(&mut self, now: Instant, request: u32, code: ErrorCode) {
        if let Some(pending) = self.connects.get_mut(&request) {
            self.timers.stop(&ClientTimer::Connect(request));
            // Online: the login below starts; pending: another connect's
            // error started it already.
            let logging_in = matches!(self.login, Login::Online { .. } | Login::Pending { .. });
            if code == ErrorCode::NotLoggedIn && logging_in && !pending.relogged {
                // The server forgot our token (it restarted): the connect
                // waits for the new login, as one made before the first
                // login does, instead of failing.
                pending.relogged = true;
                pending.sends = 0;
            } else if let Some(pending) = self.connects.remove(&request) {
                let reason = match code {
                    ErrorCode::UnknownPeer => ConnectFailure::UnknownPeer,
                    ErrorCode::PeerOffline => ConnectFailure::PeerOffline,
                    other => ConnectFailure::Refused(other),
                };
                self.out.event(ClientEvent::ConnectFailed { peer: pending.peer, reason });
                return;
            }
        }
        match (&self.login, code) {
            (Login::Pending { request: r, .. }, ErrorCode::BadUserName | ErrorCode::UnsupportedVersion)
                if *r == request || request == 0 =>
            {
                self.timers.stop(&ClientTimer::Login);
                self.login = Login::Failed;
                self.out.event(ClientEvent::LoginFailed { code });
            }
            (Login::Online { .. }, ErrorCode::NotLoggedIn) => {
                // The server forgot us (restart, or our keepalives were lost
                // for too long): log in again. Direct sessions go on.
                self.timers.stop(&ClientTimer::Keepalive);
                self.start_login(now);
            }
            _ => debug!(?code, request, "error for no pending request"),
        }
    }

    fn handle_peer_frame(
        &mut self,
        now: Instant,
        socket: SocketId,
        from: SocketAddr,
        frame: Frame,
        raw: &[u8],
        relayed: bool,
    ) {
        let Some(session) = peer_session(&frame) else { return };
        let ctx = ctx!(self, now);
        let Some(s) = self.sessions.get_mut(&session) else {
            debug!(%session, "peer frame for an unknown session");
            self.stats.unauthenticated += 1;
            return;
        };
        if !s.authenticate(&frame, raw) {
            debug!(%session, %from, "peer frame failed authentication or replay check");
            self.stats.unauthenticated += 1;
            return;
        }
        s.handle_frame(&ctx, &mut self.out, socket, from, frame, relayed);
        if s.is_closed() {
            self.sessions.remove(&session);
        }
        self.messaging.on_session_texts(&ctx, &mut self.out, &mut self.sessions);
    }

    fn start_discovery(&mut self, now: Instant) {
        let (Some(alt), Login::Online { reflexive, .. }) = (self.config.alt_server, &self.login) else {
            // Nothing to measure against: report what is known, so the
            // server does not wait for a profile that never comes.
            self.profile.public = self.reflexive() == Some(self.primary.1);
            if let Login::Online { token, .. } = self.login {
                self.send_to_server(Frame::Profile { token, profile: self.profile });
            }
            return;
        };
        let reflexive = *reflexive;
        // A discovery still running (the address changed again) gives back
        // its socket, or the wish for one, before the new one starts.
        if let Some(old) = self.discovery.take() {
            if let Some(socket) = old.socket() {
                self.out.event(ClientEvent::ReleaseSocket { socket });
            }
        }
        self.socket_requests.retain(|_, owner| *owner != SocketOwner::Discovery);
        let nonce_seed = self.rng.next_u64();
        let request = self.fresh_request();
        let ctx = ctx!(self, now);
        self.socket_requests.insert(request, SocketOwner::Discovery);
        let d = Discovery::start(&ctx, &mut self.out, self.config.server, alt, reflexive, nonce_seed, request);
        self.discovery = Some(d);
        if let Some(at) = self.discovery.as_ref().and_then(Discovery::next_timeout) {
            self.timers.set(ClientTimer::Discovery, at);
        }
    }

    fn finish_discovery(&mut self) {
        let Some(d) = self.discovery.as_ref() else { return };
        if let Some(at) = d.next_timeout() {
            self.timers.set(ClientTimer::Discovery, at);
        }
        let Some(profile) = d.result() else { return };
        let d = self.discovery.take().expect("checked above");
        if let Some(socket) = d.socket() {
            self.out.event(ClientEvent::ReleaseSocket { socket });
        }
        self.timers.stop(&ClientTimer::Discovery);
        self.profile = profile;
        self.out.event(ClientEvent::NatProfile(profile));
        if let Login::Online { token, .. } = self.login {
            self.send_to_server(Frame::Profile { token, profile });
        }
        if let Some(now) = self.out.now {
            self.send_waiting_connects(now);
        }
    }

    /// Turns sub-machines' socket wishes into driver events.
    fn request_sockets(&mut self) {
        let mut wanted: Vec<(SessionId, u16, u16)> = Vec::new();
        for (id, s) in self.sessions.iter_mut() {
            if let Some((attempt, count)) = s.take_socket_wish() {
                wanted.push((*id, attempt, count));
            }
        }
        for (id, attempt, count) in wanted {
            let request = self.fresh_request();
            self.socket_requests.insert(request, SocketOwner::Session(id, attempt));
            self.out.event(ClientEvent::OpenSockets { request, count });
        }
        // Discovery's request number is reserved when it starts; the driver
        // is asked once discovery wants the socket. That is checked first:
        // this runs after every datagram, and the request table is cold.
        if let Some(d) = self.discovery.as_mut().filter(|d| d.wants_socket()) {
            let request = self.socket_requests.iter().find(|(_, o)| **o == SocketOwner::Discovery).map(|(r, _)| *r);
            if let Some(request) = request {
                d.socket_requested();
                self.out.event(ClientEvent::OpenSockets { request, count: 1 });
            }
        }
    }
}

/// The session an authenticated peer frame belongs to.
fn peer_session(frame: &Frame) -> Option<SessionId> {
    match frame {
        Frame::Probe { session, .. } | Frame::ProbeAck { session, .. } | Frame::Session { session, .. } => {
            Some(*session)
        }
        _ => None,
    }
}

/// How soon a keepalive that got no answer is sent again: well inside a
/// 30 s NAT timeout even after a 25 s keepalive interval.
const KEEPALIVE_RETRY: Duration = Duration::from_secs(2);
/// Sends of a connect request before it fails with
/// [`ConnectFailure::ServerUnreachable`] (about 50 s with the backoff).
const CONNECT_SENDS: u32 = 16;

/// Retransmission schedule for requests to the server: 500 ms, doubling, at
/// most 4 s between sends.
fn retransmit_after(sends: u32) -> Duration {
    Duration::from_millis(500 * 2u64.pow(sends.saturating_sub(1).min(3)))
}
