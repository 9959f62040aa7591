//! Property tests for the wire codec, frame authentication and both machines'
//! robustness against hostile input (DESIGN §2, "Hostile input never panics";
//! DESIGN §3, "Wire").
//!
//! 1. Every [`Frame`] variant round-trips through `encode`/`decode` and stays
//!    within its tag's [`Frame::max_size`], and `encode_into_slice` writes the
//!    same bytes or refuses a short buffer; worst-case instances of every
//!    variant (every field at its documented limit) fit too. Sealed frames
//!    verify for their sender's role only.
//! 2. Arbitrary bytes, frame- and STUN-shaped bytes and mutations of valid
//!    frames never panic the decoders, a [`Client`] or a [`Server`]; every
//!    datagram either machine sends is at most [`MAX_DATAGRAM`] bytes and
//!    decodes; undecodable input is counted exactly once.
//! 3. A logged-in client fed garbage and forged or mutated frames *from the
//!    server's address* (including offers whose session keys the test knows,
//!    so authenticated peer traffic reaches deep into the session machine)
//!    never panics and counts what it drops.
//! 4. The decoder's rejections carry exact error values.
//!
//! Bugs these tests found are shown by focused reproducers near the end
//! ("Bugs found"); they fail until the core is fixed.
//!
//! The core never reads the clock: each test takes one `Instant::now()` and
//! moves time forward by adding durations.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::Union;
use proptest::test_runner::TestRunner;

use punchline_core::auth::{self, Role};
use punchline_core::client::{Client, ClientConfig, ClientEvent, ClientStats, SendError};
use punchline_core::messaging::{MemoryStore, MessageStore};
use punchline_core::nat::{FilteringBehavior, MappingBehavior, NatProfile, PortAllocation, Strategy as NatStrategy};
use punchline_core::server::{valid_user_name, Server, ServerConfig, ServerStats};
use punchline_core::wire::frame::{
    AnswerFrom, CloseReason, ErrorCode, Frame, FrameError, MessageId, SessionBody, SessionId, SessionKey,
    StreamMessage, TextRejection, TextStatus, FIRST_TAG, MAC_LEN, MAX_APP_PAYLOAD, MAX_CANDIDATES, MAX_RELAY_PAYLOAD,
    MAX_TEXT, MAX_USER_NAME, VERSION,
};
use punchline_core::wire::{self, stun, MAX_DATAGRAM};
use punchline_core::{Machine, SocketId, Transmit};

// ---------------------------------------------------------------------------
// Shared fixtures
// ---------------------------------------------------------------------------

/// Every assigned frame tag, in declaration order.
const ASSIGNED_TAGS: [u8; 28] = [
    0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x4b, 0x4c, 0x4d, 0x4e, 0x4f, 0x50, 0x51, 0x60, 0x61,
    0x62, 0x63, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58,
];

/// Names the stateful tests log in with, so connects find their peers.
const NAMES: [&str; 3] = ["alice", "bob", "carol"];

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address parses")
}

fn server_primary() -> SocketAddr {
    addr("203.0.113.10:3478")
}

fn server_alt() -> SocketAddr {
    addr("203.0.113.11:3479")
}

/// Every address a server with [`server_primary`] and [`server_alt`] listens
/// on, in [`Server::sockets`] order.
fn server_addrs() -> [SocketAddr; 4] {
    [server_primary(), server_alt(), addr("203.0.113.10:3479"), addr("203.0.113.11:3478")]
}

/// Client-side addresses the stateful tests send from (v4 and v6).
fn client_pool() -> [SocketAddr; 5] {
    [
        addr("198.51.100.1:4000"),
        addr("198.51.100.2:4000"),
        addr("198.51.100.1:4001"),
        addr("[2001:db8::1]:4000"),
        addr("192.0.2.77:9"),
    ]
}

fn config(cases: u32) -> ProptestConfig {
    // No regression files: this test owns only this source file.
    ProptestConfig { cases, failure_persistence: None, max_shrink_iters: 4096, ..ProptestConfig::default() }
}

/// True when no decoder accepts `payload`, so a machine must drop it as
/// malformed before looking at its content.
fn undecodable(payload: &[u8]) -> bool {
    if payload.len() > MAX_DATAGRAM {
        return true;
    }
    match wire::classify(payload) {
        wire::Kind::Unknown => true,
        wire::Kind::Stun => stun::Message::decode(payload).is_err(),
        wire::Kind::Punchline => Frame::decode(payload).is_err(),
    }
}

/// Every datagram a machine sends must fit [`MAX_DATAGRAM`] and decode.
fn assert_well_formed(who: &str, t: &Transmit) {
    assert!(
        t.payload.len() <= MAX_DATAGRAM,
        "{who} sent {} bytes to {} (limit {MAX_DATAGRAM}): {:02x?}",
        t.payload.len(),
        t.destination,
        &t.payload[..t.payload.len().min(16)]
    );
    match wire::classify(&t.payload) {
        wire::Kind::Punchline => {
            let frame = Frame::decode(&t.payload);
            assert!(frame.is_ok(), "{who} sent an undecodable frame ({frame:?}): {:02x?}", &t.payload[..]);
        }
        wire::Kind::Stun => {
            let m = stun::Message::decode(&t.payload);
            assert!(m.is_ok(), "{who} sent an undecodable STUN message ({m:?}): {:02x?}", &t.payload[..]);
        }
        wire::Kind::Unknown => {
            panic!("{who} sent a datagram that is neither STUN nor a frame: {:02x?}", &t.payload[..])
        }
    }
}

// ---------------------------------------------------------------------------
// Strategies: field values
// ---------------------------------------------------------------------------

fn u16s() -> impl Strategy<Value = u16> + Clone {
    prop_oneof![any::<u16>(), 0u16..8, Just(u16::MAX)]
}

fn u32s() -> impl Strategy<Value = u32> + Clone {
    prop_oneof![any::<u32>(), 0u32..300, Just(u32::MAX)]
}

/// u64s biased to varint boundaries: small, any, and the 10-byte maximum.
fn u64s() -> impl Strategy<Value = u64> + Clone {
    prop_oneof![any::<u64>(), 0u64..300, Just(u64::MAX)]
}

fn session_id() -> impl Strategy<Value = SessionId> + Clone {
    u64s().prop_map(SessionId)
}

/// IPv4 and IPv6 socket addresses. IPv6 flow info and scope id stay zero:
/// they are local to a host and are not part of the wire format (serde drops
/// them).
fn socket_addr() -> impl Strategy<Value = SocketAddr> + Clone {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(IpAddr::from(ip), port)),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(IpAddr::from(ip), port)),
    ]
}

fn candidates() -> impl Strategy<Value = Vec<SocketAddr>> + Clone {
    vec(socket_addr(), 0..=MAX_CANDIDATES)
}

/// 1 to [`MAX_USER_NAME`] bytes of printable, non-space characters: ASCII,
/// or any Unicode (multi-byte characters make the byte limit bite).
fn user_name() -> impl Strategy<Value = String> + Clone {
    let printable = any::<char>().prop_filter("printable and not a space", |c| !c.is_control() && !c.is_whitespace());
    prop_oneof![
        "[!-~]{1,64}",
        vec(printable, 1..=MAX_USER_NAME).prop_map(|chars| {
            let mut name = String::new();
            for c in chars {
                if name.len() + c.len_utf8() > MAX_USER_NAME {
                    break;
                }
                name.push(c);
            }
            name
        }),
    ]
}

/// Up to `max` bytes, with the sizes near `max` well represented.
fn payload(max: usize) -> impl Strategy<Value = Vec<u8>> + Clone {
    prop_oneof![vec(any::<u8>(), 0..=32), vec(any::<u8>(), 0..=max), vec(any::<u8>(), max - 8..=max)]
}

fn nat_profile() -> impl Strategy<Value = NatProfile> + Clone {
    let mapping = prop::option::of(select(vec![
        MappingBehavior::EndpointIndependent,
        MappingBehavior::AddressDependent,
        MappingBehavior::AddressAndPortDependent,
    ]));
    let filtering = prop::option::of(select(vec![
        FilteringBehavior::EndpointIndependent,
        FilteringBehavior::AddressDependent,
        FilteringBehavior::AddressAndPortDependent,
    ]));
    let ports = prop::option::of(prop_oneof![
        Just(PortAllocation::Preserving),
        prop_oneof![any::<i32>(), -2i32..=2, Just(i32::MIN), Just(i32::MAX)]
            .prop_map(|delta| PortAllocation::Sequential { delta }),
        Just(PortAllocation::Random),
    ]);
    (mapping, filtering, ports, any::<bool>()).prop_map(|(mapping, filtering, ports, public)| NatProfile {
        mapping,
        filtering,
        ports,
        public,
    })
}

fn nat_strategy() -> impl Strategy<Value = NatStrategy> + Clone {
    select(vec![NatStrategy::Punch, NatStrategy::Predict, NatStrategy::Birthday, NatStrategy::RelayOnly])
}

fn answer_from() -> impl Strategy<Value = AnswerFrom> + Clone {
    select(vec![AnswerFrom::Same, AnswerFrom::OtherPort, AnswerFrom::OtherAddress])
}

