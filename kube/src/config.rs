//! Where the cluster is and how to authenticate: a kubeconfig's current context, or the
//! service account of the pod zen-watcher runs in.

use std::path::{Path, PathBuf};

use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::Value;

use crate::KubeError;

/// How requests authenticate.
#[derive(Clone)]
pub enum Auth {
    None,
    /// A fixed bearer token.
    Token(String),
    /// A token file, re-read on every new connection (projected service-account tokens
    /// are rotated by the kubelet).
    TokenFile(PathBuf),
    ClientCert {
        cert_pem: String,
        key_pem: String,
    },
}

impl std::fmt::Debug for Auth {
    /// Never prints credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::None => "None",
            Auth::Token(_) => "Token",
            Auth::TokenFile(_) => "TokenFile",
            Auth::ClientCert { .. } => "ClientCert",
        })
    }
}

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `https://host:port`, no trailing slash.
    pub server: String,
    /// CAs the server's certificate is verified against.
    pub ca_pem: String,
    /// The name to verify the server certificate for (the server URL's host by default).
    pub tls_server_name: Option<String>,
    pub auth: Auth,
    /// The namespace of the context (or of the pod).
    pub namespace: Option<String>,
}

const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn read(path: &Path) -> Result<String, KubeError> {
    std::fs::read_to_string(path).map_err(|e| KubeError::Config(format!("{}: {e}", path.display())))
}

impl ClusterConfig {
    /// The pod's service account, as every in-cluster client finds it.
    pub fn in_cluster() -> Result<Self, KubeError> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
            KubeError::Config("not in a cluster: KUBERNETES_SERVICE_HOST is unset".into())
        })?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let dir = Path::new(SA_DIR);
        Ok(Self {
            server: format!("https://{host}:{port}"),
            ca_pem: read(&dir.join("ca.crt"))?,
            tls_server_name: Some("kubernetes.default.svc".into()),
            auth: Auth::TokenFile(dir.join("token")),
            namespace: read(&dir.join("namespace"))
                .ok()
                .map(|n| n.trim().to_owned()),
        })
    }

    /// The current context of a kubeconfig file. Relative file references are resolved
    /// against the kubeconfig's directory, as kubectl does.
    pub fn from_kubeconfig(path: &Path) -> Result<Self, KubeError> {
        let text = read(path)?;
        let doc: Value = serde_saphyr::from_str(&text)
            .map_err(|e| KubeError::Config(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let bad = |m: String| KubeError::Config(format!("{}: {m}", path.display()));
        let current = doc["current-context"]
            .as_str()
            .ok_or_else(|| bad("no current-context".into()))?;
        let named = |list: &str, name: &str| -> Result<Value, KubeError> {
            doc[list]
                .as_array()
                .and_then(|l| l.iter().find(|e| e["name"] == name))
                .cloned()
                .ok_or_else(|| bad(format!("{list}: no entry named {name:?}")))
        };
        let context = named("contexts", current)?["context"].clone();
        let cluster =
            named("clusters", context["cluster"].as_str().unwrap_or_default())?["cluster"].clone();
        let user = match context["user"].as_str() {
            Some(u) => named("users", u)?["user"].clone(),
            None => Value::Null,
        };
        if cluster["insecure-skip-tls-verify"] == true {
            return Err(bad(
                "insecure-skip-tls-verify is not supported: give the cluster's CA".into(),
            ));
        }
        // `<field>-data` (base64) or `<field>` (a file).
        let material = |v: &Value, field: &str| -> Result<Option<String>, KubeError> {
            if let Some(b64) = v[format!("{field}-data")].as_str() {
                let bytes = STANDARD
                    .decode(b64.trim())
                    .map_err(|e| bad(format!("{field}-data: {e}")))?;
                return String::from_utf8(bytes)
                    .map(Some)
                    .map_err(|e| bad(format!("{field}-data: {e}")));
            }
            match v[field].as_str() {
                Some(file) => read(&base.join(file)).map(Some),
                None => Ok(None),
            }
        };
        let server = cluster["server"]
            .as_str()
            .ok_or_else(|| bad("the cluster has no server".into()))?
            .trim_end_matches('/')
            .to_owned();
        let ca_pem = material(&cluster, "certificate-authority")?
            .ok_or_else(|| bad("the cluster has no certificate-authority(-data)".into()))?;
        let auth = if let (Some(cert_pem), Some(key_pem)) = (
            material(&user, "client-certificate")?,
            material(&user, "client-key")?,
        ) {
            Auth::ClientCert { cert_pem, key_pem }
        } else if let Some(token) = user["token"].as_str() {
            Auth::Token(token.to_owned())
        } else if let Some(file) = user["tokenFile"].as_str() {
            Auth::TokenFile(base.join(file))
        } else {
            Auth::None
        };
        Ok(Self {
            server,
            ca_pem,
            tls_server_name: cluster["tls-server-name"].as_str().map(str::to_owned),
            auth,
            namespace: context["namespace"].as_str().map(str::to_owned),
        })
    }
}
