//! The embedded store's write-ahead log. Each group of writes is appended here and synced
//! before it is acknowledged or visible; redb then receives the writes in large batches (a
//! checkpoint), because a redb commit costs the same few pages whether it carries one write
//! or thousands. Segments a checkpoint has covered are deleted.
//!
//! A segment is a sequence of frames `[len: u32][crc32: u32][payload]`, little-endian; a
//! payload is one group of changes, each `[revision: u64][kind: u8][key len: u32][key]`
//! followed, for a put, by `[value len: u32][value]`. Revisions run on without a gap from
//! the first revision in the segment's name. A frame cut short by a crash, one whose
//! checksum fails, or one whose revisions do not follow on ends the log: nothing after it
//! was acknowledged.
//!
//! A checkpointed segment is kept as the spare and becomes the next segment, written over
//! from its start: a sync that overwrites blocks the file already has is about half the cost
//! of one that grows the file, which also commits the file system's journal. Its old frames
//! beyond the new ones carry older revisions, so they end the segment as a torn frame does.
//! When there is no spare yet (a new database), one is prepared in the background, filled
//! with zeros, once the log has grown a fresh segment by [`PREPARE_AFTER`] bytes; the log
//! then moves onto it (see `Writer::keep_log_in_place`).

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use bytes::Bytes;

const PUT: u8 = 1;
const DELETE: u8 = 2;
const HEADER: usize = 8;
/// Largest frame read back; a length beyond it is a torn or corrupt header.
const MAX_FRAME: usize = 1 << 30;

/// Bytes a fresh segment grows by before a spare is prepared: a store that writes little
/// never pays for one.
pub const PREPARE_AFTER: u64 = 1 << 20;
/// Bytes of zeros a prepared spare holds: about what the writes between two checkpoints
/// take at high rates. A segment that needs more grows past it.
const SPARE_BYTES: u64 = 64 << 20;

/// One write as the log keeps it: the key's new value, or its deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub revision: u64,
    pub key: String,
    pub value: Option<Bytes>,
}

/// The segment being appended to.
pub struct Wal {
    file: Arc<File>,
    path: PathBuf,
    len: u64,
    buf: Vec<u8>,
    /// Made afresh rather than over the spare: every sync also grows the file.
    grows: bool,
}

/// A segment's file, shared with the pending values that sit in it (see [`Located`]).
pub struct Segment {
    path: PathBuf,
    file: Arc<File>,
}

impl Segment {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Disposes of a segment a checkpoint has covered (see [`Wal::retire`]). Once the
    /// checkpoint's generation is dropped no new reader can find a value here, but one that
    /// found one before may still hold the file: then the segment is deleted (its reads go
    /// on from the unlinked file), never kept as the spare, which is written over.
    pub fn retire(self, db: &Path) -> io::Result<()> {
        let Self { path, file } = self;
        let in_use = Arc::strong_count(&file) > 1;
        drop(file);
        if in_use {
            fs::remove_file(&path)
        } else {
            Wal::retire(db, &path)
        }
    }
}

/// Where one value sits in a segment: the pending layer keeps this instead of the value once
/// its memory budget is spent, so what it holds grows with the number of keys, not with their
/// bytes, and a checkpoint can take many keys at once. Reads come back from the page cache,
/// as a rule.
#[derive(Debug, Clone)]
pub struct Located {
    file: Arc<File>,
    offset: u64,
    len: u32,
}

impl Located {
    pub fn read(&self) -> io::Result<Bytes> {
        let mut value = vec![0; self.len as usize];
        self.file.read_exact_at(&mut value, self.offset)?;
        Ok(Bytes::from(value))
    }
}

/// The log's files sit beside the database, named after it: `<db>.wal.<suffix>`.
fn log_file_name(db: &Path, suffix: &str) -> std::ffi::OsString {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".wal.");
    name.push(suffix);
    name
}

/// Segments are named after the first revision they may hold.
fn segment_path(db: &Path, first_revision: u64) -> PathBuf {
    db.with_file_name(log_file_name(db, &format!("{first_revision:020}")))
}

/// A checkpointed segment kept to be written over as the next one.
fn spare_path(db: &Path) -> PathBuf {
    db.with_file_name(log_file_name(db, "spare"))
}

