//! The wire registry: the one table of Punchline frame types (DESIGN §3,
//! "Wire").
//!
//! Each row names a type's tag (a constant in [`tag`]), whether its frames
//! travel only end to end between session peers, its largest encoded size, and the [`Frame`] variant it
//! carries with that variant's fields **in wire order**. Everything about a
//! frame on the wire comes from here:
//! - [`Frame::encode`] writes the row's tag, the version, then the listed
//!   fields one after another as postcard encodes each;
//! - [`Frame::decode`] looks the first byte up in this table (not in the
//!   order of [`Frame`]'s variants), checks the size the row gives, then decodes the listed fields and builds the variant.
//!
//! So declaring [`Frame`]'s variants or fields in another order changes
//! nothing on the wire; changing a row does, and
//! `core/tests/wire_golden.rs` fails until the new bytes are reviewed.
//!
//! A field written `name <= LIMIT` is a string or list decoded with at most
//! `LIMIT` bytes or elements, refused before any memory is reserved.
//! Tags start at [`FIRST_TAG`] (lower first bytes are STUN's, RFC 8489 §5);
//! `0x41..=0x5f` are client-server frames (which travel sealed in the
//! channel, so each fits a datagram with the sealing's overhead) and
//! `0x60..` peer frames (which travel sealed end to end, so each fits a
//! relayed datagram with that sealing's overhead); `0x70..=0x78` are the
//! channels' own datagrams ([`crate::wire::channel`]), outside this
//! registry.

use postcard::de_flavors::Slice;
use postcard::Deserializer;
use serde::{Deserialize, Serialize};

use super::bounded::Bounded;
use super::{
    Frame, FIRST_TAG, MAX_CANDIDATES, MAX_PEER_FRAME, MAX_RELAY_FRAME, MAX_RELAY_PAYLOAD, MAX_SEALED_TEXT,
    MAX_USER_NAME,
};
use crate::wire::MAX_DATAGRAM;

/// One frame type: a row of the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameType {
    /// The [`Frame`] variant's name.
    pub name: &'static str,
    /// The first byte of every frame of this type.
    pub tag: u8,
    /// The largest encoded frame of this type; longer ones are refused
    /// before their body is decoded.
    pub max_size: usize,
    /// Whether frames of this type pass only between the members of a
    /// session, inside its end-to-end encryption
    /// ([`crate::secure::SessionCipher`]); one that arrives in the clear is
    /// dropped.
    pub peer: bool,
}

/// Where a body's encoded fields go: a slice ([`Frame::encode_into_slice`])
/// or a vector ([`Frame::encode`]).
pub(super) trait BodyWriter {
    /// What writing returns.
    type Output;
    /// Writes `fields` (a tuple of the body's fields, in wire order) as
    /// postcard encodes them: one after another, with no framing.
    fn write<T: Serialize>(self, fields: &T) -> Self::Output;
}

/// The decoder a body is read from.
pub(super) type BodyReader<'de> = Deserializer<'de, Slice<'de>>;

macro_rules! registry {
    (@peer plain) => { false };
    (@peer peer) => { true };
    (@field $reader:ident) => { Deserialize::deserialize(&mut *$reader)? };
    (@field $reader:ident <= $bound:ident) => { Bounded::deserialize_bounded::<_, $bound>(&mut *$reader)? };
    ($(
        $name:ident = $tag:literal, $auth:ident, max $max:expr
            => $variant:ident { $($field:ident $(<= $bound:ident)?),* $(,)? };
    )*) => {
        /// Every frame type's tag: the first byte of its frames.
        pub mod tag {
            $(
                #[doc = concat!("The tag of [`Frame::", stringify!($variant), "`](super::Frame::", stringify!($variant), ").")]
                pub const $name: u8 = $tag;
            )*
        }

        /// The registry: every frame type, in tag order.
        pub const FRAME_TYPES: &[FrameType] = &[$(
            FrameType {
                name: stringify!($variant),
                tag: tag::$name,
                max_size: $max,
                peer: registry!(@peer $auth),
            },
        )*];

        impl Frame {
            /// This frame's row in the registry.
            pub fn frame_type(&self) -> &'static FrameType {
                match self {$(
                    Frame::$variant { .. } => {
                        const TYPE: &FrameType = FrameType::registered(tag::$name);
                        TYPE
                    }
                )*}
            }

            /// Hands this frame's fields, in the registry's wire order, to
            /// `writer`.
            pub(super) fn write_body<W: BodyWriter>(&self, writer: W) -> W::Output {
                match self {$(
                    Frame::$variant { $($field),* } => writer.write(&($($field,)*)),
                )*}
            }

            /// Reads the body of a frame with `tag` from `reader`, the fields
            /// in the registry's wire order.
            pub(super) fn read_body(tag: u8, reader: &mut BodyReader<'_>) -> Result<Frame, postcard::Error> {
                Ok(match tag {
                    $(tag::$name => Frame::$variant { $($field: registry!(@field reader $(<= $bound)?)),* },)*
                    _ => return Err(postcard::Error::DeserializeBadEnum),
                })
            }
        }
    };
}

