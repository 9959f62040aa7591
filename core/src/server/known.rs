//! Names known to exist, with the key each is bound to: a bounded cache in
//! front of the store.
//!
//! A name exists once a login under it completed (its client proved its
//! key and that it receives at its address); it is then bound to that key
//! in the store, for good (trust on first use). The store answers for names
//! not cached. The cache only spares store reads, so it is bounded: at
//! [`MAX_KNOWN_NAMES`] the name cached first is forgotten (its next lookup
//! reads the store again). Only names a completed login or the store
//! vouched for enter it, never a name a handshake merely claimed.

use std::collections::{BTreeMap, VecDeque};

use crate::secure::PublicKey;

/// The most names cached; about 13 MB at 64-byte names.
pub(crate) const MAX_KNOWN_NAMES: usize = 100_000;

#[derive(Debug)]
pub(super) struct KnownNames {
    names: BTreeMap<String, PublicKey>,
    /// The same names, oldest first: the eviction order.
    order: VecDeque<String>,
    capacity: usize,
}

impl KnownNames {
    pub(super) fn new(capacity: usize) -> Self {
        KnownNames { names: BTreeMap::new(), order: VecDeque::new(), capacity: capacity.max(1) }
    }

    pub(super) fn contains(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    /// The key `name` is bound to, when cached.
    pub(super) fn key(&self, name: &str) -> Option<PublicKey> {
        self.names.get(name).copied()
    }

    /// Caches `name`'s binding, forgetting the oldest name when full.
    pub(super) fn insert(&mut self, name: String, key: PublicKey) {
        if let Some(cached) = self.names.get_mut(&name) {
            *cached = key;
            return;
        }
        if self.names.len() >= self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.names.remove(&oldest);
            }
        }
        self.names.insert(name.clone(), key);
        self.order.push_back(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cache_forgets_the_name_it_learned_first() {
        // Given a cache of two names,
        let mut known = KnownNames::new(2);
        known.insert("alice".into(), PublicKey([1; 32]));
        known.insert("bob".into(), PublicKey([2; 32]));
        known.insert("bob".into(), PublicKey([2; 32]));
        // when a third arrives, then the first is forgotten, the others kept
        // with their keys.
        known.insert("carol".into(), PublicKey([3; 32]));
        assert!(!known.contains("alice"));
        assert_eq!(known.key("bob"), Some(PublicKey([2; 32])));
        assert!(known.contains("carol"));
        assert_eq!((known.names.len(), known.order.len()), (2, 2));
    }
}
