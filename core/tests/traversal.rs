//! Port prediction and birthday probing as one client does them (issue 4;
//! DESIGN §3, "Strategies"), and the guard that keeps a peer from aiming that
//! probing at a third party.
//!
//! Each test drives a single real [`Client`] by hand. A fake server answers
//! its login and NAT discovery the way the server would behind the NAT kind
//! the test picks (a port-restricted cone, or a symmetric NAT with random
//! ports), so the client measures its own profile; it completes the real
//! handshake with a key of its own and keeps the server's end of the
//! channel. Then the fake server offers a session with bob's key, which the
//! test holds, and the test plays bob: it answers the client's end-to-end
//! hello, seals stream messages in the session's keys and delivers them
//! wrapped in `Relayed`, sealed in the channel, exactly as the relay would.
//!
//! The core never reads the clock: time starts at one `Instant::now()` and
//! only moves by the durations the tests add.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use punchline_core::client::{Client, ClientConfig, ClientEvent, PathKind, BIRTHDAY_PORTS};
use punchline_core::nat::{FilteringBehavior, MappingBehavior, NatProfile, PortAllocation, Strategy};
use punchline_core::secure::{ChannelEnd, HelloReceived, PeerHelloReceived, SessionCipher, StaticKey};
use punchline_core::wire::channel::{self as layout, Hello};
use punchline_core::wire::frame::{AnswerFrom, CloseReason, Frame, SessionBody, SessionId, StreamMessage};
use punchline_core::wire::{self, stun};
use punchline_core::{Machine, SocketId, Transmit};

#[path = "harness/rng.rs"]
mod rng;
use rng::Rng;

// ---------------------------------------------------------------------------
// The scene
// ---------------------------------------------------------------------------

const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)), 3478);
const ALT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 11)), 3479);
/// The client's host address (behind its NAT).
const LOCAL_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
const PRIMARY: (SocketId, SocketAddr) = (SocketId(0), SocketAddr::new(LOCAL_IP, 4000));
/// The client's NAT's public address.
const MY_PUBLIC_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
/// The peer's host candidate, as it announced it.
const PEER_HOST: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 9, 0, 2)), 4000);
/// Where the server saw the peer: the offer's last candidate.
const PEER_PUBLIC_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2));
const PEER_REFLEXIVE: SocketAddr = SocketAddr::new(PEER_PUBLIC_IP, 40_000);
/// Someone who is not in the session at all.
const THIRD_PARTY: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 66));

const SESSION: SessionId = SessionId(0x5e55_1011);

fn peer_candidates() -> Vec<SocketAddr> {
    vec![PEER_HOST, PEER_REFLEXIVE]
}

/// Every address the fake server answers on: primary, alternate and the two
/// crossed ones RFC 5780 discovery uses.
fn server_addrs() -> [SocketAddr; 4] {
    [SERVER, ALT, SocketAddr::new(ALT.ip(), SERVER.port()), SocketAddr::new(SERVER.ip(), ALT.port())]
}

fn port_restricted_cone() -> NatProfile {
    NatProfile {
        mapping: Some(MappingBehavior::EndpointIndependent),
        filtering: Some(FilteringBehavior::AddressAndPortDependent),
        ports: Some(PortAllocation::Preserving),
        public: false,
    }
}

fn random_symmetric() -> NatProfile {
    NatProfile {
        mapping: Some(MappingBehavior::AddressAndPortDependent),
        filtering: Some(FilteringBehavior::AddressAndPortDependent),
        ports: Some(PortAllocation::Random),
        public: false,
    }
}

fn sequential_symmetric(delta: i32) -> NatProfile {
    NatProfile { ports: Some(PortAllocation::Sequential { delta }), ..random_symmetric() }
}

/// The NAT in front of the client, as the fake server sees it.
#[derive(Debug)]
enum FakeNat {
    /// Endpoint-independent mapping that keeps the local port.
    PortRestrictedCone,
    /// A fresh random port for every (socket, destination).
    RandomSymmetric { ports: BTreeMap<(SocketAddr, SocketAddr), u16>, rng: Rng },
}

impl FakeNat {
    fn random_symmetric(seed: u64) -> Self {
        FakeNat::RandomSymmetric { ports: BTreeMap::new(), rng: Rng::new(seed) }
    }

