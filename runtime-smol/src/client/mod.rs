//! The client handle: a [`Client`] driver task on smol and what applications
//! call on it.

mod driver;
mod session;

pub use session::{Session, SessionEvent};

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use punchline_core::client::{
    ClientConfig, ClientEvent, ConnectError, ConnectFailure, FileId, FileProgress, FileSource, SendError,
    SendFileError, SessionInfo,
};
use punchline_core::messaging::SendTextError;
use punchline_core::wire::frame::files::{FileAbort, FileRefusal};
use punchline_core::wire::frame::{MessageId, SessionId, Transport};
use smol::channel::{self, Receiver, Sender};

use crate::tcp::{TcpCounters, TcpStats};
use crate::udp::Endpoint;
use driver::{Command, Driver, SessionParts};

/// Errors of the convenience API ([`Client::connect_session`],
/// [`Client::accept`], [`Client::wait_logged_in`], [`Session::send`]).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The core refused the request at once (not logged in, bad user name).
    #[error("connect refused: {0}")]
    Connect(#[from] ConnectError),
    /// The server answered that no session can be opened.
    #[error("connect to {peer} failed: {}", describe_failure(.reason))]
    ConnectFailed {
        /// Who we asked for.
        peer: String,
        /// Why.
        reason: ConnectFailure,
    },
    /// The server refused the login.
    #[error("login refused: {0:?}")]
    LoginFailed(punchline_core::wire::frame::ErrorCode),
    /// Sending on a session failed.
    #[error("send failed: {0}")]
    Send(#[from] SendError),
    /// The client was shut down (or its driver stopped).
    #[error("client shut down")]
    Shutdown,
}

fn describe_failure(reason: &ConnectFailure) -> String {
    match reason {
        ConnectFailure::UnknownPeer => "unknown peer".to_owned(),
        ConnectFailure::PeerOffline => "peer offline".to_owned(),
        ConnectFailure::ServerUnreachable => "server unreachable".to_owned(),
        ConnectFailure::Refused(code) => format!("refused by the server ({code:?})"),
        ConnectFailure::PeerKeyChanged => "the server names another key than the one pinned for the peer".to_owned(),
    }
}

/// Counters of the driver's own work (the machine counts protocol drops).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// Sockets open now, the primary included.
    pub sockets_open: u64,
    /// Extra sockets bound for [`ClientEvent::OpenSockets`], all time.
    pub sockets_opened: u64,
    /// Extra sockets closed for [`ClientEvent::ReleaseSocket`], all time.
    pub sockets_released: u64,
    /// Datagrams sent.
    pub datagrams_sent: u64,
    /// Datagrams sent with a transmit's own TTL (openers).
    pub low_ttl_sent: u64,
    /// Datagrams received.
    pub datagrams_received: u64,
    /// Sends that failed (and receive errors); logged at debug level.
    pub io_errors: u64,
}

#[derive(Debug, Default)]
pub(crate) struct SharedStats {
    pub(crate) sockets_open: AtomicU64,
    pub(crate) sockets_opened: AtomicU64,
    pub(crate) sockets_released: AtomicU64,
    pub(crate) datagrams_sent: AtomicU64,
    pub(crate) low_ttl_sent: AtomicU64,
    pub(crate) datagrams_received: AtomicU64,
    pub(crate) io_errors: AtomicU64,
    /// The machine reaches the server over TCP (its last
    /// `TransportChanged`).
    pub(crate) over_tcp: AtomicBool,
}

impl SharedStats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A handle to a Punchline client running as a task on smol.
///
/// [`Client::start`] binds the primary socket and spawns the driver onto
/// smol's global executor ([`smol::spawn`]), so the client makes progress
/// whether or not the caller's executor is busy, and the handle's methods work
/// from any executor (or [`smol::block_on`]). Clones share one client. The
/// driver stops on [`shutdown`](Self::shutdown), or when every handle (and
/// every [`Session`]) is dropped; either way it logs out first.
///
/// Two ways to use it, which mix freely:
/// - the raw API mirrors the core: [`connect`](Self::connect),
///   [`send`](Self::send), [`close`](Self::close) and the event stream
///   [`next_event`](Self::next_event);
/// - the convenience API hands out [`Session`]s:
///   [`connect_session`](Self::connect_session) and [`accept`](Self::accept).
///   A session's own events (data, path changes, close) go to its `Session`
///   and no longer appear in `next_event`.
#[derive(Clone, Debug)]
pub struct Client {
    commands: Sender<Command>,
    events: Receiver<ClientEvent>,
    incoming: Receiver<SessionParts>,
    accepting: Arc<AtomicBool>,
    done: Receiver<()>,
    stats: Arc<SharedStats>,
    tcp: TcpCounters,
    local_addr: SocketAddr,
}

