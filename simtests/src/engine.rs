//! The discrete-event engine: core machines as hosts, NAT devices, links,
//! and queues of events totally ordered by time, then by who scheduled them.
//! Datagrams are UDP; the clients' connections to the server (the TCP
//! fallback, issue 21) are modelled segment by segment (`tcp`).
//!
//! Virtual time jumps from one event to the next; nothing reads a clock.
//! Every random choice comes from one seed through a tree of child
//! generators (links, NATs, each machine's own seed), so a scenario and a
//! seed give the same trace, byte for byte.
//!
//! The world is run in parts: a few groups of hosts (`hosts`: peers with
//! their clients and uplinks, [`HOST_GROUPS`] groups of consecutive peers)
//! and the network (`network`: NATs, the internet, the server, downlinks).
//! Each has its own queues, and a datagram goes from a host to the network
//! or back only across a link. That is what lets a big world run on two
//! threads (`parallel`), with the same result as on one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use punchline_core::client::{ClientConfig, PathKind, SessionInfo};
use punchline_core::secure::StaticKey;
use punchline_core::server::{Server, ServerConfig};
use punchline_core::wire::frame::Transport;
use punchline_core::{SocketId, Transmit};

use crate::addr::Addr;
use crate::describe;
use crate::link::{Arrivals, Link};
use crate::nat::{Nat, Packet};
use crate::report::{Connection, FileTransfer, Messages, Outcome, PeerPath, PeerReport, Report, Streams, TailDrops};
use crate::rng::Rng;
use crate::scenario::{name_index, Action, Scenario, ScenarioError, Target};

mod hosts;
mod inbox;
mod network;
mod parallel;
mod parcel;
mod queue;
mod segments;
mod sockets;
mod store;
mod tcp;
mod trace;
mod views;

use hosts::{GroupParts, Hosts, PeerHost};
use network::{HostPlace, Network, NetworkParts};
pub use network::{WRITE_HARD_LIMIT, WRITE_SOFT_LIMIT};
use parallel::RunTo;
use trace::Trace;
use views::{PathView, SessionView};

/// The TTL of a datagram sent without an explicit one.
pub const DEFAULT_TTL: u8 = 64;
/// How many times [`Simulation::run_with_progress`] reports.
const PROGRESS_STEPS: u32 = 1000;
/// Pending events a queue makes room for up front, per peer whose events it
/// holds: a thousand-peer world connecting in pairs peaks at about 6.5 per
/// peer in all. Busier worlds grow the queues as a `Vec` grows.
const EVENTS_PER_PEER: usize = 8;
/// How many groups the peers are split into (fewer when there are fewer
/// peers). Two threads share a window's groups and the network, so a group
/// is the grain of that sharing. The groups are part of the order of events
/// at the same instant (see `inbox`), so this number is part of every
/// trace: changing it changes the traces of worlds with ties.
pub const HOST_GROUPS: usize = 4;
/// The fewest peers for which a run uses a second thread by default: in a
/// smaller world a window holds too few events to pay for handing it over
/// (see `simtests/README.md`, Performance).
pub const PARALLEL_MIN_PEERS: usize = 64;