    /// The public address of `local`'s mapping toward `to`.
    fn mapped(&mut self, local: SocketAddr, to: SocketAddr) -> SocketAddr {
        match self {
            FakeNat::PortRestrictedCone => SocketAddr::new(MY_PUBLIC_IP, local.port()),
            FakeNat::RandomSymmetric { ports, rng } => {
                let port = *ports.entry((local, to)).or_insert_with(|| 1024 + rng.below(64_512) as u16);
                SocketAddr::new(MY_PUBLIC_IP, port)
            }
        }
    }
}

/// One client, a fake server and a hand-played peer (see the module docs).
struct Rig {
    client: Client,
    start: Instant,
    now: Instant,
    nat: FakeNat,
    /// Sockets the driver holds: the primary and those opened on request.
    live: BTreeMap<SocketId, SocketAddr>,
    next_socket: u32,
    token: u64,
    /// The fake server's key, and its end of the channel once the client
    /// logged in.
    server_key: StaticKey,
    server_end: Option<ChannelEnd>,
    /// Every datagram the client sent, with the time since the start.
    sent: Vec<(Duration, Transmit)>,
    /// Every event, with the time since the start.
    events: Vec<(Duration, ClientEvent)>,
    /// Datagrams on their way to the client: (socket, source, bytes).
    inbox: Vec<(SocketId, SocketAddr, Vec<u8>)>,
    /// Bob's key, and his end of the session once the client's hello came.
    peer_key: StaticKey,
    peer_end: Option<SessionCipher>,
    peer_counter: u64,
    peer_seq: u64,
}

