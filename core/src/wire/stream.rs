//! Datagrams on a byte stream: the framing of the TCP fallback (issue 21).
//!
//! A client whose network drops UDP reaches the server over TCP. The stream
//! carries the very datagrams UDP would, one *unit* each, so both transports
//! share every frame, channel and limit: only the framing differs.
//!
//! A unit is one of:
//! - **a STUN message**, as it is: RFC 8489 §6.2.2 frames STUN over TCP by the
//!   message's own length field, so standard STUN clients (`stunclient
//!   --mode full --protocol tcp`, `turnutils_stunclient -t`) work unchanged.
//!   Its first byte is `0x00..=0x03` (the two most significant bits of a STUN
//!   message are zero);
//! - **a Punchline datagram** behind a two-byte big-endian header
//!   `0x8000 | length`: its first byte is `0x80..=0x84`, which no STUN
//!   message starts with, and the length is 1 to
//!   [`MAX_DATAGRAM`](super::MAX_DATAGRAM).
//!
//! Anything else (another first byte, a zero or oversized length) means the
//! peer does not speak this framing, or lies: the stream cannot be
//! resynchronised and must be closed ([`StreamError`]).
//!
//! [`StreamDecoder`] holds at most one unit's worth of bytes: every unit is
//! taken out as soon as it is whole, so a peer cannot make it grow.

use super::MAX_DATAGRAM;

/// The bit that marks a Punchline unit's header.
const PUNCHLINE_UNIT: u16 = 0x8000;
/// A STUN message's header: type, length, magic cookie, transaction id.
const STUN_HEADER: usize = 20;
/// A Punchline unit's header.
const UNIT_HEADER: usize = 2;

/// Why a stream cannot be read further. The connection must be closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// A unit starts with a byte that is neither STUN nor a Punchline
    /// header.
    #[error("a unit starts with 0x{0:02x}, neither STUN nor a Punchline header")]
    BadHeader(u8),
    /// A unit's length is zero or above [`MAX_DATAGRAM`](super::MAX_DATAGRAM).
    #[error("a unit of {0} bytes (at most {MAX_DATAGRAM})")]
    BadLength(usize),
}

/// `datagram` as a unit on the stream: a STUN message as it is, anything
/// else behind its header. `datagram` is at most
/// [`MAX_DATAGRAM`](super::MAX_DATAGRAM) bytes (every datagram a machine
/// builds is).
pub fn encode(datagram: &[u8]) -> Vec<u8> {
    debug_assert!(!datagram.is_empty() && datagram.len() <= MAX_DATAGRAM, "a datagram of {} bytes", datagram.len());
    if super::classify(datagram) == super::Kind::Stun {
        return datagram.to_vec();
    }
    let header = (PUNCHLINE_UNIT | datagram.len() as u16).to_be_bytes();
    let mut unit = Vec::with_capacity(UNIT_HEADER + datagram.len());
    unit.extend_from_slice(&header);
    unit.extend_from_slice(datagram);
    unit
}

/// Splits a byte stream back into the datagrams [`encode`] framed.
///
/// Feed it whatever the connection delivered, in any pieces, with
/// [`push`](Self::push), then take whole datagrams with
/// [`next_datagram`](Self::next_datagram) until it returns `Ok(None)`.
#[derive(Clone, Debug, Default)]
pub struct StreamDecoder {
    buffer: Vec<u8>,
    /// Read position in `buffer`; consumed bytes are dropped lazily.
    start: usize,
    failed: Option<StreamError>,
}

