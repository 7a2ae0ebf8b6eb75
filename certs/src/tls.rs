//! rustls server configurations, always on the ring provider (never the process default, so
//! a second provider linked in by a dependency cannot make configuration panic).

use std::sync::Arc;

use rustls::{
    RootCertStore, ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
};

use crate::CertError;

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Certificates of a PEM bundle.
pub fn certs_from_pem(pem: &str, origin: &str) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut pem.as_bytes()).collect();
    let certs = certs.map_err(|e| CertError::Invalid {
        path: origin.to_owned(),
        message: format!("not a PEM certificate bundle: {e}"),
    })?;
    if certs.is_empty() {
        return Err(CertError::Invalid {
            path: origin.to_owned(),
            message: "no certificate in the PEM data".into(),
        });
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub fn key_from_pem(pem: &str, origin: &str) -> Result<PrivateKeyDer<'static>, CertError> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|e| CertError::Invalid {
            path: origin.to_owned(),
            message: format!("not a PEM private key: {e}"),
        })?
        .ok_or_else(|| CertError::Invalid {
            path: origin.to_owned(),
            message: "no private key in the PEM data".into(),
        })
}

/// A server that requires every client to present a certificate issued by `client_ca_pem`
/// (`zen-watcher dev`: the admin kubeconfig's certificate). ALPN offers h2 and http/1.1.
pub fn mutual_tls_server(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: &str,
) -> Result<ServerConfig, CertError> {
    let tls = |e: rustls::Error| CertError::Tls(e.to_string());
    let mut roots = RootCertStore::empty();
    for ca in certs_from_pem(client_ca_pem, "client CA")? {
        roots.add(ca).map_err(tls)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| CertError::Tls(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs_from_pem(cert_pem, "serving certificate")?,
            key_from_pem(key_pem, "serving key")?,
        )
        .map_err(tls)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
