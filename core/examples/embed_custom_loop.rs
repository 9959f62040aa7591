//! Embedding the core in your own event loop, with nothing but
//! `std::net::UdpSocket`, a read timeout and `Instant::now()`.
//!
//! It starts a server and two clients on loopback, each on its own thread
//! and each driven by the same thirty-line loop ([`Node::turn`]): wait for a
//! datagram at most until the machine's deadline, feed what happened in,
//! drain transmits and events; the server's loop also carries out its
//! storage requests (an in-memory store here). Alice connects to Bob, waits for the direct
//! path, sends "hello" and waits for Bob's echo.
//!
//! ```text
//! cargo run -p punchline-core --example embed_custom_loop
//! ```
//!
//! Prints each step and `OK: ...` on success (exit 0), or `FAILED: ...`
//! (exit 1).

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use punchline_core::client::{Client, ClientConfig, ClientEvent, ConnectFailure, PathKind};
use punchline_core::messaging::{MemoryStore, MessageStore};
use punchline_core::server::{Server, ServerConfig};
use punchline_core::{Machine, Seed, SocketId};

/// Longest a loop sleeps without looking at its stop flag or its extra sockets.
const MAX_WAIT: Duration = Duration::from_millis(20);

fn main() {
    match run() {
        Ok(summary) => println!("OK: {summary}"),
        Err(e) => {
            println!("FAILED: {e}");
            std::process::exit(1);
        }
    }
}

/// One machine and its sockets. Socket 0 is read with a timeout; sockets the
/// client asks for later are non-blocking and drained every turn.
struct Node<M> {
    machine: M,
    sockets: BTreeMap<SocketId, UdpSocket>,
}

impl<M: Machine> Node<M> {
    fn new(machine: M, primary: UdpSocket) -> Self {
        Node { machine, sockets: BTreeMap::from([(SocketId(0), primary)]) }
    }

    /// One turn of the loop the `Machine` trait documents.
    fn turn(&mut self) -> io::Result<Vec<M::Event>> {
        let mut events = Vec::new();
        // 1. Wait for a datagram, at most until the machine's next deadline.
        let now = Instant::now();
        let wait = self.machine.poll_timeout().map_or(MAX_WAIT, |t| t.saturating_duration_since(now)).min(MAX_WAIT);
        let primary = &self.sockets[&SocketId(0)];
        // A zero read timeout is an error in std: wait at least 1 ms.
        primary.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        let mut buf = [0u8; 2048];
        let mut received = Vec::new();
        match primary.recv_from(&mut buf) {
            Ok((len, from)) => received.push((SocketId(0), from, buf[..len].to_vec())),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
        for (id, socket) in self.sockets.iter().filter(|(id, _)| **id != SocketId(0)) {
            while let Ok((len, from)) = socket.recv_from(&mut buf) {
                received.push((*id, from, buf[..len].to_vec()));
            }
        }
        // 2. Feed the input in; drain after every input.
        for (socket, from, payload) in received {
            self.machine.handle_datagram(Instant::now(), socket, from, &payload);
            self.drain(&mut events)?;
        }
        let now = Instant::now();
        if self.machine.poll_timeout().is_some_and(|t| t <= now) {
            self.machine.handle_timeout(now);
            self.drain(&mut events)?;
        }
        Ok(events)
    }

    /// Sends every transmit (with its TTL, restoring the default after) and
    /// collects every event.
    fn drain(&mut self, events: &mut Vec<M::Event>) -> io::Result<()> {
        while let Some(t) = self.machine.poll_transmit() {
            let Some(socket) = self.sockets.get(&t.socket) else { continue };
            let default_ttl = socket.ttl()?;
            if let Some(ttl) = t.ttl {
                socket.set_ttl(u32::from(ttl))?;
            }
            // UDP is lossy anyway: a failed send is a lost datagram.
            let _ = socket.send_to(&t.payload, t.destination);
            if t.ttl.is_some() {
                socket.set_ttl(default_ttl)?;
            }
        }
        while let Some(e) = self.machine.poll_event() {
            events.push(e);
        }
        Ok(())
    }
}

impl Node<Client> {
    /// Carries out the client's socket requests; returns the other events.
    fn client_turn(&mut self) -> io::Result<Vec<ClientEvent>> {
        let mut out = Vec::new();
        let mut pending = self.turn()?;
        while !pending.is_empty() {
            for event in std::mem::take(&mut pending) {
                match event {
                    ClientEvent::OpenSockets { request, count } => {
                        let ip = self.sockets[&SocketId(0)].local_addr()?.ip();
                        let mut opened = Vec::new();
                        for _ in 0..count {
                            let socket = UdpSocket::bind(SocketAddr::new(ip, 0))?;
                            socket.set_nonblocking(true)?;
                            let id = SocketId(self.sockets.keys().last().map_or(0, |s| s.0) + 1);
                            opened.push((id, socket.local_addr()?));
                            self.sockets.insert(id, socket);
                        }
                        self.machine.sockets_opened(Instant::now(), request, &opened);
                        self.drain(&mut pending)?;
                    }
                    ClientEvent::ReleaseSocket { socket } => {
                        self.sockets.remove(&socket);
                    }
                    other => out.push(other),
                }
            }
        }
        Ok(out)
    }
}

/// 256 bits from the operating system: what a deployed machine's randomness
/// (its keys, tokens and ids) must grow from, never a number.
fn os_seed() -> io::Result<Seed> {
    let mut entropy = [0u8; 32];
    getrandom::fill(&mut entropy).map_err(io::Error::other)?;
    Ok(Seed::from_entropy(entropy))
}

fn client(user: &str, server: SocketAddr) -> io::Result<Node<Client>> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let local = socket.local_addr()?;
    let config = ClientConfig { seed: os_seed()?, ..ClientConfig::new(user, server) };
    Ok(Node::new(Client::new(config, (SocketId(0), local), Instant::now()), socket))
}

