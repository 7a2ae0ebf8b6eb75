//! Request headers set by an authenticating front proxy (kube-apiserver's aggregator):
//! trusted only on a connection whose client certificate verifies against the
//! requestheader CA and, when names are listed, carries one of them as CN. Configured from
//! the `kube-system/extension-apiserver-authentication` ConfigMap.

use std::sync::Arc;

use rustls::{
    pki_types::{CertificateDer, UnixTime},
    server::danger::ClientCertVerifier,
};
use serde_json::Value;
use x509_parser::prelude::{FromDer, X509Certificate};
use zen_certs::tls::ClientCa;
use zen_serving::ConnectionInfo;

use super::{Authenticator, AuthnError, AuthnFuture};
use crate::UserInfo;

/// The `requestheader-*` settings of the ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeaderConfig {
    /// PEM bundle of the CAs front-proxy certificates are issued by.
    pub client_ca_pem: String,
    /// CNs a front proxy may have; empty: any.
    pub allowed_names: Vec<String>,
    pub username_headers: Vec<String>,
    pub group_headers: Vec<String>,
    pub extra_prefixes: Vec<String>,
}

/// The ConfigMap's settings: direct client certificates' CA and the front proxy's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegatedAuthnConfig {
    /// `client-ca-file`: CAs of client certificates presented directly.
    pub client_ca_pem: Option<String>,
    pub request_header: Option<RequestHeaderConfig>,
}

impl DelegatedAuthnConfig {
    /// Reads `extension-apiserver-authentication` as `kubectl get -o json` shows it. List
    /// values are JSON arrays inside strings, as kube-apiserver writes them.
    pub fn from_configmap(cm: &Value) -> Result<Self, AuthnError> {
        let data = cm
            .get("data")
            .and_then(Value::as_object)
            .ok_or_else(|| AuthnError::Config("the ConfigMap has no data".into()))?;
        let text = |k: &str| data.get(k).and_then(Value::as_str).map(str::to_owned);
        let list = |k: &str| -> Result<Vec<String>, AuthnError> {
            match text(k) {
                None => Ok(Vec::new()),
                Some(t) => serde_json::from_str(&t).map_err(|e| {
                    AuthnError::Config(format!("{k}: not a JSON list of strings: {e}"))
                }),
            }
        };
        let request_header = match text("requestheader-client-ca-file") {
            None => None,
            Some(client_ca_pem) => Some(RequestHeaderConfig {
                client_ca_pem,
                allowed_names: list("requestheader-allowed-names")?,
                username_headers: list("requestheader-username-headers")?,
                group_headers: list("requestheader-group-headers")?,
                extra_prefixes: list("requestheader-extra-headers-prefix")?,
            }),
        };
        Ok(Self {
            client_ca_pem: text("client-ca-file"),
            request_header,
        })
    }
}

pub struct RequestHeaderAuthenticator {
    verifier: Arc<ClientCa>,
    config: RequestHeaderConfig,
}

impl RequestHeaderAuthenticator {
    pub fn new(config: RequestHeaderConfig) -> Result<Self, AuthnError> {
        let verifier = ClientCa::new(&config.client_ca_pem, false)
            .map_err(|e| AuthnError::ClientCa(e.to_string()))?;
        let lower = |v: &[String]| v.iter().map(|h| h.to_ascii_lowercase()).collect();
        Ok(Self {
            verifier,
            config: RequestHeaderConfig {
                username_headers: lower(&config.username_headers),
                group_headers: lower(&config.group_headers),
                extra_prefixes: lower(&config.extra_prefixes),
                ..config
            },
        })
    }

