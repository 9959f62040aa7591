//! Strategies: field values, and frames, one per variant.

use super::*;

// ---------------------------------------------------------------------------
// Strategies: field values
// ---------------------------------------------------------------------------

pub(crate) fn u16s() -> impl Strategy<Value = u16> + Clone {
    prop_oneof![any::<u16>(), 0u16..8, Just(u16::MAX)]
}

pub(crate) fn u32s() -> impl Strategy<Value = u32> + Clone {
    prop_oneof![any::<u32>(), 0u32..300, Just(u32::MAX)]
}

/// u64s biased to varint boundaries: small, any, and the 10-byte maximum.
pub(crate) fn u64s() -> impl Strategy<Value = u64> + Clone {
    prop_oneof![any::<u64>(), 0u64..300, Just(u64::MAX)]
}

pub(crate) fn session_id() -> impl Strategy<Value = SessionId> + Clone {
    u64s().prop_map(SessionId)
}

/// IPv4 and IPv6 socket addresses. IPv6 flow info and scope id stay zero:
/// they are local to a host and are not part of the wire format (serde drops
/// them).
pub(crate) fn socket_addr() -> impl Strategy<Value = SocketAddr> + Clone {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(IpAddr::from(ip), port)),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(IpAddr::from(ip), port)),
    ]
}

pub(crate) fn candidates() -> impl Strategy<Value = Vec<SocketAddr>> + Clone {
    vec(socket_addr(), 0..=MAX_CANDIDATES)
}

/// 1 to [`MAX_USER_NAME`] bytes of the user-name alphabet: ASCII letters,
/// digits and [`USER_NAME_PUNCTUATION`], or letters and digits of any
/// script (multi-byte characters make the byte limit bite).
pub(crate) fn user_name() -> impl Strategy<Value = String> + Clone {
    let unicode = "[\\p{L}\\p{N}@+._-]";
    prop_oneof![
        "[A-Za-z0-9@+._-]{1,64}",
        vec(unicode, 1..=MAX_USER_NAME).prop_map(|chars| {
            let mut name = String::new();
            for c in
                chars.iter().filter(|c| c.chars().all(|c| c.is_alphanumeric() || USER_NAME_PUNCTUATION.contains(c)))
            {
                if name.len() + c.len() > MAX_USER_NAME {
                    break;
                }
                name.push_str(c);
            }
            if name.is_empty() {
                name.push('a');
            }
            name
        }),
    ]
}

/// Up to `max` bytes, with the sizes near `max` well represented.
pub(crate) fn payload(max: usize) -> impl Strategy<Value = Vec<u8>> + Clone {
    prop_oneof![vec(any::<u8>(), 0..=32), vec(any::<u8>(), 0..=max), vec(any::<u8>(), max - 8..=max)]
}

