//! The TCP plumbing both drivers share (the fallback of issue 21): a set of
//! stream connections named by [`SocketId`], each with a reader task, a
//! writer task and a bounded write buffer, and (for the server) listeners
//! that accept without spinning when the process runs out of descriptors.
//!
//! The machine stays in one task, its driver's loop. The tasks here only
//! move bytes: a reader hands every chunk it reads to the loop over one
//! bounded channel shared by all connections (a loop that falls behind
//! stops the readers, and TCP's flow control stops the peers); a writer
//! drains its connection's queue. The loop alone decides what is queued,
//! what is dropped, and when a connection closes, so it can tell the
//! machine in order.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use punchline_core::{SocketId, Transmit};
use smol::channel::{Receiver, Sender};
use smol::io::AsyncWriteExt;
use smol::stream::Stream;
use smol::{Async, Task, Timer};
use tracing::debug;

/// A connection's write buffer above which relayed datagrams
/// ([`Transmit::droppable`]) are dropped and counted
/// ([`TcpStats::tcp_dropped`]): a datagram that would take the buffer past
/// 256 KiB is not queued. About 200 ms of a 10 Mbit/s link: a reader that
/// far behind gains nothing from older relayed media, and its senders
/// retransmit what their streams need.
pub const TCP_WRITE_SOFT_LIMIT: usize = 256 * 1024;

/// A connection's write buffer past which the connection is closed (and
/// reported closed to the machine), even for signaling that is never
/// dropped: 4 MiB. Only a peer that stopped reading for a long while gets
/// there, since relayed datagrams stop at [`TCP_WRITE_SOFT_LIMIT`].
pub const TCP_WRITE_HARD_LIMIT: usize = 4 * 1024 * 1024;

/// The first id given to a connection. UDP sockets are numbered from 0
/// upward (the server's four, the client's primary and the extra sockets it
/// binds), so connections take the upper half of the id space and never
/// meet them.
pub(crate) const FIRST_CONN: u32 = 1 << 31;

/// How long a client may take to connect before the attempt counts as
/// failed.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a closing connection (at shutdown, or after its peer's end)
/// waits for queued bytes to leave.
pub(crate) const FLUSH_ON_SHUTDOWN: Duration = Duration::from_secs(1);

/// The kernel's send buffer for each connection the server accepts
/// (`SO_SNDBUF`; Linux doubles it for its bookkeeping). Left to autotuning
/// it grows to `tcp_wmem`'s maximum, 4 MiB by default: seconds of stale
/// relayed datagrams queued for a slow reader beyond the reach of the
/// limits here. 512 KiB still carries 2.5 MB/s over a 200 ms round trip,
/// more than a relayed session's default rate.
const SERVER_SEND_BUFFER: usize = 512 * 1024;
/// The most one read takes from a connection.
const READ_CHUNK: usize = 16 * 1024;
/// Chunks read and not yet taken by the loop, over all connections.
const INBOUND_QUEUE: usize = 64;
/// The most a writer gathers into one write.
const WRITE_BATCH: usize = 64 * 1024;
/// The first and the longest pause of the listeners after an accept failed
/// for want of resources (descriptors, memory): the pending connection
/// stays in the backlog, so retrying at once would spin.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// Counters of a driver's TCP connections (the fallback of issue 21), read
/// with [`TcpCounters::get`] on the server or `Client::tcp_stats` on the
/// client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpStats {
    /// Connections open now.
    pub open: u64,
    /// Connections opened, all time: accepted by the server (before the
    /// machine's limits, which may close them at once), or connected by the
    /// client.
    pub opened: u64,
    /// Client connections that failed or timed out.
    pub connect_failures: u64,
    /// Accepts that failed; those for want of resources pause the listeners
    /// briefly.
    pub accept_errors: u64,
    /// Connections their peer closed or reset, or whose write failed
    /// (reported to the machine).
    pub closed_by_peer: u64,
    /// Relayed datagrams dropped because their connection's write buffer
    /// was past [`TCP_WRITE_SOFT_LIMIT`].
    pub tcp_dropped: u64,
    /// The bytes of those datagrams, as framed.
    pub tcp_dropped_bytes: u64,
    /// Connections closed because their write buffer would pass
    /// [`TCP_WRITE_HARD_LIMIT`] (reported to the machine).
    pub overflowed: u64,
    /// Bytes waiting in every write buffer now.
    pub buffered: u64,
    /// The most one connection's write buffer ever held.
    pub max_buffered: u64,
    /// Bytes read from connections.
    pub bytes_read: u64,
    /// Bytes written to connections.
    pub bytes_written: u64,
}