    fn user(
        &self,
        chain: &[CertificateDer<'static>],
        headers: &http::HeaderMap,
    ) -> Result<Option<UserInfo>, AuthnError> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Ok(None);
        };
        let subject = || {
            X509Certificate::from_der(leaf.as_ref())
                .map(|(_, c)| c.subject().to_string())
                .unwrap_or_default()
        };
        // Not a front-proxy certificate: not this method's request (client certificates of
        // other CAs are the x509 method's).
        if self
            .verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .is_err()
        {
            return Ok(None);
        }
        let cn = X509Certificate::from_der(leaf.as_ref())
            .ok()
            .and_then(|(_, c)| {
                c.subject()
                    .iter_common_name()
                    .next()
                    .and_then(|cn| cn.as_str().ok().map(str::to_owned))
            })
            .unwrap_or_default();
        if !self.config.allowed_names.is_empty() && !self.config.allowed_names.contains(&cn) {
            tracing::debug!(subject = %subject(), "front-proxy certificate with a name not allowed");
            return Err(AuthnError::ProxyNotAllowed { cn });
        }
        let values = |name: &str| -> Vec<String> {
            headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::to_owned)
                .collect()
        };
        let Some(name) = self
            .config
            .username_headers
            .iter()
            .flat_map(|h| values(h))
            .find(|v| !v.is_empty())
        else {
            return Ok(None);
        };
        let groups = self
            .config
            .group_headers
            .iter()
            .flat_map(|h| values(h))
            .collect();
        let mut user = UserInfo {
            name,
            groups,
            ..UserInfo::default()
        };
        for (header, value) in headers {
            let header = header.as_str();
            for prefix in &self.config.extra_prefixes {
                if let Some(key) = header.strip_prefix(prefix.as_str())
                    && let Ok(value) = value.to_str()
                {
                    user.extra
                        .entry(unescape(key).to_lowercase())
                        .or_default()
                        .push(value.to_owned());
                }
            }
        }
        Ok(Some(user))
    }
}