fn error_code() -> impl Strategy<Value = ErrorCode> + Clone {
    select(vec![
        ErrorCode::UnsupportedVersion,
        ErrorCode::NotLoggedIn,
        ErrorCode::UnknownPeer,
        ErrorCode::PeerOffline,
        ErrorCode::BadUserName,
        ErrorCode::RateLimited,
        ErrorCode::BadRequest,
    ])
}

fn close_reason() -> impl Strategy<Value = CloseReason> + Clone {
    select(vec![
        CloseReason::Local,
        CloseReason::Peer,
        CloseReason::PeerOffline,
        CloseReason::PeerTimeout,
        CloseReason::ServerUnreachable,
    ])
}

fn message_id() -> impl Strategy<Value = MessageId> + Clone {
    (u64s(), u64s()).prop_map(|(conversation, seq)| MessageId { conversation, seq })
}

/// Texts up to [`MAX_TEXT`] bytes, ASCII or multi-byte.
fn text() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        "[ -~]{0,40}",
        "[ -~]{990,1000}",
        vec(any::<char>(), 0..=250).prop_map(|chars| {
            let mut text = String::new();
            for c in chars {
                if text.len() + c.len_utf8() > MAX_TEXT {
                    break;
                }
                text.push(c);
            }
            text
        }),
    ]
}

fn text_status() -> impl Strategy<Value = TextStatus> + Clone {
    select(vec![TextStatus::Delivered, TextStatus::Stored])
}

fn text_rejection() -> impl Strategy<Value = TextRejection> + Clone {
    select(vec![
        TextRejection::TooLarge,
        TextRejection::UnknownRecipient,
        TextRejection::RecipientFull,
        TextRejection::BadRecipient,
        TextRejection::StoreUnavailable,
        TextRejection::RateLimited,
    ])
}

fn text_send() -> BoxedStrategy<Frame> {
    (u64s(), message_id(), user_name(), text())
        .prop_map(|(token, id, to, text)| Frame::TextSend { token, id, to, text })
        .boxed()
}

fn text_ack() -> BoxedStrategy<Frame> {
    (message_id(), text_status()).prop_map(|(id, status)| Frame::TextAck { id, status }).boxed()
}

fn text_rejected() -> BoxedStrategy<Frame> {
    (message_id(), text_rejection()).prop_map(|(id, reason)| Frame::TextRejected { id, reason }).boxed()
}

fn text_deliver() -> BoxedStrategy<Frame> {
    (user_name(), message_id(), text()).prop_map(|(from, id, text)| Frame::TextDeliver { from, id, text }).boxed()
}

fn text_deliver_ack() -> BoxedStrategy<Frame> {
    (u64s(), user_name(), message_id()).prop_map(|(token, from, id)| Frame::TextDeliverAck { token, from, id }).boxed()
}

fn inbox_sync() -> BoxedStrategy<Frame> {
    u64s().prop_map(|token| Frame::InboxSync { token }).boxed()
}

fn inbox_status() -> BoxedStrategy<Frame> {
    u32s().prop_map(|pending| Frame::InboxStatus { pending }).boxed()
}

fn role() -> impl Strategy<Value = Role> + Clone {
    select(vec![Role::Initiator, Role::Responder])
}

fn stream_message(seq_small: bool) -> impl Strategy<Value = StreamMessage> + Clone {
    let attempt = if seq_small { (0u16..4).boxed() } else { u16s().boxed() };
    prop_oneof![
        payload(MAX_APP_PAYLOAD).prop_map(StreamMessage::App),
        (attempt.clone(), candidates())
            .prop_map(|(attempt, candidates)| StreamMessage::Candidates { attempt, candidates }),
        attempt.clone().prop_map(|attempt| StreamMessage::OpenersOut { attempt }),
        (attempt.clone(), socket_addr(), any::<i32>(), any::<u16>())
            .prop_map(|(attempt, base, delta, window)| StreamMessage::Prediction { attempt, base, delta, window }),
        (attempt, socket_addr(), any::<u16>()).prop_map(|(attempt, at, sockets)| StreamMessage::PoolOpen {
            attempt,
            ip: at.ip(),
            sockets
        }),
        (message_id(), text()).prop_map(|(id, text)| StreamMessage::Text { id, text }),
        message_id().prop_map(|id| StreamMessage::TextAck { id }),
    ]
}

/// Session bodies; with `seq_small`, sequence numbers and acknowledgements
/// stay near the start of a stream so a live session delivers them.
fn session_body(seq_small: bool) -> impl Strategy<Value = SessionBody> + Clone {
    let seq = if seq_small { (0u64..12).boxed() } else { u64s().boxed() };
    prop_oneof![
        (seq.clone(), stream_message(seq_small)).prop_map(|(seq, message)| SessionBody::Stream { seq, message }),
        (seq, u64s()).prop_map(|(next, received_after)| SessionBody::Ack { next, received_after }),
        close_reason().prop_map(|reason| SessionBody::Close { reason }),
    ]
}

// ---------------------------------------------------------------------------
// Strategies: frames, one per variant
// ---------------------------------------------------------------------------

fn login() -> BoxedStrategy<Frame> {
    (u32s(), user_name(), candidates())
        .prop_map(|(request, user, host_candidates)| Frame::Login { request, user, host_candidates })
        .boxed()
}

fn login_ok() -> BoxedStrategy<Frame> {
    (u32s(), u64s(), socket_addr())
        .prop_map(|(request, token, reflexive)| Frame::LoginOk { request, token, reflexive })
        .boxed()
}

fn keepalive() -> BoxedStrategy<Frame> {
    (u64s(), nat_profile()).prop_map(|(token, profile)| Frame::Keepalive { token, profile }).boxed()
}

fn keepalive_ack() -> BoxedStrategy<Frame> {
    socket_addr().prop_map(|reflexive| Frame::KeepaliveAck { reflexive }).boxed()
}

fn profile() -> BoxedStrategy<Frame> {
    (u64s(), nat_profile()).prop_map(|(token, profile)| Frame::Profile { token, profile }).boxed()
}

fn lookup() -> BoxedStrategy<Frame> {
    (u64s(), u32s(), user_name()).prop_map(|(token, request, user)| Frame::Lookup { token, request, user }).boxed()
}

fn lookup_reply() -> BoxedStrategy<Frame> {
    (u32s(), any::<bool>()).prop_map(|(request, online)| Frame::LookupReply { request, online }).boxed()
}

fn connect() -> BoxedStrategy<Frame> {
    (u64s(), u32s(), user_name(), nat_profile())
        .prop_map(|(token, request, peer, profile)| Frame::Connect { token, request, peer, profile })
        .boxed()
}

fn offer() -> BoxedStrategy<Frame> {
    (u32s(), session_id(), any::<SessionKey>(), any::<bool>(), user_name(), candidates(), nat_strategy(), nat_profile())
        .prop_map(|(request, session, key, initiator, peer, peer_candidates, strategy, peer_profile)| Frame::Offer {
            request,
            session,
            key,
            initiator,
            peer,
            peer_candidates,
            strategy,
            peer_profile,
        })
        .boxed()
}

fn offer_ack() -> BoxedStrategy<Frame> {
    (u64s(), session_id()).prop_map(|(token, session)| Frame::OfferAck { token, session }).boxed()
}

fn relay() -> BoxedStrategy<Frame> {
    (u64s(), session_id(), payload(MAX_RELAY_PAYLOAD))
        .prop_map(|(token, session, payload)| Frame::Relay { token, session, payload })
        .boxed()
}

fn relayed() -> BoxedStrategy<Frame> {
    (session_id(), payload(MAX_RELAY_PAYLOAD))
        .prop_map(|(session, payload)| Frame::Relayed { session, payload })
        .boxed()
}

fn session_ended() -> BoxedStrategy<Frame> {
    (session_id(), close_reason()).prop_map(|(session, reason)| Frame::SessionEnded { session, reason }).boxed()
}

fn discover() -> BoxedStrategy<Frame> {
    (u64s(), answer_from()).prop_map(|(nonce, answer_from)| Frame::Discover { nonce, answer_from }).boxed()
}

fn discover_reply() -> BoxedStrategy<Frame> {
    (u64s(), socket_addr()).prop_map(|(nonce, reflexive)| Frame::DiscoverReply { nonce, reflexive }).boxed()
}

fn logout() -> BoxedStrategy<Frame> {
    u64s().prop_map(|token| Frame::Logout { token }).boxed()
}

fn error() -> BoxedStrategy<Frame> {
    (u32s(), error_code()).prop_map(|(request, code)| Frame::Error { request, code }).boxed()
}

fn opener() -> BoxedStrategy<Frame> {
    Just(Frame::Opener).boxed()
}

fn probe() -> BoxedStrategy<Frame> {
    (session_id(), u16s(), u64s())
        .prop_map(|(session, attempt, counter)| Frame::Probe { session, attempt, counter })
        .boxed()
}

