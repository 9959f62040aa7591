//! A session's search for a direct path: punching attempts, one at a time
//! (DESIGN §3, "Peer ↔ peer").
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
//! address at a bounded rate. [`roles`] says which side does what, and
//! [`attempt`] holds each role's state in its own variant.

mod attempt;
mod lan;
mod roles;

pub(crate) use roles::PunchRole;
pub use roles::{birthday_success, BIRTHDAY_PORTS};

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use tracing::debug;

use attempt::{birthday_deadline, fresh_transaction, Attempt, POOL_GRACE};
use lan::LanProbing;

use super::path::Channel;
use super::timers::{SessionTimer, SessionTimers};
use crate::client::context::{Ctx, Out};
use crate::client::events::ClientEvent;
use crate::machine::SocketId;
use crate::rng::Rng;
use crate::wire::frame::{SessionId, StreamMessage};
use crate::wire::stun::TransactionId;

/// The widest prediction window accepted from a peer.
const MAX_PEER_WINDOW: u16 = 1024;
/// The wait before the first attempt after a direct path died: long
/// enough for a rebooted NAT's side to have learnt its new address from
/// the server, short enough to be direct again well within 10 s.
const FALLBACK_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug)]
pub(crate) struct Traversal {
    id: SessionId,
    role: PunchRole,
    /// The peer's public IP as the server observed it (the offer's last
    /// candidate): predicted ports and birthday probes go only there, so a
    /// peer cannot aim our probing at a third party.
    peer_public_ip: Option<IpAddr>,
    /// Transaction ids and birthday ports.
    rng: Rng,
    attempt: Option<Attempt>,
    /// The current attempt's number, or the last one's.
    attempt_no: u16,
    /// When the current attempt started.
    attempt_started_at: Option<Instant>,
    attempts_started: u16,
    /// Attempts failed since the last success.
    failures: u32,
    /// Sockets the driver opened for us.
    owned: BTreeSet<SocketId>,
    /// An attempt that wants sockets from the driver: (attempt, count).
    socket_wish: Option<(u16, u16)>,
    /// The peer's host candidates on our network, probed whatever the role.
    lan: LanProbing,
    /// The peer's candidates from the offer (or the latest re-offer), for an
    /// attempt 0 that waited for the strategy.
    offer_candidates: Vec<SocketAddr>,
}

impl Traversal {
    /// The traversal of session `id`; [`Traversal::start`] starts it.
    pub(crate) fn new(ctx: &Ctx<'_>, id: SessionId, role: PunchRole, peer_candidates: &[SocketAddr], rng: Rng) -> Self {
        let ours = crate::client::login::host_candidates(ctx);
        let lan = if ctx.config.punch {
            LanProbing::new(&ours, ctx.reflexive.map(|r| r.ip()), peer_candidates)
        } else {
            LanProbing::default()
        };
        Traversal {
            id,
            role,
            peer_public_ip: peer_candidates.last().map(SocketAddr::ip),
            rng,
            attempt: None,
            attempt_no: 0,
            attempt_started_at: None,
            attempts_started: 0,
            failures: 0,
            owned: BTreeSet::new(),
            socket_wish: None,
            lan,
            offer_candidates: peer_candidates.to_vec(),
        }
    }

    /// Starts attempt 0 with the candidates the server's offer gave.
    pub(crate) fn start(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        ch: &mut Channel<'_>,
        peer_candidates: Vec<SocketAddr>,
    ) {
        self.restart_lan(ctx, ch.timers);
        let Some(mut attempt) = Attempt::new(0, self.role, self.peer_public_ip) else { return };
        self.attempts_started = 1;
        match self.role {
            PunchRole::Predicted { .. } | PunchRole::PredictBoth { .. } | PunchRole::Pool => {
                // Fresh mappings are the point: sample (or pool) on fresh
                // sockets even for attempt 0.
                attempt.on_peer_candidates(peer_candidates);
                self.attempt = Some(attempt);
                self.arm_attempt_limit(ctx, ch.timers);
                self.socket_wish = Some((0, self.sockets_per_attempt(ctx)));
            }
            _ => {
                // Attempt 0 punches from the primary socket, whose candidates
                // the server has already given the peer.
                attempt.use_known_socket(ctx.primary);
                attempt.on_peer_candidates(peer_candidates);
                self.arm_attempt_limit(ctx, ch.timers);
                self.attempt.insert(attempt).advance(ctx, out, ch, &mut self.rng);
            }
        }
    }

