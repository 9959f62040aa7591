//! A fast, deterministic hash map for the simulator's lookup tables.
//!
//! The NAT model looks up mappings, conntrack entries and permissions on
//! every packet; ordered maps keyed by socket addresses made that a large
//! share of a run. These tables are only ever probed by key (the one loop
//! over a table, [`crate::nat`]'s sequential-allocator shift, updates every
//! entry alike), so their iteration order never reaches an output. The
//! hasher has no random state, as the simulator uses no OS randomness: the
//! same run does the same work.
//!
//! The mixing step is rustc's "Fx" hash: a rotate, an xor and a multiply
//! per word. Weak against chosen keys, which a simulation does not face.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` with [`FxHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// rustc's Fx hasher: fast on small keys, deterministic.
#[derive(Clone, Copy, Default)]
pub(crate) struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, Hash};
    use std::net::SocketAddr;

    fn hash<T: Hash>(value: &T) -> u64 {
        BuildHasherDefault::<FxHasher>::default().hash_one(value)
    }

    #[test]
    fn the_same_key_always_hashes_alike_and_neighbours_differ() {
        // Given two addresses one port apart,
        let a: SocketAddr = "198.51.100.2:4000".parse().unwrap();
        let b: SocketAddr = "198.51.100.2:4001".parse().unwrap();
        // then each hashes the same every time (no random state) and apart
        // from the other, in the high bits the table uses too.
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        assert_ne!(hash(&a) >> 57, hash(&b) >> 57);
    }

    #[test]
    fn a_map_finds_every_key_it_holds() {
        let mut map = FastMap::default();
        for port in 0..5000u16 {
            map.insert(SocketAddr::from(([10, 0, 0, 2], port)), port);
        }
        assert!((0..5000u16).all(|p| map.get(&SocketAddr::from(([10, 0, 0, 2], p))) == Some(&p)));
        assert_eq!(map.get(&SocketAddr::from(([10, 0, 0, 3], 1))), None);
    }
}
