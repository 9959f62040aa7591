//! The login and the keepalive that holds it (DESIGN §3, "Client ↔ server";
//! §7 for the channel).
//!
//! A login is a Noise IK handshake with the server's static key (issue 20):
//! a Hello carries the `Login` frame, encrypted to the server and proving
//! our identity key; the server's Welcome carries `LoginOk` and opens the
//! channel that seals every later frame in both directions. A Hello that
//! goes unanswered is replaced by a fresh one (new ephemeral key, new
//! index) 500 ms later, doubling, at most 4 s apart; after
//! [`ClientConfig::server_timeout`] without an answer the client reports
//! [`ClientEvent::ServerUnreachable`] and keeps trying.
//!
//! Without a pinned server key the client first asks the server for it
//! (a key request) and trusts the answer ([`ClientEvent::ServerKeyLearned`]).
//! With a pinned key, a server that leaves [`KEY_CHECK_AFTER`] Hellos
//! unanswered is asked for its key as well: if it has another, the login
//! stops with [`ClientEvent::ServerKeyChanged`] rather than retrying for
//! ever against an impostor (or a re-keyed server).
//!
//! Once online, a keepalive every [`ClientConfig::keepalive`] holds the NAT
//! mapping toward the server open and tells the client its reflexive
//! address; a keepalive without an answer is repeated after
//! [`KEEPALIVE_RETRY`]. A server that forgot the login (it restarted)
//! answers `NotLoggedIn` outside any channel. Anyone can forge that, so the
//! client believes it only when the channel has been quiet: no sealed
//! frame from the server for [`HINT_QUIET`], or a keepalive waiting for
//! its answer. A forger can then at worst make the client log in again
//! while the server is silent anyway.
//!
//! [`ClientConfig::server_timeout`]: crate::client::ClientConfig::server_timeout
//! [`ClientConfig::keepalive`]: crate::client::ClientConfig::keepalive

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::context::{retransmit_after, ClientTimer, Ctx, Out};
use super::events::ClientEvent;
use crate::machine::SocketId;
use crate::nat::NatProfile;
use crate::rng::Rng;
use crate::secure::{ChannelEnd, HelloSent, MacKeys, PublicKey, COOKIE_LIFETIME};
use crate::timer::Timers;
use crate::wire::channel::{self as layout, MAC_LEN};
use crate::wire::frame::{ErrorCode, Frame};

/// How soon a keepalive that got no answer is sent again: well inside a
/// 30 s NAT timeout even after a 25 s keepalive interval.
const KEEPALIVE_RETRY: Duration = Duration::from_secs(2);
/// The longest wait between keepalives while the server stays silent.
const KEEPALIVE_RETRY_MAX: Duration = Duration::from_secs(16);
/// The shortest spacing of keepalives sent to check the server mapping.
const CHECK_SPACING: Duration = Duration::from_secs(1);
/// How long the server's channel must have been silent before a plain
/// `NotLoggedIn` is believed.
pub(crate) const HINT_QUIET: Duration = Duration::from_secs(1);
/// How long a client waits before logging in again when the server was
/// full (`RateLimited` right after its handshake).
pub(crate) const FULL_SERVER_BACKOFF: Duration = Duration::from_secs(5);
/// Unanswered Hellos after which a client with a pinned key asks the
/// server which key it has.
pub(crate) const KEY_CHECK_AFTER: u32 = 3;

/// Where the client stands with the server, and what it knows of it.
#[derive(Debug)]
pub(crate) struct Login {
    state: State,
    /// The server's key: pinned in the config, or learned.
    server: Option<ServerKey>,
    /// The last cookie a loaded server gave us, and when.
    cookie: Option<([u8; MAC_LEN], Instant)>,
    /// When a sealed frame from the server last opened.
    last_heard: Option<Instant>,
    rng: Rng,
}

