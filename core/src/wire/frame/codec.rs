//! Encoding and decoding, through the [`registry`](super::registry):
//! `[tag][version][body]`. Peer frames are sealed end to end around these
//! bytes ([`crate::secure::SessionCipher`]).
//!
//! The body is the row's fields, in the row's order, each as postcard
//! encodes it (varints for integers, a length before strings and lists, no
//! framing between fields). Decoding never panics and never reserves more
//! memory than the datagram holds.

use serde::Serialize;

use super::registry::{BodyReader, BodyWriter, FrameType};
use super::{Frame, FIRST_TAG, VERSION};

/// Why a datagram is not a frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// Empty, or the first byte is no Punchline tag.
    #[error("not a Punchline frame")]
    NotAFrame,
    /// The tag is in Punchline's range but unknown.
    #[error("unknown frame tag {0:#04x}")]
    UnknownTag(u8),
    /// The frame speaks another protocol version.
    #[error("unsupported protocol version {0} (this side speaks {VERSION})")]
    UnsupportedVersion(u8),
    /// Longer than the frame type allows.
    #[error("frame of {len} bytes exceeds the {max}-byte limit of its type")]
    TooLong {
        /// The datagram's length.
        len: usize,
        /// The type's limit.
        max: usize,
    },
    /// The body does not decode, or has bytes left over.
    #[error("malformed frame body")]
    Malformed,
}

impl Frame {
    /// This frame's tag byte.
    pub fn tag(&self) -> u8 {
        self.frame_type().tag
    }

    /// The largest encoded size a frame with `tag` may have, or `None` for
    /// a tag no frame type has.
    pub fn max_size(tag: u8) -> Option<usize> {
        FrameType::of_tag(tag).map(|frame_type| frame_type.max_size)
    }

    /// True for frames between session peers, which travel only sealed in
    /// the session's end-to-end encryption.
    pub fn is_peer(&self) -> bool {
        self.frame_type().peer
    }

    /// The session a peer frame belongs to (`None` for other frames).
    pub fn session(&self) -> Option<super::SessionId> {
        match self {
            Frame::Opener { session, .. }
            | Frame::Probe { session, .. }
            | Frame::ProbeAck { session, .. }
            | Frame::Session { session, .. } => Some(*session),
            _ => None,
        }
    }

    /// The login token of a frame a logged-in client sends its server.
    pub fn token(&self) -> Option<u64> {
        match self {
            Frame::Keepalive { token, .. }
            | Frame::Profile { token, .. }
            | Frame::Lookup { token, .. }
            | Frame::Connect { token, .. }
            | Frame::OfferAck { token, .. }
            | Frame::Leave { token, .. }
            | Frame::Relay { token, .. }
            | Frame::Logout { token }
            | Frame::TextSend { token, .. }
            | Frame::TextDeliverAck { token, .. }
            | Frame::InboxSync { token } => Some(*token),
            _ => None,
        }
    }

    /// Encodes the frame.
    pub fn encode(&self) -> Vec<u8> {
        let frame_type = self.frame_type();
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&[frame_type.tag, VERSION]);
        // Serializing into `out` saves a second, growing allocation and a
        // copy per frame.
        self.write_body(ExtendVec(out))
    }

    /// Encodes the frame into the front of `buf`, as [`Frame::encode`] does,
    /// and returns its length, or `None` when `buf` is too small. A driver
    /// can encode into a stack buffer this way and allocate only the exact
    /// datagram.
    pub fn encode_into_slice(&self, buf: &mut [u8]) -> Option<usize> {
        let frame_type = self.frame_type();
        let [tag, version, body @ ..] = buf else {
            return None;
        };
        (*tag, *version) = (frame_type.tag, VERSION);
        Some(2 + self.write_body(IntoSlice(body))?)
    }

    /// Decodes a datagram (or, for a peer frame, what a session's
    /// encryption opened).
    pub fn decode(datagram: &[u8]) -> Result<Frame, FrameError> {
        let (&tag, rest) = datagram.split_first().ok_or(FrameError::NotAFrame)?;
        if tag < FIRST_TAG {
            return Err(FrameError::NotAFrame);
        }
        let frame_type = FrameType::of_tag(tag).ok_or(FrameError::UnknownTag(tag))?;
        let (&version, body) = rest.split_first().ok_or(FrameError::Malformed)?;
        if version != VERSION {
            return Err(FrameError::UnsupportedVersion(version));
        }
        if datagram.len() > frame_type.max_size {
            return Err(FrameError::TooLong { len: datagram.len(), max: frame_type.max_size });
        }
        let mut reader = BodyReader::from_bytes(body);
        let frame = Frame::read_body(tag, &mut reader).map_err(|_| FrameError::Malformed)?;
        match reader.finalize() {
            Ok([]) => Ok(frame),
            _ => Err(FrameError::Malformed),
        }
    }
}

/// Appends a body to a vector that already holds the tag and version.
struct ExtendVec(Vec<u8>);

impl BodyWriter for ExtendVec {
    type Output = Vec<u8>;

    fn write<T: Serialize>(self, fields: &T) -> Vec<u8> {
        postcard::to_extend(fields, self.0).expect("frames serialize infallibly into a Vec")
    }
}

/// Writes a body at the front of a slice; its length, or `None` when the
/// slice is too small.
struct IntoSlice<'a>(&'a mut [u8]);

impl BodyWriter for IntoSlice<'_> {
    type Output = Option<usize>;

    fn write<T: Serialize>(self, fields: &T) -> Option<usize> {
        postcard::to_slice(fields, self.0).ok().map(|written| written.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::NatProfile;

    #[test]
    fn a_frame_with_bytes_left_over_is_malformed() {
        let mut datagram = Frame::Keepalive { token: 7, profile: NatProfile::default() }.encode();
        assert!(Frame::decode(&datagram).is_ok());
        datagram.push(0);
        assert_eq!(Frame::decode(&datagram), Err(FrameError::Malformed));
    }
}
