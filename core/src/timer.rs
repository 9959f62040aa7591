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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_earliest_timer_comes_first_however_timers_move() {
        // Given timers set, moved and stopped in a jumbled order,
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut timers = Timers::default();
        timers.set("c", at(30));
        timers.set("a", at(10));
        timers.set("b", at(10));
        timers.set("d", at(5));
        timers.set("a", at(40)); // moved later
        timers.stop(&"d");
        timers.set("e", at(20));
        // then the earliest is b (10 ms), then ties and order hold:
        assert_eq!(timers.next(), Some(("b", at(10))));
        assert_eq!(timers.get(&"a"), Some(at(40)));
        assert_eq!(timers.get(&"d"), None);
        // when time reaches 30 ms, then b, e and c fire in deadline order,
        assert_eq!(timers.expire(at(30)), vec!["b", "e", "c"]);
        // and only a is left; retain can remove it.
        assert_eq!(timers.next(), Some(("a", at(40))));
        timers.retain(|k| *k != "a");
        assert_eq!(timers.next(), None);
        assert!(timers.expire(at(1000)).is_empty());
    }

    #[test]
    fn timers_due_at_the_same_instant_fire_in_key_order() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        for key in [3, 1, 2] {
            timers.set(key, t0);
        }
        assert_eq!(timers.expire(t0), vec![1, 2, 3]);
    }
}
