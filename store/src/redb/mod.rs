//! The embedded store: one redb file, a write-ahead log, a writer thread that commits
//! writes in groups, and the change hub for watches and past-revision lists.
//!
//! Group commit: every write waits until it is durable, but writes arriving while a sync is
//! in flight share the next one, so throughput grows with concurrency instead of being
//! capped at one sync per write. A group is durable once the write-ahead log ([`wal`]) has
//! it; the writes are then pending ([`pending`]: their values in memory while there is room,
//! else their places in the log) over redb until a checkpoint thread copies tens of
//! thousands at a time into one durable redb commit. A redb commit rewrites a few pages per
//! key plus a fixed set per commit, so this costs far less than a commit per group.

mod keys;
mod pending;
mod wal;

use std::{
    collections::BTreeMap,
    ops::Bound,
    path::{Path, PathBuf},
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
        mpsc as std_mpsc,
    },
    time::{Duration, Instant},
};

use ::redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use bytes::Bytes;
use tokio::sync::oneshot;

use self::{
    keys::Keys,
    pending::{Entry, Pended, Pending},
};
use crate::{
    BoxFuture, ListOptions, ListResult, ObjectKey, Prefix, Result, Store, StoreError, Versioned,
    watch::{Event, EventKind, Hub, HubLimits, Watcher},
};

const OBJECTS: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("objects");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION: &str = "revision";

/// Writes one group takes at most.
const MAX_BATCH: usize = 512;
/// Writes waiting for the writer; beyond this, writes fail fast with `Unavailable`.
const QUEUE: usize = 16 * 1024;
/// Memory redb may use to cache pages. The OS page cache holds the file anyway; a small
/// cache keeps the resident set predictable with hundreds of thousands of objects.
const CACHE_BYTES: usize = 32 * 1024 * 1024;
/// A checkpoint starts once this many keys are pending, once the oldest pending write is
/// [`CHECKPOINT_AGE`] old, or once writes have paused for [`CHECKPOINT_IDLE`], whichever
/// comes first. Larger batches make a checkpoint cheaper per key: random keys, such as
/// dedup names, dirty a B-tree leaf each, and a larger batch shares more leaves (measured on
/// redb alone: 17 µs per key in commits of 65,536, 24 µs at 32,768, 25 µs at 16,384). The
/// pending layer holds the values of a large batch mostly as places in the log, so it costs
/// little memory.
const CHECKPOINT_KEYS: usize = 64 * 1024;
/// Bounds how much log a restart replays.
const CHECKPOINT_AGE: Duration = Duration::from_secs(5);
/// A pause is when a checkpoint costs nothing that requests wait for; a large one running
/// when the next burst comes would hold up that burst's log syncs with its own.
const CHECKPOINT_IDLE: Duration = Duration::from_millis(100);
/// Keys pending at most: beyond it, writes wait for the running checkpoint, which bounds
/// memory when redb falls behind.
const MAX_PENDING_KEYS: usize = 256 * 1024;
/// The nice value of checkpoint threads (see [`lower_priority`]).
const CHECKPOINT_NICE: i32 = 10;

enum Op {
    Create(ObjectKey, Bytes),
    Update(ObjectKey, Bytes, Option<u64>),
    Delete(ObjectKey, Option<u64>),
}

enum Outcome {
    Written(u64),
    Deleted(Bytes, u64),
}

struct WriteRequest {
    op: Op,
    reply: oneshot::Sender<Result<Outcome>>,
}

/// Counters for tests and metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Durable write groups (log syncs).
    pub commits: std::sync::atomic::AtomicU64,
    pub writes: std::sync::atomic::AtomicU64,
    /// redb commits of checkpoints.
    pub checkpoints: std::sync::atomic::AtomicU64,
}

/// What readers, the writer and the checkpoint thread share.
struct Shared {
    db: Database,
    pending: RwLock<Pending>,
    healthy: AtomicBool,
}

