//! Running the world's parts side by side, window by window.
//!
//! The world's parts (`engine::inbox::Part`) are a few groups of peer hosts
//! and the network. Every datagram between a host and the network crosses
//! the host's link, and no link delivers sooner than its latency minus its
//! jitter. Call the shortest such delay over all links the lookahead `L`.
//! An event at time `t` in one part therefore creates events for another no
//! earlier than `t + L`, so within a window `[start, start + L)` each part
//! depends on nothing the others do in that window: they can run it at the
//! same time, and hand over what they scheduled for each other when all are
//! done (conservative synchronisation, in the terms of parallel
//! discrete-event simulation).
//!
//! Traffic in a world comes in waves (every host logs in at once, then every
//! reply arrives at once), so a window is often nearly all network work or
//! all host work. The network cannot be split (a datagram crosses a NAT, the
//! internet and the server in one instant), but the hosts can: with the
//! hosts in groups, two threads share a window of host work, while in a
//! window of network work one runs the network and the other what little
//! host work there is.
//!
//! What runs where never changes what happens: each part processes its
//! events in the order of `engine::inbox`, which does not depend on when
//! the other parts' events were handed over, and the trace takes the parts'
//! lines in by time, then part (`engine::trace`). One thread or two, the
//! same seed gives the same bytes.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// A part of the world, as the window runner drives it.
pub(super) trait RunTo {
    /// Processes every event due at or before `end`.
    fn run_to(&mut self, end: Duration);
}

/// Runs `parts` window after window until `plan` returns `None`. Before
/// each window `plan` sees every part (to hand over events and take in the
/// trace) and returns the window's last instant.
///
/// With `threads >= 2` a helper shares each window's parts with the calling
/// thread: the helper takes them from the front of the list and the caller
/// from the back, until none is left (so put the longest part first). Each
/// part then mostly stays on one core from window to window, its state in
/// that core's cache, and only the parts in the middle move to balance the
/// load. The helper is a thread of a pool that outlives the run (its
/// allocator's memory stays warm from run to run). The caller never waits
/// for the helper to start: if it is late, or never comes, the caller takes
/// every part itself.
pub(super) fn run_windows<T: RunTo + Send>(
    mut parts: impl AsMut<[T]> + IntoIterator<Item = T>,
    threads: usize,
    mut plan: impl FnMut(&mut [&mut T]) -> Option<Duration> + Send,
) {
    if threads < 2 {
        loop {
            let mut all: Inline<&mut T> = parts.as_mut().iter_mut().collect();
            let Some(end) = plan(&mut all) else { break };
            for part in all {
                part.run_to(end);
            }
        }
        return;
    }
    let parts: Vec<Mutex<T>> = parts.into_iter().map(Mutex::new).collect();
    let shared = Shared::default();
    rayon_core::scope(|scope| {
        scope.spawn(|_| shared.help(&parts));
        // However this loop ends (a panic included), the helper stops.
        let _stop = OnDrop(|| shared.stop.store(true, SeqCst));
        loop {
            let end = {
                let mut guards: Inline<MutexGuard<'_, T>> = parts.iter().map(lock).collect();
                let mut all: Inline<&mut T> = guards.iter_mut().map(|guard| &mut **guard).collect();
                plan(&mut all)
            };
            let Some(end) = end else { break };
            let window = shared.publish(end, parts.len());
            while let Some(part) = shared.take(window, End::Back) {
                lock(&parts[part]).run_to(end);
            }
            if !shared.wait_for_helper() {
                // The helper panicked: the scope re-raises its panic.
                break;
            }
        }
    });
}

/// One item per part, held inline for a world of a few parts (they are
/// gathered once per window).
type Inline<T> = smallvec::SmallVec<[T; 8]>;

/// A part's lock. Only one thread ever wants it at a time (a part is taken
/// once per window, and the plan runs between windows); a poisoned lock
/// means a part panicked, which the scope reports, so its data is taken as
/// it is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the two threads share: the window's parts not yet taken (with the
/// window's number, see [`Untaken`]), its end, and how many parts the helper
/// is running.
#[derive(Default)]
struct Shared {
    untaken: AtomicU64,
    end: AtomicU64,
    helper_busy: AtomicUsize,
    helper_panicked: AtomicBool,
    stop: AtomicBool,
}

impl Shared {
    /// Opens the next window, ending at `end`, with `parts` parts; returns
    /// its number.
    fn publish(&self, end: Duration, parts: usize) -> u32 {
        let window = Untaken::window(self.untaken.load(SeqCst)).wrapping_add(1);
        self.end.store(u64::try_from(end.as_nanos()).unwrap_or(u64::MAX), SeqCst);
        self.untaken.store(Untaken::all(window, parts), SeqCst);
        window
    }

    /// Takes the next part of window `window` not yet taken, from `end` of
    /// the list, if any.
    fn take(&self, window: u32, end: End) -> Option<usize> {
        let mut current = self.untaken.load(SeqCst);
        loop {
            if Untaken::window(current) != window {
                return None;
            }
            let (part, rest) = Untaken::take(current, end)?;
            match self.untaken.compare_exchange_weak(current, rest, SeqCst, SeqCst) {
                Ok(_) => return Some(part),
                Err(now) => current = now,
            }
        }
    }

