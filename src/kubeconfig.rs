//! The admin kubeconfig `zen-watcher dev` writes, so `kubectl --kubeconfig <data-dir>/kubeconfig`
//! works with no further setup.

use std::path::Path;

use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::json;

/// PEM material for one kubeconfig user on one cluster.
pub struct Credentials<'a> {
    pub server: &'a str,
    /// `None`: the server's certificate is publicly trusted.
    pub ca_pem: Option<&'a str>,
    pub client_cert_pem: &'a str,
    pub client_key_pem: &'a str,
}

/// Renders the kubeconfig as YAML.
pub fn render(creds: &Credentials<'_>) -> Result<String, serde_saphyr::ser::Error> {
    let mut cluster = json!({"server": creds.server});
    if let Some(ca) = creds.ca_pem {
        cluster["certificate-authority-data"] = json!(STANDARD.encode(ca));
    }
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "zen-dev", "cluster": cluster}],
        "users": [{
            "name": "zen-admin",
            "user": {
                "client-certificate-data": STANDARD.encode(creds.client_cert_pem),
                "client-key-data": STANDARD.encode(creds.client_key_pem),
            },
        }],
        "contexts": [{
            "name": "zen-dev",
            "context": {"cluster": "zen-dev", "user": "zen-admin", "namespace": "default"},
        }],
        "current-context": "zen-dev",
        "preferences": {},
    });
    serde_saphyr::to_string(&config)
}

/// Writes the kubeconfig with owner-only permissions (it holds a private key), replacing
/// it atomically: clients read it while certificates rotate.
pub fn write(path: &Path, creds: &Credentials<'_>) -> Result<(), zen_certs::CertError> {
    let yaml = render(creds).map_err(|e| zen_certs::CertError::Issue(e.to_string()))?;
    zen_certs::store::write_file(path, yaml.as_bytes(), true)
}