/// A live view of a server's [`TcpStats`], usable while it runs (get it
/// from `BoundServer::tcp_counters` before calling `run`). Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct TcpCounters(Arc<Counters>);

impl TcpCounters {
    /// The counters now.
    pub fn get(&self) -> TcpStats {
        let c = &self.0;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TcpStats {
            open: get(&c.open),
            opened: get(&c.opened),
            connect_failures: get(&c.connect_failures),
            accept_errors: get(&c.accept_errors),
            closed_by_peer: get(&c.closed_by_peer),
            tcp_dropped: get(&c.tcp_dropped),
            tcp_dropped_bytes: get(&c.tcp_dropped_bytes),
            overflowed: get(&c.overflowed),
            buffered: get(&c.buffered),
            max_buffered: get(&c.max_buffered),
            bytes_read: get(&c.bytes_read),
            bytes_written: get(&c.bytes_written),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    open: AtomicU64,
    opened: AtomicU64,
    connect_failures: AtomicU64,
    accept_errors: AtomicU64,
    closed_by_peer: AtomicU64,
    tcp_dropped: AtomicU64,
    tcp_dropped_bytes: AtomicU64,
    overflowed: AtomicU64,
    buffered: AtomicU64,
    max_buffered: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// What the connections hand the loop.
#[derive(Debug)]
pub(crate) enum StreamInput {
    /// Bytes read from `conn`, in whatever piece the kernel gave.
    Data(SocketId, Bytes),
    /// `conn` reached its end or failed; the connection is already
    /// forgotten, and its close is for the machine to hear.
    Closed(SocketId),
    /// A connection asked for with [`Conns::connect`] is open, or failed.
    Connected { request: u32, to: SocketAddr, stream: Option<Async<TcpStream>> },
}

/// What became of a transmit given to [`Conns::send`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Written, or queued for the writer.
    Taken,
    /// A relayed datagram, dropped: the buffer is past the soft limit.
    Dropped,
    /// The buffer would pass the hard limit: the connection was closed, and
    /// the machine must hear it.
    Overflowed,
    /// No such connection (closed while the datagram was queued).
    Unknown,
}

/// The open connections of one driver, by id.
pub(crate) struct Conns {
    conns: BTreeMap<SocketId, Conn>,
    /// Client connects in flight, by request.
    connecting: BTreeMap<u32, Task<()>>,
    next: u32,
    inbound_tx: Sender<StreamInput>,
    /// Pinned: the receiver is a `!Unpin` stream polled in place.
    inbound: Pin<Box<Receiver<StreamInput>>>,
    counters: TcpCounters,
}

struct Conn {
    stream: Arc<Async<TcpStream>>,
    /// The writer's queue; bounded by `queued`, which only the loop grows.
    writes: Sender<Bytes>,
    queued: Arc<Queued>,
    // Dropping a task cancels it.
    _reader: Task<()>,
    writer: Task<()>,
}

impl std::fmt::Debug for Conns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conns").field("open", &self.conns.len()).field("connecting", &self.connecting.len()).finish()
    }
}

impl Conns {
    pub(crate) fn new(counters: TcpCounters) -> Conns {
        let (inbound_tx, inbound) = smol::channel::bounded(INBOUND_QUEUE);
        Conns {
            conns: BTreeMap::new(),
            connecting: BTreeMap::new(),
            next: FIRST_CONN,
            inbound_tx,
            inbound: Box::pin(inbound),
            counters,
        }
    }

    /// Takes `stream` in under a fresh id and starts moving its bytes.
    pub(crate) fn insert(&mut self, stream: Async<TcpStream>) -> SocketId {
        // Signaling is small and latency-bound: no Nagle (RFC 896) delay.
        if let Err(error) = stream.get_ref().set_nodelay(true) {
            debug!(%error, "cannot set TCP_NODELAY");
        }
        let id = self.fresh_id();
        let stream = Arc::new(stream);
        let queued = Arc::new(Queued::default());
        let (writes, queue) = smol::channel::unbounded();
        let c = &self.counters.0;
        add(&c.open, 1);
        add(&c.opened, 1);
        let reader = smol::spawn(read_loop(id, stream.clone(), self.inbound_tx.clone(), self.counters.clone()));
        let writer = smol::spawn(write_loop(stream.clone(), queue, queued.clone(), self.counters.clone()));
        self.conns.insert(id, Conn { stream, writes, queued, _reader: reader, writer });
        id
    }

