//! Delivery ids seen within the replay window, so a second delivery of the same id is
//! refused. Bounded: when full of unexpired ids, new deliveries are refused rather than
//! remembered partially (a forgotten id could be replayed).

use std::{
    collections::{HashSet, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

/// Ids one endpoint remembers at most.
pub const MAX_IDS: usize = 100_000;
/// Longest id kept; longer ones are hashed down to nothing useful, so refused.
pub const MAX_ID_LEN: usize = 256;

#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    First,
    Again,
    /// The cache is full of ids younger than the window.
    Full,
    TooLong,
}

pub struct DeliveryIds {
    window: Duration,
    inner: Mutex<Ids>,
}

#[derive(Default)]
struct Ids {
    order: VecDeque<(Instant, String)>,
    set: HashSet<String>,
}

impl DeliveryIds {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            inner: Mutex::new(Ids::default()),
        }
    }

    /// Records `id` unless it was seen within the window.
    pub fn check_and_insert(&self, id: &str, now: Instant) -> Seen {
        if id.len() > MAX_ID_LEN {
            return Seen::TooLong;
        }
        let mut ids = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((at, _)) = ids.order.front() {
            if now.duration_since(*at) < self.window {
                break;
            }
            if let Some((_, old)) = ids.order.pop_front() {
                ids.set.remove(&old);
            }
        }
        if ids.set.contains(id) {
            return Seen::Again;
        }
        if ids.set.len() >= MAX_IDS {
            return Seen::Full;
        }
        ids.set.insert(id.to_owned());
        ids.order.push_back((now, id.to_owned()));
        Seen::First
    }

    /// Forgets `id`: its delivery was not stored, so the sender's retry must get through.
    pub fn forget(&self, id: &str) {
        let mut ids = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if ids.set.remove(id) {
            ids.order.retain(|(_, i)| i != id);
        }
    }
}

/// Delivery ids claimed in a store several replicas share (etcd), so each refuses a delivery
/// another one took, and a restart does not reopen the window. The in-memory
/// [`DeliveryIds`] stays in front as the cheap first answer for repeats seen here; with one
/// replica it is the whole answer (a claim would cost a second durable write per delivery).
pub mod shared {
    use std::time::Duration;

    use bytes::Bytes;
    use sha2::{Digest, Sha256};
    use zen_store::{ListOptions, ObjectKey, Prefix, Store, StoreError};

    /// The store's resource for claims; never served by the API.
    pub const RESOURCE: &str = "deliveryids";

    #[derive(Debug, PartialEq, Eq)]
    pub enum Claim {
        /// This delivery is the first: the claim (its key and revision) is ours.
        First {
            key: ObjectKey,
            revision: u64,
        },
        Again,
    }

    fn unix_now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    /// The claim's key: per endpoint and id, hashed (ids are sender-chosen text).
    pub fn key(namespace: &str, path: &str, id: &str) -> ObjectKey {
        let mut h = Sha256::new();
        h.update(path.as_bytes());
        h.update([0]);
        h.update(id.as_bytes());
        ObjectKey::new(
            RESOURCE,
            namespace,
            &crate::pipeline::hex(&h.finalize()[..16]),
        )
    }

    /// The claim's value: until when it holds, in Unix seconds.
    fn until(value: &[u8]) -> i64 {
        std::str::from_utf8(value)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// Claims `key` for `window`; a claim whose window has passed is taken over.
    pub async fn claim(
        store: &dyn Store,
        key: ObjectKey,
        window: Duration,
    ) -> Result<Claim, StoreError> {
        let value = || {
            let secs = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
            Bytes::from(unix_now().saturating_add(secs).to_string())
        };
        match store.create(key.clone(), value()).await {
            Ok(revision) => Ok(Claim::First { key, revision }),
            Err(StoreError::AlreadyExists) => {
                let Some(current) = store.get(&key).await? else {
                    // Released meanwhile: the sender's retry is the first again.
                    return Box::pin(claim(store, key, window)).await;
                };
                if until(&current.value) > unix_now() {
                    return Ok(Claim::Again);
                }
                match store
                    .update(key.clone(), value(), Some(current.mod_revision))
                    .await
                {
                    Ok(revision) => Ok(Claim::First { key, revision }),
                    Err(StoreError::Conflict { .. } | StoreError::NotFound) => Ok(Claim::Again),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Gives a claim back: its delivery was not stored, so the retry must get through.
    pub async fn release(store: &dyn Store, key: ObjectKey, revision: u64) {
        match store.delete(key, Some(revision)).await {
            Ok(_) | Err(StoreError::NotFound | StoreError::Conflict { .. }) => {}
            Err(e) => tracing::warn!(error = %e, "releasing a delivery id failed"),
        }
    }

    /// Deletes every claim whose window has passed; returns how many.
    pub async fn sweep(store: &dyn Store) -> Result<usize, StoreError> {
        let mut removed = 0;
        let mut start_after = None;
        let now = unix_now();
        loop {
            let page = store
                .list(
                    Prefix::new(RESOURCE, None),
                    ListOptions {
                        start_after: start_after.clone(),
                        limit: Some(1000),
                        at_revision: None,
                    },
                )
                .await?;
            for (key, v) in &page.items {
                if until(&v.value) <= now
                    && store
                        .delete(key.clone(), Some(v.mod_revision))
                        .await
                        .is_ok()
                {
                    removed += 1;
                }
            }
            start_after = page.items.last().map(|(k, _)| k.clone());
            if !page.more || start_after.is_none() {
                return Ok(removed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_claim_holds_for_its_window_across_store_users() {
        let dir = tempfile::tempdir().unwrap();
        let store = zen_store::redb::RedbStore::open(&dir.path().join("db")).unwrap();
        let key = shared::key("apps", "/hooks/apps/gh/push", "d-1");
        let first = shared::claim(&store, key.clone(), Duration::from_secs(300))
            .await
            .unwrap();
        let shared::Claim::First { revision, .. } = first else {
            panic!("{first:?}")
        };
        assert_eq!(
            shared::claim(&store, key.clone(), Duration::from_secs(300))
                .await
                .unwrap(),
            shared::Claim::Again
        );
        // Released (the delivery was not stored): the retry is first again.
        shared::release(&store, key.clone(), revision).await;
        assert!(matches!(
            shared::claim(&store, key.clone(), Duration::ZERO)
                .await
                .unwrap(),
            shared::Claim::First { .. }
        ));
        // An expired claim is taken over, and swept.
        assert!(matches!(
            shared::claim(&store, key.clone(), Duration::from_secs(300))
                .await
                .unwrap(),
            shared::Claim::First { .. }
        ));
        let other = shared::key("apps", "/hooks/apps/gh/push", "d-2");
        shared::claim(&store, other, Duration::ZERO).await.unwrap();
        assert_eq!(shared::sweep(&store).await.unwrap(), 1);
    }

    #[test]
    fn an_id_is_accepted_once_per_window() {
        let ids = DeliveryIds::new(Duration::from_secs(300));
        let t = Instant::now();
        assert_eq!(ids.check_and_insert("a", t), Seen::First);
        assert_eq!(
            ids.check_and_insert("a", t + Duration::from_secs(299)),
            Seen::Again
        );
        assert_eq!(ids.check_and_insert("b", t), Seen::First);
        assert_eq!(
            ids.check_and_insert("a", t + Duration::from_secs(300)),
            Seen::First
        );
        ids.forget("b");
        assert_eq!(
            ids.check_and_insert("b", t + Duration::from_secs(1)),
            Seen::First
        );
        assert_eq!(ids.check_and_insert(&"x".repeat(300), t), Seen::TooLong);
    }
}