    /// The peer moved: its public address is now the last of `candidates`,
    /// as the server saw it.
    pub(crate) fn peer_moved(&mut self, candidates: &[SocketAddr]) {
        if let Some(reflexive) = candidates.last() {
            debug!(session = %self.id, %reflexive, "the server saw the peer at a new address");
            self.peer_public_ip = Some(reflexive.ip());
            self.offer_candidates = candidates.to_vec();
        }
    }

    pub(crate) fn attempts_started(&self) -> u16 {
        self.attempts_started
    }

    /// The current attempt's number, or the last one's.
    pub(crate) fn attempt_no(&self) -> u16 {
        self.attempt_no
    }

    /// The attempt that wants sockets from the driver, and how many, once.
    pub(crate) fn take_socket_wish(&mut self) -> Option<(u16, u16)> {
        self.socket_wish.take()
    }

    /// The driver's answer to our socket wish for attempt `number`.
    pub(crate) fn socket_opened(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        ch: &mut Channel<'_>,
        number: u16,
        sockets: &[(SocketId, SocketAddr)],
    ) {
        let Some(attempt) = self.attempt.as_mut().filter(|a| a.number() == number) else {
            for (s, _) in sockets {
                out.event(ClientEvent::ReleaseSocket { socket: *s });
            }
            return;
        };
        self.owned.extend(sockets.iter().map(|(s, _)| *s));
        // A driver that cannot open sockets still gets an attempt, from the
        // primary socket.
        let sockets = if sockets.is_empty() { vec![ctx.primary] } else { sockets.to_vec() };
        if attempt.is_pool() {
            attempt.fill_pool(sockets);
            attempt.advance(ctx, out, ch, &mut self.rng);
            return;
        }
        for (extra, _) in &sockets[1..] {
            self.owned.remove(extra);
            out.event(ClientEvent::ReleaseSocket { socket: *extra });
        }
        let tid = fresh_transaction(&mut self.rng);
        attempt.bind(ctx, out, ch, sockets[0], tid, ctx.config.server);
    }

    /// A STUN answer; true when it was ours.
    pub(crate) fn on_binding_response(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        ch: &mut Channel<'_>,
        socket: SocketId,
        tid: TransactionId,
        mapped: SocketAddr,
    ) -> bool {
        let Some(attempt) = self.attempt.as_mut() else { return false };
        attempt.on_binding_response(ctx, out, ch, &mut self.rng, socket, tid, mapped)
    }

    /// An authenticated probe from `from` reached `socket`.
    pub(crate) fn on_probe(&mut self, out: &mut Out, ch: &mut Channel<'_>, socket: SocketId, from: SocketAddr) {
        if let Some(attempt) = self.attempt.as_mut() {
            attempt.learn_peer_reflexive(out, ch, socket, from);
        }
    }

    /// True when a probe ack on `socket` proves a path this traversal may
    /// take: from the attempt's sockets, or, while on the relay, from any
    /// socket the session knows.
    pub(crate) fn adopts(&self, ctx: &Ctx<'_>, socket: SocketId, path_is_direct: bool) -> bool {
        let from_attempt = self.attempt.as_ref().is_some_and(|a| a.owns(socket));
        let ours = from_attempt || socket == ctx.primary.0 || self.owned.contains(&socket);
        ours && (from_attempt || !path_is_direct)
    }

