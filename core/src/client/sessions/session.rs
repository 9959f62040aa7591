//! One session with a peer: the glue between its parts. It routes the
//! peer's frames and its own timers to the part they concern, and returns
//! the texts its stream delivers (see [`super`]).

use std::net::SocketAddr;
use std::time::Instant;

use tracing::debug;

use super::files::Files;
use super::path::{Channel, Path};
use super::seal::{Early, Seal, Step};
use super::stream::Stream;
use super::timers::{SessionTimer, SessionTimers};
use super::traversal::{PunchRole, Traversal};
use crate::client::context::{retransmit_after, Ctx, Out};
use crate::client::events::{ClientEvent, SessionInfo};
use crate::client::file_api::{FileId, FileProgress, FileSource};
use crate::client::messaging::PeerText;
use crate::machine::SocketId;
use crate::nat::{choose_strategy, NatProfile, Strategy};
use crate::rng::Rng;
use crate::secure::PublicKey;
use crate::timer::Timers;
use crate::wire::frame::files::{FileAbort, FileRefusal};
use crate::wire::frame::{CloseReason, Frame, SessionBody, SessionId, StreamMessage, Transport};
use crate::wire::stun::TransactionId;

/// Sends of a session's hello before it stops resending (about 50 s
/// with the backoff, past the default session timeout).
const HELLO_SENDS: u32 = 16;

#[derive(Debug)]
pub(crate) struct Session {
    id: SessionId,
    peer: String,
    initiator: bool,
    strategy: Strategy,
    /// Both sides' NAT profiles as far as they are measured: ours from the
    /// client, the peer's from its [`StreamMessage::Profile`]. The initiator
    /// chooses the strategy again whenever one changes.
    mine: Option<NatProfile>,
    theirs: Option<NatProfile>,
    /// The initiator's last decision: both sides' roles under `strategy`
    /// (ours first), once chosen from measured profiles.
    decided_roles: Option<(PunchRole, PunchRole)>,
    /// Until the end-to-end handshake is done: the peer's candidates, for
    /// traversal to start with once probes can be sealed.
    waiting: Option<Vec<SocketAddr>>,
    /// Sends of our hello (by the session's responder).
    hellos_sent: u32,
    closed: bool,
    timers: SessionTimers,
    path: Path,
    stream: Stream,
    traversal: Traversal,
    /// How the peer reaches the server, as its offers say.
    peer_transport: Transport,
    /// The relay's transport as last reported
    /// ([`ClientEvent::RelayTransportChanged`]).
    reported_relay: Transport,
    /// File transfers, both ways, and their data plane.
    files: Files,
}

