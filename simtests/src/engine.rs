//! The discrete-event engine: core machines as hosts, NAT devices, links,
//! and a queue of events totally ordered by (time, sequence number).
//!
//! Virtual time jumps from one event to the next; nothing reads a clock.
//! Every random choice comes from one seed through a tree of child
//! generators (links, NATs, each machine's own seed), so a scenario and a
//! seed give the same trace, byte for byte.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use punchline_core::client::{Client, ClientConfig, ClientEvent, PathKind};
use punchline_core::hint::prefetch;
use punchline_core::nat::Strategy;
use punchline_core::rng::Rng;
use punchline_core::server::{Server, ServerConfig};
use punchline_core::wire::frame::{MessageId, SessionId};
use punchline_core::{Machine, SocketId, Transmit};

use crate::addr::Addr;
use crate::describe;
use crate::link::Link;
use crate::nat::{Nat, NatDecision, Packet};
use crate::report::{Connection, Messages, Outcome, Report};
use crate::scenario::{name_index, Action, Scenario, ScenarioError};

mod parcel;
mod queue;
mod segments;
mod sockets;
mod trace;

use parcel::Parcel;
use queue::EventQueue;
use segments::{Node, SegmentIndex};
use sockets::Sockets;
use trace::Trace;

/// The TTL of a datagram sent without an explicit one.
pub const DEFAULT_TTL: u8 = 64;
/// How many times [`Simulation::run_with_progress`] reports.
const PROGRESS_STEPS: u32 = 1000;
/// First port the simulator gives a peer's extra sockets.
const FIRST_EXTRA_PORT: u16 = 40000;
/// Pending events the queue makes room for per peer up front: a
/// thousand-peer world connecting in pairs peaks at about 6.5. Busier worlds
/// grow the queue as a `Vec` grows.
const EVENTS_PER_PEER: usize = 8;

/// One run of a scenario.
pub struct Simulation {
    scenario: Scenario,
    seed: u64,
    epoch: Instant,
    now: Duration,
    queue: EventQueue<Pending, Toward>,
    server: Server,
    server_timer: Option<Duration>,
    peers: Vec<PeerHost>,
    nats: Vec<Nat>,
    /// For each NAT, the NAT its public side sits behind (None: the internet).
    nat_outer: Vec<Option<usize>>,
    /// Reused buffer for the decisions of one NAT call.
    nat_log: Vec<NatDecision>,
    trace: Trace,
    connections: Vec<ConnectionState>,
    /// For each peer, the indices in `connections` of those it started, in
    /// order: finding a connection costs its peer's few, not every host's.
    connections_of: Vec<Vec<usize>>,
    /// Peer index by name (the first peer of a name, as the parser rejects
    /// duplicates).
    peer_names: BTreeMap<String, usize>,
    /// NAT name -> index, the first of a name (the parser refuses others).
    nat_names: BTreeMap<String, usize>,
    /// Who sits directly on each network segment: segment 0 is the public
    /// internet, `n + 1` the inside of NAT `n`.
    on_segment: SegmentIndex,
    /// Text messages by (sender index, id), for the report.
    texts: BTreeMap<(usize, MessageId), TextState>,
    /// Packet events processed, for benchmarks: each step of a datagram the
    /// engine schedules as an event, plus each datagram the server sends
    /// (defined in `simtests/README.md`, Performance).
    pub packet_events: u64,
}

/// One text message's fate.
struct TextState {
    to: String,
    acknowledged: bool,
    /// Times its recipient showed it.
    shown: u64,
}

/// One datagram in the Mermaid diagram.
#[derive(Clone, Debug)]
pub struct Arrow {
    /// When it was sent.
    pub at: Duration,
    /// Sender (peer name or `server`).
    pub from: String,
    /// Addressee as the sender saw it.
    pub to: String,
    /// What it was.
    pub label: String,
}

struct PeerHost {
    name: String,
    addr: IpAddr,
    behind: Option<usize>,
    up: Link,
    down: Link,
    client: Client,
    timer: Option<Duration>,
    sockets: Sockets,
    next_port: u16,
    next_socket: u32,
    sent: u64,
    probes: u64,
}

#[derive(Debug)]
enum Pending {
    /// A packet reaches a NAT from its inside.
    FromInside(u32, Parcel),
    /// A packet reaches a NAT's public side.
    FromOutside(u32, Parcel),
    /// A packet is on the public internet.
    Internet(Parcel),
    /// A packet reaches a peer host.
    ToPeer(u32, Parcel),
    /// A machine's deadline (0 = server, i + 1 = peer i).
    Timer(usize),
    /// The scenario's `i`-th event.
    Scheduled(usize),
}

