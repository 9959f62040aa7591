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
//! - §6.3 server processing of Binding requests, in [`answer_binding`].
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

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

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

/// Attribute types (RFC 8489 §18.3 and the IANA registry) this codec knows.
pub mod attr {
    /// MAPPED-ADDRESS (§14.1), the legacy un-XORed reflexive address.
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// USERNAME (§14.3).
    pub const USERNAME: u16 = 0x0006;
    /// MESSAGE-INTEGRITY (§14.5), HMAC-SHA1; carried, never verified here.
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE (§14.8).
    pub const ERROR_CODE: u16 = 0x0009;
    /// UNKNOWN-ATTRIBUTES (§14.13).
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    /// REALM (§14.9).
    pub const REALM: u16 = 0x0014;
    /// NONCE (§14.10).
    pub const NONCE: u16 = 0x0015;
    /// MESSAGE-INTEGRITY-SHA256 (§14.6); carried, never verified here.
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    /// PASSWORD-ALGORITHM (§14.12).
    pub const PASSWORD_ALGORITHM: u16 = 0x001D;
    /// USERHASH (§14.4).
    pub const USERHASH: u16 = 0x001E;
    /// XOR-MAPPED-ADDRESS (§14.2).
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// PRIORITY (RFC 8445 §16.1).
    pub const PRIORITY: u16 = 0x0024;
    /// USE-CANDIDATE (RFC 8445 §16.1).
    pub const USE_CANDIDATE: u16 = 0x0025;
    /// PASSWORD-ALGORITHMS (§14.11), comprehension-optional.
    pub const PASSWORD_ALGORITHMS: u16 = 0x8002;
    /// ALTERNATE-DOMAIN (§14.16), comprehension-optional.
    pub const ALTERNATE_DOMAIN: u16 = 0x8003;
    /// SOFTWARE (§14.14), comprehension-optional.
    pub const SOFTWARE: u16 = 0x8022;
    /// ALTERNATE-SERVER (§14.15), comprehension-optional.
    pub const ALTERNATE_SERVER: u16 = 0x8023;
    /// FINGERPRINT (§14.7), comprehension-optional; must be last.
    pub const FINGERPRINT: u16 = 0x8028;
    /// ICE-CONTROLLED (RFC 8445 §16.1), comprehension-optional.
    pub const ICE_CONTROLLED: u16 = 0x8029;
    /// ICE-CONTROLLING (RFC 8445 §16.1), comprehension-optional.
    pub const ICE_CONTROLLING: u16 = 0x802A;

    /// The comprehension-required types (0x0000-0x7FFF) this codec
    /// understands; any other type in that range makes a request fail with
    /// 420 (§6.3.1).
    pub const UNDERSTOOD_REQUIRED: [u16; 13] = [
        MAPPED_ADDRESS,
        USERNAME,
        MESSAGE_INTEGRITY,
        ERROR_CODE,
        UNKNOWN_ATTRIBUTES,
        REALM,
        NONCE,
        MESSAGE_INTEGRITY_SHA256,
        PASSWORD_ALGORITHM,
        USERHASH,
        XOR_MAPPED_ADDRESS,
        PRIORITY,
        USE_CANDIDATE,
    ];

    /// Whether `kind` is in the comprehension-required range (§14).
    pub const fn is_comprehension_required(kind: u16) -> bool {
        kind < 0x8000
    }
}

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

/// One attribute as it appears on the wire (§14), its value without padding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawAttribute {
    /// The attribute type.
    pub kind: u16,
    /// The value, without the padding to a 4-byte boundary.
    pub value: Vec<u8>,
}

impl RawAttribute {
    /// An attribute of type `kind` holding `value`.
    pub fn new(kind: u16, value: impl Into<Vec<u8>>) -> RawAttribute {
        RawAttribute { kind, value: value.into() }
    }

    /// A XOR-MAPPED-ADDRESS (§14.2) for `addr` in a message with
    /// transaction id `tid`.
    pub fn xor_mapped_address(addr: SocketAddr, tid: TransactionId) -> RawAttribute {
        let mut value = address_value(addr);
        xor_address_bytes(&mut value, tid);
        RawAttribute::new(attr::XOR_MAPPED_ADDRESS, value)
    }

    /// A legacy MAPPED-ADDRESS (§14.1) for `addr`.
    pub fn mapped_address(addr: SocketAddr) -> RawAttribute {
        RawAttribute::new(attr::MAPPED_ADDRESS, address_value(addr))
    }

    /// A SOFTWARE attribute (§14.14).
    pub fn software(name: &str) -> RawAttribute {
        RawAttribute::new(attr::SOFTWARE, name.as_bytes())
    }

