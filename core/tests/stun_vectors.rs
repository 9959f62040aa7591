//! The STUN codec against the RFC 5769 test vectors, plus property tests:
//! arbitrary bytes never panic the decoder or the server answer, and
//! well-formed messages round-trip.
//!
//! The vectors are typed in from RFC 5769 §2.1-§2.4. Their FINGERPRINTs were
//! checked with an independent CRC-32, and their MESSAGE-INTEGRITY values
//! with HMAC-SHA1 under the RFC's passwords, so no byte is mistyped.
//!
//! Note: RFC 5769 pads USERNAME (§2.1) and SOFTWARE (§2.2, §2.3) with spaces
//! (0x20). This codec keeps values without padding and writes zero padding,
//! so re-encoding those three vectors changes exactly the padding bytes and,
//! consequently, the FINGERPRINT (which is recomputed). The tests assert that
//! precisely. §2.4 pads with zeros and has no FINGERPRINT: it re-encodes
//! byte for byte.

use std::net::SocketAddr;

use proptest::prelude::*;
use punchline_core::wire::stun::{
    answer_binding, attr, read_request, Class, Message, RawAttribute, Received, StunError, TransactionId, BINDING,
    MAX_AMPLIFICATION,
};

/// RFC 5769 §2.1: sample request (SOFTWARE "STUN test client", PRIORITY,
/// ICE-CONTROLLED, USERNAME "evtj:h6vY", MESSAGE-INTEGRITY, FINGERPRINT).
const SAMPLE_REQUEST: [u8; 108] = [
    0x00, 0x01, 0x00, 0x58, // Request type and message length
    0x21, 0x12, 0xa4, 0x42, // Magic cookie
    0xb7, 0xe7, 0xa7, 0x01, // }
    0xbc, 0x34, 0xd6, 0x86, // }  Transaction ID
    0xfa, 0x87, 0xdf, 0xae, // }
    0x80, 0x22, 0x00, 0x10, // SOFTWARE attribute header
    0x53, 0x54, 0x55, 0x4e, // }
    0x20, 0x74, 0x65, 0x73, // }  User-agent...
    0x74, 0x20, 0x63, 0x6c, // }  ...name
    0x69, 0x65, 0x6e, 0x74, // }
    0x00, 0x24, 0x00, 0x04, // PRIORITY attribute header
    0x6e, 0x00, 0x01, 0xff, // ICE priority value
    0x80, 0x29, 0x00, 0x08, // ICE-CONTROLLED attribute header
    0x93, 0x2f, 0xf9, 0xb1, // }  Pseudo-random tie breaker...
    0x51, 0x26, 0x3b, 0x36, // }   ...for ICE control
    0x00, 0x06, 0x00, 0x09, // USERNAME attribute header
    0x65, 0x76, 0x74, 0x6a, // }
    0x3a, 0x68, 0x36, 0x76, // }  Username (9 bytes) and padding (3 bytes)
    0x59, 0x20, 0x20, 0x20, // }
    0x00, 0x08, 0x00, 0x14, // MESSAGE-INTEGRITY attribute header
    0x9a, 0xea, 0xa7, 0x0c, // }
    0xbf, 0xd8, 0xcb, 0x56, // }
    0x78, 0x1e, 0xf2, 0xb5, // }  HMAC-SHA1 fingerprint
    0xb2, 0xd3, 0xf2, 0x49, // }
    0xc1, 0xb5, 0x71, 0xa2, // }
    0x80, 0x28, 0x00, 0x04, // FINGERPRINT attribute header
    0xe5, 0x7a, 0x3b, 0xcf, // CRC32 fingerprint
];

