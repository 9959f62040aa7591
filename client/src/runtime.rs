//! The runtime behind the CLI, chosen with `--runtime`: a small blocking
//! interface over `punchline-mio`'s thread handle or `punchline-smol`'s
//! async handle (driven with `smol::block_on`).

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use punchline_core::client::{
    ClientConfig, ClientEvent, ConnectError, FileId, FileProgress, FileSource, SendError, SendFileError,
};
use punchline_core::messaging::SendTextError;
use punchline_core::wire::frame::files::{FileAbort, FileRefusal};
use punchline_core::wire::frame::{MessageId, SessionId};

/// Which runtime drives the client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeKind {
    /// `punchline-mio`: a driver thread around mio's poll.
    #[default]
    Mio,
    /// `punchline-smol`: an async task on smol's executor.
    Smol,
}

/// What waiting for an event gave.
#[derive(Debug)]
pub enum Next {
    /// An event.
    Event(ClientEvent),
    /// The deadline passed first.
    Idle,
    /// The client stopped; no event will come.
    Stopped,
}

/// A running client, whichever runtime drives it.
pub trait ClientRuntime {
    /// The primary socket's local address.
    fn local_addr(&self) -> SocketAddr;
    /// Asks for a session with `peer`.
    fn connect(&self, peer: &str) -> io::Result<Result<(), ConnectError>>;
    /// Sends application data on `session`.
    fn send(&self, session: SessionId, data: &[u8]) -> io::Result<Result<(), SendError>>;
    /// Closes `session`.
    fn close(&self, session: SessionId) -> io::Result<()>;
    /// Sends a text message to user `to`; the outcome is a `TextAcked` or
    /// `TextFailed` event with the returned id.
    fn send_text(&self, to: &str, text: &str) -> io::Result<Result<MessageId, SendTextError>>;
    /// Acknowledges a text the command has printed (`ack_on_receipt` off).
    fn ack_text(&self, from: &str, id: MessageId) -> io::Result<bool>;
    /// Asks for every stored text until `InboxEmpty`.
    fn sync_inbox(&self) -> io::Result<Result<(), SendTextError>>;
    /// Asks the server about `user`: online, and the key its name is bound
    /// to (a `LookupResult` event).
    fn lookup(&self, user: &str) -> io::Result<Result<(), ConnectError>>;
    /// Offers a file to `peer` (see `Client::send_file`).
    fn send_file(&self, peer: &str, source: FileSource) -> io::Result<Result<FileId, SendFileError>>;
    /// Answers a `FileRead`. Does not wait for the driver: a transfer asks
    /// for one 16 KiB group at a time, 65,536 times per GiB.
    fn file_data(&self, file: FileId, offset: u64, data: Vec<u8>) -> io::Result<()>;
    /// The file being sent could not be read (queued like `file_data`).
    fn file_read_failed(&self, file: FileId) -> io::Result<()>;
    /// Accepts an offer, naming the groups already held.
    fn accept_file(&self, file: FileId, have: Vec<(u64, u64)>) -> io::Result<()>;
    /// Refuses an offer.
    fn refuse_file(&self, file: FileId, reason: FileRefusal) -> io::Result<()>;
    /// Answers a `FileWrite`. Does not wait for the driver, like
    /// `file_data`.
    fn file_written(&self, file: FileId, offset: u64, result: Result<(), FileAbort>) -> io::Result<()>;
    /// Ends a transfer, telling the peer.
    fn cancel_file(&self, file: FileId) -> io::Result<()>;
    /// A snapshot of a transfer under way.
    fn file_progress(&self, file: FileId) -> io::Result<Option<FileProgress>>;
    /// The next event, waiting until `deadline` at most.
    fn next_event(&self, deadline: Instant) -> Next;
    /// Logs out and stops.
    fn shutdown(self: Box<Self>) -> io::Result<()>;
}

/// A runtime that pins keys when the client learns them (trust on first
/// use, see [`crate::identity`]): the server's in `known_servers`, and
/// contacts' in `known_peers`.
pub struct Pinning {
    inner: Box<dyn ClientRuntime>,
    /// `None` when the server's key was given (`--server-key`).
    known_servers: Option<crate::identity::KnownServers>,
    known_peers: crate::identity::KnownPeers,
    server: SocketAddr,
}

impl Pinning {
    /// `inner`, pinning what it learns of `server` and its users.
    pub fn new(
        inner: Box<dyn ClientRuntime>,
        known_servers: Option<crate::identity::KnownServers>,
        known_peers: crate::identity::KnownPeers,
        server: SocketAddr,
    ) -> Self {
        Pinning { inner, known_servers, known_peers, server }
    }
}

