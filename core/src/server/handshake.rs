//! The server's side of the client–server channel (DESIGN §7, issue 20):
//! Noise IK handshakes, the names they bind, and sealed frames.
//!
//! A login is a Noise IK handshake. Its first message (a Hello) carries the
//! `Login` frame encrypted to the server's key and proves the client's
//! static key; the server answers with message 2 (a Welcome) carrying
//! `LoginOk`, or an error. Nothing else is answered without a channel but
//! STUN Binding and a key request, and every such answer is smaller than
//! its request.
//!
//! A completed handshake is *pending* until the client's first sealed
//! frame arrives: the client could only seal it with keys from the
//! Welcome, so it proves the client receives at the Hello's source address
//! (a spoofed Hello never gets further). Only then does the user go online,
//! replacing an older login of the same name and key, and only then does
//! the name become durable, bound to its key for good. A name bound to
//! another key is refused with `KeyMismatch`, at the Hello when the
//! binding is known (online, cached or read from the store), and again at
//! the proof, for a race between two first logins.

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use tracing::debug;

use super::storage::Waiting;
use super::{valid_user_name, Server, ServerEvent, User};
use crate::machine::SocketId;
use crate::messaging::StoreOp;
use crate::nat::NatProfile;
use crate::secure::{self, ChannelEnd, HelloReceived, OpenError, PublicKey};
use crate::wire;
use crate::wire::channel::{self as layout, Hello, MAC_LEN};
use crate::wire::frame::{ErrorCode, Frame};

/// A completed handshake waiting for its client's first sealed frame.
#[derive(Debug)]
pub(super) struct PendingLogin {
    pub(super) name: String,
    pub(super) key: PublicKey,
    pub(super) channel: ChannelEnd,
    /// Where the Hello came from, and so the Welcome went: the address
    /// the proof vouches for, whichever address the first sealed frame
    /// comes from (NAT discovery seals frames on another socket).
    pub(super) socket: SocketId,
    pub(super) reflexive: SocketAddr,
    pub(super) host_candidates: Vec<SocketAddr>,
    pub(super) since: Instant,
}

/// A Hello whose name's binding the store is asked for.
#[derive(Debug)]
pub(super) struct HelloWait {
    hello: HelloReceived,
    socket: SocketId,
    from: SocketAddr,
    hello_len: usize,
    request: u32,
    name: String,
    key: PublicKey,
    host_candidates: Vec<SocketAddr>,
}

/// The mac1 of the last [`MAX_SEEN_HELLOS`] Hellos the server spent a
/// Diffie–Hellman on: a copy of one of them (a replay) is dropped before
/// its DH, and makes no pending login. At 1,000 handshakes a second that is
/// the last minute; an older replay costs one DH and a pending login that
/// is forgotten in 10 s.
#[derive(Debug, Default)]
pub(super) struct SeenHellos {
    seen: BTreeSet<[u8; MAC_LEN]>,
    order: VecDeque<[u8; MAC_LEN]>,
}

/// How many Hellos [`SeenHellos`] remembers.
pub(super) const MAX_SEEN_HELLOS: usize = 65_536;

impl SeenHellos {
    /// True the first time `mac1` is seen (among the last remembered).
    fn insert(&mut self, mac1: [u8; MAC_LEN]) -> bool {
        if !self.seen.insert(mac1) {
            return false;
        }
        self.order.push_back(mac1);
        if self.order.len() > MAX_SEEN_HELLOS {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
        true
    }
}

/// The most completed handshakes waiting for their proof, and the most
/// Hellos waiting for a store read. Past either, the oldest pending login
/// is forgotten, or the Hello dropped (its client sends it again).
pub(super) const MAX_PENDING_LOGINS: usize = 10_000;
const MAX_HELLOS_AWAITING_STORE: usize = 1_000;

impl Server {
    /// A key request: answer with the server's public key, which is smaller
    /// than the padded request.
    pub(super) fn key_request(&mut self, socket: SocketId, from: SocketAddr, datagram: &[u8]) {
        let Some(nonce) = layout::parse_key_request(datagram) else {
            self.stats.malformed += 1;
            return;
        };
        let reply = layout::key_reply(nonce, &self.config.key.public().0);
        self.send(socket, from, wire::payload_bytes(reply));
    }