#[derive(Debug)]
enum State {
    /// Asking the server for its key (nothing pinned).
    FetchingKey { request: u32, nonce: u64, sends: u32, since: Instant, reported_unreachable: bool },
    /// A Hello sent, not answered yet.
    Pending { request: u32, sends: u32, since: Instant, reported_unreachable: bool, hello: Box<Attempt> },
    /// Refused for good (bad user name, a name bound to another key, a
    /// changed server key).
    Failed,
    /// Accepted; `awaiting_since` is when the oldest unanswered keepalive
    /// went out.
    Online { token: u64, reflexive: SocketAddr, awaiting_since: Option<Instant>, reported_unreachable: bool },
    /// The server was full: log in again (request `request`) when the
    /// login timer fires.
    Backoff { request: u32 },
    /// Before the first login, and after a logout.
    LoggedOut,
}

/// The server's public key and the mac1 and cookie keys derived from it,
/// so the two never disagree.
#[derive(Debug)]
struct ServerKey {
    key: PublicKey,
    macs: MacKeys,
}

impl ServerKey {
    fn new(key: PublicKey) -> ServerKey {
        ServerKey { macs: MacKeys::for_server(&key), key }
    }
}

/// The last Hello sent (boxed in the state: a handshake in progress is
/// nearly a kilobyte).
#[derive(Debug)]
struct Attempt {
    hello: HelloSent,
    /// A key request sent beside it, to tell a changed server key.
    key_check: Option<u64>,
}

impl Login {
    pub(crate) fn new(server_key: Option<PublicKey>, rng: Rng) -> Login {
        Login { state: State::LoggedOut, server: server_key.map(ServerKey::new), cookie: None, last_heard: None, rng }
    }

    /// The server's token, while online.
    pub(crate) fn token(&self) -> Option<u64> {
        match &self.state {
            State::Online { token, .. } => Some(*token),
            _ => None,
        }
    }

    /// Our server-reflexive address, while online.
    pub(crate) fn reflexive(&self) -> Option<SocketAddr> {
        match &self.state {
            State::Online { reflexive, .. } => Some(*reflexive),
            _ => None,
        }
    }

    pub(crate) fn is_online(&self) -> bool {
        matches!(self.state, State::Online { .. })
    }

    /// Online, or on the way there.
    pub(crate) fn is_active(&self) -> bool {
        matches!(
            self.state,
            State::Online { .. } | State::Pending { .. } | State::FetchingKey { .. } | State::Backoff { .. }
        )
    }

    /// (Re)starts logging in with request number `request`: a Hello, or
    /// first a key request when no key is pinned.
    pub(crate) fn start(&mut self, ctx: &Ctx<'_>, out: &mut Out, timers: &mut Timers<ClientTimer>, request: u32) {
        if self.server.is_none() {
            let nonce = self.rng.next_u64();
            self.state = State::FetchingKey { request, nonce, sends: 1, since: ctx.now, reported_unreachable: false };
            out.send_login(ctx, layout::key_request(nonce), None);
        } else {
            let hello = self.send_hello(ctx, out, request, None);
            self.state = State::Pending { request, sends: 1, since: ctx.now, reported_unreachable: false, hello };
        }
        timers.set(ClientTimer::Login, ctx.now + retransmit_after(1));
    }

    /// A fresh Hello for login `request`, sent.
    fn send_hello(&mut self, ctx: &Ctx<'_>, out: &mut Out, request: u32, key_check: Option<u64>) -> Box<Attempt> {
        let server = self.server.as_ref().expect("a hello is sent once the key is known");
        let login = Frame::Login { request, user: ctx.config.user.clone(), host_candidates: host_candidates(ctx) };
        let payload = login.encode();
        let cookie = self.cookie.filter(|(_, at)| ctx.now.saturating_duration_since(*at) < COOKIE_LIFETIME);
        let (hello, datagram) = HelloSent::start_with(
            &ctx.config.identity,
            &server.key,
            &server.macs,
            &payload,
            cookie.as_ref().map(|(c, _)| c),
            &mut self.rng,
        );
        out.send_login(ctx, datagram, Some(payload));
        Box::new(Attempt { hello, key_check })
    }