impl Session {
    /// A session the server offered: it is opened at once, over the relay,
    /// and its end-to-end handshake starts (the responder's hello goes out
    /// on the relay). Once the handshake is done its first punching attempt
    /// starts with the server's strategy. `mine` is our NAT profile if
    /// measured; the offer's profile of the peer (`theirs`) stands in for
    /// the peer's own word until that comes.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        ctx: &Ctx<'_>,
        out: &mut Out,
        id: SessionId,
        peer_key: PublicKey,
        initiator: bool,
        peer: String,
        peer_candidates: Vec<SocketAddr>,
        strategy: Strategy,
        (mine, theirs): (Option<NatProfile>, NatProfile),
        rng: Rng,
    ) -> Self {
        let my_role = punch_role(ctx, strategy, mine.unwrap_or_default(), theirs);
        let handshake_rng = rng.fork(u64::from_le_bytes(*b"e2e hand"));
        // The responder opens the handshake, so that the initiator (who
        // asked, and usually sends first) holds keys soonest (see
        // [`super::seal`]).
        let (seal, hello) = if initiator {
            (Seal::awaiting_hello(ctx, id, peer_key, handshake_rng), None)
        } else {
            let (seal, hello) = Seal::sending_hello(ctx, id, peer_key, handshake_rng);
            (seal, Some(hello))
        };
        let mut s = Session {
            id,
            peer: peer.clone(),
            initiator,
            strategy,
            mine,
            theirs: None,
            // The server's strategy came with the profiles it was chosen
            // from: the same roles later are no news.
            decided_roles: (strategy != Strategy::Pending).then(|| {
                let mine = mine.unwrap_or_default();
                both_roles(ctx, strategy, mine, theirs)
            }),
            waiting: None,
            hellos_sent: 0,
            closed: false,
            timers: Timers::default(),
            path: Path::new(id, seal),
            stream: Stream::new(),
            traversal: Traversal::new(ctx, id, my_role, &peer_candidates, rng),
            peer_transport: Transport::Udp,
            reported_relay: Transport::Udp,
            files: Files::default(),
        };
        s.waiting = Some(peer_candidates);
        out.event(ClientEvent::SessionOpened { session: id, peer, initiator, strategy });
        s.timers.set(SessionTimer::Idle, ctx.now + ctx.config.session_timeout);
        s.timers.set(SessionTimer::RelayKeepalive, ctx.now + ctx.config.session_keepalive);
        if let Some(hello) = hello {
            s.send_hello(ctx, out, hello);
        }
        s
    }

    /// The server offered the session again: the peer is at a new address
    /// (`candidates`, its reflexive one last).
    pub(crate) fn peer_moved(&mut self, candidates: &[SocketAddr]) {
        match self.waiting.as_mut() {
            Some(waiting) => *waiting = candidates.to_vec(),
            None => self.traversal.peer_moved(candidates),
        }
    }

    /// Relays our hello, and arms its resend.
    fn send_hello(&mut self, ctx: &Ctx<'_>, out: &mut Out, hello: Vec<u8>) {
        self.hellos_sent += 1;
        self.path.relay_datagram(ctx, out, hello);
        self.timers.set(SessionTimer::Handshake, ctx.now + retransmit_after(self.hellos_sent));
    }

    /// A `PeerHello` or `PeerWelcome` the relay brought.
    pub(crate) fn on_handshake(&mut self, ctx: &Ctx<'_>, out: &mut Out, datagram: &[u8]) -> bool {
        if self.closed {
            return false;
        }
        match self.path.seal().on_handshake(ctx, datagram) {
            Step::Ignored => false,
            Step::Answer(welcome) => {
                self.path.relay_datagram(ctx, out, welcome);
                true
            }
            Step::Established { reply } => {
                if let Some(welcome) = reply {
                    self.path.relay_datagram(ctx, out, welcome);
                }
                self.timers.stop(&SessionTimer::Handshake);
                self.timers.set(SessionTimer::Idle, ctx.now + ctx.config.session_timeout);
                self.established(ctx, out);
                true
            }
        }
    }

    /// The handshake is done: what the stream holds goes out, the peer
    /// learns our profile, and traversal starts.
    fn established(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        debug!(session = %self.id, "end-to-end keys established");
        self.parts().1.resend_all(ctx, out);
        if let Some(profile) = self.mine {
            self.parts().1.send_stream(ctx, out, StreamMessage::Profile { profile });
        }
        let candidates = self.waiting.take().unwrap_or_default();
        let (traversal, mut ch) = self.parts();
        traversal.start(ctx, out, &mut ch, candidates);
    }

    /// Our NAT was measured (again): the peer learns the profile, and the
    /// strategy is chosen again from both.
    pub(crate) fn own_profile(&mut self, ctx: &Ctx<'_>, out: &mut Out, profile: NatProfile) {
        if self.closed || self.mine == Some(profile) {
            return;
        }
        self.mine = Some(profile);
        if self.waiting.is_some() {
            // Sent with the keys, when the handshake is done.
            return;
        }
        self.parts().1.send_stream(ctx, out, StreamMessage::Profile { profile });
        self.reconsider_strategy(ctx, out);
    }

    /// The initiator chooses the strategy from both measured profiles (the
    /// server's choice at the offer may have been made without them) and,
    /// when it changes, tells the peer and starts an attempt with it.
    ///
    /// The strategy's name is not enough: a move can change the roles under
    /// the same strategy (from `predict` toward one sequential NAT to
    /// `predict` between two), so the roles both sides would take are
    /// compared too.
    fn reconsider_strategy(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        let (true, Some(mine), Some(theirs)) = (self.initiator, self.mine, self.theirs) else { return };
        let strategy = choose_strategy(&mine, &theirs);
        let roles = both_roles(ctx, strategy, mine, theirs);
        if strategy == self.strategy && Some(roles) == self.decided_roles {
            return;
        }
        self.decided_roles = Some(roles);
        // The first attempt is 0 (the session waited for its strategy);
        // otherwise the next, unless the path is direct and none starts.
        let next = u16::from(!self.path.is_direct() && self.traversal.attempts_started() > 0);
        let attempt = self.traversal.attempt_no().saturating_add(next);
        self.parts().1.send_stream(ctx, out, StreamMessage::Strategy { attempt, strategy });
        self.switch_strategy(ctx, out, strategy, attempt);
    }

    /// Traverses with `strategy` from now on; a new attempt `attempt`
    /// starts with it unless the path is direct.
    fn switch_strategy(&mut self, ctx: &Ctx<'_>, out: &mut Out, strategy: Strategy, attempt: u16) {
        debug!(session = %self.id, from = self.strategy.name(), to = strategy.name(), "strategy chosen again");
        self.strategy = strategy;
        let role = punch_role(ctx, strategy, self.mine.unwrap_or_default(), self.theirs.unwrap_or_default());
        out.event(ClientEvent::StrategyChanged { session: self.id, strategy });
        let (traversal, mut ch) = self.parts();
        traversal.switch_role(ctx, out, &mut ch, role, attempt);
    }

    pub(crate) fn info(&self) -> SessionInfo {
        SessionInfo {
            peer: self.peer.clone(),
            strategy: self.strategy,
            path: self.path.kind(),
            fallbacks: self.path.fallbacks(),
            probes_sent: self.path.probes_sent(),
            attempts: self.traversal.attempts_started(),
            srtt: self.path.srtt(),
            relay_transport: self.peer_transport,
        }
    }

    /// How the peer reaches the server, as its latest offer says.
    pub(crate) fn set_peer_transport(&mut self, transport: Transport) {
        self.peer_transport = transport;
    }

    /// Reports the relay's transport if it changed: TCP when `own` (how we
    /// reach the server) or the peer's is.
    pub(crate) fn report_relay_transport(&mut self, out: &mut Out, own: Transport) {
        let now = own.max(self.peer_transport);
        if now != self.reported_relay {
            self.reported_relay = now;
            out.event(ClientEvent::RelayTransportChanged { session: self.id, transport: now });
        }
    }

    /// The other member.
    pub(crate) fn peer(&self) -> &str {
        &self.peer
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// True when this session can carry a text to `peer` now: it is with
    /// `peer`, on a direct path, and its send window has room.
    pub(crate) fn takes_texts_for(&self, peer: &str, send_window: usize) -> bool {
        self.peer == peer && self.path.is_direct() && !self.closed && self.unacked_app() < send_window
    }

    pub(crate) fn unacked_app(&self) -> usize {
        self.stream.unacked_app()
    }

    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.timers.next().map(|(_, at)| at)
    }

    /// The attempt that wants sockets from the driver, and how many, once.
    pub(crate) fn take_socket_wish(&mut self) -> Option<(u16, u16)> {
        self.traversal.take_socket_wish()
    }

    pub(crate) fn send_app(&mut self, ctx: &Ctx<'_>, out: &mut Out, data: Vec<u8>) {
        self.parts().1.send_stream(ctx, out, StreamMessage::App(data));
    }

    /// Sends a text message or its acknowledgement on the reliable stream.
    pub(crate) fn send_peer_text(&mut self, ctx: &Ctx<'_>, out: &mut Out, text: PeerText) {
        let message = match text {
            PeerText::Text { id, text } => StreamMessage::Text { id, text },
            PeerText::Ack { id } => StreamMessage::TextAck { id },
        };
        self.parts().1.send_stream(ctx, out, message);
    }

    /// The frame in a `PeerSealed` datagram, if it opens in the session's
    /// keys (authentic, and no replay).
    pub(crate) fn open(&mut self, now: Instant, datagram: &[u8]) -> Option<Frame> {
        self.path.seal().open(now, datagram)
    }

    /// Holds a sealed datagram that came before the session's keys (see
    /// [`Seal::hold`]).
    pub(crate) fn hold_early(&mut self, early: Early) -> bool {
        self.path.seal().hold(early)
    }

    /// Whether the end-to-end handshake is done.
    pub(crate) fn is_established(&mut self) -> bool {
        self.path.seal().is_established()
    }

    /// The datagrams held until the keys existed, to be handled now.
    pub(crate) fn take_early(&mut self) -> Vec<Early> {
        self.path.seal().take_early()
    }

    pub(crate) fn close(&mut self, ctx: &Ctx<'_>, out: &mut Out, reason: CloseReason) {
        if self.closed {
            return;
        }
        if reason == CloseReason::Local {
            if self.path.seal().is_established() {
                self.path.send_close(ctx, out);
            } else if let Some(token) = ctx.token {
                // No keys yet to tell the peer with: the server ends the
                // session for both.
                out.send_to_server(ctx, &Frame::Leave { token, session: self.id });
            }
        }
        self.finish(out, reason);
    }

    pub(crate) fn handle_timeout(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        for timer in self.timers.expire(ctx.now) {
            if self.closed {
                return;
            }
            match timer {
                SessionTimer::Handshake => {
                    if let Some(hello) = self.path.seal().hello_to_resend().map(<[u8]>::to_vec) {
                        // Unanswered hellos stop after a while; the idle
                        // timer then ends the session.
                        if self.hellos_sent < HELLO_SENDS {
                            self.send_hello(ctx, out, hello);
                        }
                    }
                }
                SessionTimer::Retransmit => self.parts().1.resend_due(ctx, out),
                SessionTimer::LanProbe => {
                    let (traversal, mut ch) = self.parts();
                    traversal.lan_round(ctx, out, &mut ch);
                }
                SessionTimer::Binding | SessionTimer::Probe | SessionTimer::AttemptDeadline | SessionTimer::Retry => {
                    let (traversal, mut ch) = self.parts();
                    traversal.on_timer(ctx, out, &mut ch, timer);
                }
                SessionTimer::DirectKeepalive => {
                    let attempt = self.traversal.attempt_no();
                    if self.path.direct_keepalive(ctx, out, &mut self.timers, attempt) {
                        self.fall_back(ctx, out);
                    }
                }
                SessionTimer::RelayKeepalive => self.path.relay_keepalive(ctx, out, &self.stream, &mut self.timers),
                SessionTimer::FilePace | SessionTimer::FileLoss | SessionTimer::FileAck | SessionTimer::FileCredit => {
                    let (files, mut ch) = self.files_and_channel();
                    files.on_timer(ctx, out, &mut ch, timer);
                }
                SessionTimer::Idle => {
                    debug!(session = %self.id, "nothing heard from the peer within the session timeout");
                    self.finish(out, CloseReason::PeerTimeout);
                }
            }
        }
    }

    /// An authenticated frame from the peer. Returns the texts and text
    /// acknowledgements its stream delivered, for messaging.
    pub(crate) fn handle_frame(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        socket: SocketId,
        from: SocketAddr,
        frame: Frame,
        relayed: bool,
    ) -> Vec<PeerText> {
        let mut texts = Vec::new();
        self.timers.set(SessionTimer::Idle, ctx.now + ctx.config.session_timeout);
        if !relayed {
            self.path.heard_direct(ctx.now, socket, from);
        }
        match frame {
            // A client that does not punch proves no direct path, not even
            // one its peer found.
            Frame::Probe { .. } | Frame::ProbeAck { .. } if !ctx.config.punch => {}
            Frame::Probe { attempt, counter, .. } if !relayed => {
                self.path.answer_probe(out, socket, from, attempt, counter);
                let on_relay_and_ours = !self.path.is_direct() && self.traversal.adopts(ctx, socket, false);
                if (self.path.socket() == Some(socket) && !self.path.is_on_path(socket, from)) || on_relay_and_ours {
                    // The peer reaches us here directly: probe back (one
                    // probe per probe received). If its NAT rebound, the ack
                    // moves the path to its new address; if we are still on
                    // the relay (our attempt failed, or our acks were lost),
                    // the ack proves the path and we join the peer on it.
                    self.path.send_probe(out, socket, from, self.traversal.attempt_no());
                }
                let (traversal, mut ch) = self.parts();
                traversal.on_probe(out, &mut ch, socket, from);
            }
            Frame::ProbeAck { probe_counter, .. } if !relayed => {
                self.on_probe_ack(ctx, out, socket, from, probe_counter)
            }
            Frame::Session { body, .. } => match body {
                SessionBody::Stream { seq, message } => {
                    for message in self.stream.receive(seq, message) {
                        match message {
                            StreamMessage::App(data) => {
                                out.event(ClientEvent::DataReceived { session: self.id, data: data.into() })
                            }
                            StreamMessage::Text { id, text } => texts.push(PeerText::Text { id, text }),
                            StreamMessage::TextAck { id } => texts.push(PeerText::Ack { id }),
                            StreamMessage::Profile { profile } => {
                                self.theirs = Some(profile);
                                self.reconsider_strategy(ctx, out);
                            }
                            StreamMessage::Strategy { attempt, strategy } => {
                                self.on_peer_strategy(ctx, out, attempt, strategy)
                            }
                            file @ (StreamMessage::FileOffer { .. }
                            | StreamMessage::FileAccept { .. }
                            | StreamMessage::FileRefuse { .. }
                            | StreamMessage::FileAbort { .. }
                            | StreamMessage::FileDone { .. }) => {
                                let peer = self.peer.clone();
                                let (files, mut ch) = self.files_and_channel();
                                files.on_message(ctx, out, &mut ch, &peer, file);
                            }
                            announcement => {
                                let (traversal, mut ch) = self.parts();
                                traversal.on_announcement(ctx, out, &mut ch, announcement);
                            }
                        }
                        if self.closed {
                            return texts;
                        }
                    }
                    self.parts().1.acknowledge(ctx, out);
                }
                SessionBody::Ack { next, received_after } => self.parts().1.on_ack(ctx, next, received_after),
                SessionBody::Close { .. } => self.finish(out, CloseReason::Peer),
                SessionBody::Ping { nonce } => {
                    let via = (!relayed).then_some((socket, from));
                    self.path.answer_ping(ctx, out, via, nonce);
                    if relayed {
                        self.path.peer_suspects(ctx, out, self.traversal.attempt_no());
                    }
                }
                SessionBody::Pong { .. } => {
                    if relayed {
                        self.path.on_relay_pong(ctx, &mut self.timers);
                    }
                }
                body @ (SessionBody::FileData { .. } | SessionBody::FileAck { .. }) => {
                    let (files, mut ch) = self.files_and_channel();
                    files.on_body(ctx, out, &mut ch, body);
                }
            },
            _ => {}
        }
        texts
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
        let (traversal, mut ch) = self.parts();
        traversal.on_binding_response(ctx, out, &mut ch, socket, tid, mapped)
    }

    /// The driver's answer to this session's socket wish for `attempt`.
    pub(crate) fn socket_opened(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        attempt: u16,
        sockets: &[(SocketId, SocketAddr)],
    ) {
        let (traversal, mut ch) = self.parts();
        traversal.socket_opened(ctx, out, &mut ch, attempt, sockets);
    }

    /// The file transfers, and the channel they send through.
    fn files_and_channel(&mut self) -> (&mut Files, Channel<'_>) {
        let ch = Channel { path: &mut self.path, stream: &mut self.stream, timers: &mut self.timers };
        (&mut self.files, ch)
    }

    /// Offers a file to the peer.
    pub(crate) fn offer_file(&mut self, ctx: &Ctx<'_>, out: &mut Out, file: FileId, source: FileSource) {
        let (files, mut ch) = self.files_and_channel();
        files.offer(ctx, out, &mut ch, file, source);
    }

    /// Whether `file` is one of this session's transfers.
    pub(crate) fn has_file(&self, file: FileId) -> bool {
        self.files.has(file)
    }

    pub(crate) fn file_progress(&self, file: FileId) -> Option<FileProgress> {
        self.files.progress(file, &self.peer, self.path.kind())
    }

    pub(crate) fn file_data(&mut self, ctx: &Ctx<'_>, out: &mut Out, file: FileId, offset: u64, data: &[u8]) {
        let (files, mut ch) = self.files_and_channel();
        files.data(ctx, out, &mut ch, file, offset, data);
    }

    pub(crate) fn accept_file(&mut self, ctx: &Ctx<'_>, out: &mut Out, file: FileId, have: &[(u64, u64)]) {
        let (files, mut ch) = self.files_and_channel();
        files.accept(ctx, out, &mut ch, file, have);
    }

    pub(crate) fn refuse_file(&mut self, ctx: &Ctx<'_>, out: &mut Out, file: FileId, reason: FileRefusal) {
        let (files, mut ch) = self.files_and_channel();
        files.refuse(ctx, out, &mut ch, file, reason);
    }

    pub(crate) fn file_written(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        file: FileId,
        offset: u64,
        result: Result<(), FileAbort>,
    ) {
        let (files, mut ch) = self.files_and_channel();
        files.written(ctx, out, &mut ch, file, offset, result);
    }

    pub(crate) fn abort_file(&mut self, ctx: &Ctx<'_>, out: &mut Out, file: FileId, reason: FileAbort) {
        let (files, mut ch) = self.files_and_channel();
        files.abort(ctx, out, &mut ch, file, reason);
    }

    /// The traversal, and the channel it sends through.
    fn parts(&mut self) -> (&mut Traversal, Channel<'_>) {
        let ch = Channel { path: &mut self.path, stream: &mut self.stream, timers: &mut self.timers };
        (&mut self.traversal, ch)
    }

    /// The initiator chose the strategy again (see
    /// [`Session::reconsider_strategy`]). A responder takes it when it is
    /// what both profiles it knows give (the initiator's came just before in
    /// the stream): a peer cannot talk us into a strategy, birthday's pool
    /// of sockets say, that the profiles do not call for. A mismatch means
    /// our own profile changed meanwhile; the initiator chooses again when
    /// it hears of it.
    fn on_peer_strategy(&mut self, ctx: &Ctx<'_>, out: &mut Out, attempt: u16, strategy: Strategy) {
        if self.initiator {
            return;
        }
        let (Some(mine), Some(theirs)) = (self.mine, self.theirs) else { return };
        if choose_strategy(&mine, &theirs) != strategy {
            debug!(session = %self.id, strategy = strategy.name(), "a strategy the profiles do not give; ignored");
            return;
        }
        self.switch_strategy(ctx, out, strategy, attempt);
    }

    fn on_probe_ack(&mut self, ctx: &Ctx<'_>, out: &mut Out, socket: SocketId, from: SocketAddr, probe_counter: u64) {
        if self.path.is_on_path(socket, from) {
            self.path.on_path_probe_ack(ctx.now, probe_counter);
            return;
        }
        if self.path.socket() == Some(socket) {
            // Our probe to a new address of the peer, from the path's own
            // socket, was answered: the peer's NAT rebound.
            self.path.rebind(ctx, from);
            out.event(ClientEvent::PathDirect { session: self.id, socket, remote: from });
            return;
        }
        if !self.traversal.adopts(ctx, socket, self.path.is_direct()) {
            return;
        }
        self.traversal.succeeded(&mut self.timers);
        self.path.go_direct(ctx, &mut self.timers, socket, from);
        self.traversal.release_unused(out, Some(socket));
        out.event(ClientEvent::PathDirect { session: self.id, socket, remote: from });
        self.parts().1.resend_all(ctx, out);
        let (files, mut ch) = self.files_and_channel();
        files.path_changed(ctx, out, &mut ch);
    }

    fn fall_back(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        if !self.path.fall_back(ctx, &mut self.timers) {
            return;
        }
        self.traversal.release_unused(out, None);
        out.event(ClientEvent::PathFellBack { session: self.id });
        self.parts().1.resend_all(ctx, out);
        let (files, mut ch) = self.files_and_channel();
        files.path_changed(ctx, out, &mut ch);
        self.traversal.on_fall_back(ctx, &mut self.timers);
    }

    fn finish(&mut self, out: &mut Out, reason: CloseReason) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.path.forget();
        self.traversal.stop(out);
        self.timers = Timers::default();
        self.files.session_closed(out, reason);
        out.event(ClientEvent::SessionClosed { session: self.id, reason });
    }
}

/// Our role and the peer's under `strategy`, ours first.
fn both_roles(ctx: &Ctx<'_>, strategy: Strategy, mine: NatProfile, theirs: NatProfile) -> (PunchRole, PunchRole) {
    (punch_role(ctx, strategy, mine, theirs), punch_role(ctx, strategy, theirs, mine))
}

/// Our punching role for `strategy`: none for a client that does not punch.
fn punch_role(ctx: &Ctx<'_>, strategy: Strategy, mine: NatProfile, theirs: NatProfile) -> PunchRole {
    if ctx.config.punch {
        PunchRole::of(strategy, &mine, &theirs)
    } else {
        PunchRole::RelayOnly
    }
}
