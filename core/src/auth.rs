//! Authentication of frames between session peers, and replay protection.
//!
//! Each authenticated frame ends in a 16-byte tag: HMAC-SHA-256 (RFC 2104,
//! truncated as RFC 4868 §2.3 allows for 128-bit tags) over a role byte and
//! the frame's bytes. The role byte says which member sent it, so a frame
//! reflected back at its sender does not verify. Counters in every
//! authenticated frame, checked against a sliding window
//! ([`ReplayWindow`], as in RFC 4303 §3.4.3), stop replays.
//!
//! An embedder never needs this module: the client and the server seal and
//! check frames themselves. It is public so that tests, fuzzers and
//! interoperability tools can build frames a real peer would accept (and
//! forge ones it must refuse) with the same code, rather than a copy that
//! could drift from it.

use hmac::digest::core_api::CoreWrapper;
use hmac::digest::KeyInit;
use hmac::{HmacCore, Mac};
use sha2::Sha256;

use crate::wire::frame::{SessionKey, MAC_LEN};

/// Which member of a session sent a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// The member that asked for the session.
    Initiator,
    /// The member that was asked.
    Responder,
}

impl Role {
    /// The other member.
    pub fn peer(self) -> Role {
        match self {
            Role::Initiator => Role::Responder,
            Role::Responder => Role::Initiator,
        }
    }
}

/// A session key made ready to sign: HMAC's inner and outer key blocks
/// (RFC 2104 §2, `K XOR ipad` and `K XOR opad`) are hashed once, when the
/// session starts, instead of for every frame. Signs and verifies exactly
/// as [`seal`] and [`verify`] do with the raw key.
///
/// Only the two hash states are kept (80 bytes), not a whole `Hmac` with
/// its empty block buffer: every tag starts from a copy of them, and a
/// session touched once a second is cold in cache.
#[derive(Clone)]
pub struct SessionMac {
    keyed: HmacCore<Sha256>,
}

impl SessionMac {
    /// Prepares `key`.
    pub fn new(key: &SessionKey) -> SessionMac {
        SessionMac { keyed: HmacCore::new_from_slice(key).expect("HMAC accepts keys of any length") }
    }

    fn tag(&self, sender: Role, signed: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = CoreWrapper::from_core(self.keyed.clone());
        mac.update(&[sender as u8]);
        mac.update(signed);
        let full = mac.finalize().into_bytes();
        let mut out = [0; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// Signs an encoded authenticated frame in place (its last [`MAC_LEN`]
    /// bytes are the tag). Frames shorter than a tag are left alone.
    pub fn seal(&self, frame: &mut [u8], sender: Role) {
        if let Some(split) = frame.len().checked_sub(MAC_LEN) {
            let t = self.tag(sender, &frame[..split]);
            frame[split..].copy_from_slice(&t);
        }
    }

    /// True when `datagram` ends in a valid tag from `sender`. Compares in
    /// constant time.
    pub fn verify(&self, datagram: &[u8], sender: Role) -> bool {
        let Some(split) = datagram.len().checked_sub(MAC_LEN) else {
            return false;
        };
        let expected = self.tag(sender, &datagram[..split]);
        let diff = expected.iter().zip(&datagram[split..]).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        diff == 0
    }
}

impl std::fmt::Debug for SessionMac {
    /// Never prints key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionMac(..)")
    }
}

/// Signs an encoded authenticated frame in place (its last [`MAC_LEN`] bytes
/// are the tag). Frames shorter than a tag are left alone.
pub fn seal(frame: &mut [u8], key: &SessionKey, sender: Role) {
    SessionMac::new(key).seal(frame, sender);
}

/// True when `datagram` ends in a valid tag from `sender`. Compares in
/// constant time.
pub fn verify(datagram: &[u8], key: &SessionKey, sender: Role) -> bool {
    SessionMac::new(key).verify(datagram, sender)
}

/// Remembers which counters were seen, so each is accepted once.
///
/// Counters far below the highest seen (more than [`ReplayWindow::WIDTH`]
/// back) are refused, like IPsec's anti-replay window (RFC 4303 §3.4.3).
#[derive(Clone, Debug, Default)]
pub struct ReplayWindow {
    highest: Option<u64>,
    /// Bit i set: counter `highest - i` seen.
    seen: u128,
}

impl ReplayWindow {
    /// How far back out-of-order counters are still accepted.
    pub const WIDTH: u64 = 128;

