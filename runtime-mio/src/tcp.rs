//! TCP beside the UDP sockets (the fallback of issue 21): listeners, stream
//! connections and their bounded write buffers.
//!
//! This module owns the connections; the [`Endpoint`](crate::Endpoint) reads
//! them and hands what happened to the machine. Everything the machine must
//! hear about (a connection accepted, connected or failed, a connection that
//! died) waits in a queue here until the endpoint's flush drains it, so no
//! callback into the machine happens while it is being drained.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use punchline_core::{SocketId, Transmit};
use tracing::{debug, warn};

/// The first id a stream connection gets. UDP sockets are numbered below it
/// (the client's extra sockets count up from 1), so the two never collide.
pub const FIRST_STREAM_ID: u32 = 1 << 20;
/// Most TCP listeners one endpoint holds. Their mio tokens sit at the top of
/// the token space, above every connection id.
pub const MAX_LISTENERS: usize = 1024;
/// Connection ids wrap back to [`FIRST_STREAM_ID`] below this, clear of the
/// listeners' and the waker's tokens even where `usize` is 32 bits.
const STREAM_ID_END: u32 = u32::MAX - MAX_LISTENERS as u32 - 1;

/// A connection's write buffer above which relayed datagrams
/// ([`Transmit::droppable`]) are dropped and counted: 256 KiB, about 220
/// full datagrams, on top of what the kernel's socket buffer holds. A peer
/// that reads slower than its relay sends loses datagrams, as it would on a
/// congested UDP path, instead of growing the server.
pub const SOFT_WRITE_LIMIT: usize = 256 * 1024;
/// A connection whose write buffer would pass this (4 MiB) even with
/// signaling alone is closed and reported closed: its peer has stopped
/// reading.
pub const HARD_WRITE_LIMIT: usize = 4 * 1024 * 1024;
/// How long a connection attempt may take before it counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long accepting pauses after the system refused (out of file
/// descriptors, memory or buffers): a listener with a full backlog stays
/// readable, and retrying at once would spin.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(250);
/// Size of one read from a connection.
pub(crate) const READ_CHUNK: usize = 64 * 1024;
/// Reads one connection gets per readiness before the others get theirs
/// (`READ_CHUNK` each): a fast sender cannot starve the loop.
pub(crate) const READ_BUDGET: usize = 4;
/// Connections one listener accepts per turn before the loop moves on.
const ACCEPT_BUDGET: usize = 256;
/// A write buffer this large is given back to the allocator once it drains,
/// so a burst does not pin memory on a connection that then idles.
const KEEP_CAPACITY: usize = 64 * 1024;
/// The backlog of every listener (the kernel caps it at `somaxconn`).
const BACKLOG: i32 = 1024;

/// The mio token of listener `index`.
pub(crate) fn listener_token(index: usize) -> Token {
    Token(usize::MAX - 1 - index)
}

/// The listener a token names, if it names one.
pub(crate) fn listener_index(token: Token) -> Option<usize> {
    let index = (usize::MAX - 1).checked_sub(token.0)?;
    (index < MAX_LISTENERS).then_some(index)
}

/// What the endpoint's TCP connections did, counted since it started. Read
/// from any thread through [`TcpCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpStats {
    /// Connections accepted on a listener (the machine may still refuse
    /// them).
    pub accepted: u64,
    /// Outgoing connections that connected.
    pub connected: u64,
    /// Outgoing connections that failed or timed out ([`CONNECT_TIMEOUT`]).
    pub connect_failed: u64,
    /// Connections that ended by their peer's or the network's doing: EOF,
    /// reset, or a failed write.
    pub closed_by_peer: u64,
    /// Connections closed because their write buffer would have passed
    /// [`HARD_WRITE_LIMIT`].
    pub overflowed: u64,
    /// Relayed datagrams dropped because their connection's write buffer
    /// held more than [`SOFT_WRITE_LIMIT`].
    pub dropped: u64,
    /// The bytes of those datagrams, framing included.
    pub dropped_bytes: u64,
    /// Times accepting failed for want of resources and paused for
    /// [`ACCEPT_BACKOFF`].
    pub accept_paused: u64,
    /// Connections open now (connecting ones included).
    pub open: u64,
    /// Bytes waiting in write buffers now, all connections together.
    pub buffered: u64,
    /// The largest write buffer any one connection has reached.
    pub peak_buffered: u64,
}

