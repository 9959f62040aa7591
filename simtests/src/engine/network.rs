//! The network part of the world: the NATs, the public internet with its
//! routers, the server, and every peer's downlink.
//!
//! It runs the events that happen in the network (a datagram reaching a
//! NAT or the internet, the server's timer, the scenario's actions on NATs
//! and links) and sends every datagram bound for a peer host to its group
//! of hosts, through that host's downlink. The server's TCP connections are
//! its too: `streams`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use punchline_core::server::{Server, ServerConfig, ServerEvent};
use punchline_core::{Machine, Transmit};

use super::hosts::HostEvent;
use super::inbox::{Outbox, Part, Pending};
use super::parallel::RunTo;
use super::parcel::Parcel;
use super::segments::{Node, SegmentIndex};
use super::store::{Next, SimStore};
use super::trace::Lines;
use super::{datagram_line, index, Arrow, Names, DEFAULT_TTL};
use crate::addr::Addr;
use crate::describe;
use crate::link::Link;
use crate::nat::{Nat, NatDecision, Packet};
use crate::rng::Rng;
use crate::scenario::{Action, Target};

mod streams;

pub use streams::{WRITE_HARD_LIMIT, WRITE_SOFT_LIMIT};

/// An event of the network.
#[derive(Debug)]
pub(super) enum NetEvent {
    /// A packet reaches a NAT from its inside.
    FromInside(u32, Parcel),
    /// A packet reaches a NAT's public side.
    FromOutside(u32, Parcel),
    /// A packet is on the public internet.
    Internet(Parcel),
    /// The server's deadline.
    ServerTimer,
    /// The server's TCP retransmission deadline.
    TcpTimer,
    /// The server store's commit in flight ends.
    StoreCommit,
    /// The scenario's `i`-th event (its part in the network).
    Scheduled(u32),
}

/// Where a peer host sits, as routing needs it.
pub(super) struct HostPlace {
    pub(super) name: String,
    pub(super) addr: IpAddr,
    pub(super) behind: Option<usize>,
    /// UDP to the host is dropped (`block_udp`).
    pub(super) udp_blocked: bool,
}

/// The network part of the world.
pub(super) struct Network {
    /// The network's part: the last (see [`Part`]).
    part: Part,
    epoch: Instant,
    now: Duration,
    queue: Pending<NetEvent>,
    pub(super) server: Server,
    /// What the server was built from, to build it again on a restart.
    server_config: ServerConfig,
    /// The seeds of restarted servers: the `k`-th restart's is its
    /// `fork(k)`'s first number (a real server seeds from the OS, so a
    /// restarted one draws new ids, never the old ones again).
    server_seeds: Rng,
    /// Restarts so far.
    server_restarts: u64,
    /// The server's link is cut (`server_down`).
    server_down: bool,
    server_timer: Option<Duration>,
    store: SimStore,
    pub(super) nats: Vec<Nat>,
    /// For each NAT, the NAT its public side sits behind (None: the internet).
    nat_outer: Vec<Option<usize>>,
    /// NAT index by name, the first of a name (the parser refuses others).
    nat_names: Names,
    /// Every peer host's place, by peer index.
    hosts: Vec<HostPlace>,
    /// Peer index by name.
    peer_names: Names,
    /// Every peer's downlink, by peer index.
    down: Vec<Link>,
    internet_hops: u8,
    /// Reused buffer for the decisions of one NAT call.
    nat_log: Vec<NatDecision>,
    /// Who sits directly on each network segment: segment 0 is the public
    /// internet, `n + 1` the inside of NAT `n`.
    on_segment: SegmentIndex,
    /// The scenario's events, by index (only those with a part here are
    /// ever scheduled).
    actions: Arc<[Action]>,
    /// Peers per group of hosts: peer `i` is peer `i % group_size` of
    /// group `i / group_size`.
    group_size: usize,
    /// Datagrams for each group of hosts (peers numbered in the group).
    pub(super) outboxes: Vec<Outbox<HostEvent>>,
    /// Datagrams each group of hosts handed over, not yet queued.
    pub(super) inboxes: Vec<Vec<(Duration, NetEvent)>>,
    pub(super) lines: Lines,
    /// Packet events the network ran: datagrams reaching a NAT or the
    /// internet, and datagrams (and TCP segments) the server sent.
    pub(super) packet_events: u64,
    /// The server's TCP connections.
    pub(super) tcp: streams::ServerStreams,
}

