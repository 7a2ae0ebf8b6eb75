//! How `dev` gets its certificates: the self-managed PKI in `<data-dir>/pki` (rotated in
//! process), or a mounted directory (`--cert-dir`) for the serving certificate; and the
//! admin kubeconfig kept current with both.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use zen_certs::{
    CertError,
    dev::{DevCredentials, DevPublisher},
    issue::CertifiedKeyPem,
    manager::SelfManaged,
    metrics::CertMetrics,
    mounted::CertDir,
    store::FileStore,
    tls::{ClientCa, ServingCert},
};

use crate::kubeconfig;

/// What the listeners serve and verify, all swapped in place while serving.
pub struct DevCertificates {
    /// The secure port's certificate.
    pub serving: Arc<ServingCert>,
    /// The ingest port's certificate (the secure port's unless `--ingest-cert-dir`).
    pub ingest: Arc<ServingCert>,
    /// The CAs admin (and other dev) client certificates are verified against.
    pub client_ca: Arc<ClientCa>,
}

pub struct CertOptions {
    pub cert_dir: Option<PathBuf>,
    pub ingest_cert_dir: Option<PathBuf>,
    pub cert_validity: Duration,
    pub ca_validity: Duration,
}

/// The kubeconfig's inputs; it is rewritten whenever one changes.
struct Kubeconfig {
    path: PathBuf,
    server: String,
    state: Mutex<KubeconfigState>,
}

#[derive(Default)]
struct KubeconfigState {
    admin: Option<CertifiedKeyPem>,
    /// The CAs that verify the serving certificate: the dev bundle, or the mounted
    /// directory's `ca.crt` (none: a publicly trusted certificate).
    server_ca: Option<String>,
}

impl Kubeconfig {
    fn update(&self, change: impl FnOnce(&mut KubeconfigState)) -> Result<(), CertError> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| CertError::Issue("kubeconfig state poisoned".into()))?;
        change(&mut state);
        let Some(admin) = &state.admin else {
            return Ok(());
        };
        kubeconfig::write(
            &self.path,
            &kubeconfig::Credentials {
                server: &self.server,
                ca_pem: state.server_ca.as_deref(),
                client_cert_pem: &admin.cert_pem,
                client_key_pem: &admin.key_pem,
            },
        )
    }
}

/// Starts certificate management for `dev`: the first certificates are ready when this
/// returns; rotation and directory watching continue in background tasks.
pub async fn start(
    data_dir: &Path,
    server_url: String,
    options: CertOptions,
    metrics: Option<CertMetrics>,
) -> Result<DevCertificates, CertError> {
    let pki_dir = data_dir.join("pki");
    let mounted = options.cert_dir.as_deref().map(CertDir::new);
    let mounted_now = mounted.as_ref().map(CertDir::load).transpose()?;
    let kubeconfig = Arc::new(Kubeconfig {
        path: data_dir.join("kubeconfig"),
        server: server_url,
        state: Mutex::new(KubeconfigState {
            admin: None,
            server_ca: mounted_now.as_ref().and_then(|m| m.ca_pem.clone()),
        }),
    });

    let client_ca: Arc<OnceLock<Arc<ClientCa>>> = Arc::default();
    let publisher = {
        let client_ca = client_ca.clone();
        let kubeconfig = kubeconfig.clone();
        let self_served = mounted.is_none();
        DevPublisher::new(
            &pki_dir,
            options.cert_validity,
            move |c: &DevCredentials| {
                // Trust every CA of the bundle before handing out certificates of a new one.
                match client_ca.get() {
                    Some(ca) => ca.set(&c.ca_bundle)?,
                    None => {
                        let _ = client_ca.set(ClientCa::new(&c.ca_bundle, true)?);
                    }
                }
                kubeconfig.update(|s| {
                    s.admin = Some(c.admin.clone());
                    if self_served {
                        s.server_ca = Some(c.ca_bundle.clone());
                    }
                })
            },
        )
    };
    let (manager, self_managed) = SelfManaged::start(
        Arc::new(FileStore::new(&pki_dir)?),
        zen_certs::dev::settings(options.cert_validity, options.ca_validity),
        Arc::new(publisher),
        metrics.clone(),
        None,
    )
    .await?;
    tokio::spawn(manager.run());
    let client_ca = client_ca
        .get()
        .cloned()
        .ok_or_else(|| CertError::Issue("the dev CA was not published".into()))?;

    let serving = match (mounted, mounted_now) {
        (Some(dir), Some(now)) => {
            let serving = ServingCert::new(now.key.clone());
            if let Some(m) = &metrics {
                m.expires("serving", now.not_after);
            }
            let kubeconfig = kubeconfig.clone();
            tokio::spawn(
                dir.watch(serving.clone(), "serving", metrics.clone(), move |m| {
                    let ca = m.ca_pem.clone();
                    if let Err(e) = kubeconfig.update(|s| s.server_ca = ca) {
                        tracing::error!(error = %e, "updating the kubeconfig failed");
                    }
                }),
            );
            serving
        }
        _ => self_managed,
    };
    let ingest = match &options.ingest_cert_dir {
        Some(dir) => {
            let dir = CertDir::new(dir);
            let now = dir.load()?;
            let ingest = ServingCert::new(now.key.clone());
            if let Some(m) = &metrics {
                m.expires("ingest", now.not_after);
            }
            tokio::spawn(dir.watch(ingest.clone(), "ingest", metrics, |_| {}));
            ingest
        }
        None => serving.clone(),
    };
    Ok(DevCertificates {
        serving,
        ingest,
        client_ca,
    })
}
