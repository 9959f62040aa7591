//! A client on its own thread, with a blocking handle for applications.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::Waker;
use punchline_core::client::{
    Client, ClientConfig, ClientEvent, ConnectError, FileId, FileProgress, FileSource, SendError, SendFileError,
};
use punchline_core::messaging::SendTextError;
use punchline_core::wire::frame::files::{FileAbort, FileRefusal};
use punchline_core::wire::frame::{MessageId, SessionId};
use punchline_core::SocketId;
use tracing::debug;

use crate::endpoint::Endpoint;
use crate::tcp::{TcpCounters, TcpStats};

/// A function run on the client's thread with the client and the current time.
type Call = Box<dyn FnOnce(&mut Client, Instant) + Send>;

enum Command {
    Call(Call),
    Shutdown,
}

/// A [`Client`] running on its own thread over mio sockets.
///
/// Commands are forwarded to the thread and answered synchronously (except
/// the fire-and-forget ones: [`post`](Self::post), and the answers a file
/// transfer's driver gives many times a second, [`file_data`](Self::file_data)
/// and [`file_written`](Self::file_written)); every
/// [`ClientEvent`] except the driver's own socket and stream requests arrives
/// on [`events`](Self::events), in order. Where UDP to the server is blocked
/// the client reaches it over TCP (`ClientConfig::server_tcp`), connected
/// here without blocking. Dropping the handle logs out and stops
/// the thread, like [`shutdown`](Self::shutdown).
#[derive(Debug)]
pub struct ClientHandle {
    commands: Sender<Command>,
    waker: Arc<Waker>,
    /// A wake is on its way to the thread: commands queued after it need
    /// none of their own (see [`ClientHandle::post`]).
    wake_pending: Arc<AtomicBool>,
    events: Receiver<ClientEvent>,
    local_addr: SocketAddr,
    tcp: TcpCounters,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Call(_) => "Call",
            Command::Shutdown => "Shutdown",
        })
    }
}

impl ClientHandle {
    /// Binds the primary socket at `bind` and starts a client that logs in
    /// at once.
    ///
    /// The primary's local address is the host candidate the client
    /// announces, and a peer cannot reach "0.0.0.0": an unspecified IP in
    /// `bind` is replaced by the local IP the system routes toward the
    /// server. Extra sockets are bound on the same IP, port 0.
    pub fn start(config: ClientConfig, bind: SocketAddr) -> io::Result<ClientHandle> {
        let bind = if bind.ip().is_unspecified() {
            SocketAddr::new(route_ip(bind, config.server)?, bind.port())
        } else {
            bind
        };
        Self::start_on(config, std::net::UdpSocket::bind(bind)?)
    }

    /// Starts a client whose primary socket is `socket`, already bound.
    pub fn start_on(config: ClientConfig, socket: std::net::UdpSocket) -> io::Result<ClientHandle> {
        let local_addr = socket.local_addr()?;
        let client = Client::new(config, (SocketId(0), local_addr), Instant::now());
        let endpoint = Endpoint::new(client, vec![(SocketId(0), socket)])?;
        let waker = endpoint.waker();
        let tcp = endpoint.tcp_counters();
        let (commands, command_rx) = mpsc::channel();
        let (event_tx, events) = mpsc::channel();
        let wake_pending = Arc::new(AtomicBool::new(false));
        let pending = Arc::clone(&wake_pending);
        let thread = std::thread::Builder::new()
            .name(format!("punchline-client {local_addr}"))
            .spawn(move || run(endpoint, command_rx, event_tx, &pending))?;
        Ok(ClientHandle { commands, waker, wake_pending, events, local_addr, tcp, thread: Some(thread) })
    }

    /// The primary socket's local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// What the client's TCP connections to the server did (see
    /// [`TcpStats`]).
    pub fn tcp_stats(&self) -> TcpStats {
        self.tcp.stats()
    }

    /// The events, in the order the client produced them.
    pub fn events(&self) -> &Receiver<ClientEvent> {
        &self.events
    }

    /// The next event, waiting at most `timeout`; `None` when none came or
    /// the client stopped.
    pub fn next_event(&self, timeout: Duration) -> Option<ClientEvent> {
        self.events.recv_timeout(timeout).ok()
    }

