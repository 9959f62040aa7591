//! Punchline frames: `[tag][version][postcard body]`. Client–server frames
//! travel sealed in the client's channel, peer frames sealed end to end in
//! their session's ([`crate::secure`]).
//!
//! - [`registry`]: the one table of frame types: each type's tag, largest
//!   size, whether it is authenticated, and its body's fields in wire order.
//!   Encoding and decoding go through it, never through the order in which
//!   [`Frame`]'s variants are declared.
//! - [`codec`](Frame::encode): encoding and decoding (`[tag][version]`, the
//!   body), and [`FrameError`].
//! - [`fields`](SessionBody): what frames carry (ids, session bodies, stream
//!   messages, small enums).
//!
//! Every frame type has a fixed maximum size ([`Frame::max_size`]); a datagram
//! longer than its type allows is rejected before the body is decoded.
//! Variable-length fields are bounded too ([`MAX_USER_NAME`],
//! [`MAX_CANDIDATES`], ...), and the decoder never reserves more memory than
//! the datagram holds. `core/tests/wire_golden.rs` pins the bytes of every
//! frame type.

use std::net::SocketAddr;

use serde::Serialize;

use crate::nat::{NatProfile, Strategy};
use crate::wire::MAX_DATAGRAM;

mod bounded;
mod codec;
mod fields;
pub mod files;
pub mod registry;

pub use codec::FrameError;
pub use fields::{
    AnswerFrom, CloseReason, ErrorCode, MessageId, SessionBody, SessionId, StreamMessage, TextRejection, TextStatus,
    Transport,
};
pub use registry::{tag, FrameType, FRAME_TYPES};

