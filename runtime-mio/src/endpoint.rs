//! The generic drive loop: one core machine, its UDP sockets and TCP
//! connections, one `mio::Poll`.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use punchline_core::client::{Client, ClientEvent};
use punchline_core::messaging::{MessageStore, StoreCompletion, StoreRequest};
use punchline_core::server::{Server, ServerEvent};
use punchline_core::{Machine, SocketId, Transmit};
use punchline_store::StoreWorker;
use tracing::{debug, warn};

use crate::tcp::{self, Tcp, TcpCounters, FIRST_STREAM_ID};

/// The token of the endpoint's [`Waker`]; socket and connection tokens are
/// their `SocketId`s; listeners' tokens sit just below the waker's.
const WAKER: Token = Token(usize::MAX);
/// Room for the largest datagram we accept and then some: anything longer
/// than [`punchline_core::wire::MAX_DATAGRAM`] is dropped by the machine, so a
/// truncated giant still arrives too long and is counted as malformed.
const RECV_BUFFER: usize = 2048;
/// Consecutive receive errors (other than "would block") after which a socket
/// is left until its next readiness event, so one broken socket cannot spin
/// the loop.
const MAX_RECV_ERRORS: u32 = 64;

/// A core machine that may ask its driver for something: sockets and
/// stream connections (a [`Client`]), storage and the closing of
/// connections (a [`Server`]).
pub trait Role: Machine {
    /// Carries out `event` if it is a request to the driver, and returns the
    /// events meant for the application.
    fn driver_event(&mut self, now: Instant, event: Self::Event, sockets: &mut Sockets) -> Option<Self::Event>;

    /// The outcome of [`Sockets::connect_stream`] for `request`: the new
    /// connection's id, or `None` when it failed or timed out. Ignored by
    /// default (a role that never connects never gets one).
    fn stream_opened(&mut self, _now: Instant, _request: u32, _conn: Option<SocketId>) {}

    /// A listener (see [`Endpoint::listen_tcp`]) accepted `conn` from
    /// `remote`. Ignored by default (a role that never listens never gets
    /// one).
    fn stream_accepted(&mut self, _now: Instant, _conn: SocketId, _remote: SocketAddr) {}

    /// The next storage request, for machines that store (see
    /// [`Server::poll_store_request`]). None by default.
    fn poll_store_request(&mut self) -> Option<StoreRequest> {
        None
    }

    /// Hands a storage request's outcome back. Ignored by default.
    fn handle_store_completion(&mut self, _now: Instant, _completion: StoreCompletion) {}
}

impl Role for Client {
    fn driver_event(&mut self, now: Instant, event: ClientEvent, sockets: &mut Sockets) -> Option<ClientEvent> {
        match event {
            ClientEvent::OpenSockets { request, count } => {
                let opened = sockets.open_beside(SocketId(0), count);
                self.sockets_opened(now, request, &opened);
                None
            }
            ClientEvent::ReleaseSocket { socket } => {
                sockets.release(socket);
                None
            }
            ClientEvent::OpenStream { request, to } => {
                sockets.connect_stream(now, request, to);
                None
            }
            ClientEvent::CloseStream { conn } => {
                sockets.close_stream(conn);
                None
            }
            other => Some(other),
        }
    }

    fn stream_opened(&mut self, now: Instant, request: u32, conn: Option<SocketId>) {
        Client::stream_opened(self, now, request, conn);
    }
}

impl Role for Server {
    fn driver_event(&mut self, _now: Instant, event: Self::Event, sockets: &mut Sockets) -> Option<Self::Event> {
        match event {
            ServerEvent::CloseStream { conn } => {
                sockets.close_stream(conn);
                None
            }
            other => Some(other),
        }
    }

    fn stream_accepted(&mut self, now: Instant, conn: SocketId, remote: SocketAddr) {
        Server::stream_accepted(self, now, conn, remote);
    }

    fn poll_store_request(&mut self) -> Option<StoreRequest> {
        Server::poll_store_request(self)
    }

    fn handle_store_completion(&mut self, now: Instant, completion: StoreCompletion) {
        Server::handle_store_completion(self, now, completion)
    }
}

