//! The codec: round trips, size limits and sealing (1); hostile bytes
//! never panic the decoders (2); the decoder's rejections, with exact errors
//! (4).

use super::*;

// ---------------------------------------------------------------------------
// 1. Round trips, size limits, sealing
// ---------------------------------------------------------------------------

#[test]
fn every_variant_round_trips_within_its_max_size() {
    // Given one strategy per variant, each run for 256 cases (21 x 256 =
    // 5376 frames), so no variant is starved by the others.
    let variants = frame_variants();
    assert_eq!(variants.len(), ASSIGNED_TAGS.len());
    for (strategy, tag) in variants.iter().zip(ASSIGNED_TAGS) {
        let mut runner = TestRunner::new(config(256));
        let result = runner.run(strategy, |frame| {
            // When the frame is encoded and decoded.
            let encoded = frame.encode();
            let max = Frame::max_size(frame.tag()).expect("every variant has a max size");
            // Then its tag is the expected one, it fits its tag's limit and
            // the datagram limit, and it decodes to itself.
            prop_assert_eq!(frame.tag(), tag);
            prop_assert_eq!(encoded[0], tag);
            prop_assert_eq!(encoded[1], VERSION);
            prop_assert!(encoded.len() <= max, "{} bytes > max {} for {:#04x}", encoded.len(), max, tag);
            prop_assert!(encoded.len() <= MAX_DATAGRAM);
            prop_assert_eq!(Frame::decode(&encoded), Ok(frame.clone()));
            // Authenticated frames end in a zeroed MAC slot.
            if frame.is_authenticated() {
                prop_assert_eq!(&encoded[encoded.len() - MAC_LEN..], &[0u8; MAC_LEN][..]);
            }
            // Encoding into a slice gives the same bytes, in a roomy buffer
            // (over stale bytes) and in an exact one, and refuses a buffer
            // one byte short.
            let mut roomy = [0xa5; MAX_DATAGRAM + 8];
            prop_assert_eq!(frame.encode_into_slice(&mut roomy), Some(encoded.len()));
            prop_assert_eq!(&roomy[..encoded.len()], &encoded[..]);
            let mut exact = vec![0xa5; encoded.len()];
            prop_assert_eq!(frame.encode_into_slice(&mut exact), Some(encoded.len()));
            prop_assert_eq!(&exact, &encoded);
            let mut short = vec![0; encoded.len() - 1];
            prop_assert_eq!(frame.encode_into_slice(&mut short), None);
            Ok(())
        });
        if let Err(e) = result {
            panic!("variant {tag:#04x}: {e}");
        }
    }
}

#[test]
fn worst_case_instances_of_every_variant_fit_their_max_size() {
    // Given every variant at its documented limits (64-byte names, 8 IPv6
    // candidates, full payloads, 10-byte varints).
    let frames = worst_case_frames();
    let tags: BTreeSet<u8> = frames.iter().map(Frame::tag).collect();
    assert_eq!(tags, ASSIGNED_TAGS.into_iter().collect::<BTreeSet<u8>>(), "every variant has a worst case");
    for frame in frames {
        // When encoded.
        let encoded = frame.encode();
        let max = Frame::max_size(frame.tag()).expect("assigned tag");
        // Then it fits its tag's limit and round-trips.
        assert!(
            encoded.len() <= max,
            "worst-case {:#04x} encodes to {} bytes > max_size {max}",
            frame.tag(),
            encoded.len()
        );
        assert_eq!(Frame::decode(&encoded), Ok(frame));
    }
}

#[test]
fn max_sizes_fit_a_datagram_and_unassigned_tags_have_none() {
    // Given every possible first byte.
    for tag in 0..=u8::MAX {
        // When its max size is asked for.
        let max = Frame::max_size(tag);
        // Then assigned tags have one within MAX_DATAGRAM, others none.
        if ASSIGNED_TAGS.contains(&tag) {
            let max = max.expect("assigned tags have a max size");
            assert!((2..=MAX_DATAGRAM).contains(&max), "{tag:#04x}: {max}");
        } else {
            assert_eq!(max, None, "{tag:#04x} is not assigned");
        }
    }
}

