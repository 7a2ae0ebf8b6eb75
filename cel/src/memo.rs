//! Results of pure functions of a text (compilations), remembered within a bound on their
//! count and on the text held; past either bound the memory starts afresh.

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hasher, RandomState},
    sync::{Arc, Mutex},
};

pub(crate) struct Memo<V> {
    entries: Mutex<Entries<V>>,
    max_entries: usize,
    max_bytes: usize,
}

struct Entries<V> {
    values: HashMap<Arc<str>, V, TextHash>,
    bytes: usize,
}

/// A multiply-rotate hash of the texts, eight bytes a step, seeded per memo. An admission
/// review looks up every expression of its Ingestor, some hundreds of bytes long, and
/// SipHash took longer than the rest of the lookups. A crafted set of texts that collide
/// costs at worst a scan of the memo, which is bounded.
#[derive(Clone)]
struct TextHash {
    seed: u64,
}

impl TextHash {
    fn new() -> Self {
        Self {
            seed: RandomState::new().build_hasher().finish(),
        }
    }
}

impl BuildHasher for TextHash {
    type Hasher = TextHasher;

    fn build_hasher(&self) -> TextHasher {
        TextHasher { hash: self.seed }
    }
}

struct TextHasher {
    hash: u64,
}

impl TextHasher {
    const K: u64 = 0xf135_7aea_2e62_a9c5;

    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(26) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for TextHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        let mut word = [0; 8];
        word[..rest.len()].copy_from_slice(rest);
        // The length tells "ab" from "ab\0".
        self.add(u64::from_le_bytes(word) ^ (bytes.len() as u64).rotate_right(8));
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        // The table picks buckets by the low bits and tags by the high ones: mix both.
        (self.hash ^ (self.hash >> 29))
            .wrapping_mul(Self::K)
            .rotate_left(20)
    }
}

impl<V: Clone> Memo<V> {
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        Self {
            entries: Mutex::new(Entries {
                values: HashMap::with_hasher(TextHash::new()),
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

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn remembered_values_are_found_again_and_the_bounds_start_afresh() {
        let memo = Memo::new(300, 1 << 20);
        // Texts of every length around the eight-byte steps, some differing only there.
        let texts: Vec<String> = (0..256)
            .map(|i| format!("{}{}", "x".repeat(i % 20), "\0".repeat(i / 20)))
            .collect();
        for (i, t) in texts.iter().enumerate() {
            assert_eq!(memo.get_or_insert_with(t, || i), i);
        }
        let computed = Cell::new(0);
        for (i, t) in texts.iter().enumerate() {
            let got = memo.get_or_insert_with(t, || {
                computed.set(computed.get() + 1);
                usize::MAX
            });
            assert_eq!(got, i, "{t:?}");
        }
        assert_eq!(computed.get(), 0, "every text was remembered");
        // Past the count bound the memo forgets, then remembers anew.
        for i in 0..100 {
            memo.get_or_insert_with(&format!("more {i}"), || i);
        }
        assert_eq!(memo.get_or_insert_with(&texts[0], || 7), 7);
    }

    #[test]
    fn the_text_hash_tells_lengths_and_seeds_apart() {
        let h = |seed, text: &str| {
            let mut hasher = TextHash { seed }.build_hasher();
            hasher.write(text.as_bytes());
            hasher.finish()
        };
        assert_ne!(h(1, "ab"), h(1, "ab\0"));
        assert_ne!(h(1, ""), h(1, "\0"));
        assert_ne!(h(1, "abcdefgh"), h(1, "abcdefgh\0"));
        assert_ne!(h(1, "the same text"), h(2, "the same text"));
        assert_eq!(h(3, "the same text"), h(3, "the same text"));
    }
}
