//! The client's driver task: one loop that owns the machine and its sockets,
//! feeds in commands, datagrams and timeouts, and drains the machine after
//! every input (the drive loop of `punchline_core::Machine`).

use std::collections::{BTreeMap, VecDeque};
use std::future::poll_fn;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Instant;

use bytes::Bytes;
use punchline_core::client::{
    Client as CoreClient, ClientConfig, ClientEvent, ConnectError, FileId, FileProgress, FileSource, PathKind,
    SendError, SendFileError, SessionInfo,
};
use punchline_core::messaging::SendTextError;
use punchline_core::wire::frame::files::{FileAbort, FileRefusal};
use punchline_core::wire::frame::{CloseReason, MessageId, SessionId, Transport};
use punchline_core::{Machine, SocketId};
use smol::channel::{Receiver, Sender};
use smol::stream::Stream;
use smol::Timer;
use tracing::{debug, warn};

use super::session::SessionEvent;
use super::{Error, SharedStats};
use crate::tcp::{Conns, Sent, StreamInput, TcpCounters, FIRST_CONN, FLUSH_ON_SHUTDOWN};
use crate::udp::{Endpoint, Received, SocketSet, RECV_BUFFER};

/// Inputs handled in a row before the driver lets other tasks run.
const INPUTS_PER_YIELD: u32 = 64;

/// What a handle asks of the driver.
#[derive(Debug)]
pub(crate) enum Command {
    /// Raw connect; the outcome is an event. `reply` gets the core's answer.
    Connect {
        peer: String,
        reply: Option<Sender<Result<(), ConnectError>>>,
    },
    /// Connect and hand the session to the caller.
    ConnectSession {
        peer: String,
        reply: Sender<Result<SessionParts, Error>>,
    },
    /// Send; with `wait`, a full window parks the send until acknowledgements
    /// make room, instead of failing.
    Send {
        session: SessionId,
        data: Bytes,
        wait: bool,
        reply: Sender<Result<(), SendError>>,
    },
    Close {
        session: SessionId,
    },
    WhenLoggedIn {
        reply: Sender<Result<SocketAddr, Error>>,
    },
    SessionInfo {
        session: SessionId,
        reply: Sender<Option<SessionInfo>>,
    },
    Lookup {
        user: String,
        reply: Sender<Result<(), ConnectError>>,
    },
    /// A text message; the outcome is a `TextAcked` or `TextFailed` event.
    SendText {
        to: String,
        text: String,
        reply: Sender<Result<MessageId, SendTextError>>,
    },
    /// Ask for the stored texts until the server says none are left
    /// (`InboxEmpty`).
    AckText {
        from: String,
        id: MessageId,
        reply: Sender<bool>,
    },
    SyncInbox {
        reply: Sender<Result<(), SendTextError>>,
    },
    /// Offer a file; the outcome is `File*` events.
    SendFile {
        peer: String,
        source: Box<FileSource>,
        reply: Sender<Result<FileId, SendFileError>>,
    },
    /// The answer to a `FileRead` (no reply: sent at a high rate).
    FileData {
        file: FileId,
        offset: u64,
        data: Bytes,
    },
    FileReadFailed {
        file: FileId,
    },
    AcceptFile {
        file: FileId,
        have: Vec<(u64, u64)>,
    },
    RefuseFile {
        file: FileId,
        reason: FileRefusal,
    },
    /// The answer to a `FileWrite` (no reply: sent at a high rate).
    FileWritten {
        file: FileId,
        offset: u64,
        result: Result<(), FileAbort>,
    },
    CancelFile {
        file: FileId,
    },
    FileProgress {
        file: FileId,
        reply: Sender<Option<FileProgress>>,
    },
    /// Runs a read-only closure on the machine (it replies by itself).
    Inspect(Inspector),
    Shutdown,
}

/// A read-only look at the machine, run inside the driver.
pub(crate) struct Inspector(pub(crate) Box<dyn FnOnce(&CoreClient) + Send>);

impl std::fmt::Debug for Inspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inspector")
    }
}

/// What the driver shares with a `Session` handle.
#[derive(Debug)]
pub(crate) struct SessionShared {
    pub(crate) path: Mutex<PathKind>,
    pub(crate) closed: Mutex<Option<CloseReason>>,
}

