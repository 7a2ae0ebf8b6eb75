//! Watch streams: one JSON object per line, flushed per event, as kube-apiserver sends them.
//!
//! The store's hub delivers raw changes; here they are filtered by the request's selectors
//! (an object moving into or out of the selection becomes ADDED or DELETED, like the
//! cacher in kube-apiserver does), rendered in the requested form and written to the body.

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use zen_serving::{Body, BoxError};

/// The `type` of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
    Bookmark,
    Error,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
            Self::Bookmark => "BOOKMARK",
            Self::Error => "ERROR",
        }
    }
}

/// The change a stored change is, seen through a selector: whether the object matched
/// before and after decides what the watcher is told (or nothing).
pub fn transition(stored: EventType, matched_before: bool, matches_now: bool) -> Option<EventType> {
    match stored {
        EventType::Added if matches_now => Some(EventType::Added),
        EventType::Deleted if matched_before => Some(EventType::Deleted),
        EventType::Modified => match (matched_before, matches_now) {
            (true, true) => Some(EventType::Modified),
            (false, true) => Some(EventType::Added),
            (true, false) => Some(EventType::Deleted),
            (false, false) => None,
        },
        _ => None,
    }
}

/// One event as a line of the stream.
pub fn encode(kind: EventType, object: &Value) -> Bytes {
    encode_raw(kind, &serde_json::to_vec(object).unwrap_or_default())
}

/// One event as a line of the stream, around an object already in JSON text.
pub fn encode_raw(kind: EventType, object: &[u8]) -> Bytes {
    // Written by hand to keep kube-apiserver's field order (`type` first).
    let mut line = Vec::with_capacity(object.len() + 32);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_str().as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

/// A BOOKMARK carries only the kind, apiVersion and resourceVersion (and, closing the initial
/// events of `sendInitialEvents=true`, the `k8s.io/initial-events-end` annotation).
pub fn bookmark(
    api_version: &str,
    kind: &str,
    resource_version: u64,
    initial_events_end: bool,
) -> Value {
    let mut meta = json!({"resourceVersion": resource_version.to_string()});
    if initial_events_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": kind, "apiVersion": api_version, "metadata": meta})
}

/// Lines a watch body buffers before the producer waits; the store's per-watcher queue
/// behind it is what finally cuts a watcher that does not read.
pub const BODY_BUFFER: usize = 64;

/// A streaming body fed line by line, plus the sender the watch task writes to.
pub fn channel_body() -> (mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = mpsc::channel::<Bytes>(BODY_BUFFER);
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx)
        .map(|bytes| Ok::<_, BoxError>(http_body::Frame::data(bytes)));
    (tx, BodyExt::boxed(StreamBody::new(stream)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_transitions() {
        use EventType::*;
        assert_eq!(transition(Added, false, true), Some(Added));
        assert_eq!(transition(Added, false, false), None);
        assert_eq!(transition(Modified, true, true), Some(Modified));
        assert_eq!(transition(Modified, false, true), Some(Added));
        assert_eq!(transition(Modified, true, false), Some(Deleted));
        assert_eq!(transition(Modified, false, false), None);
        assert_eq!(transition(Deleted, true, false), Some(Deleted));
        assert_eq!(transition(Deleted, false, false), None);
    }

    #[test]
    fn lines_and_bookmarks() {
        let line = encode(EventType::Added, &json!({"kind": "Observation"}));
        assert_eq!(
            &line[..],
            b"{\"type\":\"ADDED\",\"object\":{\"kind\":\"Observation\"}}\n"
        );
        let b = bookmark("zen.watcher.io/v1alpha1", "Observation", 42, true);
        assert_eq!(b["metadata"]["resourceVersion"], "42");
        assert_eq!(
            b["metadata"]["annotations"]["k8s.io/initial-events-end"],
            "true"
        );
    }

    #[tokio::test]
    async fn body_streams_what_is_sent() {
        let (tx, body) = channel_body();
        tx.send(Bytes::from_static(b"a\n")).await.unwrap();
        tx.send(Bytes::from_static(b"b\n")).await.unwrap();
        drop(tx);
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], b"a\nb\n");
    }
}