impl Rig {
    /// A client behind `nat`, logged in and with its NAT profile measured.
    fn new(nat: FakeNat, seed: u64) -> Self {
        let start = Instant::now();
        let mut config = ClientConfig::new("alice", SERVER);
        config.alt_server = Some(ALT);
        config.seed = seed.into();
        let server_key = StaticKey::derive(seed.into(), "fake server");
        config.server_key = Some(server_key.public());
        let mut rig = Rig {
            server_key,
            server_end: None,
            client: Client::new(config, PRIMARY, start),
            start,
            now: start,
            nat,
            live: [PRIMARY].into_iter().collect(),
            next_socket: 1,
            token: 0x706b_656e,
            sent: Vec::new(),
            events: Vec::new(),
            inbox: Vec::new(),
            peer_key: StaticKey::derive(seed.into(), "bob"),
            peer_end: None,
            peer_counter: 0,
            peer_seq: 0,
        };
        rig.pump();
        rig.run_for(Duration::from_secs(5));
        assert!(rig.client.is_logged_in(), "the fake server logs the client in");
        rig
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn config(&self) -> &ClientConfig {
        self.client.config()
    }

    /// The profile the client measured and reported.
    fn measured_profile(&self) -> Option<NatProfile> {
        self.events.iter().rev().find_map(|(_, e)| match e {
            ClientEvent::NatProfile(p) => Some(*p),
            _ => None,
        })
    }

    /// The server offers the session (the client is the responder), with the
    /// peer's host candidate and, last, where the server saw the peer.
    fn offer(&mut self, strategy: Strategy, peer_profile: NatProfile) {
        let offer = Frame::Offer {
            request: 0,
            session: SESSION,
            peer_key: self.peer_key.public().0,
            initiator: false,
            peer: "bob".to_owned(),
            peer_candidates: peer_candidates(),
            strategy,
            peer_profile,
            peer_transport: punchline_core::wire::frame::Transport::Udp,
        };
        self.server_sends(offer);
        let opened = self.events.iter().any(|(_, e)| {
            matches!(e, ClientEvent::SessionOpened { session, strategy: s, .. } if *session == SESSION && *s == strategy)
        });
        assert!(opened, "the offer opens the session with strategy {strategy:?}");
        assert!(self.peer_end.is_some(), "the client's hello reached bob, who answered it");
    }

    /// The peer sends `message` on its stream, sealed in the session's keys,
    /// through the relay.
    fn peer_says(&mut self, message: StreamMessage) {
        self.peer_counter += 1;
        let body = SessionBody::Stream { seq: self.peer_seq, message };
        self.peer_seq += 1;
        let payload = self.sealed(Frame::Session { session: SESSION, counter: self.peer_counter, body });
        self.server_sends(Frame::Relayed { session: SESSION, payload });
    }

    /// `frame` from the server, sealed in the channel.
    fn server_sends(&mut self, frame: Frame) {
        let sealed = self.server_end.as_ref().and_then(|end| end.seal(&frame.encode())).expect("logged in");
        self.deliver(PRIMARY.0, SERVER, sealed);
    }

    /// A peer frame (its counter is overwritten), encoded and sealed in
    /// bob's end of the session.
    fn sealed(&mut self, mut frame: Frame) -> Vec<u8> {
        match &mut frame {
            Frame::Probe { counter, .. } | Frame::ProbeAck { counter, .. } | Frame::Session { counter, .. } => {
                *counter = self.peer_counter
            }
            _ => unreachable!("only peer frames are sealed end to end"),
        }
        let end = self.peer_end.as_mut().expect("the session's handshake is done");
        end.seal(self.now, &frame.encode()).expect("a fresh session seals").0
    }

    fn deliver(&mut self, socket: SocketId, from: SocketAddr, bytes: Vec<u8>) {
        self.inbox.push((socket, from, bytes));
        self.pump();
    }

    /// Runs the client's timers, deadline after deadline, for `span`.
    fn run_for(&mut self, span: Duration) {
        let end = self.now + span;
        for _ in 0..1_000_000 {
            match self.client.poll_timeout() {
                Some(at) if at <= end => {
                    self.now = self.now.max(at);
                    self.client.handle_timeout(self.now);
                    self.pump();
                }
                _ => {
                    self.now = end;
                    return;
                }
            }
        }
        panic!("the client's deadline stays at or before now: its driver would spin");
    }

    /// Moves every output of the client, and the fake server's answers,
    /// until nothing is left.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            for (socket, from, bytes) in std::mem::take(&mut self.inbox) {
                self.client.handle_datagram(self.now, socket, from, &bytes);
            }
            let mut progressed = false;
            while let Some(t) = self.client.poll_transmit() {
                progressed = true;
                self.on_transmit(t);
            }
            while let Some(e) = self.client.poll_event() {
                progressed = true;
                self.on_event(e);
            }
            if !progressed && self.inbox.is_empty() {
                return;
            }
        }
        panic!("the client and the fake server keep talking");
    }

    fn on_transmit(&mut self, t: Transmit) {
        let Some(&local) = self.live.get(&t.socket) else {
            panic!("the client sent from {:?}, which its driver does not hold", t.socket);
        };
        self.sent.push((self.elapsed(), t.clone()));
        if !server_addrs().contains(&t.destination) {
            return;
        }
        let mapped = self.nat.mapped(local, t.destination);
        let answer = match wire::classify(&t.payload) {
            wire::Kind::Stun => match stun::Message::decode(&t.payload) {
                Ok(m) if m.class == stun::Class::Request => Some(stun::binding_success(m.transaction_id, mapped)),
                _ => None,
            },
            _ if t.payload[0] == layout::tag::HELLO => {
                let hello = Hello::parse(&t.payload).expect("the client sends well-formed hellos");
                let received = HelloReceived::read(&self.server_key, hello.sender, hello.noise, 1.into())
                    .expect("the hello is for the fake server's key");
                let Ok(Frame::Login { request, .. }) = Frame::decode(received.payload()) else {
                    panic!("a hello without a login")
                };
                let login_ok = Frame::LoginOk { request, token: self.token, reflexive: mapped };
                let (welcome, end) = received.answer(&login_ok.encode(), self.token).expect("an answer");
                self.server_end = Some(end);
                Some(welcome)
            }
            _ => {
                let end = self.server_end.as_mut().expect("sealed frames come after the handshake");
                let answer = match end.open(&t.payload).and_then(|plain| Frame::decode(&plain).ok()) {
                    Some(Frame::Keepalive { .. }) => Frame::KeepaliveAck { reflexive: mapped },
                    Some(Frame::Relay { session, payload, .. }) if payload[0] == layout::tag::PEER_HELLO => {
                        // The client (the session's responder) opens the
                        // handshake; bob answers it, as the relay would
                        // carry his welcome.
                        let alice = self.client.config().identity.public();
                        let (welcome, end) =
                            PeerHelloReceived::answer(&self.peer_key, &alice, session, &payload, self.now, 3.into())
                                .expect("the client's hello proves alice's key");
                        self.peer_end = Some(end);
                        Frame::Relayed { session, payload: welcome }
                    }
                    Some(Frame::Relay { payload, .. }) => {
                        // Everything else the client relays is sealed in the
                        // session's keys, and bob opens it.
                        let end = self.peer_end.as_mut().expect("no peer frame before the handshake");
                        assert!(end.open(self.now, &payload).is_ok(), "a relayed frame bob cannot open");
                        return;
                    }
                    // Answers from another address or port are unsolicited:
                    // both NATs here filter them (port-restricted).
                    Some(Frame::Discover { nonce, answer_from: AnswerFrom::Same }) => {
                        Frame::DiscoverReply { nonce, reflexive: mapped }
                    }
                    _ => return,
                };
                end.seal(&answer.encode())
            }
        };
        if let Some(bytes) = answer {
            self.inbox.push((t.socket, t.destination, bytes));
        }
    }

    fn on_event(&mut self, e: ClientEvent) {
        match &e {
            ClientEvent::OpenSockets { request, count } => {
                let opened: Vec<(SocketId, SocketAddr)> = (0..*count)
                    .map(|_| {
                        let id = SocketId(self.next_socket);
                        let local = SocketAddr::new(LOCAL_IP, 5000 + self.next_socket as u16);
                        self.next_socket += 1;
                        (id, local)
                    })
                    .collect();
                self.live.extend(opened.iter().copied());
                self.client.sockets_opened(self.now, *request, &opened);
            }
            ClientEvent::ReleaseSocket { socket } => {
                assert_ne!(*socket, PRIMARY.0, "the client released its primary socket");
                assert!(self.live.remove(socket).is_some(), "released {socket:?}, which is not open");
            }
            _ => {}
        }
        self.events.push((self.elapsed(), e));
    }

    /// Datagrams sent from index `mark` of [`Rig::sent`] on.
    fn sent_since(&self, mark: usize) -> &[(Duration, Transmit)] {
        &self.sent[mark..]
    }

    /// Events from `since` (time since the start) on.
    fn events_since(&self, since: Duration) -> Vec<ClientEvent> {
        self.events.iter().filter(|(t, _)| *t >= since).map(|(_, e)| e.clone()).collect()
    }
}

