//! What a certificate says about itself: names, validity, key; and when it is due for
//! renewal.

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::{CertError, tls::certs_from_pem};

/// The facts of one certificate that rotation decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub common_name: String,
    pub serial: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    pub is_ca: bool,
    pub dns_names: Vec<String>,
    /// The raw subject public key (for EC keys, the point).
    pub public_key: Vec<u8>,
}

impl CertInfo {
    /// The first certificate of a PEM bundle; errors name `origin`.
    pub fn of_pem(pem: &str, origin: &str) -> Result<Self, CertError> {
        let certs = certs_from_pem(pem, origin)?;
        Self::of_der(certs[0].as_ref(), origin)
    }

    pub fn of_der(der: &[u8], origin: &str) -> Result<Self, CertError> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| CertError::Invalid {
            path: origin.to_owned(),
            message: format!("unparsable certificate: {e}"),
        })?;
        let validity = cert.validity();
        let dns_names = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::DNSName(d) => Some((*d).to_owned()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            subject: cert.subject().to_string(),
            common_name: cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .unwrap_or_default()
                .to_owned(),
            serial: cert.raw_serial_as_string(),
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
            is_ca: cert.is_ca(),
            dns_names,
            public_key: cert.public_key().subject_public_key.data.to_vec(),
        })
    }

    /// Two thirds into the certificate's life: when it is renewed.
    pub fn renew_at(&self) -> i64 {
        self.not_before + (self.not_after - self.not_before) * 2 / 3
    }
}

/// Whether the first certificate of `cert_pem` is signed by the first of `ca_pem`.
pub fn signed_by(cert_pem: &str, ca_pem: &str) -> bool {
    let (Ok(cert), Ok(ca)) = (
        certs_from_pem(cert_pem, "cert"),
        certs_from_pem(ca_pem, "ca"),
    ) else {
        return false;
    };
    let (Ok((_, cert)), Ok((_, ca))) = (
        X509Certificate::from_der(cert[0].as_ref()),
        X509Certificate::from_der(ca[0].as_ref()),
    ) else {
        return false;
    };
    cert.verify_signature(Some(ca.public_key())).is_ok()
}
