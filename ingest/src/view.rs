//! The WebhookEndpoint objects users read (`kubectl get webhookendpoints`): one per served
//! webhook source, with its settings and delivery counters, kept in step with the endpoints
//! every few seconds (never per delivery: a flood must not become a flood of writes).

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use zen_apiserver::server::ApiServer;

use crate::endpoint::{Endpoint, Endpoints};

/// How often counters and endpoint changes are written.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(2);

/// What happened to an endpoint's deliveries since it was provisioned.
#[derive(Default)]
pub struct Counters {
    received: AtomicU64,
    accepted: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    last_delivery: AtomicI64,
}

impl Counters {
    pub fn record(&self, status: u16, reason: Option<&'static str>) {
        self.received.fetch_add(1, Ordering::Relaxed);
        self.last_delivery.store(
            time::OffsetDateTime::now_utc().unix_timestamp(),
            Ordering::Relaxed,
        );
        if (200..300).contains(&status) {
            self.accepted.fetch_add(1, Ordering::Relaxed);
        } else if let Some(reason) = reason {
            *self
                .rejected
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(reason)
                .or_default() += 1;
        }
    }

    fn status(&self) -> Value {
        let rejected: BTreeMap<String, u64> = self
            .rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (camel(k), *v))
            .collect();
        let mut status = json!({
            "received": self.received.load(Ordering::Relaxed),
            "accepted": self.accepted.load(Ordering::Relaxed),
        });
        if !rejected.is_empty() {
            status["rejected"] = json!(rejected);
        }
        let last = self.last_delivery.load(Ordering::Relaxed);
        if last > 0
            && let Ok(t) = time::OffsetDateTime::from_unix_timestamp(last)
            && let Ok(text) = t.format(&time::format_description::well_known::Rfc3339)
        {
            status["lastDeliveryTime"] = json!(text);
        }
        status
    }
}

/// `bad_signature` → `badSignature`, as the WebhookEndpoint status names reasons.
fn camel(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut upper = false;
    for c in reason.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The WebhookEndpoint of one endpoint.
pub fn object(e: &Endpoint) -> Value {
    let mut spec = json!({
        "ingestor": e.ingestor,
        "source": e.source,
        "path": e.path,
        "auth": e.auth_type,
        "maxBodyBytes": e.max_body,
    });
    if let Some((rps, burst)) = e.rate {
        spec["rateLimit"] = json!({"requestsPerSecond": rps, "burst": burst});
    }
    json!({
        "apiVersion": "zen.watcher.io/v1alpha1",
        "kind": "WebhookEndpoint",
        "metadata": {
            "name": format!("{}-{}", e.ingestor, e.source),
            "namespace": e.namespace,
            "labels": {"zen.watcher.io/ingestor": e.ingestor},
        },
        "spec": spec,
        "status": e.counters.status(),
    })
}

/// Keeps the stored WebhookEndpoints equal to the served endpoints, forever.
pub async fn run(api: ApiServer, endpoints: Arc<Endpoints>) {
    loop {
        let desired = endpoints.all().iter().map(|e| object(e)).collect();
        if let Err(e) = api.sync_derived("webhookendpoints", desired).await {
            tracing::warn!(error = %e, "updating WebhookEndpoints failed; retrying");
        }
        tokio::time::sleep(SYNC_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_camel_case_and_2xx_is_accepted() {
        let c = Counters::default();
        c.record(201, None);
        c.record(202, None);
        c.record(401, Some("bad_signature"));
        c.record(401, Some("bad_signature"));
        let s = c.status();
        assert_eq!(s["received"], 4);
        assert_eq!(s["accepted"], 2);
        assert_eq!(s["rejected"], json!({"badSignature": 2}));
        assert!(s["lastDeliveryTime"].is_string());
    }
}
