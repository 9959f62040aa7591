//! A map that keeps its first few entries inline, for the NAT's tables.
//!
//! A home NAT holds one or two mappings. In a [`FastMap`] even one lives in
//! a separate allocation, control bytes and bucket on lines of their own,
//! so every packet through a device that is cold in cache paid two or three
//! misses per table. Up to `N` entries here sit inside the owner and are
//! found by a short scan; past `N` they move to a [`FastMap`]. Like the
//! tables it replaces, it is only probed by key, never iterated, so no order
//! reaches an output.

use std::hash::Hash;

use smallvec::SmallVec;

use crate::fast_map::FastMap;

pub(crate) struct SmallMap<K, V, const N: usize> {
    repr: Repr<K, V, N>,
}

enum Repr<K, V, const N: usize> {
    Inline(SmallVec<[(K, V); N]>),
    Spilled(FastMap<K, V>),
}

impl<K: Eq + Hash, V, const N: usize> Default for SmallMap<K, V, N> {
    fn default() -> Self {
        SmallMap { repr: Repr::Inline(SmallVec::new()) }
    }
}

impl<K: Eq + Hash, V, const N: usize> SmallMap<K, V, N> {
    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        match &self.repr {
            Repr::Inline(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            Repr::Spilled(map) => map.get(key),
        }
    }

    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        match &mut self.repr {
            Repr::Inline(entries) => entries.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v),
            Repr::Spilled(map) => map.get_mut(key),
        }
    }

    pub(crate) fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// Adds or replaces `key`'s value, returning the one it replaced.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        match &mut self.repr {
            Repr::Inline(entries) => {
                if let Some((_, old)) = entries.iter_mut().find(|(k, _)| *k == key) {
                    return Some(std::mem::replace(old, value));
                }
                if entries.len() < N {
                    entries.push((key, value));
                    return None;
                }
                let mut map: FastMap<K, V> = entries.drain(..).collect();
                map.insert(key, value);
                self.repr = Repr::Spilled(map);
                None
            }
            Repr::Spilled(map) => map.insert(key, value),
        }
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        match &mut self.repr {
            Repr::Inline(entries) => {
                let at = entries.iter().position(|(k, _)| k == key)?;
                Some(entries.swap_remove(at).1)
            }
            Repr::Spilled(map) => map.remove(key),
        }
    }

    /// Empties the map, back to inline storage.
    pub(crate) fn clear(&mut self) {
        self.repr = Repr::Inline(SmallVec::new());
    }

    pub(crate) fn len(&self) -> usize {
        match &self.repr {
            Repr::Inline(entries) => entries.len(),
            Repr::Spilled(map) => map.len(),
        }
    }
}

impl<K: std::fmt::Debug, V: std::fmt::Debug, const N: usize> std::fmt::Debug for SmallMap<K, V, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.repr {
            Repr::Inline(entries) => f.debug_map().entries(entries.iter().map(|(k, v)| (k, v))).finish(),
            Repr::Spilled(map) => f.debug_map().entries(map.iter()).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Given any inserts, replacements, removals and clears over more
        /// keys than fit inline, the map answers as a `BTreeMap` would.
        #[test]
        fn the_map_agrees_with_a_btree_map(
            ops in prop::collection::vec((0u8..8, 0u8..4, any::<u16>()), 1..150),
        ) {
            let mut map: SmallMap<u8, u16, 2> = SmallMap::default();
            let mut reference = BTreeMap::new();
            for (key, op, value) in ops {
                match op {
                    0 | 1 => prop_assert_eq!(map.insert(key, value), reference.insert(key, value)),
                    2 => prop_assert_eq!(map.remove(&key), reference.remove(&key)),
                    _ if value % 16 == 0 => {
                        map.clear();
                        reference.clear();
                    }
                    _ => {
                        if let (Some(got), Some(want)) = (map.get_mut(&key), reference.get_mut(&key)) {
                            *got = value;
                            *want = value;
                        }
                    }
                }
                for key in 0..8 {
                    prop_assert_eq!(map.get(&key), reference.get(&key));
                    prop_assert_eq!(map.contains_key(&key), reference.contains_key(&key));
                }
                prop_assert_eq!(map.len(), reference.len());
            }
        }
    }
}