/// The database's segments with their first revisions, oldest first.
pub fn segments(db: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let dir = match db.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let prefix = log_file_name(db, "").to_string_lossy().into_owned();
    let mut found: Vec<(u64, PathBuf)> = Vec::new();
    for entry in fs::read_dir(&dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(first) = name.strip_prefix(&prefix).and_then(|n| n.parse().ok()) {
            found.push((first, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Every change the segments hold, in order, up to the first frame that is torn, corrupt,
/// or does not follow on from the one before.
pub fn recover(db: &Path) -> io::Result<Vec<Change>> {
    let mut changes: Vec<Change> = Vec::new();
    for (first, path) in segments(db)? {
        if changes.last().is_some_and(|c| c.revision + 1 != first) {
            tracing::warn!(segment = %path.display(), "a write-ahead log segment does not follow on from the one before; replaying what precedes it");
            break;
        }
        let mut bytes = Vec::new();
        File::open(&path)?.read_to_end(&mut bytes)?;
        decode_frames(&bytes, first, &mut changes);
    }
    Ok(changes)
}

/// Appends the changes of every frame that verifies and follows on from revision `first`,
/// up to the first that does not: the segment's end.
fn decode_frames(mut bytes: &[u8], first: u64, out: &mut Vec<Change>) {
    let mut next = first;
    while let Some((len, crc)) = bytes
        .get(..HEADER)
        .map(|h| (u32_at(h, 0) as usize, u32_at(h, 4)))
    {
        let Some(payload) = bytes.get(HEADER..HEADER.saturating_add(len)) else {
            return;
        };
        if len == 0 || len > MAX_FRAME || crc32fast::hash(payload) != crc {
            return;
        }
        let Some(changes) = decode_payload(payload) else {
            return;
        };
        if !changes.iter().zip(next..).all(|(c, r)| c.revision == r) {
            return;
        }
        next += changes.len() as u64;
        out.extend(changes);
        bytes = &bytes[HEADER + len..];
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn decode_payload(mut p: &[u8]) -> Option<Vec<Change>> {
    fn take<'a>(p: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (p.get(..n)?, p.get(n..)?);
        *p = rest;
        Some(head)
    }
    fn len(p: &mut &[u8]) -> Option<usize> {
        Some(u32_at(take(p, 4)?, 0) as usize)
    }
    let mut out = Vec::new();
    while !p.is_empty() {
        let mut rev = [0u8; 8];
        rev.copy_from_slice(take(&mut p, 8)?);
        let kind = take(&mut p, 1)?[0];
        let klen = len(&mut p)?;
        let key = String::from_utf8(take(&mut p, klen)?.to_vec()).ok()?;
        let value = match kind {
            PUT => {
                let vlen = len(&mut p)?;
                Some(Bytes::copy_from_slice(take(&mut p, vlen)?))
            }
            DELETE => None,
            _ => return None,
        };
        out.push(Change {
            revision: u64::from_le_bytes(rev),
            key,
            value,
        });
    }
    Some(out)
}

impl Wal {
    /// Starts a new segment for writes from `first_revision` on, over the spare if there is
    /// one.
    pub fn create(db: &Path, first_revision: u64) -> io::Result<Self> {
        let path = segment_path(db, first_revision);
        let recycled = match fs::rename(spare_path(db), &path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(!recycled)
            .read(true)
            .write(true)
            .open(&path)?;
        // The segment's name must survive a crash as well as its contents.
        sync_dir(&path)?;
        Ok(Self {
            file: Arc::new(file),
            path,
            len: 0,
            buf: Vec::new(),
            grows: !recycled,
        })
    }

    /// Writes a spare of zeros unless there is one. Slow (it writes [`SPARE_BYTES`]): for a
    /// background thread. A crash meanwhile leaves a `.wal.spare.new` that is no segment and
    /// is written over next time.
    pub fn prepare_spare(db: &Path) -> io::Result<()> {
        let spare = spare_path(db);
        if spare.exists() {
            return Ok(());
        }
        let unfinished = db.with_file_name(log_file_name(db, "spare.new"));
        let file = File::create(&unfinished)?;
        let zeros = vec![0u8; 1 << 20];
        let mut at = 0;
        while at < SPARE_BYTES {
            file.write_all_at(&zeros, at)?;
            at += zeros.len() as u64;
            // Synced a piece at a time, so that the log's own syncs never queue behind the
            // whole of it.
            file.sync_data()?;
        }
        file.sync_all()?;
        fs::rename(&unfinished, &spare)?;
        sync_dir(&spare)
    }

    /// True for a segment made afresh, whose syncs also grow the file.
    pub fn grows(&self) -> bool {
        self.grows
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The segment, to retire once a checkpoint covers it.
    pub fn segment(&self) -> Segment {
        Segment {
            path: self.path.clone(),
            file: self.file.clone(),
        }
    }

    /// True while no group has been appended.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Disposes of a segment a checkpoint has covered: kept as the spare when there is none
    /// or it is larger than the spare, so that the spare is the largest segment to hand.
    pub fn retire(db: &Path, segment: &Path) -> io::Result<()> {
        let spare = spare_path(db);
        let spare_len = match fs::metadata(&spare) {
            Ok(m) => Some(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let segment_len = fs::metadata(segment)?.len();
        if spare_len.is_some_and(|len| len >= segment_len) {
            fs::remove_file(segment)
        } else {
            fs::rename(segment, spare)
        }
    }

    /// Appends one group of changes and syncs it: when this returns, they survive a crash.
    /// Returns where each put's value now sits. On failure the segment's length stays what
    /// it was, so the next group is written over whatever part of this one reached the file.
    pub fn append<'a>(
        &mut self,
        changes: impl IntoIterator<Item = (u64, &'a str, Option<&'a [u8]>)>,
    ) -> io::Result<Vec<Option<Located>>> {
        self.buf.clear();
        self.buf.extend_from_slice(&[0; HEADER]);
        let mut places = Vec::new();
        for (revision, key, value) in changes {
            self.buf.extend_from_slice(&revision.to_le_bytes());
            self.buf.push(if value.is_some() { PUT } else { DELETE });
            push_len(&mut self.buf, key.len())?;
            self.buf.extend_from_slice(key.as_bytes());
            places.push(match value {
                Some(v) => {
                    push_len(&mut self.buf, v.len())?;
                    let at = self.buf.len();
                    self.buf.extend_from_slice(v);
                    // push_len checked that the length fits.
                    Some((at as u64, v.len() as u32))
                }
                None => None,
            });
        }
        let payload_len = self.buf.len() - HEADER;
        if payload_len > MAX_FRAME {
            return Err(io::Error::other(
                "a write group is too large for one log frame",
            ));
        }
        let crc = crc32fast::hash(&self.buf[HEADER..]);
        self.buf[..4].copy_from_slice(&(payload_len as u32).to_le_bytes());
        self.buf[4..HEADER].copy_from_slice(&crc.to_le_bytes());
        // Written at the segment's length, not a file cursor: after a failed write the
        // next group overwrites the partial frame instead of leaving it before itself.
        self.file
            .write_all_at(&self.buf, self.len)
            .and_then(|()| self.file.sync_data())?;
        let start = self.len;
        self.len += self.buf.len() as u64;
        Ok(places
            .into_iter()
            .map(|place| {
                place.map(|(at, len)| Located {
                    file: self.file.clone(),
                    offset: start + at,
                    len,
                })
            })
            .collect())
    }
}

/// Makes a rename or creation of `path` survive a crash.
fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

fn push_len(buf: &mut Vec<u8>, n: usize) -> io::Result<()> {
    let n = u32::try_from(n).map_err(|_| io::Error::other("a key or value is too large"))?;
    buf.extend_from_slice(&n.to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revisions(db: &Path) -> Vec<u64> {
        recover(db).unwrap().iter().map(|c| c.revision).collect()
    }

    #[test]
    fn groups_come_back_in_order_and_a_torn_tail_ends_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("zen.redb");
        let mut wal = Wal::create(&db, 1).unwrap();
        wal.append([(1, "a/x/1", Some(&b"one"[..])), (2, "a/x/2", None)])
            .unwrap();
        wal.append([(3, "a/x/3", Some(&b""[..]))]).unwrap();
        let mut later = Wal::create(&db, 4).unwrap();
        later.append([(4, "a/x/4", Some(&b"four"[..]))]).unwrap();
        assert_eq!(revisions(&db), [1, 2, 3, 4]);
        let all = recover(&db).unwrap();
        assert_eq!(all[0].value.as_deref(), Some(&b"one"[..]));
        assert_eq!(all[1].value, None);
        assert_eq!(all[2].value.as_deref(), Some(&b""[..]));

        // A crash in the middle of the second group of the first segment: the next
        // segment no longer follows on.
        let first = wal.path().to_path_buf();
        let bytes = fs::read(&first).unwrap();
        fs::write(&first, &bytes[..bytes.len() - 3]).unwrap();
        assert_eq!(
            revisions(&db),
            [1, 2],
            "nothing after a torn frame is replayed"
        );

        // A flipped bit fails the checksum.
        let mut bytes = fs::read(later.path()).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(later.path(), &bytes).unwrap();
        fs::write(&first, b"").unwrap();
        assert!(recover(&db).unwrap().is_empty());
        assert_eq!(segments(&db).unwrap().len(), 2);
    }

    #[test]
    fn a_recycled_segment_ends_where_its_new_frames_do() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("zen.redb");
        let mut old = Wal::create(&db, 1).unwrap();
        for r in 1..=20 {
            old.append([(r, "a/x/old", Some(&b"an old value"[..]))])
                .unwrap();
        }
        let old_len = fs::metadata(old.path()).unwrap().len();
        Wal::retire(&db, old.path()).unwrap();
        assert!(segments(&db).unwrap().is_empty());

        let mut new = Wal::create(&db, 21).unwrap();
        for r in 21..=25 {
            new.append([(r, "a/x/new", Some(&b"a new value!"[..]))])
                .unwrap();
        }
        assert_eq!(
            fs::metadata(new.path()).unwrap().len(),
            old_len,
            "the spare was written over, not replaced"
        );
        assert_eq!(revisions(&db), [21, 22, 23, 24, 25]);

        // With no spare left, a checkpointed segment becomes the spare; with one at least
        // as large, it goes; a larger one takes the spare's place.
        let next = Wal::create(&db, 26).unwrap();
        assert_eq!(fs::metadata(next.path()).unwrap().len(), 0);
        Wal::retire(&db, new.path()).unwrap();
        Wal::retire(&db, next.path()).unwrap();
        assert!(segments(&db).unwrap().is_empty());
        assert_eq!(fs::metadata(spare_path(&db)).unwrap().len(), old_len);

        let recycled = Wal::create(&db, 26).unwrap();
        let fresh = Wal::create(&db, 27).unwrap();
        Wal::retire(&db, fresh.path()).unwrap();
        assert_eq!(fs::metadata(spare_path(&db)).unwrap().len(), 0);
        Wal::retire(&db, recycled.path()).unwrap();
        assert!(segments(&db).unwrap().is_empty());
        assert_eq!(
            fs::metadata(spare_path(&db)).unwrap().len(),
            old_len,
            "the larger segment is the spare"
        );
    }

    #[test]
    fn a_segment_a_reader_still_holds_is_deleted_not_written_over() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("zen.redb");
        let mut held = Wal::create(&db, 1).unwrap();
        let places = held
            .append([(1, "a/x/1", Some(&b"one"[..])), (2, "a/x/2", None)])
            .unwrap();
        assert!(places[1].is_none(), "a deletion has no value to read");
        let one = places[0].clone().unwrap();
        assert_eq!(one.read().unwrap(), &b"one"[..]);
        let segment = held.segment();
        drop(held);
        segment.retire(&db).unwrap();
        assert!(
            !spare_path(&db).exists(),
            "a spare is written over, and the reader would see its new frames"
        );
        assert_eq!(
            one.read().unwrap(),
            &b"one"[..],
            "read from the unlinked file"
        );

        let mut free = Wal::create(&db, 3).unwrap();
        drop(free.append([(3, "a/x/3", Some(&b"three"[..]))]).unwrap());
        let segment = free.segment();
        drop(free);
        segment.retire(&db).unwrap();
        assert!(spare_path(&db).exists(), "no reader: kept as the spare");
    }

    #[test]
    fn a_prepared_spare_is_taken_by_the_next_segment() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("zen.redb");
        let first = Wal::create(&db, 1).unwrap();
        assert!(first.grows(), "a new database has no spare");
        Wal::prepare_spare(&db).unwrap();
        assert_eq!(
            fs::metadata(spare_path(&db)).unwrap().len(),
            SPARE_BYTES,
            "filled, so that writes over it do not grow the file"
        );
        assert_eq!(segments(&db).unwrap().len(), 1, "a spare is no segment");
        let mut next = Wal::create(&db, 2).unwrap();
        assert!(!next.grows());
        next.append([(2, "a/x/2", Some(&b"two"[..]))]).unwrap();
        assert_eq!(revisions(&db), [2]);
        assert_eq!(fs::metadata(next.path()).unwrap().len(), SPARE_BYTES);
    }
}