registry! {
    // Client and server.
    LOGIN = 0x41, plain, max 3 + MAX_USER_NAME + MAX_CANDIDATES * 24 + 16
        => Login { request, user <= MAX_USER_NAME, host_candidates <= MAX_CANDIDATES };
    LOGIN_OK = 0x42, plain, max 64
        => LoginOk { request, token, reflexive };
    KEEPALIVE = 0x43, plain, max 32
        => Keepalive { token, profile };
    KEEPALIVE_ACK = 0x44, plain, max 40
        => KeepaliveAck { reflexive };
    PROFILE = 0x45, plain, max 32
        => Profile { token, profile };
    LOOKUP = 0x46, plain, max 24 + MAX_USER_NAME
        => Lookup { token, request, user <= MAX_USER_NAME };
    LOOKUP_REPLY = 0x47, plain, max 16 + 33
        => LookupReply { request, online, key };
    CONNECT = 0x48, plain, max 40 + MAX_USER_NAME
        => Connect { token, request, peer <= MAX_USER_NAME, profile };
    OFFER = 0x49, plain, max 81 + MAX_USER_NAME + MAX_CANDIDATES * 24
        => Offer {
            request, session, peer_key, initiator, peer <= MAX_USER_NAME, peer_candidates <= MAX_CANDIDATES, strategy,
            peer_profile, peer_transport,
        };
    OFFER_ACK = 0x4a, plain, max 24
        => OfferAck { token, session };
    RELAY = 0x4b, plain, max MAX_RELAY_FRAME
        => Relay { token, session, payload <= MAX_RELAY_PAYLOAD };
    RELAYED = 0x4c, plain, max MAX_RELAY_FRAME
        => Relayed { session, payload <= MAX_RELAY_PAYLOAD };
    SESSION_ENDED = 0x4d, plain, max 16
        => SessionEnded { session, reason };
    DISCOVER = 0x4e, plain, max 16
        => Discover { nonce, answer_from };
    DISCOVER_REPLY = 0x4f, plain, max 48
        => DiscoverReply { nonce, reflexive };
    LOGOUT = 0x50, plain, max 16
        => Logout { token };
    ERROR = 0x51, plain, max 16
        => Error { request, code };
    // Text messages through the server (DESIGN §3, "Messaging").
    TEXT_SEND = 0x52, plain, max 40 + MAX_USER_NAME + MAX_SEALED_TEXT
        => TextSend { token, id, to <= MAX_USER_NAME, sealed <= MAX_SEALED_TEXT };
    TEXT_ACK = 0x53, plain, max 32
        => TextAck { id, status };
    TEXT_REJECTED = 0x54, plain, max 32
        => TextRejected { id, reason };
    TEXT_DELIVER = 0x55, plain, max 40 + MAX_USER_NAME + MAX_SEALED_TEXT
        => TextDeliver { from <= MAX_USER_NAME, id, sealed <= MAX_SEALED_TEXT };
    TEXT_DELIVER_ACK = 0x56, plain, max 40 + MAX_USER_NAME
        => TextDeliverAck { token, from <= MAX_USER_NAME, id };
    INBOX_SYNC = 0x57, plain, max 16
        => InboxSync { token };
    INBOX_STATUS = 0x58, plain, max 16
        => InboxStatus { pending };
    LEAVE = 0x59, plain, max 24
        => Leave { token, session };
    // Peer to peer.
    OPENER = 0x60, peer, max 32
        => Opener { session, counter };
    PROBE = 0x61, peer, max 32
        => Probe { session, attempt, counter };
    PROBE_ACK = 0x62, peer, max 64
        => ProbeAck { session, attempt, probe_counter, counter, observed };
    SESSION = 0x63, peer, max MAX_PEER_FRAME
        => Session { session, counter, body };
}