    /// Connects to `to` in a task of its own; the outcome comes back as
    /// [`StreamInput::Connected`] within [`CONNECT_TIMEOUT`].
    pub(crate) fn connect(&mut self, request: u32, to: SocketAddr) {
        let inbound = self.inbound_tx.clone();
        let task = smol::spawn(async move {
            let attempt = async { Async::<TcpStream>::connect(to).await.ok() };
            let timeout = async {
                Timer::after(CONNECT_TIMEOUT).await;
                None
            };
            let stream = smol::future::or(attempt, timeout).await;
            let _ = inbound.send(StreamInput::Connected { request, to, stream }).await;
        });
        self.connecting.insert(request, task);
    }

    /// Sends `t.payload` (already framed by the machine) on the connection
    /// `t.socket` names: at once when nothing waits before it, else through
    /// its write buffer, under the limits (see [`TCP_WRITE_SOFT_LIMIT`] and
    /// [`TCP_WRITE_HARD_LIMIT`]).
    pub(crate) fn send(&mut self, t: &Transmit) -> Sent {
        let Some(conn) = self.conns.get(&t.socket) else { return Sent::Unknown };
        let len = t.payload.len();
        let now = conn.queued.get();
        let c = &self.counters.0;
        if t.droppable && now + len > TCP_WRITE_SOFT_LIMIT {
            add(&c.tcp_dropped, 1);
            add(&c.tcp_dropped_bytes, len as u64);
            return Sent::Dropped;
        }
        if now + len > TCP_WRITE_HARD_LIMIT {
            debug!(conn = t.socket.0, buffered = now, "a connection that does not read; closed");
            add(&c.overflowed, 1);
            self.close(t.socket);
            return Sent::Overflowed;
        }
        let mut rest = t.payload.clone();
        if now == 0 {
            // Nothing waits, so the writer is idle: write straight away, as
            // a UDP send would, so the bytes have left when the drain ends.
            // The writer gets what the kernel did not take (all of it when
            // the write failed: the writer meets the failure too, and shuts
            // the connection down).
            if let Ok(n) = conn.stream.get_ref().write(&rest) {
                add(&c.bytes_written, n as u64);
                rest = rest.slice(n..);
            }
            if rest.is_empty() {
                return Sent::Taken;
            }
        }
        let len = rest.len();
        conn.queued.add(len);
        add(&c.buffered, len as u64);
        c.max_buffered.fetch_max((now + len) as u64, Ordering::Relaxed);
        // The writer holds the receiver until the connection is dropped
        // from the map, or until a write failed (and the reader reports the
        // end, which forgets what was queued).
        let _ = conn.writes.try_send(rest);
        Sent::Taken
    }

    /// Closes `id` at once, queued bytes and all (the machine asked, or its
    /// buffer overflowed). Its end is not reported as an input.
    pub(crate) fn close(&mut self, id: SocketId) -> bool {
        let Some(conn) = self.conns.remove(&id) else { return false };
        // Shut down now rather than when the cancelled tasks are dropped:
        // the peer sees the end at once.
        let _ = conn.stream.get_ref().shutdown(Shutdown::Both);
        self.forget(conn);
        true
    }

    /// The next input from a connection, skipping those of connections
    /// already closed, or registers the task's waker.
    pub(crate) fn poll_input(&mut self, cx: &mut Context<'_>) -> Poll<StreamInput> {
        loop {
            // The loop holds a sender, so the channel never ends.
            let Poll::Ready(Some(input)) = self.inbound.as_mut().poll_next(cx) else { return Poll::Pending };
            match input {
                // Ids are not reused until 2^31 connections later, long after
                // a closed connection's last chunk was taken.
                StreamInput::Data(id, _) if !self.conns.contains_key(&id) => continue,
                StreamInput::Closed(id) => {
                    let Some(conn) = self.conns.remove(&id) else { continue };
                    add(&self.counters.0.closed_by_peer, 1);
                    self.linger(conn);
                    return Poll::Ready(StreamInput::Closed(id));
                }
                StreamInput::Connected { request, to, stream } => {
                    // A connect dropped meanwhile (at shutdown) is not
                    // waited for: its stream, if any, closes here.
                    if self.connecting.remove(&request).is_none() {
                        continue;
                    }
                    if stream.is_none() {
                        add(&self.counters.0.connect_failures, 1);
                    }
                    return Poll::Ready(StreamInput::Connected { request, to, stream });
                }
                data @ StreamInput::Data(..) => return Poll::Ready(data),
            }
        }
    }