/// RFC 5769 §2.2: sample IPv4 response (SOFTWARE "test vector",
/// XOR-MAPPED-ADDRESS 192.0.2.1:32853, MESSAGE-INTEGRITY, FINGERPRINT).
const SAMPLE_IPV4_RESPONSE: [u8; 80] = [
    0x01, 0x01, 0x00, 0x3c, // Response type and message length
    0x21, 0x12, 0xa4, 0x42, // Magic cookie
    0xb7, 0xe7, 0xa7, 0x01, // }
    0xbc, 0x34, 0xd6, 0x86, // }  Transaction ID
    0xfa, 0x87, 0xdf, 0xae, // }
    0x80, 0x22, 0x00, 0x0b, // SOFTWARE attribute header
    0x74, 0x65, 0x73, 0x74, // }
    0x20, 0x76, 0x65, 0x63, // }  UTF-8 server name
    0x74, 0x6f, 0x72, 0x20, // }
    0x00, 0x20, 0x00, 0x08, // XOR-MAPPED-ADDRESS attribute header
    0x00, 0x01, 0xa1, 0x47, // Address family (IPv4) and xor'd mapped port
    0xe1, 0x12, 0xa6, 0x43, // Xor'd mapped IPv4 address
    0x00, 0x08, 0x00, 0x14, // MESSAGE-INTEGRITY attribute header
    0x2b, 0x91, 0xf5, 0x99, // }
    0xfd, 0x9e, 0x90, 0xc3, // }
    0x8c, 0x74, 0x89, 0xf9, // }  HMAC-SHA1 fingerprint
    0x2a, 0xf9, 0xba, 0x53, // }
    0xf0, 0x6b, 0xe7, 0xd7, // }
    0x80, 0x28, 0x00, 0x04, // FINGERPRINT attribute header
    0xc0, 0x7d, 0x4c, 0x96, // CRC32 fingerprint
];

/// RFC 5769 §2.3: sample IPv6 response (SOFTWARE "test vector",
/// XOR-MAPPED-ADDRESS [2001:db8:1234:5678:11:2233:4455:6677]:32853,
/// MESSAGE-INTEGRITY, FINGERPRINT).
const SAMPLE_IPV6_RESPONSE: [u8; 92] = [
    0x01, 0x01, 0x00, 0x48, // Response type and message length
    0x21, 0x12, 0xa4, 0x42, // Magic cookie
    0xb7, 0xe7, 0xa7, 0x01, // }
    0xbc, 0x34, 0xd6, 0x86, // }  Transaction ID
    0xfa, 0x87, 0xdf, 0xae, // }
    0x80, 0x22, 0x00, 0x0b, // SOFTWARE attribute header
    0x74, 0x65, 0x73, 0x74, // }
    0x20, 0x76, 0x65, 0x63, // }  UTF-8 server name
    0x74, 0x6f, 0x72, 0x20, // }
    0x00, 0x20, 0x00, 0x14, // XOR-MAPPED-ADDRESS attribute header
    0x00, 0x02, 0xa1, 0x47, // Address family (IPv6) and xor'd mapped port.
    0x01, 0x13, 0xa9, 0xfa, // }
    0xa5, 0xd3, 0xf1, 0x79, // }  Xor'd mapped IPv6 address
    0xbc, 0x25, 0xf4, 0xb5, // }
    0xbe, 0xd2, 0xb9, 0xd9, // }
    0x00, 0x08, 0x00, 0x14, // MESSAGE-INTEGRITY attribute header
    0xa3, 0x82, 0x95, 0x4e, // }
    0x4b, 0xe6, 0x7b, 0xf1, // }
    0x17, 0x84, 0xc9, 0x7c, // }  HMAC-SHA1 fingerprint
    0x82, 0x92, 0xc2, 0x75, // }
    0xbf, 0xe3, 0xed, 0x41, // }
    0x80, 0x28, 0x00, 0x04, // FINGERPRINT attribute header
    0xc8, 0xfb, 0x0b, 0x4c, // CRC32 fingerprint
];

/// RFC 5769 §2.4: sample request with long-term authentication (USERNAME
/// "マトリックス", NONCE, REALM "example.org", MESSAGE-INTEGRITY; no
/// FINGERPRINT).
const SAMPLE_LONG_TERM_REQUEST: [u8; 116] = [
    0x00, 0x01, 0x00, 0x60, // Request type and message length
    0x21, 0x12, 0xa4, 0x42, // Magic cookie
    0x78, 0xad, 0x34, 0x33, // }
    0xc6, 0xad, 0x72, 0xc0, // }  Transaction ID
    0x29, 0xda, 0x41, 0x2e, // }
    0x00, 0x06, 0x00, 0x12, // USERNAME attribute header
    0xe3, 0x83, 0x9e, 0xe3, // }
    0x83, 0x88, 0xe3, 0x83, // }
    0xaa, 0xe3, 0x83, 0x83, // }  Username value (18 bytes) and padding (2 bytes)
    0xe3, 0x82, 0xaf, 0xe3, // }
    0x82, 0xb9, 0x00, 0x00, // }
    0x00, 0x15, 0x00, 0x1c, // NONCE attribute header
    0x66, 0x2f, 0x2f, 0x34, // }
    0x39, 0x39, 0x6b, 0x39, // }
    0x35, 0x34, 0x64, 0x36, // }
    0x4f, 0x4c, 0x33, 0x34, // }  Nonce value
    0x6f, 0x4c, 0x39, 0x46, // }
    0x53, 0x54, 0x76, 0x79, // }
    0x36, 0x34, 0x73, 0x41, // }
    0x00, 0x14, 0x00, 0x0b, // REALM attribute header
    0x65, 0x78, 0x61, 0x6d, // }
    0x70, 0x6c, 0x65, 0x2e, // }  Realm value (11 bytes) and padding (1 byte)
    0x6f, 0x72, 0x67, 0x00, // }
    0x00, 0x08, 0x00, 0x14, // MESSAGE-INTEGRITY attribute header
    0xf6, 0x70, 0x24, 0x65, // }
    0x6d, 0xd6, 0x4a, 0x3e, // }
    0x02, 0xb8, 0xe0, 0x71, // }  HMAC-SHA1 fingerprint
    0x2e, 0x85, 0xc9, 0xa2, // }
    0x8c, 0xa8, 0x96, 0x66, // }
];