pub(crate) fn nat_profile() -> impl Strategy<Value = NatProfile> + Clone {
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

pub(crate) fn nat_strategy() -> impl Strategy<Value = NatStrategy> + Clone {
    select(vec![NatStrategy::Punch, NatStrategy::Predict, NatStrategy::Birthday, NatStrategy::RelayOnly])
}

pub(crate) fn answer_from() -> impl Strategy<Value = AnswerFrom> + Clone {
    select(vec![AnswerFrom::Same, AnswerFrom::OtherPort, AnswerFrom::OtherAddress])
}

pub(crate) fn error_code() -> impl Strategy<Value = ErrorCode> + Clone {
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

pub(crate) fn close_reason() -> impl Strategy<Value = CloseReason> + Clone {
    select(vec![
        CloseReason::Local,
        CloseReason::Peer,
        CloseReason::PeerOffline,
        CloseReason::PeerTimeout,
        CloseReason::ServerUnreachable,
    ])
}

pub(crate) fn message_id() -> impl Strategy<Value = MessageId> + Clone {
    (u64s(), u64s()).prop_map(|(conversation, seq)| MessageId { conversation, seq })
}

/// Texts up to [`MAX_TEXT`] bytes, ASCII or multi-byte.
pub(crate) fn text() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        "[ -~]{0,40}",
        "[ -~]{950,960}",
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

pub(crate) fn text_status() -> impl Strategy<Value = TextStatus> + Clone {
    select(vec![TextStatus::Delivered, TextStatus::Stored])
}

pub(crate) fn text_rejection() -> impl Strategy<Value = TextRejection> + Clone {
    select(vec![
        TextRejection::TooLarge,
        TextRejection::UnknownRecipient,
        TextRejection::RecipientFull,
        TextRejection::BadRecipient,
        TextRejection::StoreUnavailable,
        TextRejection::RateLimited,
    ])
}

/// What a text sealed to its recipient looks like to everyone else: random
/// bytes, up to [`MAX_SEALED_TEXT`], mostly at least what sealing adds.
pub(crate) fn sealed_text() -> impl Strategy<Value = Vec<u8>> + Clone {
    prop_oneof![
        1 => vec(any::<u8>(), 0..X_OVERHEAD),
        3 => vec(any::<u8>(), X_OVERHEAD..=X_OVERHEAD + 64),
        1 => vec(any::<u8>(), MAX_SEALED_TEXT - 8..=MAX_SEALED_TEXT),
    ]
}

pub(crate) fn text_send() -> BoxedStrategy<Frame> {
    (u64s(), message_id(), user_name(), sealed_text())
        .prop_map(|(token, id, to, sealed)| Frame::TextSend { token, id, to, sealed })
        .boxed()
}

pub(crate) fn text_ack() -> BoxedStrategy<Frame> {
    (message_id(), text_status()).prop_map(|(id, status)| Frame::TextAck { id, status }).boxed()
}

pub(crate) fn text_rejected() -> BoxedStrategy<Frame> {
    (message_id(), text_rejection()).prop_map(|(id, reason)| Frame::TextRejected { id, reason }).boxed()
}

pub(crate) fn text_deliver() -> BoxedStrategy<Frame> {
    (user_name(), message_id(), sealed_text())
        .prop_map(|(from, id, sealed)| Frame::TextDeliver { from, id, sealed })
        .boxed()
}

pub(crate) fn text_deliver_ack() -> BoxedStrategy<Frame> {
    (u64s(), user_name(), message_id()).prop_map(|(token, from, id)| Frame::TextDeliverAck { token, from, id }).boxed()
}

pub(crate) fn inbox_sync() -> BoxedStrategy<Frame> {
    u64s().prop_map(|token| Frame::InboxSync { token }).boxed()
}

pub(crate) fn inbox_status() -> BoxedStrategy<Frame> {
    u32s().prop_map(|pending| Frame::InboxStatus { pending }).boxed()
}

pub(crate) fn leave() -> BoxedStrategy<Frame> {
    (u64s(), session_id()).prop_map(|(token, session)| Frame::Leave { token, session }).boxed()
}

pub(crate) fn stream_message(seq_small: bool) -> impl Strategy<Value = StreamMessage> + Clone {
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
        file_message(),
    ]
}

/// The file-transfer messages of a session's stream (issue 22).
pub(crate) fn file_message() -> impl Strategy<Value = StreamMessage> + Clone {
    use punchline_core::wire::frame::files::{FileAbort, FileRefusal, TransferId, MAX_HAVE_RANGES};
    let transfer = (0u32..4).prop_map(TransferId);
    let refusal = prop_oneof![
        Just(FileRefusal::NotAccepting),
        Just(FileRefusal::Declined),
        Just(FileRefusal::BadName),
        Just(FileRefusal::NoSpace),
        Just(FileRefusal::Busy),
    ];
    let abort = prop_oneof![
        Just(FileAbort::Cancelled),
        Just(FileAbort::ReadFailed),
        Just(FileAbort::DiskFull),
        Just(FileAbort::WriteFailed),
        Just(FileAbort::VerificationFailed),
    ];
    prop_oneof![
        (transfer.clone(), "[a-z./\\\n]{0,12}", u64s(), any::<[u8; 32]>())
            .prop_map(|(transfer, name, size, root)| StreamMessage::FileOffer { transfer, name, size, root }),
        (transfer.clone(), u64s(), proptest::collection::vec((u64s(), u64s()), 0..MAX_HAVE_RANGES))
            .prop_map(|(transfer, credit, have)| StreamMessage::FileAccept { transfer, credit, have }),
        (transfer.clone(), refusal).prop_map(|(transfer, reason)| StreamMessage::FileRefuse { transfer, reason }),
        (transfer.clone(), any::<bool>(), abort).prop_map(|(transfer, mine, reason)| StreamMessage::FileAbort {
            transfer,
            mine,
            reason
        }),
        transfer.prop_map(|transfer| StreamMessage::FileDone { transfer }),
    ]
}

/// Session bodies; with `seq_small`, sequence numbers and acknowledgements
/// stay near the start of a stream so a live session delivers them.
pub(crate) fn session_body(seq_small: bool) -> impl Strategy<Value = SessionBody> + Clone {
    let seq = if seq_small { (0u64..12).boxed() } else { u64s().boxed() };
    prop_oneof![
        (seq.clone(), stream_message(seq_small)).prop_map(|(seq, message)| SessionBody::Stream { seq, message }),
        (seq, u64s()).prop_map(|(next, received_after)| SessionBody::Ack { next, received_after }),
        close_reason().prop_map(|reason| SessionBody::Close { reason }),
        file_body(),
    ]
}

/// The file data plane's bodies: pieces and acknowledgements with credits,
/// any numbers (hostile ones included).
pub(crate) fn file_body() -> impl Strategy<Value = SessionBody> + Clone {
    use punchline_core::wire::frame::files::{TransferId, MAX_ACK_RANGES, MAX_CREDITS, PIECE};
    let transfer = (0u32..4).prop_map(TransferId);
    prop_oneof![
        (u64s(), transfer.clone(), u64s(), any::<u8>(), payload(PIECE)).prop_map(
            |(pn, transfer, piece, ack_every, data)| SessionBody::FileData { pn, transfer, piece, ack_every, data }
        ),
        (
            proptest::collection::vec((u64s(), u64s()), 0..MAX_ACK_RANGES),
            any::<u32>(),
            proptest::collection::vec((transfer, u64s()), 0..MAX_CREDITS)
        )
            .prop_map(|(ranges, delay_us, credits)| SessionBody::FileAck { ranges, delay_us, credits }),
    ]
}

// ---------------------------------------------------------------------------
// Strategies: frames, one per variant
// ---------------------------------------------------------------------------

pub(crate) fn login() -> BoxedStrategy<Frame> {
    (u32s(), user_name(), candidates())
        .prop_map(|(request, user, host_candidates)| Frame::Login { request, user, host_candidates })
        .boxed()
}

pub(crate) fn login_ok() -> BoxedStrategy<Frame> {
    (u32s(), u64s(), socket_addr())
        .prop_map(|(request, token, reflexive)| Frame::LoginOk { request, token, reflexive })
        .boxed()
}

pub(crate) fn keepalive() -> BoxedStrategy<Frame> {
    (u64s(), nat_profile()).prop_map(|(token, profile)| Frame::Keepalive { token, profile }).boxed()
}

pub(crate) fn keepalive_ack() -> BoxedStrategy<Frame> {
    socket_addr().prop_map(|reflexive| Frame::KeepaliveAck { reflexive }).boxed()
}

pub(crate) fn profile() -> BoxedStrategy<Frame> {
    (u64s(), nat_profile()).prop_map(|(token, profile)| Frame::Profile { token, profile }).boxed()
}

pub(crate) fn lookup() -> BoxedStrategy<Frame> {
    (u64s(), u32s(), user_name()).prop_map(|(token, request, user)| Frame::Lookup { token, request, user }).boxed()
}

pub(crate) fn lookup_reply() -> BoxedStrategy<Frame> {
    (u32s(), any::<bool>(), proptest::option::of(any::<[u8; 32]>()))
        .prop_map(|(request, online, key)| Frame::LookupReply { request, online, key })
        .boxed()
}

pub(crate) fn connect() -> BoxedStrategy<Frame> {
    (u64s(), u32s(), user_name(), nat_profile())
        .prop_map(|(token, request, peer, profile)| Frame::Connect { token, request, peer, profile })
        .boxed()
}

pub(crate) fn offer() -> BoxedStrategy<Frame> {
    let transport = prop_oneof![
        Just(punchline_core::wire::frame::Transport::Udp),
        Just(punchline_core::wire::frame::Transport::Tcp)
    ];
    (
        (u32s(), session_id(), any::<[u8; 32]>(), any::<bool>(), user_name()),
        (candidates(), nat_strategy(), nat_profile(), transport),
    )
        .prop_map(
            |(
                (request, session, peer_key, initiator, peer),
                (peer_candidates, strategy, peer_profile, peer_transport),
            )| {
                Frame::Offer {
                    request,
                    session,
                    peer_key,
                    initiator,
                    peer,
                    peer_candidates,
                    strategy,
                    peer_profile,
                    peer_transport,
                }
            },
        )
        .boxed()
}

pub(crate) fn offer_ack() -> BoxedStrategy<Frame> {
    (u64s(), session_id()).prop_map(|(token, session)| Frame::OfferAck { token, session }).boxed()
}

/// The tags of a session's end-to-end datagrams.
pub(crate) fn peer_tags() -> Vec<u8> {
    vec![layout::tag::PEER_SEALED, layout::tag::PEER_HELLO, layout::tag::PEER_WELCOME]
}

/// The header of a peer datagram (`PeerSealed`, `PeerHello` or
/// `PeerWelcome`) naming `session`, then random bytes: up to `max` bytes in
/// all, mostly as long as a sealed frame or a handshake message at least.
pub(crate) fn peer_datagram_for(session: SessionId, max: usize) -> impl Strategy<Value = Vec<u8>> + Clone {
    let tag = select(peer_tags());
    (tag, prop_oneof![3 => 0usize..=160, 1 => 0..=max - layout::PEER_HEADER]).prop_flat_map(move |(tag, len)| {
        vec(any::<u8>(), len).prop_map(move |body| {
            let mut datagram = layout::peer_handshake(tag, session.0, &body);
            datagram.truncate(max);
            datagram
        })
    })
}

/// What a relay frame carries: a peer datagram of its session, usually, or
/// any bytes (which a server refuses to relay and a client drops).
fn relay_payload(session: SessionId) -> impl Strategy<Value = Vec<u8>> + Clone {
    prop_oneof![3 => peer_datagram_for(session, MAX_RELAY_PAYLOAD), 1 => payload(MAX_RELAY_PAYLOAD)]
}

pub(crate) fn relay() -> BoxedStrategy<Frame> {
    (u64s(), session_id())
        .prop_flat_map(|(token, session)| {
            relay_payload(session).prop_map(move |payload| Frame::Relay { token, session, payload })
        })
        .boxed()
}

pub(crate) fn relayed() -> BoxedStrategy<Frame> {
    session_id()
        .prop_flat_map(|session| relay_payload(session).prop_map(move |payload| Frame::Relayed { session, payload }))
        .boxed()
}

pub(crate) fn session_ended() -> BoxedStrategy<Frame> {
    (session_id(), close_reason()).prop_map(|(session, reason)| Frame::SessionEnded { session, reason }).boxed()
}

pub(crate) fn discover() -> BoxedStrategy<Frame> {
    (u64s(), answer_from()).prop_map(|(nonce, answer_from)| Frame::Discover { nonce, answer_from }).boxed()
}

pub(crate) fn discover_reply() -> BoxedStrategy<Frame> {
    (u64s(), socket_addr()).prop_map(|(nonce, reflexive)| Frame::DiscoverReply { nonce, reflexive }).boxed()
}

pub(crate) fn logout() -> BoxedStrategy<Frame> {
    u64s().prop_map(|token| Frame::Logout { token }).boxed()
}

pub(crate) fn error() -> BoxedStrategy<Frame> {
    (u32s(), error_code()).prop_map(|(request, code)| Frame::Error { request, code }).boxed()
}

pub(crate) fn opener() -> BoxedStrategy<Frame> {
    (session_id(), u64s()).prop_map(|(session, counter)| Frame::Opener { session, counter }).boxed()
}

pub(crate) fn probe() -> BoxedStrategy<Frame> {
    (session_id(), u16s(), u64s())
        .prop_map(|(session, attempt, counter)| Frame::Probe { session, attempt, counter })
        .boxed()
}

pub(crate) fn probe_ack() -> BoxedStrategy<Frame> {
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

pub(crate) fn session_frame(seq_small: bool) -> BoxedStrategy<Frame> {
    (session_id(), u64s(), session_body(seq_small))
        .prop_map(|(session, counter, body)| Frame::Session { session, counter, body })
        .boxed()
}

/// One strategy per variant, in tag order ([`ASSIGNED_TAGS`]).
pub(crate) fn frame_variants() -> Vec<BoxedStrategy<Frame>> {
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
        leave(),
    ]
}

pub(crate) fn any_frame() -> BoxedStrategy<Frame> {
    Union::new(frame_variants()).boxed()
}

/// Frames between the members of a session, which travel only sealed end
/// to end.
pub(crate) fn peer_frame() -> BoxedStrategy<Frame> {
    prop_oneof![probe(), probe_ack(), session_frame(false)].boxed()
}

/// Frames a client sends to the server.
pub(crate) fn client_to_server_frame() -> BoxedStrategy<Frame> {
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
        leave(),
        any_frame(),
    ])
    .boxed()
}

