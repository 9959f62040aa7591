//! The server's offline-message storage, as requests (DESIGN §2: "Storage
//! is a request too").
//!
//! The server machine never calls storage. It emits [`StoreRequest`]s
//! through [`Server::poll_store_request`](crate::server::Server::poll_store_request);
//! the driver carries them out on a [`MessageStore`] (a durable one on
//! its own thread, so no datagram ever waits for a disk) and hands each
//! [`StoreCompletion`] back through
//! [`Server::handle_store_completion`](crate::server::Server::handle_store_completion).
//! The server acknowledges a text to its sender only when the completion of
//! its `Put` says the text is committed.
//!
//! Drivers group-commit: every request that arrived while a commit was in
//! flight goes into the next transaction, one fsync for all of them
//! ([`MessageStore::execute`]). Completions must come back in request order:
//! the server relies on it (a queue loaded after a delete never shows the
//! deleted message).

use std::collections::BTreeMap;

use crate::secure::PublicKey;
use crate::wire::frame::MessageId;

/// A message held for an offline (or not yet acknowledging) recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    /// Who it is for.
    pub recipient: String,
    /// Who sent it.
    pub sender: String,
    /// The sender's id for it.
    pub id: MessageId,
    /// The text, sealed to the recipient ([`crate::secure::seal_text`]): the
    /// server stores and forwards it and cannot read it.
    pub sealed: Vec<u8>,
}

/// Names one request, so its completion can find what waits for it. Ids
/// grow by one per request from one server machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoreRequestId(pub u64);

/// One thing the server wants stored or read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreRequest {
    /// Its id; the completion carries it back.
    pub id: StoreRequestId,
    /// What to do.
    pub op: StoreOp,
}

/// The operations a store carries out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// Store `message` unless the same (recipient, sender, id) is stored
    /// already, or the recipient holds `max_per_recipient` messages.
    /// Answered with [`StoreReply::Put`].
    Put {
        /// The message.
        message: StoredMessage,
        /// The recipient's limit.
        max_per_recipient: usize,
    },
    /// Delete one message. Answered with [`StoreReply::Removed`].
    Remove {
        /// Whose queue.
        recipient: String,
        /// Who sent it.
        sender: String,
        /// Its id.
        id: MessageId,
    },
    /// Read the oldest `limit` messages of `recipient`'s queue and how many
    /// it holds. Answered with [`StoreReply::Queue`].
    LoadQueue {
        /// Whose queue.
        recipient: String,
        /// Most messages to return.
        limit: usize,
    },
    /// Which key is `user` bound to? Answered with [`StoreReply::UserKey`].
    ReadUser {
        /// The user's name.
        user: String,
    },
    /// Bind `user` to `key` unless it is bound already (trust on first
    /// use, issue 20): a user exists once it completed a login, and texts
    /// to it are accepted after a restart. Answered with
    /// [`StoreReply::UserBound`] and the key the name is bound to now,
    /// which is another when a concurrent first login won.
    WriteUser {
        /// The user's name.
        user: String,
        /// The key its login proved.
        key: PublicKey,
    },
}

impl StoreOp {
    /// True for operations that change the store (and so wait for a commit).
    pub fn writes(&self) -> bool {
        matches!(self, StoreOp::Put { .. } | StoreOp::Remove { .. } | StoreOp::WriteUser { .. })
    }
}

/// What a request did, once its transaction committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreReply {
    /// For [`StoreOp::Put`].
    Put(PutOutcome),
    /// For [`StoreOp::Remove`]: true when the message was there.
    Removed(bool),
    /// For [`StoreOp::LoadQueue`].
    Queue {
        /// The oldest messages, oldest commit first.
        messages: Vec<StoredMessage>,
        /// How many the recipient holds in all.
        total: usize,
    },
    /// For [`StoreOp::ReadUser`]: the user's key, or `None` when no login
    /// ever completed under that name.
    UserKey(Option<PublicKey>),
    /// For [`StoreOp::WriteUser`]: the key the name is bound to.
    UserBound(PublicKey),
}

/// A request's outcome, handed back to the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreCompletion {
    /// The request's id.
    pub id: StoreRequestId,
    /// Its reply, or why the store failed it. A write is `Ok` only once the
    /// transaction that holds it is durably committed.
    pub result: Result<StoreReply, StoreError>,
}