/// Whose state a pending event reads first when it runs: the hint the queue
/// keeps beside it, so the engine can prefetch that state one event ahead
/// (see [`Simulation::warm_next`]).
#[derive(Clone, Copy, Debug)]
enum Toward {
    Peer(u32),
    Nat(u32),
    /// The server (hot: it takes part in much of the traffic), or a
    /// scenario event.
    Elsewhere,
}

impl Pending {
    fn toward(&self) -> Toward {
        match *self {
            Pending::ToPeer(i, _) => Toward::Peer(i),
            Pending::Timer(m) if m > 0 => Toward::Peer(index(m - 1)),
            Pending::FromInside(n, _) | Pending::FromOutside(n, _) => Toward::Nat(n),
            Pending::Internet(_) | Pending::Timer(_) | Pending::Scheduled(_) => Toward::Elsewhere,
        }
    }
}

/// A host's or NAT's index as an event holds it (a world has far fewer than
/// 2^32 of either: the segment index numbers them in `u32` too).
fn index(i: usize) -> u32 {
    u32::try_from(i).expect("fewer than 2^32 hosts and NATs")
}

/// The index in `Simulation::on_segment` of a segment (None: the internet).
fn segment_index(segment: Option<usize>) -> usize {
    segment.map_or(0, |n| n + 1)
}

struct ConnectionState {
    from: usize,
    to: String,
    started: Duration,
    session: Option<SessionId>,
    connect_at: Option<Duration>,
    direct_at: Option<Duration>,
    fallbacks: u32,
    failed: bool,
    strategy: Option<Strategy>,
    path: Option<PathKind>,
    closed: bool,
}

impl Simulation {
    /// Builds the world of `scenario`; `seed` overrides the file's.
    pub fn new(scenario: Scenario, seed: Option<u64>) -> Result<Simulation, ScenarioError> {
        let seed = seed.or(scenario.seed).unwrap_or(0);
        let root = Rng::new(seed);
        let epoch = Instant::now();
        let mut server_config = ServerConfig::new(scenario.server.addr, scenario.server.alt_addr);
        server_config.seed = root.fork(1).next_u64();
        let server = Server::new(server_config, epoch);
        let nats =
            (0..scenario.nats.len()).map(|i| Nat::new(scenario.nat_spec(i), root.fork(1000 + i as u64))).collect();
        let nat_names = name_index(scenario.nats.iter().map(|n| n.name.as_str()));
        let mut peers = Vec::new();
        for (i, spec) in scenario.peers.iter().enumerate() {
            let mut config = ClientConfig::new(spec.name.clone(), scenario.server.addr);
            config.alt_server = scenario.server.alt_addr;
            config.seed = root.fork(2000 + i as u64).next_u64();
            apply_config(&scenario, i, &mut config)?;
            let behind = spec.behind.as_ref().map(|n| *nat_names.get(n).expect("validated by the parser"));
            let local = SocketAddr::new(spec.addr, 4000);
            let client = Client::new(config, (SocketId(0), local), epoch);
            peers.push(PeerHost {
                name: spec.name.clone(),
                addr: spec.addr,
                behind,
                up: Link::new(spec.link.clone(), root.fork(3000 + 2 * i as u64)),
                down: Link::new(spec.link.clone(), root.fork(3001 + 2 * i as u64)),
                client,
                timer: None,
                sockets: Sockets::new(SocketId(0), 4000),
                next_port: FIRST_EXTRA_PORT,
                next_socket: 1,
                sent: 0,
                probes: 0,
            });
        }
        let peers_len = peers.len();
        let peer_names = name_index(peers.iter().map(|p| p.name.as_str()));
        let mut sim = Simulation {
            seed,
            epoch,
            now: Duration::ZERO,
            queue: EventQueue::with_capacity(EVENTS_PER_PEER * peers_len + 16),
            server,
            server_timer: None,
            peers,
            nat_outer: Vec::new(),
            nats,
            nat_log: Vec::new(),
            trace: Trace::new(),
            connections: Vec::new(),
            connections_of: vec![Vec::new(); peers_len],
            peer_names,
            nat_names,
            on_segment: SegmentIndex::default(),
            texts: BTreeMap::new(),
            packet_events: 0,
            scenario,
        };
        sim.index_topology();
        for i in 0..sim.scenario.events.len() {
            let at = sim.scenario.events[i].at;
            sim.schedule(at, Pending::Scheduled(i));
        }
        sim.drain_server();
        for p in 0..sim.peers.len() {
            sim.drain_peer(p);
        }
        Ok(sim)
    }

