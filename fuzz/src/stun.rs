//! The STUN codec: decoding arbitrary bytes, re-encoding what decodes, and
//! the stateless Binding answer.

use std::net::SocketAddr;

use punchline_core::wire::stun::{answer_binding, attr, Class, Message, BINDING, HEADER_LEN, SOFTWARE_NAME};
use punchline_core::wire::MAX_DATAGRAM;

/// Checks one input: never panics, and what decodes re-encodes faithfully.
pub fn check(data: &[u8]) {
    for from in ["192.0.2.1:3478", "[2001:db8::1]:50000"] {
        check_answer(data, from.parse().expect("a valid address"));
    }
    if let Ok(message) = Message::decode(data) {
        check_message(data, &message);
    }
}

/// A decoded message: its accessors hold their promises, and it encodes to
/// the same bytes but for padding (written as zeros) and, when the padding
/// changed, the trailing FINGERPRINT (recomputed over it).
fn check_message(data: &[u8], message: &Message) {
    let _ = (message.xor_mapped_address(), message.mapped_address(), message.software());
    let _ = (message.response_origin(), message.other_address(), message.change_request());
    let _ = message.unknown_attributes();
    if let Some((code, _)) = message.error_code() {
        assert!((300..=699).contains(&code), "error code {code}");
    }
    let unknown = message.unknown_comprehension_required();
    for (i, kind) in unknown.iter().enumerate() {
        assert!(attr::is_comprehension_required(*kind) && !attr::UNDERSTOOD_REQUIRED.contains(kind));
        assert!(!unknown[..i].contains(kind), "{kind:#06x} listed twice");
    }

    let encoded = message.try_encode().expect("a decoded message encodes");
    assert_eq!(encoded.len(), data.len());
    let padding = padding_bytes(message);
    let fingerprint = if message.has_fingerprint() { data.len() - 4 } else { data.len() };
    for (i, (&was, &now)) in data.iter().zip(&encoded).enumerate() {
        let changes_allowed = (padding.contains(&i) && now == 0) || i >= fingerprint;
        assert!(was == now || changes_allowed, "byte {i} changed from {was:#04x} to {now:#04x}");
    }
    if padding.iter().all(|&i| data[i] == 0) {
        assert_eq!(encoded, data, "a message with zero padding re-encodes byte for byte");
    }

    let again = Message::decode(&encoded).expect("the encoding decodes");
    let mut expected = message.clone();
    if let (Some(new), Some(old)) = (again.attributes.last(), expected.attributes.last_mut()) {
        if old.kind == attr::FINGERPRINT {
            old.value.clone_from(&new.value);
        }
    }
    assert_eq!(again, expected);
    assert_eq!(again.encode(), encoded, "encoding is a fixed point");
}

/// The offsets of the padding bytes of a decoded message (§14: each value is
/// padded to a multiple of 4).
fn padding_bytes(message: &Message) -> Vec<usize> {
    let mut at = HEADER_LEN;
    let mut padding = Vec::new();
    for attribute in &message.attributes {
        let end = at + 4 + attribute.value.len();
        let padded_end = at + 4 + attribute.value.len().next_multiple_of(4);
        padding.extend(end..padded_end);
        at = padded_end;
    }
    padding
}

/// What a STUN server with one address answers: nothing to what does not
/// decode or is no request; else a response with the same transaction id,
/// FINGERPRINT and SOFTWARE, and the requester's address or the right error
/// (420 for a CHANGE-REQUEST it cannot honour). An answer to a
/// datagram that fits [`MAX_DATAGRAM`] fits too (no amplification past it).
fn check_answer(data: &[u8], from: SocketAddr) {
    let request = Message::decode(data);
    let answer = answer_binding(data, from);
    let (request, answer) = match (request, answer) {
        (Ok(request), Some(answer)) => (request, answer),
        (Ok(request), None) => return assert_ne!(request.class, Class::Request, "a request went unanswered"),
        (Err(_), None) => return,
        (Err(error), Some(_)) => panic!("answered an undecodable datagram ({error})"),
    };
    assert_eq!(request.class, Class::Request, "answered a non-request");
    if data.len() <= MAX_DATAGRAM {
        assert!(answer.len() <= MAX_DATAGRAM, "an answer of {} bytes to {} bytes", answer.len(), data.len());
    }
    let answer = Message::decode(&answer).expect("the answer decodes");
    assert_eq!(answer.transaction_id, request.transaction_id);
    assert_eq!(answer.method, request.method);
    assert!(answer.has_fingerprint());
    assert_eq!(answer.software(), Some(SOFTWARE_NAME));
    let unknown = request.unknown_comprehension_required();
    match answer.class {
        Class::SuccessResponse => {
            assert_eq!(request.method, BINDING);
            assert!(unknown.is_empty(), "a success despite unknown attributes {unknown:?}");
            assert_eq!(request.change_request(), None, "a success despite a CHANGE-REQUEST");
            assert_eq!(answer.xor_mapped_address(), Some(from));
        }
        Class::ErrorResponse => {
            let (code, _) = answer.error_code().expect("an error response carries ERROR-CODE");
            let change = request.change_request();
            if request.method != BINDING {
                assert_eq!(code, 400);
            } else if unknown.is_empty() && change == Some(None) {
                // A CHANGE-REQUEST that is not 4 bytes long.
                assert_eq!(code, 400);
            } else if unknown.is_empty() {
                // A server with one address cannot honour a CHANGE-REQUEST
                // (RFC 5780 §6.1).
                assert!(change.is_some(), "420 with nothing unknown");
                assert_eq!(code, 420);
                assert_eq!(answer.unknown_attributes(), Some(vec![attr::CHANGE_REQUEST]));
            } else {
                assert_eq!(code, 420);
                assert_eq!(answer.unknown_attributes(), Some(unknown));
            }
        }
        class => panic!("answered with a {class:?}"),
    }
}
