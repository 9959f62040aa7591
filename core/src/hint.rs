//! A cache-line prefetch hint, for drivers that know which machine they
//! will drive next (the simulator does: see `Simulation::warm_next` in
//! `punchline-sim`), and for [`Client::prefetch`](crate::client::Client::prefetch).
//!
//! It is x86's `prefetcht0`, through `safe_arch`'s safe wrapper so the core
//! stays free of `unsafe`; on other targets it does nothing. A hint has no
//! effect on any value a program reads, so it keeps the core deterministic.

/// Asks the CPU to start loading the cache line that holds the start of
/// `value` into every cache level, without waiting for it.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    #[cfg(all(any(target_arch = "x86", target_arch = "x86_64"), target_feature = "sse"))]
    safe_arch::prefetch_t0(value);
    #[cfg(not(all(any(target_arch = "x86", target_arch = "x86_64"), target_feature = "sse")))]
    let _ = value;
}