    /// The helper's loop: for each new window, take parts from the front
    /// until none is left, until told to stop.
    fn help<T: RunTo>(&self, parts: &[Mutex<T>]) {
        let mut seen = Untaken::window(self.untaken.load(SeqCst));
        let mut backoff = Backoff::default();
        while !self.stop.load(SeqCst) {
            let window = Untaken::window(self.untaken.load(SeqCst));
            if window == seen {
                backoff.wait();
                continue;
            }
            backoff = Backoff::default();
            seen = window;
            // The end read here belongs to `window` unless the main thread
            // has moved on, and then no part of `window` is left to take.
            let end = Duration::from_nanos(self.end.load(SeqCst));
            loop {
                // Busy before taking, so that the main thread, seeing no
                // part left, also sees this one still running.
                self.helper_busy.fetch_add(1, SeqCst);
                let guard = OnDrop(|| {
                    if std::thread::panicking() {
                        self.helper_panicked.store(true, SeqCst);
                    }
                    self.helper_busy.fetch_sub(1, SeqCst);
                });
                let Some(part) = self.take(window, End::Front) else { break };
                lock(&parts[part]).run_to(end);
                drop(guard);
            }
        }
    }

    /// Waits until the helper runs no part; false if it panicked.
    fn wait_for_helper(&self) -> bool {
        let mut backoff = Backoff::default();
        while self.helper_busy.load(SeqCst) > 0 {
            if self.helper_panicked.load(SeqCst) {
                return false;
            }
            backoff.wait();
        }
        !self.helper_panicked.load(SeqCst)
    }
}

/// Which end of a window's list of parts a thread takes from.
#[derive(Clone, Copy)]
enum End {
    Front,
    Back,
}

/// A window's parts not yet taken, `front..back`, with the window's number,
/// packed in one word (number, then `back`, then `front`) so that taking
/// from either end is one compare-and-swap, and a thread that is late for
/// a window can take nothing from the next.
struct Untaken;

impl Untaken {
    fn all(window: u32, parts: usize) -> u64 {
        let parts = u64::try_from(parts).ok().filter(|&p| p <= 0xffff).expect("at most 65,535 parts");
        (u64::from(window) << 32) | (parts << 16)
    }

    fn window(untaken: u64) -> u32 {
        (untaken >> 32) as u32
    }

    /// The part taken from `end` of `untaken`, and what is left.
    fn take(untaken: u64, end: End) -> Option<(usize, u64)> {
        let (front, back) = (untaken & 0xffff, (untaken >> 16) & 0xffff);
        if front >= back {
            return None;
        }
        let window = untaken & !0xffff_ffff;
        Some(match end {
            End::Front => (front as usize, window | (back << 16) | (front + 1)),
            End::Back => ((back - 1) as usize, window | ((back - 1) << 16) | front),
        })
    }
}

/// Spins briefly (a window lasts tens of microseconds), then yields the
/// core, so a waiting thread never starves the one it waits for when both
/// share a core.
#[derive(Default)]
struct Backoff(u32);

impl Backoff {
    const SPINS: u32 = 1 << 12;

    fn wait(&mut self) {
        if self.0 < Self::SPINS {
            self.0 += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// Runs a closure when dropped, unwinding included.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A part that logs the windows it ran.
    struct Log(Vec<Duration>);

    impl RunTo for Log {
        fn run_to(&mut self, end: Duration) {
            self.0.push(end);
        }
    }

    impl RunTo for &mut Log {
        fn run_to(&mut self, end: Duration) {
            (**self).run_to(end);
        }
    }

    #[test]
    fn every_part_runs_every_window_the_plan_gives_on_one_thread_or_two() {
        for threads in [1, 2] {
            // Given five parts and a plan of five windows,
            let mut logs: Vec<Log> = (0..5).map(|_| Log(Vec::new())).collect();
            let mut planned = 0u64;
            run_windows(logs.iter_mut().collect::<Vec<_>>(), threads, |parts| {
                // when each window is planned, then every part finished the
                // last one.
                for part in parts.iter() {
                    assert_eq!(part.0.len() as u64, planned);
                }
                planned += 1;
                (planned <= 5).then(|| Duration::from_millis(planned))
            });
            let want: Vec<Duration> = (1..=5).map(Duration::from_millis).collect();
            for log in &logs {
                assert_eq!(log.0, want, "{threads} threads");
            }
        }
    }

    #[test]
    fn the_two_ends_take_every_part_exactly_once() {
        // Given five untaken parts,
        let mut untaken = Untaken::all(7, 5);
        let mut taken = Vec::new();
        // when the ends take in turn until none is left,
        for end in [End::Front, End::Back].into_iter().cycle() {
            let Some((part, rest)) = Untaken::take(untaken, end) else { break };
            taken.push(part);
            untaken = rest;
        }
        // then each part was taken once, the front ones from the front.
        assert_eq!(taken, [0, 4, 1, 3, 2]);
        assert_eq!(Untaken::take(untaken, End::Front), None);
        assert_eq!(Untaken::take(untaken, End::Back), None);
        assert_eq!(Untaken::take(Untaken::all(8, 0), End::Back), None);
        assert_eq!(Untaken::window(untaken), 7, "taking keeps the window's number");
    }

    struct Panics;

    impl RunTo for Panics {
        fn run_to(&mut self, _: Duration) {
            panic!("a part fails");
        }
    }

    #[test]
    fn a_panic_in_a_part_reaches_the_caller_instead_of_hanging() {
        let result = std::panic::catch_unwind(|| {
            let mut windows = 0;
            run_windows(vec![Panics, Panics], 2, |_| {
                windows += 1;
                (windows < 1000).then_some(Duration::ZERO)
            });
        });
        assert!(result.is_err());
    }
}
