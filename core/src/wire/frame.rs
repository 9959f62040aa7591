//! Punchline frames: `[tag][version][postcard body]`, and for frames between
//! session peers a 16-byte authentication tag at the end.
//!
//! Every frame type has a fixed maximum size ([`Frame::max_size`]); a datagram
//! longer than its type allows is rejected before the body is decoded.
//! Variable-length fields are bounded too ([`MAX_USER_NAME`],
//! [`MAX_CANDIDATES`], ...), and the decoder never reserves more memory than
//! the datagram holds.

use std::net::SocketAddr;

use postcard::de_flavors::Flavor;
use serde::{Deserialize, Serialize};

use crate::nat::{NatProfile, Strategy};
use crate::wire::MAX_DATAGRAM;

/// The lowest first byte of a Punchline frame; lower bytes belong to STUN.
pub const FIRST_TAG: u8 = 0x40;
/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// Length of the authentication tag on peer frames.
pub const MAC_LEN: usize = 16;
/// Longest user name, in bytes of UTF-8.
pub const MAX_USER_NAME: usize = 64;
/// Most candidates one side announces.
pub const MAX_CANDIDATES: usize = 8;
/// Largest payload a relay frame carries.
pub const MAX_RELAY_PAYLOAD: usize = MAX_DATAGRAM - 32;
/// Largest application payload in one session message: what fits a relay
/// frame after the peer frame's own header and tag.
pub const MAX_APP_PAYLOAD: usize = MAX_RELAY_PAYLOAD - 64;
/// Longest text message, in bytes of UTF-8: what fits one datagram beside
/// the sender's name and the message id (see [`Frame::TextDeliver`]).
pub const MAX_TEXT: usize = 1000;
/// The 32-byte per-session key.
pub type SessionKey = [u8; 32];

/// A server-assigned session identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SessionId(pub u64);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Which address the server answers a [`Frame::Discover`] request from (RFC
/// 5780 §3's CHANGE-REQUEST, carried in our own frame).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AnswerFrom {
    /// The address the request arrived at.
    Same,
    /// The same IP, the other port.
    OtherPort,
    /// The other IP and the other port.
    OtherAddress,
}

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The frame's version is not one the server speaks.
    UnsupportedVersion,
    /// The token is unknown or expired: log in again.
    NotLoggedIn,
    /// No such user has ever logged in.
    UnknownPeer,
    /// The user exists but is not online.
    PeerOffline,
    /// The name is empty, too long, or not printable.
    BadUserName,
    /// The request was refused by the per-source limits.
    RateLimited,
    /// The request was malformed.
    BadRequest,
}

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CloseReason {
    /// The local application closed it.
    Local,
    /// The peer closed it.
    Peer,
    /// The peer went offline (reported by the server).
    PeerOffline,
    /// Nothing was heard from the peer for the session timeout.
    PeerTimeout,
    /// The server could not be reached for the session's signaling.
    ServerUnreachable,
}

/// What travels inside a session's reliable stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamMessage {
    /// Application data.
    App(#[serde(deserialize_with = "bounded::bytes::<_, MAX_APP_PAYLOAD>")] Vec<u8>),
    /// My candidates for punching attempt `attempt` (attempt 0's come from the
    /// server's offer).
    Candidates {
        /// The attempt these belong to.
        attempt: u16,
        /// Host and server-reflexive addresses of the attempt's socket.
        #[serde(deserialize_with = "bounded::vec::<_, _, MAX_CANDIDATES>")]
        candidates: Vec<SocketAddr>,
    },
    /// My openers for `attempt` have left: the peer may start probing
    /// (DESIGN §3, "Open before you probe").
    OpenersOut {
        /// The attempt whose openers left.
        attempt: u16,
    },
    /// Sequential prediction ([`Strategy::Predict`]): my attempt's mappings
    /// toward you will be `base + k * delta` for `k` in `1..=window`, in the
    /// order I open them.
    Prediction {
        /// The attempt this belongs to.
        attempt: u16,
        /// The last mapping my NAT gave the attempt's socket.
        base: SocketAddr,
        /// My NAT's step between consecutive mappings.
        delta: i32,
        /// How many predicted ports to open.
        window: u16,
    },
    /// Birthday probing ([`Strategy::Birthday`]): `sockets` mappings on `ip`
    /// are open toward your candidates; probe random ports of `ip`.
    PoolOpen {
        /// The attempt this belongs to.
        attempt: u16,
        /// My NAT's public address.
        ip: std::net::IpAddr,
        /// How many mappings are open.
        sockets: u16,
    },
    /// A text message sent peer to peer (DESIGN §3, "Messaging"): the same
    /// globally unique id as on the server path, so the recipient shows it
    /// once whichever way it came. Answered by [`StreamMessage::TextAck`].
    Text {
        /// The message's id.
        id: MessageId,
        /// The text, at most [`MAX_TEXT`] bytes.
        #[serde(deserialize_with = "bounded::string::<_, MAX_TEXT>")]
        text: String,
    },
    /// The text with `id` arrived (sent for every copy).
    TextAck {
        /// The message's id.
        id: MessageId,
    },
}

