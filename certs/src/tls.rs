//! rustls server configurations, always on the ring provider (never the process default, so
//! a second provider linked in by a dependency cannot make configuration panic).

use std::sync::{
    Arc, RwLock,
    atomic::{AtomicU64, Ordering},
};

use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
    client::danger::HandshakeSignatureValid,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, UnixTime},
    server::{
        ClientHello, ResolvesServerCert, WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
    sign::CertifiedKey,
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

/// A checked certificate chain and key, ready to serve: the key must be the leaf's and the
/// leaf must not have expired. Errors name `origin`.
pub fn certified_key(
    chain_pem: &str,
    key_pem: &str,
    origin: &str,
) -> Result<Arc<CertifiedKey>, CertError> {
    let invalid = |message: String| CertError::Invalid {
        path: origin.to_owned(),
        message,
    };
    let chain = certs_from_pem(chain_pem, origin)?;
    let leaf = crate::inspect::CertInfo::of_der(chain[0].as_ref(), origin)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if leaf.not_after <= now {
        return Err(invalid(format!(
            "the certificate {:?} expired at {}",
            leaf.subject,
            crate::rfc3339(leaf.not_after)
        )));
    }
    let key = key_from_pem(key_pem, origin)?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| invalid(format!("unusable private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| {
        invalid(format!(
            "the private key does not belong to the certificate {:?}",
            leaf.subject
        ))
    })?;
    Ok(Arc::new(certified))
}

/// The serving certificate, swapped in place when it is renewed or its files change: new
/// handshakes get the new one, established connections keep theirs, nothing restarts.
#[derive(Debug)]
pub struct ServingCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServingCert {
    pub fn new(key: Arc<CertifiedKey>) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(key),
        })
    }

    pub fn set(&self, key: Arc<CertifiedKey>) {
        if let Ok(mut current) = self.current.write() {
            *current = key;
        }
    }

    pub fn get(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// The CAs client certificates are verified against, replaceable while serving (the dev
/// CA rotates; in `serve` the cluster's client CA ConfigMap changes). The generation tells
/// caches of verified chains that their verdicts are stale.
pub struct ClientCa {
    inner: RwLock<Arc<dyn ClientCertVerifier>>,
    generation: AtomicU64,
    mandatory: bool,
}

impl std::fmt::Debug for ClientCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCa")
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

fn verifier(bundle_pem: &str, mandatory: bool) -> Result<Arc<dyn ClientCertVerifier>, CertError> {
    let mut roots = RootCertStore::empty();
    for ca in certs_from_pem(bundle_pem, "client CA")? {
        roots
            .add(ca)
            .map_err(|e| CertError::Tls(format!("client CA: {e}")))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    let builder = if mandatory {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder
        .build()
        .map_err(|e| CertError::Tls(format!("client CA: {e}")))
}

impl ClientCa {
    /// Client certificates must chain to a CA of `bundle_pem`; without one a client is
    /// refused when `mandatory`, else let through for other authentication methods.
    pub fn new(bundle_pem: &str, mandatory: bool) -> Result<Arc<Self>, CertError> {
        Ok(Arc::new(Self {
            inner: RwLock::new(verifier(bundle_pem, mandatory)?),
            generation: AtomicU64::new(0),
            mandatory,
        }))
    }

    /// Replaces the trusted CAs; a bad bundle changes nothing.
    pub fn set(&self, bundle_pem: &str) -> Result<(), CertError> {
        let next = verifier(bundle_pem, self.mandatory)?;
        if let Ok(mut inner) = self.inner.write() {
            *inner = next;
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        match self.inner.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl ClientCertVerifier for ClientCa {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    /// No hints: the list would have to outlive a swap of the CAs. Clients with one
    /// certificate (kubectl, kube-apiserver's front proxy) send it regardless.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

/// Asks every client for a certificate but leaves the chain to the request handlers: the
/// ingest port trusts different client CAs per endpoint (mtls sources), which a TLS
/// handshake cannot know before the request names its path. The handshake still proves the
/// client holds the certificate's key.
#[derive(Debug)]
pub struct DeferredClientCert {
    provider: Arc<CryptoProvider>,
}

impl DeferredClientCert {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            provider: provider(),
        })
    }
}

impl ClientCertVerifier for DeferredClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A server configuration serving `serving`, verifying client certificates against
/// `client_ca` when given. ALPN offers h2 and http/1.1.
pub fn server_config(
    serving: Arc<ServingCert>,
    client_ca: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<ServerConfig, CertError> {
    let tls = |e: rustls::Error| CertError::Tls(e.to_string());
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls)?;
    let mut config = match client_ca {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    }
    .with_cert_resolver(serving);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A server that requires every client to present a certificate issued by `client_ca_pem`,
/// with a fixed certificate (benchmark baselines; `dev` uses [`server_config`]).
pub fn mutual_tls_server(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: &str,
) -> Result<ServerConfig, CertError> {
    server_config(
        ServingCert::new(certified_key(cert_pem, key_pem, "serving certificate")?),
        Some(ClientCa::new(client_ca_pem, true)?),
    )
}
