//! Which keys exist, kept by the writer as a count per 64-bit hash of the key. A create
//! must know that its key is new; answered here, it needs no redb lookup, which costs a
//! B-tree descent through pages of the file. A hash shared by several keys only sends a
//! create to that lookup.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
};

#[derive(Default)]
pub struct Keys {
    counts: HashMap<u64, u32>,
}

/// The same hash in every process: no secret is needed, since a collision costs a lookup,
/// never a wrong answer.
fn hash(key: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

impl Keys {
    /// False only when the key certainly does not exist.
    pub fn may_exist(&self, key: &str) -> bool {
        self.counts.contains_key(&hash(key))
    }

    pub fn added(&mut self, key: &str) {
        self.add(hash(key));
    }

    pub fn removed(&mut self, key: &str) {
        self.remove(hash(key));
    }

    fn add(&mut self, h: u64) {
        *self.counts.entry(h).or_default() += 1;
    }

    fn remove(&mut self, h: u64) {
        if let Some(n) = self.counts.get_mut(&h) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&h);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_exists_from_its_creation_to_its_deletion() {
        let mut keys = Keys::default();
        assert!(!keys.may_exist("observations/ns/a"));
        keys.added("observations/ns/a");
        keys.added("observations/ns/b");
        assert!(keys.may_exist("observations/ns/a"));
        keys.removed("observations/ns/a");
        assert!(!keys.may_exist("observations/ns/a"));
        assert!(keys.may_exist("observations/ns/b"));
    }

    #[test]
    fn keys_sharing_a_hash_exist_until_both_are_deleted() {
        let mut keys = Keys::default();
        keys.add(7);
        keys.add(7);
        keys.remove(7);
        assert!(keys.counts.contains_key(&7), "the other key still exists");
        keys.remove(7);
        assert!(keys.counts.is_empty());
    }
}