impl ClientRuntime for Pinning {
    fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr()
    }
    fn connect(&self, peer: &str) -> io::Result<Result<(), ConnectError>> {
        self.inner.connect(peer)
    }
    fn send(&self, session: SessionId, data: &[u8]) -> io::Result<Result<(), SendError>> {
        self.inner.send(session, data)
    }
    fn close(&self, session: SessionId) -> io::Result<()> {
        self.inner.close(session)
    }
    fn send_text(&self, to: &str, text: &str) -> io::Result<Result<MessageId, SendTextError>> {
        self.inner.send_text(to, text)
    }
    fn ack_text(&self, from: &str, id: MessageId) -> io::Result<bool> {
        self.inner.ack_text(from, id)
    }
    fn sync_inbox(&self) -> io::Result<Result<(), SendTextError>> {
        self.inner.sync_inbox()
    }
    fn lookup(&self, user: &str) -> io::Result<Result<(), ConnectError>> {
        self.inner.lookup(user)
    }
    fn send_file(&self, peer: &str, source: FileSource) -> io::Result<Result<FileId, SendFileError>> {
        self.inner.send_file(peer, source)
    }
    fn file_data(&self, file: FileId, offset: u64, data: Vec<u8>) -> io::Result<()> {
        self.inner.file_data(file, offset, data)
    }
    fn file_read_failed(&self, file: FileId) -> io::Result<()> {
        self.inner.file_read_failed(file)
    }
    fn accept_file(&self, file: FileId, have: Vec<(u64, u64)>) -> io::Result<()> {
        self.inner.accept_file(file, have)
    }
    fn refuse_file(&self, file: FileId, reason: FileRefusal) -> io::Result<()> {
        self.inner.refuse_file(file, reason)
    }
    fn file_written(&self, file: FileId, offset: u64, result: Result<(), FileAbort>) -> io::Result<()> {
        self.inner.file_written(file, offset, result)
    }
    fn cancel_file(&self, file: FileId) -> io::Result<()> {
        self.inner.cancel_file(file)
    }
    fn file_progress(&self, file: FileId) -> io::Result<Option<FileProgress>> {
        self.inner.file_progress(file)
    }
    fn next_event(&self, deadline: Instant) -> Next {
        let next = self.inner.next_event(deadline);
        match &next {
            Next::Event(ClientEvent::ServerKeyLearned { key }) => {
                let Some(known) = &self.known_servers else { return next };
                match known.pin(self.server, *key) {
                    Ok(()) => eprintln!("punchline: pinned the key of server {} on first contact: {key}", self.server),
                    Err(e) => eprintln!("punchline: warning: could not pin the server's key: {e}"),
                }
            }
            Next::Event(ClientEvent::PeerKeyLearned { peer, key }) => {
                let shown = crate::display::escaped(peer);
                match self.known_peers.pin(self.server, peer, *key) {
                    Ok(()) => eprintln!("punchline: pinned the key of {shown} on first use: {key}"),
                    Err(e) => eprintln!("punchline: warning: could not pin {shown}'s key: {e}"),
                }
            }
            Next::Event(ClientEvent::PeerKeyChanged { peer, pinned, offered }) => eprintln!(
                "punchline: THE KEY OF {} HAS CHANGED: pinned {pinned}, the server now says {offered}; \
                 nothing was sent to the new key",
                crate::display::escaped(peer)
            ),
            _ => {}
        }
        next
    }
    fn shutdown(self: Box<Self>) -> io::Result<()> {
        self.inner.shutdown()
    }
}

/// Starts a client on `kind`, its primary socket bound at `bind`.
pub fn start(kind: RuntimeKind, config: ClientConfig, bind: SocketAddr) -> io::Result<Box<dyn ClientRuntime>> {
    Ok(match kind {
        RuntimeKind::Mio => Box::new(punchline_mio::ClientHandle::start(config, bind)?),
        RuntimeKind::Smol => Box::new(smol::block_on(punchline_smol::Client::start(config, bind))?),
    })
}

impl ClientRuntime for punchline_mio::ClientHandle {
    fn local_addr(&self) -> SocketAddr {
        punchline_mio::ClientHandle::local_addr(self)
    }

    fn connect(&self, peer: &str) -> io::Result<Result<(), ConnectError>> {
        punchline_mio::ClientHandle::connect(self, peer)
    }

    fn send(&self, session: SessionId, data: &[u8]) -> io::Result<Result<(), SendError>> {
        punchline_mio::ClientHandle::send(self, session, data)
    }

    fn close(&self, session: SessionId) -> io::Result<()> {
        punchline_mio::ClientHandle::close(self, session)
    }

    fn send_text(&self, to: &str, text: &str) -> io::Result<Result<MessageId, SendTextError>> {
        punchline_mio::ClientHandle::send_text(self, to, text)
    }

    fn sync_inbox(&self) -> io::Result<Result<(), SendTextError>> {
        punchline_mio::ClientHandle::sync_inbox(self)
    }

    fn lookup(&self, user: &str) -> io::Result<Result<(), ConnectError>> {
        punchline_mio::ClientHandle::lookup(self, user)
    }

    fn ack_text(&self, from: &str, id: MessageId) -> io::Result<bool> {
        punchline_mio::ClientHandle::ack_text(self, from, id)
    }

    fn send_file(&self, peer: &str, source: FileSource) -> io::Result<Result<FileId, SendFileError>> {
        punchline_mio::ClientHandle::send_file(self, peer, source)
    }

