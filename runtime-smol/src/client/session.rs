//! [`Session`]: one conversation with a peer, owned by the application.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use punchline_core::client::PathKind;
use punchline_core::nat::Strategy;
use punchline_core::wire::frame::{CloseReason, SessionId};
use punchline_core::SocketId;
use smol::channel::{self, Receiver};

use super::driver::{Command, SessionParts, SessionShared};
use super::{Client, Error};

/// What happens on a [`Session`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// Data from the peer, in order, exactly once.
    Data(Bytes),
    /// Both sides' openers are out; probing for a direct path started.
    PunchStarted {
        /// Which attempt (0 is the first).
        attempt: u16,
    },
    /// A punching attempt ended without a direct path.
    PunchFailed {
        /// Which attempt.
        attempt: u16,
        /// When the next attempt starts; `None` when the session stays on
        /// the relay for good.
        retry_in: Option<Duration>,
    },
    /// The session now runs peer to peer.
    PathDirect {
        /// Our socket on the path.
        socket: SocketId,
        /// The peer's address on the path.
        remote: SocketAddr,
    },
    /// The direct path died; the session is back on the relay.
    PathFellBack,
    /// The session ended. The last event.
    Closed(CloseReason),
}

/// A session with one peer, from [`Client::connect_session`] or
/// [`Client::accept`].
///
/// Data sent on it arrives reliably and in order, over the server's relay at
/// first and peer to peer once a direct path is proven — the switch is
/// invisible here except as a [`SessionEvent::PathDirect`]. Its methods take
/// `&self`, so one task can wait on [`recv`](Self::recv) and on its own input
/// at once (e.g. with [`smol::future::or`]).
///
/// Dropping the `Session` closes the session (telling the peer).
#[derive(Debug)]
pub struct Session {
    client: Client,
    id: SessionId,
    peer: String,
    initiator: bool,
    strategy: Strategy,
    events: Receiver<SessionEvent>,
    shared: Arc<SessionShared>,
}

impl Session {
    pub(super) fn new(client: Client, parts: SessionParts) -> Self {
        let SessionParts { id, peer, initiator, strategy, events, shared } = parts;
        Session { client, id, peer, initiator, strategy, events, shared }
    }

    /// The session's id (as in the raw [`ClientEvent`](punchline_core::client::ClientEvent)s).
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The other member.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// True when we opened it.
    pub fn is_initiator(&self) -> bool {
        self.initiator
    }

    /// How the session tries for a direct path.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// The path the session uses now.
    pub fn path(&self) -> PathKind {
        *super::driver::lock(&self.shared.path)
    }

    /// Why the session ended, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        *super::driver::lock(&self.shared.closed)
    }

    /// Sends `data` (at most [`MAX_APP_PAYLOAD`](punchline_core::wire::frame::MAX_APP_PAYLOAD)
    /// bytes) reliably and in order. When too much is unacknowledged, waits
    /// for room instead of failing.
    pub async fn send(&self, data: &[u8]) -> Result<(), Error> {
        let (reply, answer) = channel::bounded(1);
        let data = Bytes::copy_from_slice(data);
        self.client.command(Command::Send { session: self.id, data, wait: true, reply }).await;
        match answer.recv().await {
            Ok(result) => result.map_err(Error::from),
            Err(_) => Err(Error::Shutdown),
        }
    }

    /// The next data from the peer; path events are skipped (see
    /// [`path`](Self::path)). `None` once the session has closed.
    pub async fn recv(&self) -> Option<Bytes> {
        loop {
            match self.next_event().await? {
                SessionEvent::Data(data) => return Some(data),
                SessionEvent::Closed(_) => return None,
                _ => {}
            }
        }
    }

    /// The next event of this session, data included. `None` after
    /// [`SessionEvent::Closed`] was read.
    pub async fn next_event(&self) -> Option<SessionEvent> {
        self.events.recv().await.ok()
    }

    /// Waits until the session runs on a direct path (at once if it does),
    /// skipping any data that arrives meanwhile; the path, or the close reason
    /// if the session ends first. Meant for tools and tests that measure the
    /// path; a chat reads [`next_event`](Self::next_event) instead.
    pub async fn wait_direct(&self) -> Result<(SocketId, SocketAddr), Option<CloseReason>> {
        if let PathKind::Direct { socket, remote } = self.path() {
            return Ok((socket, remote));
        }
        loop {
            match self.next_event().await {
                Some(SessionEvent::PathDirect { socket, remote }) => return Ok((socket, remote)),
                Some(SessionEvent::Closed(reason)) => return Err(Some(reason)),
                None => return Err(self.close_reason()),
                Some(_) => {}
            }
        }
    }

    /// Closes the session, telling the peer. Pending `recv`s return `None`.
    pub async fn close(self) {
        self.client.command(Command::Close { session: self.id }).await;
        // Drop sends Close again; the driver ignores unknown sessions.
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.close_reason().is_none() {
            self.client.command_now(Command::Close { session: self.id });
        }
    }
}