    /// An ERROR-CODE (§14.8) for `code` (meant to be within 300..=699: the
    /// hundreds go in three bits, so other codes do not survive) and `reason`,
    /// cut to at most [`MAX_REASON_LEN`] bytes on a character boundary.
    pub fn error_code(code: u16, reason: &str) -> RawAttribute {
        let mut cut = reason.len().min(MAX_REASON_LEN);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        let class = ((code / 100) & 0x07) as u8;
        let number = (code % 100) as u8;
        let mut value = Vec::with_capacity(4 + cut);
        value.extend_from_slice(&[0, 0, class, number]);
        value.extend_from_slice(&reason.as_bytes()[..cut]);
        RawAttribute::new(attr::ERROR_CODE, value)
    }

    /// An UNKNOWN-ATTRIBUTES (§14.13) listing `kinds`, zero-padded as §14.13
    /// says (not by repeating the last type, as RFC 3489 did).
    pub fn unknown_attributes(kinds: &[u16]) -> RawAttribute {
        let value: Vec<u8> = kinds.iter().flat_map(|k| k.to_be_bytes()).collect();
        RawAttribute::new(attr::UNKNOWN_ATTRIBUTES, value)
    }

    /// A FINGERPRINT (§14.7) placeholder: [`Message::encode`] computes its
    /// value when it is the last attribute.
    pub fn fingerprint() -> RawAttribute {
        RawAttribute::new(attr::FINGERPRINT, [0u8; 4])
    }
}

/// Why a datagram is not a valid STUN message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StunError {
    /// The datagram is shorter than the header, or than the length its
    /// header declares.
    #[error("truncated STUN message: shorter than its 20-byte header or its declared length")]
    Truncated,
    /// One of the two most significant bits of the first byte is set (§5).
    #[error("not a STUN message: the two most significant bits must be zero")]
    NotStun,
    /// Bytes 4..8 are not [`MAGIC_COOKIE`] (§5).
    #[error("bad STUN magic cookie: expected 0x2112a442")]
    BadMagicCookie,
    /// The header's length is not a multiple of 4, or bytes follow the
    /// message it declares (§5).
    #[error("bad STUN message length: not a multiple of 4, or bytes follow the message")]
    BadLength,
    /// An attribute's value (with its padding) runs past the message's end.
    #[error("STUN attribute {kind:#06x} of length {len} runs past the end of the message")]
    AttributeOverrun {
        /// The attribute's type.
        kind: u16,
        /// Its declared value length.
        len: u16,
    },
    /// A FINGERPRINT attribute whose value is not 4 bytes long (§14.7).
    #[error("STUN FINGERPRINT attribute is {0} bytes long, not 4")]
    BadFingerprintLength(u16),
    /// The FINGERPRINT does not match the message's CRC-32 (§14.7).
    #[error("STUN FINGERPRINT does not match the message's CRC-32")]
    BadFingerprint,
    /// An attribute follows FINGERPRINT, which must be last (§14.7).
    #[error("STUN attribute follows FINGERPRINT, which must be the last attribute")]
    AttributeAfterFingerprint,
}

/// Why a [`Message`] cannot be encoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncodeError {
    /// The method does not fit in 12 bits (§5).
    #[error("STUN method {0:#06x} does not fit in 12 bits")]
    MethodOutOfRange(u16),
    /// An attribute's value is longer than its 16-bit length field allows.
    #[error("STUN attribute {kind:#06x} value of {len} bytes exceeds 65535 bytes")]
    AttributeTooLong {
        /// The attribute's type.
        kind: u16,
        /// Its value's length.
        len: usize,
    },
    /// The attributes (with padding) exceed the header's 16-bit length.
    #[error("STUN message body of {0} bytes exceeds 65532 bytes")]
    MessageTooLong(usize),
}

/// A decoded STUN message (§5), attributes kept raw and in wire order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The message class.
    pub class: Class,
    /// The 12-bit method; [`BINDING`] for every message Punchline uses.
    pub method: u16,
    /// The transaction id.
    pub transaction_id: TransactionId,
    /// The attributes in wire order, FINGERPRINT included if present.
    pub attributes: Vec<RawAttribute>,
}

/// One attribute found while walking a message body: its type, value and the
/// offset of its header in the datagram.
struct Found<'a> {
    kind: u16,
    value: &'a [u8],
    offset: usize,
}

/// Walks the attributes of a message whose header is already checked,
/// yielding each attribute or the first structural error.
struct Walk<'a> {
    datagram: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Iterator for Walk<'a> {
    type Item = Result<Found<'a>, StunError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.datagram.len() {
            return None;
        }
        let offset = self.pos;
        // The body's length is a multiple of 4 and so is `pos`, so at least
        // 4 bytes remain; `get` keeps this panic-free regardless.
        let head = self.datagram.get(offset..offset + 4)?;
        let kind = u16::from_be_bytes([head[0], head[1]]);
        let len = u16::from_be_bytes([head[2], head[3]]);
        let start = offset + 4;
        let padded_end = start + padded(usize::from(len));
        match self.datagram.get(start..padded_end) {
            Some(_) => {
                self.pos = padded_end;
                let value = &self.datagram[start..start + usize::from(len)];
                Some(Ok(Found { kind, value, offset }))
            }
            None => {
                self.failed = true;
                Some(Err(StunError::AttributeOverrun { kind, len }))
            }
        }
    }
}