/// What a put did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// Committed: it survives a crash from now on.
    Stored,
    /// A message with the same recipient, sender and id was already stored
    /// (a retransmission); nothing changed.
    AlreadyStored,
    /// The recipient already has the most messages it may; nothing changed.
    RecipientFull,
}

/// A storage failure. The server refuses the message
/// ([`TextRejection::StoreUnavailable`](crate::wire::frame::TextRejection::StoreUnavailable))
/// rather than acknowledging what it could not commit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("message store: {0}")]
pub struct StoreError(pub String);

/// Durable storage for the server's store-and-forward, driven by the
/// server's driver (never by the machine itself).
///
/// An implementation provides the operations, each run inside the
/// transaction that [`begin`](Self::begin) opened, and the transaction's
/// [`commit`](Self::commit), which must be durable (fsync) before it
/// returns. [`execute`](Self::execute) runs a whole batch as one
/// transaction: that is group commit.
pub trait MessageStore: std::fmt::Debug + Send {
    /// Opens a transaction.
    fn begin(&mut self) -> Result<(), StoreError>;

    /// Commits the open transaction durably.
    fn commit(&mut self) -> Result<(), StoreError>;

    /// Abandons the open transaction.
    fn rollback(&mut self);

    /// See [`StoreOp::Put`]. An error must leave nothing of this put behind.
    fn put(&mut self, message: &StoredMessage, max_per_recipient: usize) -> Result<PutOutcome, StoreError>;

    /// See [`StoreOp::Remove`].
    fn remove(&mut self, recipient: &str, sender: &str, id: MessageId) -> Result<bool, StoreError>;

    /// See [`StoreOp::LoadQueue`]: up to `limit` messages, oldest commit
    /// first, and the queue's length.
    fn load_queue(&mut self, recipient: &str, limit: usize) -> Result<(Vec<StoredMessage>, usize), StoreError>;

    /// See [`StoreOp::ReadUser`].
    fn read_user(&mut self, user: &str) -> Result<Option<PublicKey>, StoreError>;

    /// See [`StoreOp::WriteUser`].
    fn write_user(&mut self, user: &str, key: &PublicKey) -> Result<PublicKey, StoreError>;

    /// Carries out `batch` in order as one transaction and returns one
    /// completion per request, in the same order.
    ///
    /// Reads see the writes before them in the batch. Every completion is
    /// released only after the commit: when it fails, every request of the
    /// batch fails with it (a read may have seen a write that is now gone).
    /// One operation's own error fails that request alone.
    fn execute(&mut self, batch: Vec<StoreRequest>) -> Vec<StoreCompletion> {
        if let Err(error) = self.begin() {
            return batch.into_iter().map(|r| StoreCompletion { id: r.id, result: Err(error.clone()) }).collect();
        }
        let results: Vec<(StoreRequestId, Result<StoreReply, StoreError>)> =
            batch.into_iter().map(|r| (r.id, self.apply(r.op))).collect();
        match self.commit() {
            Ok(()) => results.into_iter().map(|(id, result)| StoreCompletion { id, result }).collect(),
            Err(error) => {
                self.rollback();
                results.into_iter().map(|(id, _)| StoreCompletion { id, result: Err(error.clone()) }).collect()
            }
        }
    }

    /// Carries out one operation inside the open transaction.
    fn apply(&mut self, op: StoreOp) -> Result<StoreReply, StoreError> {
        match op {
            StoreOp::Put { message, max_per_recipient } => self.put(&message, max_per_recipient).map(StoreReply::Put),
            StoreOp::Remove { recipient, sender, id } => self.remove(&recipient, &sender, id).map(StoreReply::Removed),
            StoreOp::LoadQueue { recipient, limit } => {
                self.load_queue(&recipient, limit).map(|(messages, total)| StoreReply::Queue { messages, total })
            }
            StoreOp::ReadUser { user } => self.read_user(&user).map(StoreReply::UserKey),
            StoreOp::WriteUser { user, key } => self.write_user(&user, &key).map(StoreReply::UserBound),
        }
    }
}

