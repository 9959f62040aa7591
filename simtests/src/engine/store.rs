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
    /// The batch being committed was asked for by a server that has since
    /// crashed: it is applied, and nobody hears of it.
    orphaned: bool,
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

    /// The commit in flight ends: its batch is applied and answered (or,
    /// when its server crashed meanwhile, applied only).
    pub(super) fn commit_ended(&mut self) -> Vec<StoreCompletion> {
        let batch = mem::take(&mut self.committing);
        let completions = self.memory.execute(batch);
        if mem::take(&mut self.orphaned) {
            return Vec::new();
        }
        completions
    }

    /// The server crashed, as a process does, with its store on a disk
    /// that did not: what is on the disk stays (every text committed
    /// before). The batch whose commit was in flight had reached the disk,
    /// so it commits when its commit ends, but the process that asked is
    /// gone: no completion goes to anyone (the new server never issued
    /// those requests, and its own request ids start again). The requests
    /// waiting for the next commit lived only in the dead process's memory:
    /// they are dropped. Returns how many were (for the trace).
    ///
    /// Either way no sender was told its text was stored before it was
    /// (a server acknowledges a text only after its commit), so a crash
    /// loses nothing acknowledged; a text in the orphaned batch is stored
    /// without its sender hearing so, which the sender's retransmission
    /// must not turn into a duplicate.
    pub(super) fn crash(&mut self) -> (usize, usize) {
        self.orphaned = !self.committing.is_empty();
        let dropped = mem::take(&mut self.queued).len();
        (self.committing.len(), dropped)
    }
}