/// A store on its own thread ([`StoreWorker`], group commit) and the
/// completions it handed back, waiting for the loop. The worker wakes the
/// loop's [`Waker`] after each commit.
#[derive(Debug)]
struct StoreLink {
    worker: StoreWorker,
    done: Arc<Mutex<VecDeque<StoreCompletion>>>,
}

impl StoreLink {
    fn spawn(store: Box<dyn MessageStore>, waker: Arc<Waker>) -> io::Result<StoreLink> {
        let done = Arc::new(Mutex::new(VecDeque::new()));
        let inbox = Arc::clone(&done);
        let worker = StoreWorker::spawn(store, move |completions: Vec<StoreCompletion>| {
            inbox.lock().unwrap_or_else(PoisonError::into_inner).extend(completions);
            if let Err(error) = waker.wake() {
                warn!(%error, "cannot wake the loop after a commit");
            }
        })?;
        Ok(StoreLink { worker, done })
    }

    fn take_done(&self) -> VecDeque<StoreCompletion> {
        std::mem::take(&mut *self.done.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The UDP sockets and TCP connections of one machine, registered with the
/// endpoint's poll.
///
/// UDP sockets are numbered below [`FIRST_STREAM_ID`]; connections from it
/// up, so an id names one or the other, never both.
#[derive(Debug)]
pub struct Sockets {
    registry: mio::Registry,
    open: BTreeMap<SocketId, Bound>,
    next_id: u32,
    tcp: Tcp,
}

#[derive(Debug)]
struct Bound {
    socket: UdpSocket,
    local: SocketAddr,
    /// The socket's TTL before any per-packet override, restored after each
    /// low-TTL send.
    default_ttl: u32,
}

impl Sockets {
    /// Binds `count` fresh UDP sockets on the IP of socket `beside`, port 0,
    /// and returns their new ids and local addresses. Sockets that fail to
    /// bind are left out (the client copes with fewer than it asked for).
    pub fn open_beside(&mut self, beside: SocketId, count: u16) -> Vec<(SocketId, SocketAddr)> {
        let Some(ip) = self.open.get(&beside).map(|b| b.local.ip()) else {
            return Vec::new();
        };
        (0..count).filter_map(|_| self.open_one(ip).map_err(|e| warn!(%ip, error = %e, "cannot bind")).ok()).collect()
    }

    /// Closes `socket` (deregisters and drops it). Unknown ids are ignored.
    pub fn release(&mut self, socket: SocketId) {
        if let Some(mut bound) = self.open.remove(&socket) {
            let _ = self.registry.deregister(&mut bound.socket);
            debug!(socket = socket.0, local = %bound.local, "released socket");
        }
    }

    /// Starts a TCP connection to `to` without blocking. Its outcome reaches
    /// the machine through [`Role::stream_opened`] quoting `request`: the
    /// connection's id once it is connected, `None` when it fails or takes
    /// longer than [`CONNECT_TIMEOUT`](crate::CONNECT_TIMEOUT).
    pub fn connect_stream(&mut self, now: Instant, request: u32, to: SocketAddr) {
        self.tcp.connect(&self.registry, now, request, to);
    }

    /// Closes the stream connection `conn`, after writing what the kernel
    /// takes of its buffer at once (then FIN). The machine asked: it is not
    /// told again. Unknown ids are ignored.
    pub fn close_stream(&mut self, conn: SocketId) {
        self.tcp.close(&self.registry, conn);
    }

    /// Local addresses of every open socket, in id order.
    pub fn local_addrs(&self) -> Vec<(SocketId, SocketAddr)> {
        self.open.iter().map(|(id, b)| (*id, b.local)).collect()
    }

    /// How many sockets are open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// True when no socket is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    fn open_one(&mut self, ip: IpAddr) -> io::Result<(SocketId, SocketAddr)> {
        let std_socket = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))?;
        let id = self.fresh_udp_id()?;
        self.adopt(id, std_socket)?;
        Ok((id, self.open[&id].local))
    }

