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

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::debug;

use super::stream::Stream;
use super::{ClientEvent, Ctx, Out, PathKind, SessionInfo};
use crate::auth::{self, ReplayWindow, Role};
use crate::machine::SocketId;
use crate::nat::Strategy;
use crate::rng::Rng;
use crate::timer::Timers;
use crate::wire::frame::{CloseReason, Frame, SessionBody, SessionId, SessionKey, StreamMessage, MAX_CANDIDATES};
use crate::wire::stun::{self, TransactionId};

/// Most probe targets one attempt keeps (candidates plus peer-reflexive).
const MAX_REMOTES: usize = MAX_CANDIDATES + 4;
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
    binding: Option<(TransactionId, u32)>,
    /// Our candidates are known to the peer (attempt 0: via the server).
    candidates_sent: bool,
    peer_candidates: Option<Vec<SocketAddr>>,
    openers_sent: bool,
    peer_openers_out: bool,
    remotes: Vec<SocketAddr>,
    probing: bool,
}

#[derive(Debug)]
pub(crate) struct Session {
    id: SessionId,
    key: SessionKey,
    role: Role,
    peer: String,
    strategy: Strategy,
    rng: Rng,
    stream: Stream,
    counter: u64,
    replay: ReplayWindow,
    path: PathKind,
    attempt: Option<Attempt>,
    attempt_no: u16,
    attempts_started: u16,
    failures: u32,
    fallbacks: u32,
    probes_sent: u64,
    timers: Timers<SessionTimer>,
    socket_wish: Option<u16>,
    owned: BTreeSet<SocketId>,
    closed: bool,
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
        rng: Rng,
    ) -> Self {
        let mut s = Session {
            id,
            key,
            role,
            peer: peer.clone(),
            strategy,
            rng,
            stream: Stream::new(),
            counter: 0,
            replay: ReplayWindow::default(),
            path: PathKind::Relay,
            attempt: None,
            attempt_no: 0,
            attempts_started: 0,
            failures: 0,
            fallbacks: 0,
            probes_sent: 0,
            timers: Timers::default(),
            socket_wish: None,
            owned: BTreeSet::new(),
            closed: false,
        };
        out.event(ClientEvent::SessionOpened { session: id, peer, initiator: role == Role::Initiator, strategy });
        s.timers.set(SessionTimer::Idle, ctx.now + ctx.config.session_timeout);
        s.timers.set(SessionTimer::RelayKeepalive, ctx.now + ctx.config.session_keepalive);
        if strategy != Strategy::RelayOnly {
            // Attempt 0 punches from the primary socket, whose candidates the
            // server has already given the peer.
            s.attempt_no = 0;
            s.attempts_started = 1;
            let mut attempt = Attempt::new(0);
            attempt.socket = Some(ctx.primary);
            attempt.candidates_sent = true;
            attempt.peer_candidates = Some(peer_candidates.clone());
            attempt.remotes = peer_candidates.into_iter().take(MAX_REMOTES).collect();
            s.attempt = Some(attempt);
            s.advance_attempt(ctx, out);
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

    /// The attempt that wants a socket from the driver, once.
    pub(crate) fn take_socket_wish(&mut self) -> Option<u16> {
        self.socket_wish.take()
    }

    pub(crate) fn send_app(&mut self, ctx: &Ctx<'_>, out: &mut Out, data: Vec<u8>) {
        self.send_stream(ctx, out, StreamMessage::App(data));
    }

    /// Checks the MAC and the replay window.
    pub(crate) fn authenticate(&mut self, frame: &Frame, raw: &[u8]) -> bool {
        let counter = match frame {
            Frame::Probe { counter, .. } | Frame::ProbeAck { counter, .. } | Frame::Session { counter, .. } => *counter,
            _ => return false,
        };
        auth::verify(raw, &self.key, self.role.peer()) && self.replay.accept(counter)
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
        let Some(attempt) = self.attempt.as_mut() else { return false };
        match (attempt.socket, attempt.binding) {
            (Some((s, local)), Some((t, _))) if s == socket && t == tid => {
                attempt.binding = None;
                self.timers.stop(&SessionTimer::Binding);
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
            _ => false,
        }
    }

    pub(crate) fn socket_opened(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        number: u16,
        socket: Option<(SocketId, SocketAddr)>,
    ) {
        let current = self.attempt.as_ref().map(|a| a.number);
        if current != Some(number) {
            if let Some((s, _)) = socket {
                out.event(ClientEvent::ReleaseSocket { socket: s });
            }
            return;
        }
        // A driver that cannot open sockets still gets an attempt, from the
        // primary socket.
        let socket = match socket {
            Some(s) => {
                self.owned.insert(s.0);
                s
            }
            None => ctx.primary,
        };
        let tid = self.fresh_transaction();
        let attempt = self.attempt.as_mut().expect("checked above");
        attempt.socket = Some(socket);
        attempt.binding = Some((tid, 1));
        out.send(socket.0, ctx.config.server, None, stun::binding_request(tid));
        self.timers.set(SessionTimer::Binding, ctx.now + BINDING_INTERVAL);
    }
}

impl Session {
    fn on_stream_message(&mut self, ctx: &Ctx<'_>, out: &mut Out, message: StreamMessage) {
        match message {
            StreamMessage::App(data) => out.event(ClientEvent::DataReceived { session: self.id, data: data.into() }),
            StreamMessage::Candidates { attempt, candidates } => self.on_candidates(ctx, out, attempt, candidates),
            StreamMessage::OpenersOut { attempt } => {
                if let Some(a) = self.attempt.as_mut().filter(|a| a.number == attempt) {
                    a.peer_openers_out = true;
                    self.advance_attempt(ctx, out);
                }
            }
        }
    }

    fn on_candidates(&mut self, ctx: &Ctx<'_>, out: &mut Out, number: u16, candidates: Vec<SocketAddr>) {
        if self.strategy == Strategy::RelayOnly || number < self.attempt_no {
            return;
        }
        if number > self.attempt_no || self.attempt.is_none() {
            self.start_attempt(ctx, out, number);
        }
        let Some(attempt) = self.attempt.as_mut() else { return };
        if attempt.peer_candidates.is_none() {
            attempt.remotes = candidates.iter().copied().take(MAX_REMOTES).collect();
            attempt.peer_candidates = Some(candidates);
        }
        self.advance_attempt(ctx, out);
    }

    fn start_attempt(&mut self, ctx: &Ctx<'_>, out: &mut Out, number: u16) {
        self.abandon_attempt(out);
        self.timers.stop(&SessionTimer::Retry);
        self.attempt_no = number;
        self.attempts_started = self.attempts_started.saturating_add(1);
        self.attempt = Some(Attempt::new(number));
        self.socket_wish = Some(number);
        debug!(session = %self.id, attempt = number, "starting a punching attempt from a fresh socket");
        let _ = ctx;
    }

    /// Moves the current attempt forward as far as what is known allows.
    fn advance_attempt(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        let Some(attempt) = self.attempt.as_mut() else { return };
        let (Some((socket, _)), true, Some(peer_candidates)) =
            (attempt.socket, attempt.candidates_sent, attempt.peer_candidates.clone())
        else {
            return;
        };
        let number = attempt.number;
        if !attempt.openers_sent {
            attempt.openers_sent = true;
            if !ctx.config.skip_openers {
                for candidate in &peer_candidates {
                    out.send(socket, *candidate, Some(ctx.config.opener_ttl), Frame::Opener.encode());
                }
            }
            self.send_stream(ctx, out, StreamMessage::OpenersOut { attempt: number });
        }
        let attempt = self.attempt.as_mut().expect("checked above");
        let may_probe = attempt.peer_openers_out || ctx.config.skip_openers;
        if may_probe && !attempt.probing {
            attempt.probing = true;
            out.event(ClientEvent::PunchStarted { session: self.id, attempt: number });
            self.probe_round(ctx, out);
            self.timers.set(SessionTimer::Probe, ctx.now + ctx.config.probe_interval);
            self.timers.set(SessionTimer::AttemptDeadline, ctx.now + ctx.config.punch_timeout);
        }
    }

    fn probe_round(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        let Some(attempt) = self.attempt.as_ref().filter(|a| a.probing) else { return };
        let Some((socket, _)) = attempt.socket else { return };
        let (remotes, number) = (attempt.remotes.clone(), attempt.number);
        for remote in remotes {
            self.send_probe(ctx, out, socket, remote, number);
        }
    }

    fn send_probe(&mut self, _ctx: &Ctx<'_>, out: &mut Out, socket: SocketId, remote: SocketAddr, attempt: u16) {
        self.probes_sent += 1;
        let probe = Frame::Probe { session: self.id, attempt, counter: 0 };
        self.transmit_frame(out, socket, remote, probe);
    }

    /// The source of an authenticated probe is a candidate too (RFC 8445
    /// §7.3.1.3's peer-reflexive candidate): probe it back.
    fn learn_peer_reflexive(&mut self, ctx: &Ctx<'_>, out: &mut Out, socket: SocketId, from: SocketAddr) {
        let Some(attempt) = self.attempt.as_mut() else { return };
        if attempt.socket.map(|s| s.0) != Some(socket)
            || attempt.remotes.contains(&from)
            || attempt.remotes.len() >= MAX_REMOTES
        {
            return;
        }
        attempt.remotes.push(from);
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
        let from_attempt = self.attempt.as_ref().and_then(|a| a.socket).is_some_and(|(s, _)| s == socket);
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
        self.release_unused(out);
        out.event(ClientEvent::PathFellBack { session: self.id });
        self.resend_all(ctx, out);
        self.timers.set(SessionTimer::Retry, ctx.now + ctx.config.punch_retry);
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
        let (Some((socket, _)), Some((tid, sends))) = (attempt.socket, attempt.binding) else { return };
        if sends >= BINDING_SENDS {
            // The server does not answer this socket: the attempt cannot
            // tell the peer where it is.
            self.timers.set(SessionTimer::AttemptDeadline, ctx.now);
            self.attempt_failed(ctx, out);
            return;
        }
        attempt.binding = Some((tid, sends + 1));
        out.send(socket, ctx.config.server, None, stun::binding_request(tid));
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
        let attempt_socket = self.attempt.as_ref().and_then(|a| a.socket).map(|s| s.0);
        let path_socket = match self.path {
            PathKind::Direct { socket, .. } => Some(socket),
            PathKind::Relay => None,
        };
        let unused: Vec<SocketId> =
            self.owned.iter().copied().filter(|s| Some(*s) != attempt_socket && Some(*s) != path_socket).collect();
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
                out.send(ctx.primary.0, ctx.config.server, None, relay.encode());
            }
        }
    }

    fn transmit_frame(&mut self, out: &mut Out, socket: SocketId, to: SocketAddr, frame: Frame) {
        let bytes = self.seal(frame);
        out.send(socket, to, None, bytes);
    }

    /// Stamps the next counter into an authenticated frame and signs it.
    fn seal(&mut self, mut frame: Frame) -> Vec<u8> {
        self.counter += 1;
        match &mut frame {
            Frame::Probe { counter, .. } | Frame::ProbeAck { counter, .. } | Frame::Session { counter, .. } => {
                *counter = self.counter
            }
            _ => {}
        }
        let mut bytes = frame.encode();
        auth::seal(&mut bytes, &self.key, self.role);
        bytes
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
        }
    }
}
