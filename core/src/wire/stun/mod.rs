//! STUN (RFC 8489) for the Binding method only: a codec, accessors for the
//! attributes a Binding exchange uses, message builders, and the stateless
//! answer a STUN server gives to a datagram.
//!
//! What is implemented, by RFC 8489 section:
//! - §5 message structure: the 20-byte header (two zero bits, 14-bit message
//!   type interleaving a 12-bit method and a 2-bit [`Class`], 16-bit length,
//!   [`MAGIC_COOKIE`], 96-bit [`TransactionId`]);
//! - §14 attribute TLVs padded to 4 bytes (padding is ignored on decode and
//!   written as zeros on encode), kept raw as [`RawAttribute`] in wire order;
//! - §14.1/§14.2 MAPPED-ADDRESS and XOR-MAPPED-ADDRESS (IPv4 and IPv6);
//! - §14.7 FINGERPRINT (CRC-32 XOR `0x5354554e`): when present it must be the
//!   last attribute and correct, or decoding fails;
//! - §14.8 ERROR-CODE, §14.13 UNKNOWN-ATTRIBUTES, §14.14 SOFTWARE;
//! - §6.3 server processing of Binding requests, in [`read_request`] (and
//!   [`answer_binding`] for a server with one address);
//! - RFC 5780 §7.2-§7.4 CHANGE-REQUEST, RESPONSE-ORIGIN and OTHER-ADDRESS,
//!   for NAT behaviour discovery against a server with an alternate
//!   address (§6.1); the server machine's answers stay within
//!   [`MAX_AMPLIFICATION`] times their request.
//!
//! Deviations from RFC 5780, both for the amplification bound:
//! - §6.1: "The server MUST include both MAPPED-ADDRESS and
//!   XOR-MAPPED-ADDRESS in its Response": MAPPED-ADDRESS is left out, as
//!   RFC 8489 servers do; it would add 12 (IPv6: 24) bytes to every answer.
//! - §6.1: RESPONSE-ORIGIN and OTHER-ADDRESS are in every response of a
//!   server with an alternate address, but for one that would exceed
//!   [`MAX_AMPLIFICATION`]: only an IPv6 request under 32 bytes. An RFC 5780
//!   client over IPv6 that sends FINGERPRINT (or SOFTWARE) is answered in
//!   full.
//!
//! MESSAGE-INTEGRITY (§14.5) and MESSAGE-INTEGRITY-SHA256 (§14.6) are carried
//! as raw bytes and never verified; as §14.5 and §14.6 require, the accessors
//! ignore attributes that follow them (other than MESSAGE-INTEGRITY-SHA256 and
//! FINGERPRINT).
//!
//! Decoding never panics and validates the whole datagram before allocating
//! anything; what it then allocates is linear in the datagram's size (one
//! attribute list sized by a counting pass, and one copy of each value).
//! Test vectors from RFC 5769 live in `core/tests/stun_vectors.rs`.
//!
//! Here: the header's pieces (message type, [`Class`], [`TransactionId`],
//! FINGERPRINT's CRC). In submodules: [`attr`], the attribute types;
//! `attribute`, [`RawAttribute`], the address values of §14.1/§14.2 and
//! [`ChangeRequest`]; `message`, [`Message`]'s codec and accessors;
//! `binding`, the Binding messages Punchline builds; `answer`, what a
//! server answers ([`read_request`], [`answer_binding`]).

mod answer;
pub mod attr;
mod attribute;
mod binding;
mod message;

pub use answer::{answer_binding, read_request, BindingRequest, Received, Refusal, MAX_AMPLIFICATION};
pub use attribute::{ChangeRequest, RawAttribute};
pub use binding::{binding_error, binding_request, binding_success};
pub use message::{EncodeError, Message, StunError};

/// The fixed magic cookie in bytes 4..8 of every RFC 5389/8489 message (§5).
pub const MAGIC_COOKIE: u32 = 0x2112_A442;

/// The Binding method (§18.2), the only method this codec answers.
pub const BINDING: u16 = 0x0001;

/// The size of the STUN header in bytes (§5).
pub const HEADER_LEN: usize = 20;