/// The lowest first byte of a Punchline frame; lower bytes belong to STUN.
pub const FIRST_TAG: u8 = 0x40;
/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// Longest user name, in bytes of UTF-8.
pub const MAX_USER_NAME: usize = 64;
/// Most candidates one side announces.
pub const MAX_CANDIDATES: usize = 8;
/// Largest payload a relay frame carries.
pub const MAX_RELAY_PAYLOAD: usize = MAX_RELAY_FRAME - 32;
/// Largest relay frame (`Relay`, `Relayed`): what fits a datagram once
/// sealed in the client–server channel.
pub const MAX_RELAY_FRAME: usize = MAX_DATAGRAM - crate::wire::channel::SEALED_OVERHEAD;
/// Largest peer frame: what fits a relay frame's payload once sealed end to
/// end.
pub const MAX_PEER_FRAME: usize = MAX_RELAY_PAYLOAD - crate::wire::channel::SEALED_OVERHEAD;
/// Largest application payload in one session message: what fits a peer
/// frame after its own header (tag, version, session, counter, body and
/// message kinds, stream sequence, length: at most 48 bytes).
pub const MAX_APP_PAYLOAD: usize = MAX_PEER_FRAME - 48;
/// Longest text message, in bytes of UTF-8: what fits one datagram once
/// sealed to its recipient, beside the names and the message id (see
/// [`Frame::TextSend`]).
pub const MAX_TEXT: usize = 960;
/// Longest sealed text: [`MAX_TEXT`] and what sealing adds.
pub const MAX_SEALED_TEXT: usize = MAX_TEXT + crate::secure::X_OVERHEAD;
/// Every Punchline frame.
///
/// Each variant's tag, size limit, authentication and field order on the
/// wire are in the [`registry`], not here: reordering these variants (or
/// their fields) changes nothing on the wire. Bounds on strings and lists
/// are in the registry too.
///
/// `Serialize` writes the variant's fields as the wire body does, behind
/// serde's own variant index; the wire replaces that index with the tag and
/// version (see [`Frame::encode`]). There is deliberately no `Deserialize`:
/// a derived one would pick the variant by declaration order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Frame {
    /// client → server: log in as `user` (DESIGN §3 step 1).
    Login {
        /// Matches the answer to the request.
        request: u32,
        /// The user name.
        user: String,
        /// The client's local addresses.
        host_candidates: Vec<SocketAddr>,
    },
    /// server → client: logged in.
    LoginOk {
        /// Echo of the request.
        request: u32,
        /// Proves the sender in later requests.
        token: u64,
        /// The source address the server saw.
        reflexive: SocketAddr,
    },
    /// client → server: refresh the NAT mapping (DESIGN §3 step 2). Carries
    /// the profile too, so a lost [`Frame::Profile`] heals itself.
    Keepalive {
        /// The login token.
        token: u64,
        /// What the client measured so far.
        profile: NatProfile,
    },
    /// server → client: the current reflexive address.
    KeepaliveAck {
        /// The source address the server saw.
        reflexive: SocketAddr,
    },
    /// client → server: my measured NAT profile.
    Profile {
        /// The login token.
        token: u64,
        /// What the client measured.
        profile: NatProfile,
    },
    /// client → server: is `user` online?
    Lookup {
        /// The login token.
        token: u64,
        /// Matches the answer.
        request: u32,
        /// Who.
        user: String,
    },
    /// server → client: answer to [`Frame::Lookup`].
    LookupReply {
        /// Echo of the request.
        request: u32,
        /// Whether the user is online.
        online: bool,
        /// The static public key the name is bound to (the server's
        /// directory), or `None` when no login under it ever completed.
        key: Option<[u8; 32]>,
    },
    /// client → server: open a session with `peer` (DESIGN §3 step 4).
    Connect {
        /// The login token.
        token: u64,
        /// Matches the answer; retransmissions reuse it.
        request: u32,
        /// Who.
        peer: String,
        /// My NAT profile, repeated here so the strategy never comes from a
        /// stale one when the `Profile` frame is late or lost.
        profile: NatProfile,
    },
    /// server → both members: a session exists; here is what you need.
    Offer {
        /// The initiator's request, or 0 for the responder.
        request: u32,
        /// The session.
        session: SessionId,
        /// The other member's static key, from the server's directory: the
        /// session's end-to-end handshake must prove it (the member checks
        /// it against its own pin first). The session's keys come from that
        /// handshake and never cross the server.
        peer_key: [u8; 32],
        /// True for the member that asked.
        initiator: bool,
        /// The other member's name.
        peer: String,
        /// The other member's host candidates (as it announced them), then
        /// last its server-reflexive address as the server observed it.
        peer_candidates: Vec<SocketAddr>,
        /// How to try for a direct path.
        strategy: Strategy,
        /// What the other member measured about its NAT: which side
        /// predicts or opens a socket pool follows from it.
        peer_profile: NatProfile,
        /// How the other member reaches the server: a session whose relay
        /// leg rides TCP on either side is `relay-tcp` (issue 21). Over TCP
        /// the member's last address in `peer_candidates` is its last UDP
        /// address (or its connection's): its public IP, for LAN detection.
        peer_transport: Transport,
    },
    /// client → server: I closed `session` before its end-to-end keys
    /// existed, so I cannot tell the peer myself: end it for both members.
    Leave {
        /// The login token.
        token: u64,
        /// The session.
        session: SessionId,
    },
    /// client → server: I have the offer; stop retransmitting it.
    OfferAck {
        /// The login token.
        token: u64,
        /// The session.
        session: SessionId,
    },
    /// client → server: forward `payload` to the other member of `session`.
    Relay {
        /// The login token.
        token: u64,
        /// The session.
        session: SessionId,
        /// An authenticated peer frame.
        payload: Vec<u8>,
    },
    /// server → client: relayed from the other member of `session`.
    Relayed {
        /// The session.
        session: SessionId,
        /// An authenticated peer frame.
        payload: Vec<u8>,
    },
    /// server → client: the session is gone on the server's side.
    SessionEnded {
        /// The session.
        session: SessionId,
        /// Why.
        reason: CloseReason,
    },
    /// client → server: NAT behaviour discovery; answer from `answer_from`.
    Discover {
        /// Matches the answer.
        nonce: u64,
        /// Which of the server's addresses answers.
        answer_from: AnswerFrom,
    },
    /// server → client: answer to [`Frame::Discover`].
    DiscoverReply {
        /// Echo of the nonce.
        nonce: u64,
        /// The source address the server saw.
        reflexive: SocketAddr,
    },
    /// client → server: log out.
    Logout {
        /// The login token.
        token: u64,
    },
    /// server → client: a request failed.
    Error {
        /// The failed request, or 0.
        request: u32,
        /// Why.
        code: ErrorCode,
    },
    /// peer → peer, low TTL: opens the sender's NAT mapping; not meant to
    /// arrive, and carries nothing else. Sealed end to end, as every peer
    /// frame, so that one that does arrive (a peer on the same LAN) is known
    /// to be the peer's.
    Opener {
        /// The session.
        session: SessionId,
        /// The sender's frame counter.
        counter: u64,
    },
    /// peer → peer: is this path alive? Authenticated.
    Probe {
        /// The session.
        session: SessionId,
        /// The sender's attempt.
        attempt: u16,
        /// The sender's frame counter (replay protection).
        counter: u64,
    },
    /// peer → peer: this path works. Authenticated.
    ProbeAck {
        /// The session.
        session: SessionId,
        /// Echo of the probe's attempt.
        attempt: u16,
        /// Echo of the probe's counter.
        probe_counter: u64,
        /// The sender's own frame counter.
        counter: u64,
        /// The probe's source address as the acker saw it.
        observed: SocketAddr,
    },
    /// peer → peer, directly or relayed: session traffic. Authenticated.
    Session {
        /// The session.
        session: SessionId,
        /// The sender's frame counter.
        counter: u64,
        /// What it carries.
        body: SessionBody,
    },
    /// client → server: deliver (or store) a text message. Retransmitted
    /// with the same id until answered.
    TextSend {
        /// The login token.
        token: u64,
        /// The message's id.
        id: MessageId,
        /// The recipient.
        to: String,
        /// The text, sealed to the recipient's key
        /// ([`crate::secure::seal_text`]): the server cannot read it.
        sealed: Vec<u8>,
    },
    /// server → sender: the message with `id` is committed (`Stored`) or
    /// acknowledged by the recipient (`Delivered`).
    TextAck {
        /// The message.
        id: MessageId,
        /// How far it got.
        status: TextStatus,
    },
    /// server → sender: the message with `id` was refused.
    TextRejected {
        /// The message.
        id: MessageId,
        /// Why.
        reason: TextRejection,
    },
    /// server → recipient: a text message. Retransmitted until acknowledged.
    TextDeliver {
        /// The sender.
        from: String,
        /// The message's id.
        id: MessageId,
        /// The text, sealed to us by the sender.
        sealed: Vec<u8>,
    },
    /// recipient → server: I have the message; delete it.
    TextDeliverAck {
        /// The login token.
        token: u64,
        /// The sender.
        from: String,
        /// The message's id.
        id: MessageId,
    },
    /// client → server: how many messages do you hold for me? Also starts
    /// their delivery.
    InboxSync {
        /// The login token.
        token: u64,
    },
    /// server → client: messages stored for you and not yet acknowledged.
    InboxStatus {
        /// How many.
        pending: u32,
    },
}