    /// The next UDP socket id: counting up, wrapping below
    /// [`FIRST_STREAM_ID`] (after a million sockets) to ids not open.
    fn fresh_udp_id(&mut self) -> io::Result<SocketId> {
        for _ in 0..FIRST_STREAM_ID {
            if self.next_id >= FIRST_STREAM_ID {
                self.next_id = 0;
            }
            let id = SocketId(self.next_id);
            self.next_id += 1;
            if !self.open.contains_key(&id) {
                return Ok(id);
            }
        }
        Err(io::Error::other("every UDP socket id is taken"))
    }

    fn adopt(&mut self, id: SocketId, std_socket: std::net::UdpSocket) -> io::Result<()> {
        if id.0 >= FIRST_STREAM_ID {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("UDP socket id {} is in the stream connections' range", id.0),
            ));
        }
        std_socket.set_nonblocking(true)?;
        let local = std_socket.local_addr()?;
        let mut socket = UdpSocket::from_std(std_socket);
        let default_ttl = hop_limit(&socket, local)?;
        self.registry.register(&mut socket, Token(id.0 as usize), Interest::READABLE)?;
        self.next_id = self.next_id.max(id.0 + 1);
        self.open.insert(id, Bound { socket, local, default_ttl });
        Ok(())
    }

    /// Sends one transmit: a datagram with its TTL when it has one, or
    /// stream bytes onto a connection's write buffer. A datagram that cannot
    /// be sent is dropped (UDP is lossy anyway; the machine retries).
    fn send(&mut self, t: &Transmit) {
        if t.socket.0 >= FIRST_STREAM_ID {
            return self.tcp.send(&self.registry, t);
        }
        let Some(bound) = self.open.get(&t.socket) else {
            debug!(socket = t.socket.0, "transmit on a socket that is not open; dropped");
            return;
        };
        let ttl_override = t.ttl.map(u32::from).filter(|ttl| *ttl != bound.default_ttl);
        if let Some(ttl) = ttl_override {
            if let Err(e) = set_hop_limit(&bound.socket, bound.local, ttl) {
                debug!(error = %e, ttl, "cannot set TTL; sending with the default");
            }
        }
        if let Err(e) = bound.socket.send_to(&t.payload, t.destination) {
            debug!(error = %e, to = %t.destination, "send failed; datagram dropped");
        }
        if ttl_override.is_some() {
            if let Err(e) = set_hop_limit(&bound.socket, bound.local, bound.default_ttl) {
                warn!(error = %e, "cannot restore the socket's TTL");
            }
        }
    }
}

/// The socket's TTL (IPv4) or unicast hop limit (IPv6, `IPV6_UNICAST_HOPS`):
/// an IPv6 packet ignores `IP_TTL`, so a low-TTL opener on an IPv6 socket
/// needs the hop limit (issue 24).
fn hop_limit(socket: &UdpSocket, local: SocketAddr) -> io::Result<u32> {
    let sock = socket2::SockRef::from(socket);
    if local.is_ipv4() {
        sock.ttl()
    } else {
        sock.unicast_hops_v6()
    }
}

/// Sets what [`hop_limit`] reads.
fn set_hop_limit(socket: &UdpSocket, local: SocketAddr, ttl: u32) -> io::Result<()> {
    let sock = socket2::SockRef::from(socket);
    if local.is_ipv4() {
        sock.set_ttl(ttl)
    } else {
        sock.set_unicast_hops_v6(ttl)
    }
}

/// One machine on real sockets: see the [crate documentation](crate).
#[derive(Debug)]
pub struct Endpoint<M: Role> {
    poll: Poll,
    events: Events,
    waker: Arc<Waker>,
    machine: M,
    sockets: Sockets,
    store: Option<StoreLink>,
    buf: Vec<u8>,
    /// One read from a stream connection.
    stream_buf: Vec<u8>,
}

/// What one readiness event asks of the loop.
#[derive(Clone, Copy, Debug)]
struct Ready {
    token: Token,
    readable: bool,
    writable: bool,
}