/// A live view of an endpoint's [`TcpStats`], shareable across threads (the
/// loop owns the endpoint; a monitor reads this). Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct TcpCounters(Arc<Cells>);

#[derive(Debug, Default)]
struct Cells {
    accepted: AtomicU64,
    connected: AtomicU64,
    connect_failed: AtomicU64,
    closed_by_peer: AtomicU64,
    overflowed: AtomicU64,
    dropped: AtomicU64,
    dropped_bytes: AtomicU64,
    accept_paused: AtomicU64,
    open: AtomicU64,
    buffered: AtomicU64,
    peak_buffered: AtomicU64,
}

impl TcpCounters {
    /// The counters now.
    pub fn stats(&self) -> TcpStats {
        let c = &self.0;
        let get = |cell: &AtomicU64| cell.load(Ordering::Relaxed);
        TcpStats {
            accepted: get(&c.accepted),
            connected: get(&c.connected),
            connect_failed: get(&c.connect_failed),
            closed_by_peer: get(&c.closed_by_peer),
            overflowed: get(&c.overflowed),
            dropped: get(&c.dropped),
            dropped_bytes: get(&c.dropped_bytes),
            accept_paused: get(&c.accept_paused),
            open: get(&c.open),
            buffered: get(&c.buffered),
            peak_buffered: get(&c.peak_buffered),
        }
    }

    fn add(cell: &AtomicU64, n: u64) {
        cell.fetch_add(n, Ordering::Relaxed);
    }
}

/// Why a connection ended without the machine asking.
#[derive(Clone, Copy, Debug)]
enum Ended {
    /// EOF, reset, or a failed write.
    ByPeer,
    /// Its write buffer would have passed the hard limit.
    Overflow,
}

#[derive(Debug)]
struct Listener {
    listener: TcpListener,
    local: SocketAddr,
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    remote: SocketAddr,
    /// The request this outgoing connection answers, until it connects.
    connecting: Option<u32>,
    /// Bytes the kernel has not taken yet, oldest first.
    out: VecDeque<u8>,
    /// Registered for `WRITABLE` (only while `out` holds bytes).
    wants_write: bool,
}

/// Listeners and connections of one endpoint.
#[derive(Debug)]
pub(crate) struct Tcp {
    listeners: Vec<Listener>,
    conns: BTreeMap<SocketId, Conn>,
    /// Deadlines of the connections still connecting.
    connecting: BTreeMap<SocketId, Instant>,
    next_id: u32,
    /// Accepting is paused until then (see [`ACCEPT_BACKOFF`]).
    accept_paused_until: Option<Instant>,
    /// One warning per episode of refused accepts; the rest at debug.
    accept_warned: bool,
    /// Bytes in every write buffer.
    buffered: usize,
    /// Connections that ended without the machine asking, to report.
    pub(crate) ended: VecDeque<SocketId>,
    /// Outcomes of connection attempts (request, connection), to report.
    pub(crate) opened: VecDeque<(u32, Option<SocketId>)>,
    /// Accepted connections (connection, remote), to report.
    pub(crate) accepted: VecDeque<(SocketId, SocketAddr)>,
    /// Listeners and connections that used their budget with work left,
    /// served again next turn without sleeping.
    pub(crate) unfinished: VecDeque<Token>,
    counters: TcpCounters,
}