    /// Keep the trace's lines (they are always hashed).
    pub fn keep_trace(&mut self, keep: bool) {
        self.trace.keep_lines(keep);
    }

    /// Skips the trace altogether: no line is formatted or hashed, and the
    /// report's `trace_hash` is empty. Outcomes, timings and counts are the
    /// same as with the trace (nothing in the run reads it); the matrix runs
    /// this way, as it reports no trace.
    pub fn skip_trace(&mut self) {
        self.trace.turn_off();
        for nat in &mut self.nats {
            nat.record_decisions(false);
        }
    }

    /// Keep the datagrams for a Mermaid diagram.
    pub fn keep_arrows(&mut self, keep: bool) {
        self.trace.keep_arrows(keep);
    }

    /// Runs to the scenario's end and reports.
    pub fn run(self) -> (Report, Vec<String>, Vec<Arrow>) {
        self.run_with_progress(|_, _| {})
    }

    /// As [`Simulation::run`], calling `progress(now, end)` as simulated time
    /// advances (every thousandth of the run, and at the end) so a caller
    /// can show how far a long run has got. The run itself is the same.
    pub fn run_with_progress(
        mut self,
        mut progress: impl FnMut(Duration, Duration),
    ) -> (Report, Vec<String>, Vec<Arrow>) {
        let end = self.scenario.duration;
        let step = (end / PROGRESS_STEPS).max(Duration::from_millis(1));
        let mut at = self.now;
        while at < end {
            at = (at + step).min(end);
            self.run_until(at);
            progress(at, end);
        }
        self.run_until(end);
        let report = self.report();
        let (lines, arrows) = self.trace.take();
        (report, lines, arrows)
    }

    /// Processes every event up to `end`.
    pub fn run_until(&mut self, end: Duration) {
        while let Some((at, event)) = self.queue.pop_until(end) {
            self.now = at;
            self.warm_next();
            self.process(event);
        }
        self.now = end;
    }

    /// Simulated time now.
    pub fn now(&self) -> Duration {
        self.now
    }

    fn instant(&self) -> Instant {
        self.epoch + self.now
    }

    fn schedule(&mut self, at: Duration, event: Pending) {
        let toward = event.toward();
        self.queue.push(at, event, toward);
    }

    /// Asks for the cache lines the next event will read first: its slot and
    /// the hot state of the host or NAT it runs on. They arrive while this
    /// event runs; with a thousand hosts nearly all of them would otherwise
    /// be misses, taken one after another. (Callgrind models no prefetch, so
    /// its miss counts do not show this; wall time does.)
    fn warm_next(&self) {
        let Some((toward, slot)) = self.queue.peek_hint() else { return };
        prefetch(slot);
        match toward {
            Toward::Peer(i) => {
                let peer = &self.peers[i as usize];
                prefetch(&peer.sockets);
                prefetch(&peer.timer);
                prefetch(&peer.addr);
                prefetch(&peer.up);
                peer.client.prefetch();
            }
            Toward::Nat(n) => {
                self.nats[n as usize].prefetch();
                // Inbound, the packet goes on to the host inside; a home
                // network's sole host is known without reading the segment.
                if let Some(peer) = self.on_segment.prefetch(segment_index(Some(n as usize))) {
                    prefetch(&self.peers[peer as usize].down);
                }
            }
            Toward::Elsewhere => {}
        }
    }

    /// The (empty) buffer a NAT call logs its decisions into.
    fn take_nat_log(&mut self) -> Vec<NatDecision> {
        std::mem::take(&mut self.nat_log)
    }

    /// Traces the decisions of one NAT call and keeps the buffer for the next.
    fn log_nat(&mut self, mut decisions: Vec<NatDecision>) {
        for d in decisions.drain(..) {
            self.trace.record_with(self.now, |line| d.write_to(line));
        }
        self.nat_log = decisions;
    }

    fn process(&mut self, event: Pending) {
        match event {
            Pending::Timer(m) => self.fire_timer(m),
            Pending::Scheduled(i) => self.scheduled(i),
            Pending::FromInside(n, p) => {
                self.packet_events += 1;
                self.nat_from_inside(n as usize, p.into());
            }
            Pending::FromOutside(n, p) => {
                self.packet_events += 1;
                self.nat_from_outside(n as usize, p.into());
            }
            Pending::Internet(p) => {
                self.packet_events += 1;
                self.internet(p.into());
            }
            Pending::ToPeer(i, p) => {
                self.packet_events += 1;
                self.deliver_to_peer(i as usize, p.into());
            }
        }
    }

