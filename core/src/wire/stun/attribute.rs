//! Attributes (RFC 8489 §14) as they appear on the wire, the builders for
//! those Punchline writes, and the address value layout of §14.1 and §14.2.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

#[cfg(doc)]
use super::Message;
use super::{attr, TransactionId, MAGIC_COOKIE, MAX_REASON_LEN};

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
pub(super) fn xor_address_bytes(value: &mut [u8], tid: TransactionId) {
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
pub(super) fn parse_address(value: &[u8]) -> Option<SocketAddr> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::stun::test_support::{v4, TID};
    use crate::wire::stun::{binding_error, binding_success, Class, Message, BINDING};

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
}
