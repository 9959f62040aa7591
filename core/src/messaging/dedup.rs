//! The recipient's memory of message ids it has shown.
//!
//! Ids carry a per-conversation sequence number ([`MessageId::seq`], from 1),
//! so a conversation's memory is a *high-water mark* (every `seq <= floor` was
//! seen) plus the few ids seen above it. Messages on one path arrive in
//! order, so the set above the floor stays empty or tiny; it grows only while
//! a message is missing (lost and being retransmitted, or taking the other
//! path), and shrinks as soon as the gap fills.
//!
//! # Bounds, and why they are safe
//!
//! - At most [`MAX_OUT_OF_ORDER`] ids above the floor per conversation. When
//!   a gap never fills (the sender gave up on one message) and more ids pile
//!   up above it, the *oldest* of them are forgotten — never the floor
//!   raised: raising it would treat a message that has not arrived yet as a
//!   duplicate and lose it. A forgotten id could only be shown again if a copy
//!   of it arrived after [`MAX_OUT_OF_ORDER`] later messages of the same
//!   conversation, and copies come only from retransmissions, which stop
//!   when the first copy is acknowledged (within seconds).
//! - At most [`MAX_CONVERSATIONS`] conversations; the least recently used is
//!   forgotten first. Same argument: its copies stopped long ago.
//!
//! The memory lives as long as the client; a recipient that must show
//! messages exactly once across its own restarts persists what it has shown
//! (the server redelivers anything it has not seen acknowledged).

use std::collections::{BTreeMap, BTreeSet};

use crate::wire::frame::MessageId;

/// Most ids remembered above a conversation's high-water mark.
pub const MAX_OUT_OF_ORDER: usize = 4096;
/// Most conversations remembered.
pub const MAX_CONVERSATIONS: usize = 4096;

/// Message ids already seen, per sender and conversation. See the
/// [module documentation](self) for the bounds.
#[derive(Debug, Default)]
pub struct SeenIds {
    conversations: BTreeMap<(String, u64), Window>,
    /// Last use → conversation, for least-recently-used eviction.
    by_use: BTreeMap<u64, (String, u64)>,
    clock: u64,
}

#[derive(Debug, Default)]
struct Window {
    floor: u64,
    above: BTreeSet<u64>,
    last_use: u64,
}

impl SeenIds {
    /// An empty memory.
    pub fn new() -> Self {
        SeenIds::default()
    }

    /// Records `id` from `sender`; true when it was not seen before.
    pub fn insert(&mut self, sender: &str, id: MessageId) -> bool {
        self.clock += 1;
        let key = (sender.to_owned(), id.conversation);
        if !self.conversations.contains_key(&key) && self.conversations.len() >= MAX_CONVERSATIONS {
            if let Some((_, oldest)) = self.by_use.pop_first() {
                self.conversations.remove(&oldest);
            }
        }
        let window = self.conversations.entry(key.clone()).or_default();
        self.by_use.remove(&window.last_use);
        window.last_use = self.clock;
        self.by_use.insert(self.clock, key);
        window.insert(id.seq)
    }

    /// True when `id` from `sender` was seen.
    pub fn contains(&self, sender: &str, id: MessageId) -> bool {
        self.conversations
            .get(&(sender.to_owned(), id.conversation))
            .is_some_and(|w| id.seq <= w.floor || w.above.contains(&id.seq))
    }

    /// Conversations remembered.
    pub fn conversations(&self) -> usize {
        self.conversations.len()
    }
}

impl Window {
    fn insert(&mut self, seq: u64) -> bool {
        if seq <= self.floor || !self.above.insert(seq) {
            return false;
        }
        while self.above.first() == Some(&(self.floor + 1)) {
            self.above.pop_first();
            self.floor += 1;
        }
        if self.above.len() > MAX_OUT_OF_ORDER {
            self.above.pop_first();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(conversation: u64, seq: u64) -> MessageId {
        MessageId { conversation, seq }
    }

    #[test]
    fn given_in_order_ids_then_each_is_new_once_and_nothing_is_kept_above_the_floor() {
        let mut seen = SeenIds::new();
        for seq in 1..=10_000 {
            assert!(seen.insert("alice", id(7, seq)));
            assert!(!seen.insert("alice", id(7, seq)));
        }
        let w = &seen.conversations[&("alice".to_owned(), 7)];
        assert_eq!((w.floor, w.above.len()), (10_000, 0));
    }

    #[test]
    fn given_a_gap_when_it_fills_then_the_floor_advances_and_late_copies_are_duplicates() {
        let mut seen = SeenIds::new();
        assert!(seen.insert("alice", id(1, 1)));
        assert!(seen.insert("alice", id(1, 3)));
        assert!(seen.insert("alice", id(1, 4)));
        assert!(!seen.contains("alice", id(1, 2)));
        assert!(seen.insert("alice", id(1, 2)));
        let w = &seen.conversations[&("alice".to_owned(), 1)];
        assert_eq!((w.floor, w.above.len()), (4, 0));
        assert!(!seen.insert("alice", id(1, 3)));
    }

    #[test]
    fn given_a_gap_that_never_fills_then_the_missing_id_is_still_new_after_the_window_overflows() {
        let mut seen = SeenIds::new();
        assert!(seen.insert("alice", id(1, 1)));
        // seq 2 never arrives; far more than the window arrives after it.
        for seq in 3..(MAX_OUT_OF_ORDER as u64 + 100) {
            assert!(seen.insert("alice", id(1, seq)));
        }
        // The floor never moved past the gap: seq 2 is not lost.
        assert!(seen.insert("alice", id(1, 2)));
        let w = &seen.conversations[&("alice".to_owned(), 1)];
        assert_eq!(w.above.len(), MAX_OUT_OF_ORDER);
    }

    #[test]
    fn given_senders_and_conversations_then_ids_are_kept_apart_and_the_least_recent_is_evicted() {
        let mut seen = SeenIds::new();
        assert!(seen.insert("alice", id(1, 1)));
        assert!(seen.insert("bob", id(1, 1)));
        assert!(seen.insert("alice", id(2, 1)));
        for c in 0..MAX_CONVERSATIONS as u64 {
            seen.insert("carol", id(100 + c, 1));
            // Keep alice's first conversation the most recently used.
            seen.insert("alice", id(1, 1));
        }
        assert_eq!(seen.conversations(), MAX_CONVERSATIONS);
        assert!(seen.contains("alice", id(1, 1)));
        assert!(!seen.contains("bob", id(1, 1)), "bob's conversation was the least recently used");
    }
}
