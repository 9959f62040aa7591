//! What a client tells its user and driver: events, errors, and snapshots
//! of its state.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use super::file_api::{FileDirection, FileFailure, FileId};
use crate::machine::SocketId;
use crate::messaging::{TextFailure, TextPath};
use crate::nat::{NatProfile, Strategy};
use crate::secure::PublicKey;
use crate::wire::frame::{CloseReason, ErrorCode, MessageId, SessionId, TextStatus, Transport};

/// Something a user of the client (or its driver) cares about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// The server accepted the login.
    LoggedIn {
        /// The address the server sees us at.
        reflexive: SocketAddr,
    },
    /// The server refused the login: a bad user name, or
    /// [`ErrorCode::KeyMismatch`] when the name belongs to another key.
    /// The client stops trying.
    LoginFailed {
        /// Why.
        code: ErrorCode,
    },
    /// No server key was pinned; the server said this is its key, and the
    /// client trusts it from now on (trust on first use). Pin it, so that
    /// a changed key is noticed next time.
    ServerKeyLearned {
        /// The server's public key.
        key: PublicKey,
    },
    /// The server answers with another key than the pinned one: someone
    /// may be impersonating it, or its operator replaced the key. The
    /// client stops trying; nothing was sent to it but a key request.
    ServerKeyChanged {
        /// The key pinned.
        pinned: PublicKey,
        /// The key the server now offers.
        offered: PublicKey,
    },
    /// A contact's key, pinned now: its first session (or sealed text)
    /// named it. The application keeps it, so that a change is noticed next
    /// time ([`ClientConfig::peer_keys`](crate::client::ClientConfig::peer_keys)).
    PeerKeyLearned {
        /// The contact.
        peer: String,
        /// Its public key, as the server's directory named it.
        key: PublicKey,
    },
    /// The server's directory names another key for a pinned contact: the
    /// contact replaced its identity, or the server is substituting keys.
    /// Nothing is sent to that key, and a connect to the contact fails
    /// ([`ConnectFailure::PeerKeyChanged`]).
    PeerKeyChanged {
        /// The contact.
        peer: String,
        /// The key pinned.
        pinned: PublicKey,
        /// The key the directory now names.
        offered: PublicKey,
    },
    /// The server has not answered for [`ClientConfig::server_timeout`](crate::client::ClientConfig::server_timeout). The
    /// client keeps trying; direct sessions keep working.
    ServerUnreachable,
    /// The NAT now maps us to another address (a rebinding or a reboot).
    ReflexiveChanged {
        /// The address before.
        old: SocketAddr,
        /// The address now.
        new: SocketAddr,
    },
    /// NAT discovery finished.
    NatProfile(NatProfile),
    /// Answer to [`Client::lookup`](crate::client::Client::lookup).
    LookupResult {
        /// Who was looked up.
        user: String,
        /// Whether they are online.
        online: bool,
        /// The key the server's directory binds the name to (`None`: no
        /// login under it ever completed). Compare it with a pin, or with
        /// what the user says out of band (`punchline whois`).
        key: Option<PublicKey>,
    },
    /// A session exists and is usable over the relay.
    SessionOpened {
        /// The session.
        session: SessionId,
        /// The other member.
        peer: String,
        /// True when we asked for it.
        initiator: bool,
        /// How it will try for a direct path.
        strategy: Strategy,
    },
    /// The session's strategy was chosen again, from both peers' measured
    /// NAT profiles (the offer's was the server's choice, possibly made
    /// before they were measured); a new attempt uses it.
    StrategyChanged {
        /// The session.
        session: SessionId,
        /// The strategy now in use.
        strategy: Strategy,
    },
    /// Both sides' openers are out; probing starts.
    PunchStarted {
        /// The session.
        session: SessionId,
        /// Which attempt (0 is the first).
        attempt: u16,
    },
    /// An attempt ended without a direct path.
    PunchFailed {
        /// The session.
        session: SessionId,
        /// Which attempt.
        attempt: u16,
        /// When the next attempt starts, or `None` when the session gave up
        /// and stays on the relay.
        retry_in: Option<Duration>,
    },
    /// The session now uses a direct path.
    PathDirect {
        /// The session.
        session: SessionId,
        /// Our socket on the path.
        socket: SocketId,
        /// The peer's address on the path.
        remote: SocketAddr,
    },
    /// The direct path stopped answering; the session is back on the relay.
    PathFellBack {
        /// The session.
        session: SessionId,
    },
    /// Application data arrived, in order, exactly once.
    DataReceived {
        /// The session.
        session: SessionId,
        /// The data.
        data: Bytes,
    },
    /// The session ended.
    SessionClosed {
        /// The session.
        session: SessionId,
        /// Why.
        reason: CloseReason,
    },
    /// A [`Client::connect`](crate::client::Client::connect) failed before a session existed.
    ConnectFailed {
        /// Who we asked for.
        peer: String,
        /// Why.
        reason: ConnectFailure,
    },
    /// Driver: bind `count` new UDP sockets and answer with
    /// [`Client::sockets_opened`](crate::client::Client::sockets_opened) quoting `request`.
    OpenSockets {
        /// Quote this in the answer.
        request: u32,
        /// How many sockets.
        count: u16,
    },
    /// Driver: the client no longer needs `socket`; close it.
    ReleaseSocket {
        /// The socket.
        socket: SocketId,
    },
    /// Driver: open a TCP connection to `to` (without blocking) and answer
    /// with [`Client::stream_opened`](crate::client::Client::stream_opened)
    /// quoting `request`, once it connected or failed. See the
    /// [drive loop for streams](crate::Machine).
    OpenStream {
        /// Quote this in the answer.
        request: u32,
        /// The server's TCP address.
        to: SocketAddr,
    },
    /// Driver: close the stream connection `conn` (the client moved back to
    /// UDP, or gave up on it). Not reported back as closed.
    CloseStream {
        /// The connection.
        conn: SocketId,
    },
    /// The client now reaches the server over `transport`: TCP where UDP is
    /// blocked, UDP again once it works (issue 21).
    TransportChanged {
        /// The transport now.
        transport: Transport,
    },
    /// The relay leg of `session` rides `transport` now: [`Transport::Tcp`]
    /// when either member reaches the server over TCP, so the session, while
    /// on the relay, is `relay-tcp`. Raised when it changes (a session
    /// starts as UDP, so a session opened over TCP raises it at once).
    RelayTransportChanged {
        /// The session.
        session: SessionId,
        /// The relay's transport now.
        transport: Transport,
    },
    /// A text message arrived (the first copy of it: never twice).
    TextReceived {
        /// The sender.
        from: String,
        /// Its id.
        id: MessageId,
        /// The text.
        text: String,
    },
    /// A text sent with [`Client::send_text`](crate::client::Client::send_text) was acknowledged.
    TextAcked {
        /// Its id.
        id: MessageId,
        /// Delivered to the recipient, or stored durably by the server.
        status: TextStatus,
        /// Who acknowledged it: the peer directly, or the server.
        path: TextPath,
    },
    /// A text sent with [`Client::send_text`](crate::client::Client::send_text) failed for good.
    TextFailed {
        /// Its id.
        id: MessageId,
        /// Why.
        reason: TextFailure,
    },
    /// The server holds no more messages for us: everything stored was
    /// received and acknowledged (after a login, or after a backlog drained).
    InboxEmpty,
    /// The peer offers a file. Answer with
    /// [`Client::accept_file`](crate::client::Client::accept_file) (naming
    /// what is already held of the same `root`) or
    /// [`Client::refuse_file`](crate::client::Client::refuse_file). The
    /// name passed [`crate::files::check_name`].
    FileOffered {
        /// The transfer.
        file: FileId,
        /// The session it rides.
        session: SessionId,
        /// The sender.
        peer: String,
        /// The file's name (no directory).
        name: String,
        /// Its length in bytes.
        size: u64,
        /// Its BLAKE3 hash.
        root: [u8; 32],
    },
    /// The peer accepted our offer; it held `resumed` bytes already.
    FileAccepted {
        /// The transfer.
        file: FileId,
        /// Content bytes the receiver held from before (not sent again).
        resumed: u64,
    },
    /// Read `len` bytes at `offset` of the file being sent; answer with
    /// [`Client::file_data`](crate::client::Client::file_data) (or
    /// [`Client::file_read_failed`](crate::client::Client::file_read_failed)).
    FileRead {
        /// The transfer.
        file: FileId,
        /// Where, in the file.
        offset: u64,
        /// How much: one 16 KiB group (less at the end).
        len: u32,
    },
    /// Write `data` at `offset` of the file being received: it verified
    /// against the offered root. Answer with
    /// [`Client::file_written`](crate::client::Client::file_written) once
    /// it is written.
    FileWrite {
        /// The transfer.
        file: FileId,
        /// Where, in the file.
        offset: u64,
        /// One verified 16 KiB group (less at the end).
        data: Bytes,
    },
    /// A transfer is complete: outgoing, the receiver holds every group
    /// verified and written; incoming, every group is written (the driver
    /// then checks the root of what it wrote and moves it into place).
    FileCompleted {
        /// The transfer.
        file: FileId,
        /// Which way it went.
        direction: FileDirection,
        /// The file's length.
        size: u64,
        /// Its BLAKE3 hash.
        root: [u8; 32],
    },
    /// A transfer ended without the file.
    FileFailed {
        /// The transfer.
        file: FileId,
        /// Why.
        failure: FileFailure,
    },
}