/// Marks a tag no registry row has, in [`BY_TAG`].
const UNREGISTERED: u8 = u8::MAX;

/// Each byte's row in [`FRAME_TYPES`], or [`UNREGISTERED`]. Built when the
/// crate compiles, which also refuses a registry with a repeated tag, a tag
/// in STUN's range, rows out of tag order, or a size limit over a datagram.
const BY_TAG: [u8; 256] = {
    assert!(FRAME_TYPES.len() < UNREGISTERED as usize);
    let mut by_tag = [UNREGISTERED; 256];
    let mut row = 0;
    while row < FRAME_TYPES.len() {
        let frame_type = &FRAME_TYPES[row];
        assert!(frame_type.tag >= FIRST_TAG, "a frame tag is in STUN's range");
        assert!(by_tag[frame_type.tag as usize] == UNREGISTERED, "two frame types share a tag");
        assert!(row == 0 || FRAME_TYPES[row - 1].tag < frame_type.tag, "the rows are not in tag order");
        assert!(frame_type.max_size <= MAX_DATAGRAM, "a frame type's limit exceeds a datagram");
        // Peer frames travel sealed end to end, through the relay too.
        assert!(!frame_type.peer || frame_type.max_size <= MAX_PEER_FRAME, "a peer frame type does not fit the relay");
        // Client–server frames travel sealed in the channel.
        assert!(
            frame_type.tag >= 0x60 || frame_type.max_size + crate::wire::channel::SEALED_OVERHEAD <= MAX_DATAGRAM,
            "a client-server frame type's limit exceeds a datagram once sealed"
        );
        by_tag[frame_type.tag as usize] = row as u8;
        row += 1;
    }
    by_tag
};

impl FrameType {
    /// The frame type with `tag`, if one is registered.
    pub const fn of_tag(tag: u8) -> Option<&'static FrameType> {
        match BY_TAG[tag as usize] {
            UNREGISTERED => None,
            row => Some(&FRAME_TYPES[row as usize]),
        }
    }

    /// The frame type with `tag`, which the registry holds.
    const fn registered(tag: u8) -> &'static FrameType {
        match FrameType::of_tag(tag) {
            Some(frame_type) => frame_type,
            None => panic!("an unregistered tag"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_tag_is_registered_once() {
        // Given the registry, when its tags are collected, then none repeats.
        let tags: BTreeSet<u8> = FRAME_TYPES.iter().map(|t| t.tag).collect();
        assert_eq!(tags.len(), FRAME_TYPES.len());
        // And each names a different variant.
        let names: BTreeSet<&str> = FRAME_TYPES.iter().map(|t| t.name).collect();
        assert_eq!(names.len(), FRAME_TYPES.len());
    }

    #[test]
    fn every_byte_finds_its_row_or_none() {
        // Given every byte, when it is looked up, then a registered tag finds
        // its own row and any other byte finds nothing.
        for byte in 0..=u8::MAX {
            let row = FRAME_TYPES.iter().find(|t| t.tag == byte);
            assert_eq!(FrameType::of_tag(byte), row, "byte {byte:#04x}");
        }
    }

    #[test]
    fn only_frames_of_a_session_travel_end_to_end() {
        // Given the registry, then exactly the frames between session peers
        // (opener, probe, probe ack, session) are peer frames.
        let peer: Vec<&str> = FRAME_TYPES.iter().filter(|t| t.peer).map(|t| t.name).collect();
        assert_eq!(peer, ["Opener", "Probe", "ProbeAck", "Session"]);
    }
}