    fn fire_timer(&mut self, m: usize) {
        let now = self.instant();
        if m == 0 {
            if self.server_timer != Some(self.now) {
                return;
            }
            self.server_timer = None;
            self.server.handle_timeout(now);
            self.drain_server();
        } else {
            let p = m - 1;
            if self.peers[p].timer != Some(self.now) {
                return;
            }
            self.peers[p].timer = None;
            self.peers[p].client.handle_timeout(now);
            self.drain_peer(p);
        }
    }

    fn scheduled(&mut self, i: usize) {
        let action = self.scenario.events[i].action.clone();
        let now = self.instant();
        match action {
            Action::Connect { peer, to } => {
                let p = self.peer_index(&peer);
                self.trace.record(self.now, format_args!("event: {peer} connects to {to}"));
                self.connections_of[p].push(self.connections.len());
                self.connections.push(ConnectionState::new(p, to.clone(), self.now));
                if let Err(e) = self.peers[p].client.connect(now, &to) {
                    self.trace.record(self.now, format_args!("{peer}: connect refused: {e}"));
                    self.connections.last_mut().expect("just pushed").failed = true;
                }
                self.drain_peer(p);
            }
            Action::Disconnect { peer, from } => {
                let p = self.peer_index(&peer);
                self.trace.record(self.now, format_args!("event: {peer} disconnects from {from}"));
                let sessions: Vec<SessionId> = self.peers[p].client.sessions().collect();
                for s in sessions {
                    if self.peers[p].client.session_info(s).is_some_and(|i| i.peer == from) {
                        self.peers[p].client.close(now, s);
                    }
                }
                self.drain_peer(p);
            }
            Action::SendText { peer, to, text } => {
                let p = self.peer_index(&peer);
                self.trace.record(self.now, format_args!("event: {peer} sends {} bytes of text to {to}", text.len()));
                match self.peers[p].client.send_text(now, &to, &text) {
                    Ok(id) => {
                        self.trace.record(self.now, format_args!("{peer}: text {id} to {to}"));
                        self.texts.insert((p, id), TextState { to, acknowledged: false, shown: 0 });
                    }
                    Err(e) => self.trace.record(self.now, format_args!("{peer}: text refused: {e}")),
                }
                self.drain_peer(p);
            }
            Action::Partition { peer } => {
                let p = self.peer_index(&peer);
                self.trace.record(self.now, format_args!("event: {peer}'s link is cut"));
                self.peers[p].up.set_partitioned(true);
                self.peers[p].down.set_partitioned(true);
            }
            Action::Heal { peer } => {
                let p = self.peer_index(&peer);
                self.trace.record(self.now, format_args!("event: {peer}'s link is restored"));
                self.peers[p].up.set_partitioned(false);
                self.peers[p].down.set_partitioned(false);
            }
            Action::NatReboot { nat } => {
                let n = self.nat_index(&nat);
                self.trace.record(self.now, format_args!("event: NAT {nat} reboots"));
                self.nats[n].reboot();
            }
            Action::MoveTo { peer, nat } => {
                let p = self.peer_index(&peer);
                let n = self.nat_index(&nat);
                self.trace.record(self.now, format_args!("event: {peer} moves behind {nat}"));
                self.peers[p].behind = Some(n);
                self.index_topology();
            }
        }
    }

    fn peer_index(&self, name: &str) -> usize {
        *self.peer_names.get(name).expect("validated by the parser")
    }

    fn nat_index(&self, name: &str) -> usize {
        *self.nat_names.get(name).expect("validated by the parser")
    }

    fn drain_server(&mut self) {
        while let Some(t) = self.server.poll_transmit() {
            self.server_transmit(t);
        }
        while let Some(e) = self.server.poll_event() {
            self.trace.record(self.now, format_args!("server: {e:?}"));
        }
        let at = self.server.poll_timeout().map(|i| i.saturating_duration_since(self.epoch).max(self.now));
        if let Some(at) = at {
            if self.server_timer != Some(at) {
                self.server_timer = Some(at);
                self.schedule(at, Pending::Timer(0));
            }
        }
    }

    fn server_transmit(&mut self, t: Transmit) {
        let src = self.server.sockets().iter().find(|(id, _)| *id == t.socket).map(|(_, a)| *a);
        let Some(src) = src else { return };
        self.trace.record_with(self.now, |line| datagram_line(line, "server", src, &t));
        self.arrow(None, t.destination, &t.payload);
        let p = Packet { src, dst: t.destination, ttl: t.ttl.unwrap_or(DEFAULT_TTL), payload: t.payload };
        self.packet_events += 1;
        self.internet(p);
    }