#[test]
fn a_maximal_sealed_session_message_fits_a_relay_frame() {
    // Given the largest session frame an application can cause: an App
    // message of MAX_APP_PAYLOAD bytes with 10-byte varints, sealed.
    let key = [9; 32];
    let inner = Frame::Session {
        session: SessionId(u64::MAX),
        counter: u64::MAX,
        body: SessionBody::Stream { seq: u64::MAX, message: StreamMessage::App(vec![0xab; MAX_APP_PAYLOAD]) },
    };
    let mut sealed = inner.encode();
    auth::seal(&mut sealed, &key, Role::Responder);
    // When it is wrapped in the largest Relay and Relayed frames.
    assert!(sealed.len() <= MAX_RELAY_PAYLOAD, "{} > MAX_RELAY_PAYLOAD {MAX_RELAY_PAYLOAD}", sealed.len());
    let relay = Frame::Relay { token: u64::MAX, session: SessionId(u64::MAX), payload: sealed.clone() };
    let relayed = Frame::Relayed { session: SessionId(u64::MAX), payload: sealed.clone() };
    // Then both fit a datagram, decode, and the inner frame still verifies.
    for outer in [relay, relayed] {
        let bytes = outer.encode();
        assert!(bytes.len() <= MAX_DATAGRAM, "{} bytes", bytes.len());
        assert_eq!(Frame::decode(&bytes), Ok(outer));
    }
    assert_eq!(Frame::decode(&sealed), Ok(inner));
    assert!(auth::verify(&sealed, &key, Role::Responder));
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn sealed_frames_verify_for_their_sender_only(
        frame in authenticated_frame(),
        key in any::<SessionKey>(),
        other_key in any::<SessionKey>(),
        sender in role(),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        // Given an authenticated frame sealed by `sender` with `key`.
        let mut sealed = frame.encode();
        auth::seal(&mut sealed, &key, sender);
        // Then it still decodes to the same frame (the MAC is not part of
        // the body) and verifies for the sender's role only.
        prop_assert_eq!(Frame::decode(&sealed), Ok(frame.clone()));
        prop_assert!(auth::verify(&sealed, &key, sender));
        prop_assert!(!auth::verify(&sealed, &key, sender.peer()));
        // And not under another key, nor after any single bit flip.
        if other_key != key {
            prop_assert!(!auth::verify(&sealed, &other_key, sender));
        }
        let mut flipped = sealed.clone();
        flipped[flip.index(sealed.len())] ^= 1 << bit;
        prop_assert!(!auth::verify(&flipped, &key, sender));
        // And the zeroed MAC of a plain encoding does not verify either.
        prop_assert!(!auth::verify(&frame.encode(), &key, sender));
    }

    #[test]
    fn generated_user_names_are_valid(name in user_name()) {
        // Given the user-name strategy; then it only makes valid names.
        prop_assert!(valid_user_name(&name), "{:?}", name);
        prop_assert!((1..=MAX_USER_NAME).contains(&name.len()));
    }
}

// ---------------------------------------------------------------------------
// 2. Hostile bytes never panic the decoders or the machines
// ---------------------------------------------------------------------------

/// What either decoder says about `bytes` must be consistent with the
/// documented demultiplexing and limits.
fn check_decoders(bytes: &[u8]) -> Result<(), TestCaseError> {
    match Frame::decode(bytes) {
        Ok(frame) => {
            // A frame decodes only from its own tag, within its limit, and
            // re-encodes canonically within the same limit.
            prop_assert_eq!(frame.tag(), bytes[0]);
            prop_assert_eq!(bytes[1], VERSION);
            let max = Frame::max_size(bytes[0]).expect("decoded tags are assigned");
            prop_assert!(bytes.len() <= max);
            let again = frame.encode();
            prop_assert!(again.len() <= bytes.len(), "canonical encoding is never longer than the input");
            prop_assert_eq!(Frame::decode(&again), Ok(frame));
        }
        Err(FrameError::NotAFrame) => prop_assert!(!matches!(bytes.first(), Some(&b) if b >= FIRST_TAG)),
        Err(FrameError::UnknownTag(t)) => {
            prop_assert_eq!(t, bytes[0]);
            prop_assert_eq!(Frame::max_size(t), None);
        }
        Err(FrameError::UnsupportedVersion(v)) => {
            prop_assert_eq!(v, bytes[1]);
            prop_assert_ne!(v, VERSION);
        }
        Err(FrameError::TooLong { len, max }) => {
            prop_assert_eq!(len, bytes.len());
            prop_assert_eq!(Some(max), Frame::max_size(bytes[0]));
            prop_assert!(len > max);
        }
        Err(FrameError::Malformed) => prop_assert!(!bytes.is_empty() && bytes[0] >= FIRST_TAG),
    }
    if let Ok(m) = stun::Message::decode(bytes) {
        // (The demultiplexer reserves only 0x00..=0x03 for STUN, per RFC
        // 7983; the decoder accepts every 14-bit message type.)
        prop_assert_eq!(bytes[0] & 0xc0, 0);
        prop_assert_ne!(wire::classify(bytes), wire::Kind::Punchline);
        prop_assert!(bytes.len() >= stun::HEADER_LEN && bytes.len() % 4 == 0);
        prop_assert_eq!(&m.transaction_id.0[..], &bytes[8..20]);
    }
    let _ = stun::answer_binding(bytes, server_primary());
    Ok(())
}

