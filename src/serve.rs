//! `zen-watcher serve`: in a cluster (or pointed at one with `--kubeconfig`). Identities are
//! delegated to kube-apiserver as aggregated API servers do it: front-proxy headers and
//! client certificates per the `extension-apiserver-authentication` ConfigMap, bearer
//! tokens by TokenReview, permissions by SubjectAccessReview. Certificates live in Secrets
//! (or a mounted directory) and their CA is injected into every caBundle.

use std::{path::PathBuf, sync::Arc, time::Duration};

use prometheus::Registry;
use zen_auth::authn::{
    Authentication, Authenticator, ClientCertAuthenticator, DelegatedAuthnConfig,
    RequestHeaderAuthenticator, Swappable, TokenReviewAuthenticator,
};
use zen_certs::{
    cluster::{CaBundlePublisher, SecretStore},
    manager::SelfManaged,
    metrics::CertMetrics,
    mounted::CertDir,
    rotation::Settings,
    tls::{ClientCa, DeferredClientCert, ServingCert},
};
use zen_kube::{Client, ClusterConfig};

use zen_ingest::status::Events;

use crate::{
    config_dir::Config,
    process::{LiveCluster, Ports, Process, RunError, StoreOptions, open_store},
};

pub struct ServeConfig {
    pub kubeconfig: Option<PathBuf>,
    pub namespace: String,
    pub service: String,
    pub store: StoreOptions,
    pub cert_dir: Option<PathBuf>,
    pub ingest_cert_dir: Option<PathBuf>,
    pub cert_validity: Duration,
    pub ca_validity: Duration,
    pub ports: Ports,
    pub ingest: zen_ingest::service::Limits,
}

/// Where the authentication settings of aggregated API servers live.
const AUTHN_CONFIGMAP: &str =
    "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication";
/// How often every caBundle is checked and put back if something overwrote it.
const REPAIR: Duration = Duration::from_secs(30);

