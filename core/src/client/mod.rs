//! The client machine.
//!
//! A [`Client`] logs in as soon as it is created and keeps its NAT mapping
//! toward the server alive (`login`), measures its NAT (`discovery`) and
//! reports the profile. [`Client::connect`] asks the server for a session
//! with another user (`connect`); the session is usable over the server's
//! relay after one round trip, and each session then tries to open a direct
//! path (`sessions`): openers first, then authenticated probes, then
//! migration, keepalive on the direct path and fallback to the relay when it
//! dies. Text messages go over a direct session or through the server
//! (`messaging`). Files ride a session too (`file_api` for the requests and
//! answers, `sessions::files` for the protocol): offered on its stream,
//! their pieces carried on a congestion-controlled data plane beside it,
//! verified group by group; the driver reads and writes the bytes
//! ([`ClientEvent::FileRead`], [`ClientEvent::FileWrite`]).
//!
//! Each of those parts is a module that owns its state, and none drives
//! another: this module routes datagrams, timeouts and calls to them, and
//! carries what one part hands another (a session's received texts to
//! messaging, messaging's acknowledgements back to a session). Imports
//! between the parts run one way only (a session names messaging's
//! `PeerText`; traversal reuses discovery's arithmetic). What they all
//! share, the output queues and the context they send with, is `context`;
//! what the client tells its user is `events`.
//!
//! The client starts with one socket, the *primary* socket, which talks to
//! the server and carries the first punching attempt. It asks its driver for
//! more sockets through [`ClientEvent::OpenSockets`] (NAT discovery and retries
//! from fresh local ports) and gives them back with
//! [`ClientEvent::ReleaseSocket`]. Where UDP to the server gets no answer, it
//! asks for a TCP connection ([`ClientEvent::OpenStream`]) and reaches the
//! server over it until UDP works again (`route`).

mod config;
mod connect;
mod context;
mod discovery;
mod events;
mod login;
mod messaging;
mod sessions;

pub use config::{ClientConfig, MessagingConfig};
pub use events::{ClientEvent, ClientStats, ConnectError, ConnectFailure, PathKind, SendError, SessionInfo};
pub use file_api::{FileDirection, FileFailure, FileId, FileProgress, FileSource, SendFileError};
pub use login::MAX_HOST_CANDIDATES;
pub use route::{SILENCE_PROBE, STREAM_DEAD_AFTER, UDP_CHECK_FIRST, UDP_CHECK_SENDS, UDP_DEAD_AFTER};
pub use sessions::{birthday_success, BIRTHDAY_PORTS};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use tracing::debug;

use crate::machine::{Machine, SocketId, Transmit};
use crate::messaging::{SendTextError, TextFailure};
use crate::nat::NatProfile;
use crate::rng::Rng;
use crate::secure::{ChannelEnd, OpenError, PublicKey};
use crate::streams::Streams;
use crate::timer::Timers;
use crate::wire::frame::{
    CloseReason, ErrorCode, Frame, FrameError, MessageId, SessionId, TextRejection, Transport, MAX_APP_PAYLOAD,
};
use crate::wire::{self, channel as layout, stun};

use connect::Requests;
use context::{ClientTimer, Ctx, Out};
use discovery::Discovery;
use login::Login;
use messaging::{Messaging, PeerText};
use sessions::{Session, Sessions};

/// The client's protocol state. See the [module documentation](self).
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    primary: (SocketId, SocketAddr),
    out: Out,
    timers: Timers<ClientTimer>,
    login: Login,
    /// The channel to the server, from the last completed handshake: every
    /// frame to the server is sealed in it while the login is online.
    channel: Option<ChannelEnd>,
    discovery: Option<Discovery>,
    profile: NatProfile,
    /// The profile was measured (or there is nothing to measure with):
    /// sessions tell their peers, and the strategy is chosen from it.
    profile_known: bool,
    requests: Requests,
    /// Each session boxed: a session is about 1 KB, and two inline would
    /// more than double the client for the one or two it holds.
    sessions: Sessions<Box<Session>>,
    messaging: Messaging,
    /// The session and attempt that asked for the sockets of each request
    /// to the driver (discovery keeps its own request number).
    socket_requests: BTreeMap<u32, (SessionId, u16)>,
    next_request: u32,
    rng: Rng,
    stats: ClientStats,
    /// UDP or TCP to the server (see `route`).
    route: route::Route,
    /// The TCP connection to the server, while one is open.
    streams: Streams,
    /// Files offered to peers with no session yet, waiting for the one
    /// asked for them.
    waiting_files: Vec<(FileId, String, FileSource)>,
}

