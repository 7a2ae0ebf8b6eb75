//! Ingest metrics: deliveries by endpoint and answer, and refusals by reason.

use prometheus::{IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct IngestMetrics {
    requests: IntCounterVec,
    rejected: IntCounterVec,
}

impl IngestMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "zen_watcher_ingest_requests_total",
                "Webhook deliveries by namespace, ingestor, source and HTTP code.",
            ),
            &["namespace", "ingestor", "source", "code"],
        )?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "zen_watcher_ingest_rejected_total",
                "Webhook deliveries refused, by namespace, ingestor, source and reason.",
            ),
            &["namespace", "ingestor", "source", "reason"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        Ok(Self { requests, rejected })
    }

    pub(crate) fn answered(&self, labels: [&str; 3], code: u16) {
        let code = code.to_string();
        self.requests
            .with_label_values(&[labels[0], labels[1], labels[2], &code])
            .inc();
    }

    pub(crate) fn rejected(&self, labels: [&str; 3], reason: &str) {
        self.rejected
            .with_label_values(&[labels[0], labels[1], labels[2], reason])
            .inc();
    }
}
