//! JSON requests to kube-apiserver over one HTTP/2 connection, verified against the
//! cluster's CA; re-established (once per request) when it breaks.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::config::{Auth, ClusterConfig};

/// How long one request may take, connection included.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body read.
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, thiserror::Error)]
pub enum KubeError {
    #[error("{0}")]
    Config(String),
    #[error("connecting to {server}: {message}")]
    Connect { server: String, message: String },
    /// kube-apiserver answered with a `metav1.Status` failure.
    #[error("{code} {reason}: {message}")]
    Api {
        code: u16,
        reason: String,
        message: String,
    },
    #[error("the request to kube-apiserver timed out")]
    Timeout,
    #[error("unreadable answer from kube-apiserver: {0}")]
    Decode(String),
}

impl KubeError {
    pub fn code(&self) -> Option<u16> {
        match self {
            KubeError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClusterConfig,
    tls: Arc<rustls::ClientConfig>,
    authority: String,
    server_name: ServerName<'static>,
    connection: Mutex<Option<SendRequest<Full<Bytes>>>>,
}

impl Client {
    pub fn new(config: ClusterConfig) -> Result<Self, KubeError> {
        let uri: http::Uri = config
            .server
            .parse()
            .map_err(|e| KubeError::Config(format!("server {:?}: {e}", config.server)))?;
        if uri.scheme_str() != Some("https") {
            return Err(KubeError::Config(format!(
                "server {:?}: only https is supported",
                config.server
            )));
        }
        let host = uri
            .host()
            .ok_or_else(|| KubeError::Config(format!("server {:?} has no host", config.server)))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let authority = format!("{host}:{}", uri.port_u16().unwrap_or(443));
        let name = config.tls_server_name.clone().unwrap_or(host);
        let server_name = ServerName::try_from(name.clone())
            .map_err(|e| KubeError::Config(format!("server name {name:?}: {e}")))?;
        let tls = tls_config(&config)?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                tls,
                authority,
                server_name,
                connection: Mutex::new(None),
            }),
        })
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, KubeError> {
        let server = self.inner.config.server.clone();
        let fail = |message: String| KubeError::Connect {
            server: server.clone(),
            message,
        };
        let tcp = tokio::net::TcpStream::connect(&self.inner.authority)
            .await
            .map_err(|e| fail(e.to_string()))?;
        tcp.set_nodelay(true).ok();
        let tls = tokio_rustls::TlsConnector::from(self.inner.tls.clone())
            .connect(self.inner.server_name.clone(), tcp)
            .await
            .map_err(|e| fail(format!("TLS: {e}")))?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(fail("the server does not offer HTTP/2".into()));
        }
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(|e| fail(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "kube-apiserver connection ended");
            }
        });
        Ok(sender)
    }

    /// A ready sender on the shared connection, connecting if there is none.
    async fn sender(&self) -> Result<SendRequest<Full<Bytes>>, KubeError> {
        let mut slot = self.inner.connection.lock().await;
        if let Some(s) = slot.as_ref()
            && !s.is_closed()
        {
            return Ok(s.clone());
        }
        let s = self.connect().await?;
        *slot = Some(s.clone());
        Ok(s)
    }

    fn build(
        &self,
        method: &Method,
        path: &str,
        body: &Option<(Bytes, &str)>,
    ) -> Result<Request<Full<Bytes>>, KubeError> {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(format!("https://{}{path}", self.inner.authority))
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("zen-watcher/", env!("CARGO_PKG_VERSION")),
            );
        match &self.inner.config.auth {
            Auth::Token(t) => req = req.header(header::AUTHORIZATION, format!("Bearer {t}")),
            Auth::TokenFile(f) => {
                let token = std::fs::read_to_string(f)
                    .map_err(|e| KubeError::Config(format!("{}: {e}", f.display())))?;
                req = req.header(header::AUTHORIZATION, format!("Bearer {}", token.trim()));
            }
            Auth::ClientCert { .. } | Auth::None => {}
        }
        let bytes = match body {
            Some((b, content_type)) => {
                req = req.header(header::CONTENT_TYPE, *content_type);
                b.clone()
            }
            None => Bytes::new(),
        };
        req.body(Full::new(bytes))
            .map_err(|e| KubeError::Config(e.to_string()))
    }

    /// One request; a `metav1.Status` failure becomes [`KubeError::Api`].
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<(&Value, &str)>,
    ) -> Result<Value, KubeError> {
        let body = body.map(|(v, ct)| (Bytes::from(v.to_string()), ct));
        let attempt = || async {
            let mut sender = self.sender().await?;
            sender.ready().await.map_err(|e| KubeError::Connect {
                server: self.inner.config.server.clone(),
                message: e.to_string(),
            })?;
            let resp = sender
                .send_request(self.build(&method, path, &body)?)
                .await
                .map_err(|e| KubeError::Connect {
                    server: self.inner.config.server.clone(),
                    message: e.to_string(),
                })?;
            let status = resp.status();
            let bytes = http_body_util::Limited::new(resp.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| KubeError::Decode(e.to_string()))?
                .to_bytes();
            Ok::<_, KubeError>((status, bytes))
        };
        let run = async {
            match attempt().await {
                // A broken shared connection: drop it and try once on a new one.
                Err(KubeError::Connect { .. }) => {
                    *self.inner.connection.lock().await = None;
                    attempt().await
                }
                other => other,
            }
        };
        let (status, bytes) = tokio::time::timeout(TIMEOUT, run)
            .await
            .map_err(|_| KubeError::Timeout)??;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        Err(KubeError::Api {
            code: status.as_u16(),
            reason: value["reason"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_owned()),
            message: value["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned()
                }),
        })
    }

    /// A streaming GET (a watch): each line of the answer, parsed, until the server ends
    /// it or the receiver is dropped. Only the answer's headers are bounded in time.
    pub async fn stream(
        &self,
        path: &str,
    ) -> Result<tokio::sync::mpsc::Receiver<Value>, KubeError> {
        let open = async {
            let mut sender = self.sender().await?;
            sender.ready().await.map_err(|e| KubeError::Connect {
                server: self.inner.config.server.clone(),
                message: e.to_string(),
            })?;
            sender
                .send_request(self.build(&Method::GET, path, &None)?)
                .await
                .map_err(|e| KubeError::Connect {
                    server: self.inner.config.server.clone(),
                    message: e.to_string(),
                })
        };
        let resp = match tokio::time::timeout(TIMEOUT, open)
            .await
            .map_err(|_| KubeError::Timeout)?
        {
            Ok(r) => r,
            Err(KubeError::Connect { .. }) => {
                *self.inner.connection.lock().await = None;
                return Err(KubeError::Connect {
                    server: self.inner.config.server.clone(),
                    message: "the connection broke; retry".into(),
                });
            }
            Err(e) => return Err(e),
        };
        let status = resp.status();
        if !status.is_success() {
            let bytes = http_body_util::Limited::new(resp.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Err(KubeError::Api {
                code: status.as_u16(),
                reason: value["reason"].as_str().unwrap_or_default().to_owned(),
                message: value["message"].as_str().unwrap_or_default().to_owned(),
            });
        }
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let mut body = resp.into_body();
        tokio::spawn(async move {
            let mut buf: Vec<u8> = Vec::new();
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { return };
                let Some(data) = frame.data_ref() else {
                    continue;
                };
                buf.extend_from_slice(data);
                while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    if let Ok(v) = serde_json::from_slice::<Value>(&line)
                        && tx.send(v).await.is_err()
                    {
                        return;
                    }
                }
                if buf.len() > MAX_RESPONSE {
                    tracing::warn!("a watch event exceeded the size limit; ending the watch");
                    return;
                }
            }
        });
        Ok(rx)
    }

    /// POST of a JSON object (creates, reviews).
    pub async fn create(&self, path: &str, body: &Value) -> Result<Value, KubeError> {
        self.request(Method::POST, path, Some((body, "application/json")))
            .await
    }

    pub async fn get(&self, path: &str) -> Result<Value, KubeError> {
        self.request(Method::GET, path, None).await
    }

    /// A JSON Patch (RFC 6902).
    pub async fn json_patch(&self, path: &str, patch: &Value) -> Result<Value, KubeError> {
        self.request(
            Method::PATCH,
            path,
            Some((patch, "application/json-patch+json")),
        )
        .await
    }

    pub fn is_not_found(e: &KubeError) -> bool {
        e.code() == Some(StatusCode::NOT_FOUND.as_u16())
    }
}

fn tls_config(config: &ClusterConfig) -> Result<Arc<rustls::ClientConfig>, KubeError> {
    let bad = |e: &dyn std::fmt::Display| KubeError::Config(format!("TLS: {e}"));
    let certs = |pem: &str,
                 what: &str|
     -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, KubeError> {
        let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| bad(&format!("{what}: {e}")))?;
        if certs.is_empty() {
            return Err(bad(&format!("{what}: no certificate in the PEM data")));
        }
        Ok(certs)
    };
    let mut roots = rustls::RootCertStore::empty();
    for ca in certs(&config.ca_pem, "cluster CA")? {
        roots.add(ca).map_err(|e| bad(&e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e))?
        .with_root_certificates(roots);
    let mut tls = match &config.auth {
        Auth::ClientCert { cert_pem, key_pem } => {
            let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
                .map_err(|e| bad(&format!("client key: {e}")))?
                .ok_or_else(|| bad(&"client key: no private key in the PEM data"))?;
            builder
                .with_client_auth_cert(certs(cert_pem, "client certificate")?, key)
                .map_err(|e| bad(&e))?
        }
        _ => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(tls))
}
