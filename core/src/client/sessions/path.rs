//! A session's path to its peer, and whether it lives (DESIGN §3, "Peer ↔
//! peer").
//!
//! A session starts on the server's relay. When traversal proves a direct
//! path the session migrates to it, probes it every
//! [`ClientConfig::direct_keepalive`] to hold both NATs' mappings open, and
//! falls back to the relay when the path is dead by the rule of
//! [`super::liveness`] (silent for [`ClientConfig::fallback_timeout`] or
//! four round trips, ten probes unanswered, and the relay answering). A
//! peer whose NAT rebinds (a new address on the same path) is followed once
//! a probe to the new address is answered. On the relay a keepalive every
//! [`ClientConfig::session_keepalive`] holds the relay's session; on a
//! direct path that keepalive is parked, not run. Every frame goes out on
//! the current path, sealed ([`super::seal`]); so do the stream's messages
//! and their retransmissions, which is why nothing in flight is lost in a
//! migration.
//!
//! [`ClientConfig::direct_keepalive`]: crate::client::ClientConfig::direct_keepalive
//! [`ClientConfig::fallback_timeout`]: crate::client::ClientConfig::fallback_timeout
//! [`ClientConfig::session_keepalive`]: crate::client::ClientConfig::session_keepalive

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::debug;

use super::liveness::Liveness;
use super::seal::Seal;
use super::stream::Stream;
use super::timers::{SessionTimer, SessionTimers};
use crate::client::context::{Ctx, Out};
use crate::client::events::PathKind;
use crate::machine::SocketId;
use crate::wire::frame::{CloseReason, Frame, SessionBody, SessionId, StreamMessage};

#[derive(Debug)]
pub(crate) struct Path {
    id: SessionId,
    seal: Seal,
    kind: PathKind,
    /// Times the session fell back from direct to the relay.
    fallbacks: u32,
    /// Probes sent, by traversal and by the direct keepalive.
    probes_sent: u64,
    /// While the path is direct, when the relay keepalive would next have
    /// been due: it is taken off the timers (it has nothing to do then) and
    /// put back in the same rhythm on a fall back to the relay.
    relay_keepalive_parked: Option<Instant>,
    /// While the path is direct: whether it lives.
    liveness: Option<Liveness>,
    /// Nonces of relay pings.
    pings_sent: u64,
}

impl Path {
    /// A path on the relay.
    pub(crate) fn new(id: SessionId, seal: Seal) -> Self {
        Path {
            id,
            seal,
            kind: PathKind::Relay,
            fallbacks: 0,
            probes_sent: 0,
            relay_keepalive_parked: None,
            liveness: None,
            pings_sent: 0,
        }
    }

    pub(crate) fn id(&self) -> SessionId {
        self.id
    }

    pub(crate) fn kind(&self) -> PathKind {
        self.kind
    }

    pub(crate) fn is_direct(&self) -> bool {
        matches!(self.kind, PathKind::Direct { .. })
    }

    /// Our socket on the direct path.
    pub(crate) fn socket(&self) -> Option<SocketId> {
        match self.kind {
            PathKind::Direct { socket, .. } => Some(socket),
            PathKind::Relay => None,
        }
    }

    pub(crate) fn fallbacks(&self) -> u32 {
        self.fallbacks
    }

    pub(crate) fn probes_sent(&self) -> u64 {
        self.probes_sent
    }

    /// The session's end-to-end encryption.
    pub(crate) fn seal(&mut self) -> &mut Seal {
        &mut self.seal
    }

    /// Probes `remote` from `socket` for attempt `attempt`; returns the
    /// probe's counter, which its ack echoes.
    pub(crate) fn send_probe(&mut self, out: &mut Out, socket: SocketId, remote: SocketAddr, attempt: u16) -> u64 {
        self.probes_sent += 1;
        let probe = Frame::Probe { session: self.id, attempt, counter: 0 };
        self.seal.send(out, socket, remote, probe)
    }

    /// Sends an opener from `socket` to `remote` with the opener TTL.
    pub(crate) fn send_opener(&mut self, ctx: &Ctx<'_>, out: &mut Out, socket: SocketId, remote: SocketAddr) {
        let opener = Frame::Opener { session: self.id, counter: 0 };
        self.seal.send_with_ttl(out, socket, remote, Some(ctx.config.opener_ttl), opener);
    }

