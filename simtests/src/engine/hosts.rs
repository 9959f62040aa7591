//! A group of peer hosts: each with its client, its sockets and its
//! uplink, and what the report tracks about them (connections and text
//! messages). The world's peers are split into a few groups of consecutive
//! peers (see `engine::HOST_GROUPS`), so that two threads can share them.
//!
//! A group runs the events that happen at its hosts (datagrams arriving,
//! client timers, the scenario's actions on a peer) and sends every datagram
//! a host transmits to the network, through the host's uplink. A host's TCP
//! connections to the server (the fallback where UDP is blocked) are its
//! too: `streams`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use punchline_core::client::{Client, ClientEvent, PathKind};
use punchline_core::nat::Strategy;
use punchline_core::wire::frame::{CloseReason, MessageId, SessionId};
use punchline_core::{Machine, SocketId, Transmit};

use super::inbox::{Outbox, Part, Pending};
use super::network::NetEvent;
use super::parallel::RunTo;
use super::parcel::Parcel;
use super::trace::Lines;
use super::views::{PathView, SessionView};
use super::{datagram_line, index, lost_why, Arrow, Names, DEFAULT_TTL};
use crate::addr::Addr;
use crate::describe;
use crate::link::Link;
use crate::nat::Packet;
use crate::scenario::{Action, Target};

mod files;
mod streams;

pub(super) use files::report as file_report;
pub(crate) use streams::StreamCounts;

/// First port the simulator gives a peer's extra sockets.
const FIRST_EXTRA_PORT: u16 = 40000;

/// An event of a group of hosts. Peers are numbered within the group.
#[derive(Debug)]
pub(super) enum HostEvent {
    /// A datagram reaches peer host `i`.
    ToPeer(u32, Parcel),
    /// Peer `i`'s client deadline.
    Timer(u32),
    /// Peer `i`'s TCP retransmission deadline.
    TcpTimer(u32),
    /// The scenario's `i`-th event (its part at the hosts).
    Scheduled(u32),
}

pub(super) struct PeerHost {
    pub(super) name: String,
    pub(super) addr: IpAddr,
    /// The NAT the host sits behind (None: on the internet).
    pub(super) behind: Option<usize>,
    up: Link,
    client: Client,
    timer: Option<Duration>,
    sockets: super::sockets::Sockets,
    next_port: u16,
    /// The next id of a socket or a TCP connection (one counter, so they
    /// never collide).
    next_socket: u32,
    pub(super) sent: u64,
    pub(super) probes: u64,
    /// TCP connections to the server: opening, open, or closing.
    streams: Vec<streams::HostStream>,
    next_tcp_port: u16,
    /// The TCP retransmission deadline the queue holds an event for.
    tcp_timer: Option<Duration>,
    pub(super) tcp: StreamCounts,
    /// UDP to and from the host is dropped (`block_udp`).
    udp_blocked: bool,
    /// Files sent and received.
    pub(super) files: files::PeerFiles,
}

impl PeerHost {
    pub(super) fn new(name: String, addr: IpAddr, behind: Option<usize>, up: Link, client: Client) -> PeerHost {
        PeerHost {
            name,
            addr,
            behind,
            up,
            client,
            timer: None,
            sockets: super::sockets::Sockets::new(SocketId(0), 4000),
            next_port: FIRST_EXTRA_PORT,
            next_socket: 1,
            sent: 0,
            probes: 0,
            streams: Vec::new(),
            next_tcp_port: streams::FIRST_TCP_PORT,
            tcp_timer: None,
            tcp: StreamCounts::default(),
            udp_blocked: false,
            files: files::PeerFiles::default(),
        }
    }
}

impl PeerHost {
    /// The host's uplink.
    pub(super) fn up_link(&self) -> &Link {
        &self.up
    }

    /// The host's client.
    pub(super) fn client(&self) -> &Client {
        &self.client
    }
}