/// The socket counts the client asked its driver for, in order.
fn socket_requests(events: &[ClientEvent]) -> Vec<u16> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::OpenSockets { count, .. } => Some(*count),
            _ => None,
        })
        .collect()
}

/// The sockets the client gave back, in order.
fn released_sockets(events: &[ClientEvent]) -> Vec<SocketId> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::ReleaseSocket { socket } => Some(*socket),
            _ => None,
        })
        .collect()
}

/// The probes among `sent`: (time, source socket, destination, attempt).
fn probes(sent: &[(Duration, Transmit)]) -> Vec<(Duration, SocketId, SocketAddr, u16)> {
    sent.iter()
        .filter_map(|(at, t)| match Frame::decode(t.plaintext.as_deref().unwrap_or(&t.payload)) {
            Ok(Frame::Probe { session, attempt, .. }) if session == SESSION => {
                Some((*at, t.socket, t.destination, attempt))
            }
            _ => None,
        })
        .collect()
}

/// The openers among `sent`, in the order they left.
fn openers(sent: &[(Duration, Transmit)]) -> Vec<&Transmit> {
    sent.iter().map(|(_, t)| t).filter(|t| is_opener(t)).collect()
}

/// An opener (sealed end to end: its plaintext says so).
fn is_opener(t: &Transmit) -> bool {
    matches!(t.plaintext.as_deref().map(Frame::decode), Some(Ok(Frame::Opener { .. })))
}

/// The stream messages the client sent through the relay (each checked to
/// open in bob's end of the session as it passed the fake server).
fn relayed_stream(sent: &[(Duration, Transmit)]) -> Vec<(usize, StreamMessage)> {
    sent.iter()
        .enumerate()
        .filter_map(|(i, (_, t))| {
            let Ok(Frame::Relay { session, payload, .. }) = Frame::decode(t.plaintext.as_deref().unwrap_or(&t.payload))
            else {
                return None;
            };
            assert_eq!((t.destination, session), (SERVER, SESSION), "relay frames go to the server");
            match Frame::decode(&payload) {
                Ok(Frame::Session { body: SessionBody::Stream { message, .. }, .. }) => Some((i, message)),
                _ => None,
            }
        })
        .collect()
}

fn sent_to_ip(sent: &[(Duration, Transmit)], ip: IpAddr) -> usize {
    sent.iter().filter(|(_, t)| t.destination.ip() == ip).count()
}