proptest! {
    #![proptest_config(config(6000))]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(bytes in vec(any::<u8>(), 0..1500)) {
        // Given any bytes; when decoded both ways; then nothing panics and
        // the results are consistent.
        check_decoders(&bytes)?;
    }
}

proptest! {
    #![proptest_config(config(4000))]

    #[test]
    fn shaped_and_mutated_datagrams_never_panic_the_decoders(
        bytes in prop_oneof![frame_shaped(), stun_shaped(), mutated_frame()],
    ) {
        check_decoders(&bytes)?;
    }

    #[test]
    fn a_frame_is_its_tag_the_version_its_fields_and_a_mac_slot(frame in any_frame()) {
        // Given any frame, when encoded, then the datagram is the tag, the
        // version, postcard's encoding of the variant's fields (postcard's
        // own encoding minus its one-byte variant index) and, for an
        // authenticated frame, a zeroed MAC slot: the wire of DESIGN §3.
        let encoded = frame.encode();
        let fields = postcard::to_allocvec(&frame).expect("frames serialize");
        let mac = if frame.is_authenticated() { MAC_LEN } else { 0 };
        let mut expected = vec![frame.tag(), VERSION];
        expected.extend_from_slice(&fields[1..]);
        expected.resize(expected.len() + mac, 0);
        prop_assert_eq!(encoded, expected);
    }

    #[test]
    fn truncated_valid_frames_are_malformed(frame in any_frame(), cut in any::<prop::sample::Index>()) {
        // Given a valid encoding and a strictly shorter, non-empty prefix.
        let encoded = frame.encode();
        let len = 1 + cut.index(encoded.len() - 1);
        // When the prefix is decoded; then the body is malformed.
        prop_assert_eq!(Frame::decode(&encoded[..len]), Err(FrameError::Malformed), "prefix of {} bytes", len);
    }
}

// ---------------------------------------------------------------------------
// 4. The decoder's rejections, with exact errors
// ---------------------------------------------------------------------------

fn unassigned_tag() -> impl Strategy<Value = u8> + Clone {
    (FIRST_TAG..=u8::MAX).prop_filter("unassigned", |t| !ASSIGNED_TAGS.contains(t))
}

#[test]
fn empty_and_stun_range_datagrams_are_not_frames() {
    // Given the empty datagram and every first byte below FIRST_TAG.
    assert_eq!(Frame::decode(&[]), Err(FrameError::NotAFrame));
    for first in 0..FIRST_TAG {
        // When decoded, alone or followed by a plausible frame body.
        // Then it is not a Punchline frame.
        assert_eq!(Frame::decode(&[first]), Err(FrameError::NotAFrame));
        assert_eq!(Frame::decode(&[first, VERSION, 0, 0]), Err(FrameError::NotAFrame));
    }
}

