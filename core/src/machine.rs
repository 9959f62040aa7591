//! The shape every protocol role shares, and the values it hands its driver.
//!
//! A *machine* (the [`Client`](crate::client::Client) or the
//! [`Server`](crate::server::Server)) never performs I/O. Its driver — a
//! runtime, the simulator, or a user's own event loop — feeds it input and
//! carries out what it asks for.
//!
//! # The drive loop
//!
//! ```text
//! loop {
//!     // 1. Input: exactly one of
//!     machine.handle_datagram(now, socket, from, &payload);
//!     machine.handle_timeout(now);           // when `poll_timeout` has passed
//!     machine.<role command>(now, ...);      // connect, send, close, ...
//!
//!     // 2. Drain output, in this order, until each returns `None`:
//!     while let Some(t) = machine.poll_transmit() { send t.payload from t.socket to t.destination (TTL t.ttl) }
//!     while let Some(e) = machine.poll_event()    { act on e }
//!
//!     // 3. Sleep until a datagram arrives or `poll_timeout()` passes.
//! }
//! ```
//!
//! Rules the driver must keep:
//! - `now` never goes backwards between calls.
//! - After *every* input, drain both queues before sleeping. While output is
//!   queued, `poll_timeout` returns the last `now`, so a driver that forgets
//!   to drain wakes at once instead of hanging.
//! - Calling `handle_timeout` early or late is harmless: the machine looks at
//!   which of its named timers are due at `now`.
//! - Events that ask something of the driver (open sockets, release a socket,
//!   open or close a stream) are answered with the role's command (for the
//!   client: [`Client::sockets_opened`](crate::client::Client::sockets_opened),
//!   [`Client::stream_opened`](crate::client::Client::stream_opened)).
//!
//! # Streams (the TCP fallback)
//!
//! Where UDP is blocked, a client reaches the server over TCP (issue 21). A
//! connection is named by a [`SocketId`] like a socket, chosen by the driver,
//! and is driven the same way with three more inputs:
//!
//! ```text
//! // A connection opened: the server accepted one, or the client's
//! // `ClientEvent::OpenStream` connected (or failed):
//! server.stream_accepted(now, conn, remote);
//! client.stream_opened(now, request, Some(conn));   // or None on failure
//! // Bytes read from it, in whatever pieces the kernel gave:
//! machine.handle_stream_data(now, conn, &bytes);
//! // It closed (EOF, reset, or the driver gave up on it):
//! machine.handle_stream_closed(now, conn);
//! ```
//!
//! A [`Transmit`] whose `socket` names a connection carries *stream bytes*:
//! write `payload` to the connection as it is (it is already framed, see
//! [`wire::stream`](crate::wire::stream)); `destination` is the connection's
//! remote address and `ttl` is `None`. A machine asks for a connection to be
//! closed with an event (`ClientEvent::CloseStream`,
//! `ServerEvent::CloseStream`); the driver closes it and does not report it
//! back through `handle_stream_closed`.
//!
//! A driver bounds what it buffers per connection: when a connection's write
//! buffer is full it drops transmits marked [`Transmit::droppable`]
//! (relayed datagrams, which their senders retransmit or do without) and
//! counts them; a connection that will not take even signaling closes.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

/// An opaque name for one of the driver's local sockets.
///
/// The driver chooses the numbers; the machine only compares them. A machine
/// learns its sockets from its constructor and from socket commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct SocketId(pub u32);

/// One datagram the machine wants sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The local socket the datagram must leave from. The source port is part
    /// of the protocol (NAT mappings are per 5-tuple), so a driver must never
    /// substitute another socket.
    pub socket: SocketId,
    /// Where the datagram goes.
    pub destination: SocketAddr,
    /// The IP TTL (hop limit) to send with, when not the driver's default.
    /// Hole-punching *openers* use a low TTL so they open the sender's own NAT
    /// mapping but die before the peer's NAT (DESIGN §3, "Open before you
    /// probe").
    pub ttl: Option<u8>,
    /// The datagram, at most [`MAX_DATAGRAM`](crate::wire::MAX_DATAGRAM) bytes;
    /// for a stream connection, the datagram framed for the stream.
    pub payload: Bytes,
    /// For an encrypted datagram, the frame inside, in the clear, so that a
    /// trace, a test or a debugging driver can show what the machine said,
    /// as TLS key logging lets Wireshark show it: for the client–server
    /// channel (a Hello, a Welcome, a sealed frame) the frame sealed in it;
    /// for a session's `PeerSealed` datagram the peer frame; for a relay
    /// frame the client sends, the relay frame with the peer frame its
    /// sealed payload carries in place of that payload (what the server
    /// gets is sealed end to end). `None` for datagrams sent in the clear.
    /// Never send it: a driver sends `payload` only.
    pub plaintext: Option<Bytes>,
    /// A relayed datagram: a stream connection whose write buffer is full
    /// may drop it (and count it); everything else, signaling, never is.
    pub droppable: bool,
}

/// What every protocol role offers its driver. Runtimes and the simulator are
/// generic over it.
///
/// See the [module documentation](self) for the drive loop.
pub trait Machine {
    /// The role's events.
    type Event;

    /// A datagram arrived on `socket` from `from`.
    ///
    /// Malformed, oversized, unauthenticated or replayed datagrams are dropped
    /// and counted; they never panic and never produce an error here.
    fn handle_datagram(&mut self, now: Instant, socket: SocketId, from: SocketAddr, payload: &[u8]);

    /// Time has reached (or passed) a deadline returned by [`poll_timeout`](Self::poll_timeout).
    fn handle_timeout(&mut self, now: Instant);

    /// Bytes arrived on the stream connection `conn`, in any pieces. A
    /// connection the machine does not know (or asked to close) is ignored;
    /// bytes that break the framing close it (see the module documentation).
    /// A role without streams ignores them (the default).
    fn handle_stream_data(&mut self, now: Instant, conn: SocketId, bytes: &[u8]) {
        let _ = (now, conn, bytes);
    }

    /// The stream connection `conn` closed: by its peer, by a reset, or
    /// because the driver gave up on it (a full write buffer). Ignored by
    /// default.
    fn handle_stream_closed(&mut self, now: Instant, conn: SocketId) {
        let _ = (now, conn);
    }

    /// The next datagram to send, if any.
    fn poll_transmit(&mut self) -> Option<Transmit>;

    /// The next event, if any.
    fn poll_event(&mut self) -> Option<Self::Event>;

    /// When the machine next needs [`handle_timeout`](Self::handle_timeout).
    ///
    /// While transmits or events are queued this is the last `now` the machine
    /// saw. `None` means the machine waits only for datagrams.
    fn poll_timeout(&self) -> Option<Instant>;
}
