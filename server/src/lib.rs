//! `punchline-server`: the deployable server (signaling, presence, relay)
//! around [`punchline_core::server::Server`], on the runtime of your choice.
//!
//! The binary (`src/main.rs`) parses flags and the config file into
//! [`config::Settings`], then calls [`run`]. Issue 7 adds the durable offline
//! store (`--data DIR`) beside these settings.

pub mod config;

use std::io;
use std::net::SocketAddr;

use punchline_core::server::ServerEvent;
use punchline_core::SocketId;
use tracing::info;

use config::{RuntimeKind, Settings};

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

/// Binds the server's sockets (resolving port 0), calls `on_ready` with the
/// bound addresses (primary first) and a [`Stopper`], then serves until the
/// stopper fires.
pub fn run(settings: Settings, on_ready: impl FnOnce(&[(SocketId, SocketAddr)], Stopper)) -> io::Result<()> {
    match settings.runtime {
        RuntimeKind::Mio => {
            let runner = punchline_mio::ServerRunner::bind_config(settings.server)?;
            on_ready(&runner.local_addrs(), Stopper(StopperKind::Mio(runner.shutdown_handle())));
            runner.run(log_event)
        }
        RuntimeKind::Smol => {
            let bound = punchline_smol::BoundServer::bind_config(settings.server)?;
            let (tx, rx) = smol::channel::bounded(1);
            on_ready(&bound.local_addrs(), Stopper(StopperKind::Smol(tx)));
            smol::block_on(bound.run_with_events(
                async move {
                    let _ = rx.recv().await;
                },
                log_event,
            ))
            .map(drop)
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
    }
}