/// A birthday prober (a port-restricted cone facing a random symmetric peer)
/// with its session open.
fn prober(seed: u64) -> Rig {
    let mut rig = Rig::new(FakeNat::PortRestrictedCone, seed);
    assert_eq!(rig.measured_profile(), Some(port_restricted_cone()), "the client measured its cone");
    rig.offer(Strategy::Birthday, random_symmetric());
    rig
}

/// The predicting side (a port-restricted cone facing a sequential
/// symmetric peer) with its session open.
fn predicting(seed: u64, peer_delta: i32) -> Rig {
    let mut rig = Rig::new(FakeNat::PortRestrictedCone, seed);
    assert_eq!(rig.measured_profile(), Some(port_restricted_cone()), "the client measured its cone");
    rig.offer(Strategy::Predict, sequential_symmetric(peer_delta));
    rig
}

// ---------------------------------------------------------------------------
// Birthday probing, cone side
// ---------------------------------------------------------------------------

#[test]
fn a_pool_announced_on_a_third_partys_address_draws_no_probe() {
    // Given a port-restricted cone in a birthday session with a random symmetric peer,
    let mut rig = prober(1);
    let mark = rig.sent.len();
    // when the (authenticated) peer announces its pool on an address the server never saw it at,
    rig.peer_says(StreamMessage::PoolOpen { attempt: 0, ip: THIRD_PARTY, sockets: 256 });
    rig.run_for(Duration::from_secs(8));
    // then not one datagram goes to that address, and no probe at all leaves,
    assert_eq!(sent_to_ip(rig.sent_since(mark), THIRD_PARTY), 0, "datagrams aimed at the third party");
    assert_eq!(probes(rig.sent_since(mark)), [], "probes after a pool on a third party's address");
    let info = rig.client.session_info(SESSION).expect("the session stays open");
    assert_eq!(info.probes_sent, 0);

    // and the refusal costs the peer the message, not the session: its pool
    // on the address the server saw it at is probed.
    rig.peer_says(StreamMessage::PoolOpen { attempt: 0, ip: PEER_PUBLIC_IP, sockets: 256 });
    rig.run_for(Duration::from_secs(1));
    assert!(sent_to_ip(rig.sent_since(mark), PEER_PUBLIC_IP) > 0, "the honest pool is probed");
    assert_eq!(sent_to_ip(rig.sent_since(mark), THIRD_PARTY), 0);
}

#[test]
fn a_pool_on_the_peers_observed_address_is_probed_at_distinct_ports_within_rate_and_budget() {
    // Given a port-restricted cone in a birthday session with a random symmetric peer,
    let mut rig = prober(2);
    let (rate, interval, budget) =
        (rig.config().birthday_probe_rate, rig.config().probe_interval, rig.config().birthday_probe_budget);
    let per_interval = (f64::from(rate) * interval.as_secs_f64()).ceil() as usize;
    let (mark, t0) = (rig.sent.len(), rig.elapsed());
    // when the peer announces its pool on the address the server saw it at,
    rig.peer_says(StreamMessage::PoolOpen { attempt: 0, ip: PEER_PUBLIC_IP, sockets: 256 });
    // and nothing answers for the whole attempt (it ends before the first retry),
    rig.run_for(Duration::from_secs(8));
    let sent = probes(rig.sent_since(mark));

    // then every probe goes to that address, from the primary socket, in attempt 0,
    assert!(!sent.is_empty(), "the pool is probed");
    for (_, socket, to, attempt) in &sent {
        assert_eq!((to.ip(), *socket, *attempt), (PEER_PUBLIC_IP, PRIMARY.0, 0), "probe to {to}");
        assert!((BIRTHDAY_PORTS.0..=BIRTHDAY_PORTS.1).contains(&to.port()), "probe to port {}", to.port());
    }
    // each to a port not probed before,
    let ports: BTreeSet<u16> = sent.iter().map(|(_, _, to, _)| to.port()).collect();
    assert_eq!(ports.len(), sent.len(), "a port was probed twice");
    // the whole budget and not one probe more,
    assert_eq!(sent.len(), budget as usize, "probes in one unanswered attempt");
    // paced: no probe interval, the first included, carries more than its share of the rate,
    let mut per_slot: BTreeMap<u128, usize> = BTreeMap::new();
    for (at, ..) in &sent {
        *per_slot.entry((*at - t0).as_nanos() / interval.as_nanos()).or_default() += 1;
    }
    assert!(per_slot.get(&0).is_some_and(|n| (1..=per_interval).contains(n)), "first interval: {:?}", per_slot.get(&0));
    for (slot, n) in &per_slot {
        assert!(*n <= per_interval, "{n} probes in interval {slot}, more than {per_interval}");
    }
    // and the unanswered attempt fails, with a retry planned.
    let failed = rig.events_since(t0).into_iter().any(
        |e| matches!(e, ClientEvent::PunchFailed { session, attempt: 0, retry_in: Some(_) } if session == SESSION),
    );
    assert!(failed, "attempt 0 failed with a retry planned");
}