fn probe_ack() -> BoxedStrategy<Frame> {
    (session_id(), u16s(), u64s(), u64s(), socket_addr())
        .prop_map(|(session, attempt, probe_counter, counter, observed)| Frame::ProbeAck {
            session,
            attempt,
            probe_counter,
            counter,
            observed,
        })
        .boxed()
}

fn session_frame(seq_small: bool) -> BoxedStrategy<Frame> {
    (session_id(), u64s(), session_body(seq_small))
        .prop_map(|(session, counter, body)| Frame::Session { session, counter, body })
        .boxed()
}

/// One strategy per variant, in tag order ([`ASSIGNED_TAGS`]).
fn frame_variants() -> Vec<BoxedStrategy<Frame>> {
    vec![
        login(),
        login_ok(),
        keepalive(),
        keepalive_ack(),
        profile(),
        lookup(),
        lookup_reply(),
        connect(),
        offer(),
        offer_ack(),
        relay(),
        relayed(),
        session_ended(),
        discover(),
        discover_reply(),
        logout(),
        error(),
        opener(),
        probe(),
        probe_ack(),
        session_frame(false),
        text_send(),
        text_ack(),
        text_rejected(),
        text_deliver(),
        text_deliver_ack(),
        inbox_sync(),
        inbox_status(),
    ]
}

fn any_frame() -> BoxedStrategy<Frame> {
    Union::new(frame_variants()).boxed()
}

fn authenticated_frame() -> BoxedStrategy<Frame> {
    prop_oneof![probe(), probe_ack(), session_frame(false)].boxed()
}

/// Frames a client sends to the server.
fn client_to_server_frame() -> BoxedStrategy<Frame> {
    Union::new(vec![
        login(),
        keepalive(),
        profile(),
        lookup(),
        connect(),
        offer_ack(),
        relay(),
        discover(),
        logout(),
        text_send(),
        text_deliver_ack(),
        inbox_sync(),
        any_frame(),
    ])
    .boxed()
}

/// Frames the server sends to a client.
fn server_to_client_frame() -> BoxedStrategy<Frame> {
    Union::new(vec![
        login_ok(),
        keepalive_ack(),
        lookup_reply(),
        offer(),
        relayed(),
        session_ended(),
        discover_reply(),
        error(),
        text_ack(),
        text_rejected(),
        text_deliver(),
        inbox_status(),
    ])
    .boxed()
}

/// The largest instance of every variant: every variable-length field at its
/// documented limit, every integer at its longest varint, IPv6 everywhere.
fn worst_case_frames() -> Vec<Frame> {
    let name = "\u{e9}".repeat(MAX_USER_NAME / 2); // 64 bytes of two-byte characters
    assert_eq!(name.len(), MAX_USER_NAME);
    let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::from([0xff; 16])), u16::MAX);
    let cands = vec![v6; MAX_CANDIDATES];
    let profile = NatProfile {
        mapping: Some(MappingBehavior::AddressAndPortDependent),
        filtering: Some(FilteringBehavior::AddressAndPortDependent),
        ports: Some(PortAllocation::Sequential { delta: i32::MIN }),
        public: true,
    };
    let session = SessionId(u64::MAX);
    let mut frames = vec![
        Frame::Login { request: u32::MAX, user: name.clone(), host_candidates: cands.clone() },
        Frame::LoginOk { request: u32::MAX, token: u64::MAX, reflexive: v6 },
        Frame::Keepalive { token: u64::MAX, profile },
        Frame::KeepaliveAck { reflexive: v6 },
        Frame::Profile { token: u64::MAX, profile },
        Frame::Lookup { token: u64::MAX, request: u32::MAX, user: name.clone() },
        Frame::LookupReply { request: u32::MAX, online: true },
        Frame::Connect { token: u64::MAX, request: u32::MAX, peer: name.clone(), profile },
        Frame::Offer {
            request: u32::MAX,
            session,
            key: [0xff; 32],
            initiator: true,
            peer: name,
            peer_candidates: cands.clone(),
            strategy: NatStrategy::RelayOnly,
            peer_profile: profile,
        },
        Frame::OfferAck { token: u64::MAX, session },
        Frame::Relay { token: u64::MAX, session, payload: vec![0xff; MAX_RELAY_PAYLOAD] },
        Frame::Relayed { session, payload: vec![0xff; MAX_RELAY_PAYLOAD] },
        Frame::SessionEnded { session, reason: CloseReason::ServerUnreachable },
        Frame::Discover { nonce: u64::MAX, answer_from: AnswerFrom::OtherAddress },
        Frame::DiscoverReply { nonce: u64::MAX, reflexive: v6 },
        Frame::Logout { token: u64::MAX },
        Frame::Error { request: u32::MAX, code: ErrorCode::BadRequest },
        Frame::Opener,
        Frame::Probe { session, attempt: u16::MAX, counter: u64::MAX },
        Frame::ProbeAck { session, attempt: u16::MAX, probe_counter: u64::MAX, counter: u64::MAX, observed: v6 },
    ];
    let id = MessageId { conversation: u64::MAX, seq: u64::MAX };
    let text = "\u{e9}".repeat(MAX_TEXT / 2); // 1000 bytes of two-byte characters
    let user = "\u{e9}".repeat(MAX_USER_NAME / 2);
    frames.extend([
        Frame::TextSend { token: u64::MAX, id, to: user.clone(), text: text.clone() },
        Frame::TextAck { id, status: TextStatus::Delivered },
        Frame::TextRejected { id, reason: TextRejection::StoreUnavailable },
        Frame::TextDeliver { from: user.clone(), id, text: text.clone() },
        Frame::TextDeliverAck { token: u64::MAX, from: user, id },
        Frame::InboxSync { token: u64::MAX },
        Frame::InboxStatus { pending: u32::MAX },
    ]);
    let bodies = [
        SessionBody::Stream { seq: u64::MAX, message: StreamMessage::App(vec![0xff; MAX_APP_PAYLOAD]) },
        SessionBody::Stream {
            seq: u64::MAX,
            message: StreamMessage::Candidates { attempt: u16::MAX, candidates: cands },
        },
        SessionBody::Stream { seq: u64::MAX, message: StreamMessage::OpenersOut { attempt: u16::MAX } },
        SessionBody::Stream {
            seq: u64::MAX,
            message: StreamMessage::Prediction { attempt: u16::MAX, base: v6, delta: i32::MIN, window: u16::MAX },
        },
        SessionBody::Stream {
            seq: u64::MAX,
            message: StreamMessage::PoolOpen { attempt: u16::MAX, ip: v6.ip(), sockets: u16::MAX },
        },
        SessionBody::Stream { seq: u64::MAX, message: StreamMessage::Text { id, text } },
        SessionBody::Stream { seq: u64::MAX, message: StreamMessage::TextAck { id } },
        SessionBody::Ack { next: u64::MAX, received_after: u64::MAX },
        SessionBody::Close { reason: CloseReason::ServerUnreachable },
    ];
    frames.extend(bodies.into_iter().map(|body| Frame::Session { session, counter: u64::MAX, body }));
    frames
}

// ---------------------------------------------------------------------------
// Strategies: hostile datagrams
// ---------------------------------------------------------------------------

