//! Who a client certificate says its holder is: CN is the user, each O a group, as
//! kube-apiserver reads client certificates.

use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A user as Kubernetes authentication yields it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CertIdentity {
    pub user: String,
    pub groups: Vec<String>,
}

/// Reads the identity of a (verified) leaf certificate; `None` if it has no CN.
pub fn from_certificate(cert: &CertificateDer<'_>) -> Option<CertIdentity> {
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
    let subject = parsed.subject();
    let user = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())?
        .to_owned();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    Some(CertIdentity { user, groups })
}