pub async fn run(config: ServeConfig) -> Result<(), RunError> {
    let cluster = match &config.kubeconfig {
        Some(path) => ClusterConfig::from_kubeconfig(path)?,
        None => ClusterConfig::in_cluster()?,
    };
    let client = Client::new(cluster)?;

    let configmap = client.get(AUTHN_CONFIGMAP).await?;
    let delegated = Delegated::from_configmap(&configmap)?;
    let front_proxy = Swappable::new(delegated.front_proxy.clone());
    let client_certs = Swappable::new(delegated.client_certs.clone());
    let methods: Vec<Arc<dyn Authenticator>> = vec![
        front_proxy.clone(),
        client_certs.clone(),
        Arc::new(TokenReviewAuthenticator::new(client.clone(), Vec::new())),
    ];
    // Anonymous requests go on to authorization, which decides as kube-apiserver would.
    let authn = Authentication::new(methods, true);
    let authz: Arc<dyn zen_auth::authz::Authorizer> =
        zen_auth::authz::SubjectAccessReviewer::new(client.clone());

    // One replica at a time does singleton work: certificate rotation, Ingestor status.
    let identity =
        std::env::var("POD_NAME").unwrap_or_else(|_| format!("zen-watcher-{}", std::process::id()));
    let leadership = zen_kube::lease::campaign(
        client.clone(),
        config.namespace.clone(),
        "zen-watcher".into(),
        identity,
        Duration::from_secs(15),
    )
    .await;

    let registry = Registry::new();
    let cert_metrics =
        CertMetrics::register(&registry).map_err(|e| RunError::Setup(e.to_string()))?;
    let serving = match &config.cert_dir {
        Some(dir) => {
            let dir = CertDir::new(dir);
            let now = dir.load()?;
            cert_metrics.expires("serving", now.not_after);
            let serving = ServingCert::new(now.key.clone());
            tokio::spawn(dir.watch(
                serving.clone(),
                "serving",
                Some(cert_metrics.clone()),
                |_| {},
            ));
            serving
        }
        None => {
            let settings = Settings {
                ca_name: "zen-watcher-ca".into(),
                dns_names: Settings::service_names(&config.service, &config.namespace),
                ips: Vec::new(),
                cert_validity: config.cert_validity,
                ca_validity: config.ca_validity,
            };
            let publisher = Arc::new(CaBundlePublisher::new(client.clone()));
            // One replica at a time rotates; the others serve what it stores.
            let leading = leadership.clone();
            let leader: zen_certs::manager::Leader = Arc::new(move || leading.is_leader());
            let (manager, serving) = SelfManaged::start(
                Arc::new(SecretStore::new(client.clone(), &config.namespace)),
                settings,
                publisher.clone(),
                Some(cert_metrics.clone()),
                Some(leader),
            )
            .await?;
            tokio::spawn(wake_on_secret_changes(
                client.clone(),
                config.namespace.clone(),
                manager.waker(),
            ));
            tokio::spawn(manager.run());
            tokio::spawn(repair_ca_bundles(
                client.clone(),
                config.namespace.clone(),
                publisher,
            ));
            serving
        }
    };
    let ingest = match &config.ingest_cert_dir {
        Some(dir) => {
            let dir = CertDir::new(dir);
            let now = dir.load()?;
            cert_metrics.expires("ingest", now.not_after);
            let ingest = ServingCert::new(now.key.clone());
            tokio::spawn(dir.watch(ingest.clone(), "ingest", Some(cert_metrics), |_| {}));
            ingest
        }
        None => serving.clone(),
    };
    // Client certificates are asked for, not required: webhook calls and token clients
    // come without one.
    let tls_client_ca = match delegated.tls_bundle() {
        Some(bundle) => Some(ClientCa::new(&bundle, false)?),
        None => None,
    };
    tokio::spawn(follow_authn_configmap(
        client.clone(),
        configmap,
        front_proxy,
        client_certs,
        tls_client_ca.clone(),
    ));
    let secure_tls = zen_certs::tls::server_config(
        serving,
        tls_client_ca.map(|ca| ca as Arc<dyn rustls::server::danger::ClientCertVerifier>),
    )?;
    let ingest_tls = zen_certs::tls::server_config(ingest, Some(DeferredClientCert::new()))?;

    let store_spec = config
        .store
        .spec
        .clone()
        .unwrap_or_else(|| "redb:/var/lib/zen-watcher/zen.redb".into());
    if let Some(("redb", path)) = store_spec.split_once(':')
        && let Some(parent) = std::path::Path::new(path).parent()
    {
        std::fs::create_dir_all(parent)
            .map_err(crate::process::io(format!("creating {}", parent.display())))?;
    }
    let store = open_store(&store_spec, &config.store).await?;
    let cluster = Arc::new(LiveCluster::default());
    let leading = leadership.clone();
    let process = Process::new(store, registry, cluster.clone(), config.ingest)?
        .with_singleton(Arc::new(move || leading.is_leader()));
    tokio::spawn(follow_cluster(
        client.clone(),
        process.admission.clone(),
        cluster,
        process.endpoints.clone(),
        leadership,
    ));
    tokio::spawn(follow_events(
        client.clone(),
        process.endpoints.clone(),
        process.event_follower(),
    ));
    process
        .serve(
            (authn, authz),
            secure_tls,
            ingest_tls,
            config.ports,
            |secure_addr, ingest_addr, metrics_addr| {
                tracing::info!(%secure_addr, %ingest_addr, %metrics_addr, store = %store_spec, "zen-watcher serve is serving");
            },
        )
        .await
}

/// The methods the `extension-apiserver-authentication` ConfigMap configures.
struct Delegated {
    config: DelegatedAuthnConfig,
    front_proxy: Option<Arc<dyn Authenticator>>,
    client_certs: Option<Arc<dyn Authenticator>>,
}

impl Delegated {
    fn from_configmap(cm: &serde_json::Value) -> Result<Self, RunError> {
        let setup = |e: &dyn std::fmt::Display| RunError::Setup(format!("{AUTHN_CONFIGMAP}: {e}"));
        let config = DelegatedAuthnConfig::from_configmap(cm).map_err(|e| setup(&e))?;
        let front_proxy = match &config.request_header {
            Some(rh) => Some(Arc::new(
                RequestHeaderAuthenticator::new(rh.clone()).map_err(|e| setup(&e))?,
            ) as Arc<dyn Authenticator>),
            None => None,
        };
        let client_certs = match &config.client_ca_pem {
            Some(ca) => Some(
                Arc::new(ClientCertAuthenticator::from_pem(ca).map_err(|e| setup(&e))?)
                    as Arc<dyn Authenticator>,
            ),
            None => None,
        };
        Ok(Self {
            config,
            front_proxy,
            client_certs,
        })
    }

