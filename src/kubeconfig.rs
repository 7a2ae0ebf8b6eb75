//! The admin kubeconfig `zen-watcher dev` writes, so `kubectl --kubeconfig <data-dir>/kubeconfig`
//! works with no further setup.

use std::{io::Write, path::Path};

use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::json;

/// PEM material for one kubeconfig user on one cluster.
pub struct Credentials<'a> {
    pub server: &'a str,
    pub ca_pem: &'a str,
    pub client_cert_pem: &'a str,
    pub client_key_pem: &'a str,
}

/// Renders the kubeconfig as YAML.
pub fn render(creds: &Credentials<'_>) -> Result<String, serde_saphyr::ser::Error> {
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "zen-dev",
            "cluster": {
                "server": creds.server,
                "certificate-authority-data": STANDARD.encode(creds.ca_pem),
            },
        }],
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

/// Writes the kubeconfig with owner-only permissions: it holds a private key.
pub fn write(path: &Path, creds: &Credentials<'_>) -> std::io::Result<()> {
    let yaml = render(creds).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(yaml.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}
