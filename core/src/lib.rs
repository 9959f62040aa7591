//! # punchline-core
//!
//! The pure, deterministic protocol core of Punchline, a hybrid peer-to-peer
//! communication stack: a server carries signaling, presence and relay;
//! clients open direct UDP paths through NATs by hole punching and fall back
//! to the relay when no direct path can exist.
//!
//! This crate performs no I/O. It never reads a clock, never touches a socket,
//! never spawns a thread and never asks the operating system for randomness:
//! time arrives as an argument, randomness from a seed, datagrams from the
//! driver, and everything the core wants done leaves as a value the driver
//! polls. Same seed and same inputs give the same outputs, byte for byte.
//!
//! - [`Machine`] is the shape both roles share, and documents the drive loop.
//! - [`client::Client`] logs in, measures its NAT, opens sessions and punches;
//!   [`client`]'s module documentation maps its parts (login, discovery,
//!   connect, messaging, sessions), one module each.
//! - [`server::Server`] coordinates sessions and relays between members.
//! - [`messaging`] is text messaging's shared types, and storage as requests:
//!   the server asks, its driver's [`messaging::MessageStore`] answers.
//! - [`wire`] is the codec: STUN (RFC 8489) and Punchline frames.
//! - [`secure`] is identity and encryption: the client–server channel and
//!   sessions sealed end to end. The machines use it themselves; its parts
//!   are public so tests, fuzzers and tools can play either side (and forge
//!   what must be refused) with the real code.
//! - [`files`] is file transfer's content side: the BLAKE3 tree, names, ranges;
//!   [`transfer`] its data plane's loss recovery and congestion control
//!   (RFC 9002). The client's file API is on [`client::Client`]
//!   ([`client::Client::send_file`] and the answers a driver gives).
//!
//! Everything else (the seeded generator, the timer sets) is internal: an
//! embedder chooses a seed and drives the [`Machine`] interface.
//!
//! # Example: a server and two clients, driven by hand
//!
//! An in-memory "network" delivers every transmit instantly; time jumps to
//! the next deadline when nothing is in flight.
//!
//! ```
//! use std::collections::VecDeque;
//! use std::net::SocketAddr;
//! use std::time::{Duration, Instant};
//! use punchline_core::client::{Client, ClientConfig, ClientEvent};
//! use punchline_core::messaging::{MemoryStore, MessageStore};
//! use punchline_core::server::{Server, ServerConfig};
//! use punchline_core::{Machine, SocketId, Transmit};
//!
//! let server_addr: SocketAddr = "203.0.113.10:3478".parse().unwrap();
//! let alice_addr: SocketAddr = "198.51.100.1:4000".parse().unwrap();
//! let bob_addr: SocketAddr = "198.51.100.2:4000".parse().unwrap();
//! // The driver owns the clock (here it only reads an epoch): the machines
//! // are told the time and never read it.
//! let mut now = Instant::now();
//!
//! let mut server = Server::new(ServerConfig::new(server_addr, None), now);
//! // The server's store is the driver's: a real one runs on its own thread.
//! let mut store = MemoryStore::new();
//! let mut alice = Client::new(ClientConfig::new("alice", server_addr), (SocketId(0), alice_addr), now);
//! let mut bob = Client::new(ClientConfig::new("bob", server_addr), (SocketId(0), bob_addr), now);
//!
//! // Every client here has one socket, so a datagram's destination names
//! // the machine; (source, transmit) pairs are in flight.
//! let mut events = Vec::new();
//! let mut step = |now: Instant, server: &mut Server, alice: &mut Client, bob: &mut Client| {
//!     let mut flight: VecDeque<(SocketAddr, Transmit)> = VecDeque::new();
//!     loop {
//!         let batch: Vec<_> = std::iter::from_fn(|| server.poll_store_request()).collect();
//!         for done in store.execute(batch) { server.handle_store_completion(now, done) }
//!         while let Some(t) = server.poll_transmit() { flight.push_back((server_addr, t)); }
//!         while let Some(t) = alice.poll_transmit() { flight.push_back((alice_addr, t)); }
//!         while let Some(t) = bob.poll_transmit() { flight.push_back((bob_addr, t)); }
//!         while let Some(e) = alice.poll_event() { events.push(("alice", e)); }
//!         while let Some(e) = bob.poll_event() { events.push(("bob", e)); }
//!         while server.poll_event().is_some() {}
//!         let Some((from, t)) = flight.pop_front() else { break };
//!         if t.ttl.is_some() { continue } // openers die in the "network"
//!         if t.destination == server_addr { server.handle_datagram(now, SocketId(0), from, &t.payload) }
//!         else if t.destination == alice_addr { alice.handle_datagram(now, SocketId(0), from, &t.payload) }
//!         else if t.destination == bob_addr { bob.handle_datagram(now, SocketId(0), from, &t.payload) }
//!     }
//! };
//!
//! step(now, &mut server, &mut alice, &mut bob);
//! assert!(alice.is_logged_in() && bob.is_logged_in());
//!
//! alice.connect(now, "bob").unwrap();
//! for _ in 0..10 {
//!     step(now, &mut server, &mut alice, &mut bob);
//!     now += Duration::from_millis(100);
//!     for m in [&mut alice as &mut dyn Machine<Event = ClientEvent>, &mut bob] { m.handle_timeout(now) }
//!     server.handle_timeout(now);
//! }
//! assert!(events.iter().any(|(who, e)| *who == "alice" && matches!(e, ClientEvent::PathDirect { .. })));
//! assert!(events.iter().any(|(who, e)| *who == "bob" && matches!(e, ClientEvent::SessionOpened { .. })));
//! ```

pub mod client;
pub mod files;
mod machine;
pub mod messaging;
pub mod nat;
mod rng;
pub mod secure;
pub mod server;
mod streams;
mod timer;
pub mod transfer;
pub mod wire;

pub use machine::{Machine, SocketId, Transmit};
pub use rng::Seed;
pub use timer::Moment;
