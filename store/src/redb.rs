//! The embedded store: one redb file, a writer thread that commits writes in groups, and the
//! change hub for watches and past-revision lists.
//!
//! Group commit: every write waits for a durable commit, but writes arriving while a commit
//! is in flight share the next one, so throughput grows with concurrency instead of being
//! capped at one fsync per write.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc as std_mpsc,
    },
    time::Duration,
};

use ::redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use bytes::Bytes;
use tokio::sync::oneshot;

use crate::{
    BoxFuture, ListOptions, ListResult, ObjectKey, Prefix, Result, Store, StoreError, Versioned,
    watch::{Event, EventKind, Hub, HubLimits, Watcher},
};

const OBJECTS: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("objects");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION: &str = "revision";

/// Writes one commit takes at most.
const MAX_BATCH: usize = 512;
/// Writes waiting for the writer; beyond this, writes fail fast with `Unavailable`.
const QUEUE: usize = 16 * 1024;
/// Memory redb may use to cache pages. The OS page cache holds the file anyway; a small
/// cache keeps the resident set predictable with hundreds of thousands of objects.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

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
    pub commits: std::sync::atomic::AtomicU64,
    pub writes: std::sync::atomic::AtomicU64,
}

/// The embedded, single-process store.
pub struct RedbStore {
    db: Arc<Database>,
    hub: Arc<Hub>,
    writer: Option<std_mpsc::SyncSender<WriteRequest>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    healthy: Arc<AtomicBool>,
    pub stats: Arc<Stats>,
}

