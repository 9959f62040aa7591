//! The wire: one UDP datagram is one frame of at most [`MAX_DATAGRAM`] bytes.
//!
//! The first byte demultiplexes (DESIGN §3, "Wire"):
//! - `0x00..=0x03`: STUN (RFC 8489 §5: the two most significant bits of a STUN
//!   message are zero), decoded by [`stun`];
//! - [`frame::FIRST_TAG`] and above: Punchline frames, decoded by [`frame`]
//!   through its [`registry`](frame::registry), the one table of frame tags.
//!
//! Decoding never panics and never allocates more than the datagram's size.

pub mod channel;
pub mod frame;
pub mod stream;
pub mod stun;

use bytes::Bytes;

/// The largest datagram Punchline sends or accepts (DESIGN §3): small enough to
/// pass every path with a 1280-byte IPv6 MTU after IP and UDP headers.
pub const MAX_DATAGRAM: usize = 1200;

/// What a datagram's first byte says it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A STUN message (RFC 8489).
    Stun,
    /// A Punchline frame.
    Punchline,
    /// Neither: dropped.
    Unknown,
}

/// Classifies a datagram by its first byte.
pub fn classify(datagram: &[u8]) -> Kind {
    match datagram.first() {
        Some(0x00..=0x03) => Kind::Stun,
        Some(&b) if b >= frame::FIRST_TAG => Kind::Punchline,
        _ => Kind::Unknown,
    }
}

/// A datagram built in a vector, as the `Bytes` a [`crate::Transmit`]
/// carries. A vector with spare capacity would become a `Bytes` with a
/// second, shared-count allocation; an exact copy is one allocation, and the
/// vector is freed while still cached.
pub(crate) fn payload_bytes(datagram: Vec<u8>) -> Bytes {
    if datagram.len() == datagram.capacity() {
        Bytes::from(datagram)
    } else {
        Bytes::copy_from_slice(&datagram)
    }
}

/// How much of a frame is encoded on the stack: all but the largest
/// (session frames carrying application data), which go through a vector.
const STACK_FRAME: usize = 256;

/// `frame` encoded, completed by `finish` (which signs authenticated
/// frames), as the exact `Bytes` a [`crate::Transmit`] carries. Encoding
/// into a stack buffer leaves one allocation per datagram, the copy's.
pub(crate) fn frame_bytes(frame: &frame::Frame, finish: impl FnOnce(&mut [u8])) -> Bytes {
    let mut buf = [0; STACK_FRAME];
    match frame.encode_into_slice(&mut buf) {
        Some(len) => {
            finish(&mut buf[..len]);
            Bytes::copy_from_slice(&buf[..len])
        }
        None => {
            let mut datagram = frame.encode();
            finish(&mut datagram);
            payload_bytes(datagram)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_keeps_its_bytes_whatever_its_vector_spare_capacity() {
        // Given the same datagram in an exact vector and in a roomy one,
        let exact = vec![0x61, 1, 2, 3];
        let mut roomy = Vec::with_capacity(64);
        roomy.extend_from_slice(&exact);
        // when each becomes a payload, then both carry exactly its bytes.
        assert_eq!(&payload_bytes(exact)[..], [0x61, 1, 2, 3]);
        assert_eq!(&payload_bytes(roomy)[..], [0x61, 1, 2, 3]);
    }
}
