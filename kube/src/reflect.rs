//! A live copy of a collection: list, then watch from the list's resourceVersion; relist
//! when the watch is too old (410) or breaks. Consumers get the whole current set on every
//! change, which is what zen-watcher's consumers (policy sets, endpoint tables) rebuild from.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use serde_json::Value;
use tokio::sync::watch;

use crate::Client;

/// Objects by `namespace/name` (or `name` for cluster-scoped ones).
pub type Snapshot = Arc<BTreeMap<String, Value>>;

/// How long one watch request lasts before it is renewed.
const WATCH_SECONDS: u32 = 300;
/// Pause after a failed list or watch.
const BACKOFF: Duration = Duration::from_secs(2);

fn key(object: &Value) -> String {
    let meta = &object["metadata"];
    match meta["namespace"].as_str() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{}", meta["name"].as_str().unwrap_or_default()),
        _ => meta["name"].as_str().unwrap_or_default().to_owned(),
    }
}

/// Starts following the collection at `path` (e.g. `/api/v1/namespaces`). The receiver
/// holds `None` until the first list succeeded.
pub fn reflect(client: Client, path: String) -> watch::Receiver<Option<Snapshot>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        loop {
            if tx.is_closed() {
                return;
            }
            if let Err(e) = follow(&client, &path, &tx).await {
                tracing::warn!(%path, error = %e, "list/watch failed; retrying");
            }
            tokio::time::sleep(BACKOFF).await;
        }
    });
    rx
}

/// One list and the watches that follow it, until a relist is needed.
async fn follow(
    client: &Client,
    path: &str,
    tx: &watch::Sender<Option<Snapshot>>,
) -> Result<(), crate::KubeError> {
    let list = client.get(path).await?;
    let mut items: BTreeMap<String, Value> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| (key(o), o.clone()))
        .collect();
    let mut rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    tx.send_replace(Some(Arc::new(items.clone())));
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut events = client
            .stream(&format!(
                "{path}{sep}watch=1&allowWatchBookmarks=true&timeoutSeconds={WATCH_SECONDS}&resourceVersion={rv}"
            ))
            .await?;
        while let Some(event) = events.recv().await {
            let object = &event["object"];
            match event["type"].as_str() {
                Some("ADDED" | "MODIFIED") => {
                    items.insert(key(object), object.clone());
                }
                Some("DELETED") => {
                    items.remove(&key(object));
                }
                Some("BOOKMARK") => {}
                // 410 Expired and every other error: start again from a list.
                _ => return Ok(()),
            }
            if let Some(v) = object["metadata"]["resourceVersion"].as_str() {
                rv = v.to_owned();
            }
            if event["type"] != "BOOKMARK" {
                tx.send_replace(Some(Arc::new(items.clone())));
            }
        }
    }
}
