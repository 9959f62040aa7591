//! Text messaging (DESIGN §3, "Messaging"): the types the client and the
//! server share, the storage trait the server's store-and-forward uses, and
//! the recipient's de-duplication window.
//!
//! # Guarantees
//!
//! - **At least once, shown once.** A message has a [`MessageId`] chosen by
//!   its sender and kept on every path. The sender retransmits until someone
//!   acknowledges it: the peer over a direct session, or the server, which
//!   acknowledges only after the store's completion of its put says it is
//!   committed (durably, for a real store: see [`MessageStore`]). The server retransmits a stored message to the
//!   recipient until the recipient acknowledges it, and deletes it only then.
//!   The recipient de-duplicates by id ([`SeenIds`]), so copies that arrive
//!   twice (a lost acknowledgement, a message that went both direct and
//!   through the server) raise one `TextReceived`.
//! - **Ordering.** Per conversation (one sender's client to one recipient),
//!   messages on one path arrive in send order: the session stream is
//!   ordered, and the server delivers a recipient's stored messages in commit
//!   order. Across a path change (direct to server after a fallback) or after
//!   retransmissions under loss, arrival order can differ from send order;
//!   the id's `seq` gives the send order for a display that sorts. No
//!   reordering buffer holds messages back: a message the sender gave up on
//!   would stall every later one.
//! - **Limits.** A text is at most [`MAX_TEXT`] bytes (the server may set a
//!   lower limit); the server stores at most a configured number of messages
//!   per recipient; over either, the sender gets a clear rejection.

mod dedup;
mod store;

pub use dedup::{SeenIds, MAX_CONVERSATIONS, MAX_OUT_OF_ORDER};
pub use store::{
    MemoryStore, MessageStore, PutOutcome, StoreCompletion, StoreError, StoreOp, StoreReply, StoreRequest,
    StoreRequestId, StoredMessage,
};

pub use crate::wire::frame::{MessageId, TextRejection, TextStatus, MAX_SEALED_TEXT, MAX_TEXT};

/// The path that carried a message to whoever acknowledged it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextPath {
    /// A direct peer-to-peer session; the peer acknowledged.
    Direct,
    /// The server (which stored it, or forwarded it and heard the
    /// recipient's acknowledgement).
    Server,
}

impl TextPath {
    /// The name command lines and JSON use: `direct` or `server`.
    pub fn as_str(self) -> &'static str {
        match self {
            TextPath::Direct => "direct",
            TextPath::Server => "server",
        }
    }
}

/// Why a text message failed for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextFailure {
    /// The server refused it.
    Rejected(TextRejection),
    /// Nobody acknowledged it within the client's `text_timeout`. The server
    /// may still have stored it (only its acknowledgement may have been
    /// lost): the message may yet be delivered, exactly once.
    Timeout,
    /// The server's directory names another key for the recipient than the
    /// one pinned ([`ClientEvent::PeerKeyChanged`](crate::client::ClientEvent::PeerKeyChanged)):
    /// nothing was sealed to it.
    PeerKeyChanged,
}

impl std::fmt::Display for TextFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TextFailure::Rejected(reason) => write!(f, "refused by the server: {reason}"),
            TextFailure::PeerKeyChanged => f.write_str("the recipient's key is not the one pinned"),
            TextFailure::Timeout => f.write_str("no acknowledgement in time (it may still be delivered)"),
        }
    }
}

/// Errors of `Client::send_text`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendTextError {
    /// The recipient name cannot be a user (or is our own).
    #[error("invalid recipient name")]
    BadRecipient,
    /// Longer than [`MAX_TEXT`] bytes.
    #[error("text of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// The text's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Too many messages await acknowledgement; wait for some.
    #[error("too many unacknowledged messages")]
    WindowFull,
    /// The client logged out or its login failed.
    #[error("not logged in")]
    NotLoggedIn,
}
