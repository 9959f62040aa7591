//! End-to-end encryption between the two members of a session (DESIGN §7,
//! issue 20): the server relays what this module seals and can neither
//! read nor forge it.
//!
//! - **Handshake.** Noise IK between the two users' static keys
//!   ([`PeerHelloSent`], [`PeerHelloReceived`]); the client opens it from
//!   the session's responder, so that the member who asked holds keys
//!   first.
//!   Each side takes the other's key from the server's directory, checked
//!   against its own pins; the responder refuses an initiator whose proved
//!   key is not that one. The prologue binds the session id, so a handshake
//!   of one session never completes another. It travels through the relay,
//!   the one path both members have at the offer, as `PeerHello` and
//!   `PeerWelcome` ([`crate::wire::channel`]).
//! - **Transport.** [`SessionCipher`]: `PeerSealed` datagrams, ChaCha20-
//!   Poly1305 with one key per direction (Noise `Split()`), the header as
//!   associated data and the counter as nonce. Replays are stopped as RFC
//!   6479 says: the packet number is checked before decrypting and marked
//!   after the AEAD verified.
//! - **Rekeying.** A sender moves to its next key after [`REKEY_AFTER_TIME`]
//!   or [`REKEY_AFTER_MESSAGES`], whichever comes first; the next key is
//!   Noise's `REKEY(k)` (§4.2, §11.3), so an old key cannot be computed from
//!   a newer one. The counter's top 16 bits carry the key's epoch; the
//!   receiver follows on the first datagram of a newer epoch that
//!   authenticates, and keeps the previous key for [`PREVIOUS_KEY_LIFETIME`]
//!   for datagrams still in flight (as QUIC's key update does, RFC 9001
//!   §6.5). The packet number (the low 48 bits) never restarts, so one
//!   replay window covers every epoch.

use std::time::{Duration, Instant};

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};

use super::channel::OpenError;
use super::keys::{PublicKey, StaticKey};
use super::noise::{ik_initiator, ik_responder, Handshake, IK_MESSAGE_1_OVERHEAD, IK_MESSAGE_2_OVERHEAD, TAG_LEN};
use super::replay::ReplayWindow;
use crate::rng::Rng;
use crate::timer::Moment;
use crate::wire::channel::{
    parse_peer_handshake, parse_sealed_as, peer_handshake, sealed_buffer_as, tag, SEALED_HEADER,
};
use crate::wire::frame::SessionId;

/// A sender moves to its next key this long after it took the current one.
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
/// ... or after sending this many datagrams with it.
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 20;
/// How long a receiver keeps the previous key once the peer moved on.
pub const PREVIOUS_KEY_LIFETIME: Duration = Duration::from_secs(10);

/// The counter's low bits: the packet number.
const PACKET_BITS: u32 = 48;
const PACKET_MASK: u64 = (1 << PACKET_BITS) - 1;
/// How many epochs ahead of its own a receiver looks for the sender's key
/// (a sender moves one epoch at a time; a burst of loss may hide a move or
/// two).
const MAX_EPOCH_SKIP: u16 = 4;

/// Bound into every session handshake, with the session id after it.
const PEER_PROLOGUE: &[u8] = b"punchline/1 peer-session ";

fn prologue(session: SessionId) -> Vec<u8> {
    [PEER_PROLOGUE, &session.0.to_le_bytes()].concat()
}

/// A PeerHello, sent and not answered yet.
#[derive(Debug)]
pub struct PeerHelloSent {
    handshake: Handshake,
    session: SessionId,
}

impl PeerHelloSent {
    /// Starts the handshake of `session` as `identity`, toward the peer
    /// whose key is `responder`. Returns the PeerHello to relay. Randomness
    /// (the ephemeral key) grows from `seed`.
    pub fn start(
        identity: &StaticKey,
        responder: &PublicKey,
        session: SessionId,
        seed: crate::Seed,
    ) -> (PeerHelloSent, Vec<u8>) {
        Self::start_with(identity, responder, session, Rng::new(seed))
    }

