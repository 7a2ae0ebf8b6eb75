//! What an Ingestor's `status` says: `Ready` (every source served, or the first reason
//! why not), the generation that was read, the webhook paths served, and the deliveries
//! its mapping could not turn into Observations.

use serde_json::{Value, json};
use zen_apiserver::objects::now_rfc3339;
use zen_crds::{Ingestor, IngestorStatus, ingestor::SourceType};

use crate::endpoint::{Endpoints, Problem, path};

/// Where the Ingestor is served from, which decides whether its kubernetesEvents sources
/// can be: only `serve` has a cluster whose Events it follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Events {
    Followed,
    NotAvailable,
}

/// The status `ingestor` should have now. `problems` are those `Endpoints::load` gave for
/// it; `old` is its current status, whose transition time is kept while `Ready` holds.
pub fn desired(
    ingestor: &Ingestor,
    problems: &[Problem],
    endpoints: &Endpoints,
    events: Events,
    old: Option<&IngestorStatus>,
) -> IngestorStatus {
    let namespace = ingestor.metadata.namespace.as_deref().unwrap_or("default");
    let name = ingestor.metadata.name.as_deref().unwrap_or_default();
    let mut served = Vec::new();
    let mut event_sources = 0;
    for source in &ingestor.spec.sources {
        match source.type_ {
            SourceType::Webhook => {
                let p = path(namespace, name, &source.name);
                if endpoints.get(&p).is_some() {
                    served.push(json!({"source": source.name, "path": p}));
                }
            }
            SourceType::KubernetesEvents => event_sources += 1,
        }
    }
    let (ready, reason, message) = if let Some(first) = problems.first() {
        let all: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        ("False", first.reason, all.join("; "))
    } else if event_sources > 0 && events == Events::NotAvailable {
        (
            "False",
            "EventsNotFollowed",
            "kubernetesEvents sources follow a cluster's Events: `zen-watcher serve` serves them, `dev` does not".to_owned(),
        )
    } else {
        (
            "True",
            "Serving",
            format!(
                "{} webhook endpoint(s) and {event_sources} Event source(s) served",
                served.len()
            ),
        )
    };
    let generation = ingestor.metadata.generation;
    let previous = old
        .and_then(|o| o.conditions.iter().find(|c| c.type_ == "Ready"))
        .filter(|c| c.status == ready);
    let since = previous.map_or_else(now_rfc3339, |c| c.last_transition_time.0.to_string());
    let mut status = json!({
        "conditions": [{
            "type": "Ready", "status": ready, "reason": reason, "message": message,
            "lastTransitionTime": since, "observedGeneration": generation,
        }],
        "endpoints": served,
    });
    if let Some(g) = generation {
        status["observedGeneration"] = json!(g);
    }
    if let Some(f) = endpoints.mapping_failures(namespace, name) {
        status["mappingFailures"] = json!(f.count);
        status["lastMappingFailure"] = json!(f.last);
    }
    // Every field above has the type the schema gives it.
    serde_json::from_value(status).unwrap_or_default()
}

/// Whether two statuses say the same, apart from when `Ready` last changed.
pub fn same(a: &IngestorStatus, b: &IngestorStatus) -> bool {
    let strip = |s: &IngestorStatus| -> Value {
        let mut v = serde_json::to_value(s).unwrap_or_default();
        if let Some(conditions) = v.get_mut("conditions").and_then(Value::as_array_mut) {
            for c in conditions {
                if let Some(c) = c.as_object_mut() {
                    c.remove("lastTransitionTime");
                }
            }
        }
        v
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretValues;

    fn ingestor(sources: Value, generation: i64) -> Ingestor {
        serde_json::from_value(json!({
            "apiVersion": "config.zen.watcher.io/v1alpha1", "kind": "Ingestor",
            "metadata": {"name": "hooks", "namespace": "apps", "generation": generation},
            "spec": {
                "sources": sources,
                "mapping": {"category": "'operations'", "severity": "'low'", "eventType": "'build'"}
            }
        }))
        .unwrap()
    }

    fn webhook(secret: &str) -> Value {
        json!([{"name": "ci", "type": "webhook",
                "auth": {"type": "bearer", "secretRef": {"name": secret, "key": "token"}}}])
    }

    fn secrets() -> SecretValues {
        SecretValues::from([(
            ("apps".into(), "hooks".into()),
            [("token".to_owned(), b"t".to_vec())].into(),
        )])
    }

    fn ready(s: &IngestorStatus) -> (&str, &str, &str) {
        let c = &s.conditions[0];
        (c.status.as_str(), c.reason.as_str(), c.message.as_str())
    }

    #[test]
    fn a_served_ingestor_is_ready_with_its_paths_and_generation() {
        let endpoints = Endpoints::default();
        let i = ingestor(webhook("hooks"), 3);
        let problems = endpoints.load(std::slice::from_ref(&i), &secrets());
        assert!(problems.is_empty(), "{problems:?}");
        let s = desired(&i, &[], &endpoints, Events::NotAvailable, None);
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(ready(&s).0, "True");
        assert_eq!(ready(&s).1, "Serving");
        assert_eq!(s.endpoints[0].path, "/hooks/apps/hooks/ci");
        assert_eq!(s.mapping_failures, None);

        // A failed mapping is reported; Ready and its transition time stay.
        endpoints.mapping_failed("apps", "hooks", "spec.severity: Unsupported value");
        let again = desired(&i, &[], &endpoints, Events::NotAvailable, Some(&s));
        assert_eq!(again.mapping_failures, Some(1));
        assert_eq!(
            again.last_mapping_failure.as_deref(),
            Some("spec.severity: Unsupported value")
        );
        assert_eq!(
            again.conditions[0].last_transition_time,
            s.conditions[0].last_transition_time
        );
        assert!(!same(&s, &again));
        assert!(same(&again, &again.clone()));
    }

    #[test]
    fn a_missing_secret_or_unfollowed_events_are_not_ready() {
        let endpoints = Endpoints::default();
        let i = ingestor(webhook("absent"), 1);
        let problems = endpoints.load(std::slice::from_ref(&i), &secrets());
        let problems: Vec<Problem> = problems.into_iter().map(|(_, p)| p).collect();
        let s = desired(&i, &problems, &endpoints, Events::Followed, None);
        assert_eq!(ready(&s).0, "False");
        assert_eq!(ready(&s).1, "SecretNotFound");
        assert!(ready(&s).2.contains("Secret apps/absent"), "{s:?}");
        assert!(s.endpoints.is_empty());

        let i = ingestor(json!([{"name": "k8s", "type": "kubernetesEvents"}]), 1);
        assert!(
            endpoints
                .load(std::slice::from_ref(&i), &secrets())
                .is_empty()
        );
        assert_eq!(endpoints.event_sources().len(), 1);
        let s = desired(&i, &[], &endpoints, Events::NotAvailable, None);
        assert_eq!(ready(&s).1, "EventsNotFollowed");
        let s = desired(&i, &[], &endpoints, Events::Followed, None);
        assert_eq!(ready(&s).0, "True");
    }
}
