//! The server's offline-message storage, behind a trait: the core stays pure
//! (no files), so the server machine is given a [`MessageStore`] by its
//! driver. `punchline-store` implements it durably on SQLite;
//! [`MemoryStore`] serves the simulator and tests.

use std::collections::{BTreeMap, BTreeSet};

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
    /// The text.
    pub text: String,
}

/// What [`MessageStore::put`] did.
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

/// Durable storage for the server's store-and-forward.
///
/// Calls are synchronous: the server machine acknowledges a message to its
/// sender right after `put` returns `Ok(Stored | AlreadyStored)`, so an
/// implementation must have committed durably (fsync) before it returns.
/// Every method is one transaction.
pub trait MessageStore: std::fmt::Debug + Send {
    /// Stores `message` unless the same (recipient, sender, id) is stored
    /// already, or the recipient holds `max_per_recipient` messages.
    fn put(&mut self, message: &StoredMessage, max_per_recipient: usize) -> Result<PutOutcome, StoreError>;

    /// Up to `limit` of `recipient`'s messages, oldest commit first.
    fn pending_for(&mut self, recipient: &str, limit: usize) -> Result<Vec<StoredMessage>, StoreError>;

    /// How many messages `recipient` has.
    fn pending_count(&mut self, recipient: &str) -> Result<usize, StoreError>;

    /// Deletes one message; true when it was there.
    fn remove(&mut self, recipient: &str, sender: &str, id: MessageId) -> Result<bool, StoreError>;

    /// Records that `user` exists (has logged in), so messages to it are
    /// accepted after a server restart.
    fn remember_user(&mut self, user: &str) -> Result<(), StoreError>;

    /// True when `user` was remembered.
    fn knows_user(&mut self, user: &str) -> Result<bool, StoreError>;
}

/// A [`MessageStore`] in memory: every call "commits" at once. For the
/// simulator and tests; a server restart is modelled by moving the store from
/// the old server to the new one
/// ([`Server::into_store`](crate::server::Server::into_store)).
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Per recipient: commit number → message.
    messages: BTreeMap<String, BTreeMap<u64, StoredMessage>>,
    /// (recipient, sender, id) → commit number.
    index: BTreeMap<(String, String, MessageId), u64>,
    users: BTreeSet<String>,
    next_commit: u64,
    failing: bool,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// Makes every later call fail (true) or work again (false), to test how
    /// the server handles a broken disk.
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

    fn check(&self) -> Result<(), StoreError> {
        if self.failing {
            Err(StoreError("the memory store was told to fail".into()))
        } else {
            Ok(())
        }
    }
}

impl MessageStore for MemoryStore {
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

    fn pending_for(&mut self, recipient: &str, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        self.check()?;
        Ok(self.messages.get(recipient).map(|q| q.values().take(limit).cloned().collect()).unwrap_or_default())
    }

    fn pending_count(&mut self, recipient: &str) -> Result<usize, StoreError> {
        self.check()?;
        Ok(self.messages.get(recipient).map_or(0, BTreeMap::len))
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

    fn remember_user(&mut self, user: &str) -> Result<(), StoreError> {
        self.check()?;
        self.users.insert(user.to_owned());
        Ok(())
    }

    fn knows_user(&mut self, user: &str) -> Result<bool, StoreError> {
        self.check()?;
        Ok(self.users.contains(user))
    }
}