/// The body of an authenticated session frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionBody {
    /// A reliable stream message with its sequence number.
    Stream {
        /// Position in the sender's stream.
        seq: u64,
        /// The message.
        message: StreamMessage,
    },
    /// Acknowledges stream messages: every `seq < next` plus those whose bit
    /// is set in `received_after` (bit i = `next + 1 + i`).
    Ack {
        /// The next sequence number the receiver expects.
        next: u64,
        /// Selective acknowledgements above `next`.
        received_after: u64,
    },
    /// The sender closed the session.
    Close {
        /// Why.
        reason: CloseReason,
    },
}

/// A text message's identity, chosen by its sender (DESIGN §3,
/// "Messaging"): `conversation` is a random 64-bit number the sender draws
/// (from its seeded generator) for its conversation with one recipient, and
/// `seq` numbers the messages of that conversation from 1. Together with the
/// sender's user name it is globally unique; it never changes, whichever path
/// (direct, relayed, stored) the message takes, so every hop can
/// de-duplicate by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageId {
    /// The sender's random conversation number.
    pub conversation: u64,
    /// Position in the conversation, from 1.
    pub seq: u64,
}

impl std::fmt::Display for MessageId {
    /// 32 hexadecimal digits: the conversation, then the sequence number.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}{:016x}", self.conversation, self.seq)
    }
}

impl std::str::FromStr for MessageId {
    type Err = FrameError;

    /// Parses the 32-digit form [`MessageId`]'s `Display` writes.
    fn from_str(s: &str) -> Result<Self, FrameError> {
        if s.len() != 32 || !s.is_ascii() {
            return Err(FrameError::Malformed);
        }
        let conversation = u64::from_str_radix(&s[..16], 16).map_err(|_| FrameError::Malformed)?;
        let seq = u64::from_str_radix(&s[16..], 16).map_err(|_| FrameError::Malformed)?;
        Ok(MessageId { conversation, seq })
    }
}

/// How far a text message got when its sender was told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TextStatus {
    /// The recipient has it.
    Delivered,
    /// The server committed it durably and will deliver it when the
    /// recipient comes online.
    Stored,
}

impl TextStatus {
    /// The name command lines and JSON use: `delivered` or `stored`.
    pub fn as_str(self) -> &'static str {
        match self {
            TextStatus::Delivered => "delivered",
            TextStatus::Stored => "stored",
        }
    }
}

/// Why the server refused a text message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TextRejection {
    /// Longer than the server's limit.
    TooLarge,
    /// No such user has ever logged in.
    UnknownRecipient,
    /// The recipient's store holds the most messages it may.
    RecipientFull,
    /// The recipient name cannot be a user.
    BadRecipient,
    /// The store failed to commit; the sender may retry.
    StoreUnavailable,
    /// Over the sender's message rate; the sender may retry.
    RateLimited,
}

impl std::fmt::Display for TextRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TextRejection::TooLarge => "the message is longer than the server accepts",
            TextRejection::UnknownRecipient => "no such user",
            TextRejection::RecipientFull => "the recipient's mailbox is full",
            TextRejection::BadRecipient => "invalid recipient name",
            TextRejection::StoreUnavailable => "the server could not store the message",
            TextRejection::RateLimited => "too many messages; slow down",
        })
    }
}

