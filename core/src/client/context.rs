//! What the client's parts share: the output queues they write to, the
//! context they send with, and the client's named timers.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::config::ClientConfig;
use super::events::ClientEvent;
use crate::machine::{SocketId, Transmit};
use crate::secure::ChannelEnd;
use crate::wire::{self, frame::Frame};

/// Output queues shared by the client and its parts, drained by
/// [`Machine::poll_transmit`](crate::Machine::poll_transmit) and
/// [`Machine::poll_event`](crate::Machine::poll_event).
#[derive(Debug, Default)]
pub(crate) struct Out {
    /// File transfers given an id so far ([`Out::fresh_file_id`]).
    pub(crate) files_made: u64,
    pub(crate) transmits: VecDeque<Transmit>,
    pub(crate) events: VecDeque<ClientEvent>,
    /// The time of the last input: what `poll_timeout` answers while
    /// output waits.
    pub(crate) now: Option<Instant>,
    /// A session's direct path went quiet: the client should make sure its
    /// own mapping toward the server still holds (a keepalive now), since a
    /// NAT reboot breaks both at once.
    pub(crate) check_server: bool,
    /// The extra sockets the driver holds for the client now (opened on
    /// request, not released since): a held datagram is answered only from
    /// one of these or the primary.
    pub(crate) live_sockets: std::collections::BTreeSet<SocketId>,
}

impl Out {
    /// Queues a datagram built elsewhere (a STUN message).
    pub(crate) fn send(&mut self, socket: SocketId, to: SocketAddr, ttl: Option<u8>, payload: Vec<u8>) {
        self.push(socket, to, ttl, wire::payload_bytes(payload));
    }
    /// Queues `frame` to the server, from the primary socket, sealed in
    /// the channel; dropped while there is none (not logged in: every
    /// caller sends again once it is).
    pub(crate) fn send_to_server(&mut self, ctx: &Ctx<'_>, frame: &Frame) {
        self.send_to_server_at(ctx, ctx.server_socket, ctx.server_address(), frame);
    }
    /// Queues a datagram of the login (a Hello, a key request) to the
    /// server over UDP, and over the TCP connection too while one is open:
    /// whichever answers first carries the login (see `route`).
    pub(crate) fn send_login(&mut self, ctx: &Ctx<'_>, datagram: Vec<u8>, plaintext: Option<Vec<u8>>) {
        if let Some(conn) = ctx.stream {
            self.push_login(conn, ctx.tcp_address(), datagram.clone(), plaintext.clone());
        }
        self.push_login(ctx.primary.0, ctx.config.server, datagram, plaintext);
    }
    fn push_login(&mut self, socket: SocketId, to: SocketAddr, datagram: Vec<u8>, plaintext: Option<Vec<u8>>) {
        match plaintext {
            Some(frame) => self.send_carrying(socket, to, datagram, frame),
            None => self.send(socket, to, None, datagram),
        }
    }
    /// Queues `frame`, sealed in the channel, to one of the server's
    /// addresses from `socket` (NAT discovery asks several).
    pub(crate) fn send_to_server_at(&mut self, ctx: &Ctx<'_>, socket: SocketId, to: SocketAddr, frame: &Frame) {
        let plain = frame.encode();
        match ctx.channel.and_then(|channel| channel.seal(&plain)) {
            Some(sealed) => self.send_carrying(socket, to, sealed, plain),
            None => tracing::debug!(tag = frame.tag(), "no channel to the server; not sent"),
        }
    }
    /// Queues `frame` to the server as [`Out::send_to_server`] does, with
    /// `shown` as its [`Transmit::plaintext`]: a relay frame shown with the
    /// peer frame its sealed payload carries, for traces (the server sees
    /// only the sealed bytes).
    pub(crate) fn send_to_server_showing(&mut self, ctx: &Ctx<'_>, frame: &Frame, shown: Vec<u8>) {
        let plain = frame.encode();
        match ctx.channel.and_then(|channel| channel.seal(&plain)) {
            Some(sealed) => {
                self.send_carrying(ctx.server_socket, ctx.server_address(), sealed, shown);
                // A peer datagram the session retransmits (or does without):
                // a full TCP write buffer may drop it, as the server does.
                if let Some(t) = self.transmits.back_mut() {
                    t.droppable = true;
                }
            }
            None => tracing::debug!(tag = frame.tag(), "no channel to the server; not sent"),
        }
    }
    /// Queues `frame` once `seal` has signed its encoding in place.
    fn push(&mut self, socket: SocketId, destination: SocketAddr, ttl: Option<u8>, payload: Bytes) {
        self.transmits.push_back(Transmit { socket, destination, ttl, payload, plaintext: None, droppable: false });
    }
    /// Queues a datagram of the server channel that carries `frame` (see
    /// [`Transmit::plaintext`]).
    pub(crate) fn send_carrying(
        &mut self,
        socket: SocketId,
        destination: SocketAddr,
        payload: Vec<u8>,
        frame: Vec<u8>,
    ) {
        self.send_carrying_ttl(socket, destination, None, payload, frame);
    }
    /// [`Out::send_carrying`] with an IP TTL (a sealed opener).
    pub(crate) fn send_carrying_ttl(
        &mut self,
        socket: SocketId,
        destination: SocketAddr,
        ttl: Option<u8>,
        payload: Vec<u8>,
        frame: Vec<u8>,
    ) {
        let (payload, plaintext) = (wire::payload_bytes(payload), Some(Bytes::from(frame)));
        self.transmits.push_back(Transmit { socket, destination, ttl, payload, plaintext, droppable: false });
    }
    /// A new transfer's id, unique within the client: drawn here because
    /// both the client (an offer) and a session (a peer's offer) make them.
    pub(crate) fn fresh_file_id(&mut self) -> crate::client::FileId {
        self.files_made += 1;
        crate::client::FileId(self.files_made)
    }

