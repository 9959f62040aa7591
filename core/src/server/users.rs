//! The online users, found by name or by session token.
//!
//! Every keepalive, relayed frame and text frame names its sender by token,
//! so the token lookup is the server's hottest: it compares `u64`s held
//! inside the index's nodes and reaches the user's record directly.
//!
//! Connecting, offering and relaying look users up by name, a dozen times
//! per session set up. An ordered map of names would compare the name
//! against a dozen others on the way down, each in a heap buffer of its
//! own: a cache miss per comparison once the server has a thousand users.
//! So lookups go through a hash of the name instead, ordered like the
//! tokens, and compare one string, the candidate's; the map of names is
//! kept only to walk the users in name order. Nothing depends on hash
//! order: the hash only picks which record to compare against, and a name
//! whose hash is taken is kept by name beside it.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};

/// The online users, each in one slot of a slab that the indexes point at.
#[derive(Debug)]
pub(super) struct Users<U> {
    slots: Vec<Option<Online<U>>>,
    /// Slots freed by users going offline, reused first.
    free: Vec<usize>,
    /// For walks in name order.
    by_name: BTreeMap<String, usize>,
    /// Hash of the name → slot, for lookups by name.
    by_name_hash: BTreeMap<u64, usize>,
    /// Names whose hash another online name held when they logged in
    /// (almost always none): found by the name itself.
    collided: BTreeMap<String, usize>,
    by_token: BTreeMap<u64, usize>,
    /// [`name_hash`], or in tests one that makes every name collide.
    hash: fn(&str) -> u64,
}

#[derive(Debug)]
struct Online<U> {
    name: String,
    token: u64,
    user: U,
}

/// The hash of a user name. SipHash with fixed keys (std's default hasher):
/// deterministic, and a collision costs a lookup one more string compare,
/// never a wrong answer. Names crafted to collide (the keys are public) all
/// land in the ordered side map, so they cost lookups a logarithm, not a
/// scan. The algorithm may change between Rust releases; nothing stored or
/// sent depends on it.
fn name_hash(name: &str) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one(name)
}

impl<U> Users<U> {
    pub(super) fn new() -> Self {
        Self::with_hash(name_hash)
    }

    fn with_hash(hash: fn(&str) -> u64) -> Self {
        Users {
            slots: Vec::new(),
            free: Vec::new(),
            by_name: BTreeMap::new(),
            by_name_hash: BTreeMap::new(),
            collided: BTreeMap::new(),
            by_token: BTreeMap::new(),
            hash,
        }
    }