    pub(super) fn hello(&mut self, now: Instant, socket: SocketId, from: SocketAddr, datagram: &[u8]) {
        let Some(hello) = Hello::parse(datagram) else {
            self.stats.malformed += 1;
            return;
        };
        // mac1 first: a hash, before any Diffie–Hellman.
        if !secure::same(&self.mac_keys.mac1(hello.before_mac1), &hello.mac1) {
            debug!(%from, "hello with a bad mac1");
            self.stats.handshakes_refused += 1;
            return;
        }
        if self.cookies.under_load(now, self.config.handshakes_per_second)
            && !self.cookies.mac2_valid(now, from, hello.before_mac2, &hello.mac2)
        {
            let cookie = self.cookies.cookie(now, from);
            let nonce = self.cookies.nonce();
            let sealed = self.mac_keys.seal_cookie(&cookie, &nonce, &hello.mac1);
            self.stats.cookies_sent += 1;
            self.send(socket, from, wire::payload_bytes(layout::cookie_reply(hello.sender, &nonce, &sealed)));
            return;
        }
        if !self.seen_hellos.insert(hello.mac1) {
            // A replay: a client's retransmission is a fresh Hello (new
            // ephemeral key, new mac1), so only a copy repeats one.
            debug!(%from, "a replayed hello");
            self.stats.replayed += 1;
            return;
        }
        self.cookies.count_handshake(now);
        let label = self.rng.next_u64();
        let Some(received) =
            HelloReceived::read_with(&self.config.key, hello.sender, hello.noise, self.rng.fork(label))
        else {
            debug!(%from, "hello that does not decrypt");
            self.stats.handshakes_refused += 1;
            return;
        };
        let Ok(Frame::Login { request, user, host_candidates }) = Frame::decode(received.payload()) else {
            debug!(%from, "hello without a login inside");
            self.stats.handshakes_refused += 1;
            return;
        };
        let key = received.client_key();
        let wait = HelloWait {
            hello: received,
            socket,
            from,
            hello_len: datagram.len(),
            request,
            name: user,
            key,
            host_candidates,
        };
        if !valid_user_name(&wait.name) {
            return self.refuse_hello(wait, ErrorCode::BadUserName);
        }
        match self.binding(&wait.name) {
            Some(bound) => self.decide_hello(now, wait, Some(bound)),
            None if self.hellos_awaiting_store >= MAX_HELLOS_AWAITING_STORE => {
                debug!(%from, "too many hellos wait for the store; dropped");
                self.stats.handshakes_refused += 1;
            }
            None => {
                self.hellos_awaiting_store += 1;
                let user = wait.name.clone();
                self.storage.request(StoreOp::ReadUser { user }, Waiting::Hello(Box::new(wait)));
            }
        }
    }

    /// The key `name` is bound to, as far as memory knows: online, pending
    /// or cached. `None`: ask the store.
    fn binding(&self, name: &str) -> Option<PublicKey> {
        self.users.get(name).map(|u| u.key).or_else(|| self.known_users.key(name))
    }

    /// The store answered the binding of a waiting Hello's name.
    pub(super) fn hello_binding_read(&mut self, now: Instant, wait: HelloWait, bound: Option<PublicKey>) {
        self.hellos_awaiting_store -= 1;
        if let Some(key) = bound {
            self.known_users.insert(wait.name.clone(), key);
        }
        self.decide_hello(now, wait, bound)
    }

    /// A waiting Hello was given up (the store failed).
    pub(super) fn hello_dropped(&mut self) {
        self.hellos_awaiting_store -= 1;
        self.stats.handshakes_refused += 1;
    }

    fn decide_hello(&mut self, now: Instant, wait: HelloWait, bound: Option<PublicKey>) {
        if bound.is_some_and(|key| key != wait.key) {
            debug!(user = %wait.name, "a login with another key than the name's");
            self.stats.key_mismatches += 1;
            return self.refuse_hello(wait, ErrorCode::KeyMismatch);
        }
        if !self.users.contains(&wait.name) && self.users.len() >= self.config.max_users {
            debug!(user = %wait.name, "the server is full; a login refused");
            self.stats.rate_limited += 1;
            return self.refuse_hello(wait, ErrorCode::RateLimited);
        }
        let token = self.fresh_token();
        let login_ok = Frame::LoginOk { request: wait.request, token, reflexive: wait.from };
        let Some((welcome, channel)) = self.welcome(wait.hello, token, wait.hello_len, &login_ok) else {
            return;
        };
        let login_ok = login_ok.encode();
        if self.pending.len() >= MAX_PENDING_LOGINS {
            let oldest = self.pending.iter().min_by_key(|(_, p)| p.since).map(|(t, _)| *t);
            if let Some(token) = oldest {
                self.pending.remove(&token);
            }
        }
        self.pending.insert(
            token,
            PendingLogin {
                name: wait.name,
                key: wait.key,
                channel,
                socket: wait.socket,
                reflexive: wait.from,
                host_candidates: wait.host_candidates,
                since: now,
            },
        );
        self.stats.handshakes += 1;
        self.send_carrying(wait.socket, wait.from, welcome, login_ok);
    }

    /// Completes the handshake to carry `code`: the client then knows the
    /// refusal came from the server it pinned.
    fn refuse_hello(&mut self, wait: HelloWait, code: ErrorCode) {
        let error = Frame::Error { request: wait.request, code };
        if let Some((welcome, _)) = self.welcome(wait.hello, 0, wait.hello_len, &error) {
            self.send_carrying(wait.socket, wait.from, welcome, error.encode());
        }
    }

