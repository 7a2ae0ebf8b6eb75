//! What `dev` and `serve` both run: the store, the aggregated API behind authentication and
//! authorization, the admission webhook, the ingest port, the metrics port, and a graceful
//! shutdown. The modes differ only in where identities, certificates and configuration
//! come from.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Duration,
};

use prometheus::{Encoder, Registry, TextEncoder};
use tower::ServiceBuilder;
use zen_admission::{
    Admission, AdmissionService, ClusterView, StaticCluster, metrics::AdmissionMetrics,
};
use zen_apiserver::{
    authn::AuthenticationLayer,
    authz::AuthorizationLayer,
    metrics::{ApiMetrics, MetricsLayer},
    server::ApiServer,
};
use zen_auth::{authn::Authentication, authz::Authorizer};
use zen_serving::{ServerOptions, full, serve_plain, serve_tls};
use zen_store::{Store, redb::RedbStore};

/// Why the server could not start or run; printed for humans.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Certs(#[from] zen_certs::CertError),
    #[error("store: {0}")]
    Store(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
    #[error("{0}")]
    Kube(#[from] zen_kube::KubeError),
}

pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Io { what, source }
}

fn setup(e: impl std::fmt::Display) -> RunError {
    RunError::Setup(e.to_string())
}

/// Opens the store a `--store` value names (only the embedded one so far).
/// Where Observations live: `--store` and, for etcd, the key prefix and TLS files.
#[derive(Clone, Debug, Default)]
pub struct StoreOptions {
    /// `redb:PATH` or `etcd:http://HOST:PORT[,...]`; unset: the mode's default.
    pub spec: Option<String>,
    pub etcd_prefix: Option<String>,
    pub etcd_cafile: Option<PathBuf>,
    pub etcd_certfile: Option<PathBuf>,
    pub etcd_keyfile: Option<PathBuf>,
}

/// Opens the store `spec` names (etcd: connects once, so a wrong address fails at start).
pub async fn open_store(spec: &str, options: &StoreOptions) -> Result<Arc<dyn Store>, RunError> {
    match spec.split_once(':') {
        Some(("redb", path)) if !path.is_empty() => {
            let store = RedbStore::open(std::path::Path::new(path))
                .map_err(|e| RunError::Store(e.to_string()))?;
            Ok(Arc::new(store))
        }
        Some(("etcd", endpoints)) => {
            let mut config = zen_store::etcd::EtcdConfig::parse(endpoints)
                .map_err(|e| RunError::Store(e.to_string()))?;
            if let Some(prefix) = &options.etcd_prefix {
                if !prefix.starts_with('/') || !prefix.ends_with('/') {
                    return Err(RunError::Store(format!(
                        "--etcd-prefix {prefix:?}: must start and end with '/'"
                    )));
                }
                config.prefix = prefix.clone();
            }
            let read = |path: &Option<PathBuf>, flag: &str| -> Result<Option<String>, RunError> {
                path.as_ref()
                    .map(|p| {
                        std::fs::read_to_string(p).map_err(io(format!("{flag} {}", p.display())))
                    })
                    .transpose()
            };
            config.tls = zen_store::etcd::EtcdTls {
                ca_pem: read(&options.etcd_cafile, "--etcd-cafile")?,
                cert_pem: read(&options.etcd_certfile, "--etcd-certfile")?,
                key_pem: read(&options.etcd_keyfile, "--etcd-keyfile")?,
            };
            let store = zen_store::etcd::EtcdStore::connect(config)
                .await
                .map_err(|e| RunError::Store(format!("--store {spec}: {e}")))?;
            Ok(Arc::new(store))
        }
        _ => Err(RunError::Store(format!(
            "--store {spec:?}: expected redb:PATH or etcd:http://HOST:PORT[,...]"
        ))),
    }
}

