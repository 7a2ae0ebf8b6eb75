//! Admission metrics: requests by operation and result with latency, policy evaluations by
//! policy and result. Every series is striped ([`striped`]): both cores update them on every
//! review.

pub mod striped;

use std::{sync::Arc, time::Duration};

use prometheus::Registry;

use self::striped::{Counter, CounterVec, Histogram, HistogramVec};

use crate::{
    policy::Evaluation,
    review::{AdmissionRequest, AdmissionResponse, Operation},
    webhook::Mode,
};

#[derive(Clone)]
pub struct AdmissionMetrics {
    /// Every (webhook, operation, result) series, resolved when registering: a review then
    /// counts without hashing labels or taking the vector's lock, and every series is
    /// exported from the start, at 0.
    series: Arc<Series>,
    policies: CounterVec<2>,
}

const WEBHOOKS: [Mode; 2] = [Mode::Mutate, Mode::Validate];
const OPERATIONS: [Operation; 4] = [
    Operation::Create,
    Operation::Update,
    Operation::Delete,
    Operation::Connect,
];
const RESULTS: [&str; 3] = ["allowed", "patched", "denied"];

struct Series {
    /// By webhook, operation and result, in the orders above.
    requests: [[[Counter; 3]; 4]; 2],
    /// By webhook and operation.
    latency: [[Histogram; 4]; 2],
}

fn webhook_label(mode: Mode) -> &'static str {
    match mode {
        Mode::Mutate => "mutate",
        Mode::Validate => "validate",
    }
}

fn webhook_index(mode: Mode) -> usize {
    match mode {
        Mode::Mutate => 0,
        Mode::Validate => 1,
    }
}

fn operation_index(op: Operation) -> usize {
    match op {
        Operation::Create => 0,
        Operation::Update => 1,
        Operation::Delete => 2,
        Operation::Connect => 3,
    }
}

impl AdmissionMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = CounterVec::new(
            "zen_watcher_admission_requests_total",
            "Admission reviews by webhook, operation and result (allowed, patched, denied).",
            ["webhook", "operation", "result"],
        )?;
        let latency = HistogramVec::new(
            "zen_watcher_admission_duration_seconds",
            "Time to answer an admission review, by webhook and operation.",
            ["webhook", "operation"],
            &[
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5,
            ],
        )?;
        let policies = CounterVec::new(
            "zen_watcher_policy_evaluations_total",
            "IngestorPolicy evaluations by policy and result (allowed, denied, warned, audited, error, skipped).",
            ["policy", "result"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(policies.clone()))?;
        let series = Series {
            requests: WEBHOOKS.map(|w| {
                OPERATIONS.map(|op| {
                    RESULTS.map(|r| requests.with_label_values([webhook_label(w), op.as_str(), r]))
                })
            }),
            latency: WEBHOOKS.map(|w| {
                OPERATIONS.map(|op| latency.with_label_values([webhook_label(w), op.as_str()]))
            }),
        };
        Ok(Self {
            series: Arc::new(series),
            policies,
        })
    }

    pub(crate) fn observe(
        &self,
        mode: Mode,
        request: &AdmissionRequest,
        response: &AdmissionResponse,
        took: Duration,
    ) {
        let result = match (response.allowed, response.patch.is_some()) {
            (true, false) => 0,
            (true, true) => 1,
            (false, _) => 2,
        };
        let (w, op) = (webhook_index(mode), operation_index(request.operation));
        self.series.requests[w][op][result].inc();
        self.series.latency[w][op].observe(took.as_secs_f64());
    }

    /// `policy`'s counters, resolved once per policy set so that a review counts without
    /// looking labels up (every result's series is there from the start, at 0).
    pub(crate) fn policy_counters(&self, policy: &str) -> PolicyCounters {
        PolicyCounters(
            Evaluation::ALL.map(|e| self.policies.with_label_values([policy, e.as_str()])),
        )
    }
}

/// One policy's evaluation counters, in [`Evaluation::ALL`]'s order.
pub(crate) struct PolicyCounters([Counter; 6]);

impl PolicyCounters {
    pub(crate) fn count(&self, result: Evaluation) {
        if let Some(c) = self.0.get(result as usize) {
            c.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reviews_count_in_their_own_series_and_every_series_starts_at_zero() {
        let registry = Registry::new();
        let metrics = AdmissionMetrics::register(&registry).unwrap();
        let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{
            "uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},
            "resource":{"group":"","version":"v1","resource":"pods"},"operation":"UPDATE"}}"#;
        let review = crate::review::Review::parse(body).unwrap();
        let request = review.request(crate::review::OldObject::Read).unwrap();
        let denied = AdmissionResponse::deny("u", 403, "Forbidden", "no".into());
        metrics.observe(
            Mode::Validate,
            &request,
            &denied,
            Duration::from_micros(300),
        );
        let families = registry.gather();
        let family = |name: &str| {
            families
                .iter()
                .find(|f| f.name() == name)
                .unwrap_or_else(|| panic!("{name} is exported"))
        };
        let requests = family("zen_watcher_admission_requests_total");
        assert_eq!(requests.get_metric().len(), 2 * 4 * 3);
        let counted: Vec<(Vec<String>, f64)> = requests
            .get_metric()
            .iter()
            .filter(|m| m.get_counter().get_value() > 0.0)
            .map(|m| {
                let labels = m.get_label().iter().map(|l| l.value().to_owned()).collect();
                (labels, m.get_counter().get_value())
            })
            .collect();
        // Labels come sorted by name: operation, result, webhook.
        assert_eq!(
            counted,
            vec![(
                vec!["UPDATE".into(), "denied".into(), "validate".into()],
                1.0
            )]
        );
        let latency = family("zen_watcher_admission_duration_seconds");
        assert_eq!(latency.get_metric().len(), 2 * 4);
        let observed: Vec<u64> = latency
            .get_metric()
            .iter()
            .map(|m| m.get_histogram().get_sample_count())
            .collect();
        assert_eq!(observed.iter().sum::<u64>(), 1);
    }
}