impl Shared {
    fn pending(&self) -> std::sync::RwLockReadGuard<'_, Pending> {
        self.pending.read().unwrap_or_else(|p| p.into_inner())
    }

    fn pending_mut(&self) -> std::sync::RwLockWriteGuard<'_, Pending> {
        self.pending.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The key's current value: pending, else in redb. The redb snapshot is taken while the
    /// pending layer is held, so a checkpoint finishing meanwhile cannot hide the key.
    fn current(&self, flat: &str) -> Result<Option<Versioned>> {
        let txn = {
            let pending = self.pending();
            if let Some(entry) = pending.lookup(flat).cloned() {
                drop(pending);
                return read_pending(entry.as_ref());
            }
            self.db.begin_read().map_err(internal)?
        };
        let objects = txn.open_table(OBJECTS).map_err(internal)?;
        let found = objects.get(flat).map_err(internal)?;
        Ok(found.map(|v| versioned(v.value())))
    }
}

/// The keys redb holds.
fn existing_keys(db: &Database) -> Result<Keys> {
    let txn = db.begin_read().map_err(internal)?;
    let objects = txn.open_table(OBJECTS).map_err(internal)?;
    let mut keys = Keys::default();
    for row in objects.iter().map_err(internal)? {
        keys.added(row.map_err(internal)?.0.value());
    }
    Ok(keys)
}

/// A pending state as the store's callers see it: its value, read back from the log where it
/// is not held.
fn read_pending(entry: Option<&Pended>) -> Result<Option<Versioned>> {
    entry
        .map(Pended::read)
        .transpose()
        .map_err(|e| StoreError::Unavailable(format!("reading the write-ahead log: {e}")))
}

/// A stored row as the store's callers see it.
fn versioned((mod_revision, bytes): (u64, &[u8])) -> Versioned {
    Versioned {
        value: Bytes::copy_from_slice(bytes),
        mod_revision,
    }
}

/// Writes keys' states (a revision and value, or `None` for gone) into redb within `txn`,
/// and the revision the store then stands at.
fn write_states<'a, V: AsRef<[u8]>>(
    txn: &::redb::WriteTransaction,
    states: impl IntoIterator<Item = Result<(&'a str, Option<(u64, V)>)>>,
    revision: u64,
) -> Result<()> {
    let mut objects = txn.open_table(OBJECTS).map_err(internal)?;
    for state in states {
        let (key, state) = state?;
        match state {
            Some((mod_revision, value)) => {
                objects
                    .insert(key, (mod_revision, value.as_ref()))
                    .map_err(internal)?;
            }
            None => {
                objects.remove(key).map_err(internal)?;
            }
        }
    }
    let mut meta = txn.open_table(META).map_err(internal)?;
    meta.insert(REVISION, revision).map_err(internal)?;
    Ok(())
}

/// The embedded, single-process store.
pub struct RedbStore {
    shared: Arc<Shared>,
    hub: Arc<Hub>,
    writer: Option<std_mpsc::SyncSender<WriteRequest>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    pub stats: Arc<Stats>,
}

impl Drop for RedbStore {
    /// Stops the writer, which checkpoints everything pending, and waits for it, so the file
    /// lock is free when `drop` returns (a restart in the same process can reopen the
    /// database at once).
    fn drop(&mut self) {
        self.writer.take();
        if let Some(thread) = self.writer_thread.take() {
            let _ = thread.join();
        }
    }
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

fn stored_revision(txn: &::redb::WriteTransaction) -> Result<u64> {
    let meta = txn.open_table(META).map_err(internal)?;
    Ok(meta
        .get(REVISION)
        .map_err(internal)?
        .map(|v| v.value())
        .unwrap_or(0))
}

impl RedbStore {
    /// Opens (or creates) the database at `path`, replaying its write-ahead log.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, HubLimits::default())
    }