/// Every Punchline frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// client → server: log in as `user` (DESIGN §3 step 1).
    Login {
        /// Matches the answer to the request.
        request: u32,
        /// The user name.
        #[serde(deserialize_with = "bounded::string::<_, MAX_USER_NAME>")]
        user: String,
        /// The client's local addresses.
        #[serde(deserialize_with = "bounded::vec::<_, _, MAX_CANDIDATES>")]
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
        #[serde(deserialize_with = "bounded::string::<_, MAX_USER_NAME>")]
        user: String,
    },
    /// server → client: answer to [`Frame::Lookup`].
    LookupReply {
        /// Echo of the request.
        request: u32,
        /// Whether the user is online.
        online: bool,
    },
    /// client → server: open a session with `peer` (DESIGN §3 step 4).
    Connect {
        /// The login token.
        token: u64,
        /// Matches the answer; retransmissions reuse it.
        request: u32,
        /// Who.
        #[serde(deserialize_with = "bounded::string::<_, MAX_USER_NAME>")]
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
        /// The per-session key that authenticates every peer frame.
        key: SessionKey,
        /// True for the member that asked.
        initiator: bool,
        /// The other member's name.
        #[serde(deserialize_with = "bounded::string::<_, MAX_USER_NAME>")]
        peer: String,
        /// The other member's host candidates (as it announced them), then
        /// last its server-reflexive address as the server observed it.
        #[serde(deserialize_with = "bounded::vec::<_, _, MAX_CANDIDATES>")]
        peer_candidates: Vec<SocketAddr>,
        /// How to try for a direct path.
        strategy: Strategy,
        /// What the other member measured about its NAT: which side
        /// predicts or opens a socket pool follows from it.
        peer_profile: NatProfile,
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
        #[serde(deserialize_with = "bounded::bytes::<_, MAX_RELAY_PAYLOAD>")]
        payload: Vec<u8>,
    },
    /// server → client: relayed from the other member of `session`.
    Relayed {
        /// The session.
        session: SessionId,
        /// An authenticated peer frame.
        #[serde(deserialize_with = "bounded::bytes::<_, MAX_RELAY_PAYLOAD>")]
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
    /// arrive. Carries nothing.
    Opener,
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
        #[serde(deserialize_with = "bounded::string::<_, MAX_USER_NAME>")]
        to: String,
        /// The text.
        #[serde(deserialize_with = "bounded::string::<_, MAX_TEXT>")]
        text: String,
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
        #[serde(deserialize_with = "bounded::string::<_, MAX_USER_NAME>")]
        from: String,
        /// The message's id.
        id: MessageId,
        /// The text.
        #[serde(deserialize_with = "bounded::string::<_, MAX_TEXT>")]
        text: String,
    },
    /// recipient → server: I have the message; delete it.
    TextDeliverAck {
        /// The login token.
        token: u64,
        /// The sender.
        #[serde(deserialize_with = "bounded::string::<_, MAX_USER_NAME>")]
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

/// Why a datagram is not a frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// Empty, or the first byte is no Punchline tag.
    #[error("not a Punchline frame")]
    NotAFrame,
    /// The tag is in Punchline's range but unknown.
    #[error("unknown frame tag {0:#04x}")]
    UnknownTag(u8),
    /// The frame speaks another protocol version.
    #[error("unsupported protocol version {0} (this side speaks {VERSION})")]
    UnsupportedVersion(u8),
    /// Longer than the frame type allows.
    #[error("frame of {len} bytes exceeds the {max}-byte limit of its type")]
    TooLong {
        /// The datagram's length.
        len: usize,
        /// The type's limit.
        max: usize,
    },
    /// The body does not decode, or has bytes left over.
    #[error("malformed frame body")]
    Malformed,
}

macro_rules! tags {
    ($($variant:ident = $tag:literal, $max:expr;)*) => {
        impl Frame {
            /// This frame's tag byte.
            pub fn tag(&self) -> u8 {
                match self { $(Frame::$variant { .. } => $tag,)* }
            }

            /// The largest encoded size a frame with `tag` may have.
            pub fn max_size(tag: u8) -> Option<usize> {
                match tag { $($tag => Some($max),)* _ => None }
            }
        }
    };
}

tags! {
    Login = 0x41, 3 + MAX_USER_NAME + MAX_CANDIDATES * 24 + 16;
    LoginOk = 0x42, 64;
    Keepalive = 0x43, 32;
    KeepaliveAck = 0x44, 40;
    Profile = 0x45, 32;
    Lookup = 0x46, 24 + MAX_USER_NAME;
    LookupReply = 0x47, 16;
    Connect = 0x48, 40 + MAX_USER_NAME;
    Offer = 0x49, 80 + MAX_USER_NAME + MAX_CANDIDATES * 24;
    OfferAck = 0x4a, 24;
    Relay = 0x4b, MAX_DATAGRAM;
    Relayed = 0x4c, MAX_DATAGRAM;
    SessionEnded = 0x4d, 16;
    Discover = 0x4e, 16;
    DiscoverReply = 0x4f, 48;
    Logout = 0x50, 16;
    Error = 0x51, 16;
    Opener = 0x60, 2;
    Probe = 0x61, 32 + MAC_LEN;
    ProbeAck = 0x62, 64 + MAC_LEN;
    Session = 0x63, MAX_DATAGRAM;
    TextSend = 0x52, 40 + MAX_USER_NAME + MAX_TEXT;
    TextAck = 0x53, 32;
    TextRejected = 0x54, 32;
    TextDeliver = 0x55, 40 + MAX_USER_NAME + MAX_TEXT;
    TextDeliverAck = 0x56, 40 + MAX_USER_NAME;
    InboxSync = 0x57, 16;
    InboxStatus = 0x58, 16;
}

