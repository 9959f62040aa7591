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
use tracing::{debug, info, warn};

use crate::tcp::{Accepted, Conns, Listeners, Sent, StreamInput, TcpCounters, FIRST_CONN, FLUSH_ON_SHUTDOWN};
use crate::udp::{Endpoint, Received, SocketSet, RECV_BUFFER};

/// Inputs handled in a row before the serving task lets others run (the
/// connections' readers and writers, and whatever shares its executor).
const INPUTS_PER_YIELD: u32 = 64;

/// Binds every address of [`Server::sockets`], listens for TCP on the
/// primary address (where clients look when UDP is blocked, by default),
/// and runs the server until `shutdown` resolves.
///
/// The machine runs in the calling task; each TCP connection adds a reader
/// and a writer task on smol's global executor ([`smol::spawn`]), cancelled
/// when it closes. Server events are logged with `tracing` at info level;
/// use [`BoundServer::run_with_events`] to see them. Returns an error only
/// when a socket cannot be bound; errors sending or receiving single
/// datagrams are logged and survived.
///
/// Offline texts are kept in memory; [`BoundServer::bind_with_store`] takes a
/// durable store.
pub async fn serve(server: Server, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    let mut bound = BoundServer::bind(server)?;
    bound.listen_tcp(bound.primary())?;
    bound.run(shutdown).await.map(drop)
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
    listeners: Listeners,
    counters: TcpCounters,
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
        Ok(BoundServer::new(server, sockets, store))
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
                Ok(sockets) => return Ok(BoundServer::new(server, sockets, store)),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::new(io::ErrorKind::AddrInUse, "no free ports")))
    }

    fn new(machine: Server, sockets: SocketSet, store: Box<dyn MessageStore>) -> BoundServer {
        BoundServer { machine, sockets, store, listeners: Listeners::default(), counters: TcpCounters::default() }
    }

    /// Also accepts TCP connections at `addr`, for clients whose network
    /// drops UDP (issue 21); returns the bound address (port 0 picks a free
    /// one). Call it once per address, before [`run`](Self::run); a
    /// deployment listens on its primary UDP address's IP and port, which is
    /// where clients look by default (`ClientConfig::server_tcp`).
    ///
    /// Each connection is a stream for the machine under an id of its own
    /// (from 2^31 up, apart from the UDP sockets' ids): accepted, then every
    /// chunk read, then its end. Its writes go through a bounded buffer (see
    /// [`TCP_WRITE_SOFT_LIMIT`](crate::TCP_WRITE_SOFT_LIMIT) and
    /// [`TCP_WRITE_HARD_LIMIT`](crate::TCP_WRITE_HARD_LIMIT)); the counters
    /// are in [`tcp_counters`](Self::tcp_counters). How many connections
    /// stay open is the machine's call (`ServerConfig::max_streams`,
    /// `max_streams_per_ip`); when the process runs out of descriptors,
    /// accepting pauses (10 ms, doubling up to 1 s) instead of spinning.
    ///
    /// ```
    /// use punchline_smol::{BoundServer, Client, ClientConfig, ServerConfig, Transport};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// smol::block_on(async {
    ///     let mut server = BoundServer::bind_config(ServerConfig::new("127.0.0.1:0".parse()?, None))?;
    ///     let tcp = server.listen_tcp("127.0.0.1:0".parse()?)?;
    ///     let (stop, stopped) = smol::channel::bounded::<()>(1);
    ///     let serving = smol::spawn(server.run(async move { let _ = stopped.recv().await; }));
    ///
    ///     // A client whose UDP to the server goes nowhere logs in over TCP.
    ///     let nowhere = std::net::UdpSocket::bind("127.0.0.1:0")?;
    ///     let mut config = ClientConfig::new("alice", nowhere.local_addr()?);
    ///     config.server_tcp = Some(tcp);
    ///     let alice = Client::start(config, "127.0.0.1:0".parse()?).await?;
    ///     alice.wait_logged_in().await?;
    ///     assert_eq!(alice.transport(), Transport::Tcp);
    ///
    ///     alice.shutdown().await;
    ///     let _ = stop.send(()).await;
    ///     serving.await?;
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub fn listen_tcp(&mut self, addr: SocketAddr) -> io::Result<SocketAddr> {
        self.listeners.listen(addr).map_err(|e| io::Error::new(e.kind(), format!("cannot listen on TCP {addr}: {e}")))
    }

    /// The addresses [`listen_tcp`](Self::listen_tcp) bound, in order.
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.addrs()
    }

    /// A live view of the TCP counters (connections, buffered bytes,
    /// relayed datagrams dropped): take it before [`run`](Self::run), read
    /// it while the server runs and after.
    pub fn tcp_counters(&self) -> TcpCounters {
        self.counters.clone()
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
    /// [`ServerEvent::CloseStream`] is carried out before `on_event` sees
    /// it. At shutdown, bytes queued on TCP connections get a second to
    /// leave before the connections close.
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
        let mut listeners = self.listeners;
        let mut conns = Conns::new(self.counters.clone());
        let counters = self.counters;
        let mut streams_first = false;
        let mut inputs = 0u32;
        loop {
            // Drain after every input (the Machine contract).
            while let Some(request) = machine.poll_store_request() {
                store.submit(request);
            }
            while let Some(t) = machine.poll_transmit() {
                if t.socket.0 >= FIRST_CONN {
                    match conns.send(&t) {
                        Sent::Taken | Sent::Dropped => {}
                        // An input: what it queues is drained by this loop.
                        Sent::Overflowed => machine.handle_stream_closed(Instant::now(), t.socket),
                        Sent::Unknown => debug!(conn = t.socket.0, "transmit for a closed connection; dropped"),
                    }
                } else if let Err(error) = sockets.send(&t).await {
                    debug!(%error, to = %t.destination, "server send failed");
                }
            }
            while let Some(event) = machine.poll_event() {
                if let ServerEvent::CloseStream { conn } = event {
                    conns.close(conn);
                }
                on_event(event);
            }
            // Let the connections' tasks run now and then, should they share
            // this task's executor thread while inputs keep coming.
            inputs += 1;
            if inputs >= INPUTS_PER_YIELD {
                inputs = 0;
                smol::future::yield_now().await;
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
                Stream(StreamInput),
                Accepted(Accepted),
                Timeout,
            }
            // Datagrams and stream bytes take turns being looked at first.
            streams_first = !streams_first;
            let sockets = &mut sockets;
            let conns_ref = &mut conns;
            let listeners = &mut listeners;
            let counters = &counters;
            let wake = poll_fn(|cx| {
                if shutdown.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wake::Shutdown);
                }
                // The receiver is a stream that keeps its listener between
                // polls, so a commit that finishes while we sleep wakes us.
                if let Poll::Ready(Some(completion)) = completions.as_mut().poll_next(cx) {
                    return Poll::Ready(Wake::Stored(completion));
                }
                if streams_first {
                    if let Poll::Ready(input) = conns_ref.poll_input(cx) {
                        return Poll::Ready(Wake::Stream(input));
                    }
                }
                if let Poll::Ready(r) = sockets.poll_recv(cx, &mut buf) {
                    return Poll::Ready(Wake::Datagram(r));
                }
                if !streams_first {
                    if let Poll::Ready(input) = conns_ref.poll_input(cx) {
                        return Poll::Ready(Wake::Stream(input));
                    }
                }
                if let Poll::Ready(accepted) = listeners.poll_accept(cx, counters) {
                    return Poll::Ready(Wake::Accepted(accepted));
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
                Wake::Stream(StreamInput::Data(conn, bytes)) => machine.handle_stream_data(now, conn, &bytes),
                Wake::Stream(StreamInput::Closed(conn)) => machine.handle_stream_closed(now, conn),
                // The server connects nowhere.
                Wake::Stream(StreamInput::Connected { .. }) => {}
                Wake::Accepted(Ok((stream, remote))) => {
                    let conn = conns.insert(stream);
                    machine.stream_accepted(now, conn, remote);
                }
                // Out of descriptors, typically (the listeners pause).
                Wake::Accepted(Err(error)) => warn!(%error, "cannot accept a TCP connection"),
                Wake::Timeout => machine.handle_timeout(now),
            }
        }
        // Stop accepting, then let what is queued leave.
        drop(listeners);
        conns.shutdown(FLUSH_ON_SHUTDOWN).await;
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