#[test]
fn the_first_answered_probe_ends_the_probing() {
    // Given a prober spending its budget on the peer's pool,
    let mut rig = prober(3);
    rig.peer_says(StreamMessage::PoolOpen { attempt: 0, ip: PEER_PUBLIC_IP, sockets: 256 });
    rig.run_for(Duration::from_millis(350));
    let hit = probes(&rig.sent).last().expect("probes left").2;
    // when the peer's NAT answers one of them from the probed port,
    rig.peer_counter += 1;
    let ack = rig.sealed(Frame::ProbeAck {
        session: SESSION,
        attempt: 0,
        probe_counter: 1,
        counter: 0,
        observed: SocketAddr::new(MY_PUBLIC_IP, PRIMARY.1.port()),
    });
    rig.deliver(PRIMARY.0, hit, ack);
    let path = rig.client.session_info(SESSION).expect("open").path;
    assert_eq!(path, PathKind::Direct { socket: PRIMARY.0, remote: hit }, "the session went direct");
    let mark = rig.sent.len();
    rig.run_for(Duration::from_secs(6));
    // then from then on only that path is probed (its keepalives), never a random port again.
    let after = probes(rig.sent_since(mark));
    assert!(!after.is_empty(), "the direct path is kept alive");
    assert!(after.iter().all(|(_, _, to, _)| *to == hit), "probes after the path went direct: {after:?}");
}

// ---------------------------------------------------------------------------
// Port prediction, cone side
// ---------------------------------------------------------------------------

#[test]
fn a_prediction_based_on_a_third_partys_address_draws_no_opener() {
    // Given a port-restricted cone in a prediction session with a sequential symmetric peer,
    let mut rig = predicting(4, 2);
    let mark = rig.sent.len();
    // when the (authenticated) peer predicts ports of an address the server never saw it at,
    let base = SocketAddr::new(THIRD_PARTY, 30_000);
    rig.peer_says(StreamMessage::Prediction { attempt: 0, base, delta: 2, window: 64 });
    rig.peer_says(StreamMessage::OpenersOut { attempt: 0 });
    rig.run_for(Duration::from_secs(6));
    // then nothing goes to that address: no opener, no probe.
    assert_eq!(sent_to_ip(rig.sent_since(mark), THIRD_PARTY), 0, "datagrams aimed at the third party");
    assert_eq!(openers(rig.sent_since(mark)), Vec::<&Transmit>::new(), "openers without an acceptable window");
    assert_eq!(rig.client.session_info(SESSION).expect("open").probes_sent, 0);
}