impl<S: MessageStore + ?Sized> MessageStore for Box<S> {
    fn begin(&mut self) -> Result<(), StoreError> {
        (**self).begin()
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        (**self).commit()
    }
    fn rollback(&mut self) {
        (**self).rollback()
    }
    fn put(&mut self, message: &StoredMessage, max_per_recipient: usize) -> Result<PutOutcome, StoreError> {
        (**self).put(message, max_per_recipient)
    }
    fn remove(&mut self, recipient: &str, sender: &str, id: MessageId) -> Result<bool, StoreError> {
        (**self).remove(recipient, sender, id)
    }
    fn load_queue(&mut self, recipient: &str, limit: usize) -> Result<(Vec<StoredMessage>, usize), StoreError> {
        (**self).load_queue(recipient, limit)
    }
    fn read_user(&mut self, user: &str) -> Result<Option<PublicKey>, StoreError> {
        (**self).read_user(user)
    }
    fn write_user(&mut self, user: &str, key: &PublicKey) -> Result<PublicKey, StoreError> {
        (**self).write_user(user, key)
    }
    fn execute(&mut self, batch: Vec<StoreRequest>) -> Vec<StoreCompletion> {
        (**self).execute(batch)
    }
}

/// A [`MessageStore`] in memory: every commit "succeeds" at once. For the
/// simulator and tests, where a server restart is modelled by keeping the
/// store and building a new server machine.
///
/// Transactions are not isolated: a rolled-back batch keeps its writes.
/// Only [`set_failing`](Self::set_failing) makes a commit fail, and then
/// every operation fails first, so nothing is written.
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Per recipient: commit number → message.
    messages: BTreeMap<String, BTreeMap<u64, StoredMessage>>,
    /// (recipient, sender, id) → commit number.
    index: BTreeMap<(String, String, MessageId), u64>,
    users: BTreeMap<String, PublicKey>,
    next_commit: u64,
    failing: bool,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// Makes every later operation fail (true) or work again (false), to
    /// test how the server handles a broken disk.
    pub fn set_failing(&mut self, failing: bool) {
        self.failing = failing;
    }

    /// Messages held, for every recipient together.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when no message is held.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// How many messages `recipient` has.
    pub fn count_for(&self, recipient: &str) -> usize {
        self.messages.get(recipient).map_or(0, BTreeMap::len)
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.failing {
            Err(StoreError("the memory store was told to fail".into()))
        } else {
            Ok(())
        }
    }
}

impl MessageStore for MemoryStore {
    fn begin(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        self.check()
    }

    fn rollback(&mut self) {}

    fn put(&mut self, message: &StoredMessage, max_per_recipient: usize) -> Result<PutOutcome, StoreError> {
        self.check()?;
        let key = (message.recipient.clone(), message.sender.clone(), message.id);
        if self.index.contains_key(&key) {
            return Ok(PutOutcome::AlreadyStored);
        }
        let queue = self.messages.entry(message.recipient.clone()).or_default();
        if queue.len() >= max_per_recipient {
            return Ok(PutOutcome::RecipientFull);
        }
        self.next_commit += 1;
        queue.insert(self.next_commit, message.clone());
        self.index.insert(key, self.next_commit);
        Ok(PutOutcome::Stored)
    }

    fn remove(&mut self, recipient: &str, sender: &str, id: MessageId) -> Result<bool, StoreError> {
        self.check()?;
        let Some(commit) = self.index.remove(&(recipient.to_owned(), sender.to_owned(), id)) else {
            return Ok(false);
        };
        if let Some(queue) = self.messages.get_mut(recipient) {
            queue.remove(&commit);
            if queue.is_empty() {
                self.messages.remove(recipient);
            }
        }
        Ok(true)
    }

    fn load_queue(&mut self, recipient: &str, limit: usize) -> Result<(Vec<StoredMessage>, usize), StoreError> {
        self.check()?;
        let Some(queue) = self.messages.get(recipient) else { return Ok((Vec::new(), 0)) };
        Ok((queue.values().take(limit).cloned().collect(), queue.len()))
    }

    fn read_user(&mut self, user: &str) -> Result<Option<PublicKey>, StoreError> {
        self.check()?;
        Ok(self.users.get(user).copied())
    }

    fn write_user(&mut self, user: &str, key: &PublicKey) -> Result<PublicKey, StoreError> {
        self.check()?;
        Ok(*self.users.entry(user.to_owned()).or_insert(*key))
    }
}