impl Default for Tcp {
    fn default() -> Self {
        Tcp {
            listeners: Vec::new(),
            conns: BTreeMap::new(),
            connecting: BTreeMap::new(),
            next_id: FIRST_STREAM_ID,
            accept_paused_until: None,
            accept_warned: false,
            buffered: 0,
            ended: VecDeque::new(),
            opened: VecDeque::new(),
            accepted: VecDeque::new(),
            unfinished: VecDeque::new(),
            counters: TcpCounters::default(),
        }
    }
}

impl Tcp {
    pub(crate) fn counters(&self) -> &TcpCounters {
        &self.counters
    }

    /// Listens on `addr` (port 0: any free port) and returns the bound
    /// address.
    pub(crate) fn listen(&mut self, registry: &Registry, addr: SocketAddr) -> io::Result<SocketAddr> {
        if self.listeners.len() >= MAX_LISTENERS {
            return Err(io::Error::other(format!("at most {MAX_LISTENERS} TCP listeners")));
        }
        let listener =
            bind_listener(addr).map_err(|e| io::Error::new(e.kind(), format!("cannot listen on TCP {addr}: {e}")))?;
        self.adopt_listener(registry, listener)
    }

    /// Takes an already bound (and listening) `listener`.
    pub(crate) fn adopt_listener(
        &mut self,
        registry: &Registry,
        listener: std::net::TcpListener,
    ) -> io::Result<SocketAddr> {
        if self.listeners.len() >= MAX_LISTENERS {
            return Err(io::Error::other(format!("at most {MAX_LISTENERS} TCP listeners")));
        }
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let mut listener = TcpListener::from_std(listener);
        registry.register(&mut listener, listener_token(self.listeners.len()), Interest::READABLE)?;
        self.listeners.push(Listener { listener, local });
        Ok(local)
    }

