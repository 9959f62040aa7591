//! Strategies: hostile datagrams.

use super::*;

// ---------------------------------------------------------------------------
// Strategies: hostile datagrams
// ---------------------------------------------------------------------------

/// One edit of a datagram; positions are taken modulo its length.
#[derive(Clone, Debug)]
pub(crate) enum Mutation {
    Flip { at: usize, bit: u8 },
    Set { at: usize, byte: u8 },
    Truncate { to: usize },
    Extend(Vec<u8>),
    Insert { at: usize, byte: u8 },
    Remove { at: usize },
}

pub(crate) fn mutation() -> impl Strategy<Value = Mutation> + Clone {
    prop_oneof![
        3 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        1 => any::<usize>().prop_map(|to| Mutation::Truncate { to }),
        1 => vec(any::<u8>(), 1..=32).prop_map(Mutation::Extend),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        1 => any::<usize>().prop_map(|at| Mutation::Remove { at }),
    ]
}

pub(crate) fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        match m {
            Mutation::Flip { at, bit } if len > 0 => bytes[at % len] ^= 1 << bit,
            Mutation::Set { at, byte } if len > 0 => bytes[at % len] = *byte,
            Mutation::Truncate { to } => bytes.truncate(to % (len + 1)),
            Mutation::Extend(more) => bytes.extend_from_slice(more),
            Mutation::Insert { at, byte } => bytes.insert(at % (len + 1), *byte),
            Mutation::Remove { at } if len > 0 => {
                bytes.remove(at % len);
            }
            _ => {}
        }
    }
    bytes
}

/// `frame` (encoded) sealed end to end, as a member of the shared session
/// ([`with_shared_session`]) would send it: by alice or bob.
pub(crate) fn sealed_by_a_member(frame: &[u8], by_alice: bool) -> Vec<u8> {
    with_shared_session(|alice, bob, _| {
        let end = if by_alice { alice } else { bob };
        end.seal(Duration::ZERO, frame).expect("the shared session has counters left").0
    })
}

/// A valid frame, encoded (and, for a peer frame, usually sealed end to end
/// as it travels; sometimes in the clear, as a forger sends it), then edited
/// 1 to 4 times.
pub(crate) fn mutated_frame() -> impl Strategy<Value = Vec<u8>> + Clone {
    (any_frame(), prop_oneof![3 => Just(true), 1 => Just(false)], any::<bool>(), vec(mutation(), 1..=4)).prop_map(
        |(frame, seal, by_alice, mutations)| {
            let mut bytes = frame.encode();
            if frame.is_peer() && seal {
                bytes = sealed_by_a_member(&bytes, by_alice);
            }
            mutate(bytes, &mutations)
        },
    )
}

/// An assigned tag, usually the right version, then random bytes.
pub(crate) fn frame_shaped() -> impl Strategy<Value = Vec<u8>> + Clone {
    (select(ASSIGNED_TAGS.to_vec()), prop_oneof![4 => Just(VERSION), 1 => any::<u8>()], vec(any::<u8>(), 0..1300))
        .prop_map(|(tag, version, body)| {
            let mut out = vec![tag, version];
            out.extend_from_slice(&body);
            out
        })
}

/// A STUN header with the magic cookie and a (usually honest) length, then
/// attributes of known and random types, sometimes with a valid FINGERPRINT.
pub(crate) fn stun_shaped() -> impl Strategy<Value = Vec<u8>> + Clone {
    let message_type =
        prop_oneof![select(vec![0x0001u16, 0x0101, 0x0111, 0x0011, 0x0002]), any::<u16>().prop_map(|t| t & 0x3fff),];
    let kind = prop_oneof![
        select(vec![
            stun::attr::MAPPED_ADDRESS,
            stun::attr::XOR_MAPPED_ADDRESS,
            stun::attr::ERROR_CODE,
            stun::attr::UNKNOWN_ATTRIBUTES,
            stun::attr::SOFTWARE,
            stun::attr::USERNAME,
            stun::attr::MESSAGE_INTEGRITY,
            stun::attr::MESSAGE_INTEGRITY_SHA256,
            stun::attr::ALTERNATE_SERVER,
            stun::attr::FINGERPRINT,
            stun::attr::PRIORITY,
            stun::attr::USE_CANDIDATE,
            stun::attr::CHANGE_REQUEST,
            stun::attr::RESPONSE_ORIGIN,
            stun::attr::OTHER_ADDRESS,
        ]),
        any::<u16>(),
    ];
    let value = prop_oneof![
        vec(any::<u8>(), 0..48),
        (select(vec![1u8, 2]), vec(any::<u8>(), 18..=18)).prop_map(|(family, rest)| {
            // An address value: reserved byte, family, port, address.
            let mut v = vec![0, family];
            v.extend_from_slice(&rest[..if family == 1 { 6 } else { 18 }]);
            v
        })
    ];
    let attrs = vec((kind, value), 0..12);
    (message_type, any::<[u8; 12]>(), attrs, any::<bool>(), any::<bool>(), any::<Option<u16>>()).prop_map(
        |(message_type, tid, attrs, pad, fingerprint, lie)| {
            let mut body = Vec::new();
            for (kind, value) in attrs {
                body.extend_from_slice(&kind.to_be_bytes());
                body.extend_from_slice(&(value.len() as u16).to_be_bytes());
                body.extend_from_slice(&value);
                while pad && body.len() % 4 != 0 {
                    body.push(0);
                }
            }
            let extra = if fingerprint { 8 } else { 0 };
            let length = lie.unwrap_or((body.len() + extra) as u16);
            let mut out = Vec::new();
            out.extend_from_slice(&message_type.to_be_bytes());
            out.extend_from_slice(&length.to_be_bytes());
            out.extend_from_slice(&stun::MAGIC_COOKIE.to_be_bytes());
            out.extend_from_slice(&tid);
            out.extend_from_slice(&body);
            if fingerprint {
                let crc = stun::fingerprint(&out);
                out.extend_from_slice(&stun::attr::FINGERPRINT.to_be_bytes());
                out.extend_from_slice(&4u16.to_be_bytes());
                out.extend_from_slice(&crc.to_be_bytes());
            }
            out
        },
    )
}

