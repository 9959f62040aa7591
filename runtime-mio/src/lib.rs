//! `punchline-mio`: drives any Punchline core machine (client or server) over
//! mio UDP sockets and timers.
//!
//! The loop is the one [`punchline_core::Machine`] documents, on real sockets:
//! after every input (a datagram, a passed deadline, a command) the driver
//! sends every queued transmit — setting the socket's TTL for that one packet
//! when [`Transmit::ttl`](punchline_core::Transmit::ttl) asks for it (the
//! low-TTL *openers* of DESIGN §3) and restoring it after — and hands out
//! every event, then sleeps in `mio::Poll` until a socket is readable, the
//! machine's `poll_timeout` passes, or a [`mio::Waker`] fires.
//!
//! The client's requests to its driver are carried out here and never reach
//! the application: [`ClientEvent::OpenSockets`](punchline_core::client::ClientEvent::OpenSockets)
//! binds that many fresh UDP sockets on the primary socket's IP (port 0) and
//! answers with `Client::sockets_opened`;
//! [`ClientEvent::ReleaseSocket`](punchline_core::client::ClientEvent::ReleaseSocket)
//! closes the socket.
//!
//! - [`ClientHandle`] runs a client on its own thread behind a blocking
//!   handle: connect, send, close, a channel of events, shutdown.
//! - [`ServerRunner`] binds a server's sockets (primary, alternate and the
//!   crossed RFC 5780 combinations) and runs it until a [`ShutdownHandle`]
//!   fires.
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

pub use client::ClientHandle;
pub use endpoint::{Endpoint, Role, Sockets};
pub use server::{ServerRunner, ShutdownHandle};