    /// The listeners' addresses, in the order they were added.
    pub(crate) fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.local).collect()
    }

    pub(crate) fn holds(&self, conn: SocketId) -> bool {
        self.conns.contains_key(&conn)
    }

    pub(crate) fn is_connecting(&self, conn: SocketId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.connecting.is_some())
    }

    /// Starts connecting to `to` without blocking; the outcome is queued in
    /// `opened` for `request`.
    pub(crate) fn connect(&mut self, registry: &Registry, now: Instant, request: u32, to: SocketAddr) {
        let mut stream = match TcpStream::connect(to) {
            Ok(stream) => stream,
            Err(e) => {
                debug!(%to, error = %e, "cannot start a TCP connection");
                TcpCounters::add(&self.counters.0.connect_failed, 1);
                self.opened.push_back((request, None));
                return;
            }
        };
        let id = self.fresh_id();
        // Writable once connected (or failed): mio's documented way to learn
        // the outcome of a non-blocking connect.
        if let Err(e) = registry.register(&mut stream, Token(id.0 as usize), Interest::WRITABLE) {
            debug!(%to, error = %e, "cannot register a TCP connection");
            TcpCounters::add(&self.counters.0.connect_failed, 1);
            self.opened.push_back((request, None));
            return;
        }
        let conn = Conn { stream, remote: to, connecting: Some(request), out: VecDeque::new(), wants_write: false };
        self.conns.insert(id, conn);
        self.connecting.insert(id, now + CONNECT_TIMEOUT);
        self.publish();
    }

    /// A connecting connection became ready: it connected, failed, or woke
    /// spuriously (then it keeps waiting).
    pub(crate) fn check_connect(&mut self, registry: &Registry, id: SocketId) {
        let Some(c) = self.conns.get_mut(&id) else { return };
        let Some(request) = c.connecting else { return };
        let outcome = match c.stream.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => match c.stream.peer_addr() {
                Ok(peer) => Ok(peer),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => Err(e),
            },
        };
        match outcome.and_then(|peer| {
            registry.reregister(&mut c.stream, Token(id.0 as usize), Interest::READABLE)?;
            Ok(peer)
        }) {
            Ok(peer) => {
                debug!(conn = id.0, %peer, "TCP connected");
                c.connecting = None;
                c.remote = peer;
                self.connecting.remove(&id);
                TcpCounters::add(&self.counters.0.connected, 1);
                self.opened.push_back((request, Some(id)));
            }
            Err(e) => {
                debug!(to = %c.remote, error = %e, "TCP connection failed");
                self.drop_attempt(registry, id, request);
            }
        }
    }

    /// When the loop must wake for TCP: a connect deadline, or the end of
    /// an accept pause.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let connect = self.connecting.values().min().copied();
        match (connect, self.accept_paused_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fails the connection attempts past their deadline, and resumes
    /// accepting after a pause (on every listener: readiness is
    /// edge-triggered, so a backlog left waiting raises no new event).
    pub(crate) fn handle_deadlines(&mut self, registry: &Registry, now: Instant) {
        let late: Vec<SocketId> = self.connecting.iter().filter(|(_, d)| **d <= now).map(|(id, _)| *id).collect();
        for id in late {
            if let Some(request) = self.conns.get(&id).and_then(|c| c.connecting) {
                debug!(conn = id.0, "TCP connect timed out");
                self.drop_attempt(registry, id, request);
            }
        }
        if self.accept_paused_until.is_some_and(|until| until <= now) {
            self.accept_paused_until = None;
            self.unfinished.extend((0..self.listeners.len()).map(listener_token));
        }
    }

    /// Accepts from listener `index` until it would block, its budget is
    /// spent, or the system refuses (then accepting pauses).
    pub(crate) fn accept(&mut self, registry: &Registry, now: Instant, index: usize) {
        if self.accept_paused_until.is_some() || index >= self.listeners.len() {
            return;
        }
        for _ in 0..ACCEPT_BUDGET {
            match self.listeners[index].listener.accept() {
                Ok((mut stream, remote)) => {
                    self.accept_warned = false;
                    let id = self.fresh_id();
                    if let Err(e) = registry.register(&mut stream, Token(id.0 as usize), Interest::READABLE) {
                        debug!(%remote, error = %e, "cannot register an accepted connection; closed");
                        continue;
                    }
                    let conn = Conn { stream, remote, connecting: None, out: VecDeque::new(), wants_write: false };
                    self.conns.insert(id, conn);
                    TcpCounters::add(&self.counters.0.accepted, 1);
                    self.accepted.push_back((id, remote));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return self.publish(),
                // The connection died in the backlog: not the listener's fault.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                    ) => {}
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM, or worse: the backlog
                    // stays readable, so back off rather than spin.
                    let local = self.listeners[index].local;
                    if self.accept_warned {
                        debug!(%local, error = %e, "cannot accept; paused");
                    } else {
                        warn!(%local, error = %e, pause = ?ACCEPT_BACKOFF, "cannot accept TCP connections; pausing");
                        self.accept_warned = true;
                    }
                    TcpCounters::add(&self.counters.0.accept_paused, 1);
                    self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                    return self.publish();
                }
            }
        }
        self.unfinished.push_back(listener_token(index));
        self.publish();
    }

    /// Reads from `id` into `buf`. `Ok(0)` is EOF.
    pub(crate) fn read(&mut self, id: SocketId, buf: &mut [u8]) -> Option<io::Result<usize>> {
        let c = self.conns.get_mut(&id)?;
        Some(io::Read::read(&mut c.stream, buf))
    }

    /// Queues `t`'s stream bytes on its connection, writing at once what the
    /// kernel takes. Applies the write limits (see [`SOFT_WRITE_LIMIT`],
    /// [`HARD_WRITE_LIMIT`]).
    pub(crate) fn send(&mut self, registry: &Registry, t: &Transmit) {
        let id = t.socket;
        let Some(c) = self.conns.get_mut(&id) else {
            debug!(conn = id.0, "stream bytes for a connection that is not open; dropped");
            return;
        };
        if c.connecting.is_some() {
            debug!(conn = id.0, "stream bytes for a connection still connecting; dropped");
            return;
        }
        let pending = c.out.len();
        if t.droppable && pending > SOFT_WRITE_LIMIT {
            TcpCounters::add(&self.counters.0.dropped, 1);
            TcpCounters::add(&self.counters.0.dropped_bytes, t.payload.len() as u64);
            return;
        }
        if pending + t.payload.len() > HARD_WRITE_LIMIT {
            debug!(conn = id.0, remote = %c.remote, pending, "a connection that does not read; closed");
            return self.end(registry, id, Ended::Overflow);
        }
        let mut rest: &[u8] = &t.payload;
        if pending == 0 {
            match write_some(&mut c.stream, rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) => {
                    debug!(conn = id.0, error = %e, "write failed; connection closed");
                    return self.end(registry, id, Ended::ByPeer);
                }
            }
        }
        if rest.is_empty() {
            return;
        }
        c.out.extend(rest);
        self.buffered += rest.len();
        self.counters.0.peak_buffered.fetch_max(c.out.len() as u64, Ordering::Relaxed);
        if !c.wants_write {
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(e) = registry.reregister(&mut c.stream, Token(id.0 as usize), interest) {
                debug!(conn = id.0, error = %e, "cannot watch for writability; connection closed");
                return self.end(registry, id, Ended::ByPeer);
            }
            c.wants_write = true;
        }
        self.publish();
    }

    /// The connection became writable: writes its buffer until the kernel
    /// stops taking it, and stops watching for writability once it is empty.
    pub(crate) fn write_buffered(&mut self, registry: &Registry, id: SocketId) {
        let Some(c) = self.conns.get_mut(&id) else { return };
        let before = c.out.len();
        let result = drain(&mut c.stream, &mut c.out);
        self.buffered -= before - c.out.len();
        if let Err(e) = result {
            debug!(conn = id.0, error = %e, "write failed; connection closed");
            return self.end(registry, id, Ended::ByPeer);
        }
        if c.out.is_empty() && c.wants_write {
            if c.out.capacity() > KEEP_CAPACITY {
                c.out = VecDeque::new();
            }
            if let Err(e) = registry.reregister(&mut c.stream, Token(id.0 as usize), Interest::READABLE) {
                debug!(conn = id.0, error = %e, "cannot stop watching for writability; connection closed");
                return self.end(registry, id, Ended::ByPeer);
            }
            c.wants_write = false;
        }
        self.publish();
    }

    /// The peer closed the connection (EOF) or it broke (a read error).
    pub(crate) fn ended_by_peer(&mut self, registry: &Registry, id: SocketId) {
        self.end(registry, id, Ended::ByPeer);
    }

    /// Closes `id` at the machine's request: writes what the kernel takes of
    /// its buffer, then shuts it down (FIN after the data). Not reported back.
    pub(crate) fn close(&mut self, registry: &Registry, id: SocketId) {
        let Some(mut c) = self.remove(registry, id) else { return };
        let _ = drain(&mut c.stream, &mut c.out);
        let _ = c.stream.shutdown(Shutdown::Write);
        debug!(conn = id.0, remote = %c.remote, unsent = c.out.len(), "connection closed");
        self.publish();
    }

    /// Closes every connection as [`close`](Self::close) does.
    pub(crate) fn close_all(&mut self, registry: &Registry) {
        let ids: Vec<SocketId> = self.conns.keys().copied().collect();
        for id in ids {
            self.close(registry, id);
        }
        self.connecting.clear();
    }

    /// A connection the machine was not told of (an attempt) fails.
    fn drop_attempt(&mut self, registry: &Registry, id: SocketId, request: u32) {
        self.remove(registry, id);
        TcpCounters::add(&self.counters.0.connect_failed, 1);
        self.opened.push_back((request, None));
        self.publish();
    }

    fn end(&mut self, registry: &Registry, id: SocketId, why: Ended) {
        if self.remove(registry, id).is_none() {
            return;
        }
        let cell = match why {
            Ended::ByPeer => &self.counters.0.closed_by_peer,
            Ended::Overflow => &self.counters.0.overflowed,
        };
        TcpCounters::add(cell, 1);
        self.ended.push_back(id);
        self.publish();
    }

    fn remove(&mut self, registry: &Registry, id: SocketId) -> Option<Conn> {
        let mut c = self.conns.remove(&id)?;
        self.connecting.remove(&id);
        self.buffered -= c.out.len();
        let _ = registry.deregister(&mut c.stream);
        Some(c)
    }

    /// A connection id no open connection has. Ids count up and wrap only
    /// after about four billion connections, so a machine that still names
    /// a closed connection (a user not yet timed out) never finds it reused.
    fn fresh_id(&mut self) -> SocketId {
        loop {
            let id = SocketId(self.next_id);
            self.next_id = if self.next_id + 1 >= STREAM_ID_END { FIRST_STREAM_ID } else { self.next_id + 1 };
            if !self.conns.contains_key(&id) {
                return id;
            }
        }
    }

    /// Updates the gauges other threads read.
    fn publish(&self) {
        self.counters.0.open.store(self.conns.len() as u64, Ordering::Relaxed);
        self.counters.0.buffered.store(self.buffered as u64, Ordering::Relaxed);
    }
}