/// Percent-decoding of an extra key, as kube-apiserver unescapes them (invalid escapes are
/// kept as written).
fn unescape(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = key.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Authenticator for RequestHeaderAuthenticator {
    fn authenticate<'a>(&'a self, req: &'a http::request::Parts) -> AuthnFuture<'a> {
        let chain = req
            .extensions
            .get::<ConnectionInfo>()
            .and_then(|c| c.peer_certificates.clone());
        Box::pin(async move {
            match chain {
                Some(chain) => self.user(&chain, &req.headers),
                None => Ok(None),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use zen_certs::issue::Ca;

    use super::*;
    use crate::authn::{Authentication, ClientCertAuthenticator};

    const RECORDINGS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/testdata/kube-apiserver-1.28"
    );
    const DAY: Duration = Duration::from_secs(86_400);

    fn recording(path: &str) -> Value {
        let text = std::fs::read_to_string(format!("{RECORDINGS}/{path}")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// A recorded proxied request: its headers in wire order, on a connection with `chain`.
    fn proxied(path: &str, chain: Vec<CertificateDer<'static>>) -> http::request::Parts {
        let rec = recording(path);
        let mut req = http::Request::builder();
        for pair in rec["request"]["rawHeaders"].as_array().unwrap() {
            req = req.header(pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
        }
        let (mut parts, ()) = req.body(()).unwrap().into_parts();
        parts.extensions.insert(ConnectionInfo {
            remote: "127.0.0.1:1".parse().unwrap(),
            peer_certificates: Some(Arc::new(chain)),
            server_name: Some("zen-watcher.zen-system.svc".into()),
        });
        parts
    }

    /// The recorded ConfigMap's settings with a front-proxy CA of ours (the recording has no
    /// private keys), so certificates can be issued.
    fn setup(allowed: &[&str]) -> (Ca, Authentication) {
        let recorded = DelegatedAuthnConfig::from_configmap(&recording(
            "authn/extension-apiserver-authentication.json",
        ))
        .unwrap();
        let proxy_ca = Ca::generate("front-proxy-ca", DAY).unwrap();
        let client_ca = Ca::generate("client-ca", DAY).unwrap();
        let mut rh = recorded.request_header.unwrap();
        rh.client_ca_pem = proxy_ca.pem.cert_pem.clone();
        rh.allowed_names = allowed.iter().map(|s| (*s).to_owned()).collect();
        let authn = Authentication::new(
            vec![
                Arc::new(RequestHeaderAuthenticator::new(rh).unwrap()),
                Arc::new(ClientCertAuthenticator::from_pem(&client_ca.pem.cert_pem).unwrap()),
            ],
            false,
        );
        (proxy_ca, authn)
    }

    fn chain(pem: &str) -> Vec<CertificateDer<'static>> {
        zen_certs::tls::certs_from_pem(pem, "test").unwrap()
    }

    #[test]
    fn the_recorded_configmap_is_read() {
        let cfg = DelegatedAuthnConfig::from_configmap(&recording(
            "authn/extension-apiserver-authentication.json",
        ))
        .unwrap();
        let rh = cfg.request_header.unwrap();
        assert_eq!(rh.allowed_names, ["front-proxy-client"]);
        assert_eq!(rh.username_headers, ["X-Remote-User"]);
        assert_eq!(rh.group_headers, ["X-Remote-Group"]);
        assert_eq!(rh.extra_prefixes, ["X-Remote-Extra-"]);
        // Both CA bundles are usable as they were recorded.
        ClientCa::new(&rh.client_ca_pem, false).unwrap();
        ClientCa::new(&cfg.client_ca_pem.unwrap(), false).unwrap();
    }

    #[tokio::test]
    async fn recorded_identity_headers_from_a_verified_front_proxy() {
        let (proxy_ca, authn) = setup(&["front-proxy-client"]);
        let proxy = proxy_ca
            .issue_client("front-proxy-client", None, DAY)
            .unwrap();
        let user = authn
            .authenticate(&proxied(
                "aggregation/proxied-list-as-alice-with-extra.json",
                chain(&proxy.cert_pem),
            ))
            .await
            .unwrap();
        assert_eq!(user.name, "alice");
        assert_eq!(user.groups, ["devs", "system:authenticated"]);
        assert_eq!(user.extra["reason"], ["incident-42"]);
        assert_eq!(user.extra["zen.watcher.io/tenant"], ["acme", "beta"]);

        let sa = authn
            .authenticate(&proxied(
                "aggregation/proxied-list-as-serviceaccount.json",
                chain(&proxy.cert_pem),
            ))
            .await
            .unwrap();
        assert!(sa.name.starts_with("system:serviceaccount:"), "{sa:?}");
        assert!(
            sa.extra
                .contains_key("authentication.kubernetes.io/pod-name"),
            "{sa:?}"
        );
    }

    #[tokio::test]
    async fn identity_headers_are_ignored_without_a_trusted_front_proxy() {
        let (proxy_ca, authn) = setup(&["front-proxy-client"]);
        // A certificate of another CA with the right name: the headers are not believed.
        let forged = Ca::generate("evil", DAY)
            .unwrap()
            .issue_client("front-proxy-client", None, DAY)
            .unwrap();
        let err = authn
            .authenticate(&proxied(
                "aggregation/proxied-list-as-alice.json",
                chain(&forged.cert_pem),
            ))
            .await
            .unwrap_err();
        assert!(matches!(err, AuthnError::Certificate { .. }), "{err}");
        // The right CA but a name not allowed.
        let other = proxy_ca.issue_client("someone-else", None, DAY).unwrap();
        let err = authn
            .authenticate(&proxied(
                "aggregation/proxied-list-as-alice.json",
                chain(&other.cert_pem),
            ))
            .await
            .unwrap_err();
        assert!(matches!(err, AuthnError::ProxyNotAllowed { .. }), "{err}");
        // An empty allowed list lets any CN of the CA through.
        let (proxy_ca, authn) = setup(&[]);
        let any = proxy_ca.issue_client("someone-else", None, DAY).unwrap();
        let user = authn
            .authenticate(&proxied(
                "aggregation/proxied-list-as-alice.json",
                chain(&any.cert_pem),
            ))
            .await
            .unwrap();
        assert_eq!(user.name, "alice");
    }

    #[test]
    fn extra_keys_are_unescaped() {
        assert_eq!(unescape("Zen.watcher.io%2ftenant"), "Zen.watcher.io/tenant");
        assert_eq!(unescape("bad%zzescape%"), "bad%zzescape%");
    }
}
