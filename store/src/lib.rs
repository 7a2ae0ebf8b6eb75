//! A revisioned key-value store with watches, on etcd's model, for the aggregated API.
//!
//! Values are opaque bytes (the API layer stores JSON objects without their
//! `resourceVersion`); every write gets the next global revision, which the API layer reports
//! as `resourceVersion`. Reads and lists can be answered at a recent past revision, so a
//! paginated list stays consistent, and watches replay from a revision, then follow live
//! changes. [`redb::RedbStore`] keeps it on local disk; an etcd implementation fits the same
//! trait with etcd's own revisions.

use std::{future::Future, pin::Pin};

use bytes::Bytes;

mod error;
pub mod etcd;
mod key;
pub mod redb;
pub mod watch;

pub use error::StoreError;
pub use key::{ObjectKey, Prefix};
pub use watch::{Event, EventKind, Watcher};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A boxed future, so the trait stays object-safe (`Arc<dyn Store>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A value with the revision of its last change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Bytes,
    pub mod_revision: u64,
}

/// How much of a list to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Continue after this key (exclusive), as a `continue` token does.
    pub start_after: Option<ObjectKey>,
    /// At most this many items.
    pub limit: Option<usize>,
    /// Read the state as of this revision instead of the latest.
    pub at_revision: Option<u64>,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResult {
    pub items: Vec<(ObjectKey, Versioned)>,
    /// The revision the page was read at; later pages pass it as `at_revision`.
    pub revision: u64,
    /// Whether items remain after the last one returned.
    pub more: bool,
}

/// The storage the aggregated API runs on.
pub trait Store: Send + Sync {
    fn get<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<Option<Versioned>>>;

    /// Stores a new key; `AlreadyExists` if it is there. Returns the new revision.
    fn create(&self, key: ObjectKey, value: Bytes) -> BoxFuture<'_, Result<u64>>;

    /// Replaces a key's value; `NotFound` if absent, `Conflict` if `expected` is given and
    /// differs from its current revision.
    fn update(
        &self,
        key: ObjectKey,
        value: Bytes,
        expected: Option<u64>,
    ) -> BoxFuture<'_, Result<u64>>;

    /// Removes a key, returning its last value and the revision of the deletion.
    fn delete(&self, key: ObjectKey, expected: Option<u64>) -> BoxFuture<'_, Result<(Bytes, u64)>>;

    fn list(&self, prefix: Prefix, options: ListOptions) -> BoxFuture<'_, Result<ListResult>>;

    /// The revision of the latest committed write (0 for an empty store).
    fn current_revision(&self) -> u64;

    /// Events under `prefix` with revisions after `from_revision`, then live ones.
    fn watch(&self, prefix: Prefix, from_revision: u64) -> Result<Watcher>;

    /// Whether the store can serve requests (readiness).
    fn ready(&self) -> bool {
        true
    }

    /// Whether other replicas write to the same store, so state that is per process
    /// elsewhere (delivery ids) must be kept in it.
    fn shared(&self) -> bool {
        false
    }
}