    pub fn open_with(path: &Path, limits: HubLimits) -> Result<Self> {
        let unavailable = |e: &dyn std::fmt::Display| {
            StoreError::Unavailable(format!("opening {}: {e}", path.display()))
        };
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| unavailable(&e))?;
        let replay = wal::recover(path).map_err(|e| unavailable(&e))?;
        let revision = {
            let txn = db.begin_write().map_err(internal)?;
            let checkpointed = stored_revision(&txn)?;
            // The changes after the last checkpoint, as long as revisions follow on.
            let later: Vec<&wal::Change> = replay
                .iter()
                .filter(|c| c.revision > checkpointed)
                .zip(checkpointed + 1..)
                .take_while(|(c, expected)| c.revision == *expected)
                .map(|(c, _)| c)
                .collect();
            if later.len() < replay.iter().filter(|c| c.revision > checkpointed).count() {
                tracing::warn!(
                    after = checkpointed + later.len() as u64,
                    "the write-ahead log skips revisions; replaying stops there"
                );
            }
            let revision = later.last().map_or(checkpointed, |c| c.revision);
            let states = later.iter().map(|c| {
                let row = c.value.as_ref().map(|v| (c.revision, &v[..]));
                Ok((c.key.as_str(), row))
            });
            write_states(&txn, states, revision)?;
            txn.commit().map_err(internal)?;
            if !later.is_empty() {
                tracing::info!(
                    replayed = later.len(),
                    revision,
                    "replayed the write-ahead log"
                );
            }
            revision
        };
        let keys = existing_keys(&db)?;
        // Everything the log held is in redb now; a fresh segment starts.
        for (_, segment) in wal::segments(path).map_err(|e| unavailable(&e))? {
            wal::Wal::retire(path, &segment).map_err(|e| unavailable(&e))?;
        }
        let log = wal::Wal::create(path, revision + 1).map_err(|e| unavailable(&e))?;
        let shared = Arc::new(Shared {
            db,
            pending: RwLock::new(Pending::new(revision)),
            healthy: AtomicBool::new(true),
        });
        let hub = Arc::new(Hub::new(revision, limits));
        let stats = Arc::new(Stats::default());
        let (tx, rx) = std_mpsc::sync_channel(QUEUE);
        let writer = Writer {
            shared: shared.clone(),
            hub: hub.clone(),
            revision,
            stats: stats.clone(),
            db_path: path.to_path_buf(),
            log,
            keys,
            oldest_pending: None,
            checkpoint: None,
            retained: Vec::new(),
            preparing: None,
            may_prepare: true,
        };
        let thread = std::thread::Builder::new()
            .name("zen-store-write".into())
            .spawn(move || writer.run(rx))
            .map_err(internal)?;
        Ok(Self {
            shared,
            hub,
            writer: Some(tx),
            writer_thread: Some(thread),
            stats,
        })
    }

    async fn submit(&self, op: Op) -> Result<Outcome> {
        let (reply, rx) = oneshot::channel();
        let writer = self
            .writer
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("the store is closing".into()))?;
        writer
            .try_send(WriteRequest { op, reply })
            .map_err(|e| match e {
                std_mpsc::TrySendError::Full(_) => {
                    StoreError::Unavailable("too many writes queued; retry shortly".into())
                }
                std_mpsc::TrySendError::Disconnected(_) => {
                    StoreError::Unavailable("the store writer stopped".into())
                }
            })?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the store writer stopped".into()))?
    }

    fn list_blocking(&self, prefix: &Prefix, options: &ListOptions) -> Result<ListResult> {
        let (start, end) = prefix.range();
        let after = options.start_after.as_ref().map(ObjectKey::encode);
        let limit = options.limit.unwrap_or(usize::MAX);
        // Both sources start after the page's last key: a later page reads no earlier ones.
        // A key past the prefix (a continue token is the client's to send) leaves an empty
        // range, which the B-trees would refuse if it ran backwards.
        let bounds = (
            match after.as_deref() {
                Some(a) if a >= end.as_str() => Bound::Included(end.as_str()),
                Some(a) if a >= start.as_str() => Bound::Excluded(a),
                _ => Bound::Included(start.as_str()),
            },
            Bound::Excluded(end.as_str()),
        );
        // The pending layer and a redb snapshot together: the state at `snapshot`.
        let (pending, snapshot, target, txn) = {
            let pending = self.shared.pending();
            let snapshot = pending.revision;
            let target = options.at_revision.unwrap_or(snapshot);
            if target > snapshot {
                return Err(StoreError::FutureRevision {
                    requested: target,
                    current: snapshot,
                });
            }
            // Each revision after the target is one change to undo at most (see `window`).
            let undo = usize::try_from(snapshot - target).unwrap_or(usize::MAX);
            let live = limit.saturating_add(undo).saturating_add(1);
            let txn = self.shared.db.begin_read().map_err(internal)?;
            (pending.range(bounds, live), snapshot, target, txn)
        };
        // Read back from the log without the pending layer held.
        let pending = pending
            .into_iter()
            .map(|(k, entry)| Ok((k, read_pending(entry.as_ref())?)))
            .collect::<Result<Vec<_>>>()?;
        let objects = txn.open_table(OBJECTS).map_err(internal)?;
        // Changes between the requested revision and this snapshot, to undo.
        let overlay: Vec<Arc<Event>> = if target < snapshot {
            self.wait_for_hub(snapshot);
            self.hub
                .events_after(prefix, target)?
                .into_iter()
                .filter(|e| e.revision <= snapshot)
                .collect()
        } else {
            Vec::new()
        };

        // Undoing can remove at most one item per overlay event, so this many items always
        // leave `limit` (and one to tell whether there are more) after undoing.
        let window = limit.saturating_add(overlay.len()).saturating_add(1);
        let mut page: BTreeMap<String, Versioned> = BTreeMap::new();
        let mut truncated_at: Option<String> = None;
        let range = objects.range::<&str>(bounds).map_err(internal)?;
        let mut stored = range.map(|entry| {
            entry
                .map_err(internal)
                .map(|(k, v)| (k.value().to_owned(), Some(versioned(v.value()))))
        });
        let mut pending = pending.into_iter().peekable();
        let mut next_stored = stored.next().transpose()?;
        loop {
            // The smaller key of the two sources; on a tie the pending state wins.
            let (k, entry) = match (&next_stored, pending.peek()) {
                (None, None) => break,
                (Some((sk, _)), Some((pk, _))) if pk <= sk => {
                    if pk == sk {
                        next_stored = stored.next().transpose()?;
                    }
                    pending.next().unwrap_or_default()
                }
                (Some(_), _) => {
                    let item = next_stored.take().unwrap_or_default();
                    next_stored = stored.next().transpose()?;
                    item
                }
                (None, Some(_)) => pending.next().unwrap_or_default(),
            };
            let Some(v) = entry else { continue };
            if page.len() == window {
                truncated_at = page.keys().next_back().cloned();
                break;
            }
            page.insert(k, v);
        }
        for event in overlay.iter().rev() {
            let k = event.key.encode();
            if after.as_deref().is_some_and(|a| k.as_str() <= a) {
                continue;
            }
            match (&event.kind, &event.prev) {
                (EventKind::Added, _) => {
                    page.remove(&k);
                }
                (EventKind::Modified | EventKind::Deleted, Some(prev)) => {
                    page.insert(k, prev.clone());
                }
                (_, None) => {}
            }
        }
        if let Some(last) = &truncated_at {
            page.retain(|k, _| k <= last);
        }
        let more = page.len() > limit || truncated_at.is_some();
        let items = page
            .into_iter()
            .take(limit)
            .filter_map(|(k, v)| ObjectKey::decode(&k).map(|k| (k, v)))
            .collect();
        Ok(ListResult {
            items,
            revision: target,
            more,
        })
    }

    /// The hub is told about a write right after it is durable; a reader that saw the write
    /// first waits that moment out.
    fn wait_for_hub(&self, revision: u64) {
        for _ in 0..1000 {
            if self.hub.revision() >= revision {
                return;
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

impl Store for RedbStore {
    fn get<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<Option<Versioned>>> {
        Box::pin(async move { self.shared.current(&key.encode()) })
    }

    fn create(&self, key: ObjectKey, value: Bytes) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            match self.submit(Op::Create(key, value)).await? {
                Outcome::Written(rev) | Outcome::Deleted(_, rev) => Ok(rev),
            }
        })
    }

    fn update(
        &self,
        key: ObjectKey,
        value: Bytes,
        expected: Option<u64>,
    ) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            match self.submit(Op::Update(key, value, expected)).await? {
                Outcome::Written(rev) | Outcome::Deleted(_, rev) => Ok(rev),
            }
        })
    }

    fn delete(&self, key: ObjectKey, expected: Option<u64>) -> BoxFuture<'_, Result<(Bytes, u64)>> {
        Box::pin(async move {
            match self.submit(Op::Delete(key, expected)).await? {
                Outcome::Deleted(value, rev) => Ok((value, rev)),
                Outcome::Written(rev) => Ok((Bytes::new(), rev)),
            }
        })
    }

    fn list(&self, prefix: Prefix, options: ListOptions) -> BoxFuture<'_, Result<ListResult>> {
        // redb reads are memory-mapped and fast; a page is read in place.
        Box::pin(async move { self.list_blocking(&prefix, &options) })
    }

    fn current_revision(&self) -> u64 {
        self.hub.revision()
    }

    fn watch(&self, prefix: Prefix, from_revision: u64) -> Result<Watcher> {
        self.hub.subscribe(prefix, from_revision)
    }

    fn ready(&self) -> bool {
        self.shared.healthy.load(Ordering::Acquire)
    }
}

