//! Attributes (RFC 8489 §14) as they appear on the wire, the builders for
//! those Punchline writes, the address value layout of §14.1 and §14.2, and
//! RFC 5780's CHANGE-REQUEST flags.

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

    /// A RESPONSE-ORIGIN (RFC 5780 §7.3): the address a response leaves
    /// from, in the plain MAPPED-ADDRESS layout (§14.1).
    pub fn response_origin(addr: SocketAddr) -> RawAttribute {
        RawAttribute::new(attr::RESPONSE_ORIGIN, address_value(addr))
    }

    /// An OTHER-ADDRESS (RFC 5780 §7.4): the server's address with the
    /// other IP and the other port, in the plain MAPPED-ADDRESS layout.
    pub fn other_address(addr: SocketAddr) -> RawAttribute {
        RawAttribute::new(attr::OTHER_ADDRESS, address_value(addr))
    }

    /// A CHANGE-REQUEST (RFC 5780 §7.2) with `change`'s flags.
    pub fn change_request(change: ChangeRequest) -> RawAttribute {
        RawAttribute::new(attr::CHANGE_REQUEST, change.value())
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

/// What a CHANGE-REQUEST (RFC 5780 §7.2) asks: that the server answer from
/// its other IP, its other port, or both. Neither flag set asks for the
/// address the request arrived at, as no CHANGE-REQUEST at all does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ChangeRequest {
    /// Flag A (`0x04`): answer from the other IP address.
    pub change_ip: bool,
    /// Flag B (`0x02`): answer from the other port.
    pub change_port: bool,
}

impl ChangeRequest {
    /// Flag A of the value's last byte (RFC 5780 §7.2).
    pub const CHANGE_IP: u8 = 0x04;
    /// Flag B of the value's last byte (RFC 5780 §7.2).
    pub const CHANGE_PORT: u8 = 0x02;

    /// The 4-byte attribute value: the flags in the last byte, every other
    /// bit zero.
    pub fn value(self) -> [u8; 4] {
        let ip = if self.change_ip { Self::CHANGE_IP } else { 0 };
        let port = if self.change_port { Self::CHANGE_PORT } else { 0 };
        [0, 0, 0, ip | port]
    }

    /// Reads a CHANGE-REQUEST value: exactly 4 bytes, or `None`. Bits other
    /// than the two flags are ignored (RFC 5780 gives them no meaning).
    pub fn parse(value: &[u8]) -> Option<ChangeRequest> {
        let value: [u8; 4] = value.try_into().ok()?;
        Some(ChangeRequest {
            change_ip: value[3] & Self::CHANGE_IP != 0,
            change_port: value[3] & Self::CHANGE_PORT != 0,
        })
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
    fn rfc5780_address_attributes_are_plain_mapped_addresses() {
        // Given a response with RESPONSE-ORIGIN and OTHER-ADDRESS.
        let mut m = Message::new(Class::SuccessResponse, BINDING, TID);
        m.attributes.push(RawAttribute::response_origin(v4("203.0.113.10:3478")));
        m.attributes.push(RawAttribute::other_address(v4("203.0.113.11:3479")));
        // When it is encoded and decoded.
        let bytes = m.encode();
        let back = Message::decode(&bytes).expect("decodes");
        // Then both are written un-XORed (RFC 5780 §7.3, §7.4) and read back.
        assert_eq!(&bytes[20..32], &[0x80, 0x2B, 0, 8, 0, 1, 0x0d, 0x96, 203, 0, 113, 10]);
        assert_eq!(&bytes[32..44], &[0x80, 0x2C, 0, 8, 0, 1, 0x0d, 0x97, 203, 0, 113, 11]);
        assert_eq!(back.response_origin(), Some(v4("203.0.113.10:3478")));
        assert_eq!(back.other_address(), Some(v4("203.0.113.11:3479")));
    }

    #[test]
    fn change_request_flags() {
        // Given each combination of the two flags.
        for (change_ip, change_port, byte) in [(false, false, 0), (true, false, 4), (false, true, 2), (true, true, 6)] {
            let change = ChangeRequest { change_ip, change_port };
            // When it is written and read back.
            let attribute = RawAttribute::change_request(change);
            // Then the flags are the last byte's 0x04 and 0x02 (RFC 5780 §7.2).
            assert_eq!((attribute.kind, attribute.value.as_slice()), (0x0003, &[0, 0, 0, byte][..]));
            assert_eq!(ChangeRequest::parse(&attribute.value), Some(change));
        }
        // And unknown bits are ignored, a wrong length is refused.
        assert_eq!(
            ChangeRequest::parse(&[0xff, 0, 0, 0xf9]),
            Some(ChangeRequest { change_ip: false, change_port: false })
        );
        assert_eq!(ChangeRequest::parse(&[0, 0, 6]), None);
        assert_eq!(ChangeRequest::parse(&[0, 0, 0, 6, 0]), None);
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
