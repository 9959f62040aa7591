//! One punching attempt, as the session's role runs it.
//!
//! What every attempt has (its socket, the candidates both ways, openers
//! and probing) is a field of [`Attempt`]; what only one role has is the
//! state of that role's [`Tactic`] variant, so an attempt cannot hold a
//! pool and a sampler at once, or a prediction window on the side that
//! does not predict.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tracing::debug;

use super::roles::{self, AllocatorSamples, PortSampler, PunchRole};
use crate::client::context::{Ctx, Out};
use crate::client::events::ClientEvent;
use crate::client::sessions::path::Channel;
use crate::client::sessions::timers::SessionTimer;
use crate::machine::SocketId;
use crate::rng::Rng;
use crate::wire::frame::{StreamMessage, MAX_CANDIDATES};
use crate::wire::stun::{self, TransactionId};

/// Most probe targets one attempt keeps (candidates plus peer-reflexive).
const MAX_REMOTES: usize = MAX_CANDIDATES + 4;
/// Probe rounds that include the predicted window (after them, only the
/// candidates and learned peer-reflexive addresses are probed): the
/// predicted side's own probes are what usually opens the path.
const WINDOW_PROBE_ROUNDS: u32 = 3;
/// How long the pool side keeps its pool beyond the prober's schedule: the
/// announcement's trip over the relay, and the last probes' answers.
pub(crate) const POOL_GRACE: Duration = Duration::from_secs(2);
/// Sends of a Binding request for a fresh socket's reflexive address.
const BINDING_SENDS: u32 = 5;
const BINDING_INTERVAL: Duration = Duration::from_millis(300);

#[derive(Debug)]
pub(crate) struct Attempt {
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
    tactic: Tactic,
}

/// What an attempt does for the session's [`PunchRole`], holding the state
/// only that role needs.
#[derive(Debug)]
enum Tactic {
    /// Openers and probes to the peer's candidates.
    Punch,
    /// My NAT is sequential symmetric, the peer's a cone: sample my
    /// allocator, then open toward the peer and announce my window.
    Predicted { delta: i32, sampling: Sampling },
    /// The peer's NAT is sequential symmetric: open and probe its window.
    Predicting { window: PeerWindow },
    /// Both NATs sequential symmetric: both announce one port, then each
    /// opens toward the other's.
    PredictBoth { delta: i32, sampling: Sampling, window: PeerWindow },
    /// My NAT is symmetric and unpredictable: a pool of mappings, opened
    /// toward the address the server saw the peer at (`peer_ip`).
    Pool { pool: Vec<(SocketId, SocketAddr)>, peer_ip: Option<IpAddr> },
    /// The peer opens a pool: probe random ports of its address, once it
    /// announced the pool.
    Prober { sampler: Option<PortSampler> },
}

/// The predicted side's samples of its own allocator (see [`roles`]).
#[derive(Debug, Default)]
struct Sampling {
    /// The first sample and when it arrived.
    first: Option<(SocketAddr, Instant)>,
    /// The back-to-back pair of Binding requests that follows (id,
    /// destination, answer).
    burst: Vec<(TransactionId, SocketAddr, Option<SocketAddr>)>,
    /// How often the pair was sent.
    burst_sends: u32,
    /// Sampling finished: `base`, when, and the samples if any came.
    sampled: Option<(SocketAddr, Instant, Option<AllocatorSamples>)>,
    /// The window was announced to the peer.
    announced: bool,
}

/// The peer's announced window of predicted ports.
#[derive(Debug, Default)]
struct PeerWindow {
    /// In the peer's opening order.
    ports: Option<Vec<SocketAddr>>,
    /// Probe rounds left that include the window.
    rounds: u32,
}

impl Tactic {
    fn sampling_mut(&mut self) -> Option<&mut Sampling> {
        match self {
            Tactic::Predicted { sampling, .. } | Tactic::PredictBoth { sampling, .. } => Some(sampling),
            _ => None,
        }
    }
}

