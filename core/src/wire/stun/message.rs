//! A STUN message (RFC 8489 §5): the decoder, which validates the whole
//! datagram before allocating, the encoder, and the accessors for the
//! attributes a Binding exchange reads.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use super::attribute::{parse_address, xor_address_bytes};
#[cfg(doc)]
use super::BINDING;
use super::{
    attr, fingerprint, message_type, split_message_type, ChangeRequest, Class, RawAttribute, TransactionId, HEADER_LEN,
    MAGIC_COOKIE, MAX_METHOD,
};

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

    /// The RESPONSE-ORIGIN (RFC 5780 §7.3), if present and well formed.
    pub fn response_origin(&self) -> Option<SocketAddr> {
        parse_address(&self.attribute(attr::RESPONSE_ORIGIN)?.value)
    }

    /// The OTHER-ADDRESS (RFC 5780 §7.4), if present and well formed.
    pub fn other_address(&self) -> Option<SocketAddr> {
        parse_address(&self.attribute(attr::OTHER_ADDRESS)?.value)
    }

    /// The CHANGE-REQUEST (RFC 5780 §7.2): `None` when absent, `Some(None)`
    /// when its value is not 4 bytes long.
    pub fn change_request(&self) -> Option<Option<ChangeRequest>> {
        Some(ChangeRequest::parse(&self.attribute(attr::CHANGE_REQUEST)?.value))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::stun::test_support::{v4, TID};
    use crate::wire::stun::{answer_binding, binding_request, looks_like_stun, BINDING};

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
        m.attributes.push(RawAttribute::new(0x0004, vec![0; 4]));
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
