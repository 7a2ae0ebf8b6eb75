//! `zen-watcher dev`: everything on one machine with no cluster. The embedded store and a PKI
//! live under `--data-dir`; kubectl connects with the admin kubeconfig written there.

use std::{path::PathBuf, sync::Arc};

use prometheus::Registry;
use zen_auth::authn::{Authentication, ClientCertAuthenticator};
use zen_certs::metrics::CertMetrics;

use crate::{
    certificates::{self, CertOptions},
    config_dir,
    process::{LiveCluster, Ports, Process, RunError, StoreOptions, io, open_store},
};

/// What `dev` needs from the command line.
pub struct DevConfig {
    pub config_dir: Option<PathBuf>,
    pub certs: CertOptions,
    pub data_dir: PathBuf,
    pub store: StoreOptions,
    pub ports: Ports,
    pub ingest: zen_ingest::service::Limits,
}

pub async fn run(config: DevConfig) -> Result<(), RunError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(io(format!("creating {}", config.data_dir.display())))?;
    let store_spec = config
        .store
        .spec
        .clone()
        .unwrap_or_else(|| format!("redb:{}", config.data_dir.join("zen.redb").display()));
    let store = open_store(&store_spec, &config.store).await?;

    let bind = config.ports.bind;
    let host = if bind.is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        bind.to_string()
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let server_url = format!("https://{host}:{}", config.ports.secure);
    let kubeconfig_path = config.data_dir.join("kubeconfig");

    let registry = Registry::new();
    let cert_metrics =
        CertMetrics::register(&registry).map_err(|e| RunError::Setup(e.to_string()))?;
    let certs = certificates::start(
        &config.data_dir,
        server_url.clone(),
        config.certs,
        Some(cert_metrics),
    )
    .await?;

    let cluster = Arc::new(LiveCluster::default());
    let process = Process::new(store, registry, cluster.clone(), config.ingest)?;
    if let Some(dir) = &config.config_dir {
        tokio::spawn(config_dir::watch(
            dir.clone(),
            process.admission.clone(),
            cluster,
            process.endpoints.clone(),
        ));
    }
    // Only the dev CA's clients get past TLS; authentication still verifies the chain and
    // reads the user, as it does for every client CA in `serve`. Every dev client holds a
    // certificate of the dev CA, so all may do everything; `serve` asks kube-apiserver.
    let authn = Authentication::new(
        vec![Arc::new(ClientCertAuthenticator::new(
            certs.client_ca.clone(),
        ))],
        false,
    );
    let authz: Arc<dyn zen_auth::authz::Authorizer> = Arc::new(zen_auth::authz::AlwaysAllow);
    let secure_tls =
        zen_certs::tls::server_config(certs.serving.clone(), Some(certs.client_ca.clone()))?;
    // Client certificates of mtls sources are checked per endpoint, after routing.
    let ingest_tls = zen_certs::tls::server_config(
        certs.ingest.clone(),
        Some(zen_certs::tls::DeferredClientCert::new()),
    )?;
    let data_dir = config.data_dir.clone();
    process
        .serve(
            (authn, authz),
            secure_tls,
            ingest_tls,
            config.ports,
            |secure_addr, ingest_addr, metrics_addr| {
                tracing::info!(%secure_addr, %ingest_addr, %metrics_addr, store = %store_spec, "zen-watcher dev is serving");
                println!(
                    "zen-watcher dev is serving on {server_url}\n\n  kubectl --kubeconfig {kc} get observations -A\n  kubectl --kubeconfig {kc} api-resources --api-group=zen.watcher.io\n\nwebhooks: https://{ingest_addr}/hooks/<namespace>/<ingestor>/<source>; metrics: http://{metrics_addr}/metrics; data in {data}",
                    kc = kubeconfig_path.display(),
                    data = data_dir.display(),
                );
            },
        )
        .await
}