impl<M: Role> Endpoint<M> {
    /// Puts `machine` on already bound UDP sockets, named by the ids the
    /// machine knows them by (each below [`FIRST_STREAM_ID`]). A [`Server`]
    /// needs a store: use [`with_store`](Self::with_store) (here its storage
    /// requests would be dropped, with a warning, and its texts never
    /// acknowledged).
    pub fn new(machine: M, bound: Vec<(SocketId, std::net::UdpSocket)>) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let registry = poll.registry().try_clone()?;
        let mut sockets = Sockets { registry, open: BTreeMap::new(), next_id: 0, tcp: Tcp::default() };
        for (id, socket) in bound {
            sockets.adopt(id, socket)?;
        }
        let events = Events::with_capacity(256);
        Ok(Endpoint {
            poll,
            events,
            waker,
            machine,
            sockets,
            store: None,
            buf: vec![0; RECV_BUFFER],
            stream_buf: vec![0; tcp::READ_CHUNK],
        })
    }

    /// As [`new`](Self::new), for a machine that stores (a [`Server`]):
    /// its storage requests run on `store` in a thread of their own, with
    /// group commit ([`StoreWorker`]), so the loop never waits for a disk.
    pub fn with_store(
        machine: M,
        bound: Vec<(SocketId, std::net::UdpSocket)>,
        store: Box<dyn MessageStore>,
    ) -> io::Result<Self> {
        let mut endpoint = Endpoint::new(machine, bound)?;
        endpoint.store = Some(StoreLink::spawn(store, endpoint.waker())?);
        Ok(endpoint)
    }

    /// Accepts TCP connections on `addr` (any port, 0 for a free one) and
    /// returns the bound address. Each accepted connection gets a fresh id
    /// and is handed to [`Role::stream_accepted`].
    pub fn listen_tcp(&mut self, addr: SocketAddr) -> io::Result<SocketAddr> {
        self.sockets.tcp.listen(&self.sockets.registry, addr)
    }

    /// As [`listen_tcp`](Self::listen_tcp), on a listener already bound and
    /// listening (for a caller that chose its port first).
    pub fn adopt_tcp_listener(&mut self, listener: std::net::TcpListener) -> io::Result<SocketAddr> {
        self.sockets.tcp.adopt_listener(&self.sockets.registry, listener)
    }

    /// The TCP listeners' addresses, in the order they were added.
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.sockets.tcp.listen_addrs()
    }

    /// The TCP counters, live: readable from any thread while the loop runs.
    pub fn tcp_counters(&self) -> TcpCounters {
        self.sockets.tcp.counters().clone()
    }

    /// Closes every stream connection, writing first what the kernel takes
    /// of each one's buffer without waiting (then FIN). For a clean stop,
    /// after the machine's last words were flushed.
    pub fn close_streams(&mut self) {
        self.sockets.tcp.close_all(&self.sockets.registry);
    }

    /// A waker that makes [`turn`](Self::turn) return early (for commands
    /// from other threads, and shutdown).
    pub fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    /// The machine.
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// The machine, for commands. Call [`flush`](Self::flush) after each.
    pub fn machine_mut(&mut self) -> &mut M {
        &mut self.machine
    }

    /// The open sockets.
    pub fn sockets(&self) -> &Sockets {
        &self.sockets
    }

    /// Drains the machine after an input: sends every transmit, carries out
    /// driver requests (which may queue more transmits), submits storage
    /// requests to the store thread, hands every other event to `sink`, and
    /// tells the machine what became of its connections (opened, accepted,
    /// ended: each may queue more), until every queue is empty.
    pub fn flush(&mut self, now: Instant, sink: &mut impl FnMut(M::Event)) {
        loop {
            let mut idle = true;
            while let Some(request) = self.machine.poll_store_request() {
                match &self.store {
                    Some(store) => store.worker.submit(request),
                    None => warn!(id = request.id.0, "a storage request, and no store to run it; dropped"),
                }
                idle = false;
            }
            while let Some(t) = self.machine.poll_transmit() {
                self.sockets.send(&t);
                idle = false;
            }
            while let Some(e) = self.machine.poll_event() {
                if let Some(e) = self.machine.driver_event(now, e, &mut self.sockets) {
                    sink(e);
                }
                idle = false;
            }
            while let Some((request, conn)) = self.sockets.tcp.opened.pop_front() {
                self.machine.stream_opened(now, request, conn);
                idle = false;
            }
            while let Some((conn, remote)) = self.sockets.tcp.accepted.pop_front() {
                self.machine.stream_accepted(now, conn, remote);
                idle = false;
            }
            while let Some(conn) = self.sockets.tcp.ended.pop_front() {
                self.machine.handle_stream_closed(now, conn);
                idle = false;
            }
            if idle {
                return;
            }
        }
    }

    /// Sleeps until a datagram or stream bytes arrive, a connection can be
    /// accepted, connects or can take more bytes, the machine's deadline (or
    /// a connection's) passes, `until` passes or the waker fires; feeds what
    /// happened into the machine and flushes after every input. Returns true
    /// when woken by the waker.
    pub fn turn(&mut self, until: Option<Instant>, sink: &mut impl FnMut(M::Event)) -> io::Result<bool> {
        let deadline =
            [self.machine.poll_timeout(), until, self.sockets.tcp.next_deadline()].into_iter().flatten().min();
        // Work left over from the last turn (a budget spent) is served
        // without sleeping.
        let carried = std::mem::take(&mut self.sockets.tcp.unfinished);
        let timeout = if carried.is_empty() {
            deadline.map(|d| round_up_to_millis(d.saturating_duration_since(Instant::now())))
        } else {
            Some(Duration::ZERO)
        };
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let mut woken = false;
        let ready: Vec<Ready> = self
            .events
            .iter()
            .map(|e| Ready {
                token: e.token(),
                readable: e.is_readable() || e.is_read_closed() || e.is_error(),
                writable: e.is_writable() || e.is_write_closed() || e.is_error(),
            })
            .collect();
        let carried = carried.into_iter().map(|token| Ready { token, readable: true, writable: false });
        for ready in ready.into_iter().chain(carried) {
            if ready.token == WAKER {
                woken = true;
            } else if let Some(index) = tcp::listener_index(ready.token) {
                self.sockets.tcp.accept(&self.sockets.registry, Instant::now(), index);
                self.flush(Instant::now(), sink);
            } else if (ready.token.0 as u64) < u64::from(FIRST_STREAM_ID) {
                self.read_socket(SocketId(ready.token.0 as u32), sink);
            } else {
                self.stream_ready(ready, sink);
            }
        }
        self.take_store_completions(sink);
        let now = Instant::now();
        if self.sockets.tcp.next_deadline().is_some_and(|t| t <= now) {
            self.sockets.tcp.handle_deadlines(&self.sockets.registry, now);
            self.flush(now, sink);
        }
        if self.machine.poll_timeout().is_some_and(|t| t <= now) {
            self.machine.handle_timeout(now);
            self.flush(now, sink);
        }
        Ok(woken)
    }

    /// Feeds the store thread's completions into the machine, in order.
    fn take_store_completions(&mut self, sink: &mut impl FnMut(M::Event)) {
        let Some(store) = &self.store else { return };
        let done = store.take_done();
        if done.is_empty() {
            return;
        }
        let now = Instant::now();
        for completion in done {
            self.machine.handle_store_completion(now, completion);
        }
        self.flush(now, sink);
    }

    /// Reads `socket` until it would block (mio readiness is edge-triggered).
    fn read_socket(&mut self, socket: SocketId, sink: &mut impl FnMut(M::Event)) {
        let mut errors = 0;
        loop {
            let Some(bound) = self.sockets.open.get(&socket) else { return };
            match bound.socket.recv_from(&mut self.buf) {
                Ok((len, from)) => {
                    let now = Instant::now();
                    self.catch_up_timers(now, sink);
                    self.machine.handle_datagram(now, socket, from, &self.buf[..len]);
                    self.flush(now, sink);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    debug!(error = %e, socket = socket.0, "receive error");
                    errors += 1;
                    if errors >= MAX_RECV_ERRORS {
                        return;
                    }
                }
            }
        }
    }

    /// A stream connection is ready: a connect finished, its buffer can
    /// drain, or bytes (or EOF) arrived.
    fn stream_ready(&mut self, ready: Ready, sink: &mut impl FnMut(M::Event)) {
        let conn = SocketId(ready.token.0 as u32);
        if !self.sockets.tcp.holds(conn) {
            return;
        }
        if self.sockets.tcp.is_connecting(conn) {
            self.sockets.tcp.check_connect(&self.sockets.registry, conn);
            return self.flush(Instant::now(), sink);
        }
        if ready.writable {
            self.sockets.tcp.write_buffered(&self.sockets.registry, conn);
            self.flush(Instant::now(), sink);
        }
        if ready.readable {
            self.read_stream(conn, sink);
        }
    }

    /// Reads `conn` until it would block, handing every piece to the
    /// machine as it comes, or until its budget is spent (then it is read
    /// again next turn, after the others had theirs).
    fn read_stream(&mut self, conn: SocketId, sink: &mut impl FnMut(M::Event)) {
        for _ in 0..tcp::READ_BUDGET {
            let Some(result) = self.sockets.tcp.read(conn, &mut self.stream_buf) else { return };
            let now = Instant::now();
            match result {
                Ok(0) => {
                    debug!(conn = conn.0, "connection closed by its peer");
                    self.sockets.tcp.ended_by_peer(&self.sockets.registry, conn);
                    return self.flush(now, sink);
                }
                Ok(len) => {
                    self.catch_up_timers(now, sink);
                    self.machine.handle_stream_data(now, conn, &self.stream_buf[..len]);
                    self.flush(now, sink);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!(conn = conn.0, error = %e, "connection broken");
                    self.sockets.tcp.ended_by_peer(&self.sockets.registry, conn);
                    return self.flush(now, sink);
                }
            }
        }
        if self.sockets.tcp.holds(conn) {
            self.sockets.tcp.unfinished.push_back(Token(conn.0 as usize));
        }
    }

    /// Deadlines that passed while input queued go first, so a flood cannot
    /// starve the machine's timers.
    fn catch_up_timers(&mut self, now: Instant, sink: &mut impl FnMut(M::Event)) {
        if self.machine.poll_timeout().is_some_and(|t| t <= now) {
            self.machine.handle_timeout(now);
            self.flush(now, sink);
        }
    }
}