impl Client {
    /// Binds the primary socket at `bind`, starts the client (it logs in at
    /// once) and returns its handle.
    ///
    /// `bind` may have an unspecified IP (`0.0.0.0:0`): the client then
    /// advertises the local address the system would route toward the server
    /// as its host candidate, since a peer cannot reach "0.0.0.0". Extra
    /// sockets (NAT discovery, punching retries from fresh ports) are bound on
    /// the same IP as the primary, with port 0.
    pub async fn start(config: ClientConfig, bind: SocketAddr) -> io::Result<Client> {
        let primary = Endpoint::bind(bind)?;
        let bound = primary.local_addr();
        let advertised_ip = if bound.ip().is_unspecified() { route_ip(bound, config.server)? } else { bound.ip() };
        let local_addr = SocketAddr::new(advertised_ip, bound.port());

        let (commands, command_rx) = channel::unbounded();
        let (event_tx, events) = channel::unbounded();
        let (incoming_tx, incoming) = channel::unbounded();
        let (done_tx, done) = channel::bounded(1);
        let accepting = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(SharedStats::default());
        let tcp = TcpCounters::default();
        let driver = Driver::new(
            config,
            primary,
            local_addr,
            command_rx,
            event_tx,
            incoming_tx,
            accepting.clone(),
            stats.clone(),
            tcp.clone(),
            done_tx,
        );
        smol::spawn(driver.run()).detach();
        Ok(Client { commands, events, incoming, accepting, done, stats, tcp, local_addr })
    }

    /// The primary socket's address as advertised to peers (see
    /// [`start`](Self::start) for unspecified binds).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Asks the server for a session with `peer`; the answer comes as
    /// [`ClientEvent::SessionOpened`] or [`ClientEvent::ConnectFailed`] from
    /// [`next_event`](Self::next_event). Callable before the login finished
    /// (the request waits for it). After shutdown it fails with
    /// [`ConnectError::NotLoggedIn`].
    pub async fn connect(&self, peer: &str) -> Result<(), ConnectError> {
        let (reply, answer) = channel::bounded(1);
        self.command(Command::Connect { peer: peer.to_owned(), reply: Some(reply) }).await;
        answer.recv().await.unwrap_or(Err(ConnectError::NotLoggedIn))
    }

    /// Sends `data` on `session`, reliably and in order. Fails at once with
    /// [`SendError::WindowFull`] while too much is unacknowledged (a
    /// [`Session`] waits instead). After shutdown it fails with
    /// [`SendError::UnknownSession`].
    pub async fn send(&self, session: SessionId, data: &[u8]) -> Result<(), SendError> {
        let (reply, answer) = channel::bounded(1);
        let data = Bytes::copy_from_slice(data);
        self.command(Command::Send { session, data, wait: false, reply }).await;
        answer.recv().await.unwrap_or(Err(SendError::UnknownSession))
    }

    /// Sends a text message to user `to` (over a direct session when there is
    /// one, else through the server, which stores it for an offline user).
    /// The outcome comes as [`ClientEvent::TextAcked`] or
    /// [`ClientEvent::TextFailed`] with the returned id. After shutdown it
    /// fails with [`SendTextError::NotLoggedIn`].
    pub async fn send_text(&self, to: &str, text: &str) -> Result<MessageId, SendTextError> {
        let (reply, answer) = channel::bounded(1);
        self.command(Command::SendText { to: to.to_owned(), text: text.to_owned(), reply }).await;
        answer.recv().await.unwrap_or(Err(SendTextError::NotLoggedIn))
    }

    /// Asks the server for every text stored for us; [`ClientEvent::InboxEmpty`]
    /// follows once none are left. After shutdown it fails with
    /// [`SendTextError::NotLoggedIn`].
    pub async fn sync_inbox(&self) -> Result<(), SendTextError> {
        let (reply, answer) = channel::bounded(1);
        self.command(Command::SyncInbox { reply }).await;
        answer.recv().await.unwrap_or(Err(SendTextError::NotLoggedIn))
    }

    /// Acknowledges a received text once the application has shown or saved
    /// it (with `MessagingConfig::ack_on_receipt` off; see
    /// `punchline_core::client::Client::ack_text`). False when no such text
    /// waited, or after shutdown.
    pub async fn ack_text(&self, from: &str, id: MessageId) -> bool {
        let (reply, answer) = channel::bounded(1);
        self.command(Command::AckText { from: from.to_owned(), id, reply }).await;
        answer.recv().await.unwrap_or(false)
    }

    /// Closes `session`, telling the peer. Unknown sessions are ignored.
    pub async fn close(&self, session: SessionId) {
        self.command(Command::Close { session }).await;
    }