/// `len` rounded up to a multiple of 4.
const fn padded(len: usize) -> usize {
    (len + 3) & !3
}

impl Message {
    /// A message with no attributes.
    pub fn new(class: Class, method: u16, transaction_id: TransactionId) -> Message {
        Message { class, method, transaction_id, attributes: Vec::new() }
    }

    /// Decodes one datagram as one STUN message (§5, §14).
    ///
    /// Checks the two zero top bits, the header, the magic cookie, that the
    /// declared length is a multiple of 4 and covers the datagram exactly,
    /// that every attribute (with padding) lies inside the message, and, when
    /// FINGERPRINT is present, that it is last and correct (§14.7). Any
    /// method and class decode; MESSAGE-INTEGRITY is not verified.
    ///
    /// Never panics; nothing is allocated until the whole datagram is known
    /// to be valid, and then only in proportion to its size.
    pub fn decode(datagram: &[u8]) -> Result<Message, StunError> {
        let Some(&first) = datagram.first() else {
            return Err(StunError::Truncated);
        };
        if first & 0xC0 != 0 {
            return Err(StunError::NotStun);
        }
        let Some(header) = datagram.get(..HEADER_LEN) else {
            return Err(StunError::Truncated);
        };
        if header[4..8] != MAGIC_COOKIE.to_be_bytes() {
            return Err(StunError::BadMagicCookie);
        }
        let declared = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if declared % 4 != 0 {
            return Err(StunError::BadLength);
        }
        match (HEADER_LEN + declared).cmp(&datagram.len()) {
            std::cmp::Ordering::Greater => return Err(StunError::Truncated),
            std::cmp::Ordering::Less => return Err(StunError::BadLength),
            std::cmp::Ordering::Equal => {}
        }
        let (class, method) = split_message_type(u16::from_be_bytes([header[0], header[1]]));
        let mut transaction_id = [0u8; 12];
        transaction_id.copy_from_slice(&header[8..HEADER_LEN]);

        // First pass: validate everything and count, allocating nothing.
        let mut count = 0usize;
        let mut seen_fingerprint = false;
        for found in Message::walk(datagram) {
            let found = found?;
            if seen_fingerprint {
                return Err(StunError::AttributeAfterFingerprint);
            }
            if found.kind == attr::FINGERPRINT {
                seen_fingerprint = true;
                let Ok(received) = <[u8; 4]>::try_from(found.value) else {
                    // The value's length came from a u16 field.
                    let len = u16::try_from(found.value.len()).unwrap_or(u16::MAX);
                    return Err(StunError::BadFingerprintLength(len));
                };
                if fingerprint(&datagram[..found.offset]) != u32::from_be_bytes(received) {
                    return Err(StunError::BadFingerprint);
                }
            }
            count += 1;
        }

        // Second pass: the message is valid; copy the attributes out.
        let mut attributes = Vec::with_capacity(count);
        for found in Message::walk(datagram).flatten() {
            attributes.push(RawAttribute::new(found.kind, found.value));
        }
        Ok(Message { class, method, transaction_id: TransactionId(transaction_id), attributes })
    }