impl Frame {
    /// True for frames between session peers that carry a MAC.
    pub fn is_authenticated(&self) -> bool {
        matches!(self, Frame::Probe { .. } | Frame::ProbeAck { .. } | Frame::Session { .. })
    }

    /// Encodes the frame. Authenticated frames get a zeroed MAC; use
    /// [`crate::auth::seal`] instead to sign them.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(self.tag());
        // As in `encode_into_slice`. Serializing into `out` saves a second,
        // growing allocation and a copy per frame.
        out = postcard::to_extend(self, out).expect("frames serialize infallibly into a Vec");
        out[1] = VERSION;
        if self.is_authenticated() {
            out.extend_from_slice(&[0; MAC_LEN]);
        }
        out
    }

    /// Encodes the frame into the front of `buf`, as [`Frame::encode`] does,
    /// and returns its length, or `None` when `buf` is too small. A driver
    /// can encode into a stack buffer this way and allocate only the exact
    /// datagram.
    pub fn encode_into_slice(&self, buf: &mut [u8]) -> Option<usize> {
        let [first, body @ ..] = buf else {
            return None;
        };
        *first = self.tag();
        // The enum discriminant is implied by the tag, so only the variant's
        // fields are needed: postcard writes the variant index first (one
        // byte: there are fewer than 128 variants), straight after the tag,
        // and the version byte takes its place.
        let written = postcard::to_slice(self, body).ok()?.len();
        body[0] = VERSION;
        let mut len = 1 + written;
        if self.is_authenticated() {
            buf.get_mut(len..len + MAC_LEN)?.fill(0);
            len += MAC_LEN;
        }
        Some(len)
    }

    /// Decodes a datagram. Authenticated frames are returned without checking
    /// their MAC: see [`crate::auth::open`].
    pub fn decode(datagram: &[u8]) -> Result<Frame, FrameError> {
        let (&tag, rest) = datagram.split_first().ok_or(FrameError::NotAFrame)?;
        if tag < FIRST_TAG {
            return Err(FrameError::NotAFrame);
        }
        let max = Frame::max_size(tag).ok_or(FrameError::UnknownTag(tag))?;
        let (&version, body) = rest.split_first().ok_or(FrameError::Malformed)?;
        if version != VERSION {
            return Err(FrameError::UnsupportedVersion(version));
        }
        if datagram.len() > max {
            return Err(FrameError::TooLong { len: datagram.len(), max });
        }
        let index = VARIANT_BY_TAG.iter().position(|&t| t == tag).ok_or(FrameError::UnknownTag(tag))?;
        let authenticated = tag >= 0x61;
        let body = if authenticated {
            body.len().checked_sub(MAC_LEN).map(|n| &body[..n]).ok_or(FrameError::Malformed)?
        } else {
            body
        };
        // postcard reads the variant index first, then the fields: feed it
        // the index, then the body where it lies (no copy, no buffer).
        let mut input = postcard::Deserializer::from_flavor(Prefixed { index: Some(index as u8), body });
        let frame = Frame::deserialize(&mut input).map_err(|_| FrameError::Malformed)?;
        match input.finalize() {
            Ok([]) => Ok(frame),
            _ => Err(FrameError::Malformed),
        }
    }
}

/// postcard input that is one variant-index byte followed by a body.
///
/// The datagram carries a tag and a version where postcard expects the
/// variant index, so [`Frame::decode`] supplies the index itself. A varint
/// is read with [`Flavor::pop`], byte by byte, so the index never has to be
/// contiguous with the body.
struct Prefixed<'de> {
    index: Option<u8>,
    body: &'de [u8],
}

