//! Deterministic randomness: one seed, a tree of child generators.
//!
//! The core never asks the operating system for randomness (DESIGN §2). Every
//! machine takes a seed in its config; each consumer (a session, the token
//! generator, ...) forks a child generator with a label, so adding a consumer
//! does not shift the numbers another one sees. Private: an embedder only
//! chooses the seed.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};

/// ChaCha20 (RFC 8439) as a deterministic generator: every key, token,
/// session id and nonce the core makes comes from it. Its outputs do not
/// reveal its state, so a peer that sees many of them (ids, keys in its own
/// offers) cannot predict the next ones. The 64-bit seed is expanded to the
/// 256-bit key by SHA-256; runtimes draw the seed from the operating system
/// (DESIGN §2).
#[derive(Clone, Debug)]
pub(crate) struct Rng {
    inner: ChaCha20Rng,
}

impl Rng {
    /// A generator for `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Rng::from_key(derive_key(b"punchline rng seed", &seed.to_le_bytes()))
    }

    fn from_key(key: [u8; 32]) -> Self {
        Rng { inner: ChaCha20Rng::from_seed(key) }
    }

    /// A child generator named by `label`, keyed by a hash of this
    /// generator's key and the label; forking does not advance `self`.
    pub(crate) fn fork(&self, label: u64) -> Rng {
        let mut input = self.inner.get_seed().to_vec();
        input.extend_from_slice(&label.to_le_bytes());
        Rng::from_key(derive_key(b"punchline rng fork", &input))
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// A uniformly distributed number in `0..bound` (`bound > 0`), without
    /// modulo bias (Lemire's method).
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0);
        let bound = bound.max(1);
        loop {
            let m = (self.next_u64() as u128) * (bound as u128);
            let low = m as u64;
            if low >= bound.wrapping_neg() % bound {
                return (m >> 64) as u64;
            }
        }
    }

    /// Fills `out` with random bytes.
    pub(crate) fn fill(&mut self, out: &mut [u8]) {
        self.inner.fill_bytes(out);
    }
}

/// A 256-bit key from `input`, separated by `domain`.
fn derive_key(domain: &[u8], input: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(domain);
    hash.update(input);
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_same_sequence_and_forks_are_independent() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        assert_eq!((a.next_u64(), a.next_u64()), (b.next_u64(), b.next_u64()));
        let parent = Rng::new(7);
        let mut c1 = parent.fork(1);
        let mut c2 = parent.fork(2);
        assert_ne!(c1.next_u64(), c2.next_u64());
        assert_eq!(parent.fork(1).next_u64(), Rng::new(7).fork(1).next_u64());
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = Rng::new(1);
        for bound in [1u64, 2, 3, 1000, u64::MAX] {
            for _ in 0..1000 {
                assert!(r.below(bound) < bound);
            }
        }
    }
}