impl Attempt {
    /// Attempt `number` for `role`; none for a session that stays on the
    /// relay.
    pub(crate) fn new(number: u16, role: PunchRole, peer_public_ip: Option<IpAddr>) -> Option<Self> {
        let tactic = match role {
            PunchRole::RelayOnly => return None,
            PunchRole::Punch => Tactic::Punch,
            PunchRole::Predicted { delta } => Tactic::Predicted { delta, sampling: Sampling::default() },
            PunchRole::Predicting => Tactic::Predicting { window: PeerWindow::default() },
            PunchRole::PredictBoth { delta } => {
                Tactic::PredictBoth { delta, sampling: Sampling::default(), window: PeerWindow::default() }
            }
            PunchRole::Pool => Tactic::Pool { pool: Vec::new(), peer_ip: peer_public_ip },
            PunchRole::Prober => Tactic::Prober { sampler: None },
        };
        Some(Attempt {
            number,
            socket: None,
            binding: None,
            candidates_sent: false,
            peer_candidates: None,
            openers_sent: false,
            peer_openers_out: false,
            remotes: Vec::new(),
            probing: false,
            tactic,
        })
    }

    pub(crate) fn number(&self) -> u16 {
        self.number
    }

    /// True when `socket` is the attempt's socket or one of its pool.
    pub(crate) fn owns(&self, socket: SocketId) -> bool {
        let in_pool = match &self.tactic {
            Tactic::Pool { pool, .. } => pool.iter().any(|(s, _)| *s == socket),
            _ => false,
        };
        self.socket.is_some_and(|(s, _)| s == socket) || in_pool
    }

    pub(crate) fn is_pool(&self) -> bool {
        matches!(self.tactic, Tactic::Pool { .. })
    }

    /// Punches from `socket`, whose candidates the peer has already (the
    /// primary socket: the server gave them in its offer).
    pub(crate) fn use_known_socket(&mut self, socket: (SocketId, SocketAddr)) {
        self.socket = Some(socket);
        self.candidates_sent = true;
    }

    /// The peer's candidates (the first set wins).
    pub(crate) fn on_peer_candidates(&mut self, candidates: Vec<SocketAddr>) {
        if self.peer_candidates.is_none() {
            self.peer_candidates = Some(candidates);
        }
    }

    /// The peer announced its openers.
    pub(crate) fn on_peer_openers_out(&mut self) {
        self.peer_openers_out = true;
    }

    /// The peer announced its predicted window (the first one wins).
    pub(crate) fn on_peer_window(&mut self, base: SocketAddr, delta: i32, window: u16) {
        if let Tactic::Predicting { window: w } | Tactic::PredictBoth { window: w, .. } = &mut self.tactic {
            if w.ports.is_none() && delta != 0 {
                w.ports = Some(roles::predicted_ports(base, delta, window));
            }
        }
    }

    /// The peer opened its pool on `ip`: its openers are out, and probing
    /// may start.
    pub(crate) fn on_peer_pool(&mut self, ip: IpAddr) {
        self.peer_openers_out = true;
        if let Tactic::Prober { sampler } = &mut self.tactic {
            sampler.get_or_insert_with(|| PortSampler::new(ip));
        }
    }

    /// The driver's sockets for the pool.
    pub(crate) fn fill_pool(&mut self, sockets: Vec<(SocketId, SocketAddr)>) {
        if let Tactic::Pool { pool, .. } = &mut self.tactic {
            *pool = sockets;
            self.candidates_sent = true;
        }
    }

    /// Punches from the fresh `socket`, asking `to` (with transaction `tid`)
    /// for its reflexive address first (RFC 8489).
    pub(crate) fn bind(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        ch: &mut Channel<'_>,
        socket: (SocketId, SocketAddr),
        tid: TransactionId,
        to: SocketAddr,
    ) {
        self.socket = Some(socket);
        self.binding = Some((tid, 1, to));
        out.send(socket.0, to, None, stun::binding_request(tid));
        ch.timers.set(SessionTimer::Binding, ctx.now + BINDING_INTERVAL);
    }

