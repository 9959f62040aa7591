//! An in-memory network for driving real core machines in tests.
//!
//! A virtual clock jumps to the next delivery or deadline. Hosts are one
//! `Server` and any number of `Client`s, each either public or behind a small
//! NAT stand-in that behaves like Linux `masquerade`: endpoint-independent
//! mapping that preserves ports, address-and-port-dependent filtering, and —
//! optionally — conntrack state left by unsolicited inbound packets that blocks
//! that 5-tuple for later outbound translation (DESIGN §3). The full NAT model
//! is the simulator's; this one is just enough to prove the core's behaviour.
#![allow(dead_code, unreachable_pub)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use punchline_core::client::{Client, ClientConfig, ClientEvent, FileDirection, FileId, FileSource};
use punchline_core::files::TreeBuilder;
use punchline_core::messaging::{MemoryStore, MessageId, MessageStore, StoreRequest};
use punchline_core::secure::{ChannelEnd, HelloSent, StaticKey};
use punchline_core::server::{Server, ServerConfig};
use punchline_core::wire::frame::files::{FileAbort, FileRefusal};
use punchline_core::wire::frame::Frame;
use punchline_core::{Machine, SocketId, Transmit};

mod files;
mod rng;
pub use files::Disk;
pub use rng::Rng;

pub const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)), 3478);
pub const ALT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 11)), 3479);
/// Routers between any two public addresses: a TTL-3 opener leaving a NAT
/// (TTL 2 after it) dies here.
pub const INTERNET_HOPS: u8 = 4;
pub const DEFAULT_TTL: u8 = 64;
const LAN_DELAY: Duration = Duration::from_millis(1);

#[derive(Clone, Debug)]
pub struct Packet {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub ttl: u8,
    pub payload: Vec<u8>,
    /// The frame inside a datagram of the client–server channel, as the
    /// sender's `Transmit::plaintext` showed it.
    pub plaintext: Option<Vec<u8>>,
}

impl Packet {
    /// The frame this packet carries: the one sealed inside, or the
    /// datagram itself.
    pub fn frame(&self) -> Option<Frame> {
        Frame::decode(self.plaintext.as_deref().unwrap_or(&self.payload)).ok()
    }
}

#[derive(Debug)]
enum Stage {
    /// Leaving a host behind NAT `nat`: translate.
    NatOut(usize),
    /// On the internet.
    Internet,
    /// Arrived at a public address.
    Arrive,
    /// Delivered to client `i`'s socket.
    Deliver(usize),
    /// Stream bytes reaching the server on its connection `conn`.
    StreamToServer(SocketId),
    /// Stream bytes reaching the client end of the server's connection
    /// `conn`.
    StreamToClient(SocketId),
    /// The client's connect for `request` completes as the server's `conn`.
    StreamConnected { client: usize, request: u32, conn: SocketId },
    /// The connect for `request` fails.
    StreamFailed { client: usize, request: u32 },
    /// The far end of the server's connection `conn` learns that it closed;
    /// `to_server` says which end that is.
    StreamClosed { conn: SocketId, to_server: bool },
}

/// A TCP connection between a client and the server, as the harness
/// carries it: reliable and ordered (each direction's bytes arrive one
/// latency later, in order), named `server_conn` at the server and
/// `client_conn` at the client.
#[derive(Debug)]
pub struct StreamLink {
    pub client: usize,
    pub client_conn: SocketId,
    /// The client end's address as the server sees it.
    pub remote: SocketAddr,
    pub open: bool,
    /// Bytes each way, for the tests: (to the server, to the client).
    pub bytes: (u64, u64),
    /// Droppable transmits the server queued to it.
    pub droppable: u64,
}

/// A NAT stand-in: see the module docs.
#[derive(Debug)]
pub struct StandInNat {
    pub public_ip: IpAddr,
    pub track_unsolicited: bool,
    /// (internal, destination) → external port.
    flows: BTreeMap<(SocketAddr, SocketAddr), u16>,
    /// external port → internal endpoint.
    owners: BTreeMap<u16, SocketAddr>,
    /// Unsolicited (remote, external port) pairs conntrack remembers.
    pub tracked: BTreeSet<(SocketAddr, u16)>,
    next_port: u16,
    pub filtered: u64,
}

impl StandInNat {
    fn new(public_ip: IpAddr, track_unsolicited: bool) -> Self {
        StandInNat {
            public_ip,
            track_unsolicited,
            flows: BTreeMap::new(),
            owners: BTreeMap::new(),
            tracked: BTreeSet::new(),
            next_port: 20000,
            filtered: 0,
        }
    }