/// A channel or peer tag, usually the right version, then random bytes:
/// mostly near the sizes the layouts accept (a key request's 64 bytes, a
/// cookie reply's 66, the header and tag of a sealed frame, a Hello's MACs,
/// a peer datagram's session).
pub(crate) fn channel_shaped() -> impl Strategy<Value = Vec<u8>> + Clone {
    let tags = select((layout::tag::HELLO..=layout::tag::PEER_WELCOME).collect::<Vec<u8>>());
    (
        tags,
        prop_oneof![4 => Just(VERSION), 1 => any::<u8>()],
        prop_oneof![3 => vec(any::<u8>(), 0..=130), 1 => vec(any::<u8>(), 0..1300)],
    )
        .prop_map(|(tag, version, body)| {
            let mut out = vec![tag, version];
            out.extend_from_slice(&body);
            out
        })
}

/// Real Hellos to the test server's key, logging in each of [`NAMES`] (and
/// one more) with its own key: made once, their Diffie–Hellmans are not
/// cheap.
pub(crate) fn real_hellos() -> &'static [Vec<u8>] {
    static HELLOS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    HELLOS.get_or_init(|| {
        let server = server_key().public();
        ["alice", "bob", "carol", "mallory"]
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let identity = StaticKey::derive(Seed::from(0), name);
                let login =
                    Frame::Login { request: 1, user: (*name).to_owned(), host_candidates: vec![client_pool()[i]] };
                HelloSent::start(&identity, &server, &login.encode(), None, Seed::from(i as u64 + 77)).1
            })
            .collect()
    })
}

/// A real session handshake of the shared session ([`with_shared_session`]):
/// alice's hello to bob, and his welcome. Made once.
pub(crate) fn real_peer_handshake() -> &'static [Vec<u8>; 2] {
    static DATAGRAMS: std::sync::OnceLock<[Vec<u8>; 2]> = std::sync::OnceLock::new();
    DATAGRAMS.get_or_init(|| {
        let (alice, bob) = (user_key("alice"), user_key("bob"));
        let (_, hello) = PeerHelloSent::start(alice, &bob.public(), SHARED_SESSION, Seed::from(5));
        let answer = PeerHelloReceived::answer(bob, &alice.public(), SHARED_SESSION, &hello, Duration::ZERO, 6.into());
        let (welcome, _) = answer.expect("bob answers alice's hello");
        [hello, welcome]
    })
}

/// A valid datagram of the channel's layouts (a real Hello, a Welcome- or
/// sealed-shaped one with random contents, a key request or reply, a cookie
/// reply) or of a session's (a peer frame sealed end to end, a real session
/// handshake, or one shaped so with random contents), then edited 0 to 3
/// times.
pub(crate) fn mutated_channel() -> impl Strategy<Value = Vec<u8>> + Clone {
    let datagram = prop_oneof![
        2 => (0..real_hellos().len()).prop_map(|i| real_hellos()[i].clone()),
        1 => (u64s(), vec(any::<u8>(), 1..=200)).prop_map(|(receiver, noise)| layout::welcome(receiver, &noise)),
        1 => (u64s(), any::<[u8; 24]>(), any::<[u8; 32]>())
            .prop_map(|(receiver, nonce, cookie)| layout::cookie_reply(receiver, &nonce, &cookie)),
        3 => (u64s(), u64s(), vec(any::<u8>(), 16..=300)).prop_map(|(receiver, counter, ciphertext)| {
            let mut datagram = layout::sealed_buffer(receiver, counter, ciphertext.len());
            datagram[layout::SEALED_HEADER..].copy_from_slice(&ciphertext);
            datagram
        }),
        1 => u64s().prop_map(layout::key_request),
        1 => (u64s(), any::<[u8; 32]>()).prop_map(|(nonce, key)| layout::key_reply(nonce, &key)),
        2 => (peer_frame(), any::<bool>()).prop_map(|(frame, by_alice)| sealed_by_a_member(&frame.encode(), by_alice)),
        1 => (0usize..2).prop_map(|i| real_peer_handshake()[i].clone()),
        2 => session_id().prop_flat_map(|session| peer_datagram_for(session, 300)),
    ];
    (datagram, vec(mutation(), 0..=3)).prop_map(|(datagram, mutations)| mutate(datagram, &mutations))
}

/// Any hostile datagram: random, frame-shaped, STUN-shaped, channel-shaped,
/// a mutated valid frame, channel datagram or Binding request.
pub(crate) fn garbage() -> impl Strategy<Value = Vec<u8>> + Clone {
    prop_oneof![
        3 => vec(any::<u8>(), 0..1500),
        2 => frame_shaped(),
        2 => stun_shaped(),
        2 => channel_shaped(),
        3 => mutated_frame(),
        2 => mutated_channel(),
        1 => (any::<[u8; 12]>(), vec(mutation(), 0..=3))
            .prop_map(|(tid, m)| mutate(stun::binding_request(stun::TransactionId(tid)), &m)),
    ]
}