    /// Every CA a client certificate may chain to, for the TLS handshake (each method
    /// checks its own CA again).
    fn tls_bundle(&self) -> Option<String> {
        let cas: Vec<&str> = self
            .config
            .request_header
            .as_ref()
            .map(|rh| rh.client_ca_pem.as_str())
            .into_iter()
            .chain(self.config.client_ca_pem.as_deref())
            .collect();
        (!cas.is_empty()).then(|| cas.join("\n"))
    }
}

/// Follows the authentication ConfigMap, as kube-apiserver's own aggregated servers do:
/// rotated front-proxy or client CAs take effect without a restart. A ConfigMap that
/// cannot be used is logged and the methods in force stay.
async fn follow_authn_configmap(
    client: Client,
    initial: serde_json::Value,
    front_proxy: Arc<Swappable>,
    client_certs: Arc<Swappable>,
    tls_client_ca: Option<Arc<ClientCa>>,
) {
    let (namespace, name) = ("kube-system", "extension-apiserver-authentication");
    let mut configmaps = zen_kube::reflect::reflect(
        client,
        format!("/api/v1/namespaces/{namespace}/configmaps?fieldSelector=metadata.name%3D{name}"),
    );
    let mut in_force = initial["data"].clone();
    while configmaps.changed().await.is_ok() {
        let Some(cm) = configmaps
            .borrow_and_update()
            .as_ref()
            .and_then(|s| s.get(&format!("{namespace}/{name}")).cloned())
        else {
            continue;
        };
        if cm["data"] == in_force {
            continue;
        }
        let delegated = match Delegated::from_configmap(&cm) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "the new authentication ConfigMap cannot be used; keeping the settings in force");
                continue;
            }
        };
        match (&tls_client_ca, delegated.tls_bundle()) {
            (Some(ca), Some(bundle)) => {
                if let Err(e) = ca.set(&bundle) {
                    tracing::error!(error = %e, "the new client CAs cannot be used; keeping the settings in force");
                    continue;
                }
            }
            (None, Some(_)) => tracing::warn!(
                "client CAs appeared in the authentication ConfigMap; client certificates are asked for after a restart"
            ),
            _ => {}
        }
        front_proxy.set(delegated.front_proxy);
        client_certs.set(delegated.client_certs);
        in_force = cm["data"].clone();
        tracing::info!("authentication ConfigMap changed: front-proxy and client CAs reloaded");
    }
}

/// Rings `wake` whenever the CA or serving Secret changes, so every replica swaps in what
/// the leader stored (and the leader repairs a deleted Secret) at once. One watch per name:
/// the Role grants them by name only.
async fn wake_on_secret_changes(client: Client, namespace: String, wake: Arc<tokio::sync::Notify>) {
    let mut secrets: Vec<_> = [zen_certs::pki::CA_SECRET, zen_certs::pki::TLS_SECRET]
        .iter()
        .map(|name| {
            zen_kube::reflect::reflect(
                client.clone(),
                format!(
                    "/api/v1/namespaces/{namespace}/secrets?fieldSelector=metadata.name%3D{name}"
                ),
            )
        })
        .collect();
    let [ca, tls] = &mut secrets[..] else { return };
    loop {
        let changed = tokio::select! {
            r = ca.changed() => r,
            r = tls.changed() => r,
        };
        if changed.is_err() {
            return;
        }
        wake.notify_one();
    }
}

/// Puts the current CA bundle back into every caBundle that lost it (a `kubectl apply` of
/// the manifests, say), on a fixed period.
async fn repair_ca_bundles(client: Client, namespace: String, publisher: Arc<CaBundlePublisher>) {
    let path = format!(
        "/api/v1/namespaces/{namespace}/secrets/{}",
        zen_certs::pki::CA_SECRET
    );
    loop {
        tokio::time::sleep(REPAIR).await;
        let bundle = match client.get(&path).await {
            Ok(secret) => zen_certs::cluster::secret_data(&secret)
                .ok()
                .and_then(|d| d.get("ca-bundle.crt").cloned()),
            Err(e) => {
                tracing::warn!(error = %e, "reading the CA Secret failed");
                None
            }
        };
        if let Some(bundle) = bundle
            && let Err(e) = publisher.inject(&bundle).await
        {
            tracing::warn!(error = %e, "repairing caBundles failed");
        }
    }
}

