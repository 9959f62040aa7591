//! Each peer's view of a session's path, and how long two views differed.
//!
//! A session has two members, and each decides on its own when the path is
//! direct (its first authenticated probe ack) and when it is dead (its
//! liveness rule). The report must not take one side's word for both: it
//! keeps both views and says when they differ.

use std::time::Duration;

/// One peer's view of one session's path, as its client's events tell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PathView {
    /// On a direct path (`PathDirect`).
    Direct,
    /// On the relay (`SessionOpened`, `PathFellBack`).
    Relay,
    /// The session ended at this peer (`SessionClosed`).
    Closed,
}

/// One peer's view of one session, from its `SessionOpened` on: the
/// initiator's and the responder's alike.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SessionView {
    /// Each change of the peer's path, in order; the first is the opening
    /// (on the relay: sessions are relay-first).
    changes: Vec<(Duration, PathView)>,
    /// `PathFellBack` events.
    fallbacks: u32,
}

impl SessionView {
    /// A session that opened, on the relay, at `at`.
    pub(crate) fn opened(at: Duration) -> SessionView {
        SessionView { changes: vec![(at, PathView::Relay)], fallbacks: 0 }
    }

    /// The peer's path changed at `at` (a later time than the last change,
    /// or the same).
    pub(crate) fn change(&mut self, at: Duration, view: PathView) {
        self.changes.push((at, view));
    }

    /// The peer fell back to the relay at `at` (`PathFellBack`).
    pub(crate) fn fell_back(&mut self, at: Duration) {
        self.fallbacks += 1;
        self.change(at, PathView::Relay);
    }

    /// The peer's view after its last change.
    pub(crate) fn last(&self) -> PathView {
        self.changes.last().map_or(PathView::Relay, |&(_, v)| v)
    }

    /// Times the peer fell back to the relay (`PathFellBack`).
    pub(crate) fn fallbacks(&self) -> u32 {
        self.fallbacks
    }
}

/// How long, up to `end`, exactly one of two views was `Direct`, counted
/// from the moment both peers had the session. That is the time the two
/// members disagreed about whether the path is direct: one on the direct
/// path while the other is on the relay, or while the other has closed the
/// session. A short window at every migration is real (the second side
/// learns of the path one message later) and is counted like the rest.
pub(crate) fn disagreement(a: &SessionView, b: &SessionView, end: Duration) -> Duration {
    let mut changes: Vec<(Duration, bool, PathView)> =
        a.changes.iter().map(|&(t, v)| (t, true, v)).chain(b.changes.iter().map(|&(t, v)| (t, false, v))).collect();
    // Stable: each view's changes at one instant keep their order.
    changes.sort_by_key(|c| c.0);
    let differ = |x: Option<PathView>, y: Option<PathView>| match (x, y) {
        (Some(x), Some(y)) => (x == PathView::Direct) != (y == PathView::Direct),
        _ => false,
    };
    let (mut va, mut vb) = (None, None);
    let (mut since, mut total) = (Duration::ZERO, Duration::ZERO);
    for (at, of_a, view) in changes {
        let at = at.min(end);
        if differ(va, vb) {
            total += at.saturating_sub(since);
        }
        since = at;
        if of_a {
            va = Some(view);
        } else {
            vb = Some(view);
        }
    }
    if differ(va, vb) {
        total += end.saturating_sub(since);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn view(changes: &[(u64, PathView)]) -> SessionView {
        let mut v = SessionView::opened(ms(changes[0].0));
        for w in changes.windows(2) {
            match w {
                [(_, Direct), (at, Relay)] => v.fell_back(ms(*at)),
                [_, (at, p)] => v.change(ms(*at), *p),
                _ => unreachable!("windows of two"),
            }
        }
        v
    }

    use PathView::*;

    #[test]
    fn two_views_that_migrate_one_message_apart_disagree_for_that_message() {
        // Given alice direct at 1,000 ms and bob at 1,020 ms, both to the end,
        let alice = view(&[(100, Relay), (1000, Direct)]);
        let bob = view(&[(120, Relay), (1020, Direct)]);
        // then they disagreed for 20 ms, whichever is asked first.
        assert_eq!(disagreement(&alice, &bob, ms(5000)), ms(20));
        assert_eq!(disagreement(&bob, &alice, ms(5000)), ms(20));
    }

    #[test]
    fn a_side_that_never_notices_disagrees_until_the_end() {
        // Given both direct, then bob falls back at 20 s and alice never does,
        let alice = view(&[(0, Relay), (1000, Direct)]);
        let bob = view(&[(0, Relay), (1000, Direct), (20_000, Relay)]);
        // then they disagree from 20 s to the end of the run, 60 s;
        assert_eq!(disagreement(&alice, &bob, ms(60_000)), ms(40_000));
        // and bob's fall back is counted once.
        assert_eq!((alice.fallbacks(), bob.fallbacks()), (0, 1));
    }

    #[test]
    fn the_count_starts_when_both_have_the_session() {
        // Given alice direct before bob even opened the session (he never
        // goes direct),
        let alice = view(&[(0, Relay), (500, Direct)]);
        let bob = view(&[(2000, Relay)]);
        // then only the time since bob's opening counts.
        assert_eq!(disagreement(&alice, &bob, ms(3000)), ms(1000));
    }

    #[test]
    fn relay_against_closed_is_no_disagreement_but_direct_against_closed_is() {
        let alice = view(&[(0, Relay), (1000, Direct), (4000, Closed)]);
        let bob = view(&[(0, Relay), (1000, Direct), (3000, Closed)]);
        assert_eq!(disagreement(&alice, &bob, ms(10_000)), ms(1000));
        let carol = view(&[(0, Relay), (3000, Closed)]);
        let dave = view(&[(0, Relay)]);
        assert_eq!(disagreement(&carol, &dave, ms(10_000)), Duration::ZERO);
    }

    #[test]
    fn changes_after_the_end_and_at_the_same_instant_count_right() {
        // A flap within one instant adds nothing; nothing past `end` counts.
        let alice = view(&[(0, Relay), (1000, Direct), (1000, Relay), (1000, Direct)]);
        let bob = view(&[(0, Relay), (1000, Direct), (9000, Relay)]);
        assert_eq!(disagreement(&alice, &bob, ms(5000)), Duration::ZERO);
        assert_eq!(alice.fallbacks(), 1);
    }
}