/// What the network is built from.
pub(super) struct NetworkParts {
    pub(super) epoch: Instant,
    pub(super) server: Server,
    pub(super) server_config: ServerConfig,
    pub(super) server_seeds: Rng,
    /// How long the server's store takes to commit.
    pub(super) store_latency: Duration,
    pub(super) nats: Vec<Nat>,
    pub(super) nat_names: Names,
    pub(super) peer_names: Names,
    pub(super) hosts: Vec<HostPlace>,
    pub(super) down: Vec<Link>,
    pub(super) internet_hops: u8,
    pub(super) actions: Arc<[Action]>,
    /// Room for pending events in each of the network's queues.
    pub(super) events: usize,
    /// The groups of hosts (parts `0..groups`) and peers per group.
    pub(super) groups: usize,
    pub(super) group_size: usize,
}

impl Network {
    pub(super) fn new(parts: NetworkParts) -> Network {
        // Connections are named above every socket of the server's.
        let first_conn = parts.server.sockets().iter().map(|(id, _)| id.0 + 1).max().unwrap_or(0);
        let mut network = Network {
            part: parts.groups,
            epoch: parts.epoch,
            now: Duration::ZERO,
            queue: Pending::new(0..=parts.groups, parts.events),
            server: parts.server,
            server_config: parts.server_config,
            server_seeds: parts.server_seeds,
            server_restarts: 0,
            server_down: false,
            server_timer: None,
            store: SimStore::new(parts.store_latency),
            nats: parts.nats,
            nat_outer: Vec::new(),
            nat_names: parts.nat_names,
            hosts: parts.hosts,
            peer_names: parts.peer_names,
            down: parts.down,
            internet_hops: parts.internet_hops,
            nat_log: Vec::new(),
            on_segment: SegmentIndex::default(),
            actions: parts.actions,
            group_size: parts.group_size,
            outboxes: (0..parts.groups).map(|_| Outbox::new()).collect(),
            inboxes: (0..parts.groups).map(|_| Vec::new()).collect(),
            lines: Lines::new(),
            packet_events: 0,
            tcp: streams::ServerStreams::new(first_conn),
        };
        network.index_topology();
        network
    }

    /// Peer `i`'s downlink.
    pub(super) fn downlink(&self, i: usize) -> &Link {
        &self.down[i]
    }

    /// Schedules the scenario's `i`-th event here.
    pub(super) fn schedule_action(&mut self, at: Duration, i: usize) {
        self.queue.push_scenario(at, NetEvent::Scheduled(index(i)));
    }

    /// Takes in the datagrams the groups of hosts handed over, each in its
    /// order.
    pub(super) fn receive(&mut self) {
        for (part, inbox) in self.inboxes.iter_mut().enumerate() {
            for (at, event) in inbox.drain(..) {
                self.queue.push(part, at, event);
            }
        }
    }

    /// The time of the next event here.
    pub(super) fn next_at(&self) -> Option<Duration> {
        self.queue.next_at()
    }

    /// Runs the next event if it is due at or before `end`; false if none is.
    pub(super) fn step(&mut self, end: Duration) -> bool {
        let Some((at, event)) = self.queue.pop_until(end) else { return false };
        self.now = at;
        self.process(event);
        true
    }

    /// Lets the server send what it has queued since it was built.
    pub(super) fn start(&mut self) {
        self.drain_server();
    }

    /// Stops recording NAT decisions (the run skips its trace).
    pub(super) fn skip_nat_decisions(&mut self) {
        for nat in &mut self.nats {
            nat.record_decisions(false);
        }
    }