    pub(crate) fn start_with(
        identity: &StaticKey,
        responder: &PublicKey,
        session: SessionId,
        rng: Rng,
    ) -> (PeerHelloSent, Vec<u8>) {
        let mut handshake = ik_initiator(identity, responder, &prologue(session), rng);
        let mut noise = [0; IK_MESSAGE_1_OVERHEAD];
        let len = handshake.0.write_message(&[], &mut noise).expect("an empty IK message 1 fits its buffer");
        (PeerHelloSent { handshake, session }, peer_handshake(tag::PEER_HELLO, session.0, &noise[..len]))
    }

    /// Reads the responder's PeerWelcome into the session's cipher; `None`
    /// when `datagram` is no welcome of this session, or does not
    /// authenticate (then the handshake stays usable for the real one).
    pub fn finish<T: Moment>(&mut self, datagram: &[u8], now: T) -> Option<SessionCipher<T>> {
        let (session, noise) = parse_peer_handshake(tag::PEER_WELCOME, datagram)?;
        if session != self.session.0 || noise.len() != IK_MESSAGE_2_OVERHEAD {
            return None;
        }
        // A failed read leaves the handshake as it was (`snow` restores its
        // state), so a forged welcome does not spoil the real one.
        if self.handshake.0.is_handshake_finished() {
            return None;
        }
        self.handshake.0.read_message(noise, &mut []).ok()?;
        let (send, receive) = self.handshake.raw_split()?;
        Some(SessionCipher::new(self.session, send, receive, now))
    }
}

/// A PeerHello the responder read and answered.
#[derive(Debug)]
pub struct PeerHelloReceived;

impl PeerHelloReceived {
    /// Reads a PeerHello of `session` as `identity`; it must come from the
    /// key `initiator` (the directory's and the pins'). Returns the
    /// PeerWelcome to relay back and the session's cipher. `None` when the
    /// datagram is no hello of this session, does not decrypt, or proves
    /// another key.
    pub fn answer<T: Moment>(
        identity: &StaticKey,
        initiator: &PublicKey,
        session: SessionId,
        datagram: &[u8],
        now: T,
        seed: crate::Seed,
    ) -> Option<(Vec<u8>, SessionCipher<T>)> {
        Self::answer_with(identity, initiator, session, datagram, now, Rng::new(seed))
    }

    pub(crate) fn answer_with<T: Moment>(
        identity: &StaticKey,
        initiator: &PublicKey,
        session: SessionId,
        datagram: &[u8],
        now: T,
        rng: Rng,
    ) -> Option<(Vec<u8>, SessionCipher<T>)> {
        let (named, noise) = parse_peer_handshake(tag::PEER_HELLO, datagram)?;
        if named != session.0 || noise.len() != IK_MESSAGE_1_OVERHEAD {
            return None;
        }
        let mut handshake = ik_responder(identity, &prologue(session), rng);
        handshake.0.read_message(noise, &mut []).ok()?;
        if handshake.remote_static()? != *initiator {
            return None;
        }
        let mut reply = [0; IK_MESSAGE_2_OVERHEAD];
        let len = handshake.0.write_message(&[], &mut reply).ok()?;
        let (initiator_sends, responder_sends) = handshake.raw_split()?;
        let welcome = peer_handshake(tag::PEER_WELCOME, session.0, &reply[..len]);
        Some((welcome, SessionCipher::new(session, responder_sends, initiator_sends, now)))
    }
}

/// One direction's key, and which epoch it belongs to.
struct EpochKey {
    epoch: u16,
    cipher: ChaCha20Poly1305,
    /// The raw key, to derive the next one from.
    key: [u8; 32],
}

impl EpochKey {
    fn new(epoch: u16, key: [u8; 32]) -> EpochKey {
        EpochKey { epoch, cipher: ChaCha20Poly1305::new(Key::from_slice(&key)), key }
    }

    /// The next epoch's key: `REKEY(k)`, the first 32 bytes of encrypting
    /// 32 zeros under nonce 2^64 − 1 (Noise §4.2), which no datagram uses.
    fn next(&self) -> Option<EpochKey> {
        let mut next = [0; 32];
        self.cipher.encrypt_in_place_detached(&nonce(u64::MAX), &[], &mut next).ok()?;
        Some(EpochKey::new(self.epoch.checked_add(1)?, next))
    }
}