/// Checkpoints are background work, as compaction is in other databases: the threads that
/// answer requests go first, and a checkpoint takes the CPU they leave idle. When requests
/// keep the CPU busy for long, pending keys reach [`MAX_PENDING_KEYS`], writes wait for the
/// checkpoint, and it gets the CPU. On Linux a thread's nice value is its own.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) =
        rustix::process::setpriority_process(Some(rustix::thread::gettid()), CHECKPOINT_NICE)
    {
        tracing::debug!(error = %e, "the checkpoint thread keeps its priority");
    }
}

/// A checkpoint in progress: the log segments it makes redundant, and its thread.
struct Checkpoint {
    segments: Vec<wal::Segment>,
    thread: std::thread::JoinHandle<bool>,
}

struct Writer {
    shared: Arc<Shared>,
    hub: Arc<Hub>,
    revision: u64,
    stats: Arc<Stats>,
    db_path: PathBuf,
    log: wal::Wal,
    keys: Keys,
    /// When the oldest write not yet in a checkpoint was made.
    oldest_pending: Option<Instant>,
    checkpoint: Option<Checkpoint>,
    /// Segments before the current one that no checkpoint has covered yet (those of failed
    /// checkpoints, and ones the log moved off); retired once a later one covers them.
    retained: Vec<wal::Segment>,
    /// The thread preparing a spare for the log to move onto, and whether one may be
    /// prepared at all (not again after a failure).
    preparing: Option<std::thread::JoinHandle<bool>>,
    may_prepare: bool,
}