    fn instant(&self) -> Instant {
        self.epoch + self.now
    }

    fn schedule(&mut self, at: Duration, event: NetEvent) {
        self.queue.push(self.part, at, event);
    }

    /// The (empty) buffer a NAT call logs its decisions into.
    fn take_nat_log(&mut self) -> Vec<NatDecision> {
        std::mem::take(&mut self.nat_log)
    }

    /// Traces the decisions of one NAT call and keeps the buffer for the next.
    fn log_nat(&mut self, mut decisions: Vec<NatDecision>) {
        for d in decisions.drain(..) {
            self.lines.record_with(self.now, |line| d.write_to(line));
        }
        self.nat_log = decisions;
    }

    fn process(&mut self, event: NetEvent) {
        match event {
            NetEvent::FromInside(n, p) => {
                self.packet_events += 1;
                self.nat_from_inside(n as usize, p.into());
            }
            NetEvent::FromOutside(n, p) => {
                self.packet_events += 1;
                self.nat_from_outside(n as usize, p.into());
            }
            NetEvent::Internet(p) => {
                self.packet_events += 1;
                self.internet(p.into());
            }
            NetEvent::ServerTimer => self.fire_server_timer(),
            NetEvent::TcpTimer => self.fire_server_tcp_timer(),
            NetEvent::StoreCommit => {
                let now = self.instant();
                for completion in self.store.commit_ended() {
                    self.server.handle_store_completion(now, completion);
                }
                self.drain_server();
            }
            NetEvent::Scheduled(i) => self.scheduled(i as usize),
        }
    }

    fn fire_server_timer(&mut self) {
        if self.server_timer != Some(self.now) {
            return;
        }
        self.server_timer = None;
        let now = self.instant();
        self.server.handle_timeout(now);
        self.drain_server();
    }

    fn scheduled(&mut self, i: usize) {
        match &self.actions[i] {
            // The hosts traces these and cuts or restores the uplink at
            // the same instant.
            Action::Partition { peer } | Action::Heal { peer } => {
                let cut = matches!(self.actions[i], Action::Partition { .. });
                let p = *self.peer_names.get(peer).expect("validated by the parser");
                self.down[p].set_partitioned(cut);
            }
            Action::NatReboot { nat } => {
                let n = *self.nat_names.get(nat).expect("validated by the parser");
                self.lines.record(self.now, format_args!("event: NAT {nat} reboots"));
                self.nats[n].reboot();
            }
            // The hosts traces the move and routes the host's uplink
            // to its new NAT at the same instant.
            Action::MoveTo { peer, nat } => {
                let p = *self.peer_names.get(peer).expect("validated by the parser");
                self.hosts[p].behind = Some(*self.nat_names.get(nat).expect("validated by the parser"));
                self.index_topology();
            }
            Action::ServerDown => {
                self.lines.record(self.now, format_args!("event: the server's link is cut"));
                self.server_down = true;
            }
            Action::ServerUp => {
                self.lines.record(self.now, format_args!("event: the server's link is restored"));
                self.server_down = false;
            }
            Action::ServerRestart => self.restart_server(),
            Action::BlockUdp { target } | Action::UnblockUdp { target } => {
                let block = matches!(self.actions[i], Action::BlockUdp { .. });
                match target {
                    // The hosts traces it and drops the uplink's UDP at the
                    // same instant.
                    Target::Peer(peer) => {
                        let p = *self.peer_names.get(peer).expect("validated by the parser");
                        self.hosts[p].udp_blocked = block;
                    }
                    Target::Nat(nat) => {
                        let n = *self.nat_names.get(nat).expect("validated by the parser");
                        let verb = if block { "blocks" } else { "stops blocking" };
                        self.lines.record(self.now, format_args!("event: NAT {nat} {verb} UDP (TCP passes)"));
                        self.nats[n].set_blocks_udp(block);
                    }
                }
            }
            // Only the hosts takes part.
            Action::Connect { .. } | Action::Disconnect { .. } | Action::SendText { .. } | Action::SendFile { .. } => {}
        }
    }

