//! A session's end-to-end encryption (DESIGN §7, issue 20): its Noise IK
//! handshake with the peer, through the relay, and then every peer frame
//! sealed in the session's keys ([`crate::secure::SessionCipher`]).
//!
//! The keys come from the two users' static keys: ours
//! ([`ClientConfig::identity`](crate::client::ClientConfig::identity)) and
//! the peer's as the server's directory named it in the offer, checked
//! against our pins before the session was made.
//!
//! The session's *responder* opens the handshake: it sends the `PeerHello`
//! at the offer, and again (500 ms, doubling, at most 4 s apart) until the
//! `PeerWelcome` comes. The hello reaches the session's initiator one relay
//! leg after the offers (which both members get at the same moment), and
//! answering it gives the initiator its keys: the member who asked for the
//! session, usually the first to send, sends at once. The other end answers
//! a repeated hello with the same welcome, so both always hold the same
//! keys. Until its handshake is done a session sends nothing but the
//! handshake: its stream keeps what the user sent and sends it once the
//! keys exist.

use std::net::SocketAddr;
use std::time::Instant;

use tracing::debug;

use crate::client::context::{Ctx, Out};
use crate::machine::SocketId;
use crate::rng::Rng;
use crate::secure::{PeerHelloReceived, PeerHelloSent, PublicKey, SessionCipher};
use crate::wire::channel::tag;
use crate::wire::frame::{Frame, SessionId};

#[derive(Debug)]
pub(crate) struct Seal {
    session: SessionId,
    /// The peer's static key: the handshake must prove it.
    peer_key: PublicKey,
    state: State,
    /// The last counter stamped into a peer frame: probes' acks echo it.
    counter: u64,
    /// When the session began: the time of a send that has no input time.
    began: Instant,
    /// Sealed datagrams that arrived before our keys (the peer got its
    /// keys first and sent at once), opened once ours exist.
    early: Vec<Early>,
}

/// Most sealed datagrams held for a session until its keys exist: one
/// burst of probes and stream messages. Beyond it (or forged ones filling
/// it) they are dropped, as loss is.
const MAX_EARLY: usize = 8;

/// A sealed datagram held until the session's keys exist.
#[derive(Debug)]
pub(crate) struct Early {
    pub(crate) socket: SocketId,
    pub(crate) from: SocketAddr,
    pub(crate) datagram: Vec<u8>,
    pub(crate) relayed: bool,
}

#[derive(Debug)]
enum State {
    /// Our hello is out (its bytes kept to resend).
    Initiating { hello: Box<PeerHelloSent>, datagram: Vec<u8> },
    /// We wait for the peer's hello.
    Awaiting { rng: Box<Rng> },
    Established {
        cipher: Box<SessionCipher>,
        /// The peer's hello and our answer, to answer a resent hello (its
        /// welcome was lost) with the same welcome.
        answered: Option<(Vec<u8>, Vec<u8>)>,
    },
}

/// What a handshake datagram from the peer led to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing: not ours, stale, or not authentic.
    Ignored,
    /// The keys exist now; relay `reply` (the welcome), if any.
    Established { reply: Option<Vec<u8>> },
    /// A resent hello: relay the same welcome again.
    Answer(Vec<u8>),
}

impl Seal {
    /// The end that opens the handshake: returns it and the hello to relay.
    pub(crate) fn sending_hello(ctx: &Ctx<'_>, session: SessionId, peer_key: PublicKey, rng: Rng) -> (Seal, Vec<u8>) {
        let (hello, datagram) = PeerHelloSent::start_with(&ctx.config.identity, &peer_key, session, rng);
        let state = State::Initiating { hello: Box::new(hello), datagram: datagram.clone() };
        (Seal { session, peer_key, state, counter: 0, began: ctx.now, early: Vec::new() }, datagram)
    }

    /// The end that waits for the peer's hello.
    pub(crate) fn awaiting_hello(ctx: &Ctx<'_>, session: SessionId, peer_key: PublicKey, rng: Rng) -> Seal {
        let state = State::Awaiting { rng: Box::new(rng) };
        Seal { session, peer_key, state, counter: 0, began: ctx.now, early: Vec::new() }
    }

    pub(crate) fn is_established(&self) -> bool {
        matches!(self.state, State::Established { .. })
    }

    /// Our hello, while we wait for the welcome.
    pub(crate) fn hello_to_resend(&self) -> Option<&[u8]> {
        match &self.state {
            State::Initiating { datagram, .. } => Some(datagram),
            _ => None,
        }
    }