impl Writer {
    fn run(mut self, rx: std_mpsc::Receiver<WriteRequest>) {
        loop {
            // Idle with work outstanding: wake to checkpoint it, or to reap a finished one.
            let first = if self.oldest_pending.is_some() || self.checkpoint.is_some() {
                match rx.recv_timeout(CHECKPOINT_IDLE) {
                    Ok(first) => first,
                    Err(std_mpsc::RecvTimeoutError::Timeout) => {
                        self.maybe_checkpoint(true);
                        continue;
                    }
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match rx.recv() {
                    Ok(first) => first,
                    Err(_) => break,
                }
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            let (ops, replies): (Vec<Op>, Vec<_>) =
                batch.into_iter().map(|r| (r.op, r.reply)).unzip();
            match self.commit(ops) {
                Ok((outcomes, events)) => {
                    self.shared.healthy.store(true, Ordering::Release);
                    self.hub.publish(events);
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(outcome);
                    }
                    self.keep_log_in_place();
                }
                Err(e) => {
                    tracing::error!(error = %e, "store commit failed");
                    self.shared.healthy.store(false, Ordering::Release);
                    for reply in replies {
                        let _ = reply.send(Err(StoreError::Unavailable(e.to_string())));
                    }
                }
            }
            self.maybe_checkpoint(false);
        }
        // Closing: everything pending goes into redb, so the next open replays nothing.
        if let Some(preparing) = self.preparing.take() {
            let _ = preparing.join();
        }
        self.finish_checkpoint();
        if self.oldest_pending.is_some() {
            self.start_checkpoint();
            self.finish_checkpoint();
        }
    }

    /// Applies `ops` in order, each succeeding or failing on its own, and makes the
    /// successful ones durable in one log sync; fails as a whole only on I/O errors, and
    /// then nothing of it is kept.
    fn commit(
        &mut self,
        ops: Vec<Op>,
    ) -> std::result::Result<(Vec<Result<Outcome>>, Vec<Event>), StoreError> {
        let mut revision = self.revision;
        let mut outcomes = Vec::with_capacity(ops.len());
        let mut events = Vec::new();
        // This group's own changes, which later ops in it must see.
        let mut changed: BTreeMap<String, Option<Versioned>> = BTreeMap::new();
        // Each change, its revision, and whether it created its key.
        let mut changes: Vec<(String, Option<Versioned>, u64, bool)> = Vec::new();
        for op in ops {
            let (key, value, expected, create) = match op {
                Op::Create(k, v) => (k, Some(v), None, true),
                Op::Update(k, v, e) => (k, Some(v), e, false),
                Op::Delete(k, e) => (k, None, e, false),
            };
            let flat = key.encode();
            let current = match changed.get(&flat) {
                Some(entry) => entry.clone(),
                None if create && !self.keys.may_exist(&flat) => None,
                None => self.shared.current(&flat)?,
            };
            let outcome = match (&current, create) {
                (Some(_), true) => Err(StoreError::AlreadyExists),
                (None, false) => Err(StoreError::NotFound),
                (Some(cur), false) if expected.is_some_and(|e| e != cur.mod_revision) => {
                    Err(StoreError::Conflict {
                        current: cur.mod_revision,
                    })
                }
                _ => Ok(()),
            };
            if let Err(e) = outcome {
                outcomes.push(Err(e));
                continue;
            }
            revision += 1;
            let entry = match value {
                Some(value) => {
                    events.push(Event {
                        kind: if create {
                            EventKind::Added
                        } else {
                            EventKind::Modified
                        },
                        key,
                        value: value.clone(),
                        revision,
                        prev: current,
                    });
                    outcomes.push(Ok(Outcome::Written(revision)));
                    Some(Versioned {
                        value,
                        mod_revision: revision,
                    })
                }
                None => {
                    let last = current.clone().map(|c| c.value).unwrap_or_default();
                    events.push(Event {
                        kind: EventKind::Deleted,
                        key,
                        value: last.clone(),
                        revision,
                        prev: current,
                    });
                    outcomes.push(Ok(Outcome::Deleted(last, revision)));
                    None
                }
            };
            changed.insert(flat.clone(), entry.clone());
            changes.push((flat, entry, revision, create));
        }
        if changes.is_empty() {
            return Ok((outcomes, events));
        }
        let places = self
            .log
            .append(
                changes
                    .iter()
                    .map(|(k, e, rev, _)| (*rev, k.as_str(), e.as_ref().map(|v| &v.value[..]))),
            )
            .map_err(|e| StoreError::Unavailable(format!("writing the write-ahead log: {e}")))?;
        {
            let mut pending = self.shared.pending_mut();
            for ((k, e, rev, created), at) in changes.into_iter().zip(places) {
                match (&e, created) {
                    (Some(_), true) => self.keys.added(&k),
                    (None, _) => self.keys.removed(&k),
                    (Some(_), false) => {}
                }
                match e {
                    Some(v) => pending.put(k, rev, v.value, at),
                    None => pending.delete(k, rev),
                }
            }
        }
        self.oldest_pending.get_or_insert_with(Instant::now);
        self.revision = revision;
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        self.stats
            .writes
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        Ok((outcomes, events))
    }

    /// Moves the log off a segment that grows with every sync, which costs the file system
    /// a metadata update each time (about a third more per sync, measured here): once such a
    /// segment is past [`wal::PREPARE_AFTER`], a spare is prepared in the background, and
    /// when it is ready the log continues over it. The segment it leaves is kept until the
    /// next checkpoint covers it. Only a new database has such segments: afterwards each
    /// checkpoint's new segment is the spare the one before it left (retiring keeps the
    /// largest segment as the spare).
    fn keep_log_in_place(&mut self) {
        if !self.log.grows() {
            // A checkpoint's new segment may have taken the prepared spare already.
            if self.preparing.as_ref().is_some_and(|t| t.is_finished()) {
                let _ = self.preparing.take().map(std::thread::JoinHandle::join);
            }
            return;
        }
        match &self.preparing {
            None if self.may_prepare && self.log.len() >= wal::PREPARE_AFTER => {
                let db = self.db_path.clone();
                let thread = std::thread::Builder::new()
                    .name("zen-store-spare".into())
                    .spawn(move || {
                        lower_priority();
                        wal::Wal::prepare_spare(&db)
                            .inspect_err(|e| {
                                tracing::warn!(error = %e, "preparing a write-ahead log segment failed; the log grows its segment instead")
                            })
                            .is_ok()
                    });
                match thread {
                    Ok(thread) => self.preparing = Some(thread),
                    Err(_) => self.may_prepare = false,
                }
            }
            Some(preparing) if preparing.is_finished() => {
                let ready = self
                    .preparing
                    .take()
                    .is_some_and(|t| t.join().unwrap_or(false));
                if !ready {
                    self.may_prepare = false;
                    return;
                }
                match wal::Wal::create(&self.db_path, self.revision + 1) {
                    Ok(log) => {
                        let left = std::mem::replace(&mut self.log, log);
                        self.retained.push(left.segment());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "moving the write-ahead log onto its spare failed; it goes on where it is");
                        self.may_prepare = false;
                    }
                }
            }
            _ => {}
        }
    }