    /// The attributes of a datagram whose header has been checked.
    fn walk(datagram: &[u8]) -> Walk<'_> {
        Walk { datagram, pos: HEADER_LEN, failed: false }
    }

    /// Encodes the message, or says why it cannot be.
    ///
    /// Attributes are written in order with zeroed padding. When the last
    /// attribute is FINGERPRINT its value is computed afresh (§14.7), so the
    /// output is valid; a FINGERPRINT anywhere else is written as given.
    /// MESSAGE-INTEGRITY values are written as given.
    pub fn try_encode(&self) -> Result<Vec<u8>, EncodeError> {
        if self.method > MAX_METHOD {
            return Err(EncodeError::MethodOutOfRange(self.method));
        }
        let last = self.attributes.len().checked_sub(1);
        let fingerprint_at = last.filter(|&i| self.attributes[i].kind == attr::FINGERPRINT);
        let mut body = 0usize;
        for (i, a) in self.attributes.iter().enumerate() {
            let len = if Some(i) == fingerprint_at { 4 } else { a.value.len() };
            if len > usize::from(u16::MAX) {
                return Err(EncodeError::AttributeTooLong { kind: a.kind, len });
            }
            body += 4 + padded(len);
        }
        let Ok(body_field) = u16::try_from(body) else {
            return Err(EncodeError::MessageTooLong(body));
        };

        let mut out = Vec::with_capacity(HEADER_LEN + body);
        out.extend_from_slice(&message_type(self.class, self.method).to_be_bytes());
        out.extend_from_slice(&body_field.to_be_bytes());
        out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        out.extend_from_slice(&self.transaction_id.0);
        for (i, a) in self.attributes.iter().enumerate() {
            out.extend_from_slice(&a.kind.to_be_bytes());
            if Some(i) == fingerprint_at {
                let crc = fingerprint(&out[..out.len() - 2]);
                out.extend_from_slice(&4u16.to_be_bytes());
                out.extend_from_slice(&crc.to_be_bytes());
                continue;
            }
            // Checked above: every length fits in 16 bits.
            let len = a.value.len() as u16;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&a.value);
            out.resize(out.len() + padded(a.value.len()) - a.value.len(), 0);
        }
        Ok(out)
    }

    /// Encodes the message exactly: attributes in order, padding zeroed, a
    /// trailing FINGERPRINT recomputed, MESSAGE-INTEGRITY kept as given.
    ///
    /// # Panics
    ///
    /// When [`Message::try_encode`] fails: the method exceeds 12 bits, or the
    /// attributes do not fit STUN's 16-bit lengths. Every decoded message
    /// and every message built by this module encodes.
    pub fn encode(&self) -> Vec<u8> {
        match self.try_encode() {
            Ok(bytes) => bytes,
            Err(e) => panic!("cannot encode STUN message: {e}"),
        }
    }

    /// The attributes a receiver takes into account: all of them up to
    /// MESSAGE-INTEGRITY, after it only MESSAGE-INTEGRITY-SHA256 and
    /// FINGERPRINT, and after MESSAGE-INTEGRITY-SHA256 only FINGERPRINT
    /// (§14.5, §14.6).
    pub fn effective_attributes(&self) -> impl Iterator<Item = &RawAttribute> + '_ {
        // 0: before any integrity; 1: after MESSAGE-INTEGRITY; 2: after
        // MESSAGE-INTEGRITY-SHA256.
        let mut stage = 0u8;
        self.attributes.iter().filter(move |a| match (stage, a.kind) {
            (0, attr::MESSAGE_INTEGRITY) => {
                stage = 1;
                true
            }
            (0 | 1, attr::MESSAGE_INTEGRITY_SHA256) => {
                stage = 2;
                true
            }
            (0, _) | (_, attr::FINGERPRINT) => true,
            _ => false,
        })
    }

    /// The first effective attribute of type `kind` (§14: only the first
    /// occurrence of a type needs processing).
    pub fn attribute(&self, kind: u16) -> Option<&RawAttribute> {
        self.effective_attributes().find(|a| a.kind == kind)
    }

    /// Whether the message ends with a FINGERPRINT attribute. A decoded
    /// message's FINGERPRINT has been verified.
    pub fn has_fingerprint(&self) -> bool {
        self.attributes.last().is_some_and(|a| a.kind == attr::FINGERPRINT)
    }

    /// The XOR-MAPPED-ADDRESS (§14.2), IPv4 or IPv6, if present and well
    /// formed.
    pub fn xor_mapped_address(&self) -> Option<SocketAddr> {
        let a = self.attribute(attr::XOR_MAPPED_ADDRESS)?;
        let mut value = a.value.clone();
        xor_address_bytes(&mut value, self.transaction_id);
        parse_address(&value)
    }

    /// The legacy MAPPED-ADDRESS (§14.1), if present and well formed.
    pub fn mapped_address(&self) -> Option<SocketAddr> {
        parse_address(&self.attribute(attr::MAPPED_ADDRESS)?.value)
    }

    /// The comprehension-required attribute types (0x0000-0x7FFF) in the
    /// message that this codec does not understand (see
    /// [`attr::UNDERSTOOD_REQUIRED`]), each once, in order of first
    /// appearance. A request with any gets a 420 answer (§6.3.1).
    pub fn unknown_comprehension_required(&self) -> Vec<u16> {
        let mut seen = BTreeSet::new();
        self.effective_attributes()
            .map(|a| a.kind)
            .filter(|&k| attr::is_comprehension_required(k))
            .filter(|k| !attr::UNDERSTOOD_REQUIRED.contains(k))
            .filter(|&k| seen.insert(k))
            .collect()
    }

    /// The ERROR-CODE (§14.8) as (code, reason phrase), if present and its
    /// class is 3-6 and number 0-99. An ill-formed UTF-8 reason is repaired
    /// with replacement characters.
    pub fn error_code(&self) -> Option<(u16, String)> {
        let value = &self.attribute(attr::ERROR_CODE)?.value;
        let head = value.get(..4)?;
        let class = u16::from(head[2] & 0x07);
        let number = u16::from(head[3]);
        if !(3..=6).contains(&class) || number > 99 {
            return None;
        }
        let reason = String::from_utf8_lossy(&value[4..]).into_owned();
        Some((class * 100 + number, reason))
    }

    /// The UNKNOWN-ATTRIBUTES list (§14.13), if present (an odd trailing
    /// byte is ignored).
    pub fn unknown_attributes(&self) -> Option<Vec<u16>> {
        let value = &self.attribute(attr::UNKNOWN_ATTRIBUTES)?.value;
        Some(value.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect())
    }

    /// The SOFTWARE description (§14.14), if present and valid UTF-8.
    pub fn software(&self) -> Option<&str> {
        std::str::from_utf8(&self.attribute(attr::SOFTWARE)?.value).ok()
    }
}