/// One connection a peer started, as the report tells it.
pub(super) struct ConnectionState {
    /// The peer that started it (its index in the world).
    pub(super) from: usize,
    /// The scenario event that started it: connections are reported in the
    /// order they started, the scenario's order at the same instant.
    pub(super) event: usize,
    pub(super) to: String,
    pub(super) started: Duration,
    pub(super) session: Option<SessionId>,
    pub(super) connect_at: Option<Duration>,
    pub(super) direct_at: Option<Duration>,
    pub(super) failed: bool,
    pub(super) strategy: Option<Strategy>,
    pub(super) path: Option<PathKind>,
    closed: bool,
}

impl ConnectionState {
    fn new(from: usize, event: usize, to: String, started: Duration) -> Self {
        ConnectionState {
            from,
            event,
            to,
            started,
            session: None,
            connect_at: None,
            direct_at: None,
            failed: false,
            strategy: None,
            path: None,
            closed: false,
        }
    }

    /// Whether the connection ended without a session (or never got one).
    pub(super) fn never_opened(&self) -> bool {
        self.failed || self.session.is_none()
    }
}

/// One text message's fate at its sender (its recipient counts what it
/// shows in [`Hosts::shown`]).
pub(super) struct TextState {
    /// The recipient's name.
    pub(super) to: String,
    pub(super) acknowledged: bool,
}

/// What a group of hosts is built from.
pub(super) struct GroupParts {
    /// The group's part and the network's (see [`Part`]).
    pub(super) part: Part,
    pub(super) network: Part,
    /// The world's index of the group's first peer.
    pub(super) first: usize,
    pub(super) epoch: Instant,
    /// The run's seed (files' content grows from it).
    pub(super) seed: u64,
    pub(super) peers: Vec<PeerHost>,
    /// The world's peer index by name, and NAT index by name.
    pub(super) peer_names: Names,
    pub(super) nat_names: Names,
    /// The scenario's events, by index.
    pub(super) actions: Arc<[Action]>,
    /// The server's addresses, to label arrows.
    pub(super) server_addrs: Vec<SocketAddr>,
    /// Room for pending events in each of the group's queues.
    pub(super) events: usize,
}

/// A group of peer hosts.
pub(super) struct Hosts {
    /// This group's part (see [`Part`]), and the network's.
    part: Part,
    network: Part,
    /// The world's index of this group's first peer: the group's peer `i`
    /// is the world's `first + i`.
    pub(super) first: usize,
    epoch: Instant,
    /// The run's seed.
    seed: u64,
    now: Duration,
    queue: Pending<HostEvent>,
    pub(super) peers: Vec<PeerHost>,
    /// The scenario's events, by index (only those with a part here are
    /// ever scheduled).
    actions: Arc<[Action]>,
    /// The server's addresses, to label arrows.
    server_addrs: Vec<SocketAddr>,
    pub(super) connections: Vec<ConnectionState>,
    /// Every session of this group's peers as each peer sees it, by (the
    /// peer's world index, session id): a session's two members may be in
    /// different groups, and the report joins their views.
    pub(super) views: BTreeMap<(usize, SessionId), SessionView>,
    /// For each peer, the indices in `connections` of those it started, in
    /// order: finding a connection costs its peer's few, not every host's.
    connections_of: Vec<Vec<usize>>,
    /// The world's peer index by name (the first peer of a name, as the
    /// parser rejects duplicates).
    pub(super) peer_names: Names,
    /// NAT index by name, the first of a name (the parser refuses others).
    nat_names: Names,
    /// Text messages this group's peers sent, by (sender's world index, id).
    pub(super) texts: BTreeMap<(usize, MessageId), TextState>,
    /// Times this group's peers showed a text, by (sender's world index,
    /// id, recipient's world index).
    pub(super) shown: BTreeMap<(usize, MessageId, usize), u64>,
    /// Datagrams for the network.
    pub(super) outbox: Outbox<NetEvent>,
    /// Datagrams the network handed over, not yet queued.
    pub(super) inbox: Vec<(Duration, HostEvent)>,
    pub(super) lines: Lines,
    /// Packet events this group ran (datagrams reaching a peer).
    pub(super) packet_events: u64,
}