    /// Adds `name`, known by `token`. The caller has taken any previous
    /// login of `name` offline and picked a token no one holds.
    pub(super) fn insert(&mut self, name: String, token: u64, user: U) {
        debug_assert!(self.slot_of(&name).is_none() && !self.by_token.contains_key(&token));
        let hash = (self.hash)(&name);
        let online = Some(Online { name: name.clone(), token, user });
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = online;
                slot
            }
            None => {
                self.slots.push(online);
                self.slots.len() - 1
            }
        };
        if let Entry::Vacant(free) = self.by_name_hash.entry(hash) {
            free.insert(slot);
        } else {
            self.collided.insert(name.clone(), slot);
        }
        self.by_name.insert(name, slot);
        self.by_token.insert(token, slot);
    }

    /// Takes `name` offline, returning its token and record.
    pub(super) fn remove(&mut self, name: &str) -> Option<(u64, U)> {
        let slot = self.slot_of(name)?;
        let online = self.slots[slot].take().expect("an indexed slot holds a user");
        self.by_name.remove(name);
        if self.collided.remove(name).is_none() {
            self.by_name_hash.remove(&(self.hash)(name));
        }
        self.by_token.remove(&online.token);
        self.free.push(slot);
        Some((online.token, online.user))
    }

    /// How many users are online.
    pub(super) fn len(&self) -> usize {
        self.by_name.len()
    }

    /// `name`'s record and the token of its channel.
    pub(super) fn get_with_token(&self, name: &str) -> Option<(u64, &U)> {
        let online = self.online(self.slot_of(name)?);
        Some((online.token, &online.user))
    }

    pub(super) fn contains(&self, name: &str) -> bool {
        self.slot_of(name).is_some()
    }

    pub(super) fn holds_token(&self, token: u64) -> bool {
        self.by_token.contains_key(&token)
    }

    pub(super) fn get(&self, name: &str) -> Option<&U> {
        self.slot_of(name).map(|slot| &self.online(slot).user)
    }

    pub(super) fn get_mut(&mut self, name: &str) -> Option<&mut U> {
        let slot = self.slot_of(name)?;
        Some(&mut self.online_mut(slot).user)
    }

    /// The user holding `token`, with their name.
    pub(super) fn by_token(&self, token: u64) -> Option<(&str, &U)> {
        let online = self.online(*self.by_token.get(&token)?);
        Some((&online.name, &online.user))
    }

    /// The user holding `token`, with their name.
    pub(super) fn by_token_mut(&mut self, token: u64) -> Option<(&str, &mut U)> {
        let online = self.online_mut(*self.by_token.get(&token)?);
        Some((&online.name, &mut online.user))
    }

    /// Every online user, in name order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &U)> {
        self.by_name.iter().map(|(name, &slot)| (name.as_str(), &self.online(slot).user))
    }

    /// The slot holding `name`: the one under its hash if the name there is
    /// `name`, else the one it collided into.
    fn slot_of(&self, name: &str) -> Option<usize> {
        match self.by_name_hash.get(&(self.hash)(name)) {
            Some(&slot) if self.online(slot).name == name => Some(slot),
            _ if self.collided.is_empty() => None,
            _ => self.collided.get(name).copied(),
        }
    }

    fn online(&self, slot: usize) -> &Online<U> {
        self.slots[slot].as_ref().expect("an indexed slot holds a user")
    }

    fn online_mut(&mut self, slot: usize) -> &mut Online<U> {
        self.slots[slot].as_mut().expect("an indexed slot holds a user")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_user_is_found_by_name_and_by_token_until_they_leave() {
        // Given two users online,
        let mut users = Users::new();
        users.insert("bob".to_owned(), 20, 'b');
        users.insert("alice".to_owned(), 10, 'a');
        // then each is found both ways, and walks go in name order;
        assert_eq!(users.get("alice"), Some(&'a'));
        assert_eq!(users.by_token(20), Some(("bob", &'b')));
        assert_eq!(users.iter().collect::<Vec<_>>(), vec![("alice", &'a'), ("bob", &'b')]);
        // when alice leaves, her name and token are gone,
        assert_eq!(users.remove("alice"), Some((10, 'a')));
        assert!(!users.contains("alice") && !users.holds_token(10));
        // and a newcomer reuses her slot without disturbing bob.
        users.insert("carol".to_owned(), 30, 'c');
        assert_eq!(users.slots.len(), 2);
        assert_eq!(users.by_token_mut(30).map(|(name, _)| name.to_owned()), Some("carol".to_owned()));
        assert_eq!(users.get("bob"), Some(&'b'));
    }

    proptest! {
        /// Given any sequence of logins and departures, the table answers
        /// by name, by token and in walks exactly as a map of names would.
        #[test]
        fn the_table_agrees_with_a_map_of_names(
            ops in prop::collection::vec((0u8..8, any::<bool>()), 1..120),
            colliding in any::<bool>(),
        ) {
            // (With `colliding`, every name has the same hash, so lookups
            // must tell them apart by the names themselves.)
            let mut users = if colliding { Users::with_hash(|_| 7) } else { Users::new() };
            let mut reference: BTreeMap<String, (u64, usize)> = BTreeMap::new();
            for (step, (who, login)) in ops.into_iter().enumerate() {
                let name = format!("user-{who}");
                if login {
                    if let Some((token, _)) = reference.remove(&name) {
                        prop_assert_eq!(users.remove(&name).map(|(t, _)| t), Some(token));
                    }
                    let token = 1000 + step as u64;
                    users.insert(name.clone(), token, step);
                    reference.insert(name, (token, step));
                } else {
                    prop_assert_eq!(users.remove(&name), reference.remove(&name));
                }
                let walk: Vec<_> = users.iter().map(|(n, &u)| (n.to_owned(), u)).collect();
                let want: Vec<_> = reference.iter().map(|(n, &(_, u))| (n.clone(), u)).collect();
                prop_assert_eq!(walk, want);
                for (name, &(token, user)) in &reference {
                    prop_assert_eq!(users.by_token(token), Some((name.as_str(), &user)));
                }
                for who in 0u8..8 {
                    let name = format!("user-{who}");
                    let want = reference.get(&name).map(|&(_, user)| user);
                    prop_assert_eq!(users.get(&name).copied(), want);
                    prop_assert_eq!(users.contains(&name), want.is_some());
                    if let Some(&(token, user)) = reference.get(&name) {
                        prop_assert_eq!(users.by_token(token).map(|(n, &u)| (n.to_owned(), u)), Some((name.clone(), user)));
                    }
                }
            }
        }
    }
}