    /// Runs `f` on the client's thread and returns its result; the driver
    /// drains the client afterwards. Fails only when the client stopped.
    pub fn call<R: Send + 'static>(&self, f: impl FnOnce(&mut Client, Instant) -> R + Send + 'static) -> io::Result<R> {
        let (tx, rx) = mpsc::channel();
        let call: Call = Box::new(move |client, now| {
            let _ = tx.send(f(client, now));
        });
        self.submit(call)?;
        rx.recv().map_err(|_| stopped())
    }

    /// Runs `f` on the client's thread without waiting for it: it runs after
    /// every command sent before it, and before every command sent after
    /// it. Fails only when the client stopped.
    ///
    /// For answers given at a high rate, where a round trip to the thread
    /// per answer would make the calling thread the bottleneck: a 1 GiB
    /// transfer asks for 65,536 groups. Queued commands share one wake-up
    /// of the thread.
    pub fn post(&self, f: impl FnOnce(&mut Client, Instant) + Send + 'static) -> io::Result<()> {
        self.submit(Box::new(f))
    }

    fn submit(&self, call: Call) -> io::Result<()> {
        self.commands.send(Command::Call(call)).map_err(|_| stopped())?;
        // One wake-up serves every command queued before the thread drains
        // the queue: it clears the flag before draining, so a command sent
        // after the clear wakes it again.
        if !self.wake_pending.swap(true, Ordering::SeqCst) {
            self.waker.wake()?;
        }
        Ok(())
    }

    /// Offers `source` to `peer` (over the open session with `peer`, or one
    /// opened for it): answered by [`ClientEvent::FileAccepted`] then
    /// [`ClientEvent::FileCompleted`], or [`ClientEvent::FileFailed`];
    /// meanwhile [`ClientEvent::FileRead`] asks for the content, to be
    /// answered with [`file_data`](Self::file_data).
    pub fn send_file(&self, peer: &str, source: FileSource) -> io::Result<Result<FileId, SendFileError>> {
        let peer = peer.to_owned();
        self.call(move |c, now| c.send_file(now, &peer, source))
    }

    /// Answers [`ClientEvent::FileRead`] with the bytes at `offset`.
    /// Fire-and-forget ([`post`](Self::post)): it does not wait for the
    /// client's thread.
    pub fn file_data(&self, file: FileId, offset: u64, data: Vec<u8>) -> io::Result<()> {
        self.post(move |c, now| c.file_data(now, file, offset, &data))
    }

    /// The file being sent could not be read: the transfer ends.
    /// Fire-and-forget, like [`file_data`](Self::file_data), so it stays in
    /// order behind the data answered before it.
    pub fn file_read_failed(&self, file: FileId) -> io::Result<()> {
        self.post(move |c, now| c.file_read_failed(now, file))
    }

    /// Accepts the offer [`ClientEvent::FileOffered`] named `file`; `have`:
    /// the 16 KiB groups already held (half-open ranges, ascending).
    pub fn accept_file(&self, file: FileId, have: Vec<(u64, u64)>) -> io::Result<()> {
        self.call(move |c, now| c.accept_file(now, file, &have))
    }

    /// Refuses the offer named `file`.
    pub fn refuse_file(&self, file: FileId, reason: FileRefusal) -> io::Result<()> {
        self.call(move |c, now| c.refuse_file(now, file, reason))
    }

    /// Answers [`ClientEvent::FileWrite`]: the group at `offset` is written,
    /// or could not be ([`FileAbort::DiskFull`], [`FileAbort::WriteFailed`]).
    /// Fire-and-forget ([`post`](Self::post)).
    pub fn file_written(&self, file: FileId, offset: u64, result: Result<(), FileAbort>) -> io::Result<()> {
        self.post(move |c, now| c.file_written(now, file, offset, result))
    }

    /// Ends a transfer, either way, telling the peer.
    pub fn cancel_file(&self, file: FileId) -> io::Result<()> {
        self.call(move |c, now| c.cancel_file(now, file))
    }

    /// A snapshot of a transfer under way (`None` once it ended).
    pub fn file_progress(&self, file: FileId) -> io::Result<Option<FileProgress>> {
        self.call(move |c, _| c.file_progress(file))
    }

    /// Sends a text message to user `to` (over a direct session when there is
    /// one, else through the server, which stores it for an offline user):
    /// answered by [`ClientEvent::TextAcked`] or [`ClientEvent::TextFailed`]
    /// with the returned id.
    pub fn send_text(&self, to: &str, text: &str) -> io::Result<Result<MessageId, SendTextError>> {
        let (to, text) = (to.to_owned(), text.to_owned());
        self.call(move |client, now| client.send_text(now, &to, &text))
    }

    /// Acknowledges a received text once the application has shown or saved
    /// it (with `MessagingConfig::ack_on_receipt` off; see
    /// `punchline_core::client::Client::ack_text`).
    pub fn ack_text(&self, from: &str, id: MessageId) -> io::Result<bool> {
        let from = from.to_owned();
        self.call(move |client, now| client.ack_text(now, &from, id))
    }

    /// Asks the server for every text stored for us; [`ClientEvent::InboxEmpty`]
    /// follows once none are left.
    pub fn sync_inbox(&self) -> io::Result<Result<(), SendTextError>> {
        self.call(|client, now| client.sync_inbox(now))
    }

    /// Asks the server whether `user` is online and which key its name is
    /// bound to: answered by [`ClientEvent::LookupResult`].
    pub fn lookup(&self, user: &str) -> io::Result<Result<(), ConnectError>> {
        let user = user.to_owned();
        self.call(move |c, now| c.lookup(now, &user))
    }

    /// Asks for a session with `peer`: answered by
    /// [`ClientEvent::SessionOpened`] or [`ClientEvent::ConnectFailed`].
    pub fn connect(&self, peer: &str) -> io::Result<Result<(), ConnectError>> {
        let peer = peer.to_owned();
        self.call(move |c, now| c.connect(now, &peer))
    }

    /// Sends `data` on `session`, reliably and in order.
    pub fn send(&self, session: SessionId, data: &[u8]) -> io::Result<Result<(), SendError>> {
        let data = data.to_vec();
        self.call(move |c, now| c.send(now, session, &data))
    }

    /// Closes `session`, telling the peer.
    pub fn close(&self, session: SessionId) -> io::Result<()> {
        self.call(move |c, now| c.close(now, session))
    }

    /// Logs out (closing every session), stops the thread and returns how it
    /// ended.
    pub fn shutdown(mut self) -> io::Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> io::Result<()> {
        let Some(thread) = self.thread.take() else { return Ok(()) };
        let _ = self.commands.send(Command::Shutdown);
        let _ = self.waker.wake();
        thread.join().unwrap_or_else(|_| Err(io::Error::other("client thread panicked")))
    }
}

