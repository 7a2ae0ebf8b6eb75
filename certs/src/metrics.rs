//! Certificate metrics: when each certificate ends and how often they were rotated.

use prometheus::{GaugeVec, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct CertMetrics {
    expiry: GaugeVec,
    rotations: IntCounterVec,
}

impl CertMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let expiry = GaugeVec::new(
            Opts::new(
                "zen_watcher_cert_expiry_timestamp_seconds",
                "When the certificate in use ends (Unix time).",
            ),
            &["cert"],
        )?;
        let rotations = IntCounterVec::new(
            Opts::new(
                "zen_watcher_cert_rotations_total",
                "Certificates replaced while running (serving: new serving certificate; ca: new signing CA).",
            ),
            &["cert"],
        )?;
        registry.register(Box::new(expiry.clone()))?;
        registry.register(Box::new(rotations.clone()))?;
        Ok(Self { expiry, rotations })
    }

    /// `cert` is `serving`, `ca` or `ingest`.
    pub fn expires(&self, cert: &str, unix: i64) {
        self.expiry.with_label_values(&[cert]).set(unix as f64);
    }

    pub fn rotated(&self, cert: &str) {
        self.rotations.with_label_values(&[cert]).inc();
    }
}