    /// True when `counter` would be accepted: not seen, and not fallen out
    /// of the window. Changes nothing: check before decrypting, then
    /// [`mark`](Self::mark) once the frame authenticated (RFC 6479 §2), so
    /// that a forged frame cannot move the window.
    pub fn check(&self, counter: u64) -> bool {
        match self.highest {
            None => true,
            Some(highest) if counter > highest => true,
            Some(highest) => {
                let back = highest - counter;
                back < Self::WIDTH && self.seen & (1 << back) == 0
            }
        }
    }

    /// Marks `counter` seen (after its frame authenticated).
    pub fn mark(&mut self, counter: u64) {
        self.accept(counter);
    }

    /// Accepts `counter` once: true the first time, false for replays and for
    /// counters that fell out of the window.
    pub fn accept(&mut self, counter: u64) -> bool {
        let Some(highest) = self.highest else {
            self.highest = Some(counter);
            self.seen = 1;
            return true;
        };
        if counter > highest {
            let shift = counter - highest;
            self.seen = if shift >= Self::WIDTH { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.highest = Some(counter);
            true
        } else {
            let back = highest - counter;
            if back >= Self::WIDTH || self.seen & (1 << back) != 0 {
                return false;
            }
            self.seen |= 1 << back;
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_verifies_only_for_its_key_and_sender() {
        let key = [7; 32];
        let mut frame = vec![1, 2, 3, 4, 5];
        frame.extend_from_slice(&[0; MAC_LEN]);
        seal(&mut frame, &key, Role::Initiator);
        assert!(verify(&frame, &key, Role::Initiator));
        assert!(!verify(&frame, &key, Role::Responder));
        assert!(!verify(&frame, &[8; 32], Role::Initiator));
        frame[0] ^= 1;
        assert!(!verify(&frame, &key, Role::Initiator));
        assert!(!verify(&[1, 2], &key, Role::Initiator));
    }

    #[test]
    fn a_prepared_key_signs_every_frame_as_the_raw_key_does() {
        // Given one prepared key used for several frames in turn,
        let key = [9; 32];
        let mac = SessionMac::new(&key);
        for (len, sender) in [(5, Role::Initiator), (70, Role::Responder), (0, Role::Initiator), (200, Role::Initiator)]
        {
            let mut prepared: Vec<u8> = (0..len as u8).chain([0; MAC_LEN]).collect();
            let mut raw = prepared.clone();
            // when it signs, then the tag is the raw key's (the prepared
            // state is never consumed by one frame),
            mac.seal(&mut prepared, sender);
            seal(&mut raw, &key, sender);
            assert_eq!(prepared, raw, "{len} bytes");
            // and each side's tag verifies with the other.
            assert!(mac.verify(&raw, sender) && verify(&prepared, &key, sender));
            assert!(!mac.verify(&raw, sender.peer()));
        }
    }

    #[test]
    fn a_tag_is_hmac_sha256_over_the_sender_and_the_frame_truncated_to_16_bytes() {
        // Given keys and frames of several lengths, across SHA-256's 64-byte
        // block boundary,
        for (key_byte, len) in [(1u8, 0usize), (2, 5), (3, 54), (4, 55), (5, 63), (6, 64), (7, 200)] {
            let key = [key_byte; 32];
            let body: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            for sender in [Role::Initiator, Role::Responder] {
                // when sealed, then the tag is the first 16 bytes of the
                // hmac crate's own HMAC-SHA-256 (RFC 2104) of the role byte
                // and the frame.
                let mut frame = body.clone();
                frame.extend_from_slice(&[0; MAC_LEN]);
                SessionMac::new(&key).seal(&mut frame, sender);
                let mut reference = <hmac::Hmac<Sha256> as Mac>::new_from_slice(&key).expect("any key length");
                reference.update(&[sender as u8]);
                reference.update(&body);
                let full = reference.finalize().into_bytes();
                assert_eq!(&frame[len..], &full[..MAC_LEN], "{len} bytes from {sender:?}");
            }
        }
    }

    #[test]
    fn the_replay_window_accepts_each_counter_once() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(5));
        assert!(!w.accept(5));
        assert!(w.accept(3));
        assert!(w.accept(200));
        assert!(!w.accept(3), "fell out of the window");
        assert!(w.accept(199));
        assert!(!w.accept(199));
        assert!(w.accept(200 - 127));
        assert!(!w.accept(200 - 128));
    }

    #[test]
    fn checking_changes_nothing_and_marking_accepts() {
        // Given a window that saw 10,
        let mut w = ReplayWindow::default();
        assert!(w.check(10));
        w.mark(10);
        // when 500 is only checked (a forged frame's counter), then the
        // window did not move: 10 is still a replay and 9 still fits.
        assert!(w.check(500));
        assert!(!w.check(10) && w.check(9));
        w.mark(9);
        assert!(!w.check(9));
    }
}