/// The MAPPED-ADDRESS value layout (§14.1): reserved byte, family, port,
/// address.
fn address_value(addr: SocketAddr) -> Vec<u8> {
    let mut value = Vec::with_capacity(20);
    value.push(0);
    match addr.ip() {
        IpAddr::V4(ip) => {
            value.push(0x01);
            value.extend_from_slice(&addr.port().to_be_bytes());
            value.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            value.push(0x02);
            value.extend_from_slice(&addr.port().to_be_bytes());
            value.extend_from_slice(&ip.octets());
        }
    }
    value
}

/// XORs the port and address of an address value in place (§14.2): the port
/// with the cookie's top 16 bits, the address with the cookie followed by
/// the transaction id. Its own inverse; short values are XORed as far as they
/// go.
fn xor_address_bytes(value: &mut [u8], tid: TransactionId) {
    let mut key = [0u8; 16];
    key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    key[4..].copy_from_slice(&tid.0);
    if let Some(port) = value.get_mut(2..4) {
        port[0] ^= key[0];
        port[1] ^= key[1];
    }
    if let Some(address) = value.get_mut(4..) {
        for (b, k) in address.iter_mut().zip(key) {
            *b ^= k;
        }
    }
}

/// Parses a (plain) MAPPED-ADDRESS value (§14.1); the reserved byte is
/// ignored, the length must match the family exactly.
fn parse_address(value: &[u8]) -> Option<SocketAddr> {
    let port = u16::from_be_bytes([*value.get(2)?, *value.get(3)?]);
    let ip = match (value.get(1)?, value.len()) {
        (0x01, 8) => {
            let octets: [u8; 4] = value[4..8].try_into().ok()?;
            IpAddr::V4(Ipv4Addr::from(octets))
        }
        (0x02, 20) => {
            let octets: [u8; 16] = value[4..20].try_into().ok()?;
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Encodes a message built by this module (small by construction).
fn encode_built(message: &Message) -> Vec<u8> {
    // Built messages have a 12-bit method, values under 1 KiB except an
    // UNKNOWN-ATTRIBUTES list capped at MAX_UNKNOWN_LISTED entries, so the
    // body stays far below 65532 bytes.
    message.encode()
}

/// A Binding request (§6.1) with SOFTWARE ([`SOFTWARE_NAME`]) and
/// FINGERPRINT.
pub fn binding_request(tid: TransactionId) -> Vec<u8> {
    let mut m = Message::new(Class::Request, BINDING, tid);
    m.attributes.push(RawAttribute::software(SOFTWARE_NAME));
    m.attributes.push(RawAttribute::fingerprint());
    encode_built(&m)
}

/// A Binding success response (§6.3.1.1) telling the requester its
/// reflexive address `mapped`: XOR-MAPPED-ADDRESS, SOFTWARE and FINGERPRINT.
pub fn binding_success(tid: TransactionId, mapped: SocketAddr) -> Vec<u8> {
    let mut m = Message::new(Class::SuccessResponse, BINDING, tid);
    m.attributes.push(RawAttribute::xor_mapped_address(mapped, tid));
    m.attributes.push(RawAttribute::software(SOFTWARE_NAME));
    m.attributes.push(RawAttribute::fingerprint());
    encode_built(&m)
}

/// A Binding error response (§6.3.1.1): ERROR-CODE `code` with `reason` (see
/// [`RawAttribute::error_code`]), UNKNOWN-ATTRIBUTES when `unknown` is not
/// empty (as a 420 requires; at most [`MAX_UNKNOWN_LISTED`] are listed),
/// SOFTWARE and FINGERPRINT.
pub fn binding_error(tid: TransactionId, code: u16, reason: &str, unknown: &[u16]) -> Vec<u8> {
    error_response(BINDING, tid, code, reason, unknown)
}

/// An error response for any method; see [`binding_error`].
fn error_response(method: u16, tid: TransactionId, code: u16, reason: &str, unknown: &[u16]) -> Vec<u8> {
    let mut m = Message::new(Class::ErrorResponse, method & MAX_METHOD, tid);
    m.attributes.push(RawAttribute::error_code(code, reason));
    if !unknown.is_empty() {
        let listed = &unknown[..unknown.len().min(MAX_UNKNOWN_LISTED)];
        m.attributes.push(RawAttribute::unknown_attributes(listed));
    }
    m.attributes.push(RawAttribute::software(SOFTWARE_NAME));
    m.attributes.push(RawAttribute::fingerprint());
    encode_built(&m)
}

/// What a STUN server answers to `datagram` received from `from`, or `None`
/// when it must stay silent (RFC 8489 §6.3):
/// - undecodable datagrams, including a bad FINGERPRINT, are dropped;
/// - indications and responses get no answer;
/// - a request for another method gets 400 (Bad Request);
/// - a Binding request with unknown comprehension-required attributes gets
///   420 (Unknown Attribute) listing them in UNKNOWN-ATTRIBUTES (§6.3.1);
/// - any other Binding request gets a success response carrying `from` in
///   XOR-MAPPED-ADDRESS (§6.3.1.1).
///
/// Every answer echoes the request's transaction id and carries SOFTWARE and
/// FINGERPRINT. Stateless and allocation-bounded; never panics.
pub fn answer_binding(datagram: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    let request = Message::decode(datagram).ok()?;
    if request.class != Class::Request {
        return None;
    }
    let tid = request.transaction_id;
    if request.method != BINDING {
        return Some(error_response(request.method, tid, 400, "Bad Request", &[]));
    }
    let unknown = request.unknown_comprehension_required();
    if !unknown.is_empty() {
        return Some(binding_error(tid, 420, "Unknown Attribute", &unknown));
    }
    Some(binding_success(tid, from))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TID: TransactionId = TransactionId([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);

    fn v4(s: &str) -> SocketAddr {
        s.parse().expect("test address parses")
    }

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

    #[test]
    fn binding_request_round_trips() {
        // Given a Binding request built by this module.
        let bytes = binding_request(TID);
        // When it is decoded.
        let m = Message::decode(&bytes).expect("own request decodes");
        // Then it has the expected shape and re-encodes to the same bytes.
        assert_eq!(bytes.len(), 20 + 16 + 8);
        assert_eq!(&bytes[..4], &[0x00, 0x01, 0x00, 24]);
        assert_eq!(m.class, Class::Request);
        assert_eq!(m.method, BINDING);
        assert_eq!(m.transaction_id, TID);
        assert_eq!(m.software(), Some("punchline"));
        assert!(m.has_fingerprint());
        assert_eq!(m.attributes.len(), 2);
        assert_eq!(m.encode(), bytes);
    }

    #[test]
    fn xor_mapped_address_v4() {
        // Given a success response for 192.0.2.1:32853 (the RFC 5769 address).
        let tid = TransactionId([0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae]);
        let bytes = binding_success(tid, v4("192.0.2.1:32853"));
        // When it is decoded.
        let m = Message::decode(&bytes).expect("own response decodes");
        // Then the XORed bytes are RFC 5769's and the address comes back.
        assert_eq!(&bytes[20..32], &[0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43]);
        assert_eq!(m.class, Class::SuccessResponse);
        assert_eq!(m.xor_mapped_address(), Some(v4("192.0.2.1:32853")));
        assert_eq!(m.mapped_address(), None);
        assert_eq!(m.software(), Some("punchline"));
    }

    #[test]
    fn xor_mapped_address_v6() {
        // Given a success response for the RFC 5769 IPv6 address.
        let tid = TransactionId([0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae]);
        let addr = v4("[2001:db8:1234:5678:11:2233:4455:6677]:32853");
        let bytes = binding_success(tid, addr);
        // When it is decoded.
        let m = Message::decode(&bytes).expect("own response decodes");
        // Then the XORed bytes are RFC 5769 §2.3's and the address comes back.
        assert_eq!(
            &bytes[20..44],
            &[
                0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc,
                0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9
            ]
        );
        assert_eq!(m.xor_mapped_address(), Some(addr));
    }

    #[test]
    fn mapped_address_is_plain() {
        // Given a message with a legacy MAPPED-ADDRESS.
        let mut m = Message::new(Class::SuccessResponse, BINDING, TID);
        m.attributes.push(RawAttribute::mapped_address(v4("10.1.2.3:4567")));
        // When it is encoded and decoded.
        let bytes = m.encode();
        let back = Message::decode(&bytes).expect("decodes");
        // Then the address is stored un-XORed and read back.
        assert_eq!(&bytes[24..32], &[0, 1, 0x11, 0xd7, 10, 1, 2, 3]);
        assert_eq!(back.mapped_address(), Some(v4("10.1.2.3:4567")));
        assert_eq!(back.xor_mapped_address(), None);
    }

    #[test]
    fn round_trip_zeroes_padding_and_keeps_order() {
        // Given a message with odd-length values and a trailing FINGERPRINT
        // whose given value is wrong.
        let mut m = Message::new(Class::Indication, 0x0ABC, TID);
        m.attributes.push(RawAttribute::new(0x8001, vec![0xAA]));
        m.attributes.push(RawAttribute::new(0x0006, b"user".to_vec()));
        m.attributes.push(RawAttribute::new(0x7777, Vec::new()));
        m.attributes.push(RawAttribute::new(attr::FINGERPRINT, vec![9, 9]));
        // When it is encoded.
        let bytes = m.encode();
        // Then padding is zero, FINGERPRINT is recomputed and decoding gives
        // the same message but for the FINGERPRINT value.
        assert_eq!(&bytes[20..28], &[0x80, 0x01, 0x00, 0x01, 0xAA, 0, 0, 0]);
        assert_eq!(bytes.len(), 20 + 8 + 8 + 4 + 8);
        let back = Message::decode(&bytes).expect("decodes");
        assert_eq!(back.class, Class::Indication);
        assert_eq!(back.method, 0x0ABC);
        assert_eq!(back.attributes[..3], m.attributes[..3]);
        let crc = fingerprint(&bytes[..bytes.len() - 8]);
        assert_eq!(back.attributes[3].value, crc.to_be_bytes().to_vec());
        assert_eq!(back.encode(), bytes);
    }

    #[test]
    fn unknown_comprehension_required_gets_420() {
        // Given a Binding request with an unknown comprehension-required
        // attribute 0x0003 (CHANGE-REQUEST) twice, and an unknown optional one.
        let mut m = Message::new(Class::Request, BINDING, TID);
        m.attributes.push(RawAttribute::new(0x0003, vec![0, 0, 0, 6]));
        m.attributes.push(RawAttribute::new(0xC001, vec![1]));
        m.attributes.push(RawAttribute::new(0x0003, vec![0, 0, 0, 0]));
        m.attributes.push(RawAttribute::new(attr::PRIORITY, vec![0, 0, 0, 1]));
        m.attributes.push(RawAttribute::fingerprint());
        assert_eq!(m.unknown_comprehension_required(), vec![0x0003]);
        // When a server answers it.
        let answer = answer_binding(&m.encode(), v4("192.0.2.1:1")).expect("answered");
        // Then the answer is a Binding error 420 listing 0x0003.
        let r = Message::decode(&answer).expect("answer decodes");
        assert_eq!(r.class, Class::ErrorResponse);
        assert_eq!(r.method, BINDING);
        assert_eq!(r.transaction_id, TID);
        assert_eq!(r.error_code(), Some((420, "Unknown Attribute".to_string())));
        assert_eq!(r.unknown_attributes(), Some(vec![0x0003]));
        assert_eq!(r.attribute(attr::UNKNOWN_ATTRIBUTES).map(|a| a.value.clone()), Some(vec![0x00, 0x03]));
        assert!(r.has_fingerprint());
    }

    #[test]
    fn binding_request_gets_success_with_source_address() {
        // Given a Binding request from 198.51.100.7:40000.
        let from = v4("198.51.100.7:40000");
        // When a server answers it.
        let answer = answer_binding(&binding_request(TID), from).expect("answered");
        // Then it is a success response carrying the source address.
        let r = Message::decode(&answer).expect("answer decodes");
        assert_eq!(r.class, Class::SuccessResponse);
        assert_eq!(r.transaction_id, TID);
        assert_eq!(r.xor_mapped_address(), Some(from));
        assert_eq!(answer, binding_success(TID, from));
    }

    #[test]
    fn other_methods_get_400() {
        // Given an Allocate (0x003) request.
        let m = Message::new(Class::Request, 0x0003, TID);
        // When a server answers it.
        let answer = answer_binding(&m.encode(), v4("192.0.2.1:1")).expect("answered");
        // Then it is a 400 error response of the same method.
        let r = Message::decode(&answer).expect("answer decodes");
        assert_eq!(r.class, Class::ErrorResponse);
        assert_eq!(r.method, 0x0003);
        assert_eq!(r.error_code(), Some((400, "Bad Request".to_string())));
        assert_eq!(r.unknown_attributes(), None);
    }

    #[test]
    fn responses_and_indications_get_silence() {
        // Given a success response, an error response and an indication.
        let from = v4("192.0.2.1:1");
        let success = binding_success(TID, from);
        let error = binding_error(TID, 420, "Unknown Attribute", &[0x0003]);
        let indication = Message::new(Class::Indication, BINDING, TID).encode();
        // When a server receives them, then it says nothing.
        assert_eq!(answer_binding(&success, from), None);
        assert_eq!(answer_binding(&error, from), None);
        assert_eq!(answer_binding(&indication, from), None);
    }

    #[test]
    fn bad_fingerprint_is_rejected_and_dropped() {
        // Given a valid request with one bit of its SOFTWARE flipped.
        let mut bytes = binding_request(TID);
        bytes[24] ^= 0x01;
        // When it is decoded or answered.
        // Then decoding fails on the FINGERPRINT and the server is silent.
        assert_eq!(Message::decode(&bytes), Err(StunError::BadFingerprint));
        assert_eq!(answer_binding(&bytes, v4("192.0.2.1:1")), None);
        // And a FINGERPRINT of the wrong length is reported as such.
        let mut m = Message::decode(&binding_request(TID)).expect("decodes");
        m.attributes[1].value = vec![0; 8];
        m.attributes.push(RawAttribute::new(0x8000, vec![]));
        assert_eq!(Message::decode(&m.encode()), Err(StunError::BadFingerprintLength(8)));
        // And an attribute after a correct FINGERPRINT is refused.
        let mut m = Message::decode(&binding_request(TID)).expect("decodes");
        m.attributes.push(RawAttribute::new(0x8000, vec![]));
        let mut bytes = m.encode();
        let fp_at = 20 + 16;
        let crc = fingerprint(&bytes[..fp_at]);
        bytes[fp_at + 4..fp_at + 8].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(Message::decode(&bytes), Err(StunError::AttributeAfterFingerprint));
    }

    #[test]
    fn truncated_inputs_are_rejected() {
        // Given a valid request.
        let bytes = binding_request(TID);
        // When any proper prefix is decoded.
        // Then it fails with Truncated (the header still claims the full length).
        for cut in 0..bytes.len() {
            assert_eq!(Message::decode(&bytes[..cut]), Err(StunError::Truncated), "prefix of {cut} bytes");
        }
    }

    #[test]
    fn header_checks() {
        // Given variations of a valid 20-byte request.
        let good = Message::new(Class::Request, BINDING, TID).encode();
        assert_eq!(good.len(), 20);
        assert!(looks_like_stun(&good));
        let with = |i: usize, b: u8| {
            let mut v = good.clone();
            v[i] = b;
            v
        };
        // When / then: top bits, cookie, alignment and trailing bytes are checked.
        assert_eq!(Message::decode(&with(0, 0x40)), Err(StunError::NotStun));
        assert_eq!(Message::decode(&[0x80]), Err(StunError::NotStun));
        assert_eq!(Message::decode(&with(4, 0x22)), Err(StunError::BadMagicCookie));
        let mut odd = with(3, 2);
        odd.extend_from_slice(&[0, 0]);
        assert_eq!(Message::decode(&odd), Err(StunError::BadLength));
        let mut long = good.clone();
        long.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(Message::decode(&long), Err(StunError::BadLength));
        assert!(!looks_like_stun(&with(5, 0)));
    }

    #[test]
    fn attribute_overrun_is_rejected() {
        // Given a message whose only attribute claims 5 value bytes in a
        // body of 8 (5 + 3 padding would need 12).
        let mut bytes = Message::new(Class::Request, BINDING, TID).encode();
        bytes[3] = 8;
        bytes.extend_from_slice(&[0x80, 0x22, 0x00, 0x05, b'a', b'b', b'c', b'd']);
        // When it is decoded, then the overrun is reported.
        assert_eq!(Message::decode(&bytes), Err(StunError::AttributeOverrun { kind: 0x8022, len: 5 }));
    }

    #[test]
    fn attributes_after_message_integrity_are_ignored() {
        // Given a request whose unknown attribute and second SOFTWARE follow
        // MESSAGE-INTEGRITY.
        let mut m = Message::new(Class::Request, BINDING, TID);
        m.attributes.push(RawAttribute::new(attr::MESSAGE_INTEGRITY, vec![0; 20]));
        m.attributes.push(RawAttribute::new(0x0003, vec![0; 4]));
        m.attributes.push(RawAttribute::software("late"));
        m.attributes.push(RawAttribute::fingerprint());
        let m = Message::decode(&m.encode()).expect("decodes");
        // When its attributes are read, then those after MESSAGE-INTEGRITY
        // are ignored but FINGERPRINT is kept.
        assert_eq!(m.unknown_comprehension_required(), Vec::<u16>::new());
        assert_eq!(m.software(), None);
        let kinds: Vec<u16> = m.effective_attributes().map(|a| a.kind).collect();
        assert_eq!(kinds, vec![attr::MESSAGE_INTEGRITY, attr::FINGERPRINT]);
    }

    #[test]
    fn error_code_parsing_and_limits() {
        // Given error responses with a long multibyte reason and a bad class.
        let reason = "é".repeat(500);
        let bytes = binding_error(TID, 438, &reason, &[]);
        let m = Message::decode(&bytes).expect("decodes");
        // When the ERROR-CODE is read, then the reason is cut to 763 bytes
        // on a character boundary.
        let (code, got) = m.error_code().expect("has error code");
        assert_eq!(code, 438);
        assert_eq!(got.len(), 762);
        assert_eq!(got, "é".repeat(381));
        let mut bad = Message::new(Class::ErrorResponse, BINDING, TID);
        bad.attributes.push(RawAttribute::new(attr::ERROR_CODE, vec![0, 0, 7, 0]));
        assert_eq!(bad.error_code(), None);
        bad.attributes[0].value = vec![0, 0, 4];
        assert_eq!(bad.error_code(), None);
    }

    #[test]
    fn encode_refuses_unrepresentable_messages() {
        // Given messages that cannot fit STUN's fields.
        let big_method = Message::new(Class::Request, 0x1000, TID);
        let mut big_value = Message::new(Class::Request, BINDING, TID);
        big_value.attributes.push(RawAttribute::new(0x8000, vec![0; 65_536]));
        let mut big_body = Message::new(Class::Request, BINDING, TID);
        big_body.attributes.push(RawAttribute::new(0x8000, vec![0; 65_532]));
        // When they are encoded, then the reason is given.
        assert_eq!(big_method.try_encode(), Err(EncodeError::MethodOutOfRange(0x1000)));
        assert_eq!(big_value.try_encode(), Err(EncodeError::AttributeTooLong { kind: 0x8000, len: 65_536 }));
        assert_eq!(big_body.try_encode(), Err(EncodeError::MessageTooLong(65_536)));
    }
}
