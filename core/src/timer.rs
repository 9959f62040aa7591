//! Named deadlines.
//!
//! Every timer of a machine has a name (an `Ord` enum), so `poll_timeout` can
//! say why it wakes, and iteration over timers is in a fixed order.

use std::collections::BTreeMap;
use std::time::Instant;

/// A set of named deadlines.
#[derive(Clone, Debug)]
pub struct Timers<K: Ord> {
    deadlines: BTreeMap<K, Instant>,
}

impl<K: Ord + Clone> Default for Timers<K> {
    fn default() -> Self {
        Timers { deadlines: BTreeMap::new() }
    }
}

impl<K: Ord + Clone> Timers<K> {
    /// Sets (or moves) timer `key` to `at`.
    pub fn set(&mut self, key: K, at: Instant) {
        self.deadlines.insert(key, at);
    }

    /// Cancels timer `key`.
    pub fn stop(&mut self, key: &K) {
        self.deadlines.remove(key);
    }

    /// When `key` fires, if set.
    pub fn get(&self, key: &K) -> Option<Instant> {
        self.deadlines.get(key).copied()
    }

    /// The earliest deadline and its name.
    pub fn next(&self) -> Option<(K, Instant)> {
        self.deadlines.iter().min_by_key(|(k, at)| (**at, (*k).clone())).map(|(k, at)| (k.clone(), *at))
    }

    /// Removes and returns every timer due at `now`, earliest first (ties in
    /// key order).
    pub fn expire(&mut self, now: Instant) -> Vec<K> {
        let mut due: Vec<(Instant, K)> =
            self.deadlines.iter().filter(|(_, at)| **at <= now).map(|(k, at)| (*at, k.clone())).collect();
        due.sort();
        for (_, k) in &due {
            self.deadlines.remove(k);
        }
        due.into_iter().map(|(_, k)| k).collect()
    }

    /// Removes every timer whose key matches.
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.deadlines.retain(|k, _| keep(k));
    }
}