impl Drop for RedbStore {
    /// Stops the writer and waits for it, so the file lock is free when `drop` returns
    /// (a restart in the same process can reopen the database at once).
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

impl RedbStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, HubLimits::default())
    }

    pub fn open_with(path: &Path, limits: HubLimits) -> Result<Self> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| StoreError::Unavailable(format!("opening {}: {e}", path.display())))?;
        let revision = {
            let txn = db.begin_write().map_err(internal)?;
            let rev = {
                let _ = txn.open_table(OBJECTS).map_err(internal)?;
                let meta = txn.open_table(META).map_err(internal)?;
                meta.get(REVISION)
                    .map_err(internal)?
                    .map(|v| v.value())
                    .unwrap_or(0)
            };
            txn.commit().map_err(internal)?;
            rev
        };
        let db = Arc::new(db);
        let hub = Arc::new(Hub::new(revision, limits));
        let healthy = Arc::new(AtomicBool::new(true));
        let stats = Arc::new(Stats::default());
        let (tx, rx) = std_mpsc::sync_channel(QUEUE);
        let writer = Writer {
            db: db.clone(),
            hub: hub.clone(),
            revision,
            healthy: healthy.clone(),
            stats: stats.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("zen-store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(internal)?;
        Ok(Self {
            db,
            hub,
            writer: Some(tx),
            writer_thread: Some(thread),
            healthy,
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
        let txn = self.db.begin_read().map_err(internal)?;
        let objects = txn.open_table(OBJECTS).map_err(internal)?;
        let meta = txn.open_table(META).map_err(internal)?;
        let snapshot = meta
            .get(REVISION)
            .map_err(internal)?
            .map(|v| v.value())
            .unwrap_or(0);
        let target = options.at_revision.unwrap_or(snapshot);
        if target > snapshot {
            return Err(StoreError::FutureRevision {
                requested: target,
                current: snapshot,
            });
        }
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

        let (start, end) = prefix.range();
        let after = options.start_after.as_ref().map(ObjectKey::encode);
        let limit = options.limit.unwrap_or(usize::MAX);
        // Undoing can remove at most one item per overlay event, so this many items from disk
        // always leave `limit` (and one to tell whether there are more) after undoing.
        let window = limit.saturating_add(overlay.len()).saturating_add(1);
        let mut page: BTreeMap<String, Versioned> = BTreeMap::new();
        let mut truncated_at: Option<String> = None;
        let range = objects
            .range(start.as_str()..end.as_str())
            .map_err(internal)?;
        for entry in range {
            let (k, v) = entry.map_err(internal)?;
            let k = k.value();
            if after.as_deref().is_some_and(|a| k <= a) {
                continue;
            }
            if page.len() == window {
                truncated_at = page.keys().next_back().cloned();
                break;
            }
            let (rev, bytes) = v.value();
            page.insert(
                k.to_owned(),
                Versioned {
                    value: Bytes::copy_from_slice(bytes),
                    mod_revision: rev,
                },
            );
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

    /// The hub is told about a commit right after it; a reader that saw the commit first
    /// waits that moment out.
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
        Box::pin(async move {
            let txn = self.db.begin_read().map_err(internal)?;
            let objects = txn.open_table(OBJECTS).map_err(internal)?;
            let found = objects.get(key.encode().as_str()).map_err(internal)?;
            Ok(found.map(|v| {
                let (rev, bytes) = v.value();
                Versioned {
                    value: Bytes::copy_from_slice(bytes),
                    mod_revision: rev,
                }
            }))
        })
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
        self.healthy.load(Ordering::Acquire)
    }
}

struct Writer {
    db: Arc<Database>,
    hub: Arc<Hub>,
    revision: u64,
    healthy: Arc<AtomicBool>,
    stats: Arc<Stats>,
}

impl Writer {
    fn run(mut self, rx: std_mpsc::Receiver<WriteRequest>) {
        while let Ok(first) = rx.recv() {
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
                    self.healthy.store(true, Ordering::Release);
                    self.hub.publish(events);
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(outcome);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "store commit failed");
                    self.healthy.store(false, Ordering::Release);
                    for reply in replies {
                        let _ = reply.send(Err(StoreError::Unavailable(e.to_string())));
                    }
                }
            }
        }
    }

    /// Applies `ops` in one durable transaction. Each op succeeds or fails on its own; the
    /// transaction fails only on I/O errors, and then nothing of it is kept.
    fn commit(
        &mut self,
        ops: Vec<Op>,
    ) -> std::result::Result<(Vec<Result<Outcome>>, Vec<Event>), StoreError> {
        let txn = self.db.begin_write().map_err(internal)?;
        let mut revision = self.revision;
        let mut outcomes = Vec::with_capacity(ops.len());
        let mut events = Vec::new();
        {
            let mut objects = txn.open_table(OBJECTS).map_err(internal)?;
            for op in ops {
                let (key, value, expected, create) = match op {
                    Op::Create(k, v) => (k, Some(v), None, true),
                    Op::Update(k, v, e) => (k, Some(v), e, false),
                    Op::Delete(k, e) => (k, None, e, false),
                };
                let flat = key.encode();
                let current = objects.get(flat.as_str()).map_err(internal)?.map(|v| {
                    let (rev, bytes) = v.value();
                    Versioned {
                        value: Bytes::copy_from_slice(bytes),
                        mod_revision: rev,
                    }
                });
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
                match value {
                    Some(value) => {
                        objects
                            .insert(flat.as_str(), (revision, &value[..]))
                            .map_err(internal)?;
                        events.push(Event {
                            kind: if create {
                                EventKind::Added
                            } else {
                                EventKind::Modified
                            },
                            key,
                            value,
                            revision,
                            prev: current,
                        });
                        outcomes.push(Ok(Outcome::Written(revision)));
                    }
                    None => {
                        objects.remove(flat.as_str()).map_err(internal)?;
                        let last = current.clone().map(|c| c.value).unwrap_or_default();
                        events.push(Event {
                            kind: EventKind::Deleted,
                            key,
                            value: last.clone(),
                            revision,
                            prev: current,
                        });
                        outcomes.push(Ok(Outcome::Deleted(last, revision)));
                    }
                }
            }
            let mut meta = txn.open_table(META).map_err(internal)?;
            meta.insert(REVISION, revision).map_err(internal)?;
        }
        txn.commit().map_err(internal)?;
        self.revision = revision;
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        self.stats
            .writes
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        Ok((outcomes, events))
    }
}