/// Runs the whole demonstration; `Ok` carries the summary line.
pub fn run() -> Result<String, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let io_err = |e: io::Error| e.to_string();

    // The server: one socket on loopback, any free port.
    let server_socket = UdpSocket::bind("127.0.0.1:0").map_err(io_err)?;
    let server_addr = server_socket.local_addr().map_err(io_err)?;
    let server_config =
        ServerConfig { seed: os_seed().map_err(|e| e.to_string())?, ..ServerConfig::new(server_addr, None) };
    let mut server = Node::new(Server::new(server_config, Instant::now()), server_socket);
    let server_stop = Arc::clone(&stop);
    let server_thread = thread::spawn(move || -> io::Result<()> {
        // The server's storage is the driver's too: logins bind names to
        // keys, and texts wait there. In memory here; a deployment runs a
        // durable store (punchline-store) on a thread of its own.
        let mut store = MemoryStore::new();
        while !server_stop.load(Ordering::SeqCst) {
            server.turn()?;
            let batch: Vec<_> = std::iter::from_fn(|| server.machine.poll_store_request()).collect();
            if !batch.is_empty() {
                for done in store.execute(batch) {
                    server.machine.handle_store_completion(Instant::now(), done);
                }
                server.drain(&mut Vec::new())?;
            }
        }
        Ok(())
    });
    println!("server listening on {server_addr}");

    // Bob echoes whatever arrives on any session.
    let mut bob = client("bob", server_addr).map_err(io_err)?;
    let bob_stop = Arc::clone(&stop);
    let bob_thread = thread::spawn(move || -> io::Result<()> {
        while !bob_stop.load(Ordering::SeqCst) {
            for event in bob.client_turn()? {
                if let ClientEvent::DataReceived { session, data } = event {
                    let _ = bob.machine.send(Instant::now(), session, &data);
                    bob.drain(&mut Vec::new())?;
                }
            }
        }
        bob.machine.logout(Instant::now());
        bob.drain(&mut Vec::new())
    });

    // Alice: log in, connect to bob, wait for the direct path, say hello.
    let mut alice = client("alice", server_addr).map_err(io_err)?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(10);
    // Bob logs in concurrently: until the server knows him, a connect fails
    // with UnknownPeer or PeerOffline, and is retried 100 ms later.
    let mut connect_at = Some(started);
    let mut direct_at = None;
    let mut result = Err("timed out after 10 s".to_owned());
    while Instant::now() < deadline {
        for event in alice.client_turn().map_err(io_err)? {
            match event {
                ClientEvent::LoggedIn { reflexive } => {
                    println!("alice logged in; the server sees her at {reflexive}");
                }
                ClientEvent::SessionOpened { session, peer, strategy, .. } => {
                    println!("session {session} with {peer} open over the relay (strategy {})", strategy.name());
                }
                ClientEvent::PathDirect { session, remote, .. } => {
                    direct_at = Some(started.elapsed());
                    println!("session {session} is direct: peer at {remote}");
                    alice.machine.send(Instant::now(), session, b"hello").map_err(|e| e.to_string())?;
                    alice.drain(&mut Vec::new()).map_err(io_err)?;
                }
                ClientEvent::DataReceived { session, data } => {
                    let path = alice.machine.session_info(session).map(|i| i.path);
                    let direct = matches!(path, Some(PathKind::Direct { .. }));
                    result = if &data[..] == b"hello" && direct {
                        Ok(format!(
                            "bob echoed {:?} over the direct path (direct after {:?}, echo after {:?})",
                            String::from_utf8_lossy(&data),
                            direct_at.unwrap_or_default(),
                            started.elapsed()
                        ))
                    } else {
                        Err(format!("unexpected echo {data:?} on path {path:?}"))
                    };
                }
                ClientEvent::ConnectFailed {
                    reason: reason @ (ConnectFailure::UnknownPeer | ConnectFailure::PeerOffline),
                    ..
                } => {
                    println!("bob is not online yet ({reason:?}); retrying");
                    connect_at = Some(Instant::now() + Duration::from_millis(100));
                }
                ClientEvent::ConnectFailed { reason, .. } => result = Err(format!("connect failed: {reason:?}")),
                ClientEvent::SessionClosed { reason, .. } => result = Err(format!("session closed: {reason:?}")),
                _ => {}
            }
        }
        if alice.machine.is_logged_in() && connect_at.is_some_and(|t| t <= Instant::now()) {
            alice.machine.connect(Instant::now(), "bob").map_err(|e| e.to_string())?;
            alice.drain(&mut Vec::new()).map_err(io_err)?;
            connect_at = None;
        }
        if result.is_ok() || result.as_ref().is_err_and(|e| !e.starts_with("timed out")) {
            break;
        }
    }
    alice.machine.logout(Instant::now());
    alice.drain(&mut Vec::new()).map_err(io_err)?;
    stop.store(true, Ordering::SeqCst);
    bob_thread.join().map_err(|_| "bob's thread panicked")?.map_err(io_err)?;
    server_thread.join().map_err(|_| "the server's thread panicked")?.map_err(io_err)?;
    result
}
