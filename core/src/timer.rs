//! Named deadlines.
//!
//! Every timer of a machine has a name (an `Ord` enum), so `poll_timeout` can
//! say why it wakes, and iteration over timers is in a fixed order.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use smallvec::SmallVec;

/// Up to this many timers are kept in one small vector; past it, in two
/// ordered indexes. A client or a session holds a handful of timers and
/// scanning a few contiguous entries beats walking two trees (a simulator
/// with a thousand clients spends its time on cache misses); a server holds
/// one per pending offer, hundreds, and needs the earliest in O(log n).
const SMALL: usize = 16;

/// Timers a small set keeps inline: a session runs three or four at once.
const INLINE: usize = 4;

/// A set of named deadlines.
///
/// Small sets are a vector in no particular order, scanned; large ones are
/// kept twice, by name and by (deadline, name). Either way the earliest
/// timer comes first and ties go in key order.
#[derive(Clone, Debug)]
pub struct Timers<K: Ord> {
    repr: Repr<K>,
}

#[derive(Clone, Debug)]
enum Repr<K: Ord> {
    /// The first [`INLINE`] inside the owner (no pointer to chase on a
    /// machine that is cold in cache), then on the heap.
    Small(SmallVec<[(K, Instant); INLINE]>),
    Large {
        deadlines: BTreeMap<K, Instant>,
        by_time: BTreeSet<(Instant, K)>,
    },
}

impl<K: Ord + Clone> Default for Timers<K> {
    fn default() -> Self {
        Timers { repr: Repr::Small(SmallVec::new()) }
    }
}

impl<K: Ord + Clone> Timers<K> {
    /// Sets (or moves) timer `key` to `at`.
    pub fn set(&mut self, key: K, at: Instant) {
        match &mut self.repr {
            Repr::Small(timers) => {
                if let Some(entry) = timers.iter_mut().find(|(k, _)| *k == key) {
                    entry.1 = at;
                } else if timers.len() < SMALL {
                    timers.push((key, at));
                } else {
                    let deadlines: BTreeMap<K, Instant> = timers.drain(..).chain([(key, at)]).collect();
                    let by_time = deadlines.iter().map(|(k, at)| (*at, k.clone())).collect();
                    self.repr = Repr::Large { deadlines, by_time };
                }
            }
            Repr::Large { deadlines, by_time } => {
                if let Some(old) = deadlines.insert(key.clone(), at) {
                    by_time.remove(&(old, key.clone()));
                }
                by_time.insert((at, key));
            }
        }
    }

    /// Cancels timer `key`.
    pub fn stop(&mut self, key: &K) {
        match &mut self.repr {
            Repr::Small(timers) => timers.retain(|(k, _)| k != key),
            Repr::Large { deadlines, by_time } => {
                if let Some(at) = deadlines.remove(key) {
                    by_time.remove(&(at, key.clone()));
                }
            }
        }
    }

    /// When `key` fires, if set.
    pub fn get(&self, key: &K) -> Option<Instant> {
        match &self.repr {
            Repr::Small(timers) => timers.iter().find(|(k, _)| k == key).map(|(_, at)| *at),
            Repr::Large { deadlines, .. } => deadlines.get(key).copied(),
        }
    }

    /// The earliest deadline and its name (ties in key order).
    pub fn next(&self) -> Option<(K, Instant)> {
        match &self.repr {
            Repr::Small(timers) => timers.iter().min_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0))).cloned(),
            Repr::Large { by_time, .. } => by_time.first().map(|(at, k)| (k.clone(), *at)),
        }
    }

    /// Removes and returns every timer due at `now`, earliest first (ties in
    /// key order). The timers are taken out before the caller sees the
    /// first, so one the caller sets again while handling them waits for the
    /// next call.
    ///
    /// Collected in a small inline vector, not a `Vec`: a machine wakes for
    /// one or two timers at a time, and two allocations per wake-up were a
    /// visible share of a thousand-client simulation.
    pub fn expire(&mut self, now: Instant) -> impl Iterator<Item = K> + use<K> {
        let mut due: SmallVec<[(Instant, K); INLINE]> = SmallVec::new();
        match &mut self.repr {
            Repr::Small(timers) => {
                timers.retain(|(k, at)| {
                    let keep = *at > now;
                    if !keep {
                        due.push((*at, k.clone()));
                    }
                    keep
                });
                due.sort();
            }
            Repr::Large { deadlines, by_time } => {
                while let Some((at, _)) = by_time.first() {
                    if *at > now {
                        break;
                    }
                    let (at, key) = by_time.pop_first().expect("just seen");
                    deadlines.remove(&key);
                    due.push((at, key));
                }
            }
        }
        due.into_iter().map(|(_, key)| key)
    }

    /// Removes every timer whose key matches.
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        match &mut self.repr {
            Repr::Small(timers) => timers.retain(|(k, _)| keep(k)),
            Repr::Large { deadlines, by_time } => deadlines.retain(|k, at| {
                let kept = keep(k);
                if !kept {
                    by_time.remove(&(*at, k.clone()));
                }
                kept
            }),
        }
    }
}