impl<'de> Flavor<'de> for Prefixed<'de> {
    type Remainder = &'de [u8];
    type Source = &'de [u8];

    fn pop(&mut self) -> postcard::Result<u8> {
        if let Some(index) = self.index.take() {
            return Ok(index);
        }
        let (&byte, rest) = self.body.split_first().ok_or(postcard::Error::DeserializeUnexpectedEnd)?;
        self.body = rest;
        Ok(byte)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(usize::from(self.index.is_some()) + self.body.len())
    }

    fn try_take_n(&mut self, count: usize) -> postcard::Result<&'de [u8]> {
        // Every variant starts with its index, popped above; a run of bytes
        // cannot include it.
        if self.index.is_some() || self.body.len() < count {
            return Err(postcard::Error::DeserializeUnexpectedEnd);
        }
        let (taken, rest) = self.body.split_at(count);
        self.body = rest;
        Ok(taken)
    }

    fn finalize(self) -> postcard::Result<&'de [u8]> {
        Ok(self.body)
    }
}

/// The tag of each variant, in declaration order (the postcard variant index).
const VARIANT_BY_TAG: [u8; 28] = [
    0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x4b, 0x4c, 0x4d, 0x4e, 0x4f, 0x50, 0x51, 0x60, 0x61,
    0x62, 0x63, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58,
];
// postcard writes a variant index as a varint: one byte below 128, which
// `Frame::encode` relies on.
const _: () = assert!(VARIANT_BY_TAG.len() < 128);

/// Deserializers that refuse oversized collections before reserving memory.
mod bounded {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{Deserializer, Error, SeqAccess, Visitor};
    use serde::Deserialize;

    pub(super) fn vec<'de, D, T, const N: usize>(d: D) -> Result<Vec<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        struct V<T, const N: usize>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for V<T, N> {
            type Value = Vec<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a sequence of at most {N} elements")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
                let hint = seq.size_hint().unwrap_or(0);
                if hint > N {
                    return Err(A::Error::invalid_length(hint, &self));
                }
                let mut out = Vec::with_capacity(hint);
                while let Some(item) = seq.next_element()? {
                    if out.len() == N {
                        return Err(A::Error::invalid_length(N + 1, &self));
                    }
                    out.push(item);
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V::<T, N>(PhantomData))
    }

    pub(super) fn bytes<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<Vec<u8>, D::Error> {
        vec::<D, u8, N>(d)
    }

    pub(super) fn string<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<String, D::Error> {
        let s: &str = Deserialize::deserialize(d)?;
        if s.len() > N {
            return Err(D::Error::invalid_length(s.len(), &"a short name"));
        }
        Ok(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The decoder as it was: the variant index copied in front of the body.
    fn decode_by_copying(datagram: &[u8]) -> Result<Frame, FrameError> {
        let (tag, body) = (datagram[0], &datagram[2..]);
        let body = if tag >= 0x61 { &body[..body.len() - MAC_LEN] } else { body };
        let index = VARIANT_BY_TAG.iter().position(|&t| t == tag).expect("a known tag");
        let mut buf = vec![index as u8];
        buf.extend_from_slice(body);
        match postcard::take_from_bytes::<Frame>(&buf) {
            Ok((frame, [])) => Ok(frame),
            _ => Err(FrameError::Malformed),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Given any body behind any known tag (short bodies of arbitrary
        /// bytes decode to real frames often enough: most fields are
        /// varints), when it is decoded, then the answer is exactly the
        /// copying decoder's, frame or error.
        #[test]
        fn decoding_in_place_agrees_with_decoding_a_copy(
            tag_at in 0..VARIANT_BY_TAG.len(),
            body in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..8),
                prop::collection::vec(any::<u8>(), 0..48),
            ],
        ) {
            let tag = VARIANT_BY_TAG[tag_at];
            let mut datagram = vec![tag, VERSION];
            datagram.extend_from_slice(&body);
            if tag >= 0x61 {
                datagram.extend_from_slice(&[0; MAC_LEN]);
            }
            prop_assume!(datagram.len() <= Frame::max_size(tag).expect("a known tag"));
            prop_assert_eq!(Frame::decode(&datagram), decode_by_copying(&datagram));
        }
    }

    #[test]
    fn a_frame_with_bytes_left_over_is_malformed() {
        let mut datagram = Frame::Keepalive { token: 7, profile: NatProfile::default() }.encode();
        assert!(Frame::decode(&datagram).is_ok());
        datagram.push(0);
        assert_eq!(Frame::decode(&datagram), Err(FrameError::Malformed));
    }
}
