//! The login and the keepalive that holds it (DESIGN §3, "Client ↔ server").
//!
//! A login is retransmitted (500 ms, doubling, at most 4 s apart) until the
//! server accepts or refuses it; after [`ClientConfig::server_timeout`]
//! without an answer the client reports [`ClientEvent::ServerUnreachable`]
//! and keeps trying. Once online, a keepalive every
//! [`ClientConfig::keepalive`] holds the NAT mapping toward the server open
//! and tells the client its reflexive address; a keepalive without an answer
//! is repeated after [`KEEPALIVE_RETRY`]. A server that forgot the login
//! (it restarted) answers `NotLoggedIn`, and the client logs in again.
//!
//! [`ClientConfig::server_timeout`]: crate::client::ClientConfig::server_timeout
//! [`ClientConfig::keepalive`]: crate::client::ClientConfig::keepalive

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::debug;

use super::context::{retransmit_after, ClientTimer, Ctx, Out};
use super::events::ClientEvent;
use crate::nat::NatProfile;
use crate::timer::Timers;
use crate::wire::frame::{ErrorCode, Frame};

/// How soon a keepalive that got no answer is sent again: well inside a
/// 30 s NAT timeout even after a 25 s keepalive interval.
const KEEPALIVE_RETRY: Duration = Duration::from_secs(2);
/// The longest wait between keepalives while the server stays silent.
const KEEPALIVE_RETRY_MAX: Duration = Duration::from_secs(16);
/// The shortest spacing of keepalives sent to check the server mapping.
const CHECK_SPACING: Duration = Duration::from_secs(1);

/// Where the client stands with the server.
#[derive(Debug)]
pub(crate) enum Login {
    /// Sent, not answered yet.
    Pending { request: u32, sends: u32, since: Instant, reported_unreachable: bool },
    /// Refused for good (bad user name, unsupported version).
    Failed,
    /// Accepted; `awaiting_since` is when the oldest unanswered keepalive
    /// went out.
    Online { token: u64, reflexive: SocketAddr, awaiting_since: Option<Instant>, reported_unreachable: bool },
    /// Before the first login, and after a logout.
    LoggedOut,
}

impl Login {
    /// The server's token, while online.
    pub(crate) fn token(&self) -> Option<u64> {
        match self {
            Login::Online { token, .. } => Some(*token),
            _ => None,
        }
    }

    /// Our server-reflexive address, while online.
    pub(crate) fn reflexive(&self) -> Option<SocketAddr> {
        match self {
            Login::Online { reflexive, .. } => Some(*reflexive),
            _ => None,
        }
    }

    pub(crate) fn is_online(&self) -> bool {
        matches!(self, Login::Online { .. })
    }

    /// Online, or on the way there.
    pub(crate) fn is_active(&self) -> bool {
        matches!(self, Login::Online { .. } | Login::Pending { .. })
    }

    /// (Re)starts logging in with request number `request`.
    pub(crate) fn start(&mut self, ctx: &Ctx<'_>, out: &mut Out, timers: &mut Timers<ClientTimer>, request: u32) {
        *self = Login::Pending { request, sends: 1, since: ctx.now, reported_unreachable: false };
        send_login(ctx, out, request);
        timers.set(ClientTimer::Login, ctx.now + retransmit_after(1));
    }

