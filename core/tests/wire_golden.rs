//! The wire, pinned byte for byte (DESIGN §3, "Wire").
//!
//! One instance of every frame type, and of every variant of every enum a
//! frame carries (session bodies, stream messages, error codes, NAT
//! profiles...), is encoded and its bytes kept as hex in an insta snapshot
//! (`snapshots/wire_golden__every_frame_type.snap`). Any change to the wire,
//! whether a new tag, a reordered enum or a field moved, fails this test
//! until the snapshot is reviewed and accepted on purpose.
//!
//! Each instance also decodes back to itself, so the pinned bytes are ones
//! the decoder accepts.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::SocketAddr;

use punchline_core::nat::{FilteringBehavior, MappingBehavior, NatProfile, PortAllocation, Strategy};
use punchline_core::wire::frame::{
    AnswerFrom, CloseReason, ErrorCode, Frame, MessageId, SessionBody, SessionId, StreamMessage, TextRejection,
    TextStatus, FRAME_TYPES,
};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address parses")
}

/// A profile with every field measured, so the snapshot pins their encoding.
fn measured_profile(ports: PortAllocation) -> NatProfile {
    NatProfile {
        mapping: Some(MappingBehavior::AddressAndPortDependent),
        filtering: Some(FilteringBehavior::AddressDependent),
        ports: Some(ports),
        public: false,
    }
}

const ID: MessageId = MessageId { conversation: 0x0123_4567_89ab_cdef, seq: 300 };
const SESSION: SessionId = SessionId(0xfeed_beef_0000_0001);

/// A session frame carrying `body`.
fn session(counter: u64, body: SessionBody) -> Frame {
    Frame::Session { session: SESSION, counter, body }
}

/// A stream message in a session frame.
fn stream(seq: u64, message: StreamMessage) -> Frame {
    session(9, SessionBody::Stream { seq, message })
}