/// One run of a scenario.
pub struct Simulation {
    scenario: Scenario,
    seed: u64,
    now: Duration,
    /// The groups of hosts, in part order (see `inbox::Part`).
    hosts: Vec<Hosts>,
    /// Peer index by name (the first peer of a name, as the parser rejects
    /// duplicates).
    peer_names: Names,
    network: Network,
    trace: Trace,
    /// The shortest delay of any link: how far apart the parts may run
    /// (zero: they take turns event by event).
    lookahead: Duration,
    threads: usize,
    /// Run one event at a time even when windows are safe (see
    /// [`Simulation::set_event_by_event`]).
    event_by_event: bool,
    /// The machines have sent what they queued when built (see `start`).
    started: bool,
    /// Packet events processed, for benchmarks: each step of a datagram the
    /// engine schedules as an event, plus each datagram the server sends
    /// (defined in `simtests/README.md`, Performance).
    pub packet_events: u64,
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

/// Index by name (of peers or of NATs), shared by every part of the world.
type Names = Arc<BTreeMap<String, usize>>;

/// A host's or NAT's index as an event holds it (a world has far fewer than
/// 2^32 of either: the segment index numbers them in `u32` too).
fn index(i: usize) -> u32 {
    u32::try_from(i).expect("fewer than 2^32 hosts and NATs")
}

impl Simulation {
    /// Builds the world of `scenario`; `seed` overrides the file's.
    pub fn new(scenario: Scenario, seed: Option<u64>) -> Result<Simulation, ScenarioError> {
        let seed = seed.or(scenario.seed).unwrap_or(0);
        let root = Rng::new(seed);
        let epoch = Instant::now();
        let mut server_config = ServerConfig::new(scenario.server.addr, scenario.server.alt_addr);
        server_config.seed = root.fork(1).next_u64().into();
        // Every key grows from the scenario's seed, so traces stay
        // byte-identical run to run; the clients have the server's key
        // pinned, as after a first contact.
        server_config.key = StaticKey::derive(root.fork(4).next_u64().into(), "server");
        let server = Server::new(server_config.clone(), epoch);
        let server_addrs: Vec<SocketAddr> = server.sockets().iter().map(|(_, a)| *a).collect();
        let nats: Vec<Nat> =
            (0..scenario.nats.len()).map(|i| Nat::new(scenario.nat_spec(i), root.fork(1000 + i as u64))).collect();
        let nat_names: Names = Arc::new(name_index(scenario.nats.iter().map(|n| n.name.as_str())));
        let mut peers: Vec<PeerHost> = Vec::new();
        let mut places = Vec::new();
        let mut down = Vec::new();
        for (i, spec) in scenario.peers.iter().enumerate() {
            let mut config = ClientConfig::new(spec.name.clone(), scenario.server.addr);
            config.alt_server = scenario.server.alt_addr;
            config.seed = root.fork(2000 + i as u64).next_u64().into();
            config.identity = StaticKey::derive(root.fork(5).next_u64().into(), &spec.name);
            config.server_key = Some(server_config.key.public());
            apply_config(&scenario, i, &mut config)?;
            let behind = spec.behind.as_ref().map(|n| *nat_names.get(n).expect("validated by the parser"));
            let local = SocketAddr::new(spec.addr, 4000);
            let client = punchline_core::client::Client::new(config, (SocketId(0), local), epoch);
            let up = Link::new(spec.link.clone(), root.fork(3000 + 2 * i as u64));
            down.push(Link::new(spec.link.clone(), root.fork(3001 + 2 * i as u64)));
            peers.push(PeerHost::new(spec.name.clone(), spec.addr, behind, up, client));
            places.push(HostPlace { name: spec.name.clone(), addr: spec.addr, behind, udp_blocked: false });
        }
        let lookahead = peers
            .iter()
            .map(|p| p.up_link().min_delay())
            .chain(down.iter().map(Link::min_delay))
            .min()
            .unwrap_or(Duration::MAX);
        let actions: Arc<[Action]> = scenario.events.iter().map(|e| e.action.clone()).collect();
        let many = peers.len() >= PARALLEL_MIN_PEERS;
        let peer_names: Names = Arc::new(name_index(scenario.peers.iter().map(|p| p.name.as_str())));
        let group_size = peers.len().div_ceil(HOST_GROUPS).max(1);
        let groups = peers.len().div_ceil(group_size);
        // Each queue holds the events of at most one group's peers.
        let events = EVENTS_PER_PEER * group_size + 16;
        let mut hosts = Vec::with_capacity(groups);
        while !peers.is_empty() {
            let rest = peers.split_off(group_size.min(peers.len()));
            hosts.push(Hosts::new(GroupParts {
                part: hosts.len(),
                network: groups,
                first: hosts.len() * group_size,
                epoch,
                seed,
                peers: std::mem::replace(&mut peers, rest),
                peer_names: peer_names.clone(),
                nat_names: nat_names.clone(),
                actions: actions.clone(),
                server_addrs: server_addrs.clone(),
                events,
            }));
        }
        let network = Network::new(NetworkParts {
            epoch,
            server,
            server_config,
            server_seeds: root.fork(1),
            store_latency: scenario.server.store_latency,
            nats,
            nat_names,
            peer_names: peer_names.clone(),
            hosts: places,
            down,
            internet_hops: scenario.internet_hops,
            actions,
            events,
            groups,
            group_size,
        });
        let threads = if many { std::thread::available_parallelism().map_or(1, |n| n.get().min(2)) } else { 1 };
        let mut sim = Simulation {
            seed,
            now: Duration::ZERO,
            hosts,
            peer_names,
            network,
            trace: Trace::new(),
            lookahead,
            threads,
            event_by_event: false,
            started: false,
            packet_events: 0,
            scenario,
        };
        for (i, event) in sim.scenario.events.iter().enumerate() {
            // The peer's group and the network each schedule their part of
            // the event (both, for a cut or a move: the uplink and the
            // downlink or routing change at the same instant).
            let (peer, at_network) = match &event.action {
                Action::Connect { peer, .. }
                | Action::Disconnect { peer, .. }
                | Action::SendText { peer, .. }
                | Action::SendFile { peer, .. } => (Some(peer), false),
                Action::Partition { peer }
                | Action::Heal { peer }
                | Action::MoveTo { peer, .. }
                | Action::BlockUdp { target: Target::Peer(peer) }
                | Action::UnblockUdp { target: Target::Peer(peer) } => (Some(peer), true),
                Action::NatReboot { .. }
                | Action::ServerDown
                | Action::ServerUp
                | Action::ServerRestart
                | Action::BlockUdp { target: Target::Nat(_) }
                | Action::UnblockUdp { target: Target::Nat(_) } => (None, true),
            };
            if let Some(peer) = peer {
                let p = *sim.peer_names.get(peer).expect("validated by the parser");
                sim.hosts[p / group_size].schedule_action(event.at, i);
            }
            if at_network {
                sim.network.schedule_action(event.at, i);
            }
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
        let lines = self.hosts.iter_mut().map(|g| &mut g.lines);
        self.trace.turn_off(lines.chain([&mut self.network.lines]));
        self.network.skip_nat_decisions();
    }

    /// Keep the datagrams for a Mermaid diagram.
    pub fn keep_arrows(&mut self, keep: bool) {
        let lines = self.hosts.iter_mut().map(|g| &mut g.lines);
        Trace::keep_arrows(keep, lines.chain([&mut self.network.lines]));
    }

    /// Runs the world's parts on `threads` threads (1 or 2; more count as 2). The
    /// result is the same either way, byte for byte; only the time it takes
    /// differs. The default is 2 for a world of [`PARALLEL_MIN_PEERS`] peers
    /// or more on a machine with two cores, else 1. A world with a link of
    /// zero minimum delay always runs on one thread.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.clamp(1, 2);
    }