    /// A key reply from the server; false when it answers nothing we
    /// asked.
    pub(crate) fn on_key_reply(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        timers: &mut Timers<ClientTimer>,
        datagram: &[u8],
    ) -> bool {
        let Some((nonce, key)) = layout::parse_key_reply(datagram) else { return false };
        let offered = PublicKey(key);
        match &self.state {
            State::FetchingKey { request, nonce: expected, since, .. } if *expected == nonce => {
                let (request, since) = (*request, *since);
                self.server = Some(ServerKey::new(offered));
                out.event(ClientEvent::ServerKeyLearned { key: offered });
                let hello = self.send_hello(ctx, out, request, None);
                self.state = State::Pending { request, sends: 1, since, reported_unreachable: false, hello };
                timers.set(ClientTimer::Login, ctx.now + retransmit_after(1));
                true
            }
            State::Pending { hello, .. } if hello.key_check == Some(nonce) => {
                let pinned = self.server.as_ref().expect("a hello was sent").key;
                if pinned != offered {
                    warn!(%pinned, %offered, "the server offers another key than the pinned one; not logging in");
                    timers.stop(&ClientTimer::Login);
                    self.state = State::Failed;
                    out.event(ClientEvent::ServerKeyChanged { pinned, offered });
                }
                true
            }
            _ => {
                debug!("a key reply nobody asked for");
                false
            }
        }
    }

    /// A cookie reply: the server is under load and wants our Hello again
    /// with the cookie's mac2. It is sent at once. False when it answers
    /// no Hello of ours, or does not open.
    pub(crate) fn on_cookie_reply(&mut self, ctx: &Ctx<'_>, out: &mut Out, datagram: &[u8]) -> bool {
        let Some((receiver, nonce, sealed)) = layout::parse_cookie_reply(datagram) else { return false };
        let State::Pending { request, hello, .. } = &self.state else { return false };
        if hello.hello.sender() != receiver {
            return false;
        }
        let (request, key_check) = (*request, hello.key_check);
        let mac1 = hello.hello.mac1();
        let Some(cookie) = self.server.as_ref().and_then(|s| s.macs.open_cookie(&sealed, &nonce, mac1)) else {
            debug!("a cookie reply that does not open");
            return false;
        };
        self.cookie = Some((cookie, ctx.now));
        let new = self.send_hello(ctx, out, request, key_check);
        if let State::Pending { hello, .. } = &mut self.state {
            *hello = new;
        }
        true
    }