impl Drop for EpochKey {
    fn drop(&mut self) {
        // A key the session moved past is gone: an attacker who later
        // takes the session's memory cannot open what it sealed.
        self.key = [0; 32];
    }
}

/// Noise's ChaChaPoly nonce: 32 zero bits, then the counter little-endian.
fn nonce(counter: u64) -> Nonce {
    let mut n = [0; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::from(n)
}

/// A session's transport, both directions, after its handshake.
pub struct SessionCipher<T: Moment = Instant> {
    session: SessionId,
    send: EpochKey,
    /// When the sending key was taken, and how many datagrams it sealed.
    send_since: T,
    sent_in_epoch: u64,
    /// The next packet number to send (never restarts).
    next_packet: u64,
    receive: EpochKey,
    /// The peer's previous key, kept until the instant beside it.
    previous: Option<(EpochKey, T)>,
    replay: ReplayWindow,
}

impl<T: Moment> std::fmt::Debug for SessionCipher<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCipher")
            .field("session", &self.session)
            .field("send_epoch", &self.send.epoch)
            .field("receive_epoch", &self.receive.epoch)
            .field("sent", &self.next_packet)
            .finish()
    }
}

impl<T: Moment> SessionCipher<T> {
    fn new(session: SessionId, send: [u8; 32], receive: [u8; 32], now: T) -> Self {
        SessionCipher {
            session,
            send: EpochKey::new(0, send),
            send_since: now,
            sent_in_epoch: 0,
            next_packet: 0,
            receive: EpochKey::new(0, receive),
            previous: None,
            replay: ReplayWindow::default(),
        }
    }

    /// `frame` (an encoded peer frame) sealed into a `PeerSealed` datagram,
    /// and the counter it carries; `None` once the session has used every
    /// counter or epoch (2^48 datagrams, 65,536 keys), when it must end.
    pub fn seal(&mut self, now: T, frame: &[u8]) -> Option<(Vec<u8>, u64)> {
        if now.saturating_duration_since(self.send_since) >= REKEY_AFTER_TIME
            || self.sent_in_epoch >= REKEY_AFTER_MESSAGES
        {
            self.send = self.send.next()?;
            self.send_since = now;
            self.sent_in_epoch = 0;
        }
        if self.next_packet > PACKET_MASK {
            return None;
        }
        let counter = u64::from(self.send.epoch) << PACKET_BITS | self.next_packet;
        self.next_packet += 1;
        self.sent_in_epoch += 1;
        let mut datagram = sealed_buffer_as(tag::PEER_SEALED, self.session.0, counter, frame.len() + TAG_LEN);
        let (header, body) = datagram.split_at_mut(SEALED_HEADER);
        let (text, tag_slot) = body.split_at_mut(frame.len());
        text.copy_from_slice(frame);
        let tag = self.send.cipher.encrypt_in_place_detached(&nonce(counter), header, text).ok()?;
        tag_slot.copy_from_slice(&tag);
        Some((datagram, counter))
    }