    fn outbound(&mut self, p: &mut Packet) {
        let key = (p.src, p.dst);
        let port = match self.flows.get(&key) {
            Some(port) => *port,
            None => {
                // Endpoint-independent: reuse this endpoint's port toward any
                // destination, preferring its own port, unless conntrack holds
                // that 5-tuple for an unsolicited packet.
                let existing = self.owners.iter().find(|(_, o)| **o == p.src).map(|(port, _)| *port);
                let wanted = existing.unwrap_or(p.src.port());
                let usable = |port: u16| {
                    self.owners.get(&port).is_none_or(|o| *o == p.src) && !self.tracked.contains(&(p.dst, port))
                };
                let port = if usable(wanted) {
                    wanted
                } else {
                    loop {
                        self.next_port += 1;
                        if usable(self.next_port) {
                            break self.next_port;
                        }
                    }
                };
                self.owners.entry(port).or_insert(p.src);
                self.flows.insert(key, port);
                port
            }
        };
        p.src = SocketAddr::new(self.public_ip, port);
    }

    /// Returns the internal destination, or None when filtered.
    fn inbound(&mut self, p: &Packet) -> Option<SocketAddr> {
        let port = p.dst.port();
        let hit = self.flows.iter().find(|((_, dst), ext)| **ext == port && *dst == p.src).map(|((int, _), _)| *int);
        if hit.is_none() {
            self.filtered += 1;
            if self.track_unsolicited {
                self.tracked.insert((p.src, port));
            }
        }
        hit
    }

    /// Forgets every mapping (the NAT rebooted).
    pub fn reboot(&mut self) {
        self.flows.clear();
        self.owners.clear();
        self.tracked.clear();
    }
}

pub struct ClientHost {
    pub client: Client,
    pub ip: IpAddr,
    pub sockets: BTreeMap<SocketId, u16>,
    next_socket: u32,
    pub nat: Option<StandInNat>,
    pub events: Vec<(Duration, ClientEvent)>,
    pub sent: u64,
    /// Every time the client was woken for its deadline, and whether it
    /// sent or reported anything then.
    pub wakes: Vec<(Duration, bool)>,
    /// The host is gone: nothing it sends leaves, nothing reaches it.
    pub dead: bool,
    /// Its network drops UDP both ways (TCP passes).
    pub udp_blocked: bool,
    /// Its files.
    pub disk: Disk,
}

pub struct Harness {
    pub start: Instant,
    pub now: Instant,
    pub server: Server,
    pub clients: Vec<ClientHost>,
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    in_flight: BTreeMap<usize, (Stage, Packet)>,
    seq: u64,
    /// One-way delay between any two public addresses.
    pub latency: Duration,
    /// Drop every packet on the internet between two clients.
    pub drop_direct: bool,
    /// Extra delay on the server's session offers to a client.
    pub offer_delay: BTreeMap<usize, Duration>,
    /// Every transmit and event, for determinism checks.
    pub log: Vec<String>,
    /// Packets that crossed the internet between two clients.
    pub direct_packets: u64,
    /// Every datagram a client sent: (client, source socket's address, packet).
    pub captured: Vec<(usize, Packet)>,
    /// Every datagram the server sent.
    pub server_sent: Vec<Packet>,
    /// Probability that a packet crossing the internet is lost.
    pub loss: f64,
    /// Decides losses; seeded from the harness seed.
    loss_rng: Rng,
    /// The server is down: packets to it vanish, it is not driven.
    pub server_down: bool,
    /// The configuration the server was (and is re-)started with.
    pub server_config: ServerConfig,
    /// The server's store, driven the way a runtime drives it.
    pub store: Box<dyn MessageStore>,
    /// While true, the store's commit is "in flight": requests wait in
    /// `held` until [`Harness::release_store`].
    pub hold_store: bool,
    /// Requests waiting for a held commit.
    pub held: Vec<StoreRequest>,
    /// TCP connections by the server's name for them.
    pub streams: BTreeMap<SocketId, StreamLink>,
    next_conn: u32,
}

