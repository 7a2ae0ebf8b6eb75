//! The self-managed PKI as one value: the CA that signs, a newer CA already published but
//! not yet signing, an older one still trusted during the overlap, and the serving
//! certificate. Stored as the data of two Secrets (`zen-watcher-ca`, `zen-watcher-tls`) in a
//! cluster, or as files of the same names in `dev`.

use std::collections::BTreeMap;

use crate::{
    CertError,
    inspect::CertInfo,
    issue::{Ca, CertifiedKeyPem},
};

pub const CA_SECRET: &str = "zen-watcher-ca";
pub const TLS_SECRET: &str = "zen-watcher-tls";

/// A Secret's data, decoded (every value here is PEM or text).
pub type SecretData = BTreeMap<String, String>;

/// Keys of the CA Secret.
const CA_CRT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const NEXT_CRT: &str = "next-ca.crt";
const NEXT_KEY: &str = "next-ca.key";
const PREVIOUS_CRT: &str = "previous-ca.crt";
const PREVIOUS_UNTIL: &str = "previous-ca-until";
const CROSS_CRT: &str = "cross-signed.crt";
/// Every trusted CA, for readers of the Secret; derived, never read back.
const BUNDLE: &str = "ca-bundle.crt";
/// Keys of the serving Secret (type `kubernetes.io/tls`).
const TLS_CRT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";

/// The CA being replaced: still in every caBundle until `until`, and the cross-signed copy
/// of the current CA that lets its clients verify the new serving certificate meanwhile.
#[derive(Debug, Clone)]
pub struct Retiring {
    pub cert_pem: String,
    pub cross_pem: String,
    /// Unix seconds.
    pub until: i64,
}

#[derive(Debug)]
pub struct Pki {
    pub ca: Ca,
    /// Published in the caBundles, not yet signing: it signs once every bundle has it.
    pub next: Option<Ca>,
    pub previous: Option<Retiring>,
    /// The leaf, followed by the cross-signed CA during an overlap.
    pub serving: Option<CertifiedKeyPem>,
}

/// The data of both Secrets; `None` where a Secret does not exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    pub ca: Option<SecretData>,
    pub tls: Option<SecretData>,
}

fn pem_line(pem: &str) -> &str {
    pem.trim_end_matches('\n')
}

impl Pki {
    /// Every CA a client must trust now: the retiring one, the current one and the next.
    pub fn bundle(&self) -> String {
        let mut out = String::new();
        let pems = self
            .previous
            .as_ref()
            .map(|p| p.cert_pem.as_str())
            .into_iter()
            .chain([self.ca.pem.cert_pem.as_str()])
            .chain(self.next.as_ref().map(|n| n.pem.cert_pem.as_str()));
        for pem in pems {
            out.push_str(pem_line(pem));
            out.push('\n');
        }
        out
    }

    /// The serving chain for a leaf of the current CA.
    pub(crate) fn chain(&self, leaf_pem: &str) -> String {
        match &self.previous {
            Some(p) => format!("{}\n{}\n", pem_line(leaf_pem), pem_line(&p.cross_pem)),
            None => format!("{}\n", pem_line(leaf_pem)),
        }
    }

    pub fn to_secrets(&self) -> Secrets {
        let mut ca = SecretData::new();
        ca.insert(CA_CRT.into(), self.ca.pem.cert_pem.clone());
        ca.insert(CA_KEY.into(), self.ca.pem.key_pem.clone());
        if let Some(next) = &self.next {
            ca.insert(NEXT_CRT.into(), next.pem.cert_pem.clone());
            ca.insert(NEXT_KEY.into(), next.pem.key_pem.clone());
        }
        if let Some(p) = &self.previous {
            ca.insert(PREVIOUS_CRT.into(), p.cert_pem.clone());
            ca.insert(CROSS_CRT.into(), p.cross_pem.clone());
            ca.insert(PREVIOUS_UNTIL.into(), crate::rfc3339(p.until));
        }
        let bundle = self.bundle();
        ca.insert(BUNDLE.into(), bundle.clone());
        let tls = self.serving.as_ref().map(|s| {
            let mut tls = SecretData::new();
            tls.insert(TLS_CRT.into(), s.cert_pem.clone());
            tls.insert(TLS_KEY.into(), s.key_pem.clone());
            tls.insert(CA_CRT.into(), bundle);
            tls
        });
        Secrets { ca: Some(ca), tls }
    }

    /// The PKI the Secrets hold; `None` when there is no CA yet. A CA that cannot be used is
    /// an error (never silently replaced: clients trust it). Everything derived from it
    /// (next, previous, serving) that cannot be used is dropped with a warning and
    /// recreated by [`crate::rotation::reconcile`].
    pub fn from_secrets(secrets: &Secrets) -> Result<Option<Pki>, CertError> {
        let Some(ca_data) = &secrets.ca else {
            return Ok(None);
        };
        let origin = |key: &str| format!("{CA_SECRET}/{key}");
        let (Some(cert_pem), Some(key_pem)) = (ca_data.get(CA_CRT), ca_data.get(CA_KEY)) else {
            return Ok(None);
        };
        let ca = Ca::from_pem(CertifiedKeyPem {
            cert_pem: cert_pem.clone(),
            key_pem: key_pem.clone(),
        })
        .map_err(|e| CertError::Invalid {
            path: origin(CA_CRT),
            message: e.to_string(),
        })?;
        let next = match (ca_data.get(NEXT_CRT), ca_data.get(NEXT_KEY)) {
            (Some(cert_pem), Some(key_pem)) => Ca::from_pem(CertifiedKeyPem {
                cert_pem: cert_pem.clone(),
                key_pem: key_pem.clone(),
            })
            .inspect_err(|e| tracing::warn!(key = %origin(NEXT_CRT), error = %e, "dropping the unusable next CA"))
            .ok(),
            _ => None,
        };
        let previous = match (
            ca_data.get(PREVIOUS_CRT),
            ca_data.get(CROSS_CRT),
            ca_data.get(PREVIOUS_UNTIL),
        ) {
            (Some(cert_pem), Some(cross_pem), Some(until)) => {
                let parsed = CertInfo::of_pem(cert_pem, &origin(PREVIOUS_CRT))
                    .and_then(|_| CertInfo::of_pem(cross_pem, &origin(CROSS_CRT)))
                    .and_then(|_| {
                        time::OffsetDateTime::parse(
                            until,
                            &time::format_description::well_known::Rfc3339,
                        )
                        .map_err(|e| CertError::Invalid {
                            path: origin(PREVIOUS_UNTIL),
                            message: e.to_string(),
                        })
                    });
                match parsed {
                    Ok(until) => Some(Retiring {
                        cert_pem: cert_pem.clone(),
                        cross_pem: cross_pem.clone(),
                        until: until.unix_timestamp(),
                    }),
                    Err(e) => {
                        tracing::warn!(error = %e, "dropping the unusable previous CA");
                        None
                    }
                }
            }
            _ => None,
        };
        let serving = secrets.tls.as_ref().and_then(|tls| {
            let cert_pem = tls.get(TLS_CRT)?;
            let key_pem = tls.get(TLS_KEY)?;
            Some(CertifiedKeyPem {
                cert_pem: cert_pem.clone(),
                key_pem: key_pem.clone(),
            })
        });
        Ok(Some(Pki {
            ca,
            next,
            previous,
            serving,
        }))
    }
}
