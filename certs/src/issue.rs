//! Issuing certificates: a CA, serving certificates and client certificates, all ECDSA P-256.

use std::{net::IpAddr, time::Duration};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

use crate::CertError;

/// Clock skew tolerated between zen-watcher and its clients: five minutes, or a tenth of a
/// short lifetime (so a 20-second certificate is not mostly in the past).
fn backdate(lifetime: Duration) -> Duration {
    Duration::from_secs(5 * 60).min(lifetime / 10)
}

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
    /// The subject's CN; unique per CA (a timestamp suffix), so certificates of two CAs in
    /// one bundle never share an issuer name.
    common_name: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("common_name", &self.common_name)
            .finish_non_exhaustive()
    }
}

fn err(e: impl std::fmt::Display) -> CertError {
    CertError::Issue(e.to_string())
}

fn validity(params: &mut CertificateParams, lifetime: Duration) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - backdate(lifetime);
    params.not_after = now + lifetime;
}

/// The parameters of a CA certificate named `common_name`: the same for its self-signed
/// certificate and for a cross-signed copy, so both carry one subject and key identifier.
fn ca_params(common_name: &str) -> Result<CertificateParams, CertError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    // Path length 1: a cross-signed CA may stand between an older CA and a leaf.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    Ok(params)
}

impl Ca {
    /// A new self-signed CA named `{name}@{unix time}`, as kube-apiserver names its own.
    pub fn generate(name: &str, lifetime: Duration) -> Result<Self, CertError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err)?;
        let common_name = format!("{name}@{}", OffsetDateTime::now_utc().unix_timestamp());
        let mut params = ca_params(&common_name)?;
        validity(&mut params, lifetime);
        let cert = params.self_signed(&key).map_err(err)?;
        let pem = CertifiedKeyPem {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        Ok(Self {
            issuer: Issuer::new(params, key),
            pem,
            common_name,
        })
    }

    /// A CA from its PEM contents; the key must be the certificate's.
    pub fn from_pem(pem: CertifiedKeyPem) -> Result<Self, CertError> {
        let key = KeyPair::from_pem(&pem.key_pem).map_err(err)?;
        let info = crate::inspect::CertInfo::of_pem(&pem.cert_pem, "CA certificate")?;
        if !info.is_ca {
            return Err(CertError::Issue(format!(
                "{:?} is not a CA certificate",
                info.subject
            )));
        }
        if info.public_key != rcgen::PublicKeyData::der_bytes(&key) {
            return Err(CertError::Issue(format!(
                "the CA key does not belong to the CA certificate {:?}",
                info.subject
            )));
        }
        let issuer = Issuer::from_ca_cert_pem(&pem.cert_pem, key).map_err(err)?;
        Ok(Self {
            pem,
            issuer,
            common_name: info.common_name,
        })
    }

    /// `newer`'s certificate signed by this CA: served after a leaf of `newer`, it lets
    /// clients that trust only this CA verify `newer`'s leaves (the rotation overlap).
    /// Valid until the earlier of the two CAs' ends.
    pub fn cross_sign(&self, newer: &Ca) -> Result<String, CertError> {
        let mut params = ca_params(&newer.common_name)?;
        let ends = [&self.pem.cert_pem, &newer.pem.cert_pem]
            .into_iter()
            .map(|pem| crate::inspect::CertInfo::of_pem(pem, "CA certificate").map(|i| i.not_after))
            .collect::<Result<Vec<_>, _>>()?;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - backdate(Duration::from_secs(3000));
        params.not_after = OffsetDateTime::from_unix_timestamp(ends.into_iter().min().unwrap_or(0))
            .map_err(err)?;
        let cert = params
            .signed_by(newer.issuer.key(), &self.issuer)
            .map_err(err)?;
        Ok(cert.pem())
    }

    pub fn common_name(&self) -> &str {
        &self.common_name
    }

    /// A serving certificate for `dns_names` and `ips`.
    pub fn issue_serving(
        &self,
        dns_names: &[String],
        ips: &[IpAddr],
        lifetime: Duration,
    ) -> Result<CertifiedKeyPem, CertError> {
        self.issue_for(
            dns_names,
            ips,
            lifetime,
            &[ExtendedKeyUsagePurpose::ServerAuth],
        )
    }

    /// A certificate that serves `dns_names` and `ips` and is also a client certificate, as
    /// etcd members need (etcd's gateway dials its own gRPC port with it).
    pub fn issue_peer(
        &self,
        dns_names: &[String],
        ips: &[IpAddr],
        lifetime: Duration,
    ) -> Result<CertifiedKeyPem, CertError> {
        self.issue_for(
            dns_names,
            ips,
            lifetime,
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )
    }

    fn issue_for(
        &self,
        dns_names: &[String],
        ips: &[IpAddr],
        lifetime: Duration,
        usages: &[ExtendedKeyUsagePurpose],
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
        params.extended_key_usages = usages.to_vec();
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