/// One instance of every frame type, then one frame for every variant of the
/// enums frames carry, each with a label for the snapshot.
fn golden_frames() -> Vec<(&'static str, Frame)> {
    let v4 = addr("198.51.100.7:40000");
    let v6 = addr("[2001:db8::1]:4000");
    vec![
        ("Login", Frame::Login { request: 1, user: "alice".into(), host_candidates: vec![addr("10.0.0.2:5000"), v6] }),
        ("LoginOk", Frame::LoginOk { request: 1, token: 0xdead_beef_cafe, reflexive: v4 }),
        ("Keepalive", Frame::Keepalive { token: 77, profile: NatProfile::default() }),
        ("KeepaliveAck", Frame::KeepaliveAck { reflexive: v6 }),
        ("Profile", Frame::Profile { token: 77, profile: measured_profile(PortAllocation::Sequential { delta: -2 }) }),
        ("Lookup", Frame::Lookup { token: 77, request: 2, user: "bob".into() }),
        ("LookupReply", Frame::LookupReply { request: 2, online: true, key: Some([0x6b; 32]) }),
        ("LookupReply/unknown", Frame::LookupReply { request: 3, online: false, key: None }),
        (
            "Connect",
            Frame::Connect {
                token: 77,
                request: 3,
                peer: "bob".into(),
                profile: measured_profile(PortAllocation::Preserving),
            },
        ),
        (
            "Offer",
            Frame::Offer {
                request: 3,
                session: SESSION,
                peer_key: std::array::from_fn(|i| i as u8),
                initiator: true,
                peer: "bob".into(),
                peer_candidates: vec![addr("192.168.1.5:6000"), v4],
                strategy: Strategy::Predict,
                peer_profile: measured_profile(PortAllocation::Random),
                peer_transport: punchline_core::wire::frame::Transport::Udp,
            },
        ),
        ("OfferAck", Frame::OfferAck { token: 77, session: SESSION }),
        ("Leave", Frame::Leave { token: 77, session: SESSION }),
        ("Relay", Frame::Relay { token: 77, session: SESSION, payload: vec![0x76, 1, 2, 3] }),
        ("Relayed", Frame::Relayed { session: SESSION, payload: vec![0x77, 4, 5] }),
        ("SessionEnded", Frame::SessionEnded { session: SESSION, reason: CloseReason::PeerOffline }),
        ("Discover", Frame::Discover { nonce: 5, answer_from: AnswerFrom::OtherPort }),
        ("DiscoverReply", Frame::DiscoverReply { nonce: 5, reflexive: v4 }),
        ("Logout", Frame::Logout { token: 77 }),
        ("Error", Frame::Error { request: 4, code: ErrorCode::PeerOffline }),
        ("Opener", Frame::Opener { session: SESSION, counter: 129 }),
        ("Probe", Frame::Probe { session: SESSION, attempt: 1, counter: 130 }),
        ("ProbeAck", Frame::ProbeAck { session: SESSION, attempt: 1, probe_counter: 130, counter: 131, observed: v6 }),
        ("Session", stream(0, StreamMessage::App(b"hello".to_vec()))),
        ("TextSend", Frame::TextSend { token: 77, id: ID, to: "bob".into(), sealed: b"sealed hi".to_vec() }),
        ("TextAck", Frame::TextAck { id: ID, status: TextStatus::Stored }),
        ("TextRejected", Frame::TextRejected { id: ID, reason: TextRejection::RecipientFull }),
        ("TextDeliver", Frame::TextDeliver { from: "alice".into(), id: ID, sealed: b"sealed hi".to_vec() }),
        ("TextDeliverAck", Frame::TextDeliverAck { token: 78, from: "alice".into(), id: ID }),
        ("InboxSync", Frame::InboxSync { token: 78 }),
        ("InboxStatus", Frame::InboxStatus { pending: 1000 }),
        // Every session body and stream message.
        ("Session/Ack", session(10, SessionBody::Ack { next: 4, received_after: 0b101 })),
        ("Session/Close", session(11, SessionBody::Close { reason: CloseReason::Local })),
        ("Stream/Candidates", stream(1, StreamMessage::Candidates { attempt: 1, candidates: vec![v4, v6] })),
        ("Stream/OpenersOut", stream(2, StreamMessage::OpenersOut { attempt: 1 })),
        ("Stream/Prediction", stream(3, StreamMessage::Prediction { attempt: 2, base: v4, delta: -1, window: 16 })),
        ("Stream/PoolOpen", stream(4, StreamMessage::PoolOpen { attempt: 3, ip: v6.ip(), sockets: 256 })),
        ("Stream/Text", stream(5, StreamMessage::Text { id: ID, text: "direct".into() })),
        ("Stream/TextAck", stream(6, StreamMessage::TextAck { id: ID })),
        (
            "Stream/Profile",
            stream(
                7,
                StreamMessage::Profile {
                    profile: NatProfile {
                        mapping: Some(MappingBehavior::AddressAndPortDependent),
                        filtering: Some(FilteringBehavior::AddressAndPortDependent),
                        ports: Some(PortAllocation::Sequential { delta: -2 }),
                        public: false,
                    },
                },
            ),
        ),
        ("Stream/Strategy", stream(8, StreamMessage::Strategy { attempt: 2, strategy: Strategy::Predict })),
        ("Session/Ping", session(12, SessionBody::Ping { nonce: 3 })),
        ("Session/Pong", session(13, SessionBody::Pong { nonce: 3 })),
        // Every value of the small enums frames carry.
        ("Discover/Same", Frame::Discover { nonce: 6, answer_from: AnswerFrom::Same }),
        ("Discover/OtherAddress", Frame::Discover { nonce: 7, answer_from: AnswerFrom::OtherAddress }),
        ("Error/UnsupportedVersion", Frame::Error { request: 0, code: ErrorCode::UnsupportedVersion }),
        ("Error/NotLoggedIn", Frame::Error { request: 0, code: ErrorCode::NotLoggedIn }),
        ("Error/UnknownPeer", Frame::Error { request: 0, code: ErrorCode::UnknownPeer }),
        ("Error/BadUserName", Frame::Error { request: 0, code: ErrorCode::BadUserName }),
        ("Error/RateLimited", Frame::Error { request: 0, code: ErrorCode::RateLimited }),
        ("Error/BadRequest", Frame::Error { request: 0, code: ErrorCode::BadRequest }),
        ("SessionEnded/Peer", Frame::SessionEnded { session: SESSION, reason: CloseReason::Peer }),
        ("SessionEnded/PeerTimeout", Frame::SessionEnded { session: SESSION, reason: CloseReason::PeerTimeout }),
        (
            "SessionEnded/ServerUnreachable",
            Frame::SessionEnded { session: SESSION, reason: CloseReason::ServerUnreachable },
        ),
        ("TextAck/Delivered", Frame::TextAck { id: ID, status: TextStatus::Delivered }),
        ("TextRejected/TooLarge", Frame::TextRejected { id: ID, reason: TextRejection::TooLarge }),
        ("TextRejected/UnknownRecipient", Frame::TextRejected { id: ID, reason: TextRejection::UnknownRecipient }),
        ("TextRejected/BadRecipient", Frame::TextRejected { id: ID, reason: TextRejection::BadRecipient }),
        ("TextRejected/StoreUnavailable", Frame::TextRejected { id: ID, reason: TextRejection::StoreUnavailable }),
        ("TextRejected/RateLimited", Frame::TextRejected { id: ID, reason: TextRejection::RateLimited }),
        (
            "Profile/endpoint-independent",
            Frame::Profile {
                token: 77,
                profile: NatProfile {
                    mapping: Some(MappingBehavior::EndpointIndependent),
                    filtering: Some(FilteringBehavior::EndpointIndependent),
                    ports: None,
                    public: true,
                },
            },
        ),
        (
            "Profile/address-dependent",
            Frame::Profile {
                token: 77,
                profile: NatProfile {
                    mapping: Some(MappingBehavior::AddressDependent),
                    filtering: Some(FilteringBehavior::AddressAndPortDependent),
                    ports: None,
                    public: false,
                },
            },
        ),
        ("Offer/Punch", offer_with(Strategy::Punch)),
        ("Offer/Birthday", offer_with(Strategy::Birthday)),
        ("Offer/RelayOnly", offer_with(Strategy::RelayOnly)),
        ("Offer/Pending", offer_with(Strategy::Pending)),
    ]
}

