//! Named deadlines.
//!
//! Every timer of a machine has a name (an `Ord` enum), so `poll_timeout` can
//! say why it wakes, and iteration over timers is in a fixed order.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// A set of named deadlines.
///
/// Kept twice, by name and by (deadline, name), so that the earliest timer
/// is found in O(log n) however many are set: the server holds one per
/// pending offer, and asks for the earliest after every datagram.
#[derive(Clone, Debug)]
pub struct Timers<K: Ord> {
    deadlines: BTreeMap<K, Instant>,
    by_time: BTreeSet<(Instant, K)>,
}

impl<K: Ord + Clone> Default for Timers<K> {
    fn default() -> Self {
        Timers { deadlines: BTreeMap::new(), by_time: BTreeSet::new() }
    }
}

impl<K: Ord + Clone> Timers<K> {
    /// Sets (or moves) timer `key` to `at`.
    pub fn set(&mut self, key: K, at: Instant) {
        if let Some(old) = self.deadlines.insert(key.clone(), at) {
            self.by_time.remove(&(old, key.clone()));
        }
        self.by_time.insert((at, key));
    }

    /// Cancels timer `key`.
    pub fn stop(&mut self, key: &K) {
        if let Some(at) = self.deadlines.remove(key) {
            self.by_time.remove(&(at, key.clone()));
        }
    }

    /// When `key` fires, if set.
    pub fn get(&self, key: &K) -> Option<Instant> {
        self.deadlines.get(key).copied()
    }

    /// The earliest deadline and its name (ties in key order).
    pub fn next(&self) -> Option<(K, Instant)> {
        self.by_time.first().map(|(at, k)| (k.clone(), *at))
    }

    /// Removes and returns every timer due at `now`, earliest first (ties in
    /// key order).
    pub fn expire(&mut self, now: Instant) -> Vec<K> {
        let mut due = Vec::new();
        while let Some((at, _)) = self.by_time.first() {
            if *at > now {
                break;
            }
            let (_, key) = self.by_time.pop_first().expect("just seen");
            self.deadlines.remove(&key);
            due.push(key);
        }
        due
    }

    /// Removes every timer whose key matches.
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        let by_time = &mut self.by_time;
        self.deadlines.retain(|k, at| {
            let kept = keep(k);
            if !kept {
                by_time.remove(&(*at, k.clone()));
            }
            kept
        });
    }
}