#[test]
fn a_prediction_on_the_peers_observed_address_opens_exactly_the_predicted_window() {
    for (seed, delta, window) in [(5, 2, 8), (6, -3, 5), (7, 1, 1)] {
        // Given a port-restricted cone in a prediction session with a sequential symmetric peer,
        let mut rig = predicting(seed, delta);
        let mark = rig.sent.len();
        // when the peer predicts `window` ports stepping by `delta` from a base on its observed address,
        let base = SocketAddr::new(PEER_PUBLIC_IP, 30_000);
        rig.peer_says(StreamMessage::Prediction { attempt: 0, base, delta, window });
        let predicted: Vec<SocketAddr> =
            (1..=i32::from(window)).map(|k| SocketAddr::new(PEER_PUBLIC_IP, (30_000 + k * delta) as u16)).collect();

        // then it opens each predicted port, in order, then the peer's candidates, once each,
        // all with the opener TTL from its primary socket,
        let opened = openers(rig.sent_since(mark));
        let targets: Vec<SocketAddr> = opened.iter().map(|t| t.destination).collect();
        let expected: Vec<SocketAddr> = predicted.iter().copied().chain(peer_candidates()).collect();
        assert_eq!(targets, expected, "openers for delta {delta}, window {window}");
        let ttl = rig.config().opener_ttl;
        assert!(opened.iter().all(|t| t.ttl == Some(ttl) && t.socket == PRIMARY.0), "opener TTL and socket");
        // and announces its openers to the peer.
        let announced = relayed_stream(rig.sent_since(mark));
        assert!(announced.iter().any(|(_, m)| *m == StreamMessage::OpenersOut { attempt: 0 }), "OpenersOut");

        // When the peer's openers are out too,
        let mark = rig.sent.len();
        rig.peer_says(StreamMessage::OpenersOut { attempt: 0 });
        rig.run_for(Duration::from_secs(2));
        // then it probes the predicted ports, every one of them, and nothing else on the peer's address.
        let probed: BTreeSet<SocketAddr> = probes(rig.sent_since(mark)).iter().map(|(_, _, to, _)| *to).collect();
        let window_set: BTreeSet<SocketAddr> = predicted.iter().copied().collect();
        assert_eq!(probed, window_set, "probe targets for delta {delta}, window {window}");
        assert_eq!(sent_to_ip(rig.sent_since(mark), THIRD_PARTY), 0);
    }
}

// ---------------------------------------------------------------------------
// Birthday probing, symmetric side
// ---------------------------------------------------------------------------

/// The birthday pool side: a random symmetric NAT facing a port-restricted
/// cone, with its session open; also returns when the offer arrived and the
/// index of [`Rig::sent`] at that moment.
fn pool_side(seed: u64) -> (Rig, Duration, usize) {
    let mut rig = Rig::new(FakeNat::random_symmetric(seed), seed);
    let profile = rig.measured_profile().expect("a profile");
    assert_eq!(
        (profile.mapping, profile.ports),
        (Some(MappingBehavior::AddressAndPortDependent), Some(PortAllocation::Random)),
        "the client measured a random symmetric NAT"
    );
    let (t0, mark) = (rig.elapsed(), rig.sent.len());
    rig.offer(Strategy::Birthday, port_restricted_cone());
    (rig, t0, mark)
}

/// The sockets that sent openers from index `mark` of [`Rig::sent`] on.
fn pool_sockets(rig: &Rig, mark: usize) -> BTreeSet<SocketId> {
    openers(rig.sent_since(mark)).iter().map(|t| t.socket).collect()
}

#[test]
fn the_pool_side_opens_its_pool_toward_the_peers_address_then_announces_it_and_releases_it_on_close() {
    // Given a random symmetric NAT, when the server offers a birthday session with a port-restricted cone,
    let (mut rig, t0, mark) = pool_side(8);
    let pool = rig.config().birthday_pool;

    // then the client asks its driver for a pool of the configured size,
    let asked: Vec<u16> = socket_requests(&rig.events_since(t0));
    assert_eq!(asked, [pool], "socket requests after the offer");
    assert_eq!(pool, 256);
    let sockets: BTreeSet<SocketId> = rig.live.keys().copied().filter(|s| *s != PRIMARY.0).collect();
    assert_eq!(sockets.len(), usize::from(pool), "the driver holds the pool");

    // sends one opener from each pool socket to the peer's server-observed
    // address (the offer's last candidate; host candidates are not opened), with the opener TTL,
    let opened = openers(rig.sent_since(mark));
    let pairs: BTreeSet<(SocketId, SocketAddr)> = opened.iter().map(|t| (t.socket, t.destination)).collect();
    let reflexive = *peer_candidates().last().expect("the offer has candidates");
    let expected: BTreeSet<(SocketId, SocketAddr)> = sockets.iter().map(|s| (*s, reflexive)).collect();
    assert_eq!(opened.len(), expected.len(), "one opener per pool socket");
    assert_eq!(pairs, expected);
    let ttl = rig.config().opener_ttl;
    assert!(opened.iter().all(|t| t.ttl == Some(ttl)), "every opener has TTL {ttl}");
    assert_eq!(pool_sockets(&rig, mark), sockets);

    // and then, over the relay, announces the pool on the address the server sees it at.
    let announced = relayed_stream(rig.sent_since(mark));
    let pool_open: Vec<&(usize, StreamMessage)> =
        announced.iter().filter(|(_, m)| matches!(m, StreamMessage::PoolOpen { .. })).collect();
    let reflexive_ip = rig.client.reflexive().expect("logged in").ip();
    assert_eq!(reflexive_ip, MY_PUBLIC_IP);
    assert_eq!(
        pool_open.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(),
        [StreamMessage::PoolOpen { attempt: 0, ip: reflexive_ip, sockets: pool }]
    );
    let last_opener = rig.sent_since(mark).iter().rposition(|(_, t)| is_opener(t));
    assert!(last_opener < Some(pool_open[0].0), "the pool is announced after its openers left");

    // When the session is closed while the pool is open,
    let closed_at = rig.elapsed();
    rig.run_for(Duration::from_secs(1));
    let now = rig.now;
    rig.client.close(now, SESSION);
    rig.pump();
    // then every pool socket is given back, each once, and only the primary socket stays.
    let released = released_sockets(&rig.events_since(closed_at));
    assert_eq!(released.iter().copied().collect::<BTreeSet<_>>(), sockets);
    assert_eq!(released.len(), sockets.len(), "a socket was released twice");
    assert_eq!(rig.live.keys().copied().collect::<Vec<_>>(), [PRIMARY.0]);
    let closed = rig
        .events_since(closed_at)
        .into_iter()
        .any(|e| matches!(e, ClientEvent::SessionClosed { session, reason: CloseReason::Local } if session == SESSION));
    assert!(closed, "the session closed");
}