    fn file_data(&self, file: FileId, offset: u64, data: Vec<u8>) -> io::Result<()> {
        punchline_mio::ClientHandle::file_data(self, file, offset, data)
    }

    fn file_read_failed(&self, file: FileId) -> io::Result<()> {
        punchline_mio::ClientHandle::file_read_failed(self, file)
    }

    fn accept_file(&self, file: FileId, have: Vec<(u64, u64)>) -> io::Result<()> {
        punchline_mio::ClientHandle::accept_file(self, file, have)
    }

    fn refuse_file(&self, file: FileId, reason: FileRefusal) -> io::Result<()> {
        punchline_mio::ClientHandle::refuse_file(self, file, reason)
    }

    fn file_written(&self, file: FileId, offset: u64, result: Result<(), FileAbort>) -> io::Result<()> {
        punchline_mio::ClientHandle::file_written(self, file, offset, result)
    }

    fn cancel_file(&self, file: FileId) -> io::Result<()> {
        punchline_mio::ClientHandle::cancel_file(self, file)
    }

    fn file_progress(&self, file: FileId) -> io::Result<Option<FileProgress>> {
        punchline_mio::ClientHandle::file_progress(self, file)
    }

    fn next_event(&self, deadline: Instant) -> Next {
        use std::sync::mpsc::RecvTimeoutError;
        match self.events().recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(e) => Next::Event(e),
            Err(RecvTimeoutError::Timeout) => Next::Idle,
            Err(RecvTimeoutError::Disconnected) => Next::Stopped,
        }
    }

    fn shutdown(self: Box<Self>) -> io::Result<()> {
        punchline_mio::ClientHandle::shutdown(*self)
    }
}

impl ClientRuntime for punchline_smol::Client {
    fn local_addr(&self) -> SocketAddr {
        punchline_smol::Client::local_addr(self)
    }

    fn connect(&self, peer: &str) -> io::Result<Result<(), ConnectError>> {
        Ok(smol::block_on(punchline_smol::Client::connect(self, peer)))
    }

    fn send(&self, session: SessionId, data: &[u8]) -> io::Result<Result<(), SendError>> {
        Ok(smol::block_on(punchline_smol::Client::send(self, session, data)))
    }

    fn close(&self, session: SessionId) -> io::Result<()> {
        smol::block_on(punchline_smol::Client::close(self, session));
        Ok(())
    }

    fn send_text(&self, to: &str, text: &str) -> io::Result<Result<MessageId, SendTextError>> {
        Ok(smol::block_on(punchline_smol::Client::send_text(self, to, text)))
    }

    fn sync_inbox(&self) -> io::Result<Result<(), SendTextError>> {
        Ok(smol::block_on(punchline_smol::Client::sync_inbox(self)))
    }

    fn lookup(&self, user: &str) -> io::Result<Result<(), ConnectError>> {
        Ok(smol::block_on(punchline_smol::Client::lookup(self, user)))
    }

    fn ack_text(&self, from: &str, id: MessageId) -> io::Result<bool> {
        Ok(smol::block_on(punchline_smol::Client::ack_text(self, from, id)))
    }

    fn send_file(&self, peer: &str, source: FileSource) -> io::Result<Result<FileId, SendFileError>> {
        Ok(smol::block_on(punchline_smol::Client::send_file(self, peer, source)))
    }

    fn file_data(&self, file: FileId, offset: u64, data: Vec<u8>) -> io::Result<()> {
        punchline_smol::Client::file_data(self, file, offset, data);
        Ok(())
    }

    fn file_read_failed(&self, file: FileId) -> io::Result<()> {
        punchline_smol::Client::file_read_failed(self, file);
        Ok(())
    }

    fn accept_file(&self, file: FileId, have: Vec<(u64, u64)>) -> io::Result<()> {
        smol::block_on(punchline_smol::Client::accept_file(self, file, &have));
        Ok(())
    }

    fn refuse_file(&self, file: FileId, reason: FileRefusal) -> io::Result<()> {
        smol::block_on(punchline_smol::Client::refuse_file(self, file, reason));
        Ok(())
    }

    fn file_written(&self, file: FileId, offset: u64, result: Result<(), FileAbort>) -> io::Result<()> {
        punchline_smol::Client::file_written(self, file, offset, result);
        Ok(())
    }

    fn cancel_file(&self, file: FileId) -> io::Result<()> {
        smol::block_on(punchline_smol::Client::cancel_file(self, file));
        Ok(())
    }

    fn file_progress(&self, file: FileId) -> io::Result<Option<FileProgress>> {
        Ok(smol::block_on(punchline_smol::Client::file_progress(self, file)))
    }

    fn next_event(&self, deadline: Instant) -> Next {
        smol::block_on(smol::future::or(
            async { punchline_smol::Client::next_event(self).await.map_or(Next::Stopped, Next::Event) },
            async {
                smol::Timer::at(deadline).await;
                Next::Idle
            },
        ))
    }

    fn shutdown(self: Box<Self>) -> io::Result<()> {
        smol::block_on(punchline_smol::Client::shutdown(&self));
        Ok(())
    }
}
