//! `punchline-mio`: drives any Punchline core machine (client or server) over
//! mio UDP sockets, TCP connections and timers.
//!
//! The loop is the one [`punchline_core::Machine`] documents, on real sockets:
//! after every input (a datagram, stream bytes, a passed deadline, a command)
//! the driver sends every queued transmit — setting the socket's TTL for that
//! one packet when [`Transmit::ttl`](punchline_core::Transmit::ttl) asks for
//! it (the low-TTL *openers* of DESIGN §3) and restoring it after — and hands
//! out every event, then sleeps in `mio::Poll` until a socket is readable, the
//! machine's `poll_timeout` passes, or a [`mio::Waker`] fires.
//!
//! The client's requests to its driver are carried out here and never reach
//! the application: [`ClientEvent::OpenSockets`](punchline_core::client::ClientEvent::OpenSockets)
//! binds that many fresh UDP sockets on the primary socket's IP (port 0) and
//! answers with `Client::sockets_opened`;
//! [`ClientEvent::ReleaseSocket`](punchline_core::client::ClientEvent::ReleaseSocket)
//! closes the socket; `ClientEvent::OpenStream` and `CloseStream`, and the
//! server's `ServerEvent::CloseStream`, are carried out as below.
//!
//! # Streams (the TCP fallback, issue 21)
//!
//! Beside its UDP sockets an [`Endpoint`] holds TCP listeners and
//! connections, driven in the same loop; the core frames and unframes the
//! bytes, the endpoint only moves them:
//!
//! ```text
//! listener readable  -> accept until it would block (256 a turn per listener)
//!                       each connection gets a fresh id >= FIRST_STREAM_ID
//!                       -> Role::stream_accepted(now, conn, remote)   (Server::stream_accepted)
//! ClientEvent::OpenStream { request, to }
//!                    -> non-blocking connect; once writable: take_error, peer_addr
//!                       -> Role::stream_opened(now, request, Some(conn))  (Client::stream_opened)
//!                       or None on failure or after CONNECT_TIMEOUT (5 s)
//! connection readable -> read 64 KiB at a time until it would block (4 reads a
//!                       turn, then the others' turn), each piece
//!                       -> machine.handle_stream_data(now, conn, &piece), flush
//!                       EOF, reset -> machine.handle_stream_closed(now, conn)
//! Transmit on a conn -> write now what the kernel takes, buffer the rest;
//!                       WRITABLE interest only while the buffer holds bytes
//! CloseStream event -> write what the kernel takes, FIN, forget (not reported back)
//! ```
//!
//! Every connection's write buffer is bounded: above [`SOFT_WRITE_LIMIT`]
//! (256 KiB) relayed datagrams ([`Transmit::droppable`](punchline_core::Transmit::droppable))
//! are dropped and counted ([`TcpStats::dropped`]); a connection whose buffer
//! would pass [`HARD_WRITE_LIMIT`] (4 MiB) even with signaling alone is
//! closed and reported closed ([`TcpStats::overflowed`]). So one connection
//! costs at most 4 MiB of buffer, and relayed traffic to a reader that is
//! merely slow at most 256 KiB plus one framed datagram. The core enforces its connection limits
//! (`ServerConfig::max_streams`, `max_streams_per_ip`); when the system
//! refuses to accept (out of file descriptors, say) accepting pauses for
//! [`ACCEPT_BACKOFF`] rather than spin, with one warning per episode. What the
//! connections did is counted in [`TcpStats`], readable from any thread
//! through [`TcpCounters`].
//!
//! - [`ClientHandle`] runs a client on its own thread behind a blocking
//!   handle: connect, send, close, a channel of events, shutdown.
//! - [`ServerRunner`] binds a server's sockets (primary, alternate and the
//!   crossed RFC 5780 combinations), listens on TCP on the primary address
//!   (by default) and wherever [`ServerRunner::listen_tcp`] says, and runs it
//!   until a [`ShutdownHandle`] fires.
//! - [`Endpoint`] is the loop itself, for drivers that want their own thread
//!   model.
//!
//! ```no_run
//! use std::time::Duration;
//! use punchline_core::client::{ClientConfig, ClientEvent};
//! use punchline_mio::ClientHandle;
//!
//! let server = "192.0.2.1:3478".parse().unwrap();
//! let client = ClientHandle::start(ClientConfig::new("alice", server), "0.0.0.0:0".parse().unwrap())?;
//! client.connect("bob")?.expect("a valid peer name");
//! while let Some(event) = client.next_event(Duration::from_secs(10)) {
//!     if let ClientEvent::SessionOpened { session, .. } = event {
//!         client.send(session, b"hello")?.expect("room in the send window");
//!         break;
//!     }
//! }
//! client.shutdown()?;
//! # Ok::<(), std::io::Error>(())
//! ```

mod client;
mod endpoint;
mod server;
mod tcp;

pub use client::ClientHandle;
pub use endpoint::{Endpoint, Role, Sockets};
pub use server::{PrimaryTcp, ServerRunner, ShutdownHandle};
pub use tcp::{
    TcpCounters, TcpStats, ACCEPT_BACKOFF, CONNECT_TIMEOUT, FIRST_STREAM_ID, HARD_WRITE_LIMIT, MAX_LISTENERS,
    SOFT_WRITE_LIMIT,
};
