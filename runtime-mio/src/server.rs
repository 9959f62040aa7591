//! A server on mio sockets, run until a shutdown handle fires.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use mio::Waker;
use punchline_core::server::{Server, ServerEvent};
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
    pub fn bind(server: Server) -> io::Result<ServerRunner> {
        let bound = server
            .sockets()
            .iter()
            .map(|(id, addr)| {
                std::net::UdpSocket::bind(addr)
                    .map(|s| (*id, s))
                    .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")))
            })
            .collect::<io::Result<Vec<(SocketId, std::net::UdpSocket)>>>()?;
        Ok(ServerRunner { endpoint: Endpoint::new(server, bound)?, stop: Arc::new(AtomicBool::new(false)) })
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
