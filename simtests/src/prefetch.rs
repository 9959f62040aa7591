//! A cache-line prefetch hint, for the engine's one-event-ahead warm-up
//! (`Hosts::warm_next`, `Network::warm_next`): the simulator knows which
//! host or NAT it will drive next, and at a thousand hosts nearly every
//! line that event reads first is a miss.
//!
//! It is x86's `prefetcht0`, through `safe_arch`'s safe wrapper so the crate
//! stays free of `unsafe`; on other targets it does nothing. A hint has no
//! effect on any value a program reads, so the simulation stays
//! deterministic.

/// Asks the CPU to start loading the cache line that holds the start of
/// `value` into every cache level, without waiting for it.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(all(any(target_arch = "x86", target_arch = "x86_64"), target_feature = "sse"))]
    safe_arch::prefetch_t0(value);
    #[cfg(not(all(any(target_arch = "x86", target_arch = "x86_64"), target_feature = "sse")))]
    let _ = value;
}