    pub(crate) fn event(&mut self, event: ClientEvent) {
        if let ClientEvent::ReleaseSocket { socket } = event {
            self.live_sockets.remove(&socket);
        }
        self.events.push_back(event);
    }
}

/// What a part of the client needs to send: the time, the settings, the
/// primary socket and what the login established.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ctx<'a> {
    pub(crate) now: Instant,
    pub(crate) config: &'a ClientConfig,
    /// The login's token, while logged in.
    pub(crate) token: Option<u64>,
    /// The channel every frame to the server is sealed in, while logged in.
    pub(crate) channel: Option<&'a ChannelEnd>,
    pub(crate) primary: (SocketId, SocketAddr),
    /// The primary socket's server-reflexive address, while logged in.
    pub(crate) reflexive: Option<SocketAddr>,
    /// Where sealed frames to the server leave from: the primary socket, or
    /// the TCP connection while the client reaches the server over TCP.
    pub(crate) server_socket: SocketId,
    /// The TCP connection to the server, while one is open.
    pub(crate) stream: Option<SocketId>,
}

impl Ctx<'_> {
    /// The server's address on the way `server_socket` goes.
    pub(crate) fn server_address(&self) -> SocketAddr {
        if self.server_socket == self.primary.0 {
            self.config.server
        } else {
            self.tcp_address()
        }
    }

    /// The server's TCP address.
    pub(crate) fn tcp_address(&self) -> SocketAddr {
        self.config.server_tcp.unwrap_or(self.config.server)
    }
}

/// The client's own timers (each session keeps its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ClientTimer {
    Login,
    Keepalive,
    Connect(u32),
    Discovery,
    /// The login waited [`ClientConfig::tcp_delay`](super::ClientConfig::tcp_delay)
    /// over UDP (or a TCP connection failed and is tried again).
    TryTcp,
    /// A keepalive waits for its answer over UDP: another goes, and UDP is
    /// given up for TCP once silent long enough (see `route`).
    UdpSilence,
    /// On TCP: time to ask whether UDP works again.
    UdpRetry,
}

/// Retransmission schedule for requests to the server: 500 ms, doubling, at
/// most 4 s between sends.
pub(crate) fn retransmit_after(sends: u32) -> Duration {
    Duration::from_millis(500 * 2u64.pow(sends.saturating_sub(1).min(3)))
}
