//! Running the server machine on smol: [`serve`] and [`BoundServer`].

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::task::Poll;
use std::time::Instant;

use punchline_core::messaging::{MemoryStore, MessageStore, StoreCompletion};
use punchline_core::server::{Server, ServerConfig, ServerEvent, ServerStats};
use punchline_core::{Machine, SocketId};
use punchline_store::StoreWorker;
use smol::channel::{Receiver, TryRecvError};
use smol::stream::Stream;
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
///
/// Offline texts are kept in memory; [`BoundServer::bind_with_store`] takes a
/// durable store.
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
    store: Box<dyn MessageStore>,
}

impl BoundServer {
    /// Binds the addresses of `server.sockets()` exactly as they are, and
    /// keeps offline texts in memory.
    pub fn bind(server: Server) -> io::Result<Self> {
        Self::bind_with_store(server, Box::new(MemoryStore::new()))
    }

    /// As [`bind`](Self::bind), keeping offline texts in `store`. While the
    /// server runs, the store runs on a thread of its own with group commit
    /// ([`StoreWorker`]), so the serving task never waits for a disk.
    pub fn bind_with_store(server: Server, store: Box<dyn MessageStore>) -> io::Result<Self> {
        let sockets = bind_sockets(&server)?;
        Ok(BoundServer { machine: server, sockets, store })
    }

    /// Builds the server from `config`, first choosing free ports for a
    /// primary or alternate address given with port 0, and keeps offline
    /// texts in memory.
    ///
    /// The machine must know its real ports (it answers "from the other port"
    /// by address), so port 0 is resolved by binding before the machine is
    /// built. When the alternate has its own IP and port, the server also
    /// listens on the two crossed combinations; if one of those ports is
    /// taken, new ports are tried (a few times) before giving up.
    pub fn bind_config(config: ServerConfig) -> io::Result<Self> {
        Self::bind_config_with_store(config, Box::new(MemoryStore::new()))
    }

    /// As [`bind_config`](Self::bind_config), keeping offline texts in
    /// `store` (for example `punchline_store::SqliteStore`).
    pub fn bind_config_with_store(mut config: ServerConfig, store: Box<dyn MessageStore>) -> io::Result<Self> {
        let wants_primary = config.primary.port() == 0;
        let wants_alt = config.alternate.is_some_and(|a| a.port() == 0);
        if !wants_primary && !wants_alt {
            return Self::bind_with_store(Server::new(config, Instant::now()), store);
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
            let server = Server::new(config.clone(), Instant::now());
            match bind_sockets(&server) {
                Ok(sockets) => return Ok(BoundServer { machine: server, sockets, store }),
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
    /// [`stats`](Server::stats)). Events are logged with `tracing`. Storage
    /// requests already submitted are carried out before this returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> io::Result<Server> {
        self.run_with_events(shutdown, |event| info!(?event, "server event")).await
    }

    /// Serves until `shutdown` resolves, handing every server event to
    /// `on_event` (called in the serving task: keep it short).
    pub async fn run_with_events(
        self,
        shutdown: impl Future<Output = ()>,
        mut on_event: impl FnMut(ServerEvent),
    ) -> io::Result<Server> {
        let mut shutdown = pin!(shutdown);
        let mut timer = Timer::never();
        let mut buf = vec![0u8; RECV_BUFFER];
        let (done_tx, done_rx) = smol::channel::unbounded::<StoreCompletion>();
        let mut completions = pin!(done_rx.clone());
        let store = StoreWorker::spawn(self.store, move |completions: Vec<StoreCompletion>| {
            for completion in completions {
                // Fails only once the serving task has stopped listening.
                let _ = done_tx.try_send(completion);
            }
        })?;
        let mut machine = self.machine;
        let mut sockets = self.sockets;
        loop {
            // Drain after every input (the Machine contract).
            while let Some(request) = machine.poll_store_request() {
                store.submit(request);
            }
            while let Some(t) = machine.poll_transmit() {
                if let Err(error) = sockets.send(&t).await {
                    debug!(%error, to = %t.destination, "server send failed");
                }
            }
            while let Some(event) = machine.poll_event() {
                on_event(event);
            }
            // A timer that is already due runs before the next wait, so a
            // flood of datagrams cannot starve it.
            let now = Instant::now();
            match machine.poll_timeout() {
                Some(at) if at <= now => {
                    machine.handle_timeout(now);
                    continue;
                }
                Some(at) => timer.set_at(at),
                None => timer = Timer::never(),
            }
            enum Wake {
                Shutdown,
                Stored(StoreCompletion),
                Datagram(Received),
                Timeout,
            }
            let sockets = &mut sockets;
            let wake = poll_fn(|cx| {
                if shutdown.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Shutdown);
                }
                // The receiver is a stream that keeps its listener between
                // polls, so a commit that finishes while we sleep wakes us.
                if let Poll::Ready(Some(completion)) = completions.as_mut().poll_next(cx) {
                    return Poll::Ready(Wake::Stored(completion));
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
                Wake::Stored(completion) => {
                    machine.handle_store_completion(now, completion);
                    take_completions(&mut machine, &done_rx, now);
                }
                Wake::Datagram((socket, Ok((len, from)))) => {
                    machine.handle_datagram(now, socket, from, &buf[..len]);
                }
                Wake::Datagram((socket, Err(error))) => {
                    // ICMP errors surface here on some platforms; one bad
                    // peer must not stop the server.
                    debug!(%error, socket = socket.0, "server receive error");
                }
                Wake::Timeout => machine.handle_timeout(now),
            }
        }
        // Finish what was submitted: a text being committed stays committed
        // (its sender retries and hears `Stored` from the next server).
        drop(store);
        take_completions(&mut machine, &done_rx, Instant::now());
        Ok(machine)
    }
}

/// Feeds every completion already waiting into the machine.
fn take_completions(machine: &mut Server, done: &Receiver<StoreCompletion>, now: Instant) {
    loop {
        match done.try_recv() {
            Ok(completion) => machine.handle_store_completion(now, completion),
            Err(TryRecvError::Empty | TryRecvError::Closed) => return,
        }
    }
}

/// Binds every address of `server.sockets()`.
fn bind_sockets(server: &Server) -> io::Result<SocketSet> {
    let mut sockets = SocketSet::default();
    for (id, addr) in server.sockets() {
        let endpoint = Endpoint::bind(*addr)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot bind server socket {addr}: {e}")))?;
        sockets.insert(*id, endpoint);
    }
    Ok(sockets)
}
