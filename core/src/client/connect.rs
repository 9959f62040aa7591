//! Asking the server about other users: lookups, and connects that end in a
//! session (DESIGN §3, "Client ↔ server").
//!
//! A connect waits only for the login, never for NAT discovery (the session
//! is usable over the relay at once; its strategy is chosen once both
//! profiles are measured, see [`crate::client::ClientEvent::StrategyChanged`]);
//! then it is retransmitted (500 ms, doubling, at most 4 s apart) until the server's
//! offer or error arrives, and fails after [`CONNECT_SENDS`] sends. A lookup
//! is sent once: a lost answer is not retried.

use std::collections::BTreeMap;

use super::context::{retransmit_after, ClientTimer, Ctx, Out};
use super::events::{ClientEvent, ConnectFailure};
use crate::nat::NatProfile;
use crate::timer::Timers;
use crate::wire::frame::{ErrorCode, Frame};

/// Sends of a connect request before it fails with
/// [`ConnectFailure::ServerUnreachable`] (about 50 s with the backoff).
const CONNECT_SENDS: u32 = 16;

/// The connects and lookups waiting for the server, by request number.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    connects: BTreeMap<u32, PendingConnect>,
    lookups: BTreeMap<u32, String>,
    /// Lookups for a recipient's key that texts wait for, by request.
    key_lookups: BTreeMap<u32, String>,
}

#[derive(Debug)]
struct PendingConnect {
    peer: String,
    /// 0 while waiting for the login.
    sends: u32,
    /// The server answered `NotLoggedIn` once and the client logged in
    /// again; a second time ends the connect.
    relogged: bool,
}

impl Requests {
    /// Queues a connect to `peer`; [`Requests::send_waiting`] sends it.
    pub(crate) fn connect(&mut self, request: u32, peer: &str) {
        self.connects.insert(request, PendingConnect { peer: peer.to_owned(), sends: 0, relogged: false });
    }

    /// Asks the server whether `user` is online.
    pub(crate) fn lookup(&mut self, ctx: &Ctx<'_>, out: &mut Out, token: u64, request: u32, user: &str) {
        self.lookups.insert(request, user.to_owned());
        out.send_to_server(ctx, &Frame::Lookup { token, request, user: user.to_owned() });
    }

    /// Asks the server's directory for `user`'s key, for texts that wait
    /// for it. A lost answer is asked again when the texts are retransmitted
    /// (at most once a second): the new request replaces the old.
    pub(crate) fn lookup_key(&mut self, ctx: &Ctx<'_>, out: &mut Out, token: u64, request: u32, user: &str) {
        self.key_lookups.retain(|_, u| u != user);
        // Bounded by the text window: texts wait for at most that many keys.
        if self.key_lookups.len() >= ctx.config.messaging.text_window {
            let oldest = *self.key_lookups.keys().next().expect("the map is full");
            self.key_lookups.remove(&oldest);
        }
        self.key_lookups.insert(request, user.to_owned());
        out.send_to_server(ctx, &Frame::Lookup { token, request, user: user.to_owned() });
    }

    /// The directory answered lookup `request`: a user lookup is reported;
    /// a key lookup is returned (the user, and its key if it has one).
    pub(crate) fn on_lookup_reply(
        &mut self,
        out: &mut Out,
        request: u32,
        online: bool,
        key: Option<[u8; 32]>,
    ) -> Option<(String, Option<crate::secure::PublicKey>)> {
        let key = key.map(crate::secure::PublicKey);
        if let Some(user) = self.lookups.remove(&request) {
            out.event(ClientEvent::LookupResult { user, online, key });
        }
        self.key_lookups.remove(&request).map(|user| (user, key))
    }

    /// Sends the connects that waited for the login.
    pub(crate) fn send_waiting(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        timers: &mut Timers<ClientTimer>,
        token: u64,
        profile: NatProfile,
    ) {
        for (request, pending) in self.connects.iter_mut().filter(|(_, p)| p.sends == 0) {
            pending.sends = 1;
            let connect = Frame::Connect { token, request: *request, peer: pending.peer.clone(), profile };
            out.send_to_server(ctx, &connect);
            timers.set(ClientTimer::Connect(*request), ctx.now + retransmit_after(1));
        }
    }

    /// [`ClientTimer::Connect`]: connect `request` went unanswered; send it
    /// again (when logged in) or give up.
    pub(crate) fn retransmit(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        timers: &mut Timers<ClientTimer>,
        request: u32,
        profile: NatProfile,
    ) {
        let Some(pending) = self.connects.get_mut(&request) else { return };
        if pending.sends >= CONNECT_SENDS {
            let pending = self.connects.remove(&request).expect("looked up above");
            out.event(ClientEvent::ConnectFailed { peer: pending.peer, reason: ConnectFailure::ServerUnreachable });
            return;
        }
        pending.sends += 1;
        if let Some(token) = ctx.token {
            out.send_to_server(ctx, &Frame::Connect { token, request, peer: pending.peer.clone(), profile });
        }
        timers.set(ClientTimer::Connect(request), ctx.now + retransmit_after(pending.sends));
    }

    /// An offer that names us the initiator of a session with `peer`: true
    /// when it answers our connect `request` (which is then done), false
    /// for a connect we gave up on, or a forged offer.
    pub(crate) fn on_offer(&mut self, timers: &mut Timers<ClientTimer>, request: u32, peer: &str) -> bool {
        match self.connects.get(&request) {
            Some(p) if p.peer == peer => {
                self.connects.remove(&request);
                timers.stop(&ClientTimer::Connect(request));
                true
            }
            _ => false,
        }
    }

    /// The server answered connect `request` with `code`; true when that
    /// ended the connect. A `NotLoggedIn` while the client logs in again
    /// (`logging_in`) makes the connect wait for the new login, once.
    pub(crate) fn on_error(
        &mut self,
        out: &mut Out,
        timers: &mut Timers<ClientTimer>,
        request: u32,
        code: ErrorCode,
        logging_in: bool,
    ) -> bool {
        let Some(pending) = self.connects.get_mut(&request) else { return false };
        timers.stop(&ClientTimer::Connect(request));
        if code == ErrorCode::NotLoggedIn && logging_in && !pending.relogged {
            // The server forgot our token (it restarted): the connect
            // waits for the new login, as one made before the first
            // login does, instead of failing.
            pending.relogged = true;
            pending.sends = 0;
            return false;
        }
        let pending = self.connects.remove(&request).expect("looked up above");
        let reason = match code {
            ErrorCode::UnknownPeer => ConnectFailure::UnknownPeer,
            ErrorCode::PeerOffline => ConnectFailure::PeerOffline,
            other => ConnectFailure::Refused(other),
        };
        out.event(ClientEvent::ConnectFailed { peer: pending.peer, reason });
        true
    }
}
