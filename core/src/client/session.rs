//! One session with a peer: relay first, then punching, migration, keepalive
//! on the direct path, fallback and retry (DESIGN §3, "Peer ↔ peer").
//!
//! # Punching attempts
//!
//! An attempt has a socket (attempt 0: the primary socket, whose candidates
//! the server already gave the peer; later attempts: a fresh socket from the
//! driver, whose reflexive address a STUN Binding request to the server
//! reveals and whose candidates go to the peer in the stream). Then:
//!
//! 1. when both sides' candidates are known, each side sends an *opener* to
//!    every peer candidate with a low TTL: it creates the sender's own NAT
//!    mapping but dies in the network before the peer's NAT, so it cannot
//!    leave conntrack state there (DESIGN §3, "Open before you probe");
//! 2. each side announces `OpenersOut` in the stream (over the relay);
//! 3. a side probes only once its own openers are out *and* it has heard the
//!    peer's announcement, so no probe reaches a NAT that has not opened yet;
//! 4. the first authenticated probe ack proves a path; the session migrates
//!    to it and resends whatever was unacknowledged on it.
//!
//! An attempt that proves nothing within the punch timeout fails; the next
//! one starts after a doubling backoff from a fresh socket, never by
//! hammering the same 5-tuple. Either side may start the next attempt; the
//! other joins when it sees a higher attempt number.
//!
//! Prediction and birthday probing change what is opened and probed, not the
//! order: the predicted side samples its allocator on a fresh socket and
//! announces a window of ports ([`StreamMessage::Prediction`]); the pool side
//! opens many sockets and announces them ([`StreamMessage::PoolOpen`]) in
//! place of `OpenersOut`; the prober probes random ports of the pool side's
//! address at a bounded rate. See [`super::traversal`] for each role.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tracing::debug;

use super::messaging::PeerText;
use super::stream::Stream;
use super::traversal::{self, AllocatorSamples, PortSampler, PunchRole};
use super::{ClientEvent, Ctx, Out, PathKind, SessionInfo};
use crate::auth::{ReplayWindow, Role, SessionMac};
use crate::machine::SocketId;
use crate::nat::{NatProfile, Strategy};
use crate::rng::Rng;
use crate::timer::Timers;
use crate::wire::frame::{CloseReason, Frame, SessionBody, SessionId, SessionKey, StreamMessage, MAX_CANDIDATES};
use crate::wire::stun::{self, TransactionId};