/// A responder's offer with no candidates and `strategy`.
fn offer_with(strategy: Strategy) -> Frame {
    Frame::Offer {
        request: 0,
        session: SESSION,
        peer_key: [0xab; 32],
        initiator: false,
        peer: "carol".into(),
        peer_candidates: vec![],
        strategy,
        peer_profile: NatProfile::default(),
        peer_transport: punchline_core::wire::frame::Transport::Udp,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[test]
fn every_frame_type() {
    // Given one instance of every frame type and of every enum they carry,
    let frames = golden_frames();
    // when each is encoded,
    let mut pinned = String::new();
    for (label, frame) in &frames {
        let bytes = frame.encode();
        assert_eq!(Frame::decode(&bytes).as_ref(), Ok(frame), "{label} decodes back to itself");
        writeln!(pinned, "{label}: {}", hex(&bytes)).expect("writing to a String");
    }
    // then the bytes are exactly the reviewed ones.
    insta::assert_snapshot!(pinned);
}

/// The variant's name, by an exhaustive match: a new [`Frame`] variant does
/// not compile here until it is named, and then
/// [`the_golden_frames_cover_every_registered_type`] fails until it has a
/// golden instance.
fn variant_name(frame: &Frame) -> &'static str {
    match frame {
        Frame::Login { .. } => "Login",
        Frame::LoginOk { .. } => "LoginOk",
        Frame::Keepalive { .. } => "Keepalive",
        Frame::KeepaliveAck { .. } => "KeepaliveAck",
        Frame::Profile { .. } => "Profile",
        Frame::Lookup { .. } => "Lookup",
        Frame::LookupReply { .. } => "LookupReply",
        Frame::Connect { .. } => "Connect",
        Frame::Offer { .. } => "Offer",
        Frame::OfferAck { .. } => "OfferAck",
        Frame::Leave { .. } => "Leave",
        Frame::Relay { .. } => "Relay",
        Frame::Relayed { .. } => "Relayed",
        Frame::SessionEnded { .. } => "SessionEnded",
        Frame::Discover { .. } => "Discover",
        Frame::DiscoverReply { .. } => "DiscoverReply",
        Frame::Logout { .. } => "Logout",
        Frame::Error { .. } => "Error",
        Frame::Opener { .. } => "Opener",
        Frame::Probe { .. } => "Probe",
        Frame::ProbeAck { .. } => "ProbeAck",
        Frame::Session { .. } => "Session",
        Frame::TextSend { .. } => "TextSend",
        Frame::TextAck { .. } => "TextAck",
        Frame::TextRejected { .. } => "TextRejected",
        Frame::TextDeliver { .. } => "TextDeliver",
        Frame::TextDeliverAck { .. } => "TextDeliverAck",
        Frame::InboxSync { .. } => "InboxSync",
        Frame::InboxStatus { .. } => "InboxStatus",
    }
}

#[test]
fn the_golden_frames_cover_every_registered_type() {
    // Given the golden frames, when each is looked up in the registry,
    let frames = golden_frames();
    for (label, frame) in &frames {
        // then its row is its own variant's, and starts its bytes,
        let frame_type = frame.frame_type();
        assert_eq!(frame_type.name, variant_name(frame), "{label}");
        assert_eq!(frame.encode()[0], frame_type.tag, "{label}");
    }
    // and together they cover every row of the registry.
    let covered: BTreeSet<u8> = frames.iter().map(|(_, frame)| frame.tag()).collect();
    let registered: BTreeSet<u8> = FRAME_TYPES.iter().map(|frame_type| frame_type.tag).collect();
    assert_eq!(covered, registered);
}
