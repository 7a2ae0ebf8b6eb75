//! Mounted certificates (`--cert-dir`, e.g. a cert-manager Secret volume): `tls.crt`,
//! `tls.key` and optionally `ca.crt`, re-read when they change. kubelet updates such
//! volumes by swapping a symlink, so the files' contents are compared, not their times.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use crate::{
    CertError,
    inspect::CertInfo,
    metrics::CertMetrics,
    store::read_optional,
    tls::{ServingCert, certified_key},
};

/// How often the files are compared with what is served.
const POLL: Duration = Duration::from_secs(1);

/// The contents of a certificate directory.
#[derive(Clone, PartialEq, Eq)]
struct Contents {
    cert: Option<String>,
    key: Option<String>,
    ca: Option<String>,
}

/// A checked certificate from a directory, and the CA bundle found beside it.
pub struct Mounted {
    pub key: Arc<rustls::sign::CertifiedKey>,
    pub ca_pem: Option<String>,
    pub not_after: i64,
}

pub struct CertDir {
    dir: PathBuf,
}

impl CertDir {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    fn contents(&self) -> Result<Contents, CertError> {
        Ok(Contents {
            cert: read_optional(&self.dir.join("tls.crt"))?,
            key: read_optional(&self.dir.join("tls.key"))?,
            ca: read_optional(&self.dir.join("ca.crt"))?,
        })
    }

    fn check(&self, c: &Contents) -> Result<Mounted, CertError> {
        let path = |f: &str| self.dir.join(f).display().to_string();
        let missing = |f: &str| CertError::Invalid {
            path: path(f),
            message: "missing".into(),
        };
        let cert = c.cert.as_deref().ok_or_else(|| missing("tls.crt"))?;
        let key = c.key.as_deref().ok_or_else(|| missing("tls.key"))?;
        let certified = certified_key(cert, key, &path("tls.crt"))?;
        if let Some(ca) = &c.ca {
            crate::tls::certs_from_pem(ca, &path("ca.crt"))?;
        }
        Ok(Mounted {
            key: certified,
            ca_pem: c.ca.clone(),
            not_after: CertInfo::of_pem(cert, &path("tls.crt"))?.not_after,
        })
    }

    /// Reads and checks the directory now.
    pub fn load(&self) -> Result<Mounted, CertError> {
        self.check(&self.contents()?)
    }

    /// Serves what the directory holds from now on: every change that checks out is
    /// swapped into `serving` and handed to `on_change`; one that does not is logged and
    /// the last good certificate stays. `label` names the certificate in logs and metrics.
    pub async fn watch(
        self,
        serving: Arc<ServingCert>,
        label: &'static str,
        metrics: Option<CertMetrics>,
        on_change: impl Fn(&Mounted) + Send + 'static,
    ) {
        let mut seen = self.contents().ok();
        loop {
            tokio::time::sleep(POLL).await;
            let now = match self.contents() {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the certificate directory failed");
                    continue;
                }
            };
            if seen.as_ref() == Some(&now) {
                continue;
            }
            seen = Some(now.clone());
            match self.check(&now) {
                Ok(mounted) => {
                    serving.set(mounted.key.clone());
                    tracing::info!(
                        cert = label,
                        dir = %self.dir.display(),
                        not_after = %crate::rfc3339(mounted.not_after),
                        "loaded a new certificate from the certificate directory"
                    );
                    if let Some(m) = &metrics {
                        m.expires(label, mounted.not_after);
                        m.rotated(label);
                    }
                    on_change(&mounted);
                }
                // A half-written update is retried on the next change.
                Err(e) => tracing::error!(
                    cert = label,
                    error = %e,
                    "the certificate directory holds an unusable certificate; serving the last good one"
                ),
            }
        }
    }
}