    /// The next event: every core event except the driver's socket and
    /// connection management (`OpenSockets`, `ReleaseSocket`, `OpenStream`,
    /// `CloseStream`, handled inside), and except
    /// those of sessions owned by a [`Session`]. `None` once the client has
    /// shut down and every event was read.
    ///
    /// Events queue until read. Clones share one queue: each event goes to one
    /// reader.
    pub async fn next_event(&self) -> Option<ClientEvent> {
        self.events.recv().await.ok()
    }

    /// Opens a session with `peer` and resolves when it is usable (over the
    /// relay at first; it moves to a direct path by itself), or fails.
    pub async fn connect_session(&self, peer: &str) -> Result<Session, Error> {
        let (reply, answer) = channel::bounded(1);
        self.command(Command::ConnectSession { peer: peer.to_owned(), reply }).await;
        let parts = answer.recv().await.map_err(|_| Error::Shutdown)??;
        Ok(Session::new(self.clone(), parts))
    }

    /// The next session a peer opened with us.
    ///
    /// From the first call on — as soon as `accept` is called, even before
    /// its future is awaited — sessions that peers open are queued for
    /// `accept` instead of appearing as [`ClientEvent::SessionOpened`] in
    /// [`next_event`](Self::next_event). Call it before a peer can connect
    /// (e.g. right after [`start`](Self::start), before waiting for the login)
    /// so none slips by. Resolves to `None` after shutdown.
    pub fn accept(&self) -> impl std::future::Future<Output = Option<Session>> + Send + '_ {
        self.accepting.store(true, Ordering::SeqCst);
        async move {
            let parts = self.incoming.recv().await.ok()?;
            Some(Session::new(self.clone(), parts))
        }
    }

    /// Resolves once the server accepted the login, with the reflexive address
    /// it sees; at once if that already happened.
    pub async fn wait_logged_in(&self) -> Result<SocketAddr, Error> {
        let (reply, answer) = channel::bounded(1);
        self.command(Command::WhenLoggedIn { reply }).await;
        answer.recv().await.map_err(|_| Error::Shutdown)?
    }

    /// A snapshot of `session` (path, strategy, fallbacks, probes).
    pub async fn session_info(&self, session: SessionId) -> Option<SessionInfo> {
        let (reply, answer) = channel::bounded(1);
        self.command(Command::SessionInfo { session, reply }).await;
        answer.recv().await.ok().flatten()
    }

    /// Asks the server whether `user` is online; the answer comes as
    /// [`ClientEvent::LookupResult`] from [`next_event`](Self::next_event).
    pub async fn lookup(&self, user: &str) -> Result<(), ConnectError> {
        let (reply, answer) = channel::bounded(1);
        self.command(Command::Lookup { user: user.to_owned(), reply }).await;
        answer.recv().await.unwrap_or(Err(ConnectError::NotLoggedIn))
    }

    /// Offers `source` to `peer` (over the open session with `peer`, or one
    /// opened for it). The outcome comes from [`next_event`](Self::next_event):
    /// [`ClientEvent::FileAccepted`] then [`ClientEvent::FileCompleted`], or
    /// [`ClientEvent::FileFailed`]; meanwhile [`ClientEvent::FileRead`] asks
    /// for the content, answered with [`file_data`](Self::file_data). After
    /// shutdown it fails with [`SendFileError::NotLoggedIn`].
    pub async fn send_file(&self, peer: &str, source: FileSource) -> Result<FileId, SendFileError> {
        let (reply, answer) = channel::bounded(1);
        self.command(Command::SendFile { peer: peer.to_owned(), source: Box::new(source), reply }).await;
        answer.recv().await.unwrap_or(Err(SendFileError::NotLoggedIn))
    }

    /// Answers [`ClientEvent::FileRead`] with the bytes at `offset`.
    ///
    /// Fire-and-forget, and not `async`: it queues the answer for the
    /// driver (the queue is unbounded, so it never waits) and returns. A
    /// 1 GiB transfer asks for 65,536 groups; a round trip per answer would
    /// make the caller the bottleneck. Answers keep their order with every
    /// other command. Ignored after shutdown.
    pub fn file_data(&self, file: FileId, offset: u64, data: impl Into<Bytes>) {
        self.command_now(Command::FileData { file, offset, data: data.into() });
    }

    /// The file being sent could not be read: the transfer ends.
    /// Fire-and-forget like [`file_data`](Self::file_data), so it stays in
    /// order behind the data answered before it.
    pub fn file_read_failed(&self, file: FileId) {
        self.command_now(Command::FileReadFailed { file });
    }

    /// Accepts the offer [`ClientEvent::FileOffered`] named `file`; `have`:
    /// the 16 KiB groups already held (half-open ranges, ascending), which
    /// the sender skips.
    pub async fn accept_file(&self, file: FileId, have: &[(u64, u64)]) {
        self.command(Command::AcceptFile { file, have: have.to_vec() }).await;
    }

    /// Refuses the offer named `file`.
    pub async fn refuse_file(&self, file: FileId, reason: FileRefusal) {
        self.command(Command::RefuseFile { file, reason }).await;
    }

    /// Answers [`ClientEvent::FileWrite`]: the group at `offset` is written,
    /// or could not be ([`FileAbort::DiskFull`], [`FileAbort::WriteFailed`]).
    /// Fire-and-forget and not `async`, like [`file_data`](Self::file_data).
    pub fn file_written(&self, file: FileId, offset: u64, result: Result<(), FileAbort>) {
        self.command_now(Command::FileWritten { file, offset, result });
    }

    /// Ends a transfer, either way, telling the peer.
    pub async fn cancel_file(&self, file: FileId) {
        self.command(Command::CancelFile { file }).await;
    }

    /// A snapshot of a transfer under way; `None` once it ended, or after
    /// shutdown.
    pub async fn file_progress(&self, file: FileId) -> Option<FileProgress> {
        let (reply, answer) = channel::bounded(1);
        self.command(Command::FileProgress { file, reply }).await;
        answer.recv().await.ok().flatten()
    }

    /// Runs `look` on the client machine, inside the driver, and returns what
    /// it returns: the machine's NAT profile, stats, sessions, … `None` after
    /// shutdown. Keep it short: the driver waits for it.
    ///
    /// ```no_run
    /// # async fn f(client: punchline_smol::Client) {
    /// let profile = client.inspect(|machine| machine.nat_profile()).await;
    /// # }
    /// ```
    pub async fn inspect<R: Send + 'static>(
        &self,
        look: impl FnOnce(&punchline_core::client::Client) -> R + Send + 'static,
    ) -> Option<R> {
        let (reply, answer) = channel::bounded(1);
        let run = move |machine: &punchline_core::client::Client| {
            let _ = reply.try_send(look(machine));
        };
        self.command(Command::Inspect(driver::Inspector(Box::new(run)))).await;
        answer.recv().await.ok()
    }

    /// The driver's counters.
    pub fn driver_stats(&self) -> DriverStats {
        let s = &self.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DriverStats {
            sockets_open: get(&s.sockets_open),
            sockets_opened: get(&s.sockets_opened),
            sockets_released: get(&s.sockets_released),
            datagrams_sent: get(&s.datagrams_sent),
            low_ttl_sent: get(&s.low_ttl_sent),
            datagrams_received: get(&s.datagrams_received),
            io_errors: get(&s.io_errors),
        }
    }

    /// How the client reaches the server now: [`Transport::Udp`], or
    /// [`Transport::Tcp`] where UDP is blocked (see
    /// `punchline_core::client::Client::transport`). Changes also arrive as
    /// [`ClientEvent::TransportChanged`].
    pub fn transport(&self) -> Transport {
        if self.stats.over_tcp.load(Ordering::Relaxed) {
            Transport::Tcp
        } else {
            Transport::Udp
        }
    }

    /// The counters of the TCP connection to the server (the fallback
    /// where UDP is blocked).
    pub fn tcp_stats(&self) -> TcpStats {
        self.tcp.get()
    }

    /// Logs out (closing every session, telling the server), closes the
    /// sockets and waits until the driver has stopped. Idempotent.
    pub async fn shutdown(&self) {
        self.command(Command::Shutdown).await;
        // The driver holds the only sender; its end closes the channel.
        let _ = self.done.recv().await;
    }

    /// True once the driver has stopped.
    pub fn is_shut_down(&self) -> bool {
        self.commands.is_closed()
    }

    async fn command(&self, command: Command) {
        // A closed channel means the driver stopped; the reply channels then
        // close too, and each caller maps that to its own error.
        let _ = self.commands.send(command).await;
    }

    /// For `Session`'s `Drop`, which cannot await, and the fire-and-forget
    /// file answers (the channel is unbounded, so this never blocks).
    fn command_now(&self, command: Command) {
        let _ = self.commands.try_send(command);
    }
}

/// The local IP the system would use toward `server`: a connected UDP socket
/// learns it without sending anything.
fn route_ip(bound: SocketAddr, server: SocketAddr) -> io::Result<IpAddr> {
    let probe = UdpSocket::bind(SocketAddr::new(bound.ip(), 0))?;
    probe.connect(server)?;
    Ok(probe.local_addr()?.ip())
}