    /// True when `socket` and `from` are the direct path's.
    pub(crate) fn is_on_path(&self, socket: SocketId, from: SocketAddr) -> bool {
        self.kind == PathKind::Direct { socket, remote: from }
    }

    /// An authenticated frame arrived directly on `socket` from `from`: the
    /// direct path lives if it is the path's.
    pub(crate) fn heard_direct(&mut self, now: Instant, socket: SocketId, from: SocketAddr) {
        if self.is_on_path(socket, from) {
            if let Some(l) = self.liveness.as_mut() {
                l.heard(now);
            }
        }
    }

    /// A probe ack on the direct path, for the probe stamped `probe_counter`.
    pub(crate) fn on_path_probe_ack(&mut self, now: Instant, probe_counter: u64) {
        if let Some(l) = self.liveness.as_mut() {
            l.on_probe_ack(now, probe_counter);
        }
    }

    /// The smoothed round trip of the direct path's probes, once measured.
    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.liveness.as_ref().and_then(Liveness::srtt)
    }

    /// The peer's NAT rebound: the direct path continues to `remote`, which
    /// a probe ack from it just proved.
    pub(crate) fn rebind(&mut self, ctx: &Ctx<'_>, remote: SocketAddr) {
        if let PathKind::Direct { socket, .. } = self.kind {
            debug!(session = %self.id, %remote, "the peer's address on the direct path changed; following it");
            self.kind = PathKind::Direct { socket, remote };
            if let Some(l) = self.liveness.as_mut() {
                l.heard(ctx.now);
            }
        }
    }

    /// Answers a relayed [`SessionBody::Ping`] over the relay, or a direct
    /// one where it came from.
    pub(crate) fn answer_ping(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        via: Option<(SocketId, SocketAddr)>,
        nonce: u64,
    ) {
        let frame = Frame::Session { session: self.id, counter: 0, body: SessionBody::Pong { nonce } };
        match via {
            Some((socket, to)) => {
                self.seal.send(out, socket, to, frame);
            }
            None => self.relay(ctx, out, frame),
        }
    }

    /// The relay answered a ping: if the direct path stays silent a while
    /// more ([`Liveness::confirm_after`]), the next liveness check falls back.
    pub(crate) fn on_relay_pong(&mut self, ctx: &Ctx<'_>, timers: &mut SessionTimers) {
        let Some(l) = self.liveness.as_mut() else { return };
        l.relay_answered(ctx.now);
        let check = ctx.now + l.confirm_after();
        if timers.get(&SessionTimer::DirectKeepalive).is_none_or(|at| at > check) {
            timers.set(SessionTimer::DirectKeepalive, check);
        }
    }

    /// Answers a probe where it came from, telling the prober the address
    /// it was seen at.
    pub(crate) fn answer_probe(
        &mut self,
        out: &mut Out,
        socket: SocketId,
        from: SocketAddr,
        attempt: u16,
        counter: u64,
    ) {
        let ack = Frame::ProbeAck { session: self.id, attempt, probe_counter: counter, counter: 0, observed: from };
        self.seal.send(out, socket, from, ack);
    }

    /// Sends a session frame on the current path.
    pub(crate) fn transmit(&mut self, ctx: &Ctx<'_>, out: &mut Out, body: SessionBody) {
        self.transmit_via(ctx, out, self.kind, body);
    }

    fn transmit_via(&mut self, ctx: &Ctx<'_>, out: &mut Out, path: PathKind, body: SessionBody) {
        let frame = Frame::Session { session: self.id, counter: 0, body };
        match path {
            PathKind::Direct { socket, remote } => {
                self.seal.send(out, socket, remote, frame);
            }
            PathKind::Relay => self.relay(ctx, out, frame),
        }
    }

    fn relay(&mut self, ctx: &Ctx<'_>, out: &mut Out, frame: Frame) {
        let Some((payload, plain)) = self.seal.seal(ctx.now, frame) else { return };
        let Some(token) = ctx.token else {
            // Not logged in right now: the stream retransmits later.
            return;
        };
        // Traces show the relay frame with the peer frame inside it.
        let shown = Frame::Relay { token, session: self.id, payload: plain }.encode();
        out.send_to_server_showing(ctx, &Frame::Relay { token, session: self.id, payload }, shown);
    }

    /// Asks the relay to carry `payload` (a sealed frame, or the session's
    /// handshake) to the peer.
    pub(crate) fn relay_datagram(&mut self, ctx: &Ctx<'_>, out: &mut Out, payload: Vec<u8>) {
        let Some(token) = ctx.token else {
            // Not logged in right now: the stream (or the handshake)
            // retransmits later.
            return;
        };
        out.send_to_server(ctx, &Frame::Relay { token, session: self.id, payload });
    }

    /// Tells the peer we close: on the direct path, if any, and on the
    /// relay, which also ends the session at the server.
    pub(crate) fn send_close(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        let body = SessionBody::Close { reason: CloseReason::Peer };
        if self.is_direct() {
            self.transmit(ctx, out, body.clone());
        }
        self.transmit_via(ctx, out, PathKind::Relay, body);
    }

    /// Migrates to the direct path that a probe ack just proved.
    pub(crate) fn go_direct(
        &mut self,
        ctx: &Ctx<'_>,
        timers: &mut SessionTimers,
        socket: SocketId,
        remote: SocketAddr,
    ) {
        self.kind = PathKind::Direct { socket, remote };
        self.liveness = Some(Liveness::new(ctx.now));
        self.park_relay_keepalive(timers);
        timers.set(SessionTimer::DirectKeepalive, ctx.now + ctx.config.direct_keepalive);
    }

    /// Back to the relay (the direct path is dead); false when the path was
    /// the relay already.
    pub(crate) fn fall_back(&mut self, ctx: &Ctx<'_>, timers: &mut SessionTimers) -> bool {
        if self.kind == PathKind::Relay {
            return false;
        }
        debug!(session = %self.id, "the direct path is dead and the relay answers; back to the relay");
        self.kind = PathKind::Relay;
        self.liveness = None;
        self.fallbacks += 1;
        timers.stop(&SessionTimer::DirectKeepalive);
        self.unpark_relay_keepalive(ctx, timers);
        true
    }

    /// The session closed: whatever the path was, nothing uses it now.
    pub(crate) fn forget(&mut self) {
        self.kind = PathKind::Relay;
        self.liveness = None;
    }

    /// [`SessionTimer::DirectKeepalive`]: checks the direct path's liveness
    /// ([`super::liveness`]) and does what it asks: probe (numbered as the
    /// attempt that found the path), ping the relay, and, through `out`,
    /// have the client check its server mapping. True when the path is dead
    /// and the relay answers: the session falls back.
    pub(crate) fn direct_keepalive(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        timers: &mut SessionTimers,
        attempt: u16,
    ) -> bool {
        let (PathKind::Direct { socket, remote }, Some(liveness)) = (self.kind, self.liveness.as_mut()) else {
            return false;
        };
        let actions = liveness.check(ctx.now, ctx.config);
        if actions.fall_back {
            return true;
        }
        if actions.check_server {
            debug!(session = %self.id, "the direct path is quiet; probing it faster and asking the relay");
            out.check_server = true;
        }
        if actions.probe {
            let counter = self.send_probe(out, socket, remote, attempt);
            if let Some(l) = self.liveness.as_mut() {
                l.probe_sent(ctx.now, counter);
            }
        }
        if actions.ping_relay {
            self.pings_sent += 1;
            let ping =
                Frame::Session { session: self.id, counter: 0, body: SessionBody::Ping { nonce: self.pings_sent } };
            self.relay(ctx, out, ping);
        }
        if let Some(next) = actions.next {
            timers.set(SessionTimer::DirectKeepalive, next);
        }
        false
    }

    /// The peer pinged us over the relay while we are direct: it suspects
    /// the direct path, so check it now rather than at the next keepalive.
    pub(crate) fn peer_suspects(&mut self, ctx: &Ctx<'_>, out: &mut Out, attempt: u16) {
        if let PathKind::Direct { socket, remote } = self.kind {
            let counter = self.send_probe(out, socket, remote, attempt);
            if let Some(l) = self.liveness.as_mut() {
                l.probe_sent(ctx.now, counter);
            }
        }
    }

    /// [`SessionTimer::RelayKeepalive`]: on the relay, an acknowledgement
    /// of the stream keeps the relay's session alive.
    pub(crate) fn relay_keepalive(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        stream: &Stream,
        timers: &mut SessionTimers,
    ) {
        if self.kind == PathKind::Relay {
            let (next, received_after) = stream.ack();
            self.transmit(ctx, out, SessionBody::Ack { next, received_after });
        }
        timers.set(SessionTimer::RelayKeepalive, ctx.now + ctx.config.session_keepalive);
    }

    /// On a direct path the relay keepalive has nothing to send, and waking
    /// for it every [`ClientConfig::session_keepalive`] would only cost the
    /// driver a wake-up (and a phone its battery): it is parked instead.
    ///
    /// [`ClientConfig::session_keepalive`]: crate::client::ClientConfig::session_keepalive
    fn park_relay_keepalive(&mut self, timers: &mut SessionTimers) {
        if let Some(due) = timers.get(&SessionTimer::RelayKeepalive) {
            timers.stop(&SessionTimer::RelayKeepalive);
            self.relay_keepalive_parked = Some(due);
        }
    }

    /// Back on the relay: the keepalive resumes in the rhythm it kept
    /// before, at its first beat from now on (now included).
    fn unpark_relay_keepalive(&mut self, ctx: &Ctx<'_>, timers: &mut SessionTimers) {
        let Some(mut due) = self.relay_keepalive_parked.take() else { return };
        if due < ctx.now {
            let interval = ctx.config.session_keepalive.as_nanos().max(1);
            let skipped = (ctx.now - due).as_nanos().div_ceil(interval) * interval;
            due = u64::try_from(skipped).ok().and_then(|n| due.checked_add(Duration::from_nanos(n))).unwrap_or(ctx.now);
        }
        timers.set(SessionTimer::RelayKeepalive, due.max(ctx.now));
    }
}

