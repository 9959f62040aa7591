//! The codec: round trips, size limits and sealing (1); hostile bytes
//! never panic the decoders (2); the decoder's rejections, with exact errors
//! (4).

use super::*;

// ---------------------------------------------------------------------------
// 1. Round trips, size limits, sealing
// ---------------------------------------------------------------------------

#[test]
fn every_variant_round_trips_within_its_max_size() {
    // Given one strategy per variant, each run for 256 cases (29 x 256 =
    // 7424 frames), so no variant is starved by the others.
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
            // A peer frame fits a relay frame's payload once sealed end to
            // end.
            if frame.is_peer() {
                prop_assert!(encoded.len() <= MAX_PEER_FRAME);
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
fn every_peer_frame_sealed_end_to_end_fits_a_relay_frame() {
    // Given the worst case of every peer frame (the largest a session can
    // send: an App message of MAX_APP_PAYLOAD bytes with 10-byte varints,
    // eight IPv6 candidates...), sealed end to end by a member.
    for inner in worst_case_frames().into_iter().filter(Frame::is_peer) {
        let sealed = with_shared_session(|alice, _, _| alice.seal(Duration::ZERO, &inner.encode()));
        let (sealed, _) = sealed.expect("counters left");
        // When it is wrapped in the largest Relay and Relayed frames.
        assert!(sealed.len() <= MAX_RELAY_PAYLOAD, "{} > MAX_RELAY_PAYLOAD {MAX_RELAY_PAYLOAD}", sealed.len());
        let relay = Frame::Relay { token: u64::MAX, session: SessionId(u64::MAX), payload: sealed.clone() };
        let relayed = Frame::Relayed { session: SessionId(u64::MAX), payload: sealed.clone() };
        // Then both fit a datagram once sealed in the channel, decode, and
        // the inner frame opens at the other end.
        for outer in [relay, relayed] {
            let bytes = outer.encode();
            assert!(bytes.len() + SEALED_OVERHEAD <= MAX_DATAGRAM, "{} bytes", bytes.len());
            assert_eq!(Frame::decode(&bytes), Ok(outer));
        }
        let opened = with_shared_session(|_, bob, _| bob.open(Duration::ZERO, &sealed));
        assert_eq!(opened, Ok(inner.encode()));
    }
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn a_sealed_peer_frame_opens_once_at_the_other_end_only(
        frame in peer_frame(),
        by_alice in any::<bool>(),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        with_shared_session(|alice, bob, other| {
            let (sender, receiver) = if by_alice { (alice, bob) } else { (bob, alice) };
            // Given a peer frame sealed end to end by one member.
            let plain = frame.encode();
            let (sealed, counter) = sender.seal(Duration::ZERO, &plain).expect("counters left");
            // Then it is a PeerSealed datagram of its session and counter,
            // the frame plus the overhead, and no frame the decoder takes.
            let header = layout::parse_sealed_as(layout::tag::PEER_SEALED, &sealed).map(|(s, c, _)| (s, c));
            prop_assert_eq!(header, Some((SHARED_SESSION.0, counter)));
            prop_assert_eq!(layout::peer_session(&sealed), Some(SHARED_SESSION.0));
            prop_assert_eq!(sealed.len(), plain.len() + PEER_SEALED_OVERHEAD);
            prop_assert_eq!(Frame::decode(&sealed), Err(FrameError::UnknownTag(layout::tag::PEER_SEALED)));
            // And it does not open reflected to its sender, nor in another
            // handshake's keys of the same session, nor with any one bit
            // flipped; and none of these moved the receiver's replay window
            // (RFC 6479: marked only once authentic).
            // (Reflected, it is refused as a replay when its counter is one
            // its sender saw from the other end already, else as forged.)
            prop_assert!(sender.open(Duration::ZERO, &sealed).is_err(), "a reflected datagram opened");
            prop_assert_eq!(other.open(Duration::ZERO, &sealed), Err(OpenError::Forged));
            let mut flipped = sealed.clone();
            flipped[flip.index(sealed.len())] ^= 1 << bit;
            prop_assert!(receiver.open(Duration::ZERO, &flipped).is_err(), "a datagram with a bit flipped opened");
            // When the receiver opens it, then it is the frame, once.
            prop_assert_eq!(receiver.open(Duration::ZERO, &sealed), Ok(plain));
            prop_assert_eq!(receiver.open(Duration::ZERO, &sealed), Err(OpenError::Replayed));
            Ok(())
        })?;
    }

    #[test]
    fn generated_user_names_are_valid(name in user_name()) {
        // Given the user-name strategy; then it only makes valid names.
        prop_assert!(valid_user_name(&name), "{:?}", name);
        prop_assert!((1..=MAX_USER_NAME).contains(&name.len()));
    }
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn a_session_handshake_completes_only_between_the_named_keys_for_the_named_session(
        (initiator, responder) in (select(NAMES.to_vec()), select(NAMES.to_vec())),
        session in session_id(),
        seeds in any::<(u64, u64)>(),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
        frames in vec(peer_frame(), 1..4),
    ) {
        let (i_key, r_key, mallory) = (user_key(initiator), user_key(responder), user_key("mallory"));
        let now = Duration::from_secs(1);
        // Given the initiator's hello for `session`, to the responder's key.
        let (mut hello, datagram) = PeerHelloSent::start(i_key, &r_key.public(), session, seeds.0.into());
        // Then it is a PeerHello of the session: the header and an empty IK
        // message 1, no frame.
        prop_assert_eq!(layout::parse_peer_handshake(layout::tag::PEER_HELLO, &datagram).map(|(s, n)| (s, n.len())),
            Some((session.0, IK_MESSAGE_1_OVERHEAD)));
        prop_assert_eq!(layout::peer_session(&datagram), Some(session.0));
        prop_assert!(Frame::decode(&datagram).is_err());
        // And the responder refuses it when it expects another key, when it
        // is for another session (even under this one's header: the
        // prologue binds the session), and when any bit is flipped.
        let answer = |expected: &StaticKey, named: SessionId, bytes: &[u8]| {
            PeerHelloReceived::answer(r_key, &expected.public(), named, bytes, now, seeds.1.into())
        };
        prop_assert!(answer(mallory, session, &datagram).is_none(), "a hello proving another key was answered");
        let other = SessionId(session.0 ^ 1);
        prop_assert!(answer(i_key, other, &datagram).is_none(), "a hello of another session was answered");
        let mut rehomed = datagram.clone();
        rehomed[2..10].copy_from_slice(&other.0.to_le_bytes());
        prop_assert!(answer(i_key, other, &rehomed).is_none(), "a hello moved to another session was answered");
        let mut flipped = datagram.clone();
        flipped[flip.index(datagram.len())] ^= 1 << bit;
        prop_assert!(answer(i_key, session, &flipped).is_none(), "a hello with a bit flipped was answered");
        // When the responder answers the genuine hello.
        let (welcome, mut r_end) = answer(i_key, session, &datagram).expect("the genuine hello is answered");
        prop_assert_eq!(layout::parse_peer_handshake(layout::tag::PEER_WELCOME, &welcome).map(|(s, n)| (s, n.len())),
            Some((session.0, IK_MESSAGE_2_OVERHEAD)));
        // Then a welcome with a bit flipped, or another handshake's of the
        // same session, finishes nothing, and leaves the hello for the
        // genuine welcome, which finishes it once.
        let mut flipped = welcome.clone();
        flipped[flip.index(welcome.len())] ^= 1 << bit;
        prop_assert!(hello.finish(&flipped, now).is_none(), "a welcome with a bit flipped finished the hello");
        let (_, mallorys) = PeerHelloSent::start(mallory, &r_key.public(), session, seeds.0.into());
        let foreign = PeerHelloReceived::answer(r_key, &mallory.public(), session, &mallorys, now, seeds.1.into());
        let (foreign, _) = foreign.expect("mallory's own hello is answered, when mallory is expected");
        prop_assert!(hello.finish(&foreign, now).is_none(), "another handshake's welcome finished the hello");
        let mut i_end = hello.finish(&welcome, now).expect("the genuine welcome finishes the hello");
        prop_assert!(hello.finish(&welcome, now).is_none(), "a handshake finished twice");
        // And both ends hold the same keys, one per direction.
        for frame in &frames {
            let plain = frame.encode();
            let (sealed, _) = i_end.seal(now, &plain).expect("counters left");
            prop_assert_eq!(r_end.open(now, &sealed), Ok(plain.clone()));
            prop_assert_eq!(i_end.open(now, &sealed), Err(OpenError::Forged));
            let (sealed, _) = r_end.seal(now, &plain).expect("counters left");
            prop_assert_eq!(i_end.open(now, &sealed), Ok(plain));
        }
    }

    #[test]
    fn sealed_datagrams_open_across_rekeys_in_order_and_late_within_the_previous_keys_lifetime(
        gaps in vec(
            prop_oneof![(0u64..5_000).prop_map(Duration::from_millis), (0u64..200).prop_map(Duration::from_secs)],
            1..40,
        ),
        late in any::<prop::sample::Index>(),
        seed in any::<u64>(),
    ) {
        // Given a session, and a sender sealing a datagram after each gap
        // (its key moves on every two minutes, REKEY_AFTER_TIME).
        let (alice, bob) = (user_key("alice"), user_key("bob"));
        let (mut sender, mut receiver) = handshake(alice, bob, SHARED_SESSION, Duration::ZERO, seed);
        let mut now = Duration::ZERO;
        let mut sealed = Vec::new();
        for (i, gap) in gaps.iter().enumerate() {
            now += *gap;
            let (datagram, counter) = sender.seal(now, &[i as u8]).expect("counters left");
            sealed.push((now, datagram, counter));
        }
        // Then the counters' packet numbers count up from zero and their
        // epochs never skip one, and the sender's epoch is the last one's.
        for (i, (_, _, counter)) in sealed.iter().enumerate() {
            prop_assert_eq!(counter & ((1 << 48) - 1), i as u64);
        }
        let epochs: Vec<u64> = sealed.iter().map(|(_, _, c)| c >> 48).collect();
        prop_assert!(epochs.windows(2).all(|w| w[1] == w[0] || w[1] == w[0] + 1), "epochs {:?}", epochs);
        prop_assert_eq!(u64::from(sender.send_epoch()), *epochs.last().expect("one at least"));
        // When one datagram is held back and the others arrive as sealed.
        let late = late.index(sealed.len());
        for (i, (at, datagram, _)) in sealed.iter().enumerate() {
            if i != late {
                prop_assert_eq!(receiver.open(*at, datagram), Ok(vec![i as u8]), "datagram {} of {:?}", i, epochs);
            }
        }
        // Then the late one opens if its key is one the receiver holds or
        // may derive (DESIGN §7, as QUIC's key update, RFC 9001 §6.5): its
        // current epoch's, one up to four ahead, or the previous epoch's
        // within ten seconds of moving on; modelled here as the receiver
        // followed the others.
        let lifetime = Duration::from_secs(10);
        let (mut current, mut previous) = (0u64, None::<(u64, Duration)>);
        for (i, (at, _, counter)) in sealed.iter().enumerate() {
            let epoch = counter >> 48;
            if i != late && epoch > current {
                previous = Some((current, *at + lifetime));
                current = epoch;
            }
        }
        let (at, datagram, counter) = &sealed[late];
        let epoch = counter >> 48;
        let previous = previous.filter(|(_, until)| now < *until).map(|(e, _)| e);
        let opens = epoch == current || previous == Some(epoch) || (epoch > current && epoch - current <= 4);
        let opened = receiver.open(now.max(*at), datagram);
        if opens {
            prop_assert_eq!(opened, Ok(vec![late as u8]));
        } else {
            prop_assert_eq!(opened, Err(OpenError::Forged));
        }
    }

    #[test]
    fn a_sealed_text_opens_only_for_its_recipient_and_names_its_sealer(
        (from, to) in (select(NAMES.to_vec()), select(NAMES.to_vec())),
        id in message_id(),
        text in text(),
        seed in any::<u64>(),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        // Given a text sealed by `from` to `to`'s key, for (from, to, id).
        let (sender, recipient, other) = (user_key(from), user_key(to), user_key("mallory"));
        let sealed = seal_text(sender, &recipient.public(), (from, to, id), &text, seed.into());
        // Then it is the text and what sealing adds, which fits a TextSend
        // and a TextDeliver within their limits.
        prop_assert_eq!(sealed.len(), text.len() + X_OVERHEAD);
        prop_assert!(sealed.len() <= MAX_SEALED_TEXT);
        // And the recipient opens it and learns who sealed it; nobody else
        // does, nor under other names or another id, nor with a bit flipped.
        prop_assert_eq!(open_text(recipient, (from, to, id), &sealed), Some((sender.public(), text.clone())));
        prop_assert_eq!(open_text(other, (from, to, id), &sealed), None);
        prop_assert_eq!(open_text(recipient, ("mallory", to, id), &sealed), None);
        prop_assert_eq!(open_text(recipient, (from, "mallory", id), &sealed), None);
        let next = MessageId { conversation: id.conversation, seq: id.seq.wrapping_add(1) };
        prop_assert_eq!(open_text(recipient, (from, to, next), &sealed), None);
        let mut flipped = sealed.clone();
        flipped[flip.index(sealed.len())] ^= 1 << bit;
        prop_assert_eq!(open_text(recipient, (from, to, id), &flipped), None);
    }
}

// ---------------------------------------------------------------------------
// 1b. The channel: its tags, a handshake, sealed frames
// ---------------------------------------------------------------------------

#[test]
fn channel_and_peer_tags_are_no_frame_tags() {
    // Given every possible first byte.
    for byte in 0..=u8::MAX {
        // Then exactly 0x70..=0x75 are the channel's and 0x76..=0x78 the
        // sessions': Punchline's by the demultiplexer, but no frame's, so
        // the frame decoder calls them unknown.
        let channel = (0x70..=0x75).contains(&byte);
        let peer = (0x76..=0x78).contains(&byte);
        assert_eq!(layout::is_channel_tag(byte), channel, "{byte:#04x}");
        assert_eq!(layout::is_peer_tag(byte), peer, "{byte:#04x}");
        if channel || peer {
            assert!(!ASSIGNED_TAGS.contains(&byte) && Frame::max_size(byte).is_none(), "{byte:#04x}");
            assert_eq!(wire::classify(&[byte, VERSION]), wire::Kind::Punchline);
            assert_eq!(Frame::decode(&[byte, VERSION, 0, 0]), Err(FrameError::UnknownTag(byte)));
        }
    }
    let tags = [
        layout::tag::HELLO,
        layout::tag::WELCOME,
        layout::tag::COOKIE_REPLY,
        layout::tag::SEALED,
        layout::tag::KEY_REQUEST,
        layout::tag::KEY_REPLY,
    ];
    assert_eq!(tags, [0x70, 0x71, 0x72, 0x73, 0x74, 0x75]);
    assert_eq!(peer_tags(), [0x76, 0x77, 0x78]);
}

#[test]
fn every_answer_before_a_proof_is_smaller_than_its_request() {
    // Given the smallest Hello a client sends (the shortest Login inside)
    // and the largest Welcome a server answers (a worst-case LoginOk or
    // Error inside).
    let login = Frame::Login { request: 0, user: "a".to_owned(), host_candidates: vec![] }.encode();
    let smallest_hello = layout::HELLO_HEADER + login.len() + IK_MESSAGE_1_OVERHEAD + 2 * layout::MAC_LEN;
    let answers = [wire::frame::tag::LOGIN_OK, wire::frame::tag::ERROR];
    let largest_answer = answers.iter().map(|t| Frame::max_size(*t).expect("assigned")).max().expect("two");
    let largest_welcome = layout::WELCOME_HEADER + largest_answer + IK_MESSAGE_2_OVERHEAD;
    // Then no answer a server sends before the sender proved its address
    // aims more bytes at it than it sent.
    assert!(largest_welcome < smallest_hello, "{largest_welcome} >= {smallest_hello}");
    assert!(layout::COOKIE_REPLY_LEN < smallest_hello);
    const { assert!(layout::KEY_REPLY_LEN < layout::KEY_REQUEST_LEN) };
    assert_eq!(layout::key_request(1).len(), layout::KEY_REQUEST_LEN);
}

#[test]
fn every_signaling_frame_fits_a_datagram_sealed() {
    // Given the worst case of every frame that travels in the channel but
    // the relay's two (their limit is the datagram's own: a maximal one
    // sealed would not fit).
    for frame in worst_case_frames() {
        if frame.is_peer() || matches!(frame, Frame::Relay { .. } | Frame::Relayed { .. }) {
            continue;
        }
        // Then, sealed, it still fits a datagram.
        let sealed = frame.encode().len() + SEALED_OVERHEAD;
        assert!(sealed <= MAX_DATAGRAM, "{:#04x} sealed is {sealed} bytes", frame.tag());
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn a_handshake_opens_a_channel_that_seals_both_ways(
        login in login(),
        (token, reflexive) in (u64s(), socket_addr()),
        cookie in prop::option::of(any::<[u8; 16]>()),
        seeds in any::<(u64, u64, u64)>(),
        to_server in vec(client_to_server_frame(), 1..4),
        to_client in vec(server_to_client_frame(), 1..4),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        // Given a client that starts a handshake with the server's key,
        // carrying its Login (and a cookie's mac2, when it has one).
        let identity = StaticKey::derive(Seed::from(seeds.0), "client");
        let server = server_key();
        let payload = login.encode();
        let (hello, datagram) = HelloSent::start(&identity, &server.public(), &payload, cookie.as_ref(), seeds.1.into());
        // Then the Hello is its layout: the Noise message 1 of its payload,
        // mac1 keyed by the server's key, mac2 by the cookie or zero.
        let parsed = Hello::parse(&datagram).expect("a Hello");
        prop_assert_eq!(datagram.len(), layout::HELLO_HEADER + payload.len() + IK_MESSAGE_1_OVERHEAD + 32);
        prop_assert_eq!((parsed.sender, &parsed.mac1), (hello.sender(), hello.mac1()));
        prop_assert!(mac1_valid(&server.public(), &parsed));
        let mac2 = cookie.map_or([0; 16], |c| keyed_mac(&c, parsed.before_mac2));
        prop_assert_eq!(parsed.mac2, mac2);
        // And only the server's key reads it: who sent it, and the Login.
        let other = StaticKey::derive(Seed::from(seeds.0), "another server");
        prop_assert!(HelloReceived::read(&other, parsed.sender, parsed.noise, seeds.2.into()).is_none());
        let received = HelloReceived::read(&server, parsed.sender, parsed.noise, seeds.2.into());
        let received = received.expect("the server reads a Hello to its key");
        prop_assert_eq!(received.client_key(), identity.public());
        prop_assert_eq!(received.payload(), &payload[..]);
        // When the server answers with LoginOk, and the client reads it.
        let login_ok = Frame::LoginOk { request: 1, token, reflexive }.encode();
        let (welcome, mut server_end) = received.answer(&login_ok, token).expect("an answer");
        prop_assert_eq!(welcome.len(), layout::WELCOME_HEADER + login_ok.len() + IK_MESSAGE_2_OVERHEAD);
        prop_assert_eq!(layout::parse_welcome(&welcome).map(|(receiver, _)| receiver), Some(hello.sender()));
        let (inside, finished) = hello.finish(&welcome).expect("the Welcome to our Hello");
        prop_assert_eq!(&inside, &login_ok);
        let mut client_end = finished.into_channel(token).expect("a channel");
        // Then each frame sealed at one end is the frame plus the overhead,
        // names the other end's index and the next counter, and opens there
        // once: not reflected, not with a bit flipped, not replayed.
        for (ends, frames, receiver) in [(0, &to_server, token), (1, &to_client, parsed.sender)] {
            let (from, to) = if ends == 0 { (&mut client_end, &mut server_end) } else { (&mut server_end, &mut client_end) };
            let mut sealed = Vec::new();
            for (counter, frame) in frames.iter().enumerate() {
                let plain = frame.encode();
                let datagram = from.seal(&plain).expect("counters left");
                prop_assert_eq!(datagram.len(), plain.len() + SEALED_OVERHEAD);
                let header = layout::parse_sealed(&datagram).map(|(r, c, _)| (r, c));
                prop_assert_eq!(header, Some((receiver, counter as u64)));
                if token != parsed.sender {
                    prop_assert_eq!(from.open(&datagram), None, "a reflected frame opened");
                }
                let mut flipped = datagram.clone();
                flipped[flip.index(datagram.len())] ^= 1 << bit;
                prop_assert_eq!(to.open(&flipped), None, "a frame with a bit flipped opened");
                sealed.push((datagram, plain));
            }
            // (In any order, as datagrams arrive.)
            for (datagram, plain) in sealed.iter().rev() {
                prop_assert_eq!(to.open(datagram), Some(plain.clone()));
                prop_assert_eq!(to.open(datagram), None, "a replay opened");
            }
        }
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn a_tampered_welcome_finishes_nothing(seed in any::<u64>(), flip in any::<prop::sample::Index>(), bit in 0u8..8) {
        // Given a handshake up to the server's Welcome.
        let identity = StaticKey::derive(Seed::from(seed), "client");
        let server = server_key();
        let login = Frame::Login { request: 1, user: "alice".to_owned(), host_candidates: vec![] }.encode();
        let (hello, datagram) = HelloSent::start(&identity, &server.public(), &login, None, seed.into());
        let parsed = Hello::parse(&datagram).expect("a Hello");
        let received = HelloReceived::read(&server, parsed.sender, parsed.noise, seed.into()).expect("read");
        let login_ok = Frame::LoginOk { request: 1, token: 7, reflexive: server_primary() }.encode();
        let (mut welcome, _) = received.answer(&login_ok, 7).expect("an answer");
        // When any bit of it is flipped; then the client's Hello is not
        // finished by it.
        let at = flip.index(welcome.len());
        welcome[at] ^= 1 << bit;
        prop_assert!(hello.finish(&welcome).is_none(), "a Welcome with bit {} of byte {} flipped finished", bit, at);
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
    check_channel_parsers(bytes)
}

/// What the channel's parsers say about `bytes` must be exactly what their
/// layouts allow (DESIGN §7; `wire::channel`): its tag, our version, and a
/// length at least (or, for the fixed-size ones, exactly) the layout's.
fn check_channel_parsers(bytes: &[u8]) -> Result<(), TestCaseError> {
    let shaped = |tag: u8| bytes.len() >= 2 && bytes[0] == tag && bytes[1] == VERSION;
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let hello = Hello::parse(bytes);
    prop_assert_eq!(hello.is_some(), shaped(layout::tag::HELLO) && bytes.len() >= layout::SMALLEST_HELLO);
    if let Some(hello) = &hello {
        let len = bytes.len();
        prop_assert_eq!(hello.sender, u64_at(2));
        prop_assert_eq!(hello.noise, &bytes[layout::HELLO_HEADER..len - 32]);
        prop_assert_eq!((hello.before_mac1, hello.before_mac2), (&bytes[..len - 32], &bytes[..len - 16]));
        prop_assert_eq!((&hello.mac1[..], &hello.mac2[..]), (&bytes[len - 32..len - 16], &bytes[len - 16..]));
    }
    let welcome = layout::parse_welcome(bytes);
    prop_assert_eq!(welcome.is_some(), shaped(layout::tag::WELCOME) && bytes.len() > layout::WELCOME_HEADER);
    if let Some((receiver, noise)) = welcome {
        prop_assert_eq!((receiver, noise), (u64_at(2), &bytes[layout::WELCOME_HEADER..]));
    }
    let cookie = layout::parse_cookie_reply(bytes);
    prop_assert_eq!(cookie.is_some(), shaped(layout::tag::COOKIE_REPLY) && bytes.len() == layout::COOKIE_REPLY_LEN);
    if let Some((receiver, nonce, sealed)) = cookie {
        prop_assert_eq!((receiver, &nonce[..], &sealed[..]), (u64_at(2), &bytes[10..34], &bytes[34..]));
    }
    let sealed = layout::parse_sealed(bytes);
    prop_assert_eq!(sealed.is_some(), shaped(layout::tag::SEALED) && bytes.len() >= SEALED_OVERHEAD);
    if let Some((receiver, counter, ciphertext)) = sealed {
        prop_assert_eq!((receiver, counter, ciphertext), (u64_at(2), u64_at(10), &bytes[layout::SEALED_HEADER..]));
    }
    let request = layout::parse_key_request(bytes);
    prop_assert_eq!(request.is_some(), shaped(layout::tag::KEY_REQUEST) && bytes.len() >= layout::KEY_REQUEST_LEN);
    if let Some(nonce) = request {
        prop_assert_eq!(nonce, u64_at(2));
    }
    let reply = layout::parse_key_reply(bytes);
    prop_assert_eq!(reply.is_some(), shaped(layout::tag::KEY_REPLY) && bytes.len() == layout::KEY_REPLY_LEN);
    if let Some((nonce, key)) = reply {
        prop_assert_eq!((nonce, &key[..]), (u64_at(2), &bytes[10..]));
    }
    // And the sessions' layouts: a PeerSealed datagram is a sealed one
    // with its own tag, a session handshake its header and a message, and
    // any of them names its session once the header is there.
    prop_assert_eq!(layout::parse_sealed_as(layout::tag::SEALED, bytes), sealed);
    let peer_sealed = layout::parse_sealed_as(layout::tag::PEER_SEALED, bytes);
    prop_assert_eq!(peer_sealed.is_some(), shaped(layout::tag::PEER_SEALED) && bytes.len() >= PEER_SEALED_OVERHEAD);
    if let Some((session, counter, ciphertext)) = peer_sealed {
        prop_assert_eq!((session, counter, ciphertext), (u64_at(2), u64_at(10), &bytes[layout::SEALED_HEADER..]));
    }
    let mut handshakes = Vec::new();
    for tag in [layout::tag::PEER_HELLO, layout::tag::PEER_WELCOME] {
        let handshake = layout::parse_peer_handshake(tag, bytes);
        prop_assert_eq!(handshake.is_some(), shaped(tag) && bytes.len() > layout::PEER_HEADER);
        if let Some((session, noise)) = handshake {
            prop_assert_eq!((session, noise), (u64_at(2), &bytes[layout::PEER_HEADER..]));
        }
        handshakes.push(handshake.is_some());
    }
    let named = is_peer_datagram(bytes) && bytes.len() >= layout::PEER_HEADER && bytes[1] == VERSION;
    prop_assert_eq!(layout::peer_session(bytes), named.then(|| u64_at(2)));
    // And only a channel or peer tag has a layout, and no frame has one.
    let parsed = [hello.is_some(), welcome.is_some(), cookie.is_some(), sealed.is_some()];
    let channel = parsed.into_iter().chain([request.is_some(), reply.is_some()]).any(|p| p);
    prop_assert!(!channel || (is_channel(bytes) && Frame::decode(bytes).is_err()));
    let peer = peer_sealed.is_some() || handshakes.contains(&true) || named;
    prop_assert!(!peer || (is_peer_datagram(bytes) && Frame::decode(bytes).is_err()));
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
        bytes in prop_oneof![frame_shaped(), stun_shaped(), mutated_frame(), channel_shaped(), mutated_channel()],
    ) {
        check_decoders(&bytes)?;
    }

    #[test]
    fn a_frame_is_its_tag_the_version_and_its_fields(frame in any_frame()) {
        // Given any frame, peer frames too, when encoded, then the datagram
        // is the tag, the version and postcard's encoding of the variant's
        // fields (postcard's own encoding minus its one-byte variant index),
        // and nothing after them: the wire of DESIGN §3 (a peer frame is
        // authenticated by the encryption around it, not by a MAC slot).
        let encoded = frame.encode();
        let fields = postcard::to_allocvec(&frame).expect("frames serialize");
        let mut expected = vec![frame.tag(), VERSION];
        expected.extend_from_slice(&fields[1..]);
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
