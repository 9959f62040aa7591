//! Connect coordination and the relay (DESIGN §3 steps 4 and 5): a connect
//! creates a session, offers it to both members at the same instant and
//! keeps offering until both acknowledge; the relay forwards frames between
//! the two members of a session it created, and nobody else.

use std::net::SocketAddr;
use std::time::Instant;

use tracing::debug;

use super::limits::Bucket;
use super::storage::Waiting;
use super::{valid_user_name, RelaySession, Server, ServerEvent, ServerStats, ServerTimer, User};
use crate::machine::SocketId;
use crate::messaging::StoreOp;
use crate::nat::{choose_strategy, Strategy};
use crate::wire;
use crate::wire::frame::{CloseReason, ErrorCode, Frame, SessionId, Transport};

impl Server {
    pub(super) fn connect(
        &mut self,
        now: Instant,
        socket: SocketId,
        from: SocketAddr,
        token: u64,
        request: u32,
        peer: String,
    ) {
        let Some((name, initiator)) = self.users.by_token_mut(token) else {
            self.stats.bad_token += 1;
            self.not_logged_in(socket, from, request);
            return;
        };
        let name = name.to_owned();
        initiator.last_seen = now;
        if let Some(&session) = initiator.connects.get(&request) {
            // A retransmitted connect: the offers are (re)sent by the timer;
            // answer the initiator at once as well. A session abandoned
            // meanwhile (offers never acknowledged) is made anew below.
            if self.sessions.contains_key(&session) {
                self.send_offer(session, &name);
                return;
            }
            initiator.connects.remove(&request);
        }
        if peer == name || !valid_user_name(&peer) {
            self.reply(socket, from, Frame::Error { request, code: ErrorCode::BadUserName });
            return;
        }
        if !self.users.contains(&peer) && self.pending.values().any(|p| p.name == peer) {
            // The peer completed its handshake moments ago and has not yet
            // shown that it receives at its address: no offer goes there
            // until it has, and it is not offline either. Stay silent; the
            // initiator's retransmission comes back. (Found by the mio
            // runtime's TCP tests: such a connect was told `UnknownPeer`.)
            debug!(peer = %peer, "connect deferred until the peer proves its address");
            return;
        }
        if !self.users.contains(&peer) {
            if self.known_users.contains(&peer) {
                self.reply(socket, from, Frame::Error { request, code: ErrorCode::PeerOffline });
            } else {
                // Offline; whether the user exists at all, the store knows.
                let reply_to = (socket, from, token);
                let user = peer.clone();
                self.storage.request(StoreOp::ReadUser { user }, Waiting::ConnectPeer { reply_to, request, peer });
            }
            return;
        }
        let too_many = |u: &User| u.sessions.len() >= self.config.max_sessions_per_user;
        if [&name, &peer].into_iter().any(|member| self.users.get(member).is_some_and(too_many)) {
            self.reply(socket, from, Frame::Error { request, code: ErrorCode::RateLimited });
            return;
        }
        let session = loop {
            let id = SessionId(self.rng.next_u64());
            if !self.sessions.contains_key(&id) {
                break id;
            }
        };
        // The session is made at once, whatever the members' NAT discovery
        // is doing: it is usable over the relay from the offer on. With both
        // profiles known the strategy is chosen from them; otherwise it is
        // pending, and the initiator chooses it once both are measured (no
        // probe is wasted on a pair that turns out to have no direct path).
        let user = |member: &str| self.users.get(member).expect("both members are online");
        let strategy = if user(&name).profile_known && user(&peer).profile_known {
            choose_strategy(&user(&name).profile, &user(&peer).profile)
        } else {
            Strategy::Pending
        };
        self.sessions.insert(
            session,
            RelaySession {
                initiator: name.clone(),
                responder: peer.clone(),
                strategy,
                request,
                unacked: [name.clone(), peer.clone()].into_iter().collect(),
                offers_sent: 1,
                established: false,
                relay_bucket: None,
            },
        );
        for member in [&name, &peer] {
            let user = self.users.get_mut(member).expect("both members are online");
            user.sessions.insert(session);
        }
        self.users.get_mut(&name).expect("initiator is online").connects.insert(request, session);
        self.events.push_back(ServerEvent::SessionCreated {
            session,
            initiator: name.clone(),
            responder: peer.clone(),
            strategy,
        });
        // Both offers leave in the same instant (DESIGN §3 step 4).
        self.send_offer(session, &name);
        self.send_offer(session, &peer);
        self.timers.set(ServerTimer::Offer(session), now + self.config.offer_retransmit);
    }

