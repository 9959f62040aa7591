//! `punchline-server`: the deployable server (signaling, presence, relay)
//! around [`punchline_core::server::Server`], on the runtime of your choice.
//!
//! The binary (`src/main.rs`) parses flags and the config file into
//! [`config::Settings`], then calls [`run_with`], which opens the durable
//! offline message store (`--data DIR`, [`punchline_store::SqliteStore`])
//! before it binds any socket.
//!
//! Besides UDP the server accepts TCP (issue 21), for clients whose network
//! drops UDP: on its primary address (the same IP and port) unless
//! `--no-tcp`, and on every `--tcp-listen` address, on either runtime.

pub mod config;

use std::io;
use std::net::SocketAddr;

use punchline_core::messaging::{MemoryStore, MessageStore};
use punchline_core::server::ServerEvent;
use punchline_core::SocketId;
use punchline_mio::{PrimaryTcp, ServerRunner};
use punchline_store::{CommitEach, OpenError, SqliteStore};
use tracing::info;

use config::{RuntimeKind, Settings, StoreCommit};

/// Stops a running server from another thread (a signal handler).
#[derive(Debug)]
pub struct Stopper(StopperKind);

#[derive(Debug)]
enum StopperKind {
    Mio(punchline_mio::ShutdownHandle),
    Smol(smol::channel::Sender<()>),
}

impl Stopper {
    /// Asks the server to stop; [`run`] returns soon after.
    pub fn stop(&self) {
        match &self.0 {
            StopperKind::Mio(handle) => handle.shutdown(),
            StopperKind::Smol(tx) => {
                let _ = tx.try_send(());
            }
        }
    }
}

/// What a bound socket is for, as printed at start.
pub fn socket_role(id: SocketId) -> &'static str {
    match id.0 {
        0 => "primary",
        1 => "alternate",
        _ => "crossed",
    }
}

/// Why [`run`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The message store could not be opened (unusable directory, corrupt
    /// or foreign file). Nothing was bound.
    #[error("{0}")]
    Store(#[from] OpenError),
    /// A socket could not be bound or failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// What the server listens on once bound.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listening {
    /// The UDP sockets, primary first (see [`socket_role`]).
    pub udp: Vec<(SocketId, SocketAddr)>,
    /// The TCP listeners: the primary address's first (unless TCP is off),
    /// then the `--tcp-listen` ones, in order.
    pub tcp: Vec<SocketAddr>,
}

/// As [`run_with`], telling `on_ready` the UDP addresses only.
pub fn run(settings: Settings, on_ready: impl FnOnce(&[(SocketId, SocketAddr)], Stopper)) -> Result<(), RunError> {
    run_with(settings, |listening, stopper| on_ready(&listening.udp, stopper))
}

/// Opens the message store (when `settings.data` names a directory), binds
/// the server's sockets (resolving port 0) and TCP listeners, calls
/// `on_ready` with what it listens on and a [`Stopper`], then serves until
/// the stopper fires.
pub fn run_with(settings: Settings, on_ready: impl FnOnce(&Listening, Stopper)) -> Result<(), RunError> {
    // Opened before any socket is bound, so that a bad directory or file is
    // reported as such. It runs on a thread of its own, with group commit.
    let store: Box<dyn MessageStore> = match (settings.data.as_deref(), settings.store_commit) {
        (Some(dir), commit) => {
            let store = SqliteStore::open_dir(dir)?;
            info!(path = %store.path().display(), commit = ?commit, "message store open");
            match commit {
                StoreCommit::Group => Box::new(store),
                StoreCommit::Each => Box::new(CommitEach(store)),
            }
        }
        (None, _) => Box::new(MemoryStore::new()),
    };
    match settings.runtime {
        RuntimeKind::Mio => {
            let primary_tcp = if settings.no_tcp { PrimaryTcp::Off } else { PrimaryTcp::Listen };
            let mut runner = ServerRunner::bind_config_with(settings.server, store, primary_tcp)?;
            for addr in &settings.tcp_listen {
                // The primary's listener may already be this one.
                if !runner.tcp_addrs().contains(addr) {
                    runner.listen_tcp(*addr)?;
                }
            }
            let listening = Listening { udp: runner.local_addrs(), tcp: runner.tcp_addrs() };
            on_ready(&listening, Stopper(StopperKind::Mio(runner.shutdown_handle())));
            Ok(runner.run(log_event)?)
        }
        RuntimeKind::Smol => {
            let mut bound = punchline_smol::BoundServer::bind_config_with_store(settings.server, store)?;
            let tcp = smol_listen_tcp(&mut bound, settings.no_tcp, &settings.tcp_listen)?;
            let (tx, rx) = smol::channel::bounded(1);
            on_ready(&Listening { udp: bound.local_addrs(), tcp }, Stopper(StopperKind::Smol(tx)));
            smol::block_on(bound.run_with_events(
                async move {
                    let _ = rx.recv().await;
                },
                log_event,
            ))
            .map(drop)?;
            Ok(())
        }
    }
}

/// The smol runtime's TCP listeners: on the primary address (its IP and the
/// port UDP got) unless `no_tcp`, and at every `tcp_listen` address;
/// returns them all.
fn smol_listen_tcp(
    bound: &mut punchline_smol::BoundServer,
    no_tcp: bool,
    tcp_listen: &[SocketAddr],
) -> io::Result<Vec<SocketAddr>> {
    let listen = |bound: &mut punchline_smol::BoundServer, addr: SocketAddr| {
        bound.listen_tcp(addr).map_err(|e| io::Error::new(e.kind(), format!("cannot listen on TCP {addr}: {e}")))
    };
    if !no_tcp {
        let primary = bound.local_addrs()[0].1;
        listen(bound, primary)?;
    }
    for addr in tcp_listen {
        if !bound.tcp_addrs().contains(addr) {
            listen(bound, *addr)?;
        }
    }
    Ok(bound.tcp_addrs())
}

fn log_event(event: ServerEvent) {
    match event {
        ServerEvent::UserOnline { user, reflexive } => info!(%user, %reflexive, "user online"),
        ServerEvent::UserOffline { user } => info!(%user, "user offline"),
        ServerEvent::SessionCreated { session, initiator, responder, strategy } => {
            info!(%session, %initiator, %responder, strategy = strategy.name(), "session created")
        }
        ServerEvent::SessionEnded { session } => info!(%session, "session ended"),
        ServerEvent::StoreFailed { error } => tracing::error!(%error, "message store failed"),
        // A request to the runtime, which carries it out before events get
        // here (the mio runtime does not pass it on).
        ServerEvent::CloseStream { conn } => tracing::debug!(conn = conn.0, "stream connection closed"),
    }
}
