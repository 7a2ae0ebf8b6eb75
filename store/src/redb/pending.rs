//! Writes that are durable in the write-ahead log but not yet checkpointed into redb: the
//! newest state of each such key, layered over redb for every read. Two generations: the
//! one taking new writes, and the one a checkpoint is copying into redb (dropped only once
//! that commit is visible, so a reader always finds a key in one of the three places).
//! Values are kept in memory up to [`HELD_BYTES`] in all; beyond, only their place in the
//! log is, and they are read back from there. So memory grows with the keys pending, not
//! with their values, and a checkpoint can take many keys at once, while the recent writes
//! a list or a get usually asks for are still at hand.

use std::{collections::BTreeMap, io, ops::Bound, sync::Arc};

use bytes::Bytes;

use super::wal::Located;
use crate::Versioned;

/// Bytes of values both generations keep in memory together.
const HELD_BYTES: usize = 24 << 20;

#[derive(Debug, Clone)]
enum Place {
    Held(Bytes),
    Logged(Located),
}

/// A pending value: its revision, and the value or where the log holds it.
#[derive(Debug, Clone)]
pub struct Pended {
    pub mod_revision: u64,
    place: Place,
}

impl Pended {
    pub fn read(&self) -> io::Result<Versioned> {
        let value = match &self.place {
            Place::Held(value) => value.clone(),
            Place::Logged(at) => at.read()?,
        };
        Ok(Versioned {
            value,
            mod_revision: self.mod_revision,
        })
    }

    fn held(&self) -> usize {
        match &self.place {
            Place::Held(value) => value.len(),
            Place::Logged(_) => 0,
        }
    }
}

/// A pending key's state: its value, or `None` when it was deleted.
pub type Entry = Option<Pended>;

fn held(entries: &BTreeMap<String, Entry>) -> usize {
    entries.values().flatten().map(Pended::held).sum()
}

#[derive(Default)]
pub struct Pending {
    active: BTreeMap<String, Entry>,
    frozen: Arc<BTreeMap<String, Entry>>,
    /// Value bytes each generation keeps in memory.
    held_active: usize,
    held_frozen: usize,
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

    /// A durable put: `value` is kept in memory while there is room (or when the log gave
    /// it no place), else read back from `at` when asked for.
    pub fn put(&mut self, key: String, revision: u64, value: Bytes, at: Option<Located>) {
        let room = self.held_active + self.held_frozen + value.len() <= HELD_BYTES;
        let place = match at {
            Some(at) if !room => Place::Logged(at),
            _ => {
                self.held_active += value.len();
                Place::Held(value)
            }
        };
        let entry = Pended {
            mod_revision: revision,
            place,
        };
        self.set(key, Some(entry), revision);
    }

    pub fn delete(&mut self, key: String, revision: u64) {
        self.set(key, None, revision);
    }

    fn set(&mut self, key: String, entry: Entry, revision: u64) {
        if let Some(Some(old)) = self.active.insert(key, entry) {
            self.held_active = self.held_active.saturating_sub(old.held());
        }
        self.revision = revision;
    }

    /// Value bytes kept in memory by both generations.
    #[cfg(test)]
    pub fn held_bytes(&self) -> usize {
        self.held_active + self.held_frozen
    }

    pub fn active_len(&self) -> usize {
        self.active.len()
    }

    /// Hands the active generation to a checkpoint.
    pub fn freeze(&mut self) -> Arc<BTreeMap<String, Entry>> {
        self.frozen = Arc::new(std::mem::take(&mut self.active));
        self.held_frozen = std::mem::take(&mut self.held_active);
        self.frozen.clone()
    }

    /// The checkpoint's commit is visible in redb: its generation is no longer needed.
    pub fn thaw(&mut self) {
        self.frozen = Arc::default();
        self.held_frozen = 0;
    }

    /// The checkpoint failed: its writes join the active generation again (where a newer
    /// write of the same key wins), for the next checkpoint to take.
    pub fn unfreeze(&mut self) {
        let frozen = std::mem::take(&mut self.frozen);
        for (k, v) in frozen.iter() {
            self.active.entry(k.clone()).or_insert_with(|| v.clone());
        }
        self.held_active = held(&self.active);
        self.held_frozen = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::{super::wal::Wal, *};

    /// Puts land in a real log segment, as the writer's do (in a directory that lasts as
    /// long as the log).
    struct Log(Wal, #[allow(dead_code)] tempfile::TempDir);

    impl Log {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            Self(Wal::create(&dir.path().join("db"), 1).unwrap(), dir)
        }

        fn put(&mut self, p: &mut Pending, key: &str, value: &str, revision: u64) {
            let at = self
                .0
                .append([(revision, key, Some(value.as_bytes()))])
                .unwrap();
            let at = at.into_iter().next().unwrap();
            assert!(at.is_some(), "a put has a place in the log");
            p.put(key.into(), revision, Bytes::from(value.to_owned()), at);
        }
    }

    fn shown(range: &[(String, Entry)]) -> Vec<(String, Option<String>)> {
        range
            .iter()
            .map(|(k, v)| {
                let v = v
                    .as_ref()
                    .map(|v| String::from_utf8_lossy(&v.read().unwrap().value).into_owned());
                (k.clone(), v)
            })
            .collect()
    }

    #[test]
    fn ranges_merge_generations_and_stop_after_enough_live_keys() {
        let mut log = Log::new();
        let mut p = Pending::new(0);
        log.put(&mut p, "a/1", "old", 1);
        log.put(&mut p, "a/2", "two", 2);
        log.put(&mut p, "a/4", "four", 3);
        p.freeze();
        log.put(&mut p, "a/1", "new", 4);
        p.delete("a/3".into(), 5);
        log.put(&mut p, "a/5", "five", 6);
        log.put(&mut p, "b/1", "other prefix", 7);

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

    #[test]
    fn values_past_the_memory_budget_are_read_back_from_the_log() {
        let mut log = Log::new();
        let mut p = Pending::new(0);
        let big = "x".repeat(HELD_BYTES - 2);
        log.put(&mut p, "a/1", &big, 1);
        log.put(&mut p, "a/2", &big, 2);
        let place = |p: &Pending, k: &str| p.lookup(k).cloned().flatten().unwrap().held();
        assert_eq!(place(&p, "a/1"), big.len(), "held");
        assert_eq!(place(&p, "a/2"), 0, "no room left: logged");
        let read = p.lookup("a/2").cloned().flatten().unwrap().read().unwrap();
        assert_eq!(&read.value[..], big.as_bytes());
        assert_eq!(read.mod_revision, 2);

        // The frozen generation's values count until it is thawed.
        p.freeze();
        log.put(&mut p, "a/3", "small", 3);
        assert_eq!(place(&p, "a/3"), 0);
        p.thaw();
        log.put(&mut p, "a/4", "small", 4);
        assert_eq!(place(&p, "a/4"), 5);
        // A deletion gives its key's room back.
        p.delete("a/4".into(), 5);
        log.put(&mut p, "a/5", &big, 6);
        assert_eq!(place(&p, "a/5"), big.len());
    }
}