/// A listening socket on `addr` with a deep backlog (std's is 128) and
/// `SO_REUSEADDR`, so a restarted server binds while old connections linger
/// in TIME_WAIT. For a caller that must hold the port before the endpoint
/// exists, too.
pub(crate) fn bind_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Writes as much of `bytes` as the kernel takes now.
fn write_some(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < bytes.len() {
        match stream.write(&bytes[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Writes from the front of `out` until it is empty or the kernel stops
/// taking bytes.
fn drain(stream: &mut TcpStream, out: &mut VecDeque<u8>) -> io::Result<()> {
    while !out.is_empty() {
        let (front, _) = out.as_slices();
        let whole = front.len();
        let n = write_some(stream, front)?;
        out.drain(..n);
        if n < whole {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_tokens_never_meet_connection_ids_or_the_waker() {
        assert_eq!(listener_index(listener_token(0)), Some(0));
        assert_eq!(listener_index(listener_token(MAX_LISTENERS - 1)), Some(MAX_LISTENERS - 1));
        assert_eq!(listener_index(Token(usize::MAX)), None, "the waker");
        assert_eq!(listener_index(Token(STREAM_ID_END as usize - 1)), None, "the last connection id");
        assert_eq!(listener_index(Token(0)), None);
        assert!((usize::MAX - MAX_LISTENERS) > STREAM_ID_END as usize);
    }

    #[test]
    fn connection_ids_wrap_past_the_end_and_skip_open_ones() {
        // Given the id counter at the end of its range.
        let mut tcp = Tcp { next_id: STREAM_ID_END - 1, ..Tcp::default() };
        // When ids are drawn, then they wrap to the first one.
        assert_eq!(tcp.fresh_id(), SocketId(STREAM_ID_END - 1));
        assert_eq!(tcp.fresh_id(), SocketId(FIRST_STREAM_ID));
        // Given a connection open under the next id, then it is skipped.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let stream = std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let remote = stream.peer_addr().expect("peer");
        let conn = Conn {
            stream: TcpStream::from_std(stream),
            remote,
            connecting: None,
            out: VecDeque::new(),
            wants_write: false,
        };
        tcp.conns.insert(SocketId(FIRST_STREAM_ID + 1), conn);
        assert_eq!(tcp.fresh_id(), SocketId(FIRST_STREAM_ID + 2));
    }
}