/// Builds a [`Ctx`] from the client's fields, borrowing only `config`, so
/// the parts and the output queues stay mutably borrowable beside it.
macro_rules! ctx {
    ($client:ident, $now:expr) => {{
        Ctx {
            now: $now,
            config: &$client.config,
            token: $client.login.token(),
            channel: if $client.login.is_online() { $client.channel.as_ref() } else { None },
            primary: $client.primary,
            reflexive: $client.login.reflexive(),
            server_socket: $client.route.server_socket($client.primary.0),
            stream: $client.route.open_stream(),
        }
    }};
}

// After the macro, which they use.
mod file_api;
mod route;

impl Client {
    /// A client that logs in at once from its primary socket `primary` (its
    /// id and local address).
    pub fn new(config: ClientConfig, primary: (SocketId, SocketAddr), now: Instant) -> Self {
        let mut client = Client {
            login: Login::new(config.server_key, Rng::new(config.seed).fork(0x10_6141)),
            messaging: Messaging::new(Rng::new(config.seed).fork(0x7e47_3e55)),
            rng: Rng::new(config.seed).fork(0x00c1_1e47),
            config,
            primary,
            channel: None,
            discovery: None,
            profile: NatProfile::default(),
            profile_known: false,
            requests: Requests::default(),
            sessions: Sessions::default(),
            next_request: 1,
            socket_requests: BTreeMap::new(),
            timers: Timers::default(),
            out: Out { now: Some(now), ..Out::default() },
            stats: ClientStats::default(),
            route: route::Route::default(),
            streams: Streams::default(),
            waiting_files: Vec::new(),
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
        self.login.reflexive()
    }

    /// True once the server accepted the login.
    pub fn is_logged_in(&self) -> bool {
        self.login.is_online()
    }

    /// Counters of dropped input.
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// A snapshot of `session`.
    pub fn session_info(&self, session: SessionId) -> Option<SessionInfo> {
        let own = self.route.transport();
        self.sessions.get(&session).map(|s| {
            let mut info = s.info();
            info.relay_transport = info.relay_transport.max(own);
            info
        })
    }

    /// Open sessions, in id order.
    pub fn sessions(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.sessions.keys().copied()
    }

    /// Asks the server for a session with `peer`. Answered by
    /// [`ClientEvent::SessionOpened`] or [`ClientEvent::ConnectFailed`].
    ///
    /// The request goes as soon as the login succeeded, whatever NAT
    /// discovery is doing: the session is usable over the relay one round
    /// trip later. Its strategy is the server's guess until both peers'
    /// profiles are measured; then the initiator chooses it again
    /// ([`ClientEvent::StrategyChanged`]).
    pub fn connect(&mut self, now: Instant, peer: &str) -> Result<(), ConnectError> {
        self.out.now = Some(now);
        if !crate::server::valid_user_name(peer) || peer == self.config.user {
            return Err(ConnectError::BadUserName);
        }
        if !self.login.is_active() {
            return Err(ConnectError::NotLoggedIn);
        }
        let request = self.fresh_request();
        self.requests.connect(request, peer);
        self.send_waiting_connects(now);
        Ok(())
    }

    /// Asks the server whether `user` is online; answered by
    /// [`ClientEvent::LookupResult`]. Sent once: a lost answer is not retried.
    pub fn lookup(&mut self, now: Instant, user: &str) -> Result<(), ConnectError> {
        self.out.now = Some(now);
        let Some(token) = self.login.token() else {
            return Err(ConnectError::NotLoggedIn);
        };
        if !crate::server::valid_user_name(user) {
            return Err(ConnectError::BadUserName);
        }
        let request = self.fresh_request();
        let ctx = ctx!(self, now);
        self.requests.lookup(&ctx, &mut self.out, token, request, user);
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
        if !self.login.is_active() {
            return Err(SendTextError::NotLoggedIn);
        }
        let ctx = ctx!(self, now);
        let mut direct = self.sessions.direct_for_texts(to, self.config.send_window);
        let (id, on_session) = self.messaging.send_text(&ctx, &mut self.out, to, text, direct.is_some())?;
        if let (Some(session), Some(text)) = (direct.as_mut(), on_session) {
            session.send_peer_text(&ctx, &mut self.out, text);
        }
        self.ask_wanted_keys(now);
        Ok(id)
    }

    /// Asks the server how many messages it holds for us; answered by
    /// [`ClientEvent::InboxEmpty`] once everything stored has been received
    /// and acknowledged (the server delivers stored messages at login by
    /// itself; this only says when they are all here). Before the login
    /// completes the request waits for it.
    pub fn sync_inbox(&mut self, now: Instant) -> Result<(), SendTextError> {
        self.out.now = Some(now);
        if !self.login.is_active() {
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
        if !self.messaging.ack_text(&ctx, &mut self.out, from, id) {
            return false;
        }
        for s in self.sessions.with_peer(from) {
            s.send_peer_text(&ctx, &mut self.out, PeerText::Ack { id });
        }
        true
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
        let ctx = ctx!(self, now);
        self.login.logout(&ctx, &mut self.out);
        self.timers = Timers::default();
        // NAT discovery ends with the login (found by fuzzing: it kept its
        // past deadline with no timer to serve it, and a driver spun).
        if let Some(d) = self.discovery.take() {
            if let Some(socket) = d.socket() {
                self.out.event(ClientEvent::ReleaseSocket { socket });
            }
        }
    }

    /// The driver's answer to [`ClientEvent::OpenSockets`]: the new sockets'
    /// ids and local addresses (fewer than asked, or none, when it could not
    /// bind them).
    pub fn sockets_opened(&mut self, now: Instant, request: u32, sockets: &[(SocketId, SocketAddr)]) {
        self.out.now = Some(now);
        self.out.live_sockets.extend(sockets.iter().map(|(s, _)| *s));
        let ctx = ctx!(self, now);
        let release =
            |out: &mut Out| sockets.iter().for_each(|(s, _)| out.event(ClientEvent::ReleaseSocket { socket: *s }));
        if let Some(d) = self.discovery.as_mut().filter(|d| d.awaits_socket(request)) {
            d.socket_opened(&ctx, &mut self.out, sockets.first().copied());
            // The phase the socket starts has its own deadline: arm the
            // timer for it (found by fuzzing: a late answer left it unarmed).
            self.finish_discovery();
        } else if let Some((id, attempt)) = self.socket_requests.remove(&request) {
            match self.sessions.get_mut(&id) {
                Some(s) => s.socket_opened(&ctx, &mut self.out, attempt, sockets),
                None => release(&mut self.out),
            }
        } else {
            // Not (or no longer) wanted: the driver closes them again.
            return release(&mut self.out);
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
            wire::Kind::Punchline if layout::is_channel_tag(payload[0]) => {
                self.handle_channel(now, socket, from, payload)
            }
            wire::Kind::Punchline if payload[0] == layout::tag::PEER_SEALED => {
                self.handle_peer_datagram(now, socket, from, payload, false)
            }
            wire::Kind::Punchline if layout::is_peer_tag(payload[0]) => {
                // A session's handshake travels only through the relay.
                debug!(%from, "a peer handshake outside the relay; dropped");
                self.stats.unauthenticated += 1;
            }
            wire::Kind::Punchline => match Frame::decode(payload) {
                Ok(frame) => self.handle_frame(now, from, frame),
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
        self.check_server_if_asked(now);
        self.watch_route(now);
        self.request_sockets();
    }

    fn handle_stream_data(&mut self, now: Instant, conn: SocketId, bytes: &[u8]) {
        self.out.now = Some(now);
        self.stream_data(now, conn, bytes);
    }

    fn handle_stream_closed(&mut self, now: Instant, conn: SocketId) {
        self.out.now = Some(now);
        self.stream_closed(now, conn);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.out.now = Some(now);
        for timer in self.timers.expire(now) {
            match timer {
                ClientTimer::Login => {
                    let ctx = ctx!(self, now);
                    self.login.retransmit(&ctx, &mut self.out, &mut self.timers);
                }
                ClientTimer::Keepalive => {
                    let ctx = ctx!(self, now);
                    self.login.keepalive(&ctx, &mut self.out, &mut self.timers, self.profile);
                }
                ClientTimer::Connect(request) => {
                    let ctx = ctx!(self, now);
                    self.requests.retransmit(&ctx, &mut self.out, &mut self.timers, request, self.profile);
                }
                ClientTimer::Discovery => {
                    let ctx = ctx!(self, now);
                    if let Some(d) = self.discovery.as_mut() {
                        d.handle_timeout(&ctx, &mut self.out);
                    }
                    self.finish_discovery();
                }
                ClientTimer::TryTcp => self.try_tcp(now),
                ClientTimer::UdpSilence => self.silence_probe(now),
                ClientTimer::UdpRetry => self.retry_udp(now),
            }
        }
        let ctx = ctx!(self, now);
        self.sessions.handle_timeout(&ctx, &mut self.out);
        if self.messaging.next_timeout().is_some_and(|at| at <= now) {
            self.messaging.handle_timeout(&ctx, &mut self.out);
        }
        self.ask_wanted_keys(now);
        self.check_server_if_asked(now);
        self.watch_route(now);
        self.request_sockets();
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        loop {
            let t = self.out.transmits.pop_front()?;
            // UDP sockets pass as they are; the driver knows which it holds
            // (a closed connection's datagrams were dropped at its close).
            if let Some(t) = self.streams.prepare(t, |_| false) {
                return Some(t);
            }
        }
    }

    fn poll_event(&mut self) -> Option<ClientEvent> {
        let event = self.out.events.pop_front()?;
        if let ClientEvent::ConnectFailed { peer, reason } = &event {
            // Files offered to that peer waited for this session.
            if !self.waiting_files.is_empty() {
                self.fail_waiting_files(peer, *reason);
            }
        }
        Some(event)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if !self.out.transmits.is_empty() || !self.out.events.is_empty() {
            return self.out.now;
        }
        let timers = self.timers.next().map(|(_, at)| at);
        let discovery = self.discovery.as_ref().and_then(Discovery::next_timeout);
        let sessions = self.sessions.next_timeout();
        [timers, discovery, sessions, self.messaging.next_timeout()].into_iter().flatten().min()
    }
}

impl Client {
    fn fresh_request(&mut self) -> u32 {
        let r = self.next_request;
        self.next_request = self.next_request.wrapping_add(1).max(1);
        r
    }

    fn send_to_server(&mut self, now: Instant, frame: Frame) {
        let ctx = ctx!(self, now);
        self.out.send_to_server(&ctx, &frame);
    }

    /// Looks up the keys that texts wait for (once logged in: the texts
    /// ask again at the login).
    fn ask_wanted_keys(&mut self, now: Instant) {
        let Some(token) = self.login.token() else { return };
        let wanted = self.messaging.take_wanted_keys();
        for user in wanted {
            let request = self.fresh_request();
            let ctx = ctx!(self, now);
            self.requests.lookup_key(&ctx, &mut self.out, token, request, &user);
        }
    }

    /// Checks the key the server's directory names for `peer` against our
    /// pin, and pins it when there is none (trust on first use). False when
    /// it differs from the pin: nothing goes to that key.
    fn check_peer_key(&mut self, peer: &str, key: PublicKey) -> bool {
        let confirmed = self.check_pin(peer, key);
        if confirmed {
            self.messaging.confirm_key(peer);
        }
        confirmed
    }

    fn check_pin(&mut self, peer: &str, key: PublicKey) -> bool {
        match self.config.peer_keys.get(peer) {
            Some(pinned) if *pinned == key => true,
            Some(&pinned) => {
                // Raised as an event; logged at debug only, as a server could
                // repeat it at will.
                debug!(peer, %pinned, offered = %key, "the directory names another key for a pinned contact");
                self.out.event(ClientEvent::PeerKeyChanged { peer: peer.to_owned(), pinned, offered: key });
                false
            }
            None => {
                self.config.peer_keys.insert(peer.to_owned(), key);
                self.out.event(ClientEvent::PeerKeyLearned { peer: peer.to_owned(), key });
                true
            }
        }
    }

    fn is_server(&self, addr: SocketAddr) -> bool {
        addr == self.config.server || Some(addr) == self.config.alt_server || Some(addr) == self.config.server_tcp
    }

    fn start_login(&mut self, now: Instant) {
        let request = self.fresh_request();
        let ctx = ctx!(self, now);
        self.login.start(&ctx, &mut self.out, &mut self.timers, request);
        self.arm_tcp_delay(now);
    }

    /// Sends the connects that waited for the login.
    fn send_waiting_connects(&mut self, now: Instant) {
        let Some(token) = self.login.token() else { return };
        let ctx = ctx!(self, now);
        self.requests.send_waiting(&ctx, &mut self.out, &mut self.timers, token, self.profile);
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
        self.sessions.on_binding_response(&ctx, &mut self.out, socket, tid, mapped);
    }

    /// A frame in the clear: only a server's `NotLoggedIn` hint is believed.
    /// Nothing else is believed outside a channel: a forged `TextDeliver`
    /// or `Offer` from a spoofed server address, or a peer frame that
    /// skipped its session's encryption, is dropped here.
    fn handle_frame(&mut self, now: Instant, from: SocketAddr, frame: Frame) {
        match frame {
            Frame::Error { code: ErrorCode::NotLoggedIn, .. } if self.is_server(from) => {
                if self.login.on_unsealed_not_logged_in(now, &mut self.timers) {
                    self.start_login(now);
                }
            }
            other => {
                debug!(%from, tag = other.tag(), "a signaling frame outside the server's channel; dropped");
                self.stats.unauthenticated += 1;
            }
        }
    }

    /// A datagram of the server's channel: the handshake's answers, or a
    /// sealed frame.
    fn handle_channel(&mut self, now: Instant, socket: SocketId, from: SocketAddr, payload: &[u8]) {
        if payload[0] == layout::tag::SEALED {
            // Sealed frames authenticate themselves, whatever their source
            // address: discovery's answers come from the server's other
            // addresses, and only the server holds the channel's keys.
            let opened = match self.channel.as_mut().filter(|_| self.login.is_online()) {
                Some(channel) => channel.open_checked(payload),
                None => Err(OpenError::Forged),
            };
            let frame = match opened {
                Ok(plain) => Frame::decode(&plain),
                Err(error) => {
                    debug!(%from, ?error, "a sealed frame that does not open");
                    self.stats.unauthenticated += 1;
                    return;
                }
            };
            match frame {
                Ok(frame) => {
                    self.login.heard(now);
                    self.heard_over(now, socket);
                    self.handle_server_frame(now, socket, frame)
                }
                Err(_) => self.stats.malformed += 1,
            }
            return;
        }
        if !self.is_server(from) {
            debug!(%from, "a handshake datagram from a source that is not the server");
            self.stats.unexpected += 1;
            return;
        }
        let ctx = ctx!(self, now);
        match payload[0] {
            layout::tag::WELCOME => {
                let profile = self.profile;
                match self.login.on_welcome(&ctx, &mut self.out, &mut self.timers, (payload, socket), profile) {
                    Some((Frame::LoginOk { reflexive, .. }, channel)) => {
                        self.channel = channel;
                        // The transport first: an application learns how
                        // the login went before it hears that it did.
                        self.logged_in_over(now, socket);
                        self.out.event(ClientEvent::LoggedIn { reflexive });
                        self.logged_in(now);
                    }
                    Some(_) => {}
                    // Stale, for another Hello, or not authentic.
                    None => self.stats.unexpected += 1,
                }
            }
            layout::tag::COOKIE_REPLY => {
                if !self.login.on_cookie_reply(&ctx, &mut self.out, payload) {
                    self.stats.unexpected += 1;
                }
            }
            layout::tag::KEY_REPLY => {
                if !self.login.on_key_reply(&ctx, &mut self.out, &mut self.timers, payload) {
                    self.stats.unexpected += 1;
                }
            }
            _ => self.stats.unexpected += 1,
        }
    }

    /// The login succeeded: measure the NAT, send what waited.
    fn logged_in(&mut self, now: Instant) {
        // Over TCP there is no UDP mapping to measure; discovery runs once
        // the client is back on UDP.
        let over_udp = self.route.transport() == Transport::Udp;
        if over_udp && self.config.discover_nat {
            self.start_discovery(now);
        } else if over_udp {
            self.profile_measured(now);
        }
        self.send_waiting_connects(now);
        let ctx = ctx!(self, now);
        self.messaging.on_logged_in(&ctx, &mut self.out);
        self.ask_wanted_keys(now);
    }

    /// A frame from the server, opened from its channel.
    fn handle_server_frame(&mut self, now: Instant, socket: SocketId, frame: Frame) {
        let from = self.config.server;
        match frame {
            Frame::KeepaliveAck { reflexive } => {
                let ctx = ctx!(self, now);
                let over_stream = socket != self.primary.0;
                let moved =
                    self.login.on_keepalive_ack(&ctx, &mut self.out, &mut self.timers, (reflexive, over_stream));
                self.on_keepalive_answered(socket);
                if moved && self.config.discover_nat {
                    self.start_discovery(now);
                }
            }
            Frame::LookupReply { request, online, key } => {
                if let Some((user, key)) = self.requests.on_lookup_reply(&mut self.out, request, online, key) {
                    // Keys that texts waited for: pinned (or checked against
                    // the pin), then the texts go out sealed to them.
                    let key = match key {
                        None => Err(TextFailure::Rejected(TextRejection::UnknownRecipient)),
                        Some(key) if self.check_peer_key(&user, key) => Ok(()),
                        Some(_) => Err(TextFailure::PeerKeyChanged),
                    };
                    let ctx = ctx!(self, now);
                    self.messaging.on_recipient_key(&ctx, &mut self.out, &user, key);
                    self.ask_wanted_keys(now);
                }
            }
            Frame::Offer {
                request,
                session,
                peer_key,
                initiator,
                peer,
                peer_candidates,
                strategy,
                peer_profile,
                peer_transport,
            } => {
                if let Some(token) = self.login.token() {
                    self.send_to_server(now, Frame::OfferAck { token, session });
                }
                if let Some(s) = self.sessions.get_mut(&session) {
                    // Offered again: the peer moved (to another address, or
                    // between UDP and TCP), and the server vouches for where.
                    if s.peer() == peer {
                        s.peer_moved(&peer_candidates);
                        s.set_peer_transport(peer_transport);
                        s.report_relay_transport(&mut self.out, self.route.transport());
                    }
                    return;
                }
                // An offer for a connect we gave up on, or forged, is dropped.
                if initiator && !self.requests.on_offer(&mut self.timers, request, &peer) {
                    return;
                }
                let peer_key = PublicKey(peer_key);
                if !self.check_peer_key(&peer, peer_key) {
                    // Nothing goes to that key; the server ends the session
                    // for the peer too, which would otherwise wait for a
                    // handshake that never comes.
                    if let Some(token) = self.login.token() {
                        self.send_to_server(now, Frame::Leave { token, session });
                    }
                    if initiator {
                        let reason = ConnectFailure::PeerKeyChanged;
                        self.out.event(ClientEvent::ConnectFailed { peer, reason });
                    }
                    return;
                }
                let ctx = ctx!(self, now);
                let rng = self.rng.fork(session.0);
                let profiles = (self.profile_known.then_some(self.profile), peer_profile);
                let s = Session::new(
                    &ctx,
                    &mut self.out,
                    session,
                    peer_key,
                    initiator,
                    peer,
                    peer_candidates,
                    strategy,
                    profiles,
                    rng,
                );
                let mut s = Box::new(s);
                s.set_peer_transport(peer_transport);
                s.report_relay_transport(&mut self.out, self.route.transport());
                self.sessions.insert(session, s);
                if !self.waiting_files.is_empty() {
                    self.offer_waiting_files(now, session);
                }
            }
            Frame::Relayed { session, payload } => {
                // The relay names the session it forwarded for; a payload
                // that claims another session is dropped before any AEAD.
                if layout::peer_session(&payload) != Some(session.0) {
                    self.stats.malformed += 1;
                } else if payload[0] == layout::tag::PEER_SEALED {
                    self.handle_peer_datagram(now, socket, from, &payload, true);
                } else {
                    let ctx = ctx!(self, now);
                    let Some(s) = self.sessions.get_mut(&session) else {
                        debug!(%session, "a handshake for an unknown session");
                        self.stats.unauthenticated += 1;
                        return;
                    };
                    if !s.on_handshake(&ctx, &mut self.out, &payload) {
                        debug!(%session, "a session handshake that is not ours, stale or not authentic");
                        self.stats.unauthenticated += 1;
                    }
                    // What the peer sent before our keys existed, now; not
                    // what came on a socket released since (it would be
                    // answered from a socket the driver no longer holds:
                    // found by the property suite).
                    let early = if s.is_established() { s.take_early() } else { Vec::new() };
                    for early in early {
                        let live = early.relayed
                            || early.socket == self.primary.0
                            || self.out.live_sockets.contains(&early.socket);
                        if live {
                            self.handle_peer_datagram(now, early.socket, early.from, &early.datagram, early.relayed);
                        } else {
                            // Opened all the same (if it is authentic, its
                            // counter is now spent: a copy on a live socket is
                            // a replay), but not acted on.
                            if let Some(s) = self.sessions.get_mut(&session) {
                                let _ = s.open(now, &early.datagram);
                            }
                            self.stats.unexpected += 1;
                        }
                    }
                }
            }
            Frame::SessionEnded { session, reason } => {
                let ctx = ctx!(self, now);
                if let Some(mut s) = self.sessions.remove(&session) {
                    s.close(&ctx, &mut self.out, reason);
                }
            }
            Frame::DiscoverReply { nonce, .. } if self.on_udp_check(now, socket, nonce) => {}
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
            Frame::TextDeliver { from, id, sealed } => {
                // Sealed to us by `from`: it opens only with our key, and
                // says which key sealed it, which must be `from`'s.
                let names = (from.as_str(), self.config.user.as_str(), id);
                let text = match crate::secure::open_text(&self.config.identity, names, &sealed) {
                    Some((key, text)) if self.check_peer_key(&from, key) => Some(text),
                    Some(_) => None,
                    None => {
                        debug!(%from, %id, "a stored text that does not open; acknowledged unseen");
                        self.stats.unauthenticated += 1;
                        None
                    }
                };
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
        let logging_in = self.login.is_active();
        if self.requests.on_error(&mut self.out, &mut self.timers, request, code, logging_in) {
            return;
        }
        let ctx = ctx!(self, now);
        if self.login.on_error(&ctx, &mut self.out, &mut self.timers, request, code) {
            self.start_login(now);
        }
    }

    /// A `PeerSealed` datagram, direct or relayed: opened in its session's
    /// keys, then handled by the session.
    fn handle_peer_datagram(
        &mut self,
        now: Instant,
        socket: SocketId,
        from: SocketAddr,
        datagram: &[u8],
        relayed: bool,
    ) {
        let Some(session) = layout::peer_session(datagram).map(SessionId) else {
            self.stats.malformed += 1;
            return;
        };
        let ctx = ctx!(self, now);
        let Some(s) = self.sessions.get_mut(&session) else {
            debug!(%session, "peer datagram for an unknown session");
            self.stats.unauthenticated += 1;
            return;
        };
        let Some(frame) = s.open(now, datagram) else {
            let early = sessions::Early { socket, from, datagram: datagram.to_vec(), relayed };
            if !s.hold_early(early) {
                debug!(%session, %from, "peer datagram failed authentication or replay check");
                self.stats.unauthenticated += 1;
            }
            return;
        };
        let texts = s.handle_frame(&ctx, &mut self.out, socket, from, frame, relayed);
        if s.is_closed() {
            self.sessions.remove(&session);
        }
        // Texts are messaging's; its acknowledgements go back on the session
        // they came on (none once the session closed).
        for text in texts {
            let Some(s) = self.sessions.get_mut(&session) else { break };
            if let Some(reply) = self.messaging.on_peer_text(&ctx, &mut self.out, s.peer(), text) {
                s.send_peer_text(&ctx, &mut self.out, reply);
            }
        }
    }

    fn start_discovery(&mut self, now: Instant) {
        let (Some(alt), Some(reflexive)) = (self.config.alt_server, self.login.reflexive()) else {
            // Nothing to measure against: report what is known, so the
            // server does not wait for a profile that never comes.
            self.profile.public = self.reflexive() == Some(self.primary.1);
            if let Some(token) = self.login.token() {
                self.send_to_server(now, Frame::Profile { token, profile: self.profile });
            }
            self.profile_measured(now);
            return;
        };
        // A discovery still running (the address changed again) gives back
        // its socket, or the wish for one, before the new one starts.
        if let Some(old) = self.discovery.take() {
            if let Some(socket) = old.socket() {
                self.out.event(ClientEvent::ReleaseSocket { socket });
            }
        }
        let nonce_seed = self.rng.next_u64();
        let request = self.fresh_request();
        let ctx = ctx!(self, now);
        let d = Discovery::start(&ctx, &mut self.out, self.config.server, alt, reflexive, nonce_seed, request);
        if let Some(at) = self.discovery.insert(d).next_timeout() {
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
        if let Some(now) = self.out.now {
            if let Some(token) = self.login.token() {
                self.send_to_server(now, Frame::Profile { token, profile });
            }
            self.profile_measured(now);
        }
    }

    /// The NAT profile is measured (again): every session tells its peer,
    /// and its initiator chooses the strategy again from both profiles.
    fn profile_measured(&mut self, now: Instant) {
        self.profile_known = true;
        let ctx = ctx!(self, now);
        for (_, s) in self.sessions.iter_mut() {
            s.own_profile(&ctx, &mut self.out, self.profile);
        }
    }

    /// A session asked (through [`Out::check_server`]) for the server
    /// mapping to be checked: a keepalive goes now.
    fn check_server_if_asked(&mut self, now: Instant) {
        if std::mem::take(&mut self.out.check_server) {
            let ctx = ctx!(self, now);
            self.login.check_now(&ctx, &mut self.out, &mut self.timers, self.profile);
        }
    }

    /// Turns sub-machines' socket wishes into driver events.
    fn request_sockets(&mut self) {
        for (id, attempt, count) in self.sessions.take_socket_wishes() {
            let request = self.fresh_request();
            self.socket_requests.insert(request, (id, attempt));
            self.out.event(ClientEvent::OpenSockets { request, count });
        }
        // Discovery's request number is reserved when it starts; the driver
        // is asked once discovery wants the socket.
        if let Some(d) = self.discovery.as_mut().filter(|d| d.wants_socket()) {
            let request = d.socket_requested();
            self.out.event(ClientEvent::OpenSockets { request, count: 1 });
        }
    }
}
