//! Running the server machine on smol: [`serve`] and [`BoundServer`].

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::task::Poll;
use std::time::Instant;

use punchline_core::server::{Server, ServerConfig, ServerEvent, ServerStats};
use punchline_core::{Machine, SocketId};
use smol::Timer;
use tracing::{debug, info};

use crate::udp::{Endpoint, Received, SocketSet, RECV_BUFFER};

/// Binds every address of [`Server::sockets`] and runs the server until
/// `shutdown` resolves.
///
/// Runs in the calling task (it does not spawn). Server events are logged with
/// `tracing` at info level; use [`BoundServer::run_with_events`] to see them.
/// Returns an error only when a socket cannot be bound; errors sending or
/// receiving single datagrams are logged and survived.
pub async fn serve(server: Server, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    BoundServer::bind(server)?.run(shutdown).await.map(drop)
}

/// A server machine with its sockets bound, ready to [`run`](Self::run).
///
/// Binding first lets a caller learn the addresses before serving, and lets
/// [`bind_config`](Self::bind_config) resolve port 0 (tests, ephemeral
/// deployments).
#[derive(Debug)]
pub struct BoundServer {
    machine: Server,
    sockets: SocketSet,
}

impl BoundServer {
    /// Binds the addresses of `server.sockets()` exactly as they are.
    pub fn bind(server: Server) -> io::Result<Self> {
        let mut sockets = SocketSet::default();
        for (id, addr) in server.sockets() {
            let endpoint = Endpoint::bind(*addr)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot bind server socket {addr}: {e}")))?;
            sockets.insert(*id, endpoint);
        }
        Ok(BoundServer { machine: server, sockets })
    }

    /// Builds the server from `config`, first choosing free ports for a
    /// primary or alternate address given with port 0.
    ///
    /// The machine must know its real ports (it answers "from the other port"
    /// by address), so port 0 is resolved by binding before the machine is
    /// built. When the alternate has its own IP and port, the server also
    /// listens on the two crossed combinations; if one of those ports is
    /// taken, new ports are tried (a few times) before giving up.
    pub fn bind_config(config: ServerConfig) -> io::Result<Self> {
        Self::bind_config_with(config, |config, now| Ok(Server::new(config, now)))
    }

    /// As [`bind_config`](Self::bind_config), building the machine with
    /// `make` once the ports are known (for example
    /// [`Server::with_store`] with a durable store). `make` runs again when
    /// a crossed port was taken and new ports are tried.
    pub fn bind_config_with(
        mut config: ServerConfig,
        mut make: impl FnMut(ServerConfig, Instant) -> io::Result<Server>,
    ) -> io::Result<Self> {
        let wants_primary = config.primary.port() == 0;
        let wants_alt = config.alternate.is_some_and(|a| a.port() == 0);
        if !wants_primary && !wants_alt {
            return Self::bind(make(config, Instant::now())?);
        }
        let (primary, alternate) = (config.primary, config.alternate);
        let mut last_error = None;
        for _ in 0..16 {
            // Hold the chosen ports while choosing the next, so the primary
            // and alternate ports differ.
            let p = Endpoint::bind(primary)?;
            let a = alternate.map(Endpoint::bind).transpose()?;
            config.primary = p.local_addr();
            config.alternate = a.as_ref().map(Endpoint::local_addr);
            drop((p, a));
            match Self::bind(make(config.clone(), Instant::now())?) {
                Ok(bound) => return Ok(bound),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::new(io::ErrorKind::AddrInUse, "no free ports")))
    }

    /// The bound sockets: id and local address, primary (`SocketId(0)`) first.
    pub fn local_addrs(&self) -> Vec<(SocketId, SocketAddr)> {
        self.sockets.addrs()
    }

    /// The primary address clients log in to.
    pub fn primary(&self) -> SocketAddr {
        self.local_addrs()[0].1
    }

    /// The alternate address for NAT discovery, when there is one.
    pub fn alternate(&self) -> Option<SocketAddr> {
        self.local_addrs().iter().find(|(id, _)| *id == SocketId(1)).map(|(_, a)| *a)
    }

    /// The machine's counters.
    pub fn stats(&self) -> &ServerStats {
        self.machine.stats()
    }

    /// Serves until `shutdown` resolves, then returns the machine (for its
    /// [`stats`](Server::stats)). Events are logged with `tracing`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> io::Result<Server> {
        self.run_with_events(shutdown, |event| info!(?event, "server event")).await
    }

    /// Serves until `shutdown` resolves, handing every server event to
    /// `on_event` (called in the serving task: keep it short).
    pub async fn run_with_events(
        mut self,
        shutdown: impl Future<Output = ()>,
        mut on_event: impl FnMut(ServerEvent),
    ) -> io::Result<Server> {
        let mut shutdown = pin!(shutdown);
        let mut timer = Timer::never();
        let mut buf = vec![0u8; RECV_BUFFER];
        loop {
            // Drain after every input (the Machine contract).
            while let Some(t) = self.machine.poll_transmit() {
                if let Err(error) = self.sockets.send(&t).await {
                    debug!(%error, to = %t.destination, "server send failed");
                }
            }
            while let Some(event) = self.machine.poll_event() {
                on_event(event);
            }
            // A timer that is already due runs before the next wait, so a
            // flood of datagrams cannot starve it.
            let now = Instant::now();
            match self.machine.poll_timeout() {
                Some(at) if at <= now => {
                    self.machine.handle_timeout(now);
                    continue;
                }
                Some(at) => timer.set_at(at),
                None => timer = Timer::never(),
            }
            enum Wake {
                Shutdown,
                Datagram(Received),
                Timeout,
            }
            let sockets = &mut self.sockets;
            let wake = poll_fn(|cx| {
                if shutdown.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Shutdown);
                }
                if let Poll::Ready(r) = sockets.poll_recv(cx, &mut buf) {
                    return Poll::Ready(Wake::Datagram(r));
                }
                if std::pin::Pin::new(&mut timer).poll(cx).is_ready() {
                    return Poll::Ready(Wake::Timeout);
                }
                Poll::Pending
            })
            .await;
            let now = Instant::now();
            match wake {
                Wake::Shutdown => break,
                Wake::Datagram((socket, Ok((len, from)))) => {
                    self.machine.handle_datagram(now, socket, from, &buf[..len]);
                }
                Wake::Datagram((socket, Err(error))) => {
                    // ICMP errors surface here on some platforms; one bad
                    // peer must not stop the server.
                    debug!(%error, socket = socket.0, "server receive error");
                }
                Wake::Timeout => self.machine.handle_timeout(now),
            }
        }
        Ok(self.machine)
    }
}