/// Everything a `Session` handle is built from.
#[derive(Debug)]
pub(crate) struct SessionParts {
    pub(crate) id: SessionId,
    pub(crate) peer: String,
    pub(crate) initiator: bool,
    pub(crate) strategy: punchline_core::nat::Strategy,
    pub(crate) events: Receiver<SessionEvent>,
    pub(crate) shared: Arc<SessionShared>,
}

/// A session owned by a `Session` handle: its events go there.
#[derive(Debug)]
struct Route {
    events: Sender<SessionEvent>,
    shared: Arc<SessionShared>,
}

/// A send waiting for the session's window to open.
#[derive(Debug)]
struct ParkedSend {
    session: SessionId,
    data: Bytes,
    reply: Sender<Result<(), SendError>>,
}

/// Who waits for the outcome of one connect request to a peer. The core
/// reports outcomes by peer name, and the server answers one peer's requests
/// in order, so each peer has a FIFO of waiters.
#[derive(Debug)]
enum ConnectWaiter {
    /// A raw `connect`: the outcome goes to the event stream.
    Event,
    /// A `connect_session`.
    Session(Sender<Result<SessionParts, Error>>),
}

pub(crate) struct Driver {
    machine: CoreClient,
    sockets: SocketSet,
    /// The next extra socket's id; below [`FIRST_CONN`], where connections'
    /// ids start.
    next_socket: u32,
    /// The TCP connection to the server, when UDP is blocked.
    conns: Conns,
    /// The IP extra sockets bind on (the primary's, possibly unspecified).
    bind_ip: IpAddr,
    /// The IP extra sockets are reported with (never unspecified).
    advertised_ip: IpAddr,
    /// Pinned: the receiver is a `!Unpin` stream polled in place.
    commands: Pin<Box<Receiver<Command>>>,
    events: Sender<ClientEvent>,
    incoming: Sender<SessionParts>,
    accepting: Arc<AtomicBool>,
    stats: Arc<SharedStats>,
    routes: BTreeMap<SessionId, Route>,
    connects: BTreeMap<String, VecDeque<ConnectWaiter>>,
    login_waiters: Vec<Sender<Result<SocketAddr, Error>>>,
    parked: VecDeque<ParkedSend>,
    /// Dropped when the driver ends, which is what `shutdown` waits for.
    _done: Sender<()>,
}

enum Wake {
    Command(Option<Command>),
    Datagram(Received),
    Stream(StreamInput),
    Timeout,
}

impl Driver {
    #[allow(clippy::too_many_arguments)] // one call site, in `Client::start`
    pub(crate) fn new(
        config: ClientConfig,
        primary: Endpoint,
        advertised: SocketAddr,
        commands: Receiver<Command>,
        events: Sender<ClientEvent>,
        incoming: Sender<SessionParts>,
        accepting: Arc<AtomicBool>,
        stats: Arc<SharedStats>,
        tcp: TcpCounters,
        done: Sender<()>,
    ) -> Self {
        let bind_ip = primary.local_addr().ip();
        let mut sockets = SocketSet::default();
        sockets.insert(SocketId(0), primary);
        SharedStats::add(&stats.sockets_open, 1);
        Driver {
            machine: CoreClient::new(config, (SocketId(0), advertised), Instant::now()),
            sockets,
            next_socket: 1,
            conns: Conns::new(tcp),
            bind_ip,
            advertised_ip: advertised.ip(),
            commands: Box::pin(commands),
            events,
            incoming,
            accepting,
            stats,
            routes: BTreeMap::new(),
            connects: BTreeMap::new(),
            login_waiters: Vec::new(),
            parked: VecDeque::new(),
            _done: done,
        }
    }

