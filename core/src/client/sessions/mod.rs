//! Sessions with peers (DESIGN §3, "Peer ↔ peer").
//!
//! A [`Session`] is usable over the server's relay from its first moment;
//! meanwhile it searches for a direct path, migrates to the first one it
//! proves, keeps it alive, and falls back to the relay when it dies. It is
//! made of parts, each its own module:
//!
//! - [`seal`]: the end-to-end handshake with the peer, and the encryption,
//!   counter and replay window of every frame;
//! - [`path`]: the path in use (keepalives, migration, fallback);
//! - [`liveness`]: the rule that says whether a direct path lives;
//! - [`stream`]: the reliable, ordered stream that rides the path;
//! - [`traversal`]: the punching attempts, one variant per role.
//!
//! [`session`] ties them together: it routes the peer's frames and its own
//! timers to the part they concern. Texts that arrive on the stream are not
//! a session's business: [`Session::handle_frame`] returns them, and the
//! client hands them to messaging. [`table`] keeps a client's sessions by
//! id; this module asks things of all of them at once.

mod files;
mod liveness;
mod path;
mod seal;
mod session;
mod stream;
mod table;
mod timers;
mod traversal;

pub use traversal::{birthday_success, BIRTHDAY_PORTS};

pub(crate) use seal::Early;
pub(crate) use session::Session;
pub(crate) use table::Sessions;

use std::net::SocketAddr;
use std::time::Instant;

use super::context::{Ctx, Out};
use crate::machine::SocketId;
use crate::wire::frame::SessionId;
use crate::wire::stun::TransactionId;

/// What the client asks of all its sessions at once.
impl Sessions<Box<Session>> {
    /// Runs the timers that are due and drops the sessions that closed.
    pub(crate) fn handle_timeout(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        let mut closed = Vec::new();
        for (id, s) in self.iter_mut() {
            if s.next_timeout().is_some_and(|at| at <= ctx.now) {
                s.handle_timeout(ctx, out);
            }
            if s.is_closed() {
                closed.push(*id);
            }
        }
        for id in closed {
            self.remove(&id);
        }
    }

    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.values().filter_map(|s| s.next_timeout()).min()
    }

    /// A STUN answer, offered to each session until one takes it.
    pub(crate) fn on_binding_response(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        socket: SocketId,
        tid: TransactionId,
        mapped: SocketAddr,
    ) {
        for s in self.values_mut() {
            if s.on_binding_response(ctx, out, socket, tid, mapped) {
                return;
            }
        }
    }

    /// The sessions' wishes for sockets, once each: (session, attempt,
    /// count).
    pub(crate) fn take_socket_wishes(&mut self) -> Vec<(SessionId, u16, u16)> {
        let wishes = self.iter_mut().map(|(id, s)| s.take_socket_wish().map(|(attempt, count)| (*id, attempt, count)));
        wishes.flatten().collect()
    }

    /// A session that can carry a text to `peer` now (see
    /// [`Session::takes_texts_for`]).
    pub(crate) fn direct_for_texts(&mut self, peer: &str, send_window: usize) -> Option<&mut Session> {
        self.values_mut().find(|s| s.takes_texts_for(peer, send_window)).map(|s| &mut **s)
    }

    /// The open sessions with `peer`.
    pub(crate) fn with_peer<'a>(&'a mut self, peer: &'a str) -> impl Iterator<Item = &'a mut Box<Session>> + 'a {
        self.values_mut().filter(move |s| !s.is_closed() && s.peer() == peer)
    }
}
