//! Deadlines of Observations with `ttlSecondsAfterCreation`.
//!
//! A min-heap ordered by deadline, fed from the store's change stream: the reaper sleeps until
//! the earliest deadline instead of scanning every object. Entries are not removed when an
//! object changes or goes away; a stale entry is recognised by its uid and resourceVersion at
//! pop time (the delete carries them as preconditions), which keeps every update O(log n).

use std::{borrow::Cow, cmp::Reverse, collections::BinaryHeap};

use serde::Deserialize;
use serde_json::Value;

/// An object due for deletion.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Due {
    /// Unix seconds at which the object expires.
    pub deadline: i64,
    pub namespace: String,
    pub name: String,
    /// Deletes only this incarnation of the name.
    pub uid: String,
}

/// Pending deadlines.
#[derive(Debug, Default)]
pub struct ExpiryQueue {
    heap: BinaryHeap<Reverse<Due>>,
}

impl ExpiryQueue {
    /// Records the deadline of `object` if it has one.
    pub fn track(&mut self, object: &Value) {
        self.push(deadline_of(object));
    }

    /// [`track`](Self::track) for an object as the store holds it: only the fields a
    /// deadline needs are read, as every write of an Observation passes through here.
    pub fn track_stored(&mut self, object: &[u8]) {
        let mut de = serde_json::Deserializer::from_slice(object);
        self.push(Expiring::deserialize(&mut de).ok().and_then(Expiring::due));
    }

    fn push(&mut self, due: Option<Due>) {
        if let Some(due) = due {
            self.heap.push(Reverse(due));
        }
    }

    /// The earliest deadline, to sleep until.
    pub fn next_deadline(&self) -> Option<i64> {
        self.heap.peek().map(|Reverse(d)| d.deadline)
    }

    /// Removes and returns every entry due at `now` (Unix seconds).
    pub fn pop_due(&mut self, now: i64) -> Vec<Due> {
        let mut due = Vec::new();
        while self.heap.peek().is_some_and(|Reverse(d)| d.deadline <= now) {
            if let Some(Reverse(d)) = self.heap.pop() {
                due.push(d);
            }
        }
        due
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// `creationTimestamp + ttlSecondsAfterCreation`, if the object has both.
pub fn deadline_of(object: &Value) -> Option<Due> {
    Expiring::deserialize(object).ok().and_then(Expiring::due)
}

/// The fields of an object its deadline depends on; the rest is skipped unread.
#[derive(Deserialize)]
struct Expiring<'a> {
    #[serde(borrow)]
    metadata: ExpiringMeta<'a>,
    spec: ExpiringSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExpiringMeta<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    namespace: Cow<'a, str>,
    #[serde(borrow)]
    uid: Cow<'a, str>,
    #[serde(borrow)]
    creation_timestamp: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExpiringSpec {
    ttl_seconds_after_creation: Option<i64>,
}

impl Expiring<'_> {
    fn due(self) -> Option<Due> {
        let ttl = self.spec.ttl_seconds_after_creation?;
        let created: k8s_openapi::jiff::Timestamp =
            self.metadata.creation_timestamp.parse().ok()?;
        Some(Due {
            deadline: created.as_second().saturating_add(ttl),
            namespace: self.metadata.namespace.into_owned(),
            name: self.metadata.name.into_owned(),
            uid: self.metadata.uid.into_owned(),
        })
    }
}

/// Deletes Observations when their `ttlSecondsAfterCreation` is up, until the store's change
/// stream ends. Runs on one replica at a time (the caller decides which).
pub async fn run_reaper(
    store: std::sync::Arc<dyn zen_store::Store>,
    resource: &'static str,
    active: std::sync::Arc<dyn Fn() -> bool + Send + Sync>,
) {
    use zen_store::{EventKind, ListOptions, ObjectKey, Prefix};
    loop {
        let prefix = Prefix::new(resource, None);
        let mut queue = ExpiryQueue::default();
        let page = match store.list(prefix.clone(), ListOptions::default()).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "TTL reaper: listing failed; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                continue;
            }
        };
        for (_, v) in &page.items {
            queue.track_stored(&v.value);
        }
        let mut watcher = match store.watch(prefix, page.revision) {
            Ok(w) => w,
            Err(_) => continue,
        };
        loop {
            let now = k8s_openapi::jiff::Timestamp::now().as_second();
            // Replicas sharing a store leave expiry to the one holding the Lease; the others
            // keep their queue for when they take over.
            let due = if active() {
                queue.pop_due(now)
            } else {
                Vec::new()
            };
            for due in due {
                let key = ObjectKey::new(resource, &due.namespace, &due.name);
                // Only the incarnation whose deadline this is: same uid, any later revision.
                if let Ok(Some(current)) = store.get(&key).await
                    && serde_json::from_slice::<Value>(&current.value)
                        .ok()
                        .and_then(|o| {
                            o.pointer("/metadata/uid")
                                .and_then(Value::as_str)
                                .map(|u| u == due.uid)
                        })
                        .unwrap_or(false)
                {
                    match store.delete(key, Some(current.mod_revision)).await {
                        Ok(_) => {
                            tracing::debug!(namespace = %due.namespace, name = %due.name, "expired")
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, name = %due.name, "expiry lost a race; will retry if still due")
                        }
                    }
                }
            }
            let sleep = queue
                .next_deadline()
                .map(|d| {
                    (d - k8s_openapi::jiff::Timestamp::now().as_second()).clamp(0, 3600) as u64
                })
                .unwrap_or(3600);
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(sleep.max(1))) => {}
                event = watcher.next() => match event {
                    Ok(e) if e.kind != EventKind::Deleted => queue.track_stored(&e.value),
                    Ok(_) => {}
                    // Fell behind or the store restarted: start over from a fresh list.
                    Err(_) => break,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obs(name: &str, created: &str, ttl: Option<i64>) -> Value {
        let mut o = json!({"metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                                        "creationTimestamp": created}, "spec": {}});
        if let Some(ttl) = ttl {
            o["spec"]["ttlSecondsAfterCreation"] = json!(ttl);
        }
        o
    }

    #[test]
    fn pops_in_deadline_order() {
        let mut q = ExpiryQueue::default();
        q.track(&obs("late", "1970-01-01T00:01:40Z", Some(50))); // 150
        // As the store holds it, with fields the deadline does not need.
        let mut early = obs("early", "1970-01-01T00:01:40Z", Some(10)); // 110
        early["status"] = json!({"count": 3, "lastSeen": "1970-01-01T00:01:41Z"});
        q.track_stored(&serde_json::to_vec(&early).unwrap());
        q.track(&obs("never", "1970-01-01T00:01:40Z", None));
        q.track_stored(
            br#"{"metadata": {"name": "broken"}, "spec": {"ttlSecondsAfterCreation": 1}}"#,
        );
        assert_eq!(q.len(), 2);
        assert_eq!(q.next_deadline(), Some(110));
        assert!(q.pop_due(109).is_empty());
        let due = q.pop_due(200);
        assert_eq!(
            due.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            ["early", "late"]
        );
        assert_eq!(due[0].uid, "uid-early");
        assert!(q.is_empty());
    }

    #[test]
    fn malformed_objects_have_no_deadline() {
        assert!(deadline_of(&json!({"spec": {"ttlSecondsAfterCreation": 5}})).is_none());
        assert!(deadline_of(&obs("x", "not a time", Some(5))).is_none());
        assert!(
            deadline_of(&obs("x", "1970-01-01T00:00:00Z", Some(i64::MAX)))
                .is_some_and(|d| d.deadline == i64::MAX)
        );
    }
}