    /// A Welcome: the server's half of the handshake. Returns the frame it
    /// carries (`LoginOk` or `Error`) once the handshake completed, and
    /// with `LoginOk` the channel it opened (the login is then online, and
    /// its first keepalive went out in the channel). A Welcome that names
    /// our Hello but does not authenticate spoils the handshake: a fresh
    /// Hello goes at once.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_welcome(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        timers: &mut Timers<ClientTimer>,
        (datagram, arrived_on): (&[u8], SocketId),
        profile: NatProfile,
    ) -> Option<(Frame, Option<ChannelEnd>)> {
        let (receiver, _) = layout::parse_welcome(datagram)?;
        let State::Pending { hello, .. } = &self.state else { return None };
        if hello.hello.sender() != receiver {
            return None;
        }
        let State::Pending { request, sends, since, reported_unreachable, hello } =
            std::mem::replace(&mut self.state, State::LoggedOut)
        else {
            unreachable!("matched above")
        };
        let key_check = hello.key_check;
        let finished = hello.hello.finish(datagram).and_then(|(payload, finished)| {
            let frame = Frame::decode(&payload).ok()?;
            Some((frame, finished))
        });
        let Some((frame, finished)) = finished else {
            debug!("a welcome that does not authenticate; a fresh hello goes");
            let hello = self.send_hello(ctx, out, request, key_check);
            self.state = State::Pending { request, sends, since, reported_unreachable, hello };
            return None;
        };
        match frame {
            Frame::LoginOk { request: answered, token, reflexive } if answered == request => {
                let Some(channel) = finished.into_channel(token) else {
                    self.state = State::Failed;
                    return None;
                };
                timers.stop(&ClientTimer::Login);
                // A keepalive goes back at once, the way the Welcome came
                // (UDP, or the TCP connection): the server keeps the login
                // pending, and sends nothing else, until a sealed frame
                // proves we received its Welcome at this address.
                let keepalive = Frame::Keepalive { token, profile }.encode();
                if let Some(sealed) = channel.seal(&keepalive) {
                    let to = if arrived_on == ctx.primary.0 { ctx.config.server } else { ctx.tcp_address() };
                    out.send_carrying(arrived_on, to, sealed, keepalive);
                }
                self.state =
                    State::Online { token, reflexive, awaiting_since: Some(ctx.now), reported_unreachable: false };
                timers.set(ClientTimer::Keepalive, ctx.now + KEEPALIVE_RETRY.min(ctx.config.keepalive));
                // `LoggedIn` is the client's to raise, once it knows which
                // transport carries the login.
                Some((frame, Some(channel)))
            }
            Frame::Error { code: ErrorCode::RateLimited, .. } => {
                // The server is full, or busy: try again later.
                debug!("the server refused the login for now; again in {FULL_SERVER_BACKOFF:?}");
                self.state = State::Backoff { request };
                timers.set(ClientTimer::Login, ctx.now + FULL_SERVER_BACKOFF);
                Some((frame, None))
            }
            Frame::Error { code, .. } => {
                timers.stop(&ClientTimer::Login);
                self.state = State::Failed;
                out.event(ClientEvent::LoginFailed { code });
                Some((frame, None))
            }
            _ => {
                debug!("a welcome carrying neither LoginOk nor an error for our request");
                let hello = self.send_hello(ctx, out, request, key_check);
                self.state = State::Pending { request, sends, since, reported_unreachable, hello };
                None
            }
        }
    }

    /// The server answered a keepalive, seeing us at `new` (over UDP, or
    /// over the TCP connection); true when that is a new UDP address (the
    /// NAT rebound or rebooted).
    pub(crate) fn on_keepalive_ack(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        timers: &mut Timers<ClientTimer>,
        (new, over_stream): (SocketAddr, bool),
    ) -> bool {
        let State::Online { reflexive, awaiting_since, reported_unreachable, .. } = &mut self.state else {
            return false;
        };
        *awaiting_since = None;
        *reported_unreachable = false;
        // Back to the regular interval.
        timers.set(ClientTimer::Keepalive, ctx.now + ctx.config.keepalive);
        // Over TCP the server sees the connection's address, which says
        // nothing of our UDP mapping: the reflexive address stays.
        if *reflexive == new || over_stream {
            return false;
        }
        let old = std::mem::replace(reflexive, new);
        out.event(ClientEvent::ReflexiveChanged { old, new });
        true
    }

    /// An error the server answered inside the channel; true when the
    /// client must log in again.
    pub(crate) fn on_error(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        timers: &mut Timers<ClientTimer>,
        request: u32,
        code: ErrorCode,
    ) -> bool {
        match (&self.state, code) {
            (State::Online { .. }, ErrorCode::RateLimited) if request == 0 => {
                // The server is full: it dropped the login it just
                // accepted. Try again later, not at once.
                debug!("the server is full; logging in again in {FULL_SERVER_BACKOFF:?}");
                timers.stop(&ClientTimer::Keepalive);
                self.state = State::Backoff { request: 0 };
                timers.set(ClientTimer::Login, ctx.now + FULL_SERVER_BACKOFF);
                false
            }
            (State::Online { .. }, ErrorCode::KeyMismatch) => {
                // A concurrent first login under our name won the binding.
                timers.stop(&ClientTimer::Keepalive);
                self.state = State::Failed;
                out.event(ClientEvent::LoginFailed { code });
                false
            }
            (State::Online { .. }, ErrorCode::NotLoggedIn) => {
                timers.stop(&ClientTimer::Keepalive);
                true
            }
            _ => {
                debug!(?code, request, "error for no pending request");
                false
            }
        }
    }

    /// A sealed frame from the server opened now.
    pub(crate) fn heard(&mut self, now: Instant) {
        self.last_heard = Some(now);
    }

    /// When the oldest keepalive still waiting for its answer went out,
    /// while online.
    pub(crate) fn awaiting_since(&self) -> Option<Instant> {
        match &self.state {
            State::Online { awaiting_since, .. } => *awaiting_since,
            _ => None,
        }
    }

    /// The client changed its way to the server: a keepalive still waiting
    /// waits from now, on the new way.
    pub(crate) fn restart_wait(&mut self, now: Instant) {
        if let State::Online { awaiting_since: Some(since), .. } = &mut self.state {
            *since = now;
        }
    }

    /// Sends a keepalive now, on the way to the server `ctx` names, without
    /// touching the keepalive timer: the transport's checks (see `route`)
    /// keep their own pace.
    pub(crate) fn send_keepalive(&mut self, ctx: &Ctx<'_>, out: &mut Out, profile: NatProfile) {
        let State::Online { token, awaiting_since, .. } = &mut self.state else { return };
        awaiting_since.get_or_insert(ctx.now);
        out.send_to_server(ctx, &Frame::Keepalive { token: *token, profile });
    }

    /// A TCP connection to the server opened while the login waits: what
    /// waits for an answer goes again, over it and UDP. A fresh Hello, not
    /// the same one: if UDP carried the first one out but drops what comes
    /// back, the server answered it already, and a copy would be a replay.
    pub(crate) fn send_again(&mut self, ctx: &Ctx<'_>, out: &mut Out, timers: &mut Timers<ClientTimer>) {
        match &self.state {
            State::FetchingKey { nonce, sends, .. } => {
                out.send_login(ctx, layout::key_request(*nonce), None);
                timers.set(ClientTimer::Login, ctx.now + retransmit_after(*sends));
            }
            State::Pending { request, hello, sends, .. } => {
                // The fresh Hello gets its own full wait: a retransmission
                // due soon after would replace it before its answer could
                // come (found by the simulator: logins over TCP 100 ms away
                // took a second round).
                timers.set(ClientTimer::Login, ctx.now + retransmit_after(*sends));
                let (request, key_check) = (*request, hello.key_check);
                if let Some(nonce) = key_check {
                    out.send_login(ctx, layout::key_request(nonce), None);
                }
                let new = self.send_hello(ctx, out, request, key_check);
                if let State::Pending { hello, .. } = &mut self.state {
                    *hello = new;
                }
            }
            _ => {}
        }
    }

    /// Logging in: a Hello (or key request) waits for its answer.
    pub(crate) fn is_pending(&self) -> bool {
        matches!(self.state, State::Pending { .. } | State::FetchingKey { .. })
    }

    /// `NotLoggedIn` outside any channel: the server does not know our
    /// channel (it restarted, or forgot us). Anyone can send that, so it is
    /// believed only when the channel is quiet (see the module
    /// documentation); true when the client must log in again.
    pub(crate) fn on_unsealed_not_logged_in(&mut self, now: Instant, timers: &mut Timers<ClientTimer>) -> bool {
        let quiet = self.last_heard.is_none_or(|at| now.saturating_duration_since(at) >= HINT_QUIET);
        match &self.state {
            State::Online { awaiting_since, .. } if awaiting_since.is_some() || quiet => {
                timers.stop(&ClientTimer::Keepalive);
                true
            }
            _ => {
                debug!("an unsealed NotLoggedIn while the server answers; ignored");
                false
            }
        }
    }

    /// [`ClientTimer::Login`]: the key request or the Hello went
    /// unanswered; send a fresh one.
    pub(crate) fn retransmit(&mut self, ctx: &Ctx<'_>, out: &mut Out, timers: &mut Timers<ClientTimer>) {
        let sends_now = match &mut self.state {
            State::Backoff { request } => {
                let request = *request;
                return self.start(ctx, out, timers, request);
            }
            State::FetchingKey { nonce, sends, since, reported_unreachable, .. } => {
                *sends += 1;
                let sends_now = *sends;
                report_unreachable(ctx, out, since, reported_unreachable);
                out.send_login(ctx, layout::key_request(*nonce), None);
                sends_now
            }
            State::Pending { request, sends, since, reported_unreachable, hello } => {
                *sends += 1;
                let (request, sends_now) = (*request, *sends);
                report_unreachable(ctx, out, since, reported_unreachable);
                let mut key_check = hello.key_check;
                if sends_now > KEY_CHECK_AFTER {
                    let nonce = match key_check {
                        Some(nonce) => nonce,
                        None => self.rng.next_u64(),
                    };
                    key_check = Some(nonce);
                    out.send_login(ctx, layout::key_request(nonce), None);
                }
                let new = self.send_hello(ctx, out, request, key_check);
                if let State::Pending { hello, .. } = &mut self.state {
                    *hello = new;
                }
                sends_now
            }
            _ => return,
        };
        timers.set(ClientTimer::Login, ctx.now + retransmit_after(sends_now));
    }

    /// [`ClientTimer::Keepalive`]: time for a keepalive, carrying `profile`.
    pub(crate) fn keepalive(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        timers: &mut Timers<ClientTimer>,
        profile: NatProfile,
    ) {
        let now = ctx.now;
        let State::Online { token, awaiting_since, reported_unreachable, .. } = &mut self.state else { return };
        let token = *token;
        let waiting = awaiting_since.map(|since| now.saturating_duration_since(since));
        if waiting.is_some_and(|w| w >= ctx.config.server_timeout) && !*reported_unreachable {
            *reported_unreachable = true;
            out.event(ClientEvent::ServerUnreachable);
        }
        awaiting_since.get_or_insert(now);
        out.send_to_server(ctx, &Frame::Keepalive { token, profile });
        // While an answer is missing, ask again soon, so a lost keepalive, a
        // rebinding or a restarted server is noticed quickly; the longer the
        // server stays silent, the longer the wait (as long as it has been
        // silent, up to KEEPALIVE_RETRY_MAX), so a fleet of clients does not
        // hammer a server that is down.
        let next = waiting.unwrap_or_default().clamp(KEEPALIVE_RETRY, KEEPALIVE_RETRY_MAX);
        timers.set(ClientTimer::Keepalive, now + next.min(ctx.config.keepalive));
    }

    /// A session's direct path went quiet: make sure our own mapping toward
    /// the server still holds, now. A keepalive goes unless one went out in
    /// the last [`CHECK_SPACING`] and is still unanswered; if the NAT
    /// rebooted, its answer tells us our new address, and the server
    /// follows us there.
    pub(crate) fn check_now(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        timers: &mut Timers<ClientTimer>,
        profile: NatProfile,
    ) {
        let State::Online { token, awaiting_since, .. } = &mut self.state else { return };
        if awaiting_since.is_some_and(|since| ctx.now < since + CHECK_SPACING) {
            return;
        }
        let token = *token;
        awaiting_since.get_or_insert(ctx.now);
        out.send_to_server(ctx, &Frame::Keepalive { token, profile });
        let retry = ctx.now + KEEPALIVE_RETRY.min(ctx.config.keepalive);
        if timers.get(&ClientTimer::Keepalive).is_none_or(|at| at > retry) {
            timers.set(ClientTimer::Keepalive, retry);
        }
    }

    /// Tells the server goodbye, when online.
    pub(crate) fn logout(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        if let State::Online { token, .. } = self.state {
            out.send_to_server(ctx, &Frame::Logout { token });
        }
        self.state = State::LoggedOut;
    }
}

