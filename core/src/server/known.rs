//! Names known to exist: a bounded cache in front of the store.
//!
//! A name exists once its user proved an address at login (and it is then
//! written to the store); the store answers for names not cached. The cache
//! only spares store reads, so it is bounded: at [`MAX_KNOWN_NAMES`] the name
//! cached first is forgotten (its next lookup reads the store again). Only
//! names a completed login or the store vouched for enter it, never a name
//! an unproven (possibly spoofed) login merely claimed.

use std::collections::{BTreeSet, VecDeque};

/// The most names cached; about 10 MB at 64-byte names.
pub(crate) const MAX_KNOWN_NAMES: usize = 100_000;

#[derive(Debug)]
pub(super) struct KnownNames {
    names: BTreeSet<String>,
    /// The same names, oldest first: the eviction order.
    order: VecDeque<String>,
    capacity: usize,
}

impl KnownNames {
    pub(super) fn new(capacity: usize) -> Self {
        KnownNames { names: BTreeSet::new(), order: VecDeque::new(), capacity: capacity.max(1) }
    }

    pub(super) fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// Caches `name`, forgetting the oldest name when full.
    pub(super) fn insert(&mut self, name: String) {
        if self.names.contains(&name) {
            return;
        }
        if self.names.len() >= self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.names.remove(&oldest);
            }
        }
        self.names.insert(name.clone());
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
        known.insert("alice".into());
        known.insert("bob".into());
        known.insert("bob".into());
        // when a third arrives, then the first is forgotten, the others kept.
        known.insert("carol".into());
        assert!(!known.contains("alice"));
        assert!(known.contains("bob") && known.contains("carol"));
        assert_eq!((known.names.len(), known.order.len()), (2, 2));
    }
}