    /// Closes every connection, first letting what is queued leave, for at
    /// most `grace`.
    pub(crate) async fn shutdown(&mut self, grace: Duration) {
        self.connecting.clear();
        let conns = std::mem::take(&mut self.conns);
        let deadline = Instant::now() + grace;
        let mut writers = Vec::with_capacity(conns.len());
        for (_, conn) in conns {
            let Conn { stream, writes, queued, _reader, writer } = conn;
            // The writer ends once its queue is empty and closed.
            drop(writes);
            writers.push((stream, queued, writer));
        }
        for (stream, queued, writer) in writers {
            smol::future::or(writer, async {
                Timer::at(deadline).await;
            })
            .await;
            let _ = stream.get_ref().shutdown(Shutdown::Both);
            self.unaccount(&queued);
        }
    }

    /// Forgets a connection whose peer finished sending, but lets what is
    /// already queued leave, for a second at most: a STUN client may
    /// half-close its side after its request and still read the answer.
    fn linger(&mut self, conn: Conn) {
        self.unaccount(&conn.queued);
        let Conn { stream, writes, queued: _, _reader, writer } = conn;
        drop(writes);
        smol::spawn(async move {
            smol::future::or(writer, async {
                Timer::after(FLUSH_ON_SHUTDOWN).await;
            })
            .await;
            let _ = stream.get_ref().shutdown(Shutdown::Both);
        })
        .detach();
    }

    fn forget(&mut self, conn: Conn) {
        self.unaccount(&conn.queued);
        // Dropping `conn` cancels its tasks.
    }

    fn unaccount(&self, queued: &Queued) {
        let c = &self.counters.0;
        c.open.fetch_sub(1, Ordering::Relaxed);
        c.buffered.fetch_sub(queued.close() as u64, Ordering::Relaxed);
    }

    /// The next unused id at or above [`FIRST_CONN`].
    fn fresh_id(&mut self) -> SocketId {
        loop {
            let id = SocketId(self.next);
            self.next = self.next.checked_add(1).unwrap_or(FIRST_CONN);
            if !self.conns.contains_key(&id) {
                return id;
            }
        }
    }
}

async fn read_loop(id: SocketId, stream: Arc<Async<TcpStream>>, inbound: Sender<StreamInput>, counters: TcpCounters) {
    loop {
        if stream.readable().await.is_err() {
            break;
        }
        // A buffer only while bytes wait: an idle connection holds none.
        let mut buf = vec![0u8; READ_CHUNK];
        match stream.get_ref().read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                add(&counters.0.bytes_read, n as u64);
                buf.truncate(n);
                if inbound.send(StreamInput::Data(id, Bytes::from(buf))).await.is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
            Err(error) => {
                debug!(%error, conn = id.0, "stream read failed");
                break;
            }
        }
    }
    let _ = inbound.send(StreamInput::Closed(id)).await;
}