impl Harness {
    pub fn new(seed: u64) -> Self {
        let start = Instant::now();
        let mut config = ServerConfig::new(SERVER, Some(ALT));
        config.seed = seed.into();
        Harness {
            start,
            now: start,
            server: Server::new(config.clone(), start),
            server_config: config,
            store: Box::new(MemoryStore::new()),
            hold_store: false,
            held: Vec::new(),
            loss: 0.0,
            loss_rng: Rng::new(seed).fork(0x1055),
            server_down: false,
            clients: Vec::new(),
            queue: BinaryHeap::new(),
            in_flight: BTreeMap::new(),
            seq: 0,
            latency: Duration::from_millis(10),
            drop_direct: false,
            offer_delay: BTreeMap::new(),
            log: Vec::new(),
            direct_packets: 0,
            captured: Vec::new(),
            server_sent: Vec::new(),
            streams: BTreeMap::new(),
            next_conn: 1 << 20,
        }
    }

    /// Blocks (or unblocks) every UDP datagram to and from client `i`.
    pub fn block_udp(&mut self, i: usize, blocked: bool) {
        self.clients[i].udp_blocked = blocked;
    }

    /// The open connection of client `i`, by the server's name for it.
    pub fn stream_of(&self, i: usize) -> Option<(SocketId, &StreamLink)> {
        self.streams.iter().find(|(_, l)| l.client == i && l.open).map(|(c, l)| (*c, l))
    }

    /// The network breaks the connection `conn` (a reset): both ends hear
    /// of it now.
    pub fn break_stream(&mut self, conn: SocketId) {
        let Some(link) = self.streams.get_mut(&conn).filter(|l| l.open) else { return };
        link.open = false;
        let (i, client_conn) = (link.client, link.client_conn);
        let now = self.now;
        self.server.handle_stream_closed(now, conn);
        self.drain_server();
        if i != usize::MAX {
            self.clients[i].client.handle_stream_closed(now, client_conn);
            self.drain(i);
        }
    }

    /// Puts raw stream bytes on the server's connection `conn` now, as if
    /// its client had written them.
    pub fn inject_stream(&mut self, conn: SocketId, bytes: Vec<u8>) {
        let p = Packet { src: SERVER, dst: SERVER, ttl: DEFAULT_TTL, payload: bytes, plaintext: None };
        self.schedule(self.now, Stage::StreamToServer(conn), p);
    }

    /// Opens a connection to the server from `remote` that no client
    /// holds (the test writes its bytes with [`Harness::inject_stream`]).
    pub fn raw_stream(&mut self, remote: SocketAddr) -> SocketId {
        let conn = SocketId(self.next_conn);
        self.next_conn += 1;
        let now = self.now;
        self.server.stream_accepted(now, conn, remote);
        self.streams.insert(
            conn,
            StreamLink { client: usize::MAX, client_conn: conn, remote, open: true, bytes: (0, 0), droppable: 0 },
        );
        self.drain_server();
        conn
    }

    pub fn config(&self, name: &str) -> ClientConfig {
        let mut c = ClientConfig::new(name, SERVER);
        c.alt_server = Some(ALT);
        c.seed = (self.clients.len() as u64 + 100).into();
        c.server_key = Some(self.server_config.key.public());
        c
    }

