//! Where Observations go: the aggregated API's own create and status verbs, called in
//! process with the object itself, so they are defaulted, validated, stored and watched like
//! any other write. A create is answered only once it is durable.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use zen_apiserver::{
    objects::{Naming, now_rfc3339},
    server::{ApiServer, Created},
    status::ApiError,
};

/// Attempts at a dedup write racing other writers of the same Observation.
const RETRIES: usize = 5;

#[derive(Debug, PartialEq, Eq)]
pub enum Recorded {
    Created {
        name: String,
    },
    /// A repeat inside the dedup window: the Observation's count is now `count`.
    Folded {
        name: String,
        count: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The mapping produced an Observation the schema refuses.
    #[error("{0}")]
    Invalid(String),
    #[error("storing the Observation failed ({status}): {message}")]
    Store { status: u16, message: String },
}

#[derive(Clone)]
pub struct ApiSink {
    api: ApiServer,
}

const OBSERVATIONS: &str = "observations";

impl From<ApiError> for SinkError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Invalid { .. } => SinkError::Invalid(e.to_string()),
            other => SinkError::Store {
                status: other.code().as_u16(),
                message: other.to_string(),
            },
        }
    }
}

/// An RFC 3339 time as Unix seconds.
pub(crate) fn unix_seconds(t: &str) -> Option<i64> {
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// An Observation around `spec`, which is moved in: `json!` would copy it.
fn observation(metadata: Value, spec: Value) -> Value {
    let mut obj = serde_json::Map::new();
    obj.insert("apiVersion".into(), "zen.watcher.io/v1alpha1".into());
    obj.insert("kind".into(), "Observation".into());
    obj.insert("metadata".into(), metadata);
    obj.insert("spec".into(), spec);
    Value::Object(obj)
}

/// The name of the Observation a dedup key folds into: stable, so every writer (and every
/// replica, and the server after a restart) finds the same object.
pub fn dedup_name(ingestor: &str, namespace: &str, key: &str) -> String {
    let mut h = Sha256::new();
    for part in [namespace, ingestor, key] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let prefix: String = ingestor.chars().take(40).collect();
    format!(
        "{}-{}",
        prefix.trim_end_matches('-'),
        crate::pipeline::hex(&h.finalize()[..8])
    )
}

/// The name of an Observation without a dedup key: the Ingestor's name and the time of the
/// delivery in nanoseconds, fixed-width hex, as Kubernetes names Events. Names sort by
/// arrival, in `kubectl get` as in the store, whose B-tree then grows at one edge instead of
/// rewriting a random page per Observation; and unlike a random suffix they cannot collide
/// within a process, which takes a later nanosecond for each name.
pub fn stamped_name(ingestor: &str) -> String {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    let now = u64::try_from(now).unwrap_or(0);
    let previous = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last.saturating_add(1)))
        })
        .unwrap_or_else(|last| last);
    let stamp = now.max(previous.saturating_add(1));
    // Room for `-` and 16 digits in a 253-character name.
    let prefix: String = ingestor.chars().take(236).collect();
    format!("{}-{stamp:016x}", prefix.trim_end_matches('-'))
}

impl ApiSink {
    pub fn new(api: ApiServer) -> Self {
        Self { api }
    }

    /// The store under the API, for what ingest keeps beside Observations (delivery ids).
    pub fn store(&self) -> std::sync::Arc<dyn zen_store::Store> {
        self.api.store()
    }

    /// The newest `status.lastSeen` among the Observations `ingestor` stored in `namespace`.
    pub async fn newest_last_seen(
        &self,
        namespace: &str,
        ingestor: &str,
    ) -> Result<Option<i64>, SinkError> {
        let items = self
            .api
            .list_objects(
                OBSERVATIONS,
                namespace,
                &format!("spec.ingestor={ingestor}"),
            )
            .await?;
        Ok(items
            .iter()
            .filter_map(|o| o.pointer("/status/lastSeen").and_then(Value::as_str))
            .filter_map(unix_seconds)
            .max())
    }

    /// Stores a new Observation under a [`stamped_name`]; a name another writer took (another
    /// replica, or this server before the clock stepped back) is replaced by a later one.
    async fn create_stamped(
        &self,
        namespace: &str,
        ingestor: &str,
        spec: Value,
    ) -> Result<Recorded, SinkError> {
        let obj = observation(json!({"namespace": namespace}), spec);
        let names = || stamped_name(ingestor);
        let created = self
            .api
            .create_object_named(OBSERVATIONS, namespace, obj, Naming::Generator(&names))
            .await?;
        Ok(Recorded::Created {
            name: created["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        })
    }

    /// Stores one Observation of `ingestor` in `namespace`, or folds it into the one its
    /// dedup key names when that was last seen inside the window.
    pub async fn record(
        &self,
        namespace: &str,
        ingestor: &str,
        spec: Value,
        dedup: Option<(String, Duration)>,
    ) -> Result<Recorded, SinkError> {
        let Some((key, window)) = dedup else {
            return self.create_stamped(namespace, ingestor, spec).await;
        };
        let name = dedup_name(ingestor, namespace, &key);
        let mut obj = observation(json!({"name": name, "namespace": namespace}), spec);
        let mut last = None;
        for _ in 0..RETRIES {
            obj = match self
                .api
                .try_create_object(OBSERVATIONS, namespace, obj)
                .await?
            {
                Created::Stored(..) => return Ok(Recorded::Created { name }),
                Created::Taken(obj) => obj,
            };
            // It exists: fold into it if it was seen inside the window, else replace it.
            let mut current = match self.api.get(OBSERVATIONS, namespace, &name).await {
                Ok(current) => current,
                Err(ApiError::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            let last_seen = current["status"]["lastSeen"]
                .as_str()
                .and_then(unix_seconds)
                .unwrap_or(0);
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let within = u64::try_from(now - last_seen).is_ok_and(|age| age <= window.as_secs());
            if within {
                let count = current["status"]["count"].as_u64().unwrap_or(1) + 1;
                current["status"]["count"] = json!(count);
                current["status"]["lastSeen"] = json!(now_rfc3339());
                match self
                    .api
                    .update_status(OBSERVATIONS, namespace, &name, current)
                    .await
                {
                    Ok(_) => return Ok(Recorded::Folded { name, count }),
                    Err(e @ (ApiError::Conflict { .. } | ApiError::NotFound { .. })) => {
                        last = Some(e)
                    }
                    Err(e) => return Err(e.into()),
                }
            } else {
                // The earlier occurrence is over: this one starts afresh under the same name.
                let rv = current["metadata"]["resourceVersion"]
                    .as_str()
                    .map(str::to_owned);
                match self
                    .api
                    .delete_object(OBSERVATIONS, namespace, &name, rv)
                    .await
                {
                    Ok(_) | Err(ApiError::Conflict { .. } | ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Err(last.map(SinkError::from).unwrap_or(SinkError::Store {
            status: 409,
            message: "too many concurrent writers of one deduplicated Observation".into(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamped_names_sort_by_arrival_and_fit_a_name() {
        let names: Vec<String> = (0..1000).map(|_| stamped_name("github-alerts")).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
        let suffix = &names[0]["github-alerts-".len()..];
        assert_eq!(suffix.len(), 16);
        assert!(
            suffix
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );

        let long = stamped_name(&"x".repeat(253));
        assert_eq!(long.len(), 253);
        // A prefix ending in `-` gets no second one.
        assert!(!stamped_name("trailing-").contains("--"));
    }
}