    /// The server crashes and starts again in the same instant: a new
    /// machine, same config, a new seed; the store keeps what it holds
    /// (see [`SimStore::crash`]). Its link stays as it was (a restart while
    /// the link is cut stays cut).
    fn restart_server(&mut self) {
        self.server_restarts += 1;
        let (orphaned, dropped) = self.store.crash();
        self.lines.record(
            self.now,
            format_args!(
                "event: the server restarts (memory lost, store kept; {orphaned} store request(s) in flight commit \
                 unanswered, {dropped} not yet submitted are lost)"
            ),
        );
        let mut config = self.server_config.clone();
        config.seed = self.server_seeds.fork(self.server_restarts).next_u64().into();
        self.server = Server::new(config, self.instant());
        self.reset_server_streams();
        // The old machine's deadline is no one's now.
        self.server_timer = None;
        self.drain_server();
    }

    fn drain_server(&mut self) {
        // The store first: with no latency its completions answer in this
        // instant, after what the server queued before asking, exactly as a
        // synchronous store call would have.
        loop {
            while let Some(request) = self.server.poll_store_request() {
                self.store.submit(request);
            }
            match self.store.next() {
                Next::Wait => break,
                Next::Done(completions) => {
                    let now = self.instant();
                    for completion in completions {
                        self.server.handle_store_completion(now, completion);
                    }
                }
                Next::CommitEndsIn(latency) => {
                    self.schedule(self.now + latency, NetEvent::StoreCommit);
                    break;
                }
            }
        }
        while let Some(t) = self.server.poll_transmit() {
            self.server_transmit(t);
        }
        while let Some(e) = self.server.poll_event() {
            self.lines.record(self.now, format_args!("server: {e:?}"));
            if let ServerEvent::CloseStream { conn } = e {
                self.server_close_stream(conn);
            }
        }
        let at = self.server.poll_timeout().map(|i| i.saturating_duration_since(self.epoch).max(self.now));
        if let Some(at) = at {
            if self.server_timer != Some(at) {
                self.server_timer = Some(at);
                self.schedule(at, NetEvent::ServerTimer);
            }
        }
    }

    fn server_transmit(&mut self, t: Transmit) {
        if self.server_stream_count() > 0 && self.server_stream_transmit(&t) {
            return;
        }
        let src = self.server.sockets().iter().find(|(id, _)| *id == t.socket).map(|(_, a)| *a);
        let Some(src) = src else { return };
        self.lines.record_with(self.now, |line| datagram_line(line, "server", src, &t));
        if self.server_down {
            self.lines
                .record(self.now, format_args!("server: link down, lost {} -> {}", Addr(src), Addr(t.destination)));
            return;
        }
        if self.lines.keeps_arrows() {
            let to = if self.is_server(t.destination) { "server".to_string() } else { t.destination.to_string() };
            let label = describe::transmit(&t.payload, t.plaintext.as_deref());
            self.lines.push_arrow(Arrow { at: self.now, from: "server".to_string(), to, label });
        }
        let p = Packet::udp(src, t.destination, t.ttl.unwrap_or(DEFAULT_TTL), t.payload);
        self.packet_events += 1;
        self.internet(p);
    }

    fn is_server(&self, addr: std::net::SocketAddr) -> bool {
        self.server.sockets().iter().any(|(_, a)| *a == addr)
    }