    /// A client with a public address 198.51.100.(i+1).
    pub fn add_public_client(&mut self, config: ClientConfig) -> usize {
        let i = self.clients.len();
        let ip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, i as u8 + 1));
        self.add(config, ip, None)
    }

    /// A client at 10.0.(i+1).2 behind a NAT stand-in at 198.51.100.(i+1).
    pub fn add_natted_client(&mut self, config: ClientConfig, track_unsolicited: bool) -> usize {
        let i = self.clients.len();
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, i as u8 + 1, 2));
        let nat = StandInNat::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, i as u8 + 1)), track_unsolicited);
        self.add(config, ip, Some(nat))
    }

    fn add(&mut self, config: ClientConfig, ip: IpAddr, nat: Option<StandInNat>) -> usize {
        let client = Client::new(config, (SocketId(0), SocketAddr::new(ip, 4000)), self.now);
        self.clients.push(ClientHost {
            client,
            ip,
            sockets: [(SocketId(0), 4000)].into_iter().collect(),
            next_socket: 1,
            nat,
            events: Vec::new(),
            sent: 0,
            wakes: Vec::new(),
            dead: false,
            udp_blocked: false,
            disk: Disk::default(),
        });
        let i = self.clients.len() - 1;
        self.drain(i);
        i
    }

    /// Replaces the server by a fresh one over `store` (what a restart keeps)
    /// started with `server_config`, and brings it up.
    pub fn start_server(&mut self, store: Box<dyn MessageStore>) {
        self.server = Server::new(self.server_config.clone(), self.now);
        self.store = store;
        self.server_down = false;
    }

    /// Kills the server: its in-memory state is gone, its store is handed
    /// back (every commit that finished; a held one never does), and it
    /// stays down until [`Harness::start_server`].
    pub fn crash_server(&mut self) -> Box<dyn MessageStore> {
        self.server = Server::new(self.server_config.clone(), self.now);
        self.server_down = true;
        self.held.clear();
        std::mem::replace(&mut self.store, Box::new(MemoryStore::new()))
    }

    /// Ends a held commit: every request held so far commits as one batch
    /// and is answered, and later requests commit at once again.
    pub fn release_store(&mut self) {
        self.hold_store = false;
        self.drain_server();
    }

    /// Client `i` sends a text to `to`.
    pub fn send_text(&mut self, i: usize, to: &str, text: &str) -> MessageId {
        let now = self.now;
        let id = self.clients[i].client.send_text(now, to, text).expect("send_text accepted");
        self.drain(i);
        id
    }

    /// Client `i` asks when its inbox is empty.
    pub fn sync_inbox(&mut self, i: usize) {
        let now = self.now;
        self.clients[i].client.sync_inbox(now).expect("sync_inbox accepted");
        self.drain(i);
    }

    /// Client `i`'s received texts, in the order they were shown.
    pub fn texts(&self, i: usize) -> Vec<(String, MessageId, String)> {
        self.find(i, |e| match e {
            ClientEvent::TextReceived { from, id, text } => Some((from.clone(), *id, text.clone())),
            _ => None,
        })
        .into_iter()
        .map(|(_, t)| t)
        .collect()
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Runs until `at` (time since start).
    pub fn run_until(&mut self, at: Duration) {
        let end = self.start + at;
        loop {
            let next_packet = self.queue.peek().map(|Reverse((t, _, _))| *t);
            let server_timer = if self.server_down { None } else { self.server.poll_timeout() };
            let next_timer = self.clients.iter().filter_map(|c| c.client.poll_timeout()).chain(server_timer).min();
            let next = [next_packet, next_timer].into_iter().flatten().min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    if next_packet == Some(t) {
                        let Reverse((_, _, id)) = self.queue.pop().expect("peeked");
                        let (stage, packet) = self.in_flight.remove(&id).expect("queued packets are in flight");
                        self.process(stage, packet);
                    } else {
                        let now = self.now;
                        if !self.server_down && self.server.poll_timeout().is_some_and(|d| d <= now) {
                            self.server.handle_timeout(now);
                            self.drain_server();
                        }
                        for i in 0..self.clients.len() {
                            if self.clients[i].client.poll_timeout().is_some_and(|d| d <= now) {
                                let before = (self.clients[i].sent, self.clients[i].events.len());
                                self.clients[i].client.handle_timeout(now);
                                self.drain(i);
                                let host = &mut self.clients[i];
                                let did_something = (host.sent, host.events.len()) != before;
                                host.wakes.push((now - self.start, did_something));
                            }
                        }
                    }
                }
                _ => break,
            }
        }
        self.now = self.now.max(end);
    }

    pub fn run_for(&mut self, d: Duration) {
        let at = self.elapsed() + d;
        self.run_until(at);
    }

    pub fn connect(&mut self, i: usize, peer: &str) {
        let now = self.now;
        self.clients[i].client.connect(now, peer).expect("connect accepted");
        self.drain(i);
    }

    pub fn send(&mut self, i: usize, data: &[u8]) {
        let now = self.now;
        let session = self.clients[i].client.sessions().next().expect("a session");
        self.clients[i].client.send(now, session, data).expect("send accepted");
        self.drain(i);
    }

    /// Puts a raw packet on the internet now, as if `src` had sent it.
    pub fn inject(&mut self, src: SocketAddr, dst: SocketAddr, payload: Vec<u8>) {
        let p = Packet { src, dst, ttl: DEFAULT_TTL, payload, plaintext: None };
        self.schedule(self.now, Stage::Internet, p);
    }

    /// Client `i` logs out, the logout has `linger` to reach the server,
    /// then its host vanishes.
    pub fn leave(&mut self, i: usize, linger: Duration) {
        let now = self.now;
        self.clients[i].client.logout(now);
        self.run_for(linger);
        self.clients[i].dead = true;
    }

    /// Logs `user` in by hand from `from` (an address no client holds):
    /// a real handshake with the server's key, proved with a sealed
    /// keepalive. Returns the token and the channel, to seal what the test
    /// sends as that user.
    pub fn hand_login(&mut self, from: SocketAddr, user: &str) -> (u64, ChannelEnd) {
        let identity = StaticKey::derive(self.server_config.seed, user);
        let login = Frame::Login { request: 1, user: user.into(), host_candidates: Vec::new() }.encode();
        // A fresh seed for each login, as a real client's generator moves
        // on: the same Hello twice would be a replay, and dropped.
        let seed = (u64::from(from.port()) << 32) | self.server_sent.len() as u64;
        let (hello, datagram) =
            HelloSent::start(&identity, &self.server_config.key.public(), &login, None, seed.into());
        let sent_before = self.server_sent.len();
        self.inject(from, SERVER, datagram);
        self.run_for(Duration::from_millis(100));
        let welcome = self.server_sent[sent_before..].iter().find(|p| p.dst == from).expect("a welcome").clone();
        let (payload, finished) = hello.finish(&welcome.payload).expect("the welcome authenticates");
        let Ok(Frame::LoginOk { token, .. }) = Frame::decode(&payload) else { panic!("refused: {payload:?}") };
        let channel = finished.into_channel(token).expect("a channel");
        let keepalive = Frame::Keepalive { token, profile: Default::default() }.encode();
        self.inject(from, SERVER, channel.seal(&keepalive).expect("sealed"));
        self.run_for(Duration::from_millis(100));
        (token, channel)
    }

    /// The public address a client's socket maps to toward the server.
    pub fn public_addr(&self, i: usize) -> SocketAddr {
        self.clients[i].client.reflexive().expect("logged in")
    }

    /// Client `i` offers `bytes` as `name` to `peer`.
    pub fn send_file(&mut self, i: usize, peer: &str, name: &str, bytes: Vec<u8>) -> FileId {
        let mut tree = TreeBuilder::new(bytes.len() as u64);
        tree.update(&bytes);
        let (root, manifest) = tree.finish().expect("fed the whole file");
        let source = FileSource { name: name.to_owned(), size: bytes.len() as u64, root, manifest };
        let now = self.now;
        let file = self.clients[i].client.send_file(now, peer, source).expect("offer accepted");
        self.clients[i].disk.sources.insert(file, bytes);
        self.drain(i);
        file
    }

    /// File pieces client `i` put on the wire (first sends and resends),
    /// directly or through the relay: (transfer, piece) of each.
    pub fn file_pieces(&self, i: usize) -> Vec<(u32, u64)> {
        use punchline_core::wire::frame::SessionBody;
        let piece = |frame: Option<Frame>| match frame {
            Some(Frame::Session { body: SessionBody::FileData { transfer, piece, .. }, .. }) => {
                Some((transfer.0, piece))
            }
            _ => None,
        };
        self.captured
            .iter()
            .filter(|(c, _)| *c == i)
            .filter_map(|(_, p)| match p.frame() {
                Some(Frame::Relay { payload, .. }) => piece(Frame::decode(&payload).ok()),
                frame => piece(frame),
            })
            .collect()
    }

    /// How many file pieces client `i` sent, resends included.
    pub fn file_pieces_sent(&self, i: usize) -> usize {
        self.file_pieces(i).len()
    }

    /// How many distinct file pieces client `i` sent.
    pub fn distinct_file_pieces_sent(&self, i: usize) -> usize {
        self.file_pieces(i).into_iter().collect::<BTreeSet<_>>().len()
    }

    /// Confirms the writes client `i` held back.
    pub fn release_writes(&mut self, i: usize) {
        let now = self.now;
        let host = &mut self.clients[i];
        for (file, offset) in std::mem::take(&mut host.disk.held_writes) {
            host.client.file_written(now, file, offset, Ok(()));
        }
        self.drain(i);
    }

    pub fn events(&self, i: usize) -> Vec<(Duration, ClientEvent)> {
        self.clients[i].events.clone()
    }

    /// Events of client `i` that `pick` selects, with their times.
    pub fn find<T>(&self, i: usize, pick: impl Fn(&ClientEvent) -> Option<T>) -> Vec<(Duration, T)> {
        self.clients[i].events.iter().filter_map(|(t, e)| pick(e).map(|v| (*t, v))).collect()
    }

    pub fn received(&self, i: usize) -> Vec<Vec<u8>> {
        self.find(i, |e| match e {
            ClientEvent::DataReceived { data, .. } => Some(data.to_vec()),
            _ => None,
        })
        .into_iter()
        .map(|(_, d)| d)
        .collect()
    }

    fn schedule(&mut self, at: Instant, stage: Stage, packet: Packet) {
        self.seq += 1;
        let id = self.seq as usize;
        self.in_flight.insert(id, (stage, packet));
        self.queue.push(Reverse((at, self.seq, id)));
    }

    fn process(&mut self, stage: Stage, mut p: Packet) {
        let now = self.now;
        match stage {
            Stage::NatOut(i) => {
                p.ttl = p.ttl.saturating_sub(1);
                if p.ttl == 0 {
                    return;
                }
                self.clients[i].nat.as_mut().expect("NatOut only for natted hosts").outbound(&mut p);
                self.process(Stage::Internet, p);
            }
            Stage::Internet => {
                if p.ttl <= INTERNET_HOPS {
                    return;
                }
                p.ttl -= INTERNET_HOPS;
                if self.loss > 0.0 && self.loss_rng.unit() < self.loss {
                    return;
                }
                let involves_server = [SERVER.ip(), ALT.ip()].iter().any(|ip| *ip == p.src.ip() || *ip == p.dst.ip());
                if !involves_server {
                    if self.drop_direct {
                        return;
                    }
                    self.direct_packets += 1;
                }
                let mut delay = self.latency;
                if p.src.ip() == SERVER.ip() && matches!(p.frame(), Some(Frame::Offer { .. })) {
                    if let Some(i) = self.client_by_public_ip(p.dst.ip()) {
                        delay += self.offer_delay.get(&i).copied().unwrap_or_default();
                    }
                }
                self.schedule(now + delay, Stage::Arrive, p);
            }
            Stage::Arrive => {
                let dst_ip = p.dst.ip();
                if dst_ip == SERVER.ip() || dst_ip == ALT.ip() {
                    if self.server_down {
                        return;
                    }
                    let Some(&(socket, _)) = self.server.sockets().iter().find(|(_, a)| *a == p.dst) else { return };
                    self.server.handle_datagram(now, socket, p.src, &p.payload);
                    self.drain_server();
                    return;
                }
                let Some(i) = self.client_by_public_ip(dst_ip) else { return };
                if let Some(nat) = self.clients[i].nat.as_mut() {
                    p.ttl = p.ttl.saturating_sub(1);
                    if p.ttl == 0 {
                        return;
                    }
                    let Some(internal) = nat.inbound(&p) else { return };
                    p.dst = internal;
                    self.schedule(now + LAN_DELAY, Stage::Deliver(i), p);
                } else {
                    self.process(Stage::Deliver(i), p);
                }
            }
            Stage::StreamToServer(conn) => {
                if self.server_down || !self.streams.get(&conn).is_some_and(|l| l.open) {
                    return;
                }
                self.server.handle_stream_data(now, conn, &p.payload);
                self.drain_server();
            }
            Stage::StreamToClient(conn) => {
                let Some(link) = self.streams.get(&conn).filter(|l| l.open) else { return };
                let (i, client_conn) = (link.client, link.client_conn);
                if i == usize::MAX || self.clients[i].dead {
                    return;
                }
                self.clients[i].client.handle_stream_data(now, client_conn, &p.payload);
                self.drain(i);
            }
            Stage::StreamConnected { client, request, conn } => {
                let link = self.streams.get(&conn).expect("a connect's link");
                let (remote, client_conn) = (link.remote, link.client_conn);
                self.server.stream_accepted(now, conn, remote);
                self.drain_server();
                self.clients[client].client.stream_opened(now, request, Some(client_conn));
                self.drain(client);
            }
            Stage::StreamFailed { client, request } => {
                self.clients[client].client.stream_opened(now, request, None);
                self.drain(client);
            }
            Stage::StreamClosed { conn, to_server } => {
                let Some(link) = self.streams.get_mut(&conn) else { return };
                link.open = false;
                if to_server {
                    if !self.server_down {
                        self.server.handle_stream_closed(now, conn);
                        self.drain_server();
                    }
                } else if link.client != usize::MAX {
                    let (i, client_conn) = (link.client, link.client_conn);
                    self.clients[i].client.handle_stream_closed(now, client_conn);
                    self.drain(i);
                }
            }
            Stage::Deliver(i) => {
                let host = &mut self.clients[i];
                if host.dead || host.udp_blocked {
                    return;
                }
                let Some((&socket, _)) = host.sockets.iter().find(|(_, port)| **port == p.dst.port()) else { return };
                host.client.handle_datagram(now, socket, p.src, &p.payload);
                self.drain(i);
            }
        }
    }

    fn client_by_public_ip(&self, ip: IpAddr) -> Option<usize> {
        self.clients.iter().position(|c| c.nat.as_ref().map_or(c.ip, |n| n.public_ip) == ip)
    }

    fn drain_server(&mut self) {
        // The store first, as the simulator does: unheld, a request is
        // answered in the instant it is made.
        loop {
            while let Some(request) = self.server.poll_store_request() {
                self.held.push(request);
            }
            if self.hold_store || self.held.is_empty() {
                break;
            }
            let batch = std::mem::take(&mut self.held);
            for completion in self.store.execute(batch) {
                self.server.handle_store_completion(self.now, completion);
            }
        }
        while let Some(t) = self.server.poll_transmit() {
            self.log.push(format!("{:?} server -> {} {:02x?}", self.elapsed(), t.destination, &t.payload[..]));
            if let Some(link) = self.streams.get_mut(&t.socket) {
                link.bytes.1 += t.payload.len() as u64;
                link.droppable += u64::from(t.droppable);
                let p = Packet {
                    src: SERVER,
                    dst: t.destination,
                    ttl: DEFAULT_TTL,
                    payload: t.payload.to_vec(),
                    plaintext: t.plaintext.map(|p| p.to_vec()),
                };
                self.server_sent.push(p.clone());
                let at = self.now + self.latency;
                self.schedule(at, Stage::StreamToClient(t.socket), p);
                continue;
            }
            let src = self.server.sockets().iter().find(|(id, _)| *id == t.socket).expect("server socket").1;
            let p = Packet {
                src,
                dst: t.destination,
                ttl: t.ttl.unwrap_or(DEFAULT_TTL),
                payload: t.payload.to_vec(),
                plaintext: t.plaintext.map(|p| p.to_vec()),
            };
            self.server_sent.push(p.clone());
            self.schedule(self.now, Stage::Internet, p);
        }
        while let Some(event) = self.server.poll_event() {
            if let punchline_core::server::ServerEvent::CloseStream { conn } = event {
                if let Some(link) = self.streams.get_mut(&conn).filter(|l| l.open) {
                    // The client end hears of it; the server asked, and is
                    // not told.
                    link.open = false;
                    let p = Packet { src: SERVER, dst: SERVER, ttl: DEFAULT_TTL, payload: Vec::new(), plaintext: None };
                    let at = self.now + self.latency;
                    self.schedule(at, Stage::StreamClosed { conn, to_server: false }, p);
                }
            }
        }
    }

    fn drain(&mut self, i: usize) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.clients[i].client.poll_transmit() {
                progressed = true;
                self.transmit(i, t);
            }
            while let Some(e) = self.clients[i].client.poll_event() {
                progressed = true;
                self.log.push(format!("{:?} client {i} event {e:?}", self.elapsed()));
                let elapsed = self.elapsed();
                match &e {
                    ClientEvent::OpenSockets { request, count } => {
                        let host = &mut self.clients[i];
                        let mut opened = Vec::new();
                        for _ in 0..*count {
                            let id = SocketId(host.next_socket);
                            let port = 4000 + host.next_socket as u16;
                            host.next_socket += 1;
                            host.sockets.insert(id, port);
                            opened.push((id, SocketAddr::new(host.ip, port)));
                        }
                        let now = self.now;
                        host.client.sockets_opened(now, *request, &opened);
                    }
                    ClientEvent::ReleaseSocket { socket } => {
                        self.clients[i].sockets.remove(socket);
                    }
                    ClientEvent::FileRead { file, offset, len } => {
                        let now = self.now;
                        let host = &mut self.clients[i];
                        match host.disk.read(*file, *offset, *len) {
                            Some(data) => host.client.file_data(now, *file, *offset, &data),
                            None => host.client.file_read_failed(now, *file),
                        }
                    }
                    ClientEvent::FileOffered { file, name, size, root, .. } => {
                        let now = self.now;
                        let host = &mut self.clients[i];
                        match (host.disk.accept, host.disk.refuse) {
                            (true, None) => {
                                host.disk.receiving.insert(*file, *root);
                                host.disk.names.insert(*file, name.clone());
                                host.disk
                                    .partial
                                    .entry(*root)
                                    .or_insert_with(|| (vec![0; *size as usize], Default::default()));
                                let have = host.disk.have(root);
                                host.client.accept_file(now, *file, &have);
                            }
                            (_, Some(reason)) => host.client.refuse_file(now, *file, reason),
                            (false, None) => host.client.refuse_file(now, *file, FileRefusal::NotAccepting),
                        }
                    }
                    ClientEvent::FileWrite { file, offset, data } => {
                        let now = self.now;
                        let host = &mut self.clients[i];
                        let size = host.disk.partial.get(&host.disk.receiving[file]).map_or(0, |p| p.0.len() as u64);
                        if !host.disk.write(*file, size, *offset, data) {
                            host.client.file_written(now, *file, *offset, Err(FileAbort::DiskFull));
                        } else if host.disk.hold_writes {
                            host.disk.held_writes.push((*file, *offset));
                        } else {
                            host.client.file_written(now, *file, *offset, Ok(()));
                        }
                    }
                    ClientEvent::FileCompleted { file, direction: FileDirection::Incoming, size, .. } => {
                        self.clients[i].disk.finish(*file, *size);
                    }
                    ClientEvent::OpenStream { request, .. } => {
                        let conn = SocketId(self.next_conn);
                        self.next_conn += 1;
                        let host = &self.clients[i];
                        let public_ip = host.nat.as_ref().map_or(host.ip, |n| n.public_ip);
                        let remote = SocketAddr::new(public_ip, 30000 + (conn.0 & 0x7fff) as u16);
                        // The client names it as the server does: ids that
                        // never collide with its UDP sockets.
                        self.streams.insert(
                            conn,
                            StreamLink {
                                client: i,
                                client_conn: conn,
                                remote,
                                open: true,
                                bytes: (0, 0),
                                droppable: 0,
                            },
                        );
                        let p =
                            Packet { src: remote, dst: SERVER, ttl: DEFAULT_TTL, payload: Vec::new(), plaintext: None };
                        // SYN, SYN-ACK: one round trip; nothing answers a
                        // server that is down.
                        let stage = if self.server_down || self.clients[i].dead {
                            Stage::StreamFailed { client: i, request: *request }
                        } else {
                            Stage::StreamConnected { client: i, request: *request, conn }
                        };
                        let at = self.now + self.latency * 2;
                        self.schedule(at, stage, p);
                    }
                    ClientEvent::CloseStream { conn } if self.streams.get(conn).is_some_and(|l| l.open) => {
                        let p =
                            Packet { src: SERVER, dst: SERVER, ttl: DEFAULT_TTL, payload: Vec::new(), plaintext: None };
                        let at = self.now + self.latency;
                        self.schedule(at, Stage::StreamClosed { conn: *conn, to_server: true }, p);
                    }
                    _ => {}
                }
                self.clients[i].events.push((elapsed, e));
            }
            if !progressed {
                break;
            }
        }
    }

    fn transmit(&mut self, i: usize, t: Transmit) {
        self.log.push(format!(
            "{:?} client {i} -> {} ttl {:?} {:02x?}",
            self.elapsed(),
            t.destination,
            t.ttl,
            &t.payload[..]
        ));
        if self.clients[i].dead {
            return;
        }
        if let Some(link) = self.streams.get_mut(&t.socket).filter(|l| l.client == i) {
            link.bytes.0 += t.payload.len() as u64;
            self.clients[i].sent += 1;
            let p = Packet {
                src: link.remote,
                dst: SERVER,
                ttl: DEFAULT_TTL,
                payload: t.payload.to_vec(),
                plaintext: t.plaintext.map(|p| p.to_vec()),
            };
            // Captured as the datagram it frames (one unit per transmit).
            let mut unit = p.clone();
            let mut decoder = punchline_core::wire::stream::StreamDecoder::new();
            decoder.push(&p.payload);
            unit.payload = decoder.next_datagram().ok().flatten().expect("one whole unit per transmit");
            self.captured.push((i, unit));
            let at = self.now + self.latency;
            self.schedule(at, Stage::StreamToServer(t.socket), p);
            return;
        }
        let host = &mut self.clients[i];
        if host.dead {
            return;
        }
        host.sent += 1;
        if host.udp_blocked {
            return;
        }
        let Some(port) = host.sockets.get(&t.socket).copied() else {
            panic!("client {i} sent from socket {:?} it does not have", t.socket);
        };
        let p = Packet {
            src: SocketAddr::new(host.ip, port),
            dst: t.destination,
            ttl: t.ttl.unwrap_or(DEFAULT_TTL),
            payload: t.payload.to_vec(),
            plaintext: t.plaintext.map(|p| p.to_vec()),
        };
        self.captured.push((i, p.clone()));
        if host.nat.is_some() {
            self.schedule(self.now + LAN_DELAY, Stage::NatOut(i), p);
        } else {
            self.schedule(self.now, Stage::Internet, p);
        }
    }
}