    /// A `PeerHello` or `PeerWelcome` the relay brought.
    pub(crate) fn on_handshake(&mut self, ctx: &Ctx<'_>, datagram: &[u8]) -> Step {
        match (&mut self.state, datagram[0]) {
            (State::Initiating { hello, .. }, tag::PEER_WELCOME) => match hello.finish(datagram, ctx.now) {
                Some(cipher) => {
                    self.state = State::Established { cipher: Box::new(cipher), answered: None };
                    Step::Established { reply: None }
                }
                None => Step::Ignored,
            },
            (State::Awaiting { rng }, tag::PEER_HELLO) => {
                let identity = &ctx.config.identity;
                let rng = rng.fork(self.session.0);
                match PeerHelloReceived::answer_with(identity, &self.peer_key, self.session, datagram, ctx.now, rng) {
                    Some((welcome, cipher)) => {
                        let answered = Some((datagram.to_vec(), welcome.clone()));
                        self.state = State::Established { cipher: Box::new(cipher), answered };
                        Step::Established { reply: Some(welcome) }
                    }
                    None => Step::Ignored,
                }
            }
            (State::Established { answered: Some((hello, welcome)), .. }, tag::PEER_HELLO) if hello == datagram => {
                Step::Answer(welcome.clone())
            }
            _ => Step::Ignored,
        }
    }

    /// Holds a sealed datagram that came before our keys; false when the
    /// keys exist (it did not open) or no room is left.
    pub(crate) fn hold(&mut self, early: Early) -> bool {
        if matches!(self.state, State::Established { .. }) || self.early.len() >= MAX_EARLY {
            return false;
        }
        self.early.push(early);
        true
    }

    /// The datagrams held until the keys existed.
    pub(crate) fn take_early(&mut self) -> Vec<Early> {
        std::mem::take(&mut self.early)
    }

    /// The peer frame inside a `PeerSealed` datagram, if it opens in this
    /// session's keys (authentic, not a replay) and is a frame of this
    /// session.
    pub(crate) fn open(&mut self, now: Instant, datagram: &[u8]) -> Option<Frame> {
        let State::Established { cipher, .. } = &mut self.state else { return None };
        let plain = cipher.open(now, datagram).map_err(|error| debug!(session = %self.session, ?error)).ok()?;
        match Frame::decode(&plain) {
            Ok(frame) if frame.session() == Some(self.session) => Some(frame),
            _ => None,
        }
    }

    /// Queues `frame`, stamped and sealed, from `socket` to `to`; dropped
    /// before the handshake is done. Returns the counter the frame was
    /// stamped with.
    pub(crate) fn send(&mut self, out: &mut Out, socket: SocketId, to: SocketAddr, frame: Frame) -> u64 {
        self.send_with_ttl(out, socket, to, None, frame)
    }

    /// [`Seal::send`] with an IP TTL (openers).
    pub(crate) fn send_with_ttl(
        &mut self,
        out: &mut Out,
        socket: SocketId,
        to: SocketAddr,
        ttl: Option<u8>,
        frame: Frame,
    ) -> u64 {
        let now = out.now.unwrap_or(self.began);
        if let Some((sealed, plain)) = self.seal(now, frame) {
            out.send_carrying_ttl(socket, to, ttl, sealed, plain);
        }
        self.counter
    }

    /// `frame`, stamped, encoded and sealed (for the relay to carry), with
    /// its plaintext; `None` before the handshake is done.
    pub(crate) fn seal(&mut self, now: Instant, frame: Frame) -> Option<(Vec<u8>, Vec<u8>)> {
        let plain = self.stamp(frame).encode();
        let State::Established { cipher, .. } = &mut self.state else {
            debug!(session = %self.session, "a peer frame before the session's handshake; not sent");
            return None;
        };
        let (sealed, _) = cipher.seal(now, &plain)?;
        Some((sealed, plain))
    }

    /// `frame` with the session's next counter, which makes it unique.
    fn stamp(&mut self, mut frame: Frame) -> Frame {
        self.counter += 1;
        match &mut frame {
            Frame::Opener { counter, .. }
            | Frame::Probe { counter, .. }
            | Frame::ProbeAck { counter, .. }
            | Frame::Session { counter, .. } => *counter = self.counter,
            _ => {}
        }
        frame
    }
}