/// What `serve` follows in the cluster: collection path, apiVersion and kind (list items
/// come without the last two).
const FOLLOWED: [(&str, &str, &str); 4] = [
    (
        "/apis/config.zen.watcher.io/v1alpha1/ingestorpolicies",
        "config.zen.watcher.io/v1alpha1",
        "IngestorPolicy",
    ),
    (
        "/apis/config.zen.watcher.io/v1alpha1/ingestors",
        "config.zen.watcher.io/v1alpha1",
        "Ingestor",
    ),
    ("/api/v1/namespaces", "v1", "Namespace"),
    ("/api/v1/secrets", "v1", "Secret"),
];

/// How often Ingestor statuses are recomputed when nothing in the cluster changed (they
/// count mapping failures).
const STATUS_REFRESH: Duration = Duration::from_secs(10);

/// Keeps admission's policy set and view of Namespaces and Secrets, and the served webhook
/// endpoints, in step with the cluster: everything is rebuilt from the current sets on
/// every change (changes arriving together are taken together). The leader writes each
/// Ingestor's status when it differs from what the cluster has.
async fn follow_cluster(
    client: Client,
    admission: Arc<zen_admission::Admission>,
    cluster: Arc<LiveCluster>,
    endpoints: Arc<zen_ingest::Endpoints>,
    leadership: zen_kube::lease::Leadership,
) {
    let mut sets: Vec<_> = FOLLOWED
        .iter()
        .map(|(path, _, _)| zen_kube::reflect::reflect(client.clone(), (*path).to_owned()))
        .collect();
    loop {
        let mut config = Config::default();
        for (set, (_, api_version, kind)) in sets.iter_mut().zip(FOLLOWED) {
            let snapshot = set.borrow_and_update().clone();
            for object in snapshot.iter().flat_map(|s| s.values()) {
                let mut object = object.clone();
                object["apiVersion"] = api_version.into();
                object["kind"] = kind.into();
                config.add_value(&object);
            }
        }
        let statuses = config.apply(&admission, &cluster, &endpoints, Events::Followed);
        if leadership.is_leader() {
            for (ingestor, status) in statuses {
                if ingestor
                    .status
                    .as_ref()
                    .is_some_and(|s| zen_ingest::status::same(s, &status))
                {
                    continue;
                }
                write_status(&client, &ingestor, &status).await;
            }
        }
        let [a, b, c, d] = &mut sets[..] else { return };
        let changed = tokio::select! {
            r = a.changed() => r,
            r = b.changed() => r,
            r = c.changed() => r,
            r = d.changed() => r,
            () = tokio::time::sleep(STATUS_REFRESH) => Ok(()),
        };
        if changed.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Replaces an Ingestor's status (the status subresource: the spec is never touched).
async fn write_status(
    client: &Client,
    ingestor: &zen_crds::Ingestor,
    status: &zen_crds::IngestorStatus,
) {
    let (namespace, name) = (
        ingestor.metadata.namespace.as_deref().unwrap_or("default"),
        ingestor.metadata.name.as_deref().unwrap_or_default(),
    );
    let path = format!(
        "/apis/config.zen.watcher.io/v1alpha1/namespaces/{namespace}/ingestors/{name}/status"
    );
    let patch = serde_json::json!([{"op": "add", "path": "/status", "value": status}]);
    match client.json_patch(&path, &patch).await {
        Ok(_) => {
            tracing::info!(ingestor = %format!("{namespace}/{name}"), ready = ?status.conditions.first().map(|c| (&c.status, &c.reason)), "Ingestor status written")
        }
        Err(e) => {
            tracing::warn!(ingestor = %format!("{namespace}/{name}"), error = %e, "writing Ingestor status failed")
        }
    }
}

/// How often Events are looked at again when nothing changed: Observations whose store
/// write failed are retried then.
const EVENTS_RETRY: Duration = Duration::from_secs(5);

/// Turns the cluster's Events into Observations for every kubernetesEvents source. Events
/// are listed and watched only once some Ingestor has such a source.
async fn follow_events(
    client: Client,
    endpoints: Arc<zen_ingest::Endpoints>,
    mut follower: zen_ingest::EventFollower,
) {
    while endpoints.event_sources().is_empty() {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut events = zen_kube::reflect::reflect(client, "/api/v1/events".into());
    loop {
        let snapshot = events.borrow_and_update().clone();
        if let Some(snapshot) = snapshot {
            let taken = follower.take(&snapshot).await;
            if taken != zen_ingest::events::Taken::default() {
                tracing::debug!(?taken, "Events taken");
            }
        }
        tokio::select! {
            r = events.changed() => if r.is_err() { return },
            () = tokio::time::sleep(EVENTS_RETRY) => {}
        }
    }
}