    /// The number of threads a run will use (see [`Simulation::set_threads`]).
    pub fn threads(&self) -> usize {
        if self.runs_event_by_event() {
            1
        } else {
            self.threads
        }
    }

    /// Runs one event at a time across the whole world, as a world with a
    /// link of zero minimum delay must, even where windows are safe. It is
    /// slower and gives the same result, byte for byte: it is there for the
    /// tests that check exactly that.
    pub fn set_event_by_event(&mut self, event_by_event: bool) {
        self.event_by_event = event_by_event;
    }

    fn runs_event_by_event(&self) -> bool {
        self.event_by_event || self.lookahead.is_zero()
    }

    /// The shortest delay of any link in the world: the parts run in
    /// windows this long (zero: event by event).
    pub fn lookahead(&self) -> Duration {
        self.lookahead
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
        if !self.started {
            self.start();
        }
        if self.runs_event_by_event() {
            self.run_event_by_event(end);
        } else {
            self.run_in_windows(end);
        }
        self.now = self.now.max(end);
        self.packet_events = self.hosts.iter().map(|g| g.packet_events).sum::<u64>() + self.network.packet_events;
    }

    /// The `send_file` transfers so far, as the report will list them (a
    /// caller running the world piece by piece with
    /// [`Simulation::run_until`] watches them progress).
    pub fn files(&self) -> Vec<FileTransfer> {
        let world: Vec<&PeerHost> = self.hosts.iter().flat_map(|g| &g.peers).collect();
        hosts::file_report(&world, ms)
    }