/// The transaction id of the §2.1-§2.3 vectors.
const VECTOR_TID: TransactionId =
    TransactionId([0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae]);

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address parses")
}

/// Re-encodes `vector` and checks the output equals it except for the space
/// padding bytes at `padding` (now zero) and the FINGERPRINT, which must be
/// `fingerprint` (computed independently for the zero-padded bytes).
fn assert_reencodes_with_zero_padding(vector: &[u8], padding: &[usize], fingerprint: u32) {
    let m = Message::decode(vector).expect("vector decodes");
    let out = m.encode();
    let mut expected = vector.to_vec();
    for &i in padding {
        assert_eq!(vector[i], 0x20, "byte {i} is space padding in the RFC");
        expected[i] = 0;
    }
    let n = expected.len();
    expected[n - 4..].copy_from_slice(&fingerprint.to_be_bytes());
    assert_eq!(out, expected);
    // The re-encoded message is itself valid, FINGERPRINT included, and
    // decodes to the same message but for the FINGERPRINT value.
    let again = Message::decode(&out).expect("re-encoded vector decodes");
    assert_eq!(again.attributes.len(), m.attributes.len());
    assert_eq!(again.attributes[..m.attributes.len() - 1], m.attributes[..m.attributes.len() - 1]);
    assert_eq!(again.encode(), out);
}

#[test]
fn rfc5769_sample_request() {
    // Given the §2.1 sample request.
    // When it is decoded.
    let m = Message::decode(&SAMPLE_REQUEST).expect("§2.1 decodes");
    // Then its header and attributes are as the RFC describes, and its
    // FINGERPRINT verified (decode checks it).
    assert_eq!(m.class, Class::Request);
    assert_eq!(m.method, BINDING);
    assert_eq!(m.transaction_id, VECTOR_TID);
    assert_eq!(m.software(), Some("STUN test client"));
    let kinds: Vec<u16> = m.attributes.iter().map(|a| a.kind).collect();
    assert_eq!(
        kinds,
        vec![
            attr::SOFTWARE,
            attr::PRIORITY,
            attr::ICE_CONTROLLED,
            attr::USERNAME,
            attr::MESSAGE_INTEGRITY,
            attr::FINGERPRINT
        ]
    );
    assert_eq!(m.attribute(attr::USERNAME), Some(&RawAttribute::new(attr::USERNAME, b"evtj:h6vY".to_vec())));
    assert_eq!(m.attributes[5].value, vec![0xe5, 0x7a, 0x3b, 0xcf]);
    assert!(m.has_fingerprint());
    assert_eq!(m.unknown_comprehension_required(), Vec::<u16>::new());
    assert_eq!(m.xor_mapped_address(), None);
    // And re-encoding changes only USERNAME's space padding and FINGERPRINT.
    assert_reencodes_with_zero_padding(&SAMPLE_REQUEST, &[73, 74, 75], 0x6668_9308);
}

#[test]
fn rfc5769_sample_ipv4_response() {
    // Given the §2.2 sample IPv4 response.
    // When it is decoded.
    let m = Message::decode(&SAMPLE_IPV4_RESPONSE).expect("§2.2 decodes");
    // Then it carries 192.0.2.1:32853 and SOFTWARE "test vector".
    assert_eq!(m.class, Class::SuccessResponse);
    assert_eq!(m.method, BINDING);
    assert_eq!(m.transaction_id, VECTOR_TID);
    assert_eq!(m.xor_mapped_address(), Some(addr("192.0.2.1:32853")));
    assert_eq!(m.mapped_address(), None);
    assert_eq!(m.software(), Some("test vector"));
    assert!(m.has_fingerprint());
    assert_eq!(m.attributes[3].value, vec![0xc0, 0x7d, 0x4c, 0x96]);
    // And re-encoding changes only SOFTWARE's space padding and FINGERPRINT.
    assert_reencodes_with_zero_padding(&SAMPLE_IPV4_RESPONSE, &[35], 0x0405_f5ec);
}