/// The path with the stream that rides it and the session's timers: what
/// the session's traversal sends through.
#[derive(Debug)]
pub(crate) struct Channel<'a> {
    pub(crate) path: &'a mut Path,
    pub(crate) stream: &'a mut Stream,
    pub(crate) timers: &'a mut SessionTimers,
}

impl Channel<'_> {
    /// Sends `message` on the reliable stream, on the current path.
    pub(crate) fn send_stream(&mut self, ctx: &Ctx<'_>, out: &mut Out, message: StreamMessage) {
        let seq = self.stream.push(ctx.now, message.clone());
        self.path.transmit(ctx, out, SessionBody::Stream { seq, message });
        self.arm_retransmit();
    }

    /// [`SessionTimer::Retransmit`]: resends what is due. A loss on the
    /// relay may mean the server no longer knows where we are (our NAT
    /// rebooted or we moved; it relays only from the address it saw last),
    /// so the client checks its server mapping too.
    pub(crate) fn resend_due(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        let due = self.stream.due(ctx.now);
        if !due.is_empty() && !self.path.is_direct() {
            out.check_server = true;
        }
        for seq in due {
            self.resend(ctx, out, seq);
        }
        self.arm_retransmit();
    }

    /// Resends everything unacknowledged at once: the path just changed.
    pub(crate) fn resend_all(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        for seq in self.stream.all_unacked() {
            self.resend(ctx, out, seq);
        }
        self.stream.mark_all_sent(ctx.now);
        self.arm_retransmit();
    }

    /// Acknowledges what the stream received so far.
    pub(crate) fn acknowledge(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        let (next, received_after) = self.stream.ack();
        self.path.transmit(ctx, out, SessionBody::Ack { next, received_after });
    }

    /// The peer acknowledged our stream up to `next` (and the bitmap).
    pub(crate) fn on_ack(&mut self, ctx: &Ctx<'_>, next: u64, received_after: u64) {
        self.stream.on_ack(ctx.now, next, received_after);
        self.arm_retransmit();
    }

    fn resend(&mut self, ctx: &Ctx<'_>, out: &mut Out, seq: u64) {
        if let Some(message) = self.stream.message(seq).cloned() {
            self.path.transmit(ctx, out, SessionBody::Stream { seq, message });
        }
    }

    fn arm_retransmit(&mut self) {
        match self.stream.retransmit_at() {
            Some(at) => self.timers.set(SessionTimer::Retransmit, at),
            None => self.timers.stop(&SessionTimer::Retransmit),
        }
    }
}