    /// Simulated time now.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Runs window after window of [`Simulation::lookahead`]: each starts at
    /// the earliest pending event and holds every event before its start
    /// plus the lookahead, which the parts can run independently (see
    /// `parallel`). The network goes first: it is the biggest part.
    fn run_in_windows(&mut self, end: Duration) {
        let (trace, lookahead) = (&mut self.trace, self.lookahead);
        let mut parts: Parts<Task> = Parts::new();
        parts.push(Task::Network(&mut self.network));
        parts.extend(self.hosts.iter_mut().map(Task::Hosts));
        parallel::run_windows(parts, self.threads, |parts| {
            let (network, mut groups) = split_tasks(parts);
            take_in(trace, &mut groups, network);
            let pending = groups
                .iter()
                .flat_map(|g| [g.next_at(), g.outbox.earliest()])
                .chain(network.outboxes.iter().map(|o| o.earliest()))
                .chain([network.next_at()]);
            let start = pending.flatten().min().filter(|&start| start <= end)?;
            hand_over(&mut groups, network);
            Some(start.saturating_add(lookahead - Duration::from_nanos(1)).min(end))
        });
    }

    /// Runs one event at a time, from the part whose next event is earliest
    /// (by part order on a tie), handing datagrams over after each: for
    /// worlds where a link can deliver at once, so no window is safe.
    fn run_event_by_event(&mut self, end: Duration) {
        loop {
            let mut groups: Parts<&mut Hosts> = self.hosts.iter_mut().collect();
            hand_over(&mut groups, &mut self.network);
            for group in &mut groups {
                group.receive();
            }
            self.network.receive();
            let next = groups.iter().map(|g| g.next_at()).chain([self.network.next_at()]);
            let mut best: Option<(usize, Duration)> = None;
            for (part, at) in next.enumerate() {
                if let Some(at) = at {
                    if best.is_none_or(|(_, best_at)| at < best_at) {
                        best = Some((part, at));
                    }
                }
            }
            let ran = match best {
                Some((part, _)) if part < groups.len() => groups[part].step(end),
                Some(_) => self.network.step(end),
                None => false,
            };
            take_in(&mut self.trace, &mut groups, &mut self.network);
            if !ran {
                break;
            }
        }
    }

    /// Hashes (and keeps) the lines every part has traced so far.
    /// Lets the machines send what they queued when they were built: the
    /// server's first words, then the peers' (their first `Login`s). It
    /// runs with the run, not when the world is built, so that the trace's
    /// and the diagram's settings already hold and these lines are kept too.
    fn start(&mut self) {
        self.started = true;
        self.network.start();
        self.take_in_trace();
        for group in 0..self.hosts.len() {
            self.hosts[group].start();
            self.take_in_trace();
        }
    }

    fn take_in_trace(&mut self) {
        let mut groups: Parts<&mut Hosts> = self.hosts.iter_mut().collect();
        take_in(&mut self.trace, &mut groups, &mut self.network);
    }

    /// Peer `i` of the world.
    fn peer(&self, i: usize) -> &PeerHost {
        let group = self.group_of(i);
        &group.peers[i - group.first]
    }

    /// The group of hosts that holds peer `i` of the world.
    fn group_of(&self, i: usize) -> &Hosts {
        &self.hosts[self.hosts.partition_point(|g| g.first <= i) - 1]
    }