    /// The server accepted login `request`; false when it was not ours.
    ///
    /// A keepalive goes back at once: it carries the token, which proves to
    /// the server that we receive at this address. Until it has that proof
    /// the server sends us nothing else (no stored texts, no offers), so a
    /// login from a spoofed address cannot aim traffic at a victim.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_login_ok(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        timers: &mut Timers<ClientTimer>,
        request: u32,
        token: u64,
        reflexive: SocketAddr,
        profile: NatProfile,
    ) -> bool {
        let Login::Pending { request: expected, .. } = *self else { return false };
        if request != expected {
            return false;
        }
        timers.stop(&ClientTimer::Login);
        *self = Login::Online { token, reflexive, awaiting_since: Some(ctx.now), reported_unreachable: false };
        out.send_to_server(ctx, &Frame::Keepalive { token, profile });
        timers.set(ClientTimer::Keepalive, ctx.now + KEEPALIVE_RETRY.min(ctx.config.keepalive));
        out.event(ClientEvent::LoggedIn { reflexive });
        true
    }

    /// The server answered a keepalive, seeing us at `new`; true when that
    /// is a new address (the NAT rebound or rebooted).
    pub(crate) fn on_keepalive_ack(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        timers: &mut Timers<ClientTimer>,
        new: SocketAddr,
    ) -> bool {
        let Login::Online { reflexive, awaiting_since, reported_unreachable, .. } = self else { return false };
        *awaiting_since = None;
        *reported_unreachable = false;
        // Back to the regular interval.
        timers.set(ClientTimer::Keepalive, ctx.now + ctx.config.keepalive);
        if *reflexive == new {
            return false;
        }
        let old = std::mem::replace(reflexive, new);
        out.event(ClientEvent::ReflexiveChanged { old, new });
        true
    }

    /// An error the server answered `request` with; true when the server
    /// forgot the login and the client must log in again.
    pub(crate) fn on_error(
        &mut self,
        out: &mut Out,
        timers: &mut Timers<ClientTimer>,
        request: u32,
        code: ErrorCode,
    ) -> bool {
        match (&*self, code) {
            (Login::Pending { request: r, .. }, ErrorCode::BadUserName | ErrorCode::UnsupportedVersion)
                if *r == request || request == 0 =>
            {
                timers.stop(&ClientTimer::Login);
                *self = Login::Failed;
                out.event(ClientEvent::LoginFailed { code });
                false
            }
            (Login::Online { .. }, ErrorCode::NotLoggedIn) => {
                // The server forgot us (restart, or our keepalives were lost
                // for too long): log in again. Direct sessions go on.
                timers.stop(&ClientTimer::Keepalive);
                true
            }
            _ => {
                debug!(?code, request, "error for no pending request");
                false
            }
        }
    }

    /// [`ClientTimer::Login`]: the login went unanswered; send it again.
    pub(crate) fn retransmit(&mut self, ctx: &Ctx<'_>, out: &mut Out, timers: &mut Timers<ClientTimer>) {
        let Login::Pending { request, sends, since, reported_unreachable } = self else { return };
        *sends += 1;
        let (request, sends_now) = (*request, *sends);
        if !*reported_unreachable && ctx.now.saturating_duration_since(*since) >= ctx.config.server_timeout {
            *reported_unreachable = true;
            out.event(ClientEvent::ServerUnreachable);
        }
        send_login(ctx, out, request);
        timers.set(ClientTimer::Login, ctx.now + retransmit_after(sends_now));
    }

    /// [`ClientTimer::Keepalive`]: time for a keepalive, carrying `profile`.
    pub(crate) fn keepalive(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        timers: &mut Timers<ClientTimer>,
        profile: NatProfile,
    ) {
        let now = ctx.now;
        let Login::Online { token, awaiting_since, reported_unreachable, .. } = self else { return };
        let token = *token;
        let waiting = awaiting_since.map(|since| now.saturating_duration_since(since));
        if waiting.is_some_and(|w| w >= ctx.config.server_timeout) && !*reported_unreachable {
            *reported_unreachable = true;
            out.event(ClientEvent::ServerUnreachable);
        }
        awaiting_since.get_or_insert(now);
        out.send_to_server(ctx, &Frame::Keepalive { token, profile });
        // While an answer is missing, ask again soon, so a lost keepalive, a
        // rebinding or a restarted server is noticed quickly; the longer the
        // server stays silent, the longer the wait (as long as it has been
        // silent, up to KEEPALIVE_RETRY_MAX), so a fleet of clients does not
        // hammer a server that is down.
        let next = waiting.unwrap_or_default().clamp(KEEPALIVE_RETRY, KEEPALIVE_RETRY_MAX);
        timers.set(ClientTimer::Keepalive, now + next.min(ctx.config.keepalive));
    }

    /// A session's direct path went quiet: make sure our own mapping toward
    /// the server still holds, now. A keepalive goes unless one went out in
    /// the last [`CHECK_SPACING`] and is still unanswered; if the NAT
    /// rebooted, its answer tells us our new address, and the server
    /// follows us there.
    pub(crate) fn check_now(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        timers: &mut Timers<ClientTimer>,
        profile: NatProfile,
    ) {
        let Login::Online { token, awaiting_since, .. } = self else { return };
        if awaiting_since.is_some_and(|since| ctx.now < since + CHECK_SPACING) {
            return;
        }
        let token = *token;
        awaiting_since.get_or_insert(ctx.now);
        out.send_to_server(ctx, &Frame::Keepalive { token, profile });
        let retry = ctx.now + KEEPALIVE_RETRY.min(ctx.config.keepalive);
        if timers.get(&ClientTimer::Keepalive).is_none_or(|at| at > retry) {
            timers.set(ClientTimer::Keepalive, retry);
        }
    }

    /// Tells the server goodbye, when online.
    pub(crate) fn logout(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        if let Login::Online { token, .. } = *self {
            out.send_to_server(ctx, &Frame::Logout { token });
        }
        *self = Login::LoggedOut;
    }
}

fn send_login(ctx: &Ctx<'_>, out: &mut Out, request: u32) {
    let host_candidates = host_candidates(ctx);
    out.send_to_server(ctx, &Frame::Login { request, user: ctx.config.user.clone(), host_candidates });
}

/// Our host candidates: the primary socket's local address, then the
/// configured host addresses with its port; unspecified and repeated
/// addresses left out, and configured loopback ones (a peer on the same
/// machine reaches the primary socket's own address), at most
/// [`MAX_HOST_CANDIDATES`].
pub(crate) fn host_candidates(ctx: &Ctx<'_>) -> Vec<SocketAddr> {
    let port = ctx.primary.1.port();
    let configured =
        ctx.config.host_addresses.iter().filter(|ip| !ip.is_loopback()).map(|ip| SocketAddr::new(*ip, port));
    let mut candidates: Vec<SocketAddr> = Vec::new();
    for c in std::iter::once(ctx.primary.1).chain(configured) {
        let usable = !c.ip().is_unspecified() && c.port() != 0;
        if usable && !candidates.contains(&c) && candidates.len() < MAX_HOST_CANDIDATES {
            candidates.push(c);
        }
    }
    candidates
}

/// The most host candidates a client announces: the offer carries them and
/// the reflexive address, [`MAX_CANDIDATES`](crate::wire::frame::MAX_CANDIDATES) in all.
pub const MAX_HOST_CANDIDATES: usize = crate::wire::frame::MAX_CANDIDATES - 1;