    /// A direct path was found: the attempt is over.
    pub(crate) fn succeeded(&mut self, timers: &mut SessionTimers) {
        self.attempt = None;
        self.failures = 0;
        self.lan.stop();
        for t in [
            SessionTimer::Probe,
            SessionTimer::AttemptDeadline,
            SessionTimer::Retry,
            SessionTimer::Binding,
            SessionTimer::LanProbe,
        ] {
            timers.stop(&t);
        }
    }

    /// The direct path died: try again soon ([`FALLBACK_RETRY`], or the
    /// retry interval if that is shorter), from fresh sockets, and probe the
    /// LAN again meanwhile.
    pub(crate) fn on_fall_back(&mut self, ctx: &Ctx<'_>, timers: &mut SessionTimers) {
        timers.set(SessionTimer::Retry, ctx.now + ctx.config.punch_retry.min(FALLBACK_RETRY));
        self.restart_lan(ctx, timers);
    }

    /// The strategy changed (the initiator chose it again from both
    /// measured profiles): traverse as `role` from now on. Unless the path
    /// is direct, attempt `number` starts at once with it, in place of the
    /// current one.
    pub(crate) fn switch_role(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        ch: &mut Channel<'_>,
        role: PunchRole,
        number: u16,
    ) {
        self.role = role;
        self.failures = 0;
        if ch.path.is_direct() {
            return;
        }
        if self.attempts_started == 0 {
            // The session waited for its strategy: its first attempt starts
            // now as it would have at the offer, from the primary socket
            // whose candidates the peer already has.
            return self.start(ctx, out, ch, self.offer_candidates.clone());
        }
        let number = number.max(self.attempt_no);
        self.start_attempt(ctx, out, ch, number);
    }

    /// [`SessionTimer::LanProbe`]: a round of probes to the peer's host
    /// candidates on our network, from the primary socket.
    pub(crate) fn lan_round(&mut self, ctx: &Ctx<'_>, out: &mut Out, ch: &mut Channel<'_>) {
        if ch.path.is_direct() {
            return self.lan.stop();
        }
        let Some(targets) = self.lan.next_round() else { return };
        for target in targets.iter().copied() {
            ch.path.send_probe(out, ctx.primary.0, target, self.attempt_no);
        }
        if self.lan.is_active() {
            ch.timers.set(SessionTimer::LanProbe, ctx.now + ctx.config.probe_interval);
        }
    }

    fn restart_lan(&mut self, ctx: &Ctx<'_>, timers: &mut SessionTimers) {
        let rounds = (ctx.config.punch_timeout.as_nanos() / ctx.config.probe_interval.as_nanos().max(1)).max(1);
        self.lan.restart(u32::try_from(rounds).unwrap_or(u32::MAX));
        if self.lan.is_active() {
            timers.set(SessionTimer::LanProbe, ctx.now);
        }
    }

    /// The session closed: no attempt, and no socket kept.
    pub(crate) fn stop(&mut self, out: &mut Out) {
        self.attempt = None;
        self.release_unused(out, None);
    }

