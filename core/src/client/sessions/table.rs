//! A client's sessions, by id.
//!
//! A client holds one or two sessions at a time, and every datagram from a
//! peer and every timeout looks one up. A `BTreeMap` keeps even a single
//! entry in a separate node whose key, value and length sit on three cache
//! lines; here up to [`INLINE`] entries live inside the client itself, sorted
//! by id, so walks go in id order as before.

use smallvec::SmallVec;

use crate::wire::frame::SessionId;

/// Sessions kept inside the client before the table moves to the heap.
const INLINE: usize = 2;

/// Sessions by id, in id order: the part of `BTreeMap`'s interface the
/// client uses. Generic over the value so tests can check it against a
/// `BTreeMap` without building sessions.
#[derive(Debug)]
pub(crate) struct Sessions<V> {
    /// Sorted by id, ids unique.
    entries: SmallVec<[(SessionId, V); INLINE]>,
}

impl<V> Default for Sessions<V> {
    fn default() -> Self {
        Sessions { entries: SmallVec::new() }
    }
}

impl<V> Sessions<V> {
    fn find(&self, id: &SessionId) -> Result<usize, usize> {
        self.entries.binary_search_by_key(id, |(key, _)| *key)
    }

    pub(crate) fn get(&self, id: &SessionId) -> Option<&V> {
        let at = self.find(id).ok()?;
        Some(&self.entries[at].1)
    }

    #[cfg(test)]
    pub(crate) fn contains_key(&self, id: &SessionId) -> bool {
        self.find(id).is_ok()
    }

    pub(crate) fn get_mut(&mut self, id: &SessionId) -> Option<&mut V> {
        let at = self.find(id).ok()?;
        Some(&mut self.entries[at].1)
    }

    /// Adds or replaces session `id`, returning the one it replaced.
    pub(crate) fn insert(&mut self, id: SessionId, session: V) -> Option<V> {
        match self.find(&id) {
            Ok(at) => Some(std::mem::replace(&mut self.entries[at].1, session)),
            Err(at) => {
                self.entries.insert(at, (id, session));
                None
            }
        }
    }

    pub(crate) fn remove(&mut self, id: &SessionId) -> Option<V> {
        let at = self.find(id).ok()?;
        Some(self.entries.remove(at).1)
    }

    /// The ids, in order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &SessionId> {
        self.entries.iter().map(|(id, _)| id)
    }

    /// The sessions, in id order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, session)| session)
    }

    /// The sessions, in id order.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.entries.iter_mut().map(|(_, session)| session)
    }

    /// Ids and sessions, in id order.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (&SessionId, &mut V)> {
        self.entries.iter_mut().map(|(id, session)| (&*id, session))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Given any inserts, replacements and removals over more ids than
        /// fit inline, the table answers and walks exactly as a `BTreeMap`.
        #[test]
        fn the_table_agrees_with_a_btree_map(
            ops in prop::collection::vec((0u64..6, any::<bool>(), any::<u16>()), 1..100),
        ) {
            let mut table: Sessions<u16> = Sessions::default();
            let mut reference = BTreeMap::new();
            for (id, insert, value) in ops {
                let id = SessionId(id);
                if insert {
                    prop_assert_eq!(table.insert(id, value), reference.insert(id, value));
                } else {
                    prop_assert_eq!(table.remove(&id), reference.remove(&id));
                }
                for id in (0..6).map(SessionId) {
                    prop_assert_eq!(table.get(&id), reference.get(&id));
                    prop_assert_eq!(table.contains_key(&id), reference.contains_key(&id));
                }
                prop_assert!(table.keys().eq(reference.keys()));
                prop_assert!(table.values().eq(reference.values()));
                if let Some(v) = table.values_mut().next() {
                    *v = v.wrapping_add(1);
                    let first = reference.values_mut().next().expect("same length");
                    *first = first.wrapping_add(1);
                }
                prop_assert!(table.iter_mut().map(|(k, v)| (*k, *v)).eq(reference.iter_mut().map(|(k, v)| (*k, *v))));
                if let Some(v) = table.get_mut(&SessionId(3)) {
                    *v = 7;
                    reference.insert(SessionId(3), 7);
                }
            }
        }
    }
}