    fn send_offer(&mut self, session: SessionId, member: &str) {
        let Some(s) = self.sessions.get(&session) else { return };
        let initiator = s.initiator == member;
        let peer_name = if initiator { &s.responder } else { &s.initiator };
        let (Some(user), Some(peer)) = (self.users.get(member), self.users.get(peer_name)) else { return };
        // The reflexive address, the one candidate the server vouches for,
        // always comes last: clients direct bulk probing only there.
        // A member reached over TCP: its reflexive address is its
        // connection's, no UDP endpoint. Its last UDP address, or else the
        // connection's, still comes last: the peer reads the public IP from
        // it to tell a shared LAN (and probes there, small probes only).
        let peer_transport = self.transport_of(peer);
        let public = match peer_transport {
            Transport::Udp => peer.reflexive,
            Transport::Tcp => peer.udp_reflexive.unwrap_or(peer.reflexive),
        };
        let mut peer_candidates: Vec<SocketAddr> = peer
            .host_candidates
            .iter()
            .filter(|c| **c != public)
            .take(wire::frame::MAX_CANDIDATES - 1)
            .copied()
            .collect();
        peer_candidates.push(public);
        let frame = Frame::Offer {
            request: if initiator { s.request } else { 0 },
            session,
            // The directory's word for the other member's key: the members
            // make the session's keys between themselves from it.
            peer_key: peer.key.0,
            initiator,
            peer: peer_name.clone(),
            peer_candidates,
            strategy: s.strategy,
            peer_profile: peer.profile,
            peer_transport,
        };
        let (socket, to) = (user.socket, user.reflexive);
        let Some((token, _)) = self.users.get_with_token(member) else { return };
        self.send_in(token, socket, to, frame);
    }

    /// `mover` is at a new address: offer the session again to its peer,
    /// with the mover's new candidates, until acknowledged. The peer's
    /// client takes the offer's reflexive address as the mover's public
    /// address, the one the server vouches for and the only one it aims
    /// predicted or birthday probes at.
    pub(super) fn reoffer_to_peer(&mut self, now: Instant, session: SessionId, mover: &str) {
        let Some(s) = self.sessions.get_mut(&session) else { return };
        let peer = if s.initiator == mover { s.responder.clone() } else { s.initiator.clone() };
        if !self.users.contains(&peer) {
            return;
        }
        s.unacked.insert(peer.clone());
        s.offers_sent = 1;
        self.send_offer(session, &peer);
        self.timers.set(ServerTimer::Offer(session), now + self.config.offer_retransmit);
    }

    pub(super) fn resend_offers(&mut self, now: Instant, session: SessionId) {
        let Some(s) = self.sessions.get_mut(&session) else { return };
        if s.unacked.is_empty() {
            return;
        }
        if s.offers_sent >= self.config.offer_attempts {
            if s.established {
                // A re-offer after a move went unheard: the session goes on;
                // the peer learns the new address from the next move, or
                // never needs it.
                debug!(%session, "a re-offer was never acknowledged");
                s.unacked.clear();
                return;
            }
            debug!(%session, "offer never acknowledged; abandoning the session");
            self.end_session(session, CloseReason::PeerOffline);
            return;
        }
        s.offers_sent += 1;
        let members: Vec<String> = s.unacked.iter().cloned().collect();
        for member in members {
            self.send_offer(session, &member);
        }
        self.timers.set(ServerTimer::Offer(session), now + self.config.offer_retransmit);
    }

    pub(super) fn relay(&mut self, now: Instant, from: SocketAddr, token: u64, session: SessionId, payload: Vec<u8>) {
        let refuse = |stats: &mut ServerStats, why: &str| {
            debug!(%from, %session, why, "relay frame refused");
            stats.relay_refused += 1;
        };
        let Some((name, user)) = self.users.by_token(token) else {
            return refuse(&mut self.stats, "unknown token");
        };
        if user.reflexive != from {
            return refuse(&mut self.stats, "source is not the member's address");
        }
        let Some(s) = self.sessions.get_mut(&session) else {
            return refuse(&mut self.stats, "unknown session");
        };
        // The relay carries the members' end-to-end datagrams of this
        // session and nothing else; what is inside, it cannot read.
        if wire::channel::peer_session(&payload) != Some(session.0) {
            return refuse(&mut self.stats, "not a datagram of this session");
        }
        let other = if s.initiator == name {
            &s.responder
        } else if s.responder == name {
            &s.initiator
        } else {
            return refuse(&mut self.stats, "not a member");
        };
        let Some((peer_token, peer)) = self.users.get_with_token(other) else {
            return refuse(&mut self.stats, "peer offline, or not yet proved to receive at its address");
        };
        let (socket, to) = (peer.socket, peer.reflexive);
        let (burst, rate) = (self.config.relay_burst_bytes as f64, self.config.relay_rate_bytes as f64);
        let bucket = s.relay_bucket.get_or_insert_with(|| Bucket::full(burst, now));
        if !bucket.take(now, burst, rate, payload.len() as f64) {
            self.stats.relay_throttled += 1;
            return;
        }
        self.users.by_token_mut(token).expect("checked above").1.last_seen = now;
        self.stats.relayed += 1;
        // Relayed datagrams are the one thing a slow stream may drop: the
        // session's own retransmission covers them (signaling never is).
        self.send_in_as(peer_token, socket, to, Frame::Relayed { session, payload }, true);
    }

    /// Removes a session and tells the members still online.
    pub(super) fn end_session(&mut self, session: SessionId, reason: CloseReason) {
        let Some(s) = self.sessions.remove(&session) else { return };
        self.timers.stop(&ServerTimer::Offer(session));
        for member in [&s.initiator, &s.responder] {
            if let Some(user) = self.users.get_mut(member) {
                user.sessions.remove(&session);
                self.send_to_user(member, Frame::SessionEnded { session, reason });
            }
        }
        self.events.push_back(ServerEvent::SessionEnded { session });
    }
}
