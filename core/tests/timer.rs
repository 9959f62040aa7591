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
