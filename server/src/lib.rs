//! `punchline-server`: the deployable server (signaling, presence, relay)
//! around [`punchline_core::server::Server`], on the runtime of your choice.
//!
//! The binary (`src/main.rs`) parses flags and the config file into
//! [`config::Settings`], then calls [`run`], which opens the durable offline
//! message store (`--data DIR`, [`punchline_store::SqliteStore`]) before it
//! binds any socket.

pub mod config;

use std::io;
use std::net::SocketAddr;

use punchline_core::messaging::{MemoryStore, MessageStore};
use punchline_core::server::ServerEvent;
use punchline_core::SocketId;
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

/// Opens the message store (when `settings.data` names a directory), binds
/// the server's sockets (resolving port 0), calls `on_ready` with the bound
/// addresses (primary first) and a [`Stopper`], then serves until the stopper
/// fires.
pub fn run(settings: Settings, on_ready: impl FnOnce(&[(SocketId, SocketAddr)], Stopper)) -> Result<(), RunError> {
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
            let runner = punchline_mio::ServerRunner::bind_config_with_store(settings.server, store)?;
            on_ready(&runner.local_addrs(), Stopper(StopperKind::Mio(runner.shutdown_handle())));
            Ok(runner.run(log_event)?)
        }
        RuntimeKind::Smol => {
            let bound = punchline_smol::BoundServer::bind_config_with_store(settings.server, store)?;
            let (tx, rx) = smol::channel::bounded(1);
            on_ready(&bound.local_addrs(), Stopper(StopperKind::Smol(tx)));
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

fn log_event(event: ServerEvent) {
    match event {
        ServerEvent::UserOnline { user, reflexive } => info!(%user, %reflexive, "user online"),
        ServerEvent::UserOffline { user } => info!(%user, "user offline"),
        ServerEvent::SessionCreated { session, initiator, responder, strategy } => {
            info!(%session, %initiator, %responder, strategy = strategy.name(), "session created")
        }
        ServerEvent::SessionEnded { session } => info!(%session, "session ended"),
        ServerEvent::StoreFailed { error } => tracing::error!(%error, "message store failed"),
        // A request to the runtime, which carries it out before events get here.
        ServerEvent::CloseStream { conn } => tracing::debug!(conn = conn.0, "stream connection closed"),
    }
}
