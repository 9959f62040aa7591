//! # punchline-smol
//!
//! Runs the Punchline core machines on [smol](https://docs.rs/smol): the
//! server as an async function, the client as a task with an async handle for
//! applications.
//!
//! The core (`punchline-core`) performs no I/O. This crate is its driver: it
//! binds the UDP sockets (`smol::Async<std::net::UdpSocket>`), feeds the
//! machine every datagram, command and timeout with the current
//! [`Instant`](std::time::Instant), drains
//! [`poll_transmit`](punchline_core::Machine::poll_transmit) and
//! [`poll_event`](punchline_core::Machine::poll_event) after every input,
//! and sleeps on an [`async_io` timer](smol::Timer) until
//! [`poll_timeout`](punchline_core::Machine::poll_timeout). It also:
//! - sends a transmit with its own TTL when it carries one (hole-punching
//!   openers, DESIGN §3), restoring the socket's default afterwards;
//! - binds the extra sockets the client asks for
//!   ([`ClientEvent::OpenSockets`]:
//!   NAT filtering discovery, punching retries from fresh ports) on the
//!   primary socket's IP, and closes them on
//!   [`ReleaseSocket`](ClientEvent::ReleaseSocket);
//! - carries the TCP fallback (issue 21): the server accepts connections,
//!   the client opens one when its machine asks (see below);
//! - shuts down cleanly: the client logs out (closing its sessions and telling
//!   the server) before its sockets close.
//!
//! # Streams: the drive loop over TCP
//!
//! Where UDP is blocked, a client reaches the server over a TCP connection
//! that carries the same datagrams, framed by the core
//! ([`punchline_core::wire::stream`]). The loop that owns the machine drives
//! connections next to sockets:
//!
//! ```text
//! server: a listener accepts        -> conn = fresh id (2^31 and up; UDP ids are below)
//!                                      server.stream_accepted(now, conn, remote)
//! client: ClientEvent::OpenStream   -> connect without blocking (5 s timeout), then
//!                                      client.stream_opened(now, request, Some(conn) | None)
//! a chunk read from conn            -> machine.handle_stream_data(now, conn, &chunk)
//! EOF or reset on conn              -> machine.handle_stream_closed(now, conn)
//! a transmit whose socket is conn   -> write t.payload (already framed) to conn, through its
//!                                      bounded write buffer (partial writes resumed)
//! ClientEvent / ServerEvent::CloseStream { conn } -> close conn; not reported back
//! ```
//!
//! The machine stays in that one loop. Each connection has a reader task,
//! which hands chunks to the loop over a bounded channel shared by all
//! connections (a loop that falls behind stops the readers, and TCP's flow
//! control stops the peers). A transmit is written at once when nothing
//! waits before it on its connection; what the kernel does not take goes to
//! the connection's write buffer, which a writer task drains, however
//! little the kernel takes at a time. The buffer is bounded: a relayed datagram ([`Transmit::droppable`]) that
//! would take it past [`TCP_WRITE_SOFT_LIMIT`] (256 KiB) is dropped and
//! counted ([`TcpStats::tcp_dropped`]); signaling never is, and a connection
//! whose buffer would pass [`TCP_WRITE_HARD_LIMIT`] (4 MiB) is closed and
//! reported to the machine with `handle_stream_closed`. The counters are
//! [`BoundServer::tcp_counters`] and [`Client::tcp_stats`];
//! [`Client::transport`] says which way the client reaches the server.
//!
//! [`Transmit::droppable`]: punchline_core::Transmit::droppable
//!
//! # Server
//!
//! [`serve`] binds every address of
//! [`Server::sockets`](punchline_core::server::Server::sockets), listens for
//! TCP on the primary address, and serves until a shutdown future resolves.
//! [`BoundServer`] splits binding from serving, to learn the addresses first
//! or let port 0 choose them; [`BoundServer::listen_tcp`] adds TCP
//! listeners.
//!
//! # Client
//!
//! [`Client::start`] binds the primary socket and spawns the driver onto
//! smol's global executor ([`smol::spawn`]); the [`Client`] handle is cheap to
//! clone. The raw API mirrors the core ([`Client::connect`], [`Client::send`],
//! [`Client::next_event`]); the convenience API hands out [`Session`]s that
//! resolve when usable and carry their own data and events.
//!
//! # Example: two users talk through a server, all in one process
//!
//! ```
//! use std::net::SocketAddr;
//! use punchline_core::client::ClientConfig;
//! use punchline_core::server::ServerConfig;
//! use punchline_smol::{BoundServer, Client};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! smol::block_on(async {
//!     // A server on loopback; port 0 picks free ports.
//!     let server = BoundServer::bind_config(ServerConfig::new("127.0.0.1:0".parse()?, None))?;
//!     let server_addr = server.primary();
//!     let (stop, stopped) = smol::channel::bounded::<()>(1);
//!     let serving = smol::spawn(server.run(async move { let _ = stopped.recv().await; }));
//!
//!     let any: SocketAddr = "127.0.0.1:0".parse()?;
//!     let alice = Client::start(ClientConfig::new("alice", server_addr), any).await?;
//!     let bob = Client::start(ClientConfig::new("bob", server_addr), any).await?;
//!     let incoming = bob.accept(); // from now on, sessions peers open queue here
//!     bob.wait_logged_in().await?;
//!     alice.wait_logged_in().await?;
//!
//!     // Alice opens a session with Bob and talks.
//!     let to_bob = alice.connect_session("bob").await?;
//!     to_bob.send(b"hello bob").await?;
//!
//!     let from_alice = incoming.await.expect("bob is running");
//!     assert_eq!(from_alice.peer(), "alice");
//!     assert_eq!(from_alice.recv().await.as_deref(), Some(&b"hello bob"[..]));
//!
//!     alice.shutdown().await;
//!     bob.shutdown().await;
//!     let _ = stop.send(()).await;
//!     serving.await?;
//!     Ok(())
//! })
//! # }
//! ```
//!
//! `examples/chat.rs` is a complete chat program in about a page.

mod client;
mod server;
mod tcp;
mod udp;

pub use client::{Client, DriverStats, Error, Session, SessionEvent};
pub use server::{serve, BoundServer};
pub use tcp::{TcpCounters, TcpStats, TCP_WRITE_HARD_LIMIT, TCP_WRITE_SOFT_LIMIT};

/// The core types an application of this crate meets, re-exported so a
/// program needs only this crate in scope.
pub use punchline_core::client::{
    ClientConfig, ClientEvent, ConnectError, ConnectFailure, PathKind, SendError, SessionInfo,
};
pub use punchline_core::server::{Server, ServerConfig, ServerEvent};
pub use punchline_core::wire::frame::{CloseReason, SessionId, Transport};