    pub(crate) async fn run(mut self) {
        let mut timer = Timer::never();
        let mut buf = vec![0u8; RECV_BUFFER];
        let mut last_now = Instant::now();
        let mut commands_first = true;
        let mut inputs = 0u32;
        loop {
            self.drain().await;
            // Let the connection's tasks (and whatever shares this
            // executor thread) run now and then while inputs keep coming.
            inputs += 1;
            if inputs >= INPUTS_PER_YIELD {
                inputs = 0;
                smol::future::yield_now().await;
            }
            // A timer that is already due runs before the next wait, so a
            // steady stream of datagrams or commands cannot starve it.
            let now = Instant::now().max(last_now);
            match self.machine.poll_timeout() {
                Some(at) if at <= now => {
                    last_now = now;
                    self.machine.handle_timeout(now);
                    self.retry_parked(now);
                    continue;
                }
                Some(at) => timer.set_at(at),
                None => timer = Timer::never(),
            }
            // Commands and datagrams take turns being looked at first.
            commands_first = !commands_first;
            let wake = {
                let commands = &mut self.commands;
                let sockets = &mut self.sockets;
                let conns = &mut self.conns;
                poll_fn(|cx| {
                    let mut command = |cx: &mut std::task::Context<'_>| match commands.as_mut().poll_next(cx) {
                        Poll::Ready(c) => Some(Wake::Command(c)),
                        Poll::Pending => None,
                    };
                    if commands_first {
                        if let Some(wake) = command(cx) {
                            return Poll::Ready(wake);
                        }
                    }
                    if let Poll::Ready(r) = sockets.poll_recv(cx, &mut buf) {
                        return Poll::Ready(Wake::Datagram(r));
                    }
                    if let Poll::Ready(input) = conns.poll_input(cx) {
                        return Poll::Ready(Wake::Stream(input));
                    }
                    if !commands_first {
                        if let Some(wake) = command(cx) {
                            return Poll::Ready(wake);
                        }
                    }
                    if Pin::new(&mut timer).poll(cx).is_ready() {
                        return Poll::Ready(Wake::Timeout);
                    }
                    Poll::Pending
                })
                .await
            };
            // `now` never goes backwards, whatever the clock source does.
            let now = Instant::now().max(last_now);
            last_now = now;
            match wake {
                Wake::Command(None) | Wake::Command(Some(Command::Shutdown)) => break,
                Wake::Command(Some(command)) => self.command(now, command),
                Wake::Datagram((socket, Ok((len, from)))) => {
                    SharedStats::add(&self.stats.datagrams_received, 1);
                    self.machine.handle_datagram(now, socket, from, &buf[..len]);
                }
                Wake::Datagram((socket, Err(error))) => {
                    SharedStats::add(&self.stats.io_errors, 1);
                    debug!(%error, socket = socket.0, "client receive error");
                }
                Wake::Stream(input) => self.stream_input(now, input),
                Wake::Timeout => self.machine.handle_timeout(now),
            }
            self.retry_parked(now);
        }
        self.stop().await;
    }

    fn command(&mut self, now: Instant, command: Command) {
        match command {
            Command::Connect { peer, reply } => {
                let result = self.machine.connect(now, &peer);
                if result.is_ok() {
                    self.connects.entry(peer).or_default().push_back(ConnectWaiter::Event);
                }
                if let Some(reply) = reply {
                    let _ = reply.try_send(result);
                }
            }
            Command::ConnectSession { peer, reply } => match self.machine.connect(now, &peer) {
                Ok(()) => self.connects.entry(peer).or_default().push_back(ConnectWaiter::Session(reply)),
                Err(e) => {
                    let _ = reply.try_send(Err(Error::Connect(e)));
                }
            },
            Command::Send { session, data, wait, reply } => {
                // Keep a session's messages in order: behind parked ones.
                if wait && self.parked.iter().any(|p| p.session == session) {
                    self.parked.push_back(ParkedSend { session, data, reply });
                    return;
                }
                match self.machine.send(now, session, &data) {
                    Err(SendError::WindowFull) if wait => self.parked.push_back(ParkedSend { session, data, reply }),
                    result => {
                        let _ = reply.try_send(result);
                    }
                }
            }
            Command::Close { session } => self.machine.close(now, session),
            Command::WhenLoggedIn { reply } => match self.machine.reflexive() {
                Some(reflexive) => {
                    let _ = reply.try_send(Ok(reflexive));
                }
                None => self.login_waiters.push(reply),
            },
            Command::SessionInfo { session, reply } => {
                let _ = reply.try_send(self.machine.session_info(session));
            }
            Command::Lookup { user, reply } => {
                let _ = reply.try_send(self.machine.lookup(now, &user));
            }
            Command::SendText { to, text, reply } => {
                let _ = reply.try_send(self.machine.send_text(now, &to, &text));
            }
            Command::AckText { from, id, reply } => {
                let _ = reply.try_send(self.machine.ack_text(now, &from, id));
            }
            Command::SyncInbox { reply } => {
                let _ = reply.try_send(self.machine.sync_inbox(now));
            }
            Command::SendFile { peer, source, reply } => {
                let _ = reply.try_send(self.machine.send_file(now, &peer, *source));
            }
            Command::FileData { file, offset, data } => self.machine.file_data(now, file, offset, &data),
            Command::FileReadFailed { file } => self.machine.file_read_failed(now, file),
            Command::AcceptFile { file, have } => self.machine.accept_file(now, file, &have),
            Command::RefuseFile { file, reason } => self.machine.refuse_file(now, file, reason),
            Command::FileWritten { file, offset, result } => self.machine.file_written(now, file, offset, result),
            Command::CancelFile { file } => self.machine.cancel_file(now, file),
            Command::FileProgress { file, reply } => {
                let _ = reply.try_send(self.machine.file_progress(file));
            }
            Command::Inspect(Inspector(f)) => f(&self.machine),
            Command::Shutdown => unreachable!("handled by the loop"),
        }
    }

    fn stream_input(&mut self, now: Instant, input: StreamInput) {
        match input {
            StreamInput::Data(conn, bytes) => self.machine.handle_stream_data(now, conn, &bytes),
            StreamInput::Closed(conn) => self.machine.handle_stream_closed(now, conn),
            StreamInput::Connected { request, to, stream } => {
                let conn = stream.map(|s| self.conns.insert(s));
                if conn.is_none() {
                    debug!(%to, "cannot connect to the server over TCP");
                }
                self.machine.stream_opened(now, request, conn);
            }
        }
    }

    /// Retries parked sends in order; a session's later sends wait behind its
    /// earlier ones.
    fn retry_parked(&mut self, now: Instant) {
        let mut still_full: Vec<SessionId> = Vec::new();
        let mut keep = VecDeque::new();
        while let Some(p) = self.parked.pop_front() {
            if still_full.contains(&p.session) {
                keep.push_back(p);
                continue;
            }
            match self.machine.send(now, p.session, &p.data) {
                Err(SendError::WindowFull) => {
                    still_full.push(p.session);
                    keep.push_back(p);
                }
                result => {
                    let _ = p.reply.try_send(result);
                }
            }
        }
        self.parked = keep;
    }

    /// Drains the machine: transmits, then events, until both are empty
    /// (answering a socket request produces more of both).
    async fn drain(&mut self) {
        loop {
            while let Some(t) = self.machine.poll_transmit() {
                if t.socket.0 >= FIRST_CONN {
                    match self.conns.send(&t) {
                        Sent::Taken | Sent::Dropped => {}
                        // The server stopped reading: the machine hears the
                        // connection closed (an input, drained here too).
                        Sent::Overflowed => self.machine.handle_stream_closed(Instant::now(), t.socket),
                        Sent::Unknown => debug!(conn = t.socket.0, "transmit for a closed connection; dropped"),
                    }
                    continue;
                }
                match self.sockets.send(&t).await {
                    Ok(()) => {
                        SharedStats::add(&self.stats.datagrams_sent, 1);
                        if t.ttl.is_some() {
                            SharedStats::add(&self.stats.low_ttl_sent, 1);
                        }
                    }
                    Err(error) => {
                        SharedStats::add(&self.stats.io_errors, 1);
                        debug!(%error, to = %t.destination, socket = t.socket.0, "client send failed");
                    }
                }
            }
            let Some(event) = self.machine.poll_event() else { break };
            self.event(event);
        }
    }

    fn event(&mut self, event: ClientEvent) {
        match event {
            ClientEvent::OpenSockets { request, count } => self.open_sockets(request, count),
            ClientEvent::OpenStream { request, to } => self.conns.connect(request, to),
            ClientEvent::CloseStream { conn } => {
                self.conns.close(conn);
            }
            ClientEvent::TransportChanged { transport } => {
                self.sync_transport();
                self.emit(ClientEvent::TransportChanged { transport });
            }
            ClientEvent::ReleaseSocket { socket } => {
                // The primary socket is never released; guard anyway, since
                // losing it would cut us off from the server.
                if socket != SocketId(0) && self.sockets.remove(socket).is_some() {
                    SharedStats::add(&self.stats.sockets_released, 1);
                    self.stats.sockets_open.fetch_sub(1, Ordering::Relaxed);
                }
            }
            ClientEvent::LoggedIn { reflexive } => {
                // A login over TCP raises `LoggedIn` before
                // `TransportChanged`: whoever the login wakes sees the
                // transport it came over.
                self.sync_transport();
                for w in self.login_waiters.drain(..) {
                    let _ = w.try_send(Ok(reflexive));
                }
                self.emit(ClientEvent::LoggedIn { reflexive });
            }
            ClientEvent::LoginFailed { code } => {
                for w in self.login_waiters.drain(..) {
                    let _ = w.try_send(Err(Error::LoginFailed(code)));
                }
                self.emit(ClientEvent::LoginFailed { code });
            }
            ClientEvent::SessionOpened { session, peer, initiator, strategy } => {
                let waiter = if initiator { self.pop_connect(&peer) } else { None };
                let parts = |routes: &mut BTreeMap<SessionId, Route>| {
                    let (tx, rx) = smol::channel::unbounded();
                    let shared =
                        Arc::new(SessionShared { path: Mutex::new(PathKind::Relay), closed: Mutex::new(None) });
                    routes.insert(session, Route { events: tx, shared: shared.clone() });
                    SessionParts { id: session, peer: peer.clone(), initiator, strategy, events: rx, shared }
                };
                match waiter {
                    Some(ConnectWaiter::Session(reply)) => {
                        if reply.try_send(Ok(parts(&mut self.routes))).is_err() {
                            // The caller gave up waiting: nobody owns it.
                            self.abandon(session);
                        }
                    }
                    None if !initiator && self.accepting.load(Ordering::SeqCst) => {
                        if self.incoming.try_send(parts(&mut self.routes)).is_err() {
                            self.abandon(session);
                        }
                    }
                    _ => self.emit(ClientEvent::SessionOpened { session, peer, initiator, strategy }),
                }
            }
            ClientEvent::ConnectFailed { peer, reason } => match self.pop_connect(&peer) {
                Some(ConnectWaiter::Session(reply)) => {
                    let _ = reply.try_send(Err(Error::ConnectFailed { peer, reason }));
                }
                _ => self.emit(ClientEvent::ConnectFailed { peer, reason }),
            },
            ClientEvent::DataReceived { session, data } => {
                self.route(session, SessionEvent::Data(data.clone()), ClientEvent::DataReceived { session, data })
            }
            ClientEvent::PathDirect { session, socket, remote } => {
                if let Some(r) = self.routes.get(&session) {
                    *lock(&r.shared.path) = PathKind::Direct { socket, remote };
                }
                let e = ClientEvent::PathDirect { session, socket, remote };
                self.route(session, SessionEvent::PathDirect { socket, remote }, e)
            }
            ClientEvent::PathFellBack { session } => {
                if let Some(r) = self.routes.get(&session) {
                    *lock(&r.shared.path) = PathKind::Relay;
                }
                self.route(session, SessionEvent::PathFellBack, ClientEvent::PathFellBack { session })
            }
            ClientEvent::PunchStarted { session, attempt } => self.route(
                session,
                SessionEvent::PunchStarted { attempt },
                ClientEvent::PunchStarted { session, attempt },
            ),
            ClientEvent::PunchFailed { session, attempt, retry_in } => self.route(
                session,
                SessionEvent::PunchFailed { attempt, retry_in },
                ClientEvent::PunchFailed { session, attempt, retry_in },
            ),
            ClientEvent::SessionClosed { session, reason } => {
                if let Some(r) = self.routes.remove(&session) {
                    *lock(&r.shared.closed) = Some(reason);
                    let _ = r.events.try_send(SessionEvent::Closed(reason));
                    // Sends parked on a closed session fail now.
                } else {
                    self.emit(ClientEvent::SessionClosed { session, reason });
                }
                self.fail_parked(session);
            }
            other => self.emit(other),
        }
    }

    /// Publishes the machine's transport to `Client::transport`.
    fn sync_transport(&self) {
        self.stats.over_tcp.store(self.machine.transport() == Transport::Tcp, Ordering::Relaxed);
    }

    fn pop_connect(&mut self, peer: &str) -> Option<ConnectWaiter> {
        let queue = self.connects.get_mut(peer)?;
        let waiter = queue.pop_front();
        if queue.is_empty() {
            self.connects.remove(peer);
        }
        waiter
    }

    /// Sends a session event to its `Session`, or the raw event to the
    /// stream when no handle owns the session.
    fn route(&mut self, session: SessionId, to_session: SessionEvent, raw: ClientEvent) {
        match self.routes.get(&session) {
            Some(r) => {
                if r.events.try_send(to_session).is_err() {
                    // The `Session` was dropped; its `Drop` already asked to
                    // close the session.
                    debug!(%session, "event for a dropped session handle");
                }
            }
            None => self.emit(raw),
        }
    }

    fn emit(&self, event: ClientEvent) {
        // Fails only when every handle is gone; the driver then stops at its
        // next command poll.
        let _ = self.events.try_send(event);
    }

    fn abandon(&mut self, session: SessionId) {
        self.routes.remove(&session);
        self.machine.close(Instant::now(), session);
    }

    fn fail_parked(&mut self, session: SessionId) {
        self.parked.retain(|p| {
            if p.session == session {
                let _ = p.reply.try_send(Err(SendError::UnknownSession));
                false
            } else {
                true
            }
        });
    }

    /// Binds `count` fresh sockets on the primary's IP and tells the machine.
    /// A socket that cannot be bound is left out: the machine copes with
    /// fewer than it asked for.
    fn open_sockets(&mut self, request: u32, count: u16) {
        let mut opened = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            match Endpoint::bind(SocketAddr::new(self.bind_ip, 0)) {
                Ok(endpoint) => {
                    let id = self.fresh_socket_id();
                    let addr = SocketAddr::new(self.advertised_ip, endpoint.local_addr().port());
                    self.sockets.insert(id, endpoint);
                    opened.push((id, addr));
                }
                Err(error) => {
                    SharedStats::add(&self.stats.io_errors, 1);
                    warn!(%error, ip = %self.bind_ip, "cannot bind an extra socket");
                }
            }
        }
        SharedStats::add(&self.stats.sockets_opened, opened.len() as u64);
        SharedStats::add(&self.stats.sockets_open, opened.len() as u64);
        // A fresh reading of the monotonic clock is never earlier than the
        // `now` of the input that produced this request.
        self.machine.sockets_opened(Instant::now(), request, &opened);
    }

    /// The next id for an extra socket: from 1 up, wrapping below
    /// [`FIRST_CONN`] (after two billion sockets) past ids still open.
    fn fresh_socket_id(&mut self) -> SocketId {
        loop {
            let id = SocketId(self.next_socket);
            self.next_socket = if self.next_socket + 1 >= FIRST_CONN { 1 } else { self.next_socket + 1 };
            if !self.sockets.contains(id) {
                return id;
            }
        }
    }

    /// Clean shutdown: log out (closing every session and telling the
    /// server), send what that queued, then fail every waiter.
    async fn stop(mut self) {
        self.machine.logout(Instant::now());
        // Events the logout produced (sessions closed locally) are routed
        // like any others, so `Session` owners learn why.
        self.drain().await;
        // Over TCP the logout is still queued: let it leave.
        self.conns.shutdown(FLUSH_ON_SHUTDOWN).await;
        for p in self.parked.drain(..) {
            let _ = p.reply.try_send(Err(SendError::UnknownSession));
        }
        for w in self.login_waiters.drain(..) {
            let _ = w.try_send(Err(Error::Shutdown));
        }
        for (_, queue) in std::mem::take(&mut self.connects) {
            for waiter in queue {
                if let ConnectWaiter::Session(reply) = waiter {
                    let _ = reply.try_send(Err(Error::Shutdown));
                }
            }
        }
        for (_, route) in std::mem::take(&mut self.routes) {
            let mut closed = lock(&route.shared.closed);
            if closed.is_none() {
                *closed = Some(CloseReason::Local);
                let _ = route.events.try_send(SessionEvent::Closed(CloseReason::Local));
            }
        }
        self.commands.close();
        self.stats.sockets_open.store(0, Ordering::Relaxed);
        debug!("client driver stopped");
    }
}

/// A poisoned lock only means a panic elsewhere; the value is still usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
