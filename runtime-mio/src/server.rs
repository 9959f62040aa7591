//! A server on mio sockets, run until a shutdown handle fires.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use mio::Waker;
use punchline_core::messaging::{MemoryStore, MessageStore};
use punchline_core::server::{Server, ServerConfig, ServerEvent};
use punchline_core::SocketId;

use crate::endpoint::Endpoint;

/// A [`Server`] bound to its sockets, ready to [`run`](Self::run).
#[derive(Debug)]
pub struct ServerRunner {
    endpoint: Endpoint<Server>,
    stop: Arc<AtomicBool>,
}

/// Stops a running server or client loop from any thread (for example a
/// signal handler thread). Cloneable.
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl ShutdownHandle {
    /// Asks the loop to stop; it returns from `run` promptly.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

impl ServerRunner {
    /// Binds every address of [`Server::sockets`] (primary, alternate and the
    /// crossed RFC 5780 combinations) with the ids the server knows them by.
    /// Offline texts are kept in memory; see [`bind_with_store`](Self::bind_with_store).
    pub fn bind(server: Server) -> io::Result<ServerRunner> {
        Self::bind_with_store(server, Box::new(MemoryStore::new()))
    }

    /// As [`bind`](Self::bind), keeping offline texts in `store`, which runs
    /// on a thread of its own with group commit (see [`Endpoint::with_store`]).
    pub fn bind_with_store(server: Server, store: Box<dyn MessageStore>) -> io::Result<ServerRunner> {
        let bound = bind_sockets(&server)?;
        let endpoint = Endpoint::with_store(server, bound, store)?;
        Ok(ServerRunner { endpoint, stop: Arc::new(AtomicBool::new(false)) })
    }

    /// Builds the server from `config`, first choosing free ports for a
    /// primary or alternate address given with port 0, and keeps offline
    /// texts in memory.
    ///
    /// The machine must know its real ports (it answers "from the other port"
    /// by address), so port 0 is resolved by binding before the machine is
    /// built; if a crossed RFC 5780 port turns out to be taken, new ports are
    /// tried a few times before giving up.
    pub fn bind_config(config: ServerConfig) -> io::Result<ServerRunner> {
        Self::bind_config_with_store(config, Box::new(MemoryStore::new()))
    }

    /// As [`bind_config`](Self::bind_config), keeping offline texts in
    /// `store` (for example `punchline_store::SqliteStore`).
    pub fn bind_config_with_store(mut config: ServerConfig, store: Box<dyn MessageStore>) -> io::Result<ServerRunner> {
        let wants_port = config.primary.port() == 0 || config.alternate.is_some_and(|a| a.port() == 0);
        if !wants_port {
            return Self::bind_with_store(Server::new(config, Instant::now()), store);
        }
        let (primary, alternate) = (config.primary, config.alternate);
        let mut last_error = None;
        for _ in 0..16 {
            // Hold the primary's port while the alternate's is chosen, so
            // they differ.
            let p = std::net::UdpSocket::bind(primary)?;
            let a = alternate.map(std::net::UdpSocket::bind).transpose()?;
            config.primary = p.local_addr()?;
            config.alternate = a.as_ref().map(std::net::UdpSocket::local_addr).transpose()?;
            drop((p, a));
            let server = Server::new(config.clone(), Instant::now());
            match bind_sockets(&server) {
                Ok(bound) => {
                    let endpoint = Endpoint::with_store(server, bound, store)?;
                    return Ok(ServerRunner { endpoint, stop: Arc::new(AtomicBool::new(false)) });
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::new(io::ErrorKind::AddrInUse, "no free ports")))
    }

    /// The bound addresses, in socket id order (primary first). A configured
    /// port 0 shows here as the port the system chose.
    pub fn local_addrs(&self) -> Vec<(SocketId, SocketAddr)> {
        self.endpoint.sockets().local_addrs()
    }

    /// A handle that stops [`run`](Self::run).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle { stop: Arc::clone(&self.stop), waker: self.endpoint.waker() }
    }

    /// The server, for reading its counters.
    pub fn server(&self) -> &Server {
        self.endpoint.machine()
    }

    /// Runs until the shutdown handle fires, handing every server event to
    /// `on_event`.
    pub fn run(mut self, mut on_event: impl FnMut(ServerEvent)) -> io::Result<()> {
        self.endpoint.flush(Instant::now(), &mut on_event);
        while !self.stop.load(Ordering::SeqCst) {
            self.endpoint.turn(None, &mut on_event)?;
        }
        Ok(())
    }
}

/// Binds every address of `server.sockets()`.
fn bind_sockets(server: &Server) -> io::Result<Vec<(SocketId, std::net::UdpSocket)>> {
    server
        .sockets()
        .iter()
        .map(|(id, addr)| {
            std::net::UdpSocket::bind(addr)
                .map(|s| (*id, s))
                .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")))
        })
        .collect()
}
