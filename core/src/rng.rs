//! Deterministic randomness: one seed, a tree of child generators.
//!
//! The core never asks the operating system for randomness (DESIGN §2). Every
//! machine takes a seed in its config; each consumer (a session, the token
//! generator, ...) forks a child generator with a label, so adding a consumer
//! does not shift the numbers another one sees. Private: an embedder only
//! chooses the [`Seed`].

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};

/// What a machine's randomness grows from: 256 bits of entropy, or a small
/// number for reproducible runs.
///
/// A deployed client or server takes [`Seed::from_entropy`] with 32 bytes
/// from the operating system (the `punchline` and `punchline-server`
/// binaries do): its keys, tokens and ids are then as hard to guess as a
/// 256-bit key. A number (`Seed::from(7)`) gives the same bytes on every
/// run, for the simulator and tests, and is as guessable as the number:
/// never deploy with one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Seed(SeedKind);

#[derive(Clone, Copy, PartialEq, Eq)]
enum SeedKind {
    Number(u64),
    Entropy([u8; 32]),
}

impl Seed {
    /// A seed from 32 bytes of OS entropy.
    pub fn from_entropy(bytes: [u8; 32]) -> Self {
        Seed(SeedKind::Entropy(bytes))
    }
}

impl From<u64> for Seed {
    fn from(number: u64) -> Self {
        Seed(SeedKind::Number(number))
    }
}

impl Default for Seed {
    fn default() -> Self {
        Seed::from(0)
    }
}

impl std::fmt::Debug for Seed {
    /// A number shows; entropy does not (it keys every secret).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            SeedKind::Number(n) => write!(f, "Seed({n})"),
            SeedKind::Entropy(_) => f.write_str("Seed(<entropy>)"),
        }
    }
}

/// ChaCha20 (RFC 8439) as a deterministic generator: every key, token,
/// session id and nonce the core makes comes from it. Its outputs do not
/// reveal its state, so a peer that sees many of them (ids, keys in its own
/// offers) cannot predict the next ones. Its 256-bit key is SHA-256 of the
/// [`Seed`]: of the OS entropy a runtime passes, or of a number.
#[derive(Clone, Debug)]
pub(crate) struct Rng {
    inner: ChaCha20Rng,
}

impl Rng {
    /// A generator for `seed`.
    pub(crate) fn new(seed: impl Into<Seed>) -> Self {
        match seed.into().0 {
            SeedKind::Number(n) => Rng::from_key(derive_key(b"punchline rng seed", &n.to_le_bytes())),
            SeedKind::Entropy(bytes) => Rng::from_key(derive_key(b"punchline rng entropy", &bytes)),
        }
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
    fn an_entropy_seed_is_reproducible_distinct_from_numbers_and_never_printed() {
        // Given the same 32 bytes twice, then the same stream;
        let bytes = [7u8; 32];
        let (mut a, mut b) = (Rng::new(Seed::from_entropy(bytes)), Rng::new(Seed::from_entropy(bytes)));
        assert_eq!(a.next_u64(), b.next_u64());
        // a number and other bytes key other streams;
        assert_ne!(Rng::new(Seed::from_entropy(bytes)).next_u64(), Rng::new(7u64).next_u64());
        assert_ne!(Rng::new(Seed::from_entropy(bytes)).next_u64(), Rng::new(Seed::from_entropy([8; 32])).next_u64());
        // and a debug print never shows the entropy.
        assert_eq!(format!("{:?}", Seed::from_entropy(bytes)), "Seed(<entropy>)");
        assert_eq!(format!("{:?}", Seed::from(7)), "Seed(7)");
    }

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
