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

    /// The pending states of keys within `bounds`, in key order, newest generation winning,
    /// up to the `live`-th that is not a deletion. A page of at most `live` items merged
    /// from these and redb holds no key beyond the last of them, so a list copies (under the
    /// pending lock) what its page can use, not every pending key.
    pub fn range(&self, bounds: (Bound<&str>, Bound<&str>), live: usize) -> Vec<(String, Entry)> {
        let mut frozen = self.frozen.range::<str, _>(bounds).peekable();
        let mut active = self.active.range::<str, _>(bounds).peekable();
        let mut out = Vec::new();
        let mut found = 0;
        while found < live {
            let (k, v) = match (frozen.peek(), active.peek()) {
                (None, None) => break,
                (Some((fk, _)), Some((ak, _))) if fk < ak => frozen.next(),
                (Some((fk, _)), Some((ak, _))) if fk == ak => {
                    frozen.next();
                    active.next()
                }
                (_, Some(_)) => active.next(),
                (Some(_), None) => frozen.next(),
            }
            .map(|(k, v)| (k.clone(), v.clone()))
            .unwrap_or_default();
            found += usize::from(v.is_some());
            out.push((k, v));
        }
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn put(p: &mut Pending, key: &str, value: &str, revision: u64) {
        let v = Versioned {
            value: Bytes::from(value.to_owned()),
            mod_revision: revision,
        };
        p.apply(key.into(), Some(v), revision);
    }

    fn shown(range: &[(String, Entry)]) -> Vec<(String, Option<String>)> {
        range
            .iter()
            .map(|(k, v)| {
                let v = v
                    .as_ref()
                    .map(|v| String::from_utf8_lossy(&v.value).into_owned());
                (k.clone(), v)
            })
            .collect()
    }

    #[test]
    fn ranges_merge_generations_and_stop_after_enough_live_keys() {
        let mut p = Pending::new(0);
        put(&mut p, "a/1", "old", 1);
        put(&mut p, "a/2", "two", 2);
        put(&mut p, "a/4", "four", 3);
        p.freeze();
        put(&mut p, "a/1", "new", 4);
        p.apply("a/3".into(), None, 5);
        put(&mut p, "a/5", "five", 6);
        put(&mut p, "b/1", "other prefix", 7);

        let prefix = (Bound::Included("a/"), Bound::Excluded("a0"));
        let after = |key| (Bound::Excluded(key), Bound::Excluded("a0"));
        let all = p.range(prefix, usize::MAX);
        let want = |items: &[(&str, Option<&str>)]| -> Vec<(String, Option<String>)> {
            items
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
                .collect()
        };
        assert_eq!(
            shown(&all),
            want(&[
                ("a/1", Some("new")),
                ("a/2", Some("two")),
                ("a/3", None),
                ("a/4", Some("four")),
                ("a/5", Some("five")),
            ]),
            "the newer generation wins, deletions included"
        );
        // Two live keys, and the deletion between them and the third.
        assert_eq!(
            shown(&p.range(prefix, 2)),
            want(&[("a/1", Some("new")), ("a/2", Some("two"))])
        );
        assert_eq!(
            shown(&p.range(after("a/2"), 1)),
            want(&[("a/3", None), ("a/4", Some("four"))])
        );
        assert!(p.range(after("a/5"), 10).is_empty());
    }
}