    /// The frame inside a `PeerSealed` datagram, if it is this session's,
    /// authenticates, and is not a replay.
    pub fn open(&mut self, now: T, datagram: &[u8]) -> Result<Vec<u8>, OpenError> {
        let (session, counter, ciphertext) = parse_sealed_as(tag::PEER_SEALED, datagram).ok_or(OpenError::Malformed)?;
        if session != self.session.0 {
            return Err(OpenError::Forged);
        }
        let packet = counter & PACKET_MASK;
        if !self.replay.check(packet) {
            return Err(OpenError::Replayed);
        }
        if self.previous.as_ref().is_some_and(|(_, until)| now >= *until) {
            self.previous = None;
        }
        let epoch = (counter >> PACKET_BITS) as u16;
        let (text, tag) = ciphertext.split_at(ciphertext.len() - TAG_LEN);
        let mut frame = text.to_vec();
        let header = &datagram[..SEALED_HEADER];
        let verify = |key: &EpochKey, frame: &mut Vec<u8>| {
            key.cipher.decrypt_in_place_detached(&nonce(counter), header, frame, Tag::from_slice(tag)).is_ok()
        };
        if epoch == self.receive.epoch {
            if !verify(&self.receive, &mut frame) {
                return Err(OpenError::Forged);
            }
        } else if let Some((previous, _)) = self.previous.as_ref().filter(|(key, _)| key.epoch == epoch) {
            if !verify(previous, &mut frame) {
                return Err(OpenError::Forged);
            }
        } else if epoch > self.receive.epoch && epoch - self.receive.epoch <= MAX_EPOCH_SKIP {
            // The peer moved on: derive its key and keep it only if the
            // datagram authenticates under it.
            let mut next = self.receive.next().ok_or(OpenError::Forged)?;
            while next.epoch < epoch {
                next = next.next().ok_or(OpenError::Forged)?;
            }
            if !verify(&next, &mut frame) {
                return Err(OpenError::Forged);
            }
            let current = std::mem::replace(&mut self.receive, next);
            self.previous = Some((current, now + PREVIOUS_KEY_LIFETIME));
        } else {
            return Err(OpenError::Forged);
        }
        self.replay.mark(packet);
        Ok(frame)
    }