    /// Starts a checkpoint when enough is pending (anything, when writes have paused: `idle`)
    /// and none runs; when the pending layer is full, waits for the running one first.
    fn maybe_checkpoint(&mut self, idle: bool) {
        let active = self.shared.pending().active_len();
        if let Some(running) = &self.checkpoint {
            if active < MAX_PENDING_KEYS && !running.thread.is_finished() {
                return;
            }
            self.finish_checkpoint();
        }
        let due = active >= CHECKPOINT_KEYS
            || self
                .oldest_pending
                .is_some_and(|t| idle || t.elapsed() >= CHECKPOINT_AGE);
        if due {
            self.start_checkpoint();
        }
    }

    /// Freezes the pending writes and copies them into redb on another thread; writes go on
    /// into a new log segment meanwhile.
    fn start_checkpoint(&mut self) {
        let mut segments = std::mem::take(&mut self.retained);
        // After a failed checkpoint nothing may have been written since: then the writes
        // are all in retained segments and the current one, empty, stays.
        if !self.log.is_empty() {
            let log = match wal::Wal::create(&self.db_path, self.revision + 1) {
                Ok(log) => log,
                Err(e) => {
                    tracing::error!(error = %e, "starting a write-ahead log segment failed; the checkpoint waits");
                    self.retained = segments;
                    return;
                }
            };
            segments.push(std::mem::replace(&mut self.log, log).segment());
        }
        let (frozen, revision) = {
            let mut pending = self.shared.pending_mut();
            (pending.freeze(), pending.revision)
        };
        self.oldest_pending = None;
        let (shared, stats, job) = (self.shared.clone(), self.stats.clone(), frozen.clone());
        let thread = std::thread::Builder::new()
            .name("zen-store-checkpoint".into())
            .spawn(move || {
                lower_priority();
                checkpoint(&shared, &job, revision, &stats)
            });
        match thread {
            Ok(thread) => self.checkpoint = Some(Checkpoint { segments, thread }),
            Err(e) => {
                tracing::warn!(error = %e, "starting the checkpoint thread failed; checkpointing here");
                let ok = checkpoint(&self.shared, &frozen, revision, &self.stats);
                self.finished(ok, segments);
            }
        }
    }