/// The value XORed into the CRC-32 of a FINGERPRINT attribute (§14.7).
pub const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// What Punchline writes in the SOFTWARE attribute of the messages it builds.
pub const SOFTWARE_NAME: &str = "punchline";

/// The largest method a message type can hold (12 bits, §5).
pub const MAX_METHOD: u16 = 0x0FFF;

/// The longest ERROR-CODE reason phrase, in bytes (§14.8).
pub const MAX_REASON_LEN: usize = 763;

/// At most this many attribute types are listed in the UNKNOWN-ATTRIBUTES of
/// a message built by [`binding_error`], so the message stays well inside
/// STUN's 16-bit length.
pub const MAX_UNKNOWN_LISTED: usize = 16_384;

/// The 96-bit transaction id that pairs a response with its request (§5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransactionId(pub [u8; 12]);

/// The class of a STUN message (§5), held in two bits of the message type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// A request (`0b00`): expects a response.
    Request,
    /// An indication (`0b01`): expects nothing back.
    Indication,
    /// A success response (`0b10`).
    SuccessResponse,
    /// An error response (`0b11`), carrying an ERROR-CODE.
    ErrorResponse,
}

impl Class {
    /// The class's two bits, `C1 C0`.
    const fn bits(self) -> u16 {
        match self {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::SuccessResponse => 0b10,
            Class::ErrorResponse => 0b11,
        }
    }

    /// The class with bits `C1 C0` (only the low two bits are read).
    const fn from_bits(bits: u16) -> Class {
        match bits & 0b11 {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::SuccessResponse,
            _ => Class::ErrorResponse,
        }
    }
}

/// The 14-bit message type for `class` and `method` (§5, figure 3); `method`
/// must be at most [`MAX_METHOD`] (higher bits are dropped).
pub const fn message_type(class: Class, method: u16) -> u16 {
    let c = class.bits();
    (method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2) | ((c & 0b01) << 4) | ((c & 0b10) << 7)
}

/// Splits a message type into its class and method (§5, figure 3).
pub const fn split_message_type(message_type: u16) -> (Class, u16) {
    let method = (message_type & 0x000F) | ((message_type & 0x00E0) >> 1) | ((message_type & 0x3E00) >> 2);
    let class = ((message_type >> 4) & 0b01) | ((message_type >> 7) & 0b10);
    (Class::from_bits(class), method)
}

/// The FINGERPRINT value (§14.7) of a message whose bytes up to (not
/// including) the FINGERPRINT attribute are `before`; the header's length
/// field in `before` must already count the FINGERPRINT attribute.
pub fn fingerprint(before: &[u8]) -> u32 {
    crc32fast::hash(before) ^ FINGERPRINT_XOR
}

/// Whether `datagram` looks like a STUN message: at least a header, two zero
/// top bits and the magic cookie (§5). Cheap; [`Message::decode`] decides.
pub fn looks_like_stun(datagram: &[u8]) -> bool {
    datagram.len() >= HEADER_LEN && datagram[0] & 0xC0 == 0 && datagram[4..8] == MAGIC_COOKIE.to_be_bytes()
}

/// What the tests of every STUN submodule share.
#[cfg(test)]
mod test_support {
    use std::net::SocketAddr;

    use super::*;

    /// A transaction id for messages built in tests.
    pub(super) const TID: TransactionId = TransactionId([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);

    /// An address from its text.
    pub(super) fn v4(s: &str) -> SocketAddr {
        s.parse().expect("test address parses")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_type_interleaves_class_and_method() {
        // Given the §5 examples: Binding request 0x0001, success 0x0101,
        // error 0x0111, indication 0x0011.
        // When / then: building and splitting agree.
        assert_eq!(message_type(Class::Request, BINDING), 0x0001);
        assert_eq!(message_type(Class::SuccessResponse, BINDING), 0x0101);
        assert_eq!(message_type(Class::ErrorResponse, BINDING), 0x0111);
        assert_eq!(message_type(Class::Indication, BINDING), 0x0011);
        assert_eq!(message_type(Class::Request, 0x0FFF), 0x3EEF);
        assert_eq!(split_message_type(0x3EEF), (Class::Request, 0x0FFF));
        assert_eq!(split_message_type(0x0111), (Class::ErrorResponse, BINDING));
    }
}
