//! The frame codec: decoding arbitrary bytes, and re-encoding what decodes.

use std::cell::RefCell;
use std::time::Duration;

use punchline_core::secure::{PeerHelloReceived, PeerHelloSent, SessionCipher, StaticKey};
use punchline_core::wire::frame::{Frame, SessionId};
use punchline_core::wire::MAX_DATAGRAM;
use punchline_core::Seed;

thread_local! {
    /// Both ends of one session, its handshake done once (the decoder
    /// target runs millions of inputs; each seals with the same ends).
    static SESSION: RefCell<(SessionCipher<Duration>, SessionCipher<Duration>)> = RefCell::new(session());
}

fn session() -> (SessionCipher<Duration>, SessionCipher<Duration>) {
    let (alice, bob) = (StaticKey::derive(Seed::from(1), "alice"), StaticKey::derive(Seed::from(1), "bob"));
    let id = SessionId(7);
    let (mut hello, datagram) = PeerHelloSent::start(&alice, &bob.public(), id, Seed::from(2));
    let (welcome, responder) =
        PeerHelloReceived::answer(&bob, &alice.public(), id, &datagram, Duration::ZERO, Seed::from(3))
            .expect("a fresh hello is answered");
    let initiator = hello.finish(&welcome, Duration::ZERO).expect("its own welcome finishes the handshake");
    (initiator, responder)
}

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
    // bytes.
    assert!(encoded.len() <= data.len(), "{frame:?} encodes longer than {} input bytes", data.len());
    if encoded.len() == data.len() {
        assert_eq!(encoded, data, "same length, different bytes");
    }

    // Encoding into a slice gives the same bytes, and needs all of them.
    let mut buf = [0xAA; MAX_DATAGRAM];
    assert_eq!(frame.encode_into_slice(&mut buf[..encoded.len()]), Some(encoded.len()));
    assert_eq!(buf[..encoded.len()], encoded[..]);
    assert_eq!(frame.encode_into_slice(&mut buf[..encoded.len() - 1]), None);

    // A peer frame sealed end to end opens at the other end, once, and
    // not at its sender's (a reflected datagram).
    if frame.is_peer() {
        SESSION.with_borrow_mut(|(initiator, responder)| {
            let (sealed, _) = initiator.seal(Duration::ZERO, &encoded).expect("a fresh session seals");
            assert!(initiator.open(Duration::ZERO, &sealed).is_err(), "a reflected datagram opened");
            assert_eq!(responder.open(Duration::ZERO, &sealed).as_deref(), Ok(&encoded[..]));
            assert!(responder.open(Duration::ZERO, &sealed).is_err(), "a replay opened");
        });
    }
}
