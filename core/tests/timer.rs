//! `Timers`: named deadlines, earliest first, ties in key order. Here and
//! not beside the code, because a test needs a real `Instant` to start
//! from, and the core's own sources never read the clock.

use std::time::{Duration, Instant};

use punchline_core::timer::Timers;

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
    assert_eq!(timers.expire(at(30)).collect::<Vec<_>>(), vec!["b", "e", "c"]);
    // and only a is left; retain can remove it.
    assert_eq!(timers.next(), Some(("a", at(40))));
    timers.retain(|k| *k != "a");
    assert_eq!(timers.next(), None);
    assert_eq!(timers.expire(at(1000)).next(), None);
}

#[test]
fn timers_due_at_the_same_instant_fire_in_key_order() {
    let t0 = Instant::now();
    let mut timers = Timers::default();
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
    RetainOdd,
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        6 => (0u8..40, 0u64..100).prop_map(|(k, ms)| Op::Set(k, ms)),
        2 => (0u8..40).prop_map(Op::Stop),
        1 => (0u64..100).prop_map(Op::Expire),
        1 => Just(Op::RetainOdd),
    ]
}

proptest::proptest! {
    /// Whether a handful or dozens are set, timers behave exactly like a
    /// plain map of name to deadline read in (deadline, name) order.
    #[test]
    fn timers_agree_with_a_plain_map_at_any_size(ops in proptest::collection::vec(op(), 1..300)) {
        use std::collections::BTreeMap;
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut timers = Timers::default();
        let mut model: BTreeMap<u8, Instant> = BTreeMap::new();
        let earliest = |model: &BTreeMap<u8, Instant>| model.iter().map(|(k, t)| (*t, *k)).min();
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
                    let mut due: Vec<(Instant, u8)> =
                        model.iter().filter(|(_, t)| **t <= at(ms)).map(|(k, t)| (*t, *k)).collect();
                    due.sort();
                    model.retain(|_, t| *t > at(ms));
                    let due: Vec<u8> = due.into_iter().map(|(_, k)| k).collect();
                    proptest::prop_assert_eq!(timers.expire(at(ms)).collect::<Vec<_>>(), due);
                }
                Op::RetainOdd => {
                    timers.retain(|k| k % 2 == 1);
                    model.retain(|k, _| k % 2 == 1);
                }
            }
            proptest::prop_assert_eq!(timers.next(), earliest(&model).map(|(t, k)| (k, t)));
            for k in 0..40 {
                proptest::prop_assert_eq!(timers.get(&k), model.get(&k).copied());
            }
        }
    }
}
