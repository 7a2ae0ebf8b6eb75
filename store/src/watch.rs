//! The change hub: a bounded history of recent changes, and fan-out to watchers.
//!
//! Backends publish each committed change once, in revision order; every watcher gets its
//! own bounded queue. A watcher that does not keep up is cut off (its stream ends with
//! [`WatchEnd::TooSlow`]) instead of making the server buffer without limit; the client then
//! re-lists, as Kubernetes clients do. The same hub serves an etcd backend fed from one etcd
//! watch stream per replica.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::{ObjectKey, Prefix, Result, StoreError, Versioned};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

/// One committed change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub key: ObjectKey,
    /// The new value; for `Deleted`, the last value.
    pub value: Bytes,
    pub revision: u64,
    /// The value before this change (`Modified`, `Deleted`), for selector transitions and for
    /// answering lists at past revisions.
    pub prev: Option<Versioned>,
}

/// Why a watch stream ended on the store's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEnd {
    /// The watcher fell more than its buffer behind.
    TooSlow,
    /// The store shut down.
    Closed,
}

/// A stream of events for one watcher.
pub struct Watcher {
    rx: mpsc::Receiver<Arc<Event>>,
    lagged: Arc<AtomicBool>,
}

impl Watcher {
    /// The next event, or why the stream ended.
    pub async fn next(&mut self) -> std::result::Result<Arc<Event>, WatchEnd> {
        match self.rx.recv().await {
            Some(event) => Ok(event),
            None if self.lagged.load(Ordering::Acquire) => Err(WatchEnd::TooSlow),
            None => Err(WatchEnd::Closed),
        }
    }
}

struct Subscriber {
    prefix: Prefix,
    /// Events at or before this revision were replayed or are not wanted (a backend may
    /// publish a revision after a watcher asked to start there).
    from: u64,
    tx: mpsc::Sender<Arc<Event>>,
    lagged: Arc<AtomicBool>,
}

struct State {
    /// Recent events, oldest first.
    history: VecDeque<Arc<Event>>,
    /// Every revision up to this one is gone from history (0: nothing was ever dropped).
    compacted: u64,
    revision: u64,
    subscribers: Vec<Subscriber>,
}

/// Limits of the hub.
#[derive(Debug, Clone, Copy)]
pub struct HubLimits {
    /// Events kept for replay and past-revision lists.
    pub history: usize,
    /// Events a watcher may have queued before it is cut off.
    pub watcher_buffer: usize,
}

impl Default for HubLimits {
    fn default() -> Self {
        Self {
            history: 10_000,
            watcher_buffer: 1_024,
        }
    }
}

/// Shared by a backend and its readers.
pub struct Hub {
    state: Mutex<State>,
    limits: HubLimits,
}