/// Delivery ids whose replay window has passed are removed once a minute.
async fn sweep_delivery_ids(store: Arc<dyn Store>, singleton: Singleton) {
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        if !singleton() {
            continue;
        }
        match zen_ingest::replay::shared::sweep(&*store).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(removed = n, "expired delivery ids removed"),
            Err(e) => tracing::warn!(error = %e, "removing expired delivery ids failed"),
        }
    }
}

/// The Namespaces and Secrets admission asks about, as last read: from the config directory
/// in `dev`, from watches of the cluster in `serve`.
#[derive(Default)]
pub struct LiveCluster(RwLock<StaticCluster>);

impl LiveCluster {
    pub fn replace(&self, cluster: StaticCluster) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = cluster;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, StaticCluster> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl ClusterView for LiveCluster {
    fn namespace_labels(&self, namespace: &str) -> Option<zen_admission::cluster::Labels> {
        self.read().namespace_labels(namespace)
    }

    fn secret_keys(&self, namespace: &str, name: &str) -> Option<Arc<[String]>> {
        self.read().secret_keys(namespace, name)
    }
}

/// Where the three ports listen.
pub struct Ports {
    pub bind: std::net::IpAddr,
    pub secure: u16,
    pub ingest: u16,
    pub metrics: u16,
}

/// The components of a running zen-watcher, before its ports are opened.
pub struct Process {
    pub store: Arc<dyn Store>,
    pub registry: Registry,
    pub admission: Arc<Admission>,
    pub endpoints: Arc<zen_ingest::Endpoints>,
    api: ApiServer,
    api_metrics: ApiMetrics,
    ingest: zen_ingest::IngestService,
    /// Whether this replica does the work only one replica should (expiry, sweeps).
    singleton: Singleton,
}

/// Asked before singleton work; `serve` answers from its Lease, `dev` always yes.
pub type Singleton = Arc<dyn Fn() -> bool + Send + Sync>;

impl Process {
    /// Builds the API, admission and ingest on `store`; `cluster` answers admission's
    /// questions about Namespaces and Secrets.
    pub fn new(
        store: Arc<dyn Store>,
        registry: Registry,
        cluster: Arc<dyn ClusterView>,
        ingest_limits: zen_ingest::service::Limits,
    ) -> Result<Self, RunError> {
        let api_metrics = ApiMetrics::register(&registry).map_err(setup)?;
        let api = ApiServer::new(store.clone(), api_metrics.clone()).map_err(RunError::Setup)?;
        let endpoints = Arc::new(zen_ingest::Endpoints::default());
        let ingest = zen_ingest::IngestService::with_limits(
            endpoints.clone(),
            zen_ingest::sink::ApiSink::new(api.clone()),
            Some(zen_ingest::metrics::IngestMetrics::register(&registry).map_err(setup)?),
            ingest_limits,
        );
        let admission_metrics = AdmissionMetrics::register(&registry).map_err(setup)?;
        let admission =
            Arc::new(Admission::new(cluster, Some(admission_metrics)).map_err(RunError::Setup)?);
        Ok(Self {
            store,
            registry,
            admission,
            endpoints,
            api,
            api_metrics,
            ingest,
            singleton: Arc::new(|| true),
        })
    }

    /// Leaves expiry and sweeps to the replica for which `singleton` says yes.
    pub fn with_singleton(mut self, singleton: Singleton) -> Self {
        self.singleton = singleton;
        self
    }

    /// What turns Events into Observations through this process's API.
    pub fn event_follower(&self) -> zen_ingest::EventFollower {
        zen_ingest::EventFollower::new(
            self.endpoints.clone(),
            zen_ingest::sink::ApiSink::new(self.api.clone()),
        )
    }