fn report_unreachable(ctx: &Ctx<'_>, out: &mut Out, since: &Instant, reported: &mut bool) {
    if !*reported && ctx.now.saturating_duration_since(*since) >= ctx.config.server_timeout {
        *reported = true;
        out.event(ClientEvent::ServerUnreachable);
    }
}

/// Our host candidates: the primary socket's local address, then the
/// configured host addresses with its port; unspecified and repeated
/// addresses left out, and configured loopback ones (a peer on the same
/// machine reaches the primary socket's own address), at most
/// [`MAX_HOST_CANDIDATES`].
pub(crate) fn host_candidates(ctx: &Ctx<'_>) -> Vec<SocketAddr> {
    let port = ctx.primary.1.port();
    let configured =
        ctx.config.host_addresses.iter().filter(|ip| !ip.is_loopback()).map(|ip| SocketAddr::new(*ip, port));
    let mut candidates: Vec<SocketAddr> = Vec::new();
    for c in std::iter::once(ctx.primary.1).chain(configured) {
        let usable = !c.ip().is_unspecified() && c.port() != 0;
        if usable && !candidates.contains(&c) && candidates.len() < MAX_HOST_CANDIDATES {
            candidates.push(c);
        }
    }
    candidates
}

/// The most host candidates a client announces: the offer carries them and
/// the reflexive address, [`MAX_CANDIDATES`](crate::wire::frame::MAX_CANDIDATES) in all.
pub const MAX_HOST_CANDIDATES: usize = crate::wire::frame::MAX_CANDIDATES - 1;
