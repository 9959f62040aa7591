//! The server's side of storage-as-requests (DESIGN §2): the queue of
//! [`StoreRequest`]s the driver polls, and what waits for each completion.
//!
//! The machine never calls a store. Each operation that needs one is cut in
//! two: the part before emits a request with a [`Waiting`] continuation, the
//! part after runs in [`Server::handle_store_completion`](super::Server::handle_store_completion). The driver must
//! hand completions back in request order (group commit keeps it).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use crate::machine::SocketId;
use crate::messaging::{StoreOp, StoreRequest, StoreRequestId};
use crate::wire::frame::MessageId;

/// Requests not yet polled, and continuations of those not yet completed.
#[derive(Debug, Default)]
pub(super) struct Storage {
    next_id: u64,
    queued: VecDeque<StoreRequest>,
    waiting: BTreeMap<StoreRequestId, Waiting>,
}

/// Where an answer goes: the socket and address a request came from, and
/// the token of the channel it came in (the answer is sealed in it).
pub(super) type ReplyTo = (SocketId, SocketAddr, u64);

/// What a request's completion resumes.
#[derive(Debug)]
pub(super) enum Waiting {
    /// A text's [`StoreOp::Put`]; the sender hears about it only now.
    TextPut {
        /// (recipient, sender, id).
        key: (String, String, MessageId),
        /// The text, to forward at once when the recipient is online.
        sealed: Vec<u8>,
    },
    /// A text to a recipient this server has not seen: is it a user?
    TextRecipient {
        /// Where the sender is.
        reply_to: ReplyTo,
        /// Who sends.
        sender: String,
        /// The sender's id for the text.
        id: MessageId,
        /// The recipient.
        to: String,
        /// The text.
        sealed: Vec<u8>,
    },
    /// A connect to an offline user: offline, or no such user?
    ConnectPeer {
        /// Where the initiator is.
        reply_to: ReplyTo,
        /// The connect's request number.
        request: u32,
        /// The peer asked for.
        peer: String,
    },
    /// A recipient's queue, to top up its deliveries in flight.
    Queue {
        /// Whose queue.
        recipient: String,
        /// Who is told how many are left afterwards.
        status: QueueStatus,
    },
    /// An acknowledged delivery's [`StoreOp::Remove`].
    Remove {
        /// (recipient, sender, id).
        key: (String, String, MessageId),
    },
    /// A [`StoreOp::WriteUser`]: the name's binding, which may be another
    /// login's if two first logins raced.
    UserWrite {
        /// The name.
        user: String,
    },
    /// A lookup of a name neither online nor cached: which key is it bound
    /// to?
    Lookup {
        /// Where the asker is.
        reply_to: ReplyTo,
        /// The lookup's request number.
        request: u32,
        /// The name looked up.
        user: String,
    },
    /// A Hello whose name's binding is read.
    Hello(Box<super::handshake::HelloWait>),
}

/// Whether, and how, a queue load is answered with an `InboxStatus`.
#[derive(Clone, Copy, Debug)]
pub(super) enum QueueStatus {
    /// Nobody asked (a login's first load).
    Silent,
    /// Tell `ReplyTo` "nothing pending" if nothing is in flight afterwards
    /// (after an acknowledgement emptied the window).
    IfDrained(ReplyTo),
    /// Tell `ReplyTo` how many the queue holds (an `InboxSync`).
    Count(ReplyTo),
}

impl Storage {
    /// Queues `op` for the driver; `waiting` resumes on its completion.
    pub(super) fn request(&mut self, op: StoreOp, waiting: Waiting) {
        let id = StoreRequestId(self.next_id);
        self.next_id += 1;
        self.queued.push_back(StoreRequest { id, op });
        self.waiting.insert(id, waiting);
    }

    /// Requests issued and not completed, polled or not.
    pub(super) fn outstanding(&self) -> usize {
        self.waiting.len()
    }

    pub(super) fn has_queued(&self) -> bool {
        !self.queued.is_empty()
    }

    /// The next request for the driver.
    pub(super) fn poll(&mut self) -> Option<StoreRequest> {
        self.queued.pop_front()
    }

    /// What waits for request `id`, which completed.
    pub(super) fn complete(&mut self, id: StoreRequestId) -> Option<Waiting> {
        self.waiting.remove(&id)
    }
}
