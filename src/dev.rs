//! `zen-watcher dev`: everything on one machine with no cluster. The embedded store and a PKI
//! live under `--data-dir`; kubectl connects with the admin kubeconfig written there.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use prometheus::{Encoder, Registry, TextEncoder};
use tower::ServiceBuilder;
use zen_admission::{Admission, AdmissionService, metrics::AdmissionMetrics};
use zen_apiserver::{
    authn::AuthenticationLayer,
    authz::AuthorizationLayer,
    metrics::{ApiMetrics, MetricsLayer},
    server::ApiServer,
};
use zen_auth::authn::{Authentication, ClientCertAuthenticator};
use zen_certs::metrics::CertMetrics;
use zen_serving::{ServerOptions, full, serve_plain, serve_tls};
use zen_store::{Store, redb::RedbStore};

use crate::{
    certificates::{self, CertOptions},
    config_dir::{self, DirCluster},
};

/// What `dev` needs from the command line.
pub struct DevConfig {
    pub config_dir: Option<PathBuf>,
    pub certs: CertOptions,
    pub data_dir: PathBuf,
    pub store: Option<String>,
    pub bind: std::net::IpAddr,
    pub secure_port: u16,
    pub ingest_port: u16,
    pub metrics_port: u16,
}

/// Why `dev` could not start; printed for humans.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
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
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DevError {
    let what = what.into();
    move |source| DevError::Io { what, source }
}

/// Opens the store a `--store` value names (only the embedded one so far).
pub fn open_store(spec: &str) -> Result<Arc<dyn Store>, DevError> {
    match spec.split_once(':') {
        Some(("redb", path)) if !path.is_empty() => {
            let store = RedbStore::open(std::path::Path::new(path))
                .map_err(|e| DevError::Store(e.to_string()))?;
            Ok(Arc::new(store))
        }
        Some(("etcd", _)) => Err(DevError::Store(
            "the etcd store is not available in this build yet; use redb:PATH".into(),
        )),
        _ => Err(DevError::Store(format!(
            "--store {spec:?}: expected redb:PATH or etcd:http://HOST:PORT"
        ))),
    }
}

pub async fn run(config: DevConfig) -> Result<(), DevError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(io(format!("creating {}", config.data_dir.display())))?;
    let store_spec = config
        .store
        .clone()
        .unwrap_or_else(|| format!("redb:{}", config.data_dir.join("zen.redb").display()));
    let store = open_store(&store_spec)?;

    let host = if config.bind.is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        config.bind.to_string()
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let server_url = format!("https://{host}:{}", config.secure_port);
    let kubeconfig_path = config.data_dir.join("kubeconfig");

    let registry = Registry::new();
    let setup = |e: prometheus::Error| DevError::Setup(e.to_string());
    let cert_metrics = CertMetrics::register(&registry).map_err(setup)?;
    let certs = certificates::start(
        &config.data_dir,
        server_url.clone(),
        config.certs,
        Some(cert_metrics),
    )
    .await?;

    let metrics = ApiMetrics::register(&registry).map_err(setup)?;
    let api = ApiServer::new(store.clone(), metrics.clone()).map_err(DevError::Setup)?;
    let endpoints = Arc::new(zen_ingest::Endpoints::default());
    tokio::spawn(zen_ingest::view::run(api.clone(), endpoints.clone()));
    let ingest_service = zen_ingest::IngestService::new(
        endpoints.clone(),
        zen_ingest::sink::ApiSink::new(api.clone()),
        Some(zen_ingest::metrics::IngestMetrics::register(&registry).map_err(setup)?),
    );
    // Only the dev CA's clients get past TLS; authentication still verifies the chain and
    // reads the user, as it will for every client CA in `serve`.
    let client_certs = ClientCertAuthenticator::new(certs.client_ca.clone());
    let api = ServiceBuilder::new()
        .layer(MetricsLayer::new(metrics))
        .layer(AuthenticationLayer::new(Authentication::new(
            vec![Arc::new(client_certs)],
            false,
        )))
        // Every dev client holds a certificate of the dev CA; `serve` asks kube-apiserver.
        .layer(AuthorizationLayer::new(Arc::new(
            zen_auth::authz::AlwaysAllow,
        )))
        .service(api_routes(api, ingest_service.clone()));
    let cluster = Arc::new(DirCluster::default());
    let admission_metrics = AdmissionMetrics::register(&registry).map_err(setup)?;
    let admission = Arc::new(
        Admission::new(cluster.clone(), Some(admission_metrics)).map_err(DevError::Setup)?,
    );
    if let Some(dir) = &config.config_dir {
        tokio::spawn(config_dir::watch(
            dir.clone(),
            admission.clone(),
            cluster,
            endpoints,
        ));
    }
    let service = secure_port(api, AdmissionService::new(admission));

    let tls = zen_certs::tls::server_config(certs.serving.clone(), Some(certs.client_ca.clone()))?;
    // Client certificates of mtls sources are checked per endpoint, after routing.
    let ingest_tls = zen_certs::tls::server_config(
        certs.ingest.clone(),
        Some(zen_certs::tls::DeferredClientCert::new()),
    )?;
    let secure_addr = SocketAddr::new(config.bind, config.secure_port);
    let secure = tokio::net::TcpListener::bind(secure_addr)
        .await
        .map_err(io(format!("listening on {secure_addr}")))?;
    let ingest_addr = SocketAddr::new(config.bind, config.ingest_port);
    let ingest = tokio::net::TcpListener::bind(ingest_addr)
        .await
        .map_err(io(format!("listening on {ingest_addr}")))?;
    let metrics_addr = SocketAddr::new(config.bind, config.metrics_port);
    let metrics_listener = tokio::net::TcpListener::bind(metrics_addr)
        .await
        .map_err(io(format!("listening on {metrics_addr}")))?;

    tokio::spawn(zen_apiserver::ttl::run_reaper(
        store.clone(),
        "observations",
    ));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let secure_task = tokio::spawn(serve_tls(
        secure,
        Arc::new(tls),
        service,
        ServerOptions::default(),
        stopped(stop_rx.clone()),
    ));
    let metrics_service = tower::service_fn(move |_req: http::Request<hyper::body::Incoming>| {
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
        ingest_service,
        ServerOptions::default(),
        stopped(stop_rx.clone()),
    ));
    let metrics_task = tokio::spawn(serve_plain(
        metrics_listener,
        metrics_service,
        ServerOptions::default(),
        stopped(stop_rx),
    ));

    tracing::info!(%secure_addr, %ingest_addr, %metrics_addr, store = %store_spec, "zen-watcher dev is serving");
    println!(
        "zen-watcher dev is serving on {server_url}\n\n  kubectl --kubeconfig {kc} get observations -A\n  kubectl --kubeconfig {kc} api-resources --api-group=zen.watcher.io\n\nmetrics: http://{metrics_addr}/metrics; data in {data}",
        kc = kubeconfig_path.display(),
        data = config.data_dir.display(),
    );

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = secure_task.await;
    let _ = ingest_task.await;
    let _ = metrics_task.await;
    Ok(())
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