/// `mio` sleeps in whole milliseconds (epoll): round up, so the loop never
/// wakes a hair early and spins until the deadline.
fn round_up_to_millis(d: Duration) -> Duration {
    let millis = d.as_nanos().div_ceil(1_000_000);
    Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(addr: &str) -> Option<(UdpSocket, SocketAddr)> {
        let socket = std::net::UdpSocket::bind(addr).ok()?;
        let local = socket.local_addr().ok()?;
        Some((UdpSocket::from_std(socket), local))
    }

    #[test]
    fn an_ipv4_socket_takes_the_ttl() {
        let (socket, local) = bound("127.0.0.1:0").expect("IPv4 loopback");
        set_hop_limit(&socket, local, 3).expect("set");
        assert_eq!(hop_limit(&socket, local).expect("get"), 3);
        assert_eq!(socket.ttl().expect("IP_TTL"), 3);
    }

    #[test]
    #[ignore = "needs IPv6 on loopback"]
    fn an_ipv6_socket_takes_the_unicast_hop_limit() {
        // Given an IPv6 socket, when an opener's TTL is set, then it is the
        // hop limit IPv6 packets leave with (IP_TTL would change nothing).
        let (socket, local) = bound("[::1]:0").expect("IPv6 on loopback");
        let default = hop_limit(&socket, local).expect("get");
        set_hop_limit(&socket, local, 3).expect("set");
        assert_eq!(socket2::SockRef::from(&socket).unicast_hops_v6().expect("IPV6_UNICAST_HOPS"), 3);
        set_hop_limit(&socket, local, default).expect("restore");
        assert_eq!(hop_limit(&socket, local).expect("get"), default);
    }
}
