//! Named deadlines.
//!
//! Every timer of a machine has a name (an `Ord` enum), so `poll_timeout` can
//! say why it wakes, and iteration over timers is in a fixed order. The
//! machines keep `Instant`s; the unit tests below use a `Duration` since an
//! epoch instead, so they read no clock (the core never does, its tests
//! included).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Add;
use std::time::{Duration, Instant};

use smallvec::SmallVec;

/// A point in time as the core's clock-driven parts see it: an `Instant` in
/// the machines. Their unit tests use a `Duration` since some epoch, so they
/// read no clock (the core never does, its tests included).
pub trait Moment: Copy + Ord + Add<Duration, Output = Self> + std::fmt::Debug + Send + 'static {
    /// The time from `earlier` to `self`, zero if `earlier` is later.
    fn saturating_duration_since(self, earlier: Self) -> Duration;
}

impl Moment for Instant {
    fn saturating_duration_since(self, earlier: Self) -> Duration {
        Instant::saturating_duration_since(&self, earlier)
    }
}

impl Moment for Duration {
    fn saturating_duration_since(self, earlier: Self) -> Duration {
        self.saturating_sub(earlier)
    }
}

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
pub(crate) struct Timers<K: Ord, T = Instant> {
    repr: Repr<K, T>,
}

#[derive(Clone, Debug)]
enum Repr<K: Ord, T> {
    /// The first [`INLINE`] inside the owner (no pointer to chase on a
    /// machine that is cold in cache), then on the heap.
    Small(SmallVec<[(K, T); INLINE]>),
    Large {
        deadlines: BTreeMap<K, T>,
        by_time: BTreeSet<(T, K)>,
    },
}

impl<K: Ord + Clone, T> Default for Timers<K, T> {
    fn default() -> Self {
        Timers { repr: Repr::Small(SmallVec::new()) }
    }
}

impl<K: Ord + Clone, T: Copy + Ord> Timers<K, T> {
    /// Sets (or moves) timer `key` to `at`.
    pub(crate) fn set(&mut self, key: K, at: T) {
        match &mut self.repr {
            Repr::Small(timers) => {
                if let Some(entry) = timers.iter_mut().find(|(k, _)| *k == key) {
                    entry.1 = at;
                } else if timers.len() < SMALL {
                    timers.push((key, at));
                } else {
                    let deadlines: BTreeMap<K, T> = timers.drain(..).chain([(key, at)]).collect();
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
    pub(crate) fn stop(&mut self, key: &K) {
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
    pub(crate) fn get(&self, key: &K) -> Option<T> {
        match &self.repr {
            Repr::Small(timers) => timers.iter().find(|(k, _)| k == key).map(|(_, at)| *at),
            Repr::Large { deadlines, .. } => deadlines.get(key).copied(),
        }
    }

    /// The earliest deadline and its name (ties in key order).
    pub(crate) fn next(&self) -> Option<(K, T)> {
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
    pub(crate) fn expire(&mut self, now: T) -> impl Iterator<Item = K> + use<K, T> {
        let mut due: SmallVec<[(T, K); INLINE]> = SmallVec::new();
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
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Timers;

    #[test]
    fn the_earliest_timer_comes_first_however_timers_move() {
        // Given timers set, moved and stopped in a jumbled order,
        let t0 = Duration::from_secs(1000);
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut timers: Timers<_, Duration> = Timers::default();
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
        assert_eq!(timers.expire(at(30)).collect::<Vec<_>>(), vec!["b", "e", "c"]);
        // and only a is left.
        assert_eq!(timers.next(), Some(("a", at(40))));
        timers.stop(&"a");
        assert_eq!(timers.next(), None);
        assert_eq!(timers.expire(at(1000)).next(), None);
    }

    #[test]
    fn timers_due_at_the_same_instant_fire_in_key_order() {
        let t0 = Duration::from_secs(1000);
        let mut timers: Timers<_, Duration> = Timers::default();
        for key in [3, 1, 2] {
            timers.set(key, t0);
        }
        assert_eq!(timers.expire(t0).collect::<Vec<_>>(), vec![1, 2, 3]);
    }

    /// One operation on a set of timers: keys 0..40 and deadlines 0..100 ms, so
    /// a run crosses the point where the set changes representation (16
    /// timers) both ways.
    #[derive(Clone, Debug)]
    enum Op {
        Set(u8, u64),
        Stop(u8),
        Expire(u64),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            6 => (0u8..40, 0u64..100).prop_map(|(k, ms)| Op::Set(k, ms)),
            2 => (0u8..40).prop_map(Op::Stop),
            1 => (0u64..100).prop_map(Op::Expire),
        ]
    }

    proptest::proptest! {
        /// Whether a handful or dozens are set, timers behave exactly like a
        /// plain map of name to deadline read in (deadline, name) order.
        #[test]
        fn timers_agree_with_a_plain_map_at_any_size(ops in proptest::collection::vec(op(), 1..300)) {
            use std::collections::BTreeMap;
            let t0 = Duration::from_secs(1000);
            let at = |ms| t0 + Duration::from_millis(ms);
            let mut timers: Timers<_, Duration> = Timers::default();
            let mut model: BTreeMap<u8, Duration> = BTreeMap::new();
            let earliest = |model: &BTreeMap<u8, Duration>| model.iter().map(|(k, t)| (*t, *k)).min();
            for op in ops {
                match op {
                    Op::Set(k, ms) => {
                        timers.set(k, at(ms));
                        model.insert(k, at(ms));
                    }
                    Op::Stop(k) => {
                        timers.stop(&k);
                        model.remove(&k);
                    }
                    Op::Expire(ms) => {
                        let mut due: Vec<(Duration, u8)> =
                            model.iter().filter(|(_, t)| **t <= at(ms)).map(|(k, t)| (*t, *k)).collect();
                        due.sort();
                        model.retain(|_, t| *t > at(ms));
                        let due: Vec<u8> = due.into_iter().map(|(_, k)| k).collect();
                        proptest::prop_assert_eq!(timers.expire(at(ms)).collect::<Vec<_>>(), due);
                    }
                }
                proptest::prop_assert_eq!(timers.next(), earliest(&model).map(|(t, k)| (k, t)));
                for k in 0..40 {
                    proptest::prop_assert_eq!(timers.get(&k), model.get(&k).copied());
                }
            }
        }
    }
}