#[test]
fn every_unassigned_tag_is_unknown() {
    // Given every unassigned byte in 0x40..=0xFF.
    let unassigned: Vec<u8> = (FIRST_TAG..=u8::MAX).filter(|t| !ASSIGNED_TAGS.contains(t)).collect();
    assert_eq!(unassigned.len(), 256 - 0x40 - ASSIGNED_TAGS.len());
    for tag in unassigned {
        // When it starts a datagram of any shape, even too long for any
        // frame or with a wrong version.
        for rest in [&[][..], &[VERSION], &[VERSION, 0, 0, 0], &[VERSION + 1], &[VERSION; 1300]] {
            let mut datagram = vec![tag];
            datagram.extend_from_slice(rest);
            // Then the tag is reported unknown, before anything else.
            assert_eq!(Frame::decode(&datagram), Err(FrameError::UnknownTag(tag)), "{tag:#04x} + {} bytes", rest.len());
        }
    }
}

#[test]
fn every_wrong_version_is_unsupported_even_when_too_long() {
    // Given every assigned tag and every version byte but ours.
    for tag in ASSIGNED_TAGS {
        let max = Frame::max_size(tag).expect("assigned");
        for version in (0..=u8::MAX).filter(|v| *v != VERSION) {
            // When the frame is short, or longer than this version allows
            // (another version may allow more).
            let short = [tag, version];
            let mut long = vec![tag, version];
            long.resize(max + 1, 0);
            // Then the version is reported, not the length.
            assert_eq!(Frame::decode(&short), Err(FrameError::UnsupportedVersion(version)));
            assert_eq!(Frame::decode(&long), Err(FrameError::UnsupportedVersion(version)));
        }
    }
}

#[test]
fn a_lone_assigned_tag_is_malformed() {
    // Given an assigned tag without a version byte; then it is malformed.
    for tag in ASSIGNED_TAGS {
        assert_eq!(Frame::decode(&[tag]), Err(FrameError::Malformed), "{tag:#04x}");
    }
}

#[test]
fn worst_case_frames_are_malformed_when_cut_anywhere() {
    // Given each worst-case frame, and every strictly shorter non-empty
    // prefix of it.
    for frame in worst_case_frames() {
        let encoded = frame.encode();
        for len in 1..encoded.len() {
            // Then the prefix is malformed.
            assert_eq!(Frame::decode(&encoded[..len]), Err(FrameError::Malformed), "{:#04x} cut to {len}", frame.tag());
        }
    }
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn unknown_tags_are_rejected_whatever_follows(tag in unassigned_tag(), rest in vec(any::<u8>(), 0..1500)) {
        // Given an unassigned tag followed by anything.
        let mut datagram = vec![tag];
        datagram.extend_from_slice(&rest);
        // Then the error names the tag.
        prop_assert_eq!(Frame::decode(&datagram), Err(FrameError::UnknownTag(tag)));
    }

    #[test]
    fn wrong_versions_are_rejected_whatever_follows(
        tag in select(ASSIGNED_TAGS.to_vec()),
        version in any::<u8>().prop_filter("not ours", |v| *v != VERSION),
        rest in vec(any::<u8>(), 0..1500),
    ) {
        let mut datagram = vec![tag, version];
        datagram.extend_from_slice(&rest);
        prop_assert_eq!(Frame::decode(&datagram), Err(FrameError::UnsupportedVersion(version)));
    }

    #[test]
    fn datagrams_longer_than_their_tag_allows_are_too_long(
        tag in select(ASSIGNED_TAGS.to_vec()),
        extra in 1usize..=400,
        filler in any::<u8>(),
    ) {
        // Given a current-version datagram `extra` bytes over its tag's max.
        let max = Frame::max_size(tag).expect("assigned");
        let mut datagram = vec![tag, VERSION];
        datagram.resize(max + extra, filler);
        // Then it is rejected for its length, which is reported exactly.
        prop_assert_eq!(Frame::decode(&datagram), Err(FrameError::TooLong { len: max + extra, max }));
    }

    #[test]
    fn trailing_bytes_are_malformed(frame in any_frame(), extra in vec(any::<u8>(), 1..=64)) {
        // Given a valid encoding with bytes appended.
        let mut datagram = frame.encode();
        datagram.extend_from_slice(&extra);
        let max = Frame::max_size(frame.tag()).expect("assigned");
        // Then it is malformed, or too long when it outgrew its tag's limit.
        let expected = if datagram.len() > max {
            FrameError::TooLong { len: datagram.len(), max }
        } else {
            FrameError::Malformed
        };
        prop_assert_eq!(Frame::decode(&datagram), Err(expected));
    }
}
