//! Deliveries as senders make them: HMAC-signed posts over TLS to the ingest port.

use std::{path::Path, sync::Arc};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use sha2::Sha256;

use super::client::Client;

pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Value,
}

/// Posts `body` to the ingest port over TLS, trusting the dev CA.
pub async fn post(
    data: &Path,
    port: u16,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Reply {
    post_as(data, port, path, headers, body, None).await
}

/// Posts with a client certificate (PEM certificate and key).
pub async fn post_as(
    data: &Path,
    port: u16,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
    client: Option<&zen_certs::issue::CertifiedKeyPem>,
) -> Reply {
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read_to_string(data.join("pki/ca.crt")).unwrap();
    for c in zen_certs::tls::certs_from_pem(&ca, "ca").unwrap() {
        roots.add(c).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(zen_certs::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some(c) => config
            .with_client_auth_cert(
                zen_certs::tls::certs_from_pem(&c.cert_pem, "client").unwrap(),
                zen_certs::tls::key_from_pem(&c.key_pem, "client").unwrap(),
            )
            .unwrap(),
        None => config.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::post(path).header("host", "localhost");
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::copy_from_slice(body))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    }
}

pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn json_ct() -> (&'static str, String) {
    ("content-type", "application/json".to_owned())
}

/// Observations in `namespace`, through the API.
pub async fn observations(client: &Client, namespace: &str) -> Vec<Value> {
    let r = client
        .send(
            "GET",
            &format!("/apis/zen.watcher.io/v1alpha1/namespaces/{namespace}/observations"),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, 200);
    r.json()["items"].as_array().cloned().unwrap_or_default()
}

pub const GITHUB_SECRET: &str = "change-me-github-webhook-secret";

/// A Dependabot alert as GitHub documents the event (trimmed to what the mapping reads).
pub fn dependabot_alert(number: u64) -> Vec<u8> {
    json!({
        "action": "created",
        "alert": {
            "number": number,
            "state": "open",
            "html_url": format!("https://github.com/acme/shop/security/dependabot/{number}"),
            "security_advisory": {
                "ghsa_id": "GHSA-xxxx-yyyy-zzzz",
                "summary": "Prototype pollution in lodash",
                "severity": "high"
            }
        },
        "repository": {"full_name": "acme/shop"},
        "sender": {"login": "dependabot[bot]"}
    })
    .to_string()
    .into_bytes()
}

pub fn github_headers(body: &[u8], delivery: &str, secret: &str) -> Vec<(&'static str, String)> {
    vec![
        json_ct(),
        ("x-github-event", "dependabot_alert".into()),
        ("x-github-delivery", delivery.into()),
        (
            "x-hub-signature-256",
            format!("sha256={}", hex(&hmac_sha256(secret.as_bytes(), &[body]))),
        ),
    ]
}