    /// A traversal message from the peer's stream; others are ignored.
    pub(crate) fn on_announcement(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        ch: &mut Channel<'_>,
        message: StreamMessage,
    ) {
        match message {
            StreamMessage::Candidates { attempt, candidates } => {
                self.join_then(ctx, out, ch, attempt, |a| a.on_peer_candidates(candidates));
            }
            StreamMessage::OpenersOut { attempt } => {
                if let Some(a) = self.attempt.as_mut().filter(|a| a.number() == attempt) {
                    a.on_peer_openers_out();
                    a.advance(ctx, out, ch, &mut self.rng);
                }
            }
            StreamMessage::Prediction { attempt, base, delta, window } => {
                if self.peer_public_ip != Some(base.ip()) {
                    debug!(session = %self.id, %base, "prediction for an address the server did not see the peer at");
                    return;
                }
                if !self.role.needs_peer_prediction() {
                    return;
                }
                // An honest peer announces one port when both predict, and
                // at most our own widest window otherwise.
                let limit = match self.role {
                    PunchRole::PredictBoth { .. } => 1,
                    _ => ctx.config.prediction_window_max.min(MAX_PEER_WINDOW),
                };
                self.join_then(ctx, out, ch, attempt, |a| a.on_peer_window(base, delta, window.min(limit)));
            }
            StreamMessage::PoolOpen { attempt, ip, sockets } => {
                if self.peer_public_ip != Some(ip) {
                    debug!(session = %self.id, %ip, "pool on an address the server did not see the peer at");
                    return;
                }
                if self.role != PunchRole::Prober {
                    return;
                }
                let session = self.id;
                self.join_then(ctx, out, ch, attempt, |a| {
                    debug!(%session, attempt, %ip, sockets, "the peer's pool is open");
                    a.on_peer_pool(ip);
                });
            }
            StreamMessage::App(_)
            | StreamMessage::Text { .. }
            | StreamMessage::TextAck { .. }
            | StreamMessage::Profile { .. }
            | StreamMessage::Strategy { .. }
            | StreamMessage::FileOffer { .. }
            | StreamMessage::FileAccept { .. }
            | StreamMessage::FileRefuse { .. }
            | StreamMessage::FileAbort { .. }
            | StreamMessage::FileDone { .. } => {}
        }
    }

    /// The traversal's timers ([`SessionTimer::Binding`], `Probe`,
    /// `AttemptDeadline`, `Retry`).
    pub(crate) fn on_timer(&mut self, ctx: &Ctx<'_>, out: &mut Out, ch: &mut Channel<'_>, timer: SessionTimer) {
        match timer {
            SessionTimer::Binding => {
                let Some(attempt) = self.attempt.as_mut() else { return };
                if attempt.binding_timeout(ctx, out, ch, &mut self.rng) {
                    self.attempt_failed(ctx, out, ch);
                }
            }
            SessionTimer::Probe => {
                if let Some(attempt) = self.attempt.as_mut() {
                    attempt.probe_round(ctx, out, ch, &mut self.rng);
                }
                ch.timers.set(SessionTimer::Probe, ctx.now + ctx.config.probe_interval);
            }
            SessionTimer::AttemptDeadline => self.attempt_failed(ctx, out, ch),
            SessionTimer::Retry if !ch.path.is_direct() && self.attempt.is_none() => {
                self.start_attempt(ctx, out, ch, self.attempt_no.saturating_add(1));
            }
            _ => {}
        }
    }

    /// Releases owned sockets that neither the attempt nor the path
    /// (`path_socket`) uses.
    pub(crate) fn release_unused(&mut self, out: &mut Out, path_socket: Option<SocketId>) {
        let in_attempt = |s: SocketId| self.attempt.as_ref().is_some_and(|a| a.owns(s));
        let unused: Vec<SocketId> =
            self.owned.iter().copied().filter(|s| !in_attempt(*s) && Some(*s) != path_socket).collect();
        for socket in unused {
            self.owned.remove(&socket);
            out.event(ClientEvent::ReleaseSocket { socket });
        }
    }

    /// Follows the peer into attempt `number` ([`Traversal::join_attempt`]),
    /// lets `learn` record what the peer said about it, and moves it forward.
    fn join_then(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        ch: &mut Channel<'_>,
        number: u16,
        learn: impl FnOnce(&mut Attempt),
    ) {
        if !self.join_attempt(ctx, out, ch, number) {
            return;
        }
        let Some(attempt) = self.attempt.as_mut() else { return };
        learn(attempt);
        attempt.advance(ctx, out, ch, &mut self.rng);
    }

