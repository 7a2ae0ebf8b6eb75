//! `kubernetesEvents` sources: core/v1 Events of the Ingestor's namespace become
//! Observations through the same pipeline and sink as webhook deliveries, with the Event as
//! `payload`.
//!
//! The caller hands over the whole current set of Events on every change (a reflector's
//! snapshot). Each Event is taken once per change of its resourceVersion: kube-apiserver
//! aggregates repeats into one Event whose `count` grows, so every update is one more
//! occurrence, and dedup folds them into one Observation. After a restart, Events last seen
//! before the newest `status.lastSeen` zen-watcher stored for that Ingestor were already
//! taken and are skipped, so a restart does not count them twice.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use serde_json::{Value, json};
use zen_crds::ingestor::{EventType, Source};

use crate::{
    endpoint::Endpoints,
    pipeline::{Outcome, Pipeline},
    sink::{ApiSink, SinkError},
};

pub struct EventSource {
    pub namespace: String,
    pub ingestor: String,
    pub source: String,
    types: Vec<&'static str>,
    reasons: Vec<String>,
    kinds: Vec<String>,
    pipeline: Arc<Pipeline>,
}

impl EventSource {
    pub fn new(namespace: &str, ingestor: &str, source: &Source, pipeline: &Arc<Pipeline>) -> Self {
        let settings = source.kubernetes_events.as_ref();
        let mut types: Vec<&'static str> = settings
            .map(|s| &s.types[..])
            .unwrap_or_default()
            .iter()
            .map(|t| match t {
                EventType::Warning => "Warning",
                EventType::Normal => "Normal",
            })
            .collect();
        if types.is_empty() {
            types.push("Warning");
        }
        Self {
            namespace: namespace.to_owned(),
            ingestor: ingestor.to_owned(),
            source: source.name.clone(),
            types,
            reasons: settings.map(|s| s.reasons.clone()).unwrap_or_default(),
            kinds: settings
                .map(|s| s.involved_kinds.clone())
                .unwrap_or_default(),
            pipeline: pipeline.clone(),
        }
    }

    /// Whether this source takes `event`: its namespace, type, reason and involved kind.
    pub fn takes(&self, event: &Value) -> bool {
        let field = |p: &str| event.pointer(p).and_then(Value::as_str).unwrap_or("");
        field("/metadata/namespace") == self.namespace
            && self.types.contains(&field("/type"))
            && (self.reasons.is_empty() || self.reasons.iter().any(|r| r == field("/reason")))
            && (self.kinds.is_empty()
                || self
                    .kinds
                    .iter()
                    .any(|k| k == field("/involvedObject/kind")))
    }
}

/// When an Event last happened, in Unix seconds: the newest of its series, last and event
/// times (Events from older reporters set only some of them).
pub fn last_occurrence(event: &Value) -> Option<i64> {
    [
        "/series/lastObservedTime",
        "/lastTimestamp",
        "/eventTime",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .filter_map(|p| event.pointer(p).and_then(Value::as_str))
    .filter_map(crate::sink::unix_seconds)
    .max()
}

/// What one pass over a set of Events did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Taken {
    /// Observations created or folded into.
    pub recorded: usize,
    pub dropped: usize,
    /// Mapping failures (counted in the Ingestor's status).
    pub failed: usize,
    /// Store failures: retried on the next pass.
    pub retry: usize,
}

/// Follows the Events of every kubernetesEvents source.
pub struct EventFollower {
    endpoints: Arc<Endpoints>,
    sink: ApiSink,
    /// The resourceVersion of each Event (by uid) already taken.
    seen: HashMap<String, String>,
    /// Per `namespace/ingestor`: Events last seen at or before this were taken before a
    /// restart.
    marks: HashMap<String, Option<i64>>,
}

impl EventFollower {
    pub fn new(endpoints: Arc<Endpoints>, sink: ApiSink) -> Self {
        Self {
            endpoints,
            sink,
            seen: HashMap::new(),
            marks: HashMap::new(),
        }
    }

