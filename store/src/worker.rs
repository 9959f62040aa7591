//! Group commit on a thread of its own: [`StoreWorker`].
//!
//! The server machine emits storage requests and never waits; its driver
//! [`submit`](StoreWorker::submit)s them here. The worker thread takes every
//! request that is waiting, runs them as one transaction
//! ([`MessageStore::execute`]: one fsync), and hands the completions, in
//! request order, to the driver's callback. Requests that arrive while that
//! commit is in flight wait in the channel and form the next batch, so the
//! batch size follows the load: one request when idle, hundreds under a
//! stream of texts.

use std::io;
use std::sync::mpsc;
use std::thread::JoinHandle;

use punchline_core::messaging::{
    MessageId, MessageStore, PutOutcome, StoreCompletion, StoreError, StoreRequest, StoredMessage,
};
use punchline_core::secure::PublicKey;

/// Most requests in one transaction. Bounds the time one commit holds the
/// completions of its first request back; far above what arrives during one
/// fsync at any rate the server reaches.
pub const MAX_BATCH: usize = 4096;

/// A store on its own thread, committing in groups. Dropping it finishes
/// every request already submitted (their completions are still handed to
/// the callback), then joins the thread.
#[derive(Debug)]
pub struct StoreWorker {
    requests: Option<mpsc::Sender<StoreRequest>>,
    thread: Option<JoinHandle<()>>,
}

impl StoreWorker {
    /// Starts the thread. `on_done` runs on it after each commit with that
    /// batch's completions, in request order: it should hand them to the
    /// driver's loop and wake it (a `mio::Waker`, an async channel).
    pub fn spawn(
        mut store: impl MessageStore + 'static,
        mut on_done: impl FnMut(Vec<StoreCompletion>) + Send + 'static,
    ) -> io::Result<StoreWorker> {
        let (tx, rx) = mpsc::channel::<StoreRequest>();
        let thread = std::thread::Builder::new().name("punchline-store".into()).spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(request) => batch.push(request),
                        Err(_) => break,
                    }
                }
                on_done(store.execute(batch));
            }
        })?;
        Ok(StoreWorker { requests: Some(tx), thread: Some(thread) })
    }

    /// Queues one request; never blocks. A request submitted after the
    /// thread died (its callback panicked) is lost, and logged.
    pub fn submit(&self, request: StoreRequest) {
        let sent = self.requests.as_ref().is_some_and(|tx| tx.send(request).is_ok());
        if !sent {
            tracing::error!("the store thread is gone; a storage request is lost");
        }
    }
}

impl Drop for StoreWorker {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has run what is queued.
        drop(self.requests.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the store thread panicked");
            }
        }
    }
}

/// A store that commits every request in a transaction of its own: one
/// fsync per text, as before group commit. The baseline that
/// `punchline-server --store-commit each` measures group commit against.
#[derive(Debug)]
pub struct CommitEach<S>(pub S);

impl<S: MessageStore> MessageStore for CommitEach<S> {
    fn begin(&mut self) -> Result<(), StoreError> {
        self.0.begin()
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        self.0.commit()
    }
    fn rollback(&mut self) {
        self.0.rollback()
    }
    fn put(&mut self, message: &StoredMessage, max_per_recipient: usize) -> Result<PutOutcome, StoreError> {
        self.0.put(message, max_per_recipient)
    }
    fn remove(&mut self, recipient: &str, sender: &str, id: MessageId) -> Result<bool, StoreError> {
        self.0.remove(recipient, sender, id)
    }
    fn load_queue(&mut self, recipient: &str, limit: usize) -> Result<(Vec<StoredMessage>, usize), StoreError> {
        self.0.load_queue(recipient, limit)
    }
    fn read_user(&mut self, user: &str) -> Result<Option<PublicKey>, StoreError> {
        self.0.read_user(user)
    }
    fn write_user(&mut self, user: &str, key: &PublicKey) -> Result<PublicKey, StoreError> {
        self.0.write_user(user, key)
    }
    fn execute(&mut self, batch: Vec<StoreRequest>) -> Vec<StoreCompletion> {
        batch.into_iter().flat_map(|request| self.0.execute(vec![request])).collect()
    }
}