    /// A STUN Binding answer on `socket`; true when it was ours.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_binding_response(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        ch: &mut Channel<'_>,
        rng: &mut Rng,
        socket: SocketId,
        tid: TransactionId,
        mapped: SocketAddr,
    ) -> bool {
        if self.socket.is_some_and(|(s, _)| s == socket) {
            if let Some(sampling) = self.tactic.sampling_mut() {
                if let Some(entry) = sampling.burst.iter_mut().find(|(t, _, answer)| *t == tid && answer.is_none()) {
                    entry.2 = Some(mapped);
                    if sampling.burst.iter().all(|(_, _, answer)| answer.is_some()) {
                        self.finish_sampling(ctx, out, ch, rng);
                    }
                    return true;
                }
            }
        }
        let (Some((s, local)), Some((t, _, _))) = (self.socket, self.binding) else { return false };
        if s != socket || t != tid {
            return false;
        }
        self.binding = None;
        ch.timers.stop(&SessionTimer::Binding);
        if let Some(sampling) = self.tactic.sampling_mut() {
            sampling.first = Some((mapped, ctx.now));
            // One round trip later, two more fresh mappings, back to back,
            // toward the other server addresses (see `roles`).
            if let Some(alt) = ctx.config.alt_server {
                let server = ctx.config.server;
                let mut targets = vec![alt];
                if alt.ip() != server.ip() && alt.port() != server.port() {
                    targets.push(SocketAddr::new(alt.ip(), server.port()));
                }
                for to in targets {
                    sampling.burst.push((fresh_transaction(rng), to, None));
                }
                self.send_burst(ctx, out, ch);
            } else {
                self.finish_sampling(ctx, out, ch, rng);
            }
            return true;
        }
        let mut candidates = Vec::new();
        if !local.ip().is_unspecified() {
            candidates.push(local);
        }
        if !candidates.contains(&mapped) {
            candidates.push(mapped);
        }
        self.candidates_sent = true;
        ch.send_stream(ctx, out, StreamMessage::Candidates { attempt: self.number, candidates });
        self.advance(ctx, out, ch, rng);
        true
    }

    /// [`SessionTimer::Binding`]: a Binding request went unanswered. True
    /// when the server does not answer this socket at all: the attempt
    /// cannot tell the peer where it is, and fails.
    pub(crate) fn binding_timeout(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        ch: &mut Channel<'_>,
        rng: &mut Rng,
    ) -> bool {
        if let Some(sampling) = self.tactic.sampling_mut() {
            if !sampling.burst.is_empty() && sampling.sampled.is_none() {
                if sampling.burst_sends >= BINDING_SENDS {
                    // The other addresses are silent: predict from what came.
                    self.finish_sampling(ctx, out, ch, rng);
                } else {
                    self.send_burst(ctx, out, ch);
                }
                return false;
            }
        }
        let (Some((socket, _)), Some((tid, sends, to))) = (self.socket, self.binding) else { return false };
        if sends >= BINDING_SENDS {
            return true;
        }
        self.binding = Some((tid, sends + 1, to));
        out.send(socket, to, None, stun::binding_request(tid));
        ch.timers.set(SessionTimer::Binding, ctx.now + BINDING_INTERVAL);
        false
    }

    /// (Re)sends the unanswered requests of the sampling burst, together.
    fn send_burst(&mut self, ctx: &Ctx<'_>, out: &mut Out, ch: &mut Channel<'_>) {
        let Some((socket, _)) = self.socket else { return };
        let Some(sampling) = self.tactic.sampling_mut() else { return };
        sampling.burst_sends += 1;
        for (tid, to, answer) in &sampling.burst {
            if answer.is_none() {
                out.send(socket, *to, None, stun::binding_request(*tid));
            }
        }
        ch.timers.set(SessionTimer::Binding, ctx.now + BINDING_INTERVAL);
    }

    /// The predicted side's samples are in (or all it will get).
    fn finish_sampling(&mut self, ctx: &Ctx<'_>, out: &mut Out, ch: &mut Channel<'_>, rng: &mut Rng) {
        let (Tactic::Predicted { delta, sampling } | Tactic::PredictBoth { delta, sampling, .. }) = &mut self.tactic
        else {
            return;
        };
        let Some((first, at)) = sampling.first else { return };
        ch.timers.stop(&SessionTimer::Binding);
        let answers: Vec<SocketAddr> = sampling.burst.iter().filter_map(|(_, _, answer)| *answer).collect();
        let samples = (!answers.is_empty()).then(|| AllocatorSamples {
            first,
            burst: answers,
            gap: ctx.now.saturating_duration_since(at),
        });
        let base = samples.as_ref().map_or(first, |s| s.base(*delta));
        sampling.sampled = Some((base, ctx.now, samples));
        self.advance(ctx, out, ch, rng);
    }

    /// Moves the attempt forward as far as what is known allows.
    pub(crate) fn advance(&mut self, ctx: &Ctx<'_>, out: &mut Out, ch: &mut Channel<'_>, rng: &mut Rng) {
        match self.tactic {
            Tactic::Pool { .. } => self.advance_pool(ctx, out, ch),
            Tactic::Prober { .. } => self.advance_prober(ctx, out, ch, rng),
            _ => self.advance_targeted(ctx, out, ch, rng),
        }
    }

    /// Punching and prediction: open toward known targets, announce, probe
    /// once the peer announced too.
    fn advance_targeted(&mut self, ctx: &Ctx<'_>, out: &mut Out, ch: &mut Channel<'_>, rng: &mut Rng) {
        if self.socket.is_none() {
            return;
        }
        let number = self.number;
        let both = matches!(self.tactic, Tactic::PredictBoth { .. });
        // The predicted side announces its window: at once when both sides
        // predict (each needs the other's first), else with its openers.
        let peer_candidates = self.peer_candidates.as_ref().map(Vec::len);
        let mut prediction = None;
        if let Tactic::Predicted { delta, sampling } | Tactic::PredictBoth { delta, sampling, .. } = &mut self.tactic {
            if let Some((base, sampled_at, samples)) = &sampling.sampled {
                if !sampling.announced && (both || peer_candidates.is_some()) {
                    sampling.announced = true;
                    let delta = roles::refine_delta(*delta, samples.as_ref());
                    let openers = if both { 0 } else { peer_candidates.unwrap_or(0) };
                    let delay = ctx.now.saturating_duration_since(*sampled_at);
                    let (min, max) = (ctx.config.prediction_window_min, ctx.config.prediction_window_max);
                    // Two predicting sides open one mapping each (see `roles`).
                    let window = if both {
                        1
                    } else {
                        roles::prediction_window(samples.as_ref(), delta, openers, delay, min, max)
                    };
                    let base = *base;
                    debug!(session = %ch.path.id(), attempt = number, %base, delta, window, "announcing predicted ports");
                    prediction = Some(StreamMessage::Prediction { attempt: number, base, delta, window });
                }
            }
        }
        if let Some(message) = prediction {
            // Announce after the openers when facing a cone (below), so the
            // window starts after them; before, when both predict.
            if both {
                ch.send_stream(ctx, out, message);
            } else {
                self.open_and_announce(ctx, out, ch, Some(message));
                return self.maybe_probe(ctx, out, ch, rng);
            }
        }
        let ready = match &self.tactic {
            Tactic::Punch => self.candidates_sent && self.peer_candidates.is_some(),
            Tactic::Predicted { .. } => false, // opens in the announcement above
            Tactic::Predicting { window } => self.candidates_sent && window.ports.is_some(),
            Tactic::PredictBoth { sampling, window, .. } => sampling.announced && window.ports.is_some(),
            Tactic::Pool { .. } | Tactic::Prober { .. } => false,
        };
        if ready && !self.openers_sent {
            self.open_and_announce(ctx, out, ch, None);
        }
        self.maybe_probe(ctx, out, ch, rng);
    }

    /// Sends the attempt's openers (low TTL, DESIGN §3) and `OpenersOut`,
    /// after `first` when given.
    fn open_and_announce(&mut self, ctx: &Ctx<'_>, out: &mut Out, ch: &mut Channel<'_>, first: Option<StreamMessage>) {
        let Some((socket, _)) = self.socket else { return };
        self.openers_sent = true;
        let number = self.number;
        // The peer's predicted ports first: with two predicting sides, our
        // single opener must make exactly the mapping we announced.
        let mut targets: Vec<SocketAddr> = match &self.tactic {
            Tactic::Predicting { window } | Tactic::PredictBoth { window, .. } => {
                window.ports.clone().unwrap_or_default()
            }
            _ => Vec::new(),
        };
        if !matches!(self.tactic, Tactic::PredictBoth { .. }) {
            targets.extend(self.peer_candidates.iter().flatten().copied());
        }
        let mut seen = BTreeSet::new();
        targets.retain(|t| seen.insert(*t));
        // Probe targets: the candidates (useless toward a symmetric NAT,
        // whose reflexive address belongs to another destination), then
        // whatever peer-reflexive addresses authenticated probes reveal.
        match &mut self.tactic {
            Tactic::Punch | Tactic::Predicted { .. } => {
                let candidates = self.peer_candidates.iter().flatten().take(MAX_REMOTES);
                self.remotes = candidates.map(|c| (socket, *c)).collect();
            }
            Tactic::Predicting { window } => window.rounds = WINDOW_PROBE_ROUNDS,
            Tactic::PredictBoth { window, .. } => window.rounds = u32::MAX,
            Tactic::Pool { .. } | Tactic::Prober { .. } => {}
        }
        if !ctx.config.skip_openers {
            for target in &targets {
                ch.path.send_opener(ctx, out, socket, *target);
            }
        }
        if let Some(message) = first {
            ch.send_stream(ctx, out, message);
        }
        ch.send_stream(ctx, out, StreamMessage::OpenersOut { attempt: number });
    }

    /// Starts probing once our openers and the peer's are out.
    fn maybe_probe(&mut self, ctx: &Ctx<'_>, out: &mut Out, ch: &mut Channel<'_>, rng: &mut Rng) {
        let may_probe = self.openers_sent && (self.peer_openers_out || ctx.config.skip_openers);
        if may_probe && !self.probing {
            self.start_probing(ctx, out, ch, rng, ctx.config.punch_timeout);
        }
    }

    /// Birthday, symmetric side: open one mapping per pool socket toward the
    /// peer with low-TTL openers, announce the pool, then answer probes.
    fn advance_pool(&mut self, ctx: &Ctx<'_>, out: &mut Out, ch: &mut Channel<'_>) {
        // Announcing the pool needs our public address; without a login the
        // attempt waits (and its limit fails it if that lasts).
        let Some(ip) = ctx.reflexive.map(|r| r.ip()) else { return };
        let Tactic::Pool { pool, peer_ip } = &self.tactic else { return };
        let Some(candidates) = self.peer_candidates.clone() else { return };
        if pool.is_empty() || self.openers_sent {
            return;
        }
        // Only toward the address the server saw the peer at: the cone's
        // mapping the probes come from. Host candidates cannot be reached
        // across two NATs, and a peer must not point 256 openers elsewhere.
        let candidates: Vec<SocketAddr> = candidates.into_iter().filter(|c| Some(c.ip()) == *peer_ip).collect();
        self.openers_sent = true;
        self.probing = true;
        let number = self.number;
        let sockets = pool.len().min(usize::from(u16::MAX)) as u16;
        if !ctx.config.skip_openers {
            for (socket, _) in pool {
                for candidate in &candidates {
                    ch.path.send_opener(ctx, out, *socket, *candidate);
                }
            }
        }
        out.event(ClientEvent::PunchStarted { session: ch.path.id(), attempt: number });
        ch.send_stream(ctx, out, StreamMessage::PoolOpen { attempt: number, ip, sockets });
        ch.timers.set(SessionTimer::Probe, ctx.now + ctx.config.probe_interval);
        ch.timers.set(SessionTimer::AttemptDeadline, ctx.now + birthday_deadline(ctx) + POOL_GRACE);
    }

    /// Birthday, cone side: probe random ports of the pool's address.
    fn advance_prober(&mut self, ctx: &Ctx<'_>, out: &mut Out, ch: &mut Channel<'_>, rng: &mut Rng) {
        let Tactic::Prober { sampler } = &self.tactic else { return };
        if self.socket.is_none() || !self.candidates_sent || sampler.is_none() || self.probing {
            return;
        }
        self.openers_sent = true;
        self.start_probing(ctx, out, ch, rng, birthday_deadline(ctx));
    }

    /// Probing starts now, and the attempt fails `deadline` from now unless
    /// a probe is answered.
    fn start_probing(&mut self, ctx: &Ctx<'_>, out: &mut Out, ch: &mut Channel<'_>, rng: &mut Rng, deadline: Duration) {
        self.probing = true;
        out.event(ClientEvent::PunchStarted { session: ch.path.id(), attempt: self.number });
        self.probe_round(ctx, out, ch, rng);
        ch.timers.set(SessionTimer::Probe, ctx.now + ctx.config.probe_interval);
        ch.timers.set(SessionTimer::AttemptDeadline, ctx.now + deadline);
    }

    /// [`SessionTimer::Probe`]: a round of probes to every target.
    pub(crate) fn probe_round(&mut self, ctx: &Ctx<'_>, out: &mut Out, ch: &mut Channel<'_>, rng: &mut Rng) {
        if !self.probing {
            return;
        }
        let number = self.number;
        let mut targets = self.remotes.clone();
        if let Some((socket, _)) = self.socket {
            match &mut self.tactic {
                Tactic::Predicting { window } | Tactic::PredictBoth { window, .. } if window.rounds > 0 => {
                    window.rounds -= 1;
                    targets.extend(window.ports.iter().flatten().map(|t| (socket, *t)));
                }
                Tactic::Prober { sampler: Some(sampler) } => {
                    // This round's share of the rate, within the budget.
                    let per_round = (f64::from(ctx.config.birthday_probe_rate)
                        * ctx.config.probe_interval.as_secs_f64())
                    .ceil()
                    .max(1.0) as u32;
                    let left = ctx.config.birthday_probe_budget.saturating_sub(sampler.drawn());
                    for _ in 0..per_round.min(left) {
                        match sampler.next(rng) {
                            Some(target) => targets.push((socket, target)),
                            None => break,
                        }
                    }
                }
                _ => {}
            }
        }
        for (socket, remote) in targets {
            ch.path.send_probe(out, socket, remote, number);
        }
    }

    /// The source of an authenticated probe is a candidate too (RFC 8445
    /// §7.3.1.3's peer-reflexive candidate): probe it back, from the socket
    /// it reached.
    pub(crate) fn learn_peer_reflexive(
        &mut self,
        out: &mut Out,
        ch: &mut Channel<'_>,
        socket: SocketId,
        from: SocketAddr,
    ) {
        if !self.owns(socket) || self.remotes.contains(&(socket, from)) || self.remotes.len() >= MAX_REMOTES {
            return;
        }
        self.remotes.push((socket, from));
        if self.probing {
            ch.path.send_probe(out, socket, from, self.number);
        }
    }
}

/// A random STUN transaction id.
pub(crate) fn fresh_transaction(rng: &mut Rng) -> TransactionId {
    let mut id = [0; 12];
    rng.fill(&mut id);
    TransactionId(id)
}

/// How long the prober spends its budget at its rate, plus a second for the
/// last answers; never less than the ordinary punch timeout.
pub(crate) fn birthday_deadline(ctx: &Ctx<'_>) -> Duration {
    let rate = f64::from(ctx.config.birthday_probe_rate.max(1));
    let spend = Duration::from_secs_f64(f64::from(ctx.config.birthday_probe_budget) / rate);
    (spend + Duration::from_secs(1)).max(ctx.config.punch_timeout)
}