/// Frames the server sends to a client.
pub(crate) fn server_to_client_frame() -> BoxedStrategy<Frame> {
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
pub(crate) fn worst_case_frames() -> Vec<Frame> {
    use punchline_core::wire::frame::files::{
        FileAbort, FileRefusal, TransferId, MAX_ACK_RANGES, MAX_CREDITS, MAX_FILE_NAME, MAX_HAVE_RANGES, PIECE,
    };
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
        Frame::LookupReply { request: u32::MAX, online: true, key: Some([0xff; 32]) },
        Frame::Connect { token: u64::MAX, request: u32::MAX, peer: name.clone(), profile },
        Frame::Offer {
            request: u32::MAX,
            session,
            peer_key: [0xff; 32],
            initiator: true,
            peer: name,
            peer_candidates: cands.clone(),
            strategy: NatStrategy::RelayOnly,
            peer_profile: profile,
            peer_transport: punchline_core::wire::frame::Transport::Udp,
        },
        Frame::OfferAck { token: u64::MAX, session },
        Frame::Relay { token: u64::MAX, session, payload: vec![0xff; MAX_RELAY_PAYLOAD] },
        Frame::Relayed { session, payload: vec![0xff; MAX_RELAY_PAYLOAD] },
        Frame::SessionEnded { session, reason: CloseReason::ServerUnreachable },
        Frame::Discover { nonce: u64::MAX, answer_from: AnswerFrom::OtherAddress },
        Frame::DiscoverReply { nonce: u64::MAX, reflexive: v6 },
        Frame::Logout { token: u64::MAX },
        Frame::Error { request: u32::MAX, code: ErrorCode::BadRequest },
        Frame::Opener { session, counter: u64::MAX },
        Frame::Probe { session, attempt: u16::MAX, counter: u64::MAX },
        Frame::ProbeAck { session, attempt: u16::MAX, probe_counter: u64::MAX, counter: u64::MAX, observed: v6 },
    ];
    let id = MessageId { conversation: u64::MAX, seq: u64::MAX };
    let text = "\u{e9}".repeat(MAX_TEXT / 2); // 960 bytes of two-byte characters
    let sealed = vec![0xff; MAX_SEALED_TEXT];
    let user = "\u{e9}".repeat(MAX_USER_NAME / 2);
    frames.extend([
        Frame::TextSend { token: u64::MAX, id, to: user.clone(), sealed: sealed.clone() },
        Frame::TextAck { id, status: TextStatus::Delivered },
        Frame::TextRejected { id, reason: TextRejection::StoreUnavailable },
        Frame::TextDeliver { from: user.clone(), id, sealed },
        Frame::TextDeliverAck { token: u64::MAX, from: user, id },
        Frame::InboxSync { token: u64::MAX },
        Frame::InboxStatus { pending: u32::MAX },
        Frame::Leave { token: u64::MAX, session },
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
        SessionBody::Stream {
            seq: u64::MAX,
            message: StreamMessage::FileOffer {
                transfer: TransferId(u32::MAX),
                name: "\u{e9}".repeat(MAX_FILE_NAME / 2),
                size: u64::MAX,
                root: [0xff; 32],
            },
        },
        SessionBody::Stream {
            seq: u64::MAX,
            message: StreamMessage::FileAccept {
                transfer: TransferId(u32::MAX),
                credit: u64::MAX,
                have: vec![(u64::MAX, u64::MAX); MAX_HAVE_RANGES],
            },
        },
        SessionBody::Stream {
            seq: u64::MAX,
            message: StreamMessage::FileRefuse { transfer: TransferId(u32::MAX), reason: FileRefusal::NotAccepting },
        },
        SessionBody::Stream {
            seq: u64::MAX,
            message: StreamMessage::FileAbort {
                transfer: TransferId(u32::MAX),
                mine: true,
                reason: FileAbort::VerificationFailed,
            },
        },
        SessionBody::Stream { seq: u64::MAX, message: StreamMessage::FileDone { transfer: TransferId(u32::MAX) } },
        SessionBody::FileData {
            pn: u64::MAX,
            transfer: TransferId(u32::MAX),
            piece: u64::MAX,
            ack_every: u8::MAX,
            data: vec![0xff; PIECE],
        },
        SessionBody::FileAck {
            ranges: vec![(u64::MAX, u64::MAX); MAX_ACK_RANGES],
            delay_us: u32::MAX,
            credits: vec![(TransferId(u32::MAX), u64::MAX); MAX_CREDITS],
        },
    ];
    frames.extend(bodies.into_iter().map(|body| Frame::Session { session, counter: u64::MAX, body }));
    frames
}