impl Hosts {
    pub(super) fn new(parts: GroupParts) -> Hosts {
        let n = parts.peers.len();
        Hosts {
            part: parts.part,
            network: parts.network,
            first: parts.first,
            epoch: parts.epoch,
            seed: parts.seed,
            now: Duration::ZERO,
            queue: Pending::new([parts.part, parts.network], parts.events),
            peers: parts.peers,
            actions: parts.actions,
            server_addrs: parts.server_addrs,
            connections: Vec::new(),
            views: BTreeMap::new(),
            connections_of: vec![Vec::new(); n],
            peer_names: parts.peer_names,
            nat_names: parts.nat_names,
            texts: BTreeMap::new(),
            shown: BTreeMap::new(),
            outbox: Outbox::new(),
            inbox: Vec::new(),
            lines: Lines::new(),
            packet_events: 0,
        }
    }

    /// Schedules the scenario's `i`-th event here.
    pub(super) fn schedule_action(&mut self, at: Duration, i: usize) {
        self.queue.push_scenario(at, HostEvent::Scheduled(index(i)));
    }

    /// Takes in the datagrams the network handed over, in its order.
    pub(super) fn receive(&mut self) {
        for (at, event) in self.inbox.drain(..) {
            self.queue.push(self.network, at, event);
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

    /// Lets every peer send what its client has queued since it was built.
    pub(super) fn start(&mut self) {
        for p in 0..self.peers.len() {
            self.drain_peer(p);
        }
    }

    fn instant(&self) -> Instant {
        self.epoch + self.now
    }

    fn schedule(&mut self, at: Duration, event: HostEvent) {
        self.queue.push(self.part, at, event);
    }

    fn process(&mut self, event: HostEvent) {
        match event {
            HostEvent::ToPeer(i, p) => {
                self.packet_events += 1;
                self.deliver_to_peer(i as usize, p.into());
            }
            HostEvent::Timer(i) => self.fire_timer(i as usize),
            HostEvent::TcpTimer(i) => self.fire_tcp_timer(i as usize),
            HostEvent::Scheduled(i) => self.scheduled(i as usize),
        }
    }

    fn fire_timer(&mut self, p: usize) {
        if self.peers[p].timer != Some(self.now) {
            return;
        }
        let now = self.instant();
        self.peers[p].timer = None;
        self.peers[p].client.handle_timeout(now);
        self.drain_peer(p);
    }

    fn scheduled(&mut self, i: usize) {
        let action = self.actions[i].clone();
        let now = self.instant();
        match action {
            Action::Connect { peer, to } => {
                let p = self.peer_index(&peer);
                self.lines.record(self.now, format_args!("event: {peer} connects to {to}"));
                self.connections_of[p].push(self.connections.len());
                self.connections.push(ConnectionState::new(self.first + p, i, to.clone(), self.now));
                if let Err(e) = self.peers[p].client.connect(now, &to) {
                    self.lines.record(self.now, format_args!("{peer}: connect refused: {e}"));
                    self.connections.last_mut().expect("just pushed").failed = true;
                }
                self.drain_peer(p);
            }
            Action::Disconnect { peer, from } => {
                let p = self.peer_index(&peer);
                self.lines.record(self.now, format_args!("event: {peer} disconnects from {from}"));
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
                self.lines.record(self.now, format_args!("event: {peer} sends {} bytes of text to {to}", text.len()));
                match self.peers[p].client.send_text(now, &to, &text) {
                    Ok(id) => {
                        self.lines.record(self.now, format_args!("{peer}: text {id} to {to}"));
                        self.texts.insert((self.first + p, id), TextState { to, acknowledged: false });
                    }
                    Err(e) => self.lines.record(self.now, format_args!("{peer}: text refused: {e}")),
                }
                self.drain_peer(p);
            }
            Action::SendFile { peer, to, name, size } => {
                let p = self.peer_index(&peer);
                self.send_file(p, i, to, name, size);
            }
            // The network cuts and restores the downlink at the same
            // instant.
            Action::Partition { peer } => {
                let p = self.peer_index(&peer);
                self.lines.record(self.now, format_args!("event: {peer}'s link is cut"));
                self.peers[p].up.set_partitioned(true);
            }
            Action::Heal { peer } => {
                let p = self.peer_index(&peer);
                self.lines.record(self.now, format_args!("event: {peer}'s link is restored"));
                self.peers[p].up.set_partitioned(false);
            }
            // The network re-indexes its segments at the same instant.
            Action::MoveTo { peer, nat } => {
                let p = self.peer_index(&peer);
                self.lines.record(self.now, format_args!("event: {peer} moves behind {nat}"));
                self.peers[p].behind = Some(*self.nat_names.get(&nat).expect("validated by the parser"));
            }
            // The network drops UDP on the downlink from the same instant.
            Action::BlockUdp { target: Target::Peer(peer) } | Action::UnblockUdp { target: Target::Peer(peer) } => {
                let p = self.peer_index(&peer);
                let block = matches!(self.actions[i], Action::BlockUdp { .. });
                let verb = if block { "blocked" } else { "unblocked" };
                self.lines.record(self.now, format_args!("event: {peer}'s UDP is {verb} (TCP passes)"));
                self.peers[p].udp_blocked = block;
            }
            // Only the network takes part.
            Action::NatReboot { .. }
            | Action::ServerDown
            | Action::ServerUp
            | Action::ServerRestart
            | Action::BlockUdp { target: Target::Nat(_) }
            | Action::UnblockUdp { target: Target::Nat(_) } => {}
        }
    }

    /// The group's index of the peer `name` (the scenario schedules a
    /// peer's events in its own group).
    fn peer_index(&self, name: &str) -> usize {
        self.peer_names.get(name).expect("validated by the parser") - self.first
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
        if !self.peers[i].files.outgoing.is_empty() {
            self.file_progress(i);
        }
        // A deadline already past fires now; it is stored as now so the
        // timer event recognises it (else the peer would never wake again).
        let at = self.peers[i].client.poll_timeout().map(|t| t.saturating_duration_since(self.epoch).max(self.now));
        if let Some(at) = at {
            if self.peers[i].timer != Some(at) {
                self.peers[i].timer = Some(at);
                self.schedule(at, HostEvent::Timer(index(i)));
            }
        }
    }

    fn peer_transmit(&mut self, i: usize, t: Transmit) {
        if !self.peers[i].streams.is_empty() && self.stream_transmit(i, &t) {
            return;
        }
        let peer = &mut self.peers[i];
        let Some(port) = peer.sockets.port(t.socket) else { return };
        peer.sent += 1;
        // A probe travels sealed end to end: the client's plaintext says
        // what it is.
        if t.plaintext.as_deref().unwrap_or(&t.payload).first() == Some(&punchline_core::wire::frame::tag::PROBE) {
            peer.probes += 1;
        }
        let src = SocketAddr::new(peer.addr, port);
        let name = &self.peers[i].name;
        self.lines.record_with(self.now, |line| datagram_line(line, name, src, &t));
        self.arrow(i, t.destination, &t.payload, t.plaintext.as_deref());
        let size = t.payload.len() + 28;
        let p = Packet::udp(src, t.destination, t.ttl.unwrap_or(DEFAULT_TTL), t.payload);
        if self.peers[i].udp_blocked {
            let name = &self.peers[i].name;
            self.lines
                .record(self.now, format_args!("{name}: UDP blocked, dropped {} -> {}", Addr(p.src), Addr(p.dst)));
            return;
        }
        let arrivals = self.peers[i].up.transmit(self.now, size);
        if arrivals.is_empty() {
            let (name, why) = (&self.peers[i].name, lost_why(&arrivals));
            self.lines.record(self.now, format_args!("link {name}: {why} {} -> {}", Addr(p.src), Addr(p.dst)));
        }
        let behind = self.peers[i].behind;
        let event = |p| match behind {
            Some(n) => NetEvent::FromInside(index(n), p),
            None => NetEvent::Internet(p),
        };
        self.outbox.push_copies(&arrivals, p, event);
    }

    fn peer_event(&mut self, i: usize, e: ClientEvent) {
        let now = self.instant();
        if self.lines.is_on() {
            let text = describe::event(&e);
            self.lines.record(self.now, format_args!("{}: {text}", self.peers[i].name));
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
            ClientEvent::OpenStream { request, to } => self.open_stream(i, *request, *to),
            ClientEvent::CloseStream { conn } => self.close_stream(i, *conn),
            ClientEvent::TextAcked { id, .. } => {
                if let Some(t) = self.texts.get_mut(&(self.first + i, *id)) {
                    t.acknowledged = true;
                }
            }
            // The sender may be in another group: the report matches
            // this count with the text the sender sent.
            ClientEvent::TextReceived { from, id, .. } => {
                if let Some(&sender) = self.peer_names.get(from) {
                    *self.shown.entry((sender, *id, self.first + i)).or_default() += 1;
                }
            }
            ClientEvent::FileOffered { .. }
            | ClientEvent::FileAccepted { .. }
            | ClientEvent::FileRead { .. }
            | ClientEvent::FileWrite { .. }
            | ClientEvent::FileCompleted { .. }
            | ClientEvent::FileFailed { .. } => self.file_event(i, &e),
            _ => {
                self.file_paths(i, &e);
                self.track_connection(i, &e);
            }
        }
    }

    /// Records peer `i`'s view of its sessions (either role).
    fn track_view(&mut self, i: usize, e: &ClientEvent) {
        let now = self.now;
        let key = |session: &SessionId| (self.first + i, *session);
        let (session, view) = match e {
            ClientEvent::SessionOpened { session, .. } => {
                self.views.insert(key(session), SessionView::opened(now));
                return;
            }
            ClientEvent::PathDirect { session, .. } => (session, PathView::Direct),
            ClientEvent::PathFellBack { session } => (session, PathView::Relay),
            ClientEvent::SessionClosed { session, .. } => (session, PathView::Closed),
            _ => return,
        };
        if let Some(v) = self.views.get_mut(&key(session)) {
            match e {
                ClientEvent::PathFellBack { .. } => v.fell_back(now),
                _ => v.change(now, view),
            }
        }
    }

    fn track_connection(&mut self, i: usize, e: &ClientEvent) {
        self.track_view(i, e);
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
            ClientEvent::StrategyChanged { session, strategy } => {
                if let Some(c) = self.connection_mut(i, *session) {
                    c.strategy = Some(*strategy);
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
                    c.path = Some(PathKind::Relay);
                }
            }
            ClientEvent::SessionClosed { session, reason } => {
                if let Some(c) = self.connection_mut(i, *session) {
                    c.closed = true;
                    if !matches!(reason, CloseReason::Local) {
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

    fn deliver_to_peer(&mut self, i: usize, p: Packet) {
        if p.is_tcp() {
            return self.deliver_segment(i, p);
        }
        let socket = self.peers[i].sockets.socket(p.dst.port());
        let Some(socket) = socket.filter(|_| p.dst.ip() == self.peers[i].addr) else {
            self.lines.record(self.now, format_args!("{}: no socket for {}", self.peers[i].name, p.dst));
            return;
        };
        let now = self.instant();
        self.peers[i].client.handle_datagram(now, socket, p.src, &p.payload);
        self.drain_peer(i);
    }

    /// Keeps a datagram sent by peer `from` for the Mermaid diagram, when
    /// asked to.
    fn arrow(&mut self, from: usize, to: SocketAddr, payload: &[u8], plaintext: Option<&[u8]>) {
        if !self.lines.keeps_arrows() {
            return;
        }
        let label = describe::transmit(payload, plaintext);
        let from = self.peers[from].name.clone();
        let to = if self.server_addrs.contains(&to) { "server".to_string() } else { to.to_string() };
        self.lines.push_arrow(Arrow { at: self.now, from, to, label });
    }
}

impl RunTo for Hosts {
    fn run_to(&mut self, end: Duration) {
        self.receive();
        while self.step(end) {}
    }
}