    /// A packet arrives at NAT `n` from inside.
    fn nat_from_inside(&mut self, n: usize, p: Packet) {
        // Hosts and NATs on the same private segment reach each other
        // without translation (host candidates).
        match self.node_on_segment(Some(n), p.dst.ip()) {
            Some(Node::Peer(target)) => self.down_link(target as usize, p),
            Some(Node::Nat(inner)) => self.schedule(self.now, NetEvent::FromOutside(inner, p.into())),
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
                self.lines.record(self.now, format_args!("nat {}: no host {} inside", self.nats[n].spec().name, p.dst))
            }
        }
    }

    /// The public internet: `internet_hops` routers, then the destination.
    fn internet(&mut self, mut p: Packet) {
        let hops = self.internet_hops;
        if p.ttl <= hops {
            self.lines.record(self.now, format_args!("internet: TTL {} expired {} -> {}", p.ttl, p.src, p.dst));
            return;
        }
        p.ttl -= hops;
        let server = self.server.sockets().iter().find(|(_, a)| *a == p.dst).map(|(id, _)| *id);
        if let Some(socket) = server {
            if self.server_down {
                let tcp = if p.is_tcp() { "tcp " } else { "" };
                self.lines
                    .record(self.now, format_args!("server: link down, lost {tcp}{} -> {}", Addr(p.src), Addr(p.dst)));
                return;
            }
            if p.is_tcp() {
                return self.server_segment(p);
            }
            let now = self.instant();
            self.server.handle_datagram(now, socket, p.src, &p.payload);
            self.drain_server();
            return;
        }
        match self.node_on_segment(None, p.dst.ip()) {
            Some(Node::Peer(target)) => self.down_link(target as usize, p),
            Some(Node::Nat(n)) => self.nat_from_outside(n as usize, p),
            None => self.lines.record(self.now, format_args!("internet: no route to {} (from {})", p.dst, p.src)),
        }
    }

    /// Sends a packet down peer `target`'s downlink, to its group of hosts.
    fn down_link(&mut self, target: usize, p: Packet) {
        let size = super::wire_size(&p);
        let tcp = if p.is_tcp() { "tcp " } else { "" };
        if self.hosts[target].udp_blocked && !p.is_tcp() {
            let name = &self.hosts[target].name;
            self.lines
                .record(self.now, format_args!("{name}: UDP blocked, dropped {} -> {}", Addr(p.src), Addr(p.dst)));
            return;
        }
        let arrivals = self.down[target].transmit(self.now, size);
        if arrivals.is_empty() {
            let (name, why) = (&self.hosts[target].name, super::lost_why(&arrivals));
            self.lines.record(self.now, format_args!("link {name}: {why} {tcp}{} -> {}", Addr(p.src), Addr(p.dst)));
        }
        let outbox = &mut self.outboxes[target / self.group_size];
        let target = index(target % self.group_size);
        outbox.push_copies(&arrivals, p, |p| HostEvent::ToPeer(target, p));
    }

    /// The peer with address `ip` directly on segment `segment` (None: the
    /// public internet), or else the NAT whose public side is there and
    /// owns `ip`.
    fn node_on_segment(&self, segment: Option<usize>, ip: IpAddr) -> Option<Node> {
        self.on_segment.get(segment_index(segment), ip)
    }

    /// Rebuilds the address indexes after the topology changed.
    fn index_topology(&mut self) {
        self.nat_outer = self
            .nats
            .iter()
            .map(|n| n.spec().behind.as_ref().map(|b| *self.nat_names.get(b).expect("validated by the parser")))
            .collect();
        // A later node with the same address on the same segment replaces
        // an earlier one of its kind, and a peer wins over a NAT (routing
        // has always tried peers first).
        let mut nodes = BTreeMap::new();
        for (i, n) in self.nats.iter().enumerate() {
            for ip in &n.spec().public_ips {
                nodes.insert((segment_index(self.nat_outer[i]), IpAddr::V4(*ip)), Node::Nat(index(i)));
            }
        }
        for (i, h) in self.hosts.iter().enumerate() {
            nodes.insert((segment_index(h.behind), h.addr), Node::Peer(index(i)));
        }
        self.on_segment = SegmentIndex::new(self.nats.len() + 1, &nodes);
    }
}

impl RunTo for Network {
    fn run_to(&mut self, end: Duration) {
        self.receive();
        while self.step(end) {}
    }
}

/// The index in `Network::on_segment` of a segment (None: the internet).
fn segment_index(segment: Option<usize>) -> usize {
    segment.map_or(0, |n| n + 1)
}