    /// Takes every Event of `events` that is new or changed since the last pass.
    pub async fn take(&mut self, events: &BTreeMap<String, Value>) -> Taken {
        let sources = self.endpoints.event_sources();
        let mut taken = Taken::default();
        let mut present = HashMap::with_capacity(events.len());
        for event in events.values() {
            let (Some(uid), Some(rv)) = (
                event.pointer("/metadata/uid").and_then(Value::as_str),
                event
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str),
            ) else {
                continue;
            };
            present.insert(uid.to_owned(), rv.to_owned());
            if self.seen.get(uid).is_some_and(|s| s == rv) {
                continue;
            }
            let mut retry = false;
            for source in sources.iter().filter(|s| s.takes(event)) {
                let mark = self.mark(source).await;
                if mark.is_some() && last_occurrence(event) <= mark {
                    continue;
                }
                match self.deliver(source, event).await {
                    Ok(true) => taken.recorded += 1,
                    Ok(false) => taken.dropped += 1,
                    Err(SinkError::Store { status, message }) => {
                        tracing::warn!(
                            namespace = %source.namespace, ingestor = %source.ingestor,
                            status, %message, "storing an Event's Observation failed; will retry"
                        );
                        taken.retry += 1;
                        retry = true;
                    }
                    Err(SinkError::Invalid(message)) => {
                        self.endpoints.mapping_failed(
                            &source.namespace,
                            &source.ingestor,
                            &message,
                        );
                        taken.failed += 1;
                    }
                }
            }
            if retry {
                present.remove(uid);
            }
        }
        // Forget deleted Events (and those to retry).
        self.seen = present;
        taken
    }

    /// Ok(true): recorded; Ok(false): dropped by the filter.
    async fn deliver(&self, source: &EventSource, event: &Value) -> Result<bool, SinkError> {
        let pipeline = source.pipeline.clone();
        let name = source.source.clone();
        let payload = event.clone();
        let outcome =
            tokio::task::spawn_blocking(move || pipeline.run(&name, &payload, &json!({}))).await;
        let (spec, dedup) = match outcome {
            Ok(Ok(Outcome::Dropped)) => return Ok(false),
            Ok(Ok(Outcome::Observe { spec, dedup })) => (spec, dedup),
            Ok(Err(e)) => return Err(SinkError::Invalid(e.to_string())),
            Err(e) => {
                return Err(SinkError::Store {
                    status: 500,
                    message: e.to_string(),
                });
            }
        };
        self.sink
            .record(&source.namespace, &source.ingestor, spec, dedup)
            .await
            .map(|_| true)
    }

    /// The newest `status.lastSeen` stored for the source's Ingestor, read once.
    async fn mark(&mut self, source: &EventSource) -> Option<i64> {
        let key = format!("{}/{}", source.namespace, source.ingestor);
        if let Some(mark) = self.marks.get(&key) {
            return *mark;
        }
        match self
            .sink
            .newest_last_seen(&source.namespace, &source.ingestor)
            .await
        {
            Ok(mark) => {
                self.marks.insert(key, mark);
                mark
            }
            // Not remembered: asked again on the next Event.
            Err(e) => {
                tracing::warn!(error = %e, "reading stored Observations failed");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zen_crds::Ingestor;

    fn source(settings: Value) -> EventSource {
        let ingestor: Ingestor = serde_json::from_value(json!({
            "apiVersion": "config.zen.watcher.io/v1alpha1", "kind": "Ingestor",
            "metadata": {"name": "events", "namespace": "shop"},
            "spec": {
                "sources": [{"name": "k8s", "type": "kubernetesEvents", "kubernetesEvents": settings}],
                "mapping": {"category": "'operations'", "severity": "'low'", "eventType": "'warning_event'"}
            }
        }))
        .unwrap();
        let pipeline = Arc::new(Pipeline::compile(&ingestor).unwrap());
        EventSource::new("shop", "events", &ingestor.spec.sources[0], &pipeline)
    }

    fn event(namespace: &str, type_: &str, reason: &str, kind: &str) -> Value {
        json!({"metadata": {"namespace": namespace, "name": "e", "uid": "u", "resourceVersion": "1"},
               "type": type_, "reason": reason, "involvedObject": {"kind": kind, "name": "web-1"}})
    }

    #[test]
    fn warnings_of_the_own_namespace_by_default() {
        let s = source(json!({}));
        assert!(s.takes(&event("shop", "Warning", "BackOff", "Pod")));
        assert!(!s.takes(&event("shop", "Normal", "Pulled", "Pod")));
        assert!(!s.takes(&event("other", "Warning", "BackOff", "Pod")));
    }

    #[test]
    fn types_reasons_and_kinds_narrow_it() {
        let s = source(
            json!({"types": ["Normal", "Warning"], "reasons": ["BackOff"], "involvedKinds": ["Pod"]}),
        );
        assert!(s.takes(&event("shop", "Normal", "BackOff", "Pod")));
        assert!(!s.takes(&event("shop", "Warning", "FailedMount", "Pod")));
        assert!(!s.takes(&event("shop", "Warning", "BackOff", "Node")));
    }

    #[test]
    fn the_last_occurrence_is_the_newest_time_given() {
        let e = json!({"metadata": {"creationTimestamp": "2026-11-22T10:00:00Z"},
                       "lastTimestamp": "2026-11-22T10:05:00Z",
                       "series": {"lastObservedTime": "2026-11-22T10:07:00.123456Z"}});
        assert_eq!(last_occurrence(&e), Some(1_795_342_020));
        assert_eq!(last_occurrence(&json!({"lastTimestamp": null})), None);
    }
}
