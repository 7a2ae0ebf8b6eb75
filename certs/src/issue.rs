//! Issuing certificates: a CA, serving certificates and client certificates, all ECDSA P-256.

use std::{net::IpAddr, time::Duration};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

use crate::CertError;

/// Clock skew tolerated between zen-watcher and its clients.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// A certificate and its private key, PEM-encoded.
#[derive(Clone)]
pub struct CertifiedKeyPem {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertifiedKeyPem {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertifiedKeyPem").finish_non_exhaustive()
    }
}

/// A CA that can sign.
pub struct Ca {
    pub pem: CertifiedKeyPem,
    issuer: Issuer<'static, KeyPair>,
}

fn err(e: impl std::fmt::Display) -> CertError {
    CertError::Issue(e.to_string())
}

fn validity(params: &mut CertificateParams, lifetime: Duration) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + lifetime;
}

impl Ca {
    /// A new self-signed CA.
    pub fn generate(common_name: &str, lifetime: Duration) -> Result<Self, CertError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        validity(&mut params, lifetime);
        let cert = params.self_signed(&key).map_err(err)?;
        let pem = CertifiedKeyPem {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        Ok(Self {
            issuer: Issuer::new(params, key),
            pem,
        })
    }

    /// A CA from its PEM files' contents.
    pub fn from_pem(pem: CertifiedKeyPem) -> Result<Self, CertError> {
        let key = KeyPair::from_pem(&pem.key_pem).map_err(err)?;
        let issuer = Issuer::from_ca_cert_pem(&pem.cert_pem, key).map_err(err)?;
        Ok(Self { pem, issuer })
    }

    /// A serving certificate for `dns_names` and `ips`.
    pub fn issue_serving(
        &self,
        dns_names: &[String],
        ips: &[IpAddr],
        lifetime: Duration,
    ) -> Result<CertifiedKeyPem, CertError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err)?;
        let mut params = CertificateParams::new(dns_names.to_vec()).map_err(err)?;
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            dns_names
                .first()
                .map(String::as_str)
                .unwrap_or("zen-watcher"),
        );
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, key, lifetime)
    }

    /// A client certificate for `user` in `group` (CN and O, as Kubernetes reads them).
    /// rcgen keeps one value per name attribute, so one group per certificate.
    pub fn issue_client(
        &self,
        user: &str,
        group: Option<&str>,
        lifetime: Duration,
    ) -> Result<CertifiedKeyPem, CertError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, user);
        if let Some(group) = group {
            params
                .distinguished_name
                .push(DnType::OrganizationName, group);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, key, lifetime)
    }

    /// Signs a leaf certificate for `key` valid for `lifetime` from now.
    fn sign(
        &self,
        mut params: CertificateParams,
        key: KeyPair,
        lifetime: Duration,
    ) -> Result<CertifiedKeyPem, CertError> {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut params, lifetime);
        let cert = params.signed_by(&key, &self.issuer).map_err(err)?;
        Ok(CertifiedKeyPem {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