    /// Follows the peer into attempt `number`; false when it is stale or no
    /// attempt is wanted.
    ///
    /// The peer may move us one attempt ahead, and not sooner than a punch
    /// timeout after our current attempt started: an honest peer only moves
    /// on after its own attempt failed and its backoff passed, and a hostile
    /// one must not make us churn socket pools. A message for the current
    /// attempt while the path is direct changes nothing.
    fn join_attempt(&mut self, ctx: &Ctx<'_>, out: &mut Out, ch: &mut Channel<'_>, number: u16) -> bool {
        if self.role == PunchRole::RelayOnly || number < self.attempt_no {
            return false;
        }
        if number == self.attempt_no {
            if self.attempt.is_some() {
                return true;
            }
            if ch.path.is_direct() {
                return false;
            }
        } else if number > self.attempt_no.saturating_add(1)
            || self.attempt_started_at.is_some_and(|at| ctx.now < at + ctx.config.punch_timeout)
        {
            debug!(session = %self.id, attempt = number, "refused to jump to the peer's attempt");
            return false;
        }
        self.start_attempt(ctx, out, ch, number);
        true
    }

    fn sockets_per_attempt(&self, ctx: &Ctx<'_>) -> u16 {
        if self.role == PunchRole::Pool {
            ctx.config.birthday_pool.max(1)
        } else {
            1
        }
    }

    /// Starts attempt `number` from fresh sockets, abandoning the current one
    /// (a role that does not punch starts none, but probes the LAN again).
    fn start_attempt(&mut self, ctx: &Ctx<'_>, out: &mut Out, ch: &mut Channel<'_>, number: u16) {
        self.attempt = None;
        for t in [SessionTimer::Probe, SessionTimer::AttemptDeadline, SessionTimer::Binding] {
            ch.timers.stop(&t);
        }
        self.release_unused(out, ch.path.socket());
        ch.timers.stop(&SessionTimer::Retry);
        self.attempt_no = number;
        if !ch.path.is_direct() {
            self.restart_lan(ctx, ch.timers);
        }
        self.attempt = Attempt::new(number, self.role, self.peer_public_ip);
        if self.attempt.is_none() {
            return;
        }
        self.attempts_started = self.attempts_started.saturating_add(1);
        self.arm_attempt_limit(ctx, ch.timers);
        self.socket_wish = Some((number, self.sockets_per_attempt(ctx)));
        debug!(session = %self.id, attempt = number, "starting a punching attempt from a fresh socket");
    }

    /// Bounds an attempt that waits for the peer (its candidates, window or
    /// pool announcement never come): it fails and is retried like any other.
    /// Probing, once started, sets the real deadline.
    fn arm_attempt_limit(&mut self, ctx: &Ctx<'_>, timers: &mut SessionTimers) {
        self.attempt_started_at = Some(ctx.now);
        let wait = match self.role {
            PunchRole::Pool | PunchRole::Prober => birthday_deadline(ctx) + POOL_GRACE + ctx.config.punch_timeout,
            _ => ctx.config.punch_timeout * 2,
        };
        timers.set(SessionTimer::AttemptDeadline, ctx.now + wait);
    }

    fn attempt_failed(&mut self, ctx: &Ctx<'_>, out: &mut Out, ch: &mut Channel<'_>) {
        let Some(attempt) = self.attempt.take() else { return };
        ch.timers.stop(&SessionTimer::Probe);
        ch.timers.stop(&SessionTimer::Binding);
        self.failures += 1;
        self.release_unused(out, ch.path.socket());
        let retry_in = (self.failures < ctx.config.max_punch_attempts).then(|| {
            let doubled = ctx.config.punch_retry.saturating_mul(1 << (self.failures - 1).min(16));
            doubled.min(ctx.config.punch_retry_max)
        });
        if let Some(wait) = retry_in {
            ch.timers.set(SessionTimer::Retry, ctx.now + wait);
        }
        out.event(ClientEvent::PunchFailed { session: self.id, attempt: attempt.number(), retry_in });
    }
}