    /// Opens the ports and serves until SIGTERM or Ctrl-C; `ready` is told the addresses.
    pub async fn serve(
        self,
        identity: (Authentication, Arc<dyn Authorizer>),
        secure_tls: rustls::ServerConfig,
        ingest_tls: rustls::ServerConfig,
        ports: Ports,
        ready: impl FnOnce(SocketAddr, SocketAddr, SocketAddr),
    ) -> Result<(), RunError> {
        let (authn, authz) = identity;
        tokio::spawn(sweep_delivery_ids(
            self.store.clone(),
            self.singleton.clone(),
        ));
        tokio::spawn(zen_ingest::view::run(
            self.api.clone(),
            self.endpoints.clone(),
        ));
        let api = ServiceBuilder::new()
            .layer(MetricsLayer::new(self.api_metrics))
            .layer(AuthenticationLayer::new(authn))
            .layer(AuthorizationLayer::new(authz))
            .service(api_routes(self.api, self.ingest.clone()));
        let service = secure_port(api, AdmissionService::new(self.admission));

        let bind = |port: u16| async move {
            let addr = SocketAddr::new(ports.bind, port);
            tokio::net::TcpListener::bind(addr)
                .await
                .map(|l| (l, addr))
                .map_err(io(format!("listening on {addr}")))
        };
        let (secure, secure_addr) = bind(ports.secure).await?;
        let (ingest, ingest_addr) = bind(ports.ingest).await?;
        let (metrics_listener, metrics_addr) = bind(ports.metrics).await?;

        tokio::spawn(zen_apiserver::ttl::run_reaper(
            self.store.clone(),
            "observations",
            self.singleton.clone(),
        ));

        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let secure_task = tokio::spawn(serve_tls(
            secure,
            Arc::new(secure_tls),
            service,
            ServerOptions::default(),
            stopped(stop_rx.clone()),
        ));
        let registry = self.registry;
        let metrics_service =
            tower::service_fn(move |_req: http::Request<hyper::body::Incoming>| {
                let registry = registry.clone();
                async move {
                    let mut buf = Vec::new();
                    let _ = TextEncoder::new().encode(&registry.gather(), &mut buf);
                    let mut resp = http::Response::new(full(buf));
                    resp.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("text/plain; version=0.0.4"),
                    );
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
        let ingest_task = tokio::spawn(serve_tls(
            ingest,
            Arc::new(ingest_tls),
            self.ingest,
            ServerOptions::default(),
            stopped(stop_rx.clone()),
        ));
        let metrics_task = tokio::spawn(serve_plain(
            metrics_listener,
            metrics_service,
            ServerOptions::default(),
            stopped(stop_rx),
        ));
        ready(secure_addr, ingest_addr, metrics_addr);

        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        let _ = secure_task.await;
        let _ = ingest_task.await;
        let _ = metrics_task.await;
        Ok(())
    }
}

/// Behind authentication: the `webhookendpoints/{name}/ingest` subresource goes to the
/// ingest pipeline, everything else to the aggregated API.
fn api_routes(
    api: ApiServer,
    ingest: zen_ingest::IngestService,
) -> impl tower::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<zen_serving::Body>,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let api = api.clone();
        let ingest = ingest.clone();
        async move {
            let target = zen_ingest::service::subresource_target(req.uri().path())
                .map(|(ns, name)| (ns.to_owned(), name.to_owned()));
            Ok(match target {
                Some((ns, name)) if req.method() == http::Method::POST => {
                    ingest.handle_subresource(&ns, &name, req).await
                }
                _ => api.handle(req).await,
            })
        }
    })
}

/// The secure port: admission webhooks under `/admission/`, the aggregated API for the rest.
fn secure_port<A>(
    api: A,
    admission: AdmissionService,
) -> impl tower::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<zen_serving::Body>,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static
where
    A: tower::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<zen_serving::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    A::Future: Send,
{
    use tower::ServiceExt;
    tower::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let to_admission = req.uri().path().starts_with("/admission/");
        let api = api.clone();
        let admission = admission.clone();
        async move {
            if to_admission {
                admission.oneshot(req).await
            } else {
                api.oneshot(req).await
            }
        }
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