impl Hub {
    /// A hub whose history starts at `revision` (what a freshly opened store has).
    pub fn new(revision: u64, limits: HubLimits) -> Self {
        Self {
            state: Mutex::new(State {
                history: VecDeque::new(),
                compacted: revision,
                revision,
                subscribers: Vec::new(),
            }),
            limits,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters more than stopping all watches would, so keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn revision(&self) -> u64 {
        self.lock().revision
    }

    /// Records committed events (in revision order) and hands them to watchers.
    pub fn publish(&self, events: Vec<Event>) {
        let mut state = self.lock();
        for event in events {
            let event = Arc::new(event);
            state.revision = state.revision.max(event.revision);
            state.subscribers.retain(|s| {
                if !s.prefix.contains(&event.key) || event.revision <= s.from {
                    return !s.tx.is_closed();
                }
                match s.tx.try_send(event.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        s.lagged.store(true, Ordering::Release);
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            });
            state.history.push_back(event);
            while state.history.len() > self.limits.history {
                if let Some(old) = state.history.pop_front() {
                    state.compacted = old.revision;
                }
            }
        }
    }

    /// A watcher of `prefix` that first receives every kept event after `from_revision`.
    pub fn subscribe(&self, prefix: Prefix, from_revision: u64) -> Result<Watcher> {
        let mut state = self.lock();
        if from_revision < state.compacted {
            return Err(StoreError::Expired {
                requested: from_revision,
                oldest: state.compacted,
            });
        }
        let replay: Vec<Arc<Event>> = state
            .history
            .iter()
            .filter(|e| e.revision > from_revision && prefix.contains(&e.key))
            .cloned()
            .collect();
        let (tx, rx) = mpsc::channel(replay.len() + self.limits.watcher_buffer);
        for event in replay {
            // Capacity was sized for the replay, so this cannot be full.
            let _ = tx.try_send(event);
        }
        let lagged = Arc::new(AtomicBool::new(false));
        let from = state.revision.max(from_revision);
        state.subscribers.push(Subscriber {
            prefix,
            from,
            tx,
            lagged: lagged.clone(),
        });
        Ok(Watcher { rx, lagged })
    }

    /// Events after `revision` under `prefix`, oldest first, or `Expired` when history no
    /// longer reaches back that far. Used to answer lists at a past revision.
    pub fn events_after(&self, prefix: &Prefix, revision: u64) -> Result<Vec<Arc<Event>>> {
        let state = self.lock();
        if revision < state.compacted {
            return Err(StoreError::Expired {
                requested: revision,
                oldest: state.compacted,
            });
        }
        Ok(state
            .history
            .iter()
            .filter(|e| e.revision > revision && prefix.contains(&e.key))
            .cloned()
            .collect())
    }

    /// Forgets everything before `revision` and ends every watch: the backend missed
    /// changes (etcd compacted past them), so watchers must relist.
    pub fn reset(&self, revision: u64) {
        let mut state = self.lock();
        state.history.clear();
        state.compacted = state.compacted.max(revision);
        state.revision = state.revision.max(revision);
        state.subscribers.clear();
    }

    /// Watchers currently subscribed.
    pub fn watcher_count(&self) -> usize {
        self.lock().subscribers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(rev: u64, name: &str) -> Event {
        Event {
            kind: EventKind::Added,
            key: ObjectKey::new("observations", "default", name),
            value: Bytes::from(name.to_owned()),
            revision: rev,
            prev: None,
        }
    }

    #[tokio::test]
    async fn replays_then_follows() {
        let hub = Hub::new(0, HubLimits::default());
        hub.publish(vec![ev(1, "a"), ev(2, "b")]);
        let mut w = hub.subscribe(Prefix::new("observations", None), 1).unwrap();
        hub.publish(vec![ev(3, "c")]);
        assert_eq!(w.next().await.unwrap().revision, 2);
        assert_eq!(w.next().await.unwrap().revision, 3);
    }

    #[tokio::test]
    async fn slow_watchers_are_cut_off_alone() {
        let hub = Hub::new(
            0,
            HubLimits {
                history: 100,
                watcher_buffer: 2,
            },
        );
        let mut slow = hub.subscribe(Prefix::new("observations", None), 0).unwrap();
        let mut fast = hub.subscribe(Prefix::new("observations", None), 0).unwrap();
        for rev in 1..=4 {
            hub.publish(vec![ev(rev, "x")]);
            assert_eq!(fast.next().await.unwrap().revision, rev);
        }
        assert_eq!(slow.next().await.unwrap().revision, 1);
        assert_eq!(slow.next().await.unwrap().revision, 2);
        assert_eq!(slow.next().await.unwrap_err(), WatchEnd::TooSlow);
        assert_eq!(hub.watcher_count(), 1);
    }

    #[test]
    fn history_is_bounded_and_old_revisions_expire() {
        let hub = Hub::new(
            10,
            HubLimits {
                history: 3,
                watcher_buffer: 8,
            },
        );
        assert!(matches!(
            hub.subscribe(Prefix::new("observations", None), 9),
            Err(StoreError::Expired { .. })
        ));
        hub.publish((11..=15).map(|r| ev(r, "x")).collect());
        assert!(hub.subscribe(Prefix::new("observations", None), 12).is_ok());
        assert!(matches!(
            hub.events_after(&Prefix::new("observations", None), 11),
            Err(StoreError::Expired { .. })
        ));
        assert_eq!(
            hub.events_after(&Prefix::new("observations", None), 13)
                .unwrap()
                .len(),
            2
        );
    }
}
