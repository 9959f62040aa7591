//! The Binding method (RFC 8489 §6): the messages Punchline builds.

use std::net::SocketAddr;

use super::{Class, Message, RawAttribute, TransactionId, BINDING, MAX_METHOD, MAX_UNKNOWN_LISTED, SOFTWARE_NAME};

/// Encodes a message built by this module (small by construction).
pub(super) fn encode_built(message: &Message) -> Vec<u8> {
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
    let mut m = error_message(method, tid, code, reason, unknown);
    m.attributes.push(RawAttribute::software(SOFTWARE_NAME));
    m.attributes.push(RawAttribute::fingerprint());
    encode_built(&m)
}

/// An error response's required part: ERROR-CODE `code` with `reason`, and
/// UNKNOWN-ATTRIBUTES when `unknown` is not empty (at most
/// [`MAX_UNKNOWN_LISTED`] are listed).
pub(super) fn error_message(method: u16, tid: TransactionId, code: u16, reason: &str, unknown: &[u16]) -> Message {
    let mut m = Message::new(Class::ErrorResponse, method & MAX_METHOD, tid);
    m.attributes.push(RawAttribute::error_code(code, reason));
    if !unknown.is_empty() {
        let listed = &unknown[..unknown.len().min(MAX_UNKNOWN_LISTED)];
        m.attributes.push(RawAttribute::unknown_attributes(listed));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::stun::test_support::{v4, TID};
    use crate::wire::stun::{answer_binding, attr};

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
    fn unknown_comprehension_required_gets_420() {
        // Given a Binding request with an unknown comprehension-required
        // attribute 0x0004 (RFC 3489's SOURCE-ADDRESS, reserved since RFC
        // 5389) twice, and an unknown optional one.
        let mut m = Message::new(Class::Request, BINDING, TID);
        m.attributes.push(RawAttribute::new(0x0004, vec![0, 0, 0, 6]));
        m.attributes.push(RawAttribute::new(0xC001, vec![1]));
        m.attributes.push(RawAttribute::new(0x0004, vec![0, 0, 0, 0]));
        m.attributes.push(RawAttribute::new(attr::PRIORITY, vec![0, 0, 0, 1]));
        m.attributes.push(RawAttribute::fingerprint());
        assert_eq!(m.unknown_comprehension_required(), vec![0x0004]);
        // When a server answers it.
        let answer = answer_binding(&m.encode(), v4("192.0.2.1:1")).expect("answered");
        // Then the answer is a Binding error 420 listing 0x0004.
        let r = Message::decode(&answer).expect("answer decodes");
        assert_eq!(r.class, Class::ErrorResponse);
        assert_eq!(r.method, BINDING);
        assert_eq!(r.transaction_id, TID);
        assert_eq!(r.error_code(), Some((420, "Unknown Attribute".to_string())));
        assert_eq!(r.unknown_attributes(), Some(vec![0x0004]));
        assert_eq!(r.attribute(attr::UNKNOWN_ATTRIBUTES).map(|a| a.value.clone()), Some(vec![0x00, 0x04]));
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
}