impl StreamDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> StreamDecoder {
        StreamDecoder::default()
    }

    /// Appends bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.start > 0 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole datagram, `Ok(None)` when more bytes are needed, or
    /// the error that makes the rest of the stream unreadable (returned
    /// again on every later call).
    pub fn next_datagram(&mut self) -> Result<Option<Vec<u8>>, StreamError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        let pending = &self.buffer[self.start..];
        let Some(&first) = pending.first() else { return Ok(None) };
        let (skip, len) = match first {
            0x00..=0x03 => {
                if pending.len() < 4 {
                    return Ok(None);
                }
                let body = u16::from_be_bytes([pending[2], pending[3]]) as usize;
                (0, STUN_HEADER + body)
            }
            0x80..=0xff => {
                if pending.len() < UNIT_HEADER {
                    return Ok(None);
                }
                let len = (u16::from_be_bytes([pending[0], pending[1]]) & !PUNCHLINE_UNIT) as usize;
                if len == 0 {
                    return Err(self.fail(StreamError::BadLength(0)));
                }
                (UNIT_HEADER, len)
            }
            other => return Err(self.fail(StreamError::BadHeader(other))),
        };
        if len > MAX_DATAGRAM {
            return Err(self.fail(StreamError::BadLength(len)));
        }
        if pending.len() < skip + len {
            return Ok(None);
        }
        let datagram = pending[skip..skip + len].to_vec();
        self.start += skip + len;
        if self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        }
        Ok(Some(datagram))
    }

    /// Bytes received and not yet returned as a datagram.
    pub fn buffered(&self) -> usize {
        self.buffer.len() - self.start
    }

    fn fail(&mut self, error: StreamError) -> StreamError {
        self.failed = Some(error);
        self.buffer = Vec::new();
        self.start = 0;
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::stun::{binding_request, TransactionId};

    fn all(decoder: &mut StreamDecoder) -> Result<Vec<Vec<u8>>, StreamError> {
        let mut out = Vec::new();
        while let Some(d) = decoder.next_datagram()? {
            out.push(d);
        }
        Ok(out)
    }

    #[test]
    fn units_come_back_whole_however_the_stream_is_cut() {
        // Given a Punchline datagram, a STUN request and a largest datagram,
        // framed one after the other.
        let stun = binding_request(TransactionId([7; 12]));
        let datagrams = vec![vec![0x41, 1, 2, 3], stun.clone(), vec![0x42; MAX_DATAGRAM]];
        let stream: Vec<u8> = datagrams.iter().flat_map(|d| encode(d)).collect();
        assert_eq!(&stream[..2], &[0x80, 4], "a Punchline unit's header");
        assert_eq!(&stream[6..6 + stun.len()], &stun[..], "STUN goes as it is (RFC 8489 §6.2.2)");
        // When the stream arrives cut at every possible size.
        for piece in [1, 2, 3, 7, 1000, stream.len()] {
            let mut decoder = StreamDecoder::new();
            let mut got = Vec::new();
            for chunk in stream.chunks(piece) {
                decoder.push(chunk);
                got.extend(all(&mut decoder).expect("well framed"));
                // Then the decoder never holds more than one unit.
                assert!(decoder.buffered() < UNIT_HEADER + MAX_DATAGRAM + piece);
            }
            // Then the datagrams come back whole and in order.
            assert_eq!(got, datagrams, "cut every {piece} bytes");
            assert_eq!(decoder.buffered(), 0);
        }
    }

    #[test]
    fn a_stream_that_is_not_ours_fails_for_good() {
        // Given streams starting with an HTTP request, an oversized unit, an
        // empty unit and an oversized STUN message.
        let oversized = (PUNCHLINE_UNIT | (MAX_DATAGRAM as u16 + 1)).to_be_bytes();
        let cases: [(&[u8], StreamError); 4] = [
            (b"GET / HTTP/1.1\r\n", StreamError::BadHeader(b'G')),
            (&oversized, StreamError::BadLength(MAX_DATAGRAM + 1)),
            (&[0x80, 0x00], StreamError::BadLength(0)),
            (&[0x00, 0x01, 0xff, 0xfc], StreamError::BadLength(20 + 0xfffc)),
        ];
        for (bytes, error) in cases {
            // When they are read.
            let mut decoder = StreamDecoder::new();
            decoder.push(bytes);
            // Then the decoder says why, keeps saying it, and holds nothing.
            assert_eq!(decoder.next_datagram(), Err(error));
            decoder.push(&encode(&[0x41, 1]));
            assert_eq!(decoder.next_datagram(), Err(error));
            assert_eq!(decoder.buffered(), 0);
        }
    }
}