    /// Waits for the running checkpoint, if any.
    fn finish_checkpoint(&mut self) {
        if let Some(c) = self.checkpoint.take() {
            let ok = c.thread.join().unwrap_or(false);
            self.finished(ok, c.segments);
        }
    }

    fn finished(&mut self, ok: bool, segments: Vec<wal::Segment>) {
        if ok {
            // Thawed first: then only readers that found a value before hold a segment.
            self.shared.pending_mut().thaw();
            for s in segments {
                let path = s.path().to_path_buf();
                if let Err(e) = s.retire(&self.db_path) {
                    tracing::warn!(segment = %path.display(), error = %e, "disposing of a checkpointed log segment failed");
                }
            }
        } else {
            // Still durable in the log and still served from memory; the next checkpoint
            // takes these writes again with the newer ones.
            self.shared.healthy.store(false, Ordering::Release);
            self.shared.pending_mut().unfreeze();
            self.oldest_pending.get_or_insert_with(Instant::now);
            self.retained.extend(segments);
        }
    }
}

/// Copies one frozen generation into redb in a single durable commit.
fn checkpoint(
    shared: &Shared,
    frozen: &BTreeMap<String, Entry>,
    revision: u64,
    stats: &Stats,
) -> bool {
    let write = || -> Result<()> {
        let txn = shared.db.begin_write().map_err(internal)?;
        let states = frozen.iter().map(|(key, entry)| {
            let row = read_pending(entry.as_ref())?.map(|v| (v.mod_revision, v.value));
            Ok((key.as_str(), row))
        });
        write_states(&txn, states, revision)?;
        txn.commit().map_err(internal)
    };
    match write() {
        Ok(()) => {
            stats.checkpoints.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "checkpointing the store into redb failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A list continued after a key outside its prefix, before or beyond it, reads the
    /// prefix from its start or finds nothing, with or without pending writes.
    #[tokio::test]
    async fn a_list_continued_outside_its_prefix_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("db")).unwrap();
        for name in ["a", "b"] {
            let key = ObjectKey::new("observations", "ns", name);
            store.create(key, Bytes::from_static(b"{}")).await.unwrap();
        }
        let list = |after: ObjectKey| {
            let options = ListOptions {
                start_after: Some(after),
                ..ListOptions::default()
            };
            store.list(Prefix::new("observations", Some("ns")), options)
        };
        let beyond = list(ObjectKey::new("zzz", "ns", "x")).await.unwrap();
        assert!(beyond.items.is_empty() && !beyond.more);
        let at_end = list(ObjectKey::new("observations", "ns0", ""))
            .await
            .unwrap();
        assert!(at_end.items.is_empty());
        let before = list(ObjectKey::new("aaa", "ns", "x")).await.unwrap();
        let names: Vec<_> = before.items.iter().map(|(k, _)| k.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    /// Past the memory budget, pending values are read back from the log: gets, lists and
    /// the checkpoint at closing see them whole, and so does the store reopened.
    #[tokio::test]
    async fn pending_values_beyond_the_memory_budget_are_read_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let value = |i: usize| Bytes::from(vec![b'a' + (i % 26) as u8; 1 << 20]);
        let key = |i: usize| ObjectKey::new("observations", "ns", &format!("o{i:02}"));
        let count = 40;
        {
            let store = RedbStore::open(&path).unwrap();
            for i in 0..count {
                store.create(key(i), value(i)).await.unwrap();
            }
            assert!(
                store.shared.pending().held_bytes() < count << 20,
                "some values are only in the log"
            );
            for i in 0..count {
                let got = store.get(&key(i)).await.unwrap().unwrap();
                assert_eq!(got.value, value(i), "get {i}");
            }
            let all = store
                .list(
                    Prefix::new("observations", Some("ns")),
                    ListOptions::default(),
                )
                .await
                .unwrap();
            assert_eq!(all.items.len(), count);
            for (i, (_, v)) in all.items.iter().enumerate() {
                assert_eq!(v.value, value(i), "list item {i}");
            }
        }
        let store = RedbStore::open(&path).unwrap();
        for i in 0..count {
            let got = store.get(&key(i)).await.unwrap().unwrap();
            assert_eq!(got.value, value(i), "after reopening, {i}");
        }
    }

    /// A new database's log grows its first segment until a prepared spare is ready, then
    /// goes on over the spare; the two segments replay as one log.
    #[tokio::test]
    async fn a_growing_log_moves_onto_a_prepared_spare() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = RedbStore::open(&path).unwrap();
        let value = Bytes::from(vec![b'v'; 4096]);
        let deadline = Instant::now() + Duration::from_secs(4);
        let mut written = 0u64;
        while wal::segments(&path).unwrap().len() < 2 {
            assert!(Instant::now() < deadline, "the log did not move within 4 s");
            let key = ObjectKey::new("observations", "ns", &format!("o{written:06}"));
            store.create(key, value.clone()).await.unwrap();
            written += 1;
        }
        // A write takes its 4 KiB value and at most 64 bytes of key and framing in the log.
        assert!(
            written * (4096 + 64) >= wal::PREPARE_AFTER,
            "moved only once grown"
        );
        // One more write lands in the new segment.
        let key = ObjectKey::new("observations", "ns", "last");
        let last = store.create(key, value.clone()).await.unwrap();
        let segments = wal::segments(&path).unwrap();
        let newest = &segments[segments.len() - 1].1;
        assert!(
            std::fs::metadata(newest).unwrap().len() >= 64 << 20,
            "the new segment is the prepared spare"
        );
        let replayed = wal::recover(&path).unwrap();
        assert_eq!(replayed.len() as u64, written + 1);
        assert!(replayed.iter().zip(1..).all(|(c, r)| c.revision == r));
        assert_eq!(replayed.last().map(|c| c.revision), Some(last));
    }
    #[cfg(target_os = "linux")]
    #[test]
    fn checkpoint_threads_run_at_a_lower_priority() {
        let nice = std::thread::spawn(|| {
            lower_priority();
            rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
        })
        .join()
        .unwrap();
        // Unprivileged, a thread can only lower its priority: at least this nice, or more
        // if the tests already run nicer.
        assert!(nice >= CHECKPOINT_NICE, "nice {nice}");
        let here = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        assert!(
            here < super::CHECKPOINT_NICE || here == nice,
            "other threads keep theirs"
        );
    }
}
