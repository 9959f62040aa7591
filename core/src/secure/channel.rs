//! A completed handshake's transport: frames sealed into and opened from
//! [`Sealed`](crate::wire::channel::tag::SEALED) datagrams.
//!
//! Datagrams arrive out of order and some never arrive, so each carries its
//! counter, which is its ChaCha20-Poly1305 nonce (Noise's stateless
//! transport, as WireGuard's data messages). A counter is never reused: a
//! channel that has sent 2^64 − 1 frames refuses to send more. Replays are
//! stopped as RFC 6479 describes: the counter is checked against the
//! window *before* decrypting (so a replay costs no AEAD), and marked seen
//! only *after* the AEAD verified (so a forged counter cannot move the
//! window).

use std::cell::Cell;

use snow::StatelessTransportState;

use super::noise::TAG_LEN;
use super::replay::ReplayWindow;
use crate::wire::channel::{parse_sealed, sealed_buffer, SEALED_HEADER};

/// One side of an established client–server channel.
pub(crate) struct Channel {
    transport: StatelessTransportState,
    /// The index the other side knows this channel by: every sealed frame
    /// we send names it.
    remote_index: u64,
    /// The next counter to send. A `Cell`, so sealing needs only a shared
    /// reference, as the client's send context holds.
    next_counter: Cell<u64>,
    replay: ReplayWindow,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").field("remote_index", &self.remote_index).field("sent", &self.next_counter).finish()
    }
}

/// Why a sealed datagram was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Not a sealed datagram.
    Malformed,
    /// Its counter was seen already or fell out of the window.
    Replayed,
    /// The AEAD did not verify: forged, corrupted, or another channel's.
    Forged,
}

impl Channel {
    pub(crate) fn new(transport: StatelessTransportState, remote_index: u64) -> Channel {
        Channel { transport, remote_index, next_counter: Cell::new(0), replay: ReplayWindow::default() }
    }

    /// `frame` (an encoded frame) sealed into a datagram; `None` once the
    /// counter is exhausted.
    pub(crate) fn seal(&self, frame: &[u8]) -> Option<Vec<u8>> {
        let counter = self.next_counter.get();
        self.next_counter.set(counter.checked_add(1)?);
        let mut datagram = sealed_buffer(self.remote_index, counter, frame.len() + TAG_LEN);
        let written = self.transport.write_message(counter, frame, &mut datagram[SEALED_HEADER..]).ok()?;
        debug_assert_eq!(written, frame.len() + TAG_LEN);
        Some(datagram)
    }

    /// The frame inside `datagram`, if it authenticates and is not a replay.
    pub(crate) fn open(&mut self, datagram: &[u8]) -> Result<Vec<u8>, OpenError> {
        let (_, counter, ciphertext) = parse_sealed(datagram).ok_or(OpenError::Malformed)?;
        if !self.replay.check(counter) {
            return Err(OpenError::Replayed);
        }
        let mut frame = vec![0; ciphertext.len().saturating_sub(TAG_LEN)];
        let len = self.transport.read_message(counter, ciphertext, &mut frame).map_err(|_| OpenError::Forged)?;
        frame.truncate(len);
        self.replay.mark(counter);
        Ok(frame)
    }
}