impl Drop for ClientHandle {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            debug!(error = %e, "client thread ended with an error");
        }
    }
}

/// The local IP the system would send from toward `server` (a connected UDP
/// socket sends nothing; it only picks a route).
pub(crate) fn route_ip(bind: SocketAddr, server: SocketAddr) -> io::Result<std::net::IpAddr> {
    let probe = std::net::UdpSocket::bind(SocketAddr::new(bind.ip(), 0))?;
    probe.connect(server)?;
    Ok(probe.local_addr()?.ip())
}

fn stopped() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the client has stopped")
}

fn run(
    mut endpoint: Endpoint<Client>,
    commands: Receiver<Command>,
    events: Sender<ClientEvent>,
    wake_pending: &AtomicBool,
) -> io::Result<()> {
    let mut sink = |e: ClientEvent| {
        // A handle that stopped listening is not an error: keep driving.
        let _ = events.send(e);
    };
    endpoint.flush(Instant::now(), &mut sink);
    loop {
        let woken = endpoint.turn(None, &mut sink)?;
        if !woken {
            continue;
        }
        // Cleared before the queue is drained: a command sent from now on
        // wakes the loop again (see `ClientHandle::submit`).
        wake_pending.store(false, Ordering::SeqCst);
        loop {
            match commands.try_recv() {
                Ok(Command::Call(f)) => {
                    let now = Instant::now();
                    f(endpoint.machine_mut(), now);
                    endpoint.flush(now, &mut sink);
                }
                Ok(Command::Shutdown) | Err(TryRecvError::Disconnected) => {
                    let now = Instant::now();
                    endpoint.machine_mut().logout(now);
                    endpoint.flush(now, &mut sink);
                    // The logout may be on its way over TCP.
                    endpoint.close_streams();
                    return Ok(());
                }
                Err(TryRecvError::Empty) => break,
            }
        }
    }
}