#[test]
fn the_pool_is_given_back_when_the_attempt_fails_and_asked_for_afresh_on_retry() {
    // Given the pool side with its pool open and nobody probing it,
    let (mut rig, t0, _) = pool_side(9);
    let pool: BTreeSet<SocketId> = rig.live.keys().copied().filter(|s| *s != PRIMARY.0).collect();
    assert_eq!(pool.len(), usize::from(rig.config().birthday_pool));
    // when the attempt runs out,
    rig.run_for(Duration::from_secs(9));
    let events = rig.events_since(t0);
    let failed = events.iter().position(|e| matches!(e, ClientEvent::PunchFailed { attempt: 0, .. }));
    let failed = failed.expect("attempt 0 failed");
    // then the whole pool is given back by the time the failure is reported,
    let released: BTreeSet<SocketId> = released_sockets(&events[..failed]).into_iter().collect();
    assert!(pool.is_subset(&released), "pool sockets still held after the attempt failed");
    assert!(rig.live.keys().all(|s| !pool.contains(s)));
    // and the retry asks for a fresh pool of the same size.
    rig.run_for(rig.config().punch_retry);
    let asked: Vec<u16> = socket_requests(&rig.events_since(t0));
    assert_eq!(asked, [rig.config().birthday_pool; 2], "one pool per attempt");
}

#[test]
fn once_a_pool_socket_goes_direct_the_rest_of_the_pool_is_given_back() {
    // Given the pool side with its pool open,
    let (mut rig, _, mark) = pool_side(10);
    let pool: Vec<SocketId> = pool_sockets(&rig, mark).into_iter().collect();
    let winner = pool[137];
    // when the prober's probe reaches one pool socket and the pool side's answer-probe is acknowledged,
    let from = SocketAddr::new(PEER_PUBLIC_IP, PEER_REFLEXIVE.port());
    rig.peer_counter += 1;
    let probe = rig.sealed(Frame::Probe { session: SESSION, attempt: 0, counter: 0 });
    rig.deliver(winner, from, probe);
    rig.peer_counter += 1;
    let ack = rig.sealed(Frame::ProbeAck {
        session: SESSION,
        attempt: 0,
        probe_counter: 1,
        counter: 0,
        observed: SocketAddr::new(MY_PUBLIC_IP, 1234),
    });
    let t1 = rig.elapsed();
    rig.deliver(winner, from, ack);
    // then the session is direct on that socket, and every other pool socket is given back.
    assert_eq!(rig.client.session_info(SESSION).expect("open").path, PathKind::Direct { socket: winner, remote: from });
    let released: BTreeSet<SocketId> = released_sockets(&rig.events_since(t1)).into_iter().collect();
    let others: BTreeSet<SocketId> = pool.iter().copied().filter(|s| *s != winner).collect();
    assert_eq!(released, others);
    assert_eq!(rig.live.keys().copied().collect::<Vec<_>>(), [PRIMARY.0, winner]);
}