/// Writes what the loop queues, gathering small pieces into one write.
/// A failed write shuts the connection down, so the reader sees its end and
/// reports it: one report per connection, from one place.
async fn write_loop(stream: Arc<Async<TcpStream>>, queue: Receiver<Bytes>, queued: Arc<Queued>, counters: TcpCounters) {
    while let Ok(first) = queue.recv().await {
        let mut pieces = vec![first];
        let mut len = pieces[0].len();
        while len < WRITE_BATCH {
            let Ok(next) = queue.try_recv() else { break };
            len += next.len();
            pieces.push(next);
        }
        let written = if pieces.len() == 1 {
            (&*stream).write_all(&pieces[0]).await
        } else {
            // A fresh buffer per batch: an idle connection holds none.
            (&*stream).write_all(&pieces.concat()).await
        };
        // Counted as buffered until written whole, so the limits see a
        // reader that takes only part of a write.
        if queued.written(len) {
            counters.0.buffered.fetch_sub(len as u64, Ordering::Relaxed);
        }
        match written {
            Ok(()) => add(&counters.0.bytes_written, len as u64),
            Err(error) => {
                debug!(%error, "stream write failed");
                let _ = stream.get_ref().shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

/// Bytes queued on one connection and not yet written. Both the loop and
/// the writer take bytes off the total in [`TcpStats::buffered`]; once the
/// loop closes the connection it takes the rest, and the writer (which may
/// finish a write before it is cancelled) takes nothing more: each byte
/// leaves the total once.
#[derive(Debug, Default)]
struct Queued(AtomicUsize);

impl Queued {
    const CLOSED: usize = 1 << (usize::BITS - 1);

    fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed) & !Self::CLOSED
    }

    /// Only the loop adds, and only while the connection is open.
    fn add(&self, n: usize) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The writer wrote `n`; false when the loop already took them.
    fn written(&self, n: usize) -> bool {
        self.0.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| (v & Self::CLOSED == 0).then(|| v - n)).is_ok()
    }

    /// Closes the count; returns what was still queued.
    fn close(&self) -> usize {
        self.0.fetch_or(Self::CLOSED, Ordering::Relaxed) & !Self::CLOSED
    }
}

/// The server's TCP listeners, accepting in turn.
#[derive(Debug, Default)]
pub(crate) struct Listeners {
    listeners: Vec<(Async<TcpListener>, SocketAddr)>,
    cursor: usize,
    /// While set, accepting waits: the last accept lacked resources.
    paused: Option<Timer>,
    backoff: Option<Duration>,
}

/// What one accept produced.
pub(crate) type Accepted = io::Result<(Async<TcpStream>, SocketAddr)>;

impl Listeners {
    pub(crate) fn listen(&mut self, addr: SocketAddr) -> io::Result<SocketAddr> {
        let listener = Async::<TcpListener>::bind(addr)?;
        let local = listener.get_ref().local_addr()?;
        self.listeners.push((listener, local));
        Ok(local)
    }

    pub(crate) fn addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|(_, a)| *a).collect()
    }

    /// Accepts one connection from whichever listener has one, or registers
    /// the task's waker. A failure is returned once; when it was for want
    /// of resources, the listeners pause first (doubling up to a second)
    /// instead of retrying a backlog they cannot take.
    pub(crate) fn poll_accept(&mut self, cx: &mut Context<'_>, counters: &TcpCounters) -> Poll<Accepted> {
        if let Some(timer) = &mut self.paused {
            if Pin::new(timer).poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.paused = None;
        }
        let n = self.listeners.len();
        for i in (0..n).map(|i| (self.cursor + i) % n) {
            let listener = &self.listeners[i].0;
            loop {
                match listener.get_ref().accept() {
                    Ok((stream, remote)) => {
                        self.cursor = i + 1;
                        self.backoff = None;
                        if let Err(error) = socket2::SockRef::from(&stream).set_send_buffer_size(SERVER_SEND_BUFFER) {
                            debug!(%error, "cannot set SO_SNDBUF");
                        }
                        let registered = Async::new(stream).map(|s| (s, remote));
                        if registered.is_err() {
                            add(&counters.0.accept_errors, 1);
                        }
                        return Poll::Ready(registered);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => match listener.poll_readable(cx) {
                        Poll::Ready(_) => continue,
                        Poll::Pending => break,
                    },
                    // One connection's trouble (it was reset while waiting):
                    // the next may be fine.
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::Interrupted
                                | io::ErrorKind::ConnectionAborted
                                | io::ErrorKind::ConnectionReset
                        ) =>
                    {
                        add(&counters.0.accept_errors, 1);
                        continue;
                    }
                    // Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS,
                    // ENOMEM), or worse: pause, so the loop does not spin.
                    Err(e) => {
                        add(&counters.0.accept_errors, 1);
                        let wait = self.backoff.map_or(ACCEPT_BACKOFF.0, |b| (b * 2).min(ACCEPT_BACKOFF.1));
                        self.backoff = Some(wait);
                        self.paused = Some(Timer::after(wait));
                        self.cursor = i + 1;
                        return Poll::Ready(Err(e));
                    }
                }
            }
        }
        Poll::Pending
    }
}