#[test]
fn rfc5769_sample_ipv6_response() {
    // Given the §2.3 sample IPv6 response.
    // When it is decoded.
    let m = Message::decode(&SAMPLE_IPV6_RESPONSE).expect("§2.3 decodes");
    // Then it carries [2001:db8:1234:5678:11:2233:4455:6677]:32853.
    assert_eq!(m.class, Class::SuccessResponse);
    assert_eq!(m.transaction_id, VECTOR_TID);
    assert_eq!(m.xor_mapped_address(), Some(addr("[2001:db8:1234:5678:11:2233:4455:6677]:32853")));
    assert_eq!(m.software(), Some("test vector"));
    assert!(m.has_fingerprint());
    assert_eq!(m.attributes[3].value, vec![0xc8, 0xfb, 0x0b, 0x4c]);
    // And re-encoding changes only SOFTWARE's space padding and FINGERPRINT.
    assert_reencodes_with_zero_padding(&SAMPLE_IPV6_RESPONSE, &[35], 0x22f5_b5f7);
}

#[test]
fn rfc5769_sample_long_term_request() {
    // Given the §2.4 sample request with long-term authentication.
    // When it is decoded.
    let m = Message::decode(&SAMPLE_LONG_TERM_REQUEST).expect("§2.4 decodes");
    // Then its attributes are as the RFC describes, it has no FINGERPRINT,
    // and it re-encodes byte for byte (its padding is already zero).
    assert_eq!(m.class, Class::Request);
    assert_eq!(m.method, BINDING);
    assert_eq!(
        m.transaction_id,
        TransactionId([0x78, 0xad, 0x34, 0x33, 0xc6, 0xad, 0x72, 0xc0, 0x29, 0xda, 0x41, 0x2e])
    );
    assert_eq!(m.attribute(attr::USERNAME).map(|a| a.value.clone()), Some("マトリックス".as_bytes().to_vec()));
    assert_eq!(m.attribute(attr::NONCE).map(|a| a.value.clone()), Some(b"f//499k954d6OL34oL9FSTvy64sA".to_vec()));
    assert_eq!(m.attribute(attr::REALM).map(|a| a.value.clone()), Some(b"example.org".to_vec()));
    assert!(!m.has_fingerprint());
    assert_eq!(m.encode(), SAMPLE_LONG_TERM_REQUEST.to_vec());
}

#[test]
fn rfc5769_vectors_with_a_flipped_bit_fail_their_fingerprint() {
    // Given each FINGERPRINTed vector with one bit flipped in its body.
    for vector in [&SAMPLE_REQUEST[..], &SAMPLE_IPV4_RESPONSE[..], &SAMPLE_IPV6_RESPONSE[..]] {
        let mut bytes = vector.to_vec();
        bytes[30] ^= 0x10;
        // When it is decoded, then the FINGERPRINT no longer matches.
        assert_eq!(Message::decode(&bytes), Err(StunError::BadFingerprint));
    }
}

#[test]
fn server_answers_the_rfc5769_request() {
    // Given the §2.1 request (ICE attributes, all understood) from the §2.2
    // address.
    let from = addr("192.0.2.1:32853");
    // When a server answers it.
    let answer = answer_binding(&SAMPLE_REQUEST, from).expect("answered");
    // Then the answer carries the same transaction id and address as §2.2.
    let r = Message::decode(&answer).expect("answer decodes");
    assert_eq!(r.class, Class::SuccessResponse);
    assert_eq!(r.transaction_id, VECTOR_TID);
    assert_eq!(r.xor_mapped_address(), Some(from));
    assert_eq!(&answer[20..32], &SAMPLE_IPV4_RESPONSE[36..48]);
    // And the responses themselves get no answer.
    assert_eq!(answer_binding(&SAMPLE_IPV4_RESPONSE, from), None);
    assert_eq!(answer_binding(&SAMPLE_IPV6_RESPONSE, from), None);
}

/// Attribute types for generated messages: anything but FINGERPRINT, which
/// the generator only ever places last.
fn attribute() -> impl Strategy<Value = RawAttribute> {
    (
        any::<u16>().prop_filter("not FINGERPRINT", |k| *k != attr::FINGERPRINT),
        proptest::collection::vec(any::<u8>(), 0..48),
    )
        .prop_map(|(kind, value)| RawAttribute::new(kind, value))
}

