//! Results of pure functions of a text (compilations), remembered within a bound on their
//! count and on the text held; past either bound the memory starts afresh.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

pub(crate) struct Memo<V> {
    entries: Mutex<Entries<V>>,
    max_entries: usize,
    max_bytes: usize,
}

struct Entries<V> {
    values: HashMap<Arc<str>, V>,
    bytes: usize,
}

impl<V: Clone> Memo<V> {
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            entries: Mutex::new(Entries {
                values: HashMap::new(),
                bytes: 0,
            }),
            max_entries,
            max_bytes,
        }
    }

    /// The value remembered for `key`, or `f`'s, computed outside the lock and remembered.
    pub(crate) fn get_or_insert_with(&self, key: &str, f: impl FnOnce() -> V) -> V {
        self.read(key, f, V::clone)
    }

    /// `read` of the value remembered for `key` (or of `f`'s, remembered), without a copy:
    /// a copy of a shared value bumps reference counts that every thread checking the same
    /// text writes to.
    pub(crate) fn read<R>(
        &self,
        key: &str,
        f: impl FnOnce() -> V,
        read: impl FnOnce(&V) -> R,
    ) -> R {
        if let Some(known) = self.lock().values.get(key) {
            return read(known);
        }
        let value = f();
        let out = read(&value);
        let mut entries = self.lock();
        if entries.values.len() >= self.max_entries || entries.bytes + key.len() > self.max_bytes {
            entries.values.clear();
            entries.bytes = 0;
        }
        entries.bytes += key.len();
        entries.values.insert(Arc::from(key), value);
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<V>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}
