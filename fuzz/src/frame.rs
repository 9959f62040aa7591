//! The frame codec: decoding arbitrary bytes, and re-encoding what decodes.

use punchline_core::auth::{self, Role};
use punchline_core::wire::frame::{Frame, MAC_LEN};
use punchline_core::wire::MAX_DATAGRAM;

/// Checks one input: never panics, and what decodes keeps its type's size
/// limit and round-trips through both encoders.
pub fn check(data: &[u8]) {
    let Ok(frame) = Frame::decode(data) else { return };
    let tag = data[0];
    assert_eq!(frame.tag(), tag);
    let max = Frame::max_size(tag).expect("a decoded frame's tag is registered");
    assert!(data.len() <= max && max <= MAX_DATAGRAM, "{} bytes decoded under a {max}-byte limit", data.len());

    let encoded = frame.encode();
    assert_eq!(Frame::decode(&encoded).as_ref(), Ok(&frame), "decode(encode(f)) == f");
    assert!(encoded.len() <= max, "{frame:?} encodes to {} bytes over its {max}-byte limit", encoded.len());
    // The encoding is canonical (shortest varints): never longer than any
    // input that decodes to the frame, and as long only when it is the same
    // bytes, but for the MAC, which `encode` leaves zeroed.
    assert!(encoded.len() <= data.len(), "{frame:?} encodes longer than {} input bytes", data.len());
    let mac = if frame.is_authenticated() { MAC_LEN } else { 0 };
    let signed = encoded.len() - mac;
    assert!(encoded[signed..].iter().all(|&b| b == 0), "a MAC slot that is not zeroed");
    if encoded.len() == data.len() {
        assert_eq!(encoded[..signed], data[..signed], "same length, different bytes");
    }

    // Encoding into a slice gives the same bytes, and needs all of them.
    let mut buf = [0xAA; MAX_DATAGRAM];
    assert_eq!(frame.encode_into_slice(&mut buf[..encoded.len()]), Some(encoded.len()));
    assert_eq!(buf[..encoded.len()], encoded[..]);
    assert_eq!(frame.encode_into_slice(&mut buf[..encoded.len() - 1]), None);

    // A sealed peer frame verifies as its sender's, and only as its sender's.
    if frame.is_authenticated() {
        let key = [7; 32];
        let mut sealed = encoded;
        auth::seal(&mut sealed, &key, Role::Initiator);
        assert!(auth::verify(&sealed, &key, Role::Initiator));
        assert!(!auth::verify(&sealed, &key, Role::Responder));
        assert_eq!(Frame::decode(&sealed), Ok(frame), "the MAC is not part of the frame");
    }
}