    /// Noise message 2 carrying `frame`, and the channel it opens; `None`
    /// (and nothing sent) if it would be larger than the Hello.
    fn welcome(
        &mut self,
        hello: HelloReceived,
        token: u64,
        hello_len: usize,
        frame: &Frame,
    ) -> Option<(Vec<u8>, ChannelEnd)> {
        let (welcome, channel) = hello.answer(&frame.encode(), token)?;
        if welcome.len() > hello_len {
            debug!(len = welcome.len(), hello_len, "a welcome larger than its hello; not sent");
            return None;
        }
        Some((welcome, channel))
    }

    /// A sealed frame: open it with its channel, prove a pending login,
    /// then handle the frame inside as from that channel's user.
    pub(super) fn sealed(&mut self, now: Instant, socket: SocketId, from: SocketAddr, datagram: &[u8]) {
        let Some((receiver, _, _)) = layout::parse_sealed(datagram) else {
            self.stats.malformed += 1;
            return;
        };
        let opened = if let Some((_, user)) = self.users.by_token_mut(receiver) {
            user.channel.open_checked(datagram)
        } else if let Some(pending) = self.pending.get_mut(&receiver) {
            pending.channel.open_checked(datagram)
        } else {
            // A channel this server does not hold (it restarted, or forgot
            // a silent user): say so, in fewer bytes than were sent. The
            // client only believes it while a keepalive waits for an answer.
            self.stats.bad_token += 1;
            if self.limits.allow(now, from.ip()) {
                self.reply_plain(socket, from, Frame::Error { request: 0, code: ErrorCode::NotLoggedIn });
            } else {
                self.stats.rate_limited += 1;
            }
            return;
        };
        let frame = match opened {
            Ok(plain) => Frame::decode(&plain),
            Err(error) => {
                debug!(%from, ?error, "sealed frame refused");
                match error {
                    OpenError::Replayed => self.stats.replayed += 1,
                    OpenError::Forged | OpenError::Malformed => self.stats.unauthenticated += 1,
                }
                return;
            }
        };
        let Ok(frame) = frame else {
            self.stats.malformed += 1;
            return;
        };
        if frame.token().is_some_and(|token| token != receiver) {
            debug!(%from, "a sealed frame naming another channel's token");
            self.stats.bad_token += 1;
            return;
        }
        if self.pending.contains_key(&receiver) && !self.prove(now, receiver) {
            return;
        }
        self.current = Some(receiver);
        self.handle_frame(now, socket, from, frame);
        self.current = None;
    }

    /// The pending login `token` proved its address: it goes online. False
    /// when it was refused instead (its name got bound to another key).
    fn prove(&mut self, now: Instant, token: u64) -> bool {
        let Some(pending) = self.pending.remove(&token) else { return false };
        let (socket, reflexive) = (pending.socket, pending.reflexive);
        if self.binding(&pending.name).is_some_and(|key| key != pending.key) {
            // Another first login under this name won the race.
            self.stats.key_mismatches += 1;
            let error = Frame::Error { request: 0, code: ErrorCode::KeyMismatch }.encode();
            if let Some(datagram) = pending.channel.seal(&error) {
                self.send_carrying(socket, reflexive, datagram, error);
            }
            return false;
        }
        let name = pending.name.clone();
        if !self.users.contains(&name) && self.users.len() >= self.config.max_users {
            // Filled up since its Hello was answered.
            debug!(user = %name, "the server is full; a login refused");
            self.stats.rate_limited += 1;
            let error = Frame::Error { request: 0, code: ErrorCode::RateLimited }.encode();
            if let Some(datagram) = pending.channel.seal(&error) {
                self.send_carrying(socket, reflexive, datagram, error);
            }
            return false;
        }
        if self.users.contains(&name) {
            // A new login replaces the old one; its sessions are stale.
            self.go_offline(&name);
        }
        self.known_users.insert(name.clone(), pending.key);
        self.streams.mark_bound(socket);
        self.users.insert(
            name.clone(),
            token,
            User {
                key: pending.key,
                channel: pending.channel,
                reflexive,
                socket,
                udp_reflexive: (!self.streams.contains(socket)).then_some(reflexive),
                host_candidates: pending.host_candidates,
                profile: NatProfile::default(),
                profile_known: false,
                last_seen: now,
                sessions: Default::default(),
                connects: Default::default(),
            },
        );
        self.events.push_back(ServerEvent::UserOnline { user: name.clone(), reflexive });
        self.mailbox_login(&name, pending.key);
        true
    }

    /// The store bound `name` to `bound`: if that is not the key of the
    /// user online under the name, a concurrent first login won; this one
    /// goes.
    pub(super) fn user_bound(&mut self, name: &str, bound: PublicKey) {
        self.known_users.insert(name.to_owned(), bound);
        let Some(user) = self.users.get(name) else { return };
        if user.key != bound {
            self.stats.key_mismatches += 1;
            self.send_to_user(name, Frame::Error { request: 0, code: ErrorCode::KeyMismatch });
            self.go_offline(name);
        }
    }
}
