//! The server's store, as the simulator models it: a [`MemoryStore`] that
//! commits in groups, each commit taking the scenario's `store_latency`.
//!
//! With no latency (the default) a request completes in the instant it is
//! made, where a synchronous store call would have returned. With a latency,
//! the requests made while the store is idle start a commit at once; those
//! made while a commit is in flight wait and form the next one, as the
//! runtimes' group-committing store thread does. A batch is applied when its
//! commit ends, so the traces show every text acknowledged after its commit.

use std::mem;
use std::time::Duration;

use punchline_core::messaging::{MemoryStore, MessageStore, StoreCompletion, StoreRequest};

/// The store model; see the [module documentation](self).
#[derive(Debug, Default)]
pub(super) struct SimStore {
    memory: MemoryStore,
    latency: Duration,
    /// Requests waiting for the next commit.
    queued: Vec<StoreRequest>,
    /// The batch being committed, if any.
    committing: Vec<StoreRequest>,
}

/// What the network does after handing the store its requests.
pub(super) enum Next {
    /// Nothing: the store is busy, or was given nothing.
    Wait,
    /// Feed these completions to the server now (no latency).
    Done(Vec<StoreCompletion>),
    /// A commit started: schedule its end this far ahead.
    CommitEndsIn(Duration),
}

impl SimStore {
    pub(super) fn new(latency: Duration) -> SimStore {
        SimStore { latency, ..SimStore::default() }
    }

    /// Takes a request the server made.
    pub(super) fn submit(&mut self, request: StoreRequest) {
        self.queued.push(request);
    }

    /// Starts work on what was submitted, if the store is free.
    pub(super) fn next(&mut self) -> Next {
        if self.queued.is_empty() || !self.committing.is_empty() {
            return Next::Wait;
        }
        if self.latency.is_zero() {
            return Next::Done(self.memory.execute(mem::take(&mut self.queued)));
        }
        self.committing = mem::take(&mut self.queued);
        Next::CommitEndsIn(self.latency)
    }

    /// The commit in flight ends: its batch is applied and answered.
    pub(super) fn commit_ended(&mut self) -> Vec<StoreCompletion> {
        let batch = mem::take(&mut self.committing);
        self.memory.execute(batch)
    }
}