    fn drain_peer(&mut self, i: usize) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.peers[i].client.poll_transmit() {
                progressed = true;
                self.peer_transmit(i, t);
            }
            while let Some(e) = self.peers[i].client.poll_event() {
                progressed = true;
                self.peer_event(i, e);
            }
            if !progressed {
                break;
            }
        }
        // A deadline already past fires now; it is stored as now so the
        // timer event recognises it (else the peer would never wake again).
        let at = self.peers[i].client.poll_timeout().map(|t| t.saturating_duration_since(self.epoch).max(self.now));
        if let Some(at) = at {
            if self.peers[i].timer != Some(at) {
                self.peers[i].timer = Some(at);
                self.schedule(at, Pending::Timer(i + 1));
            }
        }
    }

    fn peer_transmit(&mut self, i: usize, t: Transmit) {
        let peer = &mut self.peers[i];
        let Some(port) = peer.sockets.port(t.socket) else { return };
        peer.sent += 1;
        if t.payload.first() == Some(&0x61) {
            peer.probes += 1;
        }
        let src = SocketAddr::new(peer.addr, port);
        let name = &self.peers[i].name;
        self.trace.record_with(self.now, |line| datagram_line(line, name, src, &t));
        self.arrow(Some(i), t.destination, &t.payload);
        let size = t.payload.len() + 28;
        let p = Packet { src, dst: t.destination, ttl: t.ttl.unwrap_or(DEFAULT_TTL), payload: t.payload };
        let arrivals = self.peers[i].up.transmit(self.now, size);
        if arrivals.is_empty() {
            self.trace
                .record(self.now, format_args!("link {}: lost {} -> {}", self.peers[i].name, Addr(p.src), Addr(p.dst)));
        }
        let behind = self.peers[i].behind;
        self.schedule_copies(&arrivals, p, |p| match behind {
            Some(n) => Pending::FromInside(index(n), p),
            None => Pending::Internet(p),
        });
    }

    /// Schedules one event per arrival time of `p`, moving the packet into
    /// the last one (a duplicate shares the payload's bytes, refcounted).
    fn schedule_copies(&mut self, arrivals: &[Duration], p: Packet, event: impl Fn(Parcel) -> Pending) {
        let Some((&last, rest)) = arrivals.split_last() else { return };
        let p = Parcel::from(p);
        for &at in rest {
            self.schedule(at, event(p.clone()));
        }
        self.schedule(last, event(p));
    }

    fn peer_event(&mut self, i: usize, e: ClientEvent) {
        let now = self.instant();
        if self.trace.is_on() {
            let text = describe::event(&e);
            self.trace.record(self.now, format_args!("{}: {text}", self.peers[i].name));
        }
        match &e {
            ClientEvent::OpenSockets { request, count } => {
                let peer = &mut self.peers[i];
                let mut opened = Vec::new();
                for _ in 0..*count {
                    let id = SocketId(peer.next_socket);
                    peer.next_socket += 1;
                    let port = peer.next_port;
                    peer.next_port = peer.next_port.wrapping_add(1).max(FIRST_EXTRA_PORT);
                    peer.sockets.insert(id, port);
                    opened.push((id, SocketAddr::new(peer.addr, port)));
                }
                peer.client.sockets_opened(now, *request, &opened);
            }
            ClientEvent::ReleaseSocket { socket } => {
                self.peers[i].sockets.remove(*socket);
            }
            ClientEvent::TextAcked { id, .. } => {
                if let Some(t) = self.texts.get_mut(&(i, *id)) {
                    t.acknowledged = true;
                }
            }
            ClientEvent::TextReceived { from, id, .. } => {
                let sender = self.peer_names.get(from).copied();
                let me = &self.peers[i].name;
                if let Some(t) = sender.and_then(|s| self.texts.get_mut(&(s, *id))).filter(|t| &t.to == me) {
                    t.shown += 1;
                }
            }
            _ => self.track_connection(i, &e),
        }
    }

    fn track_connection(&mut self, i: usize, e: &ClientEvent) {
        let now = self.now;
        match e {
            ClientEvent::SessionOpened { session, peer, initiator: true, strategy } => {
                if let Some(c) = self.find_connection(i, |c| &c.to == peer && c.session.is_none() && !c.failed) {
                    c.session = Some(*session);
                    c.connect_at = Some(now - c.started);
                    c.strategy = Some(*strategy);
                    c.path = Some(PathKind::Relay);
                }
            }
            ClientEvent::ConnectFailed { peer, .. } => {
                if let Some(c) = self.find_connection(i, |c| &c.to == peer && c.session.is_none()) {
                    c.failed = true;
                }
            }
            ClientEvent::PathDirect { session, socket, remote } => {
                if let Some(c) = self.connection_mut(i, *session) {
                    c.direct_at.get_or_insert(now - c.started);
                    c.path = Some(PathKind::Direct { socket: *socket, remote: *remote });
                }
            }
            ClientEvent::PathFellBack { session } => {
                if let Some(c) = self.connection_mut(i, *session) {
                    c.fallbacks += 1;
                    c.path = Some(PathKind::Relay);
                }
            }
            ClientEvent::SessionClosed { session, reason } => {
                if let Some(c) = self.connection_mut(i, *session) {
                    c.closed = true;
                    if !matches!(reason, punchline_core::wire::frame::CloseReason::Local) {
                        c.failed = c.path.is_none();
                    }
                }
            }
            _ => {}
        }
    }

    fn connection_mut(&mut self, i: usize, session: SessionId) -> Option<&mut ConnectionState> {
        self.find_connection(i, |c| c.session == Some(session))
    }

    /// The first connection started by peer `i` that matches `pred`.
    fn find_connection(&mut self, i: usize, pred: impl Fn(&ConnectionState) -> bool) -> Option<&mut ConnectionState> {
        let k = self.connections_of[i].iter().copied().find(|&k| pred(&self.connections[k]))?;
        Some(&mut self.connections[k])
    }

    /// A packet arrives at NAT `n` from inside.
    fn nat_from_inside(&mut self, n: usize, p: Packet) {
        // Hosts and NATs on the same private segment reach each other
        // without translation (host candidates).
        match self.node_on_segment(Some(n), p.dst.ip()) {
            Some(Node::Peer(target)) => self.down_link(target as usize, p),
            Some(Node::Nat(inner)) => self.schedule(self.now, Pending::FromOutside(inner, p.into())),
            None => self.nat_forward_out(n, p),
        }
    }

    /// NAT `n` forwards a packet from inside that no host beside the
    /// sender takes: to one of its own public addresses, or out.
    fn nat_forward_out(&mut self, n: usize, p: Packet) {
        let now = self.now;
        let mut log = self.take_nat_log();
        if self.nats[n].is_public_ip(p.dst.ip()) {
            let result = self.nats[n].hairpin(now, p, &mut log);
            self.log_nat(log);
            if let Some(p) = result {
                self.route_down(n, p);
            }
            return;
        }
        let result = self.nats[n].outbound(now, p, &mut log);
        self.log_nat(log);
        let Some(p) = result else { return };
        match self.nat_outer[n] {
            Some(outer) => self.nat_from_inside(outer, p),
            None => self.internet(p),
        }
    }

    /// A packet arrives at NAT `n`'s public side.
    fn nat_from_outside(&mut self, n: usize, p: Packet) {
        let now = self.now;
        let mut log = self.take_nat_log();
        let result = self.nats[n].inbound(now, p, &mut log);
        self.log_nat(log);
        if let Some(p) = result {
            self.route_down(n, p);
        }
    }

    /// Delivers a packet that NAT `n` passed inward.
    fn route_down(&mut self, n: usize, p: Packet) {
        match self.node_on_segment(Some(n), p.dst.ip()) {
            Some(Node::Peer(target)) => self.down_link(target as usize, p),
            Some(Node::Nat(inner)) => self.nat_from_outside(inner as usize, p),
            None => {
                self.trace.record(self.now, format_args!("nat {}: no host {} inside", self.nats[n].spec().name, p.dst))
            }
        }
    }

    /// The public internet: `internet_hops` routers, then the destination.
    fn internet(&mut self, mut p: Packet) {
        let hops = self.scenario.internet_hops;
        if p.ttl <= hops {
            self.trace.record(self.now, format_args!("internet: TTL {} expired {} -> {}", p.ttl, p.src, p.dst));
            return;
        }
        p.ttl -= hops;
        let server = self.server.sockets().iter().find(|(_, a)| *a == p.dst).map(|(id, _)| *id);
        if let Some(socket) = server {
            let now = self.instant();
            self.server.handle_datagram(now, socket, p.src, &p.payload);
            self.drain_server();
            return;
        }
        match self.node_on_segment(None, p.dst.ip()) {
            Some(Node::Peer(target)) => self.down_link(target as usize, p),
            Some(Node::Nat(n)) => self.nat_from_outside(n as usize, p),
            None => self.trace.record(self.now, format_args!("internet: no route to {} (from {})", p.dst, p.src)),
        }
    }

    fn down_link(&mut self, target: usize, p: Packet) {
        let size = p.payload.len() + 28;
        let arrivals = self.peers[target].down.transmit(self.now, size);
        if arrivals.is_empty() {
            self.trace.record(
                self.now,
                format_args!("link {}: lost {} -> {}", self.peers[target].name, Addr(p.src), Addr(p.dst)),
            );
        }
        let target = index(target);
        self.schedule_copies(&arrivals, p, |p| Pending::ToPeer(target, p));
    }

    fn deliver_to_peer(&mut self, i: usize, p: Packet) {
        let socket = self.peers[i].sockets.socket(p.dst.port());
        let Some(socket) = socket.filter(|_| p.dst.ip() == self.peers[i].addr) else {
            self.trace.record(self.now, format_args!("{}: no socket for {}", self.peers[i].name, p.dst));
            return;
        };
        let now = self.instant();
        self.peers[i].client.handle_datagram(now, socket, p.src, &p.payload);
        self.drain_peer(i);
    }

    /// The peer with address `ip` directly on segment `segment` (None: the
    /// public internet), or else the NAT whose public side is there and
    /// owns `ip`.
    fn node_on_segment(&self, segment: Option<usize>, ip: IpAddr) -> Option<Node> {
        self.on_segment.get(segment_index(segment), ip)
    }

    /// Rebuilds the address indexes after the topology changed.
    fn index_topology(&mut self) {
        self.nat_outer = self.nats.iter().map(|n| n.spec().behind.as_ref().map(|b| self.nat_index(b))).collect();
        // A later node with the same address on the same segment replaces
        // an earlier one of its kind, and a peer wins over a NAT (routing
        // has always tried peers first).
        let mut nodes = BTreeMap::new();
        for (i, n) in self.nats.iter().enumerate() {
            for ip in &n.spec().public_ips {
                nodes.insert((segment_index(self.nat_outer[i]), IpAddr::V4(*ip)), Node::Nat(index(i)));
            }
        }
        for (i, p) in self.peers.iter().enumerate() {
            nodes.insert((segment_index(p.behind), p.addr), Node::Peer(index(i)));
        }
        self.on_segment = SegmentIndex::new(self.nats.len() + 1, &nodes);
    }

    /// Keeps a datagram sent by peer `from` (None: the server) for the
    /// Mermaid diagram, when asked to.
    fn arrow(&mut self, from: Option<usize>, to: SocketAddr, payload: &[u8]) {
        if !self.trace.keeps_arrows() {
            return;
        }
        let label = describe::datagram(payload);
        let from = from.map_or_else(|| "server".to_string(), |i| self.peers[i].name.clone());
        let to =
            if self.server.sockets().iter().any(|(_, a)| *a == to) { "server".to_string() } else { to.to_string() };
        self.trace.push_arrow(Arrow { at: self.now, from, to, label });
    }

    fn report(&self) -> Report {
        let connections = self
            .connections
            .iter()
            .map(|c| {
                let to = self.peer_names.get(&c.to).copied();
                let outcome = if c.failed || c.session.is_none() {
                    Outcome::Failed
                } else {
                    match c.path {
                        Some(PathKind::Direct { .. }) => Outcome::Direct,
                        Some(PathKind::Relay) => Outcome::Relay,
                        None => Outcome::Failed,
                    }
                };
                Connection {
                    from: self.peers[c.from].name.clone(),
                    to: c.to.clone(),
                    outcome,
                    strategy: c.strategy.map(|s| s.name().to_string()),
                    connect_ms: c.connect_at.map(ms),
                    direct_ms: c.direct_at.map(ms),
                    fallbacks: c.fallbacks,
                    packets_from: self.peers[c.from].sent,
                    packets_to: to.map_or(0, |t| self.peers[t].sent),
                    probes_from: self.peers[c.from].probes,
                    probes_to: to.map_or(0, |t| self.peers[t].probes),
                }
            })
            .collect();
        let mut messages = Messages { sent: self.texts.len() as u64, ..Messages::default() };
        for t in self.texts.values() {
            messages.acknowledged += u64::from(t.acknowledged);
            messages.delivered += u64::from(t.shown > 0);
            messages.duplicated += t.shown.saturating_sub(1);
            messages.lost += u64::from(t.acknowledged && t.shown == 0);
        }
        let trace_hash = if self.trace.is_on() { format!("{:016x}", self.trace.hash()) } else { String::new() };
        Report { seed: self.seed, trace_hash, connections, messages }
    }
}

