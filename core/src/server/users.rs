//! The online users, found by name or by session token.
//!
//! Every keepalive, relayed frame and text frame names its sender by token,
//! so the token lookup is the server's hottest: it compares `u64`s held
//! inside the index's nodes and reaches the user's record directly. Looking
//! a user up by name (to connect or message them) compares strings, as
//! before. Both indexes are ordered maps, so walks over the users go in name
//! order and nothing depends on hash order.

use std::collections::BTreeMap;

/// The online users, each in one slot of a slab that both indexes point at.
#[derive(Debug)]
pub(super) struct Users<U> {
    slots: Vec<Option<Online<U>>>,
    /// Slots freed by users going offline, reused first.
    free: Vec<usize>,
    by_name: BTreeMap<String, usize>,
    by_token: BTreeMap<u64, usize>,
}

#[derive(Debug)]
struct Online<U> {
    name: String,
    token: u64,
    user: U,
}

impl<U> Users<U> {
    pub(super) fn new() -> Self {
        Users { slots: Vec::new(), free: Vec::new(), by_name: BTreeMap::new(), by_token: BTreeMap::new() }
    }

    /// Adds `name`, known by `token`. The caller has taken any previous
    /// login of `name` offline and picked a token no one holds.
    pub(super) fn insert(&mut self, name: String, token: u64, user: U) {
        debug_assert!(!self.by_name.contains_key(&name) && !self.by_token.contains_key(&token));
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
        self.by_name.insert(name, slot);
        self.by_token.insert(token, slot);
    }

    /// Takes `name` offline, returning its token and record.
    pub(super) fn remove(&mut self, name: &str) -> Option<(u64, U)> {
        let slot = self.by_name.remove(name)?;
        let online = self.slots[slot].take().expect("an indexed slot holds a user");
        self.by_token.remove(&online.token);
        self.free.push(slot);
        Some((online.token, online.user))
    }

    pub(super) fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    pub(super) fn holds_token(&self, token: u64) -> bool {
        self.by_token.contains_key(&token)
    }

    pub(super) fn get(&self, name: &str) -> Option<&U> {
        self.by_name.get(name).map(|&slot| &self.online(slot).user)
    }

    pub(super) fn get_mut(&mut self, name: &str) -> Option<&mut U> {
        let slot = *self.by_name.get(name)?;
        Some(&mut self.online_mut(slot).user)
    }

    /// `name`'s record and the token they hold.
    pub(super) fn get_with_token_mut(&mut self, name: &str) -> Option<(u64, &mut U)> {
        let slot = *self.by_name.get(name)?;
        let online = self.online_mut(slot);
        Some((online.token, &mut online.user))
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
        ) {
            let mut users = Users::new();
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
            }
        }
    }
}
