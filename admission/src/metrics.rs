//! Admission metrics: requests by operation and result with latency, policy evaluations by
//! policy and result.

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

use crate::{
    policy::Evaluation,
    review::{AdmissionRequest, AdmissionResponse},
    webhook::Mode,
};

#[derive(Clone)]
pub struct AdmissionMetrics {
    requests: IntCounterVec,
    latency: HistogramVec,
    policies: IntCounterVec,
}

impl AdmissionMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "zen_watcher_admission_requests_total",
                "Admission reviews by webhook, operation and result (allowed, patched, denied).",
            ),
            &["webhook", "operation", "result"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "zen_watcher_admission_duration_seconds",
                "Time to answer an admission review, by webhook and operation.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5,
            ]),
            &["webhook", "operation"],
        )?;
        let policies = IntCounterVec::new(
            Opts::new(
                "zen_watcher_policy_evaluations_total",
                "IngestorPolicy evaluations by policy and result (allowed, denied, warned, audited, error, skipped).",
            ),
            &["policy", "result"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(policies.clone()))?;
        Ok(Self {
            requests,
            latency,
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
        let webhook = match mode {
            Mode::Mutate => "mutate",
            Mode::Validate => "validate",
        };
        let result = match (response.allowed, response.patch.is_some()) {
            (false, _) => "denied",
            (true, true) => "patched",
            (true, false) => "allowed",
        };
        let op = request.operation.as_str();
        self.requests
            .with_label_values(&[webhook, op, result])
            .inc();
        self.latency
            .with_label_values(&[webhook, op])
            .observe(took.as_secs_f64());
    }

    /// `policy`'s counters, resolved once per policy set so that a review counts without
    /// looking labels up (every result's series is there from the start, at 0).
    pub(crate) fn policy_counters(&self, policy: &str) -> PolicyCounters {
        PolicyCounters(
            Evaluation::ALL.map(|e| self.policies.with_label_values(&[policy, e.as_str()])),
        )
    }
}

/// One policy's evaluation counters, in [`Evaluation::ALL`]'s order.
pub(crate) struct PolicyCounters([IntCounter; 6]);

impl PolicyCounters {
    pub(crate) fn count(&self, result: Evaluation) {
        if let Some(c) = self.0.get(result as usize) {
            c.inc();
        }
    }
}
