//! What frames carry: session ids, message ids, the bodies of session frames
//! and the small enums of requests and answers.
//!
//! These travel inside [`Frame`]s as postcard encodes them. The enums here
//! are encoded by their postcard variant index (their declaration order), so
//! reordering one changes the wire: `core/tests/wire_golden.rs` pins every
//! variant's bytes.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::bounded;
use super::files::{
    FileAbort, FileRefusal, TransferId, MAX_ACK_RANGES, MAX_CREDITS, MAX_FILE_NAME, MAX_HAVE_RANGES, PIECE,
};
#[cfg(doc)]
use super::Frame;
use super::{FrameError, MAX_APP_PAYLOAD, MAX_CANDIDATES, MAX_TEXT};
use crate::nat::{NatProfile, Strategy};

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
    /// The name is bound to another key: someone else holds it (issue 20,
    /// trust on first use).
    KeyMismatch,
}

/// How a client reaches the server: the transport of its leg of a relay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Transport {
    /// UDP datagrams.
    #[default]
    Udp,
    /// A TCP connection, where UDP is blocked (issue 21).
    Tcp,
}

impl Transport {
    /// The name reports and the command line use: `udp`, `tcp`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
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
    App(
        #[serde(serialize_with = "bounded::write_bytes", deserialize_with = "bounded::bytes::<_, MAX_APP_PAYLOAD>")]
        Vec<u8>,
    ),
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
    /// My NAT profile, as my latest measurement found it: sent when the
    /// session opens (if measured by then) and whenever a new measurement
    /// (after a roam) changes it. The session's strategy is chosen from
    /// both sides' profiles by the initiator.
    Profile {
        /// What I measured.
        profile: NatProfile,
    },
    /// From the initiator: the session now traverses with `strategy`
    /// (chosen from both profiles as [`crate::nat::choose_strategy`] does);
    /// a new punching attempt `attempt` starts with it unless the path is
    /// direct.
    Strategy {
        /// The attempt that starts with the strategy.
        attempt: u16,
        /// The strategy.
        strategy: Strategy,
    },
    /// Offers a file (issue 22). Answered by [`StreamMessage::FileAccept`]
    /// or [`StreamMessage::FileRefuse`].
    FileOffer {
        /// The sender's number for the transfer.
        transfer: TransferId,
        /// The file's name, without a directory; the receiver checks it.
        #[serde(deserialize_with = "bounded::string::<_, MAX_FILE_NAME>")]
        name: String,
        /// Its length in bytes.
        size: u64,
        /// Its BLAKE3 hash: the content's address.
        root: [u8; 32],
    },
    /// Accepts an offer, naming what the receiver already holds verified
    /// from an earlier transfer of the same content, which the sender then
    /// skips: resume is part of the offer's answer.
    FileAccept {
        /// The offer's transfer.
        transfer: TransferId,
        /// The first piece the receiver has no room for yet: its initial
        /// flow-control credit ([`SessionBody::FileAck`] raises it).
        credit: u64,
        /// Ranges of 16 KiB groups held verified, half-open, ascending.
        #[serde(deserialize_with = "bounded::vec::<_, _, MAX_HAVE_RANGES>")]
        have: Vec<(u64, u64)>,
    },
    /// Refuses an offer.
    FileRefuse {
        /// The offer's transfer.
        transfer: TransferId,
        /// Why.
        reason: FileRefusal,
    },
    /// Ends a transfer early, from either side.
    FileAbort {
        /// The transfer.
        transfer: TransferId,
        /// True when the transfer is the one the writer of this message
        /// sends (transfer numbers are their sender's).
        mine: bool,
        /// Why.
        reason: FileAbort,
    },
    /// The receiver holds the whole file, every group verified and
    /// written: the transfer is complete.
    FileDone {
        /// The transfer.
        transfer: TransferId,
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
    /// Asks the peer to answer with [`SessionBody::Pong`] on the path the
    /// ping came on: the liveness check of the relay while the direct path
    /// is suspect (see the client's path module).
    Ping {
        /// Echoed in the answer.
        nonce: u64,
    },
    /// The answer to [`SessionBody::Ping`].
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// One piece of a file transfer, on the session's congestion-controlled
    /// data plane (not the reliable stream: a lost piece is sent again in a
    /// packet with a new number).
    FileData {
        /// The packet number: never reused within the session.
        pn: u64,
        /// The transfer.
        transfer: TransferId,
        /// Which piece: the manifest's first, then the content's.
        piece: u64,
        /// The sender asks for an acknowledgement every this many packets
        /// (a large window needs fewer; see
        /// [`crate::transfer::AckTracker::set_threshold`]).
        ack_every: u8,
        /// The piece's bytes: [`PIECE`] of them, fewer for the last.
        #[serde(serialize_with = "bounded::write_bytes", deserialize_with = "bounded::bytes::<_, PIECE>")]
        data: Vec<u8>,
    },
    /// Acknowledges data-plane packets, and grants flow-control credit.
    FileAck {
        /// Packet numbers received: inclusive ranges, largest first.
        #[serde(deserialize_with = "bounded::vec::<_, _, MAX_ACK_RANGES>")]
        ranges: Vec<(u64, u64)>,
        /// Microseconds between the largest's arrival and this ack.
        delay_us: u32,
        /// Per transfer the acknowledging side receives: the first piece it
        /// has no room for yet.
        #[serde(deserialize_with = "bounded::vec::<_, _, MAX_CREDITS>")]
        credits: Vec<(TransferId, u64)>,
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
