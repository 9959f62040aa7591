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
use crate::tcp::{self, TcpCounters, TcpStats};

/// Whether a [`ServerRunner`] accepts TCP on its primary address (see
/// [`ServerRunner`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PrimaryTcp {
    /// Listen on TCP at the primary's IP and port, where clients look for
    /// it by default. The default.
    #[default]
    Listen,
    /// UDP only on the primary (listeners may still be added with
    /// [`ServerRunner::listen_tcp`]).
    Off,
}

/// A [`Server`] bound to its sockets, ready to [`run`](Self::run).
///
/// # TCP on the primary address, by default
///
/// A client's default `ClientConfig::server_tcp` is the server's own (UDP)
/// address, so a server listens on TCP at the primary's IP and port unless
/// told otherwise ([`PrimaryTcp::Off`]). With port 0 the TCP port is the one
/// the UDP primary got; when that port is taken on TCP, new ports are tried,
/// as for the crossed RFC 5780 ports. More listeners (port 443, say) come
/// from [`ServerRunner::listen_tcp`].
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
    /// crossed RFC 5780 combinations) with the ids the server knows them by,
    /// and listens on TCP at the primary's address.
    /// Offline texts are kept in memory; see [`bind_with_store`](Self::bind_with_store).
    pub fn bind(server: Server) -> io::Result<ServerRunner> {
        Self::bind_with_store(server, Box::new(MemoryStore::new()))
    }

    /// As [`bind`](Self::bind), keeping offline texts in `store`, which runs
    /// on a thread of its own with group commit (see [`Endpoint::with_store`]).
    pub fn bind_with_store(server: Server, store: Box<dyn MessageStore>) -> io::Result<ServerRunner> {
        Self::bind_with(server, store, PrimaryTcp::Listen)
    }

    /// As [`bind_with_store`](Self::bind_with_store), with or without TCP
    /// on the primary address.
    pub fn bind_with(server: Server, store: Box<dyn MessageStore>, tcp: PrimaryTcp) -> io::Result<ServerRunner> {
        let (bound, listener) = bind_sockets(&server, tcp)?;
        Self::assemble(server, bound, listener, store)
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
    pub fn bind_config_with_store(config: ServerConfig, store: Box<dyn MessageStore>) -> io::Result<ServerRunner> {
        Self::bind_config_with(config, store, PrimaryTcp::Listen)
    }

    /// As [`bind_config_with_store`](Self::bind_config_with_store), with or
    /// without TCP on the primary address. With port 0 the TCP listener
    /// takes the primary's UDP port; if that port is taken on TCP, new ports
    /// are tried as for the crossed ones.
    pub fn bind_config_with(
        mut config: ServerConfig,
        store: Box<dyn MessageStore>,
        tcp: PrimaryTcp,
    ) -> io::Result<ServerRunner> {
        let wants_port = config.primary.port() == 0 || config.alternate.is_some_and(|a| a.port() == 0);
        if !wants_port {
            return Self::bind_with(Server::new(config, Instant::now()), store, tcp);
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
            match bind_sockets(&server, tcp) {
                Ok((bound, listener)) => return Self::assemble(server, bound, listener, store),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::new(io::ErrorKind::AddrInUse, "no free ports")))
    }

    fn assemble(
        server: Server,
        bound: Vec<(SocketId, std::net::UdpSocket)>,
        listener: Option<std::net::TcpListener>,
        store: Box<dyn MessageStore>,
    ) -> io::Result<ServerRunner> {
        let mut endpoint = Endpoint::with_store(server, bound, store)?;
        if let Some(listener) = listener {
            endpoint.adopt_tcp_listener(listener)?;
        }
        Ok(ServerRunner { endpoint, stop: Arc::new(AtomicBool::new(false)) })
    }

    /// The bound UDP addresses, in socket id order (primary first). A
    /// configured port 0 shows here as the port the system chose.
    pub fn local_addrs(&self) -> Vec<(SocketId, SocketAddr)> {
        self.endpoint.sockets().local_addrs()
    }

    /// Also accepts TCP on `addr` (any port: 443 gets through most
    /// firewalls; 0 for a free one) and returns the bound address.
    pub fn listen_tcp(&mut self, addr: SocketAddr) -> io::Result<SocketAddr> {
        self.endpoint.listen_tcp(addr)
    }

    /// The TCP listeners' addresses: the primary's first (unless
    /// [`PrimaryTcp::Off`]), then those of [`listen_tcp`](Self::listen_tcp)
    /// in order.
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.endpoint.tcp_addrs()
    }

    /// The TCP counters, live: keep a clone to read them while [`run`](Self::run) runs.
    pub fn tcp_counters(&self) -> TcpCounters {
        self.endpoint.tcp_counters()
    }

    /// The TCP counters now.
    pub fn tcp_stats(&self) -> TcpStats {
        self.endpoint.tcp_counters().stats()
    }

    /// Relayed datagrams dropped so far because their connection's write
    /// buffer was over [`SOFT_WRITE_LIMIT`](crate::SOFT_WRITE_LIMIT).
    pub fn tcp_dropped(&self) -> u64 {
        self.tcp_stats().dropped
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
    /// `on_event`. On the way out, every TCP connection is closed after
    /// writing what the kernel takes of its buffer.
    pub fn run(mut self, mut on_event: impl FnMut(ServerEvent)) -> io::Result<()> {
        self.endpoint.flush(Instant::now(), &mut on_event);
        let result = loop {
            if self.stop.load(Ordering::SeqCst) {
                break Ok(());
            }
            if let Err(e) = self.endpoint.turn(None, &mut on_event) {
                break Err(e);
            }
        };
        self.endpoint.close_streams();
        result
    }
}

/// A server's UDP sockets, and its TCP listener on the primary's address.
type BoundSockets = (Vec<(SocketId, std::net::UdpSocket)>, Option<std::net::TcpListener>);

/// Binds every address of `server.sockets()`, then (with
/// [`PrimaryTcp::Listen`]) a TCP listener on the address the primary got.
fn bind_sockets(server: &Server, tcp: PrimaryTcp) -> io::Result<BoundSockets> {
    let bound = server
        .sockets()
        .iter()
        .map(|(id, addr)| {
            std::net::UdpSocket::bind(addr)
                .map(|s| (*id, s))
                .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")))
        })
        .collect::<io::Result<Vec<_>>>()?;
    let listener = match (tcp, bound.iter().find(|(id, _)| *id == SocketId(0))) {
        (PrimaryTcp::Listen, Some((_, primary))) => {
            let addr = primary.local_addr()?;
            let listener = tcp::bind_listener(addr)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on TCP {addr}: {e}")))?;
            Some(listener)
        }
        _ => None,
    };
    Ok((bound, listener))
}