impl ConnectionState {
    fn new(from: usize, to: String, started: Duration) -> Self {
        ConnectionState {
            from,
            to,
            started,
            session: None,
            connect_at: None,
            direct_at: None,
            fallbacks: 0,
            failed: false,
            strategy: None,
            path: None,
            closed: false,
        }
    }
}

/// The trace line of a datagram sent by `who`: `{who} {src} -> {dst}[ ttl=N]
/// {description}`, written piece by piece (one for every datagram sent; the
/// trace skips the closure, and so the decoding, when it is off).
fn datagram_line(line: &mut String, who: &str, src: SocketAddr, t: &Transmit) -> std::fmt::Result {
    line.push_str(who);
    line.push(' ');
    Addr(src).write_to(line)?;
    line.push_str(" -> ");
    Addr(t.destination).write_to(line)?;
    if let Some(ttl) = t.ttl {
        use std::fmt::Write as _;
        write!(line, " ttl={ttl}")?;
    }
    line.push(' ');
    describe::write_datagram(line, &t.payload)
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

/// Applies a peer's `config` table to the core's client config, by the
/// core's field names.
fn apply_config(scenario: &Scenario, peer: usize, config: &mut ClientConfig) -> Result<(), ScenarioError> {
    use crate::duration::parse_duration;
    let table = &scenario.peers[peer].config.values;
    for (key, value) in table {
        let err = |m: &str| scenario.config_error(peer, key, m.to_string());
        let duration = || -> Result<Duration, ScenarioError> {
            let text = value.as_str().ok_or_else(|| err("expected a duration string such as \"25s\""))?;
            parse_duration(text).map_err(|e| err(&e.to_string()))
        };
        let integer = |max: i64| -> Result<i64, ScenarioError> {
            let v = value.as_integer().ok_or_else(|| err("expected an integer"))?;
            if !(0..=max).contains(&v) {
                return Err(err(&format!("expected an integer from 0 to {max}")));
            }
            Ok(v)
        };
        let boolean = || value.as_bool().ok_or_else(|| err("expected true or false"));
        match key.as_str() {
            "keepalive" => config.keepalive = duration()?,
            "server_timeout" => config.server_timeout = duration()?,
            "discover_nat" => config.discover_nat = boolean()?,
            "discovery_timeout" => config.discovery_timeout = duration()?,
            "opener_ttl" => config.opener_ttl = integer(255)? as u8,
            "skip_openers" => config.skip_openers = boolean()?,
            "probe_interval" => config.probe_interval = duration()?,
            "punch_timeout" => config.punch_timeout = duration()?,
            "punch_retry" => config.punch_retry = duration()?,
            "punch_retry_max" => config.punch_retry_max = duration()?,
            "max_punch_attempts" => config.max_punch_attempts = integer(1000)? as u32,
            "direct_keepalive" => config.direct_keepalive = duration()?,
            "fallback_timeout" => config.fallback_timeout = duration()?,
            "session_keepalive" => config.session_keepalive = duration()?,
            "session_timeout" => config.session_timeout = duration()?,
            "send_window" => config.send_window = integer(65536)? as usize,
            "prediction_window_min" => config.prediction_window_min = integer(1024)? as u16,
            "prediction_window_max" => config.prediction_window_max = integer(1024)? as u16,
            "birthday_pool" => config.birthday_pool = integer(4096)? as u16,
            "birthday_probe_rate" => config.birthday_probe_rate = integer(100_000)? as u32,
            "birthday_probe_budget" => config.birthday_probe_budget = integer(65_535)? as u32,
            _ => {
                return Err(err("unknown client setting; expected one of keepalive, server_timeout, discover_nat, \
                     discovery_timeout, opener_ttl, skip_openers, probe_interval, punch_timeout, punch_retry, \
                     punch_retry_max, max_punch_attempts, direct_keepalive, fallback_timeout, session_keepalive, \
                     session_timeout, send_window, prediction_window_min, prediction_window_max, birthday_pool, \
                     birthday_probe_rate, birthday_probe_budget"))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_event_fits_one_cache_line() {
        // An event is read cold, long after it was scheduled: each line of
        // its slot is a miss (see `parcel`).
        assert!(std::mem::size_of::<Option<Pending>>() <= 64, "{} bytes", std::mem::size_of::<Option<Pending>>());
    }
}