    /// The report of the run so far (what [`Simulation::run`] returns at
    /// the end).
    pub fn report(&self) -> Report {
        // Connections in the order they started: by time, then the
        // scenario's order.
        let mut started: Vec<&hosts::ConnectionState> = self.hosts.iter().flat_map(|g| &g.connections).collect();
        started.sort_by_key(|c| (c.started, c.event));
        let peer_names = &self.peer_names;
        let connections = started
            .into_iter()
            .map(|c| {
                let to_index = peer_names.get(&c.to).copied();
                // Each member's own view of the session (the connecting
                // peer's and the other's: they may disagree).
                let view_of = |peer: Option<usize>| {
                    let (peer, session) = (peer?, c.session?);
                    self.group_of(peer).views.get(&(peer, session))
                };
                let (view_from, view_to) = (view_of(Some(c.from)), view_of(to_index));
                let both_direct = [view_from, view_to].iter().all(|v| v.is_some_and(|v| v.last() == PathView::Direct));
                let from = self.peer(c.from);
                let to = to_index.map(|t| self.peer(t));
                // Either member's own view says whether the relay rides
                // TCP on either side (the core folds in the peer's); when
                // neither holds the session any more, how they reach the
                // server at the end says where its relay leg would run.
                let members = || [Some(from), to].into_iter().flatten();
                let infos: Vec<SessionInfo> =
                    members().filter_map(|p| c.session.and_then(|s| p.client().session_info(s))).collect();
                let relay_tcp = if infos.is_empty() {
                    members().any(|p| p.client().transport() == Transport::Tcp)
                } else {
                    infos.iter().any(|i| i.relay_transport == Transport::Tcp)
                };
                let outcome = if c.never_opened() {
                    Outcome::Failed
                } else {
                    match c.path {
                        Some(PathKind::Direct { .. }) if both_direct => Outcome::Direct,
                        Some(_) if relay_tcp => Outcome::RelayTcp,
                        Some(_) => Outcome::Relay,
                        None => Outcome::Failed,
                    }
                };
                let path_of = |view: Option<&SessionView>| match view.map(SessionView::last) {
                    Some(PathView::Direct) => PeerPath::Direct,
                    Some(PathView::Relay) => PeerPath::Relay,
                    Some(PathView::Closed) => PeerPath::Closed,
                    None => PeerPath::None,
                };
                let paths = BTreeMap::from([(from.name.clone(), path_of(view_from)), (c.to.clone(), path_of(view_to))]);
                let disagree = match (view_from, view_to) {
                    (Some(a), Some(b)) => views::disagreement(a, b, self.now),
                    _ => Duration::ZERO,
                };
                let fallbacks = [view_from, view_to].iter().flatten().map(|v| v.fallbacks()).sum();
                Connection {
                    from: from.name.clone(),
                    to: c.to.clone(),
                    outcome,
                    strategy: c.strategy.map(|s| s.name().to_string()),
                    connect_ms: c.connect_at.map(ms),
                    direct_ms: c.direct_at.map(ms),
                    fallbacks,
                    paths,
                    disagree_ms: ms(disagree),
                    packets_from: from.sent,
                    packets_to: to.map_or(0, |t| t.sent),
                    probes_from: from.probes,
                    probes_to: to.map_or(0, |t| t.probes),
                }
            })
            .collect();
        let mut messages = Messages::default();
        for (&(sender, id), t) in self.hosts.iter().flat_map(|g| &g.texts) {
            // The recipient's group counted what it showed.
            let shown = peer_names
                .get(&t.to)
                .map(|&to| self.hosts.iter().filter_map(|g| g.shown.get(&(sender, id, to))).sum::<u64>())
                .unwrap_or(0);
            messages.sent += 1;
            messages.acknowledged += u64::from(t.acknowledged);
            messages.delivered += u64::from(shown > 0);
            messages.duplicated += shown.saturating_sub(1);
            messages.lost += u64::from(t.acknowledged && shown == 0);
        }
        let trace_hash = if self.trace.is_on() { format!("{:016x}", self.trace.hash()) } else { String::new() };
        let all_peers = self.hosts.iter().flat_map(|g| &g.peers);
        let peers = all_peers
            .clone()
            .enumerate()
            .map(|(i, p)| PeerReport {
                name: p.name.clone(),
                logged_in: p.client().is_logged_in(),
                transport: p.client().transport().name().to_string(),
                tail_drops: TailDrops { up: p.up_link().tail_drops(), down: self.network.downlink(i).tail_drops() },
            })
            .collect();
        let server = self.network.tcp.counts;
        let mut streams = Streams {
            accepted: server.accepted,
            retransmissions: server.retransmissions,
            dropped: server.dropped,
            overflowed: server.overflowed,
            ..Streams::default()
        };
        for p in all_peers {
            streams.opened += p.tcp.opened;
            streams.failed += p.tcp.failed;
            streams.retransmissions += p.tcp.retransmissions;
        }
        let files = self.files();
        Report { seed: self.seed, trace_hash, connections, messages, peers, streams, files }
    }
}

/// Hands every datagram the parts sent each other over to its recipient.
fn hand_over(groups: &mut [&mut Hosts], network: &mut Network) {
    for (g, group) in groups.iter_mut().enumerate() {
        group.outbox.hand_over(&mut network.inboxes[g]);
        network.outboxes[g].hand_over(&mut group.inbox);
    }
}

/// Takes every part's new trace lines in, in part order.
fn take_in(trace: &mut Trace, groups: &mut [&mut Hosts], network: &mut Network) {
    let mut lines: Parts<&mut trace::Lines> = groups.iter_mut().map(|g| &mut g.lines).collect();
    lines.push(&mut network.lines);
    trace.take_in(&mut lines);
}

/// One item per part of the world, held inline: the engine gathers them
/// once per window, and a small world's window holds only a few events.
type Parts<T> = SmallVec<[T; HOST_GROUPS + 1]>;

/// One part of the world as a task of a window.
enum Task<'a> {
    Network(&'a mut Network),
    Hosts(&'a mut Hosts),
}

impl RunTo for Task<'_> {
    fn run_to(&mut self, end: Duration) {
        match self {
            Task::Network(network) => network.run_to(end),
            Task::Hosts(group) => group.run_to(end),
        }
    }
}

/// The network and the groups of hosts among a window's tasks.
fn split_tasks<'b>(tasks: &'b mut [&mut Task<'_>]) -> (&'b mut Network, Parts<&'b mut Hosts>) {
    let mut network = None;
    let mut groups = Parts::new();
    for task in tasks.iter_mut() {
        match &mut **task {
            Task::Network(n) => network = Some(&mut **n),
            Task::Hosts(g) => groups.push(&mut **g),
        }
    }
    (network.expect("the network is always a task"), groups)
}

/// The bytes a packet takes on a link: a UDP datagram with its IPv4 and
/// UDP headers (28 bytes), a TCP segment's data with its IPv4 and TCP
/// headers (40).
fn wire_size(p: &Packet) -> usize {
    if p.is_tcp() {
        p.payload.len().saturating_sub(tcp::SEGMENT_HEADER) + tcp::WIRE_OVERHEAD
    } else {
        p.payload.len() + 28
    }
}

/// Why a link delivered no copy of a packet, for its trace line: its
/// interface queue was full (a tail drop), or else the link lost it.
fn lost_why(arrivals: &Arrivals) -> &'static str {
    if arrivals.tail_dropped() {
        "queue full, dropped"
    } else {
        "lost"
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
    describe::write_transmit(line, &t.payload, t.plaintext.as_deref())
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
            "punch" => config.punch = boolean()?,
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
                     discovery_timeout, opener_ttl, punch, skip_openers, probe_interval, punch_timeout, punch_retry, \
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
        assert!(std::mem::size_of::<Option<hosts::HostEvent>>() <= 64);
        assert!(std::mem::size_of::<Option<network::NetEvent>>() <= 64);
    }
}
