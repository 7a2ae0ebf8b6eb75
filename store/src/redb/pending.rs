//! Writes that are durable in the write-ahead log but not yet checkpointed into redb: the
//! newest value of each such key, layered over redb for every read. Two generations: the
//! one taking new writes, and the one a checkpoint is copying into redb (dropped only once
//! that commit is visible, so a reader always finds a key in one of the three places).

use std::{collections::BTreeMap, ops::Bound, sync::Arc};

use crate::Versioned;

/// A pending key's state: its value, or `None` when it was deleted.
pub type Entry = Option<Versioned>;

#[derive(Default)]
pub struct Pending {
    active: BTreeMap<String, Entry>,
    frozen: Arc<BTreeMap<String, Entry>>,
    /// The revision of the newest acknowledged write.
    pub revision: u64,
}

impl Pending {
    pub fn new(revision: u64) -> Self {
        Self {
            revision,
            ..Self::default()
        }
    }

    /// `Some` when the key has a pending state (which may be a deletion).
    pub fn lookup(&self, key: &str) -> Option<&Entry> {
        self.active.get(key).or_else(|| self.frozen.get(key))
    }

    /// The pending states of keys in `[start, end)`, newest generation winning.
    pub fn range(&self, start: &str, end: &str) -> BTreeMap<String, Entry> {
        let mut out: BTreeMap<String, Entry> = self
            .frozen
            .range::<str, _>((Bound::Included(start), Bound::Excluded(end)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.extend(
            self.active
                .range::<str, _>((Bound::Included(start), Bound::Excluded(end)))
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        out
    }

    pub fn apply(&mut self, key: String, entry: Entry, revision: u64) {
        self.active.insert(key, entry);
        self.revision = revision;
    }

    pub fn active_len(&self) -> usize {
        self.active.len()
    }

    /// Hands the active generation to a checkpoint.
    pub fn freeze(&mut self) -> Arc<BTreeMap<String, Entry>> {
        self.frozen = Arc::new(std::mem::take(&mut self.active));
        self.frozen.clone()
    }

    /// The checkpoint's commit is visible in redb: its generation is no longer needed.
    pub fn thaw(&mut self) {
        self.frozen = Arc::default();
    }

    /// The checkpoint failed: its writes join the active generation again (where a newer
    /// write of the same key wins), for the next checkpoint to take.
    pub fn unfreeze(&mut self) {
        let frozen = std::mem::take(&mut self.frozen);
        for (k, v) in frozen.iter() {
            self.active.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}