    /// The epoch of the key this side sends with.
    pub fn send_epoch(&self) -> u16 {
        self.send.epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Seed;

    const SESSION: SessionId = SessionId(0x5e55);

    fn keys() -> (StaticKey, StaticKey) {
        (StaticKey::derive(Seed::from(1), "alice"), StaticKey::derive(Seed::from(1), "bob"))
    }

    /// Both ends of a session whose handshake completed at `t0`.
    fn pair() -> (SessionCipher<Duration>, SessionCipher<Duration>) {
        let (alice, bob) = keys();
        let (mut sent, hello) = PeerHelloSent::start(&alice, &bob.public(), SESSION, Seed::from(2));
        let (welcome, responder) =
            PeerHelloReceived::answer(&bob, &alice.public(), SESSION, &hello, Duration::ZERO, Seed::from(3)).unwrap();
        let initiator = sent.finish(&welcome, Duration::ZERO).unwrap();
        (initiator, responder)
    }

    #[test]
    fn a_handshake_gives_both_ends_the_same_keys_and_each_direction_its_own() {
        let (mut a, mut b) = pair();
        let (sealed, _) = a.seal(Duration::ZERO, b"hello bob").unwrap();
        assert_eq!(b.open(Duration::ZERO, &sealed).unwrap(), b"hello bob");
        let (sealed, _) = b.seal(Duration::ZERO, b"hello alice").unwrap();
        assert_eq!(a.open(Duration::ZERO, &sealed).unwrap(), b"hello alice");
        // A datagram reflected back at its sender does not open.
        let (sealed, _) = a.seal(Duration::ZERO, b"mine").unwrap();
        assert_eq!(a.open(Duration::ZERO, &sealed), Err(OpenError::Forged));
    }

    #[test]
    fn the_responder_refuses_a_hello_from_another_key_or_session() {
        let (alice, bob) = keys();
        let mallory = StaticKey::derive(Seed::from(1), "mallory");
        let (_, hello) = PeerHelloSent::start(&mallory, &bob.public(), SESSION, Seed::from(2));
        let answer = |hello: &[u8]| {
            PeerHelloReceived::answer(&bob, &alice.public(), SESSION, hello, Duration::ZERO, Seed::from(3))
        };
        assert!(answer(&hello).is_none(), "mallory is not the key the directory named");
        let (_, hello) = PeerHelloSent::start(&alice, &bob.public(), SessionId(1), Seed::from(2));
        assert!(answer(&hello).is_none(), "a hello of another session");
    }

    #[test]
    fn a_forged_welcome_leaves_the_handshake_for_the_real_one() {
        let (alice, bob) = keys();
        let (mut sent, hello) = PeerHelloSent::start(&alice, &bob.public(), SESSION, Seed::from(2));
        let (mut welcome, _) =
            PeerHelloReceived::answer(&bob, &alice.public(), SESSION, &hello, Duration::ZERO, Seed::from(3)).unwrap();
        let last = welcome.len() - 1;
        welcome[last] ^= 1;
        assert!(sent.finish(&welcome, Duration::ZERO).is_none());
        welcome[last] ^= 1;
        assert!(sent.finish(&welcome, Duration::ZERO).is_some());
        assert!(sent.finish(&welcome, Duration::ZERO).is_none(), "a handshake finishes once");
    }

    #[test]
    fn a_replay_or_a_flipped_bit_does_not_open() {
        let (mut a, mut b) = pair();
        let (sealed, _) = a.seal(Duration::ZERO, b"once").unwrap();
        let mut flipped = sealed.clone();
        flipped[SEALED_HEADER] ^= 1;
        assert_eq!(b.open(Duration::ZERO, &flipped), Err(OpenError::Forged));
        assert!(b.open(Duration::ZERO, &sealed).is_ok());
        assert_eq!(b.open(Duration::ZERO, &sealed), Err(OpenError::Replayed));
    }

    #[test]
    fn keys_move_on_after_two_minutes_and_the_previous_key_opens_stragglers_briefly() {
        // Given a session, and a datagram sealed just before the rekey.
        let (mut a, mut b) = pair();
        let (straggler, _) = a.seal(Duration::from_secs(119), b"late").unwrap();
        // When the sender's key is two minutes old, it moves on.
        let (fresh, counter) = a.seal(REKEY_AFTER_TIME, b"new key").unwrap();
        assert_eq!((a.send_epoch(), counter >> PACKET_BITS), (1, 1));
        // Then the receiver follows, and the straggler still opens ...
        assert_eq!(b.open(REKEY_AFTER_TIME, &fresh).unwrap(), b"new key");
        assert_eq!(b.open(REKEY_AFTER_TIME + Duration::from_secs(1), &straggler).unwrap(), b"late");
        // And the sender keeps its new key until the next two minutes.
        let (next, counter) = a.seal(REKEY_AFTER_TIME + Duration::from_secs(119), b"same key").unwrap();
        assert_eq!(counter >> PACKET_BITS, 1);
        assert!(b.open(REKEY_AFTER_TIME + Duration::from_secs(119), &next).is_ok());
    }

    #[test]
    fn keys_move_on_after_2_pow_20_datagrams() {
        let (mut a, mut b) = pair();
        a.sent_in_epoch = REKEY_AFTER_MESSAGES - 1;
        let (last, counter) = a.seal(Duration::ZERO, b"last of epoch 0").unwrap();
        assert_eq!(counter >> PACKET_BITS, 0);
        let (first, counter) = a.seal(Duration::ZERO, b"first of epoch 1").unwrap();
        assert_eq!(counter >> PACKET_BITS, 1);
        // Reordered in flight: the new epoch arrives first.
        assert!(b.open(Duration::ZERO, &first).is_ok());
        assert!(b.open(Duration::ZERO, &last).is_ok());
    }

    #[test]
    fn a_previous_key_expires_and_a_far_future_epoch_is_refused() {
        let (mut a, mut b) = pair();
        let (old, _) = a.seal(Duration::ZERO, b"old").unwrap();
        let (new, _) = a.seal(REKEY_AFTER_TIME, b"new").unwrap();
        assert!(b.open(REKEY_AFTER_TIME, &new).is_ok());
        let expired = REKEY_AFTER_TIME + PREVIOUS_KEY_LIFETIME;
        assert_eq!(b.open(expired, &old), Err(OpenError::Forged));
        // A counter claiming an epoch far ahead costs no derivation chain.
        let mut far = new.clone();
        far[10..18].copy_from_slice(&(u64::from(MAX_EPOCH_SKIP + 2) << PACKET_BITS | 99).to_le_bytes());
        assert_eq!(b.open(expired, &far), Err(OpenError::Forged));
    }
}