/// Most probe targets one attempt keeps (candidates plus peer-reflexive).
const MAX_REMOTES: usize = MAX_CANDIDATES + 4;
/// The widest prediction window accepted from a peer.
const MAX_PEER_WINDOW: u16 = 1024;
/// Probe rounds that include the predicted window (after them, only the
/// candidates and learned peer-reflexive addresses are probed): the
/// predicted side's own probes are what usually opens the path.
const WINDOW_PROBE_ROUNDS: u32 = 3;
/// How long the pool side keeps its pool beyond the prober's schedule: the
/// announcement's trip over the relay, and the last probes' answers.
const POOL_GRACE: Duration = Duration::from_secs(2);
/// Sends of a Binding request for a fresh socket's reflexive address.
const BINDING_SENDS: u32 = 5;
const BINDING_INTERVAL: Duration = Duration::from_millis(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum SessionTimer {
    Retransmit,
    Binding,
    Probe,
    AttemptDeadline,
    Retry,
    DirectKeepalive,
    PathDeadline,
    RelayKeepalive,
    Idle,
}

#[derive(Debug)]
struct Attempt {
    number: u16,
    socket: Option<(SocketId, SocketAddr)>,
    /// The outstanding Binding request: id, sends, destination.
    binding: Option<(TransactionId, u32, SocketAddr)>,
    /// Our candidates are known to the peer (attempt 0: via the server).
    candidates_sent: bool,
    peer_candidates: Option<Vec<SocketAddr>>,
    openers_sent: bool,
    peer_openers_out: bool,
    /// Probe targets, each with the socket it is probed from.
    remotes: Vec<(SocketId, SocketAddr)>,
    probing: bool,
    /// Prediction, my side: the first sample and when it arrived.
    first_sample: Option<(SocketAddr, Instant)>,
    /// Prediction, my side: the back-to-back pair of Binding requests that
    /// follows (id, destination, answer), and how often it was sent.
    burst: Vec<(TransactionId, SocketAddr, Option<SocketAddr>)>,
    burst_sends: u32,
    /// Prediction, my side: sampling finished (`base`, when, both samples).
    sampled: Option<(SocketAddr, Instant, Option<AllocatorSamples>)>,
    prediction_sent: bool,
    /// Prediction, the peer's: its predicted ports, in its opening order.
    peer_window: Option<Vec<SocketAddr>>,
    window_rounds: u32,
    /// Birthday, pool side: the pool's sockets.
    pool: Vec<(SocketId, SocketAddr)>,
    /// Birthday, prober side: the random ports drawn so far.
    sampler: Option<PortSampler>,
}

#[derive(Debug)]
pub(crate) struct Session {
    timers: Timers<SessionTimer>,
    /// An attempt that wants sockets from the driver: (attempt, count).
    socket_wish: Option<(u16, u16)>,
    closed: bool,
    role: Role,
    path: PathKind,
    counter: u64,
    replay: ReplayWindow,
    /// The session key, prepared for HMAC once (RFC 2104 §2).
    mac: SessionMac,
    attempt_no: u16,
    stream: Stream,
    id: SessionId,
    peer: String,
    strategy: Strategy,
    punch_role: PunchRole,
    /// The peer's public IP as the server observed it (the offer's last
    /// candidate): predicted ports and birthday probes go only there, so a
    /// peer cannot aim our probing at a third party.
    peer_public_ip: Option<IpAddr>,
    rng: Rng,
    attempt: Option<Attempt>,
    /// When the current attempt started.
    attempt_started_at: Option<Instant>,
    attempts_started: u16,
    failures: u32,
    fallbacks: u32,
    probes_sent: u64,
    owned: BTreeSet<SocketId>,
    /// While the path is direct, when the relay keepalive would next have
    /// been due: it is taken off the timers (it has nothing to do then) and
    /// put back in the same rhythm on a fall back to the relay.
    relay_keepalive_parked: Option<Instant>,
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        ctx: &Ctx<'_>,
        out: &mut Out,
        id: SessionId,
        key: SessionKey,
        role: Role,
        peer: String,
        peer_candidates: Vec<SocketAddr>,
        strategy: Strategy,
        profiles: (NatProfile, NatProfile),
        rng: Rng,
    ) -> Self {
        let punch_role = PunchRole::of(strategy, &profiles.0, &profiles.1);
        let peer_public_ip = peer_candidates.last().map(SocketAddr::ip);
        let mut s = Session {
            id,
            mac: SessionMac::new(&key),
            role,
            peer: peer.clone(),
            strategy,
            punch_role,
            peer_public_ip,
            rng,
            stream: Stream::new(),
            counter: 0,
            replay: ReplayWindow::default(),
            path: PathKind::Relay,
            attempt: None,
            attempt_no: 0,
            attempt_started_at: None,
            attempts_started: 0,
            failures: 0,
            fallbacks: 0,
            probes_sent: 0,
            timers: Timers::default(),
            socket_wish: None,
            owned: BTreeSet::new(),
            closed: false,
            relay_keepalive_parked: None,
        };
        out.event(ClientEvent::SessionOpened { session: id, peer, initiator: role == Role::Initiator, strategy });
        s.timers.set(SessionTimer::Idle, ctx.now + ctx.config.session_timeout);
        s.timers.set(SessionTimer::RelayKeepalive, ctx.now + ctx.config.session_keepalive);
        match punch_role {
            PunchRole::RelayOnly => {}
            PunchRole::Punch | PunchRole::Predicting | PunchRole::Prober => {
                // Attempt 0 punches from the primary socket, whose candidates
                // the server has already given the peer.
                s.attempts_started = 1;
                let mut attempt = Attempt::new(0);
                attempt.socket = Some(ctx.primary);
                attempt.candidates_sent = true;
                s.attempt = Some(attempt);
                s.arm_attempt_limit(ctx);
                s.set_peer_candidates(peer_candidates);
                s.advance_attempt(ctx, out);
            }
            PunchRole::Predicted { .. } | PunchRole::PredictBoth { .. } | PunchRole::Pool => {
                // Fresh mappings are the point: sample (or pool) on fresh
                // sockets even for attempt 0.
                s.attempts_started = 1;
                s.attempt = Some(Attempt::new(0));
                s.arm_attempt_limit(ctx);
                s.socket_wish = Some((0, s.sockets_per_attempt(ctx)));
                s.set_peer_candidates(peer_candidates);
            }
        }
        s
    }

    pub(crate) fn info(&self) -> SessionInfo {
        SessionInfo {
            peer: self.peer.clone(),
            strategy: self.strategy,
            path: self.path,
            fallbacks: self.fallbacks,
            probes_sent: self.probes_sent,
            attempts: self.attempts_started,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    pub(crate) fn unacked_app(&self) -> usize {
        self.stream.unacked_app()
    }

    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.timers.next().map(|(_, at)| at)
    }

    /// The attempt that wants sockets from the driver, and how many, once.
    pub(crate) fn take_socket_wish(&mut self) -> Option<(u16, u16)> {
        // Asked after every datagram: only written when there is a wish, so
        // the usual answer leaves the session's line clean.
        self.socket_wish.as_ref()?;
        self.socket_wish.take()
    }

    pub(crate) fn send_app(&mut self, ctx: &Ctx<'_>, out: &mut Out, data: Vec<u8>) {
        self.send_stream(ctx, out, StreamMessage::App(data));
    }

    /// Sends a text message or its acknowledgement on the reliable stream.
    pub(crate) fn send_peer_text(&mut self, ctx: &Ctx<'_>, out: &mut Out, text: PeerText) {
        let message = match text {
            PeerText::Text { id, text } => StreamMessage::Text { id, text },
            PeerText::Ack { id } => StreamMessage::TextAck { id },
        };
        self.send_stream(ctx, out, message);
    }

    /// Checks the MAC and the replay window.
    pub(crate) fn authenticate(&mut self, frame: &Frame, raw: &[u8]) -> bool {
        let counter = match frame {
            Frame::Probe { counter, .. } | Frame::ProbeAck { counter, .. } | Frame::Session { counter, .. } => *counter,
            _ => return false,
        };
        self.mac.verify(raw, self.role.peer()) && self.replay.accept(counter)
    }

    pub(crate) fn close(&mut self, ctx: &Ctx<'_>, out: &mut Out, reason: CloseReason) {
        if self.closed {
            return;
        }
        if reason == CloseReason::Local {
            let body = SessionBody::Close { reason: CloseReason::Peer };
            if let PathKind::Direct { .. } = self.path {
                self.transmit(ctx, out, body.clone());
            }
            self.transmit_via(ctx, out, PathKind::Relay, body);
        }
        self.finish(out, reason);
    }

    pub(crate) fn handle_timeout(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        for timer in self.timers.expire(ctx.now) {
            if self.closed {
                return;
            }
            match timer {
                SessionTimer::Retransmit => {
                    for seq in self.stream.due(ctx.now) {
                        self.resend(ctx, out, seq);
                    }
                    self.arm_retransmit();
                }
                SessionTimer::Binding => self.binding_timeout(ctx, out),
                SessionTimer::Probe => {
                    self.probe_round(ctx, out);
                    self.timers.set(SessionTimer::Probe, ctx.now + ctx.config.probe_interval);
                }
                SessionTimer::AttemptDeadline => self.attempt_failed(ctx, out),
                SessionTimer::Retry => {
                    if self.path == PathKind::Relay && self.attempt.is_none() {
                        self.start_attempt(ctx, out, self.attempt_no.saturating_add(1));
                    }
                }
                SessionTimer::DirectKeepalive => {
                    if let PathKind::Direct { socket, remote } = self.path {
                        self.send_probe(ctx, out, socket, remote, self.attempt_no);
                        self.timers.set(SessionTimer::DirectKeepalive, ctx.now + ctx.config.direct_keepalive);
                    }
                }
                SessionTimer::PathDeadline => self.fall_back(ctx, out),
                SessionTimer::RelayKeepalive => {
                    if self.path == PathKind::Relay {
                        let (next, received_after) = self.stream.ack();
                        self.transmit(ctx, out, SessionBody::Ack { next, received_after });
                    }
                    self.timers.set(SessionTimer::RelayKeepalive, ctx.now + ctx.config.session_keepalive);
                }
                SessionTimer::Idle => {
                    debug!(session = %self.id, "nothing heard from the peer within the session timeout");
                    self.finish(out, CloseReason::PeerTimeout);
                }
            }
        }
    }

    /// An authenticated frame from the peer.
    pub(crate) fn handle_frame(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        socket: SocketId,
        from: SocketAddr,
        frame: Frame,
        relayed: bool,
    ) {
        self.timers.set(SessionTimer::Idle, ctx.now + ctx.config.session_timeout);
        match frame {
            Frame::Probe { attempt, counter, .. } if !relayed => {
                let ack =
                    Frame::ProbeAck { session: self.id, attempt, probe_counter: counter, counter: 0, observed: from };
                self.transmit_frame(out, socket, from, ack);
                self.learn_peer_reflexive(ctx, out, socket, from);
            }
            Frame::ProbeAck { .. } if !relayed => self.on_probe_ack(ctx, out, socket, from),
            Frame::Session { body, .. } => match body {
                SessionBody::Stream { seq, message } => {
                    for message in self.stream.receive(seq, message) {
                        self.on_stream_message(ctx, out, message);
                        if self.closed {
                            return;
                        }
                    }
                    let (next, received_after) = self.stream.ack();
                    self.transmit(ctx, out, SessionBody::Ack { next, received_after });
                }
                SessionBody::Ack { next, received_after } => {
                    self.stream.on_ack(ctx.now, next, received_after);
                    self.arm_retransmit();
                }
                SessionBody::Close { .. } => self.finish(out, CloseReason::Peer),
            },
            _ => {}
        }
    }

    /// A STUN answer; true when it was ours.
    pub(crate) fn on_binding_response(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        socket: SocketId,
        tid: TransactionId,
        mapped: SocketAddr,
    ) -> bool {
        let predicts_myself = self.punch_role.predicts_myself().is_some();
        let Some(attempt) = self.attempt.as_mut() else { return false };
        if attempt.socket.is_some_and(|(s, _)| s == socket) {
            if let Some(entry) = attempt.burst.iter_mut().find(|(t, _, answer)| *t == tid && answer.is_none()) {
                entry.2 = Some(mapped);
                if attempt.burst.iter().all(|(_, _, answer)| answer.is_some()) {
                    self.finish_sampling(ctx, out);
                }
                return true;
            }
        }
        let (Some((s, local)), Some((t, _, _))) = (attempt.socket, attempt.binding) else { return false };
        if s != socket || t != tid {
            return false;
        }
        attempt.binding = None;
        self.timers.stop(&SessionTimer::Binding);
        if predicts_myself {
            attempt.first_sample = Some((mapped, ctx.now));
            // One round trip later, two more fresh mappings, back to back,
            // toward the other server addresses (see `traversal`).
            let Some(alt) = ctx.config.alt_server else {
                self.finish_sampling(ctx, out);
                return true;
            };
            let server = ctx.config.server;
            let mut targets = vec![alt];
            if alt.ip() != server.ip() && alt.port() != server.port() {
                targets.push(SocketAddr::new(alt.ip(), server.port()));
            }
            for to in targets {
                let tid = self.fresh_transaction();
                self.attempt.as_mut().expect("checked above").burst.push((tid, to, None));
            }
            self.send_burst(ctx, out);
            return true;
        }
        let mut candidates = Vec::new();
        if !local.ip().is_unspecified() {
            candidates.push(local);
        }
        if !candidates.contains(&mapped) {
            candidates.push(mapped);
        }
        let number = attempt.number;
        attempt.candidates_sent = true;
        self.send_stream(ctx, out, StreamMessage::Candidates { attempt: number, candidates });
        self.advance_attempt(ctx, out);
        true
    }

    pub(crate) fn socket_opened(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        number: u16,
        sockets: &[(SocketId, SocketAddr)],
    ) {
        let current = self.attempt.as_ref().map(|a| a.number);
        if current != Some(number) {
            for (s, _) in sockets {
                out.event(ClientEvent::ReleaseSocket { socket: *s });
            }
            return;
        }
        self.owned.extend(sockets.iter().map(|(s, _)| *s));
        // A driver that cannot open sockets still gets an attempt, from the
        // primary socket.
        let sockets = if sockets.is_empty() { vec![ctx.primary] } else { sockets.to_vec() };
        if self.punch_role == PunchRole::Pool {
            let attempt = self.attempt.as_mut().expect("checked above");
            attempt.pool = sockets;
            attempt.candidates_sent = true;
            self.advance_attempt(ctx, out);
            return;
        }
        let socket = sockets[0];
        for (extra, _) in &sockets[1..] {
            self.owned.remove(extra);
            out.event(ClientEvent::ReleaseSocket { socket: *extra });
        }
        self.attempt.as_mut().expect("checked above").socket = Some(socket);
        self.send_binding(ctx, out, ctx.config.server);
    }
}

impl Session {
    fn on_stream_message(&mut self, ctx: &Ctx<'_>, out: &mut Out, message: StreamMessage) {
        match message {
            StreamMessage::App(data) => out.event(ClientEvent::DataReceived { session: self.id, data: data.into() }),
            // Texts belong to the client's messaging, which takes them from
            // `out` once this frame is handled.
            StreamMessage::Text { id, text } => out.peer_texts.push((self.id, PeerText::Text { id, text })),
            StreamMessage::TextAck { id } => out.peer_texts.push((self.id, PeerText::Ack { id })),
            StreamMessage::Candidates { attempt, candidates } => {
                if self.join_attempt(ctx, out, attempt) {
                    self.set_peer_candidates(candidates);
                    self.advance_attempt(ctx, out);
                }
            }
            StreamMessage::OpenersOut { attempt } => {
                if let Some(a) = self.attempt.as_mut().filter(|a| a.number == attempt) {
                    a.peer_openers_out = true;
                    self.advance_attempt(ctx, out);
                }
            }
            StreamMessage::Prediction { attempt, base, delta, window } => {
                if self.peer_public_ip != Some(base.ip()) {
                    debug!(session = %self.id, %base, "prediction for an address the server did not see the peer at");
                    return;
                }
                if self.punch_role.needs_peer_prediction() && self.join_attempt(ctx, out, attempt) {
                    // An honest peer announces one port when both predict,
                    // and at most our own widest window otherwise.
                    let limit = match self.punch_role {
                        PunchRole::PredictBoth { .. } => 1,
                        _ => ctx.config.prediction_window_max.min(MAX_PEER_WINDOW),
                    };
                    let a = self.attempt.as_mut().expect("joined");
                    if a.peer_window.is_none() && delta != 0 {
                        a.peer_window = Some(traversal::predicted_ports(base, delta, window.min(limit)));
                    }
                    self.advance_attempt(ctx, out);
                }
            }
            StreamMessage::PoolOpen { attempt, ip, sockets } => {
                if self.peer_public_ip != Some(ip) {
                    debug!(session = %self.id, %ip, "pool on an address the server did not see the peer at");
                    return;
                }
                if self.punch_role == PunchRole::Prober && self.join_attempt(ctx, out, attempt) {
                    debug!(session = %self.id, attempt, %ip, sockets, "the peer's pool is open");
                    let a = self.attempt.as_mut().expect("joined");
                    a.peer_openers_out = true;
                    a.sampler.get_or_insert_with(|| PortSampler::new(ip));
                    self.advance_attempt(ctx, out);
                }
            }
        }
    }

    /// Follows the peer into attempt `number`; false when it is stale or no
    /// attempt is wanted.
    ///
    /// The peer may move us one attempt ahead, and not sooner than a punch
    /// timeout after our current attempt started: an honest peer only moves
    /// on after its own attempt failed and its backoff passed, and a hostile
    /// one must not make us churn socket pools. A message for the current
    /// attempt while the path is direct changes nothing.
    fn join_attempt(&mut self, ctx: &Ctx<'_>, out: &mut Out, number: u16) -> bool {
        if self.punch_role == PunchRole::RelayOnly || number < self.attempt_no {
            return false;
        }
        if number == self.attempt_no {
            if self.attempt.is_some() {
                return true;
            }
            if matches!(self.path, PathKind::Direct { .. }) {
                return false;
            }
        } else if number > self.attempt_no.saturating_add(1)
            || self.attempt_started_at.is_some_and(|at| ctx.now < at + ctx.config.punch_timeout)
        {
            debug!(session = %self.id, attempt = number, "refused to jump to the peer's attempt");
            return false;
        }
        self.start_attempt(ctx, out, number);
        true
    }

    /// The peer's candidates for the current attempt (the first set wins).
    fn set_peer_candidates(&mut self, candidates: Vec<SocketAddr>) {
        let Some(attempt) = self.attempt.as_mut() else { return };
        if attempt.peer_candidates.is_none() {
            attempt.peer_candidates = Some(candidates);
        }
    }

    fn sockets_per_attempt(&self, ctx: &Ctx<'_>) -> u16 {
        if self.punch_role == PunchRole::Pool {
            ctx.config.birthday_pool.max(1)
        } else {
            1
        }
    }

    fn start_attempt(&mut self, ctx: &Ctx<'_>, out: &mut Out, number: u16) {
        self.abandon_attempt(out);
        self.timers.stop(&SessionTimer::Retry);
        self.attempt_no = number;
        self.attempts_started = self.attempts_started.saturating_add(1);
        self.attempt = Some(Attempt::new(number));
        self.arm_attempt_limit(ctx);
        self.socket_wish = Some((number, self.sockets_per_attempt(ctx)));
        debug!(session = %self.id, attempt = number, "starting a punching attempt from a fresh socket");
    }

    /// Bounds an attempt that waits for the peer (its candidates, window or
    /// pool announcement never come): it fails and is retried like any other.
    /// Probing, once started, sets the real deadline.
    fn arm_attempt_limit(&mut self, ctx: &Ctx<'_>) {
        self.attempt_started_at = Some(ctx.now);
        let wait = match self.punch_role {
            PunchRole::Pool | PunchRole::Prober => birthday_deadline(ctx) + POOL_GRACE + ctx.config.punch_timeout,
            _ => ctx.config.punch_timeout * 2,
        };
        self.timers.set(SessionTimer::AttemptDeadline, ctx.now + wait);
    }

    /// Moves the current attempt forward as far as what is known allows.
    fn advance_attempt(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        match self.punch_role {
            PunchRole::RelayOnly => {}
            PunchRole::Punch | PunchRole::Predicted { .. } | PunchRole::Predicting | PunchRole::PredictBoth { .. } => {
                self.advance_targeted(ctx, out)
            }
            PunchRole::Pool => self.advance_pool(ctx, out),
            PunchRole::Prober => self.advance_prober(ctx, out),
        }
    }

    /// Punching and prediction: open toward known targets, announce, probe
    /// once the peer announced too.
    fn advance_targeted(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        let role = self.punch_role;
        let Some(attempt) = self.attempt.as_mut() else { return };
        if attempt.socket.is_none() {
            return;
        }
        let number = attempt.number;
        // The predicting-myself side announces its window: at once when both
        // sides predict (each needs the other's first), else with its openers.
        if let (Some(delta), Some((base, sampled_at, samples))) = (role.predicts_myself(), attempt.sampled.clone()) {
            let delta = traversal::refine_delta(delta, samples.as_ref());
            let both = matches!(role, PunchRole::PredictBoth { .. });
            if !attempt.prediction_sent && (both || attempt.peer_candidates.is_some()) {
                attempt.prediction_sent = true;
                let openers = if both { 0 } else { attempt.peer_candidates.as_ref().map_or(0, Vec::len) };
                let delay = ctx.now.saturating_duration_since(sampled_at);
                let (min, max) = (ctx.config.prediction_window_min, ctx.config.prediction_window_max);
                // Two predicting sides open one mapping each (see `traversal`).
                let window = if both {
                    1
                } else {
                    traversal::prediction_window(samples.as_ref(), delta, openers, delay, min, max)
                };
                debug!(session = %self.id, attempt = number, %base, delta, window, "announcing predicted ports");
                let message = StreamMessage::Prediction { attempt: number, base, delta, window };
                // Announce after the openers when facing a cone (below), so
                // the window starts after them; before, when both predict.
                if both {
                    self.send_stream(ctx, out, message);
                } else {
                    self.open_and_announce(ctx, out, Some(message));
                    return self.maybe_probe(ctx, out);
                }
            }
        }
        let Some(attempt) = self.attempt.as_mut() else { return };
        let ready = match role {
            PunchRole::Punch => attempt.candidates_sent && attempt.peer_candidates.is_some(),
            PunchRole::Predicted { .. } => false, // opens in the announcement above
            PunchRole::Predicting => attempt.candidates_sent && attempt.peer_window.is_some(),
            PunchRole::PredictBoth { .. } => attempt.prediction_sent && attempt.peer_window.is_some(),
            _ => false,
        };
        if ready && !attempt.openers_sent {
            self.open_and_announce(ctx, out, None);
        }
        self.maybe_probe(ctx, out);
    }

    /// Sends the attempt's openers (low TTL, DESIGN §3) and `OpenersOut`,
    /// after `first` when given.
    fn open_and_announce(&mut self, ctx: &Ctx<'_>, out: &mut Out, first: Option<StreamMessage>) {
        let Some(attempt) = self.attempt.as_mut() else { return };
        let Some((socket, _)) = attempt.socket else { return };
        attempt.openers_sent = true;
        let number = attempt.number;
        // The peer's predicted ports first: with two predicting sides, our
        // single opener must make exactly the mapping we announced.
        let mut targets: Vec<SocketAddr> = attempt.peer_window.clone().unwrap_or_default();
        if !matches!(self.punch_role, PunchRole::PredictBoth { .. }) {
            targets.extend(attempt.peer_candidates.iter().flatten().copied());
        }
        let mut seen = BTreeSet::new();
        targets.retain(|t| seen.insert(*t));
        // Probe targets: the candidates (useless toward a symmetric NAT,
        // whose reflexive address belongs to another destination), then
        // whatever peer-reflexive addresses authenticated probes reveal.
        if matches!(self.punch_role, PunchRole::Punch | PunchRole::Predicted { .. }) {
            let candidates = attempt.peer_candidates.iter().flatten().take(MAX_REMOTES);
            attempt.remotes = candidates.map(|c| (socket, *c)).collect();
        }
        attempt.window_rounds = match self.punch_role {
            PunchRole::Predicting => WINDOW_PROBE_ROUNDS,
            PunchRole::PredictBoth { .. } => u32::MAX,
            _ => 0,
        };
        if !ctx.config.skip_openers {
            for target in &targets {
                out.send_frame(socket, *target, Some(ctx.config.opener_ttl), &Frame::Opener);
            }
        }
        if let Some(message) = first {
            self.send_stream(ctx, out, message);
        }
        self.send_stream(ctx, out, StreamMessage::OpenersOut { attempt: number });
    }

    /// Starts probing once our openers and the peer's are out.
    fn maybe_probe(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        let Some(attempt) = self.attempt.as_mut() else { return };
        let may_probe = attempt.openers_sent && (attempt.peer_openers_out || ctx.config.skip_openers);
        if may_probe && !attempt.probing {
            attempt.probing = true;
            let number = attempt.number;
            out.event(ClientEvent::PunchStarted { session: self.id, attempt: number });
            self.probe_round(ctx, out);
            self.timers.set(SessionTimer::Probe, ctx.now + ctx.config.probe_interval);
            self.timers.set(SessionTimer::AttemptDeadline, ctx.now + ctx.config.punch_timeout);
        }
    }

    /// Birthday, symmetric side: open one mapping per pool socket toward the
    /// peer with low-TTL openers, announce the pool, then answer probes.
    fn advance_pool(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        // Announcing the pool needs our public address; without a login the
        // attempt waits (and its limit fails it if that lasts).
        let Some(ip) = ctx.reflexive.map(|r| r.ip()) else { return };
        let peer_ip = self.peer_public_ip;
        let Some(attempt) = self.attempt.as_mut() else { return };
        let Some(candidates) = attempt.peer_candidates.clone() else { return };
        if attempt.pool.is_empty() || attempt.openers_sent {
            return;
        }
        // Only toward the address the server saw the peer at: the cone's
        // mapping the probes come from. Host candidates cannot be reached
        // across two NATs, and a peer must not point 256 openers elsewhere.
        let candidates: Vec<SocketAddr> = candidates.into_iter().filter(|c| Some(c.ip()) == peer_ip).collect();
        attempt.openers_sent = true;
        attempt.probing = true;
        let number = attempt.number;
        let sockets = attempt.pool.len().min(usize::from(u16::MAX)) as u16;
        if !ctx.config.skip_openers {
            for (socket, _) in &attempt.pool {
                for candidate in &candidates {
                    out.send_frame(*socket, *candidate, Some(ctx.config.opener_ttl), &Frame::Opener);
                }
            }
        }
        out.event(ClientEvent::PunchStarted { session: self.id, attempt: number });
        self.send_stream(ctx, out, StreamMessage::PoolOpen { attempt: number, ip, sockets });
        self.timers.set(SessionTimer::Probe, ctx.now + ctx.config.probe_interval);
        self.timers.set(SessionTimer::AttemptDeadline, ctx.now + birthday_deadline(ctx) + POOL_GRACE);
    }

    /// Birthday, cone side: probe random ports of the pool's address.
    fn advance_prober(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        let Some(attempt) = self.attempt.as_mut() else { return };
        if attempt.socket.is_none() || !attempt.candidates_sent || attempt.sampler.is_none() || attempt.probing {
            return;
        }
        attempt.probing = true;
        attempt.openers_sent = true;
        let number = attempt.number;
        out.event(ClientEvent::PunchStarted { session: self.id, attempt: number });
        self.probe_round(ctx, out);
        self.timers.set(SessionTimer::Probe, ctx.now + ctx.config.probe_interval);
        self.timers.set(SessionTimer::AttemptDeadline, ctx.now + birthday_deadline(ctx));
    }

    fn probe_round(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        let Some(attempt) = self.attempt.as_mut().filter(|a| a.probing) else { return };
        let number = attempt.number;
        let mut targets = attempt.remotes.clone();
        if let Some((socket, _)) = attempt.socket {
            if attempt.window_rounds > 0 {
                attempt.window_rounds -= 1;
                targets.extend(attempt.peer_window.iter().flatten().map(|t| (socket, *t)));
            }
            if let Some(sampler) = attempt.sampler.as_mut() {
                // Birthday: this round's share of the rate, within the budget.
                let per_round = (f64::from(ctx.config.birthday_probe_rate) * ctx.config.probe_interval.as_secs_f64())
                    .ceil()
                    .max(1.0) as u32;
                let left = ctx.config.birthday_probe_budget.saturating_sub(sampler.drawn());
                for _ in 0..per_round.min(left) {
                    match sampler.next(&mut self.rng) {
                        Some(target) => targets.push((socket, target)),
                        None => break,
                    }
                }
            }
        }
        for (socket, remote) in targets {
            self.send_probe(ctx, out, socket, remote, number);
        }
    }

    fn send_probe(&mut self, _ctx: &Ctx<'_>, out: &mut Out, socket: SocketId, remote: SocketAddr, attempt: u16) {
        self.probes_sent += 1;
        let probe = Frame::Probe { session: self.id, attempt, counter: 0 };
        self.transmit_frame(out, socket, remote, probe);
    }

    /// The source of an authenticated probe is a candidate too (RFC 8445
    /// §7.3.1.3's peer-reflexive candidate): probe it back, from the socket
    /// it reached.
    fn learn_peer_reflexive(&mut self, ctx: &Ctx<'_>, out: &mut Out, socket: SocketId, from: SocketAddr) {
        let Some(attempt) = self.attempt.as_mut() else { return };
        if !attempt.owns(socket) || attempt.remotes.contains(&(socket, from)) || attempt.remotes.len() >= MAX_REMOTES {
            return;
        }
        attempt.remotes.push((socket, from));
        if attempt.probing {
            let number = attempt.number;
            self.send_probe(ctx, out, socket, from, number);
        }
    }

    fn on_probe_ack(&mut self, ctx: &Ctx<'_>, out: &mut Out, socket: SocketId, from: SocketAddr) {
        if self.path == (PathKind::Direct { socket, remote: from }) {
            self.timers.set(SessionTimer::PathDeadline, ctx.now + ctx.config.fallback_timeout);
            return;
        }
        let from_attempt = self.attempt.as_ref().is_some_and(|a| a.owns(socket));
        let ours = from_attempt || socket == ctx.primary.0 || self.owned.contains(&socket);
        if !ours || (!from_attempt && matches!(self.path, PathKind::Direct { .. })) {
            return;
        }
        self.path = PathKind::Direct { socket, remote: from };
        self.attempt = None;
        self.failures = 0;
        for t in [SessionTimer::Probe, SessionTimer::AttemptDeadline, SessionTimer::Retry, SessionTimer::Binding] {
            self.timers.stop(&t);
        }
        self.park_relay_keepalive();
        self.release_unused(out);
        out.event(ClientEvent::PathDirect { session: self.id, socket, remote: from });
        self.timers.set(SessionTimer::DirectKeepalive, ctx.now + ctx.config.direct_keepalive);
        self.timers.set(SessionTimer::PathDeadline, ctx.now + ctx.config.fallback_timeout);
        self.resend_all(ctx, out);
    }

    fn fall_back(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        if self.path == PathKind::Relay {
            return;
        }
        debug!(session = %self.id, "direct path silent for the fallback timeout; back to the relay");
        self.path = PathKind::Relay;
        self.fallbacks += 1;
        self.timers.stop(&SessionTimer::DirectKeepalive);
        self.unpark_relay_keepalive(ctx);
        self.release_unused(out);
        out.event(ClientEvent::PathFellBack { session: self.id });
        self.resend_all(ctx, out);
        self.timers.set(SessionTimer::Retry, ctx.now + ctx.config.punch_retry);
    }

    /// On a direct path the relay keepalive has nothing to send, and waking
    /// for it every [`ClientConfig::session_keepalive`] would only cost the
    /// driver a wake-up (and a phone its battery): it is parked instead.
    ///
    /// [`ClientConfig::session_keepalive`]: super::ClientConfig::session_keepalive
    fn park_relay_keepalive(&mut self) {
        if let Some(due) = self.timers.get(&SessionTimer::RelayKeepalive) {
            self.timers.stop(&SessionTimer::RelayKeepalive);
            self.relay_keepalive_parked = Some(due);
        }
    }

    /// Back on the relay: the keepalive resumes in the rhythm it kept
    /// before, at its first beat from now on (now included).
    fn unpark_relay_keepalive(&mut self, ctx: &Ctx<'_>) {
        let Some(mut due) = self.relay_keepalive_parked.take() else { return };
        if due < ctx.now {
            let interval = ctx.config.session_keepalive.as_nanos().max(1);
            let skipped = (ctx.now - due).as_nanos().div_ceil(interval) * interval;
            due = u64::try_from(skipped).ok().and_then(|n| due.checked_add(Duration::from_nanos(n))).unwrap_or(ctx.now);
        }
        self.timers.set(SessionTimer::RelayKeepalive, due.max(ctx.now));
    }

    fn attempt_failed(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        let Some(attempt) = self.attempt.take() else { return };
        self.timers.stop(&SessionTimer::Probe);
        self.timers.stop(&SessionTimer::Binding);
        self.failures += 1;
        self.release_unused(out);
        let retry_in = (self.failures < ctx.config.max_punch_attempts).then(|| {
            let doubled = ctx.config.punch_retry.saturating_mul(1 << (self.failures - 1).min(16));
            doubled.min(ctx.config.punch_retry_max)
        });
        if let Some(wait) = retry_in {
            self.timers.set(SessionTimer::Retry, ctx.now + wait);
        }
        out.event(ClientEvent::PunchFailed { session: self.id, attempt: attempt.number, retry_in });
    }

    fn binding_timeout(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        let Some(attempt) = self.attempt.as_mut() else { return };
        if !attempt.burst.is_empty() && attempt.sampled.is_none() {
            if attempt.burst_sends >= BINDING_SENDS {
                // The other addresses are silent: predict from what came.
                self.finish_sampling(ctx, out);
            } else {
                self.send_burst(ctx, out);
            }
            return;
        }
        let (Some((socket, _)), Some((tid, sends, to))) = (attempt.socket, attempt.binding) else { return };
        if sends >= BINDING_SENDS {
            // The server does not answer this socket: the attempt cannot
            // tell the peer where it is.
            self.attempt_failed(ctx, out);
            return;
        }
        attempt.binding = Some((tid, sends + 1, to));
        out.send(socket, to, None, stun::binding_request(tid));
        self.timers.set(SessionTimer::Binding, ctx.now + BINDING_INTERVAL);
    }

    /// (Re)sends the unanswered requests of the sampling burst, together.
    fn send_burst(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        let Some(attempt) = self.attempt.as_mut() else { return };
        let Some((socket, _)) = attempt.socket else { return };
        attempt.burst_sends += 1;
        for (tid, to, answer) in &attempt.burst {
            if answer.is_none() {
                out.send(socket, *to, None, stun::binding_request(*tid));
            }
        }
        self.timers.set(SessionTimer::Binding, ctx.now + BINDING_INTERVAL);
    }

    /// The predicting side's samples are in (or all it will get).
    fn finish_sampling(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        let Some(attempt) = self.attempt.as_mut() else { return };
        let Some((first, at)) = attempt.first_sample else { return };
        self.timers.stop(&SessionTimer::Binding);
        let answers: Vec<SocketAddr> = attempt.burst.iter().filter_map(|(_, _, answer)| *answer).collect();
        let samples = (!answers.is_empty()).then(|| AllocatorSamples {
            first,
            burst: answers,
            gap: ctx.now.saturating_duration_since(at),
        });
        let delta = self.punch_role.predicts_myself().unwrap_or(1);
        let base = samples.as_ref().map_or(first, |s| s.base(delta));
        attempt.sampled = Some((base, ctx.now, samples));
        self.advance_attempt(ctx, out);
    }

    /// Asks `to` for the attempt socket's reflexive address (RFC 8489).
    fn send_binding(&mut self, ctx: &Ctx<'_>, out: &mut Out, to: SocketAddr) {
        let tid = self.fresh_transaction();
        let Some(attempt) = self.attempt.as_mut() else { return };
        let Some((socket, _)) = attempt.socket else { return };
        attempt.binding = Some((tid, 1, to));
        out.send(socket, to, None, stun::binding_request(tid));
        self.timers.set(SessionTimer::Binding, ctx.now + BINDING_INTERVAL);
    }

    fn abandon_attempt(&mut self, out: &mut Out) {
        self.attempt = None;
        for t in [SessionTimer::Probe, SessionTimer::AttemptDeadline, SessionTimer::Binding] {
            self.timers.stop(&t);
        }
        self.release_unused(out);
    }

    /// Releases owned sockets that neither the attempt nor the path uses.
    fn release_unused(&mut self, out: &mut Out) {
        let path_socket = match self.path {
            PathKind::Direct { socket, .. } => Some(socket),
            PathKind::Relay => None,
        };
        let in_attempt = |s: SocketId| self.attempt.as_ref().is_some_and(|a| a.owns(s));
        let unused: Vec<SocketId> =
            self.owned.iter().copied().filter(|s| !in_attempt(*s) && Some(*s) != path_socket).collect();
        for socket in unused {
            self.owned.remove(&socket);
            out.event(ClientEvent::ReleaseSocket { socket });
        }
    }

    fn finish(&mut self, out: &mut Out, reason: CloseReason) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.attempt = None;
        self.path = PathKind::Relay;
        self.release_unused(out);
        self.timers = Timers::default();
        out.event(ClientEvent::SessionClosed { session: self.id, reason });
    }

    fn send_stream(&mut self, ctx: &Ctx<'_>, out: &mut Out, message: StreamMessage) {
        let seq = self.stream.push(ctx.now, message.clone());
        self.transmit(ctx, out, SessionBody::Stream { seq, message });
        self.arm_retransmit();
    }

    fn resend(&mut self, ctx: &Ctx<'_>, out: &mut Out, seq: u64) {
        if let Some(message) = self.stream.message(seq).cloned() {
            self.transmit(ctx, out, SessionBody::Stream { seq, message });
        }
    }

    fn resend_all(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        for seq in self.stream.all_unacked() {
            self.resend(ctx, out, seq);
        }
        self.stream.mark_all_sent(ctx.now);
        self.arm_retransmit();
    }

    fn arm_retransmit(&mut self) {
        match self.stream.retransmit_at() {
            Some(at) => self.timers.set(SessionTimer::Retransmit, at),
            None => self.timers.stop(&SessionTimer::Retransmit),
        }
    }

    /// Sends a session frame on the current path.
    fn transmit(&mut self, ctx: &Ctx<'_>, out: &mut Out, body: SessionBody) {
        self.transmit_via(ctx, out, self.path, body);
    }

    fn transmit_via(&mut self, ctx: &Ctx<'_>, out: &mut Out, path: PathKind, body: SessionBody) {
        let frame = Frame::Session { session: self.id, counter: 0, body };
        match path {
            PathKind::Direct { socket, remote } => self.transmit_frame(out, socket, remote, frame),
            PathKind::Relay => {
                let Some(token) = ctx.token else {
                    // Not logged in right now: the stream retransmits later.
                    return;
                };
                let payload = self.seal(frame);
                let relay = Frame::Relay { token, session: self.id, payload };
                out.send_frame(ctx.primary.0, ctx.config.server, None, &relay);
            }
        }
    }

    fn transmit_frame(&mut self, out: &mut Out, socket: SocketId, to: SocketAddr, frame: Frame) {
        let frame = self.stamp(frame);
        out.send_sealed(socket, to, None, &frame, |bytes| self.mac.seal(bytes, self.role));
    }

    /// Stamps the next counter into an authenticated frame and signs it.
    fn seal(&mut self, frame: Frame) -> Vec<u8> {
        let mut bytes = self.stamp(frame).encode();
        self.mac.seal(&mut bytes, self.role);
        bytes
    }

    /// `frame` with the session's next counter, which makes it unique.
    fn stamp(&mut self, mut frame: Frame) -> Frame {
        self.counter += 1;
        match &mut frame {
            Frame::Probe { counter, .. } | Frame::ProbeAck { counter, .. } | Frame::Session { counter, .. } => {
                *counter = self.counter
            }
            _ => {}
        }
        frame
    }

    fn fresh_transaction(&mut self) -> TransactionId {
        let mut id = [0; 12];
        self.rng.fill(&mut id);
        TransactionId(id)
    }
}

impl Attempt {
    fn new(number: u16) -> Self {
        Attempt {
            number,
            socket: None,
            binding: None,
            candidates_sent: false,
            peer_candidates: None,
            openers_sent: false,
            peer_openers_out: false,
            remotes: Vec::new(),
            probing: false,
            first_sample: None,
            burst: Vec::new(),
            burst_sends: 0,
            sampled: None,
            prediction_sent: false,
            peer_window: None,
            window_rounds: 0,
            pool: Vec::new(),
            sampler: None,
        }
    }

    /// True when `socket` is the attempt's socket or one of its pool.
    fn owns(&self, socket: SocketId) -> bool {
        self.socket.is_some_and(|(s, _)| s == socket) || self.pool.iter().any(|(s, _)| *s == socket)
    }
}

/// How long the prober spends its budget at its rate, plus a second for the
/// last answers; never less than the ordinary punch timeout.
fn birthday_deadline(ctx: &Ctx<'_>) -> Duration {
    let rate = f64::from(ctx.config.birthday_probe_rate.max(1));
    let spend = Duration::from_secs_f64(f64::from(ctx.config.birthday_probe_budget) / rate);
    (spend + Duration::from_secs(1)).max(ctx.config.punch_timeout)
}