/// One edit of a datagram; positions are taken modulo its length.
#[derive(Clone, Debug)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Set { at: usize, byte: u8 },
    Truncate { to: usize },
    Extend(Vec<u8>),
    Insert { at: usize, byte: u8 },
    Remove { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> + Clone {
    prop_oneof![
        3 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        1 => any::<usize>().prop_map(|to| Mutation::Truncate { to }),
        1 => vec(any::<u8>(), 1..=32).prop_map(Mutation::Extend),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        1 => any::<usize>().prop_map(|at| Mutation::Remove { at }),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
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

/// A valid frame, encoded (sealed with some key when authenticated), then
/// edited 1 to 4 times.
fn mutated_frame() -> impl Strategy<Value = Vec<u8>> + Clone {
    (any_frame(), any::<SessionKey>(), role(), vec(mutation(), 1..=4)).prop_map(|(frame, key, role, mutations)| {
        let mut bytes = frame.encode();
        if frame.is_authenticated() {
            auth::seal(&mut bytes, &key, role);
        }
        mutate(bytes, &mutations)
    })
}

/// An assigned tag, usually the right version, then random bytes.
fn frame_shaped() -> impl Strategy<Value = Vec<u8>> + Clone {
    (select(ASSIGNED_TAGS.to_vec()), prop_oneof![4 => Just(VERSION), 1 => any::<u8>()], vec(any::<u8>(), 0..1300))
        .prop_map(|(tag, version, body)| {
            let mut out = vec![tag, version];
            out.extend_from_slice(&body);
            out
        })
}

/// A STUN header with the magic cookie and a (usually honest) length, then
/// attributes of known and random types, sometimes with a valid FINGERPRINT.
fn stun_shaped() -> impl Strategy<Value = Vec<u8>> + Clone {
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

/// Any hostile datagram: random, frame-shaped, STUN-shaped, a mutated valid
/// frame or a mutated Binding request.
fn garbage() -> impl Strategy<Value = Vec<u8>> + Clone {
    prop_oneof![
        3 => vec(any::<u8>(), 0..1500),
        2 => frame_shaped(),
        2 => stun_shaped(),
        3 => mutated_frame(),
        1 => (any::<[u8; 12]>(), vec(mutation(), 0..=3))
            .prop_map(|(tid, m)| mutate(stun::binding_request(stun::TransactionId(tid)), &m)),
    ]
}

// ---------------------------------------------------------------------------
// Drivers
// ---------------------------------------------------------------------------

/// Drives a client the way a runtime would, checking every output: sockets
/// asked for are opened at once; sockets released must have been opened and
/// not yet released; every transmit is well formed and leaves from a socket
/// the driver holds.
struct ClientDriver {
    client: Client,
    now: Instant,
    primary: (SocketId, SocketAddr),
    /// Sockets the driver holds: the primary, those opened on request, and
    /// any a datagram was fed on.
    live: BTreeMap<SocketId, SocketAddr>,
    /// Sockets opened on the client's request and not yet released.
    opened: BTreeSet<SocketId>,
    next_socket: u32,
    sent: Vec<Transmit>,
    events: Vec<ClientEvent>,
}

impl ClientDriver {
    fn new(config: ClientConfig, now: Instant) -> Self {
        let primary = (SocketId(0), addr("198.51.100.1:4000"));
        let client = Client::new(config, primary, now);
        let mut d = ClientDriver {
            client,
            now,
            primary,
            live: [primary].into_iter().collect(),
            opened: BTreeSet::new(),
            next_socket: 100,
            sent: Vec::new(),
            events: Vec::new(),
        };
        d.drain();
        d
    }

    fn feed(&mut self, socket: SocketId, from: SocketAddr, payload: &[u8]) {
        let local = SocketAddr::new(self.primary.1.ip(), 50_000u16.wrapping_add(socket.0 as u16));
        self.live.entry(socket).or_insert(local);
        self.client.handle_datagram(self.now, socket, from, payload);
        self.drain();
    }

    /// Moves time forward by `by` and runs the timers, until the client has
    /// nothing due (a client whose deadline stays at `now` would make its
    /// driver spin).
    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.client.handle_timeout(self.now);
        self.drain();
        for _ in 0..64 {
            match self.client.poll_timeout() {
                Some(at) if at <= self.now => {
                    self.client.handle_timeout(self.now);
                    self.drain();
                }
                _ => return,
            }
        }
        panic!("the client's deadline stays at or before now: its driver would spin");
    }

    /// Runs the timers, deadline after deadline, for `span` without input.
    fn idle(&mut self, span: Duration) {
        let end = self.now + span;
        while let Some(at) = self.client.poll_timeout() {
            if at > end {
                break;
            }
            self.advance(at.saturating_duration_since(self.now));
        }
        self.now = end;
    }

    fn drain(&mut self) {
        for _ in 0..64 {
            while let Some(t) = self.client.poll_transmit() {
                assert_well_formed("the client", &t);
                assert!(
                    self.live.contains_key(&t.socket),
                    "the client sent from {:?}, not held by its driver",
                    t.socket
                );
                self.sent.push(t);
            }
            let mut asked = Vec::new();
            while let Some(e) = self.client.poll_event() {
                match &e {
                    ClientEvent::OpenSockets { request, count } => {
                        assert!((1..=1024).contains(count), "asked for {count} sockets");
                        asked.push((*request, *count));
                    }
                    ClientEvent::ReleaseSocket { socket } => {
                        assert_ne!(*socket, self.primary.0, "the client released its primary socket");
                        assert!(self.opened.remove(socket), "released {socket:?}, which is not open on its request");
                        self.live.remove(socket);
                    }
                    _ => {}
                }
                self.events.push(e);
            }
            if asked.is_empty() {
                return;
            }
            for (request, count) in asked {
                let sockets: Vec<(SocketId, SocketAddr)> = (0..count)
                    .map(|_| {
                        let id = SocketId(self.next_socket);
                        self.next_socket += 1;
                        (id, SocketAddr::new(self.primary.1.ip(), (self.next_socket % 60_000) as u16 + 1024))
                    })
                    .collect();
                for (id, a) in &sockets {
                    self.live.insert(*id, *a);
                    self.opened.insert(*id);
                }
                self.client.sockets_opened(self.now, request, &sockets);
            }
        }
        panic!("the client keeps asking for sockets");
    }

    fn take_sent(&mut self) -> Vec<Transmit> {
        std::mem::take(&mut self.sent)
    }
}

/// Drives a server, checking every output: well formed, from a socket the
/// driver holds, and only ever to an address the server has heard from (it
/// is never an open relay, nor a reflector toward third parties).
struct ServerDriver {
    server: Server,
    request_burst: u32,
    now: Instant,
    fed_sockets: BTreeSet<SocketId>,
    heard_from: BTreeSet<SocketAddr>,
    /// Tokens from `LoginOk`s, with the address they were sent to.
    tokens: Vec<(u64, SocketAddr)>,
    /// Sessions from `Offer`s.
    sessions: Vec<SessionId>,
    /// Each `Offer` as (session, member address).
    members: Vec<(SessionId, SocketAddr)>,
    sent: Vec<Transmit>,
    store: MemoryStore,
}

impl ServerDriver {
    fn new(config: ServerConfig, now: Instant) -> Self {
        ServerDriver {
            request_burst: config.request_burst,
            server: Server::new(config, now),
            now,
            fed_sockets: BTreeSet::new(),
            heard_from: BTreeSet::new(),
            tokens: Vec::new(),
            sessions: Vec::new(),
            members: Vec::new(),
            sent: Vec::new(),
            store: MemoryStore::new(),
        }
    }

    fn feed(&mut self, socket: SocketId, from: SocketAddr, payload: &[u8]) {
        self.fed_sockets.insert(socket);
        self.heard_from.insert(from);
        self.server.handle_datagram(self.now, socket, from, payload);
        self.drain();
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.server.handle_timeout(self.now);
        self.drain();
        for _ in 0..64 {
            match self.server.poll_timeout() {
                Some(at) if at <= self.now => {
                    self.server.handle_timeout(self.now);
                    self.drain();
                }
                _ => return,
            }
        }
        panic!("the server's deadline stays at or before now: its driver would spin");
    }

    fn idle(&mut self, span: Duration) {
        let end = self.now + span;
        while let Some(at) = self.server.poll_timeout() {
            if at > end {
                break;
            }
            self.advance(at.saturating_duration_since(self.now));
        }
        self.now = end;
    }

    fn drain(&mut self) {
        // Storage requests run at once on an in-memory store, as a driver's
        // store thread would run them (only later).
        loop {
            let batch: Vec<_> = std::iter::from_fn(|| self.server.poll_store_request()).collect();
            if batch.is_empty() {
                break;
            }
            for completion in self.store.execute(batch) {
                self.server.handle_store_completion(self.now, completion);
            }
        }
        while let Some(t) = self.server.poll_transmit() {
            assert_well_formed("the server", &t);
            let own = self.server.sockets().iter().any(|(id, _)| *id == t.socket);
            assert!(own || self.fed_sockets.contains(&t.socket), "the server sent from unknown {:?}", t.socket);
            assert!(self.heard_from.contains(&t.destination), "the server sent to {}, never heard from", t.destination);
            assert_eq!(t.ttl, None, "the server sends with the default TTL");
            match Frame::decode(&t.payload) {
                Ok(Frame::LoginOk { token, .. }) => self.tokens.push((token, t.destination)),
                Ok(Frame::Offer { session, .. }) => {
                    self.sessions.push(session);
                    self.members.push((session, t.destination));
                }
                _ => {}
            }
            self.sent.push(t);
        }
        while self.server.poll_event().is_some() {}
    }

    fn take_sent(&mut self) -> Vec<Transmit> {
        std::mem::take(&mut self.sent)
    }
}

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

/// One input to a machine.
#[derive(Clone, Debug)]
enum Input {
    Datagram { socket: SocketId, from: SocketAddr, payload: Vec<u8> },
    Advance(Duration),
}

fn source() -> impl Strategy<Value = SocketAddr> + Clone {
    prop_oneof![
        2 => select(server_addrs().to_vec()),
        2 => select(client_pool().to_vec()),
        1 => socket_addr(),
    ]
}

fn socket_id() -> impl Strategy<Value = SocketId> + Clone {
    prop_oneof![4 => (0u32..4).prop_map(SocketId), 1 => any::<u32>().prop_map(SocketId)]
}

fn advance() -> impl Strategy<Value = Duration> + Clone {
    prop_oneof![(0u64..2_000).prop_map(Duration::from_millis), (0u64..120).prop_map(Duration::from_secs),]
}

fn input() -> impl Strategy<Value = Input> + Clone {
    prop_oneof![
        5 => (socket_id(), source(), garbage())
            .prop_map(|(socket, from, payload)| Input::Datagram { socket, from, payload }),
        1 => advance().prop_map(Input::Advance),
    ]
}

fn stats_sum(s: &ServerStats) -> u64 {
    s.malformed + s.rate_limited + s.stun_answered
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn hostile_datagrams_never_panic_a_fresh_client_or_server(inputs in vec(input(), 1..24)) {
        // Given a fresh client (logging in) and a fresh server, both born at
        // one instant.
        let now = Instant::now();
        let mut client = ClientDriver::new(ClientConfig::new("alice", server_primary()), now);
        let mut server = ServerDriver::new(ServerConfig::new(server_primary(), Some(server_alt())), now);
        for input in &inputs {
            match input {
                Input::Datagram { socket, from, payload } => {
                    // When each is fed the same hostile datagram.
                    let (c_before, s_before) = (client.client.stats().clone(), server.server.stats().clone());
                    client.feed(*socket, *from, payload);
                    server.feed(*socket, *from, payload);
                    // Then undecodable input is counted exactly once, as
                    // malformed (the server may rate-limit STUN first).
                    if undecodable(payload) {
                        let c = client.client.stats();
                        prop_assert_eq!(c, &ClientStats { malformed: c_before.malformed + 1, ..c_before.clone() });
                        let s = server.server.stats();
                        if wire::classify(payload) == wire::Kind::Stun && payload.len() <= MAX_DATAGRAM {
                            prop_assert_eq!(stats_sum(s), stats_sum(&s_before) + 1);
                        } else {
                            prop_assert_eq!(s, &ServerStats { malformed: s_before.malformed + 1, ..s_before.clone() });
                        }
                    }
                }
                // And time passes in between, running both machines' timers.
                Input::Advance(by) => {
                    client.advance(*by);
                    server.advance(*by);
                }
            }
        }
        // (Every transmit was checked by the drivers: at most MAX_DATAGRAM
        // bytes, decodable, from a held socket.)
        let _ = (client.take_sent(), server.take_sent());
    }
}

// ---------------------------------------------------------------------------
// 2b. A stateful server: learned tokens and sessions reach its deep paths
// ---------------------------------------------------------------------------

/// Where a frame to the server comes from.
#[derive(Clone, Debug)]
enum From {
    Pool(usize),
    /// The address the substituted token was handed to.
    TokenOwner,
    Any(SocketAddr),
}

/// Which learned values to substitute into a generated frame. Token and
/// session indexes count back from the most recently learned.
#[derive(Clone, Debug)]
struct Pick {
    token: Option<usize>,
    session: Option<usize>,
    name: Option<usize>,
}

#[derive(Clone, Debug)]
enum ServerOp {
    /// Hostile bytes.
    Raw {
        socket: SocketId,
        from: From,
        bytes: Vec<u8>,
    },
    /// A client frame with learned tokens, sessions and names substituted,
    /// maybe mutated.
    Frame {
        socket: SocketId,
        from: From,
        frame: Frame,
        pick: Pick,
        mutations: Vec<Mutation>,
    },
    /// An honest login of a pool name from a pool address, maybe followed
    /// by its NAT profile (a connect to a user waits for its profile, or for
    /// a grace period after its login).
    Login {
        name: usize,
        from: usize,
        request: u32,
        profile: Option<NatProfile>,
    },
    /// A connect to a pool name with a recently learned token, from the
    /// address it was handed to.
    HonestConnect {
        token: usize,
        peer: usize,
        request: u32,
    },
    /// A relay frame from a member of a learned session, with that member's
    /// latest token.
    HonestRelay {
        member: usize,
        payload: Vec<u8>,
    },
    /// The same request, `count` times at one instant from one address.
    Flood {
        from: usize,
        count: usize,
        stun: bool,
    },
    Advance(Duration),
}

fn from() -> impl Strategy<Value = From> + Clone {
    prop_oneof![
        2 => (0usize..5).prop_map(From::Pool),
        5 => Just(From::TokenOwner),
        1 => socket_addr().prop_map(From::Any),
    ]
}

fn pick() -> impl Strategy<Value = Pick> + Clone {
    let recent = || prop_oneof![1 => Just(None), 6 => (0usize..3).prop_map(Some), 2 => any::<usize>().prop_map(Some)];
    let name = prop_oneof![1 => Just(None), 4 => (0..NAMES.len()).prop_map(Some)];
    (recent(), recent(), name).prop_map(|(token, session, name)| Pick { token, session, name })
}

fn server_op() -> impl Strategy<Value = ServerOp> + Clone {
    let mutations = prop_oneof![4 => Just(vec![]), 1 => vec(mutation(), 1..=3)];
    let frame = prop_oneof![
        2 => client_to_server_frame(),
        2 => connect(),
        3 => relay(),
        1 => offer_ack(),
        1 => keepalive(),
    ];
    prop_oneof![
        2 => (socket_id(), from(), garbage()).prop_map(|(socket, from, bytes)| ServerOp::Raw { socket, from, bytes }),
        8 => (socket_id(), from(), frame, pick(), mutations)
            .prop_map(|(socket, from, frame, pick, mutations)| {
                ServerOp::Frame { socket, from, frame, pick, mutations }
            }),
        // Mostly each name from its own address, so logins do not keep
        // replacing each other.
        2 => (0..NAMES.len(), prop_oneof![4 => Just(None), 1 => (0usize..5).prop_map(Some)], 0u32..2,
              prop_oneof![1 => Just(None), 3 => nat_profile().prop_map(Some)])
            .prop_map(|(name, from, request, profile)| {
                ServerOp::Login { name, from: from.unwrap_or(name), request, profile }
            }),
        3 => (0usize..3, 0..NAMES.len(), 0u32..3)
            .prop_map(|(token, peer, request)| ServerOp::HonestConnect { token, peer, request }),
        3 => (any::<usize>(), payload(MAX_RELAY_PAYLOAD))
            .prop_map(|(member, payload)| ServerOp::HonestRelay { member, payload }),
        1 => (0usize..2, 65usize..=100, any::<bool>())
            .prop_map(|(from, count, stun)| ServerOp::Flood { from, count, stun }),
        1 => prop_oneof![4 => (0u64..2_000).prop_map(Duration::from_millis), 1 => advance()]
            .prop_map(ServerOp::Advance),
    ]
}

fn server_config() -> impl Strategy<Value = ServerConfig> {
    let alternate = select(vec![Some(server_alt()), None, Some(addr("203.0.113.10:3479"))]);
    (alternate, any::<bool>()).prop_map(|(alternate, tight)| {
        let mut config = ServerConfig::new(server_primary(), alternate);
        if tight {
            config.user_timeout = Duration::from_secs(20);
            config.offer_attempts = 3;
            config.request_burst = 4;
            config.request_rate = 1;
            config.relay_burst_bytes = 3000;
            config.relay_rate_bytes = 500;
            config.max_sources = 3;
            config.max_sessions_per_user = 1;
        }
        config
    })
}

/// The `i`-th most recent of `items`.
fn recent<T: Copy>(items: &[T], i: Option<usize>) -> Option<T> {
    let i = i?;
    (!items.is_empty()).then(|| items[items.len() - 1 - i % items.len()])
}

/// Substitutes learned tokens, sessions and pool names into `frame`;
/// returns the address of the substituted token's owner.
fn patch(frame: &mut Frame, pick: &Pick, tokens: &[(u64, SocketAddr)], sessions: &[SessionId]) -> Option<SocketAddr> {
    let learned = recent(tokens, pick.token);
    let (tok, sid) = (learned.map(|(t, _)| t), recent(sessions, pick.session));
    let name = pick.name.map(|i| NAMES[i].to_owned());
    match frame {
        Frame::Login { user, .. } => *user = name.unwrap_or_else(|| user.clone()),
        Frame::Keepalive { token, .. } | Frame::Profile { token, .. } | Frame::Logout { token } => {
            *token = tok.unwrap_or(*token)
        }
        Frame::Lookup { token, user, .. } => {
            *token = tok.unwrap_or(*token);
            *user = name.unwrap_or_else(|| user.clone());
        }
        Frame::Connect { token, peer, .. } => {
            *token = tok.unwrap_or(*token);
            *peer = name.unwrap_or_else(|| peer.clone());
        }
        Frame::OfferAck { token, session } | Frame::Relay { token, session, .. } => {
            *token = tok.unwrap_or(*token);
            *session = sid.unwrap_or(*session);
        }
        _ => {}
    }
    learned.map(|(_, owner)| owner)
}

fn run_server_ops(d: &mut ServerDriver, ops: &[ServerOp]) -> Result<(), TestCaseError> {
    let pool = client_pool();
    for op in ops {
        let (socket, from, bytes) = match op {
            ServerOp::Raw { socket, from, bytes } => (*socket, from.clone(), bytes.clone()),
            ServerOp::Frame { socket, from, frame, pick, mutations } => {
                let mut frame = frame.clone();
                let owner = patch(&mut frame, pick, &d.tokens, &d.sessions);
                let from = match (from, owner) {
                    (From::TokenOwner, Some(owner)) => From::Any(owner),
                    (f, _) => f.clone(),
                };
                (*socket, from, mutate(frame.encode(), mutations))
            }
            ServerOp::Login { name, from, request, profile } => {
                let login = Frame::Login {
                    request: *request,
                    user: NAMES[*name].to_owned(),
                    host_candidates: vec![pool[*from]],
                };
                d.feed(SocketId(0), pool[*from], &login.encode());
                let answer = d.take_sent().iter().find_map(|t| match Frame::decode(&t.payload) {
                    Ok(Frame::LoginOk { token, .. }) => Some(token),
                    _ => None,
                });
                match (answer, profile) {
                    (Some(token), Some(profile)) => {
                        (SocketId(0), From::Pool(*from), Frame::Profile { token, profile: *profile }.encode())
                    }
                    _ => continue,
                }
            }
            ServerOp::HonestConnect { token, peer, request } => {
                let Some((token, from)) = recent(&d.tokens, Some(*token)) else { continue };
                let connect = Frame::Connect {
                    token,
                    request: *request,
                    peer: NAMES[*peer].to_owned(),
                    profile: NatProfile::default(),
                };
                (SocketId(0), From::Any(from), connect.encode())
            }
            ServerOp::HonestRelay { member, payload } => {
                let Some((session, from)) = recent(&d.members, Some(*member % 4)) else { continue };
                let Some(&(token, _)) = d.tokens.iter().rev().find(|(_, owner)| *owner == from) else { continue };
                let relay = Frame::Relay { token, session, payload: payload.clone() };
                (SocketId(0), From::Any(from), relay.encode())
            }
            ServerOp::Flood { from, count, stun } => {
                // When one source sends more requests at one instant than
                // the request burst allows.
                let before = d.server.stats().clone();
                let request = if *stun {
                    stun::binding_request(stun::TransactionId([7; 12]))
                } else {
                    Frame::Discover { nonce: 1, answer_from: AnswerFrom::Same }.encode()
                };
                // (Floods come from their own addresses, so the clients above
                // keep their request budget.)
                let flooder = [addr("192.0.2.66:1"), addr("[2001:db8::66]:1")][*from % 2];
                for _ in 0..*count {
                    d.feed(SocketId(0), flooder, &request);
                }
                // Then at least the excess is refused and counted.
                let refused = d.server.stats().rate_limited - before.rate_limited;
                let excess = (*count as u64).saturating_sub(d.request_burst.into());
                prop_assert!(refused >= excess, "{} of {} refused", refused, count);
                let _ = d.take_sent();
                continue;
            }
            ServerOp::Advance(by) => {
                d.advance(*by);
                continue;
            }
        };
        let from = match from {
            From::Pool(i) => pool[i],
            From::TokenOwner => pool[0],
            From::Any(a) => a,
        };
        let before = d.server.stats().clone();
        d.feed(socket, from, &bytes);
        let after = d.server.stats().clone();
        let sent = d.take_sent();
        // Then undecodable input is counted once as malformed (STUN may be
        // rate-limited first).
        if undecodable(&bytes) {
            if wire::classify(&bytes) == wire::Kind::Stun && bytes.len() <= MAX_DATAGRAM {
                prop_assert_eq!(stats_sum(&after), stats_sum(&before) + 1);
            } else {
                prop_assert_eq!(&after, &ServerStats { malformed: before.malformed + 1, ..before.clone() });
            }
        }
        // And a Relayed frame leaves only for a Relay that came in, carrying
        // its session and payload unchanged, and is counted.
        let relayed: Vec<Frame> = sent
            .iter()
            .filter_map(|t| Frame::decode(&t.payload).ok())
            .filter(|f| matches!(f, Frame::Relayed { .. }))
            .collect();
        prop_assert_eq!(after.relayed - before.relayed, relayed.len() as u64);
        if let Some(Frame::Relayed { session, payload }) = relayed.first() {
            prop_assert_eq!(relayed.len(), 1);
            let relay = Frame::decode(&bytes);
            let Ok(Frame::Relay { session: s, payload: p, .. }) = relay else {
                return Err(TestCaseError::fail(format!("a Relayed frame left for {relay:?}")));
            };
            prop_assert_eq!((session, payload), (&s, &p));
        }
        // And no counter ever goes down.
        prop_assert!(after.malformed >= before.malformed && after.bad_token >= before.bad_token);
        prop_assert!(after.rate_limited >= before.rate_limited && after.relay_refused >= before.relay_refused);
        prop_assert!(after.relay_throttled >= before.relay_throttled && after.stun_answered >= before.stun_answered);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn a_server_survives_hostile_clients_and_forgets_them_when_idle(
        config in server_config(),
        ops in vec(server_op(), 1..40),
    ) {
        // Given a server with default or tight limits, and an alternate
        // address (four sockets), one on the same IP (two), or none (one).
        let now = Instant::now();
        let mut d = ServerDriver::new(config, now);
        // When honest logins, frames carrying learned tokens, sessions and
        // names (maybe mutated), garbage and floods arrive, with time passing.
        run_server_ops(&mut d, &ops)?;
        // Then nothing panicked, every transmit was well formed and went to
        // an address the server had heard from (checked by the driver), and
        // after ten silent minutes every user and session is gone.
        d.idle(Duration::from_secs(600));
        prop_assert_eq!(d.server.online_users().count(), 0);
        prop_assert_eq!(d.server.session_count(), 0);
    }
}

// ---------------------------------------------------------------------------
// 3. A logged-in client under attack from the server's address
// ---------------------------------------------------------------------------

/// Sessions whose keys the test knows: an offer for slot `i` carries
/// `slot_key(i)`, so the test can seal peer frames for it.
const SLOTS: usize = 3;

fn slot_id(i: usize) -> SessionId {
    [SessionId(0x1111), SessionId(0x2222_3333_4444), SessionId(u64::MAX)][i]
}

fn slot_key(i: usize) -> SessionKey {
    [i as u8 + 1; 32]
}

/// Addresses peers send from, and announce as candidates.
fn peer_pool() -> [SocketAddr; 3] {
    [addr("198.51.100.2:4000"), addr("[2001:db8::2]:4000"), addr("192.0.2.7:5555")]
}

#[derive(Clone, Debug)]
enum Seal {
    /// With the slot's key, as the client's peer.
    Right,
    /// With the slot's key, as the client itself (a reflected frame).
    Reflected,
    /// With another key.
    WrongKey,
    /// Not at all: the MAC stays zero.
    Unsealed,
}

#[derive(Clone, Debug)]
enum Via {
    /// Straight to one of the client's sockets (an index into those it
    /// holds, or a raw id) from `from`.
    Direct { socket: usize, raw: Option<u32>, from: SocketAddr },
    /// Wrapped in `Relayed` from the server.
    Relayed,
}

/// What an honest peer of a known-key session does next. Its frames carry
/// fresh counters and the next sequence number of its stream.
#[derive(Clone, Debug)]
enum Honest {
    Stream(StreamMessage),
    /// Acknowledges `next` (counted back from what the client sent) with
    /// selective bits.
    Ack {
        back: u64,
        bits: u64,
    },
    Probe {
        attempt: u16,
    },
    /// Acknowledges a probe, observing `observed`.
    ProbeAck {
        attempt: u16,
        observed: SocketAddr,
    },
}

#[derive(Clone, Debug)]
enum ClientOp {
    /// Arbitrary bytes from one of the server's addresses.
    Garbage {
        from: usize,
        socket: usize,
        bytes: Vec<u8>,
    },
    /// A server frame with random fields, maybe mutated; from the server, or
    /// from a stranger.
    ServerFrame {
        frame: Frame,
        mutations: Vec<Mutation>,
        stranger: Option<SocketAddr>,
    },
    /// An offer for a known-key session.
    Offer {
        slot: usize,
        request: u32,
        initiator: bool,
        peer: String,
        peer_candidates: Vec<SocketAddr>,
        strategy: NatStrategy,
    },
    /// An honest peer's next frame.
    Honest {
        slot: usize,
        act: Honest,
        via: Via,
    },
    /// A random peer frame of a known-key session, sealed some way.
    Peer {
        slot: usize,
        frame: Frame,
        seal: Seal,
        via: Via,
        mutations: Vec<Mutation>,
    },
    /// The server answers every Binding request the client sent it since the
    /// last answer, mapping the socket to `mapped`.
    AnswerBindings {
        mapped: SocketAddr,
    },
    /// A STUN message to one of the client's sockets.
    Stun {
        socket: usize,
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    Send {
        slot: usize,
        len: usize,
    },
    Close {
        slot: usize,
    },
    Connect {
        peer: usize,
    },
    Advance(Duration),
}

fn peer_source() -> impl Strategy<Value = SocketAddr> + Clone {
    prop_oneof![3 => select(peer_pool().to_vec()), 1 => socket_addr()]
}

fn seal() -> impl Strategy<Value = Seal> + Clone {
    prop_oneof![
        3 => Just(Seal::Right),
        1 => Just(Seal::Reflected),
        1 => Just(Seal::WrongKey),
        1 => Just(Seal::Unsealed),
    ]
}

fn via() -> impl Strategy<Value = Via> + Clone {
    prop_oneof![
        (any::<usize>(), prop_oneof![6 => Just(None), 1 => any::<u32>().prop_map(Some)], peer_source())
            .prop_map(|(socket, raw, from)| Via::Direct { socket, raw, from }),
        Just(Via::Relayed),
    ]
}

fn honest() -> impl Strategy<Value = Honest> + Clone {
    let attempt = prop_oneof![3 => 0u16..2, 1 => 2u16..5];
    let message = prop_oneof![
        2 => payload(MAX_APP_PAYLOAD).prop_map(StreamMessage::App),
        2 => (attempt.clone(), vec(peer_source(), 0..=MAX_CANDIDATES))
            .prop_map(|(attempt, candidates)| StreamMessage::Candidates { attempt, candidates }),
        2 => attempt.clone().prop_map(|attempt| StreamMessage::OpenersOut { attempt }),
    ];
    prop_oneof![
        6 => message.prop_map(Honest::Stream),
        2 => (0u64..3, prop_oneof![Just(0u64), any::<u64>()]).prop_map(|(back, bits)| Honest::Ack { back, bits }),
        2 => attempt.clone().prop_map(|attempt| Honest::Probe { attempt }),
        2 => (attempt, peer_source()).prop_map(|(attempt, observed)| Honest::ProbeAck { attempt, observed }),
    ]
}

/// Random peer frames with small counters, attempts and sequence numbers.
fn peer_frame() -> BoxedStrategy<Frame> {
    let counter = prop_oneof![3 => 0u64..400, 1 => u64s()];
    prop_oneof![
        1 => (0u16..4, counter.clone())
            .prop_map(|(attempt, counter)| Frame::Probe { session: SessionId(0), attempt, counter }),
        1 => (0u16..4, u64s(), counter.clone(), peer_source()).prop_map(|(attempt, probe_counter, counter, observed)| {
            Frame::ProbeAck { session: SessionId(0), attempt, probe_counter, counter, observed }
        }),
        3 => (counter, session_body(true))
            .prop_map(|(counter, body)| Frame::Session { session: SessionId(0), counter, body }),
    ]
    .boxed()
}

fn client_op() -> impl Strategy<Value = ClientOp> + Clone {
    let mutations = prop_oneof![3 => Just(vec![]), 1 => vec(mutation(), 1..=3)];
    let stranger = prop_oneof![3 => Just(None), 1 => select(peer_pool().to_vec()).prop_map(Some)];
    prop_oneof![
        2 => (0usize..4, any::<usize>(), garbage())
            .prop_map(|(from, socket, bytes)| ClientOp::Garbage { from, socket, bytes }),
        3 => (server_to_client_frame(), mutations.clone(), stranger)
            .prop_map(|(frame, mutations, stranger)| ClientOp::ServerFrame { frame, mutations, stranger }),
        2 => (0..SLOTS, 0u32..8, prop_oneof![3 => Just(false), 1 => Just(true)], select(NAMES.to_vec()),
              vec(peer_source(), 0..=MAX_CANDIDATES), prop_oneof![4 => Just(NatStrategy::Punch), 1 => nat_strategy()])
            .prop_map(|(slot, request, initiator, peer, peer_candidates, strategy)| ClientOp::Offer {
                slot, request, initiator, peer: peer.to_owned(), peer_candidates, strategy,
            }),
        8 => (0..SLOTS, honest(), via()).prop_map(|(slot, act, via)| ClientOp::Honest { slot, act, via }),
        3 => (0..SLOTS, peer_frame(), seal(), via(), mutations)
            .prop_map(|(slot, frame, seal, via, mutations)| ClientOp::Peer { slot, frame, seal, via, mutations }),
        2 => socket_addr().prop_map(|mapped| ClientOp::AnswerBindings { mapped }),
        1 => (any::<usize>(), source(), stun_shaped())
            .prop_map(|(socket, from, bytes)| ClientOp::Stun { socket, from, bytes }),
        1 => (0..SLOTS, prop_oneof![0..=64usize, MAX_APP_PAYLOAD - 2..=MAX_APP_PAYLOAD + 1])
            .prop_map(|(slot, len)| ClientOp::Send { slot, len }),
        1 => (0..SLOTS).prop_map(|slot| ClientOp::Close { slot }),
        1 => (0..NAMES.len()).prop_map(|peer| ClientOp::Connect { peer }),
        3 => advance().prop_map(ClientOp::Advance),
    ]
}

/// A client logged in to a real server through an in-memory network that
/// delivers every datagram at once; the loop stops as soon as the client is
/// logged in (with an alternate server, NAT discovery is under way then).
fn logged_in_client(now: Instant, with_alt: bool) -> ClientDriver {
    let mut server = Server::new(ServerConfig::new(server_primary(), Some(server_alt())), now);
    let mut config = ClientConfig::new("alice", server_primary());
    if with_alt {
        config.alt_server = Some(server_alt());
    }
    let mut d = ClientDriver::new(config, now);
    for _ in 0..64 {
        if d.client.is_logged_in() {
            break;
        }
        for t in d.take_sent() {
            let from = d.live[&t.socket];
            if let Some(&(socket, _)) = server.sockets().iter().find(|(_, a)| *a == t.destination) {
                server.handle_datagram(now, socket, from, &t.payload);
            }
        }
        while server.poll_event().is_some() {}
        while let Some(t) = server.poll_transmit() {
            let from = server.sockets().iter().find(|(id, _)| *id == t.socket).expect("the server's own socket").1;
            if let Some((&socket, _)) = d.live.iter().find(|(_, a)| **a == t.destination) {
                d.feed(socket, from, &t.payload);
            }
        }
    }
    assert!(d.client.is_logged_in(), "the client logs in over a perfect network");
    let _ = d.take_sent();
    d.events.clear();
    d
}

/// The honest peer's side of one known-key session.
#[derive(Clone, Debug, Default)]
struct PeerState {
    counter: u64,
    next_seq: u64,
}

/// The role the client plays in `session`, from its last `SessionOpened`.
fn client_role(events: &[ClientEvent], session: SessionId) -> Option<Role> {
    events.iter().rev().find_map(|e| match e {
        ClientEvent::SessionOpened { session: s, initiator, .. } if *s == session => {
            Some(if *initiator { Role::Initiator } else { Role::Responder })
        }
        _ => None,
    })
}

fn set_session(frame: &mut Frame, id: SessionId) {
    match frame {
        Frame::Probe { session, .. } | Frame::ProbeAck { session, .. } | Frame::Session { session, .. } => {
            *session = id
        }
        _ => unreachable!("peer frames are authenticated frames"),
    }
}

/// Delivers a sealed peer frame directly or through the relay.
fn deliver_peer(d: &mut ClientDriver, session: SessionId, bytes: Vec<u8>, via: &Via) {
    match via {
        Via::Direct { socket, raw, from } => {
            let sockets: Vec<SocketId> = d.live.keys().copied().collect();
            let socket = raw.map(SocketId).unwrap_or(sockets[socket % sockets.len()]);
            d.feed(socket, *from, &bytes);
        }
        Via::Relayed => {
            let wrapped = Frame::Relayed { session, payload: bytes };
            d.feed(d.primary.0, server_primary(), &wrapped.encode());
        }
    }
}

fn run_client_ops(d: &mut ClientDriver, ops: &[ClientOp]) -> Result<(), TestCaseError> {
    let servers = server_addrs();
    let mut peers: BTreeMap<SessionId, PeerState> = BTreeMap::new();
    for op in ops {
        let before = d.client.stats().clone();
        let seen = d.events.len();
        match op {
            ClientOp::Garbage { from, socket, bytes } => {
                // When garbage arrives from one of the server's addresses.
                let sockets: Vec<SocketId> = d.live.keys().copied().collect();
                d.feed(sockets[socket % sockets.len()], servers[*from], bytes);
                // Then undecodable bytes are counted once as malformed.
                if undecodable(bytes) {
                    prop_assert_eq!(d.client.stats(), &ClientStats { malformed: before.malformed + 1, ..before });
                }
            }
            ClientOp::ServerFrame { frame, mutations, stranger } => {
                // When a server frame with random fields arrives.
                let bytes = mutate(frame.encode(), mutations);
                d.feed(d.primary.0, stranger.unwrap_or(servers[0]), &bytes);
                let stats = d.client.stats();
                if undecodable(&bytes) {
                    // Then a broken one is malformed.
                    prop_assert_eq!(stats, &ClientStats { malformed: before.malformed + 1, ..before });
                } else if let (Some(_), Ok(decoded)) = (stranger, Frame::decode(&bytes)) {
                    // And a server frame from a stranger is unexpected.
                    if !decoded.is_authenticated() && decoded != Frame::Opener {
                        prop_assert_eq!(stats, &ClientStats { unexpected: before.unexpected + 1, ..before });
                    }
                } else if let Ok(Frame::Relayed { payload, .. }) = Frame::decode(&bytes) {
                    // And a relayed payload that is no peer frame is malformed.
                    if !Frame::decode(&payload).is_ok_and(|f| f.is_authenticated()) {
                        prop_assert_eq!(stats, &ClientStats { malformed: before.malformed + 1, ..before });
                    }
                }
            }
            ClientOp::Offer { slot, request, initiator, peer, peer_candidates, strategy } => {
                let session = slot_id(*slot);
                let offer = Frame::Offer {
                    request: *request,
                    session,
                    key: slot_key(*slot),
                    initiator: *initiator,
                    peer: peer.clone(),
                    peer_candidates: peer_candidates.clone(),
                    strategy: *strategy,
                    peer_profile: NatProfile::default(),
                };
                d.feed(d.primary.0, servers[0], &offer.encode());
                let opened = d.events[seen..]
                    .iter()
                    .any(|e| matches!(e, ClientEvent::SessionOpened { session: s, .. } if *s == session));
                if opened {
                    peers.insert(session, PeerState::default());
                }
            }
            ClientOp::Honest { slot, act, via } => {
                let session = slot_id(*slot);
                let own = client_role(&d.events, session).unwrap_or(Role::Responder);
                let state = peers.entry(session).or_default();
                state.counter += 1;
                let counter = state.counter;
                let mut frame = match act {
                    Honest::Stream(message) => {
                        state.next_seq += 1;
                        let body = SessionBody::Stream { seq: state.next_seq - 1, message: message.clone() };
                        Frame::Session { session, counter, body }
                    }
                    Honest::Ack { back, bits } => {
                        // Acknowledge up to what the client may have sent.
                        let next = 64u64.saturating_sub(*back);
                        Frame::Session { session, counter, body: SessionBody::Ack { next, received_after: *bits } }
                    }
                    Honest::Probe { attempt } => Frame::Probe { session, attempt: *attempt, counter },
                    Honest::ProbeAck { attempt, observed } => {
                        Frame::ProbeAck { session, attempt: *attempt, probe_counter: 1, counter, observed: *observed }
                    }
                };
                set_session(&mut frame, session);
                let mut bytes = frame.encode();
                auth::seal(&mut bytes, &slot_key(*slot), own.peer());
                deliver_peer(d, session, bytes, via);
            }
            ClientOp::Peer { slot, frame, seal, via, mutations } => {
                // When a random peer frame arrives, sealed some way.
                let session = slot_id(*slot);
                let mut frame = frame.clone();
                set_session(&mut frame, session);
                let own = client_role(&d.events, session).unwrap_or(Role::Responder);
                let mut bytes = frame.encode();
                match seal {
                    Seal::Right => auth::seal(&mut bytes, &slot_key(*slot), own.peer()),
                    Seal::Reflected => auth::seal(&mut bytes, &slot_key(*slot), own),
                    Seal::WrongKey => auth::seal(&mut bytes, &[0xee; 32], own.peer()),
                    Seal::Unsealed => {}
                }
                let bytes = mutate(bytes, mutations);
                let forged = !matches!(seal, Seal::Right) && mutations.is_empty();
                deliver_peer(d, session, bytes, via);
                // Then a forged one is counted once as unauthenticated and
                // changes nothing else.
                if forged {
                    prop_assert_eq!(
                        d.client.stats(),
                        &ClientStats { unauthenticated: before.unauthenticated + 1, ..before }
                    );
                    prop_assert_eq!(d.events.len(), seen, "a forged peer frame caused {:?}", &d.events[seen..]);
                }
            }
            ClientOp::AnswerBindings { mapped } => {
                for t in d.take_sent() {
                    let Ok(m) = stun::Message::decode(&t.payload) else { continue };
                    if m.class == stun::Class::Request && servers.contains(&t.destination) {
                        let answer = stun::binding_success(m.transaction_id, *mapped);
                        d.feed(t.socket, t.destination, &answer);
                    }
                }
            }
            ClientOp::Stun { socket, from, bytes } => {
                let sockets: Vec<SocketId> = d.live.keys().copied().collect();
                d.feed(sockets[socket % sockets.len()], *from, bytes);
            }
            ClientOp::Send { slot, len } => {
                // When the application sends; then the result is exact.
                let session = slot_id(*slot);
                let open = d.client.sessions().any(|s| s == session);
                let result = d.client.send(d.now, session, &vec![0x5a; *len]);
                if *len > MAX_APP_PAYLOAD {
                    prop_assert_eq!(result, Err(SendError::TooLarge { len: *len, max: MAX_APP_PAYLOAD }));
                } else if !open {
                    prop_assert_eq!(result, Err(SendError::UnknownSession));
                } else {
                    prop_assert!(matches!(result, Ok(()) | Err(SendError::WindowFull)), "{:?}", result);
                }
                d.drain();
            }
            ClientOp::Close { slot } => {
                d.client.close(d.now, slot_id(*slot));
                d.drain();
                prop_assert!(!d.client.sessions().any(|s| s == slot_id(*slot)));
            }
            ClientOp::Connect { peer } => {
                let result = d.client.connect(d.now, NAMES[*peer]);
                if NAMES[*peer] == "alice" {
                    prop_assert!(result.is_err(), "connecting to oneself is refused");
                }
                d.drain();
            }
            ClientOp::Advance(by) => d.advance(*by),
        }
        // And no counter ever goes down.
        let after = d.client.stats();
        prop_assert!(after.malformed >= before.malformed);
        prop_assert!(after.unauthenticated >= before.unauthenticated);
        prop_assert!(after.unexpected >= before.unexpected);
    }
    Ok(())
}

fn client_ops() -> impl Strategy<Value = Vec<ClientOp>> {
    vec(client_op(), 1..48)
}

proptest! {
    #![proptest_config(config(1536))]

    #[test]
    fn a_logged_in_client_survives_a_hostile_server_address(with_alt in any::<bool>(), ops in client_ops()) {
        // Given a client logged in to a real server (NAT discovery under way
        // when the server has an alternate address).
        let now = Instant::now();
        let mut d = logged_in_client(now, with_alt);
        // When it is fed garbage, forged and mutated server frames, offers
        // with known keys, honest and forged peer frames, with time passing.
        run_client_ops(&mut d, &ops)?;
        // Then nothing panicked, every transmit was well formed and left from
        // a socket the driver holds (checked by the driver), and after the
        // peer timeout every session is gone.
        d.idle(Duration::from_secs(120));
        prop_assert_eq!(d.client.sessions().count(), 0);
    }

    #[test]
    fn an_idle_client_without_nat_discovery_holds_no_extra_socket(ops in client_ops()) {
        // Given a logged-in client without an alternate server, after any
        // of the above.
        let now = Instant::now();
        let mut d = logged_in_client(now, false);
        run_client_ops(&mut d, &ops)?;
        // When ten minutes pass without input.
        d.idle(Duration::from_secs(600));
        // Then every socket it asked for has been released.
        prop_assert_eq!(&d.opened, &BTreeSet::new());
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn an_idle_client_with_nat_discovery_holds_no_extra_socket(ops in client_ops()) {
        // Given a logged-in client whose NAT discovery is under way.
        let now = Instant::now();
        let mut d = logged_in_client(now, true);
        run_client_ops(&mut d, &ops)?;
        // When ten minutes pass without input.
        d.idle(Duration::from_secs(600));
        // Then every socket it asked for has been released.
        prop_assert_eq!(&d.opened, &BTreeSet::new());
    }
}

// ---------------------------------------------------------------------------
// Bugs found: focused reproducers
// ---------------------------------------------------------------------------

/// BUG: `Client::start_discovery` replaces a running discovery without
/// releasing the filtering socket the old one holds, so every restart while
/// one runs (a `KeepaliveAck` with a new reflexive address, which anyone can
/// spoof from the server's address, or a re-login) leaks a socket.
#[test]
fn a_restarted_nat_discovery_releases_the_previous_socket() {
    // Given a client with an alternate server, just logged in: NAT discovery
    // runs and its filtering socket (the only socket it asked for) is open.
    let now = Instant::now();
    let mut d = logged_in_client(now, true);
    let first: Vec<SocketId> = d.opened.iter().copied().collect();
    assert_eq!(first.len(), 1, "discovery opened its filtering socket");
    // When keepalive answers from the server's address report new reflexive
    // addresses (a NAT rebinding; or anyone spoofing the server) 20 times,
    // each restarting discovery.
    for i in 0..20u16 {
        let ack = Frame::KeepaliveAck { reflexive: SocketAddr::new(addr("192.0.2.200:1").ip(), 1000 + i) };
        d.feed(SocketId(0), server_primary(), &ack.encode());
    }
    // And ten minutes pass without any answer.
    d.idle(Duration::from_secs(600));
    // Then every discovery socket has been released.
    assert_eq!(d.opened, BTreeSet::new(), "sockets the client asked for and never released");
}

/// BUG: with `request_rate = 0`, `SourceLimits::forget_idle` computes
/// `Duration::from_secs_f64(burst / f64::MIN_POSITIVE)` = infinity and
/// panics: in every sweep, and in `handle_datagram` once `max_sources`
/// sources are tracked.
#[test]
fn a_server_with_a_zero_request_rate_survives_its_sweep() {
    // Given a server configured to allow only its request burst per source
    // (no sustained rate).
    let now = Instant::now();
    let mut config = ServerConfig::new(server_primary(), None);
    config.request_rate = 0;
    let mut server = Server::new(config, now);
    // When its periodic sweep runs.
    server.handle_timeout(now + Duration::from_secs(5));
    // Then it is still serving.
    assert_eq!(server.poll_timeout(), Some(now + Duration::from_secs(10)));
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