/// Why a connect failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectFailure {
    /// No such user.
    UnknownPeer,
    /// The user exists but is offline.
    PeerOffline,
    /// The server did not answer.
    ServerUnreachable,
    /// The server refused (limits, bad name).
    Refused(ErrorCode),
    /// The server's directory names another key than the one pinned for the
    /// peer ([`ClientEvent::PeerKeyChanged`]).
    PeerKeyChanged,
}

/// Errors of [`Client::connect`](crate::client::Client::connect).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConnectError {
    /// Not logged in yet.
    #[error("not logged in")]
    NotLoggedIn,
    /// The name cannot be a user.
    #[error("invalid user name")]
    BadUserName,
}

/// Errors of [`Client::send`](crate::client::Client::send).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// No such session (never existed, or closed).
    #[error("no such session")]
    UnknownSession,
    /// Larger than one message may be.
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// The message's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Too many messages are unacknowledged; wait for acknowledgements.
    #[error("send window full")]
    WindowFull,
}

/// The path a session uses now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// Through the server's relay.
    Relay,
    /// Peer to peer.
    Direct {
        /// Our socket.
        socket: SocketId,
        /// The peer's address.
        remote: SocketAddr,
    },
}

/// A snapshot of one session, for reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// The other member.
    pub peer: String,
    /// The strategy.
    pub strategy: Strategy,
    /// The current path.
    pub path: PathKind,
    /// Times the session fell back from direct to the relay.
    pub fallbacks: u32,
    /// Probes sent, all attempts together.
    pub probes_sent: u64,
    /// Punching attempts started.
    pub attempts: u16,
    /// The smoothed round trip of the direct path's keepalive probes, while
    /// the path is direct and once measured.
    pub srtt: Option<Duration>,
    /// The relay's transport: [`Transport::Tcp`] when either member reaches
    /// the server over TCP, so a session on the relay is `relay-tcp`.
    pub relay_transport: Transport,
}

/// Counters of what the client dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Undecodable datagrams, and sealed server frames whose inside does
    /// not decode.
    pub malformed: u64,
    /// Frames that do not authenticate: peer datagrams that do not open in
    /// their session's keys (forged, replayed, reflected, or for an unknown
    /// session), session handshakes that are not genuine, peer frames in
    /// the clear; server datagrams that do not open in the channel (forged,
    /// replayed); signaling frames in the clear; texts through the server
    /// that do not open.
    pub unauthenticated: u64,
    /// Datagrams that are not expected here or now: the handshake's
    /// answers from another source, stale or not for our Hello, server
    /// frames a client does not take, and peer datagrams held for a
    /// session's keys that came on a socket released meanwhile.
    pub unexpected: u64,
}
