//! Replay protection for sealed datagrams, as IPsec's anti-replay window
//! (RFC 4303 §3.4.3) with RFC 6479's order: a counter is checked before its
//! datagram is decrypted and marked once it authenticated.

/// Remembers which counters were seen, so each is accepted once.
///
/// Counters far below the highest seen (more than [`ReplayWindow::WIDTH`]
/// back) are refused, like IPsec's anti-replay window (RFC 4303 §3.4.3).
#[derive(Clone, Debug, Default)]
pub struct ReplayWindow {
    highest: Option<u64>,
    /// Bit i set: counter `highest - i` seen.
    seen: u128,
}

impl ReplayWindow {
    /// How far back out-of-order counters are still accepted.
    pub const WIDTH: u64 = 128;

    /// True when `counter` would be accepted: not seen, and not fallen out
    /// of the window. Changes nothing: check before decrypting, then
    /// [`mark`](Self::mark) once the frame authenticated (RFC 6479 §2), so
    /// that a forged frame cannot move the window.
    pub fn check(&self, counter: u64) -> bool {
        match self.highest {
            None => true,
            Some(highest) if counter > highest => true,
            Some(highest) => {
                let back = highest - counter;
                back < Self::WIDTH && self.seen & (1 << back) == 0
            }
        }
    }

    /// Marks `counter` seen (after its frame authenticated).
    pub fn mark(&mut self, counter: u64) {
        self.accept(counter);
    }

    /// Accepts `counter` once: true the first time, false for replays and for
    /// counters that fell out of the window.
    pub fn accept(&mut self, counter: u64) -> bool {
        let Some(highest) = self.highest else {
            self.highest = Some(counter);
            self.seen = 1;
            return true;
        };
        if counter > highest {
            let shift = counter - highest;
            self.seen = if shift >= Self::WIDTH { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.highest = Some(counter);
            true
        } else {
            let back = highest - counter;
            if back >= Self::WIDTH || self.seen & (1 << back) != 0 {
                return false;
            }
            self.seen |= 1 << back;
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_window_accepts_each_counter_once() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(5));
        assert!(!w.accept(5));
        assert!(w.accept(3));
        assert!(w.accept(200));
        assert!(!w.accept(3), "fell out of the window");
        assert!(w.accept(199));
        assert!(!w.accept(199));
        assert!(w.accept(200 - 127));
        assert!(!w.accept(200 - 128));
    }

    #[test]
    fn checking_changes_nothing_and_marking_accepts() {
        // Given a window that saw 10,
        let mut w = ReplayWindow::default();
        assert!(w.check(10));
        w.mark(10);
        // when 500 is only checked (a forged frame's counter), then the
        // window did not move: 10 is still a replay and 9 still fits.
        assert!(w.check(500));
        assert!(!w.check(10) && w.check(9));
        w.mark(9);
        assert!(!w.check(9));
    }
}