fn class() -> impl Strategy<Value = Class> {
    prop_oneof![Just(Class::Request), Just(Class::Indication), Just(Class::SuccessResponse), Just(Class::ErrorResponse),]
}

fn message() -> impl Strategy<Value = Message> {
    (class(), 0u16..=0x0FFF, any::<[u8; 12]>(), proptest::collection::vec(attribute(), 0..10), any::<bool>()).prop_map(
        |(class, method, tid, mut attributes, fingerprinted)| {
            if fingerprinted {
                attributes.push(RawAttribute::fingerprint());
            }
            Message { class, method, transaction_id: TransactionId(tid), attributes }
        },
    )
}

/// A byte string that starts like a STUN header often enough to reach the
/// attribute parser: arbitrary bytes, or a valid header with an arbitrary
/// (possibly lying) length and arbitrary attribute bytes.
fn datagram() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..1500),
        (
            0u8..4,
            any::<u8>(),
            any::<u16>(),
            any::<[u8; 12]>(),
            proptest::collection::vec(any::<u8>(), 0..1480),
            any::<bool>(),
        )
            .prop_map(|(t0, t1, len, tid, body, honest)| {
                let len = if honest { u16::try_from(body.len() & !3).unwrap_or(0) } else { len };
                let mut d = vec![t0, t1];
                d.extend_from_slice(&len.to_be_bytes());
                d.extend_from_slice(&0x2112_A442u32.to_be_bytes());
                d.extend_from_slice(&tid);
                if honest {
                    d.extend_from_slice(&body[..usize::from(len)]);
                } else {
                    d.extend_from_slice(&body);
                }
                d
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn decode_and_answer_never_panic(bytes in datagram()) {
        let from = addr("203.0.113.5:6000");
        let decoded = Message::decode(&bytes);
        let answer = answer_binding(&bytes, from);
        if let Ok(m) = decoded {
            // A decodable datagram re-encodes to a decodable message.
            prop_assert!(Message::decode(&m.encode()).is_ok());
            // Only requests are answered, and answers are valid STUN.
            prop_assert_eq!(answer.is_some(), m.class == Class::Request);
            if let Some(a) = answer {
                let r = Message::decode(&a).expect("answer decodes");
                prop_assert_eq!(r.transaction_id, m.transaction_id);
                prop_assert!(r.has_fingerprint());
            }
        } else {
            prop_assert!(answer.is_none());
        }
    }

    #[test]
    fn limited_answers_never_exceed_three_times_their_request(
        bytes in prop_oneof![
            datagram(),
            message().prop_map(|mut m| {
                m.class = Class::Request;
                m.encode()
            }),
        ],
        binding in any::<bool>(),
    ) {
        // Whatever the request, an answer the server machine builds (here
        // with IPv6 addresses, the largest) stays within its limit.
        let bytes = match Message::decode(&bytes) {
            Ok(mut m) if binding => {
                m.method = BINDING;
                m.encode()
            }
            _ => bytes,
        };
        let limit = bytes.len() * MAX_AMPLIFICATION;
        let (mapped, origin, other) =
            (addr("[2001:db8::5]:6000"), addr("[2001:db8::10]:3478"), addr("[2001:db8::11]:3479"));
        match read_request(&bytes) {
            None => prop_assert!(answer_binding(&bytes, mapped).is_none()),
            Some(Received::Refused(refusal)) => prop_assert!(refusal.encode(limit).len() <= limit),
            Some(Received::Binding(request)) => {
                prop_assert!(request.success(mapped, Some(origin), Some(other), limit).len() <= limit);
                prop_assert!(request.refuse_change().encode(limit).len() <= limit);
            }
        }
    }

    #[test]
    fn well_formed_messages_round_trip(m in message()) {
        let bytes = m.encode();
        let back = Message::decode(&bytes).expect("encoded message decodes");
        prop_assert_eq!(back.class, m.class);
        prop_assert_eq!(back.method, m.method);
        prop_assert_eq!(back.transaction_id, m.transaction_id);
        prop_assert_eq!(back.attributes.len(), m.attributes.len());
        let plain = m.attributes.len() - usize::from(m.has_fingerprint());
        prop_assert_eq!(&back.attributes[..plain], &m.attributes[..plain]);
        prop_assert_eq!(back.has_fingerprint(), m.has_fingerprint());
        prop_assert_eq!(back.encode(), bytes);
    }
}
